//! The compute-side wrapper: GPU probes before the workload, heartbeats during it,
//! signal forwarding, and a structured outcome with a documented exit code.
//!
//! Not built yet: the recovery-loop and node-health issues fill this in.
