//! Everything the CLI prints goes through here, so that JSON and human output
//! stay consistent and a closed pipe (`shepherd … | head`) ends quietly.

use std::io::{self, IsTerminal, Write};

use serde::Serialize;
use serde_json::json;

use crate::slurm::SlurmError;

/// Version of every JSON document the CLI prints. Bumped only on incompatible
/// changes; new fields may appear without a bump.
pub const SCHEMA_VERSION: u32 = 1;

/// Prints `value` as `{"schema_version": 1, "<key>": value}` in JSON mode, or
/// the human rendering otherwise.
pub fn emit<T: Serialize>(json: bool, key: &str, value: &T, human: impl FnOnce(&T) -> String) {
    if json {
        // Pretty for people at a terminal, compact (and faster) for programs.
        let body = if io::stdout().is_terminal() {
            serde_json::to_string_pretty(value)
        } else {
            serde_json::to_string(value)
        };
        let key = serde_json::to_string(key).unwrap_or_default();
        print(&format!(
            "{{\"schema_version\":{SCHEMA_VERSION},{key}:{}}}\n",
            body.unwrap_or_default()
        ));
    } else {
        print(&human(value));
    }
}

/// Writes to stdout; a broken pipe exits 0 at once, like other Unix filters.
pub fn print(text: &str) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Renders an error: `error: …`, `caused by: …` lines and a hint, or a JSON
/// object on stdout in JSON mode.
pub fn error(json: bool, err: &anyhow::Error) {
    let hint = hint_for(err);
    if json {
        let causes: Vec<String> = err.chain().skip(1).map(|c| c.to_string()).collect();
        let slurm = err.downcast_ref::<SlurmError>();
        let doc = json!({
            "schema_version": SCHEMA_VERSION,
            "error": {
                "kind": slurm.map_or("error", SlurmError::kind_name),
                "message": err.to_string(),
                "causes": causes,
                "hint": hint,
            }
        });
        print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        ));
        return;
    }
    let mut text = format!("error: {err}\n");
    for cause in err.chain().skip(1) {
        text.push_str(&format!("caused by: {cause}\n"));
    }
    if let Some(hint) = hint {
        text.push_str(&format!("hint: {hint}\n"));
    }
    let _ = io::stderr().write_all(text.as_bytes());
}

fn hint_for(err: &anyhow::Error) -> Option<&'static str> {
    Some(match err.downcast_ref::<SlurmError>()? {
        SlurmError::NotFound { .. } => {
            "install the Slurm client tools (sbatch, squeue, scontrol) or put them on PATH"
        }
        SlurmError::TimedOut { .. } | SlurmError::Unreachable { .. } => {
            "check `scontrol ping` and SLURM_CONF; raise --slurm-timeout if the controller is just slow"
        }
        SlurmError::Rejected { .. } => {
            "change the request (partition, GPUs, excluded nodes) and retry"
        }
        _ => return None,
    })
}

/// A plain text table with aligned columns.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}
