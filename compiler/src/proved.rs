//! A decision table that translation validation has proved to decide exactly as its policy: the
//! only form of a compiled table the command line writes. [`ProvedTable`] can be built only by
//! [`compile`], which runs the code generator and then the proof, so no caller can write a table
//! that skipped it.

use crate::codegen::{self, TableStats};
use crate::model::Policy;
use crate::verify::translation::{self, Proved};
use crate::verify::Options;
use crate::Error;
use ed25519_dalek::SigningKey;
use tollgate_runtime::table::Table;

/// A signed table with its proof of equivalence to the policy it came from.
#[derive(Debug)]
pub struct ProvedTable {
    bytes: Vec<u8>,
    policy_hash: [u8; 32],
    stats: TableStats,
    proof: Proved,
    proof_time: std::time::Duration,
    verified: bool,
}

impl ProvedTable {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn policy_hash(&self) -> &[u8; 32] {
        &self.policy_hash
    }

    pub fn stats(&self) -> &TableStats {
        &self.stats
    }

    pub fn proof(&self) -> &Proved {
        &self.proof
    }

    /// Whether the policy's tests passed and `verify` reported no errors (the table's flag).
    pub fn verified(&self) -> bool {
        self.verified
    }

    /// How long the proof took.
    pub fn proof_time(&self) -> std::time::Duration {
        self.proof_time
    }
}

/// Whether a policy passes its own tests and `verify` reports no errors; `Err` says what fails
/// ([`Error::TestsFail`] or [`Error::VerifyErrors`]).
pub fn check_verified(policy: &Policy, options: &Options) -> Result<(), Error> {
    let failing: Vec<String> = crate::testing::run_all(policy)
        .into_iter()
        .filter(|outcome| !outcome.passed())
        .map(|outcome| outcome.name)
        .collect();
    if !failing.is_empty() {
        return Err(Error::TestsFail { tests: failing });
    }
    let errors = crate::verify::verify(policy, options).errors();
    if errors > 0 {
        return Err(Error::VerifyErrors { count: errors });
    }
    Ok(())
}

/// Compiles a policy into a table stamped with `policy_version`, signs it, and proves it
/// equivalent to the policy with Z3; a table that fails the proof is never returned. Unless
/// `allow_unverified`, a policy whose tests fail or whose `verify` reports errors is refused; a
/// table compiled anyway carries no verified flag.
pub fn compile(
    policy: &Policy,
    key: &SigningKey,
    policy_version: u64,
    allow_unverified: bool,
    options: &Options,
) -> Result<ProvedTable, Error> {
    let verified = match check_verified(policy, options) {
        Ok(()) => true,
        Err(unverified) if !allow_unverified => return Err(unverified),
        Err(_) => false,
    };
    let flags = if verified {
        tollgate_runtime::format::flags::VERIFIED
    } else {
        0
    };
    let compiled = codegen::compile_stamped(policy, key, policy_version, flags)?;
    let started = std::time::Instant::now();
    let table = Table::parse(&compiled.bytes).map_err(Error::TableRefused)?;
    let proof = translation::validate(policy, &table, options)?;
    let proof_time = started.elapsed();
    Ok(ProvedTable {
        policy_hash: compiled.policy_hash,
        stats: compiled.stats,
        bytes: compiled.bytes,
        proof,
        proof_time,
        verified,
    })
}
