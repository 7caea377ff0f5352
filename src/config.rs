//! The configuration file: defaults users set once, the lab's GPU catalog
//! entries, fault signatures and node groups.
//!
//! Read from `STATE/config.toml` if present, else
//! `$XDG_CONFIG_HOME/shepherd/config.toml` (`~/.config/shepherd/config.toml`).
//! Unknown keys are errors: a typo must not be silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::options::RunOptions;
use crate::placement::catalog::UserEntry;
use crate::policy::signatures::{SignatureSet, UserSignature};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Defaults for every run, as written: each key a flag of `shepherd run`
    /// (`crate::options::from_table`). `#SHEPHERD` lines and the command
    /// line win.
    #[serde(default, rename = "defaults")]
    defaults_table: BTreeMap<String, toml::Spanned<toml::Value>>,
    /// [`Config::defaults_table`] parsed (by [`parse`]).
    #[serde(skip)]
    pub defaults: RunOptions,
    /// GPU catalog additions and overrides.
    #[serde(default)]
    pub gpu: Vec<UserEntry>,
    /// Fault signatures of your own (checked before the built-in ones).
    #[serde(default)]
    pub signature: Vec<UserSignature>,
    /// Groups of nodes that fail together, for clusters without a topology
    /// plugin.
    #[serde(default)]
    pub node_group: Vec<NodeGroup>,
    #[serde(default)]
    pub blacklist: BlacklistConfig,
    /// Where notices go (docs/notifications.md).
    #[serde(default)]
    pub notify: Vec<crate::notify::NotifyConfig>,
    /// A keeper job inside Slurm when no daemon runs (docs/daemon.md).
    #[serde(default)]
    pub keeper: KeeperConfig,
}

/// `[keeper]`: off unless `enabled = true` (it submits jobs on the user's
/// behalf, which a site may forbid).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeeperConfig {
    #[serde(default)]
    pub enabled: bool,
    /// How long the lease must have gone unrenewed before a run's wrapper
    /// asks for a keeper (`10m`).
    pub after: Option<String>,
    /// The keeper job's partition (Slurm's default partition when unset).
    pub partition: Option<String>,
    /// The keeper job's time limit (`4h`); a successor queued behind it
    /// (`--dependency=singleton`) takes over when it ends.
    pub time_limit: Option<String>,
    /// More sbatch arguments for the keeper job (`--qos=…`, `--account=…`).
    #[serde(default)]
    pub sbatch_args: Vec<String>,
}

/// The keeper's settings, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keeper {
    pub after: std::time::Duration,
    pub partition: Option<String>,
    pub time_limit: std::time::Duration,
    pub sbatch_args: Vec<String>,
}

impl KeeperConfig {
    /// The keeper's settings, when it is on.
    pub fn settings(&self) -> Result<Option<Keeper>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let duration = |key: &str, v: &Option<String>, default: u64| {
            v.as_deref()
                .map(|s| crate::duration::parse(s).map_err(|e| format!("[keeper] {key}: {e}")))
                .transpose()
                .map(|d| d.unwrap_or(std::time::Duration::from_secs(default)))
        };
        let after = duration("after", &self.after, 600)?;
        if after < std::time::Duration::from_secs(5) {
            // Every job of every run looks at the lease that often.
            return Err("[keeper] after: at least 5s".into());
        }
        let time_limit = duration("time_limit", &self.time_limit, 4 * 3600)?;
        if time_limit < std::time::Duration::from_secs(120) {
            return Err("[keeper] time_limit: at least 2m".into());
        }
        if let Some(bad) = self.sbatch_args.iter().find(|a| {
            [
                "--job-name",
                "--dependency",
                "--output",
                "-J",
                "-d",
                "-o",
                "--wrap",
            ]
            .iter()
            .any(|k| a.starts_with(k))
        }) {
            return Err(format!(
                "[keeper] sbatch_args: {bad:?} is Shepherd's to set (the keeper's name, dependency and output)"
            ));
        }
        Ok(Some(Keeper {
            after,
            partition: self.partition.clone(),
            time_limit,
            sbatch_args: self.sbatch_args.clone(),
        }))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlacklistConfig {
    /// A directory the lab shares (on the shared filesystem, writable by all
    /// its members): everyone's runs then learn from everyone's failures.
    pub shared_dir: Option<PathBuf>,
    /// The circuit breaker on probe blame ([`crate::policy::breaker`]):
    /// off unless `true` (docs/node-health.md says why).
    #[serde(default)]
    pub probe_breaker: bool,
    /// Distinct nodes blamed identically that trip it (2).
    pub breaker_nodes: Option<usize>,
    /// How close together those blames must be (`1h`).
    pub breaker_window: Option<String>,
    /// How long a tripped breaker stays open (`1d`).
    pub breaker_hold: Option<String>,
}

impl BlacklistConfig {
    /// The breaker's rules, when it is on.
    pub fn breaker_rules(&self) -> Result<Option<crate::policy::breaker::BreakerRules>, String> {
        if !self.probe_breaker {
            return Ok(None);
        }
        let mut rules = crate::policy::breaker::BreakerRules::default();
        let duration = |key: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| crate::duration::parse(s).map_err(|e| format!("[blacklist] {key}: {e}")))
                .transpose()
        };
        if let Some(n) = self.breaker_nodes {
            if n < 2 {
                return Err(format!(
                    "[blacklist] breaker_nodes = {n}: at least 2 (one node alone is the node's fault)"
                ));
            }
            rules.nodes = n;
        }
        if let Some(d) = duration("breaker_window", &self.breaker_window)? {
            rules.window = d;
        }
        if let Some(d) = duration("breaker_hold", &self.breaker_hold)? {
            rules.hold = d;
        }
        Ok(Some(rules))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeGroup {
    pub name: String,
    /// A Slurm host list: `gpu-[01-16]`.
    pub nodes: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

/// Where the configuration is looked for, in order; the first that exists
/// is used.
pub fn candidates(state_dir: &Path) -> Vec<PathBuf> {
    candidates_in(state_dir, |k| std::env::var_os(k))
}

/// [`candidates`] with the environment given, for tests.
fn candidates_in(
    state_dir: &Path,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Vec<PathBuf> {
    let mut c = vec![state_dir.join("config.toml")];
    // The XDG spec: an empty or relative value is invalid and ignored. Taking
    // it as given would load `./shepherd/config.toml` from whatever directory
    // the command runs in, and that file names commands Shepherd runs.
    let absolute = |var: &str| env(var).map(PathBuf::from).filter(|p| p.is_absolute());
    let xdg = absolute("XDG_CONFIG_HOME").or_else(|| absolute("HOME").map(|h| h.join(".config")));
    if let Some(x) = xdg {
        c.push(x.join("shepherd/config.toml"));
    }
    c
}

/// Loads the configuration; no file is an empty configuration.
pub fn load(state_dir: &Path) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let Some(path) = candidates(state_dir).into_iter().find(|p| p.exists()) else {
        return Ok((Config::default(), None));
    };
    let err = |message: String| ConfigError {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
    let config = parse(&text).map_err(err)?;
    Ok((config, Some(path)))
}

/// Parses and checks a configuration.
pub fn parse(text: &str) -> Result<Config, String> {
    let mut config: Config = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
    let line_of = |offset: usize| 1 + text[..offset.min(text.len())].matches('\n').count();
    config.defaults = crate::options::from_table(&config.defaults_table, line_of)?;
    config.signatures()?;
    config.node_groups()?;
    config.channels()?;
    config.keeper.settings()?;
    Ok(config)
}

impl Config {
    pub fn signatures(&self) -> Result<SignatureSet, String> {
        SignatureSet::new(&self.signature).map_err(|e| format!("[[signature]]: {e}"))
    }

    pub fn channels(&self) -> Result<Vec<crate::notify::Channel>, String> {
        crate::notify::channels::from_config(&self.notify)
    }

    pub fn catalog(&self) -> crate::placement::catalog::Catalog {
        crate::placement::catalog::Catalog::with_user(self.gpu.clone())
    }

    /// The node groups, host lists expanded.
    pub fn node_groups(&self) -> Result<Vec<(String, Vec<String>)>, String> {
        self.node_group
            .iter()
            .map(|g| {
                crate::slurm::hostlist::expand(&g.nodes)
                    .map(|n| (g.name.clone(), n))
                    .map_err(|e| format!("[[node_group]] {}: {e}", g.name))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Prefer;
    use std::time::Duration;

    #[test]
    fn an_empty_or_relative_xdg_config_home_is_ignored() {
        let with = |xdg: Option<&str>, home: &str| {
            candidates_in(Path::new("/s"), |k| match k {
                "XDG_CONFIG_HOME" => xdg.map(Into::into),
                "HOME" => Some(home.into()),
                _ => None,
            })
        };
        let home = [
            PathBuf::from("/s/config.toml"),
            PathBuf::from("/home/u/.config/shepherd/config.toml"),
        ];
        for bad in [None, Some(""), Some("shepherd-cfg"), Some(".")] {
            assert_eq!(with(bad, "/home/u"), home, "XDG_CONFIG_HOME={bad:?}");
        }
        assert_eq!(
            with(Some("/x"), "/home/u")[1],
            PathBuf::from("/x/shepherd/config.toml")
        );
        assert_eq!(with(Some(""), ""), [PathBuf::from("/s/config.toml")]);
    }

    const FULL: &str = r#"
[defaults]
max_retries = 5
same_failure_limit = 4
heartbeat_grace = "10m"
partitions = ["a100", "a6000"]
prefer = "max"

[[gpu]]
pattern = "a100"
vram_gb = 80

[[signature]]
id = "lab-bad-ib"
pattern = "mlx5: fatal error"
blame = "node"

[[node_group]]
name = "rack3"
nodes = "gpu-[01-04]"

[blacklist]
shared_dir = "/shared/lab/shepherd"

[keeper]
enabled = true
after = "15m"
partition = "cpu"
time_limit = "8h"
sbatch_args = ["--qos=long"]
"#;

    #[test]
    fn the_documented_example_is_a_valid_configuration() {
        let doc = include_str!("../docs/config.md");
        let start = doc
            .find("```toml\n")
            .expect("docs/config.md has a toml block")
            + 8;
        let len = doc[start..].find("```").unwrap();
        let c = parse(&doc[start..start + len]).unwrap();
        assert_eq!(c.defaults.sbatch_args.as_deref().unwrap().len(), 2);
        assert!(c.defaults.setup.unwrap().contains("conda activate train"));
    }

    #[test]
    fn reads_every_section() {
        let c = parse(FULL).unwrap();
        let o = &c.defaults;
        assert_eq!(o.max_retries, Some(5));
        assert_eq!(o.same_failure_limit, Some(4));
        assert_eq!(o.heartbeat_grace, Some(Duration::from_secs(600)));
        assert_eq!(o.prefer, Some(Prefer::Max));
        assert_eq!(o.partitions.as_deref().unwrap(), ["a100", "a6000"]);
        assert_eq!(c.catalog().identify("a100").vram_gb(), Some(80));
        assert!(c.signatures().unwrap().ids().any(|i| i == "lab-bad-ib"));
        assert_eq!(c.node_groups().unwrap()[0].1.len(), 4);
        assert_eq!(
            c.blacklist.shared_dir.unwrap(),
            PathBuf::from("/shared/lab/shepherd")
        );
        assert_eq!(
            c.keeper.settings().unwrap(),
            Some(Keeper {
                after: Duration::from_secs(900),
                partition: Some("cpu".into()),
                time_limit: Duration::from_secs(8 * 3600),
                sbatch_args: vec!["--qos=long".into()],
            })
        );
    }

    #[test]
    fn the_keeper_is_off_unless_enabled_and_keeps_its_own_arguments() {
        assert_eq!(parse("").unwrap().keeper.settings().unwrap(), None);
        assert_eq!(
            parse("[keeper]\npartition = \"cpu\"\n")
                .unwrap()
                .keeper
                .settings()
                .unwrap(),
            None
        );
        let on = parse("[keeper]\nenabled = true\n")
            .unwrap()
            .keeper
            .settings()
            .unwrap()
            .unwrap();
        assert_eq!(
            (on.after, on.time_limit),
            (Duration::from_secs(600), Duration::from_secs(14400))
        );
        for (bad, says) in [
            ("enabled = true\nafter = \"soon\"", "[keeper] after"),
            ("enabled = true\ntime_limit = \"1m\"", "at least 2m"),
            ("enabled = true\nafter = \"1s\"", "at least 5s"),
            (
                "enabled = true\nsbatch_args = [\"--dependency=afterok:1\"]",
                "Shepherd's to set",
            ),
            ("enabled = true\nqueue = \"x\"", "unknown field"),
        ] {
            let err = parse(&format!("[keeper]\n{bad}\n")).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn the_probe_breaker_is_off_unless_asked_for() {
        assert_eq!(parse("").unwrap().blacklist.breaker_rules(), Ok(None));
        let on = parse("[blacklist]\nprobe_breaker = true\n").unwrap();
        assert_eq!(
            on.blacklist.breaker_rules(),
            Ok(Some(crate::policy::breaker::BreakerRules::default()))
        );
        let tuned = parse(
            "[blacklist]\nprobe_breaker = true\nbreaker_nodes = 3\nbreaker_window = \"30m\"\nbreaker_hold = \"6h\"\n",
        )
        .unwrap();
        let r = tuned.blacklist.breaker_rules().unwrap().unwrap();
        assert_eq!(
            (r.nodes, r.window.as_secs(), r.hold.as_secs()),
            (3, 1800, 21600)
        );
        let bad = parse("[blacklist]\nprobe_breaker = true\nbreaker_nodes = 1\n").unwrap();
        assert!(
            bad.blacklist
                .breaker_rules()
                .unwrap_err()
                .contains("at least 2")
        );
    }

    #[test]
    fn mistakes_are_errors_that_say_where() {
        let err = parse("[defaults]\nmax_retrys = 3\n").unwrap_err();
        assert!(
            err.contains("max_retrys") && err.contains("line 2"),
            "{err}"
        );
        let err = parse("[defaults]\nheartbeat_grace = \"5x\"\n").unwrap_err();
        assert!(
            err.contains("heartbeat_grace") && err.contains("unknown unit"),
            "{err}"
        );
        let err = parse("[defaults]\nmode = \"forever\"\n").unwrap_err();
        assert!(err.contains("mode"), "{err}");
        let err =
            parse("[[signature]]\nid = \"x\"\npattern = \"ab\"\nblame = \"node\"\n").unwrap_err();
        assert!(err.contains("signature"), "{err}");
        let err = parse("[[node_group]]\nname = \"r\"\nnodes = \"gpu-[1-\"\n").unwrap_err();
        assert!(err.contains("node_group"), "{err}");
        assert!(parse("").is_ok());
    }

    #[test]
    fn the_state_dirs_file_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        let (c, path) = load(dir.path()).unwrap();
        assert!(path.is_none() && c.gpu.is_empty());
        std::fs::write(
            dir.path().join("config.toml"),
            "[defaults]\nmax_retries = 9\n",
        )
        .unwrap();
        let (c, path) = load(dir.path()).unwrap();
        assert_eq!(path.unwrap(), dir.path().join("config.toml"));
        assert_eq!(c.defaults.max_retries, Some(9));
        std::fs::write(dir.path().join("config.toml"), "oops = [\n").unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&dir.path().join("config.toml").display().to_string())
        );
    }
}
