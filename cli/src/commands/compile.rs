//! `tollgate compile`: compile a policy into a signed decision table, after proving the table
//! equivalent to the policy.

use crate::{load, Exit, Format, Io};
use std::path::Path;
use tollgate_host::keys;

pub fn run(
    io: &mut Io<'_>,
    path: &Path,
    output: &Path,
    key: &Path,
    policy_version: u64,
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
    let compiled = match tollgate_compiler::codegen::compile_version(&policy, &key, policy_version)
    {
        Ok(compiled) => compiled,
        Err(error) => {
            io.err(&format!("error: cannot compile: {error:?}\n"));
            return Exit::Failure;
        }
    };
    // Translation validation: the table must decide exactly as the source, or nothing is written.
    let started = std::time::Instant::now();
    let proof = tollgate_runtime::table::Table::parse(&compiled.bytes)
        .map_err(|e| format!("the compiler wrote a table its own loader refuses: {e}"))
        .and_then(|table| {
            tollgate_compiler::verify::translation::validate(
                &policy,
                &table,
                &tollgate_compiler::verify::Options::default(),
            )
            .map_err(|m| m.to_string())
        });
    let proof = match proof {
        Ok(proof) => proof,
        Err(message) => {
            io.err(&format!(
                "error: translation validation failed: {message}\n"
            ));
            return Exit::Failure;
        }
    };
    let proof_time = started.elapsed();
    if let Err(error) = std::fs::write(output, &compiled.bytes) {
        return io.usage(&format!("cannot write `{}`: {error}", output.display()));
    }
    io.out(&format!(
        "compiled {} rules into {} ({} bytes, {:.1} bytes per rule), policy version {policy_version}, policy hash {}\n",
        policy.rules.len(),
        output.display(),
        compiled.stats.bytes,
        compiled.stats.bytes as f64 / policy.rules.len().max(1) as f64,
        hex::encode(compiled.policy_hash)
    ));
    if verbose {
        io.out(&format!(
            "  buckets {}, rule entries {}, program bytes {}\n  translation validated: {} programs in {} buckets equivalent to their rules (Z3, {:.2?})\n",
            compiled.stats.buckets, compiled.stats.entries, compiled.stats.programs_bytes, proof.programs, proof.buckets, proof_time
        ));
    }
    Exit::Success
}
