//! `bash bench/run` (or `bash bench/run --quick`): the gate against cedar-policy and regorus on
//! one generated workload at 10, 100, 1,000 and 10,000 rules, with the audit cost and the table
//! size. The harness is `tollgate_bench`'s (a pass over the 512 requests is one sample; arms
//! take turns; p50 over samples).
//!
//! The workload: agents × tools; one permit per (agent, tool) grant with its own amount cap
//! (`args.amount <= CAP and (context.env == prod or agent.level >= 2)`); one forbid per tool
//! (`args.amount > 50000 or (args.region == us and args.note contains "override")`). A *rule* is
//! one permit or forbid. Each engine gets its best fair encoding of it:
//!
//! - **gate**: the Tollgate policy compiled to a table, decided by `gate::decide` with a `State`.
//!   The policy also carries limits on every call: a rate limit per tool, a budget over every
//!   tool (tools have a `cost`) and a repeat guard on half the tools, with counts too large to
//!   trip, so every call pays the counter probes and updates and still gets the verdict the
//!   peers give. `gate w/o limits` is the same policy without them, for reference.
//! - **cedar-indexed**: two policies (one permit, one forbid) and one `Grant` entity per grant,
//!   holding its agent and cap, with its tool as parent; the request's resource is the grant
//!   `Grant::"AGENT/TOOL"`, which the host names from the call, so Cedar finds a grant by its
//!   entity store's index and the policy count does not grow with the grants.
//! - **cedar-naive**: one static policy per grant and one per tool's forbid, as a policy author
//!   might first write it; its cost grows with the rule count by construction.
//! - **regorus**: one Rego module over a data document indexed by agent and tool
//!   (`data.permits[input.agent][input.tool]`), in both of regorus's forms: its compiled form (the
//!   policy compiled to bytecode for the RVM, regorus's virtual machine) and its interpreter. The
//!   faster is the one compared.
//!
//! How flat the gate is in rule count is measured apart: the gate at the four sizes, taking turns
//! in one run (the sizes above run one after the other, and this VM's speed drifts over minutes).
//!
//! Cedar cannot keep counters, and Rego could only if the host passed them in, so no peer
//! enforces the limits: their figures exclude counting, which favours them. Before timing, every
//! engine must give the gate's verdict on every request at every size; after timing, the gate,
//! with the counters the timing left, must still give the same verdicts (no limit tripped).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark fails loudly"
)]

use ed25519_dalek::{Signer, SigningKey};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::hint::black_box;
use std::str::FromStr;
use tollgate_bench::{load_average, run, time, Arm, Settings, Stats};
use tollgate_compiler::source::SourceSet;
use tollgate_runtime::audit::{AuditSink, Auditor, RECORD_SIZE};
use tollgate_runtime::gate::{self, ArgValue, Call, Decision, Slot, State, Verdict};
use tollgate_runtime::table::Table;
use tollgate_runtime::Reason;

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
const REQUESTS: usize = 512;
/// Repeat-guard slots per agent: the host's default (`tollgate-host`'s `repeat_room`).
const REPEAT_ROOM: usize = 1_024;
/// Limit counts no run reaches (a full run makes well under 10⁹ calls per agent and tool).
const NEVER: i64 = 1_000_000_000;

struct Workload {
    rules: usize,
    agents: usize,
    tools: usize,
    /// (agent, tool, amount cap) per permit.
    permits: Vec<(usize, usize, i64)>,
    levels: Vec<i64>,
}

fn workload(rules: usize) -> Workload {
    let tools = (rules / 2).clamp(1, 20);
    let permit_count = rules - tools;
    let agents = permit_count.div_ceil(tools).max(1);
    let permits = (0..permit_count)
        .map(|i| (i / tools, i % tools, 100 + ((i * 37) % 900) as i64))
        .collect();
    Workload {
        rules,
        agents,
        tools,
        permits,
        levels: (0..agents).map(|a| (a % 4) as i64).collect(),
    }
}

/// The Tollgate policy; `limits` adds a rate limit per tool, a budget over all tools and a
/// repeat guard on every other tool, none of which a run can trip.
fn tollgate_source(w: &Workload, limits: bool) -> String {
    let mut text = String::from("environments prod, sandbox;\ndomain money { private }\n");
    for t in 0..w.tools {
        let _ = writeln!(
            text,
            "tool svc{t}.op {{ domain money effect write cost {} args {{ amount: int[0..100000], region: enum[eu, us], note: string }} }}",
            1 + t % 3
        );
    }
    for a in 0..w.agents {
        let _ = writeln!(
            text,
            "agent a{a} {{ roles [team] attrs {{ level: {} }} }}",
            w.levels[a]
        );
    }
    for (a, t, cap) in &w.permits {
        let _ = writeln!(text, "permit agent a{a} to call svc{t}.op when args.amount <= {cap} and (context.env == prod or agent.level >= 2);");
    }
    for t in 0..w.tools {
        let _ = writeln!(text, "forbid any to call svc{t}.op when args.amount > 50000 or (args.region == us and args.note contains \"override\");");
    }
    if limits {
        for t in 0..w.tools {
            let _ = writeln!(text, "limit role team on svc{t}.op rate {NEVER} per 1h;");
            if t % 2 == 0 {
                let _ = writeln!(
                    text,
                    "limit role team on svc{t}.op repeat {NEVER} within 1h;"
                );
            }
        }
        let _ = writeln!(text, "limit role team budget {} per 1d;", NEVER * 1_000);
    }
    text
}

/// Cedar, indexed: two policies; the grants are entities.
const CEDAR_INDEXED: &str = r#"
permit(principal, action == Action::"call", resource is Grant)
when { resource.agent == principal && context.amount <= resource.cap && (context.env == "prod" || principal.level >= 2) };
forbid(principal, action == Action::"call", resource)
when { context.amount > 50000 || (context.region == "us" && context.note like "*override*") };
"#;

fn cedar_indexed_entities(w: &Workload) -> serde_json::Value {
    let mut entities: Vec<serde_json::Value> = (0..w.agents)
        .map(|a| serde_json::json!({ "uid": { "type": "Agent", "id": format!("a{a}") }, "attrs": { "level": w.levels[a] }, "parents": [] }))
        .collect();
    entities.extend((0..w.tools).map(|t| serde_json::json!({ "uid": { "type": "Tool", "id": format!("svc{t}.op") }, "attrs": {}, "parents": [] })));
    entities.extend(w.permits.iter().map(|(a, t, cap)| {
        serde_json::json!({
            "uid": { "type": "Grant", "id": format!("a{a}/svc{t}.op") },
            "attrs": { "agent": { "__entity": { "type": "Agent", "id": format!("a{a}") } }, "cap": cap },
            "parents": [{ "type": "Tool", "id": format!("svc{t}.op") }]
        })
    }));
    serde_json::Value::Array(entities)
}

/// Cedar, naive: one policy per grant and per tool's forbid.
fn cedar_naive_source(w: &Workload) -> String {
    let mut text = String::new();
    for (a, t, cap) in &w.permits {
        let _ = writeln!(
            text,
            "permit(principal == Agent::\"a{a}\", action == Action::\"call\", resource == Tool::\"svc{t}.op\") when {{ context.amount <= {cap} && (context.env == \"prod\" || principal.level >= 2) }};"
        );
    }
    for t in 0..w.tools {
        let _ = writeln!(
            text,
            "forbid(principal, action == Action::\"call\", resource == Tool::\"svc{t}.op\") when {{ context.amount > 50000 || (context.region == \"us\" && context.note like \"*override*\") }};"
        );
    }
    text
}

fn cedar_naive_entities(w: &Workload) -> serde_json::Value {
    serde_json::Value::Array(
        (0..w.agents)
            .map(|a| serde_json::json!({ "uid": { "type": "Agent", "id": format!("a{a}") }, "attrs": { "level": w.levels[a] }, "parents": [] }))
            .collect(),
    )
}

const REGO: &str = r#"
package tollgate
import rego.v1

default allow := false

allow if {
    p := data.permits[input.agent][input.tool]
    input.amount <= p
    context_ok
    not forbidden
}

context_ok if input.env == "prod"
context_ok if data.levels[input.agent] >= 2

forbidden if {
    data.forbids[input.tool]
    input.amount > 50000
}

forbidden if {
    data.forbids[input.tool]
    input.region == "us"
    contains(input.note, "override")
}
"#;

const REGO_RULE: &str = "data.tollgate.allow";

fn rego_data(w: &Workload) -> serde_json::Value {
    let mut permits = serde_json::Map::new();
    for (a, t, cap) in &w.permits {
        let entry = permits
            .entry(format!("a{a}"))
            .or_insert_with(|| serde_json::json!({}));
        entry
            .as_object_mut()
            .unwrap()
            .insert(format!("svc{t}.op"), serde_json::json!(cap));
    }
    let levels: serde_json::Map<String, serde_json::Value> = (0..w.agents)
        .map(|a| (format!("a{a}"), serde_json::json!(w.levels[a])))
        .collect();
    let forbids: serde_json::Map<String, serde_json::Value> = (0..w.tools)
        .map(|t| (format!("svc{t}.op"), serde_json::json!(true)))
        .collect();
    serde_json::json!({ "permits": permits, "levels": levels, "forbids": forbids })
}

#[derive(Clone)]
struct Req {
    agent: String,
    tool: String,
    amount: i64,
    region: &'static str,
    note: &'static str,
    env: &'static str,
}

/// The next number of a xorshift64 sequence (the workloads' fixed pseudo-random choices).
fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn requests(w: &Workload) -> Vec<Req> {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || xorshift(&mut seed);
    (0..REQUESTS)
        .map(|_| {
            let (a, t, cap) = w.permits[next() as usize % w.permits.len()];
            Req {
                agent: format!("a{a}"),
                tool: format!("svc{t}.op"),
                amount: (cap - 200 + (next() % 400) as i64).max(0),
                region: if next() % 2 == 0 { "eu" } else { "us" },
                note: ["", "refund", "override please"][next() as usize % 3],
                env: if next() % 3 == 0 { "sandbox" } else { "prod" },
            }
        })
        .collect()
}

struct NullSink;

impl AuditSink for NullSink {
    fn record(&mut self, record: &[u8; RECORD_SIZE]) {
        black_box(record);
    }
    fn checkpoint(&mut self, note: &[u8]) {
        black_box(note);
    }
}

const TIME: u64 = 1_767_261_600;

fn compile(source: &str, key: &SigningKey) -> Vec<u8> {
    let policy = tollgate_compiler::load(&SourceSet::single("bench.toll", source)).unwrap();
    tollgate_compiler::codegen::compile(&policy, key)
        .unwrap()
        .bytes
}

fn fresh_slots(table: &Table<'_>) -> Vec<Slot> {
    vec![Slot::EMPTY; gate::slots_needed(table, REPEAT_ROOM)]
}

/// The gate's verdicts; panics on a denial by a limit, which would make the peers' verdicts
/// (they keep no counters) incomparable.
fn gate_verdicts(table: &Table<'_>, state: &mut State<'_>, calls: &[Call<'_>]) -> Vec<bool> {
    calls
        .iter()
        .map(|call| {
            let decision: Decision = gate::decide(table, state, call);
            let counted = [
                Reason::RateLimited,
                Reason::BudgetExhausted,
                Reason::LoopGuard,
                Reason::StateFull,
            ];
            assert!(
                decision.limit.is_none() && !decision.reason.is_some_and(|r| counted.contains(&r)),
                "a limit decided {call:?}: {decision:?}; the limits must be too large to trip"
            );
            decision.verdict == Verdict::Allow
        })
        .collect()
}

fn agree(
    engine: &str,
    size: usize,
    expected: &[bool],
    theirs: impl Iterator<Item = bool>,
    requests: &[Req],
) {
    let mut checked = 0;
    for ((i, ours), theirs) in expected.iter().enumerate().zip(theirs) {
        let r = &requests[i];
        assert_eq!(
            *ours, theirs,
            "at {size} rules the gate and {engine} disagree on request {i} ({} calls {} with amount {}, region {}, note {:?}, env {})",
            r.agent, r.tool, r.amount, r.region, r.note, r.env
        );
        checked += 1;
    }
    assert_eq!(
        checked,
        expected.len(),
        "{engine} answered {checked} of {} requests",
        expected.len()
    );
}

struct Row {
    rules: usize,
    limits: usize,
    table_bytes: usize,
    bare_table_bytes: usize,
    allowed: usize,
    /// In the order the arms were timed.
    stats: Vec<(&'static str, Stats)>,
}

impl Row {
    fn p50(&self, arm: &str) -> f64 {
        self.stats
            .iter()
            .find(|(name, _)| *name == arm)
            .map_or(f64::NAN, |(_, s)| s.p50)
    }

    /// The faster of regorus's forms, and its name.
    fn regorus(&self) -> (f64, &'static str) {
        let (rvm, interpreter) = (self.p50("regorus-rvm"), self.p50("regorus-interp"));
        if rvm <= interpreter {
            (rvm, "rvm")
        } else {
            (interpreter, "interp")
        }
    }
}

/// The gate's arguments for each request, in name order.
fn gate_args(requests: &[Req]) -> Vec<[(&'static str, ArgValue<'_>); 3]> {
    requests
        .iter()
        .map(|r| {
            [
                ("amount", ArgValue::Int(r.amount)),
                ("note", ArgValue::Str(r.note)),
                ("region", ArgValue::Str(r.region)),
            ]
        })
        .collect()
}

/// The gate's calls for the requests, with their arguments from [`gate_args`].
fn gate_calls<'a>(
    requests: &'a [Req],
    args: &'a [[(&'static str, ArgValue<'a>); 3]],
) -> Vec<Call<'a>> {
    requests
        .iter()
        .zip(args)
        .map(|(r, args)| Call {
            agent: &r.agent,
            tool: &r.tool,
            args,
            via: &[],
            env: Some(r.env),
            time: TIME,
        })
        .collect()
}

fn measure_size(size: usize, settings: &Settings, key: &SigningKey) -> Row {
    let w = workload(size);
    assert_eq!(w.rules, w.permits.len() + w.tools);
    let requests = requests(&w);

    // Tollgate, with limits and without.
    let with_limits = compile(&tollgate_source(&w, true), key);
    let without_limits = compile(&tollgate_source(&w, false), key);
    let table = Table::load(&with_limits, &key.verifying_key()).unwrap();
    let bare_table = Table::load(&without_limits, &key.verifying_key()).unwrap();
    let limits = table.limit_count();
    let args = gate_args(&requests);
    let calls = gate_calls(&requests, &args);
    // A repeat room at most half full, as a host would size it, keeps its probes short.
    let distinct_calls = requests
        .iter()
        .map(|r| (&r.agent, &r.tool, r.amount, r.region, r.note))
        .collect::<HashSet<_>>();
    let busiest = (0..w.agents)
        .map(|a| {
            distinct_calls
                .iter()
                .filter(|c| *c.0 == format!("a{a}"))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        busiest * 2 <= REPEAT_ROOM,
        "an agent makes {busiest} distinct calls: more than half its repeat room"
    );

    let mut check_slots = fresh_slots(&table);
    let expected = gate_verdicts(
        &table,
        &mut State::new(&table, &mut check_slots).unwrap(),
        &calls,
    );
    let allowed = expected.iter().filter(|&&allow| allow).count();
    assert!(
        allowed > 0 && allowed < expected.len(),
        "the workload must both allow and deny"
    );
    let mut bare_check_slots = fresh_slots(&bare_table);
    agree(
        "the gate without limits",
        size,
        &expected,
        gate_verdicts(
            &bare_table,
            &mut State::new(&bare_table, &mut bare_check_slots).unwrap(),
            &calls,
        )
        .into_iter(),
        &requests,
    );

    // Cedar.
    let authorizer = cedar_policy::Authorizer::new();
    let action = cedar_policy::EntityUid::from_str(r#"Action::"call""#).unwrap();
    let context = |r: &Req| {
        cedar_policy::Context::from_json_value(serde_json::json!({ "amount": r.amount, "region": r.region, "note": r.note, "env": r.env }), None).unwrap()
    };
    let principal =
        |r: &Req| cedar_policy::EntityUid::from_str(&format!("Agent::\"{}\"", r.agent)).unwrap();
    let indexed_policies = cedar_policy::PolicySet::from_str(CEDAR_INDEXED).unwrap();
    let indexed_entities =
        cedar_policy::Entities::from_json_value(cedar_indexed_entities(&w), None).unwrap();
    let indexed_requests: Vec<cedar_policy::Request> = requests
        .iter()
        .map(|r| {
            let grant = cedar_policy::EntityUid::from_type_name_and_id(
                "Grant".parse().unwrap(),
                format!("{}/{}", r.agent, r.tool).parse().unwrap(),
            );
            cedar_policy::Request::new(principal(r), action.clone(), grant, context(r), None)
                .unwrap()
        })
        .collect();
    let naive_policies = cedar_policy::PolicySet::from_str(&cedar_naive_source(&w)).unwrap();
    let naive_entities =
        cedar_policy::Entities::from_json_value(cedar_naive_entities(&w), None).unwrap();
    let naive_requests: Vec<cedar_policy::Request> = requests
        .iter()
        .map(|r| {
            let tool = cedar_policy::EntityUid::from_str(&format!("Tool::\"{}\"", r.tool)).unwrap();
            cedar_policy::Request::new(principal(r), action.clone(), tool, context(r), None)
                .unwrap()
        })
        .collect();
    let cedar_allows = |requests: &[cedar_policy::Request],
                        policies: &cedar_policy::PolicySet,
                        entities: &cedar_policy::Entities| {
        requests
            .iter()
            .map(|request| {
                let response = authorizer.is_authorized(request, policies, entities);
                assert!(
                    response.diagnostics().errors().next().is_none(),
                    "cedar reported errors on {request}"
                );
                response.decision() == cedar_policy::Decision::Allow
            })
            .collect::<Vec<_>>()
    };
    agree(
        "cedar-indexed",
        size,
        &expected,
        cedar_allows(&indexed_requests, &indexed_policies, &indexed_entities).into_iter(),
        &requests,
    );
    agree(
        "cedar-naive",
        size,
        &expected,
        cedar_allows(&naive_requests, &naive_policies, &naive_entities).into_iter(),
        &requests,
    );

    // regorus: the interpreter and the RVM.
    let data = regorus::Value::from_json_str(&rego_data(&w).to_string()).unwrap();
    let inputs: Vec<regorus::Value> = requests
        .iter()
        .map(|r| {
            regorus::Value::from_json_str(&serde_json::json!({ "agent": r.agent, "tool": r.tool, "amount": r.amount, "region": r.region, "note": r.note, "env": r.env }).to_string())
                .unwrap()
        })
        .collect();
    let mut interpreter = regorus::Engine::new();
    interpreter
        .add_policy("tollgate.rego".to_owned(), REGO.to_owned())
        .unwrap();
    interpreter.add_data(data.clone()).unwrap();
    let mut compiler = regorus::Engine::new();
    compiler
        .add_policy("tollgate.rego".to_owned(), REGO.to_owned())
        .unwrap();
    let compiled = compiler.compile_with_entrypoint(&REGO_RULE.into()).unwrap();
    let program =
        regorus::languages::rego::compiler::Compiler::compile_from_policy(&compiled, &[REGO_RULE])
            .unwrap();
    let mut vm = regorus::rvm::vm::RegoVM::new();
    vm.load_program(program);
    vm.set_data(data).unwrap();
    let truth = regorus::Value::from(true);
    let interpreted: Vec<bool> = inputs
        .iter()
        .map(|input| {
            interpreter.set_input(input.clone());
            interpreter.eval_rule(REGO_RULE.to_owned()).unwrap() == truth
        })
        .collect();
    agree(
        "regorus (interpreter)",
        size,
        &expected,
        interpreted.into_iter(),
        &requests,
    );
    let executed: Vec<bool> = inputs
        .iter()
        .map(|input| {
            vm.set_input(input.clone());
            vm.execute().unwrap() == truth
        })
        .collect();
    agree(
        "regorus (rvm)",
        size,
        &expected,
        executed.into_iter(),
        &requests,
    );

    // Time them.
    let mut gate_slots = fresh_slots(&table);
    let mut gate_state = State::new(&table, &mut gate_slots).unwrap();
    let mut bare_slots = fresh_slots(&bare_table);
    let mut bare_state = State::new(&bare_table, &mut bare_slots).unwrap();
    // For the audit arms (at 1,000 rules only).
    let gate_key = SigningKey::from_bytes(&[3u8; 32]);
    let mut audit_slots = fresh_slots(&table);
    let mut audit_state = State::new(&table, &mut audit_slots).unwrap();
    let mut auditor = Auditor::new(
        NullSink,
        &gate_key,
        "tollgate/bench",
        "tollgate-gate",
        1_000,
        *table.policy_hash(),
    );
    let mut sign_slots = fresh_slots(&table);
    let mut sign_state = State::new(&table, &mut sign_slots).unwrap();
    let mut arms = vec![
        Arm::new("gate", REQUESTS, || {
            for call in &calls {
                black_box(gate::decide(&table, &mut gate_state, black_box(call)));
            }
        }),
        Arm::new("gate w/o limits", REQUESTS, || {
            for call in &calls {
                black_box(gate::decide(&bare_table, &mut bare_state, black_box(call)));
            }
        }),
        Arm::new("cedar-indexed", REQUESTS, || {
            for request in &indexed_requests {
                black_box(
                    authorizer
                        .is_authorized(black_box(request), &indexed_policies, &indexed_entities)
                        .decision(),
                );
            }
        }),
        Arm::new("cedar-naive", REQUESTS, || {
            for request in &naive_requests {
                black_box(
                    authorizer
                        .is_authorized(black_box(request), &naive_policies, &naive_entities)
                        .decision(),
                );
            }
        }),
        Arm::new("regorus-rvm", REQUESTS, || {
            for input in &inputs {
                vm.set_input(black_box(input).clone());
                black_box(vm.execute().unwrap());
            }
        }),
        Arm::new("regorus-interp", REQUESTS, || {
            for input in &inputs {
                interpreter.set_input(black_box(input).clone());
                black_box(interpreter.eval_rule(REGO_RULE.to_owned()).unwrap());
            }
        }),
    ];
    if size == 1_000 {
        // The audit cost: a decision and its record (hash chain + Merkle tree, a signed
        // checkpoint every 1,000 records), and, for comparison, a signature on every record.
        arms.push(Arm::new("gate+audit", REQUESTS, || {
            for call in &calls {
                let decision = gate::decide(&table, &mut audit_state, black_box(call));
                auditor.record(call, &decision);
                black_box(decision);
            }
        }));
        // The least SHA-256 work a record can take with the fields DESIGN.md gives it, a per-record
        // chain and an RFC 6962 tree (whose checkpoints C2SP tooling checks): a leaf of at most
        // 119 bytes (0x00, sequence, time, verdict, rule and reason, one digest of what is
        // constant for a session, one of the tool and arguments, the previous leaf's hash: two
        // compressions), an interior node per record on average (0x01 ‖ left ‖ right, 65 bytes:
        // two) and the arguments' digest (one at the least). Five compressions, nothing else.
        arms.push(Arm::new("sha-256 floor (5 blocks)", REQUESTS, || {
            let mut leaf = [0u8; 118];
            let mut args = [0u8; 54];
            for i in 0..REQUESTS {
                leaf[0] = i as u8;
                args[0] = i as u8;
                let digest = tollgate_runtime::audit::leaf_hash(black_box(&args));
                leaf[86..118].copy_from_slice(&digest);
                let hash = tollgate_runtime::audit::leaf_hash(black_box(&leaf));
                black_box(tollgate_runtime::audit::node_hash(
                    &hash,
                    black_box(&digest),
                ));
            }
        }));
        arms.push(Arm::new("gate+audit+sign-each", REQUESTS, || {
            for call in &calls {
                let decision = gate::decide(&table, &mut sign_state, black_box(call));
                let record = tollgate_runtime::audit::decision_record(
                    call,
                    &decision,
                    table.policy_hash(),
                    1,
                );
                black_box(gate_key.sign(&record));
                black_box(decision);
            }
        }));
    }
    run(&mut arms, settings);
    let stats: Vec<(&'static str, Stats)> =
        arms.iter().map(|arm| (arm.name, arm.stats())).collect();
    drop(arms);

    // The counters the timing left must not have changed a verdict.
    agree(
        "the gate after timing",
        size,
        &expected,
        gate_verdicts(&table, &mut gate_state, &calls).into_iter(),
        &requests,
    );

    let row = Row {
        rules: size,
        limits,
        table_bytes: with_limits.len(),
        bare_table_bytes: without_limits.len(),
        allowed,
        stats,
    };
    println!("{size} rules ({} agents, {} tools, {limits} limits; {allowed} of {REQUESTS} requests allowed by every engine):", w.agents, w.tools);
    for (name, s) in &row.stats {
        println!(
            "  {name:<22} p50 {:>9}   p10–p90 {:>9} – {:<9} {:>5} passes",
            time(s.p50),
            time(s.p10),
            time(s.p90),
            s.samples
        );
    }
    row
}

/// The gate at every size, its arms taking turns in one run: this virtual machine's speed drifts
/// by up to 2× over minutes, and the sizes above are measured one after the other, so their
/// ratio can show the drift more than the rule count (0.63× to 2.10× in three quick runs on
/// 2026-11-28). Here every size sees the same phases. Returns (rules, p50 ns) per size.
fn flatness(settings: &Settings, key: &SigningKey) -> Vec<(usize, f64)> {
    struct Setup {
        table: Vec<u8>,
        requests: Vec<Req>,
    }
    let setups: Vec<(usize, Setup)> = SIZES
        .iter()
        .map(|&size| {
            let w = workload(size);
            let setup = Setup {
                table: compile(&tollgate_source(&w, true), key),
                requests: requests(&w),
            };
            (size, setup)
        })
        .collect();
    let tables: Vec<Table<'_>> = setups
        .iter()
        .map(|(_, s)| Table::load(&s.table, &key.verifying_key()).unwrap())
        .collect();
    let args: Vec<Vec<[(&str, ArgValue<'_>); 3]>> =
        setups.iter().map(|(_, s)| gate_args(&s.requests)).collect();
    let calls: Vec<Vec<Call<'_>>> = setups
        .iter()
        .zip(&args)
        .map(|((_, s), args)| gate_calls(&s.requests, args))
        .collect();
    let mut slots: Vec<Vec<Slot>> = tables.iter().map(fresh_slots).collect();
    let mut states: Vec<State<'_>> = tables
        .iter()
        .zip(slots.iter_mut())
        .map(|(table, slots)| State::new(table, slots).unwrap())
        .collect();
    let names = [
        "gate, 10 rules",
        "gate, 100 rules",
        "gate, 1000 rules",
        "gate, 10000 rules",
    ];
    let mut arms: Vec<Arm<'_>> = tables
        .iter()
        .zip(states.iter_mut())
        .zip(&calls)
        .zip(names)
        .map(|(((table, state), calls), name)| {
            Arm::new(name, REQUESTS, move || {
                for call in calls {
                    black_box(gate::decide(table, state, black_box(call)));
                }
            })
        })
        .collect();
    run(&mut arms, settings);
    let p50s: Vec<(usize, f64)> = setups
        .iter()
        .zip(&arms)
        .map(|((size, _), arm)| (*size, arm.stats().p50))
        .collect();
    drop(arms);
    p50s
}

fn ratio(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}×")
    } else {
        format!("{value:.1}×")
    }
}

fn target(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "not met"
    }
}

/// `sparse`: the table's bytes and rules at the issue's table-size shape.
fn report(rows: &[Row], flat: &[(usize, f64)], sparse: Option<(usize, usize)>) {
    println!();
    println!("decide, p50 per request over passes of {REQUESTS} requests; peers enforce no limits (the gate does), which favours them");
    println!(
        "{:>7} {:>6} {:>9} {:>15} {:>14} {:>12} {:>12} {:>15} {:>15} {:>17} {:>15} {:>13} {:>22}",
        "rules",
        "limits",
        "gate",
        "gate w/o limits",
        "cedar-indexed",
        "cedar-naive",
        "regorus-rvm",
        "regorus-interp",
        "cedar-idx/gate",
        "cedar-naive/gate",
        "regorus/gate",
        "table B/rule",
        "table w/o limits B/rule"
    );
    for row in rows {
        let gate = row.p50("gate");
        let (regorus, form) = row.regorus();
        println!(
            "{:>7} {:>6} {:>9} {:>15} {:>14} {:>12} {:>12} {:>15} {:>15} {:>17} {:>15} {:>13.1} {:>22.1}",
            row.rules,
            row.limits,
            time(gate),
            time(row.p50("gate w/o limits")),
            time(row.p50("cedar-indexed")),
            time(row.p50("cedar-naive")),
            time(row.p50("regorus-rvm")),
            time(row.p50("regorus-interp")),
            ratio(row.p50("cedar-indexed") / gate),
            ratio(row.p50("cedar-naive") / gate),
            format!("{} ({form})", ratio(regorus / gate)),
            row.table_bytes as f64 / row.rules as f64,
            row.bare_table_bytes as f64 / row.rules as f64
        );
    }
    println!("table B/rule: the table's bytes divided by the permits and forbids (rules); the limits are not counted as rules");
    let find = |rules: usize| rows.iter().find(|row| row.rules == rules);
    if let (Some(small), Some(large)) = (find(10), find(10_000)) {
        let growth = large.p50("gate") / small.p50("gate");
        println!(
            "gate cost from 10 to 10,000 rules, sizes measured one after the other (above): {growth:.2}×"
        );
    }
    let at = |rules: usize| {
        flat.iter()
            .find(|(size, _)| *size == rules)
            .map(|(_, p50)| *p50)
    };
    if let (Some(small), Some(large)) = (at(10), at(10_000)) {
        let growth = large / small;
        let each: Vec<String> = flat
            .iter()
            .map(|(size, p50)| format!("{size}: {}", time(*p50)))
            .collect();
        println!(
            "gate cost from 10 to 10,000 rules, sizes taking turns ({}): {growth:.2}× (target ≤ 2×: {})",
            each.join(", "),
            target(growth <= 2.0)
        );
    }
    let Some(row) = find(1_000) else {
        return;
    };
    let gate = row.p50("gate");
    let cedar = row.p50("cedar-indexed") / gate;
    let (regorus, form) = row.regorus();
    let regorus = regorus / gate;
    let audited = row.p50("gate+audit");
    let audit = audited - gate;
    let bytes = row.table_bytes as f64 / row.rules as f64;
    let bare_bytes = row.bare_table_bytes as f64 / row.rules as f64;
    println!(
        "at 1,000 rules ({} of {REQUESTS} requests allowed):",
        row.allowed
    );
    println!(
        "  decide p50 {} with limits (target ≤ 60 ns: {})",
        time(gate),
        target(gate <= 60.0)
    );
    println!(
        "  cedar-indexed ÷ gate {} (target ≥ 50×: {})",
        ratio(cedar),
        target(cedar >= 50.0)
    );
    println!(
        "  regorus ({form}) ÷ gate {} (target ≥ 50×: {})",
        ratio(regorus),
        target(regorus >= 50.0)
    );
    println!(
        "  table {bytes:.1} bytes per rule with its limits, {bare_bytes:.1} without (target ≤ 64: {} with, {} without)",
        target(bytes <= 64.0),
        target(bare_bytes <= 64.0)
    );
    if let Some((bytes, rules)) = sparse {
        println!(
            "  table at the target's shape (10,000 rules over 1,000 agents × 1,000 tools): {:.1} bytes per rule (target ≤ 64: {})",
            bytes as f64 / rules as f64,
            target(bytes as f64 / rules as f64 <= 64.0)
        );
    }
    println!(
        "  audit (hash chain + Merkle tree, checkpoint every 1,000): {} on top of the decision (target ≤ 300 ns: {}), {} in all = {:.2}× the bare decision; signing every record instead: {} in all = {}",
        time(audit),
        target(audit <= 300.0),
        time(audited),
        audited / gate,
        time(row.p50("gate+audit+sign-each")),
        ratio(row.p50("gate+audit+sign-each") / gate)
    );
    let floor = row.p50("sha-256 floor (5 blocks)");
    println!(
        "  SHA-256 here: {} per 64-byte block; the least a record can hash with DESIGN.md's fields, a per-record chain and an RFC 6962 tree is five blocks: {} (the 300 ns target {})",
        time(floor / 5.0),
        time(floor),
        if floor > 300.0 {
            "is below that floor on this machine"
        } else {
            "is above that floor"
        }
    );
    println!("summary: decide p50 {gate:.0} ns at 1000 rules (with limits); cedar-indexed/gate {cedar:.1}×; regorus/gate {regorus:.1}×; audit {audit:.0} ns");
}

/// The list workload: `paths: list[path][1..16]` under one permit, `all p in args.paths { p
/// starts_with "/workspace/" }`, decided for calls of 1, 4 and 16 paths in normal form; the
/// cost per element is the slope from 1 to 16 paths. (No peer takes part: the comparison above
/// is the fair one; this measures how the gate's work grows with a list. `tests/tests/no_alloc.rs`
/// shows list decisions allocate nothing.)
fn lists(settings: &Settings, key: &SigningKey) {
    let source = "domain files { private }\n\
        tool fs.read_many { domain files effect read args { paths: list[path][1..16] } }\n\
        agent reader { roles [r] }\n\
        permit agent reader to call fs.read_many when all p in args.paths { p starts_with \"/workspace/\" };\n";
    let bytes = compile(source, key);
    let table = Table::load(&bytes, &key.verifying_key()).unwrap();
    let paths: Vec<String> = (0..16)
        .map(|i| format!("/workspace/docs/file{i}.md"))
        .collect();
    let counts = [1usize, 4, 16];
    let items: Vec<Vec<ArgValue<'_>>> = counts
        .iter()
        .map(|&n| paths[..n].iter().map(|p| ArgValue::Str(p)).collect())
        .collect();
    let names = ["gate, 1 path", "gate, 4 paths", "gate, 16 paths"];
    let p50 = list_calls_p50(
        &table,
        ("reader", "fs.read_many", "paths"),
        &items,
        &names,
        settings,
    );
    println!(
        "\nlists: `all p in args.paths {{ p starts_with \"/workspace/\" }}` over list[path][1..16]"
    );
    for (name, p50) in names.iter().zip(&p50) {
        println!("  {name:<16} decide p50 {}", time(*p50));
    }
    println!(
        "  per element: {} (the slope from 1 to 16 paths)",
        time((p50[2] - p50[0]) / 15.0)
    );
}

/// The nested list workload: the memory server's `create_entities`, entities each with a list of
/// observations, under `all e in args.entities { all o in e.observations { not o contains
/// "password" } }`, decided for 1 entity of 1 observation, 4 of 4 and 16 of 1 and 1 of 16; the
/// cost per observation is the slope from 1 × 1 to 4 × 4.
fn nested_lists(settings: &Settings, key: &SigningKey) {
    let source = "domain knowledge { private }\n\
        tool memory.create_entities { domain knowledge effect write args { entities: list[{ name: string, observations: list[string][0..16] }][1..16] } }\n\
        agent curator { roles [r] }\n\
        permit agent curator to call memory.create_entities when all e in args.entities { all o in e.observations { not o contains \"password\" } };\n";
    let bytes = compile(source, key);
    let table = Table::load(&bytes, &key.verifying_key()).unwrap();
    let observations: Vec<String> = (0..16)
        .map(|i| format!("observation number {i} of the entity"))
        .collect();
    let shapes = [(1usize, 1usize), (4, 4), (16, 1), (1, 16)];
    let inner: Vec<Vec<Vec<ArgValue<'_>>>> = shapes
        .iter()
        .map(|&(entities, each)| {
            (0..entities)
                .map(|_| {
                    observations[..each]
                        .iter()
                        .map(|o| ArgValue::Str(o))
                        .collect()
                })
                .collect()
        })
        .collect();
    let fields: Vec<Vec<[(&str, ArgValue<'_>); 2]>> = inner
        .iter()
        .map(|entities| {
            entities
                .iter()
                .map(|list| {
                    [
                        ("name", ArgValue::Str("Ada")),
                        ("observations", ArgValue::List(list)),
                    ]
                })
                .collect()
        })
        .collect();
    let elements: Vec<Vec<ArgValue<'_>>> = fields
        .iter()
        .map(|entities| entities.iter().map(|f| ArgValue::Object(f)).collect())
        .collect();
    let names = ["1 × 1", "4 × 4", "16 × 1", "1 × 16"];
    let p50 = list_calls_p50(
        &table,
        ("curator", "memory.create_entities", "entities"),
        &elements,
        &names,
        settings,
    );
    println!(
        "\nnested lists: `all e in args.entities {{ all o in e.observations {{ not o contains \"password\" }} }}`, entities × observations each"
    );
    for (name, p50) in names.iter().zip(&p50) {
        println!("  gate, {name:<9} decide p50 {}", time(*p50));
    }
    println!(
        "  per observation: {} (the slope from 1 × 1 to 4 × 4)",
        time((p50[1] - p50[0]) / 15.0)
    );
}

/// Times `agent` calling `tool` with one list argument `arg` holding each of `lists` (every call
/// allowed, each with a state of its own), the arms named `names`: their p50s, in order.
fn list_calls_p50(
    table: &Table<'_>,
    (agent, tool, arg): (&str, &str, &str),
    lists: &[Vec<ArgValue<'_>>],
    names: &[&'static str],
    settings: &Settings,
) -> Vec<f64> {
    let args: Vec<[(&str, ArgValue<'_>); 1]> = lists
        .iter()
        .map(|list| [(arg, ArgValue::List(list))])
        .collect();
    let calls: Vec<Call<'_>> = args
        .iter()
        .map(|args| Call {
            agent,
            tool,
            args,
            via: &[],
            env: None,
            time: TIME,
        })
        .collect();
    let mut slots: Vec<Vec<Slot>> = calls.iter().map(|_| fresh_slots(table)).collect();
    let mut states: Vec<State<'_>> = slots
        .iter_mut()
        .map(|slots| State::new(table, slots).unwrap())
        .collect();
    for (call, state) in calls.iter().zip(states.iter_mut()) {
        assert_eq!(gate::decide(table, state, call).verdict, Verdict::Allow);
    }
    let mut arms: Vec<Arm<'_>> = calls
        .iter()
        .zip(states.iter_mut())
        .zip(names)
        .map(|((call, state), name)| {
            Arm::new(name, 1, move || {
                black_box(gate::decide(table, state, black_box(call)));
            })
        })
        .collect();
    run(&mut arms, settings);
    arms.iter().map(|arm| arm.stats().p50).collect()
}

/// The table-size target's shape: 10,000 permits, one per (agent, tool) pair chosen at random,
/// over 1,000 agents and 1,000 tools. Prints the compile time and the table's bytes per rule;
/// returns (bytes, rules). Only the size is measured here: the decide figures
/// above are the comparison.
fn sparse_table(key: &SigningKey) -> (usize, usize) {
    const AGENTS: usize = 1_000;
    const TOOLS: usize = 1_000;
    const RULES: usize = 10_000;
    let mut text = String::from("domain money { private }\n");
    for t in 0..TOOLS {
        let _ = writeln!(
            text,
            "tool svc{t}.op {{ domain money effect write args {{ amount: int[0..100000] }} }}"
        );
    }
    for a in 0..AGENTS {
        let _ = writeln!(text, "agent a{a} {{ roles [team] }}");
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut pairs = HashSet::new();
    while pairs.len() < RULES {
        xorshift(&mut seed);
        pairs.insert((
            (seed % AGENTS as u64) as usize,
            ((seed >> 32) % TOOLS as u64) as usize,
        ));
    }
    let mut pairs: Vec<(usize, usize)> = pairs.into_iter().collect();
    pairs.sort_unstable();
    for (i, (a, t)) in pairs.iter().enumerate() {
        let _ = writeln!(
            text,
            "permit agent a{a} to call svc{t}.op when args.amount <= {};",
            100 + i % 900
        );
    }
    let started = std::time::Instant::now();
    let bytes = compile(&text, key);
    let elapsed = started.elapsed();
    println!(
        "\ntable at 10,000 rules over 1,000 agents × 1,000 tools: {} bytes ({:.1} per rule), compiled in {:.1} s",
        bytes.len(),
        bytes.len() as f64 / RULES as f64,
        elapsed.as_secs_f64()
    );
    (bytes.len(), RULES)
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick")
        || std::env::var_os("TOLLGATE_BENCH_QUICK").is_some_and(|v| v == "1");
    let settings = if quick {
        Settings::QUICK
    } else {
        Settings::FULL
    };
    println!(
        "tollgate gate vs cedar-policy 4.14 and regorus 0.14 ({} run: {} rounds of {} ms per arm; regorus compared in its faster form of rvm and interpreter)",
        if quick { "quick" } else { "full" },
        settings.rounds,
        settings.slice.as_millis()
    );
    let load_at_start = load_average();
    let key = SigningKey::from_bytes(&[1u8; 32]);
    let rows: Vec<Row> = SIZES
        .iter()
        .map(|&size| measure_size(size, &settings, &key))
        .collect();
    // Other work on the machine slows every engine; the arms take turns so that it slows them
    // alike, but the absolute figures should be read beside the load.
    let flat = flatness(&settings, &key);
    lists(&settings, &key);
    nested_lists(&settings, &key);
    let sparse = sparse_table(&key);
    println!(
        "\nload average (1, 5, 15 min): {load_at_start} at the start, {} at the end",
        load_average()
    );
    report(&rows, &flat, Some(sparse));
}
