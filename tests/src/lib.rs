//! Helpers shared by the cross-crate tests in `tests/tests/`.

#![allow(clippy::panic, reason = "test helpers fail loudly")]

pub mod tables;

use std::path::{Path, PathBuf};
use tollgate_compiler::source::SourceSet;

/// The repository root (this crate lives in `tests/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Every `.toll` file directly in a folder under the repository root, sorted.
pub fn toll_files(folder: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(folder))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toll"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Every folder under `examples/` (at any depth) that holds `.toll` files: the examples, the
/// flawed examples and the versions used for diffs.
pub fn all_policy_dirs() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root().join("examples")];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut has_policy = false;
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|x| x == "toll") {
                has_policy = true;
            }
        }
        if has_policy {
            found.push(dir);
        }
    }
    found.sort();
    found
}

/// Loads a policy folder (or file) into a source set and a checked policy.
pub fn load_dir(dir: &Path) -> (SourceSet, tollgate_compiler::model::Policy) {
    let mut sources = SourceSet::new();
    let files = if dir.is_file() {
        vec![dir.to_path_buf()]
    } else {
        toll_files(&relative(dir))
    };
    for file in files {
        sources.add(
            &relative(&file),
            &std::fs::read_to_string(&file).unwrap_or_default(),
        );
    }
    match tollgate_compiler::load(&sources) {
        Ok(policy) => (sources, policy),
        Err(d) => panic!(
            "{}:\n{}",
            relative(dir),
            tollgate_compiler::diagnostic::render_human(&d, &sources)
        ),
    }
}

/// The example policy sets: one folder each directly under `examples/`.
pub fn example_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir() && !toll_files(&relative(p)).is_empty())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// A syntax tree's JSON without its spans, for comparing trees parsed from different text.
pub fn shape(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map)
            if map.len() == 3
                && ["file", "start", "end"]
                    .iter()
                    .all(|k| map.contains_key(*k)) =>
        {
            Value::Null
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| *k != "span")
                .map(|(k, v)| (k.clone(), shape(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        other => other.clone(),
    }
}

/// A path relative to the repository root, with `/` separators, for stable snapshots.
pub fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
        .replace('\\', "/")
}

/// Reads a file into a one-file source set named by its relative path.
pub fn source_set(path: &Path) -> SourceSet {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    SourceSet::single(&relative(path), &text)
}

/// Runs the `tollgate` command line in-process from the repository root; returns
/// (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], stdin: &str) -> (u8, String, String) {
    let mut argv = vec!["tollgate".to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let input = Box::new(std::io::Cursor::new(stdin.as_bytes().to_vec()));
    let mut out = Vec::new();
    let mut err = Vec::new();
    let exit = tollgate_cli::run(&argv, input, &mut out, &mut err);
    (
        exit as u8,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}
