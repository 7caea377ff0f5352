//! Quoting for the remote POSIX shell.
//!
//! `ssh HOST WORDS…` joins its words with spaces and hands the result to the
//! remote user's login shell, so every argument we send must be one shell
//! word that the shell turns back into exactly the same bytes. Single quotes
//! are the only POSIX quoting with no special characters inside; a single
//! quote itself is written as `'\''` (close, escaped quote, reopen).

/// One shell word that the remote shell reads back as exactly `arg`.
///
/// Words made only of characters no shell treats specially are left bare so
/// that command lines stay readable in `ps` and logs. (Arguments that are not
/// UTF-8 are refused before they get here: see `remote::argv`.)
pub fn quote(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-.,/:=+@%".contains(c);
    // A leading `=` is an expansion in zsh (`=cmd` is the path of cmd).
    if !arg.is_empty() && !arg.starts_with('=') && arg.chars().all(safe) {
        return arg.to_string();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::process::Command;

    /// What `sh` makes of `word`: its single argument, printed back.
    fn through_sh(words: &[String]) -> Vec<String> {
        let script = format!(
            "for a in {}; do printf '%s\\0' \"$a\"; done",
            words.join(" ")
        );
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "sh failed on {script:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut parts: Vec<String> = text.split('\0').map(str::to_string).collect();
        parts.pop();
        parts
    }

    #[test]
    fn plain_words_stay_bare() {
        assert_eq!(quote("train"), "train");
        assert_eq!(quote("--run-id"), "--run-id");
        assert_eq!(quote("/a/b.sh"), "/a/b.sh");
    }

    #[test]
    fn everything_else_is_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("~"), "'~'");
        assert_eq!(quote("=x"), "'=x'");
    }

    #[test]
    fn nasty_cases_round_trip() {
        let cases = [
            "", " ", "a b", "'", "\"", "$HOME", "${x:-y}", "a;b", "`id`", "$(id)", "a\nb", "\n",
            "\\", "*", "?", "[a]", "~", "~/x", "#c", "a|b", "a&b", "<x>", "!", "'\"'\"", "\t",
            "é ü", "-n", "--",
        ];
        let words: Vec<String> = cases.iter().map(|c| quote(c)).collect();
        assert_eq!(through_sh(&words), cases);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_arguments_round_trip_through_sh(
            args in proptest::collection::vec("[^\u{0}]{0,12}", 1..8)
        ) {
            let words: Vec<String> = args.iter().map(|a| quote(a)).collect();
            prop_assert_eq!(through_sh(&words), args);
        }

        #[test]
        fn shell_metacharacters_round_trip(
            args in proptest::collection::vec("[ '\"$;`\\\\\n\t|&<>(){}*?~#!a]{0,10}", 1..8)
        ) {
            let words: Vec<String> = args.iter().map(|a| quote(a)).collect();
            prop_assert_eq!(through_sh(&words), args);
        }
    }
}
