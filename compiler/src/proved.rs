//! A decision table that translation validation has proved to decide exactly as its policy: the
//! only form of a compiled table the command line writes. [`ProvedTable`] can be built only by
//! [`compile`], which runs the code generator and then the proof, so no caller can write a table
//! that skipped it.

use crate::codegen::{self, CodegenError, TableStats};
use crate::model::Policy;
use crate::verify::translation::{self, Mismatch, Proved};
use crate::verify::Options;
use ed25519_dalek::SigningKey;
use tollgate_runtime::table::{LoadError, Table};

/// Why a policy did not become a proved table.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("cannot compile: {0}")]
    Codegen(#[from] CodegenError),
    #[error("the compiler wrote a table its own loader refuses: {0}")]
    Load(LoadError),
    #[error("translation validation failed: {0}")]
    Mismatch(Box<Mismatch>),
}

/// A signed table with its proof of equivalence to the policy it came from.
#[derive(Debug)]
pub struct ProvedTable {
    bytes: Vec<u8>,
    policy_hash: [u8; 32],
    stats: TableStats,
    proof: Proved,
    proof_time: std::time::Duration,
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

    /// How long the proof took.
    pub fn proof_time(&self) -> std::time::Duration {
        self.proof_time
    }
}

/// Compiles a policy into a table stamped with `policy_version`, signs it, and proves it
/// equivalent to the policy with Z3; a table that fails the proof is never returned.
pub fn compile(
    policy: &Policy,
    key: &SigningKey,
    policy_version: u64,
    options: &Options,
) -> Result<ProvedTable, CompileError> {
    let compiled = codegen::compile_version(policy, key, policy_version)?;
    let started = std::time::Instant::now();
    let table = Table::parse(&compiled.bytes).map_err(CompileError::Load)?;
    let proof = translation::validate(policy, &table, options)
        .map_err(|mismatch| CompileError::Mismatch(Box::new(mismatch)))?;
    let proof_time = started.elapsed();
    Ok(ProvedTable {
        policy_hash: compiled.policy_hash,
        stats: compiled.stats,
        bytes: compiled.bytes,
        proof,
        proof_time,
    })
}
