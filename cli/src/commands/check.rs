//! `tollgate check`: parse and check a policy set, print its counts or its diagnostics.

use crate::{count, load, report, Exit, Format, Io};
use std::path::Path;

pub fn run(io: &mut Io<'_>, path: &Path, format: Format) -> Exit {
    let (policy, sources) = match load(io, path, format) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    match format {
        Format::Json => report(io, &[], &sources, format),
        Format::Human => {
            let counts = [
                count(sources.files.len(), "file"),
                count(policy.agents.len(), "agent"),
                count(policy.tools.len(), "tool"),
                count(policy.rules.len(), "rule"),
                count(policy.limits.len(), "limit"),
                count(policy.assertions.len(), "assertion"),
                count(policy.tests.len(), "test"),
            ];
            io.out(&format!("ok: {}\n", counts.join(", ")));
        }
    }
    Exit::Success
}
