//! Audit: one fixed-layout record per decision and per revocation, hash-chained (each record
//! carries the SHA-256 of the one before) and collected in an RFC 6962 Merkle tree, whose root is
//! signed in periodic checkpoints in the C2SP signed-note format — so inclusion and consistency
//! proofs are logarithmic, and existing transparency-log tooling can check the checkpoints.
//!
//! Record layout (version 2, `RECORD_SIZE` bytes, little-endian; the offsets are [`field`]):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 1 | version (2) |
//! | 1 | 1 | kind: 1 decision, 2 revocation, 3 recovery |
//! | 2 | 1 | verdict: 0 allow, 1 deny |
//! | 3 | 1 | reason code (0: none) |
//! | 4 | 2 | rule id (`0xFFFF`: none) |
//! | 6 | 2 | limit id (`0xFFFF`: none) |
//! | 8 | 8 | sequence number, from 0 |
//! | 16 | 8 | time (Unix seconds, the gate's clock) |
//! | 24 | 32 | policy hash |
//! | 56 | 16 | credential id (zero: no credential) |
//! | 72 | 1 | flags: 1 agent unverified (a refused credential's claim), 2 agent hashed, 4 tool hashed, 8 environment hashed |
//! | 73 | 1 | chain length |
//! | 74 | 2 | reserved (0) |
//! | 76 | 48 | agent name, zero-padded; a longer name is its SHA-256 (flag 2) |
//! | 124 | 48 | tool name, zero-padded; a longer name is its SHA-256 (flag 4) |
//! | 172 | 32 | environment, zero-padded; a longer name is its SHA-256 (flag 8) |
//! | 204 | 32 | SHA-256 of the chain (each name length-prefixed, origin first; zero when empty) |
//! | 236 | 32 | SHA-256 of the arguments (name order) |
//! | 268 | 32 | leaf hash of the previous record, SHA-256(0x00 ‖ record) (zero for the first) |
//! | 300 | 10 | reserved (0) |
//!
//! 310 bytes keeps the leaf hash input (0x00 ‖ record) within five SHA-256 blocks. Names are
//! never truncated: one that does not fit is replaced by its hash, so two names never collide.

use crate::gate::{ArgValue, Call, Decision, Verdict};
use base64::Engine as _;
use core::fmt::Write as _;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

pub const RECORD_SIZE: usize = 310;
pub const VERSION: u8 = 2;

/// Where each record field starts; writer and readers use these and no literals.
pub mod field {
    pub const VERSION: usize = 0;
    pub const KIND: usize = 1;
    pub const VERDICT: usize = 2;
    pub const REASON: usize = 3;
    pub const RULE: usize = 4;
    pub const LIMIT: usize = 6;
    pub const SEQ: usize = 8;
    pub const TIME: usize = 16;
    pub const POLICY_HASH: usize = 24;
    pub const CREDENTIAL_ID: usize = 56;
    pub const FLAGS: usize = 72;
    pub const CHAIN_LENGTH: usize = 73;
    pub const AGENT: usize = 76;
    pub const AGENT_SIZE: usize = 48;
    pub const TOOL: usize = 124;
    pub const TOOL_SIZE: usize = 48;
    pub const ENV: usize = 172;
    pub const ENV_SIZE: usize = 32;
    pub const CHAIN: usize = 204;
    pub const ARGS: usize = 236;
    pub const PREVIOUS: usize = 268;
}

/// Record flags.
pub mod flag {
    /// The agent named is a refused credential's claim, not a verified identity.
    pub const UNVERIFIED: u8 = 1;
    pub const AGENT_HASHED: u8 = 2;
    pub const TOOL_HASHED: u8 = 4;
    pub const ENV_HASHED: u8 = 8;
}
pub const KIND_DECISION: u8 = 1;
pub const KIND_REVOCATION: u8 = 2;
/// A host set torn bytes at the end of its log aside (`tollgate audit recover`).
pub const KIND_RECOVERY: u8 = 3;
/// Room for a checkpoint note: origin (≤ 128 bytes), size, root, one signature line.
pub const MAX_NOTE: usize = 512;

pub type Hash = [u8; 32];

/// RFC 6962 leaf hash: SHA-256(0x00 ‖ record).
pub fn leaf_hash(record: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(record);
    hasher.finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The hash chain link to a record: its Merkle leaf hash, so each record is hashed once.
pub fn chain_hash(record: &[u8]) -> Hash {
    leaf_hash(record)
}

/// The append-only state of a log: the chain head and the Merkle tree's frontier (one perfect
/// subtree root per set bit of the size). Fixed size; no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Log {
    size: u64,
    previous: Hash,
    frontier: [Hash; 64],
}

impl Default for Log {
    fn default() -> Self {
        Log::new()
    }
}

impl Log {
    pub const fn new() -> Log {
        Log {
            size: 0,
            previous: [0; 32],
            frontier: [[0; 32]; 64],
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The chain head: the leaf hash of the last record (zero for an empty log).
    pub fn previous(&self) -> Hash {
        self.previous
    }

    /// The tree's frontier, for a host that persists the log state.
    pub fn frontier(&self) -> &[Hash; 64] {
        &self.frontier
    }

    /// A log state saved with [`Log::size`], [`Log::previous`] and [`Log::frontier`].
    pub const fn from_parts(size: u64, previous: Hash, frontier: [Hash; 64]) -> Log {
        Log {
            size,
            previous,
            frontier,
        }
    }

    /// Seals a record: sets its sequence number and previous-record hash, adds it to the tree, and
    /// returns its bytes.
    pub fn append(&mut self, mut record: [u8; RECORD_SIZE]) -> [u8; RECORD_SIZE] {
        self.seal(&mut record);
        record
    }

    /// [`Log::append`] in place: seals `record` where it is (a host staging records in a buffer
    /// copies each once).
    pub fn seal(&mut self, record: &mut [u8; RECORD_SIZE]) {
        if let Some(seq) = record.get_mut(field::SEQ..field::SEQ + 8) {
            seq.copy_from_slice(&self.size.to_le_bytes());
        }
        if let Some(previous) = record.get_mut(field::PREVIOUS..field::PREVIOUS + 32) {
            previous.copy_from_slice(&self.previous);
        }
        let mut hash = leaf_hash(record);
        self.previous = hash;
        let mut level = 0usize;
        while self.size >> level & 1 == 1 {
            let Some(left) = self.frontier.get(level) else {
                break;
            };
            hash = node_hash(left, &hash);
            level += 1;
        }
        if let Some(slot) = self.frontier.get_mut(level) {
            *slot = hash;
        }
        self.size = self.size.saturating_add(1);
    }

    /// The RFC 6962 tree head (the hash of the empty string for an empty log).
    pub fn root(&self) -> Hash {
        if self.size == 0 {
            return Sha256::digest([]).into();
        }
        let mut root: Option<Hash> = None;
        for level in 0..64 {
            if self.size >> level & 1 == 0 {
                continue;
            }
            let Some(subtree) = self.frontier.get(level) else {
                break;
            };
            root = Some(match root {
                None => *subtree,
                Some(right) => node_hash(subtree, &right),
            });
        }
        root.unwrap_or([0; 32])
    }
}

/// Where records and checkpoints go; the embedder implements it (a file, a socket, a ring buffer).
pub trait AuditSink {
    fn record(&mut self, record: &[u8; RECORD_SIZE]);
    fn checkpoint(&mut self, note: &[u8]);
}

/// Writes a name into its field: as it is when it fits, else its SHA-256; `true` when hashed.
fn name_field(out: &mut [u8], name: &str) -> bool {
    if name.len() <= out.len() {
        for (o, b) in out.iter_mut().zip(name.as_bytes()) {
            *o = *b;
        }
        false
    } else {
        for (o, b) in out.iter_mut().zip(Sha256::digest(name.as_bytes()).iter()) {
            *o = *b;
        }
        true
    }
}

/// SHA-256 over the chain's names, each length-prefixed, origin first; zero for no chain.
pub fn chain_digest(chain: &[&str]) -> Hash {
    if chain.is_empty() {
        return [0; 32];
    }
    let mut hasher = Sha256::new();
    for name in chain {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
    }
    hasher.finalize().into()
}

/// SHA-256 over the arguments in name order: name length, name, type tag, value. A list is a
/// tag, its length and its elements; an object a tag, its field count and its fields (name
/// length, name, value) in the order given. The arguments are unvalidated input, so nesting is
/// hashed to [`MAX_DIGEST_DEPTH`] levels and deeper values as a marker (the stack stays bounded).
///
/// Arguments already in strictly ascending name order (as hosts pass them) are read in one
/// pass. Others are put in name order by selection, which compares every argument with every
/// other; past [`MAX_SELECTED_ARGS`] of them that would let one call hold the gate for seconds,
/// so they are hashed in the order given instead, behind a marker of their own (the digest then
/// names the call as sent, and never equals a name-ordered one).
pub fn args_digest(args: &[(&str, ArgValue<'_>)]) -> Hash {
    let mut hasher = Sha256::new();
    let ascending = args
        .windows(2)
        .all(|pair| matches!(pair, [a, b] if a.0 < b.0));
    if ascending || args.len() > MAX_SELECTED_ARGS {
        if !ascending {
            hasher.update([0xFD]);
            hasher.update((args.len() as u64).to_le_bytes());
        }
        for (name, value) in args {
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hash_value(&mut hasher, value, 0);
        }
        return hasher.finalize().into();
    }
    let mut last: Option<&str> = None;
    // Selection in name order without allocating: repeatedly take the smallest name above the last.
    for _ in 0..args.len() {
        let next = args
            .iter()
            .filter(|(name, _)| last.is_none_or(|l| *name > l))
            .min_by(|a, b| a.0.cmp(b.0));
        let Some((name, value)) = next else { break };
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hash_value(&mut hasher, value, 0);
        last = Some(name);
    }
    hasher.finalize().into()
}

/// The most arguments not in name order that [`args_digest`] sorts (by selection, quadratic).
pub const MAX_SELECTED_ARGS: usize = 64;

/// How deep [`args_digest`] hashes nested lists and objects (a top-level argument is level 0): a
/// list or object at this level or deeper is one marker, a scalar at this level is hashed. The
/// deepest shape a table declares, [`crate::format::MAX_NEST`] lists with an object as each one's
/// element (`list[{f: list[{…}]}]`), has containers on levels `0..2 × MAX_NEST` and scalars on
/// level `2 × MAX_NEST`, so every value of a valid call is hashed in full (this was 4 while
/// lists did not nest; only values nested past what any table declares hash differently).
pub const MAX_DIGEST_DEPTH: usize = 2 * crate::format::MAX_NEST;

fn hash_value(hasher: &mut Sha256, value: &ArgValue<'_>, depth: usize) {
    match value {
        ArgValue::Int(v) => {
            hasher.update([1]);
            hasher.update(v.to_le_bytes());
        }
        ArgValue::Bool(v) => hasher.update([2, u8::from(*v)]),
        ArgValue::Str(v) => {
            hasher.update([3]);
            hasher.update((v.len() as u64).to_le_bytes());
            hasher.update(v.as_bytes());
        }
        // The number as the request wrote it.
        ArgValue::Decimal(v) => {
            hasher.update([6]);
            hasher.update((v.len() as u64).to_le_bytes());
            hasher.update(v.as_bytes());
        }
        ArgValue::List(_) | ArgValue::Object(_) if depth >= MAX_DIGEST_DEPTH => {
            hasher.update([0xFE]);
        }
        ArgValue::List(items) => {
            hasher.update([7]);
            hasher.update((items.len() as u64).to_le_bytes());
            for item in items.iter() {
                hash_value(hasher, item, depth.saturating_add(1));
            }
        }
        ArgValue::Object(fields) => {
            hasher.update([8]);
            hasher.update((fields.len() as u64).to_le_bytes());
            for (name, field) in fields.iter() {
                hasher.update((name.len() as u64).to_le_bytes());
                hasher.update(name.as_bytes());
                hash_value(hasher, field, depth.saturating_add(1));
            }
        }
    }
}

/// Who a record is about, beyond the call: the credential presented and whether its agent was
/// verified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// The credential's id (zero when there was none).
    pub credential_id: [u8; 16],
    /// The agent named is a refused credential's claim, not a verified identity.
    pub unverified: bool,
}

/// The record of one decision (sequence and chain fields are filled by [`Log::append`]).
pub fn decision_record(
    call: &Call<'_>,
    decision: &Decision,
    policy_hash: &Hash,
    kind: u8,
) -> [u8; RECORD_SIZE] {
    subject_record(call, decision, policy_hash, kind, &Subject::default())
}

/// The record of one decision about a subject (sequence and chain fields are filled by
/// [`Log::append`]).
pub fn subject_record(
    call: &Call<'_>,
    decision: &Decision,
    policy_hash: &Hash,
    kind: u8,
    subject: &Subject,
) -> [u8; RECORD_SIZE] {
    digested_record(
        call,
        decision,
        policy_hash,
        kind,
        subject,
        &args_digest(call.args),
    )
}

/// [`subject_record`] with the call's argument digest already computed: `args` must be
/// [`args_digest`]`(call.args)`. A host that reads requests on one thread and decides them on
/// another computes the digest where it reads (the digest depends on the arguments alone), so
/// the deciding thread does not hash them again.
pub fn digested_record(
    call: &Call<'_>,
    decision: &Decision,
    policy_hash: &Hash,
    kind: u8,
    subject: &Subject,
    args: &Hash,
) -> [u8; RECORD_SIZE] {
    let mut record = [0u8; RECORD_SIZE];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(target) = record.get_mut(at..at + bytes.len()) {
            target.copy_from_slice(bytes);
        }
    };
    put(field::VERSION, &[VERSION]);
    put(field::KIND, &[kind]);
    put(
        field::VERDICT,
        &[u8::from(decision.verdict == Verdict::Deny)],
    );
    put(field::REASON, &[decision.reason.map_or(0, |r| r.code())]);
    put(
        field::RULE,
        &decision.rule.unwrap_or(u16::MAX).to_le_bytes(),
    );
    put(
        field::LIMIT,
        &decision.limit.unwrap_or(u16::MAX).to_le_bytes(),
    );
    put(field::TIME, &call.time.to_le_bytes());
    put(field::POLICY_HASH, policy_hash);
    put(field::CREDENTIAL_ID, &subject.credential_id);
    put(field::CHAIN_LENGTH, &[call.via.len().min(255) as u8]);
    put(field::CHAIN, &chain_digest(call.via));
    put(field::ARGS, args);
    let mut flags = if subject.unverified {
        flag::UNVERIFIED
    } else {
        0
    };
    let mut name = |at: usize, size: usize, text: &str, hashed: u8| {
        if let Some(out) = record.get_mut(at..at + size) {
            if name_field(out, text) {
                flags |= hashed;
            }
        }
    };
    name(
        field::AGENT,
        field::AGENT_SIZE,
        call.agent,
        flag::AGENT_HASHED,
    );
    name(field::TOOL, field::TOOL_SIZE, call.tool, flag::TOOL_HASHED);
    name(
        field::ENV,
        field::ENV_SIZE,
        call.env.unwrap_or(""),
        flag::ENV_HASHED,
    );
    if let Some(out) = record.get_mut(field::FLAGS) {
        *out = flags;
    }
    record
}

/// A fixed buffer that `core::fmt::Write` can write into.
struct Cursor<'b> {
    buffer: &'b mut [u8],
    len: usize,
}

impl core::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let end = self.len.checked_add(text.len()).ok_or(core::fmt::Error)?;
        self.buffer
            .get_mut(self.len..end)
            .ok_or(core::fmt::Error)?
            .copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The signed-note key id of an Ed25519 key: the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ key).
pub fn key_id(key_name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(key_name.as_bytes());
    hasher.update(b"\n");
    hasher.update([1u8]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut id = [0u8; 4];
    id.copy_from_slice(digest.get(..4).unwrap_or(&[0; 4]));
    id
}

/// Writes a C2SP checkpoint for the log into `out` and returns its length:
/// `origin\nsize\nbase64(root)\n\n— key_name base64(key_id ‖ signature)\n`. `None` if it does not
/// fit or a name contains a newline.
pub fn checkpoint(
    log: &Log,
    origin: &str,
    key_name: &str,
    key: &SigningKey,
    out: &mut [u8; MAX_NOTE],
) -> Option<usize> {
    if origin.contains('\n')
        || key_name.contains('\n')
        || key_name.contains(' ')
        || origin.is_empty()
    {
        return None;
    }
    let mut root = [0u8; 44];
    let root_len = base64::engine::general_purpose::STANDARD
        .encode_slice(log.root(), &mut root)
        .ok()?;
    let root = core::str::from_utf8(root.get(..root_len)?).ok()?;
    let body_len = {
        let mut cursor = Cursor {
            buffer: &mut out[..],
            len: 0,
        };
        write!(cursor, "{origin}\n{}\n{root}\n", log.size()).ok()?;
        cursor.len
    };
    let signature = key.sign(out.get(..body_len)?);
    let mut blob = [0u8; 68];
    blob[..4].copy_from_slice(&key_id(key_name, &key.verifying_key()));
    blob[4..].copy_from_slice(&signature.to_bytes());
    let mut encoded = [0u8; 92];
    let encoded_len = base64::engine::general_purpose::STANDARD
        .encode_slice(blob, &mut encoded)
        .ok()?;
    let encoded = core::str::from_utf8(encoded.get(..encoded_len)?).ok()?;
    let mut cursor = Cursor {
        buffer: &mut out[..],
        len: body_len,
    };
    write!(cursor, "\n\u{2014} {key_name} {encoded}\n").ok()?;
    Some(cursor.len)
}

/// Decides and audits in one step: every decision is recorded, a revocation gets its own record,
/// and a checkpoint is written every `every` records (and on demand with [`Auditor::checkpoint`]).
pub struct Auditor<'k, S: AuditSink> {
    pub log: Log,
    pub sink: S,
    key: &'k SigningKey,
    origin: &'k str,
    key_name: &'k str,
    every: u64,
    policy_hash: Hash,
}

impl<'k, S: AuditSink> core::fmt::Debug for Auditor<'k, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Auditor")
            .field("size", &self.log.size())
            .field("every", &self.every)
            .finish()
    }
}

impl<'k, S: AuditSink> Auditor<'k, S> {
    pub fn new(
        sink: S,
        key: &'k SigningKey,
        origin: &'k str,
        key_name: &'k str,
        every: u64,
        policy_hash: Hash,
    ) -> Self {
        Auditor {
            log: Log::new(),
            sink,
            key,
            origin,
            key_name,
            every,
            policy_hash,
        }
    }

    /// Records a decision (and the revocation it caused, if any).
    pub fn record(&mut self, call: &Call<'_>, decision: &Decision) {
        self.append(decision_record(
            call,
            decision,
            &self.policy_hash,
            KIND_DECISION,
        ));
        if decision.revoked_agent {
            self.append(decision_record(
                call,
                decision,
                &self.policy_hash,
                KIND_REVOCATION,
            ));
        }
    }

    fn append(&mut self, record: [u8; RECORD_SIZE]) {
        let sealed = self.log.append(record);
        self.sink.record(&sealed);
        if self.every > 0 && self.log.size().is_multiple_of(self.every) {
            self.checkpoint();
        }
    }

    /// Signs and emits a checkpoint for everything recorded so far.
    pub fn checkpoint(&mut self) {
        let mut note = [0u8; MAX_NOTE];
        if let Some(len) = checkpoint(&self.log, self.origin, self.key_name, self.key, &mut note) {
            if let Some(text) = note.get(..len) {
                self.sink.checkpoint(text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(value: ArgValue<'_>) -> Hash {
        args_digest(&[("a", value)])
    }

    #[test]
    fn arguments_hash_in_name_order_and_many_unordered_ones_as_given() {
        let sorted = [
            ("a", ArgValue::Int(1)),
            ("b", ArgValue::Str("x")),
            ("c", ArgValue::Bool(true)),
        ];
        let shuffled = [sorted[2], sorted[0], sorted[1]];
        // Few arguments in any order: the same digest (name order).
        assert_eq!(args_digest(&sorted), args_digest(&shuffled));
        let mut many = [("", ArgValue::Int(0)); MAX_SELECTED_ARGS + 1];
        let labels: [[u8; 3]; MAX_SELECTED_ARGS + 1] =
            core::array::from_fn(|i| [b'a' + (i / 26) as u8, b'a' + (i % 26) as u8, b'_']);
        for (slot, label) in many.iter_mut().zip(labels.iter()) {
            *slot = (core::str::from_utf8(label).unwrap(), ArgValue::Int(1));
        }
        let ascending = many;
        many.reverse();
        // Many arguments out of order: hashed as given, never as the name-ordered call.
        assert_ne!(args_digest(&many), args_digest(&ascending));
        assert_eq!(args_digest(&many), args_digest(&many));
        // Up to the bound, out of order still means name order.
        let (head, _) = many.split_at(MAX_SELECTED_ARGS);
        let mut ordered = [("", ArgValue::Int(0)); MAX_SELECTED_ARGS];
        ordered.copy_from_slice(head);
        ordered.reverse();
        assert_eq!(args_digest(head), args_digest(&ordered));
    }

    #[test]
    fn lists_and_objects_hash_by_structure() {
        let joined = [ArgValue::Str("ab")];
        let split = [ArgValue::Str("a"), ArgValue::Str("b")];
        assert_ne!(
            digest(ArgValue::List(&joined)),
            digest(ArgValue::List(&split))
        );
        assert_ne!(digest(ArgValue::List(&joined)), digest(ArgValue::Str("ab")));
        assert_ne!(digest(ArgValue::List(&[])), digest(ArgValue::Object(&[])));
        let one = [("k", ArgValue::Str("v"))];
        let renamed = [("kv", ArgValue::Str(""))];
        assert_ne!(
            digest(ArgValue::Object(&one)),
            digest(ArgValue::Object(&renamed))
        );
        let in_list = [ArgValue::Object(&one)];
        assert_ne!(
            digest(ArgValue::List(&in_list)),
            digest(ArgValue::Object(&one))
        );
        assert_eq!(
            digest(ArgValue::List(&split)),
            digest(ArgValue::List(&split))
        );
    }

    #[test]
    fn nesting_past_the_bound_hashes_as_a_marker() {
        // Levels 0..=8 are hashed; what lies below level 8 is one marker, whatever it holds.
        assert_eq!(MAX_DIGEST_DEPTH, 8);
        let (x, y) = ([ArgValue::Int(1)], [ArgValue::Int(2)]);
        let (x1, y1) = ([ArgValue::List(&x)], [ArgValue::List(&y)]);
        let (x2, y2) = ([ArgValue::List(&x1)], [ArgValue::List(&y1)]);
        let (x3, y3) = ([ArgValue::List(&x2)], [ArgValue::List(&y2)]);
        let (x4, y4) = ([ArgValue::List(&x3)], [ArgValue::List(&y3)]);
        let (x5, y5) = ([ArgValue::List(&x4)], [ArgValue::List(&y4)]);
        let (x6, y6) = ([ArgValue::List(&x5)], [ArgValue::List(&y5)]);
        let (x7, y7) = ([ArgValue::List(&x6)], [ArgValue::List(&y6)]);
        let (x8, y8) = ([ArgValue::List(&x7)], [ArgValue::List(&y7)]);
        assert_ne!(digest(ArgValue::List(&x7)), digest(ArgValue::List(&y7)));
        assert_eq!(digest(ArgValue::List(&x8)), digest(ArgValue::List(&y8)));
    }

    /// The deepest shape a table declares — four lists, each one's element an object — is hashed
    /// to its scalars: two calls that differ only there never hash the same.
    #[test]
    fn the_deepest_declared_shape_hashes_in_full() {
        // a: list[{b: list[{c: list[{d: list[{e: int}]}]}]}], levels 0 to 8.
        let (e1, e2) = ([("e", ArgValue::Int(1))], [("e", ArgValue::Int(2))]);
        let (o4a, o4b) = ([ArgValue::Object(&e1)], [ArgValue::Object(&e2)]);
        let (d1, d2) = ([("d", ArgValue::List(&o4a))], [("d", ArgValue::List(&o4b))]);
        let (o3a, o3b) = ([ArgValue::Object(&d1)], [ArgValue::Object(&d2)]);
        let (c1, c2) = ([("c", ArgValue::List(&o3a))], [("c", ArgValue::List(&o3b))]);
        let (o2a, o2b) = ([ArgValue::Object(&c1)], [ArgValue::Object(&c2)]);
        let (b1, b2) = ([("b", ArgValue::List(&o2a))], [("b", ArgValue::List(&o2b))]);
        let (o1a, o1b) = ([ArgValue::Object(&b1)], [ArgValue::Object(&b2)]);
        assert_ne!(digest(ArgValue::List(&o1a)), digest(ArgValue::List(&o1b)));
    }
}
