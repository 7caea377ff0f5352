//! Placement: where a run's job can go. Which partitions and nodes have GPUs
//! that fit the run's requirements (`--gpus`, `--gpu-type`, `--min-vram`,
//! `--max-vram`, `--prefer`).
//!
//! - [`catalog`]: GPU models and their memory, recognised from the names
//!   clusters give them in GRES types and node features. Pure data and
//!   functions, no I/O (see `docs/gpu-catalog.md`).

pub mod catalog;
pub mod inventory;
