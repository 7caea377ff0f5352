//! Integration tests against real Slurm clusters started by
//! `scripts/testcluster`. Each test that needs a cluster starts its own, in
//! its own directory and ports, so tests run in parallel and fault injection in
//! one never disturbs another.

mod support;

mod adapter_faults;
mod adapter_inventory;
mod adapter_jobs;
mod cli;
mod golden;
mod health;
mod in_place;
mod layering;
mod notify;
mod parsers_on_fixtures;
mod placement;
mod recovery;
mod recovery_support;
mod remote;
mod security;
mod tui;
mod verdicts;
mod verdicts_daemon;
mod watcher;
