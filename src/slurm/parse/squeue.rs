//! `squeue -h -t all -O …` with the ASCII unit separator (0x1F) after every
//! field: no job name, reason or node list can contain it, and `-O` with a
//! suffix and no width neither pads nor truncates.

use jiff::tz::TimeZone;

use super::values;
use crate::slurm::hostlist;
use crate::slurm::types::{ExitStatus, JobId, JobInfo, JobState};

pub const SEP: char = '\x1f';

/// The fields asked of squeue, in order. The name comes last so that even a
/// name holding the separator cannot shift the other fields.
pub const FIELDS: &[&str] = &[
    "JobID",
    "State",
    "Reason",
    "Partition",
    "NodeList",
    "RestartCnt",
    "exit_code",
    "SubmitTime",
    "StartTime",
    "EndTime",
    "Name",
];

/// The `-O` argument for [`FIELDS`].
pub fn format_arg() -> String {
    FIELDS
        .iter()
        .map(|f| format!("{f}:{SEP}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses the whole output, one job per line.
pub fn parse(text: &str, tz: &TimeZone) -> Result<Vec<JobInfo>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse_line(l, tz).map_err(|e| format!("{e} in squeue line {l:?}")))
        .collect()
}

fn parse_line(line: &str, tz: &TimeZone) -> Result<JobInfo, String> {
    let parts: Vec<&str> = line.split(SEP).collect();
    let n = FIELDS.len();
    if parts.len() < n {
        return Err(format!("expected {n} fields, got {}", parts.len()));
    }
    // Everything from the name on (a name containing the separator, and the
    // empty string after the final separator) belongs to the name.
    let name_parts = &parts[n - 1..];
    let name = name_parts[..name_parts.len().saturating_sub(1).max(1)].join(&SEP.to_string());
    let f = |i: usize| parts[i].trim();

    let id: JobId = f(0).parse()?;
    let state = JobState::parse(f(1));
    let restarts = f(5)
        .parse::<u32>()
        .map_err(|_| format!("bad restart count {:?}", f(5)))?;
    let exit = if state.is_terminal() {
        Some(wait_status(f(6))?)
    } else {
        None
    };
    let nodes = hostlist::expand(f(4))?;
    // squeue prints the *expected* start of a pending job and the *expected*
    // end of a running one; only actual times are reported.
    let start_time = if state.is_pending() {
        None
    } else {
        values::time(f(8), tz)?
    };
    let end_time = if state.is_terminal() {
        values::time(f(9), tz)?
    } else {
        None
    };
    Ok(JobInfo {
        id,
        name,
        state,
        reason: normalize_reason(f(2)),
        partition: f(3).to_string(),
        nodes,
        restarts,
        exit,
        submit_time: values::time(f(7), tz)?,
        start_time,
        end_time,
    })
}

/// squeue's `exit_code` is the raw wait status: `768` is exit 3, `9` is SIGKILL.
fn wait_status(s: &str) -> Result<ExitStatus, String> {
    if let Ok(status) = s.parse::<i32>() {
        return Ok(ExitStatus {
            code: (status >> 8) & 0xff,
            signal: status & 0x7f,
        });
    }
    // Other Slurm versions print `code:signal`.
    s.parse()
}

fn normalize_reason(r: &str) -> String {
    if r == "None" {
        String::new()
    } else {
        r.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fields: &[&str]) -> String {
        let mut s = fields.join(&SEP.to_string());
        s.push(SEP);
        s
    }

    #[test]
    fn format_has_a_separator_after_every_field() {
        let f = format_arg();
        assert!(f.starts_with("JobID:\x1f,State:\x1f,"));
        assert!(f.ends_with("Name:\x1f"));
    }

    #[test]
    fn names_may_contain_anything() {
        let tz = TimeZone::UTC;
        let text = line(&[
            "1",
            "RUNNING",
            "None",
            "gpu",
            "p1",
            "0",
            "0",
            "2026-11-26T09:11:42",
            "2026-11-26T09:11:43",
            "2027-11-26T09:11:43",
            "name with|pipe and \x1f unit",
        ]);
        let jobs = parse(&text, &tz).unwrap();
        assert_eq!(jobs[0].name, "name with|pipe and \x1f unit");
        assert_eq!(jobs[0].reason, "");
        assert_eq!(jobs[0].exit, None);
        assert_eq!(jobs[0].end_time, None, "expected end is not an end");
    }

    #[test]
    fn exit_status_from_wait_status() {
        assert_eq!(
            wait_status("768").unwrap(),
            ExitStatus { code: 3, signal: 0 }
        );
        assert_eq!(wait_status("9").unwrap(), ExitStatus { code: 0, signal: 9 });
        assert_eq!(
            wait_status("0:15").unwrap(),
            ExitStatus {
                code: 0,
                signal: 15
            }
        );
        assert!(wait_status("x").is_err());
    }

    #[test]
    fn short_lines_are_errors() {
        let err = parse("1\x1fRUNNING\x1f", &TimeZone::UTC).unwrap_err();
        assert!(err.contains("expected 11 fields"), "{err}");
    }
}
