//! The command line sent to the remote: the user's own words, less the
//! options that only mean something here.

use std::ffi::OsString;

use super::RemoteError;

/// The options this side consumes (all take a value).
const LOCAL_OPTIONS: [&str; 3] = ["--remote", "--remote-dir", "--remote-copy"];

/// `args` (without the program name) as UTF-8 words, without `--remote X`
/// and `--remote-dir D` (in either `--opt X` or `--opt=X` form). Words after
/// `--` belong to another program and are left alone.
pub fn strip_local(args: &[OsString]) -> Result<Vec<String>, RemoteError> {
    let mut out = Vec::with_capacity(args.len());
    let mut words = args.iter();
    let mut rest = false;
    while let Some(w) = words.next() {
        let w = w
            .to_str()
            .ok_or_else(|| RemoteError::NotUtf8(w.to_string_lossy().into_owned()))?;
        if rest {
            out.push(w.to_string());
            continue;
        }
        if w == "--" {
            rest = true;
            out.push(w.to_string());
        } else if LOCAL_OPTIONS.contains(&w) {
            words.next();
        } else if LOCAL_OPTIONS
            .iter()
            .any(|o| w.strip_prefix(o).is_some_and(|r| r.starts_with('=')))
        {
        } else {
            out.push(w.to_string());
        }
    }
    Ok(out)
}

/// Where the remote directory option points, as a remote shell expression:
/// `~` and `~/…` are the remote home, anything else is quoted as is (a
/// relative path is relative to the remote home, where ssh starts).
pub fn remote_dir_expr(dir: &str) -> String {
    if dir == "~" {
        "\"$HOME\"".to_string()
    } else if let Some(rest) = dir.strip_prefix("~/") {
        format!("\"$HOME\"/{}", super::quote::quote(rest))
    } else {
        super::quote::quote(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(words: &[&str]) -> Vec<String> {
        let args: Vec<OsString> = words.iter().map(OsString::from).collect();
        strip_local(&args).unwrap()
    }

    #[test]
    fn local_options_are_removed_in_both_forms() {
        assert_eq!(
            strip(&["--remote", "h", "status", "x", "--remote-dir=d", "--json"]),
            ["status", "x", "--json"]
        );
        assert_eq!(strip(&["list", "--remote=h"]), ["list"]);
    }

    #[test]
    fn words_after_double_dash_are_kept() {
        assert_eq!(
            strip(&[
                "slurm", "submit", "s.sh", "--remote", "h", "--", "--remote", "x"
            ]),
            ["slurm", "submit", "s.sh", "--", "--remote", "x"]
        );
    }

    #[test]
    fn options_that_merely_start_alike_are_kept() {
        assert_eq!(strip(&["--remotely", "x"]), ["--remotely", "x"]);
    }

    #[test]
    fn remote_dirs_expand_the_remote_home_only() {
        assert_eq!(remote_dir_expr("~"), "\"$HOME\"");
        assert_eq!(remote_dir_expr("~/my runs"), "\"$HOME\"/'my runs'");
        assert_eq!(remote_dir_expr("/scratch/$x"), "'/scratch/$x'");
    }
}
