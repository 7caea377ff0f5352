//! View models shared by the CLI and the TUI: what a run, a node or a
//! partition looks like to the user, built from the store and Slurm's answers.
//! Rendering (tables, JSON, widgets) lives with each interface.

pub mod daemon;
pub mod gpus;
pub mod listing;
pub mod nodes;
pub mod runs;
pub mod words;

pub use runs::{AttemptDoc, ProbeDoc, RunDoc, UnknownRun, run_doc, run_docs, snake};
pub use words::{DocStatus, Vocabulary, Word};
