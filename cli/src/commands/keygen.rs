//! `tollgate keygen`: make an Ed25519 key pair as PEM files.

use crate::{Exit, Io};
use std::path::Path;
use tollgate_host::keys;

pub fn run(io: &mut Io<'_>, name: &Path, force: bool) -> Exit {
    let mut seed = [0u8; 32];
    if let Err(error) = getrandom::getrandom(&mut seed) {
        return io.usage(&format!("no randomness for a key: {error}"));
    }
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    match keys::write_pair(&key, name, force) {
        Ok((secret, public)) => {
            io.out(&format!(
                "wrote {} (secret, mode 0600) and {}\n",
                secret.display(),
                public.display()
            ));
            Exit::Success
        }
        Err(message) => io.usage(&message),
    }
}
