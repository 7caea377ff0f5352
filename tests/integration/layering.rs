//! The layers of `docs/architecture.md`, checked over the source: a module
//! may use (`crate::…`) only modules of lower layers. Test code (`tests.rs`
//! files, `#[cfg(test)] mod tests` at the end of a file, the simulator) may
//! use anything.

use std::collections::BTreeSet;
use std::path::Path;

/// Lowest first. Modules of one layer do not use each other.
const LAYERS: &[&[&str]] = &[
    &["duration", "model", "proc"],
    &["options"],
    &["slurm"],
    &["records"],
    &["placement"],
    &["policy"],
    &["store"],
    &["wrapper"],
    &["notify"],
    &["config"],
    &["submit"],
    &["daemon"],
    &["view", "remote"],
    &["ops"],
    &["tui"],
    &["cli"],
];

/// Known uses of a higher layer, each to be removed, never added to. The
/// test fails when one is gone too, so that this list only shrinks.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// Files that are test code as a whole.
const TEST_FILES: &[&str] = &["slurm/sim.rs", "untrusted_input.rs"];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level modules `text` names after `crate::`, comments left out.
fn uses(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            // Not inside a string that contains `//` (a URL): good enough
            // for this source, and a miss only hides a use in a string.
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        // `$crate::` is a macro's own path, resolved where it is defined.
        let dollar = i > 0 && rest.as_bytes()[i - 1] == b'$';
        rest = &rest[i + "crate::".len()..];
        if dollar {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::{c, d}}`: the names at depth 0.
            let mut depth = 0;
            let mut start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_ascii_alphabetic() || c == '_') => {
                        out.insert(ident(&group[k..]));
                        start = false;
                    }
                    c if start && !c.is_whitespace() => start = false,
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

/// The part of a file that is not its test module.
fn production(text: &str) -> &str {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.trim() == "#[cfg(test)]" {
            let after = text[at + line.len()..].trim_start();
            if after.starts_with("mod tests") || after.starts_with("pub mod tests") {
                return &text[..at];
            }
        }
        at += line.len();
    }
    text
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_uses_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut edges: BTreeSet<(String, String, String)> = BTreeSet::new();
    for path in &files {
        let rel = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .to_string();
        if rel == "lib.rs" || rel == "main.rs" || rel.ends_with("/tests.rs") {
            continue;
        }
        if TEST_FILES.contains(&rel.as_str()) {
            continue;
        }
        let module = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        let text = std::fs::read_to_string(path).unwrap();
        for used in uses(production(&text)) {
            if used != module && layer(&used).is_some() {
                edges.insert((module.clone(), used, rel.clone()));
            }
        }
    }
    let mut wrong = Vec::new();
    let mut excused = BTreeSet::new();
    for (from, to, file) in &edges {
        let (Some(a), Some(b)) = (layer(from), layer(to)) else {
            continue;
        };
        if a > b {
            continue;
        }
        if EXCEPTIONS.iter().any(|(f, t, _)| f == from && t == to) {
            excused.insert((from.as_str(), to.as_str()));
            continue;
        }
        wrong.push(format!(
            "{file}: `{from}` uses `{to}`, a module of {} layer",
            if a == b { "its own" } else { "a higher" }
        ));
    }
    assert!(
        wrong.is_empty(),
        "layering (docs/architecture.md) broken:\n{}",
        wrong.join("\n")
    );
    let stale: Vec<_> = EXCEPTIONS
        .iter()
        .filter(|(f, t, _)| !excused.contains(&(*f, *t)))
        .map(|(f, t, _)| format!("{f} -> {t}"))
        .collect();
    assert!(
        stale.is_empty(),
        "these exceptions are gone: remove them from EXCEPTIONS and docs/architecture.md: {stale:?}"
    );
}

#[test]
fn every_module_has_a_layer() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';'))
        .collect();
    assert!(modules.len() > 10, "{modules:?}");
    let unplaced: Vec<_> = modules.iter().filter(|m| layer(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "modules without a layer (add them to LAYERS and docs/architecture.md): {unplaced:?}"
    );
}

#[test]
fn the_scanner_sees_every_form_of_use() {
    let text = "use crate::slurm::X;\n\
                use crate::{model::RunId, store::{a, b}};\n\
                use crate::{\n    cli,\n    tui::x,\n};\n\
                // crate::daemon in a comment is no use\n\
                let x = crate::policy::decide::step();\n\
                $crate::ops::Error\n";
    let got: Vec<String> = uses(text).into_iter().collect();
    assert_eq!(got, ["cli", "model", "policy", "slurm", "store", "tui"]);
    let with_tests = "use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::cli;\n}\n";
    assert_eq!(production(with_tests), "use crate::a;\n");
}
