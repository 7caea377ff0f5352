//! Placement: where a run's job can go. Which partitions and nodes have GPUs
//! that fit the run's requirements (`--gpus`, `--gpu-type`, `--min-vram`,
//! `--max-vram`, `--prefer`).
//!
//! - [`catalog`]: GPU models and their memory, recognised from the names
//!   clusters give them in GRES types and node features. Pure data and
//!   functions, no I/O (see `docs/gpu-catalog.md`).
//! - [`inventory`]: the GPUs of each partition, which partitions can hold a
//!   job now, later or never ([`inventory::fit`]), in what order.
//! - [`refusal`]: what to do when sbatch refused every partition offered.

pub mod catalog;
pub mod inventory;
pub mod refusal;
