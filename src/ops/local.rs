//! The operations on this login node: its state directory, its daemon and
//! its Slurm (every Slurm command under the one deadline the user chose).

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::{Banned, Context, Created, Ops, Removed, Requested, Result, Unbanned};
use crate::daemon::lease::StartedBy;
use crate::daemon::service;
use crate::fail;
use crate::model::RunId;
use crate::options::RunOptions;
use crate::policy::decide::Control;
use crate::policy::state::RunState;
use crate::slurm::{JobId, Slurm, SlurmCli, SlurmCliConfig};
use crate::store::runs::JournalEntry;
use crate::store::{RunDir, StateDir};
use crate::view::nodes::{NodesDoc, nodes_doc};
use crate::view::{RunDoc, UnknownRun, run_doc};

/// This login node's runs.
pub struct Local {
    sd: StateDir,
    slurm_timeout: Duration,
    /// The cluster's name, asked of Slurm once (bans are per cluster).
    cluster: OnceLock<String>,
}

/// What `submit` needs beyond the script: the run's options from the
/// command line (over the script's `#SHEPHERD` lines, over the
/// configuration's defaults) and how the daemon it starts polls.
pub struct Submission<'a> {
    pub script: &'a Path,
    pub options: RunOptions,
    /// The run's working directory (its jobs' `--chdir`).
    pub cwd: &'a Path,
    /// Refuse a script that cannot be launched (`--no-script-check` turns
    /// it off, for an interpreter that exists only on the compute nodes).
    pub check_script: bool,
    pub poll: Duration,
}

impl Local {
    pub fn new(sd: StateDir, slurm_timeout: Duration) -> Local {
        Local {
            sd,
            slurm_timeout,
            cluster: OnceLock::new(),
        }
    }

    /// Knows the cluster's name already (the TUI has read it).
    pub fn with_cluster(self, cluster: Option<String>) -> Local {
        if let Some(c) = cluster {
            let _ = self.cluster.set(c);
        }
        self
    }

    pub fn state_dir(&self) -> &StateDir {
        &self.sd
    }

    /// Slurm, with this session's deadline on every command.
    pub fn slurm(&self) -> SlurmCli {
        self.slurm_with(self.slurm_timeout)
    }

    fn slurm_with(&self, timeout: Duration) -> SlurmCli {
        SlurmCli::new(SlurmCliConfig {
            timeout,
            ..SlurmCliConfig::default()
        })
    }

    /// The cluster's name (Slurm's `ClusterName`).
    pub fn cluster(&self) -> Result<String> {
        if let Some(c) = self.cluster.get() {
            return Ok(c.clone());
        }
        let name = self
            .slurm()
            .cluster()
            .context("cannot learn the cluster's name")?
            .name;
        Ok(self.cluster.get_or_init(|| name).clone())
    }

    /// The run `id`, or [`UnknownRun`] with the ids close to it.
    pub fn find_run(&self, id: &str) -> Result<RunId> {
        let ids = self.sd.run_ids()?;
        if let Some(found) = ids.iter().find(|r| r.as_str() == id) {
            return Ok(found.clone());
        }
        Err(UnknownRun::among(id, &ids).into())
    }

    /// `shepherd SCRIPT`: checks and creates the run and makes sure a daemon
    /// watches it. `warn` hears what is said but not refused (as soon as it
    /// is known: a later refusal does not swallow it).
    pub fn submit(&self, s: Submission<'_>, warn: &mut dyn FnMut(&str)) -> Result<Created> {
        let sd = &self.sd;
        let (config, _) = crate::config::load(sd.root())?;
        let prepared = crate::submit::prepare(
            s.script,
            config.defaults.clone(),
            s.options,
            s.cwd,
            Timestamp::now(),
        )?;
        for warning in crate::submit::check_launch(s.script, &prepared, s.check_script)? {
            warn(&warning);
        }
        self.check_partitions(&prepared.spec.resources.partitions)?;
        let channels = config.channels().map_err(|e| anyhow::anyhow!(e))?;
        crate::notify::channels::for_run(&channels, prepared.spec.notify.as_deref())
            .map_err(|e| anyhow::anyhow!(e))?;
        let run = crate::submit::create(sd, &prepared)?;
        let (lease, started) = service::start(sd, s.poll, self.slurm_timeout, StartedBy::Command)
            .context(
            "the run was created, but the daemon could not be started; try `shepherd daemon start`",
        )?;
        Ok(Created {
            run_id: prepared.spec.run_id.to_string(),
            run_dir: run.path().to_path_buf(),
            daemon_pid: lease.pid,
            daemon_started: started,
        })
    }

    /// Pinned partitions must exist. When Slurm cannot be asked now, the run
    /// is created anyway: the daemon will meet sbatch's verdict.
    fn check_partitions(&self, pinned: &[String]) -> Result<()> {
        if pinned.is_empty() {
            return Ok(());
        }
        let slurm = self.slurm_with(self.slurm_timeout.min(Duration::from_secs(10)));
        let Ok(parts) = slurm.partitions() else {
            return Ok(());
        };
        let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        for p in pinned {
            if !names.contains(&p.as_str()) {
                fail!(
                    "unknown partition {p:?} in --partitions; this cluster has: {}",
                    names.join(", ")
                );
            }
        }
        Ok(())
    }

    /// `rm --force` of a run whose files cannot be read: its jobs are found
    /// by name (`shepherd.RUN.K` for every attempt directory, and the next
    /// one, in case it was being submitted) and cancelled. When Slurm cannot
    /// be asked, nothing is removed.
    fn cancel_jobs_of_unreadable_run(&self, dir: &RunDir, id: &RunId) -> Result<Vec<JobId>> {
        let mut attempts: Vec<u32> = std::fs::read_dir(dir.path().join("attempts"))
            .map(|entries| {
                entries
                    .filter_map(std::result::Result::ok)
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        attempts.push(attempts.iter().max().map_or(1, |m| m + 1));
        let names: Vec<String> = attempts
            .iter()
            .map(|k| crate::policy::decide::job_name_of(id, *k))
            .collect();
        let slurm = self.slurm();
        let live: Vec<JobId> = slurm
            .jobs_by_name(&names)
            .with_context(|| format!("cannot look for jobs of run {id}; nothing was removed"))?
            .into_iter()
            .filter(|j| !j.state.is_terminal())
            .map(|j| j.id)
            .collect();
        if !live.is_empty() {
            slurm.cancel(&live).with_context(|| {
                format!("cannot cancel the jobs of run {id}; nothing was removed")
            })?;
        }
        Ok(live)
    }

    /// Files a control request and starts a daemon if none runs.
    fn request(&self, id: &RunId, control: Control) -> Result<u32> {
        self.sd.run(id).request_control(control, Timestamp::now())?;
        let (lease, _) = service::start(
            &self.sd,
            service::default_poll_interval(),
            self.slurm_timeout,
            StartedBy::Command,
        )?;
        Ok(lease.pid)
    }
}

impl Ops for Local {
    fn list(&self) -> Result<Vec<RunDoc>> {
        Ok(crate::view::listing::run_docs(&self.sd)?)
    }

    fn status(&self, run: &str) -> Result<RunDoc> {
        let id = self.find_run(run)?;
        Ok(run_doc(&self.sd, &id))
    }

    fn events(&self, run: &str) -> Result<Vec<JournalEntry>> {
        let id = self.find_run(run)?;
        Ok(self.sd.run(&id).read_events()?)
    }

    fn control(&self, run: &str, control: Control) -> Result<Requested> {
        let id = self.find_run(run)?;
        let daemon_pid = self.request(&id, control)?;
        Ok(Requested {
            run_id: id.to_string(),
            control,
            daemon_pid,
        })
    }

    fn remove(&self, run: &str, force: bool, wait: Duration) -> Result<Removed> {
        let id = self.find_run(run)?;
        let dir = self.sd.run(&id);
        let still_active = |dir: &RunDir| -> Option<RunState> {
            match (dir.load_spec(), dir.load_state()) {
                (Ok(_), Ok(Some(st))) if !st.status.is_terminal() => Some(st),
                (Ok(spec), Ok(None)) => Some(RunState::new(spec.created_at)),
                _ => None,
            }
        };
        let mut cancelled = Vec::new();
        // A run whose files cannot be read (corrupt, or written by a newer
        // Shepherd) may still have a live job that no daemon can see any more.
        if let Err(e) = dir.load_spec().and_then(|_| dir.load_state()) {
            if !force {
                fail!(
                    "run {id} cannot be read ({e}), so Shepherd cannot tell whether its job still runs; \
                     `shepherd rm --force {id}` cancels any job of it still in Slurm, then removes it \
                     (or upgrade shepherd if a newer one wrote it)"
                );
            }
            cancelled = self.cancel_jobs_of_unreadable_run(&dir, &id)?;
        }
        if let Some(st) = still_active(&dir) {
            if !force {
                fail!(
                    "run {id} is {} ({}); stop it first with `shepherd stop {id}`, or remove it with `shepherd rm --force {id}`",
                    st.status.as_str(),
                    st.reason
                );
            }
            self.request(&id, Control::Stop)?;
            let deadline = Instant::now() + wait;
            while still_active(&dir).is_some() {
                if Instant::now() >= deadline {
                    fail!(
                        "the daemon did not stop run {id} within {}; nothing was removed (see `shepherd daemon status`)",
                        crate::duration::format(wait)
                    );
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        self.sd
            .remove_run(&id)
            .with_context(|| format!("cannot remove run {id}"))?;
        Ok(Removed {
            run_id: id.to_string(),
            cancelled: cancelled.into_iter().map(|j| j.0).collect(),
        })
    }

    fn ban(&self, node: &str, ttl: Option<Duration>, reason: &str) -> Result<Banned> {
        let cluster = self.cluster()?;
        let known = self.slurm().nodes()?;
        if !known.iter().any(|n| n.name == node) {
            fail!("cluster {cluster} has no node {node:?}; `shepherd nodes` lists them");
        }
        let now = Timestamp::now();
        self.sd
            .update_blacklist(&cluster, |bl| bl.ban(node, reason, ttl, now))
            .context("cannot update the blacklist")?;
        Ok(Banned {
            node: node.to_string(),
            cluster: Some(cluster),
            ttl,
        })
    }

    fn unban(&self, node: &str) -> Result<Unbanned> {
        let cluster = self.cluster()?;
        let was = self
            .sd
            .update_blacklist(&cluster, |bl| bl.unban(node))
            .context("cannot update the blacklist")?;
        Ok(Unbanned {
            node: node.to_string(),
            was_banned: Some(was),
        })
    }

    fn nodes(&self) -> Result<NodesDoc> {
        let slurm = self.slurm();
        let cluster = self.cluster()?;
        let nodes = slurm.nodes()?;
        // Without a topology plugin there are no switches; not an error.
        let switches = slurm.topology().unwrap_or_default();
        let bl = self.sd.load_blacklist(&cluster)?;
        Ok(nodes_doc(
            &cluster,
            &nodes,
            &switches,
            &bl,
            Timestamp::now(),
        ))
    }
}
