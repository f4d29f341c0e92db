//! Tool declarations from the JSON Schema of real tools: a saved MCP `tools/list` result, or
//! OpenAI-style function-calling definitions. The output is `.toll` text (canonically formatted)
//! plus one note per schema construct the language cannot express yet — reported, never silently
//! dropped.
//!
//! Mapping:
//!
//! | JSON Schema | declared as |
//! |---|---|
//! | `string` (with `maxLength`, and `minLength`) | `string` (`string[MIN..4×MAX]`: bytes, noted) |
//! | `string` with an `enum` of identifiers | `enum[a, b]` |
//! | `integer` (with `minimum`/`maximum`) | `int` (`int[MIN..MAX]`) |
//! | `number` with `multipleOf` `0.01` (a power of ten below one) | `decimal(2)` (with bounds) |
//! | `number` otherwise | `int`, noted: a call with a fraction is an invalid argument |
//! | `boolean` | `bool` |
//! | an optional property of those types | `name?: type` (a call may leave it out) |
//! | `array` of any of these (`minItems`/`maxItems`) | `list[T]` (`list[T][MIN..MAX]`) |
//! | `array` of objects | `list[{ a: T, b?: T }]` |
//! | arrays nested more than four deep | left out, noted (the language's limit) |
//! | `object` with `properties` | `{ a: T, b?: T }` (an optional object's fields all optional, noted) |
//! | any other `array`, `object`, `null`, anything else | left out, noted: a call that passes it is denied |
//! | `additionalProperties: true` | an open argument list, `args { …, .. }` |
//!
//! A tool name that is not a plain name (`get-sum`) is declared as a quoted segment:
//! `tool everything."get-sum"`.
//!
//! The effect comes from MCP tool annotations: `readOnlyHint` → `read` (`external` with
//! `openWorldHint`), otherwise `write` (MCP's defaults: not read-only, destructive). The data
//! domain is not in any schema: the caller names it, and the output leaves it undeclared, so the
//! checker refuses the file until the author declares it with its labels.

use crate::model::MAX_NEST;
use crate::Error;
use serde_json::Value;
use std::fmt::Write as _;
use tollgate_grammar::ast::{DottedName, Ident};
use tollgate_grammar::lexer::is_keyword;
use tollgate_grammar::{FileId, Span};

/// Where the tool definitions come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An MCP `tools/list` result: `{"tools": [{"name", "inputSchema", "annotations"}]}` (or the
    /// whole JSON-RPC response around it, or a bare list).
    Mcp,
    /// OpenAI function-calling tools: `[{"type": "function", "function": {"name", "parameters"}}]`
    /// (also the flatter Responses API form `{"type": "function", "name", "parameters"}`).
    OpenAi,
}

/// What to name and where to put the imported tools.
#[derive(Clone, Debug)]
pub struct Options {
    /// Tool names become `PREFIX.name`.
    pub prefix: String,
    /// The data domain every imported tool is declared in.
    pub domain: String,
    /// Where the definitions were read from (a file, a command), for the header comment.
    pub origin: String,
}

/// The generated text and what it could not express.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    pub text: String,
    pub tools: usize,
    /// One line per construct the language cannot express, `tool: what`.
    pub notes: Vec<String>,
}

fn is_identifier(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The tool definitions of `input` as (name, input schema, annotations).
fn definitions(input: &Value, source: Source) -> Result<Vec<(String, Value, Value)>, Error> {
    let list = match source {
        Source::Mcp => input
            .get("result")
            .and_then(|r| r.get("tools"))
            .or_else(|| input.get("tools"))
            .or(Some(input))
            .and_then(Value::as_array)
            .ok_or(Error::NoToolList {
                expected: "a `tools/list` result: {\"tools\": [...]}",
            })?,
        Source::OpenAi => input
            .get("tools")
            .or(Some(input))
            .and_then(Value::as_array)
            .ok_or(Error::NoToolList {
                expected:
                    "a list of function tools: [{\"type\": \"function\", \"function\": {...}}]",
            })?,
    };
    Ok(list
        .iter()
        .filter_map(|tool| {
            let (name, schema, annotations) = match source {
                Source::Mcp => (
                    tool.get("name")?,
                    tool.get("inputSchema"),
                    tool.get("annotations"),
                ),
                Source::OpenAi => {
                    let function = tool.get("function").unwrap_or(tool);
                    (function.get("name")?, function.get("parameters"), None)
                }
            };
            Some((
                name.as_str()?.to_owned(),
                schema.cloned().unwrap_or(Value::Null),
                annotations.cloned().unwrap_or(Value::Null),
            ))
        })
        .collect())
}

/// The declared type of a required property, or why it cannot be declared.
fn declared_type(schema: &Value) -> Result<(String, Option<String>), String> {
    let kind = schema.get("type").and_then(Value::as_str);
    match kind {
        Some("string") => match schema.get("enum").and_then(Value::as_array) {
            Some(values) => {
                let names: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
                if names.len() == values.len()
                    && !names.is_empty()
                    && names.iter().all(|n| is_identifier(n) && !is_keyword(n))
                {
                    Ok((format!("enum[{}]", names.join(", ")), None))
                } else {
                    Ok((
                        "string".to_owned(),
                        Some("its enum values are not all names: declared as `string`".to_owned()),
                    ))
                }
            }
            None => {
                let bound = |key: &str| schema.get(key).and_then(Value::as_u64);
                // JSON Schema counts characters, the language bytes (at most four per character).
                match (bound("minLength"), bound("maxLength")) {
                    (min, Some(max)) if min.unwrap_or(0) <= max => Ok((
                        format!("string[{}..{}]", min.unwrap_or(0), max.saturating_mul(4)),
                        Some(format!(
                            "`maxLength: {max}` counts characters: declared as at most {} bytes",
                            max.saturating_mul(4)
                        )),
                    )),
                    _ => Ok(("string".to_owned(), None)),
                }
            }
        },
        Some("integer") => {
            let min = schema.get("minimum").and_then(Value::as_i64);
            let max = schema.get("maximum").and_then(Value::as_i64);
            match (min, max) {
                (Some(min), Some(max)) if min <= max => Ok((format!("int[{min}..{max}]"), None)),
                _ => Ok(("int".to_owned(), None)),
            }
        }
        Some("number") => Ok(number(schema)),
        Some("boolean") => Ok(("bool".to_owned(), None)),
        Some("array") => list_type(schema),
        Some("object") => object_type(schema, false),
        Some(other) => Err(format!(
            "is of type `{other}`, which the language cannot express yet"
        )),
        None => Err(
            "has no single type (`anyOf`, `oneOf` or none), which the language cannot express yet"
                .to_owned(),
        ),
    }
}

/// A JSON Schema `object`: `{ a: T, b?: T }`, its properties declared as an argument's are (an
/// object in it as an object in turn). An optional object's fields are optional in the language
/// (one it requires is declared optional, noted); extra properties (`additionalProperties:
/// true`) are noted, since a call that passes one is denied.
fn object_type(schema: &Value, optional: bool) -> Result<(String, Option<String>), String> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let properties = schema.get("properties").and_then(Value::as_object);
    let Some(properties) = properties.filter(|p| !p.is_empty()) else {
        return Err(
            "is an object without declared properties, which the language cannot express"
                .to_owned(),
        );
    };
    let mut fields = Vec::new();
    let mut notes = Vec::new();
    for (field, field_schema) in properties {
        let field_optional = !required.contains(&field.as_str());
        if !is_identifier(field) {
            return Err(format!("has a field `{field}` that is not a plain name"));
        }
        let kind = field_schema.get("type").and_then(Value::as_str);
        let (declared, note) = match kind {
            Some("object") => object_type(field_schema, optional || field_optional),
            _ => declared_type(field_schema),
        }
        .map_err(|why| format!("has a field `{field}` that {why}"))?;
        let mark = if optional || field_optional { "?" } else { "" };
        if optional && !field_optional && kind != Some("object") {
            notes.push(format!(
                "field `{field}` is required when the object is given: declared optional (the language has no such rule)"
            ));
        }
        fields.push(format!("{field}{mark}: {declared}"));
        notes.extend(note.map(|n| format!("field `{field}`: {n}")));
    }
    if schema.get("additionalProperties").and_then(Value::as_bool) == Some(true) {
        notes.push("it allows more properties than it declares: a call that passes one is an invalid argument".to_owned());
    }
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok((format!("{{ {} }}", fields.join(", ")), note))
}

/// How many arrays deep a JSON Schema nests (through `items` and objects' `properties`).
fn array_depth(schema: &Value) -> usize {
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => 1 + schema.get("items").map_or(0, array_depth),
        Some("object") => schema
            .get("properties")
            .and_then(Value::as_object)
            .map_or(0, |p| p.values().map(array_depth).max().unwrap_or(0)),
        _ => 0,
    }
}

/// A JSON Schema `array`: `list[T]` of any type the language can declare (lists and objects
/// included, at most [`MAX_NEST`] lists deep); `minItems`/`maxItems` become the count.
fn list_type(schema: &Value) -> Result<(String, Option<String>), String> {
    let depth = array_depth(schema);
    if depth > MAX_NEST {
        return Err(format!(
            "is a list of lists nested {depth} deep, and the language nests lists at most {MAX_NEST} deep"
        ));
    }
    let items = schema
        .get("items")
        .ok_or("is an array without `items`, which the language cannot express")?;
    let (element, note) = match items.get("type").and_then(Value::as_str) {
        Some("object") => {
            object_type(items, false).map_err(|why| match why.starts_with("is a list") {
                true => why,
                false => format!("is a list of objects that {why}"),
            })?
        }
        _ => declared_type(items).map_err(|why| format!("is a list whose elements {why}"))?,
    };
    let bound = |key: &str| schema.get(key).and_then(Value::as_u64);
    let count = match (bound("minItems"), bound("maxItems")) {
        (None, None) => String::new(),
        (min, Some(max)) => format!("[{}..{max}]", min.unwrap_or(0)),
        // At least `minItems`, no maximum.
        (Some(min), None) => format!("[{min}..]"),
    };
    Ok((format!("list[{element}]{count}"), note))
}

/// A JSON Schema `number`: `decimal(k)` when `multipleOf` is `10^-k` (the schema states the
/// precision), else `int` with a note (no scale holds every real number; fractions are denied
/// until the author declares the scale the tool takes).
fn number(schema: &Value) -> (String, Option<String>) {
    let text = |key: &str| match schema.get(key) {
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let scale = text("multipleOf")
        .and_then(|step| (1..=18u8).find(|k| crate::decimal::units(&step, *k) == Some(1)));
    let Some(scale) = scale else {
        return (
            "int".to_owned(),
            Some("a number without a power-of-ten `multipleOf`: declared as `int`, so a call with a fraction is an invalid argument; declare `decimal(SCALE)` if the tool takes fractions".to_owned()),
        );
    };
    let bound = |key: &str| {
        let units = crate::decimal::units(&text(key)?, scale)?;
        Some(tollgate_grammar::format::decimal(i128::from(units), scale))
    };
    match (bound("minimum"), bound("maximum")) {
        (Some(min), Some(max)) => (format!("decimal({scale})[{min}..{max}]"), None),
        _ => (format!("decimal({scale})"), None),
    }
}

fn effect(annotations: &Value) -> (&'static str, Option<String>) {
    let hint = |name: &str| annotations.get(name).and_then(Value::as_bool);
    match (hint("readOnlyHint"), hint("openWorldHint")) {
        (Some(true), Some(true)) => ("external", None),
        (Some(true), _) => ("read", None),
        (Some(false), _) => ("write", None),
        (None, _) => (
            "write",
            Some("no `readOnlyHint` annotation: effect `write` assumed (a tool is not read-only unless it says so)".to_owned()),
        ),
    }
}

/// Generates `.toll` tool declarations for every tool of `input`.
pub fn import(input: &Value, source: Source, options: &Options) -> Result<Imported, Error> {
    for part in options.prefix.split('.') {
        if !is_identifier(part) {
            return Err(Error::NotAName(options.prefix.clone()));
        }
    }
    if !is_identifier(&options.domain) {
        return Err(Error::NotAName(options.domain.clone()));
    }
    let mut text = format!(
        "// Imported from {} by `tollgate import`. Declare the data domain before use:\n// domain {} {{ private }}  (its labels: private, untrusted, public)\n",
        options.origin, options.domain
    );
    let mut notes = Vec::new();
    let mut tools = 0;
    for (name, schema, annotations) in definitions(input, source)? {
        let full = format!("{}.{name}", options.prefix);
        if name.is_empty() || name.contains('.') {
            let why = format!(
                "not imported: `{name}` cannot be one segment of a tool name, so the gateway never lists or allows it"
            );
            let _ = writeln!(text, "\n// {full}: {why}");
            notes.push(format!("{full}: {why}"));
            continue;
        }
        // A name that is not plain (`get-sum`) is written as a quoted segment.
        let declared = DottedName {
            segments: options
                .prefix
                .split('.')
                .chain(std::iter::once(name.as_str()))
                .map(|segment| Ident {
                    name: segment.to_owned(),
                    span: Span::new(FileId(0), 0, 0),
                })
                .collect(),
            span: Span::new(FileId(0), 0, 0),
        }
        .source();
        let mut tool_notes = Vec::new();
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut args = Vec::new();
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (property, property_schema) in properties {
                let optional = !required.contains(&property.as_str());
                // What leaving the argument out costs: a call that needs it is denied.
                let consequence = if optional {
                    "a call that passes it is denied"
                } else {
                    "every call needs it, so every call is denied"
                };
                let kind = if optional { "optional" } else { "required" };
                if !is_identifier(property) {
                    tool_notes.push(format!(
                        "{kind} argument `{property}` left out: not a name the language can declare; {consequence}"
                    ));
                    continue;
                }
                let declared = match property_schema.get("type").and_then(Value::as_str) {
                    Some("object") => object_type(property_schema, optional),
                    _ => declared_type(property_schema),
                };
                match declared {
                    Ok((declared, note)) => {
                        let mark = if optional { "?" } else { "" };
                        args.push(format!("{property}{mark}: {declared}"));
                        if let Some(note) = note {
                            tool_notes.push(format!("argument `{property}`: {note}"));
                        }
                    }
                    Err(why) => tool_notes.push(format!(
                        "{kind} argument `{property}` left out: it {why}; {consequence}"
                    )),
                }
            }
        }
        // `additionalProperties: true` says so explicitly: an open argument list. (JSON Schema's
        // silence means the same, but the gate's default is to deny what is not declared.)
        if schema.get("additionalProperties").and_then(Value::as_bool) == Some(true) {
            args.push("..".to_owned());
        }
        let (effect, note) = effect(&annotations);
        tool_notes.extend(note);
        let _ = writeln!(text);
        for note in &tool_notes {
            let _ = writeln!(text, "// not expressed: {note}");
        }
        let _ = writeln!(
            text,
            "tool {declared} {{\n    domain {}\n    effect {effect}\n    args {{ {} }}\n}}",
            options.domain,
            args.join(", ")
        );
        notes.extend(tool_notes.into_iter().map(|n| format!("{full}: {n}")));
        tools += 1;
    }
    // Canonical form: what `tollgate fmt` would write.
    let parsed = tollgate_grammar::parse(&text, tollgate_grammar::FileId(0));
    if parsed.errors.is_empty() {
        text = tollgate_grammar::format::format(&parsed.file, &parsed.comments, &text);
    }
    Ok(Imported { text, tools, notes })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test should fail loudly")]
    use super::*;
    use serde_json::json;

    fn options() -> Options {
        Options {
            prefix: "fs".to_owned(),
            domain: "files".to_owned(),
            origin: "a test".to_owned(),
        }
    }

    #[test]
    fn required_scalars_are_declared_and_everything_else_is_noted() {
        let list = json!({"tools": [{
            "name": "read",
            "inputSchema": {"type": "object", "required": ["path", "n", "mode", "x", "tags"], "properties": {
                "path": {"type": "string"},
                "n": {"type": "integer", "minimum": 1, "maximum": 5},
                "mode": {"type": "string", "enum": ["fast", "slow"]},
                "x": {"type": "number"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "head": {"type": "integer"},
                "title": {"type": "string", "maxLength": 10},
                "exclude": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                "nested": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
                "deep": {"type": "array", "items": {"type": "array", "items": {"type": "array",
                         "items": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}}}},
                "entities": {"type": "array", "items": {"type": "object", "required": ["name", "notes"],
                             "properties": {"name": {"type": "string"}, "notes": {"type": "array", "items": {"type": "string"}}}}},
                "edits": {"type": "array", "items": {"type": "object", "required": ["a"],
                          "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}}
            }},
            "annotations": {"readOnlyHint": true}
        }, {"name": "get-sum", "inputSchema": {}}, {
            "name": "open",
            "inputSchema": {"type": "object", "required": ["path"], "additionalProperties": true,
                            "properties": {"path": {"type": "string"}}}
        }]});
        let imported = import(&list, Source::Mcp, &options()).unwrap();
        assert!(
            imported.text.contains(
                "args { path: string, n: int[1..5], mode: enum[fast, slow], x: int, tags: list[string], head?: int, title?: string[0..40], exclude?: list[string][0..3], nested?: list[list[string]], entities?: list[{ name: string, notes: list[string] }], edits?: list[{ a: string, b?: string }] }"
            ),
            "{}",
            imported.text
        );
        assert!(imported.text.contains("effect read"));
        assert_eq!(imported.tools, 3);
        assert!(
            imported.text.contains("args { path: string, .. }"),
            "{}",
            imported.text
        );
        let notes = imported.notes.join("\n");
        assert!(notes.contains("`x`: a number"), "{notes}");
        assert!(
            notes
                .contains("optional argument `deep` left out: it is a list of lists nested 5 deep"),
            "{notes}"
        );
        assert!(!notes.contains("`nested`"), "{notes}");
        assert!(!notes.contains("`edits`"), "{notes}");
        assert!(!notes.contains("`head`"), "{notes}");
        assert!(!notes.contains("`exclude`"), "{notes}");
        assert!(
            imported.text.contains("tool fs.\"get-sum\" {"),
            "{}",
            imported.text
        );
    }

    #[test]
    fn a_number_with_a_decimal_precision_is_a_decimal() {
        let tools = json!([{"type": "function", "function": {"name": "refund",
        "parameters": {"type": "object", "required": ["amount", "price", "step"], "properties": {
            "amount": {"type": "number", "multipleOf": 0.01, "minimum": 0.01, "maximum": 500},
            "price": {"type": "number", "multipleOf": 0.0001},
            "step": {"type": "number", "multipleOf": 0.25}
        }}}}]);
        let imported = import(&tools, Source::OpenAi, &options()).unwrap();
        assert!(
            imported.text.contains(
                "args { amount: decimal(2)[0.01..500.00], price: decimal(4), step: int }"
            ),
            "{}",
            imported.text
        );
        let notes = imported.notes.join("\n");
        assert!(
            notes.contains("`step`: a number without a power-of-ten `multipleOf`"),
            "{notes}"
        );
    }

    #[test]
    fn openai_function_tools_are_read_too() {
        let tools = json!([{"type": "function", "function": {"name": "refund",
            "parameters": {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "integer"}}}}}]);
        let imported = import(&tools, Source::OpenAi, &options()).unwrap();
        assert!(imported.text.contains("tool fs.refund"));
        assert!(imported.text.contains("effect write"));
        assert!(imported.notes[0].contains("no `readOnlyHint`"));
    }

    #[test]
    fn a_bad_prefix_or_shape_is_refused() {
        let bad = Options {
            prefix: "my-fs".to_owned(),
            ..options()
        };
        assert!(matches!(
            import(&json!({"tools": []}), Source::Mcp, &bad),
            Err(Error::NotAName(_))
        ));
        assert!(matches!(
            import(&json!({"nope": 1}), Source::Mcp, &options()),
            Err(Error::NoToolList { .. })
        ));
    }
}
