//! `tollgate audit`: verify an audit log's chain and checkpoints, or show its records.

use crate::{Exit, Io};
use std::path::Path;
use tollgate_host::audit_log as audit;
use tollgate_host::keys;

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
    // Read one entry at a time: a log of any size is verified in bounded memory.
    let opened = std::fs::File::open(log).and_then(|file| {
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(std::io::Error::from(std::io::ErrorKind::IsADirectory));
        }
        Ok((file, meta.len() == 0))
    });
    let (file, empty) = match opened {
        Ok(opened) => opened,
        Err(error) => return io.usage(&format!("cannot read `{}`: {error}", log.display())),
    };
    if empty && latest.is_none() {
        io.out(&format!(
            "empty: `{}` holds no records (keep the gate's latest checkpoint to tell an empty log from an erased one)\n",
            log.display()
        ));
        return Exit::Success;
    }
    let latest = match latest.map(std::fs::read).transpose() {
        Ok(latest) => latest,
        Err(error) => return io.usage(&format!("cannot read the latest checkpoint: {error}")),
    };
    let input = std::io::BufReader::with_capacity(1 << 16, file);
    match audit::verify_reading(input, &key, key_name, latest.as_deref()) {
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
    for (_, entry) in entries {
        match entry {
            audit::Entry::Record(record) => io.out(&format!("{}\n", audit::record_json(&record))),
            audit::Entry::Checkpoint(note) => io.out(&format!(
                "{}\n",
                serde_json::json!({ "checkpoint": String::from_utf8_lossy(&note) })
            )),
            // The host's counter bookkeeping, not part of the audit trail.
            audit::Entry::State(_) => {}
        }
    }
    Exit::Success
}

pub fn recover(io: &mut Io<'_>, log: &Path) -> Exit {
    match audit::recover(log, crate::now()) {
        Ok(None) => {
            io.out(&format!(
                "{}: no torn entry, nothing to recover\n",
                log.display()
            ));
            Exit::Success
        }
        Ok(Some(recovered)) => {
            io.out(&format!(
                "{}: set {} torn bytes from byte {} aside in {}; recovery record {}\n",
                log.display(),
                recovered.bytes,
                recovered.offset,
                recovered.saved_to.display(),
                recovered.seq
            ));
            Exit::Success
        }
        Err(error) => {
            io.err(&format!("error: {error}\n"));
            Exit::Failure
        }
    }
}
