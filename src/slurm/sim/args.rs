//! sbatch's arguments as the simulator reads them: the command line and the
//! script's `#SBATCH` lines, and Slurm's refusals in its own words.

use super::*;

/// A refusal in Slurm's words: an optional first line, then the sentence
/// after "Batch job submission failed:".
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) kind: Rejection,
    pub(super) note: Option<String>,
    pub(super) sentence: Option<&'static str>,
}

impl Refusal {
    pub(super) fn new(kind: Rejection, sentence: &'static str) -> Refusal {
        Refusal {
            kind,
            note: None,
            sentence: Some(sentence),
        }
    }

    /// A refusal sbatch prints before contacting the controller.
    fn early(kind: Rejection, note: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            note: Some(note.into()),
            sentence: None,
        }
    }

    pub(super) fn invalid_node() -> Refusal {
        Refusal::new(Rejection::InvalidNodeName, "Invalid node name specified")
    }

    pub(super) fn note(mut self, note: impl Into<String>) -> Refusal {
        self.note = Some(note.into());
        self
    }

    pub(super) fn sentence(&self) -> String {
        match (self.sentence, &self.note) {
            (Some(s), _) => s.to_string(),
            (None, Some(n)) => n.clone(),
            (None, None) => String::new(),
        }
    }

    pub(super) fn error(&self, command: &str) -> SlurmError {
        let mut lines = Vec::new();
        if let Some(note) = &self.note {
            lines.push(format!("sbatch: error: {note}"));
        }
        if let Some(sentence) = self.sentence {
            lines.push(format!(
                "sbatch: error: Batch job submission failed: {sentence}"
            ));
        }
        SlurmError::Rejected {
            command: command.to_string(),
            kind: self.kind,
            message: lines.join("\n"),
        }
    }
}

/// The sbatch options the sim models; the last occurrence wins, as in sbatch.
#[derive(Debug, Clone, Default)]
pub(super) struct Args {
    pub(super) partitions: Option<Vec<String>>,
    pub(super) name: Option<String>,
    /// `--gres=gpu[:TYPE][:N]`, per node.
    pub(super) gres: Option<(Option<String>, u32)>,
    /// `--gpus-per-node=[TYPE:]N`.
    pub(super) gpus_per_node: Option<(Option<String>, u32)>,
    /// `--gpus=[TYPE:]N`, for the whole job.
    pub(super) gpus_total: Option<(Option<String>, u32)>,
    pub(super) nodes: Option<u32>,
    pub(super) ntasks: Option<u32>,
    pub(super) cpus_per_task: Option<u32>,
    pub(super) mem_mb: Option<u64>,
    pub(super) exclude: Option<Vec<String>>,
    pub(super) nodelist: Option<Vec<String>>,
    pub(super) time: Option<TimeReq>,
    pub(super) constraint: Option<String>,
    pub(super) requeue: Option<bool>,
    /// Everything else, verbatim.
    pub(super) ignored: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Partition,
    JobName,
    Time,
    Gres,
    Gpus,
    GpusPerNode,
    Nodes,
    Ntasks,
    CpusPerTask,
    Mem,
    Exclude,
    Nodelist,
    Constraint,
    Requeue,
    NoRequeue,
    /// An option the sim ignores, taking a value or not.
    Ignored {
        value: bool,
    },
}

/// sbatch's long options that take a value and that the sim ignores, so that
/// `--output FILE` does not leave `FILE` behind as a stray argument.
const IGNORED_WITH_VALUE: &[&str] = &[
    "account",
    "acctg-freq",
    "array",
    "batch",
    "bb",
    "bbf",
    "begin",
    "chdir",
    "cluster-constraint",
    "clusters",
    "comment",
    "container",
    "core-spec",
    "cores-per-socket",
    "cpu-freq",
    "cpus-per-gpu",
    "deadline",
    "delay-boot",
    "dependency",
    "distribution",
    "error",
    "export",
    "export-file",
    "extra-node-info",
    "gid",
    "gpu-bind",
    "gpu-freq",
    "gpus-per-socket",
    "gpus-per-task",
    "gres-flags",
    "hint",
    "input",
    "licenses",
    "mail-type",
    "mail-user",
    "mcs-label",
    "mem-bind",
    "mem-per-cpu",
    "mem-per-gpu",
    "mincpus",
    "network",
    "nodefile",
    "ntasks-per-core",
    "ntasks-per-gpu",
    "ntasks-per-node",
    "ntasks-per-socket",
    "open-mode",
    "output",
    "partition-prefer",
    "power",
    "prefer",
    "priority",
    "profile",
    "qos",
    "reservation",
    "signal",
    "sockets-per-node",
    "switches",
    "thread-spec",
    "threads-per-core",
    "time-min",
    "tmp",
    "tres-per-task",
    "uid",
    "wckey",
    "wrap",
];

fn long_option(name: &str) -> Opt {
    match name {
        "partition" => Opt::Partition,
        "job-name" => Opt::JobName,
        "time" => Opt::Time,
        "gres" => Opt::Gres,
        "gpus" => Opt::Gpus,
        "gpus-per-node" => Opt::GpusPerNode,
        "nodes" => Opt::Nodes,
        "ntasks" => Opt::Ntasks,
        "cpus-per-task" => Opt::CpusPerTask,
        "mem" => Opt::Mem,
        "exclude" => Opt::Exclude,
        "nodelist" => Opt::Nodelist,
        "constraint" => Opt::Constraint,
        "requeue" => Opt::Requeue,
        "no-requeue" => Opt::NoRequeue,
        other => Opt::Ignored {
            value: IGNORED_WITH_VALUE.contains(&other),
        },
    }
}

fn short_option(c: char) -> Opt {
    match c {
        'p' => Opt::Partition,
        'J' => Opt::JobName,
        't' => Opt::Time,
        'G' => Opt::Gpus,
        'N' => Opt::Nodes,
        'n' => Opt::Ntasks,
        'c' => Opt::CpusPerTask,
        'x' => Opt::Exclude,
        'w' => Opt::Nodelist,
        'C' => Opt::Constraint,
        'A' | 'a' | 'B' | 'D' | 'd' | 'e' | 'F' | 'i' | 'L' | 'M' | 'm' | 'o' | 'q' | 'S' => {
            Opt::Ignored { value: true }
        }
        _ => Opt::Ignored { value: false },
    }
}

/// The job's name, its effective arguments (`#SBATCH` lines, then the
/// command line, which wins) and what they ask for.
pub(super) fn read_request(
    request: &SubmitRequest,
    command: &str,
) -> Result<(String, Vec<String>, Args), SlurmError> {
    let (text, default_name) = match &request.script {
        ScriptSource::Text(text) => (text.clone(), "sbatch".to_string()),
        ScriptSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|_| SlurmError::Failed {
                command: command.to_string(),
                status: "exit 1".to_string(),
                message: format!("sbatch: error: Unable to open file {}", path.display()),
            })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "sbatch".to_string());
            (text, name)
        }
    };
    let mut args = script_directives(&text);
    args.extend(request.args.iter().cloned());
    let parsed = parse_args(&args).map_err(|r| r.error(command))?;
    let name = parsed.name.clone().unwrap_or(default_name);
    Ok((name, args, parsed))
}

/// `#SBATCH` lines up to the first command, as sbatch reads them.
pub(super) fn script_directives(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("#SBATCH") {
            if rest.starts_with(char::is_whitespace) {
                out.extend(
                    rest.split_whitespace()
                        .take_while(|w| !w.starts_with('#'))
                        .map(str::to_string),
                );
            }
        } else if !line.starts_with('#') {
            break;
        }
    }
    out
}

fn parse_args(args: &[String]) -> Result<Args, Refusal> {
    let mut a = Args::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let (opt, inline) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((name, value)) => (long_option(name), Some(value)),
                None => (long_option(long), None),
            }
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut chars = short.chars();
            let c = chars.next().expect("not empty");
            let rest = chars.as_str();
            let rest = rest.strip_prefix('=').unwrap_or(rest);
            (short_option(c), (!rest.is_empty()).then_some(rest))
        } else {
            a.ignored.push(arg.clone());
            continue;
        };
        let value = match opt {
            Opt::Requeue | Opt::NoRequeue | Opt::Ignored { value: false } => None,
            _ => match inline {
                Some(v) => Some(v.to_string()),
                None => {
                    let v = args.get(i).ok_or_else(|| {
                        Refusal::early(
                            Rejection::InvalidRequest,
                            format!("invalid option: {arg} requires an argument"),
                        )
                    })?;
                    i += 1;
                    Some(v.clone())
                }
            },
        };
        let value = value.unwrap_or_default();
        let bad_gres = || {
            Refusal::new(
                Rejection::InvalidRequest,
                "Invalid generic resource (gres) specification",
            )
        };
        let bad_value = || {
            Refusal::early(
                Rejection::InvalidRequest,
                format!("invalid option value: {arg} {value}"),
            )
        };
        match opt {
            Opt::Partition => a.partitions = Some(split_list(&value)),
            Opt::JobName => a.name = Some(value.clone()),
            Opt::Time => {
                a.time = Some(parse_time(&value).ok_or_else(|| {
                    Refusal::early(Rejection::InvalidRequest, "Invalid --time specification")
                })?)
            }
            Opt::Gres => a.gres = Some(parse_gres(&value).ok_or_else(bad_gres)?),
            Opt::Gpus => a.gpus_total = Some(parse_gpu_count(&value).ok_or_else(bad_gres)?),
            Opt::GpusPerNode => {
                a.gpus_per_node = Some(parse_gpu_count(&value).ok_or_else(bad_gres)?)
            }
            Opt::Nodes => {
                // `-N 2-4`: the sim takes the minimum.
                let min = value.split('-').next().unwrap_or("");
                a.nodes = Some(min.parse().ok().filter(|&n| n > 0).ok_or_else(bad_value)?);
            }
            Opt::Ntasks => {
                a.ntasks = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(bad_value)?,
                )
            }
            Opt::CpusPerTask => {
                a.cpus_per_task = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(bad_value)?,
                )
            }
            Opt::Mem => a.mem_mb = Some(parse_mem(&value).ok_or_else(bad_value)?),
            Opt::Exclude => a.exclude = Some(split_top_level(&value)),
            Opt::Nodelist => a.nodelist = Some(split_top_level(&value)),
            Opt::Constraint => a.constraint = Some(value.clone()),
            Opt::Requeue => a.requeue = Some(true),
            Opt::NoRequeue => a.requeue = Some(false),
            Opt::Ignored { value: takes } => {
                a.ignored.push(arg.clone());
                if takes && inline.is_none() {
                    a.ignored.push(value.clone());
                }
            }
        }
    }
    Ok(a)
}

/// `a100,a6000` → `["a100", "a6000"]`.
pub(super) fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Keeps host list brackets whole (`a100-[1-2],cpu-1` is one item per
/// top-level comma); items are expanded when resolved.
pub(super) fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut item = String::new();
    for c in s.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                if !item.trim().is_empty() {
                    out.push(item.trim().to_string());
                }
                item.clear();
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    if !item.trim().is_empty() {
        out.push(item.trim().to_string());
    }
    out
}

/// Slurm's time formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`,
/// `UNLIMITED`/`INFINITE`. Slurm keeps whole minutes, rounding seconds up; 0
/// means no limit.
pub(super) fn parse_time(s: &str) -> Option<TimeReq> {
    let s = s.trim();
    if matches!(
        s.to_ascii_uppercase().as_str(),
        "UNLIMITED" | "INFINITE" | "-1"
    ) {
        return Some(TimeReq::Unlimited);
    }
    let (days, rest) = match s.split_once('-') {
        Some((d, rest)) => (Some(d.parse::<u64>().ok()?), rest),
        None => (None, s),
    };
    let parts: Vec<u64> = rest
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let secs = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(d), [h]) => d * 86_400 + h * 3600,
        (Some(d), [h, m]) => d * 86_400 + h * 3600 + m * 60,
        (Some(d), [h, m, s]) => d * 86_400 + h * 3600 + m * 60 + s,
        _ => return None,
    };
    Some(if secs == 0 {
        TimeReq::Unlimited
    } else {
        TimeReq::Minutes(secs.div_ceil(60))
    })
}

/// `--gres=gpu`, `gpu:N`, `gpu:TYPE`, `gpu:TYPE:N` (per node). Only `gpu`
/// exists on the cluster (`GresTypes=gpu`).
pub(super) fn parse_gres(s: &str) -> Option<(Option<String>, u32)> {
    let mut gpus = None;
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let parts: Vec<&str> = item.split(':').collect();
        gpus = Some(match parts.as_slice() {
            ["gpu"] => (None, 1),
            ["gpu", x] => match x.parse() {
                Ok(n) => (None, n),
                Err(_) => (Some(x.to_string()), 1),
            },
            ["gpu", kind, n] => (Some(kind.to_string()), n.parse().ok()?),
            _ => return None,
        });
    }
    gpus
}

/// `--gpus=N`, `--gpus=TYPE:N`.
pub(super) fn parse_gpu_count(s: &str) -> Option<(Option<String>, u32)> {
    match s.trim().split_once(':') {
        Some((kind, n)) => Some((Some(kind.to_string()), n.parse().ok()?)),
        None => Some((None, s.trim().parse().ok()?)),
    }
}

/// `--mem=16000`, `16000M`, `16G`, `1T`, `512K`: megabytes.
pub(super) fn parse_mem(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits.parse().ok()?;
    match unit.to_ascii_uppercase().as_str() {
        "" | "M" => Some(n),
        "K" => Some(n.div_ceil(1024)),
        "G" => n.checked_mul(1024),
        "T" => n.checked_mul(1024 * 1024),
        _ => None,
    }
}

/// `--constraint=a&b` (all), `a|b` (any), `a,b` (all). Counts and brackets
/// are not modelled and read as an unknown feature.
pub(super) fn parse_constraint(s: &str) -> Option<Vec<Vec<String>>> {
    let alts: Vec<Vec<String>> = s
        .split('|')
        .map(|alt| {
            alt.split(['&', ','])
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    (!alts.is_empty() && alts.iter().all(|a| !a.is_empty())).then_some(alts)
}
