//! GPU probes, run before the workload starts.
//!
//! Each probe is a pure decision over what a tool printed plus what the job
//! should see ([`judge_listing`]), and a thin runner around it
//! ([`visibility`]) that runs the tool with a deadline.
//!
//! Every probe concludes one of three things ([`ProbeStatus`]): *healthy*,
//! *faulty* (positive evidence only: an error line from nvidia-smi naming a
//! GPU failure, a GPU missing, an uncorrectable ECC count, …) or
//! *inconclusive* (the tool is missing, refused the question, printed
//! something this version does not understand, or did not answer in time).
//! Only a faulty probe blames the node: the wrapper then ends the attempt
//! without starting the workload. An inconclusive one is recorded and the
//! probing goes on. A false verdict is worse than none.
//!
//! The probes, in the order they run ([`ALL`]; [`run_all`] stops at the first
//! faulty one):
//!
//! - `visibility`: `nvidia-smi -L` lists the GPUs Slurm handed the job
//!   (`CUDA_VISIBLE_DEVICES`);
//! - `health`: `nvidia-smi -q -d ECC,PAGE_RETIREMENT,ROW_REMAPPER` on those
//!   GPUs shows no volatile uncorrectable ECC error, no pending page
//!   retirement and no pending or failed row remapping;
//! - `processes`: no compute process already runs on those GPUs;
//! - `cuda`: a tiny PyTorch kernel on every visible device, when `torch` is
//!   importable (else recorded as skipped).

use std::time::{Duration, Instant};

use crate::proc::{Invocation, Output, ProcError};
use crate::records::{ProbeResult, ProbeStatus};

/// Why a probe did not conclude *healthy*.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Positive evidence that the node is broken.
    Faulty(String),
    /// The question could not be asked, or the answer was not understood.
    Inconclusive(String),
}

impl Problem {
    pub fn detail(&self) -> &str {
        match self {
            Problem::Faulty(d) | Problem::Inconclusive(d) => d,
        }
    }

    /// The detail of a faulty verdict; panics on an inconclusive one.
    #[cfg(test)]
    pub fn faulty(self) -> String {
        match self {
            Problem::Faulty(d) => d,
            Problem::Inconclusive(d) => panic!("inconclusive, not faulty: {d}"),
        }
    }

    /// The detail of an inconclusive verdict; panics on a faulty one.
    #[cfg(test)]
    pub fn inconclusive(self) -> String {
        match self {
            Problem::Inconclusive(d) => d,
            Problem::Faulty(d) => panic!("faulty, not inconclusive: {d}"),
        }
    }
}

/// A probe's verdict: `Ok(detail)` is healthy.
pub type Judged = Result<String, Problem>;

fn faulty<T>(detail: String) -> Result<T, Problem> {
    Err(Problem::Faulty(bound(detail)))
}

fn inconclusive<T>(detail: String) -> Result<T, Problem> {
    Err(Problem::Inconclusive(bound(detail)))
}

pub use crate::model::probes::{ALL, CUDA, HEALTH, PROCESSES, VISIBILITY, check_names};

/// How long the `cuda` probe may take: importing torch and creating a CUDA
/// context per device takes seconds, not minutes.
pub const CUDA_TIMEOUT: Duration = Duration::from_secs(60);

/// What the `cuda` probe records when no framework can be imported.
pub const CUDA_SKIPPED: &str =
    "skipped: no CUDA framework available (torch not importable); no kernel launch checked";

/// How long `nvidia-smi -L` may take. A healthy node answers in well under a
/// second; a GPU that fell off the bus can make it hang for minutes.
pub const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(20);

/// Probe details are bounded so that a chatty tool cannot bloat the outcome.
const MAX_DETAIL: usize = 400;

/// What the job should see, from `CUDA_VISIBLE_DEVICES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The entries of `CUDA_VISIBLE_DEVICES`, in order: indices (`0`),
    /// GPU UUIDs (`GPU-…`) or MIG instance UUIDs (`MIG-…`).
    pub devices: Vec<String>,
    /// The entries are MIG instances: count `nvidia-smi -L`'s MIG lines.
    pub mig: bool,
}

impl Expectation {
    pub fn count(&self) -> usize {
        self.devices.len()
    }
}

/// Reads `CUDA_VISIBLE_DEVICES` for a job that asked for `requested` GPUs.
///
/// Unset, empty, `NoDevFiles` (Slurm found no device files for the
/// allocation) and a leading `-1` (hides every GPU from CUDA) all mean the job
/// would run without GPUs: an error naming what was seen.
pub fn expectation(
    cuda_visible_devices: Option<&str>,
    requested: u32,
) -> Result<Expectation, String> {
    let asked = format!("the job asked for {requested} GPU(s)");
    let Some(value) = cuda_visible_devices else {
        return Err(format!(
            "CUDA_VISIBLE_DEVICES is not set, but {asked}: Slurm gave the job no GPU"
        ));
    };
    let devices: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    match devices.first().map(String::as_str) {
        None => Err(format!(
            "CUDA_VISIBLE_DEVICES is empty, but {asked}: Slurm gave the job no GPU"
        )),
        Some("NoDevFiles") => Err(format!(
            "CUDA_VISIBLE_DEVICES=NoDevFiles, but {asked}: Slurm found no GPU device files on this node"
        )),
        Some(first) if first.starts_with('-') => Err(format!(
            "CUDA_VISIBLE_DEVICES={value} hides every GPU, but {asked}"
        )),
        Some(_) => {
            let mig = devices.iter().any(|d| d.starts_with("MIG-"));
            Ok(Expectation { devices, mig })
        }
    }
}

/// One device line of `nvidia-smi -L`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// `NVIDIA A100-SXM4-80GB`, or the MIG profile (`MIG 1g.10gb`).
    pub name: String,
    /// `GPU-…` / `MIG-…`, when printed.
    pub uuid: Option<String>,
    /// nvidia-smi's index of the GPU (`GPU 2: …`); for a MIG instance, that of
    /// the GPU it belongs to.
    pub index: Option<u32>,
}

/// What `nvidia-smi -L` printed, sorted into GPUs, MIG instances and errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub gpus: Vec<Listed>,
    pub migs: Vec<Listed>,
    /// Lines in which nvidia-smi reports a broken GPU or driver.
    pub errors: Vec<String>,
    /// Other non-empty lines (not understood).
    pub other: Vec<String>,
}

/// Sorts `nvidia-smi -L` output:
///
/// ```text
/// GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-5b6a…)
///   MIG 1g.10gb     Device  0: (UUID: MIG-2a1b…)
/// Unable to determine the device handle for GPU0000:41:00.0: Unknown Error
/// ```
pub fn parse_listing(stdout: &str) -> Listing {
    let mut listing = Listing::default();
    let mut gpu_index = None;
    for line in stdout.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("GPU ")
            && let Some((index, rest)) = rest.split_once(':')
            && !index.is_empty()
            && index.chars().all(|c| c.is_ascii_digit())
        {
            let (name, uuid) = split_uuid(rest);
            gpu_index = index.parse().ok();
            listing.gpus.push(Listed {
                name,
                uuid,
                index: gpu_index,
            });
        } else if line.starts_with("MIG ") && line.contains("Device") {
            let (head, uuid) = split_uuid(line);
            let name = head
                .split_once("Device")
                .map_or(head.as_str(), |(profile, _)| profile)
                .trim()
                .to_string();
            listing.migs.push(Listed {
                name,
                uuid,
                index: gpu_index,
            });
        } else if is_error_line(line) {
            listing.errors.push(line.to_string());
        } else if !line.is_empty() {
            listing.other.push(line.to_string());
        }
    }
    listing
}

/// `NAME (UUID: X)` → (`NAME`, `Some(X)`).
fn split_uuid(s: &str) -> (String, Option<String>) {
    match s.rsplit_once("(UUID:") {
        Some((name, uuid)) => {
            let uuid = uuid.trim().trim_end_matches(')').trim();
            (
                name.trim().to_string(),
                (!uuid.is_empty()).then(|| uuid.to_string()),
            )
        }
        None => (s.trim().to_string(), None),
    }
}

/// nvidia-smi (or CUDA) names a broken GPU or driver in this line. These are
/// positive evidence: on a node that advertises GPUs through Slurm's GRES,
/// "couldn't communicate with the NVIDIA driver" or "No devices were found"
/// means no CUDA program can run there.
fn is_error_line(line: &str) -> bool {
    const SIGNS: &[&str] = &[
        "unable to determine the device handle",
        "unknown error",
        "gpu is lost",
        "fallen off the bus",
        "nvidia-smi has failed",
        "no devices were found",
        "failed to initialize nvml",
        "driver/library version mismatch",
    ];
    let l = line.to_ascii_lowercase();
    SIGNS.iter().any(|s| l.contains(s))
}

/// Decides the `visibility` probe: healthy when every GPU the job should see
/// is listed; faulty on an error line or a GPU missing; inconclusive when
/// nvidia-smi printed no line this version understands.
///
/// `nvidia-smi` ignores `CUDA_VISIBLE_DEVICES`: it lists every GPU the job's
/// cgroup lets it open (all of the node's GPUs where Slurm does not constrain
/// devices). So the check is "at least as many as expected", and, where the
/// job was given UUIDs, "each of those UUIDs is listed".
pub fn judge_listing(listing: &Listing, expect: &Expectation) -> Judged {
    if let Some(first) = listing.errors.first() {
        let more = match listing.errors.len() {
            1 => String::new(),
            n => format!(" (and {} more error lines)", n - 1),
        };
        return faulty(format!("nvidia-smi reports: {first}{more}"));
    }
    // Lines, but not one understood: a format this version does not know.
    // (Nothing at all, with a successful exit, is nvidia-smi listing no
    // GPU: judged below like any missing GPU.)
    if listing.gpus.is_empty()
        && listing.migs.is_empty()
        && let Some(line) = listing.other.first()
    {
        return inconclusive(format!(
            "nvidia-smi -L printed no GPU line this version understands: {line}"
        ));
    }
    let (kind, listed) = if expect.mig {
        ("MIG instance", &listing.migs)
    } else {
        ("GPU", &listing.gpus)
    };
    let wanted = expect.devices.join(",");
    if listed.len() < expect.count() {
        return faulty(format!(
            "nvidia-smi lists {} {kind}(s), the job should see {} (CUDA_VISIBLE_DEVICES={wanted})",
            listed.len(),
            expect.count(),
        ));
    }
    let missing: Vec<&str> = expect
        .devices
        .iter()
        .filter(|d| d.starts_with("GPU-") || d.starts_with("MIG-"))
        .filter(|d| {
            !listed
                .iter()
                .any(|l| l.uuid.as_deref().is_some_and(|u| u.starts_with(d.as_str())))
        })
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return faulty(format!(
            "nvidia-smi does not list {} (CUDA_VISIBLE_DEVICES={wanted})",
            missing.join(", ")
        ));
    }
    let mut models: Vec<&str> = listing.gpus.iter().map(|g| g.name.as_str()).collect();
    models.dedup();
    Ok(bound(format!(
        "{} {kind}(s) expected (CUDA_VISIBLE_DEVICES={wanted}), {} listed: {}",
        expect.count(),
        listed.len(),
        models.join(", ")
    )))
}

fn bound(mut s: String) -> String {
    if s.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Runs the `visibility` probe: `PROGRAM -L` within `timeout`, judged against
/// `CUDA_VISIBLE_DEVICES` for a job that asked for `requested` GPUs.
///
/// `program` is `nvidia-smi` (found on `PATH`) outside tests. The value of
/// `CUDA_VISIBLE_DEVICES` is passed to it explicitly, so that a fake
/// `nvidia-smi` (the test cluster's) sees what the wrapper judged.
pub fn visibility(
    program: &str,
    cuda_visible_devices: Option<&str>,
    requested: u32,
    timeout: Duration,
) -> ProbeResult {
    timed(VISIBILITY, || {
        let (listing, expect) = list(program, cuda_visible_devices, requested, timeout)?;
        judge_listing(&listing, &expect)
    })
}

/// Runs `f` and records its verdict and duration as probe `name`.
fn timed(name: &str, f: impl FnOnce() -> Judged) -> ProbeResult {
    let started = Instant::now();
    let verdict = f();
    let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (status, detail) = match verdict {
        Ok(detail) => (ProbeStatus::Healthy, detail),
        Err(Problem::Faulty(detail)) => (ProbeStatus::Faulty, detail),
        Err(Problem::Inconclusive(detail)) => (ProbeStatus::Inconclusive, detail),
    };
    ProbeResult::new(name, status, detail, millis)
}

/// Runs `PROGRAM ARGS…` within `timeout` with `CUDA_VISIBLE_DEVICES` set as
/// given (nvidia-smi ignores it; a fake one may use it). A missing program
/// and a timeout are inconclusive (the runner keeps no partial output, so a
/// timeout carries no error line); so is a non-zero exit without an error
/// line (an option this driver refuses); a non-zero exit with one is faulty.
fn run_tool(
    program: &str,
    args: &[&str],
    cuda_visible_devices: Option<&str>,
    timeout: Duration,
) -> Result<Output, Problem> {
    let out = run_tool_raw(program, args, cuda_visible_devices, timeout)?;
    if !out.success() {
        return Err(failed_call(&out, &shown(program, args)));
    }
    Ok(out)
}

/// `nvidia-smi -q`, for messages.
fn shown(program: &str, args: &[&str]) -> String {
    if args.is_empty() {
        program.to_string()
    } else {
        format!("{program} {}", args[0])
    }
}

/// A call that exited non-zero: faulty with an error line, else inconclusive.
fn failed_call(out: &Output, shown: &str) -> Problem {
    let message = out.message();
    let message = if message.is_empty() {
        "no output".to_string()
    } else {
        message.lines().take(3).collect::<Vec<_>>().join(" / ")
    };
    let detail = bound(format!("{shown} failed ({}): {message}", out.status_text()));
    if error_lines(out).is_empty() {
        Problem::Inconclusive(detail)
    } else {
        Problem::Faulty(detail)
    }
}

/// [`run_tool`] without judging the exit status.
fn run_tool_raw(
    program: &str,
    args: &[&str],
    cuda_visible_devices: Option<&str>,
    timeout: Duration,
) -> Result<Output, Problem> {
    let mut inv = Invocation::new(program, timeout).args(args);
    if let Some(cvd) = cuda_visible_devices {
        inv.env.push(("CUDA_VISIBLE_DEVICES".into(), cvd.into()));
    }
    let shown = shown(program, args);
    inv.run().map_err(|e| {
        Problem::Inconclusive(bound(match e {
            ProcError::NotFound { source, .. } => {
                format!("cannot run {program}: {source} (is the NVIDIA driver installed?)")
            }
            ProcError::TimedOut { after, .. } => {
                format!("{shown} did not answer within {after:?}")
            }
            other => format!("{shown}: {other}"),
        }))
    })
}

/// Error lines on stdout or stderr (nvidia-smi may report a broken GPU and
/// still exit 0).
fn error_lines(out: &Output) -> Vec<String> {
    out.stdout
        .lines()
        .chain(out.stderr.lines())
        .map(str::trim)
        .filter(|l| is_error_line(l))
        .map(str::to_string)
        .collect()
}

/// `nvidia-smi -L`, parsed, and what the job should see.
fn list(
    program: &str,
    cuda_visible_devices: Option<&str>,
    requested: u32,
    timeout: Duration,
) -> Result<(Listing, Expectation), Problem> {
    // Slurm gave a GPU job no GPU on this node: its GRES are broken.
    let expect = expectation(cuda_visible_devices, requested).map_err(Problem::Faulty)?;
    let out = run_tool(program, &["-L"], cuda_visible_devices, timeout)?;
    let mut listing = parse_listing(&out.stdout);
    // Errors may come on stderr while the exit status still says success.
    listing.errors.extend(
        out.stderr
            .lines()
            .map(str::trim)
            .filter(|l| is_error_line(l))
            .map(str::to_string),
    );
    Ok((listing, expect))
}

/// The job's GPUs as nvidia-smi names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobGpus {
    /// UUIDs (`GPU-…`) of the physical GPUs, or their index where nvidia-smi
    /// printed no UUID; for MIG instances, the GPUs they belong to. No
    /// duplicates.
    pub ids: Vec<String>,
    /// The job was given MIG instances.
    pub mig: bool,
}

/// Finds the physical GPUs behind `CUDA_VISIBLE_DEVICES` in the listing:
/// UUIDs (or unique prefixes) by UUID, MIG instances by the GPU line above
/// them, indices by `GPU N:`. Where nvidia-smi renumbers the GPUs of a
/// device-constrained job, index N is the Nth listed GPU if exactly as many
/// are listed as the job should see.
pub fn job_gpus(listing: &Listing, expect: &Expectation) -> Result<JobGpus, String> {
    let id_of = |g: &Listed| {
        g.uuid
            .clone()
            .or_else(|| g.index.map(|i| i.to_string()))
            .unwrap_or_default()
    };
    let by_index = |i: Option<u32>| listing.gpus.iter().find(|g| i.is_some() && g.index == i);
    let mut ids: Vec<String> = Vec::new();
    for (pos, d) in expect.devices.iter().enumerate() {
        let found = if d.starts_with("GPU-") {
            listing
                .gpus
                .iter()
                .find(|g| g.uuid.as_deref().is_some_and(|u| u.starts_with(d.as_str())))
        } else if d.starts_with("MIG-") {
            listing
                .migs
                .iter()
                .find(|m| m.uuid.as_deref().is_some_and(|u| u.starts_with(d.as_str())))
                .and_then(|m| by_index(m.index))
        } else if let Ok(i) = d.parse::<u32>() {
            by_index(Some(i)).or_else(|| {
                (listing.gpus.len() == expect.count())
                    .then(|| listing.gpus.get(pos))
                    .flatten()
            })
        } else {
            None
        };
        let Some(gpu) = found else {
            return Err(bound(format!(
                "cannot tell which GPU CUDA_VISIBLE_DEVICES entry {d} is: nvidia-smi -L lists {}",
                listing
                    .gpus
                    .iter()
                    .map(id_of)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let id = id_of(gpu);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(JobGpus {
        ids,
        mig: expect.mig,
    })
}

// ------------------------------------------------------------------ health

/// One `GPU 00000000:07:00.0` section of `nvidia-smi -q -d ECC,…`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuHealth {
    /// The section's PCI bus id.
    pub gpu: String,
    /// What is wrong, one entry each.
    pub problems: Vec<String>,
    /// The driver reported at least one volatile ECC count (not `N/A`).
    pub ecc_counted: bool,
    /// At least one line of the section was one this version understands
    /// (under `ECC Mode`, `ECC Errors`, `Retired Pages`, `Remapped Rows`).
    pub understood: bool,
}

/// Parses `nvidia-smi -q -d ECC,PAGE_RETIREMENT,ROW_REMAPPER` by its
/// indentation, one [`GpuHealth`] per GPU section. Counted as problems:
///
/// - non-zero counts under `ECC Errors` → `Volatile` in an `… Uncorrectable…`
///   line (`DRAM Uncorrectable`, `SRAM Uncorrectable`, newer drivers) or under
///   `Double Bit` (older drivers);
/// - `Pending Page Blacklist : Yes` / `Pending : Yes` under `Retired Pages`;
/// - `Pending : Yes` / `Remapping Failure Occurred : Yes` under
///   `Remapped Rows`.
///
/// `N/A` (ECC off, a consumer GPU, a feature the GPU lacks) is no problem.
pub fn parse_health(stdout: &str) -> Vec<GpuHealth> {
    let mut gpus: Vec<GpuHealth> = Vec::new();
    // (indent, section name) of the enclosing sections, outermost first.
    let mut path: Vec<(usize, String)> = Vec::new();
    for raw in stdout.lines() {
        let text = raw.trim();
        if text.is_empty() || text.starts_with("==") {
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        while path.last().is_some_and(|(i, _)| *i >= indent) {
            path.pop();
        }
        let (key, value) = match text.split_once(" : ") {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => match text.strip_suffix(':') {
                Some(k) if k.ends_with(' ') => (k.trim(), Some("")),
                _ => (text, None),
            },
        };
        let Some(value) = value else {
            // A section header.
            if let Some(bus) = key.strip_prefix("GPU ")
                && !bus.is_empty()
                && !bus.contains(' ')
            {
                path.clear();
                gpus.push(GpuHealth {
                    gpu: bus.to_string(),
                    ..GpuHealth::default()
                });
            }
            path.push((indent, key.to_string()));
            continue;
        };
        let Some(gpu) = gpus.last_mut() else {
            continue;
        };
        let within = |name: &str| path.iter().any(|(_, s)| s == name);
        if key == "Remapped Rows"
            || ["ECC Mode", "ECC Errors", "Retired Pages", "Remapped Rows"]
                .iter()
                .any(|s| within(s))
        {
            gpu.understood = true;
        }
        let yes = value.eq_ignore_ascii_case("yes");
        if within("ECC Errors") && within("Volatile") {
            let double_bit = within("Double Bit");
            let count = value.parse::<u64>().ok();
            if count.is_some() {
                gpu.ecc_counted = true;
            }
            let uncorrectable = double_bit || key.contains("Uncorrectable");
            if uncorrectable && let Some(n) = count.filter(|n| *n > 0) {
                let what = if double_bit {
                    format!("Double Bit {key}")
                } else {
                    key.to_string()
                };
                gpu.problems
                    .push(format!("volatile uncorrectable ECC errors: {what} {n}"));
            }
        } else if within("Retired Pages") {
            // `Pending Page Blacklist` (older drivers), `Pending` (newer).
            if yes && key.starts_with("Pending") {
                gpu.problems
                    .push(format!("page retirement pending ({key}: Yes)"));
            }
        } else if within("Remapped Rows") && yes {
            if key == "Pending" {
                gpu.problems.push("row remapping pending".to_string());
            } else if key == "Remapping Failure Occurred" {
                gpu.problems
                    .push("row remapping failure occurred".to_string());
            }
        }
    }
    gpus
}

/// Decides the `health` probe over [`parse_health`]'s sections, nvidia-smi's
/// error lines, and the number of GPUs asked about: faulty on an error line
/// or a problem in a section; inconclusive when a GPU's section is missing
/// or not understood (an unknown layout is no evidence).
pub fn judge_health(gpus: &[GpuHealth], errors: &[String], asked: usize) -> Judged {
    if let Some(first) = errors.first() {
        return faulty(format!("nvidia-smi reports: {first}"));
    }
    let bad: Vec<String> = gpus
        .iter()
        .filter(|g| !g.problems.is_empty())
        .map(|g| format!("GPU {}: {}", g.gpu, g.problems.join(", ")))
        .collect();
    if !bad.is_empty() {
        return faulty(bad.join("; "));
    }
    if gpus.is_empty() {
        return inconclusive(
            "nvidia-smi -q printed no GPU section (a layout this version does not understand)"
                .to_string(),
        );
    }
    if let Some(odd) = gpus.iter().find(|g| !g.understood) {
        return inconclusive(format!(
            "nvidia-smi -q printed no ECC, retired-page or remapped-row line this version understands for GPU {}",
            odd.gpu
        ));
    }
    if gpus.len() < asked {
        return inconclusive(format!(
            "nvidia-smi -q reports on {} GPU(s), the job has {asked}",
            gpus.len()
        ));
    }
    let uncounted = gpus.iter().filter(|g| !g.ecc_counted).count();
    let ecc = match uncounted {
        0 => String::new(),
        n => format!(" (ECC counts N/A on {n} of them)"),
    };
    Ok(format!(
        "{} GPU(s) checked{ecc}: no volatile uncorrectable ECC error, no pending page retirement or row remapping",
        gpus.len()
    ))
}

/// The display types `health` asks for, most first. Older drivers refuse a
/// type they do not know (`ROW_REMAPPER` before about R450) with "Invalid
/// combination of input arguments" and a non-zero exit: the probe then asks
/// again with fewer, so that such a node still gets its ECC checked.
pub const HEALTH_DISPLAYS: &[&str] = &[
    "ECC,PAGE_RETIREMENT,ROW_REMAPPER",
    "ECC,PAGE_RETIREMENT",
    "ECC",
];

fn run_health(
    program: &str,
    cuda_visible_devices: Option<&str>,
    gpus: &JobGpus,
    timeout: Duration,
) -> Judged {
    let ids = gpus.ids.join(",");
    let mut refused: Vec<&str> = Vec::new();
    let mut last_refusal = None;
    for display in HEALTH_DISPLAYS {
        let out = run_tool_raw(
            program,
            &["-q", "-d", display, "-i", &ids],
            cuda_visible_devices,
            timeout,
        )?;
        if !out.success() {
            match failed_call(&out, &format!("{program} -q -d {display}")) {
                faulty @ Problem::Faulty(_) => return Err(faulty),
                Problem::Inconclusive(detail) => {
                    refused.push(display);
                    last_refusal = Some(detail);
                    continue;
                }
            }
        }
        let verdict = judge_health(
            &parse_health(&out.stdout),
            &error_lines(&out),
            gpus.ids.len(),
        );
        return match (verdict, refused.is_empty()) {
            (Ok(detail), false) => Ok(bound(format!(
                "{detail} (this driver refused -d {}: checked -d {display} only)",
                refused.join(" and -d ")
            ))),
            (verdict, _) => verdict,
        };
    }
    inconclusive(format!(
        "nvidia-smi refused every health query ({}); last: {}",
        refused.join(", "),
        last_refusal.unwrap_or_default()
    ))
}

// --------------------------------------------------------------- processes

/// One line of `nvidia-smi --query-compute-apps=pid,gpu_uuid,process_name,used_memory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeApp {
    pub pid: u32,
    pub gpu_uuid: String,
    pub name: String,
    /// As printed (`1024 MiB`, `[N/A]`).
    pub used_memory: String,
}

/// Parses the CSV (no header) of `--query-compute-apps`; an empty answer and
/// `No running processes found` are no processes. Lines that do not start
/// with a pid are ignored here (error lines are judged separately, the rest
/// by [`unparsed_compute_lines`]).
pub fn parse_compute_apps(stdout: &str) -> Vec<ComputeApp> {
    stdout
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() < 4 {
                return None;
            }
            let pid = fields[0].parse().ok()?;
            Some(ComputeApp {
                pid,
                gpu_uuid: fields[1].to_string(),
                // A process name may itself contain commas.
                name: fields[2..fields.len() - 1].join(","),
                used_memory: fields[fields.len() - 1].to_string(),
            })
        })
        .collect()
}

/// Non-empty lines of `--query-compute-apps` that are neither a process,
/// `No running processes found` nor an error line (e.g.
/// `[Insufficient Permissions]` in the pid column): not understood.
pub fn unparsed_compute_lines(stdout: &str) -> Vec<String> {
    let parsed = |line: &str| {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        fields.len() >= 4 && fields[0].parse::<u32>().is_ok()
    };
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.eq_ignore_ascii_case("no running processes found"))
        .filter(|l| !is_error_line(l) && !parsed(l))
        .map(str::to_string)
        .collect()
}

/// Decides the `processes` probe: fails when a compute process that is not
/// `ours` runs on one of the job's GPUs (matched by UUID). The MPS server
/// (`nvidia-cuda-mps-server`) is not foreign.
pub fn judge_processes(
    apps: &[ComputeApp],
    errors: &[String],
    gpus: &JobGpus,
    ours: impl Fn(u32) -> bool,
) -> Judged {
    if let Some(first) = errors.first() {
        return faulty(format!("nvidia-smi reports: {first}"));
    }
    let foreign: Vec<String> = apps
        .iter()
        .filter(|a| gpus.ids.contains(&a.gpu_uuid))
        .filter(|a| !ours(a.pid) && !is_mps_server(&a.name))
        .map(|a| {
            format!(
                "pid {} ({}, {}) on {}",
                a.pid, a.name, a.used_memory, a.gpu_uuid
            )
        })
        .collect();
    if !foreign.is_empty() {
        return faulty(format!(
            "{} foreign compute process(es) on the job's GPUs: {}",
            foreign.len(),
            foreign.join("; ")
        ));
    }
    Ok(format!(
        "no foreign compute process on the job's {} GPU(s) ({} on the node's other GPUs)",
        gpus.ids.len(),
        apps.len()
    ))
}

/// The MPS control daemon's server shows up as a compute process on every
/// GPU it serves; it is part of the node's setup, not another job.
fn is_mps_server(name: &str) -> bool {
    name.rsplit('/').next() == Some("nvidia-cuda-mps-server")
}

/// `pid` is a descendant of this process (by `/proc/PID/stat`'s parent).
fn is_descendant(pid: u32) -> bool {
    let me = std::process::id();
    let mut pid = pid;
    for _ in 0..64 {
        if pid == me {
            return true;
        }
        if pid <= 1 {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `PID (COMM) STATE PPID …`; COMM may contain spaces and parentheses.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        else {
            return false;
        };
        pid = ppid;
    }
    false
}

fn run_processes(
    program: &str,
    cuda_visible_devices: Option<&str>,
    gpus: &JobGpus,
    timeout: Duration,
) -> Judged {
    if gpus.mig {
        return inconclusive(
            "skipped: the job runs on MIG instances; processes on other instances of the same GPU belong to other jobs"
                .to_string(),
        );
    }
    let out = run_tool(
        program,
        &[
            "--query-compute-apps=pid,gpu_uuid,process_name,used_memory",
            "--format=csv,noheader",
        ],
        cuda_visible_devices,
        timeout,
    )?;
    // At probe time the workload has not started: any process is foreign
    // unless it is the wrapper's own.
    let detail = judge_processes(
        &parse_compute_apps(&out.stdout),
        &error_lines(&out),
        gpus,
        is_descendant,
    )?;
    match unparsed_compute_lines(&out.stdout).first() {
        Some(line) => inconclusive(format!(
            "nvidia-smi --query-compute-apps printed a line this version does not understand: {line}"
        )),
        None => Ok(detail),
    }
}

// -------------------------------------------------------------------- cuda

/// The `cuda` probe's Python program: exit 3 when torch cannot be imported;
/// otherwise one `DEV i ok|bad NAME` line per device after a kernel launch
/// and a copy back to the host.
const CUDA_SCRIPT: &str = r#"
import sys
try:
    import torch
except Exception as e:
    print("NOFRAMEWORK", type(e).__name__, e)
    sys.exit(3)
if not torch.cuda.is_available():
    print("UNAVAILABLE torch", torch.__version__, "cuda", torch.version.cuda)
    sys.exit(1)
n = torch.cuda.device_count()
print("COUNT", n, "torch", torch.__version__)
bad = 0
for i in range(n):
    x = torch.arange(1024, device=torch.device("cuda", i), dtype=torch.float32)
    s = float((x * 2).sum().item())
    ok = s == 1047552.0
    bad += not ok
    print("DEV", i, "ok" if ok else "bad", torch.cuda.get_device_name(i))
sys.exit(1 if bad else 0)
"#;

/// A line of CUDA's or torch's stderr that names a hardware or driver fault.
fn is_cuda_fault_line(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    is_error_line(line) || l.contains("ecc error") || l.contains("no cuda-capable device")
}

/// Decides the `cuda` probe from the program's exit code (`None`: killed) and
/// output, for a job that should see `expected` devices (`mig`: CUDA may show
/// only one MIG instance per process).
///
/// Faulty: a device computed a wrong result, CUDA sees fewer devices than the
/// job should, or stderr names a hardware or driver fault (uncorrectable
/// ECC, GPU lost, …). Inconclusive: no framework, or a failure without such
/// a line (a torch built for another CUDA or GPU architecture is the
/// environment's, not the node's).
pub fn judge_cuda(
    code: Option<i32>,
    stdout: &str,
    stderr: &str,
    expected: usize,
    mig: bool,
) -> Judged {
    if code == Some(3) && stdout.contains("NOFRAMEWORK") {
        return inconclusive(CUDA_SKIPPED.to_string());
    }
    let last_err = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    let fault_line = stderr
        .lines()
        .map(str::trim)
        .find(|l| is_cuda_fault_line(l));
    let judged = |detail: String| match fault_line {
        Some(_) => faulty(detail),
        None => inconclusive(detail),
    };
    if let Some(line) = stdout.lines().find(|l| l.starts_with("UNAVAILABLE")) {
        return judged(format!(
            "torch.cuda.is_available() is False ({}) {}",
            line.trim_start_matches("UNAVAILABLE "),
            fault_line.unwrap_or(last_err)
        ));
    }
    let count: Option<usize> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("COUNT "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    let devs: Vec<&str> = stdout.lines().filter(|l| l.starts_with("DEV ")).collect();
    let bad: Vec<&str> = devs
        .iter()
        .copied()
        .filter(|l| l.contains(" bad "))
        .collect();
    let status = code.map_or("killed".to_string(), |c| format!("exit {c}"));
    if !bad.is_empty() {
        return faulty(format!(
            "CUDA smoke test failed ({status}): wrong result on {}",
            bad.join(", ")
        ));
    }
    if code != Some(0) || count.is_none() || devs.len() != count.unwrap_or(0) {
        return judged(format!(
            "CUDA smoke test failed ({status}): {}",
            fault_line.unwrap_or(last_err)
        ));
    }
    let count = count.unwrap_or(0);
    let enough = if mig { count >= 1 } else { count >= expected };
    if !enough {
        return faulty(format!(
            "CUDA sees {count} device(s), the job should see {expected}"
        ));
    }
    let mut names: Vec<&str> = devs
        .iter()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .collect();
    names.dedup();
    Ok(bound(format!(
        "a kernel ran on {count} CUDA device(s): {}",
        names.join(", ")
    )))
}

fn run_cuda(
    python: &str,
    cuda_visible_devices: Option<&str>,
    expect: &Expectation,
    timeout: Duration,
) -> Judged {
    let mut inv = Invocation::new(python, timeout).args(["-c", CUDA_SCRIPT]);
    if let Some(cvd) = cuda_visible_devices {
        inv.env.push(("CUDA_VISIBLE_DEVICES".into(), cvd.into()));
    }
    match inv.run() {
        Ok(out) => judge_cuda(
            out.status.code(),
            &out.stdout,
            &out.stderr,
            expect.count(),
            expect.mig,
        ),
        Err(ProcError::NotFound { .. }) => {
            inconclusive(format!("{CUDA_SKIPPED} ({python} not found)"))
        }
        Err(ProcError::TimedOut { after, .. }) => {
            inconclusive(format!("CUDA smoke test did not finish within {after:?}"))
        }
        Err(other) => inconclusive(format!("CUDA smoke test: {other}")),
    }
}

// -------------------------------------------------------------- all probes

/// What [`run_all`] needs.
#[derive(Debug, Clone)]
pub struct Probing<'a> {
    /// `nvidia-smi`, found on `PATH` unless a path.
    pub nvidia_smi: &'a str,
    /// `python3` for the `cuda` probe.
    pub python: &'a str,
    pub cuda_visible_devices: Option<&'a str>,
    /// GPUs the job asked for.
    pub requested: u32,
    /// Per nvidia-smi call.
    pub timeout: Duration,
    pub cuda_timeout: Duration,
    /// Only these probes (`--probes`); `None`: all.
    pub only: Option<&'a [String]>,
    /// Probes not to run although selected: their circuit breaker is open.
    /// Each is recorded as inconclusive, saying why.
    pub skip: &'a [String],
}

/// Runs the selected probes in [`ALL`]'s order and stops after the first
/// faulty one; the last result is then the faulty one. Inconclusive probes
/// do not stop the probing.
///
/// `health` and `processes` need the job's GPU UUIDs from `nvidia-smi -L`:
/// when `visibility` was not selected they still run it (unrecorded), and
/// conclude what it concluded when it is not healthy. When the job's GPUs
/// cannot be told, they are inconclusive.
pub fn run_all(p: &Probing) -> Vec<ProbeResult> {
    let wanted = |name: &str| p.only.is_none_or(|l| l.iter().any(|n| n == name));
    let listed = || list(p.nvidia_smi, p.cuda_visible_devices, p.requested, p.timeout);
    let unknown = |e: String| Problem::Inconclusive(e);
    let mut gpus: Option<Result<JobGpus, Problem>> = None;
    let mut results: Vec<ProbeResult> = Vec::new();
    for name in ALL.iter().copied().filter(|n| wanted(n)) {
        if p.skip.iter().any(|s| s == name) {
            results.push(ProbeResult::new(
                name,
                ProbeStatus::Inconclusive,
                "not run: its circuit breaker is open (it blamed several nodes the same way; see `shepherd events`)".to_string(),
                0,
            ));
            continue;
        }
        let result = match name {
            VISIBILITY => timed(name, || {
                let verdict = listed().and_then(|(listing, expect)| {
                    let verdict = judge_listing(&listing, &expect);
                    if verdict.is_ok() {
                        gpus = Some(job_gpus(&listing, &expect).map_err(unknown));
                    }
                    verdict
                });
                if let Err(problem) = &verdict {
                    gpus = Some(Err(Problem::Inconclusive(bound(format!(
                        "the job's GPUs are not known: visibility: {}",
                        problem.detail()
                    )))));
                }
                verdict
            }),
            HEALTH | PROCESSES => timed(name, || {
                let job = gpus
                    .get_or_insert_with(|| {
                        let (listing, expect) = listed()?;
                        judge_listing(&listing, &expect)?;
                        job_gpus(&listing, &expect).map_err(unknown)
                    })
                    .clone()?;
                if name == HEALTH {
                    run_health(p.nvidia_smi, p.cuda_visible_devices, &job, p.timeout)
                } else {
                    run_processes(p.nvidia_smi, p.cuda_visible_devices, &job, p.timeout)
                }
            }),
            _ => timed(name, || {
                let expect =
                    expectation(p.cuda_visible_devices, p.requested).map_err(Problem::Faulty)?;
                run_cuda(p.python, p.cuda_visible_devices, &expect, p.cuda_timeout)
            }),
        };
        let stop = result.is_faulty();
        results.push(result);
        if stop {
            break;
        }
    }
    results
}

/// A fake `nvidia-smi` for tests: answers `-L`, `-q -d ECC,…` and
/// `--query-compute-apps=…` for the GPUs in `CUDA_VISIBLE_DEVICES` (indices;
/// UUID `GPU-0000000N-…`), like an A100 node. `$FAKE_MODE` (set in the script
/// by [`fake_nvidia_smi`]) picks a fault: `ecc` (volatile uncorrectable DRAM
/// errors on the first GPU), `busy` (a foreign process on the first GPU),
/// `na` (a consumer GPU: every ECC field N/A), `other` (a process on a GPU
/// that is not the job's), `refuse` (an old driver: `-d …ROW_REMAPPER` is
/// refused as the real one does), `odd` (a `-q` layout nobody knows).
#[cfg(test)]
pub(crate) fn fake_nvidia_smi(mode: &str) -> String {
    format!(
        r#"#!/bin/sh
FAKE_MODE={mode}
uuid() {{ printf 'GPU-0000000%s-1b7c-9f7d-2b3c-4d5e6f7a8b9c' "$1"; }}
ids=""
prev=""
for a in "$@"; do [ "$prev" = -i ] && ids=",$a,"; prev=$a; done
mine() {{ [ -z "$ids" ] || case $ids in *",$1,"*|*",$(uuid "$1"),"*) true ;; *) false ;; esac; }}
set -- "$@" ""
case $1 in
-L)
    for d in $(echo "$CUDA_VISIBLE_DEVICES" | tr , ' '); do
        echo "GPU $d: NVIDIA A100-SXM4-80GB (UUID: $(uuid "$d"))"
    done ;;
-q)
    case "$FAKE_MODE:$*" in
    refuse:*ROW_REMAPPER*)
        # Drivers before row remapping (about R450) refuse the display type.
        echo "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help."
        exit 2 ;;
    odd:*)
        printf 'GPU[0] bus=00000000:07:00.0\n  ecc.errors.uncorrected.volatile.total=0\n'
        exit 0 ;;
    esac
    printf '\n==============NVSMI LOG==============\n\n'
    echo 'Timestamp                                 : Thu Nov 26 10:44:51 2026'
    echo 'Driver Version                            : 535.129.03'
    echo 'CUDA Version                              : 12.2'
    echo
    for d in $(echo "$CUDA_VISIBLE_DEVICES" | tr , ' '); do
        mine "$d" || continue
        dram=0; na=""
        if [ "$FAKE_MODE" = ecc ] && [ "$d" = 0 ]; then dram=2; fi
        if [ "$FAKE_MODE" = na ]; then dram=N/A; na=1; fi
        echo "GPU 00000000:0$d:00.0"
        echo '    ECC Mode'
        echo "        Current                           : ${{na:+N/A}}${{na:-Enabled}}"
        echo "        Pending                           : ${{na:+N/A}}${{na:-Enabled}}"
        echo '    ECC Errors'
        echo '        Volatile'
        echo "            SRAM Correctable              : ${{na:+N/A}}${{na:-0}}"
        echo "            SRAM Uncorrectable            : ${{na:+N/A}}${{na:-0}}"
        echo "            DRAM Correctable              : ${{na:+N/A}}${{na:-0}}"
        echo "            DRAM Uncorrectable            : $dram"
        case "$*" in *PAGE_RETIREMENT*) ;; *) echo; continue ;; esac
        echo '    Retired Pages'
        echo '        Single Bit ECC                    : N/A'
        echo '        Double Bit ECC                    : N/A'
        echo '        Pending Page Blacklist            : N/A'
        case "$*" in *ROW_REMAPPER*) ;; *) echo; continue ;; esac
        if [ -n "$na" ]; then
            echo '    Remapped Rows                         : N/A'
        else
            echo '    Remapped Rows'
            echo '        Correctable Error                 : 0'
            echo '        Uncorrectable Error               : 0'
            echo '        Pending                           : No'
            echo '        Remapping Failure Occurred        : No'
        fi
        echo
    done ;;
--query-compute-apps=*)
    case $FAKE_MODE in
        busy) echo "48213, $(uuid 0), /usr/bin/python3, 30522 MiB" ;;
        other) echo "7001, $(uuid 9), python, 1024 MiB" ;;
    esac ;;
*) echo "fake nvidia-smi: unexpected arguments: $*" >&2; exit 2 ;;
esac
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const FOUR_A100: &str = "\
GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-5b6a4d6e-1b7c-9f7d-2b3c-4d5e6f7a8b9c)
GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6)
GPU 2: NVIDIA A100-SXM4-80GB (UUID: GPU-2d3e4f5a-6b7c-8d9e-0fa1-b2c3d4e5f6a7)
GPU 3: NVIDIA A100-SXM4-80GB (UUID: GPU-3e4f5a6b-7c8d-9e0f-a1b2-c3d4e5f6a7b8)
";

    const MIG: &str = "\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-e91edf3b-b297-37c1-a2a7-7601c3238fa2)
  MIG 1g.5gb      Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f)
  MIG 1g.5gb      Device  1: (UUID: MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-0e6c2b6a-8c34-4c8e-9c3e-2a5f0b7d1e44)
  MIG 3g.20gb     Device  0: (UUID: MIG-1e4b2a7c-5d3f-5e8a-9b1c-0f2d4e6a8c0b)
";

    /// Driver R450 printed MIG devices by GPU UUID plus instance ids.
    const MIG_R450: &str = "\
GPU 0: A100-SXM4-40GB (UUID: GPU-e91edf3b-b297-37c1-a2a7-7601c3238fa2)
  MIG 1g.5gb Device 0: (UUID: MIG-GPU-e91edf3b-b297-37c1-a2a7-7601c3238fa2/1/0)
";

    fn expect(cvd: &str) -> Expectation {
        expectation(Some(cvd), 1).unwrap()
    }

    #[test]
    fn parses_gpu_and_mig_lines() {
        let l = parse_listing(FOUR_A100);
        assert_eq!(l.gpus.len(), 4);
        assert!(l.migs.is_empty() && l.errors.is_empty());
        assert_eq!(l.gpus[0].name, "NVIDIA A100-SXM4-80GB");
        assert_eq!(
            l.gpus[0].uuid.as_deref(),
            Some("GPU-5b6a4d6e-1b7c-9f7d-2b3c-4d5e6f7a8b9c")
        );

        let l = parse_listing(MIG);
        assert_eq!((l.gpus.len(), l.migs.len()), (2, 3));
        assert_eq!(l.migs[0].name, "MIG 1g.5gb");
        assert_eq!(
            l.migs[2].uuid.as_deref(),
            Some("MIG-1e4b2a7c-5d3f-5e8a-9b1c-0f2d4e6a8c0b")
        );

        let l = parse_listing(MIG_R450);
        assert_eq!(
            l.migs[0].uuid.as_deref(),
            Some("MIG-GPU-e91edf3b-b297-37c1-a2a7-7601c3238fa2/1/0")
        );
    }

    #[test]
    fn enough_gpus_pass() {
        let l = parse_listing(FOUR_A100);
        // Without device constraints nvidia-smi lists all of the node's GPUs.
        let detail = judge_listing(&l, &expect("0,1")).unwrap();
        assert!(detail.contains("2 GPU(s) expected"), "{detail}");
        assert!(detail.contains("4 listed"), "{detail}");
        assert!(detail.contains("NVIDIA A100-SXM4-80GB"), "{detail}");
        judge_listing(&l, &expect("0,1,2,3")).unwrap();
        judge_listing(&l, &expect("GPU-2d3e4f5a-6b7c-8d9e-0fa1-b2c3d4e5f6a7")).unwrap();
        // CUDA accepts unique UUID prefixes.
        judge_listing(&l, &expect("GPU-2d3e4f5a")).unwrap();
    }

    #[test]
    fn fewer_gpus_than_expected_fail() {
        let three: String = FOUR_A100
            .lines()
            .take(3)
            .map(|l| format!("{l}\n"))
            .collect();
        let l = parse_listing(&three);
        let err = judge_listing(&l, &expect("0,1,2,3")).unwrap_err().faulty();
        assert!(err.contains("lists 3 GPU(s)"), "{err}");
        assert!(err.contains("should see 4"), "{err}");
        assert!(err.contains("CUDA_VISIBLE_DEVICES=0,1,2,3"), "{err}");
    }

    #[test]
    fn a_missing_uuid_fails_even_when_the_count_is_right() {
        let l = parse_listing(FOUR_A100);
        let err = judge_listing(&l, &expect("GPU-00000000-0000-0000-0000-000000000000"))
            .unwrap_err()
            .faulty();
        assert!(err.contains("does not list GPU-00000000"), "{err}");
    }

    #[test]
    fn mig_counts_mig_instances() {
        let l = parse_listing(MIG);
        let e = expect(
            "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f,MIG-1e4b2a7c-5d3f-5e8a-9b1c-0f2d4e6a8c0b",
        );
        assert!(e.mig);
        let detail = judge_listing(&l, &e).unwrap();
        assert!(detail.contains("2 MIG instance(s) expected"), "{detail}");
        // Four MIG instances wanted, three listed (the GPU lines do not count).
        let e = expect("MIG-a,MIG-b,MIG-c,MIG-d");
        let err = judge_listing(&l, &e).unwrap_err().faulty();
        assert!(err.contains("lists 3 MIG instance(s)"), "{err}");
        let e = expect("MIG-GPU-e91edf3b-b297-37c1-a2a7-7601c3238fa2/1/0");
        judge_listing(&parse_listing(MIG_R450), &e).unwrap();
        judge_listing(&parse_listing(FOUR_A100), &e)
            .unwrap_err()
            .faulty();
    }

    #[test]
    fn error_lines_and_garbage_fail() {
        let broken = "\
GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-5b6a4d6e-1b7c-9f7d-2b3c-4d5e6f7a8b9c)
Unable to determine the device handle for GPU0000:41:00.0: Unknown Error
";
        let err = judge_listing(&parse_listing(broken), &expect("0"))
            .unwrap_err()
            .faulty();
        assert!(
            err.contains("Unable to determine the device handle"),
            "{err}"
        );

        // Output nobody understands is no evidence against the node.
        let garbage = "Segmentation fault\n\u{0}\u{1}binary junk\nGPU x: not a gpu\nGPU : none\n";
        let err = judge_listing(&parse_listing(garbage), &expect("0"))
            .unwrap_err()
            .inconclusive();
        assert!(
            err.contains("no GPU line this version understands: Segmentation fault"),
            "{err}"
        );
        // A successful, empty listing: no GPU at all is listed.
        let err = judge_listing(&parse_listing(""), &expect("0"))
            .unwrap_err()
            .faulty();
        assert!(err.contains("lists 0 GPU(s)"), "{err}");

        let long = format!("GPU 0: {}\n", "x".repeat(2000));
        let ok = judge_listing(&parse_listing(&long), &expect("0")).unwrap();
        assert!(ok.len() <= MAX_DETAIL + '…'.len_utf8(), "{}", ok.len());
    }

    #[test]
    fn cuda_visible_devices_without_gpus_fail() {
        for (cvd, sign) in [
            (None, "not set"),
            (Some(""), "empty"),
            (Some(" , "), "empty"),
            (Some("NoDevFiles"), "NoDevFiles"),
            (Some("-1"), "hides every GPU"),
        ] {
            let err = expectation(cvd, 2).unwrap_err();
            assert!(err.contains(sign), "{cvd:?}: {err}");
            assert!(err.contains("asked for 2 GPU(s)"), "{err}");
        }
        let e = expectation(Some("0, 1"), 2).unwrap();
        assert_eq!(e.devices, ["0", "1"]);
        assert!(!e.mig);
    }

    /// A fake nvidia-smi: a script that prints `stdout` and exits `code`, or
    /// sleeps when `hang`.
    fn fake(dir: &std::path::Path, body: &str) -> String {
        let path = dir.join("nvidia-smi");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn runner_passes_and_fails_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_secs(10);

        // The fake sees CUDA_VISIBLE_DEVICES and the -L flag.
        let ok = fake(
            dir.path(),
            r#"[ "$1" = -L ] || exit 2
i=0
for d in $(echo "$CUDA_VISIBLE_DEVICES" | tr , ' '); do
  echo "GPU $i: NVIDIA RTX A6000 (UUID: GPU-$d)"; i=$((i + 1))
done"#,
        );
        let r = visibility(&ok, Some("0,1"), 2, t);
        assert!(r.ok, "{r:?}");
        assert_eq!(r.name, VISIBILITY);
        assert!(r.detail.contains("NVIDIA RTX A6000"), "{r:?}");

        let r = visibility(&ok, None, 2, t);
        assert!(!r.ok && r.detail.contains("not set"), "{r:?}");

        let failing = fake(
            dir.path(),
            "echo 'Unable to determine the device handle for GPU0000:41:00.0: Unknown Error'; exit 15",
        );
        let r = visibility(&failing, Some("0"), 1, t);
        assert!(!r.ok, "{r:?}");
        assert!(r.detail.contains("exit 15"), "{r:?}");
        assert!(r.detail.contains("Unknown Error"), "{r:?}");

        let missing = dir.path().join("no-such-nvidia-smi");
        let r = visibility(missing.to_str().unwrap(), Some("0"), 1, t);
        assert_eq!(r.status, ProbeStatus::Inconclusive, "{r:?}");
        assert!(r.ok && r.detail.contains("cannot run"), "{r:?}");

        // A timeout without an error line is inconclusive, and bounded.
        let hang = fake(dir.path(), "exec sleep 30");
        let started = Instant::now();
        let r = visibility(&hang, Some("0"), 1, Duration::from_millis(300));
        assert_eq!(r.status, ProbeStatus::Inconclusive, "{r:?}");
        assert!(r.detail.contains("did not answer"), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5));

        // A non-zero exit without an error line: an option refused.
        let refusing = fake(
            dir.path(),
            "echo \"Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\"; exit 2",
        );
        let r = visibility(&refusing, Some("0"), 1, t);
        assert_eq!(r.status, ProbeStatus::Inconclusive, "{r:?}");
        assert!(
            r.detail.contains("failed (exit 2): Invalid combination"),
            "{r:?}"
        );

        // The driver is not loaded on a node Slurm says has GPUs: evidence.
        let no_driver = fake(
            dir.path(),
            "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\"; exit 9",
        );
        let r = visibility(&no_driver, Some("0"), 1, t);
        assert!(r.is_faulty(), "{r:?}");
        let none = fake(dir.path(), "echo 'No devices were found'; exit 6");
        assert!(visibility(&none, Some("0"), 1, t).is_faulty());
    }

    // ------------------------------------------------------------- health

    /// Driver 535, two A100s, all clean (newer SRAM/DRAM layout).
    const HEALTHY_A100: &str = "
==============NVSMI LOG==============

Timestamp                                 : Thu Nov 26 10:44:51 2026
Driver Version                            : 535.129.03
CUDA Version                              : 12.2

Attached GPUs                             : 4
GPU 00000000:07:00.0
    ECC Mode
        Current                           : Enabled
        Pending                           : Enabled
    ECC Errors
        Volatile
            SRAM Correctable              : 0
            SRAM Uncorrectable            : 0
            DRAM Correctable              : 12
            DRAM Uncorrectable            : 0
        Aggregate
            SRAM Correctable              : 0
            SRAM Uncorrectable            : 0
            DRAM Correctable              : 40
            DRAM Uncorrectable            : 1
    Retired Pages
        Single Bit ECC                    : N/A
        Double Bit ECC                    : N/A
        Pending Page Blacklist            : N/A
    Remapped Rows
        Correctable Error                 : 0
        Uncorrectable Error               : 1
        Pending                           : No
        Remapping Failure Occurred        : No
        Bank Remap Availability Histogram
            Max                           : 639 bank(s)
            High                          : 1 bank(s)
            Partial                       : 0 bank(s)
            Low                           : 0 bank(s)
            None                          : 0 bank(s)

GPU 00000000:0F:00.0
    ECC Mode
        Current                           : Enabled
        Pending                           : Enabled
    ECC Errors
        Volatile
            SRAM Correctable              : 0
            SRAM Uncorrectable            : 0
            DRAM Correctable              : 0
            DRAM Uncorrectable            : 0
        Aggregate
            SRAM Correctable              : 0
            SRAM Uncorrectable            : 0
            DRAM Correctable              : 0
            DRAM Uncorrectable            : 0
    Retired Pages
        Single Bit ECC                    : N/A
        Double Bit ECC                    : N/A
        Pending Page Blacklist            : N/A
    Remapped Rows
        Correctable Error                 : 0
        Uncorrectable Error               : 0
        Pending                           : No
        Remapping Failure Occurred        : No
        Bank Remap Availability Histogram
            Max                           : 640 bank(s)
            High                          : 0 bank(s)
            Partial                       : 0 bank(s)
            Low                           : 0 bank(s)
            None                          : 0 bank(s)
";

    /// Driver 550 on an H100: volatile uncorrectable DRAM errors since the
    /// last reset; the row remap is pending too.
    const ECC_H100: &str = "
==============NVSMI LOG==============

Timestamp                                 : Thu Nov 26 10:44:51 2026
Driver Version                            : 550.54.15
CUDA Version                              : 12.4

Attached GPUs                             : 8
GPU 00000000:18:00.0
    ECC Mode
        Current                           : Enabled
        Pending                           : Enabled
    ECC Errors
        Volatile
            SRAM Correctable              : 0
            SRAM Uncorrectable Parity     : 0
            SRAM Uncorrectable SEC-DED    : 0
            DRAM Correctable              : 3
            DRAM Uncorrectable            : 2
        Aggregate
            SRAM Correctable              : 0
            SRAM Uncorrectable Parity     : 0
            SRAM Uncorrectable SEC-DED    : 0
            DRAM Correctable              : 3
            DRAM Uncorrectable            : 2
            SRAM Threshold Exceeded       : No
        Aggregate Uncorrectable SRAM Sources
            SRAM L2                       : 0
            SRAM SM                       : 0
            SRAM Microcontroller          : 0
            SRAM PCIE                     : 0
            SRAM Other                    : 0
    Retired Pages
        Single Bit ECC                    : N/A
        Double Bit ECC                    : N/A
        Pending Page Blacklist            : N/A
    Remapped Rows
        Correctable Error                 : 0
        Uncorrectable Error               : 2
        Pending                           : Yes
        Remapping Failure Occurred        : No
        Bank Remap Availability Histogram
            Max                           : 2559 bank(s)
            High                          : 1 bank(s)
            Partial                       : 0 bank(s)
            Low                           : 0 bank(s)
            None                          : 0 bank(s)
";

    /// Driver 470 on a V100 (older layout: Single/Double Bit by memory),
    /// a double-bit error and a page waiting to be blacklisted.
    const V100_DOUBLE_BIT: &str = "
==============NVSMI LOG==============

Timestamp                                 : Thu Nov 26 10:44:51 2026
Driver Version                            : 470.223.02
CUDA Version                              : 11.4

Attached GPUs                             : 4
GPU 00000000:1A:00.0
    ECC Mode
        Current                           : Enabled
        Pending                           : Enabled
    ECC Errors
        Volatile
            Single Bit
                Device Memory             : 4
                Register File             : 0
                L1 Cache                  : 0
                L2 Cache                  : 0
                Texture Memory            : N/A
                Texture Shared            : N/A
                CBU                       : N/A
                Total                     : 4
            Double Bit
                Device Memory             : 1
                Register File             : 0
                L1 Cache                  : 0
                L2 Cache                  : 0
                Texture Memory            : N/A
                Texture Shared            : N/A
                CBU                       : 0
                Total                     : 1
        Aggregate
            Single Bit
                Device Memory             : 9
                Total                     : 9
            Double Bit
                Device Memory             : 1
                Total                     : 1
    Retired Pages
        Single Bit ECC                    : 0
        Double Bit ECC                    : 1
        Pending Page Blacklist            : Yes
";

    /// A V100 whose old errors are only aggregate: healthy.
    const V100_AGGREGATE_ONLY: &str = "
GPU 00000000:1A:00.0
    ECC Mode
        Current                           : Enabled
        Pending                           : Enabled
    ECC Errors
        Volatile
            Single Bit
                Device Memory             : 0
                Total                     : 0
            Double Bit
                Device Memory             : 0
                CBU                       : N/A
                Total                     : 0
        Aggregate
            Double Bit
                Device Memory             : 3
                Total                     : 3
    Retired Pages
        Single Bit ECC                    : 0
        Double Bit ECC                    : 3
        Pending                           : No
";

    /// A pending retirement as newer drivers print it (`Pending : Yes`).
    const PENDING_RETIREMENT: &str = "
GPU 00000000:3B:00.0
    ECC Mode
        Current                           : Enabled
        Pending                           : Enabled
    ECC Errors
        Volatile
            Single Bit
                Device Memory             : 0
                Total                     : 0
            Double Bit
                Device Memory             : 0
                Total                     : 0
    Retired Pages
        Single Bit ECC                    : 0
        Double Bit ECC                    : 2
        Pending                           : Yes
";

    /// An A100 whose row remapping failed (no spare rows left).
    const REMAP_FAILED: &str = "
GPU 00000000:B7:00.0
    ECC Mode
        Current                           : Enabled
        Pending                           : Enabled
    ECC Errors
        Volatile
            SRAM Correctable              : 0
            SRAM Uncorrectable            : 0
            DRAM Correctable              : 0
            DRAM Uncorrectable            : 0
    Retired Pages
        Single Bit ECC                    : N/A
        Double Bit ECC                    : N/A
        Pending Page Blacklist            : N/A
    Remapped Rows
        Correctable Error                 : 0
        Uncorrectable Error               : 8
        Pending                           : No
        Remapping Failure Occurred        : Yes
";

    /// A GeForce RTX 4090: no ECC, no retirement, no remapper.
    const CONSUMER_NA: &str = "
==============NVSMI LOG==============

Timestamp                                 : Thu Nov 26 10:44:51 2026
Driver Version                            : 550.54.15
CUDA Version                              : 12.4

Attached GPUs                             : 1
GPU 00000000:01:00.0
    ECC Mode
        Current                           : N/A
        Pending                           : N/A
    ECC Errors
        Volatile
            SRAM Correctable              : N/A
            SRAM Uncorrectable            : N/A
            DRAM Correctable              : N/A
            DRAM Uncorrectable            : N/A
        Aggregate
            SRAM Correctable              : N/A
            SRAM Uncorrectable            : N/A
            DRAM Correctable              : N/A
            DRAM Uncorrectable            : N/A
    Retired Pages
        Single Bit ECC                    : N/A
        Double Bit ECC                    : N/A
        Pending Page Blacklist            : N/A
    Remapped Rows                         : N/A
";

    fn health(text: &str, asked: usize) -> Judged {
        judge_health(&parse_health(text), &[], asked)
    }

    #[test]
    fn healthy_gpus_pass_health() {
        let gpus = parse_health(HEALTHY_A100);
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].gpu, "00000000:07:00.0");
        assert_eq!(gpus[1].gpu, "00000000:0F:00.0");
        // Correctable and aggregate counts, and a remapped (not pending) row,
        // are no problem.
        assert!(gpus.iter().all(|g| g.problems.is_empty() && g.ecc_counted));
        let detail = health(HEALTHY_A100, 2).unwrap();
        assert!(detail.starts_with("2 GPU(s) checked:"), "{detail}");
        assert!(!detail.contains("N/A"), "{detail}");
        health(V100_AGGREGATE_ONLY, 1).unwrap();
    }

    #[test]
    fn volatile_uncorrectable_ecc_errors_fail_health() {
        let err = health(ECC_H100, 1).unwrap_err().faulty();
        assert!(err.starts_with("GPU 00000000:18:00.0: "), "{err}");
        assert!(
            err.contains("volatile uncorrectable ECC errors: DRAM Uncorrectable 2"),
            "{err}"
        );
        assert!(err.contains("row remapping pending"), "{err}");
        // Only the volatile count, not the aggregate one.
        assert_eq!(parse_health(ECC_H100)[0].problems.len(), 2, "{err}");

        let err = health(V100_DOUBLE_BIT, 1).unwrap_err().faulty();
        assert!(
            err.contains("volatile uncorrectable ECC errors: Double Bit Device Memory 1"),
            "{err}"
        );
        assert!(err.contains("Double Bit Total 1"), "{err}");
        assert!(
            err.contains("page retirement pending (Pending Page Blacklist: Yes)"),
            "{err}"
        );
        // Single-bit (correctable) errors are not counted.
        assert!(!err.contains("Single Bit"), "{err}");
    }

    #[test]
    fn pending_retirement_and_remapping_fail_health() {
        let err = health(PENDING_RETIREMENT, 1).unwrap_err().faulty();
        assert_eq!(
            err,
            "GPU 00000000:3B:00.0: page retirement pending (Pending: Yes)"
        );
        let err = health(REMAP_FAILED, 1).unwrap_err().faulty();
        assert_eq!(err, "GPU 00000000:B7:00.0: row remapping failure occurred");
        // One bad GPU among good ones fails the probe and is named.
        let both = format!("{HEALTHY_A100}{REMAP_FAILED}");
        let err = health(&both, 3).unwrap_err().faulty();
        assert!(err.starts_with("GPU 00000000:B7:00.0"), "{err}");
    }

    #[test]
    fn na_everywhere_is_healthy() {
        let gpus = parse_health(CONSUMER_NA);
        assert_eq!(gpus.len(), 1);
        assert!(gpus[0].problems.is_empty() && !gpus[0].ecc_counted);
        let detail = health(CONSUMER_NA, 1).unwrap();
        assert!(detail.contains("ECC counts N/A on 1 of them"), "{detail}");
    }

    #[test]
    fn health_without_understood_sections_is_inconclusive_and_errors_fail() {
        // No section, or a layout this version does not know: no evidence.
        let err = health("", 1).unwrap_err().inconclusive();
        assert!(err.contains("no GPU section"), "{err}");
        // `-L` output is not `-q` output.
        health(FOUR_A100, 1).unwrap_err().inconclusive();
        let odd = "GPU 00000000:07:00.0\n    Memory Health\n        Status : Good\n";
        let err = health(odd, 1).unwrap_err().inconclusive();
        assert!(err.contains("for GPU 00000000:07:00.0"), "{err}");
        // A problem in one understood section is evidence whatever else.
        let mixed = format!("{odd}{REMAP_FAILED}");
        health(&mixed, 2).unwrap_err().faulty();
        let err = health(HEALTHY_A100, 3).unwrap_err().inconclusive();
        assert!(err.contains("reports on 2 GPU(s), the job has 3"), "{err}");
        let errors = [
            "Unable to determine the device handle for GPU0000:41:00.0: GPU is lost".to_string(),
        ];
        let err = judge_health(&parse_health(HEALTHY_A100), &errors, 2)
            .unwrap_err()
            .faulty();
        assert!(err.contains("GPU is lost"), "{err}");
    }

    // ------------------------------------------------------------ job GPUs

    #[test]
    fn job_gpus_are_found_by_index_uuid_and_mig_instance() {
        let four = parse_listing(FOUR_A100);
        let g = job_gpus(&four, &expect("2,3")).unwrap();
        assert_eq!(
            g.ids,
            [
                "GPU-2d3e4f5a-6b7c-8d9e-0fa1-b2c3d4e5f6a7",
                "GPU-3e4f5a6b-7c8d-9e0f-a1b2-c3d4e5f6a7b8"
            ]
        );
        assert!(!g.mig);
        let g = job_gpus(&four, &expect("GPU-1c2d3e4f")).unwrap();
        assert_eq!(g.ids, ["GPU-1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6"]);
        assert!(job_gpus(&four, &expect("7")).is_err());
        assert!(job_gpus(&four, &expect("GPU-ffff")).is_err());

        // A device-constrained job: nvidia-smi renumbers from 0.
        let renumbered = parse_listing("GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-aaaa)\n");
        let g = job_gpus(&renumbered, &expect("3")).unwrap();
        assert_eq!(g.ids, ["GPU-aaaa"]);

        // MIG instances: their GPUs, once each.
        let mig = parse_listing(MIG);
        let g = job_gpus(
            &mig,
            &expect(
                "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f,MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb",
            ),
        )
        .unwrap();
        assert_eq!(g.ids, ["GPU-e91edf3b-b297-37c1-a2a7-7601c3238fa2"]);
        assert!(g.mig);
        let g = job_gpus(&mig, &expect("MIG-1e4b2a7c")).unwrap();
        assert_eq!(g.ids, ["GPU-0e6c2b6a-8c34-4c8e-9c3e-2a5f0b7d1e44"]);
    }

    // ----------------------------------------------------------- processes

    fn two_gpus() -> JobGpus {
        JobGpus {
            ids: vec![
                "GPU-5b6a4d6e-1b7c-9f7d-2b3c-4d5e6f7a8b9c".into(),
                "GPU-1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6".into(),
            ],
            mig: false,
        }
    }

    #[test]
    fn no_compute_processes_pass() {
        for text in ["", "\n", "No running processes found\n"] {
            let apps = parse_compute_apps(text);
            assert!(apps.is_empty(), "{text:?}");
            let detail = judge_processes(&apps, &[], &two_gpus(), |_| false).unwrap();
            assert!(detail.starts_with("no foreign compute process"), "{detail}");
        }
    }

    #[test]
    fn a_foreign_process_on_the_jobs_gpu_fails() {
        let text = "\
48213, GPU-1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6, /usr/bin/python3, 30522 MiB
51002, GPU-2d3e4f5a-6b7c-8d9e-0fa1-b2c3d4e5f6a7, ./train, 1024 MiB
";
        let apps = parse_compute_apps(text);
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].pid, 48213);
        assert_eq!(apps[0].name, "/usr/bin/python3");
        assert_eq!(apps[0].used_memory, "30522 MiB");
        let err = judge_processes(&apps, &[], &two_gpus(), |_| false)
            .unwrap_err()
            .faulty();
        assert!(err.starts_with("1 foreign compute process(es)"), "{err}");
        assert!(
            err.contains("pid 48213 (/usr/bin/python3, 30522 MiB) on GPU-1c2d3e4f"),
            "{err}"
        );
        // The other process is on a GPU that is not the job's.
        assert!(!err.contains("51002"), "{err}");
        // The job's own processes are fine.
        judge_processes(&apps, &[], &two_gpus(), |pid| pid == 48213).unwrap();
        // So is the MPS server.
        let mps = parse_compute_apps(
            "1771, GPU-1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6, /usr/bin/nvidia-cuda-mps-server, 29 MiB\n",
        );
        judge_processes(&mps, &[], &two_gpus(), |_| false).unwrap();
    }

    #[test]
    fn odd_compute_app_lines() {
        // Commas in a process name, [N/A] memory (no permission), junk.
        let text = "\
7, GPU-5b6a4d6e-1b7c-9f7d-2b3c-4d5e6f7a8b9c, python -c import a,b, [N/A]
[Insufficient Permissions], GPU-x, y, z
garbage
";
        let apps = parse_compute_apps(text);
        assert_eq!(apps.len(), 1);
        assert_eq!(apps[0].name, "python -c import a,b");
        assert_eq!(apps[0].used_memory, "[N/A]");
        let errors = [
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
                .to_string(),
        ];
        let err = judge_processes(&[], &errors, &two_gpus(), |_| false)
            .unwrap_err()
            .faulty();
        assert!(err.contains("NVIDIA-SMI has failed"), "{err}");
    }

    #[test]
    fn descendants_are_recognised() {
        assert!(is_descendant(std::process::id()));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(is_descendant(child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!is_descendant(1));
        assert!(!is_descendant(u32::MAX));
    }

    // ---------------------------------------------------------------- cuda

    #[test]
    fn cuda_verdicts() {
        let skipped = judge_cuda(
            Some(3),
            "NOFRAMEWORK ModuleNotFoundError No module named 'torch'\n",
            "",
            2,
            false,
        )
        .unwrap_err()
        .inconclusive();
        assert_eq!(skipped, CUDA_SKIPPED);

        let good =
            "COUNT 2 torch 2.3.1\nDEV 0 ok NVIDIA A100-SXM4-80GB\nDEV 1 ok NVIDIA A100-SXM4-80GB\n";
        let detail = judge_cuda(Some(0), good, "", 2, false).unwrap();
        assert_eq!(
            detail,
            "a kernel ran on 2 CUDA device(s): NVIDIA A100-SXM4-80GB"
        );
        let err = judge_cuda(Some(0), good, "", 4, false)
            .unwrap_err()
            .faulty();
        assert!(
            err.contains("CUDA sees 2 device(s), the job should see 4"),
            "{err}"
        );
        // CUDA shows one MIG instance per process.
        let one = "COUNT 1 torch 2.3.1\nDEV 0 ok NVIDIA A100-SXM4-40GB MIG 1g.5gb\n";
        judge_cuda(Some(0), one, "", 2, true).unwrap();

        // torch cannot use CUDA, and nothing names a broken GPU (a torch
        // built for a newer driver): the environment's problem, not evidence.
        let err = judge_cuda(
            Some(1),
            "UNAVAILABLE torch 2.3.1 cuda 12.1\n",
            "UserWarning: CUDA initialization: CUDA driver initialization failed\n",
            1,
            false,
        )
        .unwrap_err()
        .inconclusive();
        assert!(
            err.starts_with("torch.cuda.is_available() is False (torch 2.3.1 cuda 12.1)"),
            "{err}"
        );
        assert!(err.contains("CUDA driver initialization failed"), "{err}");

        let err = judge_cuda(
            Some(1),
            "COUNT 2 torch 2.3.1\n",
            "Traceback (most recent call last):\n  ...\nRuntimeError: CUDA error: uncorrectable ECC error encountered\n",
            2,
            false,
        )
        .unwrap_err().faulty();
        assert_eq!(
            err,
            "CUDA smoke test failed (exit 1): RuntimeError: CUDA error: uncorrectable ECC error encountered"
        );
        let err = judge_cuda(
            Some(1),
            "COUNT 1 torch 2.3.1\nDEV 0 bad NVIDIA A100-SXM4-80GB\n",
            "",
            1,
            false,
        )
        .unwrap_err()
        .faulty();
        assert!(err.contains("wrong result on DEV 0 bad"), "{err}");
        let err = judge_cuda(None, "COUNT 1 torch 2.3.1\n", "", 1, false)
            .unwrap_err()
            .inconclusive();
        assert!(err.contains("(killed)"), "{err}");
        // A torch without kernels for this GPU is the environment's.
        judge_cuda(
            Some(1),
            "COUNT 1 torch 2.3.1\n",
            "RuntimeError: CUDA error: no kernel image is available for execution on the device\n",
            1,
            false,
        )
        .unwrap_err()
        .inconclusive();
        let err = judge_cuda(
            Some(1),
            "UNAVAILABLE torch 2.3.1 cuda 12.1\n",
            "RuntimeError: Unable to determine the device handle for GPU0000:41:00.0: GPU is lost\n",
            1,
            false,
        )
        .unwrap_err()
        .faulty();
        assert!(err.contains("GPU is lost"), "{err}");
    }

    #[test]
    fn probe_names_are_checked() {
        check_names(&["visibility".into(), "cuda".into()]).unwrap();
        check_names(&[]).unwrap();
        let err = check_names(&["ecc".into()]).unwrap_err();
        assert!(err.contains("unknown probe \"ecc\""), "{err}");
        assert!(err.contains("visibility, health, processes, cuda"), "{err}");
    }

    // ------------------------------------------------------------- runners

    fn write_exe(path: &std::path::Path, text: &str) -> String {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn probing<'a>(smi: &'a str, python: &'a str, cvd: &'a str) -> Probing<'a> {
        Probing {
            nvidia_smi: smi,
            python,
            cuda_visible_devices: Some(cvd),
            requested: 2,
            timeout: Duration::from_secs(10),
            cuda_timeout: Duration::from_secs(10),
            only: None,
            skip: &[],
        }
    }

    fn names(results: &[ProbeResult]) -> Vec<&str> {
        results.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn all_probes_pass_on_a_healthy_node() {
        let dir = tempfile::tempdir().unwrap();
        let smi = write_exe(&dir.path().join("nvidia-smi"), &fake_nvidia_smi("healthy"));
        let python = dir.path().join("no-python3");
        let python = python.to_str().unwrap();
        let results = run_all(&probing(&smi, python, "0,1"));
        assert_eq!(names(&results), ALL, "{results:?}");
        assert!(results.iter().all(|r| r.ok), "{results:?}");
        assert!(
            results[1].detail.starts_with("2 GPU(s) checked:"),
            "{results:?}"
        );
        assert!(
            results[2]
                .detail
                .starts_with("no foreign compute process on the job's 2 GPU(s)"),
            "{results:?}"
        );
        assert!(results[3].detail.starts_with(CUDA_SKIPPED), "{results:?}");

        // A process on another GPU of the node is no concern of this job.
        let smi = write_exe(
            &dir.path().join("nvidia-smi-other"),
            &fake_nvidia_smi("other"),
        );
        let results = run_all(&probing(&smi, python, "0,1"));
        assert!(results.iter().all(|r| r.ok), "{results:?}");
        assert!(
            results[2].detail.contains("(1 on the node's other GPUs)"),
            "{results:?}"
        );

        // N/A everywhere (a consumer GPU) passes.
        let smi = write_exe(&dir.path().join("nvidia-smi-na"), &fake_nvidia_smi("na"));
        let results = run_all(&probing(&smi, python, "0,1"));
        assert!(results.iter().all(|r| r.ok), "{results:?}");
        assert!(
            results[1].detail.contains("ECC counts N/A on 2"),
            "{results:?}"
        );
    }

    #[test]
    fn the_first_failing_probe_ends_the_probing() {
        let dir = tempfile::tempdir().unwrap();
        let python = "/nonexistent/python3";
        let smi = write_exe(&dir.path().join("ecc"), &fake_nvidia_smi("ecc"));
        let results = run_all(&probing(&smi, python, "0,1"));
        assert_eq!(names(&results), [VISIBILITY, HEALTH], "{results:?}");
        let failed = &results[1];
        assert!(!failed.ok);
        assert_eq!(
            failed.detail,
            "GPU 00000000:00:00.0: volatile uncorrectable ECC errors: DRAM Uncorrectable 2"
        );
        // The faulty GPU is not the job's: healthy.
        let results = run_all(&probing(&smi, python, "1,2"));
        assert!(results.iter().all(|r| r.ok), "{results:?}");

        let smi = write_exe(&dir.path().join("busy"), &fake_nvidia_smi("busy"));
        let results = run_all(&probing(&smi, python, "0,1"));
        assert_eq!(
            names(&results),
            [VISIBILITY, HEALTH, PROCESSES],
            "{results:?}"
        );
        let failed = &results[2];
        assert!(!failed.ok);
        assert!(
            failed.detail.starts_with("1 foreign compute process(es) on the job's GPUs: pid 48213 (/usr/bin/python3, 30522 MiB) on GPU-00000000-"),
            "{failed:?}"
        );
        let results = run_all(&probing(&smi, python, "1"));
        assert!(results.iter().all(|r| r.ok), "{results:?}");

        // visibility fails first: nothing else runs.
        let mut p = probing(&smi, python, "0,1");
        p.cuda_visible_devices = None;
        let results = run_all(&p);
        assert_eq!(names(&results), [VISIBILITY]);
        assert!(!results[0].ok);

        // A hanging nvidia-smi -q is bounded.
        let hang = write_exe(
            &dir.path().join("hang"),
            &fake_nvidia_smi("healthy").replace("-q)\n", "-q)\n    exec sleep 30\n"),
        );
        let mut p = probing(&hang, python, "0");
        p.requested = 1;
        p.timeout = Duration::from_millis(500);
        let started = Instant::now();
        let results = run_all(&p);
        // Inconclusive: the probing goes on.
        assert_eq!(names(&results), ALL, "{results:?}");
        assert_eq!(results[1].status, ProbeStatus::Inconclusive);
        assert!(
            results[1].detail.contains("-q did not answer"),
            "{results:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_refused_or_unknown_health_query_is_no_evidence() {
        let dir = tempfile::tempdir().unwrap();
        let python = "/nonexistent/python3";
        // An old driver refuses ROW_REMAPPER: asked again with fewer display
        // types, the ECC is still checked.
        let smi = write_exe(&dir.path().join("refuse"), &fake_nvidia_smi("refuse"));
        let results = run_all(&probing(&smi, python, "0,1"));
        assert_eq!(names(&results), ALL, "{results:?}");
        let health = &results[1];
        assert_eq!(health.status, ProbeStatus::Healthy, "{health:?}");
        assert_eq!(
            health.detail,
            "2 GPU(s) checked: no volatile uncorrectable ECC error, no pending page retirement or row remapping \
             (this driver refused -d ECC,PAGE_RETIREMENT,ROW_REMAPPER: checked -d ECC,PAGE_RETIREMENT only)"
        );
        // Refused with an ECC fault on the GPU: the fallback finds it.
        let smi = write_exe(
            &dir.path().join("refuse-ecc"),
            &fake_nvidia_smi("refuse").replace(
                r#"if [ "$FAKE_MODE" = ecc ]"#,
                r#"if [ "$FAKE_MODE" = refuse ]"#,
            ),
        );
        let results = run_all(&probing(&smi, python, "0,1"));
        assert_eq!(names(&results), [VISIBILITY, HEALTH], "{results:?}");
        assert!(results[1].is_faulty(), "{results:?}");
        // Every display type refused.
        let smi = fake(
            dir.path(),
            r#"[ "$1" = -L ] && { echo "GPU 0: Tesla V100-SXM2-32GB (UUID: GPU-0)"; exit 0; }
echo "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help."; exit 2"#,
        );
        let mut p = probing(&smi, python, "0");
        p.requested = 1;
        let results = run_all(&p);
        assert_eq!(results[1].status, ProbeStatus::Inconclusive, "{results:?}");
        assert!(
            results[1]
                .detail
                .starts_with("nvidia-smi refused every health query (ECC,PAGE_RETIREMENT,ROW_REMAPPER, ECC,PAGE_RETIREMENT, ECC)"),
            "{results:?}"
        );
        // A layout nobody knows.
        let smi = write_exe(&dir.path().join("odd"), &fake_nvidia_smi("odd"));
        let results = run_all(&probing(&smi, python, "0,1"));
        assert_eq!(names(&results), ALL, "{results:?}");
        assert_eq!(results[1].status, ProbeStatus::Inconclusive, "{results:?}");
        assert!(results[1].detail.contains("no GPU section"), "{results:?}");
        // When visibility cannot tell, the others say so rather than guess.
        let smi = fake(dir.path(), "echo 'Segmentation fault'");
        let results = run_all(&probing(&smi, python, "0,1"));
        assert_eq!(names(&results), ALL, "{results:?}");
        assert!(
            results[..3]
                .iter()
                .all(|r| r.status == ProbeStatus::Inconclusive),
            "{results:?}"
        );
        assert!(
            results[1]
                .detail
                .starts_with("the job's GPUs are not known"),
            "{results:?}"
        );
    }

    #[test]
    fn only_the_selected_probes_run() {
        let dir = tempfile::tempdir().unwrap();
        let smi = write_exe(&dir.path().join("busy"), &fake_nvidia_smi("busy"));
        let python = "/nonexistent/python3";
        let none: Vec<String> = vec![];
        let mut p = probing(&smi, python, "0,1");
        p.only = Some(&none);
        assert!(run_all(&p).is_empty());

        // processes alone still finds the job's GPUs (an unrecorded -L).
        let only = vec![PROCESSES.to_string()];
        p.only = Some(&only);
        let results = run_all(&p);
        assert_eq!(names(&results), [PROCESSES]);
        assert!(
            !results[0].ok && results[0].detail.contains("pid 48213"),
            "{results:?}"
        );

        let only = vec![HEALTH.to_string(), VISIBILITY.to_string()];
        p.only = Some(&only);
        let results = run_all(&p);
        assert_eq!(names(&results), [VISIBILITY, HEALTH], "{results:?}");
        assert!(results.iter().all(|r| r.ok));
    }

    #[test]
    fn a_probe_whose_breaker_is_open_is_not_run_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        // `busy`: the processes probe would blame the node.
        let smi = write_exe(&dir.path().join("busy"), &fake_nvidia_smi("busy"));
        let only = vec![VISIBILITY.to_string(), PROCESSES.to_string()];
        let skip = vec![PROCESSES.to_string()];
        let mut p = probing(&smi, "/nonexistent/python3", "0,1");
        p.only = Some(&only);
        p.skip = &skip;
        let results = run_all(&p);
        assert_eq!(names(&results), [VISIBILITY, PROCESSES], "{results:?}");
        assert_eq!(results[0].status, ProbeStatus::Healthy);
        assert_eq!(results[1].status, ProbeStatus::Inconclusive);
        assert!(results[1].detail.contains("circuit breaker"), "{results:?}");
    }

    #[test]
    fn the_cuda_probe_runs_pythons_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let smi = write_exe(&dir.path().join("nvidia-smi"), &fake_nvidia_smi("healthy"));
        let only = vec![CUDA.to_string()];
        let run = |body: &str, name: &str| {
            let python = write_exe(&dir.path().join(name), &format!("#!/bin/sh\n{body}\n"));
            let mut p = probing(&smi, &python, "0,1");
            p.only = Some(&only);
            p.cuda_timeout = Duration::from_millis(800);
            let mut results = run_all(&p);
            assert_eq!(results.len(), 1);
            results.remove(0)
        };
        // The program is passed with -c; CUDA_VISIBLE_DEVICES is set.
        let r = run(
            r#"[ "$1" = -c ] || exit 9
echo "COUNT 2 torch 2.3.1"
for i in $(echo "$CUDA_VISIBLE_DEVICES" | tr , ' '); do echo "DEV $i ok NVIDIA A100-SXM4-80GB"; done"#,
            "good",
        );
        assert!(r.ok, "{r:?}");
        assert_eq!(
            r.detail,
            "a kernel ran on 2 CUDA device(s): NVIDIA A100-SXM4-80GB"
        );
        let r = run("echo NOFRAMEWORK ModuleNotFoundError; exit 3", "none");
        assert!(r.ok && r.detail == CUDA_SKIPPED, "{r:?}");
        assert_eq!(r.status, ProbeStatus::Inconclusive);
        let r = run(
            "echo 'RuntimeError: CUDA error: no kernel image' >&2; exit 1",
            "bad",
        );
        assert_eq!(r.status, ProbeStatus::Inconclusive, "{r:?}");
        assert!(r.detail.contains("no kernel image"), "{r:?}");
        let r = run(
            "echo 'RuntimeError: CUDA error: uncorrectable ECC error encountered' >&2; exit 1",
            "ecc",
        );
        assert!(r.is_faulty() && !r.ok, "{r:?}");
        let started = Instant::now();
        let r = run("exec sleep 30", "hang");
        assert_eq!(r.status, ProbeStatus::Inconclusive, "{r:?}");
        assert!(r.detail.contains("did not finish within"), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// The test cluster's fake nvidia-smi (scripts/testcluster), as `up`
    /// writes it, with its faults in `faults`.
    fn testcluster_fake(dir: &std::path::Path, faults: &std::path::Path) -> String {
        let script = include_str!("../../scripts/testcluster");
        let start = script
            .find("fake nvidia-smi written by scripts/testcluster")
            .unwrap();
        let body = &script[start..];
        let body = &body[body.find("cat <<'EOF'\n").unwrap() + "cat <<'EOF'\n".len()..];
        let body = &body[..body.find("\nEOF\n").unwrap()];
        write_exe(
            &dir.join("nvidia-smi"),
            &format!("#!/bin/sh\nFAULTS={}\n{body}\n", faults.display()),
        )
    }

    #[test]
    fn the_testcluster_fake_answers_every_probe() {
        let dir = tempfile::tempdir().unwrap();
        let faults = dir.path().join("faults");
        std::fs::create_dir(&faults).unwrap();
        let smi = testcluster_fake(dir.path(), &faults);
        let run = |node: &str, fault: Option<&str>, cvd: &str| {
            match fault {
                Some(f) => std::fs::write(faults.join(node), format!("{f}\n")).unwrap(),
                None => {
                    let _ = std::fs::remove_file(faults.join(node));
                }
            }
            let wrapper = write_exe(
                &dir.path().join(format!("smi-{node}")),
                &format!("#!/bin/sh\nSLURMD_NODENAME={node} exec {smi} \"$@\"\n"),
            );
            let mut p = probing(&wrapper, "/nonexistent/python3", cvd);
            p.requested = cvd.split(',').count() as u32;
            run_all(&p)
        };
        for node in ["a100-1", "a6000-2", "rtx4090-1"] {
            let results = run(node, None, "2,3");
            assert_eq!(names(&results), ALL, "{node}: {results:?}");
            assert!(results.iter().all(|r| r.ok), "{node}: {results:?}");
        }
        let results = run("rtx4090-1", None, "0");
        assert!(
            results[1].detail.contains("ECC counts N/A on 1"),
            "{results:?}"
        );

        let results = run("a100-1", Some("ecc"), "0,1");
        assert_eq!(names(&results), [VISIBILITY, HEALTH], "{results:?}");
        assert!(
            results[1].detail.contains("DRAM Uncorrectable 2"),
            "{results:?}"
        );
        // ecc is GPU 0's: a job on GPUs 1 and 2 does not see it.
        let results = run("a100-1", Some("ecc"), "1,2");
        assert!(results.iter().all(|r| r.ok), "{results:?}");

        let results = run("a6000-1", Some("busy"), "4,5");
        assert_eq!(
            names(&results),
            [VISIBILITY, HEALTH, PROCESSES],
            "{results:?}"
        );
        assert!(results[2].detail.contains("pid 4242"), "{results:?}");

        for (fault, probe) in [("lost", VISIBILITY), ("error", VISIBILITY)] {
            let results = run("a100-2", Some(fault), "0,1");
            assert_eq!(names(&results), [probe], "{fault}: {results:?}");
            assert!(!results[0].ok);
        }

        // An old driver's refusal: asked again with fewer display types.
        let results = run("a100-2", Some("refuse-q"), "0,1");
        assert_eq!(names(&results), ALL, "{results:?}");
        assert_eq!(results[1].status, ProbeStatus::Healthy, "{results:?}");
        assert!(
            results[1]
                .detail
                .contains("refused -d ECC,PAGE_RETIREMENT,ROW_REMAPPER"),
            "{results:?}"
        );
        // A layout nobody knows: inconclusive, and the probing goes on.
        let results = run("a100-2", Some("odd-layout"), "0,1");
        assert_eq!(names(&results), ALL, "{results:?}");
        assert_eq!(results[1].status, ProbeStatus::Inconclusive, "{results:?}");
        assert!(results[1].detail.contains("no GPU section"), "{results:?}");
    }
}
