//! Slurm host lists: `a100-[1-2],rtx4090-1`, `node[001-003,7]`.

/// Expands a Slurm host list into node names, in order.
///
/// Returns an error for unbalanced brackets or bad ranges instead of guessing,
/// because a wrong node name would end up in an exclude list.
pub fn expand(list: &str) -> Result<Vec<String>, String> {
    let list = list.trim();
    if list.is_empty() || matches!(list, "(null)" | "None" | "N/A" | "") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for item in split_top_level(list)? {
        expand_one(item, &mut out)?;
    }
    Ok(out)
}

/// Splits at commas that are outside brackets.
fn split_top_level(list: &str) -> Result<Vec<&str>, String> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced ']' in host list {list:?}"))?
            }
            ',' if depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced '[' in host list {list:?}"));
    }
    items.push(&list[start..]);
    Ok(items.into_iter().filter(|s| !s.is_empty()).collect())
}

/// More names than any cluster has: a list that expands beyond this is
/// refused rather than allowed to fill memory (`r[0-999999]n[0-999999]`).
pub const MAX_HOSTS: usize = 100_000;

fn expand_one(item: &str, out: &mut Vec<String>) -> Result<(), String> {
    let Some(open) = item.find('[') else {
        if out.len() >= MAX_HOSTS {
            return Err(format!("host list expands to more than {MAX_HOSTS} names"));
        }
        out.push(item.to_string());
        return Ok(());
    };
    let close = item[open..]
        .find(']')
        .map(|i| i + open)
        .ok_or_else(|| format!("unbalanced '[' in host name {item:?}"))?;
    let prefix = &item[..open];
    let suffix = &item[close + 1..];
    for range in item[open + 1..close].split(',') {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        let width = lo.len();
        let bad = || format!("bad range {range:?} in host list {item:?}");
        let lo_n: u64 = lo.parse().map_err(|_| bad())?;
        let hi_n: u64 = hi.parse().map_err(|_| bad())?;
        if hi_n < lo_n || hi_n - lo_n > 1_000_000 {
            return Err(bad());
        }
        for n in lo_n..=hi_n {
            // The suffix may hold another bracket group: `r[1-2]n[1-3]`.
            expand_one(&format!("{prefix}{n:0width$}{suffix}"), out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_common_forms() {
        assert_eq!(
            expand("a100-[1-2],rtx4090-1").unwrap(),
            ["a100-1", "a100-2", "rtx4090-1"]
        );
        assert_eq!(
            expand("node[001-003,7]").unwrap(),
            ["node001", "node002", "node003", "node7"]
        );
        assert_eq!(expand("cpu-1").unwrap(), ["cpu-1"]);
        assert_eq!(expand("").unwrap(), Vec::<String>::new());
        assert_eq!(expand("(null)").unwrap(), Vec::<String>::new());
        assert_eq!(
            expand("r[1-2]n[1-2]").unwrap(),
            ["r1n1", "r1n2", "r2n1", "r2n2"]
        );
        assert_eq!(expand("leaf[1-3]").unwrap(), ["leaf1", "leaf2", "leaf3"]);
    }

    #[test]
    fn a_list_cannot_expand_without_bound() {
        let e = expand("r[0-999999]n[0-999999]").unwrap_err();
        assert!(e.contains("more than 100000"), "{e}");
        assert_eq!(expand("n[1-100000]").unwrap().len(), MAX_HOSTS);
    }

    #[test]
    fn rejects_malformed_lists() {
        assert!(expand("a[1-2").is_err());
        assert!(expand("a1-2]").is_err());
        assert!(expand("a[2-1]").is_err());
        assert!(expand("a[x-2]").is_err());
    }
}
