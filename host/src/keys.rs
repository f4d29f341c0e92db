//! Key files: Ed25519 secret keys as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, mode 0600) and
//! public keys as SPKI PEM (`-----BEGIN PUBLIC KEY-----`), the formats `openssl pkey` reads. The
//! two kinds cannot be confused: a public key where a secret key is needed (or the reverse) is a
//! one-line error naming the file.

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::io::Write;
use std::path::Path;

const SECRET_LABEL: &str = "-----BEGIN PRIVATE KEY-----";
const PUBLIC_LABEL: &str = "-----BEGIN PUBLIC KEY-----";

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
}

/// Reads a secret key (PKCS#8 PEM).
pub fn signing_key(path: &Path) -> Result<SigningKey, String> {
    let text = read(path)?;
    if text.contains(PUBLIC_LABEL) {
        return Err(format!(
            "`{}` is a public key, but this needs a secret key (the `.key` file from `tollgate keygen`)",
            path.display()
        ));
    }
    SigningKey::from_pkcs8_pem(&text).map_err(|_| {
        format!(
            "`{}` is not an Ed25519 secret key in PKCS#8 PEM (`tollgate keygen` writes one)",
            path.display()
        )
    })
}

/// Reads a public key (SPKI PEM).
pub fn verifying_key(path: &Path) -> Result<VerifyingKey, String> {
    let text = read(path)?;
    if text.contains(SECRET_LABEL) {
        return Err(format!(
            "`{}` is a secret key, but this needs a public key (the `.pub` file from `tollgate keygen`); never hand a secret key to a party that only checks signatures",
            path.display()
        ));
    }
    VerifyingKey::from_public_key_pem(&text).map_err(|_| {
        format!(
            "`{}` is not an Ed25519 public key in SPKI PEM (`tollgate keygen` writes one)",
            path.display()
        )
    })
}

/// Creates `path` for writing: with `mode` on Unix, refusing to replace an existing file unless
/// `force`.
fn create(path: &Path, mode: u32, force: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        // `mode` applies only to new files; a forced overwrite gets it too.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    Ok(file)
}

/// The secret key as PKCS#8 v1 PEM (RFC 8410, no embedded public key): the form `openssl
/// genpkey -algorithm ed25519` writes and every OpenSSL 3 reads (3.0 refuses the v2 form).
fn secret_pem(key: &SigningKey) -> Result<String, String> {
    let bytes = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    bytes
        .to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| format!("cannot encode the secret key: {e}"))
}

/// Writes a new key pair as `NAME.key` (secret, 0600) and `NAME.pub`; returns their paths.
pub fn write_pair(
    key: &SigningKey,
    name: &Path,
    force: bool,
) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let secret = name.with_extension("key");
    let public = name.with_extension("pub");
    if !force {
        if let Some(existing) = [&secret, &public].into_iter().find(|p| p.exists()) {
            return Err(format!(
                "`{}` exists: keys are never overwritten without `--force`",
                existing.display()
            ));
        }
    }
    let secret_pem = secret_pem(key)?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode the public key: {e}"))?;
    let write = |path: &Path, mode: u32, text: &str| {
        create(path, mode, force)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
            })
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
    };
    write(&secret, 0o600, &secret_pem)?;
    write(&public, 0o644, &public_pem)?;
    Ok((secret, public))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tollgate-keys-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("k")
    }

    #[test]
    fn pairs_round_trip_and_kinds_are_not_confused() {
        let name = temp("round");
        let key = SigningKey::from_bytes(&[7; 32]);
        let (secret, public) = write_pair(&key, &name, false).unwrap();
        assert_eq!(signing_key(&secret).unwrap().to_bytes(), key.to_bytes());
        assert_eq!(verifying_key(&public).unwrap(), key.verifying_key());
        let wrong = signing_key(&public).unwrap_err();
        assert!(wrong.contains("is a public key"), "{wrong}");
        let wrong = verifying_key(&secret).unwrap_err();
        assert!(wrong.contains("is a secret key"), "{wrong}");
    }

    #[test]
    fn secret_keys_are_rfc_8410_pkcs8_v1() {
        use ed25519_dalek::pkcs8::spki::der::Decode as _;
        let pem = secret_pem(&SigningKey::from_bytes(&[9; 32])).unwrap();
        let (label, der) =
            ed25519_dalek::pkcs8::spki::der::pem::decode_vec(pem.as_bytes()).unwrap();
        assert_eq!(label, "PRIVATE KEY");
        // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }
        let prefix = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        assert_eq!(&der[..16], &prefix);
        assert_eq!(&der[16..], &[9; 32]);
        assert!(ed25519_dalek::pkcs8::PrivateKeyInfo::from_der(&der).is_ok());
    }

    #[test]
    fn existing_keys_are_not_overwritten_without_force() {
        let name = temp("force");
        write_pair(&SigningKey::from_bytes(&[1; 32]), &name, false).unwrap();
        let error = write_pair(&SigningKey::from_bytes(&[2; 32]), &name, false).unwrap_err();
        assert!(error.contains("never overwritten"), "{error}");
        let secret = name.with_extension("key");
        assert_eq!(signing_key(&secret).unwrap().to_bytes(), [1; 32]);
        write_pair(&SigningKey::from_bytes(&[2; 32]), &name, true).unwrap();
        assert_eq!(signing_key(&secret).unwrap().to_bytes(), [2; 32]);
    }

    #[cfg(unix)]
    #[test]
    fn secret_keys_are_private_to_their_owner() {
        use std::os::unix::fs::PermissionsExt as _;
        let name = temp("mode");
        let (secret, public) = write_pair(&SigningKey::from_bytes(&[3; 32]), &name, false).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&secret), 0o600);
        assert_eq!(mode(&public), 0o644);
    }
}
