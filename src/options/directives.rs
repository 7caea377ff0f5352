//! `#SHEPHERD` and `#SBATCH` lines of a batch script.
//!
//! Like sbatch, only the header counts: the comment block after the shebang,
//! up to the first command. A `#SHEPHERD` line below it is an error rather
//! than silently ignored, since the user clearly meant it.

use super::RunOptions;

/// What the script's header says.
#[derive(Debug, Default)]
pub struct Parsed {
    pub options: RunOptions,
    /// `#SBATCH` lines, verbatim.
    pub sbatch_lines: Vec<String>,
    pub user_output: bool,
    pub user_error: bool,
    /// The `--output`/`--error` file patterns the script sets (`%j` and friends).
    pub output: Option<String>,
    pub error: Option<String>,
    pub chdir: Option<String>,
    /// Nodes the script excludes itself (`--exclude`/`-x`), as written.
    pub exclude: Option<String>,
    /// Partitions the script asks for itself (`--partition`/`-p`).
    pub partition: Option<String>,
    /// The script's time limit (`--time`/`-t`), as written.
    pub time: Option<String>,
}

/// The output and error file patterns and the working directory set by
/// `#SBATCH` lines (as kept in a run's spec).
pub fn sbatch_files(lines: &[String]) -> Parsed {
    let mut parsed = Parsed::default();
    for line in lines {
        if let Some(rest) = directive(line.trim(), "#SBATCH") {
            inspect_sbatch(&shlex::split(rest).unwrap_or_default(), &mut parsed);
        }
    }
    parsed
}

/// Parses a script. Errors read `LINE: message`, to be prefixed with the path.
pub fn parse(text: &str) -> Result<Parsed, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, first)) if first.starts_with("#!") => {}
        _ => {
            return Err(
                "1: the script has no shebang line (e.g. #!/bin/bash); Slurm needs one to run it"
                    .to_string(),
            );
        }
    }
    let mut parsed = Parsed::default();
    let mut in_header = true;
    for (i, raw) in lines {
        let n = i + 1;
        let line = raw.trim();
        if in_header && !line.is_empty() && !line.starts_with('#') {
            in_header = false;
        }
        if let Some(rest) = directive(line, "#SHEPHERD") {
            if !in_header {
                return Err(format!(
                    "{n}: #SHEPHERD after the first command is not read; move it above line {n}'s first command"
                ));
            }
            let words = shlex::split(rest)
                .ok_or_else(|| format!("{n}: unbalanced quotes in #SHEPHERD line"))?;
            let one = super::parse_words(&words)
                .map_err(|e| format!("{n}: invalid #SHEPHERD directive: {e}"))?;
            parsed.options = std::mem::take(&mut parsed.options).overridden_by(one);
        } else if in_header && let Some(rest) = directive(line, "#SBATCH") {
            parsed.sbatch_lines.push(raw.to_string());
            let words = shlex::split(rest).unwrap_or_default();
            inspect_sbatch(&words, &mut parsed);
        }
    }
    Ok(parsed)
}

/// `#SHEPHERD --x` → `--x`; `#SHEPHERDX` is not a directive.
fn directive<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(tag)?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then(|| rest.trim())
}

/// Notes the sbatch options Shepherd must not override.
fn inspect_sbatch(words: &[String], parsed: &mut Parsed) {
    let mut it = words.iter().peekable();
    while let Some(w) = it.next() {
        let (name, inline) = match w.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (w.as_str(), None),
        };
        let short_inline = |flag: &str| {
            w.strip_prefix(flag)
                .filter(|v| !v.is_empty() && !w.starts_with("--"))
                .map(str::to_string)
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned());
        match name {
            "--output" | "-o" => {
                parsed.user_output = true;
                parsed.output = value();
            }
            "--error" | "-e" => {
                parsed.user_error = true;
                parsed.error = value();
            }
            "--chdir" | "-D" => parsed.chdir = value(),
            "--exclude" | "-x" => parsed.exclude = value(),
            "--partition" | "-p" => parsed.partition = value(),
            "--time" | "-t" => parsed.time = value(),
            _ => {
                if let Some(v) = short_inline("-o") {
                    parsed.user_output = true;
                    parsed.output = Some(v);
                } else if let Some(v) = short_inline("-e") {
                    parsed.user_error = true;
                    parsed.error = Some(v);
                } else if let Some(x) = short_inline("-x") {
                    parsed.exclude = Some(x);
                } else if let Some(p) = short_inline("-p") {
                    parsed.partition = Some(p);
                } else if let Some(t) = short_inline("-t") {
                    parsed.time = Some(t);
                } else if let Some(d) = short_inline("-D") {
                    parsed.chdir = Some(d);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reads_header_directives_in_both_forms() {
        let p = parse(
            "#!/bin/bash\n\
             #SBATCH --time=60\n\
             #SHEPHERD --gpus 4 --min-vram=40\n\
             #SHEPHERD --heartbeat-grace 10m --partitions a100,a6000\n\
             \n\
             # a comment\n\
             #SBATCH -o logs/%j.out\n\
             python train.py\n\
             #SBATCH --mem=1G\n",
        )
        .unwrap();
        assert_eq!(p.options.gpus, Some(4));
        assert_eq!(p.options.min_vram, Some(40));
        assert_eq!(p.options.heartbeat_grace, Some(Duration::from_secs(600)));
        assert_eq!(
            p.options.partitions,
            Some(vec!["a100".to_string(), "a6000".to_string()])
        );
        assert_eq!(
            p.sbatch_lines,
            ["#SBATCH --time=60", "#SBATCH -o logs/%j.out"]
        );
        assert!(p.user_output && !p.user_error);
    }

    #[test]
    fn the_same_failure_limit_is_a_directive() {
        let p = parse("#!/bin/bash\n#SHEPHERD --same-failure-limit 0\n").unwrap();
        assert_eq!(p.options.same_failure_limit, Some(0));
    }

    #[test]
    fn later_directives_override_earlier_ones() {
        let p = parse("#!/bin/sh\n#SHEPHERD --gpus 1\n#SHEPHERD --gpus 2\n").unwrap();
        assert_eq!(p.options.gpus, Some(2));
    }

    #[test]
    fn output_error_and_chdir_in_every_spelling() {
        for (line, out, err, dir) in [
            ("#SBATCH --output=x", true, false, None),
            ("#SBATCH --output x", true, false, None),
            ("#SBATCH -oX", true, false, None),
            ("#SBATCH --error=x -D /w", false, true, Some("/w")),
            ("#SBATCH -e x --chdir=rel", false, true, Some("rel")),
            ("#SBATCH --open-mode=append", false, false, None),
        ] {
            let p = parse(&format!("#!/bin/bash\n{line}\n")).unwrap();
            assert_eq!(
                (p.user_output, p.user_error, p.chdir.as_deref()),
                (out, err, dir),
                "{line}"
            );
        }
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("#!/bin/bash\n\n#SHEPHERD --gpuz 4\n").unwrap_err();
        assert!(err.starts_with("3: invalid #SHEPHERD directive"), "{err}");
        assert!(err.contains("--gpuz"), "{err}");
        assert!(err.contains("--gpus"), "suggests the right flag: {err}");
        let err = parse("#!/bin/bash\n#SHEPHERD --gpus many\n").unwrap_err();
        assert!(err.starts_with("2: "), "{err}");
        assert!(err.contains("many"), "{err}");
        let err = parse("#!/bin/bash\n#SHEPHERD --heartbeat-grace 5x\n").unwrap_err();
        assert!(err.contains("unknown unit"), "{err}");
        let err = parse("echo hi\n").unwrap_err();
        assert!(err.contains("shebang"), "{err}");
        let err = parse("#!/bin/bash\necho\n#SHEPHERD --gpus 1\n").unwrap_err();
        assert!(
            err.starts_with("3: #SHEPHERD after the first command"),
            "{err}"
        );
        let err = parse("#!/bin/bash\n#SHEPHERD --run-id 'a\n").unwrap_err();
        assert!(err.contains("quotes"), "{err}");
        let err = parse("#!/bin/bash\n#SHEPHERD --run-id ../x\n").unwrap_err();
        assert!(err.contains("run id"), "{err}");
    }

    #[test]
    fn lookalikes_are_not_directives() {
        let p = parse("#!/bin/bash\n#SHEPHERDING is fun\n#SBATCHX\n").unwrap();
        assert!(p.sbatch_lines.is_empty());
        assert_eq!(p.options.gpus, None);
    }
}
