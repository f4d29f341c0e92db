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

/// Parses JSON text strictly: a duplicate key in any object, at any depth, is an error (a request
/// must mean one thing to the gate and to the tool behind it, whichever duplicate each keeps).
pub fn parse_strict(text: &str) -> Result<serde_json::Value, String> {
    use serde::de::DeserializeSeed as _;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Strict
        .deserialize(&mut deserializer)
        .map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// A JSON value that refuses duplicate object keys.
struct Strict;

impl<'de> serde::de::DeserializeSeed<'de> for Strict {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(Strict)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(Strict)?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

/// Reads one request; `default_time` stands in for a missing `context.time`.
pub fn from_json(value: serde_json::Value, default_time: u64) -> Result<Request, String> {
    let parsed: JsonRequest = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let mut args = BTreeMap::new();
    for (name, value) in parsed.args {
        let value = match value {
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::String(s) => Value::Str(s),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => {
                    return Err(format!(
                        "argument `{name}` is `{n}`, but numbers must be 64-bit integers"
                    ))
                }
            },
            other => {
                return Err(format!(
                "argument `{name}` is `{other}`, but arguments are integers, strings or booleans"
            ))
            }
        };
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
    let args: serde_json::Map<String, serde_json::Value> = request
        .args
        .iter()
        .map(|(name, value)| {
            let json = match value {
                Value::Int(i) => serde_json::Value::from(*i),
                Value::Bool(b) => serde_json::Value::from(*b),
                Value::Str(s) | Value::Sym(s) => serde_json::Value::from(s.clone()),
            };
            (name.clone(), json)
        })
        .collect();
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
    fn duplicate_keys_are_refused_at_any_depth() {
        let error =
            parse_strict(r#"{"tool":"t","args":{"amount":5000,"currency":"usd","amount":50}}"#)
                .unwrap_err();
        assert!(error.contains("duplicate key `amount`"), "{error}");
        assert!(parse_strict(r#"{"a":1,"a":1}"#).is_err());
        assert!(parse_strict(r#"[{"x":{"y":1,"y":2}}]"#).is_err());
        assert!(parse_strict(r#"{"a":1} trailing"#).is_err());
        let value = parse_strict(r#"{"a":[1,-2,1.5,"s",true,null,{"b":{}}]}"#).unwrap();
        assert_eq!(value, json!({"a":[1,-2,1.5,"s",true,null,{"b":{}}]}));
    }

    #[test]
    fn missing_time_takes_the_default() {
        let request = from_json(json!({"agent": "a", "tool": "t"}), 42).unwrap();
        assert_eq!(request.time, 42);
    }

    #[test]
    fn unknown_fields_and_fractions_are_refused() {
        assert!(from_json(json!({"agent": "a", "tool": "t", "role": "admin"}), 0).is_err());
        assert!(from_json(json!({"agent": "a", "tool": "t", "args": {"n": 1.5}}), 0).is_err());
        assert!(from_json(json!({"agent": "a", "tool": "t", "args": {"n": null}}), 0).is_err());
    }
}
