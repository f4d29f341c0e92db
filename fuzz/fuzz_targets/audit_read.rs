//! Arbitrary bytes as an audit log: reading and verifying never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]).verifying_key();
    let _ = tollgate_host::audit_log::parse(bytes);
    let _ = tollgate_host::audit_log::verify(bytes, &key, "tollgate-gate");
});
