//! The trust boundary at the gate: time, environment and delegation chain are the host's and the
//! credential's, never the agent's; state cannot be exhausted by one agent; counter arithmetic is
//! exact at every bound. Each test is one reproduction of a red-team finding, and the gate is
//! checked against the reference evaluator where the semantics speaks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test should fail loudly at the first surprise"
)]

use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use tollgate_compiler::codegen;
use tollgate_compiler::eval;
use tollgate_compiler::model::{Policy, Request, Value};
use tollgate_runtime::gate::{self, ArgValue, Call, Decision, Slot, State, Verdict};
use tollgate_runtime::table::Table;
use tollgate_runtime::Reason;
use tollgate_tests::{load_dir, root};

const TEN_AM: u64 = 1_767_261_600; // 2026-01-01T10:00:00Z

fn key() -> SigningKey {
    SigningKey::from_bytes(&[5u8; 32])
}

fn fixture() -> (Policy, Vec<u8>) {
    let (_, policy) = load_dir(&root().join("tests/fixtures/trust"));
    let bytes = codegen::compile(&policy, &key()).unwrap().bytes;
    (policy, bytes)
}

/// Runs the same calls through the evaluator and the gate (room: repeat slots per agent) and
/// checks they agree on every one; returns the gate's decisions.
fn both(
    policy: &Policy,
    bytes: &[u8],
    room: usize,
    calls: &[(&str, &str, (&str, ArgValue<'_>), u64)],
) -> Vec<Decision> {
    let table = Table::load(bytes, &key().verifying_key()).unwrap();
    let mut slots = vec![Slot::EMPTY; gate::slots_needed(&table, room)];
    let mut state = State::new(&table, &mut slots).unwrap();
    let mut reference = eval::State::new();
    calls
        .iter()
        .map(|&(agent, tool, (name, value), time)| {
            let decision = gate::decide(
                &table,
                &mut state,
                &Call {
                    agent,
                    tool,
                    args: &[(name, value)],
                    via: &[],
                    env: Some("prod"),
                    time,
                },
            );
            let request = Request {
                agent: agent.to_owned(),
                tool: tool.to_owned(),
                args: BTreeMap::from([(
                    name.to_owned(),
                    match value {
                        ArgValue::Int(v) => Value::Int(v),
                        ArgValue::Bool(v) => Value::Bool(v),
                        ArgValue::Str(v) => Value::Str(v.to_owned()),
                        ArgValue::Decimal(v) => Value::Decimal(v.to_owned()),
                        ArgValue::List(_) | ArgValue::Object(_) => {
                            panic!("this property sends scalars only")
                        }
                    },
                )]),
                via: Vec::new(),
                env: Some("prod".to_owned()),
                time,
            };
            let expected = eval::decide(policy, &request, &mut reference);
            if decision.reason != Some(Reason::StateFull) {
                assert_eq!(
                    (expected.reason, expected.revoked_agent),
                    (decision.reason, decision.revoked_agent),
                    "{request:?}"
                );
            }
            decision
        })
        .collect()
}

fn allowed(decisions: &[Decision]) -> usize {
    decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Allow)
        .count()
}

#[test]
fn alternating_times_across_a_window_boundary_reset_no_counter() {
    let (policy, bytes) = fixture();
    // `rate 10 per 1h` on refunds: 30 calls claiming 10:59 and 11:00 in turn. The clock never
    // moves back, so after the first 11:00 call every call counts in the 11:00 window.
    let calls: Vec<_> = (0..30)
        .map(|i| {
            let time = if i % 2 == 0 {
                TEN_AM + 3_599
            } else {
                TEN_AM + 3_600
            };
            ("refunder", "pay.refund", ("amount", ArgValue::Int(1)), time)
        })
        .collect();
    let decisions = both(&policy, &bytes, 8, &calls);
    // One call in the 10:00 window, then ten in the 11:00 window.
    assert_eq!(allowed(&decisions), 11, "{decisions:?}");
}

#[test]
fn a_clock_that_moves_back_does_not_reopen_hour_rules() {
    let (policy, bytes) = fixture();
    // Refunds need `context.hour >= 9`; after a 10:00 call, a 03:00 call is decided at 10:00.
    let calls = [
        (
            "refunder",
            "pay.refund",
            ("amount", ArgValue::Int(1)),
            TEN_AM,
        ),
        (
            "refunder",
            "pay.refund",
            ("amount", ArgValue::Int(1)),
            TEN_AM - 7 * 3_600,
        ),
    ];
    let decisions = both(&policy, &bytes, 8, &calls);
    assert_eq!(allowed(&decisions), 2);
    // And from a fresh state, 03:00 really is refused.
    let early = [(
        "refunder",
        "pay.refund",
        ("amount", ArgValue::Int(1)),
        TEN_AM - 7 * 3_600,
    )];
    assert_eq!(
        both(&policy, &bytes, 8, &early)[0].reason,
        Some(Reason::NotPermitted)
    );
}

#[test]
fn a_budget_of_i64_max_is_exact_at_the_edge() {
    let (policy, bytes) = fixture();
    // cost 2^62 under `budget i64::MAX per 1d`: one call fits, the second would reach 2^63.
    let calls: Vec<_> = (0..5)
        .map(|_| ("spender", "pay.send", ("amount", ArgValue::Int(1)), TEN_AM))
        .collect();
    let decisions = both(&policy, &bytes, 8, &calls);
    assert_eq!(allowed(&decisions), 1);
    assert!(decisions[1..]
        .iter()
        .all(|d| d.reason == Some(Reason::BudgetExhausted) || d.reason == Some(Reason::Revoked)));
}

#[test]
fn one_agent_flooding_its_repeat_room_denies_only_itself() {
    let (_, bytes) = fixture();
    let table = Table::load(&bytes, &key().verifying_key()).unwrap();
    let room = 64;
    let mut slots = vec![Slot::EMPTY; gate::slots_needed(&table, room)];
    let mut state = State::new(&table, &mut slots).unwrap();
    let addresses: Vec<String> = (0..8_300).map(|i| format!("x{i}@example.com")).collect();
    let mail = |state: &mut State<'_>, agent: &str, to: &str, time: u64| {
        gate::decide(
            &table,
            state,
            &Call {
                agent,
                tool: "mail.send",
                args: &[("to", ArgValue::Str(to))],
                via: &[],
                env: Some("prod"),
                time,
            },
        )
    };
    let flood: Vec<Decision> = addresses
        .iter()
        .map(|to| mail(&mut state, "mailer", to, TEN_AM))
        .collect();
    assert_eq!(allowed(&flood), room, "the flooder fills its own room");
    assert_eq!(flood[room].reason, Some(Reason::StateFull));
    // Its denials revoked it, and the revocation is stored (the flag is a dense slot).
    let revoking = flood.iter().position(|d| d.revoked_agent).unwrap();
    assert_eq!(revoking, room + 4, "the fifth denial revokes");
    let mailer = table.find_agent(b"mailer").unwrap() as u16;
    assert!(state.is_revoked(mailer));
    assert!(flood[revoking + 1..]
        .iter()
        .all(|d| d.reason == Some(Reason::Revoked) && !d.revoked_agent));
    // Everyone else still has all of their own room.
    let other: Vec<Decision> = addresses[..room]
        .iter()
        .map(|to| mail(&mut state, "spender", to, TEN_AM))
        .collect();
    assert_eq!(allowed(&other), room);
    // Entries whose window has passed are reclaimed: ten minutes later, the room is free again.
    let later: Vec<Decision> = addresses[room..2 * room]
        .iter()
        .map(|to| mail(&mut state, "spender", to, TEN_AM + 600))
        .collect();
    assert_eq!(allowed(&later), room);
}

#[test]
fn a_state_smaller_than_the_dense_counters_is_refused() {
    let (_, bytes) = fixture();
    let table = Table::load(&bytes, &key().verifying_key()).unwrap();
    let needed = gate::slots_needed(&table, 0);
    let mut slots = vec![Slot::EMPTY; needed - 1];
    assert_eq!(
        State::new(&table, &mut slots).err(),
        Some(gate::StateError::TooSmall)
    );
    let mut slots = vec![Slot::EMPTY; needed];
    let state = State::new(&table, &mut slots).unwrap();
    assert_eq!(state.repeat_room(), 0);
}

#[test]
fn an_older_table_is_marked_older() {
    let (policy, _) = fixture();
    let v7 = codegen::compile_version(&policy, &key(), 7).unwrap().bytes;
    let table = Table::load(&v7, &key().verifying_key()).unwrap();
    assert_eq!(table.policy_version(), 7);
    // The version is signed: changing it breaks the signature.
    let mut forged = v7.clone();
    forged[tollgate_runtime::format::header::POLICY_VERSION] = 9;
    assert!(Table::load(&forged, &key().verifying_key()).is_err());
}
