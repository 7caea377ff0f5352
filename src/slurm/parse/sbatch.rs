//! `sbatch --parsable` and `sbatch --test-only`.

use jiff::tz::TimeZone;

use super::values;
use crate::slurm::hostlist;
use crate::slurm::types::{JobId, StartEstimate};

/// `sbatch --parsable` prints `123` or `123;cluster` on its last stdout line;
/// warnings go to stderr.
pub fn job_id(stdout: &str) -> Result<JobId, String> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or("sbatch printed no job id")?;
    line.parse()
}

/// `sbatch: Job 25 to start at 2026-11-26T06:48:37 using 1 processors on nodes
/// a6000-1 in partition a6000` (on stderr).
pub fn start_estimate(stderr: &str, tz: &TimeZone) -> Result<StartEstimate, String> {
    let line = stderr
        .lines()
        .find(|l| l.contains(" to start at "))
        .ok_or_else(|| format!("no start estimate in {:?}", stderr.trim()))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |word: &str| {
        words
            .iter()
            .position(|w| *w == word)
            .and_then(|i| words.get(i + 1))
            .copied()
            .ok_or_else(|| format!("no {word:?} in {line:?}"))
    };
    let start =
        values::time(after("at")?, tz)?.ok_or_else(|| format!("no start time in {line:?}"))?;
    let processors = after("using")?
        .parse()
        .map_err(|_| format!("bad processor count in {line:?}"))?;
    Ok(StartEstimate {
        start,
        nodes: hostlist::expand(after("nodes")?)?,
        partition: after("partition")?.to_string(),
        processors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids() {
        assert_eq!(job_id("42\n").unwrap(), JobId(42));
        assert_eq!(job_id("42;shepherd-test\n").unwrap(), JobId(42));
        assert!(job_id("").is_err());
        assert!(job_id("Submitted batch job 42").is_err());
    }

    #[test]
    fn estimate() {
        let e = start_estimate(
            "sbatch: Job 4 to start at 2027-11-26T09:11:51 using 1 processors on nodes p1 in partition gpu\n",
            &TimeZone::UTC,
        )
        .unwrap();
        assert_eq!(e.partition, "gpu");
        assert_eq!(e.nodes, ["p1"]);
        assert_eq!(e.processors, 1);
        assert_eq!(e.start.to_string(), "2027-11-26T09:11:51Z");
    }
}
