//! The runtime allocates nothing: a counting global allocator watches `Table::load`,
//! `credential::admit`, `credential::decide`, `gate::decide` and the audit log (records and
//! checkpoints) and must see zero allocations, also for calls with lists and objects (`ALL`,
//! `ANY`, `VAR`, `FIELD`, `LEN`) on a hand-assembled table, and with lists inside lists (nested
//! bodies, `VAR_UP`, a repeat guard hashing them) on a compiled one. One test in this binary, so no other test thread
//! allocates while it measures.

// The only unsafe code in the workspace: a `GlobalAlloc` must be an `unsafe impl`. It forwards
// every call unchanged to the system allocator and only counts.
#![allow(
    unsafe_code,
    reason = "a counting allocator has to implement the unsafe GlobalAlloc trait"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test should fail loudly at the first surprise"
)]

use ed25519_dalek::SigningKey;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use tollgate_compiler::codegen;
use tollgate_compiler::credential::{issue, Claims};
use tollgate_runtime::audit::{AuditSink, Auditor, RECORD_SIZE};
use tollgate_runtime::credential::{self, SessionCall};
use tollgate_runtime::format::{arg, op, ArgRecord};
use tollgate_runtime::gate::{self, ArgValue, Call, Slot};
use tollgate_runtime::table::Table;
use tollgate_tests::tables::TableBuilder;
use tollgate_tests::{load_dir, root};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; counting touches only an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same layout, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A sink that keeps the last record and note in fixed buffers.
struct FixedSink {
    records: usize,
    last: [u8; RECORD_SIZE],
    notes: usize,
}

impl AuditSink for FixedSink {
    fn record(&mut self, record: &[u8; RECORD_SIZE]) {
        self.records += 1;
        self.last = *record;
    }
    fn checkpoint(&mut self, _note: &[u8]) {
        self.notes += 1;
    }
}

#[test]
fn load_admit_decide_and_audit_allocate_nothing() {
    // Preparation may allocate: compiling, issuing, the state buffer.
    let compiler = SigningKey::from_bytes(&[1u8; 32]);
    let issuer = SigningKey::from_bytes(&[2u8; 32]);
    let gate_key = SigningKey::from_bytes(&[3u8; 32]);
    let (_, policy) = load_dir(&root().join("examples/support-desk"));
    let bytes = codegen::compile(&policy, &compiler).unwrap().bytes;
    let table = Table::load(&bytes, &compiler.verifying_key()).unwrap();
    let scope: Vec<String> = Vec::new();
    let credential = issue(
        &table,
        &Claims {
            agent: "support_bot",
            via: &[],
            env: Some("prod"),
            audience: None,
            scope: &scope,
            issued_at: 1_767_261_600,
            ttl: 600,
            id: [0; 16],
        },
        &issuer,
        &|_| false,
    )
    .unwrap();
    let mut slots = vec![Slot::EMPTY; gate::slots_needed(&table, 64)];
    let compiler_public = compiler.verifying_key();
    let issuer_public = issuer.verifying_key();
    let args = [
        ("amount", ArgValue::Int(50)),
        ("currency", ArgValue::Str("usd")),
        ("customer_id", ArgValue::Str("c-1")),
    ];

    let list_bytes = list_table();
    let mut list_slots = vec![Slot::EMPTY; 64];
    let edit = [
        ("text", ArgValue::Str("hello")),
        ("path", ArgValue::Str("/ws/a")),
    ];
    let edits = [ArgValue::Object(&edit), ArgValue::Object(&edit)];
    let paths = [
        ArgValue::Str("/ws/a"),
        ArgValue::Str("/ws/b"),
        ArgValue::Str("/ws/c"),
    ];
    let list_args = [
        ("edits", ArgValue::List(&edits)),
        ("paths", ArgValue::List(&paths)),
    ];

    // Lists inside lists: entities with their observations, an inner body reading its entity.
    let nested_source = "domain k { private }\n\
        tool memory.create_entities { domain k effect write args { entities: list[{ name: string, observations: list[string][0..8] }][1..8] } }\n\
        agent curator { roles [r] }\n\
        permit agent curator to call memory.create_entities\n\
            when all e in args.entities { all o in e.observations { not o contains \"password\" and o != e.name } };\n\
        limit agent curator on memory.create_entities repeat 5 within 1h;\n";
    let nested_policy = tollgate_compiler::load(&tollgate_compiler::source::SourceSet::single(
        "nested.toll",
        nested_source,
    ))
    .unwrap();
    let nested_bytes = codegen::compile(&nested_policy, &compiler).unwrap().bytes;
    let mut nested_slots = vec![Slot::EMPTY; 64];
    let observations = [ArgValue::Str("wrote a program"), ArgValue::Str("born 1815")];
    let entity = [
        ("name", ArgValue::Str("Ada")),
        ("observations", ArgValue::List(&observations)),
    ];
    let entities = [ArgValue::Object(&entity), ArgValue::Object(&entity)];
    let nested_args = [("entities", ArgValue::List(&entities))];

    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let nested_table = Table::load(&nested_bytes, &compiler.verifying_key()).unwrap();
    let mut nested_state = gate::State::new(&nested_table, &mut nested_slots).unwrap();
    let nested_call = Call {
        agent: "curator",
        tool: "memory.create_entities",
        args: &nested_args,
        via: &[],
        env: None,
        time: 1_000,
    };
    let nested_decision = gate::decide(&nested_table, &mut nested_state, &nested_call);
    let nested_digest = tollgate_runtime::audit::args_digest(&nested_args);
    let list_table = Table::parse(&list_bytes).unwrap();
    let mut list_state = gate::State::new(&list_table, &mut list_slots).unwrap();
    let list_call = Call {
        agent: "a",
        tool: "t",
        args: &list_args,
        via: &[],
        env: None,
        time: 1_000,
    };
    let list_decision = gate::decide(&list_table, &mut list_state, &list_call);
    let list_digest = tollgate_runtime::audit::args_digest(&list_args);
    let table = Table::load(&bytes, &compiler_public).unwrap();
    let mut state = gate::State::new(&table, &mut slots).unwrap();
    let host = credential::Host {
        env: Some("prod"),
        audience: None,
    };
    let session = credential::admit(
        &table,
        &mut state,
        &issuer_public,
        &credential,
        &host,
        1_767_261_610,
    )
    .unwrap();
    let call = SessionCall {
        tool: "payments.refund",
        args: &args,
    };
    let mut sink_auditor = Auditor::new(
        FixedSink {
            records: 0,
            last: [0; RECORD_SIZE],
            notes: 0,
        },
        &gate_key,
        "tollgate/test",
        "tollgate-gate",
        4,
        *table.policy_hash(),
    );
    for step in 0..20u64 {
        let decision =
            credential::decide(&table, &mut state, &session, &call, 1_767_261_610 + step);
        let plain = Call {
            agent: "support_bot",
            tool: "payments.refund",
            args: &args,
            via: &[],
            env: Some("prod"),
            time: 1_767_261_610 + step,
        };
        let again = gate::decide(&table, &mut state, &plain);
        sink_auditor.record(&plain, &decision);
        sink_auditor.record(&plain, &again);
    }
    sink_auditor.checkpoint();
    let after = ALLOCATIONS.load(Ordering::SeqCst);

    assert_eq!(list_decision.verdict, gate::Verdict::Allow);
    assert_eq!(nested_decision.verdict, gate::Verdict::Allow);
    assert_ne!(nested_digest, [0; 32]);
    assert_ne!(list_digest, [0; 32]);
    // 40 decisions; the rate limit (10 per hour) then five denials revoke the agent: one more record.
    assert_eq!(sink_auditor.sink.records, 41);
    assert!(sink_auditor.sink.notes >= 10);
    assert_ne!(sink_auditor.sink.last, [0; RECORD_SIZE]);
    assert_eq!(
        after - before,
        0,
        "the runtime allocated {} times",
        after - before
    );
}

/// Tool `t` of agent `a`: `edits: list[{path: path, text: string}]`, `paths: list[path]`,
/// permitted when `all p in args.paths: p starts_with "/ws/"`, `any e in args.edits:
/// e.path starts_with "/ws/"` and `args.edits.len <= 2`, with a repeat guard.
fn list_table() -> Vec<u8> {
    let mut t = TableBuilder::new(&["a"]);
    t.args = vec![
        ArgRecord {
            variants_start: 2,
            variants_count: 1,
            ..t.arg("edits", arg::LIST)
        },
        ArgRecord {
            variants_start: 5,
            variants_count: 1,
            ..t.arg("paths", arg::LIST)
        },
        ArgRecord {
            variants_start: 3,
            variants_count: 2,
            ..t.arg("", arg::OBJECT)
        },
        t.arg("path", arg::PATH),
        t.arg("text", arg::STR),
        t.arg("", arg::PATH),
    ];
    t.tool_args = 2;
    let mut all = vec![op::VAR];
    t.push_str(&mut all, "/ws/");
    all.push(op::STARTS_WITH);
    let mut any = vec![op::VAR, op::FIELD, 0];
    t.push_str(&mut any, "/ws/");
    any.push(op::STARTS_WITH);
    let mut code = vec![op::ARG, 1, op::ALL];
    code.extend_from_slice(&(all.len() as u16).to_le_bytes());
    code.extend_from_slice(&all);
    code.extend_from_slice(&[op::ARG, 0, op::ANY]);
    code.extend_from_slice(&(any.len() as u16).to_le_bytes());
    code.extend_from_slice(&any);
    code.extend_from_slice(&[op::AND, op::ARG, 0, op::LEN, op::PUSH_INT]);
    code.extend_from_slice(&2i64.to_le_bytes());
    code.extend_from_slice(&[op::LE, op::AND, op::END]);
    t.permits.push(code);
    t.limits.push(tollgate_runtime::format::LimitRecord {
        kind: tollgate_runtime::format::limit::REPEAT,
        value: 100,
        window: 3_600,
    });
    t.build()
}
