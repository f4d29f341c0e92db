//! The JSON form of a request, as `tollgate eval` reads it and witnesses are printed:
//!
//! ```json
//! {"agent": "support_bot", "tool": "payments.refund",
//!  "args": {"amount": 50, "currency": "usd"},
//!  "via": ["triage_bot"],
//!  "context": {"env": "prod", "time": 1767225600}}
//! ```
//!
//! `via` (the agents that delegated, origin first) and `context` are optional, as is each field of
//! `context`; a missing `time` is filled in by the caller. Unknown fields are rejected: a request
//! either means exactly one thing or is refused.

use crate::model::{Request, Value};
use crate::Error;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    agent: String,
    tool: String,
    #[serde(default)]
    args: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    via: Vec<String>,
    #[serde(default)]
    context: JsonContext,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<u64>,
}

/// One argument value: a number, string or boolean, or a list or object of them. `null` is no
/// value at all.
fn read_value(name: &str, value: serde_json::Value) -> Result<Value, Error> {
    Ok(match value {
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::String(s) => Value::Str(s),
        // Any other number is kept as its text (an `f64`'s shortest form, or an integer past
        // `i64`): a decimal argument reads it exactly, anything else refuses it.
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Decimal(n.to_string()),
        },
        serde_json::Value::Array(items) => Value::List(
            items
                .into_iter()
                .map(|item| read_value(name, item))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(field, value)| {
                    let path = format!("{name}.{field}");
                    undotted(&field, &path)?;
                    Ok((field, read_value(&path, value)?))
                })
                .collect::<Result<_, Error>>()?,
        ),
        other => {
            return Err(Error::ArgumentNotScalar {
                name: name.to_owned(),
                value: other,
            })
        }
    })
}

/// A name in a request holds no `.`: `a.b` names the field `b` of the object argument `a`, so a
/// name of its own with a dot in it could not be told from it.
fn undotted(name: &str, path: &str) -> Result<(), Error> {
    if name.contains('.') {
        return Err(Error::MalformedRequest(format!(
            "`{path}`: a name with `.` cannot be decided (`a.b` is the field `b` of the object `a`)"
        )));
    }
    Ok(())
}

/// Puts `value` at the dotted `path` of `object`: `a.b` as `{"a": {"b": value}}`.
fn insert_path(
    object: &mut serde_json::Map<String, serde_json::Value>,
    path: &str,
    value: serde_json::Value,
) {
    match path.split_once('.') {
        None => {
            object.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let inner = object
                .entry(head.to_owned())
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let serde_json::Value::Object(inner) = inner {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// A value as JSON (see [`to_json`]); an object's dotted field names are nested again.
fn write_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Bool(b) => serde_json::Value::from(*b),
        Value::Str(s) | Value::Sym(s) => serde_json::Value::from(s.clone()),
        // A number stays a number when JSON's reader reads back the same value (`10.50` as
        // `10.5`); else it is written as text, which decimals also take.
        Value::Decimal(s) => {
            let places = s.split_once('.').map_or(0, |(_, f)| f.len().min(18) as u8);
            let exact = |text: &str| crate::decimal::units(text, places);
            serde_json::from_str::<serde_json::Number>(s)
                .ok()
                .filter(|n| exact(&n.to_string()).is_some_and(|v| Some(v) == exact(s)))
                .map_or_else(
                    || serde_json::Value::from(s.clone()),
                    serde_json::Value::Number,
                )
        }
        Value::List(items) => serde_json::Value::Array(items.iter().map(write_value).collect()),
        Value::Object(fields) => {
            let mut object = serde_json::Map::new();
            for (name, value) in fields {
                insert_path(&mut object, name, write_value(value));
            }
            serde_json::Value::Object(object)
        }
    }
}

/// Reads one request; `default_time` stands in for a missing `context.time`.
pub fn from_json(value: serde_json::Value, default_time: u64) -> Result<Request, Error> {
    let parsed: JsonRequest =
        serde_json::from_value(value).map_err(|e| Error::MalformedRequest(e.to_string()))?;
    let mut args = BTreeMap::new();
    for (name, value) in parsed.args {
        undotted(&name, &name)?;
        let value = read_value(&name, value)?;
        args.insert(name, value);
    }
    Ok(Request {
        agent: parsed.agent,
        tool: parsed.tool,
        args,
        via: parsed.via,
        env: parsed.context.env,
        time: parsed.context.time.unwrap_or(default_time),
    })
}

/// The JSON form of a request; `from_json(to_json(r)) == r` up to enum values, which are
/// written as strings.
pub fn to_json(request: &Request) -> serde_json::Value {
    // The arguments of an object argument (`a.b`) are written as the object (`{"a": {"b": …}}`).
    let mut args = serde_json::Map::new();
    for (name, value) in &request.args {
        insert_path(&mut args, name, write_value(value));
    }
    let json = JsonRequest {
        agent: request.agent.clone(),
        tool: request.tool.clone(),
        args,
        via: request.via.clone(),
        context: JsonContext {
            env: request.env.clone(),
            time: Some(request.time),
        },
    };
    serde_json::to_value(json).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_request_reads() {
        let request = from_json(
            json!({"agent": "a", "tool": "t.x", "args": {"n": 5, "s": "x", "b": true},
                   "via": ["o"], "context": {"env": "prod", "time": 7}}),
            0,
        )
        .unwrap();
        assert_eq!(request.args["n"], Value::Int(5));
        assert_eq!(request.via, vec!["o".to_owned()]);
        assert_eq!(request.env.as_deref(), Some("prod"));
        assert_eq!(request.time, 7);
        assert_eq!(from_json(to_json(&request), 0).unwrap(), request);
    }

    #[test]
    fn a_decimal_is_written_as_a_number_when_json_reads_back_its_value() {
        let mut request = from_json(json!({"agent": "a", "tool": "t.x"}), 0).unwrap();
        for (text, written) in [
            ("10.50", json!(10.5)),
            ("0.01", json!(0.01)),
            ("-3.0", json!(-3.0)),
            // More digits than a double holds: kept exact, as text.
            ("12345678901234567.89", json!("12345678901234567.89")),
        ] {
            request
                .args
                .insert("n".to_owned(), Value::Decimal(text.to_owned()));
            assert_eq!(to_json(&request)["args"]["n"], written, "{text}");
        }
    }

    #[test]
    fn missing_time_takes_the_default() {
        let request = from_json(json!({"agent": "a", "tool": "t"}), 42).unwrap();
        assert_eq!(request.time, 42);
    }

    #[test]
    fn unknown_fields_and_fractions_are_refused() {
        assert!(matches!(
            from_json(json!({"agent": "a", "tool": "t", "role": "admin"}), 0),
            Err(Error::MalformedRequest(_))
        ));
        assert_eq!(
            from_json(json!({"agent": "a", "tool": "t", "args": {"n": 1.5}}), 0)
                .map(|r| r.args.get("n").cloned()),
            Ok(Some(Value::Decimal("1.5".to_owned())))
        );
        assert!(matches!(
            from_json(json!({"agent": "a", "tool": "t", "args": {"n": null}}), 0),
            Err(Error::ArgumentNotScalar { .. })
        ));
    }
}
