//! The runtime allocates nothing: a counting global allocator watches `Table::load`,
//! `credential::admit`, `credential::decide`, `gate::decide` and the audit log (records and
//! checkpoints) and must see zero allocations. One test in this binary, so no other test thread
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
use tollgate_runtime::gate::{self, ArgValue, Call, Slot};
use tollgate_runtime::table::Table;
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

    let before = ALLOCATIONS.load(Ordering::SeqCst);
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
