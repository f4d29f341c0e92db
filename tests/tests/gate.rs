//! The compiled gate against the reference evaluator: random policies, random request histories,
//! identical verdicts, reasons, rules and revocations — and the table loader's own guarantees.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test should fail loudly at the first surprise"
)]

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::collections::BTreeMap;
use tollgate_compiler::codegen;
use tollgate_compiler::eval::{self, State, Verdict};
use tollgate_compiler::model::{Policy, Request, Value};
use tollgate_compiler::source::SourceSet;
use tollgate_host::protocol;
use tollgate_runtime::gate::State as GateState;
use tollgate_runtime::gate::{self, ArgValue, Call, Slot};
use tollgate_runtime::table::{LoadError, Table};
use tollgate_tests::{all_policy_dirs, load_dir};

const AGENTS: [&str; 4] = ["a0", "a1", "a2", "ghost"];
const TOOLS: [&str; 4] = ["t.a", "t.b", "u.c", "nope"];

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn atom() -> impl Strategy<Value = String> {
    // Lists: quantifiers, membership and length, behind `has`.
    let lists = proptest::sample::select(vec![
        "(has args.ls and all p in args.ls { p under \"a\" })",
        "(has args.ls and any p in args.ls { p == \"a/b\" or p starts_with \"/\" })",
        "(has args.ls and len(args.ls) >= 2)",
        "(has args.ls and \"a\" in args.ls)",
        "(not has args.es or all e in args.es { e.v < 3 })",
        "(has args.es and any e in args.es { e.k == y and e.v > args.n })",
        "(has args.es and any e in args.es { has e.u and e.u > e.v })",
        "(not has args.es or all e in args.es { not has e.u or e.u != 2 })",
        "(has args.es and any e in args.es { has e.u })",
        "(has args.es and all e in args.es { has e.u or e.v == 0 })",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        (
            proptest::sample::select(vec!["<", "<=", ">", ">=", "==", "!="]),
            -1..5i64
        )
            .prop_map(|(op, k)| format!("args.n {op} {k}")),
        proptest::sample::select(vec!["args.c == x", "args.c != y", "args.c in [y, z]"])
            .prop_map(str::to_owned),
        Just("args.b".to_owned()),
        proptest::sample::select(vec![
            "args.s starts_with \"ab\"",
            "args.s ends_with \"z\"",
            "args.s contains \"é\"",
            "args.s == \"\"",
            "args.s in [\"abc\", \"x\"]",
        ])
        .prop_map(str::to_owned),
        proptest::sample::select(vec!["context.env == prod", "context.env != dev"])
            .prop_map(str::to_owned),
        (0..24i64).prop_map(|h| format!("context.hour < {h}")),
        (0..3i64).prop_map(|d| format!("context.depth >= {d}")),
        proptest::sample::select(vec!["a0", "a1", "a2"])
            .prop_map(|a| format!("context.origin == {a}")),
        (0..3i64).prop_map(|k| format!("agent.level >= {k}")),
        (0..4i64).prop_map(|k| format!("tool.cost > {k}")),
        // A path argument, decided in normal form.
        proptest::sample::select(vec![
            "args.p under \"a\"",
            "args.p under \"a/b\"",
            "args.p under \"/\"",
            "args.p under \".\"",
            "args.p == \"a/b\"",
            "args.p contains \"..\"",
        ])
        .prop_map(str::to_owned),
        // Optional arguments, read only behind `has`.
        Just("has args.o".to_owned()),
        (0..4i64).prop_map(|k| format!("(has args.o and args.o >= {k})")),
        (0..4i64).prop_map(|k| format!("(not has args.o or args.o < {k})")),
        // Lists (more often than other atoms: they are many, and valid lists are rare in
        // random calls).
        lists.clone(),
        lists.clone(),
        lists,
        // A decimal, compared in units of its scale.
        (
            proptest::sample::select(vec!["<", "<=", ">", ">=", "==", "!="]),
            proptest::sample::select(vec!["0.5", "1", "-0.5", "2.5", "0", "1.0"])
        )
            .prop_map(|(op, k)| format!("(has args.m and args.m {op} {k})")),
        // An object argument, read by its fields (optional, so behind `has`).
        proptest::sample::select(vec![
            "(has args.ob.k and args.ob.k == y)",
            "(not has args.ob.w.z or args.ob.w.z > 1)",
            "(has args.ob.w.z and args.ob.w.z == args.n)",
            "has args.ob.k",
        ])
        .prop_map(str::to_owned),
        proptest::sample::select(vec![
            "(has args.q and args.q starts_with \"a\")",
            "not has args.q",
            "(not (has args.q) or args.q == \"x\")",
        ])
        .prop_map(str::to_owned),
    ]
}

fn condition() -> impl Strategy<Value = String> {
    conditions(atom())
}

/// Conditions of `and`, `or` and `not` over atoms.
fn conditions(atom: impl Strategy<Value = String> + 'static) -> impl Strategy<Value = String> {
    atom.prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} and {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} or {b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

fn principal() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("any".to_owned()),
        proptest::sample::select(vec!["a0", "a1", "a2"]).prop_map(|a| format!("agent {a}")),
        proptest::sample::select(vec!["r0", "r1"]).prop_map(|r| format!("role {r}")),
    ]
}

fn tools() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("any".to_owned()),
        proptest::sample::select(vec![
            "t.a",
            "t.b",
            "u.c",
            "t.*",
            "domain dp",
            "effect write"
        ])
        .prop_map(str::to_owned),
    ]
}

fn policy() -> impl Strategy<Value = String> {
    policy_of(condition().boxed())
}

fn policy_of(condition: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    let rule = (
        any::<bool>(),
        principal(),
        tools(),
        proptest::option::weighted(0.8, condition),
    )
        .prop_map(|(permit, p, t, c)| {
            let effect = if permit { "permit" } else { "forbid" };
            match c {
                Some(c) => format!("{effect} {p} to call {t} when {c};"),
                None => format!("{effect} {p} to call {t};"),
            }
        });
    let limit = (
        principal(),
        proptest::option::of(tools()),
        0..5u8,
        1..4i64,
        1..3u64,
    )
        .prop_map(|(p, t, kind, n, w)| {
            let on = t.map_or(String::new(), |t| format!(" on {t}"));
            match kind {
                0 => format!("limit {p}{on} rate {n} per {w}h;"),
                // Budgets at the edge of i64, with costs up to 2^62: sums past i64::MAX must
                // exceed the budget in the gate exactly as in the evaluator.
                1 if n == 3 => format!("limit {p}{on} budget {} per {w}h;", i64::MAX),
                1 => format!("limit {p}{on} budget {} per {w}h;", n * 2),
                2 => format!("limit {p}{on} depth {};", n - 1),
                3 => format!("limit {p}{on} repeat {n} within {w}h;"),
                _ => format!("on {p} deny {n} within {w}h revoke;"),
            }
        });
    (
        proptest::collection::vec(
            (
                prop_oneof![4 => 0..3i64, 1 => Just(1i64 << 62)],
                proptest::sample::select(vec!["read", "write", "external"]),
            ),
            3,
        ),
        proptest::collection::vec((0..3usize, 0..3usize, any::<bool>()), 0..4),
        proptest::collection::vec(rule, 1..8),
        proptest::collection::vec(limit, 0..4),
    )
        .prop_map(|(tool_defs, edges, rules, limits)| {
            let mut text = String::from("environments prod, dev;\ndomain dp { private }\ndomain dq { public }\n");
            for (name, (cost, effect)) in ["t.a", "t.b", "u.c"].iter().zip(&tool_defs) {
                // `u.c` lets undeclared arguments through; `t.b` costs per `args.n` (up to
                // 3 × 2^62: past i64::MAX, which must exceed every budget in both).
                let open = if *name == "u.c" { ", .." } else { "" };
                let per = if *name == "t.b" { " * args.n" } else { "" };
                text.push_str(&format!(
                    "tool {name} {{ domain dp effect {effect} cost {cost}{per} args {{ n: int[0..3], c: enum[x, y, z], b: bool, s: string, o?: int[0..3], q?: string[0..2], m?: decimal(1)[-1..2.5], p: path, ls?: list[path[0..4]][0..3], es?: list[{{ k: enum[x, y], v: int[0..3], u?: int[0..3] }}][0..2], ob?: {{ k?: enum[x, y], w?: {{ z?: int[0..3] }} }}, nl?: list[list[int[0..3]][0..2]][0..3], ne?: list[{{ v: int[0..3], w?: list[path[0..4]][0..2] }}][0..2]{open} }} }}\n"
                ));
            }
            text.push_str("agent a0 { roles [r0, r1] attrs { level: 1 } }\nagent a1 { roles [r0] attrs { level: 2 } }\nagent a2 { roles [r1] attrs { level: 0 } }\n");
            let mut seen = std::collections::BTreeSet::new();
            for (from, to, widening) in edges {
                if from != to && seen.insert((from, to)) {
                    text.push_str(&format!("delegate a{from} -> a{to}{};\n", if widening { " widening" } else { "" }));
                }
            }
            for line in rules.iter().chain(&limits) {
                text.push_str(line);
                text.push('\n');
            }
            text
        })
}

fn request() -> impl Strategy<Value = (Request, i64)> {
    let value_n =
        prop_oneof![8 => (-1..5i64).prop_map(Value::Int), 1 => Just(Value::Str("1".into()))];
    let value_c = prop_oneof![
        proptest::sample::select(vec!["x", "y", "z", "w"]).prop_map(|s| Value::Str(s.into())),
        Just(Value::Int(1))
    ];
    let value_s = proptest::sample::select(vec!["", "abc", "xyz", "é", "abé z", "x"])
        .prop_map(|s| Value::Str(s.into()));
    (
        proptest::sample::select(AGENTS.to_vec()),
        proptest::sample::select(TOOLS.to_vec()),
        value_n,
        value_c,
        any::<bool>(),
        value_s,
        0..10u8,
        (
            proptest::sample::select(vec![
                "a", "a/b", "a/./b//", "a/x/../b", "../x", "a/../..", "/a", "//a/b/", "a2/b", ".",
                "", "a/..b", "/",
            ]),
            proptest::option::of(
                prop_oneof![4 => (-1..5i64).prop_map(Value::Int), 1 => Just(Value::Bool(true))],
            ),
            proptest::option::of(
                proptest::sample::select(vec!["", "abc", "x"]).prop_map(|s| Value::Str(s.into())),
            ),
            // Decimals as numbers with a fraction, integers, and strings; some too fine, some
            // out of range, some not numbers at all.
            proptest::option::of(prop_oneof![
                4 => proptest::sample::select(vec![
                    "0.5", "1.25", "2.50", "1e0", "-1.0", "3.0", "0.05e1", "-0.00", "2.5", "25e-1", "1e400",
                ])
                .prop_map(|s| Value::Decimal(s.into())),
                2 => (-2..4i64).prop_map(Value::Int),
                1 => proptest::sample::select(vec!["0.5", "1", "x", ""]).prop_map(|s| Value::Str(s.into())),
            ]),
            (
                // Lists of raw paths (some climb, some too long, one not a string), up to four
                // (one past the bound).
                proptest::option::of(prop_oneof![
                    8 => proptest::collection::vec(
                        proptest::sample::select(vec!["a", "a/b", "a/./b", "a/x/../b", "/a", "../x", "b", "abcde", ""])
                            .prop_map(|p| Value::Str(p.into())),
                        0..5
                    )
                    .prop_map(Value::List),
                    1 => Just(Value::List(vec![Value::Int(1)])),
                    1 => Just(Value::Str("a".into())),
                ]),
                // Lists of objects: valid, a bad variant, a missing or an extra field.
                proptest::option::of(
                    proptest::collection::vec(
                        (
                            proptest::sample::select(vec!["x", "y", "w"]),
                            -1..5i64,
                            0..8u8,
                            proptest::option::of(prop_oneof![6 => 0..4i64, 1 => Just(9i64)]),
                        )
                            .prop_map(|(k, v, shape, u)| {
                                let mut fields = BTreeMap::from([
                                    ("k".to_owned(), Value::Str(k.into())),
                                    ("v".to_owned(), Value::Int(v)),
                                ]);
                                fields.extend(u.map(|u| ("u".to_owned(), Value::Int(u))));
                                match shape {
                                    0 => {
                                        fields.remove("v");
                                    }
                                    1 => {
                                        fields.insert("z".to_owned(), Value::Int(0));
                                    }
                                    _ => {}
                                }
                                Value::Object(fields)
                            }),
                        0..4
                    )
                    .prop_map(Value::List),
                ),
                // An object: its fields or some of them, a bad variant, an undeclared field,
                // a field of the wrong shape.
                proptest::option::of((
                    proptest::option::of(proptest::sample::select(vec!["x", "y", "w"])),
                    proptest::option::of(proptest::option::of(-1..5i64)),
                    0..16u8,
                ).prop_map(|(k, w, shape)| {
                    let mut fields = BTreeMap::new();
                    fields.extend(k.map(|k| ("k".to_owned(), Value::Str(k.into()))));
                    if let Some(z) = w {
                        let inner = z.map(|z| ("z".to_owned(), Value::Int(z)));
                        fields.insert("w".to_owned(), Value::Object(inner.into_iter().collect()));
                    }
                    match shape {
                        0 => {
                            fields.insert("u".to_owned(), Value::Int(0));
                        }
                        1 => {
                            fields.insert("w".to_owned(), Value::Int(1));
                        }
                        _ => {}
                    }
                    Value::Object(fields)
                })),
            ),
        ),
        proptest::collection::vec(proptest::sample::select(AGENTS.to_vec()), 0..3),
        proptest::sample::select(vec![Some("prod"), Some("dev"), None, Some("mars")]),
        // Mostly forward, sometimes back: the gate's clock must never move back.
        prop_oneof![6 => 0..5_000i64, 1 => -8_000..0i64],
    )
        .prop_map(
            |(agent, tool, n, c, b, s, shape, (p, o, q, m, (ls, es, ob)), via, env, step)| {
                let mut args = BTreeMap::from([
                    ("n".to_owned(), n),
                    ("c".to_owned(), c),
                    ("b".to_owned(), Value::Bool(b)),
                    ("s".to_owned(), s),
                ]);
                args.insert("p".to_owned(), Value::Str(p.to_owned()));
                args.extend(o.map(|o| ("o".to_owned(), o)));
                args.extend(q.map(|q| ("q".to_owned(), q)));
                args.extend(m.map(|m| ("m".to_owned(), m)));
                args.extend(ls.map(|ls| ("ls".to_owned(), ls)));
                args.extend(es.map(|es| ("es".to_owned(), es)));
                args.extend(ob.map(|ob| ("ob".to_owned(), ob)));
                match shape {
                    0 => {
                        args.remove("b");
                    }
                    1 => {
                        args.insert("extra".into(), Value::Int(0));
                    }
                    _ => {}
                }
                let request = Request {
                    agent: agent.into(),
                    tool: tool.into(),
                    args,
                    via: via.into_iter().map(str::to_owned).collect(),
                    env: env.map(str::to_owned),
                    time: 0,
                };
                (request, step)
            },
        )
}

/// A request value in the runtime's form. A list's and an object's slices are leaked: the test
/// process holds a few thousand short lists, and the gate's borrowed form needs them to outlive
/// the call (hosts build them per call; see `tollgate-host`).
fn arg_value(value: &Value) -> ArgValue<'_> {
    match value {
        Value::Int(v) => ArgValue::Int(*v),
        Value::Bool(v) => ArgValue::Bool(*v),
        Value::Str(v) | Value::Sym(v) => ArgValue::Str(v.as_str()),
        Value::Decimal(v) => ArgValue::Decimal(v.as_str()),
        Value::List(items) => {
            let items: Vec<ArgValue<'_>> = items.iter().map(arg_value).collect();
            ArgValue::List(Box::leak(items.into_boxed_slice()))
        }
        Value::Object(fields) => {
            let fields: Vec<(&str, ArgValue<'_>)> = fields
                .iter()
                .map(|(name, value)| (name.as_str(), arg_value(value)))
                .collect();
            ArgValue::Object(Box::leak(fields.into_boxed_slice()))
        }
    }
}

fn to_gate<'a>(
    request: &'a Request,
    args: &'a mut Vec<(&'a str, ArgValue<'a>)>,
    via: &'a mut Vec<&'a str>,
) -> Call<'a> {
    for (name, value) in &request.args {
        args.push((name.as_str(), arg_value(value)));
    }
    via.extend(request.via.iter().map(String::as_str));
    Call {
        agent: &request.agent,
        tool: &request.tool,
        args,
        via,
        env: request.env.as_deref(),
        time: request.time,
    }
}

/// A request as a host hands it to the gate: every `path` argument, list element and element
/// field in normal form, where it has one (`tollgate-host` does the same before deciding).
fn as_hosted(table: &Table<'_>, request: &Request) -> Request {
    let mut hosted = request.clone();
    // Objects as the host reads them: the request's JSON through `protocol::arg_from_json` and
    // `protocol::flatten_args` (the evaluator flattens with its own `eval::flatten_args`).
    let objects: Vec<String> = request
        .args
        .iter()
        .filter(|(_, value)| matches!(value, Value::Object(_)))
        .map(|(name, _)| name.clone())
        .collect();
    if !objects.is_empty() {
        let json = tollgate_compiler::request::to_json(request);
        let read: Vec<(String, protocol::Arg)> = objects
            .iter()
            .map(|name| {
                let value = protocol::arg_from_json(&json["args"][name]).unwrap();
                (
                    hosted.args.remove(name).map(|_| name.clone()).unwrap(),
                    value,
                )
            })
            .collect();
        hosted.args.extend(
            protocol::flatten_args(read)
                .into_iter()
                .map(|(name, arg)| (name, from_host(&arg))),
        );
    }
    let Some(tool) = table.find_tool(request.tool.as_bytes()) else {
        return hosted;
    };
    let slots = table.arg_count(tool).unwrap_or(0);
    for (name, value) in &mut hosted.args {
        let Some(schema) = (0..slots)
            .find(|&slot| table.arg_name(tool, slot) == Some(name.as_bytes()))
            .and_then(|slot| table.arg_schema(tool, slot))
        else {
            continue;
        };
        normalize_paths(&schema, value);
    }
    hosted
}

/// Every `path` in a value of this schema, at any depth, in normal form where it has one.
fn normalize_paths(schema: &tollgate_runtime::table::ArgSchema<'_, '_>, value: &mut Value) {
    use tollgate_runtime::format::arg;
    match (schema.kind, value) {
        (arg::PATH, Value::Str(text)) => {
            let mut buffer = vec![0u8; text.len().max(1)];
            if let Some(normal) = tollgate_runtime::path::normalize(text, &mut buffer) {
                *text = normal.to_owned();
            }
        }
        (arg::LIST, Value::List(items)) => {
            if let Some(element) = schema.element() {
                items
                    .iter_mut()
                    .for_each(|item| normalize_paths(&element, item));
            }
        }
        (arg::OBJECT, Value::Object(fields)) => {
            for (field, field_schema) in schema.fields() {
                let field = String::from_utf8_lossy(field);
                if let Some(value) = fields.get_mut(field.as_ref()) {
                    normalize_paths(&field_schema, value);
                }
            }
        }
        _ => {}
    }
}

/// A host argument as a request value (for the gate's borrowed form, [`arg_value`]).
fn from_host(arg: &protocol::Arg) -> Value {
    match arg {
        protocol::Arg::Int(v) => Value::Int(*v),
        protocol::Arg::Bool(v) => Value::Bool(*v),
        protocol::Arg::Str(v) => Value::Str(v.clone()),
        protocol::Arg::Decimal(v) => Value::Decimal(v.clone()),
        protocol::Arg::List(items) => Value::List(items.iter().map(from_host).collect()),
        protocol::Arg::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), from_host(value)))
                .collect(),
        ),
    }
}

/// Runs a history through both; returns the first disagreement.
fn differ(policy: &Policy, table: &Table<'_>, history: &[(Request, i64)]) -> Result<usize, String> {
    let mut state = State::new();
    let mut slots = vec![Slot::EMPTY; gate::slots_needed(table, 256)];
    let mut slots = GateState::new(table, &mut slots).unwrap();
    let mut time = 0u64;
    for (index, (request, step)) in history.iter().enumerate() {
        time = time.saturating_add_signed(*step);
        let mut request = request.clone();
        request.time = time;
        let expected = eval::decide(policy, &request, &mut state);
        // The gate receives paths as a host sends them: in normal form where they have one.
        let hosted = as_hosted(table, &request);
        let (mut args, mut via) = (Vec::new(), Vec::new());
        let call = to_gate(&hosted, &mut args, &mut via);
        let actual = gate::decide(table, &mut slots, &call);
        let same = (expected.verdict == Verdict::Allow) == (actual.verdict == gate::Verdict::Allow)
            && expected.reason == actual.reason
            && expected.rule.map(|r| r as u16) == actual.rule
            && expected.revoked_agent == actual.revoked_agent;
        if !same {
            return Err(format!(
                "request {index} {request:?}\n  eval: {:?} {:?} rule {:?} revoked {}\n  gate: {:?}",
                expected.verdict, expected.reason, expected.rule, expected.revoked_agent, actual
            ));
        }
        // The verifier reasons from a fresh state: that is sound only if state (counters,
        // revocations of agents and delegators, the clock) can only take permissions away.
        if expected.verdict == Verdict::Allow {
            let mut fresh_request = request.clone();
            fresh_request.time = state.latest;
            let fresh = eval::decide(policy, &fresh_request, &mut State::new());
            if fresh.verdict != Verdict::Allow {
                return Err(format!(
                    "request {index} {request:?} is allowed after a history but not from a fresh state: {:?}",
                    fresh.reason
                ));
            }
        }
    }
    Ok(history.len())
}

#[test]
fn the_gate_decides_as_the_evaluator() {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&20_261_126u64.to_le_bytes());
    let config = Config {
        cases: 500,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let decided = std::cell::Cell::new(0usize);
    let validated = std::cell::Cell::new(0usize);
    let strategy = (policy(), proptest::collection::vec(request(), 200));
    let result = runner.run(&strategy, |(text, history)| {
        let policy = tollgate_compiler::load(&SourceSet::single("generated.toll", &text))
            .map_err(|d| TestCaseError::fail(format!("does not check: {}", d[0].message)))?;
        let compiled =
            codegen::compile(&policy, &key()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let table = Table::load(&compiled.bytes, &key().verifying_key())
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        // Translation validation on every fifth random policy (Z3 is the slow part).
        if decided.get().is_multiple_of(1_000) {
            tollgate_compiler::verify::translation::validate(&policy, &table, &Default::default())
                .map_err(|m| TestCaseError::fail(format!("{m}\nin policy:\n{text}")))?;
            validated.set(validated.get() + 1);
        }
        let count = differ(&policy, &table, &history)
            .map_err(|why| TestCaseError::fail(format!("{why}\nin policy:\n{text}")))?;
        decided.set(decided.get() + count);
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    println!(
        "differential: {} requests decided identically by the gate and the evaluator; {} random tables translation-validated",
        decided.get(),
        validated.get()
    );
    assert!(decided.get() >= 100_000);
    assert!(validated.get() >= 100);
}

/// Lists of objects with an optional field, and objects, on their own: every call valid but
/// for the list's elements, every condition over them, so that a gate that read a missing
/// field as given (or an object's field wrongly) would soon disagree.
#[test]
fn element_fields_and_objects_decide_as_the_evaluator() {
    let atom = proptest::sample::select(vec![
        "(has args.es and any e in args.es { has e.u })",
        "(has args.es and all e in args.es { has e.u or e.v == 0 })",
        "(has args.es and any e in args.es { has e.u and e.u > e.v })",
        "(not has args.es or all e in args.es { not has e.u or e.u != 2 })",
        "(has args.es and any e in args.es { e.k == y })",
        "(has args.es and len(args.es) >= 2)",
        "(has args.ob.k and args.ob.k == y)",
        "(not has args.ob.w.z or args.ob.w.z > 1)",
        "has args.ob.w.z",
    ])
    .prop_map(str::to_owned);
    let element = (
        proptest::sample::select(vec!["x", "y"]),
        0..4i64,
        proptest::option::of(0..4i64),
    )
        .prop_map(|(k, v, u)| {
            let mut fields = BTreeMap::from([
                ("k".to_owned(), Value::Str(k.into())),
                ("v".to_owned(), Value::Int(v)),
            ]);
            fields.extend(u.map(|u| ("u".to_owned(), Value::Int(u))));
            Value::Object(fields)
        });
    let object = (
        proptest::option::of(proptest::sample::select(vec!["x", "y"])),
        proptest::option::of(proptest::option::of(0..4i64)),
    )
        .prop_map(|(k, w)| {
            let mut fields = BTreeMap::new();
            fields.extend(k.map(|k| ("k".to_owned(), Value::Str(k.into()))));
            if let Some(z) = w {
                let inner = z.map(|z| ("z".to_owned(), Value::Int(z)));
                fields.insert("w".to_owned(), Value::Object(inner.into_iter().collect()));
            }
            Value::Object(fields)
        });
    let request = (
        proptest::sample::select(AGENTS.to_vec()),
        proptest::option::of(proptest::collection::vec(element, 0..3).prop_map(Value::List)),
        proptest::option::of(object),
    )
        .prop_map(|(agent, es, ob)| {
            let mut args = BTreeMap::from([
                ("n".to_owned(), Value::Int(1)),
                ("c".to_owned(), Value::Str("x".into())),
                ("b".to_owned(), Value::Bool(true)),
                ("s".to_owned(), Value::Str("x".into())),
                ("p".to_owned(), Value::Str("a".into())),
            ]);
            args.extend(es.map(|es| ("es".to_owned(), es)));
            args.extend(ob.map(|ob| ("ob".to_owned(), ob)));
            let request = Request {
                agent: agent.into(),
                tool: "t.a".into(),
                args,
                via: Vec::new(),
                env: Some("prod".into()),
                time: 0,
            };
            (request, 1i64)
        });
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&20_261_128u64.to_le_bytes());
    let config = Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let allowed = std::cell::Cell::new(0usize);
    let validated = std::cell::Cell::new(0usize);
    let strategy = (
        policy_of(conditions(atom).boxed()),
        proptest::collection::vec(request, 50),
    );
    let result = runner.run(&strategy, |(text, history)| {
        let policy = tollgate_compiler::load(&SourceSet::single("generated.toll", &text))
            .map_err(|d| TestCaseError::fail(format!("does not check: {}", d[0].message)))?;
        let compiled =
            codegen::compile(&policy, &key()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let table = Table::load(&compiled.bytes, &key().verifying_key())
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        differ(&policy, &table, &history)
            .map_err(|why| TestCaseError::fail(format!("{why}\nin policy:\n{text}")))?;
        // And the table's programs are proved to be the source's (`HAS_FIELD` against `has`).
        if validated.get() < 40 {
            tollgate_compiler::verify::translation::validate(&policy, &table, &Default::default())
                .map_err(|m| TestCaseError::fail(format!("{m}\nin policy:\n{text}")))?;
            validated.set(validated.get() + 1);
        }
        let mut state = State::new();
        let allows = history
            .iter()
            .filter(|(request, _)| eval::decide(&policy, request, &mut state).is_allow())
            .count();
        allowed.set(allowed.get() + allows);
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    // Both verdicts occur often enough to tell.
    assert!(allowed.get() >= 500, "{} allowed", allowed.get());
}

/// Lists of lists and list fields of list elements: inner quantifiers, `in` and `len` inside
/// bodies, an inner body reading its outer element, and path lists inside elements (decided in
/// normal form), against calls that are valid, too long at either depth, or of the wrong shape.
#[test]
fn nested_lists_decide_as_the_evaluator() {
    let atom = proptest::sample::select(vec![
        "(has args.nl and all x in args.nl { any y in x { y == 1 } })",
        "(has args.nl and any x in args.nl { all y in x { y > args.n } })",
        "(not has args.nl or all x in args.nl { 2 in x or len(x) == 0 })",
        "(has args.nl and any x in args.nl { len(x) >= 2 })",
        "(has args.ne and any e in args.ne { has e.w and any p in e.w { p under \"a\" } })",
        "(has args.ne and all e in args.ne { not has e.w or all p in e.w { p != \"a/b\" or e.v > 1 } })",
        "(has args.ne and any e in args.ne { has e.w and \"a\" in e.w })",
        "(not has args.ne or all e in args.ne { has e.w and len(e.w) <= 1 })",
    ])
    .prop_map(str::to_owned);
    let inner = prop_oneof![
        8 => proptest::collection::vec((0..4i64).prop_map(Value::Int), 0..4).prop_map(Value::List),
        1 => Just(Value::Int(1)),
        1 => Just(Value::List(vec![Value::Str("1".into())])),
    ];
    let path =
        proptest::sample::select(vec!["a", "a/b", "a/./b", "a/x/../b", "../x", "abcde", "b"])
            .prop_map(|p| Value::Str(p.into()));
    let element = (
        0..5i64,
        proptest::option::of(prop_oneof![
            8 => proptest::collection::vec(path, 0..4).prop_map(Value::List),
            1 => Just(Value::Str("a".into())),
        ]),
    )
        .prop_map(|(v, w)| {
            let mut fields = BTreeMap::from([("v".to_owned(), Value::Int(v))]);
            fields.extend(w.map(|w| ("w".to_owned(), w)));
            Value::Object(fields)
        });
    let request = (
        proptest::sample::select(AGENTS.to_vec()),
        0..4i64,
        proptest::option::of(proptest::collection::vec(inner, 0..5).prop_map(Value::List)),
        proptest::option::of(proptest::collection::vec(element, 0..3).prop_map(Value::List)),
    )
        .prop_map(|(agent, n, nl, ne)| {
            let mut args = BTreeMap::from([
                ("n".to_owned(), Value::Int(n)),
                ("c".to_owned(), Value::Str("x".into())),
                ("b".to_owned(), Value::Bool(true)),
                ("s".to_owned(), Value::Str("x".into())),
                ("p".to_owned(), Value::Str("a".into())),
            ]);
            args.extend(nl.map(|nl| ("nl".to_owned(), nl)));
            args.extend(ne.map(|ne| ("ne".to_owned(), ne)));
            let request = Request {
                agent: agent.into(),
                tool: "t.a".into(),
                args,
                via: Vec::new(),
                env: Some("prod".into()),
                time: 0,
            };
            (request, 1i64)
        });
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&20_261_130u64.to_le_bytes());
    let config = Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let allowed = std::cell::Cell::new(0usize);
    let validated = std::cell::Cell::new(0usize);
    let strategy = (
        policy_of(conditions(atom).boxed()),
        proptest::collection::vec(request, 50),
    );
    let result = runner.run(&strategy, |(text, history)| {
        let policy = tollgate_compiler::load(&SourceSet::single("generated.toll", &text))
            .map_err(|d| TestCaseError::fail(format!("does not check: {}", d[0].message)))?;
        let compiled =
            codegen::compile(&policy, &key()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let table = Table::load(&compiled.bytes, &key().verifying_key())
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        differ(&policy, &table, &history)
            .map_err(|why| TestCaseError::fail(format!("{why}\nin policy:\n{text}")))?;
        // And the table's programs (`VAR_UP`, nested bodies) are proved to be the source's.
        if validated.get() < 40 {
            tollgate_compiler::verify::translation::validate(&policy, &table, &Default::default())
                .map_err(|m| TestCaseError::fail(format!("{m}\nin policy:\n{text}")))?;
            validated.set(validated.get() + 1);
        }
        let mut state = State::new();
        let allows = history
            .iter()
            .filter(|(request, _)| eval::decide(&policy, request, &mut state).is_allow())
            .count();
        allowed.set(allowed.get() + allows);
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    assert!(allowed.get() >= 500, "{} allowed", allowed.get());
    assert_eq!(validated.get(), 40);
}

#[test]
fn every_example_compiles_loads_and_replays_its_tests_through_the_gate() {
    for dir in all_policy_dirs() {
        let (_, policy) = load_dir(&dir);
        let compiled = codegen::compile(&policy, &key()).unwrap();
        let table = Table::load(&compiled.bytes, &key().verifying_key()).unwrap();
        for test in &policy.tests {
            let history: Vec<(Request, u64)> =
                test.steps.iter().map(|s| (s.request.clone(), 0)).collect();
            let mut state = State::new();
            let mut slots = vec![Slot::EMPTY; gate::slots_needed(&table, 64)];
            let mut slots = GateState::new(&table, &mut slots).unwrap();
            for (request, _) in &history {
                let expected = eval::decide(&policy, request, &mut state);
                let hosted = as_hosted(&table, request);
                let (mut args, mut via) = (Vec::new(), Vec::new());
                let actual =
                    gate::decide(&table, &mut slots, &to_gate(&hosted, &mut args, &mut via));
                assert_eq!(
                    expected.reason, actual.reason,
                    "{} {:?}",
                    test.name, request
                );
            }
        }
    }
}

#[test]
fn compilation_is_deterministic() {
    for dir in all_policy_dirs() {
        let (_, policy) = load_dir(&dir);
        let first = codegen::compile(&policy, &key()).unwrap();
        let second = codegen::compile(&policy, &key()).unwrap();
        assert_eq!(first.bytes, second.bytes);
    }
}

#[test]
fn tables_are_signed_and_every_bit_flip_is_rejected() {
    let (_, policy) = load_dir(&tollgate_tests::root().join("examples/support-desk"));
    let compiled = codegen::compile(&policy, &key()).unwrap();
    let verifying = key().verifying_key();
    assert!(Table::load(&compiled.bytes, &verifying).is_ok());
    let other = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    assert_eq!(
        Table::load(&compiled.bytes, &other).err(),
        Some(LoadError::BadSignature)
    );
    let mut flipped = compiled.bytes.clone();
    for byte in 0..flipped.len() {
        for bit in 0..8 {
            flipped[byte] ^= 1 << bit;
            assert!(
                Table::load(&flipped, &verifying).is_err(),
                "flip at byte {byte} bit {bit} accepted"
            );
            flipped[byte] ^= 1 << bit;
        }
    }
}

#[test]
fn every_name_is_found_through_the_index_and_a_misplaced_entry_is_refused() {
    use sha2::{Digest, Sha256};
    use tollgate_runtime::format::{self, section};
    use tollgate_runtime::table::Fault;
    for dir in all_policy_dirs() {
        let (_, policy) = load_dir(&dir);
        let bytes = codegen::compile(&policy, &key()).unwrap().bytes;
        let table = Table::parse(&bytes).unwrap();
        for (position, agent) in policy.agents.iter().enumerate() {
            let found = table.find_agent(agent.name.as_bytes()).unwrap();
            assert_eq!(
                table.agent_name(found),
                Some(agent.name.as_bytes()),
                "{position}"
            );
        }
        for tool in &policy.tools {
            let found = table.find_tool(tool.name.as_bytes()).unwrap();
            assert_eq!(table.tool_name(found), Some(tool.name.as_bytes()));
        }
        for absent in ["", "nobody", "a-name-no-policy-declares-at-all", "\u{0}"] {
            assert_eq!(table.find_agent(absent.as_bytes()), None);
            assert_eq!(table.find_tool(absent.as_bytes()), None);
        }
    }
    // Every way of corrupting the index is refused, naming the section: each non-empty slot
    // emptied, or pointed at another record or past the section.
    let (_, policy) = load_dir(&tollgate_tests::root().join("examples/support-desk"));
    let bytes = codegen::compile(&policy, &key()).unwrap().bytes;
    let entry = format::header::SECTIONS + section::NAME_INDEX * 8;
    let offset = u32::from_le_bytes(bytes[entry..entry + 4].try_into().unwrap()) as usize;
    let slots = u32::from_le_bytes(bytes[entry + 4..entry + 8].try_into().unwrap()) as usize;
    assert!(slots >= 2 * (policy.agents.len() + policy.tools.len()));
    let rehashed = |mut bytes: Vec<u8>| {
        let body_end = bytes.len() - format::SIGNATURE_SIZE;
        let hash: [u8; 32] = Sha256::digest(&bytes[format::HEADER_SIZE..body_end]).into();
        bytes[format::header::POLICY_HASH..][..32].copy_from_slice(&hash);
        bytes
    };
    let mut corrupted = 0;
    for slot in 0..slots {
        let at = offset + slot * 2;
        let value = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        if value == 0 {
            continue;
        }
        for replacement in [0, if value == 1 { 2 } else { 1 }, u16::MAX] {
            if replacement == value {
                continue;
            }
            let mut changed = bytes.clone();
            changed[at..at + 2].copy_from_slice(&replacement.to_le_bytes());
            let error = Table::parse(&rehashed(changed)).unwrap_err();
            assert!(
                matches!(error, LoadError::InSection { section, fault: Fault::Invalid | Fault::OutOfBounds }
                    if usize::from(section) == section::NAME_INDEX),
                "slot {slot}: {value} → {replacement}: {error:?}"
            );
            corrupted += 1;
        }
    }
    assert!(
        corrupted >= 3 * (policy.agents.len() + policy.tools.len()),
        "{corrupted}"
    );
}

/// Enum values and environments are found by name without the symbol index when there are a
/// few (compared one by one), through it when there are many; either way only a declared value
/// of that enum (or a declared environment) is accepted, never another symbol of the table (an
/// agent's name, another enum's value, an environment).
#[test]
fn enum_values_and_environments_are_only_their_own_declared_names() {
    let many: Vec<String> = (0..12).map(|i| format!("v{i}")).collect();
    let source = format!(
        "environments prod, dev;\n\
         domain d {{ private }}\n\
         tool t {{ domain d effect read args {{ few: enum[a, b], many: enum[{}] }} }}\n\
         agent ops {{ roles [r] }}\n\
         permit agent ops to call t;\n",
        many.join(", ")
    );
    let policy = tollgate_compiler::load(&SourceSet::single("enums.toll", &source)).unwrap();
    let bytes = codegen::compile(&policy, &key()).unwrap().bytes;
    let table = Table::load(&bytes, &key().verifying_key()).unwrap();
    let mut slots = vec![Slot::EMPTY; gate::slots_needed(&table, 16)];
    let mut state = GateState::new(&table, &mut slots).unwrap();
    let mut decide = |few: &str, many: &str, env: &str| {
        let args = [("few", ArgValue::Str(few)), ("many", ArgValue::Str(many))];
        let call = Call {
            agent: "ops",
            tool: "t",
            args: &args,
            via: &[],
            env: Some(env),
            time: 1_767_261_600,
        };
        let decision = gate::decide(&table, &mut state, &call);
        decision.reason.map_or("allow", |r| r.as_str())
    };
    for value in &many {
        assert_eq!(decide("a", value, "prod"), "allow", "{value}");
    }
    assert_eq!(decide("b", "v11", "dev"), "allow");
    // Symbols of the table that are not values of this enum.
    for (few, many) in [
        ("ops", "v0"),
        ("prod", "v0"),
        ("v1", "v0"),
        ("a", "a"),
        ("a", "ops"),
        ("a", "dev"),
        ("a", "v12"),
        ("", "v0"),
        ("a", ""),
    ] {
        assert_eq!(
            decide(few, many, "prod"),
            "invalid_argument",
            "{few} {many}"
        );
    }
    // Symbols that are not environments.
    for env in ["ops", "a", "v3", "", "production"] {
        assert_eq!(decide("a", "v0", env), "invalid_request", "{env}");
    }
}

#[test]
fn translation_validation_proves_every_example() {
    for dir in all_policy_dirs() {
        let (_, policy) = load_dir(&dir);
        let compiled = codegen::compile(&policy, &key()).unwrap();
        let table = Table::load(&compiled.bytes, &key().verifying_key()).unwrap();
        let proved =
            tollgate_compiler::verify::translation::validate(&policy, &table, &Default::default())
                .unwrap();
        assert!(proved.programs > 0);
    }
}

#[test]
fn translation_validation_catches_a_miscompiled_program() {
    use ed25519_dalek::Signer;
    use sha2::{Digest, Sha256};
    use tollgate_compiler::verify::translation::validate;
    use tollgate_compiler::Error;
    let (_, policy) = load_dir(&tollgate_tests::root().join("examples/support-desk"));
    let mut bytes = codegen::compile(&policy, &key()).unwrap().bytes;
    // Change `args.amount <= 100` (small_refunds) to `<= 101` in the bytecode, then fix up the hash
    // and signature as a buggy compiler would have written them.
    let header = tollgate_runtime::format::HEADER_SIZE;
    let mut pattern = vec![tollgate_runtime::format::op::PUSH_INT];
    pattern.extend_from_slice(&100i64.to_le_bytes());
    let at = bytes
        .windows(pattern.len())
        .position(|w| w == pattern.as_slice())
        .unwrap();
    bytes[at + 1] = 101;
    let body_end = bytes.len() - 64;
    let hash: [u8; 32] = Sha256::digest(&bytes[header..body_end]).into();
    let hash_at = tollgate_runtime::format::header::POLICY_HASH;
    bytes[hash_at..hash_at + 32].copy_from_slice(&hash);
    let signature = key().sign(&bytes[..body_end]);
    bytes[body_end..].copy_from_slice(&signature.to_bytes());
    let table = Table::load(&bytes, &key().verifying_key()).unwrap();
    match validate(&policy, &table, &Default::default()) {
        Err(Error::ProgramDiffers {
            mut request, rule, ..
        }) => {
            assert_eq!(policy.rule_name(rule), "small_refunds");
            assert_eq!(request.args["amount"], Value::Int(101));
            // At 10:00 no forbid masks the difference: the request really is decided differently.
            request.time = 36_000;
            let expected = eval::decide(&policy, &request, &mut State::new());
            let (mut args, mut via) = (Vec::new(), Vec::new());
            let mut slots = vec![Slot::EMPTY; gate::slots_needed(&table, 8)];
            let mut state = GateState::new(&table, &mut slots).unwrap();
            let actual = gate::decide(&table, &mut state, &to_gate(&request, &mut args, &mut via));
            assert!(
                expected.reason != actual.reason || expected.rule.map(|r| r as u16) != actual.rule,
                "{request:?}"
            );
        }
        other => panic!("expected a program mismatch, got {other:?}"),
    }
}

#[test]
fn translation_validation_catches_an_optional_argument_compiled_as_required() {
    use ed25519_dalek::Signer;
    use sha2::{Digest, Sha256};
    use tollgate_compiler::verify::translation::validate;
    use tollgate_compiler::Error;
    use tollgate_runtime::format::{self, arg, arg_flag};
    let path = tollgate_tests::root().join("tests/fixtures/valid/optional_arguments.toll");
    let policy = tollgate_compiler::load(&tollgate_tests::source_set(&path)).unwrap();
    let mut bytes = codegen::compile(&policy, &key()).unwrap().bytes;
    // The first optional integer argument (`head`): its kind, then its flags and reserved bytes.
    let pattern = [arg::INT, arg_flag::OPTIONAL, 0, 0];
    let at = bytes.windows(4).position(|w| w == pattern).unwrap();
    bytes[at + 1] = 0;
    let header = format::HEADER_SIZE;
    let body_end = bytes.len() - 64;
    let hash: [u8; 32] = Sha256::digest(&bytes[header..body_end]).into();
    let hash_at = format::header::POLICY_HASH;
    bytes[hash_at..hash_at + 32].copy_from_slice(&hash);
    let signature = key().sign(&bytes[..body_end]);
    bytes[body_end..].copy_from_slice(&signature.to_bytes());
    let table = Table::load(&bytes, &key().verifying_key()).unwrap();
    let error = validate(&policy, &table, &Default::default()).expect_err("the tables differ");
    let Error::ToolArguments {
        ref tool,
        ref listed,
        ..
    } = error
    else {
        panic!("expected an argument mismatch, got {error:?}");
    };
    assert_eq!(tool, "fs.read_text_file");
    assert!(
        listed.contains(&"head: int[0..100000]".to_owned()),
        "{listed:?}"
    );
    assert!(
        error.to_string().contains(
            "the source with { head?: int[0..100000], path: string, tail?: int[0..100000], cost 0 }"
        ),
        "{error}"
    );
    // And the difference is real: the damaged table denies a call the policy allows.
    let request = Request {
        agent: "reader".into(),
        tool: "fs.read_text_file".into(),
        args: BTreeMap::from([("path".to_owned(), Value::Str("docs/a.md".into()))]),
        via: Vec::new(),
        env: None,
        time: 0,
    };
    assert!(eval::decide(&policy, &request, &mut State::new()).is_allow());
    let (mut args, mut via) = (Vec::new(), Vec::new());
    let mut slots = vec![Slot::EMPTY; gate::slots_needed(&table, 8)];
    let mut state = GateState::new(&table, &mut slots).unwrap();
    let decision = gate::decide(&table, &mut state, &to_gate(&request, &mut args, &mut via));
    assert_eq!(
        decision.reason,
        Some(tollgate_runtime::Reason::InvalidArgument)
    );
}

/// A table whose body is damaged but whose hash matches it (a compiler bug, not an attacker:
/// the signature would catch that) is refused with the section at fault named.
#[test]
fn a_refused_table_names_the_section_at_fault() {
    use sha2::Digest as _;
    use tollgate_runtime::format::{self, field, header, section};
    let (_, policy) = load_dir(&tollgate_tests::root().join("examples/support-desk"));
    let compiled = codegen::compile(&policy, &key()).unwrap();
    let damaged = |section_id: usize, at: usize, bytes: &[u8]| {
        let mut table = compiled.bytes.clone();
        let entry = header::SECTIONS + section_id * 8;
        let offset = u32::from_le_bytes(table[entry..entry + 4].try_into().unwrap()) as usize;
        table[offset + at..offset + at + bytes.len()].copy_from_slice(bytes);
        let body_end = table.len() - format::SIGNATURE_SIZE;
        let hash = sha2::Sha256::digest(&table[format::HEADER_SIZE..body_end]);
        table[header::POLICY_HASH..header::POLICY_HASH + 32].copy_from_slice(&hash);
        Table::parse(&table).err().unwrap().to_string()
    };
    // A rate limit with a zero window.
    let error = damaged(section::LIMITS, field::limit::WINDOW, &0u64.to_le_bytes());
    assert_eq!(
        error,
        "its `limits` section is damaged: names are unsorted or a value is not one the format allows"
    );
    // The first agent's buckets starting past the buckets that exist.
    let error = damaged(
        section::DISPATCH,
        0,
        &u32::MAX.wrapping_sub(1).to_le_bytes(),
    );
    assert!(
        error.starts_with("its `dispatch` section is damaged"),
        "{error}"
    );
    // An agent's buckets out of tool order (the search would miss a pair), or a bucket for a
    // tool that does not exist.
    let table = Table::parse(&compiled.bytes).unwrap();
    let tools = table.tool_count() as u16;
    let bucket_tool = |bucket: usize| {
        let entry = header::SECTIONS + section::BUCKETS * 8;
        let offset = u32::from_le_bytes(compiled.bytes[entry..entry + 4].try_into().unwrap());
        let at = offset as usize + bucket * format::BUCKET_SIZE + field::bucket::TOOL;
        u16::from_le_bytes(compiled.bytes[at..at + 2].try_into().unwrap())
    };
    let first_agent_buckets = (0..table.tool_count())
        .filter(|&tool| table.bucket_entries(0, tool).next().is_some())
        .count();
    assert!(
        first_agent_buckets >= 2,
        "the fixture's first agent reaches two tools"
    );
    let swapped = [bucket_tool(1), bucket_tool(0)];
    for (bucket, tool) in [(0, swapped[0]), (1, swapped[1]), (0, tools)] {
        let error = damaged(
            section::BUCKETS,
            bucket * format::BUCKET_SIZE + field::bucket::TOOL,
            &tool.to_le_bytes(),
        );
        assert!(
            error.starts_with("its `dispatch` section is damaged"),
            "{error}"
        );
    }
    // A program with an unknown opcode.
    let error = damaged(section::PROGRAMS, 0, &[0xEE]);
    assert!(
        error.starts_with("its `programs` section is damaged"),
        "{error}"
    );
}

/// Translation validation reads only the pairs the table has buckets for; a rule or limit the
/// source applies to a pair without one is found by counting each one's pairs.
#[test]
fn translation_validation_finds_a_pair_the_table_has_no_bucket_for() {
    use tollgate_compiler::source::SourceSet;
    use tollgate_compiler::verify::translation::validate;
    use tollgate_compiler::Error;
    let base = "domain d { private }\n\
        tool t.one { domain d effect read }\n\
        tool t.two { domain d effect read }\n\
        agent a { }\n\
        agent b { }\n\
        permit agent a to call t.one;\n\
        permit agent b to call t.two;\n";
    let load = |text: &str| tollgate_compiler::load(&SourceSet::single("p.toll", text)).unwrap();
    let policy = load(base);
    let bytes = codegen::compile(&policy, &key()).unwrap().bytes;
    let table = Table::load(&bytes, &key().verifying_key()).unwrap();
    assert!(validate(&policy, &table, &Default::default()).is_ok());
    // The same table judged against a source with one more rule, for a pair it has no bucket for.
    let more = load(&format!("{base}forbid agent a to call t.two;\n"));
    match validate(&more, &table, &Default::default()) {
        Err(Error::BucketRules {
            agent,
            tool,
            listed,
            expected,
        }) => {
            assert_eq!((agent.as_str(), tool.as_str()), ("a", "t.two"));
            assert!(listed.is_empty());
            assert_eq!(expected, vec![(2, true)]);
        }
        other => panic!("expected a missing bucket, got {other:?}"),
    }
    // And with one more limit there.
    let limited = load(&format!("{base}limit agent b on t.one rate 5 per 1h;\n"));
    match validate(&limited, &table, &Default::default()) {
        Err(Error::BucketLimits {
            agent,
            tool,
            listed,
            expected,
        }) => {
            assert_eq!((agent.as_str(), tool.as_str()), ("b", "t.one"));
            assert!(listed.is_empty());
            assert_eq!(expected, vec![0]);
        }
        other => panic!("expected a missing bucket, got {other:?}"),
    }
}
