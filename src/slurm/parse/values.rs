//! Slurm's small value formats: times, time limits, GRES strings.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use crate::slurm::types::Gres;

/// Parses a Slurm time (`2026-11-26T09:11:43`, printed in the client's local
/// time zone). `None`, `Unknown`, `N/A` and empty give `Ok(None)`.
pub fn time(s: &str, tz: &TimeZone) -> Result<Option<Timestamp>, String> {
    let s = s.trim();
    if super::kv::is_null(s) || s.eq_ignore_ascii_case("NONE") {
        return Ok(None);
    }
    let dt: DateTime = s
        .parse()
        .map_err(|e| format!("not a Slurm time: {s:?} ({e})"))?;
    let zoned = dt
        .to_zoned(tz.clone())
        .map_err(|e| format!("cannot place {s:?} in the local time zone: {e}"))?;
    Ok(Some(zoned.timestamp()))
}

/// Parses a Slurm time limit in minutes: `UNLIMITED`/`INFINITE` give `None`;
/// `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS` are accepted
/// (seconds are rounded up, as Slurm does).
pub fn time_limit_minutes(s: &str) -> Result<Option<u64>, String> {
    let s = s.trim();
    if matches!(
        s.to_ascii_uppercase().as_str(),
        "UNLIMITED" | "INFINITE" | "NONE" | "N/A"
    ) {
        return Ok(None);
    }
    let bad = || format!("not a Slurm time limit: {s:?}");
    let num = |v: &str| v.parse::<u64>().map_err(|_| bad());
    let (days, rest) = match s.split_once('-') {
        Some((d, rest)) => (num(d)?, Some(rest)),
        None => (0, None),
    };
    let (h, m, sec) = match rest {
        Some(rest) => {
            let parts: Vec<&str> = rest.split(':').collect();
            match parts.as_slice() {
                [h] => (num(h)?, 0, 0),
                [h, m] => (num(h)?, num(m)?, 0),
                [h, m, sec] => (num(h)?, num(m)?, num(sec)?),
                _ => return Err(bad()),
            }
        }
        None => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [m] => (0, num(m)?, 0),
                [m, sec] => (0, num(m)?, num(sec)?),
                [h, m, sec] => (num(h)?, num(m)?, num(sec)?),
                _ => return Err(bad()),
            }
        }
    };
    Ok(Some(days * 1440 + h * 60 + m + sec.div_ceil(60)))
}

/// Splits at commas outside parentheses: `gpu:a100:3(IDX:0-1,3),gpu:v100:1`.
fn split_outside_parens(s: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth <= 0 => {
                items.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&s[start..]);
    items.into_iter().filter(|i| !i.trim().is_empty()).collect()
}

/// Parses a node's `Gres=` or `GresUsed=` list: `gpu:a100:4`, `gpu:4(S:0-1)`,
/// `gpu:a100:1(IDX:0),gpu:v100:0(IDX:N/A)`, `(null)`.
pub fn gres_list(s: &str) -> Result<Vec<Gres>, String> {
    let s = s.trim();
    if super::kv::is_null(s) {
        return Ok(Vec::new());
    }
    split_outside_parens(s)
        .into_iter()
        .map(|item| {
            let item = item.trim();
            let spec = item.split('(').next().unwrap_or(item);
            let parts: Vec<&str> = spec.split(':').collect();
            let count =
                |c: &str| parse_count(c).ok_or_else(|| format!("bad GRES count in {item:?}"));
            let (name, kind, count) = match parts.as_slice() {
                [name] => (*name, None, 1),
                [name, c] if c.chars().next().is_some_and(|ch| ch.is_ascii_digit()) => {
                    (*name, None, count(c)?)
                }
                [name, kind] => (*name, Some(*kind), 1),
                [name, kind, c] => (*name, Some(*kind), count(c)?),
                // `gpu:a100:no_consume:4` and similar flags before the count.
                [name, kind, .., c] => (*name, Some(*kind), count(c)?),
                [] => return Err(format!("empty GRES in {s:?}")),
            };
            Ok(Gres {
                name: name.to_string(),
                kind: kind.map(str::to_string),
                count,
            })
        })
        .collect()
}

/// GRES counts may carry a multiplier suffix (`2K`).
fn parse_count(c: &str) -> Option<u32> {
    let c = c.trim();
    let (digits, mult) = match c.chars().last()? {
        'K' | 'k' => (&c[..c.len() - 1], 1024),
        'M' | 'm' => (&c[..c.len() - 1], 1024 * 1024),
        _ => (c, 1),
    };
    digits.parse::<u32>().ok()?.checked_mul(mult)
}

/// The number of GPUs in `AllocTRES=cpu=1,gres/gpu=2,gres/gpu:rtx4090=2`.
pub fn tres_gpus(s: &str) -> u32 {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "gres/gpu")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_local() {
        let tz = TimeZone::fixed(jiff::tz::offset(2));
        let t = time("2026-11-26T09:11:43", &tz).unwrap().unwrap();
        assert_eq!(t.to_string(), "2026-11-26T07:11:43Z");
        assert_eq!(time("Unknown", &tz).unwrap(), None);
        assert_eq!(time("NONE", &tz).unwrap(), None);
        assert_eq!(time("N/A", &tz).unwrap(), None);
        assert!(time("yesterday", &tz).is_err());
    }

    #[test]
    fn time_limits() {
        assert_eq!(time_limit_minutes("UNLIMITED").unwrap(), None);
        assert_eq!(time_limit_minutes("00:01:00").unwrap(), Some(1));
        assert_eq!(time_limit_minutes("365-00:00:00").unwrap(), Some(525600));
        assert_eq!(
            time_limit_minutes("1-02:03:04").unwrap(),
            Some(1440 + 123 + 1)
        );
        assert_eq!(time_limit_minutes("30").unwrap(), Some(30));
        assert_eq!(time_limit_minutes("5:30").unwrap(), Some(6));
        assert_eq!(time_limit_minutes("2-12").unwrap(), Some(2 * 1440 + 720));
        assert!(time_limit_minutes("soon").is_err());
    }

    #[test]
    fn gres_forms() {
        let g = gres_list("gpu:a100:4").unwrap();
        assert_eq!(
            g,
            [Gres {
                name: "gpu".into(),
                kind: Some("a100".into()),
                count: 4
            }]
        );
        let g = gres_list("gpu:a100:3(IDX:0-1,3),gpu:v100:0(IDX:N/A)").unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].count, 3);
        assert_eq!(g[1].kind.as_deref(), Some("v100"));
        assert_eq!(g[1].count, 0);
        let g = gres_list("gpu:4(S:0-1)").unwrap();
        assert_eq!(g[0].kind, None);
        assert_eq!(g[0].count, 4);
        assert!(gres_list("(null)").unwrap().is_empty());
        let g = gres_list("gpu:a100:no_consume:2").unwrap();
        assert_eq!(g[0].count, 2);
        assert!(gres_list("gpu:a100:x").is_err());
    }

    #[test]
    fn gpus_from_tres() {
        assert_eq!(tres_gpus("cpu=1,gres/gpu=2,gres/gpu:rtx4090=2"), 2);
        assert_eq!(tres_gpus("cpu=1"), 0);
        assert_eq!(tres_gpus(""), 0);
    }
}
