//! `cargo bench --manifest-path bench/Cargo.toml`: the gate against cedar-policy and regorus on
//! the same generated workload (agents × tools, a conditional permit per pair, a conditional
//! forbid per tool) at 10, 100, 1,000 and 10,000 rules; the audit cost (hash chain + Merkle tree,
//! and per-record signing for comparison); and table size. Criterion measures; at the end the
//! medians are read back from `target/criterion` and the ratios the issue asks for are printed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, reason = "a benchmark fails loudly")]

use criterion::{black_box, criterion_group, BenchmarkId, Criterion};
use ed25519_dalek::{Signer, SigningKey};
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;
use tollgate_compiler::source::SourceSet;
use tollgate_runtime::audit::{AuditSink, Auditor, RECORD_SIZE};
use tollgate_runtime::gate::{self, ArgValue, Call, Slot};
use tollgate_runtime::table::Table;

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
const REQUESTS: usize = 512;

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
    let permits = (0..permit_count).map(|i| (i / tools, i % tools, 100 + ((i * 37) % 900) as i64)).collect();
    Workload {
        rules,
        agents,
        tools,
        permits,
        levels: (0..agents).map(|a| (a % 4) as i64).collect(),
    }
}

fn tollgate_source(w: &Workload) -> String {
    let mut text = String::from("environments prod, sandbox;\ndomain money { private }\n");
    for t in 0..w.tools {
        let _ = writeln!(text, "tool svc{t}.op {{ domain money effect write args {{ amount: int[0..100000], region: enum[eu, us], note: string }} }}");
    }
    for a in 0..w.agents {
        let _ = writeln!(text, "agent a{a} {{ roles [team] attrs {{ level: {} }} }}", w.levels[a]);
    }
    for (a, t, cap) in &w.permits {
        let _ = writeln!(text, "permit agent a{a} to call svc{t}.op when args.amount <= {cap} and (context.env == prod or agent.level >= 2);");
    }
    for t in 0..w.tools {
        let _ = writeln!(text, "forbid any to call svc{t}.op when args.amount > 50000 or (args.region == us and args.note contains \"override\");");
    }
    text
}

fn cedar_source(w: &Workload) -> String {
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

fn rego_data(w: &Workload) -> serde_json::Value {
    let mut permits = serde_json::Map::new();
    for (a, t, cap) in &w.permits {
        let entry = permits.entry(format!("a{a}")).or_insert_with(|| serde_json::json!({}));
        entry.as_object_mut().unwrap().insert(format!("svc{t}.op"), serde_json::json!(cap));
    }
    let levels: serde_json::Map<String, serde_json::Value> = (0..w.agents).map(|a| (format!("a{a}"), serde_json::json!(w.levels[a]))).collect();
    let forbids: serde_json::Map<String, serde_json::Value> = (0..w.tools).map(|t| (format!("svc{t}.op"), serde_json::json!(true))).collect();
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

fn requests(w: &Workload) -> Vec<Req> {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
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

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[1u8; 32]);
    let mut sizes_report = Vec::new();
    let mut group = c.benchmark_group("decide");
    group.sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    for &size in &SIZES {
        let w = workload(size);
        let requests = requests(&w);

        // Tollgate
        let policy = tollgate_compiler::load(&SourceSet::single("bench.toll", &tollgate_source(&w))).unwrap();
        let compiled = tollgate_compiler::codegen::compile(&policy, &key).unwrap();
        sizes_report.push((w.rules, compiled.bytes.len()));
        let table = Table::load(&compiled.bytes, &key.verifying_key()).unwrap();
        let mut state = vec![Slot::EMPTY; gate::slots_needed(&table, 64) * 2];
        let args: Vec<[(&str, ArgValue<'_>); 3]> = requests
            .iter()
            .map(|r| [("amount", ArgValue::Int(r.amount)), ("note", ArgValue::Str(r.note)), ("region", ArgValue::Str(r.region))])
            .collect();
        let calls: Vec<Call<'_>> = requests
            .iter()
            .zip(&args)
            .map(|(r, args)| Call { agent: &r.agent, tool: &r.tool, args, via: &[], env: Some(r.env), time: 1_767_261_600 })
            .collect();
        group.bench_with_input(BenchmarkId::new("tollgate", size), &calls, |b, calls| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % calls.len();
                black_box(gate::decide(&table, &mut state, &calls[i]))
            })
        });
        if size == 1_000 {
            let gate_key = SigningKey::from_bytes(&[3u8; 32]);
            let mut auditor = Auditor::new(NullSink, &gate_key, "tollgate/bench", "tollgate-gate", 1_000, *table.policy_hash());
            group.bench_with_input(BenchmarkId::new("tollgate+audit", size), &calls, |b, calls| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % calls.len();
                    let decision = gate::decide(&table, &mut state, &calls[i]);
                    auditor.record(&calls[i], &decision);
                    black_box(decision)
                })
            });
            group.bench_with_input(BenchmarkId::new("tollgate+audit+sign-each", size), &calls, |b, calls| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % calls.len();
                    let decision = gate::decide(&table, &mut state, &calls[i]);
                    let record = tollgate_runtime::audit::decision_record(&calls[i], &decision, table.policy_hash(), 1);
                    black_box(gate_key.sign(&record));
                    black_box(decision)
                })
            });
        }

        // Cedar
        let cedar_policies = cedar_policy::PolicySet::from_str(&cedar_source(&w)).unwrap();
        let entities_json: Vec<serde_json::Value> = (0..w.agents)
            .map(|a| serde_json::json!({ "uid": { "type": "Agent", "id": format!("a{a}") }, "attrs": { "level": w.levels[a] }, "parents": [] }))
            .collect();
        let entities = cedar_policy::Entities::from_json_value(serde_json::Value::Array(entities_json), None).unwrap();
        let action = cedar_policy::EntityUid::from_str(r#"Action::"call""#).unwrap();
        let cedar_requests: Vec<cedar_policy::Request> = requests
            .iter()
            .map(|r| {
                let context = cedar_policy::Context::from_json_value(
                    serde_json::json!({ "amount": r.amount, "region": r.region, "note": r.note, "env": r.env }),
                    None,
                )
                .unwrap();
                cedar_policy::Request::new(
                    cedar_policy::EntityUid::from_str(&format!("Agent::\"{}\"", r.agent)).unwrap(),
                    action.clone(),
                    cedar_policy::EntityUid::from_str(&format!("Tool::\"{}\"", r.tool)).unwrap(),
                    context,
                    None,
                )
                .unwrap()
            })
            .collect();
        let authorizer = cedar_policy::Authorizer::new();
        // Same answers, or the comparison means nothing.
        let mut check_state = vec![Slot::EMPTY; gate::slots_needed(&table, 64) * 2];
        for (call, request) in calls.iter().zip(&cedar_requests) {
            let ours = gate::decide(&table, &mut check_state, call).verdict == gate::Verdict::Allow;
            let theirs = authorizer.is_authorized(request, &cedar_policies, &entities).decision() == cedar_policy::Decision::Allow;
            assert_eq!(ours, theirs, "tollgate and cedar disagree on {call:?}");
        }
        group.bench_with_input(BenchmarkId::new("cedar", size), &cedar_requests, |b, requests| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % requests.len();
                black_box(authorizer.is_authorized(&requests[i], &cedar_policies, &entities).decision())
            })
        });

        // regorus
        let mut engine = regorus::Engine::new();
        engine.add_policy("tollgate.rego".to_owned(), REGO.to_owned()).unwrap();
        engine.add_data(regorus::Value::from_json_str(&rego_data(&w).to_string()).unwrap()).unwrap();
        let inputs: Vec<regorus::Value> = requests
            .iter()
            .map(|r| {
                regorus::Value::from_json_str(
                    &serde_json::json!({ "agent": r.agent, "tool": r.tool, "amount": r.amount, "region": r.region, "note": r.note, "env": r.env }).to_string(),
                )
                .unwrap()
            })
            .collect();
        for (call, input) in calls.iter().zip(&inputs).take(64) {
            engine.set_input(input.clone());
            let theirs = engine.eval_rule("data.tollgate.allow".to_owned()).unwrap() == regorus::Value::from(true);
            let ours = gate::decide(&table, &mut check_state, call).verdict == gate::Verdict::Allow;
            assert_eq!(ours, theirs, "tollgate and regorus disagree on {call:?}");
        }
        group.bench_with_input(BenchmarkId::new("regorus", size), &inputs, |b, inputs| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % inputs.len();
                engine.set_input(inputs[i].clone());
                black_box(engine.eval_rule("data.tollgate.allow".to_owned()).unwrap())
            })
        });
    }
    group.finish();
    SIZE_REPORT.with(|r| *r.borrow_mut() = sizes_report);
}

thread_local! {
    static SIZE_REPORT: std::cell::RefCell<Vec<(usize, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Criterion's median for one benchmark, in nanoseconds.
fn median(function: &str, size: usize) -> Option<f64> {
    let path = format!("target/criterion/decide/{function}/{size}/new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn summary() {
    println!("\n{:>7} {:>12} {:>12} {:>12} {:>14} {:>14} {:>12}", "rules", "tollgate", "cedar", "regorus", "cedar/gate", "regorus/gate", "table B/rule");
    let sizes = SIZE_REPORT.with(|r| r.borrow().clone());
    for &size in &SIZES {
        let (Some(gate), Some(cedar), Some(rego)) = (median("tollgate", size), median("cedar", size), median("regorus", size)) else {
            continue;
        };
        let bytes = sizes.iter().find(|(r, _)| *r == size).map_or(0, |(_, b)| *b);
        println!(
            "{:>7} {:>10.0}ns {:>10.0}ns {:>10.0}ns {:>13.0}x {:>13.0}x {:>12.1}",
            size,
            gate,
            cedar,
            rego,
            cedar / gate,
            rego / gate,
            bytes as f64 / size as f64
        );
    }
    if let (Some(small), Some(large)) = (median("tollgate", 10), median("tollgate", 10_000)) {
        println!("gate cost from 10 to 10,000 rules: {:.2}x (target: at most 2x)", large / small);
    }
    if let (Some(gate), Some(cedar)) = (median("tollgate", 1_000), median("cedar", 1_000)) {
        println!("at 1,000 rules the gate is {:.0}x faster than cedar-policy (target: at least 1,000x)", cedar / gate);
    }
    if let (Some(bare), Some(audited), Some(signed)) = (
        median("tollgate", 1_000),
        median("tollgate+audit", 1_000),
        median("tollgate+audit+sign-each", 1_000),
    ) {
        println!(
            "audit (hash chain + Merkle tree, checkpoint every 1,000): {:.0}ns = {:.2}x the bare decision (target: at most 3x); signing every record instead: {:.0}ns = {:.1}x",
            audited,
            audited / bare,
            signed,
            signed / bare
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
