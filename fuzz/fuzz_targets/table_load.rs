//! Arbitrary bytes as a decision table: loading never panics, and a table that parses (signature
//! aside) can be asked to decide without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_runtime::gate::{self, ArgValue, Call, Slot};
use tollgate_runtime::table::Table;

fuzz_target!(|bytes: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    let _ = Table::load(bytes, &key);
    if let Ok(table) = Table::parse(bytes) {
        let mut state = [Slot::EMPTY; 64];
        let args = [("amount", ArgValue::Int(5)), ("note", ArgValue::Str("x"))];
        let call = Call { agent: "a0", tool: "t.a", args: &args, via: &["a1"], env: Some("prod"), time: 7 };
        let _ = gate::decide(&table, &mut state, &call);
    }
});
