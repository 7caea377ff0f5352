//! Creating a run from a script: `#SHEPHERD` directives, `#SBATCH` lines,
//! command-line overrides, validation, and the run directory on disk.
//!
//! The options themselves, and the parser of `#SHEPHERD` lines, are
//! [`crate::options`]: one definition for the command line, directives and
//! the configuration's defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use jiff::Timestamp;

use crate::model::{Mode, Policy, Resources, RunId, RunSpec};
pub use crate::options::RunOptions;
use crate::options::directives;
use crate::store::{RunDir, StateDir};

/// `--probes` as given → the policy's list: `none` alone means no probe.
fn probe_list(given: Option<Vec<String>>) -> anyhow::Result<Option<Vec<String>>> {
    let Some(given) = given else {
        return Ok(None);
    };
    if given.iter().any(|p| p == "none") {
        if given.len() > 1 {
            bail!("--probes none cannot be combined with probe names");
        }
        return Ok(Some(Vec::new()));
    }
    let mut list: Vec<String> = Vec::new();
    for p in given {
        if !list.contains(&p) {
            list.push(p);
        }
    }
    Ok(Some(list))
}

/// Everything needed to create a run, gathered before anything is written.
pub struct Prepared {
    pub spec: RunSpec,
    pub script: Vec<u8>,
}

/// The largest batch script accepted: Slurm's own limit is 4 MiB (sbatch
/// refuses larger ones), and a script is copied into every run directory.
pub const MAX_SCRIPT_BYTES: u64 = 4 << 20;

/// Reads the user's script: a regular file (a FIFO would block `run`
/// forever, a device like `/dev/zero` never end), at most
/// [`MAX_SCRIPT_BYTES`].
fn read_script(script: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let cannot = |e: std::io::Error| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (no such file)"
        } else {
            ""
        };
        anyhow::anyhow!("cannot read the script {}: {e}{hint}", script.display())
    };
    let meta = std::fs::metadata(script).map_err(cannot)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            use std::os::unix::fs::FileTypeExt;
            let t = meta.file_type();
            if t.is_fifo() {
                "a named pipe (FIFO)"
            } else if t.is_char_device() || t.is_block_device() {
                "a device"
            } else {
                "a socket or other special file"
            }
        };
        anyhow::bail!(
            "the script {} is {what}, not a regular file; Shepherd keeps a copy of the script for every attempt, so give it a file",
            script.display()
        );
    }
    let mut bytes = Vec::new();
    std::fs::File::open(script)
        .map_err(cannot)?
        .take(MAX_SCRIPT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SCRIPT_BYTES {
        anyhow::bail!(
            "the script {} is larger than 4 MiB (Slurm refuses batch scripts that large); \
             keep the data it needs in files beside it",
            script.display()
        );
    }
    Ok(bytes)
}

/// Reads and checks the script, merges its directives with the command line,
/// and builds the run's spec. Writes nothing.
/// `defaults` come from the configuration file; the script's `#SHEPHERD`
/// lines override them, and the command line overrides both.
pub fn prepare(
    script: &Path,
    defaults: RunOptions,
    cli: RunOptions,
    submit_dir: &Path,
    now: Timestamp,
) -> anyhow::Result<Prepared> {
    let bytes = read_script(script)?;
    let text = String::from_utf8_lossy(&bytes);
    let parsed =
        directives::parse(&text).map_err(|e| anyhow::anyhow!("{}:{e}", script.display()))?;
    let opts = defaults.overridden_by(parsed.options).overridden_by(cli);

    let script_path = if script.is_absolute() {
        script.to_path_buf()
    } else {
        submit_dir.join(script)
    };
    let run_id = match opts.run_id.clone() {
        Some(id) => id,
        None => {
            let name = script
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            RunId::from_script_name(&name).map_err(|e| {
                anyhow::anyhow!("cannot derive a run id from {name:?}: {e}; pass --run-id")
            })?
        }
    };
    let workdir = match &parsed.chdir {
        Some(d) if Path::new(d).is_absolute() => PathBuf::from(d),
        Some(d) => submit_dir.join(d),
        None => submit_dir.to_path_buf(),
    };

    let defaults = Policy::default();
    let mode = opts.mode.unwrap_or_default();
    let policy = Policy {
        max_retries: opts.max_retries.unwrap_or(defaults.max_retries),
        keep_alive: opts.keep_alive,
        heartbeat_interval: opts
            .heartbeat_interval
            .unwrap_or(defaults.heartbeat_interval),
        heartbeat_grace: opts.heartbeat_grace.unwrap_or(defaults.heartbeat_grace),
        progress_stall: opts.progress_stall,
        backoff_base: opts.backoff_base.unwrap_or(defaults.backoff_base),
        backoff_max: opts.backoff_max.unwrap_or(defaults.backoff_max),
        blacklist_ttl: opts.blacklist_ttl.unwrap_or(defaults.blacklist_ttl),
        blacklist: !opts.no_blacklist,
        signal_before: opts.signal_before,
        pending_timeout: match opts.pending_timeout {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => defaults.pending_timeout,
        },
        probes: probe_list(opts.probes.clone())?,
        same_failure_limit: opts
            .same_failure_limit
            .unwrap_or(defaults.same_failure_limit),
        restart_in_place: opts.restart_in_place.unwrap_or(defaults.restart_in_place),
    };
    validate(mode, &policy, &opts)?;
    // Extra arguments become the first #SBATCH lines, so the script's own
    // lines override them and everything that reads the lines (output
    // files, time limit, partition) sees them.
    let mut sbatch_lines = extra_sbatch_lines(opts.sbatch_args.as_deref().unwrap_or_default())?;
    sbatch_lines.extend(parsed.sbatch_lines);
    let files = directives::sbatch_files(&sbatch_lines);
    let spec = RunSpec {
        run_id,
        script_path,
        workdir,
        created_at: now,
        mode,
        resources: Resources {
            gpus: opts.gpus,
            min_vram_gb: opts.min_vram,
            max_vram_gb: opts.max_vram,
            gpu_type: opts.gpu_type,
            prefer: opts.prefer.unwrap_or_default(),
            partitions: opts.partitions.unwrap_or_default(),
        },
        policy,
        sbatch_lines,
        user_output: files.user_output,
        user_error: files.user_error,
        setup: opts.setup.filter(|s| !s.trim().is_empty()),
        notify: opts.notify,
    };
    Ok(Prepared {
        spec,
        script: bytes,
    })
}

/// Checks, before anything is written, that the run's workload can start on
/// a node: the script's `#!` line, line endings and interpreter
/// ([`crate::wrapper::launch::check_script`]; skipped with `check_script:
/// false`, for an interpreter that exists only on the compute nodes) and
/// the `--setup` snippet's syntax (`bash -n`). A launch failure found in the
/// job would be charged to the run again and again; found here, it costs
/// nothing. Returns the warnings (said, not refused).
pub fn check_launch(
    script: &Path,
    prepared: &Prepared,
    check_script: bool,
) -> anyhow::Result<Vec<String>> {
    use crate::wrapper::launch::{Finding, ThisHost, check_script as check};
    let mut warnings = Vec::new();
    if check_script {
        for finding in check(&script.display().to_string(), &prepared.script, &ThisHost) {
            match finding {
                Finding::Refuse(m) => bail!("{m}"),
                Finding::Warn(m) => warnings.push(m),
            }
        }
    }
    if let Some(setup) = &prepared.spec.setup {
        check_setup(setup)?;
    }
    Ok(warnings)
}

/// `--setup` is pasted into the job's bash script as the body of a
/// function: `bash -n` on that function finds an unbalanced quote or a
/// missing `fi` now rather than in every job. Without bash on this node the
/// check is skipped (the job script runs under bash on the node anyway).
pub fn check_setup(setup: &str) -> anyhow::Result<()> {
    let text = format!("shepherd_setup() {{\n{}\n}}\n", setup.trim_end());
    let inv = crate::proc::Invocation::new("bash", Duration::from_secs(10))
        .args(["-n"])
        .stdin(text);
    let Ok(out) = inv.run() else {
        return Ok(());
    };
    if out.success() {
        return Ok(());
    }
    // bash names the line of its input: line 1 is the function header.
    let message = out
        .stderr
        .lines()
        .map(|l| l.trim_start_matches("bash: ").to_string())
        .collect::<Vec<_>>()
        .join("; ");
    bail!(
        "--setup is not valid shell (bash -n, counting the snippet's first line as line 2): {message}"
    )
}

/// `sbatch_args` of the configuration file as `#SBATCH` lines.
fn extra_sbatch_lines(args: &[String]) -> anyhow::Result<Vec<String>> {
    args.iter()
        .map(|a| {
            if !a.starts_with('-') || a.contains('\n') {
                bail!("sbatch_args: {a:?} is not an sbatch option; write each as \"--name=value\"");
            }
            let plain = a
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=.,:/@%+[]".contains(c));
            if plain {
                return Ok(format!("#SBATCH {a}"));
            }
            let quoted =
                shlex::try_quote(a).map_err(|e| anyhow::anyhow!("sbatch_args: {a:?}: {e}"))?;
            Ok(format!("#SBATCH {quoted}"))
        })
        .collect()
}

fn validate(mode: Mode, p: &Policy, o: &RunOptions) -> anyhow::Result<()> {
    if let (Some(min), Some(max)) = (o.min_vram, o.max_vram)
        && min > max
    {
        bail!("--min-vram {min} is larger than --max-vram {max}");
    }
    if p.keep_alive.is_some() && mode != Mode::Indefinite {
        bail!("--keep-alive only applies to --mode indefinite");
    }
    if p.heartbeat_interval.is_zero() {
        bail!("--heartbeat-interval must be at least 1s");
    }
    if p.heartbeat_grace <= p.heartbeat_interval {
        bail!(
            "--heartbeat-grace ({}) must be longer than --heartbeat-interval ({})",
            crate::duration::format(p.heartbeat_grace),
            crate::duration::format(p.heartbeat_interval)
        );
    }
    if p.backoff_base > p.backoff_max {
        bail!("--backoff-base is longer than --backoff-max");
    }
    Ok(())
}

/// Creates the run on disk with the environment of this process.
pub fn create(state_dir: &StateDir, prepared: &Prepared) -> anyhow::Result<RunDir> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    state_dir
        .create_run(&prepared.spec, &prepared.script, env)
        .context("cannot create the run")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(script: &str, cli: RunOptions) -> anyhow::Result<Prepared> {
        prepare_in(script, cli)
    }

    fn err_of(script: &str, cli: RunOptions) -> String {
        match prepare_in(script, cli) {
            Ok(_) => panic!("prepared"),
            Err(e) => format!("{e:#}"),
        }
    }

    fn prepare_in(script: &str, cli: RunOptions) -> anyhow::Result<Prepared> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.sh");
        std::fs::write(&path, script).unwrap();
        prepare(
            &path,
            RunOptions::default(),
            cli,
            dir.path(),
            Timestamp::now(),
        )
    }

    #[test]
    fn scripts_that_cannot_start_are_refused_before_a_run_exists() {
        let check = |text: &str, setup: Option<&str>, scripts: bool| {
            let cli = RunOptions {
                setup: setup.map(str::to_string),
                ..RunOptions::default()
            };
            let p = prepared(text, cli).unwrap();
            check_launch(Path::new("train.sh"), &p, scripts)
        };
        let err = check("#!/bin/bash\r\necho hi\r\n", None, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train.sh has Windows (CRLF) line endings"),
            "{err}"
        );
        assert!(err.contains("sed -i 's/\\r$//' train.sh"), "{err}");
        let err = check("#!/usr/bin/pyhton3\nprint(1)\n", None, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/usr/bin/pyhton3 does not exist on this login node"),
            "{err}"
        );
        // Bypassed for an interpreter that exists only on the nodes.
        assert!(
            check("#!/usr/bin/pyhton3\n", None, false)
                .unwrap()
                .is_empty()
        );
        assert!(
            check("#!/bin/sh\necho hi\n", None, true)
                .unwrap()
                .is_empty()
        );
        let warnings = check("#!/usr/bin/env no-such-prog-xyz\n", None, true).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn only_a_regular_file_of_sane_size_is_a_script() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.sh");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let big = dir.path().join("big.sh");
        let mut body = b"#!/bin/bash\n".to_vec();
        body.resize((MAX_SCRIPT_BYTES + 1) as usize, b'#');
        std::fs::write(&big, body).unwrap();
        for (path, says) in [
            (fifo.as_path(), "named pipe"),
            (Path::new("/dev/zero"), "a device"),
            (dir.path(), "a directory"),
            (big.as_path(), "larger than 4 MiB"),
        ] {
            // Returns at once: nothing is read from the pipe or the device.
            let e = prepare(
                path,
                RunOptions::default(),
                RunOptions::default(),
                dir.path(),
                Timestamp::UNIX_EPOCH,
            )
            .err()
            .unwrap_or_else(|| panic!("{} was accepted", path.display()))
            .to_string();
            assert!(e.contains(says), "{}: {e}", path.display());
        }
    }

    #[test]
    fn a_setup_snippet_that_does_not_parse_is_refused() {
        check_setup("module load cuda; source ~/venv/bin/activate").unwrap();
        check_setup("if true; then\n  export A=1\nfi").unwrap();
        let err = check_setup("echo 'unbalanced").unwrap_err().to_string();
        assert!(
            err.starts_with("--setup is not valid shell (bash -n"),
            "{err}"
        );
        assert!(
            err.contains("unexpected EOF") || err.contains("syntax error"),
            "{err}"
        );
        let err = check_setup("if true; then echo").unwrap_err().to_string();
        assert!(err.contains("syntax error"), "{err}");
    }

    #[test]
    fn probes_are_selected_checked_and_merged() {
        let p = prepared("#!/bin/sh\n", RunOptions::default()).unwrap();
        assert_eq!(p.spec.policy.probes, None);

        let p = prepared(
            "#!/bin/sh\n#SHEPHERD --probes visibility,health,visibility\n",
            RunOptions::default(),
        )
        .unwrap();
        assert_eq!(
            p.spec.policy.probes.as_deref(),
            Some(&["visibility".to_string(), "health".to_string()][..])
        );

        // The command line wins over the script.
        let cli = RunOptions {
            probes: Some(vec!["none".into()]),
            ..RunOptions::default()
        };
        let p = prepared("#!/bin/sh\n#SHEPHERD --probes cuda\n", cli).unwrap();
        assert_eq!(p.spec.policy.probes, Some(vec![]));

        let cli = RunOptions {
            probes: Some(vec!["none".into(), "cuda".into()]),
            ..RunOptions::default()
        };
        let err = err_of("#!/bin/sh\n", cli);
        assert!(err.contains("--probes none cannot be combined"), "{err}");

        let err = err_of(
            "#!/bin/sh
#SHEPHERD --probes ecc
",
            RunOptions::default(),
        );
        assert!(err.contains("unknown probe \"ecc\""), "{err}");
    }

    #[test]
    fn probes_default_from_the_configuration() {
        let config =
            crate::config::parse("[defaults]\nprobes = [\"visibility\", \"health\"]\n").unwrap();
        let opts = config.defaults;
        assert_eq!(
            opts.probes,
            Some(vec!["visibility".to_string(), "health".to_string()])
        );
        let err = crate::config::parse("[defaults]\nprobes = [\"gpu\"]\n").unwrap_err();
        assert!(err.contains("[defaults] probes: unknown probe"), "{err}");
    }

    #[test]
    fn sbatch_args_of_the_configuration_come_before_the_scripts_lines() {
        let defaults = RunOptions {
            sbatch_args: Some(vec!["--account=lab".into(), "--comment=two words".into()]),
            ..RunOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.sh");
        std::fs::write(&path, "#!/bin/sh\n#SBATCH --output=mine.out\n").unwrap();
        let p = prepare(
            &path,
            defaults.clone(),
            RunOptions::default(),
            dir.path(),
            Timestamp::now(),
        )
        .unwrap();
        assert_eq!(
            p.spec.sbatch_lines,
            [
                "#SBATCH --account=lab",
                "#SBATCH '--comment=two words'",
                "#SBATCH --output=mine.out"
            ]
        );
        assert!(p.spec.user_output && !p.spec.user_error);

        let bad = RunOptions {
            sbatch_args: Some(vec!["account=lab".into()]),
            ..RunOptions::default()
        };
        let err = prepare(
            &path,
            bad,
            RunOptions::default(),
            dir.path(),
            Timestamp::now(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("is not an sbatch option"), "{err}");
    }

    #[test]
    fn an_empty_setup_is_no_setup() {
        let cli = RunOptions {
            setup: Some("  \n".into()),
            ..RunOptions::default()
        };
        assert_eq!(prepared("#!/bin/sh\n", cli).unwrap().spec.setup, None);
        let p = prepared(
            "#!/bin/sh\n#SHEPHERD --setup 'module load cuda'\n",
            RunOptions::default(),
        )
        .unwrap();
        assert_eq!(p.spec.setup.as_deref(), Some("module load cuda"));
    }
}
