//! GPU probes, run before the workload starts.
//!
//! Each probe is a pure decision over what a tool printed plus what the job
//! should see ([`judge_listing`]), and a thin runner around it
//! ([`visibility`]) that runs the tool with a deadline. A failed probe blames
//! the node: the wrapper then ends the attempt without starting the workload.
//!
//! The one probe so far, `visibility`, runs `nvidia-smi -L` and checks that
//! the GPUs Slurm handed the job (`CUDA_VISIBLE_DEVICES`) are really there.

use std::time::{Duration, Instant};

use crate::slurm::SlurmError;
use crate::slurm::runner::Invocation;
use crate::store::records::ProbeResult;

/// The probe's name in [`ProbeResult::name`] and `Verdict::ProbeFailed`.
pub const VISIBILITY: &str = "visibility";

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
}

/// What `nvidia-smi -L` printed, sorted into GPUs, MIG instances and errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub gpus: Vec<Listed>,
    pub migs: Vec<Listed>,
    /// Lines in which nvidia-smi reports a broken GPU or driver.
    pub errors: Vec<String>,
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
    for line in stdout.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("GPU ")
            && let Some((index, rest)) = rest.split_once(':')
            && !index.is_empty()
            && index.chars().all(|c| c.is_ascii_digit())
        {
            let (name, uuid) = split_uuid(rest);
            listing.gpus.push(Listed { name, uuid });
        } else if line.starts_with("MIG ") && line.contains("Device") {
            let (head, uuid) = split_uuid(line);
            let name = head
                .split_once("Device")
                .map_or(head.as_str(), |(profile, _)| profile)
                .trim()
                .to_string();
            listing.migs.push(Listed { name, uuid });
        } else if is_error_line(line) {
            listing.errors.push(line.to_string());
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

/// Decides the `visibility` probe: `Ok(detail)` when every GPU the job should
/// see is listed, `Err(detail)` otherwise.
///
/// `nvidia-smi` ignores `CUDA_VISIBLE_DEVICES`: it lists every GPU the job's
/// cgroup lets it open (all of the node's GPUs where Slurm does not constrain
/// devices). So the check is "at least as many as expected", and, where the
/// job was given UUIDs, "each of those UUIDs is listed".
pub fn judge_listing(listing: &Listing, expect: &Expectation) -> Result<String, String> {
    if let Some(first) = listing.errors.first() {
        let more = match listing.errors.len() {
            1 => String::new(),
            n => format!(" (and {} more error lines)", n - 1),
        };
        return Err(bound(format!("nvidia-smi reports: {first}{more}")));
    }
    let (kind, listed) = if expect.mig {
        ("MIG instance", &listing.migs)
    } else {
        ("GPU", &listing.gpus)
    };
    let wanted = expect.devices.join(",");
    if listed.len() < expect.count() {
        return Err(bound(format!(
            "nvidia-smi lists {} {kind}(s), the job should see {} (CUDA_VISIBLE_DEVICES={wanted})",
            listed.len(),
            expect.count(),
        )));
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
        return Err(bound(format!(
            "nvidia-smi does not list {} (CUDA_VISIBLE_DEVICES={wanted})",
            missing.join(", ")
        )));
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
    let started = Instant::now();
    let verdict = run_visibility(program, cuda_visible_devices, requested, timeout);
    let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (ok, detail) = match verdict {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    ProbeResult {
        name: VISIBILITY.to_string(),
        ok,
        detail,
        millis,
    }
}

fn run_visibility(
    program: &str,
    cuda_visible_devices: Option<&str>,
    requested: u32,
    timeout: Duration,
) -> Result<String, String> {
    let expect = expectation(cuda_visible_devices, requested)?;
    let mut inv = Invocation::new(program, timeout).arg("-L");
    if let Some(cvd) = cuda_visible_devices {
        inv.env.push(("CUDA_VISIBLE_DEVICES".into(), cvd.into()));
    }
    let out = inv.run().map_err(|e| match e {
        SlurmError::NotFound { source, .. } => {
            format!("cannot run {program}: {source} (is the NVIDIA driver installed?)")
        }
        SlurmError::TimedOut { after, .. } => {
            format!("{program} -L did not answer within {after:?}")
        }
        other => format!("{program} -L: {other}"),
    })?;
    if !out.success() {
        let message = out.message();
        let message = if message.is_empty() {
            "no output".to_string()
        } else {
            message.lines().take(3).collect::<Vec<_>>().join(" / ")
        };
        return Err(bound(format!(
            "{program} -L failed ({}): {message}",
            out.status_text()
        )));
    }
    let mut listing = parse_listing(&out.stdout);
    // Errors may come on stderr while the exit status still says success.
    listing.errors.extend(
        out.stderr
            .lines()
            .map(str::trim)
            .filter(|l| is_error_line(l))
            .map(str::to_string),
    );
    judge_listing(&listing, &expect)
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
        let err = judge_listing(&l, &expect("0,1,2,3")).unwrap_err();
        assert!(err.contains("lists 3 GPU(s)"), "{err}");
        assert!(err.contains("should see 4"), "{err}");
        assert!(err.contains("CUDA_VISIBLE_DEVICES=0,1,2,3"), "{err}");
    }

    #[test]
    fn a_missing_uuid_fails_even_when_the_count_is_right() {
        let l = parse_listing(FOUR_A100);
        let err =
            judge_listing(&l, &expect("GPU-00000000-0000-0000-0000-000000000000")).unwrap_err();
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
        let err = judge_listing(&l, &e).unwrap_err();
        assert!(err.contains("lists 3 MIG instance(s)"), "{err}");
        let e = expect("MIG-GPU-e91edf3b-b297-37c1-a2a7-7601c3238fa2/1/0");
        judge_listing(&parse_listing(MIG_R450), &e).unwrap();
        judge_listing(&parse_listing(FOUR_A100), &e).unwrap_err();
    }

    #[test]
    fn error_lines_and_garbage_fail() {
        let broken = "\
GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-5b6a4d6e-1b7c-9f7d-2b3c-4d5e6f7a8b9c)
Unable to determine the device handle for GPU0000:41:00.0: Unknown Error
";
        let err = judge_listing(&parse_listing(broken), &expect("0")).unwrap_err();
        assert!(
            err.contains("Unable to determine the device handle"),
            "{err}"
        );

        let garbage = "Segmentation fault\n\u{0}\u{1}binary junk\nGPU x: not a gpu\nGPU : none\n";
        let err = judge_listing(&parse_listing(garbage), &expect("0")).unwrap_err();
        assert!(err.contains("lists 0 GPU(s)"), "{err}");
        assert!(judge_listing(&parse_listing(""), &expect("0")).is_err());

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
        assert!(!r.ok && r.detail.contains("cannot run"), "{r:?}");

        let hang = fake(dir.path(), "exec sleep 30");
        let started = Instant::now();
        let r = visibility(&hang, Some("0"), 1, Duration::from_millis(300));
        assert!(!r.ok && r.detail.contains("did not answer"), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
