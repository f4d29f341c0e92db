//! SARIF 2.1.0 output, so code-scanning tools show findings at their spans.

use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::source::SourceSet;
use serde_json::{json, Value};
use tollgate_grammar::Span;

fn region(sources: &SourceSet, span: Span) -> Value {
    let (start_line, start_column) = sources.line_column(span);
    let end = Span {
        start: span.end,
        ..span
    };
    let (end_line, end_column) = sources.line_column(end);
    json!({
        "startLine": start_line,
        "startColumn": start_column,
        "endLine": end_line,
        "endColumn": end_column,
    })
}

fn location(sources: &SourceSet, span: Span, message: Option<&str>) -> Value {
    let uri = sources
        .file(span.file)
        .map_or("unknown", |f| f.path.as_str());
    let mut value = json!({
        "physicalLocation": {
            "artifactLocation": { "uri": uri },
            "region": region(sources, span),
        }
    });
    if let (Some(message), Some(object)) = (message, value.as_object_mut()) {
        object.insert("message".to_owned(), json!({ "text": message }));
    }
    value
}

/// One SARIF log with one run. `extra` adds properties (such as witnesses) per result.
pub fn render(diagnostics: &[(Diagnostic, Value)], sources: &SourceSet) -> Value {
    let rules: Vec<Value> = Code::ALL
        .iter()
        .filter(|code| diagnostics.iter().any(|(d, _)| d.code == **code))
        .map(|code| {
            json!({
                "id": code.as_str(),
                "name": code.summary(),
                "shortDescription": { "text": code.summary() },
                "helpUri": format!("https://tollgate.invalid/book/diagnostics.html#{}", code.as_str().to_lowercase()),
            })
        })
        .collect();
    let results: Vec<Value> = diagnostics
        .iter()
        .map(|(d, properties)| {
            let level = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Note => "note",
            };
            let mut text = d.message.clone();
            if let Some(help) = &d.help {
                text.push_str("\nhelp: ");
                text.push_str(help);
            }
            json!({
                "ruleId": d.code.as_str(),
                "level": level,
                "message": { "text": text },
                "locations": [location(sources, d.span, Some(&d.label))],
                "relatedLocations": d.related.iter().enumerate().map(|(i, r)| {
                    let mut value = location(sources, r.span, Some(&r.message));
                    if let Some(object) = value.as_object_mut() {
                        object.insert("id".to_owned(), json!(i));
                    }
                    value
                }).collect::<Vec<_>>(),
                "properties": properties,
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "tollgate",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://tollgate.invalid",
                "rules": rules,
            }},
            "results": results,
        }]
    })
}
