//! Arbitrary bytes as a credential: parsing never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_runtime::credential::Credential;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(credential) = Credential::parse(bytes) {
        let _ = credential.allows_tool(b"crm.read");
    }
});
