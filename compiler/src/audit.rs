//! The audit log file the `tollgate gate` adapter writes, and its verification.
//!
//! File layout: a sequence of entries, each `b'R'` followed by one record
//! (`tollgate_runtime::audit::RECORD_SIZE` bytes), or `b'C'`, a `u16` little-endian length and a
//! C2SP checkpoint note. Verification replays the records through the runtime's own `Log`
//! (sequence numbers, hash chain, Merkle tree) and checks every checkpoint's size, root and
//! signature; the first discrepancy is reported with the record it concerns.

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use tollgate_runtime::audit::{self, Log, RECORD_SIZE};
use tollgate_runtime::Reason;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Record(Box<[u8; RECORD_SIZE]>),
    Checkpoint(Vec<u8>),
}

/// Encodes one entry for the log file.
pub fn encode(entry: &Entry) -> Vec<u8> {
    match entry {
        Entry::Record(record) => {
            let mut out = vec![b'R'];
            out.extend_from_slice(&record[..]);
            out
        }
        Entry::Checkpoint(note) => {
            let mut out = vec![b'C'];
            out.extend_from_slice(&(note.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
            out.extend_from_slice(note);
            out
        }
    }
}

/// A problem found in a log: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The record the problem concerns (its position in the file), if any.
    pub record: Option<u64>,
    pub message: String,
}

/// Splits a file into entries; `Err` at the first byte that is not a well-formed entry.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, Problem> {
    let mut entries = Vec::new();
    let mut at = 0;
    let mut records = 0u64;
    while at < bytes.len() {
        match bytes[at] {
            b'R' => {
                let Some(body) = bytes.get(at + 1..at + 1 + RECORD_SIZE) else {
                    return Err(Problem {
                        record: Some(records),
                        message: format!("record {records} is cut short (truncated file)"),
                    });
                };
                let mut record = Box::new([0u8; RECORD_SIZE]);
                record.copy_from_slice(body);
                entries.push(Entry::Record(record));
                records += 1;
                at += 1 + RECORD_SIZE;
            }
            b'C' => {
                let len = bytes
                    .get(at + 1..at + 3)
                    .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])));
                let Some(note) = len.and_then(|len| bytes.get(at + 3..at + 3 + len)) else {
                    return Err(Problem {
                        record: None,
                        message: format!(
                            "the checkpoint after record {records} is cut short (truncated file)"
                        ),
                    });
                };
                entries.push(Entry::Checkpoint(note.to_vec()));
                at += 3 + note.len();
            }
            other => {
                return Err(Problem {
                    record: Some(records),
                    message: format!(
                        "byte {at} starts no entry (0x{other:02x}): the file is damaged"
                    ),
                });
            }
        }
    }
    Ok(entries)
}

/// What a verified log holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub checkpoints: u64,
}

/// Checks sequence numbers, the hash chain, the Merkle tree and every checkpoint's signature; the
/// log must end with a checkpoint covering every record.
pub fn verify(bytes: &[u8], key: &VerifyingKey, key_name: &str) -> Result<Verified, Problem> {
    verify_against(bytes, key, key_name, None)
}

/// As [`verify`], and also against a checkpoint kept outside the gate (`latest`): the log must
/// hold at least that many records, with that tree head at that size. This catches a log cut
/// exactly after an earlier checkpoint, which is otherwise a well-formed shorter log.
pub fn verify_against(
    bytes: &[u8],
    key: &VerifyingKey,
    key_name: &str,
    latest: Option<&[u8]>,
) -> Result<Verified, Problem> {
    let anchor = match latest {
        None => None,
        Some(note) => {
            let size = std::str::from_utf8(note)
                .ok()
                .and_then(|text| text.lines().nth(1))
                .and_then(|line| line.parse::<u64>().ok())
                .ok_or_else(|| Problem {
                    record: None,
                    message: "the latest checkpoint is not a checkpoint note".to_owned(),
                })?;
            Some((size, note))
        }
    };
    let mut anchored = anchor.is_none();
    let check_anchor = |log: &Log, anchored: &mut bool| -> Result<(), Problem> {
        if let Some((size, note)) = anchor {
            if !*anchored && log.size() == size {
                check_note(note, log, key, key_name).map_err(|why| Problem {
                    record: size.checked_sub(1),
                    message: format!(
                        "the latest checkpoint (size {size}) does not match this log: {why}"
                    ),
                })?;
                *anchored = true;
            }
        }
        Ok(())
    };
    let entries = parse(bytes)?;
    let mut log = Log::new();
    let mut checkpoints = 0u64;
    let mut covered = 0u64;
    check_anchor(&log, &mut anchored)?;
    for entry in &entries {
        match entry {
            Entry::Record(record) => {
                let index = log.size();
                if record[0] != audit::VERSION
                    || !matches!(record[1], audit::KIND_DECISION | audit::KIND_REVOCATION)
                {
                    return Err(Problem {
                        record: Some(index),
                        message: format!("record {index} has an unknown version or kind"),
                    });
                }
                let seq = u64::from_le_bytes(record[8..16].try_into().unwrap_or([0; 8]));
                let sealed = log.append(**record);
                let anchor_result = check_anchor(&log, &mut anchored);
                if sealed[..] != record[..] {
                    let message = if seq != index {
                        format!("record {index} has sequence number {seq}: records were removed, added or reordered")
                    } else {
                        format!(
                            "record {index} does not follow record {}: one of them was changed, or records between them removed",
                            index.saturating_sub(1)
                        )
                    };
                    return Err(Problem {
                        record: Some(index),
                        message,
                    });
                }
                anchor_result?;
            }
            Entry::Checkpoint(note) => {
                check_note(note, &log, key, key_name).map_err(|why| Problem {
                    record: log.size().checked_sub(1),
                    message: format!("checkpoint at size {}: {why}", log.size()),
                })?;
                checkpoints += 1;
                covered = log.size();
            }
        }
    }
    if !anchored {
        return Err(Problem {
            record: Some(log.size()),
            message: format!(
                "the log holds {} records but the latest checkpoint covers {}: it was truncated",
                log.size(),
                anchor.map_or(0, |(size, _)| size)
            ),
        });
    }
    if covered != log.size() {
        return Err(Problem {
            record: Some(covered),
            message: format!(
                "records {covered}..{} are not covered by a signed checkpoint: the log was truncated or not closed",
                log.size()
            ),
        });
    }
    Ok(Verified {
        records: log.size(),
        checkpoints,
    })
}

fn check_note(note: &[u8], log: &Log, key: &VerifyingKey, key_name: &str) -> Result<(), String> {
    let text = std::str::from_utf8(note).map_err(|_| "the note is not UTF-8".to_owned())?;
    let Some((body, signatures)) = text.split_once("\n\n") else {
        return Err("the note has no signature block".to_owned());
    };
    let body = format!("{body}\n");
    let lines: Vec<&str> = body.lines().collect();
    let [_origin, size, root] = lines[..] else {
        return Err("the note body is not origin, size and root".to_owned());
    };
    if size.parse::<u64>().ok() != Some(log.size()) {
        return Err(format!(
            "it claims size {size}, the records before it number {}",
            log.size()
        ));
    }
    let expected_root = base64::engine::general_purpose::STANDARD.encode(log.root());
    if root != expected_root {
        return Err(
            "its root hash does not match the records before it: a record was changed".to_owned(),
        );
    }
    let key_id = audit::key_id(key_name, key);
    for line in signatures.lines() {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            continue;
        };
        let Some((name, blob)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(blob) else {
            continue;
        };
        if name != key_name || blob.len() != 68 || blob[..4] != key_id {
            continue;
        }
        let signature =
            Signature::from_slice(&blob[4..]).map_err(|_| "a malformed signature".to_owned())?;
        return key
            .verify_strict(body.as_bytes(), &signature)
            .map_err(|_| "its signature does not verify with the gate's key".to_owned());
    }
    Err(format!("no signature by `{key_name}` with this key"))
}

/// A record as JSON, for `tollgate audit show`.
pub fn record_json(record: &[u8; RECORD_SIZE]) -> serde_json::Value {
    let text = |bytes: &[u8]| {
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    let u16_at = |at: usize| u16::from_le_bytes([record[at], record[at + 1]]);
    let u64_at = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().unwrap_or([0; 8]));
    let optional = |value: u16| (value != u16::MAX).then_some(value);
    serde_json::json!({
        "seq": u64_at(8),
        "kind": if record[1] == audit::KIND_REVOCATION { "revocation" } else { "decision" },
        "time": u64_at(16),
        "agent": text(&record[56..119]),
        "tool": text(&record[119..182]),
        "verdict": if record[2] == 0 { "allow" } else { "deny" },
        "reason": Reason::from_code(record[3]).map(Reason::as_str),
        "rule": optional(u16_at(4)),
        "limit": optional(u16_at(6)),
        "policy_hash": hex::encode(&record[24..56]),
        "args_digest": hex::encode(&record[182..214]),
        "previous": hex::encode(&record[214..246]),
    })
}
