//! The GPU catalog: how much memory each GPU type has, recognised from the names
//! clusters give them in GRES types (`gpu:a100:4`) and node features
//! (`a100_80gb`).
//!
//! Clusters spell the same GPU in many ways (`a100_80g`, `a100-sxm4-80gb`,
//! `nvidia_a100_80gb_pcie`, …), and some names do not say which variant they
//! are (`a100` is 40 or 80 GB). [`identify`] normalises a name, looks it up in a
//! built-in table of models, and answers [`Match::Known`], [`Match::Ambiguous`]
//! (with the candidates; never a silent guess) or [`Match::Unknown`]. A lab
//! fixes an ambiguous or unknown name with a [`UserEntry`], which wins over the
//! built-in table. [`vram_for_node`] combines a node's GRES types with its
//! features, which can settle an ambiguous type.
//!
//! Everything here is pure: no processes, files or clocks. The figures and the
//! matching rules are documented in `docs/gpu-catalog.md`; a test keeps that
//! document's table in step with [`Catalog::builtin_models`].
//!
//! VRAM is per GPU *as Slurm counts GPUs*: a K80 board is two GPUs of 12 GB, an
//! A16 board four of 16 GB, an MI250(X) two GCDs of 64 GB.

use std::borrow::Cow;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

/// One GPU model and its memory.
///
/// The strings are `Cow` so that a catalog can hold both the built-in models
/// (static) and the lab's own entries (owned, from the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuModel {
    /// Canonical key, e.g. `a100-80gb`. User entries have keys `user:PATTERN`
    /// (the pattern in normal form, see [`normalise`]).
    pub key: Cow<'static, str>,
    /// Human-readable name, e.g. `NVIDIA A100 80GB`.
    pub name: Cow<'static, str>,
    /// Memory per GPU (per device Slurm schedules), in GB as the vendor quotes it.
    pub vram_gb: u32,
    /// `NVIDIA`, `AMD`; empty when unknown (a user entry for an unknown family).
    pub vendor: Cow<'static, str>,
}

/// What a name says about the GPU behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Match<'c> {
    /// Exactly one model fits the name.
    Known(&'c GpuModel),
    /// The family is recognised but the name does not say which variant
    /// (`a100`: 40 or 80 GB). Candidates in increasing VRAM.
    Ambiguous { candidates: Vec<&'c GpuModel> },
    /// No model in the catalog fits the name: not a GPU name, a model the
    /// catalog does not list, or a name whose memory figure fits no variant
    /// (`a100_64gb`, MIG slices such as `a100_3g.40gb`).
    Unknown,
}

impl<'c> Match<'c> {
    /// The model, when exactly one fits.
    pub fn known(&self) -> Option<&'c GpuModel> {
        match self {
            Match::Known(m) => Some(m),
            _ => None,
        }
    }

    /// The VRAM per GPU, when exactly one model fits.
    pub fn vram_gb(&self) -> Option<u32> {
        self.known().map(|m| m.vram_gb)
    }

    /// Every model that fits: one when known, the candidates when ambiguous,
    /// none when unknown.
    pub fn candidates(&self) -> Vec<&'c GpuModel> {
        match self {
            Match::Known(m) => vec![*m],
            Match::Ambiguous { candidates } => candidates.clone(),
            Match::Unknown => Vec::new(),
        }
    }

    /// The smallest and largest VRAM of the models that fit. An ambiguous
    /// `v100` (16..=32) still satisfies `--min-vram 16`, but not `--min-vram 32`.
    pub fn vram_range(&self) -> Option<RangeInclusive<u32>> {
        let c = self.candidates();
        let lo = c.iter().map(|m| m.vram_gb).min()?;
        let hi = c.iter().map(|m| m.vram_gb).max()?;
        Some(lo..=hi)
    }
}

/// A lab's own entry: the memory of a GRES type or feature that the built-in
/// table does not know, or knows only ambiguously. In the configuration file
/// :
///
/// ```toml
/// [[gpu]]
/// pattern = "a100"
/// vram_gb = 80
/// name = "NVIDIA A100 80GB (all of ours)"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// An exact GRES type or feature. Compared after normalisation, like any
    /// name: `A100_80G` and `a100-80gb` are the same pattern.
    pub pattern: String,
    pub vram_gb: u32,
    /// Shown to the user; the pattern when absent.
    #[serde(default)]
    pub name: Option<String>,
}

impl UserEntry {
    /// The pattern in normal form (see [`normalise`]), or `None` when it names
    /// no model at all (only vendor words, e.g. `nvidia`): such an entry matches
    /// nothing, and a configuration loader should reject it.
    pub fn normal_form(&self) -> Option<String> {
        let key = Key::of(&self.pattern);
        (!key.stem.is_empty()).then(|| key.canonical())
    }
}

/// The built-in table plus the lab's own entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// (pattern in normal form, model), one per pattern.
    user: Vec<(String, GpuModel)>,
}

impl Catalog {
    /// The built-in table alone.
    pub fn builtin() -> Catalog {
        Catalog::default()
    }

    /// The built-in table and the lab's entries. A user entry wins over the
    /// built-in table for the names that normalise to its pattern; of two
    /// entries with the same pattern, the later wins. Entries whose pattern
    /// names nothing (see [`UserEntry::normal_form`]) are left out.
    pub fn with_user(entries: Vec<UserEntry>) -> Catalog {
        let mut user: Vec<(String, GpuModel)> = Vec::new();
        for e in entries {
            let Some(pattern) = e.normal_form() else {
                continue;
            };
            let model = GpuModel {
                key: Cow::Owned(format!("user:{pattern}")),
                name: Cow::Owned(e.name.unwrap_or_else(|| e.pattern.trim().to_string())),
                vram_gb: e.vram_gb,
                vendor: Cow::Borrowed(vendor_hint(&Key::of(&e.pattern))),
            };
            match user.iter_mut().find(|(p, _)| *p == pattern) {
                Some(slot) => slot.1 = model,
                None => user.push((pattern, model)),
            }
        }
        Catalog { user }
    }

    /// The built-in models, in table order.
    pub fn builtin_models() -> &'static [GpuModel] {
        BUILTIN
    }

    /// The lab's entries, in configuration order.
    pub fn user_models(&self) -> impl Iterator<Item = &GpuModel> {
        self.user.iter().map(|(_, m)| m)
    }

    /// Every model: the lab's, then the built-in ones.
    pub fn models(&self) -> impl Iterator<Item = &GpuModel> {
        self.user_models().chain(BUILTIN.iter())
    }

    /// A model by its key (`a100-80gb`, `user:a100-64gb`).
    pub fn get(&self, key: &str) -> Option<&GpuModel> {
        self.models().find(|m| m.key == key)
    }

    /// Same as [`identify`].
    pub fn identify(&self, name: &str) -> Match<'_> {
        identify(name, self)
    }
}

/// What GPU a GRES type or feature names.
///
/// The name is normalised (see [`normalise`]); a lab's entry for that normal
/// form wins; otherwise the built-in rules decide. A memory figure in the name
/// picks the variant it fits (within 10%, as vendors quote both raw and usable
/// capacity: a B200 is sold as 192 GB and has 180 GB usable); a figure that
/// fits no variant, or two different figures, make the name Unknown.
pub fn identify<'c>(name: &str, catalog: &'c Catalog) -> Match<'c> {
    let key = Key::of(name);
    if key.stem.is_empty() {
        return Match::Unknown;
    }
    let canonical = key.canonical();
    if let Some((_, m)) = catalog.user.iter().find(|(p, _)| *p == canonical) {
        return Match::Known(m);
    }
    builtin_match(&key)
}

/// The normal form of a name, the form user patterns are compared in:
/// lower case; vendor words (`nvidia`, `tesla`, `geforce`, `quadro`, `amd`,
/// `instinct`, `radeon`, `gpu`) and form factors (`sxm4`, `pcie`, `hbm3`, …)
/// dropped; separators removed; memory figures as `-80gb`.
///
/// `nvidia_a100-sxm4-80gb` → `a100-80gb`, `Tesla_V100S-PCIE-32GB` →
/// `v100s-32gb`, `nvidia_h100_nvl` → `h100nvl`, `rtx_6000_ada` → `rtx6000ada`.
pub fn normalise(name: &str) -> String {
    Key::of(name).canonical()
}

/// The VRAM of one GPU type on a node, and what decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GresVram<'c> {
    /// The GRES type (`a100`); `None` for untyped GPUs (`gpu:4`), which only
    /// the node's features can describe.
    pub gres_type: Option<String>,
    pub matched: Match<'c>,
    pub evidence: Evidence,
}

/// Which evidence decided a [`GresVram`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// The GRES type by itself (including when it stayed ambiguous or unknown
    /// and no feature helped).
    GresType,
    /// These node features settled or narrowed what the GRES type left open,
    /// or named the GPU of an untyped or unknown GRES type.
    Features { features: Vec<String> },
    /// These node features contradict each other; none was used.
    Conflict { features: Vec<String> },
    /// Untyped GPUs and no feature that names a GPU.
    Nothing,
}

/// A node's GPUs, one entry per GPU type (in the order given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeVram<'c> {
    pub gpus: Vec<GresVram<'c>>,
}

impl NodeVram<'_> {
    /// The node's VRAM per GPU, when every GPU type on it is known and they
    /// all have the same.
    pub fn vram_gb(&self) -> Option<u32> {
        let mut v = self.gpus.iter().map(|g| g.matched.vram_gb());
        let first = v.next()??;
        v.all(|x| x == Some(first)).then_some(first)
    }

    /// The entry for one GRES type, as Slurm spells it.
    pub fn get(&self, gres_type: &str) -> Option<&GresVram<'_>> {
        self.gpus
            .iter()
            .find(|g| g.gres_type.as_deref() == Some(gres_type))
    }
}

/// The VRAM of a node's GPUs from its GRES types (`a100`, from `gpu:a100:4`)
/// and its features (`a100`, `a100_80gb`, `intel`, …).
///
/// - A known GRES type decides by itself; features are not consulted.
/// - An ambiguous GRES type is narrowed by the features that name a model of
///   the same family: GRES `a100` with feature `a100_80gb` is an A100 80GB.
///   Features that name other GPUs are ignored (on a node with two GPU types
///   they describe the other type); features that contradict each other
///   (`a100_40g` and `a100_80g`) leave it ambiguous.
/// - Untyped GPUs (no GRES type), or the one unknown GRES type of a node with a
///   single GPU type, take what the GPU-naming features agree on. On a node
///   with several GPU types an unknown type stays unknown: the features cannot
///   be attributed.
///
/// Features that name no GPU (`intel`, `ib`) never matter.
pub fn vram_for_node<'c>(
    gres_types: &[&str],
    features: &[&str],
    catalog: &'c Catalog,
) -> NodeVram<'c> {
    let features: Vec<(&str, Vec<&'c GpuModel>)> = features
        .iter()
        .map(|f| (*f, identify(f, catalog).candidates()))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    let mut types: Vec<&str> = Vec::new();
    for t in gres_types.iter().map(|t| t.trim()) {
        if !t.is_empty() && !types.contains(&t) {
            types.push(t);
        }
    }
    if types.is_empty() {
        return NodeVram {
            gpus: vec![from_features(None, &features)],
        };
    }
    let single = types.len() == 1;
    let gpus = types
        .into_iter()
        .map(|t| match identify(t, catalog) {
            m @ Match::Known(_) => GresVram {
                gres_type: Some(t.to_string()),
                matched: m,
                evidence: Evidence::GresType,
            },
            Match::Ambiguous { candidates } => narrow(t, candidates, &features),
            Match::Unknown if single => from_features(Some(t), &features),
            Match::Unknown => GresVram {
                gres_type: Some(t.to_string()),
                matched: Match::Unknown,
                evidence: Evidence::GresType,
            },
        })
        .collect();
    NodeVram { gpus }
}

type FeatureCandidates<'f, 'c> = [(&'f str, Vec<&'c GpuModel>)];

fn same(a: &GpuModel, b: &GpuModel) -> bool {
    a.key == b.key
}

fn match_of(mut models: Vec<&GpuModel>) -> Match<'_> {
    models.sort_by(|a, b| a.vram_gb.cmp(&b.vram_gb).then(a.key.cmp(&b.key)));
    models.dedup_by(|a, b| same(a, b));
    match models.len() {
        0 => Match::Unknown,
        1 => Match::Known(models[0]),
        _ => Match::Ambiguous { candidates: models },
    }
}

/// An ambiguous GRES type, narrowed by the features of the same family.
fn narrow<'c>(
    gres_type: &str,
    candidates: Vec<&'c GpuModel>,
    features: &FeatureCandidates<'_, 'c>,
) -> GresVram<'c> {
    let related: Vec<&(&str, Vec<&GpuModel>)> = features
        .iter()
        .filter(|(_, f)| f.iter().any(|m| candidates.iter().any(|c| same(c, m))))
        .collect();
    let mut left = candidates.clone();
    let mut used = Vec::new();
    for (name, f) in &related {
        let before = left.len();
        left.retain(|c| f.iter().any(|m| same(c, m)));
        if left.len() < before {
            used.push(name.to_string());
        }
    }
    let gres_type = Some(gres_type.to_string());
    if left.is_empty() {
        return GresVram {
            gres_type,
            matched: Match::Ambiguous { candidates },
            evidence: Evidence::Conflict {
                features: related.iter().map(|(n, _)| n.to_string()).collect(),
            },
        };
    }
    if used.is_empty() {
        return GresVram {
            gres_type,
            matched: Match::Ambiguous { candidates },
            evidence: Evidence::GresType,
        };
    }
    GresVram {
        gres_type,
        matched: match_of(left),
        evidence: Evidence::Features { features: used },
    }
}

/// Untyped GPUs, or a single unknown GRES type: what the GPU-naming features
/// agree on.
fn from_features<'c>(
    gres_type: Option<&str>,
    features: &FeatureCandidates<'_, 'c>,
) -> GresVram<'c> {
    let names = || features.iter().map(|(n, _)| n.to_string()).collect();
    let gres = gres_type.map(str::to_string);
    let Some(((_, first), rest)) = features.split_first() else {
        return GresVram {
            evidence: if gres.is_some() {
                Evidence::GresType
            } else {
                Evidence::Nothing
            },
            gres_type: gres,
            matched: Match::Unknown,
        };
    };
    let mut left = first.clone();
    for (_, f) in rest {
        left.retain(|c| f.iter().any(|m| same(c, m)));
    }
    if left.is_empty() {
        return GresVram {
            gres_type: gres,
            matched: Match::Unknown,
            evidence: Evidence::Conflict { features: names() },
        };
    }
    GresVram {
        gres_type: gres,
        matched: match_of(left),
        evidence: Evidence::Features { features: names() },
    }
}

// ---------------------------------------------------------------------------
// Normalisation

/// Words that name the maker and carry nothing about the model.
const COMPANY_WORDS: &[&str] = &["nvidia", "amd", "gpu"];
/// Product lines: dropped, except where a rule names them (`quadrortx6000`,
/// which is not the RTX 6000 Ada).
const LINE_WORDS: &[&str] = &["tesla", "geforce", "quadro", "instinct", "radeon"];
/// Form factors, interconnects and cooling: the same memory either way.
/// (`nvl` is not among them: the H100 NVL has more memory than the H100.)
const FORM_WORDS: &[&str] = &["pcie", "pci", "oam", "nvlink", "active", "passive"];

/// Largest trailing bare number read as a memory figure (`a100_80`).
const MAX_BARE_MEMORY_GB: u32 = 1024;

/// A name, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    /// The model segments, concatenated: `a100`, `rtx6000ada`, `h100nvl`.
    stem: String,
    /// The same with product-line words kept: `quadrortx6000`.
    line_stem: String,
    /// Memory figures in GB, in order (`80gb`, `80g`, a trailing bare `80`).
    memory: Vec<u32>,
}

impl Key {
    fn of(name: &str) -> Key {
        let lower = name.trim().to_ascii_lowercase();
        let mut key = Key {
            stem: String::new(),
            line_stem: String::new(),
            memory: Vec::new(),
        };
        // Where the last model segment starts, when it is a bare number.
        let mut bare: Option<(usize, usize, u32)> = None;
        for seg in lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|s| !s.is_empty())
        {
            if COMPANY_WORDS.contains(&seg) || is_form_factor(seg) {
                continue;
            }
            if LINE_WORDS.contains(&seg) {
                key.line_stem.push_str(seg);
                continue;
            }
            if let Some(gb) = memory_figure(seg) {
                key.memory.push(gb);
                continue;
            }
            bare = if seg.bytes().all(|b| b.is_ascii_digit()) {
                seg.parse()
                    .ok()
                    .map(|n| (key.stem.len(), key.line_stem.len(), n))
            } else {
                None
            };
            key.stem.push_str(seg);
            key.line_stem.push_str(seg);
        }
        // `a100_80`, `v100-32`: a trailing bare number is a memory figure when
        // the name is a known family without it and nothing with it.
        if let Some((at, line_at, n)) = bare
            && (1..=MAX_BARE_MEMORY_GB).contains(&n)
            && key.rule().is_none()
        {
            let mut shorter = key.clone();
            shorter.stem.truncate(at);
            shorter.line_stem.truncate(line_at);
            shorter.memory.push(n);
            if shorter.rule().is_some() {
                return shorter;
            }
        }
        key
    }

    fn rule(&self) -> Option<&'static Rule> {
        find_rule(&self.line_stem).or_else(|| find_rule(&self.stem))
    }

    /// The single memory figure; `Err` when the name gives several different ones.
    fn memory(&self) -> Result<Option<u32>, ()> {
        match self.memory.split_first() {
            None => Ok(None),
            Some((m, rest)) if rest.iter().all(|x| x == m) => Ok(Some(*m)),
            Some(_) => Err(()),
        }
    }

    fn canonical(&self) -> String {
        let mut s = self.stem.clone();
        let figures: &[u32] = match self.memory() {
            Ok(Some(_)) => &self.memory[..1],
            _ => &self.memory,
        };
        for m in figures {
            s.push_str(&format!("-{m}gb"));
        }
        s
    }
}

fn is_form_factor(seg: &str) -> bool {
    if FORM_WORDS.contains(&seg) {
        return true;
    }
    // sxm, sxm2 … sxm6
    if let Some(rest) = seg.strip_prefix("sxm") {
        return rest.bytes().all(|b| b.is_ascii_digit());
    }
    // hbm, hbm2, hbm2e, hbm3, hbm3e
    if let Some(rest) = seg.strip_prefix("hbm") {
        let rest = rest.strip_suffix('e').unwrap_or(rest);
        return rest.bytes().all(|b| b.is_ascii_digit());
    }
    false
}

/// `80gb`, `80g`, `80gib` → 80.
fn memory_figure(seg: &str) -> Option<u32> {
    let digits = seg.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (n, unit) = seg.split_at(digits);
    if !matches!(unit, "g" | "gb" | "gib") {
        return None;
    }
    n.parse().ok().filter(|n| *n > 0)
}

// ---------------------------------------------------------------------------
// The built-in table

const fn nvidia(key: &'static str, name: &'static str, vram_gb: u32) -> GpuModel {
    GpuModel {
        key: Cow::Borrowed(key),
        name: Cow::Borrowed(name),
        vram_gb,
        vendor: Cow::Borrowed("NVIDIA"),
    }
}

const fn amd(key: &'static str, name: &'static str, vram_gb: u32) -> GpuModel {
    GpuModel {
        key: Cow::Borrowed(key),
        name: Cow::Borrowed(name),
        vram_gb,
        vendor: Cow::Borrowed("AMD"),
    }
}

/// Every model the catalog knows. Sources and choices: `docs/gpu-catalog.md`.
static BUILTIN: &[GpuModel] = &[
    // Data centre, NVIDIA
    nvidia("b200", "NVIDIA B200", 180),
    nvidia("gh200-96gb", "NVIDIA GH200 96GB", 96),
    nvidia("gh200-144gb", "NVIDIA GH200 144GB", 144),
    nvidia("h200", "NVIDIA H200", 141),
    nvidia("h100-80gb", "NVIDIA H100 80GB", 80),
    nvidia("h100-nvl", "NVIDIA H100 NVL", 94),
    nvidia("h800", "NVIDIA H800", 80),
    nvidia("a100-40gb", "NVIDIA A100 40GB", 40),
    nvidia("a100-80gb", "NVIDIA A100 80GB", 80),
    nvidia("a800-40gb", "NVIDIA A800 40GB", 40),
    nvidia("a800-80gb", "NVIDIA A800 80GB", 80),
    nvidia("l40s", "NVIDIA L40S", 48),
    nvidia("l40", "NVIDIA L40", 48),
    nvidia("l4", "NVIDIA L4", 24),
    nvidia("a40", "NVIDIA A40", 48),
    nvidia("a30", "NVIDIA A30", 24),
    nvidia("a10", "NVIDIA A10", 24),
    nvidia("a10g", "NVIDIA A10G", 24),
    nvidia("a16", "NVIDIA A16", 16),
    nvidia("a2", "NVIDIA A2", 16),
    nvidia("v100-16gb", "NVIDIA Tesla V100 16GB", 16),
    nvidia("v100-32gb", "NVIDIA Tesla V100 32GB", 32),
    nvidia("v100s", "NVIDIA Tesla V100S", 32),
    nvidia("t4", "NVIDIA Tesla T4", 16),
    nvidia("p100-12gb", "NVIDIA Tesla P100 12GB", 12),
    nvidia("p100-16gb", "NVIDIA Tesla P100 16GB", 16),
    nvidia("p40", "NVIDIA Tesla P40", 24),
    nvidia("k80", "NVIDIA Tesla K80", 12),
    // Workstation, NVIDIA
    nvidia("rtx-pro-6000", "NVIDIA RTX PRO 6000 Blackwell", 96),
    nvidia("rtx-6000-ada", "NVIDIA RTX 6000 Ada Generation", 48),
    nvidia("rtx-a6000", "NVIDIA RTX A6000", 48),
    nvidia("rtx-a5000", "NVIDIA RTX A5000", 24),
    nvidia("rtx-a4000", "NVIDIA RTX A4000", 16),
    nvidia("quadro-rtx-8000", "NVIDIA Quadro RTX 8000", 48),
    nvidia("quadro-rtx-6000", "NVIDIA Quadro RTX 6000", 24),
    nvidia("titan-rtx", "NVIDIA TITAN RTX", 24),
    nvidia("titan-v", "NVIDIA TITAN V", 12),
    // Consumer, NVIDIA
    nvidia("rtx-5090", "NVIDIA GeForce RTX 5090", 32),
    nvidia("rtx-4090", "NVIDIA GeForce RTX 4090", 24),
    nvidia("rtx-3090", "NVIDIA GeForce RTX 3090", 24),
    nvidia("rtx-2080-ti", "NVIDIA GeForce RTX 2080 Ti", 11),
    nvidia("gtx-1080-ti", "NVIDIA GeForce GTX 1080 Ti", 11),
    // AMD Instinct
    amd("mi325x", "AMD Instinct MI325X", 256),
    amd("mi300x", "AMD Instinct MI300X", 192),
    amd("mi300a", "AMD Instinct MI300A", 128),
    amd("mi250x", "AMD Instinct MI250X", 64),
    amd("mi250", "AMD Instinct MI250", 64),
    amd("mi210", "AMD Instinct MI210", 64),
    amd("mi100", "AMD Instinct MI100", 32),
];

/// Which models a normalised stem can be.
struct Rule {
    /// Stems in normal form (see [`Key::stem`]).
    stems: &'static [&'static str],
    /// Every model of the family; a memory figure in the name picks among them.
    variants: &'static [&'static str],
    /// The models a name without a memory figure can be.
    plain: &'static [&'static str],
}

const fn rule(stems: &'static [&'static str], variants: &'static [&'static str]) -> Rule {
    Rule {
        stems,
        variants,
        plain: variants,
    }
}

static RULES: &[Rule] = &[
    rule(&["b200"], &["b200"]),
    rule(&["gh200"], &["gh200-96gb", "gh200-144gb"]),
    rule(&["h200", "h200nvl"], &["h200"]),
    // A plain `h100` is 80 GB (SXM5 and PCIe); the NVL, the only H100 with
    // more, is always named so (`nvidia_h100_nvl`). A figure still picks it.
    Rule {
        stems: &["h100"],
        variants: &["h100-80gb", "h100-nvl"],
        plain: &["h100-80gb"],
    },
    rule(&["h100nvl"], &["h100-nvl"]),
    rule(&["h800"], &["h800"]),
    rule(&["a100"], &["a100-40gb", "a100-80gb"]),
    rule(&["a800"], &["a800-40gb", "a800-80gb"]),
    rule(&["l40s"], &["l40s"]),
    rule(&["l40"], &["l40"]),
    rule(&["l4"], &["l4"]),
    rule(&["a40"], &["a40"]),
    rule(&["a30"], &["a30"]),
    rule(&["a10"], &["a10"]),
    rule(&["a10g"], &["a10g"]),
    rule(&["a16"], &["a16"]),
    rule(&["a2"], &["a2"]),
    rule(&["v100"], &["v100-16gb", "v100-32gb"]),
    rule(&["v100s"], &["v100s"]),
    rule(&["t4"], &["t4"]),
    rule(&["p100"], &["p100-12gb", "p100-16gb"]),
    rule(&["p40"], &["p40"]),
    rule(&["k80"], &["k80"]),
    rule(
        &[
            "rtxpro6000",
            "rtxpro6000blackwell",
            "rtxpro6000blackwellserveredition",
            "rtxpro6000blackwellworkstationedition",
            "rtxpro6000blackwellmaxqworkstationedition",
        ],
        &["rtx-pro-6000"],
    ),
    rule(
        &["rtx6000ada", "6000ada", "rtx6000adageneration"],
        &["rtx-6000-ada"],
    ),
    rule(&["quadrortx6000"], &["quadro-rtx-6000"]),
    // `rtx6000` alone is the Quadro RTX 6000 (24 GB) by NVIDIA's naming, but
    // clusters also write it for the RTX 6000 Ada (48 GB) and the RTX PRO 6000
    // (96 GB): ambiguous.
    rule(
        &["rtx6000"],
        &["quadro-rtx-6000", "rtx-6000-ada", "rtx-pro-6000"],
    ),
    rule(&["rtxa6000", "a6000"], &["rtx-a6000"]),
    rule(&["rtxa5000", "a5000"], &["rtx-a5000"]),
    rule(&["rtxa4000", "a4000"], &["rtx-a4000"]),
    rule(&["rtx8000"], &["quadro-rtx-8000"]),
    rule(&["titanrtx", "rtxtitan"], &["titan-rtx"]),
    rule(&["titanv"], &["titan-v"]),
    rule(&["rtx5090", "5090"], &["rtx-5090"]),
    rule(&["rtx4090", "4090"], &["rtx-4090"]),
    rule(&["rtx3090", "3090"], &["rtx-3090"]),
    rule(&["rtx2080ti", "2080ti"], &["rtx-2080-ti"]),
    rule(&["gtx1080ti", "1080ti"], &["gtx-1080-ti"]),
    rule(&["mi325x"], &["mi325x"]),
    rule(&["mi300x"], &["mi300x"]),
    rule(&["mi300a"], &["mi300a"]),
    rule(&["mi250x"], &["mi250x"]),
    rule(&["mi250"], &["mi250"]),
    rule(&["mi210"], &["mi210"]),
    rule(&["mi100"], &["mi100"]),
];

fn find_rule(stem: &str) -> Option<&'static Rule> {
    if stem.is_empty() {
        return None;
    }
    RULES.iter().find(|r| r.stems.contains(&stem))
}

fn builtin_model(key: &str) -> Option<&'static GpuModel> {
    BUILTIN.iter().find(|m| m.key == key)
}

fn models(keys: &[&str]) -> Vec<&'static GpuModel> {
    keys.iter().filter_map(|k| builtin_model(k)).collect()
}

/// A stated figure fits a model within 10%: the closest variants of one family
/// (H100 80/94, P100 12/16) stay apart, raw vs usable capacity (B200 192/180)
/// and GB vs GiB do not.
fn fits(stated_gb: u32, vram_gb: u32) -> bool {
    let (s, v) = (u64::from(stated_gb), u64::from(vram_gb));
    s * 10 >= v * 9 && s * 10 <= v * 11
}

fn builtin_match(key: &Key) -> Match<'static> {
    let Ok(memory) = key.memory() else {
        return Match::Unknown;
    };
    let Some(rule) = key.rule() else {
        return Match::Unknown;
    };
    match memory {
        None => match_of(models(rule.plain)),
        Some(gb) => {
            let variants = models(rule.variants);
            let exact: Vec<_> = variants
                .iter()
                .copied()
                .filter(|m| m.vram_gb == gb)
                .collect();
            if exact.is_empty() {
                match_of(
                    variants
                        .into_iter()
                        .filter(|m| fits(gb, m.vram_gb))
                        .collect(),
                )
            } else {
                match_of(exact)
            }
        }
    }
}

/// The vendor of a user entry's family, when the built-in rules know it.
fn vendor_hint(key: &Key) -> &'static str {
    let Some(rule) = key.rule() else {
        return "";
    };
    let vendors: Vec<&'static str> = models(rule.variants)
        .iter()
        .map(|m| match &m.vendor {
            Cow::Borrowed(v) => *v,
            Cow::Owned(_) => "",
        })
        .collect();
    match vendors.split_first() {
        Some((v, rest)) if rest.iter().all(|x| x == v) => v,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Expect::{Ambiguous as A, Known as K, Unknown as U};

    #[derive(Debug, Clone, Copy)]
    enum Expect {
        Known(&'static str),
        Ambiguous(&'static [&'static str]),
        Unknown,
    }

    fn keys(models: &[&GpuModel]) -> Vec<String> {
        models.iter().map(|m| m.key.to_string()).collect()
    }

    fn check(name: &str, got: &Match<'_>, want: Expect) -> Result<(), String> {
        let ok = match (got, want) {
            (Match::Known(m), K(k)) => m.key == k,
            (Match::Ambiguous { candidates }, A(ks)) => keys(candidates) == ks,
            (Match::Unknown, U) => true,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{name:?} (normal form {:?}): want {want:?}, got {got:?}",
                normalise(name)
            ))
        }
    }

    const A100: &[&str] = &["a100-40gb", "a100-80gb"];
    const V100: &[&str] = &["v100-16gb", "v100-32gb"];
    const P100: &[&str] = &["p100-12gb", "p100-16gb"];
    const GH200: &[&str] = &["gh200-96gb", "gh200-144gb"];
    const A800: &[&str] = &["a800-40gb", "a800-80gb"];
    const RTX6000: &[&str] = &["quadro-rtx-6000", "rtx-6000-ada", "rtx-pro-6000"];

    /// Real spellings, from GRES types (hand-written and Slurm's NVML
    /// autodetection, which lower-cases the device name and replaces spaces
    /// with `_`) and node features.
    const SPELLINGS: &[(&str, Expect)] = &[
        // A100
        ("a100", A(A100)),
        ("A100", A(A100)),
        ("nvidia_a100", A(A100)),
        ("a100-sxm4", A(A100)),
        ("nvidia_a100_pcie", A(A100)),
        ("a100_80g", K("a100-80gb")),
        ("a100-80gb", K("a100-80gb")),
        ("a100_80gb", K("a100-80gb")),
        ("a100-sxm4-80gb", K("a100-80gb")),
        ("A100-SXM4-80GB", K("a100-80gb")),
        ("nvidia_a100_80gb_pcie", K("a100-80gb")),
        ("nvidia_a100-sxm4-80gb", K("a100-80gb")),
        ("NVIDIA A100 80GB PCIe", K("a100-80gb")),
        ("a100_80", K("a100-80gb")),
        ("  a100_80GB ", K("a100-80gb")),
        ("a100_40g", K("a100-40gb")),
        ("nvidia_a100-sxm4-40gb", K("a100-40gb")),
        ("nvidia_a100-pcie-40gb", K("a100-40gb")),
        ("a100 40", K("a100-40gb")),
        ("a100_64gb", U),           // Leonardo's custom 64 GB A100: no variant fits
        ("nvidia_a100_3g.40gb", U), // MIG slice
        ("nvidia_a100_1g.10gb", U),
        // A800, H800
        ("a800", A(A800)),
        ("a800_80g", K("a800-80gb")),
        ("nvidia_a800-sxm4-80gb", K("a800-80gb")),
        ("nvidia_a800_40gb_active", K("a800-40gb")),
        ("h800", K("h800")),
        ("nvidia_h800_pcie", K("h800")),
        // H100, H200, GH200, B200
        ("h100", K("h100-80gb")),
        ("H100", K("h100-80gb")),
        ("nvidia_h100_pcie", K("h100-80gb")),
        ("h100_80gb_hbm3", K("h100-80gb")),
        ("nvidia_h100_80gb_hbm3", K("h100-80gb")),
        ("h100-sxm5-80gb", K("h100-80gb")),
        ("nvidia_h100_nvl", K("h100-nvl")),
        ("h100nvl", K("h100-nvl")),
        ("h100-nvl", K("h100-nvl")),
        ("h100_94gb", K("h100-nvl")),
        ("h100_nvl_80gb", U), // contradicts itself
        ("h200", K("h200")),
        ("nvidia_h200", K("h200")),
        ("nvidia_h200_nvl", K("h200")),
        ("h200_141gb", K("h200")),
        ("gh200", A(GH200)),
        ("gh200_96gb", K("gh200-96gb")),
        ("gh200_144g", K("gh200-144gb")),
        ("nvidia_gh200_144g_hbm3e", K("gh200-144gb")),
        ("nvidia_gh200_480gb", U), // the figure is the CPU memory, not the HBM
        ("b200", K("b200")),
        ("nvidia_b200", K("b200")),
        ("b200_180gb", K("b200")),
        ("b200_192gb", K("b200")), // raw capacity, within 10%
        // Ada and Ampere data-centre cards
        ("l40s", K("l40s")),
        ("L40S", K("l40s")),
        ("nvidia_l40s", K("l40s")),
        ("l40", K("l40")),
        ("nvidia_l40", K("l40")),
        ("l4", K("l4")),
        ("nvidia_l4", K("l4")),
        ("l4_24gb", K("l4")),
        ("l40s_24gb", U), // contradicts itself
        ("a10", K("a10")),
        ("nvidia_a10", K("a10")),
        ("a10g", K("a10g")),
        ("nvidia_a10g", K("a10g")),
        ("a30", K("a30")),
        ("a40", K("a40")),
        ("nvidia_a40", K("a40")),
        ("a16", K("a16")),
        ("a2", K("a2")),
        ("nvidia_a2", K("a2")),
        // Workstation
        ("a6000", K("rtx-a6000")),
        ("rtxa6000", K("rtx-a6000")),
        ("rtx_a6000", K("rtx-a6000")),
        ("nvidia_rtx_a6000", K("rtx-a6000")),
        ("RTX A6000", K("rtx-a6000")),
        ("rtx_6000_ada", K("rtx-6000-ada")),
        ("rtx6000ada", K("rtx-6000-ada")),
        ("6000ada", K("rtx-6000-ada")),
        ("nvidia_rtx_6000_ada_generation", K("rtx-6000-ada")),
        ("rtx6000", A(RTX6000)),
        ("rtx_6000", A(RTX6000)),
        ("rtx6000_24gb", K("quadro-rtx-6000")),
        ("rtx6000_48gb", K("rtx-6000-ada")),
        ("quadro_rtx_6000", K("quadro-rtx-6000")),
        ("nvidia_quadro_rtx_6000", K("quadro-rtx-6000")),
        ("rtx_pro_6000_blackwell", K("rtx-pro-6000")),
        (
            "nvidia_rtx_pro_6000_blackwell_server_edition",
            K("rtx-pro-6000"),
        ),
        ("quadro_rtx_8000", K("quadro-rtx-8000")),
        ("nvidia_quadro_rtx_8000", K("quadro-rtx-8000")),
        ("rtx8000", K("quadro-rtx-8000")),
        ("a5000", K("rtx-a5000")),
        ("rtx_a5000", K("rtx-a5000")),
        ("nvidia_rtx_a5000", K("rtx-a5000")),
        ("a4000", K("rtx-a4000")),
        ("rtx_a4000", K("rtx-a4000")),
        ("titanrtx", K("titan-rtx")),
        ("titan_rtx", K("titan-rtx")),
        ("nvidia_titan_rtx", K("titan-rtx")),
        ("nvidia_titan_v", K("titan-v")),
        // Consumer
        ("rtx3090", K("rtx-3090")),
        ("geforce_rtx_3090", K("rtx-3090")),
        ("nvidia_geforce_rtx_3090", K("rtx-3090")),
        ("3090", K("rtx-3090")),
        ("rtx4090", K("rtx-4090")),
        ("nvidia_geforce_rtx_4090", K("rtx-4090")),
        ("rtx5090", K("rtx-5090")),
        ("nvidia_geforce_rtx_5090", K("rtx-5090")),
        ("rtx_2080_ti", K("rtx-2080-ti")),
        ("nvidia_geforce_rtx_2080_ti", K("rtx-2080-ti")),
        ("1080ti", K("gtx-1080-ti")),
        ("nvidia_geforce_gtx_1080_ti", K("gtx-1080-ti")),
        ("rtx3080", U), // not in the table
        // Volta, Turing, Pascal, Kepler
        ("v100", A(V100)),
        ("tesla_v100", A(V100)),
        ("tesla_v100-sxm2", A(V100)),
        ("v100_32g", K("v100-32gb")),
        ("v100-32", K("v100-32gb")),
        ("v100-sxm2-16gb", K("v100-16gb")),
        ("tesla_v100-sxm2-16gb", K("v100-16gb")),
        ("tesla_v100-pcie-32gb", K("v100-32gb")),
        ("v100s", K("v100s")),
        ("tesla_v100s-pcie-32gb", K("v100s")),
        ("t4", K("t4")),
        ("tesla_t4", K("t4")),
        ("p100", A(P100)),
        ("tesla_p100-pcie", A(P100)),
        ("tesla_p100-pcie-16gb", K("p100-16gb")),
        ("tesla_p100-pcie-12gb", K("p100-12gb")),
        ("tesla_p100-sxm2-16gb", K("p100-16gb")),
        ("p40", K("p40")),
        ("tesla_p40", K("p40")),
        ("k80", K("k80")),
        ("tesla_k80", K("k80")),
        // AMD
        ("mi250x", K("mi250x")),
        ("amd_instinct_mi250x", K("mi250x")),
        ("instinct_mi250x_oam", K("mi250x")),
        ("mi250", K("mi250")),
        ("mi300x", K("mi300x")),
        ("amd_instinct_mi300x", K("mi300x")),
        ("MI300A", K("mi300a")),
        ("mi210", K("mi210")),
        ("mi100", K("mi100")),
        ("mi325x", K("mi325x")),
        // Not GPUs, or nothing at all
        ("", U),
        ("gpu", U),
        ("nvidia", U),
        ("80gb", U),
        ("intel", U),
        ("skylake", U),
        ("avx512", U),
        ("ib", U),
        ("nvlink", U),
        ("fat", U),
    ];

    /// Names one character away from a real one must not be taken for it.
    const FALSE_POSITIVES: &[(&str, Expect)] = &[
        ("a10", K("a10")), // not a100
        ("a100", A(A100)), // not a10
        ("a1000", U),      // RTX A1000: not listed, and not a100
        ("l4", K("l4")),   // not l40
        ("l40", K("l40")), // not l4 or l40s
        ("l400", U),
        ("a2", K("a2")), // not a20, a200, a2000
        ("a20", U),
        ("a200", U),
        ("a2000", U),
        ("a40", K("a40")), // not a4000
        ("a4000", K("rtx-a4000")),
        ("t4", K("t4")),
        ("t400", U),
        ("h200", K("h200")), // not gh200
        ("gh200", A(GH200)),
        ("h100", K("h100-80gb")), // not h100 nvl
        ("h10", U),
        ("v100", A(V100)),     // not v100s
        ("mi250", K("mi250")), // not mi250x
        ("mi300", U),          // X or A?
        ("rtx6000ada", K("rtx-6000-ada")),
        ("rtxa6000", K("rtx-a6000")),
        ("rtx6000", A(RTX6000)),
        ("rtx600", U),
        ("k8", U),
        ("p4", U), // Tesla P4 (8 GB): not listed, and not p40
    ];

    #[test]
    fn real_spellings() {
        let catalog = Catalog::builtin();
        let errors: Vec<String> = SPELLINGS
            .iter()
            .chain(FALSE_POSITIVES)
            .filter_map(|(name, want)| check(name, &identify(name, &catalog), *want).err())
            .collect();
        assert!(errors.is_empty(), "{}", errors.join("\n"));
        assert!(SPELLINGS.len() >= 150, "{}", SPELLINGS.len());
    }

    #[test]
    fn every_model_is_found_by_its_key_and_its_name() {
        let catalog = Catalog::builtin();
        for m in Catalog::builtin_models() {
            for name in [&m.key, &m.name] {
                let got = identify(name, &catalog);
                assert_eq!(got.known().map(|g| &g.key), Some(&m.key), "{name}: {got:?}");
            }
        }
    }

    #[test]
    fn the_table_and_rules_are_consistent() {
        let mut seen_keys = Vec::new();
        for m in Catalog::builtin_models() {
            assert!(!seen_keys.contains(&&m.key), "duplicate key {}", m.key);
            seen_keys.push(&m.key);
            assert!(m.vram_gb > 0);
            assert!(
                RULES.iter().any(|r| r.variants.contains(&&*m.key)),
                "{} is in no rule",
                m.key
            );
        }
        let mut seen_stems = Vec::new();
        for r in RULES {
            for k in r.variants.iter().chain(r.plain) {
                assert!(builtin_model(k).is_some(), "rule names unknown model {k}");
            }
            assert!(r.plain.iter().all(|k| r.variants.contains(k)));
            for s in r.stems {
                assert!(!seen_stems.contains(s), "stem {s} in two rules");
                seen_stems.push(*s);
                // A stem is its own normal form (or keeps a product line).
                let key = Key::of(s);
                assert!(key.stem == *s || key.line_stem == *s, "stem {s}");
                assert!(key.memory.is_empty(), "stem {s} reads as memory");
            }
            // Variants of one family stay apart under the 10% tolerance.
            for a in r.variants {
                for b in r.variants.iter().filter(|b| *b != a) {
                    let (a, b) = (builtin_model(a).unwrap(), builtin_model(b).unwrap());
                    assert!(!fits(a.vram_gb, b.vram_gb), "{} ~ {}", a.key, b.key);
                }
            }
        }
    }

    #[test]
    fn the_document_lists_every_model() {
        let doc = include_str!("../../docs/gpu-catalog.md");
        for m in Catalog::builtin_models() {
            let row = format!("| `{}` | {} | {} |", m.key, m.name, m.vram_gb);
            assert!(
                doc.contains(&row),
                "docs/gpu-catalog.md lacks the row {row}"
            );
        }
    }

    #[test]
    fn normal_forms() {
        for (name, want) in [
            ("nvidia_a100-sxm4-80gb", "a100-80gb"),
            ("A100_80G", "a100-80gb"),
            ("a100_80", "a100-80gb"),
            ("Tesla_V100S-PCIE-32GB", "v100s-32gb"),
            ("nvidia_h100_nvl", "h100nvl"),
            ("h100_80gb_hbm3", "h100-80gb"),
            ("rtx_6000_ada", "rtx6000ada"),
            ("quadro_rtx_6000", "rtx6000"),
            ("nvidia_a100_3g.40gb", "a100-3gb-40gb"),
            ("fat_80", "fat80"), // a bare number is memory only for a known family
            ("rtx_5000", "rtx5000"),
            ("nvidia", ""),
        ] {
            assert_eq!(normalise(name), want, "{name}");
        }
    }

    #[test]
    fn match_helpers() {
        let c = Catalog::builtin();
        let v100 = identify("v100", &c);
        assert_eq!(v100.vram_gb(), None);
        assert_eq!(v100.vram_range(), Some(16..=32));
        assert_eq!(keys(&v100.candidates()), V100);
        let l4 = identify("l4", &c);
        assert_eq!(l4.vram_gb(), Some(24));
        assert_eq!(l4.vram_range(), Some(24..=24));
        assert_eq!(identify("fat", &c).vram_range(), None);
        assert_eq!(c.get("a100-80gb").map(|m| m.vram_gb), Some(80));
        assert_eq!(
            c.identify("a10").known().map(|m| &*m.name),
            Some("NVIDIA A10")
        );
    }

    fn entry(pattern: &str, vram_gb: u32, name: Option<&str>) -> UserEntry {
        UserEntry {
            pattern: pattern.to_string(),
            vram_gb,
            name: name.map(str::to_string),
        }
    }

    #[test]
    fn user_entries_win_for_their_names() {
        let c = Catalog::with_user(vec![
            entry("a100", 80, Some("A100 80GB (all of ours)")),
            entry("A100_64G", 64, None),
            entry("nvidia_a100_3g.40gb", 40, Some("A100 MIG 3g.40gb")),
            entry("Ampere-Big", 48, None),
            entry("l40s", 46, None),
            entry("l40s", 45, Some("L40S, usable")), // the later wins
            entry("nvidia", 99, None),               // names nothing: left out
        ]);
        // (name, key, vram, vendor)
        let rows: &[(&str, &str, u32, &str)] = &[
            ("a100", "user:a100", 80, "NVIDIA"),
            ("A100", "user:a100", 80, "NVIDIA"),
            ("nvidia_a100_pcie", "user:a100", 80, "NVIDIA"),
            ("a100_40g", "a100-40gb", 40, "NVIDIA"), // not the pattern: built-in
            ("nvidia_a100-sxm4-64gb", "user:a100-64gb", 64, "NVIDIA"),
            ("a100_64", "user:a100-64gb", 64, "NVIDIA"),
            ("nvidia_a100_3g.40gb", "user:a100-3gb-40gb", 40, "NVIDIA"),
            ("ampere_big", "user:amperebig", 48, ""),
            ("AMPERE BIG", "user:amperebig", 48, ""),
            ("l40s", "user:l40s", 45, "NVIDIA"),
        ];
        for (name, key, vram, vendor) in rows {
            let m = identify(name, &c).known().cloned();
            let m = m.unwrap_or_else(|| panic!("{name}: not known"));
            assert_eq!(
                (&*m.key, m.vram_gb, &*m.vendor),
                (*key, *vram, *vendor),
                "{name}"
            );
        }
        assert_eq!(c.user_models().count(), 5);
        assert_eq!(c.get("user:l40s").unwrap().name, "L40S, usable");
        assert_eq!(c.get("user:a100-64gb").unwrap().name, "A100_64G");
        assert_eq!(identify("gpu", &c), Match::Unknown);
        assert_eq!(identify("nvidia", &c), Match::Unknown);
        assert_eq!(entry(" nvidia ", 1, None).normal_form(), None);
        assert_eq!(
            entry("A100_80G", 1, None).normal_form().as_deref(),
            Some("a100-80gb")
        );
        // The built-in catalog is untouched.
        assert!(matches!(
            identify("a100", &Catalog::builtin()),
            Match::Ambiguous { .. }
        ));
    }

    #[test]
    fn user_entries_deserialize() {
        let e: UserEntry =
            serde_json::from_str(r#"{"pattern": "a100", "vram_gb": 80, "name": "A100"}"#).unwrap();
        assert_eq!(e, entry("a100", 80, Some("A100")));
        let e: UserEntry = serde_json::from_str(r#"{"pattern": "fat", "vram_gb": 48}"#).unwrap();
        assert_eq!(e, entry("fat", 48, None));
        assert!(serde_json::from_str::<UserEntry>(r#"{"pattern": "x", "vram": 1}"#).is_err());
        assert!(serde_json::from_str::<UserEntry>(r#"{"pattern": "x"}"#).is_err());
    }

    /// What a node's GRES type comes out as.
    #[derive(Debug, Clone, Copy)]
    enum By {
        Gres,
        Features(&'static [&'static str]),
        Conflict(&'static [&'static str]),
        Nothing,
    }

    fn evidence(by: By) -> Evidence {
        let list = |f: &[&str]| f.iter().map(|s| s.to_string()).collect();
        match by {
            By::Gres => Evidence::GresType,
            By::Features(f) => Evidence::Features { features: list(f) },
            By::Conflict(f) => Evidence::Conflict { features: list(f) },
            By::Nothing => Evidence::Nothing,
        }
    }

    /// (GRES types, features, per GPU type: (type, expected, evidence)).
    type NodeRow = (
        &'static [&'static str],
        &'static [&'static str],
        &'static [(Option<&'static str>, Expect, By)],
    );

    const NODES: &[NodeRow] = &[
        // The test cluster (scripts/testcluster).
        (
            &["a100"],
            &["a100", "a100_80gb"],
            &[(Some("a100"), K("a100-80gb"), By::Features(&["a100_80gb"]))],
        ),
        (
            &["a6000"],
            &["a6000"],
            &[(Some("a6000"), K("rtx-a6000"), By::Gres)],
        ),
        (
            &["rtx4090"],
            &["rtx4090"],
            &[(Some("rtx4090"), K("rtx-4090"), By::Gres)],
        ),
        // Nothing to settle it.
        (&["a100"], &[], &[(Some("a100"), A(A100), By::Gres)]),
        (
            &["a100"],
            &["intel", "ib", "a100"],
            &[(Some("a100"), A(A100), By::Gres)],
        ),
        // Features that disagree settle nothing.
        (
            &["a100"],
            &["a100_40g", "a100_80g"],
            &[(
                Some("a100"),
                A(A100),
                By::Conflict(&["a100_40g", "a100_80g"]),
            )],
        ),
        (
            &["v100"],
            &["skylake", "v100_32g"],
            &[(Some("v100"), K("v100-32gb"), By::Features(&["v100_32g"]))],
        ),
        (
            &["rtx6000"],
            &["rtx6000ada"],
            &[(
                Some("rtx6000"),
                K("rtx-6000-ada"),
                By::Features(&["rtx6000ada"]),
            )],
        ),
        // Features that disagree, again: one settles it, the next contradicts.
        (
            &["rtx6000"],
            &["rtx6000_48gb", "quadro_rtx_6000"],
            &[(
                Some("rtx6000"),
                A(RTX6000),
                By::Conflict(&["rtx6000_48gb", "quadro_rtx_6000"]),
            )],
        ),
        // A known GRES type decides alone, whatever the features say.
        (
            &["nvidia_a100-sxm4-80gb"],
            &["a100_40g"],
            &[(Some("nvidia_a100-sxm4-80gb"), K("a100-80gb"), By::Gres)],
        ),
        // Untyped GPUs: the features alone.
        (
            &[],
            &["a100_80gb"],
            &[(None, K("a100-80gb"), By::Features(&["a100_80gb"]))],
        ),
        (&[], &["a100"], &[(None, A(A100), By::Features(&["a100"]))]),
        (
            &[],
            &["a100", "a100_80gb", "ib"],
            &[(None, K("a100-80gb"), By::Features(&["a100", "a100_80gb"]))],
        ),
        (&[], &["intel"], &[(None, U, By::Nothing)]),
        (&[""], &[], &[(None, U, By::Nothing)]),
        (
            &[],
            &["a100_80gb", "v100"],
            &[(None, U, By::Conflict(&["a100_80gb", "v100"]))],
        ),
        // An unknown GRES type, alone on its node: the features.
        (
            &["fat"],
            &["h100"],
            &[(Some("fat"), K("h100-80gb"), By::Features(&["h100"]))],
        ),
        (&["fat"], &["bigmem"], &[(Some("fat"), U, By::Gres)]),
        // Several GPU types: features go to the types of their family only.
        (
            &["a100", "v100"],
            &["a100_80gb", "v100_32gb"],
            &[
                (Some("a100"), K("a100-80gb"), By::Features(&["a100_80gb"])),
                (Some("v100"), K("v100-32gb"), By::Features(&["v100_32gb"])),
            ],
        ),
        (
            &["fat", "thin"],
            &["h100"],
            &[(Some("fat"), U, By::Gres), (Some("thin"), U, By::Gres)],
        ),
        // One type listed twice (per socket) is one entry.
        (
            &["l40s", "l40s"],
            &[],
            &[(Some("l40s"), K("l40s"), By::Gres)],
        ),
    ];

    #[test]
    fn node_vram_combines_gres_types_and_features() {
        let catalog = Catalog::builtin();
        let mut errors = Vec::new();
        for (gres, features, want) in NODES {
            let got = vram_for_node(gres, features, &catalog);
            let ok = got.gpus.len() == want.len()
                && got.gpus.iter().zip(want.iter()).all(|(g, (t, m, by))| {
                    g.gres_type.as_deref() == *t
                        && check("", &g.matched, *m).is_ok()
                        && g.evidence == evidence(*by)
                });
            if !ok {
                errors.push(format!(
                    "gres {gres:?} features {features:?}:\n  want {want:?}\n  got  {got:?}"
                ));
            }
        }
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }

    #[test]
    fn node_vram_helpers_and_user_entries() {
        let c = Catalog::builtin();
        let node = vram_for_node(&["a100"], &["a100_80gb"], &c);
        assert_eq!(node.vram_gb(), Some(80));
        assert!(node.get("a100").is_some());
        assert!(node.get("v100").is_none());
        assert_eq!(vram_for_node(&["a100"], &[], &c).vram_gb(), None);
        assert_eq!(vram_for_node(&["l40s", "l40"], &[], &c).vram_gb(), Some(48));
        assert_eq!(vram_for_node(&["l40s", "l4"], &[], &c).vram_gb(), None);
        // A lab's entry for the GRES type decides by itself.
        let user = Catalog::with_user(vec![entry("a100", 40, None)]);
        let node = vram_for_node(&["a100"], &["a100_80gb"], &user);
        assert_eq!(node.vram_gb(), Some(40));
        assert_eq!(node.gpus[0].evidence, Evidence::GresType);
        // A lab's entry for a feature names the GPU of an unknown type.
        let user = Catalog::with_user(vec![entry("ampere_big", 48, None)]);
        let node = vram_for_node(&["fat"], &["ampere_big"], &user);
        assert_eq!(node.vram_gb(), Some(48));
    }

    #[test]
    fn serialises_for_json_output() {
        let c = Catalog::builtin();
        let node = vram_for_node(&["a100"], &["a100_80gb"], &c);
        let v = serde_json::to_value(&node).unwrap();
        assert_eq!(v["gpus"][0]["gres_type"], "a100");
        assert_eq!(v["gpus"][0]["matched"]["status"], "known");
        assert_eq!(v["gpus"][0]["matched"]["key"], "a100-80gb");
        assert_eq!(v["gpus"][0]["matched"]["vram_gb"], 80);
        assert_eq!(v["gpus"][0]["evidence"]["kind"], "features");
        assert_eq!(v["gpus"][0]["evidence"]["features"][0], "a100_80gb");
        let v = serde_json::to_value(identify("v100", &c)).unwrap();
        assert_eq!(v["status"], "ambiguous");
        assert_eq!(v["candidates"][1]["vram_gb"], 32);
        let v = serde_json::to_value(identify("fat", &c)).unwrap();
        assert_eq!(v, serde_json::json!({"status": "unknown"}));
    }
}
