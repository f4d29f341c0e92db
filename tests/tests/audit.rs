//! The audit log: a log the gate writes verifies, and every change to it — a flipped byte, a
//! deleted, duplicated or reordered record, a truncation — is detected. Checkpoints are C2SP
//! signed notes over RFC 6962 tree heads.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test should fail loudly at the first surprise"
)]

use ed25519_dalek::SigningKey;
use tollgate_host::audit_log::{self as audit, Entry};
use tollgate_runtime::audit::{leaf_hash, node_hash, AuditSink, Auditor, Log, RECORD_SIZE};
use tollgate_runtime::gate::{ArgValue, Call, Decision, Verdict};
use tollgate_runtime::Reason;

#[derive(Default)]
struct Sink {
    entries: Vec<Entry>,
}

impl AuditSink for Sink {
    fn record(&mut self, record: &[u8; RECORD_SIZE]) {
        self.entries.push(Entry::Record(Box::new(*record)));
    }
    fn checkpoint(&mut self, note: &[u8]) {
        self.entries.push(Entry::Checkpoint(note.to_vec()));
    }
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[5u8; 32])
}

/// A log of `records` decisions with a checkpoint every `every` records and one at the end.
fn log(records: usize, every: u64) -> (Vec<Entry>, Vec<u8>) {
    let key = key();
    let mut auditor = Auditor::new(
        Sink::default(),
        &key,
        "tollgate/test",
        "tollgate-gate",
        every,
        [7u8; 32],
    );
    for index in 0..records {
        let args = [("amount", ArgValue::Int(index as i64))];
        let call = Call {
            agent: "support_bot",
            tool: "payments.refund",
            args: &args,
            via: &[],
            env: Some("prod"),
            time: 1_000 + index as u64,
        };
        let decision = Decision {
            verdict: if index % 3 == 0 {
                Verdict::Deny
            } else {
                Verdict::Allow
            },
            reason: (index % 3 == 0).then_some(Reason::Forbidden),
            rule: Some(1),
            limit: None,
            revoked_agent: index == records - 1,
        };
        auditor.record(&call, &decision);
    }
    auditor.checkpoint();
    let entries = auditor.sink.entries;
    let bytes: Vec<u8> = entries.iter().flat_map(audit::encode).collect();
    (entries, bytes)
}

fn verifies(bytes: &[u8]) -> bool {
    audit::verify(bytes, &key().verifying_key(), "tollgate-gate").is_ok()
}

#[test]
fn a_gate_log_verifies() {
    let (_, bytes) = log(10, 4);
    let verified = audit::verify(&bytes, &key().verifying_key(), "tollgate-gate").unwrap();
    assert_eq!(verified.records, 11); // ten decisions and one revocation
    assert_eq!(verified.checkpoints, 3); // at 4 and 8 records, and at the end
    assert!(!verifies(&log(10, 4).1[..bytes.len() - 1]));
    let other = SigningKey::from_bytes(&[6u8; 32]).verifying_key();
    assert!(audit::verify(&bytes, &other, "tollgate-gate").is_err());
}

#[test]
fn every_bit_flip_is_detected() {
    let (_, bytes) = log(6, 0);
    for index in 0..bytes.len() {
        for bit in 0..8 {
            let mut changed = bytes.clone();
            changed[index] ^= 1 << bit;
            assert!(
                !verifies(&changed),
                "flip at byte {index} bit {bit} not detected"
            );
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_log_reader_never_panics_on_random_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..800)) {
        let _ = audit::parse(&bytes);
        proptest::prop_assert!(!verifies(&bytes) || bytes.is_empty());
    }
}

#[test]
fn deleted_duplicated_and_reordered_records_are_detected() {
    let (entries, _) = log(6, 0);
    let records: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Entry::Record(_)))
        .map(|(i, _)| i)
        .collect();
    let encode = |list: &[Entry]| -> Vec<u8> { list.iter().flat_map(audit::encode).collect() };
    for &index in &records {
        let mut deleted = entries.clone();
        deleted.remove(index);
        assert!(
            !verifies(&encode(&deleted)),
            "deleting record {index} not detected"
        );
        let mut duplicated = entries.clone();
        duplicated.insert(index, entries[index].clone());
        assert!(
            !verifies(&encode(&duplicated)),
            "duplicating record {index} not detected"
        );
    }
    for pair in records.windows(2) {
        let mut swapped = entries.clone();
        swapped.swap(pair[0], pair[1]);
        assert!(
            !verifies(&encode(&swapped)),
            "swapping records {pair:?} not detected"
        );
    }
}

#[test]
fn every_truncation_is_detected() {
    // With one checkpoint, at the end, any shorter prefix is either cut mid-entry or leaves
    // records no checkpoint covers.
    let (_, bytes) = log(6, 0);
    for len in 1..bytes.len() {
        assert!(
            !verifies(&bytes[..len]),
            "truncation to {len} bytes not detected"
        );
    }
}

#[test]
fn tree_heads_follow_rfc_6962() {
    // Five leaves: MTH = H(1 ‖ H(1 ‖ H(1‖l0‖l1) ‖ H(1‖l2‖l3)) ‖ l4).
    let records: Vec<[u8; RECORD_SIZE]> = (0..5u8).map(|i| [i; RECORD_SIZE]).collect();
    let mut log = Log::new();
    let sealed: Vec<[u8; RECORD_SIZE]> = records.iter().map(|r| log.append(*r)).collect();
    let leaves: Vec<[u8; 32]> = sealed.iter().map(|r| leaf_hash(r)).collect();
    let left = node_hash(
        &node_hash(&leaves[0], &leaves[1]),
        &node_hash(&leaves[2], &leaves[3]),
    );
    assert_eq!(log.root(), node_hash(&left, &leaves[4]));
    assert_eq!(log.size(), 5);
}

#[test]
fn checkpoints_are_signed_notes() {
    let (entries, _) = log(3, 0);
    let Some(Entry::Checkpoint(note)) = entries.last() else {
        panic!("no checkpoint")
    };
    let text = String::from_utf8(note.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "tollgate/test");
    assert_eq!(lines[1], "4");
    assert_eq!(lines[2].len(), 44, "base64 of a 32-byte root");
    assert_eq!(lines[3], "");
    assert!(
        lines[4].starts_with("\u{2014} tollgate-gate "),
        "{}",
        lines[4]
    );
}

#[test]
fn a_log_cut_after_an_earlier_checkpoint_is_caught_by_the_latest_checkpoint() {
    let (entries, bytes) = log(6, 2);
    let Some(Entry::Checkpoint(latest)) = entries.last() else {
        panic!("no final checkpoint")
    };
    let key = key().verifying_key();
    assert!(audit::verify_against(&bytes, &key, "tollgate-gate", Some(latest)).is_ok());
    // Cut right after the checkpoint at size 4: a well-formed, shorter log...
    let cut = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Entry::Checkpoint(note) if note.split(|b| *b == b'\n').nth(1) == Some(b"4")))
        .map(|(i, _)| i)
        .next()
        .unwrap();
    let shorter: Vec<u8> = entries[..=cut].iter().flat_map(audit::encode).collect();
    assert!(verifies(&shorter));
    // ...which the latest checkpoint exposes.
    let problem = audit::verify_against(&shorter, &key, "tollgate-gate", Some(latest)).unwrap_err();
    assert!(problem.message.contains("truncated"), "{}", problem.message);
    // A forged latest checkpoint does not verify either.
    let mut forged = latest.clone();
    let last = forged.len() - 2;
    forged[last] ^= 1;
    assert!(audit::verify_against(&bytes, &key, "tollgate-gate", Some(&forged)).is_err());
}
