//! The audit log file: its entries, its verifier, and the writer that makes it the host's
//! write-ahead log.
//!
//! File layout: a sequence of entries, each
//! - `b'R'` and one record (`tollgate_runtime::audit::RECORD_SIZE` bytes), hash-chained and in
//!   the Merkle tree;
//! - `b'C'`, a `u16` little-endian length and a C2SP checkpoint note signed by the gate's key;
//! - `b'S'`, a `u16` little-endian length and a state entry: the counters the decision after it
//!   changed (see [`StateEntry`]), so a restart rebuilds them from a snapshot plus the log tail.
//!
//! Verification replays the records through the runtime's own `Log` (sequence numbers, hash
//! chain, Merkle tree) and checks every checkpoint's size, root and signature; the first
//! discrepancy is reported with the record it concerns. State entries are the host's bookkeeping
//! and are not part of the tree.
//!
//! The writer ([`AuditFile`]) opens the log for append only (never truncating it), holds an
//! exclusive lock so that one gate writes it, and makes each decision's entries one `write`, so a
//! `kill -9` leaves whole entries. A torn entry at the end (an operating-system crash mid-write)
//! stops the next start until [`recover`] sets the torn bytes aside.

use crate::HostError;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use tollgate_runtime::audit::{self, field, flag, Log, RECORD_SIZE};
use tollgate_runtime::gate::{Slot, SLOT_SIZE};
use tollgate_runtime::Reason;

/// The tag byte that starts a record entry (`C` starts a checkpoint, `S` a state entry).
pub const RECORD_TAG: u8 = b'R';

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Record(Box<[u8; RECORD_SIZE]>),
    Checkpoint(Vec<u8>),
    State(Vec<u8>),
}

/// Encodes one entry for the log file.
pub fn encode(entry: &Entry) -> Vec<u8> {
    match entry {
        Entry::Record(record) => {
            let mut out = vec![RECORD_TAG];
            out.extend_from_slice(&record[..]);
            out
        }
        Entry::Checkpoint(note) => prefixed(b'C', note),
        Entry::State(bytes) => prefixed(b'S', bytes),
    }
}

fn prefixed(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
    out.extend_from_slice(body.get(..usize::from(u16::MAX)).unwrap_or(body));
    out
}

/// The counters one decision changed: the policy it was decided under (first 8 bytes of the
/// policy hash), the gate's clock after it, and each changed slot by index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateEntry {
    pub policy: [u8; 8],
    pub latest: u64,
    pub slots: Vec<(u32, Slot)>,
}

/// Appends a whole state entry (tag, length, body) for `slots` to `out`, without building the
/// entry first: the host stages one per decision that changed a counter.
pub fn encode_state_into(
    out: &mut Vec<u8>,
    policy: &[u8; 8],
    latest: u64,
    slots: impl ExactSizeIterator<Item = (u32, Slot)>,
) {
    // At most what a 16-bit length can frame (a decision changes at most `MAX_CHANGES` slots,
    // far fewer).
    let fit = slots
        .len()
        .min((usize::from(u16::MAX) - 16) / (4 + SLOT_SIZE));
    let body = 16 + fit * (4 + SLOT_SIZE);
    out.push(b'S');
    out.extend_from_slice(&(body as u16).to_le_bytes());
    out.extend_from_slice(policy);
    out.extend_from_slice(&latest.to_le_bytes());
    for (index, slot) in slots.take(fit) {
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&slot.encode());
    }
}

impl StateEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.slots.len() * (4 + SLOT_SIZE));
        out.extend_from_slice(&self.policy);
        out.extend_from_slice(&self.latest.to_le_bytes());
        for (index, slot) in &self.slots {
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&slot.encode());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<StateEntry> {
        let policy: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        let latest = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        let rest = bytes.get(16..)?;
        if rest.len() % (4 + SLOT_SIZE) != 0 {
            return None;
        }
        let slots = rest
            .chunks(4 + SLOT_SIZE)
            .map(|chunk| {
                let index = u32::from_le_bytes(chunk.get(..4)?.try_into().ok()?);
                Some((index, Slot::decode(chunk.get(4..)?)?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(StateEntry {
            policy,
            latest,
            slots,
        })
    }
}

/// A problem found in a log: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The record the problem concerns (its position in the file), if any.
    pub record: Option<u64>,
    /// The byte offset of the entry the problem concerns.
    pub offset: u64,
    /// The file ends inside an entry: a torn write, not tampering in the middle.
    pub torn: bool,
    pub message: String,
}

/// Splits a file into entries with their byte offsets; `Err` at the first byte that is not a
/// well-formed entry.
pub fn parse(bytes: &[u8]) -> Result<Vec<(u64, Entry)>, Problem> {
    let mut entries = Vec::new();
    let mut reading = Entries::new(bytes);
    while let Some(entry) = reading.next_entry()? {
        entries.push(entry);
    }
    Ok(entries)
}

/// A log's entries read one at a time from `input`, with their byte offsets: [`parse`] without
/// holding the file, so a gate that restarts on a log of any size holds one entry at a time.
#[derive(Debug)]
pub struct Entries<R> {
    input: R,
    at: u64,
    records: u64,
}

impl<R: std::io::Read> Entries<R> {
    pub fn new(input: R) -> Entries<R> {
        Entries {
            input,
            at: 0,
            records: 0,
        }
    }

    /// The next entry; `None` at the end of the log, `Err` at the first byte that is not a
    /// well-formed entry (as [`parse`] reports it) or where the input cannot be read.
    pub fn next_entry(&mut self) -> Result<Option<(u64, Entry)>, Problem> {
        let at = self.at;
        let records = self.records;
        let torn = |message: String| Problem {
            record: Some(records),
            offset: at,
            torn: true,
            message,
        };
        let mut tag = [0u8; 1];
        if self.fill(&mut tag)? == 0 {
            return Ok(None);
        }
        let (entry, len) = match tag[0] {
            RECORD_TAG => {
                let mut record = Box::new([0u8; RECORD_SIZE]);
                if self.fill(&mut record[..])? < RECORD_SIZE {
                    return Err(torn(format!(
                        "record {records} is cut short at byte {at} (a torn write, or a truncated file)"
                    )));
                }
                self.records += 1;
                (Entry::Record(record), 1 + RECORD_SIZE)
            }
            tag @ (b'C' | b'S') => {
                let cut = || {
                    torn(format!(
                        "the entry at byte {at} is cut short (a torn write, or a truncated file)"
                    ))
                };
                let mut len = [0u8; 2];
                if self.fill(&mut len)? < 2 {
                    return Err(cut());
                }
                let mut body = vec![0u8; usize::from(u16::from_le_bytes(len))];
                if self.fill(&mut body)? < body.len() {
                    return Err(cut());
                }
                let len = 3 + body.len();
                let entry = if tag == b'C' {
                    Entry::Checkpoint(body)
                } else {
                    Entry::State(body)
                };
                (entry, len)
            }
            other => {
                return Err(Problem {
                    record: Some(records),
                    offset: at,
                    torn: false,
                    message: format!(
                        "byte {at} starts no entry (0x{other:02x}): the file is damaged"
                    ),
                });
            }
        };
        self.at = at.saturating_add(len as u64);
        Ok(Some((at, entry)))
    }

    /// Reads into `buffer` until it is full or the input ends; how many bytes it read.
    fn fill(&mut self, buffer: &mut [u8]) -> Result<usize, Problem> {
        let mut read = 0;
        while let Some(rest) = buffer.get_mut(read..).filter(|rest| !rest.is_empty()) {
            match self.input.read(rest) {
                Ok(0) => break,
                Ok(n) => read += n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(Problem {
                        record: Some(self.records),
                        offset: self.at,
                        torn: false,
                        message: format!("the log cannot be read at byte {}: {error}", self.at),
                    })
                }
            }
        }
        Ok(read)
    }
}

/// What a verified log holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub checkpoints: u64,
}

/// A log replayed for a gate that continues it (its state entries went to the replay's
/// `on_state`, in order).
#[derive(Clone, Debug)]
pub struct Resumed {
    pub log: Log,
    pub checkpoints: u64,
    /// The last checkpoint note, if any.
    pub last_note: Option<Vec<u8>>,
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
    verify_reading(bytes, key, key_name, latest)
}

/// [`verify_against`] reading the log from `input` one entry at a time (a log of any size is
/// verified in bounded memory).
pub fn verify_reading(
    input: impl std::io::Read,
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
                .ok_or_else(|| problem(None, "the latest checkpoint is not a checkpoint note"))?;
            Some((size, note))
        }
    };
    let mut anchored = anchor.is_none();
    let check_anchor = |log: &Log, anchored: &mut bool| -> Result<(), Problem> {
        if let Some((size, note)) = anchor {
            if !*anchored && log.size() == size {
                check_note(note, log, key, key_name).map_err(|why| {
                    problem(
                        size.checked_sub(1),
                        &format!(
                            "the latest checkpoint (size {size}) does not match this log: {why}"
                        ),
                    )
                })?;
                *anchored = true;
            }
        }
        Ok(())
    };
    let mut entries = Entries::new(input);
    let mut log = Log::new();
    let mut checkpoints = 0u64;
    let mut covered = 0u64;
    check_anchor(&log, &mut anchored)?;
    while let Some((_, entry)) = entries.next_entry()? {
        match entry {
            Entry::Record(record) => {
                append_checked(&mut log, &record)?;
                check_anchor(&log, &mut anchored)?;
            }
            Entry::Checkpoint(note) => {
                check_note(&note, &log, key, key_name).map_err(|why| {
                    problem(
                        log.size().checked_sub(1),
                        &format!("checkpoint at size {}: {why}", log.size()),
                    )
                })?;
                checkpoints += 1;
                covered = log.size();
            }
            Entry::State(_) => {}
        }
    }
    if !anchored {
        return Err(problem(
            Some(log.size()),
            &format!(
                "the log holds {} records but the latest checkpoint covers {}: it was truncated",
                log.size(),
                anchor.map_or(0, |(size, _)| size)
            ),
        ));
    }
    if covered != log.size() {
        return Err(problem(
            Some(covered),
            &format!(
                "records {covered}..{} are not covered by a signed checkpoint: the log was truncated or not closed",
                log.size()
            ),
        ));
    }
    Ok(Verified {
        records: log.size(),
        checkpoints,
    })
}

/// Replays a log for a gate that continues it, reading it from `input` one entry at a time: the
/// chain and every checkpoint must verify; records after the last checkpoint are accepted (a gate
/// that crashed had not closed its log yet). Each state entry goes to `on_state` with its byte
/// offset, in order, as it is read: a log of any size is replayed in bounded memory.
pub fn resume(
    input: impl std::io::Read,
    key: &VerifyingKey,
    key_name: &str,
    mut on_state: impl FnMut(u64, StateEntry),
) -> Result<Resumed, Problem> {
    let mut resumed = Resumed {
        log: Log::new(),
        checkpoints: 0,
        last_note: None,
    };
    let mut entries = Entries::new(input);
    while let Some((offset, entry)) = entries.next_entry()? {
        match entry {
            Entry::Record(record) => append_checked(&mut resumed.log, &record)?,
            Entry::Checkpoint(note) => {
                check_note(&note, &resumed.log, key, key_name).map_err(|why| Problem {
                    record: resumed.log.size().checked_sub(1),
                    offset,
                    torn: false,
                    message: format!("checkpoint at size {}: {why}", resumed.log.size()),
                })?;
                resumed.checkpoints += 1;
                resumed.last_note = Some(note);
            }
            Entry::State(body) => {
                let entry = StateEntry::decode(&body).ok_or_else(|| Problem {
                    record: None,
                    offset,
                    torn: false,
                    message: format!("the state entry at byte {offset} is malformed"),
                })?;
                on_state(offset, entry);
            }
        }
    }
    Ok(resumed)
}

fn problem(record: Option<u64>, message: &str) -> Problem {
    Problem {
        record,
        offset: 0,
        torn: false,
        message: message.to_owned(),
    }
}

/// Appends a record read from a file, checking that it is exactly what the log would have sealed.
fn append_checked(log: &mut Log, record: &[u8; RECORD_SIZE]) -> Result<(), Problem> {
    let index = log.size();
    if record[field::VERSION] != audit::VERSION
        || !matches!(
            record[field::KIND],
            audit::KIND_DECISION | audit::KIND_REVOCATION | audit::KIND_RECOVERY
        )
    {
        return Err(problem(
            Some(index),
            &format!("record {index} has an unknown version or kind"),
        ));
    }
    let seq = u64_at(record, field::SEQ);
    let sealed = log.append(*record);
    if sealed[..] != record[..] {
        let message = if seq != index {
            format!("record {index} has sequence number {seq}: records were removed, added or reordered")
        } else if index == 0 {
            "record 0 was changed".to_owned()
        } else {
            format!(
                "record {index} does not follow record {}: one of them was changed, or records between them removed",
                index.saturating_sub(1)
            )
        };
        return Err(problem(Some(index), &message));
    }
    Ok(())
}

fn u64_at(record: &[u8], at: usize) -> u64 {
    record
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
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
    let flags = record[field::FLAGS];
    let name = |at: usize, size: usize, hashed: u8| {
        let bytes = &record[at..at + size];
        if flags & hashed != 0 {
            return format!("sha256:{}", hex::encode(bytes));
        }
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    let u16_at = |at: usize| u16::from_le_bytes([record[at], record[at + 1]]);
    let optional = |value: u16| (value != u16::MAX).then_some(value);
    let kind = match record[field::KIND] {
        audit::KIND_REVOCATION => "revocation",
        audit::KIND_RECOVERY => "recovery",
        _ => "decision",
    };
    let mut json = serde_json::json!({
        "seq": u64_at(record, field::SEQ),
        "kind": kind,
        "time": u64_at(record, field::TIME),
        "agent": name(field::AGENT, field::AGENT_SIZE, flag::AGENT_HASHED),
        "tool": name(field::TOOL, field::TOOL_SIZE, flag::TOOL_HASHED),
        "verdict": if record[field::VERDICT] == 0 { "allow" } else { "deny" },
        "reason": Reason::from_code(record[field::REASON]).map(Reason::as_str),
        "rule": optional(u16_at(field::RULE)),
        "limit": optional(u16_at(field::LIMIT)),
        "policy_hash": hex::encode(&record[field::POLICY_HASH..field::POLICY_HASH + 32]),
        "args_digest": hex::encode(&record[field::ARGS..field::ARGS + 32]),
        "previous": hex::encode(&record[field::PREVIOUS..field::PREVIOUS + 32]),
    });
    if let Some(object) = json.as_object_mut() {
        let id = &record[field::CREDENTIAL_ID..field::CREDENTIAL_ID + 16];
        if id.iter().any(|b| *b != 0) {
            object.insert("credential_id".to_owned(), hex::encode(id).into());
        }
        if flags & flag::UNVERIFIED != 0 {
            object.insert("agent_verified".to_owned(), false.into());
        }
        let env = name(field::ENV, field::ENV_SIZE, flag::ENV_HASHED);
        if !env.is_empty() {
            object.insert("env".to_owned(), env.into());
        }
        let chain = record[field::CHAIN_LENGTH];
        if chain > 0 {
            object.insert("chain_length".to_owned(), chain.into());
            object.insert(
                "chain_digest".to_owned(),
                hex::encode(&record[field::CHAIN..field::CHAIN + 32]).into(),
            );
        }
    }
    json
}

/// How often the log is made durable (`fsync`). Every entry always reaches the operating system
/// before the decision it records is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `fsync` after every decision: survives a power loss without losing a released decision.
    Every,
    /// `fsync` on a thread of its own, so deciding never waits for the disk: each append asks
    /// for one, and the thread runs one whenever appended bytes are not yet durable, at most
    /// once every [`SYNC_INTERVAL`] (requests made meanwhile are covered by the next), and on
    /// close. Survives a crash or `kill -9` of the gate (the operating system holds the writes);
    /// a power loss can lose what was appended since the last `fsync` started: at most about
    /// [`SYNC_INTERVAL`] plus one `fsync`'s duration of traffic, however slow or fast the
    /// traffic is. A failed `fsync` fails the next append, so the gate stops allowing.
    Batch,
    /// Never `fsync` (the operating system decides): survives a crash of the gate only.
    None,
}

/// Under [`SyncPolicy::Batch`], the shortest time from the start of one `fsync` to the start of
/// the next: a busy gate runs at most 100 a second (each costs the disk a cache flush), a quiet
/// one has each record durable within about this time.
pub const SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Under [`SyncPolicy::Batch`] where no thread can be started: the bytes appended between two
/// `fsync`s run in line (256 decision records' worth).
const INLINE_SYNC_BYTES: u64 = 256 * (RECORD_SIZE as u64 + 1);

/// Where a gate's log entries go: a file, or memory in tests and benchmarks.
pub trait AuditStore: Send {
    /// Appends the bytes as one write; they reach the operating system before this returns.
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Makes everything appended durable.
    fn sync(&mut self) -> std::io::Result<()>;
    /// Bytes in the log.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A log in memory.
#[derive(Debug, Default)]
pub struct MemoryAudit {
    pub bytes: Vec<u8>,
}

impl AuditStore for MemoryAudit {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// The audit log file, opened for append by the one gate that holds its lock.
#[derive(Debug)]
pub struct AuditFile {
    file: std::fs::File,
    path: PathBuf,
    sync: SyncPolicy,
    /// Bytes appended since the last `fsync` was asked for (or, with no thread to ask, run).
    unsynced: u64,
    len: u64,
    /// Under [`SyncPolicy::Batch`], the thread that runs the `fsync`s.
    syncer: Option<Syncer>,
}

/// A thread that makes the log durable when asked, so the gate does not wait for the disk.
#[derive(Debug)]
struct Syncer {
    /// One request waits at most: a request made while another waits is covered by it (an
    /// `fsync` makes durable everything written before it starts).
    requests: Option<std::sync::mpsc::SyncSender<()>>,
    /// Set when an `fsync` failed; the next append fails.
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// How many `fsync`s the thread has run.
    runs: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Joined on drop: its handle on the file shares the log's lock, which must be released
    /// when the log is closed.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Syncer {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Syncer {
    fn start(file: &std::fs::File) -> Option<Syncer> {
        let file = file.try_clone().ok()?;
        let (requests, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&failed);
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ran = std::sync::Arc::clone(&runs);
        let thread = std::thread::Builder::new()
            .name("tollgate-fsync".to_owned())
            .spawn(move || {
                // A request that arrives during an `fsync` or the wait after it stays in the
                // channel, so the bytes it covers get the next `fsync`.
                for () in asked {
                    let started = std::time::Instant::now();
                    if file.sync_data().is_err() {
                        flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if let Some(rest) = SYNC_INTERVAL.checked_sub(started.elapsed()) {
                        std::thread::sleep(rest);
                    }
                }
            })
            .ok()?;
        Some(Syncer {
            requests: Some(requests),
            failed,
            runs,
            thread: Some(thread),
        })
    }

    fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl AuditFile {
    /// Opens (creating) the log for append, takes its exclusive lock, and returns it with the
    /// bytes it already holds. A log another gate holds is refused, naming the holder.
    pub fn open(path: &Path, sync: SyncPolicy) -> Result<(AuditFile, Vec<u8>), HostError> {
        let (file, mut existing) = AuditFile::open_reading(path, sync)?;
        let mut bytes = Vec::with_capacity(usize::try_from(file.len).unwrap_or(0));
        existing
            .read_to_end(&mut bytes)
            .map_err(|e| HostError::io("read", path, e))?;
        Ok((file, bytes))
    }

    /// [`AuditFile::open`], with the bytes already in the log returned as a reader instead of
    /// read into memory: what a gate starts from ([`crate::gate::Gate::start`] reads it one
    /// entry at a time), so a restart on a log of any size holds little of it.
    pub fn open_reading(
        path: &Path,
        sync: SyncPolicy,
    ) -> Result<(AuditFile, ExistingLog), HostError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| HostError::io("open", path, e))?;
        let holder_path = holder_path(path);
        if let Err(error) = file.try_lock() {
            let holder = std::fs::read_to_string(&holder_path)
                .ok()
                .map(|pid| format!(" (process {})", pid.trim()))
                .unwrap_or_default();
            return Err(match error {
                std::fs::TryLockError::WouldBlock => HostError::Locked {
                    path: path.to_owned(),
                    holder,
                },
                std::fs::TryLockError::Error(error) => HostError::io("lock", path, error),
            });
        }
        // Only a regular file holds earlier entries (a device such as `/dev/full` reads forever).
        let regular = file
            .metadata()
            .map_err(|e| HostError::io("inspect", path, e))?
            .is_file();
        if regular {
            // Tell a refused second gate who holds the log; advisory, so a failure is not fatal.
            let _ = std::fs::write(&holder_path, format!("{}\n", std::process::id()));
        }
        let len = if regular {
            file.metadata()
                .map_err(|e| HostError::io("inspect", path, e))?
                .len()
        } else {
            0
        };
        // The bytes already there, read through a handle of their own: exactly `len` of them,
        // whatever this log appends later.
        let existing = ExistingLog(if regular {
            let reader = std::fs::File::open(path).map_err(|e| HostError::io("read", path, e))?;
            Some(std::io::BufReader::with_capacity(1 << 16, reader).take(len))
        } else {
            None
        });
        // Where no thread can be started, batches are made durable in line, as before.
        let syncer = match sync {
            SyncPolicy::Batch => Syncer::start(&file),
            SyncPolicy::Every | SyncPolicy::None => None,
        };
        Ok((
            AuditFile {
                file,
                path: path.to_owned(),
                sync,
                unsynced: 0,
                len,
                syncer,
            },
            existing,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many `fsync`s the `--sync batch` thread has run (0 for the other policies).
    pub fn background_fsyncs(&self) -> u64 {
        self.syncer
            .as_ref()
            .map_or(0, |s| s.runs.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// The bytes a log held when it was opened ([`AuditFile::open_reading`]), read from the file as
/// they are asked for (nothing for a log that is not a regular file).
#[derive(Debug)]
pub struct ExistingLog(Option<std::io::Take<std::io::BufReader<std::fs::File>>>);

impl std::io::Read for ExistingLog {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.0 {
            Some(file) => file.read(buffer),
            None => Ok(0),
        }
    }
}

fn holder_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".holder");
    path.with_file_name(name)
}

impl AuditStore for AuditFile {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.syncer.as_ref().is_some_and(Syncer::failed) {
            return Err(std::io::Error::other("an earlier fsync of the log failed"));
        }
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        self.unsynced += bytes.len() as u64;
        match self.sync {
            SyncPolicy::Every => self.sync(),
            SyncPolicy::Batch => match &self.syncer {
                Some(syncer) => {
                    // Asked, or already asked and waiting (which covers these bytes too).
                    if let Some(requests) = &syncer.requests {
                        let _ = requests.try_send(());
                    }
                    self.unsynced = 0;
                    Ok(())
                }
                // No thread: made durable in line, once a batch's worth is written.
                None if self.unsynced >= INLINE_SYNC_BYTES => self.sync(),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Makes everything appended durable before it returns (on close and before a snapshot),
    /// whatever the policy's batching.
    fn sync(&mut self) -> std::io::Result<()> {
        if self.syncer.as_ref().is_some_and(Syncer::failed) {
            return Err(std::io::Error::other("an earlier fsync of the log failed"));
        }
        if self.sync != SyncPolicy::None {
            self.file.sync_data()?;
        }
        self.unsynced = 0;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// What [`recover`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// Where the torn bytes started.
    pub offset: u64,
    /// How many bytes were set aside, and where.
    pub bytes: u64,
    pub saved_to: PathBuf,
    /// The recovery record's sequence number.
    pub seq: u64,
}

/// Sets a torn tail aside: the bytes from the torn entry on are saved in a file of their own,
/// the log is cut there, and a recovery record (chained like any other) says so. A log with no
/// torn tail is left alone (`Ok(None)`); a log damaged elsewhere is refused.
pub fn recover(path: &Path, now: u64) -> Result<Option<Recovered>, HostError> {
    // Read one entry at a time, the chain continued over the intact prefix: a log of any size
    // is recovered in bounded memory.
    let (mut file, existing) = AuditFile::open_reading(path, SyncPolicy::Every)?;
    let invalid = |problem: Problem| HostError::LogInvalid {
        path: path.to_owned(),
        why: problem.message,
    };
    let mut entries = Entries::new(existing);
    let mut log = Log::new();
    let offset = loop {
        match entries.next_entry() {
            Ok(None) => return Ok(None),
            Ok(Some((_, Entry::Record(record)))) => {
                log.append(*record);
            }
            Ok(Some(_)) => {}
            Err(problem) if problem.torn => break problem.offset,
            Err(problem) => return Err(invalid(problem)),
        }
    };
    // The torn bytes: less than one entry (at most a checkpoint's 3 + 65,535 bytes).
    let mut torn = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut reader| {
            std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(offset))?;
            reader
                .take(file.len.saturating_sub(offset))
                .read_to_end(&mut torn)
        })
        .map_err(|e| HostError::io("read", path, e))?;
    let mut saved_to = path.as_os_str().to_owned();
    saved_to.push(format!(".torn-{offset}"));
    let saved_to = PathBuf::from(saved_to);
    std::fs::write(&saved_to, &torn).map_err(|e| HostError::io("write", &saved_to, e))?;
    file.file
        .set_len(offset)
        .and_then(|()| file.file.sync_all())
        .map_err(|e| HostError::io("truncate", path, e))?;
    file.len = offset;
    // Record the recovery.
    let mut record = [0u8; RECORD_SIZE];
    record[field::VERSION] = audit::VERSION;
    record[field::KIND] = audit::KIND_RECOVERY;
    record[field::TIME..field::TIME + 8].copy_from_slice(&now.to_le_bytes());
    record[field::RULE..field::RULE + 2].copy_from_slice(&u16::MAX.to_le_bytes());
    record[field::LIMIT..field::LIMIT + 2].copy_from_slice(&u16::MAX.to_le_bytes());
    // The recovery record names the torn byte count in the arguments-digest field's first bytes.
    record[field::ARGS..field::ARGS + 8].copy_from_slice(&(torn.len() as u64).to_le_bytes());
    let seq = log.size();
    let sealed = log.append(record);
    file.append(&encode(&Entry::Record(Box::new(sealed))))
        .map_err(|e| HostError::io("append to", path, e))?;
    Ok(Some(Recovered {
        offset,
        bytes: torn.len() as u64,
        saved_to,
        seq,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes a call (a file read in small pieces).
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buffer.len()).min(self.bytes.len());
            let (now, rest) = self.bytes.split_at(n);
            buffer[..n].copy_from_slice(now);
            self.bytes = rest;
            Ok(n)
        }
    }

    fn read_all(input: impl std::io::Read) -> Result<Vec<(u64, Entry)>, Problem> {
        let mut entries = Entries::new(input);
        let mut read = Vec::new();
        while let Some(entry) = entries.next_entry()? {
            read.push(entry);
        }
        Ok(read)
    }

    #[test]
    fn entries_read_in_any_pieces_are_the_file_cut_anywhere() {
        let mut log = Log::new();
        let mut record = [0u8; RECORD_SIZE];
        record[field::VERSION] = audit::VERSION;
        record[field::KIND] = audit::KIND_DECISION;
        let first = log.append(record);
        let second = log.append(record);
        let entries = [
            Entry::Record(Box::new(first)),
            Entry::State(vec![7; 40]),
            Entry::Checkpoint(b"a note".to_vec()),
            Entry::Record(Box::new(second)),
        ];
        let bytes: Vec<u8> = entries.iter().flat_map(encode).collect();
        let starts = [0u64, 311, 354, 363];
        let whole = parse(&bytes).unwrap_or_default();
        assert_eq!(
            whole,
            starts
                .iter()
                .copied()
                .zip(entries.iter().cloned())
                .collect::<Vec<_>>()
        );
        for cut in 0..=bytes.len() {
            let file = &bytes[..cut];
            let expected = parse(file);
            // A cut inside an entry is a torn tail at that entry; at a boundary, a shorter log.
            match &expected {
                Ok(read) => assert!(
                    starts.iter().any(|&at| at as usize == cut) || cut == bytes.len(),
                    "{cut}: {read:?}"
                ),
                Err(problem) => {
                    assert!(problem.torn, "{cut}: {problem:?}");
                    assert_eq!(
                        problem.offset,
                        starts
                            .iter()
                            .copied()
                            .filter(|&at| at as usize <= cut)
                            .max()
                            .unwrap_or(0),
                        "{cut}"
                    );
                }
            }
            for step in [1, 2, 3, 7, 64, 1 << 16] {
                assert_eq!(
                    read_all(Trickle { bytes: file, step }),
                    expected,
                    "{cut} bytes in pieces of {step}"
                );
            }
        }
    }

    #[test]
    fn a_log_that_cannot_be_read_is_a_problem_where_it_stopped() {
        struct Failing(usize);
        impl std::io::Read for Failing {
            fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("disk on fire"));
                }
                let n = self.0.min(buffer.len());
                buffer[..n].fill(b'C');
                self.0 -= n;
                Ok(n)
            }
        }
        // `C` and a length of 0x4343 bytes, then the failure.
        let problem = read_all(Failing(3)).unwrap_err();
        assert!(!problem.torn);
        assert_eq!(problem.offset, 0);
        assert!(
            problem.message.contains("disk on fire"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn batch_fsyncs_run_off_the_caller_soon_and_seldom_and_a_failed_one_fails_the_next_append() {
        let dir = std::env::temp_dir().join(format!("tollgate-sync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join("audit.log");
        let (mut log, existing) = AuditFile::open(&path, SyncPolicy::Batch).expect("opens");
        assert!(existing.is_empty());
        assert!(
            log.syncer.is_some(),
            "batch mode syncs on a thread of its own"
        );
        // Each append asks for an fsync and does not wait for it; a burst of appends gets few
        // (one every `SYNC_INTERVAL` at most), and the last bytes are made durable soon after.
        // The thread's count, shared (the log itself is borrowed by each append).
        let counter = log
            .syncer
            .as_ref()
            .map(|s| std::sync::Arc::clone(&s.runs))
            .unwrap_or_default();
        let runs = || counter.load(std::sync::atomic::Ordering::SeqCst);
        let settle = |at_least: u64| {
            let waited = std::time::Instant::now();
            while runs() < at_least && waited.elapsed() < std::time::Duration::from_secs(10) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            runs()
        };
        // One record on a quiet gate is made durable soon, not once a batch's worth follows.
        assert!(log.append(&[0u8; RECORD_SIZE + 1]).is_ok());
        assert!(settle(1) >= 1, "a lone record was never made durable");
        std::thread::sleep(SYNC_INTERVAL * 2);
        let before = runs();
        let chunk = vec![0u8; 10_000];
        let started = std::time::Instant::now();
        for _ in 0..20 {
            assert!(log.append(&chunk).is_ok());
        }
        let burst = started.elapsed();
        assert_eq!(log.unsynced, 0, "asked, not waited for");
        let bound = burst.as_millis() / SYNC_INTERVAL.as_millis() + 2;
        let during = runs() - before;
        assert!(
            u128::from(during) <= bound,
            "{during} fsyncs for 20 appends in {burst:?}"
        );
        assert!(
            settle(before + 1) > before,
            "the burst was never made durable"
        );
        assert_eq!(log.background_fsyncs(), runs());
        assert!(log.sync().is_ok());
        assert_eq!(
            std::fs::metadata(&path).map(|m| m.len()).ok(),
            Some(200_000 + RECORD_SIZE as u64 + 1)
        );
        // An fsync that failed on the thread: the next append (and sync) fails.
        if let Some(syncer) = &log.syncer {
            syncer
                .failed
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        assert!(log.append(&chunk).is_err());
        assert!(log.sync().is_err());
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_state_entry_staged_in_place_is_the_entry_encoded() {
        let slot = Slot {
            value: 7,
            window: 3,
            ..Slot::EMPTY
        };
        let entry = StateEntry {
            policy: [5; 8],
            latest: 1_767_261_600,
            slots: vec![(2, slot), (9, Slot::EMPTY)],
        };
        let mut staged = vec![b'x'];
        encode_state_into(
            &mut staged,
            &entry.policy,
            entry.latest,
            entry.slots.iter().copied(),
        );
        let mut expected = vec![b'x'];
        expected.extend(encode(&Entry::State(entry.encode())));
        assert_eq!(staged, expected);
        let body = staged.get(4..).unwrap_or(&[]);
        assert_eq!(StateEntry::decode(body), Some(entry));
    }
}
