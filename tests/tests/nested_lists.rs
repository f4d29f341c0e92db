//! Lists inside lists through every layer: the fixture (the memory server's entities with their
//! observations, and a list of lists) checks, passes its tests and proves its assertions; its
//! table is proved to be its source; and the host, reading the JSON a gateway would send, decides
//! every call as the evaluator does, paths inside inner lists in their normal form.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test should fail loudly at the first surprise"
)]

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use serde_json::json;
use tollgate_compiler::credential::{issue, Claims};
use tollgate_compiler::eval::{self, State};
use tollgate_compiler::model::{Policy, Value};
use tollgate_compiler::source::SourceSet;
use tollgate_compiler::{codegen, request, testing, verify};
use tollgate_host::audit_log::MemoryAudit;
use tollgate_host::clock::FixedClock;
use tollgate_host::gate::{Gate, GateOptions};
use tollgate_host::protocol;
use tollgate_host::store::MemoryStore;
use tollgate_runtime::table::Table;

const NOW: u64 = 1_767_261_600;

fn fixture() -> Policy {
    let path = tollgate_tests::root().join("tests/fixtures/valid/nested_lists.toll");
    tollgate_compiler::load(&tollgate_tests::source_set(&path)).unwrap()
}

#[test]
fn the_fixture_passes_its_tests_and_proves_its_assertions() {
    let policy = fixture();
    let outcomes = testing::run_all(&policy);
    assert_eq!(outcomes.len(), 3);
    for outcome in &outcomes {
        assert!(outcome.steps.iter().all(|s| s.passed), "{}", outcome.name);
    }
    let report = verify::verify(&policy, &verify::Options::default());
    assert_eq!(report.proved.len(), 4, "{:?}", report.findings);
    let compiler = SigningKey::from_bytes(&[1; 32]);
    let bytes = codegen::compile(&policy, &compiler).unwrap().bytes;
    let table = Table::load(&bytes, &compiler.verifying_key()).unwrap();
    verify::translation::validate(&policy, &table, &Default::default()).unwrap();
}

/// An assertion that does not hold over inner lists is refuted with a witness whose inner
/// list holds the offending element (an observation with `pass` but not `password`, which the
/// permit lets through), shortened to it, and the witness replays through the evaluator.
#[test]
fn a_broken_assertion_over_an_inner_list_has_a_witness() {
    let path = tollgate_tests::root().join("tests/fixtures/valid/nested_lists.toll");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "{ o contains \"password\" } };",
        "{ o contains \"pass\" } };",
    );
    let policy = tollgate_compiler::load(&SourceSet::single("nested.toll", &text)).unwrap();
    let report = verify::verify(&policy, &verify::Options::default());
    assert_eq!(report.proved.len(), 3, "{:?}", report.findings);
    let refuted: Vec<&verify::Witness> = report
        .findings
        .iter()
        .filter(|f| matches!(f.subject, verify::Subject::Assertion(0)))
        .flat_map(|f| &f.witnesses)
        .collect();
    assert_eq!(refuted.len(), 1, "{:?}", report.findings);
    assert!(verify::replay(&policy, refuted[0]));
    let Some(Value::List(entities)) = refuted[0].request.args.get("entities") else {
        panic!("{:?}", refuted[0].request);
    };
    let says_pass = entities.iter().any(|entity| {
        let Value::Object(fields) = entity else {
            return false;
        };
        matches!(fields.get("observations"), Some(Value::List(observations))
            if observations.iter().any(|o| matches!(o, Value::Str(text)
                if text.contains("pass") && !text.contains("password"))))
    });
    assert!(says_pass, "{:?}", refuted[0].request);
    // Shortened inside and out: one entity, with the one observation that breaks the assertion.
    assert_eq!(entities.len(), 1, "{:?}", refuted[0].request);
    assert!(
        matches!(&entities[0], Value::Object(fields)
            if matches!(fields.get("observations"), Some(Value::List(o)) if o.len() == 1)),
        "{:?}",
        refuted[0].request
    );
}

/// Calls of the fixture's tools, each as a tool call's `arguments`.
fn calls() -> Vec<(&'static str, serde_json::Value)> {
    let entity = |kind: &str, observations: serde_json::Value| json!({"entities": [{"name": "Ada", "entityType": kind, "observations": observations}]});
    vec![
        (
            "memory.create_entities",
            entity("person", json!(["wrote a program"])),
        ),
        (
            "memory.create_entities",
            entity("person", json!(["ok", "password: x"])),
        ),
        ("memory.create_entities", entity("person", json!(["a@b"]))),
        ("memory.create_entities", entity("company", json!(["a@b"]))),
        ("memory.create_entities", entity("company", json!([]))),
        ("memory.create_entities", entity("company", json!([1]))),
        ("memory.create_entities", entity("company", json!("a@b"))),
        ("memory.create_entities", entity("company", json!([["a"]]))),
        (
            "memory.create_entities",
            entity("company", json!(vec!["x"; 21])),
        ),
        (
            "memory.create_entities",
            json!({"entities": [{"name": "Ada", "entityType": "x"}]}),
        ),
        ("memory.create_entities", json!({"entities": []})),
        (
            "memory.delete_observations",
            json!({"deletions": [{"entityName": "Ada", "observations": ["a"]}]}),
        ),
        (
            "memory.delete_observations",
            json!({"deletions": [{"entityName": "Ada"}]}),
        ),
        (
            "memory.delete_observations",
            json!({"deletions": [{"entityName": "Ada", "observations": ["1", "2", "3", "4", "5", "6"]}]}),
        ),
        (
            "memory.delete_observations",
            json!({"deletions": [{"entityName": "Ada", "observations": null}]}),
        ),
        ("sheet.write_rows", json!({"rows": [[1, 2], [3]]})),
        ("sheet.write_rows", json!({"rows": [[1, -2]]})),
        ("sheet.write_rows", json!({"rows": [[0]]})),
        ("sheet.write_rows", json!({"rows": [[0, 0]]})),
        ("sheet.write_rows", json!({"rows": [[1], []]})),
        ("sheet.write_rows", json!({"rows": [1, 2]})),
        ("sheet.write_rows", json!({"rows": [[[1]]]})),
        ("sheet.write_rows", json!({"rows": [[1001]]})),
        (
            "sheet.write_rows",
            json!({"rows": [[1, 2, 3, 4, 5, 6, 7, 8, 9]]}),
        ),
    ]
}

/// `policy`'s table, signed by the compiler key of [`gate_for`].
fn compiled(policy: &Policy) -> Vec<u8> {
    codegen::compile(policy, &SigningKey::from_bytes(&[1; 32]))
        .unwrap()
        .bytes
}

/// A host gate over the table `bytes` (from [`compiled`]) at `NOW`, and a credential of `agent`
/// for it, in base64 as a request line carries it.
fn gate_for<'t>(
    bytes: &'t [u8],
    agent: &str,
) -> (Gate<'t, FixedClock, MemoryStore, MemoryAudit>, String) {
    let compiler = SigningKey::from_bytes(&[1; 32]);
    let issuer = SigningKey::from_bytes(&[2; 32]);
    let table = Table::load(bytes, &compiler.verifying_key()).unwrap();
    let credential = issue(
        &table,
        &Claims {
            agent,
            via: &[],
            env: None,
            audience: None,
            scope: &[],
            issued_at: NOW,
            ttl: 600,
            id: [7; 16],
        },
        &issuer,
        &|_| false,
    )
    .unwrap();
    let (gate, _) = Gate::start(
        table,
        issuer.verifying_key(),
        SigningKey::from_bytes(&[3; 32]),
        FixedClock::new(NOW),
        MemoryStore::default(),
        MemoryAudit::default(),
        &[],
        &GateOptions::default(),
    )
    .unwrap();
    (
        gate,
        base64::engine::general_purpose::STANDARD.encode(&credential),
    )
}

#[test]
fn the_host_decides_nested_lists_as_the_evaluator_does() {
    let policy = fixture();
    let bytes = compiled(&policy);
    let (gate, encoded) = gate_for(&bytes, "curator");
    let mut verdicts = (0, 0);
    for (tool, args) in calls() {
        let line = json!({"credential": encoded, "tool": tool, "args": args});
        let decision = gate.decide_line(line.to_string().as_bytes());
        let json = json!({"agent": "curator", "tool": tool, "args": args});
        match request::from_json(json, NOW) {
            Ok(request) => {
                let expected = eval::decide(&policy, &request, &mut State::new());
                assert_eq!(
                    decision.allowed,
                    expected.is_allow(),
                    "{args}: {decision:?}"
                );
                assert_eq!(decision.reason, expected.reason, "{args}: {decision:?}");
            }
            // `null` is no value: both readers refuse it.
            Err(_) => assert!(!decision.allowed, "{args}: {decision:?}"),
        }
        if decision.allowed {
            verdicts.0 += 1;
        } else {
            verdicts.1 += 1;
        }
    }
    assert_eq!(verdicts, (6, 18));
}

/// A list of lists reads as one, on the fast path and the slow, and an inner list's paths are
/// forwarded in the normal form they were decided in.
#[test]
fn paths_inside_inner_lists_are_decided_and_forwarded_in_normal_form() {
    let text = r#"
domain files { private }
tool fs.copy { domain files effect write args { batches: list[list[{ from: path, to: path }][1..4]][1..4] } }
agent mover { roles [r] }
permit agent mover to call fs.copy
    when all b in args.batches { all c in b { c.from under "in" and c.to under "out" } };
"#;
    let policy = tollgate_compiler::load(&SourceSet::single("copy.toll", text)).unwrap();
    let bytes = compiled(&policy);
    let (gate, encoded) = gate_for(&bytes, "mover");
    let args = json!({"batches": [[{"from": "in/./a", "to": "out//a"}], [{"from": "in/b", "to": "out/b"}]]});
    let line = json!({"credential": encoded, "tool": "fs.copy", "args": args});
    let decision = gate.decide_line(line.to_string().as_bytes());
    assert!(decision.allowed, "{decision:?}");
    assert_eq!(
        decision.normalized,
        vec![(
            "batches".to_owned(),
            json!([[{"from": "in/a", "to": "out/a"}], [{"from": "in/b", "to": "out/b"}]])
        )]
    );
    let mut arguments = args.as_object().unwrap().clone();
    for (name, value) in &decision.normalized {
        protocol::set_argument(&mut arguments, name, value.clone());
    }
    assert_eq!(arguments["batches"][0][0]["from"], json!("in/a"));
    // A path that climbs out of its root, two lists deep: denied, as sent.
    let climbing = json!({"batches": [[{"from": "in/../../etc", "to": "out/a"}]]});
    let line = json!({"credential": encoded, "tool": "fs.copy", "args": climbing});
    let decision = gate.decide_line(line.to_string().as_bytes());
    assert!(!decision.allowed, "{decision:?}");
    assert_eq!(
        decision.reason,
        Some(tollgate_runtime::Reason::InvalidArgument)
    );
}
