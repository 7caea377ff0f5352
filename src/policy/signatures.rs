//! Known failure signatures in a workload's stderr, as data: which text means
//! a broken node (GPU, driver, interconnect, mount) and which a bug in the
//! workload, and what Shepherd should do about it. See docs/signatures.md.
//!
//! - [`BUILTIN`] is the table; [`SignatureSet`] is the table plus the user's
//!   own [`UserSignature`]s (from the config file, `[[signature]]`).
//! - [`scan`] finds the signatures in a text (the outcome's `stderr_tail`),
//!   one [`Hit`] per signature, in order of first appearance.
//! - [`verdict`] picks the decisive hit of one attempt.
//!
//! Matching is plain ASCII case-insensitive substring search, line by line
//! (lines end at `\n` or `\r`, so progress bars split too). NVIDIA Xid reports
//! (`NVRM: Xid (PCI:0000:3b:00): 79, ...`) are recognised by reading the number
//! after the word `Xid` and looking it up in the signatures' Xid codes.
//! Everything here is pure.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::state::Blame;

/// Who a signature blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureBlame {
    /// The node: hardware, driver, interconnect or a node's mount.
    Node,
    /// The workload: a bug or a setting in the user's code.
    Workload,
    /// Usually the workload, sometimes the node (an illegal memory access,
    /// a bus error, a full disk). For one attempt it counts as the
    /// workload's; the next attempt avoids the node, and the node is blamed
    /// only when the signature follows the node rather than the code: it
    /// shows the same signature for two different runs that did not show it
    /// anywhere else (docs/signatures.md, "Across attempts").
    Ambiguous,
}

impl SignatureBlame {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureBlame::Node => "node",
            SignatureBlame::Workload => "workload",
            SignatureBlame::Ambiguous => "ambiguous",
        }
    }

    /// The action that goes with this blame when a user signature names none.
    pub fn default_action(self) -> SignatureAction {
        match self {
            SignatureBlame::Node => SignatureAction::BanNode,
            SignatureBlame::Workload => SignatureAction::CountAgainstWorkload,
            SignatureBlame::Ambiguous => SignatureAction::CountAndRetryElsewhere,
        }
    }

    /// The blame for one attempt judged alone: `Ambiguous` is the workload's.
    pub fn for_one_attempt(self) -> SignatureBlame {
        match self {
            SignatureBlame::Node => SignatureBlame::Node,
            SignatureBlame::Workload | SignatureBlame::Ambiguous => SignatureBlame::Workload,
        }
    }

    /// As the attempt's [`Blame`] (`Ambiguous` is the workload's).
    pub fn to_blame(self) -> Blame {
        match self.for_one_attempt() {
            SignatureBlame::Node => Blame::Node,
            _ => Blame::Workload,
        }
    }
}

impl fmt::Display for SignatureBlame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What Shepherd does about an attempt whose decisive hit is this signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureAction {
    /// The node is proven broken (hardware or driver): it gets a strike in
    /// the node blacklist, the run is resubmitted at once elsewhere, and the
    /// attempt is not charged to `--max-retries`.
    BanNode,
    /// The node is suspected but not proven (a network or filesystem error
    /// that may be transient or come from elsewhere): the run is resubmitted
    /// at once, its next attempt avoids this node, nothing is charged, and
    /// the node gets no strike.
    RetryElsewhere,
    /// A workload failure: charged to `--max-retries`, resubmitted after
    /// backoff, on any node.
    CountAgainstWorkload,
    /// Ambiguous: charged to `--max-retries` and resubmitted after backoff
    /// like a workload failure, but the next attempt avoids this node, so
    /// that a repeat elsewhere shows that the code is at fault.
    CountAndRetryElsewhere,
}

impl SignatureAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureAction::BanNode => "ban_node",
            SignatureAction::RetryElsewhere => "retry_elsewhere",
            SignatureAction::CountAgainstWorkload => "count_against_workload",
            SignatureAction::CountAndRetryElsewhere => "count_and_retry_elsewhere",
        }
    }

    /// The one blame this action goes with.
    pub fn blame(self) -> SignatureBlame {
        match self {
            SignatureAction::BanNode | SignatureAction::RetryElsewhere => SignatureBlame::Node,
            SignatureAction::CountAgainstWorkload => SignatureBlame::Workload,
            SignatureAction::CountAndRetryElsewhere => SignatureBlame::Ambiguous,
        }
    }

    /// The verdict's tier: lower wins (see [`verdict`]).
    fn tier(self) -> u8 {
        match self {
            SignatureAction::BanNode => 0,
            SignatureAction::CountAgainstWorkload => 1,
            SignatureAction::RetryElsewhere | SignatureAction::CountAndRetryElsewhere => 2,
        }
    }
}

impl fmt::Display for SignatureAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which NVIDIA Xid codes a signature claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Xids {
    None,
    Codes(&'static [u32]),
    /// Any Xid that no other signature of the set claims.
    Unlisted,
}

/// A built-in signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// Stable name, kebab-case: in hits, events and user overrides.
    pub id: &'static str,
    /// Lower-case substrings; a line containing any of them matches.
    pub patterns: &'static [&'static str],
    /// Lower-case substrings; a line containing any of them never matches
    /// this signature (`PCIe Bus Error` is not a `Bus error`).
    pub unless: &'static [&'static str],
    /// Xid codes: a line reporting one of them matches.
    pub xids: Xids,
    pub blame: SignatureBlame,
    pub action: SignatureAction,
    /// One sentence for people: what it means.
    pub meaning: &'static str,
}

use SignatureAction::{BanNode, CountAgainstWorkload, CountAndRetryElsewhere, RetryElsewhere};
use SignatureBlame::{Ambiguous, Node, Workload};

/// The built-in signatures. docs/signatures.md documents each (a test keeps
/// the two in step).
pub static BUILTIN: &[Signature] = &[
    // --- The node, proven: hardware or driver. ---
    Signature {
        id: "cuda-ecc-uncorrectable",
        patterns: &[
            "uncorrectable ecc error",
            "uncorrected ecc error",
            "uncorrectable double bit error",
            "double-bit ecc error",
            "double bit ecc error",
            "cudaerroreccuncorrectable",
            "cuda_error_ecc_uncorrectable",
        ],
        unless: &["errors: 0", "errors : 0", "errors = 0", "errors=0"],
        xids: Xids::Codes(&[48, 95]),
        blame: Node,
        action: BanNode,
        meaning: "the GPU's memory had an uncorrectable (double-bit) ECC error",
    },
    Signature {
        id: "gpu-fallen-off-bus",
        patterns: &["fallen off the bus"],
        unless: &[],
        xids: Xids::Codes(&[79]),
        blame: Node,
        action: BanNode,
        meaning: "the GPU stopped answering on PCIe; only a reset or reboot brings it back",
    },
    Signature {
        id: "gpu-lost",
        patterns: &["gpu is lost", "unable to determine the device handle"],
        unless: &[],
        xids: Xids::None,
        blame: Node,
        action: BanNode,
        meaning: "nvidia-smi cannot reach a GPU that the node has",
    },
    Signature {
        id: "gpu-row-remap",
        patterns: &[
            "row remapping failure",
            "row remap failure",
            "row_remap_failure",
        ],
        unless: &[],
        xids: Xids::Codes(&[63, 64]),
        blame: Node,
        action: BanNode,
        meaning: "the GPU retired or remapped faulty memory (or failed to); it needs a reset",
    },
    Signature {
        id: "gpu-nvlink-error",
        patterns: &[],
        unless: &[],
        xids: Xids::Codes(&[74]),
        blame: Node,
        action: BanNode,
        meaning: "an NVLink connection between GPUs failed",
    },
    Signature {
        id: "gpu-firmware-error",
        patterns: &[],
        unless: &[],
        xids: Xids::Codes(&[61, 62, 119, 120]),
        blame: Node,
        action: BanNode,
        meaning: "the GPU's on-board controller (PMU or GSP) halted or timed out",
    },
    Signature {
        id: "nvidia-driver-unreachable",
        patterns: &[
            "couldn't communicate with the nvidia driver",
            "could not communicate with the nvidia driver",
        ],
        unless: &[],
        xids: Xids::None,
        blame: Node,
        action: BanNode,
        meaning: "the NVIDIA kernel driver is not loaded or not responding",
    },
    Signature {
        id: "nvidia-driver-mismatch",
        patterns: &["driver/library version mismatch"],
        unless: &[],
        xids: Xids::None,
        blame: Node,
        action: BanNode,
        meaning: "the node's NVIDIA driver was upgraded but the old kernel module is still loaded",
    },
    Signature {
        id: "nvidia-rm-init-adapter-failed",
        patterns: &["rminitadapter failed"],
        unless: &[],
        xids: Xids::None,
        blame: Node,
        action: BanNode,
        meaning: "the NVIDIA driver could not initialise a GPU",
    },
    // --- The node, suspected: transient or not proven. ---
    Signature {
        id: "gpu-ecc-contained",
        patterns: &[],
        unless: &[],
        xids: Xids::Codes(&[94]),
        blame: Node,
        action: RetryElsewhere,
        meaning: "a contained uncorrectable memory error killed the process; the GPU stays usable",
    },
    Signature {
        id: "nccl-network-error",
        patterns: &["nccl warn net/ib", "nccl warn net/socket"],
        unless: &[],
        xids: Xids::None,
        blame: Node,
        action: RetryElsewhere,
        meaning: "NCCL's network transport (InfiniBand or sockets) failed",
    },
    Signature {
        id: "nccl-system-error",
        patterns: &["unhandled system error", "ncclsystemerror"],
        unless: &[],
        xids: Xids::None,
        blame: Node,
        action: RetryElsewhere,
        meaning: "a system call or library under NCCL failed (network, shared memory, device)",
    },
    Signature {
        id: "fs-io-error",
        patterns: &["input/output error"],
        unless: &[],
        xids: Xids::None,
        blame: Node,
        action: RetryElsewhere,
        meaning: "reading or writing a file failed (EIO): a disk or network filesystem problem",
    },
    Signature {
        id: "fs-mount-lost",
        patterns: &["transport endpoint is not connected"],
        unless: &[],
        xids: Xids::None,
        blame: Node,
        action: RetryElsewhere,
        meaning: "a mount on the node is gone (ENOTCONN, usually a crashed FUSE or network filesystem)",
    },
    // --- The workload. ---
    Signature {
        id: "cuda-out-of-memory",
        patterns: &[
            "cuda out of memory",
            "cuda error: out of memory",
            "cudaerrormemoryallocation",
            "cuda_error_out_of_memory",
            "cublas_status_alloc_failed",
            "resource_exhausted: out of memory",
        ],
        unless: &[],
        xids: Xids::None,
        blame: Workload,
        action: CountAgainstWorkload,
        meaning: "the workload asked for more GPU memory than the GPU has free",
    },
    Signature {
        id: "cuda-device-side-assert",
        patterns: &["device-side assert triggered", "cudaerrorassert"],
        unless: &[],
        xids: Xids::None,
        blame: Workload,
        action: CountAgainstWorkload,
        meaning: "an assertion in a GPU kernel failed (often an index out of range)",
    },
    Signature {
        id: "segmentation-fault",
        patterns: &["segmentation fault", "sigsegv"],
        unless: &[],
        xids: Xids::None,
        blame: Workload,
        action: CountAgainstWorkload,
        meaning: "a process of the workload touched memory it does not own (SIGSEGV)",
    },
    // --- Ambiguous: the workload's unless it follows the node. ---
    Signature {
        id: "cuda-illegal-memory-access",
        patterns: &[
            "an illegal memory access was encountered",
            "cudaerrorillegaladdress",
            "cuda_error_illegal_address",
        ],
        unless: &[],
        xids: Xids::None,
        blame: Ambiguous,
        action: CountAndRetryElsewhere,
        meaning: "a GPU kernel read or wrote an invalid address: usually a bug, rarely bad GPU memory",
    },
    Signature {
        id: "cuda-launch-failure",
        patterns: &[
            "unspecified launch failure",
            "cudaerrorlaunchfailure",
            "cuda_error_launch_failed",
        ],
        unless: &[],
        xids: Xids::None,
        blame: Ambiguous,
        action: CountAndRetryElsewhere,
        meaning: "a GPU kernel crashed: a bug in the kernel, or a GPU fault",
    },
    Signature {
        id: "cuda-unknown-error",
        patterns: &[
            "cuda error: unknown error",
            "cudaerrorunknown",
            "cuda_error_unknown",
        ],
        unless: &[],
        xids: Xids::None,
        blame: Ambiguous,
        action: CountAndRetryElsewhere,
        meaning: "CUDA failed without saying why; often the driver or GPU, sometimes the code",
    },
    Signature {
        id: "cuda-no-device",
        patterns: &[
            "no cuda-capable device is detected",
            "no cuda gpus are available",
            "cudaerrornodevice",
            "cuda_error_no_device",
        ],
        unless: &[],
        xids: Xids::None,
        blame: Ambiguous,
        action: CountAndRetryElsewhere,
        meaning: "the workload saw no GPU although the wrapper's probe did (a container without GPU access, CUDA_VISIBLE_DEVICES changed, or a GPU lost mid-run)",
    },
    Signature {
        id: "cuda-driver-insufficient",
        patterns: &[
            "cuda driver version is insufficient",
            "cudaerrorinsufficientdriver",
            "nvidia driver on your system is too old",
        ],
        unless: &[],
        xids: Xids::None,
        blame: Ambiguous,
        action: CountAndRetryElsewhere,
        meaning: "the workload's CUDA is newer than the node's driver: another node may have a newer driver",
    },
    Signature {
        id: "gpu-xid-application-fault",
        patterns: &[],
        unless: &[],
        xids: Xids::Codes(&[13, 31, 43, 45]),
        blame: Ambiguous,
        action: CountAndRetryElsewhere,
        meaning: "the driver reported a GPU exception or memory fault of a process, or the cleanup after it: usually the code",
    },
    Signature {
        id: "nccl-watchdog-timeout",
        patterns: &["watchdog caught collective operation timeout"],
        unless: &[],
        xids: Xids::None,
        blame: Ambiguous,
        action: CountAndRetryElsewhere,
        meaning: "a collective operation did not finish in time: a hung or crashed rank, or the network",
    },
    Signature {
        id: "nccl-remote-error",
        patterns: &[
            "ncclremoteerror",
            "remote process exited or there was a network error",
        ],
        unless: &[],
        xids: Xids::None,
        blame: Ambiguous,
        action: CountAndRetryElsewhere,
        meaning: "a peer rank of NCCL went away: it crashed, or the network failed",
    },
    Signature {
        id: "bus-error",
        patterns: &["bus error", "sigbus"],
        unless: &["pcie bus error", "aer:"],
        xids: Xids::None,
        blame: Ambiguous,
        action: CountAndRetryElsewhere,
        meaning: "SIGBUS: shared memory (/dev/shm) exhausted, a mapped file truncated or its mount lost, or bad RAM",
    },
    Signature {
        id: "no-space-left",
        patterns: &["no space left on device"],
        unless: &[],
        xids: Xids::None,
        blame: Ambiguous,
        action: CountAndRetryElsewhere,
        meaning: "a disk is full: the user's quota or shared filesystem (follows the run), or the node's local disk or /dev/shm (follows the node)",
    },
    Signature {
        id: "gpu-xid-other",
        patterns: &[],
        unless: &[],
        xids: Xids::Unlisted,
        blame: Ambiguous,
        action: CountAndRetryElsewhere,
        meaning: "the driver reported an Xid that no other signature knows",
    },
];

/// One signature from the user's config file:
///
/// ```toml
/// [[signature]]
/// id = "lustre-evicted"
/// pattern = "This client was evicted by"
/// blame = "node"                 # node | workload | ambiguous
/// action = "retry_elsewhere"     # optional: the blame's default otherwise
/// meaning = "the node lost its Lustre client"   # optional
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSignature {
    /// Lower-case `a-z`, `0-9`, `-`, `_`, `.`; a built-in's id overrides it.
    pub id: String,
    /// A case-insensitive substring.
    pub pattern: String,
    pub blame: SignatureBlame,
    /// Defaults to [`SignatureBlame::default_action`].
    #[serde(default)]
    pub action: Option<SignatureAction>,
    #[serde(default)]
    pub meaning: Option<String>,
}

/// Why a set of user signatures was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature id {0:?}: use 1 to 64 characters of a-z, 0-9, '-', '_' and '.'")]
    BadId(String),
    #[error(
        "signature {id:?}: pattern {pattern:?} is too short (at least {} characters besides spaces)",
        MIN_PATTERN
    )]
    ShortPattern { id: String, pattern: String },
    #[error("signature {0:?} is defined twice")]
    DuplicateId(String),
    #[error(
        "signature {id:?}: action {action} does not go with blame {blame} (it goes with blame {})",
        .action.blame()
    )]
    Inconsistent {
        id: String,
        blame: SignatureBlame,
        action: SignatureAction,
    },
}

/// A user pattern shorter than this (spaces aside) would match almost anything.
pub const MIN_PATTERN: usize = 3;
const MAX_ID: usize = 64;
/// The longest [`Hit::line`], in bytes (an ellipsis marks a cut).
pub const MAX_LINE: usize = 240;

/// One signature ready to match.
#[derive(Debug, Clone)]
struct Rule {
    id: Cow<'static, str>,
    /// Lower-case.
    patterns: Vec<Cow<'static, str>>,
    unless: &'static [&'static str],
    xids: Xids,
    blame: SignatureBlame,
    action: SignatureAction,
    meaning: Cow<'static, str>,
}

impl Rule {
    fn builtin(s: &Signature) -> Rule {
        Rule {
            id: Cow::Borrowed(s.id),
            patterns: s.patterns.iter().map(|p| Cow::Borrowed(*p)).collect(),
            unless: s.unless,
            xids: s.xids,
            blame: s.blame,
            action: s.action,
            meaning: Cow::Borrowed(s.meaning),
        }
    }

    /// Where in `lower` (a lower-cased line) this rule matches first, if it does.
    fn find(&self, lower: &str, xids: &[(usize, u32)], claimed: &[u32]) -> Option<usize> {
        if self.unless.iter().any(|u| lower.contains(u)) {
            return None;
        }
        let by_text = self.patterns.iter().filter_map(|p| lower.find(&**p)).min();
        let by_xid = match self.xids {
            Xids::None => None,
            Xids::Codes(codes) => xids.iter().find(|(_, c)| codes.contains(c)),
            Xids::Unlisted => xids.iter().find(|(_, c)| !claimed.contains(c)),
        }
        .map(|(at, _)| *at);
        by_text.into_iter().chain(by_xid).min()
    }
}

/// The built-in signatures plus the user's.
#[derive(Debug, Clone)]
pub struct SignatureSet {
    /// User signatures first (in their order), then the built-ins they do not
    /// override (in table order).
    rules: Vec<Rule>,
    /// Xid codes claimed by some rule's `Xids::Codes`.
    claimed: Vec<u32>,
}

impl Default for SignatureSet {
    fn default() -> Self {
        SignatureSet::builtin()
    }
}

impl SignatureSet {
    /// The built-in signatures alone.
    pub fn builtin() -> SignatureSet {
        SignatureSet::from_rules(BUILTIN.iter().map(Rule::builtin).collect())
    }

    /// The built-ins plus `user`, which are checked first.
    ///
    /// A user signature with a built-in's id takes its place: its blame,
    /// action and meaning (when given) win, and its pattern is added to the
    /// built-in's patterns (whose `unless` exclusions and Xid codes still
    /// apply). This re-judges a known fault without losing its variants.
    pub fn new(user: &[UserSignature]) -> Result<SignatureSet, SignatureError> {
        let mut rules: Vec<Rule> = Vec::with_capacity(user.len() + BUILTIN.len());
        for u in user {
            validate(u)?;
            if rules.iter().any(|r| r.id == u.id) {
                return Err(SignatureError::DuplicateId(u.id.clone()));
            }
            let action = u.action.unwrap_or(u.blame.default_action());
            let pattern = Cow::Owned(u.pattern.to_ascii_lowercase());
            let rule = match BUILTIN.iter().find(|s| s.id == u.id) {
                Some(base) => {
                    let mut rule = Rule::builtin(base);
                    rule.patterns.insert(0, pattern);
                    rule.blame = u.blame;
                    rule.action = action;
                    if let Some(m) = &u.meaning {
                        rule.meaning = Cow::Owned(m.clone());
                    }
                    rule
                }
                None => Rule {
                    id: Cow::Owned(u.id.clone()),
                    patterns: vec![pattern],
                    unless: &[],
                    xids: Xids::None,
                    blame: u.blame,
                    action,
                    meaning: Cow::Owned(
                        u.meaning
                            .clone()
                            .unwrap_or_else(|| format!("matched the user signature {:?}", u.id)),
                    ),
                },
            };
            rules.push(rule);
        }
        let overridden: Vec<String> = user.iter().map(|u| u.id.clone()).collect();
        rules.extend(
            BUILTIN
                .iter()
                .filter(|s| !overridden.iter().any(|id| id == s.id))
                .map(Rule::builtin),
        );
        Ok(SignatureSet::from_rules(rules))
    }

    fn from_rules(rules: Vec<Rule>) -> SignatureSet {
        let mut claimed: Vec<u32> = rules
            .iter()
            .flat_map(|r| match r.xids {
                Xids::Codes(c) => c,
                _ => &[],
            })
            .copied()
            .collect();
        claimed.sort_unstable();
        claimed.dedup();
        SignatureSet { rules, claimed }
    }

    /// The ids in the order they are checked.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| &*r.id)
    }

    /// The meaning of the signature `id`, if the set has it.
    pub fn meaning(&self, id: &str) -> Option<&str> {
        self.rules.iter().find(|r| r.id == id).map(|r| &*r.meaning)
    }
}

fn validate(u: &UserSignature) -> Result<(), SignatureError> {
    let id_ok = !u.id.is_empty()
        && u.id.len() <= MAX_ID
        && u.id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        });
    if !id_ok {
        return Err(SignatureError::BadId(u.id.clone()));
    }
    if u.pattern.chars().filter(|c| !c.is_whitespace()).count() < MIN_PATTERN {
        return Err(SignatureError::ShortPattern {
            id: u.id.clone(),
            pattern: u.pattern.clone(),
        });
    }
    if let Some(action) = u.action {
        if action.blame() != u.blame {
            return Err(SignatureError::Inconsistent {
                id: u.id.clone(),
                blame: u.blame,
                action,
            });
        }
    }
    Ok(())
}

/// A signature found in a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    pub id: String,
    pub blame: SignatureBlame,
    pub action: SignatureAction,
    /// The first line it matched, trimmed, at most [`MAX_LINE`] bytes around
    /// the match.
    pub line: String,
    pub meaning: String,
}

/// The signatures of `set` found in `text`: one hit per signature, at its
/// first matching line, in order of first appearance (signatures matching
/// the same line in the set's order, user signatures first).
pub fn scan(text: &str, set: &SignatureSet) -> Vec<Hit> {
    let mut hits = Vec::new();
    let mut seen = vec![false; set.rules.len()];
    for raw in text.split(['\n', '\r']) {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let lower = line.to_ascii_lowercase();
        let xids = xid_reports(&lower);
        for (rule, seen) in set.rules.iter().zip(seen.iter_mut()) {
            if *seen {
                continue;
            }
            if let Some(at) = rule.find(&lower, &xids, &set.claimed) {
                *seen = true;
                hits.push(Hit {
                    id: rule.id.to_string(),
                    blame: rule.blame,
                    action: rule.action,
                    line: excerpt(line, at),
                    meaning: rule.meaning.to_string(),
                });
            }
        }
    }
    hits
}

/// The decisive hit of one attempt, and the blame for that attempt (`Node`
/// or `Workload`; an `Ambiguous` hit counts as the workload's).
///
/// 1. Proof against the node (`ban_node`) wins over everything, wherever it
///    appears: a broken GPU makes the code fail in every way (illegal memory
///    accesses, launch failures, NCCL errors), but no bug makes a GPU fall
///    off the bus.
/// 2. Otherwise proof against the workload (`count_against_workload`: out of
///    memory, a device-side assert, a segfault) wins: a suspected node cannot
///    explain it, and a crashing rank makes its peers report network errors.
/// 3. Otherwise the first hit in the text (`retry_elsewhere` or
///    `count_and_retry_elsewhere`): the cause comes before its consequences
///    (a network error before the collective timeout it causes).
///
/// Within a tier the earliest hit wins. `None` when there are no hits.
pub fn verdict(hits: &[Hit]) -> Option<(SignatureBlame, &Hit)> {
    hits.iter()
        .enumerate()
        .min_by_key(|(i, h)| (h.action.tier(), *i))
        .map(|(_, h)| (h.blame.for_one_attempt(), h))
}

/// Bytes that continue a word: a keyword must not touch them.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The Xid reports in a lower-cased line: where each starts and its code.
///
/// `xid` must stand as a word, followed by an optional `(...)` (the PCI
/// address), separators (` `, `:`, `=`, `#`), an optional `error`, and a
/// number of 1 to 3 digits: `NVRM: Xid (PCI:0000:3b:00): 79, pid=...`,
/// `XID 48`, `xid=13`, `Xid error: 94`.
fn xid_reports(lower: &str) -> Vec<(usize, u32)> {
    let bytes = lower.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(off) = lower[from..].find("xid") {
        let at = from + off;
        from = at + 3;
        if at > 0 && is_word(bytes[at - 1]) {
            continue;
        }
        if let Some(code) = xid_code(&bytes[at + 3..]) {
            out.push((at, code));
        }
    }
    out
}

fn xid_code(rest: &[u8]) -> Option<u32> {
    if rest.first().is_some_and(|b| is_word(*b)) {
        return None;
    }
    let skip = |i: &mut usize, set: &[u8]| {
        while rest.get(*i).is_some_and(|b| set.contains(b)) {
            *i += 1;
        }
    };
    let mut i = 0;
    skip(&mut i, b" \t");
    if rest.get(i) == Some(&b'(') {
        let close = rest[i..].iter().take(64).position(|b| *b == b')')?;
        i += close + 1;
    }
    skip(&mut i, b" \t:=#");
    if rest[i..].starts_with(b"error") {
        i += "error".len();
        skip(&mut i, b" \t:=#");
    }
    let digits = rest[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 3 || rest.get(i + digits).is_some_and(|b| is_word(*b)) {
        return None;
    }
    std::str::from_utf8(&rest[i..i + digits]).ok()?.parse().ok()
}

/// `line` (trimmed) bounded to [`MAX_LINE`] bytes, keeping the match at `at`
/// in view.
fn excerpt(line: &str, at: usize) -> String {
    if line.len() <= MAX_LINE {
        return line.to_string();
    }
    const ELLIPSIS: &str = "…";
    let budget = MAX_LINE - 2 * ELLIPSIS.len();
    // `at` is a char boundary, so rounding up never passes it.
    let start = ceil_boundary(line, at.saturating_sub(budget / 4).min(line.len() - budget));
    let end = floor_boundary(line, (start + budget).min(line.len()));
    let mut out = String::with_capacity(MAX_LINE);
    if start > 0 {
        out.push_str(ELLIPSIS);
    }
    out.push_str(&line[start..end]);
    if end < line.len() {
        out.push_str(ELLIPSIS);
    }
    out
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(hits: &[Hit]) -> Vec<&str> {
        hits.iter().map(|h| h.id.as_str()).collect()
    }

    /// What `scan` and `verdict` make of a text with the built-ins.
    fn judge(text: &str) -> (Vec<String>, Option<(SignatureBlame, String)>) {
        let hits = scan(text, &SignatureSet::builtin());
        let v = verdict(&hits).map(|(b, h)| (b, h.id.clone()));
        (ids(&hits).into_iter().map(String::from).collect(), v)
    }

    // ---------------------------------------------------------------- table

    #[test]
    fn the_table_is_well_formed() {
        let mut seen_ids = Vec::new();
        let mut seen_xids = Vec::new();
        let mut unlisted = 0;
        for s in BUILTIN {
            assert!(!seen_ids.contains(&s.id), "{} twice", s.id);
            seen_ids.push(s.id);
            assert!(
                s.id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{} is not kebab-case",
                s.id
            );
            assert_eq!(s.action.blame(), s.blame, "{}: blame and action", s.id);
            for p in s.patterns.iter().chain(s.unless) {
                assert_eq!(*p, p.to_ascii_lowercase(), "{}: {p:?} not lower-case", s.id);
                assert!(p.trim().len() >= MIN_PATTERN, "{}: {p:?} too short", s.id);
            }
            match s.xids {
                Xids::None => assert!(!s.patterns.is_empty(), "{} matches nothing", s.id),
                Xids::Codes(codes) => {
                    assert!(!codes.is_empty(), "{}: empty Xid list", s.id);
                    for c in codes {
                        assert!(!seen_xids.contains(c), "Xid {c} claimed twice");
                        seen_xids.push(*c);
                    }
                }
                Xids::Unlisted => unlisted += 1,
            }
            assert!(!s.meaning.is_empty());
        }
        assert_eq!(unlisted, 1);
    }

    #[test]
    fn the_docs_list_every_builtin_signature() {
        let doc = include_str!("../../docs/signatures.md");
        for s in BUILTIN {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", s.id)))
                .unwrap_or_else(|| panic!("docs/signatures.md has no row for {}", s.id));
            assert!(
                row.contains(&format!("| {} |", s.blame))
                    && row.contains(&format!("| `{}` |", s.action)),
                "docs/signatures.md: blame or action of {} differ: {row}",
                s.id
            );
        }
    }

    // ------------------------------------------------- one line, many forms

    #[test]
    fn single_lines() {
        use SignatureBlame::*;
        #[rustfmt::skip]
        let cases: &[(&str, &str, SignatureBlame)] = &[
            ("RuntimeError: CUDA error: uncorrectable ECC error encountered", "cuda-ecc-uncorrectable", Node),
            ("NVRM: Xid (PCI:0000:3b:00): 48, pid=9012, name=python, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0.", "cuda-ecc-uncorrectable", Node),
            ("Detected 2 volatile double-bit ECC error(s) in GPU 1.", "cuda-ecc-uncorrectable", Node),
            ("NVRM: Xid (PCI:0000:3b:00): 95, pid=9012, name=python, Uncontained: FBHUB. RST: Yes, D-RST: No", "cuda-ecc-uncorrectable", Node),
            ("NVRM: GPU 0000:3b:00.0: GPU has fallen off the bus.", "gpu-fallen-off-bus", Node),
            ("[Tue Nov 24 03:12:44 2026] NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.", "gpu-fallen-off-bus", Node),
            ("kernel: NVRM: Xid (PCI:0000:b1:00): 79, pid=0, name=", "gpu-fallen-off-bus", Node),
            ("Unable to determine the device handle for GPU0000:3B:00.0: Unknown Error", "gpu-lost", Node),
            ("NVRM: Xid (PCI:0000:41:00): 63, pid=2211, name=python3, Row Remapper: New row marked for remapping, reset gpu to activate.", "gpu-row-remap", Node),
            ("NVRM: Xid (PCI:0000:41:00): 64, pid=2211, name=python3, Row Remapper: Failed to remap row", "gpu-row-remap", Node),
            ("NVRM: Xid (PCI:0000:87:00): 74, pid=3321, name=python, NVLink: fatal error detected on link 4(0x10000, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0)", "gpu-nvlink-error", Node),
            ("NVRM: Xid (PCI:0000:87:00): 119, pid=3321, name=python, Timeout after 6s of waiting for RPC response from GPU0 GSP!", "gpu-firmware-error", Node),
            ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.", "nvidia-driver-unreachable", Node),
            ("Failed to initialize NVML: Driver/library version mismatch", "nvidia-driver-mismatch", Node),
            ("NVRM: GPU 0000:3b:00.0: RmInitAdapter failed! (0x26:0xffff:1474)", "nvidia-rm-init-adapter-failed", Node),
            ("NVRM: Xid (PCI:0000:41:00): 94, pid=2211, name=python3, Contained: SM (0x1). RST: No, D-RST: No", "gpu-ecc-contained", Node),
            ("gpu-07:2214:2391 [3] NCCL WARN NET/IB : Got completion from peer 10.20.1.12<52133> with status=12 opcode=0 len=0 vendor err 129 (Recv)", "nccl-network-error", Node),
            ("gpu-07:2214:2391 [3] NCCL WARN NET/Socket : peer 10.20.1.12<52133> shutdown", "nccl-network-error", Node),
            ("torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:275, unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.20.5", "nccl-system-error", Node),
            ("ncclSystemError: System call (e.g. socket, malloc) or external library call failed or device error.", "nccl-system-error", Node),
            ("OSError: [Errno 5] Input/output error: '/lustre/alice/data/shard-0007.tar'", "fs-io-error", Node),
            ("cp: error reading '/scratch/alice/ckpt.pt': Input/output error", "fs-io-error", Node),
            ("OSError: [Errno 107] Transport endpoint is not connected: '/mnt/weka/alice'", "fs-mount-lost", Node),
            ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which 1.12 GiB is free.", "cuda-out-of-memory", Workload),
            ("RuntimeError: CUDA error: out of memory", "cuda-out-of-memory", Workload),
            ("jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying to allocate 17179869184 bytes.", "cuda-out-of-memory", Workload),
            ("RuntimeError: CUDA error: device-side assert triggered", "cuda-device-side-assert", Workload),
            ("/var/spool/slurmd/job4711/slurm_script: line 9: 30123 Segmentation fault      (core dumped) python train.py", "segmentation-fault", Workload),
            ("Fatal Python error: Segmentation fault", "segmentation-fault", Workload),
            ("[E ProcessGroupNCCL] Signal 11 (SIGSEGV) received by PID 4242", "segmentation-fault", Workload),
            ("RuntimeError: CUDA error: an illegal memory access was encountered", "cuda-illegal-memory-access", Workload),
            ("cudaErrorIllegalAddress at kernel.cu:88", "cuda-illegal-memory-access", Workload),
            ("RuntimeError: CUDA error: unspecified launch failure", "cuda-launch-failure", Workload),
            ("CUDA error: cudaErrorLaunchFailure (719) at /src/attention.cu:231", "cuda-launch-failure", Workload),
            ("RuntimeError: CUDA error: unknown error", "cuda-unknown-error", Workload),
            ("RuntimeError: No CUDA GPUs are available", "cuda-no-device", Workload),
            ("cudaGetDeviceCount returned 100 -> no CUDA-capable device is detected", "cuda-no-device", Workload),
            ("CUDA driver version is insufficient for CUDA runtime version", "cuda-driver-insufficient", Workload),
            ("NVRM: Xid (PCI:0000:b1:00): 13, pid=88123, name=python, Graphics SM Warp Exception on (GPC 2, TPC 1, SM 0): Out Of Range Address", "gpu-xid-application-fault", Workload),
            ("NVRM: Xid (PCI:0000:b1:00): 31, pid=88123, name=python, Ch 00000008, intr 00000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f2a_1c000000.", "gpu-xid-application-fault", Workload),
            ("NVRM: Xid (PCI:0000:b1:00): 43, pid=88123, name=python, Ch 00000008", "gpu-xid-application-fault", Workload),
            ("[Rank 3] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=88211, OpType=ALLREDUCE, NumelIn=16777216, Timeout(ms)=600000) ran for 600043 milliseconds before timing out.", "nccl-watchdog-timeout", Workload),
            ("ncclRemoteError: A call failed possibly due to a network error or a remote process exiting prematurely.", "nccl-remote-error", Workload),
            ("/var/spool/slurmd/job4711/slurm_script: line 9: 30123 Bus error               (core dumped) python train.py", "bus-error", Workload),
            ("OSError: [Errno 28] No space left on device: '/tmp/ckpt-step-18000.pt'", "no-space-left", Workload),
            ("NVRM: Xid (PCI:0000:3b:00): 32, pid=1234, name=python, Channel ID 00000010 intr 00040000", "gpu-xid-other", Workload),
            ("dcgmi: XID error 92 on GPU 2", "gpu-xid-other", Workload),
        ];
        for (line, id, blame) in cases {
            let (hits, v) = judge(line);
            assert_eq!(hits, vec![id.to_string()], "{line}");
            assert_eq!(v, Some((*blame, id.to_string())), "{line}");
        }
    }

    #[test]
    fn no_false_positives() {
        let lines = [
            "checking ECC status: ok",
            "ECC mode: enabled, uncorrectable ECC errors: 0",
            "nvidia-smi: Volatile Uncorr. ECC    0",
            "loading the Xidian University remote-sensing dataset",
            "using XIDs from cache",
            "DCGM_FR_XID_ERROR not seen",
            "uuid=0xid 79",
            "Xid error detected earlier, see above",
            "xid 1234 is not an NVIDIA Xid",
            "pcieport 0000:00:03.1: AER: Corrected error received: 0000:00:03.1",
            "pcieport 0000:00:03.1: PCIe Bus Error: severity=Corrected, type=Physical Layer, (Receiver ID)",
            "gpu-07:2214:2390 [3] NCCL INFO Channel 00/0 : 3[3] -> 11[3] [send] via NET/IB/0",
            "gpu-07:2214:2390 [3] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB ; OOB ib0:10.20.1.7<0>",
            "step 18200 | loss 2.113 | lr 3.0e-4 | grad-norm 0.79 | mem 71.2 GiB",
            "Traceback (most recent call last):",
            "segmentation masks loaded: 1200",
        ];
        for line in lines {
            assert_eq!(judge(line), (vec![], None), "{line}");
        }
    }

    #[test]
    fn matching_ignores_case() {
        for line in [
            "cuda OUT OF MEMORY. tried to allocate 20.00 MiB",
            "CUDA Out Of Memory",
            "XID 79 on GPU 0000:3b:00.0",
            "nvrm: xid (pci:0000:3b:00): 79, pid=0",
            "Xid=79",
            "Xid: 79",
        ] {
            let (hits, _) = judge(line);
            assert_eq!(hits.len(), 1, "{line}");
        }
    }

    // ---------------------------------------------------- realistic tails

    #[test]
    fn realistic_stderr_tails() {
        use SignatureBlame::*;
        struct Case {
            name: &'static str,
            text: &'static str,
            hits: &'static [&'static str],
            decisive: Option<(SignatureBlame, &'static str)>,
        }
        let cases = [
            Case {
                name: "PyTorch out of memory",
                text: r#"
[2026-11-24 02:10:03] step 4100 loss 1.873
Traceback (most recent call last):
  File "/home/alice/train.py", line 212, in <module>
    main()
  File "/home/alice/train.py", line 187, in main
    loss.backward()
  File "/opt/conda/lib/python3.11/site-packages/torch/_tensor.py", line 522, in backward
    torch.autograd.backward(
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which 1.12 GiB is free. Including non-PyTorch memory, this process has 78.02 GiB memory in use.
"#,
                hits: &["cuda-out-of-memory"],
                decisive: Some((Workload, "cuda-out-of-memory")),
            },
            Case {
                name: "illegal memory access, then the epilog's dmesg shows Xid 79",
                text: r#"
Traceback (most recent call last):
  File "/home/alice/train.py", line 190, in main
    optimizer.step()
RuntimeError: CUDA error: an illegal memory access was encountered
CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be incorrect.
For debugging consider passing CUDA_LAUNCH_BLOCKING=1
Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.
--- dmesg (epilog) ---
[Tue Nov 24 03:12:44 2026] NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.
[Tue Nov 24 03:12:44 2026] NVRM: GPU 0000:3b:00.0: GPU has fallen off the bus.
"#,
                hits: &["cuda-illegal-memory-access", "gpu-fallen-off-bus"],
                decisive: Some((Node, "gpu-fallen-off-bus")),
            },
            Case {
                name: "illegal memory access alone",
                text: r#"
  File "/home/alice/model/attention.py", line 77, in forward
    out = flash_attn_func(q, k, v, causal=True)
RuntimeError: CUDA error: an illegal memory access was encountered
Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.
"#,
                hits: &["cuda-illegal-memory-access"],
                decisive: Some((Workload, "cuda-illegal-memory-access")),
            },
            Case {
                name: "NCCL over InfiniBand: the network error, then its consequences",
                text: r#"
gpu-07:2214:2390 [3] NCCL INFO Channel 00/0 : 3[3] -> 11[3] [send] via NET/IB/0
gpu-07:2214:2391 [3] NCCL WARN NET/IB : Got completion from peer 10.20.1.12<52133> with status=12 opcode=0 len=0 vendor err 129 (Recv) localGid ::ffff:10.20.1.7 remoteGids::ffff:10.20.1.12 hca mlx5_0
gpu-07:2214:2391 [3] NCCL INFO transport/net.cc:1134 -> 6
[rank3]:[E1124 03:44:10.123456 2214 ProcessGroupNCCL.cpp:616] [Rank 3] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=88211, OpType=ALLREDUCE, NumelIn=16777216, NumelOut=16777216, Timeout(ms)=600000) ran for 600043 milliseconds before timing out.
torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:275, unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.20.5
ncclSystemError: System call (e.g. socket, malloc) or external library call failed or device error.
"#,
                hits: &[
                    "nccl-network-error",
                    "nccl-watchdog-timeout",
                    "nccl-system-error",
                ],
                decisive: Some((Node, "nccl-network-error")),
            },
            Case {
                name: "a crashed rank makes its peers report network errors",
                text: r#"
[rank1]: /var/spool/slurmd/job4711/slurm_script: line 9: 30123 Segmentation fault      (core dumped) python train.py
gpu-08:3301:3390 [0] NCCL WARN NET/Socket : peer 10.20.1.7<41234> shutdown
[rank0]:[E1124 03:44:10.123456 2214 ProcessGroupNCCL.cpp:616] [Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=12, OpType=BROADCAST) ran for 600001 milliseconds before timing out.
"#,
                hits: &[
                    "segmentation-fault",
                    "nccl-network-error",
                    "nccl-watchdog-timeout",
                ],
                decisive: Some((Workload, "segmentation-fault")),
            },
            Case {
                name: "a hung rank: the watchdog alone",
                text: r#"
[rank5]:[E1124 05:01:00.000001 777 ProcessGroupNCCL.cpp:616] [Rank 5] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=4001, OpType=ALLGATHER, Timeout(ms)=1800000) ran for 1800123 milliseconds before timing out.
[rank5]:[E1124 05:01:00.000002 777 ProcessGroupNCCL.cpp:1617] [PG 0 Rank 5] Exception (either an error or timeout) detected by watchdog at work: 4001, last enqueued NCCL work: 4001, last completed NCCL work: 4000.
"#,
                hits: &["nccl-watchdog-timeout"],
                decisive: Some((Workload, "nccl-watchdog-timeout")),
            },
            Case {
                name: "the driver is gone: nvidia-smi fails, then PyTorch sees no GPU",
                text: r#"
+ nvidia-smi
NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.

+ python train.py
Traceback (most recent call last):
  File "/home/alice/train.py", line 12, in <module>
    model = Model().cuda()
RuntimeError: No CUDA GPUs are available
"#,
                hits: &["nvidia-driver-unreachable", "cuda-no-device"],
                decisive: Some((Node, "nvidia-driver-unreachable")),
            },
            Case {
                name: "a device-side assert",
                text: r#"
../aten/src/ATen/native/cuda/Loss.cu:250: nll_loss_forward_reduce_cuda_kernel_2d: block: [0,0,0], thread: [5,0,0] Assertion `t >= 0 && t < n_classes` failed.
Traceback (most recent call last):
  File "/home/alice/train.py", line 140, in train_step
    loss = F.cross_entropy(logits, labels)
RuntimeError: CUDA error: device-side assert triggered
CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be incorrect.
For debugging consider passing CUDA_LAUNCH_BLOCKING=1
"#,
                hits: &["cuda-device-side-assert"],
                decisive: Some((Workload, "cuda-device-side-assert")),
            },
            Case {
                name: "DataLoader out of shared memory, next to harmless PCIe AER noise",
                text: r#"
pcieport 0000:00:03.1: AER: Corrected error received: 0000:00:03.1
pcieport 0000:00:03.1: PCIe Bus Error: severity=Corrected, type=Physical Layer, (Receiver ID)
ERROR: Unexpected bus error encountered in worker. This might be caused by insufficient shared memory (shm).
RuntimeError: DataLoader worker (pid 4512) is killed by signal: Bus error. It is possible that dataloader's workers are out of shared memory. Please try to raise your shared memory limit.
"#,
                hits: &["bus-error"],
                decisive: Some((Workload, "bus-error")),
            },
            Case {
                name: "Xid 13 and a launch failure",
                text: r#"
NVRM: Xid (PCI:0000:b1:00): 13, pid=88123, name=python, Graphics SM Warp Exception on (GPC 2, TPC 1, SM 0): Out Of Range Address
NVRM: Xid (PCI:0000:b1:00): 13, pid=88123, name=python, Graphics Exception: ESR 0x514648=0x1000e 0x514650=0x0
RuntimeError: CUDA error: unspecified launch failure
"#,
                hits: &["gpu-xid-application-fault", "cuda-launch-failure"],
                decisive: Some((Workload, "gpu-xid-application-fault")),
            },
            Case {
                name: "ECC: a double-bit error, the row remapper, and the CUDA error",
                text: r#"
NVRM: Xid (PCI:0000:41:00): 48, pid=2211, name=python3, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0.
NVRM: Xid (PCI:0000:41:00): 63, pid=2211, name=python3, Row Remapper: New row marked for remapping, reset gpu to activate.
RuntimeError: CUDA error: uncorrectable ECC error encountered
"#,
                hits: &["cuda-ecc-uncorrectable", "gpu-row-remap"],
                decisive: Some((Node, "cuda-ecc-uncorrectable")),
            },
            Case {
                name: "a lost mount, then a bus error on a mapped file",
                text: r#"
OSError: [Errno 107] Transport endpoint is not connected: '/mnt/weka/alice/shards/0007.bin'
Fatal Python error: Bus error
"#,
                hits: &["fs-mount-lost", "bus-error"],
                decisive: Some((Node, "fs-mount-lost")),
            },
            Case {
                name: "a full disk while saving a checkpoint",
                text: r#"
Saving checkpoint to /scratch/alice/ckpt/step-18000.pt
Traceback (most recent call last):
  File "/opt/conda/lib/python3.11/site-packages/torch/serialization.py", line 652, in save
RuntimeError: [enforce fail at inline_container.cc:595] . unexpected pos 1207959552 vs 1207959440
OSError: [Errno 28] No space left on device
"#,
                hits: &["no-space-left"],
                decisive: Some((Workload, "no-space-left")),
            },
            Case {
                name: "a plain failure: no signature",
                text: r#"
Traceback (most recent call last):
  File "/home/alice/train.py", line 3, in <module>
    import wandb
ModuleNotFoundError: No module named 'wandb'
"#,
                hits: &[],
                decisive: None,
            },
        ];
        for case in cases {
            let (hits, decisive) = judge(case.text);
            assert_eq!(hits, case.hits, "{}", case.name);
            assert_eq!(
                decisive,
                case.decisive.map(|(b, id)| (b, id.to_string())),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn a_hit_keeps_its_first_line_trimmed() {
        let text =
            "  RuntimeError: CUDA error: unknown error  \nlater: CUDA error: unknown error again\n";
        let hits = scan(text, &SignatureSet::builtin());
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].line, "RuntimeError: CUDA error: unknown error");
        assert_eq!(hits[0].action, SignatureAction::CountAndRetryElsewhere);
        assert!(hits[0].meaning.contains("CUDA failed"));
    }

    #[test]
    fn carriage_returns_split_lines() {
        let text = "epoch 1:  10%|█         | 100/1000\repoch 1:  11%|█         | 110/1000\rRuntimeError: CUDA error: an illegal memory access was encountered\r";
        let hits = scan(text, &SignatureSet::builtin());
        assert_eq!(
            hits[0].line,
            "RuntimeError: CUDA error: an illegal memory access was encountered"
        );
    }

    #[test]
    fn long_lines_are_bounded_around_the_match() {
        let padding = "é".repeat(400);
        let line = format!("{padding} NVRM: Xid (PCI:0000:3b:00): 79, pid=0 {padding}");
        let hits = scan(&line, &SignatureSet::builtin());
        let got = &hits[0].line;
        assert!(got.len() <= MAX_LINE, "{} bytes", got.len());
        assert!(got.contains("Xid (PCI:0000:3b:00): 79"), "{got}");
        assert!(got.starts_with('…') && got.ends_with('…'));
        // At the very start and the very end too.
        for line in [
            format!("Segmentation fault {padding}"),
            format!("{padding} Segmentation fault"),
        ] {
            let hits = scan(&line, &SignatureSet::builtin());
            assert!(hits[0].line.len() <= MAX_LINE);
            assert!(hits[0].line.contains("Segmentation fault"));
        }
    }

    #[test]
    fn xid_parsing() {
        #[rustfmt::skip]
        let cases: &[(&str, &[u32])] = &[
            ("nvrm: xid (pci:0000:3b:00): 79, pid=0", &[79]),
            ("xid 48", &[48]),
            ("xid: 13 and xid=31", &[13, 31]),
            ("xid error: 94", &[94]),
            ("xid #74.", &[74]),
            ("xidian 79", &[]),
            ("xids 79", &[]),
            ("oxid 79", &[]),
            ("xid 79a", &[]),
            ("xid 1234", &[]),
            ("xid (pci:0000:3b:00) but no code", &[]),
            ("xid (never closed 79", &[]),
            ("xid", &[]),
        ];
        for (line, want) in cases {
            let got: Vec<u32> = xid_reports(line).into_iter().map(|(_, c)| c).collect();
            assert_eq!(&got, want, "{line}");
        }
    }

    // ------------------------------------------------------------- verdict

    fn hit(id: &str, action: SignatureAction) -> Hit {
        Hit {
            id: id.into(),
            blame: action.blame(),
            action,
            line: String::new(),
            meaning: String::new(),
        }
    }

    /// Hits (id, action) and the verdict expected of them.
    type VerdictCase = (
        &'static [(&'static str, SignatureAction)],
        Option<(SignatureBlame, &'static str)>,
    );

    #[test]
    fn verdict_tiers() {
        use SignatureAction::*;
        use SignatureBlame::{Node, Workload};
        #[rustfmt::skip]
        let cases: &[VerdictCase] = &[
            (&[], None),
            (&[("a", CountAndRetryElsewhere)], Some((Workload, "a"))),
            (&[("a", RetryElsewhere)], Some((Node, "a"))),
            // Proof against the node wins wherever it is.
            (&[("a", CountAgainstWorkload), ("b", CountAndRetryElsewhere), ("c", BanNode)], Some((Node, "c"))),
            // Then proof against the workload.
            (&[("a", RetryElsewhere), ("b", CountAgainstWorkload)], Some((Workload, "b"))),
            // Then the first of the rest.
            (&[("a", CountAndRetryElsewhere), ("b", RetryElsewhere)], Some((Workload, "a"))),
            (&[("a", RetryElsewhere), ("b", CountAndRetryElsewhere)], Some((Node, "a"))),
            // Within a tier, the first.
            (&[("a", BanNode), ("b", BanNode)], Some((Node, "a"))),
            (&[("a", CountAgainstWorkload), ("b", CountAgainstWorkload)], Some((Workload, "a"))),
        ];
        for (hits, want) in cases {
            let hits: Vec<Hit> = hits.iter().map(|(id, a)| hit(id, *a)).collect();
            let got = verdict(&hits).map(|(b, h)| (b, h.id.as_str()));
            assert_eq!(got, *want, "{hits:?}");
        }
    }

    // ------------------------------------------------------ user signatures

    fn user(id: &str, pattern: &str, blame: SignatureBlame) -> UserSignature {
        UserSignature {
            id: id.into(),
            pattern: pattern.into(),
            blame,
            action: None,
            meaning: None,
        }
    }

    #[test]
    fn user_signatures_come_first_and_add_to_the_builtins() {
        let mut lustre = user(
            "lustre-evicted",
            "This client was evicted by",
            SignatureBlame::Node,
        );
        lustre.action = Some(SignatureAction::RetryElsewhere);
        let set = SignatureSet::new(&[lustre]).unwrap();
        assert_eq!(set.ids().next(), Some("lustre-evicted"));
        assert_eq!(set.ids().count(), BUILTIN.len() + 1);
        let text = "LustreError: 167-0: scratch-MDT0000-mdc-ffff8b: This client was evicted by scratch-MDT0000; in progress operations using this service will fail.\n\
                    OSError: [Errno 5] Input/output error: '/lustre/alice/x'\n";
        let hits = scan(text, &set);
        assert_eq!(ids(&hits), ["lustre-evicted", "fs-io-error"]);
        assert_eq!(hits[0].action, SignatureAction::RetryElsewhere);
        assert!(hits[0].meaning.contains("lustre-evicted"));
        // Both suspect the node: the first decides.
        assert_eq!(verdict(&hits).unwrap().1.id, "lustre-evicted");

        // On one line, the user's signature is listed first.
        let set = SignatureSet::new(&[user("oom-tag", "OOM", SignatureBlame::Workload)]).unwrap();
        let hits = scan("CUDA out of memory (OOM)", &set);
        assert_eq!(ids(&hits), ["oom-tag", "cuda-out-of-memory"]);
    }

    #[test]
    fn a_user_signature_overrides_a_builtin_by_id() {
        let mut o = user(
            "cuda-illegal-memory-access",
            "CUDA_EXCEPTION_14",
            SignatureBlame::Node,
        );
        o.meaning = Some("on this cluster, always the A100s in rack 7".into());
        let set = SignatureSet::new(&[o]).unwrap();
        assert_eq!(set.ids().count(), BUILTIN.len());
        assert_eq!(
            set.ids()
                .filter(|id| *id == "cuda-illegal-memory-access")
                .count(),
            1
        );
        assert_eq!(
            set.meaning("cuda-illegal-memory-access"),
            Some("on this cluster, always the A100s in rack 7")
        );
        // The built-in's patterns still match, and so does the user's; the
        // user's judgement applies (node, with the default action).
        for text in [
            "RuntimeError: CUDA error: an illegal memory access was encountered",
            "cuda-gdb: CUDA_EXCEPTION_14, Warp Illegal Address",
        ] {
            let hits = scan(text, &set);
            assert_eq!(ids(&hits), ["cuda-illegal-memory-access"], "{text}");
            assert_eq!(hits[0].blame, SignatureBlame::Node);
            assert_eq!(hits[0].action, SignatureAction::BanNode);
            assert_eq!(
                verdict(&hits).map(|(b, _)| b),
                Some(SignatureBlame::Node),
                "{text}"
            );
        }

        // Overriding an Xid signature keeps its Xid codes.
        let mut soft = user("gpu-row-remap", "row remapper", SignatureBlame::Node);
        soft.action = Some(SignatureAction::RetryElsewhere);
        let set = SignatureSet::new(&[soft]).unwrap();
        let hits = scan("NVRM: Xid (PCI:0000:41:00): 64, pid=1, name=x", &set);
        assert_eq!(ids(&hits), ["gpu-row-remap"]);
        assert_eq!(hits[0].action, SignatureAction::RetryElsewhere);
    }

    #[test]
    fn user_signatures_are_validated() {
        use SignatureBlame::*;
        let bad_action = |blame, action| UserSignature {
            action: Some(action),
            ..user("x", "something", blame)
        };
        #[rustfmt::skip]
        let cases: Vec<(Vec<UserSignature>, SignatureError)> = vec![
            (vec![user("", "abc", Node)], SignatureError::BadId("".into())),
            (vec![user("Has-Caps", "abc", Node)], SignatureError::BadId("Has-Caps".into())),
            (vec![user("with space", "abc", Node)], SignatureError::BadId("with space".into())),
            (vec![user(&"a".repeat(65), "abc", Node)], SignatureError::BadId("a".repeat(65))),
            (vec![user("x", " e ", Node)], SignatureError::ShortPattern { id: "x".into(), pattern: " e ".into() }),
            (vec![user("x", "", Node)], SignatureError::ShortPattern { id: "x".into(), pattern: "".into() }),
            (vec![user("x", "abc", Node), user("x", "def", Workload)], SignatureError::DuplicateId("x".into())),
            (vec![bad_action(Workload, SignatureAction::BanNode)], SignatureError::Inconsistent { id: "x".into(), blame: Workload, action: SignatureAction::BanNode }),
            (vec![bad_action(Node, SignatureAction::CountAndRetryElsewhere)], SignatureError::Inconsistent { id: "x".into(), blame: Node, action: SignatureAction::CountAndRetryElsewhere }),
        ];
        for (sigs, want) in cases {
            assert_eq!(SignatureSet::new(&sigs).unwrap_err(), want);
        }
        let e = SignatureSet::new(&[bad_action(Workload, SignatureAction::BanNode)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "signature \"x\": action ban_node does not go with blame workload (it goes with blame node)"
        );
        // Every consistent pair is accepted.
        for blame in [Node, Workload, Ambiguous] {
            for action in [
                SignatureAction::BanNode,
                SignatureAction::RetryElsewhere,
                SignatureAction::CountAgainstWorkload,
                SignatureAction::CountAndRetryElsewhere,
            ] {
                let ok = SignatureSet::new(&[bad_action(blame, action)]).is_ok();
                assert_eq!(ok, action.blame() == blame, "{blame} {action}");
            }
        }
    }

    #[test]
    fn user_signatures_deserialize_in_snake_case() {
        // The config file is TOML; its `[[signature]]` tables reach serde as
        // these maps.
        let u: UserSignature = serde_json::from_str(
            r#"{"id": "lustre-evicted", "pattern": "LustreError: evicted", "blame": "node"}"#,
        )
        .unwrap();
        assert_eq!(
            u,
            user(
                "lustre-evicted",
                "LustreError: evicted",
                SignatureBlame::Node
            )
        );
        let u: UserSignature = serde_json::from_str(
            r#"{"id": "x", "pattern": "abc", "blame": "ambiguous",
                "action": "count_and_retry_elsewhere", "meaning": "m"}"#,
        )
        .unwrap();
        assert_eq!(u.action, Some(SignatureAction::CountAndRetryElsewhere));
        assert_eq!(u.meaning.as_deref(), Some("m"));
        for json in [
            r#"{"id": "x", "pattern": "abc", "blame": "retry_elsewhere"}"#,
            r#"{"id": "x", "pattern": "abc", "blame": "Node"}"#,
            r#"{"id": "x", "pattern": "abc", "blame": "node", "action": "BanNode"}"#,
            r#"{"id": "x", "pattern": "abc", "blame": "node", "patern": "typo"}"#,
            r#"{"id": "x", "blame": "node"}"#,
        ] {
            assert!(
                serde_json::from_str::<UserSignature>(json).is_err(),
                "{json}"
            );
        }
        for (a, s) in [
            (SignatureAction::BanNode, "\"ban_node\""),
            (SignatureAction::RetryElsewhere, "\"retry_elsewhere\""),
            (
                SignatureAction::CountAgainstWorkload,
                "\"count_against_workload\"",
            ),
            (
                SignatureAction::CountAndRetryElsewhere,
                "\"count_and_retry_elsewhere\"",
            ),
        ] {
            assert_eq!(serde_json::to_string(&a).unwrap(), s);
            assert_eq!(format!("\"{a}\""), s);
        }
    }

    #[test]
    fn blame_for_one_attempt() {
        assert_eq!(SignatureBlame::Ambiguous.to_blame(), Blame::Workload);
        assert_eq!(SignatureBlame::Workload.to_blame(), Blame::Workload);
        assert_eq!(SignatureBlame::Node.to_blame(), Blame::Node);
        for b in [
            SignatureBlame::Node,
            SignatureBlame::Workload,
            SignatureBlame::Ambiguous,
        ] {
            assert_eq!(b.default_action().blame(), b);
        }
    }
}
