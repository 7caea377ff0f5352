//! GPU availability per partition as the interfaces show it (`shepherd gpus`
//! and the TUI's GPUs screen): the same columns, icons and words.

use crate::placement::inventory::{Availability, PartitionGpus};

pub const COLUMNS: [&str; 8] = [
    "",
    "PARTITION",
    "GPU",
    "VRAM",
    "PER NODE",
    "START NOW",
    "NODES FREE",
    "GPUS FREE",
];

/// How a partition looks: each interface picks its own colour for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Good,
    Warn,
    Bad,
}

/// ● a node is entirely free, ◐ some GPUs are, ○ none, x partition down.
pub fn icon(v: &PartitionGpus) -> (&'static str, Level) {
    match (v.up, v.availability(1), v.largest_now == v.gpus_per_node) {
        (false, _, _) => ("x", Level::Bad),
        (true, Availability::Full, true) => ("●", Level::Good),
        (true, Availability::Full | Availability::Partial, _) => ("◐", Level::Warn),
        (true, Availability::None, _) => ("○", Level::Bad),
    }
}

/// The cells after the icon, in [`COLUMNS`] order.
pub fn cells(v: &PartitionGpus) -> [String; 7] {
    let vram = match (v.vram_gb_min, v.vram_gb_max) {
        (Some(a), Some(b)) if a == b => format!("{a} GB"),
        (Some(a), Some(b)) => format!("{a}-{b} GB"),
        _ => "unknown".into(),
    };
    [
        format!("{}{}", v.partition, if v.up { "" } else { " (down)" }),
        v.gpu_type.clone().unwrap_or_else(|| "gpu".into()),
        vram,
        v.gpus_per_node.to_string(),
        v.largest_now.to_string(),
        format!("{}/{}", v.nodes_free, v.nodes_usable),
        format!("{}/{}", v.gpus_free, v.gpus_total),
    ]
}
