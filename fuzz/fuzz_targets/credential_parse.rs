//! Arbitrary bytes as a credential: parsing, reading its names and checking its signature never
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_runtime::credential::Credential;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(credential) = Credential::parse(bytes) {
        let names = credential
            .chain
            .iter()
            .chain(credential.scope.iter())
            .count();
        assert!(names <= credential.chain.len() + credential.scope.len());
        let issuer = ed25519_dalek::SigningKey::from_bytes(&[2u8; 32]).verifying_key();
        let _ = credential.verify(&issuer);
    }
});
