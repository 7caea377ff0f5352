//! Human durations on the command line and in `#SHEPHERD` lines: `90`, `90s`,
//! `15m`, `2h`, `1d`, and combinations like `1h30m`.

use std::time::Duration;

/// The longest duration accepted: ten years. Every duration Shepherd takes is
/// added to a clock somewhere (`Instant`, a timestamp); bounding them here,
/// once, means none of those additions can overflow.
pub const MAX: Duration = Duration::from_secs(3650 * 86400);

/// Parses a duration. A bare number is seconds. At most [`MAX`].
pub fn parse(text: &str) -> Result<Duration, String> {
    let d = parse_unbounded(text)?;
    if d > MAX {
        return Err(format!(
            "duration {:?} is too long: at most 3650d (ten years)",
            text.trim()
        ));
    }
    Ok(d)
}

fn parse_unbounded(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; use e.g. 90, 90s, 15m, 2h".to_string());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {c:?}; use s, m, h or d (e.g. 90s, 15m, 2h)"
                ));
            }
        };
        if number.is_empty() {
            return Err(format!(
                "invalid duration {text:?}: a number must come before {c:?}"
            ));
        }
        let n: u64 = number
            .parse()
            .map_err(|_| format!("duration {text:?} is too large"))?;
        number.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {text:?} is too large"))?;
    }
    if !number.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: the last number has no unit; use e.g. 1h30m"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration compactly for people: `45s`, `15m`, `2h5m`, `3d4h`.
pub fn format(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 if s % 60 == 0 => format!("{}m", s / 60),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 if s % 3600 == 0 => format!("{}h", s / 3600),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ if s % 86400 == 0 => format!("{}d", s / 86400),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_forms() {
        assert_eq!(parse("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse(" 5m ").unwrap(), Duration::from_secs(300));
    }

    #[test]
    fn bounds_every_duration() {
        assert_eq!(parse("3650d").unwrap(), MAX);
        for huge in ["3651d", "18446744073709551615", "99999999999999999999s"] {
            let e = parse(huge).unwrap_err();
            assert!(e.contains("too l"), "{huge}: {e}");
        }
        // The bound is what makes clock arithmetic safe.
        let _ = std::time::Instant::now() + MAX;
        let _ = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::try_from(MAX).unwrap())
            .unwrap();
    }

    #[test]
    fn rejects_with_a_hint() {
        for bad in ["", "5x", "m", "1h30", "-5", "1.5h"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("duration"), "{bad}: {err}");
        }
        assert!(parse("99999999999999999999d").is_err());
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format(Duration::from_secs(45)), "45s");
        assert_eq!(format(Duration::from_secs(900)), "15m");
        assert_eq!(format(Duration::from_secs(125)), "2m5s");
        assert_eq!(format(Duration::from_secs(7500)), "2h5m");
        assert_eq!(format(Duration::from_secs(86400 * 3 + 3600 * 4)), "3d4h");
    }
}
