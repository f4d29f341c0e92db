//! Credentials: each way a credential can be wrong is denied with its own reason, no byte string
//! makes the parser panic or accepts a tampered credential, and the agent owns nothing but its
//! intent: the chain comes from the credential, the environment and the time from the host.

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
use tollgate_compiler::credential::{issue, issue_for_hash, Claims};
use tollgate_compiler::Error;
use tollgate_runtime::credential::{self, Credential, Host, Session, SessionCall};
use tollgate_runtime::gate::{self, ArgValue, Slot, State, Verdict};
use tollgate_runtime::table::Table;
use tollgate_runtime::Reason;
use tollgate_tests::{load_dir, root};

const NOW: u64 = 1_767_261_600; // 2026-01-01T10:00:00Z
const PROD: Host<'static> = Host {
    env: Some("prod"),
    audience: None,
};

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

fn fixture_of(example: &str) -> Fixture {
    let (_, policy) = load_dir(&root().join(example));
    let table = codegen::compile(&policy, &compiler_key()).unwrap().bytes;
    Fixture { policy, table }
}

fn fixture() -> Fixture {
    fixture_of("examples/support-desk")
}

impl Fixture {
    fn table(&self) -> Table<'_> {
        Table::load(&self.table, &compiler_key().verifying_key()).unwrap()
    }

    fn slots(&self) -> Vec<Slot> {
        vec![Slot::EMPTY; gate::slots_needed(&self.table(), 64)]
    }
}

fn claims<'a>(agent: &'a str, via: &'a [String], scope: &'a [String], ttl: u64) -> Claims<'a> {
    Claims {
        agent,
        via,
        env: None,
        audience: None,
        scope,
        issued_at: NOW,
        ttl,
        id: [3u8; 16],
    }
}

fn credential_for(f: &Fixture, agent: &str, ttl: u64, scope: &[&str], issued_at: u64) -> Vec<u8> {
    let scope: Vec<String> = scope.iter().map(|s| (*s).to_owned()).collect();
    let mut claims = claims(agent, &[], &scope, ttl);
    claims.issued_at = issued_at;
    issue(&f.table(), &claims, &issuer(), &|_| false).unwrap()
}

/// Admits on a fresh state.
fn admit(f: &Fixture, bytes: &[u8], now: u64) -> Result<Session, Reason> {
    let table = f.table();
    let mut slots = f.slots();
    let mut state = State::new(&table, &mut slots).unwrap();
    credential::admit(
        &table,
        &mut state,
        &issuer().verifying_key(),
        bytes,
        &PROD,
        now,
    )
}

#[test]
fn a_good_credential_is_admitted_and_decides() {
    let f = fixture();
    let bytes = credential_for(&f, "support_bot", 600, &["crm.*"], NOW);
    let table = f.table();
    let mut slots = f.slots();
    let mut state = State::new(&table, &mut slots).unwrap();
    let session = credential::admit(
        &table,
        &mut state,
        &issuer().verifying_key(),
        &bytes,
        &PROD,
        NOW,
    )
    .unwrap();
    assert_eq!(session.agent(&table), "support_bot");
    let args = [("customer_id", ArgValue::Str("c-1"))];
    let call = SessionCall {
        tool: "crm.read_customer",
        args: &args,
    };
    assert_eq!(
        credential::decide(&table, &mut state, &session, &call, NOW + 1).verdict,
        Verdict::Allow
    );
    let refund = SessionCall {
        tool: "payments.refund",
        args: &[],
    };
    assert_eq!(
        credential::decide(&table, &mut state, &session, &refund, NOW + 1).reason,
        Some(Reason::CredentialOutOfScope)
    );
    assert_eq!(
        credential::decide(&table, &mut state, &session, &call, NOW + 600).reason,
        Some(Reason::CredentialExpired)
    );
    // The host's clock went back: the gate's does not, so the credential stays expired.
    assert_eq!(
        credential::decide(&table, &mut state, &session, &call, NOW + 1).reason,
        Some(Reason::CredentialExpired)
    );
}

#[test]
fn each_failure_has_its_own_reason() {
    let f = fixture();
    let good = credential_for(&f, "support_bot", 600, &[], NOW);
    // forged: signed by someone else
    let mut forged = good.clone();
    let body = forged.len() - 64;
    let signature = SigningKey::from_bytes(&[9u8; 32]).sign(&forged[..body]);
    forged[body..].copy_from_slice(&signature.to_bytes());
    assert_eq!(admit(&f, &forged, NOW), Err(Reason::CredentialForged));
    assert_eq!(admit(&f, &good, NOW + 600), Err(Reason::CredentialExpired));
    assert_eq!(
        admit(&f, &good, NOW - 1),
        Err(Reason::CredentialNotYetValid)
    );
    // wrong policy: issued for another table
    let (_, other) = load_dir(&root().join("examples/coding-agent"));
    let other_table = codegen::compile(&other, &compiler_key()).unwrap();
    let other_hash: [u8; 32] = other_table.policy_hash;
    let scope: Vec<String> = Vec::new();
    let table = f.table();
    let wrong = issue_for_hash(
        &table,
        &other_hash,
        &claims("support_bot", &[], &scope, 60),
        &issuer(),
        &|_| false,
    )
    .unwrap();
    assert_eq!(admit(&f, &wrong, NOW), Err(Reason::CredentialWrongPolicy));
    // TTL above the agent's limit: refused at issue, and denied if someone signs one anyway
    let long = claims("support_bot", &[], &scope, 3_600);
    assert_eq!(
        issue(&table, &long, &issuer(), &|_| false),
        Err(Error::TtlTooLong {
            agent: "support_bot".to_owned(),
            requested: 3_600,
            allowed: 900,
            default_cap: false,
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
    let long_credential = issue_for_hash(
        &relaxed_table,
        table.policy_hash(),
        &long,
        &issuer(),
        &|_| false,
    )
    .unwrap();
    assert_eq!(
        admit(&f, &long_credential, NOW),
        Err(Reason::CredentialTtlExceeded)
    );
    // revoked: the agent was revoked by a failure response
    let mut slots = f.slots();
    let mut revoked_state = State::new(&table, &mut slots).unwrap();
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
        credential::admit(
            &table,
            &mut revoked_state,
            &issuer().verifying_key(),
            &good,
            &PROD,
            NOW
        )
        .err(),
        Some(Reason::CredentialRevoked)
    );
    // malformed
    assert_eq!(
        admit(&f, &good[..40], NOW),
        Err(Reason::CredentialMalformed)
    );
}

#[test]
fn an_agent_without_a_lifetime_limit_gets_the_default_cap() {
    // The trust fixture's agents name no `credential_ttl`.
    let f = fixture_of("tests/fixtures/trust");
    let table = f.table();
    let agent = "mailer".to_owned();
    let index = table.find_agent(agent.as_bytes()).unwrap();
    assert_eq!(
        table.agent_ttl(index),
        Some(0),
        "the fixture must name no credential_ttl"
    );
    let century = claims(&agent, &[], &[], 36_500 * 86_400);
    assert!(
        issue(&table, &claims(&agent, &[], &[], 3_600), &issuer(), &|_| {
            false
        })
        .is_ok()
    );
    assert_eq!(
        issue(&table, &century, &issuer(), &|_| false),
        Err(Error::TtlTooLong {
            agent: agent.clone(),
            requested: 36_500 * 86_400,
            allowed: credential::DEFAULT_MAX_TTL,
            default_cap: true,
        })
    );
    // Signed anyway (with a key that skipped the check): the gate refuses it.
    let bypass = {
        let mut relaxed = f.policy.clone();
        relaxed
            .agents
            .iter_mut()
            .for_each(|a| a.credential_ttl = Some(36_500 * 86_400));
        let bytes = codegen::compile(&relaxed, &compiler_key()).unwrap().bytes;
        let relaxed_table = Table::load(&bytes, &compiler_key().verifying_key()).unwrap();
        issue_for_hash(
            &relaxed_table,
            table.policy_hash(),
            &century,
            &issuer(),
            &|_| false,
        )
        .unwrap()
    };
    let mut slots = f.slots();
    let mut state = State::new(&table, &mut slots).unwrap();
    assert_eq!(
        credential::admit(
            &table,
            &mut state,
            &issuer().verifying_key(),
            &bypass,
            &PROD,
            NOW
        )
        .err(),
        Some(Reason::CredentialTtlExceeded)
    );
}

fn transfer(amount: i64) -> [(&'static str, ArgValue<'static>); 3] {
    [
        ("amount", ArgValue::Int(amount)),
        ("currency", ArgValue::Str("usd")),
        ("vendor", ArgValue::Str("vendor-acme")),
    ]
}

#[test]
fn the_chain_comes_from_the_credential_and_is_checked_at_issue() {
    let f = fixture_of("examples/finance-ops");
    let table = f.table();
    let key = issuer();
    // Alone, payments_bot may not transfer: its rule needs `context.depth >= 1`.
    let alone = issue(
        &table,
        &claims("payments_bot", &[], &[], 300),
        &key,
        &|_| false,
    )
    .unwrap();
    let via = vec!["analyst_bot".to_owned()];
    let delegated = issue(
        &table,
        &claims("payments_bot", &via, &[], 300),
        &key,
        &|_| false,
    )
    .unwrap();
    let args = transfer(4_000);
    let call = SessionCall {
        tool: "bank.transfer",
        args: &args,
    };
    let mut slots = f.slots();
    let mut state = State::new(&table, &mut slots).unwrap();
    let alone =
        credential::admit(&table, &mut state, &key.verifying_key(), &alone, &PROD, NOW).unwrap();
    assert_eq!(
        credential::decide(&table, &mut state, &alone, &call, NOW).reason,
        Some(Reason::NotPermitted)
    );
    let delegated = credential::admit(
        &table,
        &mut state,
        &key.verifying_key(),
        &delegated,
        &PROD,
        NOW,
    )
    .unwrap();
    assert_eq!(delegated.chain().len(), 1);
    assert_eq!(
        credential::decide(&table, &mut state, &delegated, &call, NOW).verdict,
        Verdict::Allow
    );
    // The issuer attests only declared edges, and refuses revoked agents anywhere on the chain.
    let backwards = vec!["payments_bot".to_owned()];
    assert_eq!(
        issue(
            &table,
            &claims("analyst_bot", &backwards, &[], 300),
            &key,
            &|_| false
        ),
        Err(Error::NoDelegation {
            from: "payments_bot".to_owned(),
            to: "analyst_bot".to_owned()
        })
    );
    assert_eq!(
        issue(
            &table,
            &claims("payments_bot", &via, &[], 300),
            &key,
            &|a| a == "analyst_bot"
        ),
        Err(Error::Revoked("analyst_bot".to_owned()))
    );
    // The lifetime is capped by every agent on the chain (payments_bot: 5m).
    assert!(matches!(
        issue(
            &table,
            &claims("payments_bot", &via, &[], 600),
            &key,
            &|_| false
        ),
        Err(Error::TtlTooLong { .. })
    ));
}

#[test]
fn a_revoked_delegator_denies_the_chain() {
    let f = fixture_of("examples/finance-ops");
    let table = f.table();
    let key = issuer();
    let via = vec!["analyst_bot".to_owned()];
    let delegated = issue(
        &table,
        &claims("payments_bot", &via, &[], 300),
        &key,
        &|_| false,
    )
    .unwrap();
    let mut slots = f.slots();
    let mut state = State::new(&table, &mut slots).unwrap();
    let session = credential::admit(
        &table,
        &mut state,
        &key.verifying_key(),
        &delegated,
        &PROD,
        NOW,
    )
    .unwrap();
    let analyst = table.find_agent(b"analyst_bot").unwrap() as u16;
    assert!(state.revoke(analyst));
    let args = transfer(4_000);
    let call = SessionCall {
        tool: "bank.transfer",
        args: &args,
    };
    assert_eq!(
        credential::decide(&table, &mut state, &session, &call, NOW).reason,
        Some(Reason::ChainRevoked)
    );
    // A new admission of the same credential is refused too.
    assert_eq!(
        credential::admit(
            &table,
            &mut state,
            &key.verifying_key(),
            &delegated,
            &PROD,
            NOW
        )
        .err(),
        Some(Reason::ChainRevoked)
    );
    // And the low-level gate agrees: a revoked agent cannot appear on a chain.
    let decision = gate::decide(
        &table,
        &mut state,
        &gate::Call {
            agent: "payments_bot",
            tool: "bank.transfer",
            args: &args,
            via: &["analyst_bot"],
            env: Some("prod"),
            time: NOW,
        },
    );
    assert_eq!(decision.reason, Some(Reason::ChainRevoked));
}

#[test]
fn environment_and_audience_bindings_are_the_hosts() {
    let f = fixture_of("examples/finance-ops");
    let table = f.table();
    let key = issuer();
    let mut bound = claims("analyst_bot", &[], &[], 300);
    bound.env = Some("prod");
    bound.audience = Some("gate-eu-1");
    let bytes = issue(&table, &bound, &key, &|_| false).unwrap();
    let admit_on = |host: &Host<'_>| {
        let mut slots = f.slots();
        let mut state = State::new(&table, &mut slots).unwrap();
        credential::admit(&table, &mut state, &key.verifying_key(), &bytes, host, NOW).err()
    };
    let right = Host {
        env: Some("prod"),
        audience: Some("gate-eu-1"),
    };
    assert_eq!(admit_on(&right), None);
    let sandbox = Host {
        env: Some("sandbox"),
        ..right
    };
    assert_eq!(admit_on(&sandbox), Some(Reason::CredentialWrongEnvironment));
    let elsewhere = Host {
        audience: Some("gate-us-1"),
        ..right
    };
    assert_eq!(admit_on(&elsewhere), Some(Reason::CredentialWrongAudience));
    // An unbound credential takes the host's environment: in the sandbox, no money moves.
    let unbound = issue(&table, &claims("analyst_bot", &[], &[], 300), &key, &|_| {
        false
    })
    .unwrap();
    let mut slots = f.slots();
    let mut state = State::new(&table, &mut slots).unwrap();
    let session = credential::admit(
        &table,
        &mut state,
        &key.verifying_key(),
        &unbound,
        &sandbox,
        NOW,
    )
    .unwrap();
    let args = transfer(100);
    let call = SessionCall {
        tool: "bank.transfer",
        args: &args,
    };
    assert_eq!(
        credential::decide(&table, &mut state, &session, &call, NOW).reason,
        Some(Reason::Forbidden)
    );
}

#[test]
fn out_of_scope_calls_count_toward_failure_responses() {
    // support-desk: `on deny 5 within 10m revoke`.
    let f = fixture();
    let table = f.table();
    let bytes = credential_for(&f, "support_bot", 600, &["crm.*"], NOW);
    let mut slots = f.slots();
    let mut state = State::new(&table, &mut slots).unwrap();
    let session = credential::admit(
        &table,
        &mut state,
        &issuer().verifying_key(),
        &bytes,
        &PROD,
        NOW,
    )
    .unwrap();
    let refund = SessionCall {
        tool: "payments.refund",
        args: &[],
    };
    let decisions: Vec<_> = (0..8)
        .map(|i| credential::decide(&table, &mut state, &session, &refund, NOW + i))
        .collect();
    assert!(decisions[..4].iter().all(|d| !d.revoked_agent));
    assert!(decisions[4].revoked_agent, "the fifth denial revokes");
    assert!(decisions[5..]
        .iter()
        .all(|d| d.reason == Some(Reason::CredentialRevoked)));
    assert!(state.is_revoked(session.agent_index()));
}

#[test]
fn every_bit_flip_of_a_credential_is_rejected() {
    let f = fixture();
    let good = credential_for(&f, "support_bot", 600, &["crm.*", "email.send"], NOW);
    assert!(admit(&f, &good, NOW).is_ok());
    let table = f.table();
    let mut slots = f.slots();
    let mut state = State::new(&table, &mut slots).unwrap();
    let mut flipped = good.clone();
    for byte in 0..flipped.len() {
        for bit in 0..8 {
            flipped[byte] ^= 1 << bit;
            assert!(
                credential::admit(
                    &table,
                    &mut state,
                    &issuer().verifying_key(),
                    &flipped,
                    &PROD,
                    NOW + 1
                )
                .is_err(),
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
