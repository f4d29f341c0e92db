//! `tollgate verify`: prove properties of a policy with Z3 and report findings with witnesses.

use crate::{
    load, plural, render_findings, verify_options, witness_json, Exit, Format, Io, ReportFormat,
};
use std::path::Path;
use tollgate_compiler::diagnostic::{self, Diagnostic};

pub fn run(io: &mut Io<'_>, path: &Path, format: ReportFormat, timeout: u32) -> Exit {
    let plain = if format == ReportFormat::Human {
        Format::Human
    } else {
        Format::Json
    };
    let (policy, sources) = match load(io, path, plain) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let started = std::time::Instant::now();
    let report = tollgate_compiler::verify::verify(&policy, &verify_options(timeout));
    let took = started.elapsed();
    let count = |severity: diagnostic::Severity| {
        report
            .findings
            .iter()
            .filter(|f| f.diagnostic.severity == severity)
            .count()
    };
    let (errors, warnings, notes) = (
        count(diagnostic::Severity::Error),
        count(diagnostic::Severity::Warning),
        count(diagnostic::Severity::Note),
    );
    match format {
        ReportFormat::Human => {
            io.out(&render_findings(&report.findings, &sources));
            for name in &report.proved {
                io.out(&format!("proved: {name}\n"));
            }
            io.out(&format!(
                "verify: {} error{}, {} warning{}, {} note{}; {} assertion{} proved; {} buckets, {} solver queries, {} unknown\n",
                errors,
                plural(errors),
                warnings,
                plural(warnings),
                notes,
                plural(notes),
                report.proved.len(),
                plural(report.proved.len()),
                report.stats.buckets,
                report.stats.queries,
                report.stats.unknown,
            ));
            io.err(&format!("verified in {}\n", crate::elapsed(took)));
        }
        ReportFormat::Json => {
            let diagnostics: Vec<Diagnostic> = report
                .findings
                .iter()
                .map(|f| f.diagnostic.clone())
                .collect();
            let mut json = diagnostic::render_json(&diagnostics, &sources);
            if let Some(list) = json.get_mut("diagnostics").and_then(|d| d.as_array_mut()) {
                for (entry, finding) in list.iter_mut().zip(&report.findings) {
                    if let Some(object) = entry.as_object_mut() {
                        let witnesses: Vec<serde_json::Value> =
                            finding.witnesses.iter().map(witness_json).collect();
                        object.insert("witnesses".to_owned(), serde_json::json!(witnesses));
                    }
                }
            }
            if let Some(object) = json.as_object_mut() {
                object.insert("proved".to_owned(), serde_json::json!(report.proved));
                object.insert(
                    "summary".to_owned(),
                    serde_json::json!({
                        "errors": errors, "warnings": warnings, "notes": notes,
                        "buckets": report.stats.buckets, "queries": report.stats.queries,
                        "unknown": report.stats.unknown,
                    }),
                );
            }
            io.out(&format!("{json:#}\n"));
        }
        ReportFormat::Sarif => {
            let entries: Vec<(Diagnostic, serde_json::Value)> = report
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
            io.out(&format!(
                "{:#}\n",
                tollgate_compiler::sarif::render(&entries, &sources)
            ));
        }
    }
    if errors == 0 {
        Exit::Success
    } else {
        Exit::Failure
    }
}
