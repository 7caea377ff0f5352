//! `scontrol -o` records: one line of `Key=Value` pairs separated by spaces.
//!
//! Values may contain spaces (`OS=Linux 6.1.0 #1 SMP …`, `Reason=Not responding
//! [slurm@…]`). A token opens a new pair only when it looks like a Slurm key:
//! it starts with an upper-case letter and has only key characters before `=`.
//! Anything else continues the previous value. A free-text value that contains a
//! capitalised `Word=` is the one ambiguity left; Slurm prints its free-text
//! fields (Reason, Comment) near the end, so at worst the tail of such a value is
//! mis-split, never an earlier field.

/// The pairs of one record, in order. Keys may repeat (Slurm does that for some
/// multi-node fields); `get` returns the first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pairs: Vec<(String, String)>,
}

impl Record {
    pub fn parse(line: &str) -> Record {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for token in line.split(' ') {
            match split_key(token) {
                Some((key, value)) => pairs.push((key.to_string(), value.to_string())),
                None => {
                    if let Some((_, value)) = pairs.last_mut() {
                        value.push(' ');
                        value.push_str(token);
                    }
                }
            }
        }
        for (_, value) in &mut pairs {
            let trimmed = value.trim_end();
            if trimmed.len() != value.len() {
                *value = trimmed.to_string();
            }
        }
        Record { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value unless Slurm wrote one of its "nothing" markers.
    pub fn get_some(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !is_null(v))
    }

    pub fn require(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("record has no {key}= field"))
    }

    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.get_some(key).and_then(|v| v.parse().ok())
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get_some(key).and_then(|v| v.parse().ok())
    }
}

/// Slurm's ways of printing "no value".
pub fn is_null(v: &str) -> bool {
    matches!(
        v.trim(),
        "" | "(null)" | "N/A" | "n/a" | "None" | "none" | "Unknown" | "UNKNOWN"
    )
}

fn split_key(token: &str) -> Option<(&str, &str)> {
    let (key, value) = token.split_once('=')?;
    let mut chars = key.chars();
    let first = chars.next()?;
    if !first.is_ascii_uppercase() {
        return None;
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '/') {
        return None;
    }
    Some((key, value))
}

/// Splits `scontrol -o show …` output into records, one per non-empty line.
pub fn records(text: &str) -> Vec<Record> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(Record::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_may_contain_spaces() {
        let r = Record::parse(
            "NodeName=a100-1 OS=Linux 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01) RealMemory=64000 Reason=gpu fell off the bus [root@2026-11-26T07:00:00]",
        );
        assert_eq!(r.get("NodeName"), Some("a100-1"));
        assert_eq!(
            r.get("OS"),
            Some("Linux 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)")
        );
        assert_eq!(r.get_u64("RealMemory"), Some(64000));
        assert_eq!(
            r.get("Reason"),
            Some("gpu fell off the bus [root@2026-11-26T07:00:00]")
        );
    }

    #[test]
    fn lower_case_words_with_equals_stay_in_the_value() {
        let r = Record::parse("Reason=bad gpu=3 seen Comment=x");
        assert_eq!(r.get("Reason"), Some("bad gpu=3 seen"));
        assert_eq!(r.get("Comment"), Some("x"));
    }

    #[test]
    fn values_may_contain_equals_and_commas() {
        let r = Record::parse("CfgTRES=cpu=16,mem=62.50G,billing=16,gres/gpu=4 AllocTRES=");
        assert_eq!(
            r.get("CfgTRES"),
            Some("cpu=16,mem=62.50G,billing=16,gres/gpu=4")
        );
        assert_eq!(r.get("AllocTRES"), Some(""));
        assert_eq!(r.get_some("AllocTRES"), None);
    }

    #[test]
    fn null_markers() {
        let r = Record::parse("A=(null) B=N/A C=None D=x");
        assert_eq!(r.get_some("A"), None);
        assert_eq!(r.get_some("B"), None);
        assert_eq!(r.get_some("C"), None);
        assert_eq!(r.get_some("D"), Some("x"));
    }
}
