//! `sacct --parsable2 -n -o …` (slurmdbd) and `sacct -c …` (job completion file).
//!
//! Fields are separated by `|`; only the fields below are asked for, and none of
//! them can contain `|` (job names, which can, are not asked for).

use jiff::tz::TimeZone;

use super::values;
use crate::slurm::hostlist;
use crate::slurm::types::{AccountingSource, JobId, JobRecord, JobState};

/// The `-o` argument. `JobIDRaw` is the plain id even for array elements.
pub const FORMAT: &str = "JobIDRaw,State,ExitCode,NodeList,Partition,Start,End";

pub fn parse(
    text: &str,
    source: AccountingSource,
    tz: &TimeZone,
) -> Result<Vec<JobRecord>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() < 7 {
            return Err(format!("expected 7 fields in sacct line {line:?}"));
        }
        // Steps (`12.batch`, `12.0`) would only appear without -X; skip them.
        if f[0].contains('.') {
            continue;
        }
        let id: JobId = f[0].parse()?;
        let nodes = if f[3].starts_with("None") {
            Vec::new()
        } else {
            hostlist::expand(f[3])?
        };
        let end_time = values::time(f[6], tz)?;
        let mut state = JobState::parse(f[1]);
        // The job completion file logs the end of a requeued run as PENDING.
        if source == AccountingSource::JobComp && state == JobState::Pending && end_time.is_some() {
            state = JobState::Requeued;
        }
        out.push(JobRecord {
            id,
            state,
            exit: f[2].parse().ok(),
            nodes,
            partition: f[4].to_string(),
            start_time: values::time(f[5], tz)?,
            end_time,
            source,
        });
    }
    Ok(out)
}

/// True when sacct says there is no slurmdbd to ask.
pub fn is_storage_disabled(stderr: &str) -> bool {
    stderr.contains("accounting storage is disabled")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_and_skips_steps() {
        let text = "2|FAILED|3:0|p1|gpu|2026-11-26T09:11:43|2026-11-26T09:11:43\n\
                    2.batch|FAILED|3:0|p1||2026-11-26T09:11:43|2026-11-26T09:11:43\n\
                    5|CANCELLED by 0|0:0|None assigned|gpu|None|2026-11-26T09:12:00\n";
        let r = parse(text, AccountingSource::Slurmdbd, &TimeZone::UTC).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].state, JobState::Failed);
        assert_eq!(r[0].exit.unwrap().code, 3);
        assert_eq!(r[0].nodes, ["p1"]);
        assert_eq!(r[1].state, JobState::Cancelled);
        assert!(r[1].nodes.is_empty());
        assert_eq!(r[1].start_time, None);
    }

    #[test]
    fn storage_disabled() {
        assert!(is_storage_disabled(
            "Slurm accounting storage is disabled\n"
        ));
    }
}
