//! A `#![no_std]` consumer of the runtime: no allocator, abort on panic. It exercises loading,
//! admission, deciding and auditing so that all of that code is compiled and linked without
//! `std` or `alloc`.

#![no_std]

use core::hint::black_box;
use tollgate_runtime::audit::{AuditSink, Auditor, RECORD_SIZE};
use tollgate_runtime::credential;
use tollgate_runtime::gate::{self, ArgValue, Call, Slot};
use tollgate_runtime::table::Table;
use tollgate_runtime::Reason;

static TABLE: [u8; 0] = [];

struct Discard;

impl AuditSink for Discard {
    fn record(&mut self, record: &[u8; RECORD_SIZE]) {
        black_box(record);
    }
    fn checkpoint(&mut self, note: &[u8]) {
        black_box(note);
    }
}

/// Exposes the reason names so the linker keeps them.
#[no_mangle]
pub extern "C" fn tollgate_reason_name_len(code: u8) -> usize {
    Reason::from_code(code).map_or(0, |reason| reason.as_str().len())
}

/// Loads a (here: empty, hence refused) table and, if it loaded, admits, decides and audits.
/// `black_box` keeps the optimiser from proving the table empty and dropping the rest.
#[no_mangle]
pub extern "C" fn tollgate_smoke(now: u64) -> u8 {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&[0u8; 32]) else {
        return 0;
    };
    let bytes: &[u8] = black_box(&TABLE[..]);
    let Ok(table) = Table::load(bytes, &key) else {
        return 1;
    };
    let mut slots = [Slot::EMPTY; 32];
    let Ok(mut state) = gate::State::new(&table, &mut slots) else {
        return 3;
    };
    let args = [("amount", ArgValue::Int(1))];
    let call = Call { agent: "a", tool: "t", args: &args, via: &[], env: None, time: now };
    let decision = gate::decide(&table, &mut state, &call);
    let host = credential::Host { env: Some("prod"), audience: None };
    if let Ok(session) = credential::admit(&table, &mut state, &key, black_box(&TABLE[..]), &host, now) {
        let session_call = credential::SessionCall { tool: "t", args: &args };
        black_box(credential::decide(&table, &mut state, &session, &session_call, now));
    }
    let mut encoded = [0u8; credential::MAX_SIZE];
    let claims = credential::Claims {
        id: [0; 16],
        policy_hash: *table.policy_hash(),
        issued_at: now,
        expires_at: now,
        agent: "a",
        chain: &["b"],
        env: None,
        audience: None,
        scope: &[],
    };
    black_box(credential::encode(&claims, &mut encoded).ok());
    let signing = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
    let mut auditor = Auditor::new(Discard, &signing, "tollgate/nostd", "tollgate-gate", 16, *table.policy_hash());
    auditor.record(&call, &decision);
    auditor.checkpoint();
    2
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
