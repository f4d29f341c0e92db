//! `tollgate audit`: verify an audit log's chain and checkpoints, or show its records.

use crate::{keys, Exit, Io};
use std::path::Path;
use tollgate_compiler::audit;

pub fn verify(
    io: &mut Io<'_>,
    log: &Path,
    key: &Path,
    key_name: &str,
    latest: Option<&Path>,
) -> Exit {
    let key = match keys::verifying_key(key) {
        Ok(key) => key,
        Err(message) => return io.usage(&message),
    };
    let bytes = match std::fs::read(log) {
        Ok(bytes) => bytes,
        Err(error) => return io.usage(&format!("cannot read `{}`: {error}", log.display())),
    };
    let latest = match latest.map(std::fs::read).transpose() {
        Ok(latest) => latest,
        Err(error) => return io.usage(&format!("cannot read the latest checkpoint: {error}")),
    };
    match audit::verify_against(&bytes, &key, key_name, latest.as_deref()) {
        Ok(verified) => {
            io.out(&format!(
                "ok: {} records, {} signed checkpoints, chain and tree intact\n",
                verified.records, verified.checkpoints
            ));
            Exit::Success
        }
        Err(problem) => {
            io.err(&format!("error: {}\n", problem.message));
            if let Some(record) = problem.record {
                io.err(&format!("  first bad record: {record}\n"));
            }
            Exit::Failure
        }
    }
}

pub fn show(io: &mut Io<'_>, log: &Path) -> Exit {
    let bytes = match std::fs::read(log) {
        Ok(bytes) => bytes,
        Err(error) => return io.usage(&format!("cannot read `{}`: {error}", log.display())),
    };
    let entries = match audit::parse(&bytes) {
        Ok(entries) => entries,
        Err(problem) => {
            io.err(&format!("error: {}\n", problem.message));
            return Exit::Failure;
        }
    };
    for entry in entries {
        match entry {
            audit::Entry::Record(record) => io.out(&format!("{}\n", audit::record_json(&record))),
            audit::Entry::Checkpoint(note) => io.out(&format!(
                "{}\n",
                serde_json::json!({ "checkpoint": String::from_utf8_lossy(&note) })
            )),
        }
    }
    Exit::Success
}
