//! The options of a run: one definition ([`RunOptions`]) and one parser
//! (clap's, the command line's own) for the three places they are given:
//!
//! - the command line of `shepherd run` (flattened into its arguments);
//! - `#SHEPHERD` lines of the script ([`directives`]), word for word a flag;
//! - the `[defaults]` table of the configuration file ([`from_table`]), each
//!   key a flag without its dashes: `keep_alive = "7d"` is `--keep-alive 7d`.
//!
//! So an option accepts the same values, with the same error, wherever it is
//! written; a new option needs one field here and nothing else to be a flag,
//! a directive and a default.

pub mod directives;

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser};

use crate::model::{Mode, Prefer, RunId};

fn duration(s: &str) -> Result<Duration, String> {
    crate::duration::parse(s)
}

fn partition_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty partition name".into());
    }
    Ok(s.to_string())
}

fn probe_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s == "none" {
        return Ok(s.to_string());
    }
    crate::model::probes::check_names(&[s.to_string()])?;
    Ok(s.to_string())
}

/// Every option of a run, settable on the command line and in `#SHEPHERD`
/// lines. `None` means "not given here".
#[derive(Debug, Clone, Default, Args)]
pub struct RunOptions {
    /// Name of the run (default: the script's file name without extension)
    #[arg(long, value_name = "ID")]
    pub run_id: Option<RunId>,
    /// run_once: done when the workload exits 0; indefinite: kept alive until --keep-alive
    #[arg(long, value_name = "MODE")]
    pub mode: Option<Mode>,
    /// GPUs per job
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub gpus: Option<u32>,
    /// Minimum GPU memory in GB
    #[arg(long, value_name = "GB")]
    pub min_vram: Option<u32>,
    /// Maximum GPU memory in GB
    #[arg(long, value_name = "GB")]
    pub max_vram: Option<u32>,
    /// GPU type (GRES type, e.g. a100)
    #[arg(long, value_name = "TYPE")]
    pub gpu_type: Option<String>,
    /// Prefer the smallest (min) or biggest (max) sufficient GPU
    #[arg(long, value_name = "min|max")]
    pub prefer: Option<Prefer>,
    /// Partitions to use, in order of preference (comma-separated)
    #[arg(long, value_name = "A,B", value_delimiter = ',', value_parser = partition_name)]
    pub partitions: Option<Vec<String>>,
    /// Workload failures tolerated before the run fails
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// The same failure in N attempts on two or more nodes ends the run (0: off)
    #[arg(long, value_name = "N")]
    pub same_failure_limit: Option<u32>,
    /// After a workload failure, restart it in the same allocation up to N
    /// times if the node passes its probes again (0: resubmit instead)
    #[arg(long, value_name = "N")]
    pub restart_in_place: Option<u32>,
    /// How long an indefinite run is kept alive (e.g. 7d)
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub keep_alive: Option<Duration>,
    /// How often the wrapper writes a heartbeat
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub heartbeat_interval: Option<Duration>,
    /// A heartbeat older than this means the job hangs
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub heartbeat_grace: Option<Duration>,
    /// No progress report and no output for this long means the job hangs
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub progress_stall: Option<Duration>,
    /// First retry delay after a workload failure (doubles each time; a
    /// first hang, node faults and preemptions resubmit at once)
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub backoff_base: Option<Duration>,
    /// Longest retry delay
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub backoff_max: Option<Duration>,
    /// How long a bad node is avoided (grows for repeat offenders)
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub blacklist_ttl: Option<Duration>,
    /// Never ban nodes for this run's failures
    #[arg(long)]
    pub no_blacklist: bool,
    /// Move a job pending this long to a partition that can start it now (0: never)
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub pending_timeout: Option<Duration>,
    /// Send SIGUSR1 to the workload this long before the time limit, to checkpoint
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub signal_before: Option<Duration>,
    /// GPU probes before the workload: only these (visibility,health,processes,cuda), or none
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = probe_name)]
    pub probes: Option<Vec<String>>,
    /// Shell commands run in the job before the workload, in the same shell
    /// (e.g. "module load cuda; conda activate train")
    #[arg(long, value_name = "SNIPPET")]
    pub setup: Option<String>,
    /// Where this run's notices go: configured channel names, URLs,
    /// mailto:ADDRESS, or none (default: the configured default channels)
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub notify: Option<Vec<String>>,
    /// Extra sbatch arguments from the configuration file, applied as
    /// `#SBATCH` lines before the script's own (which win).
    #[arg(skip)]
    pub sbatch_args: Option<Vec<String>>,
}

macro_rules! merge_opts {
    ($base:expr, $over:expr, $($field:ident),*) => {
        RunOptions {
            $($field: $over.$field.or($base.$field),)*
            no_blacklist: $over.no_blacklist || $base.no_blacklist,
        }
    };
}

impl RunOptions {
    /// `self` overridden by `over` wherever `over` gives a value.
    pub fn overridden_by(self, over: RunOptions) -> RunOptions {
        merge_opts!(
            self,
            over,
            run_id,
            mode,
            gpus,
            min_vram,
            max_vram,
            gpu_type,
            prefer,
            partitions,
            max_retries,
            same_failure_limit,
            restart_in_place,
            keep_alive,
            heartbeat_interval,
            heartbeat_grace,
            progress_stall,
            backoff_base,
            backoff_max,
            blacklist_ttl,
            signal_before,
            pending_timeout,
            probes,
            setup,
            sbatch_args,
            notify
        )
    }
}

/// Options given as words outside the command line (a `#SHEPHERD` line, a
/// `[defaults]` key), parsed by the command line's own parser.
#[derive(Debug, Parser)]
#[command(
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
struct Words {
    #[command(flatten)]
    options: RunOptions,
}

/// Parses option words (`["--gpus", "2"]`). The error is clap's first line
/// and its tip, without the `error: ` and the usage.
pub fn parse_words<I, S>(words: I) -> Result<RunOptions, String>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    Words::try_parse_from(words)
        .map(|w| w.options)
        .map_err(|e| {
            let msg = e.to_string();
            let first = msg
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            let tip = msg
                .lines()
                .find(|l| l.trim_start().starts_with("tip:"))
                .map(|t| format!(" ({})", t.trim()))
                .unwrap_or_default();
            format!("{first}{tip}")
        })
}

/// Keys of `[defaults]` that are options of one run only.
const NOT_DEFAULTS: &[(&str, &str)] = &[
    (
        "run_id",
        "a run's id is its own; give it with --run-id or #SHEPHERD --run-id",
    ),
    (
        "notify",
        "default channels are the [[notify]] entries with default = true",
    ),
];

/// The `[defaults]` table of the configuration file as options. Each key is
/// a flag of `shepherd run` with `_` for `-`; a string or number is its
/// value, a list its comma-separated values, `true` a flag given.
/// `sbatch_args` (a list of sbatch options) is the one key that is not a
/// flag. Errors name the key (and its line, given `line_of`).
pub fn from_table(
    table: &BTreeMap<String, toml::Spanned<toml::Value>>,
    line_of: impl Fn(usize) -> usize,
) -> Result<RunOptions, String> {
    let command = Words::command();
    let mut options = RunOptions::default();
    for (key, value) in table {
        let err = |m: String| {
            let line = line_of(value.span().start);
            format!("[defaults] {key}: {m} (line {line})")
        };
        if let Some((_, why)) = NOT_DEFAULTS.iter().find(|(k, _)| k == key) {
            return Err(err(format!("not a default: {why}")));
        }
        if key == "sbatch_args" {
            options.sbatch_args = Some(strings(value.get_ref()).map_err(err)?);
            continue;
        }
        let flag = format!("--{}", key.replace('_', "-"));
        let known = command
            .get_arguments()
            .find(|a| a.get_id().as_str() == key && !key.contains('-'));
        let Some(arg) = known else {
            // clap names the unknown flag and suggests the closest one.
            let why = parse_words([flag.as_str()]).err().unwrap_or_default();
            return Err(err(format!(
                "not a run option: {why}; the keys are the flags of `shepherd run` with _ for -"
            )));
        };
        let takes_value = arg.get_action().takes_values();
        let word = match value.get_ref() {
            toml::Value::Boolean(true) if !takes_value => flag,
            toml::Value::Boolean(false) if !takes_value => continue,
            toml::Value::Boolean(_) => {
                return Err(err("expects a value, not true or false".into()));
            }
            _ if !takes_value => return Err(err("expects true or false".into())),
            v => {
                let list = strings(v).map_err(err)?;
                if list.is_empty() {
                    return Err(err("an empty list; leave the key out for no default".into()));
                }
                format!("{flag}={}", list.join(","))
            }
        };
        let one = parse_words([word]).map_err(|e| {
            // "invalid value '0' for '--gpus <N>': 0 is not in 1..": the key
            // and its value are already named.
            let why = e
                .strip_prefix("invalid value ")
                .and_then(|r| r.find(">': ").map(|i| r[i + 4..].to_string()))
                .unwrap_or(e);
            err(why)
        })?;
        options = options.overridden_by(one);
    }
    Ok(options)
}

/// A string, a number, or a list of them, as strings.
fn strings(v: &toml::Value) -> Result<Vec<String>, String> {
    match v {
        toml::Value::String(s) => Ok(vec![s.clone()]),
        toml::Value::Integer(i) => Ok(vec![i.to_string()]),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(n) => Ok(n.to_string()),
                other => Err(format!(
                    "expects strings in the list, not {}",
                    other.type_str()
                )),
            })
            .collect(),
        other => Err(format!(
            "expects a string, a number or a list, not {}",
            other.type_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults(text: &str) -> Result<RunOptions, String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            defaults: BTreeMap<String, toml::Spanned<toml::Value>>,
        }
        let doc: Doc = toml::from_str(text).unwrap();
        from_table(&doc.defaults, |o| 1 + text[..o].matches('\n').count())
    }

    #[test]
    fn a_default_is_the_flag_with_its_value() {
        let o = defaults(
            "[defaults]\nmode = \"indefinite\"\ngpus = 2\nkeep_alive = \"7d\"\n\
             partitions = [\"a100\", \"h100\"]\nprobes = [\"none\"]\nno_blacklist = true\n\
             sbatch_args = [\"--account=lab\"]\nsetup = \"-x weird but a value\"\n",
        )
        .unwrap();
        assert_eq!(o.mode, Some(Mode::Indefinite));
        assert_eq!(o.gpus, Some(2));
        assert_eq!(o.keep_alive, Some(Duration::from_secs(7 * 86400)));
        assert_eq!(o.partitions.unwrap(), ["a100", "h100"]);
        assert_eq!(o.probes.unwrap(), ["none"]);
        assert!(o.no_blacklist);
        assert_eq!(o.sbatch_args.unwrap(), ["--account=lab"]);
        assert_eq!(o.setup.as_deref(), Some("-x weird but a value"));
        assert!(
            !defaults("[defaults]\nno_blacklist = false\n")
                .unwrap()
                .no_blacklist
        );
    }

    #[test]
    fn a_default_is_refused_as_its_flag_is() {
        // The same parser as the command line: gpus >= 1, durations with units.
        let err = defaults("[defaults]\n\ngpus = 0\n").unwrap_err();
        assert!(
            err == "[defaults] gpus: 0 is not in 1..=4294967295 (line 3)",
            "{err}"
        );
        let err = defaults("[defaults]\nheartbeat_grace = \"5x\"\n").unwrap_err();
        assert!(err.contains("unknown unit"), "{err}");
        let err = defaults("[defaults]\nprobes = [\"gpu\"]\n").unwrap_err();
        assert!(
            err.contains("[defaults] probes: ")
                && err.contains("unknown probe")
                && err.ends_with("(line 2)"),
            "{err}"
        );
    }

    #[test]
    fn keys_that_are_no_default_say_why() {
        let err = defaults("[defaults]\nmax_retrys = 3\n").unwrap_err();
        assert!(
            err.starts_with("[defaults] max_retrys: not a run option")
                && err.ends_with("(line 2)")
                && err.contains("--max-retries"),
            "suggests the right key: {err}"
        );
        let err = defaults("[defaults]\nmax-retries = 3\n").unwrap_err();
        assert!(err.contains("not a run option"), "one spelling only: {err}");
        let err = defaults("[defaults]\nrun_id = \"x\"\n").unwrap_err();
        assert!(err.contains("not a default"), "{err}");
        let err = defaults("[defaults]\nnotify = [\"lab\"]\n").unwrap_err();
        assert!(err.contains("[[notify]]"), "{err}");
    }

    #[test]
    fn a_value_of_the_wrong_shape_is_refused() {
        for (text, says) in [
            ("no_blacklist = \"yes\"", "expects true or false"),
            ("gpus = true", "expects a value"),
            ("partitions = []", "an empty list"),
            ("partitions = [1.5]", "expects strings in the list"),
            ("max_retries = 1.5", "expects a string, a number or a list"),
            ("sbatch_args = true", "expects a string, a number or a list"),
        ] {
            let err = defaults(&format!("[defaults]\n{text}\n")).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn every_flag_is_a_default_but_the_per_run_ones() {
        // A new option is a default with no code here: every flag's id is a
        // key (with a value that the flag accepts).
        let command = Words::command();
        for arg in command.get_arguments() {
            let key = arg.get_id().as_str();
            let verdict = defaults(&format!("[defaults]\n{key} = \"x\"\n"));
            let said = verdict.err().unwrap_or_default();
            assert!(!said.contains("not a run option"), "{key}: {said}");
        }
    }
}
