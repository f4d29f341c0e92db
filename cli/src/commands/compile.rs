//! `tollgate compile`: compile a policy into a signed decision table, after proving the table
//! equivalent to the policy.

use crate::{elapsed, load, Exit, Format, Io};
use std::path::Path;
use tollgate_host::keys;

pub fn run(
    io: &mut Io<'_>,
    path: &Path,
    output: &Path,
    key: &Path,
    policy_version: u64,
    allow_unverified: bool,
    verbose: bool,
) -> Exit {
    let (policy, _) = match load(io, path, Format::Human) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let key = match keys::signing_key(key) {
        Ok(key) => key,
        Err(message) => return io.usage(&message),
    };
    // Translation validation runs inside: the table must decide exactly as the source, or
    // nothing is written.
    let proved = match tollgate_compiler::proved::compile(
        &policy,
        &key,
        policy_version,
        allow_unverified,
        &tollgate_compiler::verify::Options::default(),
    ) {
        Ok(proved) => proved,
        Err(error) => {
            io.err(&format!("error: {error}\n"));
            return Exit::Failure;
        }
    };
    if let Err(error) = std::fs::write(output, proved.bytes()) {
        return io.usage(&format!("cannot write `{}`: {error}", output.display()));
    }
    io.out(&format!(
        "compiled {} rules into {} ({} bytes, {:.1} bytes per rule), policy version {policy_version}, {}, policy hash {}\n",
        policy.rules.len(),
        output.display(),
        proved.stats().bytes,
        proved.stats().bytes as f64 / policy.rules.len().max(1) as f64,
        if proved.verified() {
            "verified"
        } else {
            "NOT verified (--allow-unverified)"
        },
        hex::encode(proved.policy_hash())
    ));
    if verbose {
        io.out(&format!(
            "  buckets {}, rule entries {}, program bytes {}\n  translation validated: {} programs in {} buckets equivalent to their rules (Z3, {})\n",
            proved.stats().buckets, proved.stats().entries, proved.stats().programs_bytes, proved.proof().programs, proved.proof().buckets, elapsed(proved.proof_time())
        ));
    }
    Exit::Success
}
