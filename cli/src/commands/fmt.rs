//! `tollgate fmt`: format policy files canonically, in place or as a check.

use crate::{policy_files, Exit, Io};
use std::path::Path;
use tollgate_compiler::diagnostic::{self, Diagnostic};
use tollgate_compiler::source::SourceSet;

pub fn run(io: &mut Io<'_>, path: &Path, check_only: bool) -> Exit {
    let files = match policy_files(path) {
        Ok(files) => files,
        Err(message) => return io.usage(&message),
    };
    let mut exit = Exit::Success;
    for file in files {
        let shown = file.display().to_string();
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) => return io.usage(&format!("cannot read `{shown}`: {error}")),
        };
        let sources = SourceSet::single(&shown, &text);
        let parsed = tollgate_grammar::parse(&text, tollgate_grammar::FileId(0));
        if !parsed.errors.is_empty() {
            let diagnostics: Vec<Diagnostic> =
                parsed.errors.iter().map(diagnostic::syntax).collect();
            io.err(&diagnostic::render_human(&diagnostics, &sources));
            io.err(&format!(
                "error: cannot format `{shown}`: it does not parse\n"
            ));
            exit = Exit::Failure;
            continue;
        }
        let formatted = tollgate_grammar::format::format(&parsed.file, &parsed.comments, &text);
        if formatted == text {
            continue;
        }
        if check_only {
            io.out(&format!("would reformat: {shown}\n"));
            exit = Exit::Failure;
        } else if let Err(error) = std::fs::write(&file, formatted) {
            return io.usage(&format!("cannot write `{shown}`: {error}"));
        } else {
            io.out(&format!("formatted: {shown}\n"));
        }
    }
    exit
}
