//! `tollgate graph`: print the escalation graph as Graphviz dot.

use crate::{load, verify_options, Exit, Format, Io};
use std::path::Path;

pub fn run(io: &mut Io<'_>, path: &Path, timeout: u32) -> Exit {
    let (policy, _) = match load(io, path, Format::Human) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let (_, graph) =
        tollgate_compiler::verify::verify_with_graph(&policy, &verify_options(timeout));
    io.out(&graph.to_dot(&policy));
    Exit::Success
}
