//! Keeping the daemon alive past a reboot or a process reaper: `daemon
//! install` puts a block in the user's crontab that runs `shepherd daemon
//! ensure` at boot and every few minutes (a no-op while a daemon holds a
//! fresh lease), and `daemon uninstall` takes it out again.
//!
//! The block is ours alone: marked lines naming the state directory, so
//! several state directories can each have one, and everything else in the
//! crontab is kept byte for byte. The editing is pure ([`with_block`],
//! [`without_block`]); reading and writing the crontab goes through the
//! `crontab` program (`-l`, `-`, `-r`), as a user would.
//!
//! Cron runs the command with `/bin/sh` and an almost empty environment
//! (`PATH=/usr/bin:/bin`, no `SLURM_CONF`), so the line carries what the
//! daemon needs from the installing shell: the binary's absolute path, the
//! state directory, `PATH` (where `squeue` and `sbatch` are) and
//! `SLURM_CONF` when set.

use std::path::Path;
use std::time::Duration;

use crate::proc::{Invocation, ProcError};

/// How long `crontab` may take.
const CRONTAB_TIMEOUT: Duration = Duration::from_secs(30);

/// The variables of the installing environment the daemon needs under cron.
pub const KEPT_ENV: [&str; 2] = ["PATH", "SLURM_CONF"];

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("cannot use crontab: {0}")]
    Crontab(String),
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error("{0}")]
    Unusable(String),
}

/// The command cron runs: `VAR=value … /abs/shepherd --state-dir D
/// daemon ensure --poll-interval P --slurm-timeout T`, quoted for `/bin/sh`
/// and with `%` escaped (cron turns a bare `%` into a newline).
pub fn command_line(
    exe: &Path,
    state_dir: &Path,
    env: &[(String, String)],
    poll: Duration,
    slurm_timeout: Duration,
) -> Result<String, InstallError> {
    // Through env(1): `VAR=value cmd` is sh syntax, and a crontab's
    // `SHELL=` line may name csh or tcsh.
    let mut words = vec!["/usr/bin/env".to_string()];
    for (k, v) in env {
        words.push(format!("{k}={}", quote(v)?));
    }
    words.push(quote(&exe.to_string_lossy())?);
    words.push("--state-dir".into());
    words.push(quote(&state_dir.to_string_lossy())?);
    words.push("--slurm-timeout".into());
    words.push(format!("{}s", slurm_timeout.as_secs().max(1)));
    words.extend(["daemon".into(), "ensure".into(), "--poll-interval".into()]);
    words.push(format!("{}s", poll.as_secs().max(1)));
    Ok(words.join(" ").replace('%', "\\%"))
}

fn quote(s: &str) -> Result<String, InstallError> {
    if s.contains(['\n', '\r']) {
        return Err(InstallError::Unusable(format!(
            "{s:?} holds a line break, which a crontab line cannot carry"
        )));
    }
    // Cron reads a backslash before `%` or another backslash as an escape
    // (crontab(5) documents only `\%`): rather than rely on that, refuse.
    if s.contains('\\') {
        return Err(InstallError::Unusable(format!(
            "{s:?} holds a backslash, which cron may read as an escape; use a path without one"
        )));
    }
    shlex::try_quote(s)
        .map(|q| q.into_owned())
        .map_err(|e| InstallError::Unusable(format!("cannot quote {s:?} for the shell: {e}")))
}

fn begin(state_dir: &Path) -> String {
    format!(
        "# >>> shepherd daemon for {} (`shepherd daemon uninstall` removes this block) >>>",
        state_dir.display()
    )
}

fn end(state_dir: &Path) -> String {
    format!("# <<< shepherd daemon for {} <<<", state_dir.display())
}

/// The block for one state directory: ensure at boot and every `every`
/// minutes (1 to 59).
pub fn block(state_dir: &Path, command: &str, every: u32) -> String {
    let every = every.clamp(1, 59);
    let schedule = match every {
        1 => "* * * * *".to_string(),
        n => format!("*/{n} * * * *"),
    };
    format!(
        "{}\n@reboot {command}\n{schedule} {command}\n{}\n",
        begin(state_dir),
        end(state_dir)
    )
}

/// `crontab` with this state directory's block in place of the one it had
/// (where it was), or appended.
pub fn with_block(crontab: &str, state_dir: &Path, block: &str) -> String {
    let (kept, at) = remove(crontab, state_dir);
    let at = at.unwrap_or(kept.len());
    let mut out = String::with_capacity(kept.len() + block.len() + 1);
    out.push_str(&kept[..at]);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(block);
    out.push_str(&kept[at..]);
    out
}

/// `crontab` without this state directory's block, and whether it had one.
pub fn without_block(crontab: &str, state_dir: &Path) -> (String, bool) {
    let (kept, at) = remove(crontab, state_dir);
    (kept, at.is_some())
}

/// This state directory's block taken out: the rest, and where the block
/// was. A begin marker without its end (an edit by hand) takes nothing
/// out: the lines after it are the user's.
fn remove(crontab: &str, state_dir: &Path) -> (String, Option<usize>) {
    let (begin, end) = (begin(state_dir), end(state_dir));
    let mut kept = String::with_capacity(crontab.len());
    let mut at = None;
    let mut lines = crontab.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        if line.trim_end() == begin {
            let rest: Vec<&str> = lines.clone().collect();
            if let Some(n) = rest.iter().position(|l| l.trim_end() == end) {
                at.get_or_insert(kept.len());
                for _ in 0..=n {
                    lines.next();
                }
                continue;
            }
        }
        kept.push_str(line);
    }
    (kept, at)
}

/// Whether the crontab holds this state directory's block.
pub fn has_block(crontab: &str, state_dir: &Path) -> bool {
    without_block(crontab, state_dir).1
}

/// The user's crontab (empty when there is none), for changing it: read
/// twice, and refused unless both reads agree and it is text, so that what
/// is written back holds every line the user had.
pub fn read_crontab_for_change() -> Result<String, InstallError> {
    let first = read_crontab()?;
    if first.contains('\u{fffd}') {
        return Err(InstallError::Unusable(
            "your crontab holds bytes that are not UTF-8 text; Shepherd will not rewrite it \
             (`shepherd daemon install --dry-run` prints the lines to add by hand)"
                .into(),
        ));
    }
    if read_crontab()? != first {
        return Err(InstallError::Unusable(
            "your crontab changed while it was read (or `crontab -l` answers differently each time); \
             nothing was changed: try again"
                .into(),
        ));
    }
    Ok(first)
}

/// The user's crontab (empty when there is none).
pub fn read_crontab() -> Result<String, InstallError> {
    let out = Invocation::new("crontab", CRONTAB_TIMEOUT)
        .arg("-l")
        .run()?;
    if out.success() {
        return Ok(out.stdout);
    }
    // Debian's cron: "no crontab for USER", exit 1.
    if out.stderr.trim_start().starts_with("no crontab for") {
        return Ok(String::new());
    }
    Err(InstallError::Crontab(format!(
        "`crontab -l` failed ({}): {}",
        out.status_text(),
        out.message()
    )))
}

/// Installs `text` as the user's crontab; an empty one is removed.
pub fn write_crontab(text: &str) -> Result<(), InstallError> {
    let out = if text.trim().is_empty() {
        let out = Invocation::new("crontab", CRONTAB_TIMEOUT)
            .arg("-r")
            .run()?;
        if !out.success() && out.stderr.trim_start().starts_with("no crontab for") {
            return Ok(());
        }
        out
    } else {
        Invocation::new("crontab", CRONTAB_TIMEOUT)
            .arg("-")
            .stdin(text.as_bytes().to_vec())
            .run()?
    };
    if out.success() {
        Ok(())
    } else {
        Err(InstallError::Crontab(format!(
            "`{}` failed ({}): {}",
            out.command,
            out.status_text(),
            out.message()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "/home/u/.slurm_shepherd";

    fn b(cmd: &str) -> String {
        block(Path::new(DIR), cmd, 5)
    }

    #[test]
    fn the_block_runs_ensure_at_boot_and_every_few_minutes() {
        let text = b("ensure");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("# >>> shepherd daemon for /home/u/.slurm_shepherd"));
        assert_eq!(lines[1], "@reboot ensure");
        assert_eq!(lines[2], "*/5 * * * * ensure");
        assert_eq!(
            lines[3],
            "# <<< shepherd daemon for /home/u/.slurm_shepherd <<<"
        );
        assert!(block(Path::new(DIR), "x", 1).contains("\n* * * * * x\n"));
        assert!(block(Path::new(DIR), "x", 0).contains("\n* * * * * x\n"));
        assert!(block(Path::new(DIR), "x", 600).contains("\n*/59 * * * * x\n"));
    }

    #[test]
    fn install_keeps_the_users_lines_and_replaces_its_own_in_place() {
        let dir = Path::new(DIR);
        assert_eq!(with_block("", dir, &b("one")), b("one"));
        let mine = "MAILTO=me\n# my backup\n0 3 * * * backup.sh\n";
        let once = with_block(mine, dir, &b("one"));
        assert_eq!(once, format!("{mine}{}", b("one")));
        // Again: the same text (idempotent); with another command: replaced
        // where it was, the user's later lines still after it.
        assert_eq!(with_block(&once, dir, &b("one")), once);
        let later = format!("{once}@hourly other.sh\n");
        let twice = with_block(&later, dir, &b("two"));
        assert_eq!(twice, format!("{mine}{}@hourly other.sh\n", b("two")));
        // A crontab without a final newline.
        assert_eq!(
            with_block("0 3 * * * backup.sh", dir, &b("one")),
            format!("0 3 * * * backup.sh\n{}", b("one"))
        );
        // Uninstall gives the user's crontab back byte for byte.
        assert_eq!(
            without_block(&twice, dir),
            (format!("{mine}@hourly other.sh\n"), true)
        );
        assert_eq!(without_block(mine, dir), (mine.to_string(), false));
    }

    #[test]
    fn another_state_directorys_block_and_a_broken_block_are_left_alone() {
        let dir = Path::new(DIR);
        let other = block(Path::new("/scratch/u/shep"), "other", 5);
        let both = with_block(&other, dir, &b("mine"));
        assert_eq!(both, format!("{other}{}", b("mine")));
        assert_eq!(without_block(&both, dir), (other.clone(), true));
        assert!(has_block(&both, Path::new("/scratch/u/shep")));
        // A begin marker whose end was deleted by hand: nothing after it
        // is taken as ours.
        let broken = format!("{}\n0 3 * * * backup.sh\n", begin(dir));
        assert_eq!(without_block(&broken, dir), (broken.clone(), false));
        let fixed = with_block(&broken, dir, &b("x"));
        assert!(fixed.starts_with(&broken), "{fixed}");
    }

    #[test]
    fn the_command_carries_the_environment_quoted_with_percent_escaped() {
        let line = command_line(
            Path::new("/opt/my tools/shepherd"),
            Path::new("/home/u/100%/state"),
            &[
                ("PATH".into(), "/opt/slurm/bin:/usr/bin:/bin".into()),
                ("SLURM_CONF".into(), "/etc/slurm/slurm.conf".into()),
            ],
            Duration::from_secs(10),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(
            line,
            "/usr/bin/env PATH=/opt/slurm/bin:/usr/bin:/bin SLURM_CONF=/etc/slurm/slurm.conf \
             '/opt/my tools/shepherd' --state-dir '/home/u/100\\%/state' --slurm-timeout 30s \
             daemon ensure --poll-interval 10s"
        );
        for (dir, says) in [("/a\nb", "line break"), ("/a\\b", "backslash")] {
            let err = command_line(
                Path::new("/bin/shepherd"),
                Path::new(dir),
                &[],
                Duration::from_secs(10),
                Duration::from_secs(30),
            )
            .unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
        }
    }
}
