//! The Tollgate compiler: from policy text to a checked model, and everything that works on it.
//!
//! Pipeline, one module per stage:
//!
//! ```text
//! source ─(tollgate-grammar)→ AST ─check→ model::Policy ─┬─ eval     (reference semantics)
//!                                                         └─ testing  (runs `test` blocks)
//! ```
//!
//! The library does no IO: it takes a [`source::SourceSet`] and returns values. The `tollgate`
//! command line (the `tollgate-cli` crate) is the only place that touches files, the clock, stdin
//! and stdout.
//!
//! Policy text is reported through [`diagnostic::Diagnostic`]s ([`load`], [`load_subset`]); every
//! other fallible function returns the crate's one error type, [`Error`].

pub mod check;
pub mod codegen;
pub mod credential;
pub mod decimal;
pub mod diagnostic;
pub mod error;
pub mod eval;
pub mod import;
pub mod model;
pub mod proved;
pub mod request;
pub mod sarif;
pub mod source;
pub mod testing;
pub mod verify;

pub use error::Error;

use diagnostic::Diagnostic;
use model::Policy;
use source::SourceSet;
use tollgate_grammar::Parsed;

/// Parses every file of a set.
pub fn parse_all(sources: &SourceSet) -> Vec<Parsed> {
    sources
        .ids()
        .filter_map(|id| {
            sources
                .file(id)
                .map(|file| tollgate_grammar::parse(&file.text, id))
        })
        .collect()
}

/// Parses and checks some of the files of a set (one version, when a set holds two).
pub fn load_subset(
    sources: &SourceSet,
    ids: &[tollgate_grammar::FileId],
) -> Result<Policy, Vec<Diagnostic>> {
    let parsed: Vec<Parsed> = ids
        .iter()
        .filter_map(|&id| {
            sources
                .file(id)
                .map(|file| tollgate_grammar::parse(&file.text, id))
        })
        .collect();
    finish(parsed)
}

/// Parses and checks a policy set. Syntax errors stop before checking, so that a half-parsed file
/// does not cause a cascade of unknown-name errors.
pub fn load(sources: &SourceSet) -> Result<Policy, Vec<Diagnostic>> {
    finish(parse_all(sources))
}

fn finish(parsed: Vec<Parsed>) -> Result<Policy, Vec<Diagnostic>> {
    let syntax: Vec<Diagnostic> = parsed
        .iter()
        .flat_map(|p| p.errors.iter().map(diagnostic::syntax))
        .collect();
    if !syntax.is_empty() {
        return Err(syntax);
    }
    let files: Vec<&tollgate_grammar::ast::File> = parsed.iter().map(|p| &p.file).collect();
    let (policy, diagnostics) = check::check(&files);
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(diagnostics);
    }
    Ok(policy)
}
