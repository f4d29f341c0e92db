//! Object arguments through every layer: an object is its fields (`args.repo.owner` is the
//! argument `repo.owner`), nested, optional, and inside list elements. The fixture checks, passes
//! its tests and proves its assertions; the host, reading the same JSON a gateway would send,
//! decides every call as the evaluator does; names with a `.` are refused at both boundaries (a
//! list inside a list is read, and decided: see `nested_lists.rs`); a path inside an object is
//! forwarded in the normal form it was decided in.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test should fail loudly at the first surprise"
)]

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tollgate_compiler::credential::{issue, Claims};
use tollgate_compiler::eval::{self, State};
use tollgate_compiler::model::{self, Policy};
use tollgate_compiler::{codegen, request, testing, verify};
use tollgate_host::audit_log::MemoryAudit;
use tollgate_host::clock::FixedClock;
use tollgate_host::gate::{Gate, GateOptions};
use tollgate_host::protocol;
use tollgate_host::store::MemoryStore;
use tollgate_runtime::table::Table;
use tollgate_runtime::Reason;

const NOW: u64 = 1_767_261_600;

fn policy() -> Policy {
    let path = tollgate_tests::root().join("tests/fixtures/valid/objects.toll");
    tollgate_compiler::load(&tollgate_tests::source_set(&path)).unwrap()
}

#[test]
fn the_fixture_passes_its_tests_and_proves_its_assertions() {
    let policy = policy();
    let outcomes = testing::run_all(&policy);
    assert!(!outcomes.is_empty());
    for outcome in &outcomes {
        assert!(outcome.steps.iter().all(|s| s.passed), "{}", outcome.name);
    }
    let report = verify::verify(&policy, &verify::Options::default());
    assert_eq!(report.proved.len(), 4, "{:?}", report.findings);
}

/// Calls of `repo.create_issue`, each as a tool call's `arguments`.
fn calls() -> Vec<Value> {
    let repo = json!({"owner": "acme", "name": "web"});
    vec![
        json!({"repo": repo, "title": "bug"}),
        json!({"repo": {"owner": "evil", "name": "web"}, "title": "bug"}),
        json!({"repo": repo, "title": "bug", "options": {"priority": 3}}),
        json!({"repo": repo, "title": "bug", "options": {"priority": 2, "draft": true}}),
        json!({"repo": repo, "title": "bug", "options": {}}),
        json!({"repo": repo, "title": "bug", "options": {"meta": {"team": "x"}}}),
        json!({"repo": repo, "title": "bug", "options": {"meta": {"team": 1}}}),
        json!({"repo": repo, "title": "bug", "steps": [{"run": "make", "env": {"shell": "sh"}}]}),
        json!({"repo": repo, "title": "bug", "steps": [{"run": "curl x", "env": {"shell": "sh"}}]}),
        json!({"repo": repo, "title": "bug", "steps": [{"run": "make", "env": {"shell": "bash"}}]}),
        json!({"repo": repo, "title": "bug", "steps": [{"run": "make", "env": {}}]}),
        // An optional field of a list's elements: given, left out, too large, of the wrong type.
        json!({"repo": repo, "title": "bug", "steps": [{"run": "make", "env": {"shell": "sh"}, "timeout": 60}]}),
        json!({"repo": repo, "title": "bug", "steps": [{"run": "a", "env": {"shell": "sh"}}, {"run": "b", "env": {"shell": "sh"}, "timeout": 61}]}),
        json!({"repo": repo, "title": "bug", "steps": [{"run": "a", "env": {"shell": "sh"}, "timeout": 601}]}),
        json!({"repo": repo, "title": "bug", "steps": [{"run": "a", "env": {"shell": "sh"}, "timeout": "1"}]}),
        json!({"repo": repo, "title": "bug", "attach": {"dir": "docs/./a//b"}}),
        json!({"repo": repo, "title": "bug", "attach": {"dir": "docs/../etc"}}),
        json!({"repo": repo, "title": "bug", "attach": {"dir": "../x"}}),
        json!({"repo": {"owner": "acme"}, "title": "bug"}),
        json!({"repo": {"owner": "acme", "name": "web", "extra": 1}, "title": "bug"}),
        json!({"repo": "acme", "title": "bug"}),
        json!({"title": "bug"}),
    ]
}

#[test]
fn the_host_decides_object_arguments_as_the_evaluator_does() {
    let policy = policy();
    let compiler = SigningKey::from_bytes(&[1; 32]);
    let issuer = SigningKey::from_bytes(&[2; 32]);
    let bytes = codegen::compile(&policy, &compiler).unwrap().bytes;
    let table = Table::load(&bytes, &compiler.verifying_key()).unwrap();
    let credential = issue(
        &table,
        &Claims {
            agent: "triage_bot",
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
    let encoded = base64::engine::general_purpose::STANDARD.encode(&credential);
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
    let mut verdicts = (0, 0);
    for args in calls() {
        let expected = {
            let json = json!({"agent": "triage_bot", "tool": "repo.create_issue", "args": args});
            let request = request::from_json(json, NOW).unwrap();
            // The evaluator normalizes paths itself; the host reads the raw JSON.
            eval::decide(&policy, &request, &mut State::new())
        };
        let line = json!({"credential": encoded, "tool": "repo.create_issue", "args": args});
        let decision = gate.decide_line(line.to_string().as_bytes());
        assert_eq!(
            decision.allowed,
            expected.is_allow(),
            "{args}: {decision:?}"
        );
        assert_eq!(decision.reason, expected.reason, "{args}: {decision:?}");
        if decision.allowed {
            verdicts.0 += 1;
        } else {
            verdicts.1 += 1;
        }
        // A path inside an object is reported under its dotted name, in its normal form, and a
        // gateway puts it back where it came from.
        if args["attach"]["dir"] == "docs/./a//b" {
            assert_eq!(
                decision.normalized,
                vec![("attach.dir".to_owned(), json!("docs/a/b"))]
            );
            let mut arguments = args.as_object().unwrap().clone();
            for (name, value) in &decision.normalized {
                protocol::set_argument(&mut arguments, name, value.clone());
            }
            assert_eq!(arguments["attach"], json!({"dir": "docs/a/b"}));
            assert_eq!(arguments["repo"], args["repo"]);
        }
    }
    // Both verdicts occur, for several reasons.
    assert!(verdicts.0 >= 5 && verdicts.1 >= 8, "{verdicts:?}");
}

#[test]
fn a_name_with_a_dot_is_refused_at_both_boundaries() {
    // The evaluator's request reader.
    for args in [
        json!({"repo.owner": "acme"}),
        json!({"repo": {"owner.x": "acme"}}),
    ] {
        let json = json!({"agent": "triage_bot", "tool": "repo.create_issue", "args": args});
        let error = request::from_json(json, 0).unwrap_err().to_string();
        assert!(
            error.contains("has a `.`") || error.contains("with `.`"),
            "{error}"
        );
    }
    // The host's.
    for (args, says) in [
        (json!({"repo.owner": "acme"}), "has a `.` in its name"),
        (
            json!({"repo": {"owner.x": "acme"}}),
            "has a `.` in its name",
        ),
        (
            json!({"steps": [{"env": {"shell.x": "sh"}}]}),
            "has a `.` in its name",
        ),
    ] {
        let line = json!({"credential": "AAAA", "tool": "repo.create_issue", "args": args});
        let read = protocol::read_request(line.to_string().as_bytes());
        let (reason, detail) = read.refused.unwrap();
        assert_eq!(reason, Reason::Malformed);
        assert!(detail.contains(says), "{args}: {detail}");
    }
}

#[test]
fn an_object_is_read_as_its_dotted_fields_and_written_back_as_an_object() {
    use model::Value as V;
    let given = BTreeMap::from([
        (
            "repo".to_owned(),
            V::Object(BTreeMap::from([
                ("owner".to_owned(), V::Str("acme".into())),
                (
                    "meta".to_owned(),
                    V::Object(BTreeMap::from([("team".to_owned(), V::Int(1))])),
                ),
            ])),
        ),
        (
            "steps".to_owned(),
            V::List(vec![V::Object(BTreeMap::from([(
                "env".to_owned(),
                V::Object(BTreeMap::from([("shell".to_owned(), V::Str("sh".into()))])),
            )]))]),
        ),
    ]);
    let flat = eval::flatten_args(&given).unwrap();
    assert_eq!(
        flat.keys().collect::<Vec<_>>(),
        ["repo.meta.team", "repo.owner", "steps"]
    );
    assert_eq!(
        flat["steps"],
        V::List(vec![V::Object(BTreeMap::from([(
            "env.shell".to_owned(),
            V::Str("sh".into())
        )]))])
    );
    // Given twice: as a dotted name (which only witnesses and tests hold) and inside the object.
    let mut twice = given.clone();
    twice.insert("repo.owner".to_owned(), V::Str("evil".into()));
    assert!(eval::flatten_args(&twice).is_err());
    // A witness with dotted names is printed as the objects a caller sends.
    let request = model::Request {
        agent: "a".into(),
        tool: "t".into(),
        args: flat,
        via: Vec::new(),
        env: None,
        time: 0,
    };
    let json = request::to_json(&request);
    assert_eq!(
        json["args"],
        json!({"repo": {"meta": {"team": 1}, "owner": "acme"}, "steps": [{"env": {"shell": "sh"}}]})
    );
    // And the host reads an object the same way.
    let read = protocol::flatten_args(vec![(
        "repo".to_owned(),
        protocol::arg_from_json(&json!({"owner": "acme", "meta": {"team": 1}})).unwrap(),
    )]);
    let mut names: Vec<&str> = read.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["repo.meta.team", "repo.owner"]);
}

/// `list[T][MIN..]`: at least MIN elements and no maximum, read, formatted back as written, and
/// decided alike by the evaluator and the gate.
#[test]
fn a_list_count_with_a_minimum_and_no_maximum() {
    let path = tollgate_tests::root().join("tests/fixtures/valid/open_count.toll");
    let text = std::fs::read_to_string(&path).unwrap();
    let policy = tollgate_compiler::load(&tollgate_tests::source_set(&path)).unwrap();
    let paths = &policy.tools[0].args[0];
    let model::ArgType::List { count, .. } = &paths.ty else {
        panic!("{paths:?}");
    };
    assert_eq!(*count, (1, i64::MAX as u64));
    let outcomes = testing::run_all(&policy);
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].steps.iter().all(|s| s.passed));
    // The formatter writes the open count back as written.
    let parsed = tollgate_grammar::parse(&text, tollgate_grammar::span::FileId(0));
    assert!(parsed.errors.is_empty());
    let formatted = tollgate_grammar::format::format(&parsed.file, &parsed.comments, &text);
    assert!(
        formatted.contains("paths: list[path][1..] }"),
        "{formatted}"
    );
    // The gate: an empty list is refused, any number above the minimum accepted.
    let compiler = SigningKey::from_bytes(&[1; 32]);
    let bytes = codegen::compile(&policy, &compiler).unwrap().bytes;
    let table = Table::load(&bytes, &compiler.verifying_key()).unwrap();
    let mut slots =
        vec![tollgate_runtime::gate::Slot::EMPTY; tollgate_runtime::gate::slots_needed(&table, 8)];
    let mut state = tollgate_runtime::gate::State::new(&table, &mut slots).unwrap();
    let many: Vec<tollgate_runtime::gate::ArgValue<'_>> = (0..1_000)
        .map(|_| tollgate_runtime::gate::ArgValue::Str("a.md"))
        .collect();
    for (items, allowed) in [(&many[..0], false), (&many[..1], true), (&many[..], true)] {
        let args = [("paths", tollgate_runtime::gate::ArgValue::List(items))];
        let decision = tollgate_runtime::gate::decide(
            &table,
            &mut state,
            &tollgate_runtime::gate::Call {
                agent: "reader",
                tool: "fs.read_multiple_files",
                args: &args,
                via: &[],
                env: None,
                time: NOW,
            },
        );
        assert_eq!(
            decision.verdict == tollgate_runtime::gate::Verdict::Allow,
            allowed,
            "{} paths: {decision:?}",
            items.len()
        );
    }
}
