//! Credentials: each way a credential can be wrong is denied with its own reason, and no byte
//! string makes the parser panic or accepts a tampered credential.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test should fail loudly at the first surprise"
)]

use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use tollgate_compiler::codegen;
use tollgate_compiler::credential::{issue, issue_for_hash, Claims, IssueError};
use tollgate_runtime::credential::{self, Credential, SessionCall};
use tollgate_runtime::gate::{self, ArgValue, Slot, Verdict};
use tollgate_runtime::table::Table;
use tollgate_runtime::Reason;
use tollgate_tests::{load_dir, root};

const NOW: u64 = 1_767_261_600; // 2026-01-01T10:00:00Z

fn compiler_key() -> SigningKey {
    SigningKey::from_bytes(&[1u8; 32])
}

fn issuer() -> SigningKey {
    SigningKey::from_bytes(&[2u8; 32])
}

struct Fixture {
    policy: tollgate_compiler::model::Policy,
    table: Vec<u8>,
}

fn fixture() -> Fixture {
    let (_, policy) = load_dir(&root().join("examples/support-desk"));
    let table = codegen::compile(&policy, &compiler_key()).unwrap().bytes;
    Fixture { policy, table }
}

fn credential_for(f: &Fixture, agent: &str, ttl: u64, scope: &[&str], issued_at: u64) -> Vec<u8> {
    let table = Table::load(&f.table, &compiler_key().verifying_key()).unwrap();
    let scope: Vec<String> = scope.iter().map(|s| (*s).to_owned()).collect();
    let claims = Claims {
        agent,
        scope: &scope,
        issued_at,
        ttl,
        id: [3u8; 16],
    };
    issue(&table, &claims, &issuer()).unwrap()
}

fn admit(f: &Fixture, bytes: &[u8], state: &[Slot], now: u64) -> Result<(), Reason> {
    let table = Table::load(&f.table, &compiler_key().verifying_key()).unwrap();
    credential::admit(&table, state, &issuer().verifying_key(), bytes, now).map(|_| ())
}

#[test]
fn a_good_credential_is_admitted_and_decides() {
    let f = fixture();
    let bytes = credential_for(&f, "support_bot", 600, &["crm.*"], NOW);
    let table = Table::load(&f.table, &compiler_key().verifying_key()).unwrap();
    let mut state = vec![Slot::EMPTY; gate::slots_needed(&table, 64) * 2];
    let session =
        credential::admit(&table, &state, &issuer().verifying_key(), &bytes, NOW).unwrap();
    assert_eq!(session.agent(), "support_bot");
    let args = [("customer_id", ArgValue::Str("c-1"))];
    let call = SessionCall {
        tool: "crm.read_customer",
        args: &args,
        via: &[],
        env: Some("prod"),
    };
    assert_eq!(
        credential::decide(&table, &mut state, &session, &call, NOW + 1).verdict,
        Verdict::Allow
    );
    let refund = SessionCall {
        tool: "payments.refund",
        args: &[],
        via: &[],
        env: Some("prod"),
    };
    assert_eq!(
        credential::decide(&table, &mut state, &session, &refund, NOW + 1).reason,
        Some(Reason::CredentialOutOfScope)
    );
    assert_eq!(
        credential::decide(&table, &mut state, &session, &call, NOW + 600).reason,
        Some(Reason::CredentialExpired)
    );
}

#[test]
fn each_failure_has_its_own_reason() {
    let f = fixture();
    let state = vec![Slot::EMPTY; 256];
    let good = credential_for(&f, "support_bot", 600, &[], NOW);
    // forged: signed by someone else
    let mut forged = good.clone();
    let body = forged.len() - 64;
    let signature = SigningKey::from_bytes(&[9u8; 32]).sign(&forged[..body]);
    forged[body..].copy_from_slice(&signature.to_bytes());
    assert_eq!(
        admit(&f, &forged, &state, NOW),
        Err(Reason::CredentialForged)
    );
    assert_eq!(
        admit(&f, &good, &state, NOW + 600),
        Err(Reason::CredentialExpired)
    );
    assert_eq!(
        admit(&f, &good, &state, NOW - 1),
        Err(Reason::CredentialNotYetValid)
    );
    // wrong policy: issued for another table
    let (_, other) = load_dir(&root().join("examples/coding-agent"));
    let other_table = codegen::compile(&other, &compiler_key()).unwrap();
    let other_hash: [u8; 32] = other_table.policy_hash;
    let scope: Vec<String> = Vec::new();
    let claims = Claims {
        agent: "support_bot",
        scope: &scope,
        issued_at: NOW,
        ttl: 60,
        id: [0; 16],
    };
    let table = Table::load(&f.table, &compiler_key().verifying_key()).unwrap();
    let wrong = issue_for_hash(&table, &other_hash, &claims, &issuer()).unwrap();
    assert_eq!(
        admit(&f, &wrong, &state, NOW),
        Err(Reason::CredentialWrongPolicy)
    );
    // TTL above the agent's limit: refused at issue, and denied if someone signs one anyway
    let long = Claims {
        agent: "support_bot",
        scope: &scope,
        issued_at: NOW,
        ttl: 3_600,
        id: [0; 16],
    };
    assert_eq!(
        issue(&table, &long, &issuer()),
        Err(IssueError::TtlTooLong {
            requested: 3_600,
            allowed: 900
        })
    );
    let mut relaxed = f.policy.clone();
    relaxed
        .agents
        .iter_mut()
        .for_each(|a| a.credential_ttl = None);
    let relaxed_bytes = codegen::compile(&relaxed, &compiler_key()).unwrap().bytes;
    let relaxed_table = Table::load(&relaxed_bytes, &compiler_key().verifying_key()).unwrap();
    // Same agents and tools, no lifetime limit: sign a long one, stamped for the real table.
    let long_credential =
        issue_for_hash(&relaxed_table, table.policy_hash(), &long, &issuer()).unwrap();
    assert_eq!(
        admit(&f, &long_credential, &state, NOW),
        Err(Reason::CredentialTtlExceeded)
    );
    // revoked: the agent was revoked by a failure response
    let mut revoked_state = vec![Slot::EMPTY; gate::slots_needed(&table, 64) * 2];
    for _ in 0..5 {
        let call = gate::Call {
            agent: "support_bot",
            tool: "payments.delete_everything",
            args: &[],
            via: &[],
            env: Some("prod"),
            time: NOW,
        };
        gate::decide(&table, &mut revoked_state, &call);
    }
    assert_eq!(
        admit(&f, &good, &revoked_state, NOW),
        Err(Reason::CredentialRevoked)
    );
    // malformed
    assert_eq!(
        admit(&f, &good[..40], &state, NOW),
        Err(Reason::CredentialMalformed)
    );
}

#[test]
fn every_bit_flip_of_a_credential_is_rejected() {
    let f = fixture();
    let state = vec![Slot::EMPTY; 256];
    let good = credential_for(&f, "support_bot", 600, &["crm.*", "email.send"], NOW);
    assert_eq!(admit(&f, &good, &state, NOW), Ok(()));
    let mut flipped = good.clone();
    for byte in 0..flipped.len() {
        for bit in 0..8 {
            flipped[byte] ^= 1 << bit;
            assert!(
                admit(&f, &flipped, &state, NOW + 1).is_err(),
                "flip at {byte}:{bit} accepted"
            );
            flipped[byte] ^= 1 << bit;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn parsers_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Credential::parse(&bytes);
        let _ = Table::parse(&bytes);
        let _ = Table::load(&bytes, &compiler_key().verifying_key());
    }
}
