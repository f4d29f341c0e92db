//! Arbitrary bytes as a request line, decided by a host gate over the MCP file system example
//! (paths, lists, objects, optional arguments): reading, deciding and writing the decision line
//! never panic, and an allowed line's record is in the log. An input whose first byte is odd is
//! the rest of a line that starts with a valid credential for the example's agent
//! (`{"credential":"…",` then the input), so the fuzzer spends its time on tools and arguments;
//! an even one is the whole line.
#![no_main]

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tollgate_host::audit_log::MemoryAudit;
use tollgate_host::clock::FixedClock;
use tollgate_host::gate::{Gate, GateOptions};
use tollgate_host::store::MemoryStore;
use tollgate_runtime::table::Table;

/// The seeds' credentials are issued at this time by the issuer key `[2; 32]`, valid for 1 h.
const NOW: u64 = 1_767_261_600;

type Host = Gate<'static, FixedClock, MemoryStore, MemoryAudit>;

/// The gate, and the start of a line carrying a valid credential.
fn gate() -> &'static (Host, Vec<u8>) {
    static GATE: OnceLock<(Host, Vec<u8>)> = OnceLock::new();
    GATE.get_or_init(|| {
        let text = include_str!("../../examples/mcp-filesystem/policy.toll");
        let sources = tollgate_compiler::source::SourceSet::single("policy.toll", text);
        let policy = tollgate_compiler::load(&sources).expect("the example checks");
        let compiler = SigningKey::from_bytes(&[1; 32]);
        let bytes = tollgate_compiler::codegen::compile(&policy, &compiler)
            .expect("it compiles")
            .bytes;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        let table = Table::load(bytes, &compiler.verifying_key()).expect("it loads");
        let issuer = SigningKey::from_bytes(&[2; 32]);
        let claims = tollgate_compiler::credential::Claims {
            agent: "writer",
            via: &[],
            env: None,
            audience: None,
            scope: &[],
            issued_at: NOW,
            ttl: 3_600,
            id: [9; 16],
        };
        let credential = tollgate_compiler::credential::issue(&table, &claims, &issuer, &|_| false)
            .expect("a credential is issued");
        let mut prefix = b"{\"credential\":\"".to_vec();
        prefix.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(&credential)
                .as_bytes(),
        );
        prefix.extend_from_slice(b"\",");
        let gate = Gate::start(
            table,
            SigningKey::from_bytes(&[2; 32]).verifying_key(),
            SigningKey::from_bytes(&[3; 32]),
            FixedClock::new(NOW),
            MemoryStore::default(),
            MemoryAudit::default(),
            &[],
            &GateOptions::default(),
        )
        .expect("the gate starts")
        .0;
        (gate, prefix)
    })
}

fuzz_target!(|bytes: &[u8]| {
    let (gate, prefix) = gate();
    let line = match bytes.split_first() {
        Some((first, rest)) if first % 2 == 1 => [prefix.as_slice(), rest].concat(),
        _ => bytes.to_vec(),
    };
    let before = gate.records();
    let decision = gate.decide_line(&line);
    let _ = decision.to_json();
    if decision.allowed {
        assert!(decision
            .seq
            .is_some_and(|seq| seq >= before && seq < gate.records()));
    }
});
