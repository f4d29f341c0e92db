//! `tollgate diff`: compare two versions of a policy, each a path or `REV:PATH` read with git.

use crate::{
    policy_files, render_findings, report, verify_options, witness_json, Exit, FailOn, Format, Io,
    ReportFormat,
};
use std::path::Path;
use tollgate_compiler::diagnostic::{self, Diagnostic};
use tollgate_compiler::source::SourceSet;

/// Adds one side of a diff to the set: a path, or `REV:PATH` read with git.
fn add_side(sources: &mut SourceSet, side: &str) -> Result<Vec<tollgate_grammar::FileId>, String> {
    let mut ids = Vec::new();
    let from_git = side
        .split_once(':')
        .filter(|(rev, _)| !rev.is_empty() && !Path::new(side).exists());
    match from_git {
        None => {
            for file in policy_files(Path::new(side))? {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
                ids.push(sources.add(&file.display().to_string(), &text));
            }
        }
        Some((rev, path)) => {
            let git = |args: &[&str]| -> Result<String, String> {
                let output = std::process::Command::new("git")
                    .args(args)
                    .output()
                    .map_err(|e| format!("cannot run git: {e}"))?;
                if !output.status.success() {
                    return Err(format!(
                        "git {}: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&output.stderr).trim()
                    ));
                }
                Ok(String::from_utf8_lossy(&output.stdout).into_owned())
            };
            let listing = git(&["ls-tree", "-r", "--name-only", rev, "--", path])?;
            let mut files: Vec<&str> = listing.lines().filter(|l| l.ends_with(".toll")).collect();
            files.sort_unstable();
            if files.is_empty() {
                return Err(format!("no `.toll` files at `{side}`"));
            }
            for file in files {
                let text = git(&["show", &format!("{rev}:{file}")])?;
                ids.push(sources.add(&format!("{rev}:{file}"), &text));
            }
        }
    }
    Ok(ids)
}

pub fn run(
    io: &mut Io<'_>,
    old: &str,
    new: &str,
    format: ReportFormat,
    fail_on: Option<FailOn>,
    timeout: u32,
) -> Exit {
    let mut sources = SourceSet::new();
    let old_ids = match add_side(&mut sources, old) {
        Ok(ids) => ids,
        Err(message) => return io.usage(&message),
    };
    let new_ids = match add_side(&mut sources, new) {
        Ok(ids) => ids,
        Err(message) => return io.usage(&message),
    };
    let mut policies = Vec::new();
    for ids in [&old_ids, &new_ids] {
        match tollgate_compiler::load_subset(&sources, ids) {
            Ok(policy) => policies.push(policy),
            Err(diagnostics) => {
                report(
                    io,
                    &diagnostics,
                    &sources,
                    if format == ReportFormat::Human {
                        Format::Human
                    } else {
                        Format::Json
                    },
                );
                return Exit::Failure;
            }
        }
    }
    let (old_policy, new_policy) = (&policies[0], &policies[1]);
    let mut result =
        tollgate_compiler::verify::diff::diff(old_policy, new_policy, &verify_options(timeout));
    let gate = fail_on == Some(FailOn::Widen);
    if gate {
        // Unacknowledged widenings and removed assertions or forbids become errors.
        result.gate_on_widen();
    }
    let summary = |change: tollgate_compiler::verify::diff::Change| {
        result.pairs.iter().filter(|p| p.change == change).count()
    };
    use tollgate_compiler::verify::diff::Change;
    match format {
        ReportFormat::Human => {
            io.out(&render_findings(&result.findings, &sources));
            for pair in result
                .pairs
                .iter()
                .filter(|p| p.change != Change::Unchanged)
            {
                let word = match pair.change {
                    Change::Widened => "widened",
                    Change::Narrowed => "narrowed",
                    Change::Changed => "widened and narrowed",
                    Change::Unchanged => "unchanged",
                };
                let note = if pair.acknowledged {
                    " (acknowledged)"
                } else {
                    ""
                };
                io.out(&format!("{word}: {} -> {}{note}\n", pair.agent, pair.tool));
            }
            io.out(&format!(
                "diff: {} widened, {} narrowed, {} both, {} unchanged (agent, tool) pairs; {} solver queries, {} unknown\n",
                summary(Change::Widened),
                summary(Change::Narrowed),
                summary(Change::Changed),
                summary(Change::Unchanged),
                result.queries,
                result.unknown
            ));
        }
        ReportFormat::Json | ReportFormat::Sarif => {
            let entries: Vec<(Diagnostic, serde_json::Value)> = result
                .findings
                .iter()
                .map(|f| {
                    let witnesses: Vec<serde_json::Value> =
                        f.witnesses.iter().map(witness_json).collect();
                    (
                        f.diagnostic.clone(),
                        serde_json::json!({ "witnesses": witnesses }),
                    )
                })
                .collect();
            if format == ReportFormat::Sarif {
                io.out(&format!(
                    "{:#}\n",
                    tollgate_compiler::sarif::render(&entries, &sources)
                ));
            } else {
                let pairs: Vec<serde_json::Value> = result
                    .pairs
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "agent": p.agent, "tool": p.tool,
                            "change": match p.change {
                                Change::Widened => "widened",
                                Change::Narrowed => "narrowed",
                                Change::Changed => "changed",
                                Change::Unchanged => "unchanged",
                            },
                            "acknowledged": p.acknowledged,
                        })
                    })
                    .collect();
                let diagnostics: Vec<Diagnostic> = entries.iter().map(|(d, _)| d.clone()).collect();
                let mut json = diagnostic::render_json(&diagnostics, &sources);
                if let Some(list) = json.get_mut("diagnostics").and_then(|d| d.as_array_mut()) {
                    for (entry, (_, extra)) in list.iter_mut().zip(&entries) {
                        if let (Some(object), Some(w)) =
                            (entry.as_object_mut(), extra.get("witnesses"))
                        {
                            object.insert("witnesses".to_owned(), w.clone());
                        }
                    }
                }
                if let Some(object) = json.as_object_mut() {
                    object.insert("pairs".to_owned(), serde_json::json!(pairs));
                }
                io.out(&format!("{json:#}\n"));
            }
        }
    }
    if gate && result.fails_on_widen() {
        Exit::Failure
    } else {
        Exit::Success
    }
}
