//! The JSON-lines protocol, defined once.
//!
//! A request line is a JSON object: `credential` (base64), `tool`, `args` (an object of numbers,
//! strings, booleans, lists and objects, nested as deep as the JSON gives them; see
//! [`arg_from_json`]) and an optional `id`, echoed in the decision line. That is the agent's
//! intent and nothing else: a line that carries `agent`, `via`, `context`, `env` or `time` is
//! refused ([`Reason::UntrustedField`]), because identity and chain come from the credential and
//! time and environment from the host. Duplicate keys at any depth, a line that is not UTF-8 or
//! not JSON, an unknown field, or a line over [`MAX_LINE`] bytes make that line — and only that
//! line — malformed.
//!
//! A decision line is a JSON object: `agent`, `tool`, `verdict` (`allow`/`deny`), `reason`,
//! `rule` (its id) and `rule_label` (its label), `revoked_agent`, `seq` (the audit record's
//! sequence number), and `id`, `via` (the attested chain), `agent_verified: false` (a refused
//! credential's claim), `detail`, and `normalized` where they apply. `normalized` maps each
//! argument that held a `path` not in normal form to the value the gate decided: a path argument
//! to its normal form (a string), a list argument to the whole list with every `path` in it — an
//! element, a field of an element's object, at any depth of lists inside lists — in normal form.
//! Whoever forwards an allowed call forwards those values, never the ones sent.

use base64::Engine as _;
use serde::de::DeserializeSeed as _;
use std::collections::BTreeMap;
use std::sync::Arc;
use tollgate_runtime::gate::ArgValue;
use tollgate_runtime::Reason;

/// The longest request line a host reads; a longer one is denied alone.
pub const MAX_LINE: usize = 1 << 20;

/// Request fields that are the host's or the credential's to say, never the agent's, and who
/// says them instead.
pub const UNTRUSTED: [(&str, &str); 5] = [
    ("agent", "the agent is the one its credential names"),
    ("via", "the delegation chain comes from the credential"),
    (
        "context",
        "the environment and the time come from the gate's host",
    ),
    (
        "env",
        "the environment comes from the gate's host (`--env`)",
    ),
    ("time", "the time comes from the gate's clock"),
];

/// Everything else a request line may hold.
pub const FIELDS: [&str; 4] = ["credential", "tool", "args", "id"];

/// Parses JSON text strictly: a duplicate key in any object, at any depth, is an error (a request
/// must mean one thing to the gate and to the tool behind it, whichever duplicate each keeps).
pub fn parse_strict(text: &str) -> Result<serde_json::Value, String> {
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

/// An argument value as a request line gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    Int(i64),
    Bool(bool),
    Str(String),
    /// Any other JSON number, as text: an `f64`'s shortest form (what JSON readers round the
    /// number to) or an integer past `i64`. A decimal argument reads it exactly; an integer
    /// argument refuses it.
    Decimal(String),
    /// A JSON array: of scalars, lists and objects, in any mix (the gate refuses a shape the
    /// tool does not declare).
    List(Vec<Arg>),
    /// A JSON object, each name once. As read; [`flatten_args`] makes an argument's object its
    /// dotted fields, and an object inside an element's object the element's dotted fields, so
    /// a call in a [`RequestLine`] holds objects only as lists' elements (at any depth), and
    /// those of scalars and lists only.
    Object(Vec<(String, Arg)>),
}

impl Arg {
    /// A scalar in the runtime's form. A list or an object needs slices built for it (see
    /// [`with_arg_values`]); here it is an empty one.
    pub fn as_value(&self) -> ArgValue<'_> {
        match self {
            Arg::Int(v) => ArgValue::Int(*v),
            Arg::Bool(v) => ArgValue::Bool(*v),
            Arg::Str(v) => ArgValue::Str(v),
            Arg::Decimal(v) => ArgValue::Decimal(v),
            Arg::List(_) => ArgValue::List(&[]),
            Arg::Object(_) => ArgValue::Object(&[]),
        }
    }

    /// The JSON value this argument reads as (a decimal as the number its text spells; an
    /// object's dotted field names, from [`flatten_args`], nested again as the objects they came
    /// from).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Arg::Int(v) => (*v).into(),
            Arg::Bool(v) => (*v).into(),
            Arg::Str(v) => v.as_str().into(),
            Arg::Decimal(v) => v
                .parse::<serde_json::Number>()
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Arg::List(items) => items.iter().map(Arg::to_json).collect(),
            Arg::Object(fields) => {
                let mut object = serde_json::Map::new();
                for (name, value) in fields {
                    insert_nested(&mut object, name, value.to_json());
                }
                object.into()
            }
        }
    }

    /// A JSON number as an argument.
    pub fn number(number: &serde_json::Number) -> Arg {
        match number.as_i64() {
            Some(v) => Arg::Int(v),
            None => Arg::Decimal(number.to_string()),
        }
    }
}

/// Why a name cannot be decided, when it holds a `.`.
fn dotted(name: &str) -> Option<String> {
    name.contains('.').then(|| {
        format!("`{name}` has a `.` in its name, which cannot be decided (`a.b` is the field `b` of the object `a`)")
    })
}

/// A JSON value as an argument; the error completes "argument `name` …" (one rule for the host's
/// lines and the gateway's `tools/call`s).
///
/// The nesting read: an argument, a list's element and an object's field are each a number, a
/// string, a boolean, a list or an object, at any depth the JSON gives (the gate refuses a shape
/// the tool does not declare). `null` anywhere is malformed, as is a name with a `.` in it
/// (`a.b` names the field `b` of the object `a`: [`flatten_args`] reads objects as their dotted
/// fields). JSON text read by serde_json nests fewer than 128 arrays and objects (its recursion
/// limit; a line nested deeper is malformed), so an [`Arg`] read from it is as shallow, and the
/// host's recursive walks of one (reading, flattening, building, normalizing, writing it back
/// as JSON) are bounded.
pub fn arg_from_json(value: &serde_json::Value) -> Result<Arg, String> {
    use serde_json::Value;
    match value {
        Value::Bool(b) => Ok(Arg::Bool(*b)),
        Value::String(s) => Ok(Arg::Str(s.clone())),
        Value::Number(n) => Ok(Arg::number(n)),
        Value::Null => {
            Err("is `null`, but values are numbers, strings, booleans, lists or objects".to_owned())
        }
        Value::Array(items) => {
            let mut list = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                list.push(arg_from_json(item).map_err(|why| format!("element {index} {why}"))?);
            }
            Ok(Arg::List(list))
        }
        Value::Object(object) => {
            let mut fields = Vec::with_capacity(object.len());
            for (name, field) in object {
                if let Some(why) = dotted(name) {
                    return Err(format!("has a field {why}"));
                }
                let field = arg_from_json(field).map_err(|why| format!("field `{name}` {why}"))?;
                fields.push((name.clone(), field));
            }
            Ok(Arg::Object(fields))
        }
    }
}

/// An object argument is its fields: `"a": {"b": 1, "c": {"d": true}}` is read as the arguments
/// `a.b` and `a.c.d` (what `args.a.b` names in a policy). An object inside a list stays an
/// object — a list's element, at any depth of lists inside lists — and an object inside such an
/// element's object is read as its fields the same way (`{"c": {"d": 1}}` as the element's
/// field `c.d`), as is one inside a list field of it, at any depth. Nothing is built for
/// arguments that hold no object to flatten.
pub fn flatten_args(args: Vec<(String, Arg)>) -> Vec<(String, Arg)> {
    if args.iter().all(|(_, arg)| is_flat(arg, false)) {
        return args;
    }
    let mut flat = Vec::with_capacity(args.len());
    for (name, value) in args {
        flatten_into(name, value, &mut flat);
    }
    flat
}

/// Whether `arg` holds no object to flatten: none at all outside a list (`in_list` false), and
/// none as a field of an element's object.
fn is_flat(arg: &Arg, in_list: bool) -> bool {
    match arg {
        Arg::Object(fields) => {
            // An element's field is read as an argument is: an object in it is flattened.
            in_list && fields.iter().all(|(_, field)| is_flat(field, false))
        }
        Arg::List(items) => items.iter().all(|item| is_flat(item, true)),
        _ => true,
    }
}

/// Adds `value`, named `path`, to `flat`: an object as its fields (`path.field`), a list with
/// its elements flattened ([`flatten_element`]), a scalar as it is.
fn flatten_into(path: String, value: Arg, flat: &mut Vec<(String, Arg)>) {
    match value {
        Arg::Object(fields) => {
            for (field, value) in fields {
                flatten_into(format!("{path}.{field}"), value, flat);
            }
        }
        Arg::List(items) => {
            let items = items.into_iter().map(flatten_element).collect();
            flat.push((path, Arg::List(items)));
        }
        scalar => flat.push((path, scalar)),
    }
}

/// A list's element as the gate reads it: an object with its fields flattened ([`flatten_into`]:
/// nested objects as dotted fields, lists with their elements flattened), a list with its
/// elements flattened, a scalar as it is.
fn flatten_element(item: Arg) -> Arg {
    match item {
        Arg::Object(fields) => {
            let mut element = Vec::with_capacity(fields.len());
            for (field, value) in fields {
                flatten_into(field, value, &mut element);
            }
            Arg::Object(element)
        }
        Arg::List(items) => Arg::List(items.into_iter().map(flatten_element).collect()),
        scalar => scalar,
    }
}

/// Puts `value` at the dotted `path` of `object`, making the objects on the way.
fn insert_nested(
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
                insert_nested(inner, rest, value);
            }
        }
    }
}

/// Sets the argument `name` (dotted for an object's field: `a.b`) in a call's JSON arguments:
/// how a gateway forwards the value the gate decided in place of the one sent.
pub fn set_argument(
    arguments: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    value: serde_json::Value,
) {
    match name.split_once('.') {
        None => {
            arguments.insert(name.to_owned(), value);
        }
        Some((head, rest)) => {
            if let Some(serde_json::Value::Object(inner)) = arguments.get_mut(head) {
                set_argument(inner, rest, value);
            }
        }
    }
}

/// Calls `then` with a call's arguments in the runtime's form, lists and objects at any depth:
/// each list borrows its elements, and each object its fields, from arenas built before it.
///
/// The values are collected depth by depth, without recursion (depth 0 is the arguments; the
/// nodes one depth down are every list's elements and every object's fields, in order), then
/// built from the deepest depth up: each depth's values borrow the arenas of the depth below,
/// which a stack frame owns while the depths above it are built and `then` runs. So no slice
/// moves, nothing outlives the call, and no `unsafe` is needed. One frame per depth: as deep as
/// the arguments nest, which JSON text bounds (see [`arg_from_json`]).
pub fn with_arg_values<'a, R, F>(args: impl IntoIterator<Item = (&'a str, &'a Arg)>, then: F) -> R
where
    F: for<'x> FnOnce(&mut [(&'x str, ArgValue<'x>)]) -> R,
{
    let mut depths = vec![Depth {
        elements: Vec::new(),
        fields: args.into_iter().collect(),
    }];
    while let Some(below) = depths.last().map(Depth::below).filter(|d| !d.is_empty()) {
        depths.push(below);
    }
    build_up(&depths, &[], &[], then)
}

/// The nodes at one depth of a call's arguments, in the order the depth below them is collected
/// ([`Depth::below`]) and in which they take their slices of it ([`build_up`]): elements first,
/// then fields.
#[derive(Debug)]
struct Depth<'a> {
    /// Nodes that are a list's elements.
    elements: Vec<&'a Arg>,
    /// Nodes that are an object's fields, with their names (at depth 0, the call's arguments).
    fields: Vec<(&'a str, &'a Arg)>,
}

impl<'a> Depth<'a> {
    /// The nodes one depth down: every list's elements, and every object's fields, in order.
    fn below(&self) -> Depth<'a> {
        let mut below = Depth {
            elements: Vec::new(),
            fields: Vec::new(),
        };
        let nodes = self.elements.iter().copied();
        for node in nodes.chain(self.fields.iter().map(|&(_, arg)| arg)) {
            match node {
                Arg::List(items) => below.elements.extend(items),
                Arg::Object(fields) => below
                    .fields
                    .extend(fields.iter().map(|(name, value)| (name.as_str(), value))),
                _ => {}
            }
        }
        below
    }

    fn is_empty(&self) -> bool {
        self.elements.is_empty() && self.fields.is_empty()
    }
}

/// Builds the last of `depths` from the arenas of the depth below it (`elements`, `fields`),
/// then the depths above it from its own; calls `then` with the first (the arguments).
fn build_up<'b, R, F>(
    depths: &'b [Depth<'b>],
    elements: &'b [ArgValue<'b>],
    fields: &'b [(&'b str, ArgValue<'b>)],
    then: F,
) -> R
where
    F: for<'x> FnOnce(&mut [(&'x str, ArgValue<'x>)]) -> R,
{
    let Some((depth, above)) = depths.split_last() else {
        return then(&mut []);
    };
    // Each list and object takes the next run of the arenas below, in the order they were
    // collected in.
    let (mut next_element, mut next_field) = (0usize, 0usize);
    let mut value = |arg: &'b Arg| match arg {
        Arg::List(items) => {
            let end = next_element.saturating_add(items.len());
            let slice = elements.get(next_element..end).unwrap_or(&[]);
            next_element = end;
            ArgValue::List(slice)
        }
        Arg::Object(object) => {
            let end = next_field.saturating_add(object.len());
            let slice = fields.get(next_field..end).unwrap_or(&[]);
            next_field = end;
            ArgValue::Object(slice)
        }
        scalar => scalar.as_value(),
    };
    let built_elements: Vec<ArgValue<'b>> = depth.elements.iter().map(|arg| value(arg)).collect();
    let mut built_fields: Vec<(&'b str, ArgValue<'b>)> = depth
        .fields
        .iter()
        .map(|&(name, arg)| (name, value(arg)))
        .collect();
    if above.is_empty() {
        return then(&mut built_fields);
    }
    build_up(above, &built_elements, &built_fields, then)
}

/// A request line as read: what the agent asked for, and — when the line itself is refused —
/// why. A refused line still names its credential and tool where it could be read, so the
/// refusal is audited under the agent that sent it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestLine {
    pub id: Option<serde_json::Value>,
    /// The credential's bytes, shared: a stream of lines from one agent holds one copy.
    pub credential: Arc<[u8]>,
    pub tool: String,
    pub args: Vec<(String, Arg)>,
    /// Set when the line is refused before any credential or policy is consulted.
    pub refused: Option<(Reason, String)>,
}

impl RequestLine {
    fn refused(reason: Reason, detail: String) -> RequestLine {
        RequestLine {
            refused: Some((reason, detail)),
            ..RequestLine::default()
        }
    }
}

/// The request line as the fast path reads it: straight into typed fields, without a value tree.
/// serde refuses a duplicate field; [`WireArgs`] and [`StrictId`] refuse duplicates inside.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(borrow)]
    credential: Option<WireBytes<'a>>,
    #[serde(borrow)]
    tool: std::borrow::Cow<'a, str>,
    args: Option<WireArgs>,
    id: Option<StrictId>,
    agent: Option<serde::de::IgnoredAny>,
    via: Option<serde::de::IgnoredAny>,
    context: Option<serde::de::IgnoredAny>,
    env: Option<serde::de::IgnoredAny>,
    time: Option<serde::de::IgnoredAny>,
}

/// A JSON string's bytes, escapes resolved, without a UTF-8 check (the credential is base64:
/// any byte outside its alphabet makes it malformed anyway).
struct WireBytes<'a>(std::borrow::Cow<'a, [u8]>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for WireBytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = std::borrow::Cow<'de, [u8]>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(std::borrow::Cow::Borrowed(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(std::borrow::Cow::Owned(v.to_vec()))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(std::borrow::Cow::Borrowed(v.as_bytes()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(std::borrow::Cow::Owned(v.as_bytes().to_vec()))
            }
        }
        // serde_json reads a JSON string as bytes here: escapes resolved, no UTF-8 validation.
        deserializer.deserialize_bytes(Visitor).map(WireBytes)
    }
}

/// Arguments, each name once (none dotted), as [`WireArg`] reads each; objects flattened
/// ([`flatten_args`]).
struct WireArgs(Vec<(String, Arg)>);

impl<'de> serde::Deserialize<'de> for WireArgs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = WireArgs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of arguments")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<WireArgs, A::Error> {
                let mut args: Vec<(String, Arg)> = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    if name.contains('.') {
                        // Refused; the slow path words why.
                        return Err(serde::de::Error::custom(format!("bad key `{name}`")));
                    }
                    let value = map.next_value_seed(WireArg)?;
                    args.push((name, value));
                }
                if let Some(name) = repeated_name(&args) {
                    return Err(serde::de::Error::custom(format!("bad key `{name}`")));
                }
                Ok(WireArgs(flatten_args(args)))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// One value read straight into an [`Arg`], as [`arg_from_json`] reads it: lists and objects at
/// any depth (each field name once, none dotted), never `null`. Anything else fails, and the slow
/// path then words the refusal. serde_json's recursion limit bounds how deep this reads, as it
/// bounds the slow path's value tree.
struct WireArg;

impl<'de> serde::de::DeserializeSeed<'de> for WireArg {
    type Value = Arg;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Arg, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for WireArg {
    type Value = Arg;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number, a string, a boolean, a list or an object")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Arg, E> {
        Ok(Arg::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Arg, E> {
        Ok(Arg::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Arg, E> {
        Ok(Arg::number(&v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Arg, E> {
        serde_json::Number::from_f64(v)
            .map(|n| Arg::number(&n))
            .ok_or_else(|| E::custom("not a finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Arg, E> {
        Ok(Arg::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Arg, E> {
        Ok(Arg::Str(v))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Arg, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(WireArg)? {
            items.push(item);
        }
        Ok(Arg::List(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Arg, A::Error> {
        let mut fields: Vec<(String, Arg)> = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if name.contains('.') {
                return Err(serde::de::Error::custom(format!("bad key `{name}`")));
            }
            let value = map.next_value_seed(WireArg)?;
            fields.push((name, value));
        }
        if let Some(name) = repeated_name(&fields) {
            return Err(serde::de::Error::custom(format!("bad key `{name}`")));
        }
        Ok(Arg::Object(fields))
    }
}

/// A name given twice among `named`: a few are compared pairwise (no allocation on the common
/// path), more are sorted first, since a line can carry tens of thousands and comparing each
/// with every other would hold the gate for seconds.
fn repeated_name(named: &[(String, Arg)]) -> Option<&str> {
    const PAIRWISE: usize = 16;
    if named.len() <= PAIRWISE {
        return named.iter().enumerate().find_map(|(at, (name, _))| {
            named
                .iter()
                .take(at)
                .any(|(earlier, _)| earlier == name)
                .then_some(name.as_str())
        });
    }
    let mut names: Vec<&str> = named.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    names.windows(2).find_map(|pair| match pair {
        [a, b] if a == b => Some(*a),
        _ => None,
    })
}

/// A request id: any JSON value, read strictly.
struct StrictId(serde_json::Value);

impl<'de> serde::Deserialize<'de> for StrictId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Strict.deserialize(deserializer).map(StrictId)
    }
}

/// Reads one request line (without its newline). Well-formed lines take a typed fast path; any
/// line it refuses is read again through a value tree, which says precisely what is wrong.
pub fn read_request(bytes: &[u8]) -> RequestLine {
    Reader::default().read(bytes)
}

/// Reads a stream of request lines, remembering the last credential it decoded: an agent sends
/// the same credential on every line, so its base64 is decoded once, not per line.
#[derive(Debug, Default)]
pub struct Reader {
    text: Vec<u8>,
    decoded: Option<Arc<[u8]>>,
}

impl Reader {
    /// Reads one request line, as [`read_request`] does.
    pub fn read(&mut self, bytes: &[u8]) -> RequestLine {
        if bytes.len() <= MAX_LINE {
            if let Ok(line) = read_typed(bytes, self) {
                return line;
            }
        }
        read_request_slowly(bytes)
    }

    /// The credential that `text` encodes (empty when it is not base64).
    fn decode(&mut self, text: &[u8]) -> Arc<[u8]> {
        let text = text.trim_ascii();
        if self.text != text {
            self.text.clear();
            self.text.extend_from_slice(text);
            self.decoded = base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()
                .map(Arc::from);
        }
        self.decoded.clone().unwrap_or_else(|| Arc::from([]))
    }
}

fn read_typed(bytes: &[u8], reader: &mut Reader) -> Result<RequestLine, ()> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let wire = <Wire<'_> as serde::Deserialize>::deserialize(&mut deserializer).map_err(|_| ())?;
    deserializer.end().map_err(|_| ())?;
    let untrusted = [
        ("agent", wire.agent.is_some()),
        ("via", wire.via.is_some()),
        ("context", wire.context.is_some()),
        ("env", wire.env.is_some()),
        ("time", wire.time.is_some()),
    ];
    if untrusted.iter().any(|(_, present)| *present)
        || wire.credential.as_ref().is_some_and(|c| !c.0.is_ascii())
    {
        // (A credential that is not ASCII is not base64, and the line may not be UTF-8.)
        // Rare: let the slow path word the refusal.
        return Err(());
    }
    Ok(RequestLine {
        id: wire.id.map(|id| id.0),
        credential: wire
            .credential
            .map(|c| reader.decode(&c.0))
            .unwrap_or_default(),
        tool: wire.tool.into_owned(),
        args: wire.args.map(|a| a.0).unwrap_or_default(),
        refused: None,
    })
}

fn read_request_slowly(bytes: &[u8]) -> RequestLine {
    let malformed = |detail: String| RequestLine::refused(Reason::Malformed, detail);
    if bytes.len() > MAX_LINE {
        return malformed(format!("the line is longer than {MAX_LINE} bytes"));
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return malformed("the line is not UTF-8".to_owned());
    };
    let value = match parse_strict(text) {
        Ok(value) => value,
        Err(error) => return malformed(format!("the line is not a JSON request: {error}")),
    };
    let serde_json::Value::Object(mut object) = value else {
        return malformed("the line is not a JSON object".to_owned());
    };
    let mut line = RequestLine {
        id: object.remove("id"),
        credential: object
            .get("credential")
            .and_then(|c| c.as_str())
            .and_then(|c| {
                base64::engine::general_purpose::STANDARD
                    .decode(c.trim())
                    .ok()
            })
            .unwrap_or_default()
            .into(),
        tool: object
            .get("tool")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_owned(),
        ..RequestLine::default()
    };
    let refuse = |mut line: RequestLine, reason, detail| {
        line.refused = Some((reason, detail));
        line
    };
    if let Some((field, owner)) = UNTRUSTED.iter().find(|(f, _)| object.contains_key(*f)) {
        let detail = format!("`{field}` is not the agent's to give: {owner}");
        return refuse(line, Reason::UntrustedField, detail);
    }
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        let detail = format!("unknown field `{unknown}`");
        return refuse(line, Reason::Malformed, detail);
    }
    if !object.get("tool").is_some_and(serde_json::Value::is_string) {
        return refuse(
            line,
            Reason::Malformed,
            "`tool` must be a string".to_owned(),
        );
    }
    match object.remove("args") {
        None => {}
        Some(serde_json::Value::Object(given)) => {
            for (name, value) in given {
                if let Some(why) = dotted(&name) {
                    return refuse(line, Reason::Malformed, format!("argument {why}"));
                }
                match arg_from_json(&value) {
                    Ok(arg) => line.args.push((name, arg)),
                    Err(why) => {
                        let detail = format!("argument `{name}` {why}");
                        return refuse(line, Reason::Malformed, detail);
                    }
                }
            }
            line.args = flatten_args(std::mem::take(&mut line.args));
        }
        Some(_) => {
            return refuse(
                line,
                Reason::Malformed,
                "`args` must be an object".to_owned(),
            )
        }
    }
    line
}

/// A decision as the host reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionLine {
    pub id: Option<serde_json::Value>,
    /// The acting agent; for a refused credential, the name it claims (unverified). Names are
    /// shared (`Arc<str>`): a gate reports the table's names without copying them per decision.
    pub agent: Arc<str>,
    pub agent_verified: bool,
    pub tool: Arc<str>,
    pub via: Vec<String>,
    pub allowed: bool,
    pub reason: Option<Reason>,
    pub rule: Option<u16>,
    /// The rule's label in words (its source label, or `rule #N`).
    pub rule_label: Option<Arc<str>>,
    pub revoked_agent: bool,
    /// The decision's audit record sequence number.
    pub seq: Option<u64>,
    pub detail: Option<String>,
    /// Arguments that held a `path` not in normal form, with the value the gate decided (a
    /// path's normal form as a string; a list whole, its paths in normal form): whoever
    /// forwards the call forwards these values instead of those sent.
    pub normalized: Vec<(String, serde_json::Value)>,
}

impl DecisionLine {
    /// The JSON form, one line (written straight from the fields, without building a map).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(160);
        // Writing to a `Vec` cannot fail, and serde_json writes UTF-8.
        let _ = self.write_json(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes the JSON form (one line, no newline) to `out`, without an intermediate string: the
    /// fields in a fixed order, written one by one (a string that needs escaping, an id and the
    /// normalized values go through serde_json).
    pub fn write_json(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        out.write_all(b"{\"agent\":")?;
        write_str(out, &self.agent)?;
        out.write_all(b",\"tool\":")?;
        write_str(out, &self.tool)?;
        out.write_all(match self.allowed {
            true => b",\"verdict\":\"allow\",\"reason\":",
            false => b",\"verdict\":\"deny\",\"reason\":",
        })?;
        match self.reason {
            Some(reason) => write_str(out, reason.as_str())?,
            None => out.write_all(b"null")?,
        }
        out.write_all(b",\"rule\":")?;
        match self.rule {
            Some(rule) => write_json_value(out, &rule)?,
            None => out.write_all(b"null")?,
        }
        if let Some(label) = &self.rule_label {
            out.write_all(b",\"rule_label\":")?;
            write_str(out, label)?;
        }
        out.write_all(match self.revoked_agent {
            true => b",\"revoked_agent\":true",
            false => b",\"revoked_agent\":false",
        })?;
        if !self.agent_verified && !self.agent.is_empty() {
            out.write_all(b",\"agent_verified\":false")?;
        }
        if let Some(seq) = self.seq {
            out.write_all(b",\"seq\":")?;
            write_json_value(out, &seq)?;
        }
        if let Some(id) = &self.id {
            out.write_all(b",\"id\":")?;
            write_json_value(out, id)?;
        }
        if !self.via.is_empty() {
            out.write_all(b",\"via\":")?;
            write_json_value(out, &self.via)?;
        }
        if let Some(detail) = &self.detail {
            out.write_all(b",\"detail\":")?;
            write_str(out, detail)?;
        }
        if !self.normalized.is_empty() {
            // By name, as a JSON object's keys are listed.
            let normalized: BTreeMap<&str, &serde_json::Value> = self
                .normalized
                .iter()
                .map(|(name, value)| (name.as_str(), value))
                .collect();
            out.write_all(b",\"normalized\":")?;
            write_json_value(out, &normalized)?;
        }
        out.write_all(b"}")
    }
}

/// A JSON string: copied between quotes when nothing in it needs escaping, else serde_json's.
fn write_str(out: &mut impl std::io::Write, text: &str) -> std::io::Result<()> {
    if plain(text.as_bytes()) {
        out.write_all(b"\"")?;
        out.write_all(text.as_bytes())?;
        out.write_all(b"\"")
    } else {
        write_json_value(out, text)
    }
}

/// Whether `text` needs no escaping in a JSON string: no control character (below 0x20), quote
/// or backslash. Eight bytes at a time: a word has a byte below `n` (for `n` ≤ 0x80) exactly when
/// `(w - n·ONES) & !w & HIGH` is not zero, and a byte equal to `c` when `w ^ c·ONES` has a zero
/// byte; bytes of 0x80 and above (UTF-8 past ASCII) never match.
fn plain(text: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH != 0;
    let mut rest = text;
    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        let w = u64::from_le_bytes(*word);
        if below(w, 0x20)
            || below(w ^ (ONES * u64::from(b'"')), 1)
            || below(w ^ (ONES * u64::from(b'\\')), 1)
        {
            return false;
        }
        rest = tail;
    }
    rest.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

fn write_json_value<T: serde::Serialize + ?Sized>(
    out: &mut impl std::io::Write,
    value: &T,
) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `plain` agrees with the byte-by-byte rule for every byte value at every position of a
    /// string that spans two words and a tail, among plain and non-ASCII neighbours.
    #[test]
    fn plain_strings_are_found_a_word_at_a_time() {
        let rule = |text: &[u8]| text.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
        for filler in [b'a', 0x7F, 0xC3, 0xFF, 0x21, 0x5D] {
            for len in [0, 1, 7, 8, 9, 16, 19] {
                for at in 0..len {
                    for byte in 0..=255u8 {
                        let mut text = vec![filler; len];
                        text[at] = byte;
                        assert_eq!(plain(&text), rule(&text), "{text:?}");
                    }
                }
                assert_eq!(plain(&vec![filler; len]), rule(&vec![filler; len]));
            }
        }
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
    fn a_repeated_name_is_found_among_few_and_many() {
        let named = |names: &[String]| -> Vec<(String, Arg)> {
            names.iter().map(|n| (n.clone(), Arg::Int(1))).collect()
        };
        for count in [2, 3, 16, 17, 1_000] {
            let mut names: Vec<String> = (0..count).map(|i| format!("a{i}")).collect();
            assert_eq!(repeated_name(&named(&names)), None, "{count}");
            names.push(format!("a{}", count / 2));
            assert_eq!(
                repeated_name(&named(&names)),
                Some(format!("a{}", count / 2).as_str()),
                "{count}"
            );
        }
        // Through the typed reader: the line is refused (the slow path words it).
        let line = read_request(br#"{"tool":"t","args":{"a":1,"b":2,"a":3}}"#);
        assert_eq!(
            line.refused.map(|(reason, _)| reason),
            Some(Reason::Malformed)
        );
    }

    #[test]
    fn a_reader_decodes_a_repeated_credential_once_and_each_new_one_afresh() {
        let mut reader = Reader::default();
        let first = reader.read(br#"{"credential":"AAEC","tool":"t"}"#);
        let again = reader.read(br#"{"credential":"AAEC","tool":"u"}"#);
        let other = reader.read(br#"{"credential":"AwQF","tool":"t"}"#);
        let broken = reader.read(br#"{"credential":"A!==","tool":"t"}"#);
        let back = reader.read(br#"{"credential":"AAEC","tool":"t"}"#);
        assert_eq!(*first.credential, vec![0, 1, 2][..]);
        assert_eq!(*again.credential, vec![0, 1, 2][..]);
        assert_eq!(*other.credential, vec![3, 4, 5][..]);
        assert_eq!(*broken.credential, [0u8; 0]);
        assert_eq!(*back.credential, vec![0, 1, 2][..]);
        // One agent's stream holds one copy of its credential.
        assert!(Arc::ptr_eq(&first.credential, &again.credential));
    }

    #[test]
    fn a_credential_is_read_as_bytes_yet_a_line_that_is_not_utf8_is_malformed() {
        let line = read_request(br#"{"credential":" AAEC\n","tool":"t"}"#);
        assert_eq!(*line.credential, vec![0, 1, 2][..]);
        assert_eq!(line.refused, None);
        let mut bytes = br#"{"credential":"AA"#.to_vec();
        bytes.push(0xff);
        bytes.extend_from_slice(br#"==","tool":"t"}"#);
        let line = read_request(&bytes);
        assert_eq!(
            line.refused,
            Some((Reason::Malformed, "the line is not UTF-8".to_owned()))
        );
    }

    fn reason(line: &str) -> Option<Reason> {
        read_request(line.as_bytes()).refused.map(|(r, _)| r)
    }

    #[test]
    fn the_agent_owns_only_its_intent() {
        for field in ["agent", "via", "context", "env", "time"] {
            let line = format!(r#"{{"credential":"AA==","tool":"t","{field}":1}}"#);
            assert_eq!(reason(&line), Some(Reason::UntrustedField), "{field}");
        }
        // An argument may be called `time`: it is intent.
        let line = r#"{"credential":"AA==","tool":"cal.book","args":{"time":9},"id":3}"#;
        let read = read_request(line.as_bytes());
        assert_eq!(read.refused, None);
        assert_eq!(read.args, vec![("time".to_owned(), Arg::Int(9))]);
        assert_eq!(read.id, Some(json!(3)));
    }

    #[test]
    fn the_fast_path_reads_as_the_slow_path() {
        let lines = [
            r#"{"credential":"AAEC","tool":"t.x","args":{"n":-5,"s":"a\"b","b":true},"id":{"k":[1,2]}}"#,
            r#"{"tool":"t.x"}"#,
            r#"{"tool":"t.x","args":{},"id":"x"}"#,
            r#"{"tool":"t\u00e9","args":{"big":9223372036854775807}}"#,
            r#"{"tool":"t.x","args":{"big":9223372036854775808}}"#,
            r#"{"tool":"t.x","args":{"n":1,"n":2}}"#,
            r#"{"tool":"t.x","tool":"t.y"}"#,
            r#"{"tool":"t.x","id":{"a":1,"a":2}}"#,
            r#"{"tool":"t.x","via":["a"]}"#,
            r#"{"tool":"t.x","args":{"f":1.5}}"#,
            r#"{"tool":"t.x","args":{"f":1.5e2,"g":-0.0,"h":1e400}}"#,
            r#"{"tool":"t.x","args":{"f":100.000000000000000001}}"#,
            r#"{"tool":"t.x","args":{"o":{}}}"#,
            r#"{"tool":"t.x","args":{"l":[1,"a",true,1.5,{"k":"v","n":2}],"m":[]}}"#,
            r#"{"tool":"t.x","args":{"l":[{"k":1,"k":2}]}}"#,
            r#"{"tool":"t.x","args":{"l":[[1]]}}"#,
            r#"{"tool":"t.x","args":{"l":[{"k":[1]}]}}"#,
            r#"{"tool":"t.x","args":{"l":[{"k":{}}]}}"#,
            r#"{"tool":"t.x","args":{"l":[null]}}"#,
            r#"{"tool":"t.x","args":{"l":[{"k":null}]}}"#,
            r#"{"tool":"t.x","extra":1}"#,
            r#"{"tool":null}"#,
        ];
        for line in lines {
            let slow = read_request_slowly(line.as_bytes());
            match read_typed(line.as_bytes(), &mut Reader::default()) {
                Ok(fast) => assert_eq!(fast, slow, "{line}"),
                Err(()) => assert!(slow.refused.is_some(), "{line}"),
            }
            assert_eq!(read_request(line.as_bytes()), slow, "{line}");
        }
    }

    #[test]
    fn a_number_with_a_fraction_is_read_as_its_shortest_text() {
        let read = read_request(br#"{"tool":"t","args":{"a":12.5,"b":1.5e2,"c":18446744073709551615,"d":100.000000000000000001}}"#);
        assert_eq!(
            read.args,
            vec![
                ("a".to_owned(), Arg::Decimal("12.5".to_owned())),
                ("b".to_owned(), Arg::Decimal("150.0".to_owned())),
                (
                    "c".to_owned(),
                    Arg::Decimal("18446744073709551615".to_owned())
                ),
                ("d".to_owned(), Arg::Decimal("100.0".to_owned())),
            ]
        );
        assert_eq!(read.refused, None);
    }

    #[test]
    fn lists_objects_and_objects_in_lists_are_read_and_null_and_dotted_names_are_not() {
        let read = read_request(br#"{"tool":"t","args":{"l":[1,"a",{"k":"v","n":2.5}],"e":[]}}"#);
        assert_eq!(read.refused, None);
        assert_eq!(
            read.args,
            vec![
                (
                    "l".to_owned(),
                    Arg::List(vec![
                        Arg::Int(1),
                        Arg::Str("a".to_owned()),
                        Arg::Object(vec![
                            ("k".to_owned(), Arg::Str("v".to_owned())),
                            ("n".to_owned(), Arg::Decimal("2.5".to_owned())),
                        ]),
                    ])
                ),
                ("e".to_owned(), Arg::List(Vec::new())),
            ]
        );
        for (line, says) in [
            (
                r#"{"tool":"t","args":{"o":{"k.j":1}}}"#,
                "argument `o` has a field `k.j` has a `.` in its name",
            ),
            (
                r#"{"tool":"t","args":{"l":[1,null]}}"#,
                "argument `l` element 1 is `null`",
            ),
            (
                r#"{"tool":"t","args":{"l":[[1],[2,null]]}}"#,
                "argument `l` element 1 element 1 is `null`",
            ),
            (
                r#"{"tool":"t","args":{"l":[{"k":[{"m":{"n.o":1}}]}]}}"#,
                "argument `l` element 0 field `k` element 0 field `m` has a field `n.o` has a `.`",
            ),
            (
                r#"{"tool":"t","args":{"l":[[{"k":1,"k":1}]]}}"#,
                "duplicate key `k`",
            ),
            (
                r#"{"tool":"t","args":{"l":[{"k":1,"k":1}]}}"#,
                "duplicate key `k`",
            ),
        ] {
            let (reason, detail) = read_request(line.as_bytes()).refused.unwrap();
            assert_eq!(reason, Reason::Malformed, "{line}");
            assert!(detail.contains(says), "{line}: {detail}");
        }
        // An object argument is read as its dotted fields; so is an object inside an element's.
        let read = read_request(
            br#"{"tool":"t","args":{"o":{"k":1,"m":{"n":true,"l":["x"]}},"l":[{"e":{"s":"sh"}}]}}"#,
        );
        assert_eq!(read.refused, None);
        assert_eq!(
            read.args,
            vec![
                ("o.k".to_owned(), Arg::Int(1)),
                ("o.m.n".to_owned(), Arg::Bool(true)),
                (
                    "o.m.l".to_owned(),
                    Arg::List(vec![Arg::Str("x".to_owned())])
                ),
                (
                    "l".to_owned(),
                    Arg::List(vec![Arg::Object(vec![(
                        "e.s".to_owned(),
                        Arg::Str("sh".to_owned())
                    )])])
                ),
            ]
        );
        // The slow path reads it the same way.
        assert_eq!(read_request_slowly(
            br#"{"tool":"t","args":{"o":{"k":1,"m":{"n":true,"l":["x"]}},"l":[{"e":{"s":"sh"}}]}}"#,
        ).args.len(), 4);
    }

    /// Reads `line` on the fast path, which must read it, and checks the slow path and the reader
    /// read it the same.
    fn read_both_ways(line: &str) -> RequestLine {
        let fast = read_typed(line.as_bytes(), &mut Reader::default())
            .unwrap_or_else(|()| panic!("the fast path refused {line}"));
        assert_eq!(fast, read_request_slowly(line.as_bytes()), "{line}");
        assert_eq!(fast, read_request(line.as_bytes()), "{line}");
        assert_eq!(fast.refused, None, "{line}");
        fast
    }

    fn s(text: &str) -> Arg {
        Arg::Str(text.to_owned())
    }

    #[test]
    fn a_list_of_lists_and_a_list_field_in_elements_read_the_same_on_both_paths() {
        let read = read_both_ways(r#"{"tool":"t","args":{"rows":[[1,2],[],[3]]}}"#);
        assert_eq!(
            read.args,
            vec![(
                "rows".to_owned(),
                Arg::List(vec![
                    Arg::List(vec![Arg::Int(1), Arg::Int(2)]),
                    Arg::List(Vec::new()),
                    Arg::List(vec![Arg::Int(3)]),
                ])
            )]
        );
        // The memory server's entities: a list field in each element's object.
        let read = read_both_ways(
            r#"{"tool":"t","args":{"entities":[{"name":"Ada","observations":["a","b"]},{"name":"Bob","observations":[]}]}}"#,
        );
        assert_eq!(
            read.args,
            vec![(
                "entities".to_owned(),
                Arg::List(vec![
                    Arg::Object(vec![
                        ("name".to_owned(), s("Ada")),
                        ("observations".to_owned(), Arg::List(vec![s("a"), s("b")])),
                    ]),
                    Arg::Object(vec![
                        ("name".to_owned(), s("Bob")),
                        ("observations".to_owned(), Arg::List(Vec::new())),
                    ]),
                ])
            )]
        );
        // Deeper, mixed: lists of lists of objects with list fields of lists; and an object
        // argument holding a list of lists.
        let read = read_both_ways(
            r#"{"tool":"t","args":{"x":[[{"k":[[1.5],["s",true]]}]],"o":{"l":[[1]]}}}"#,
        );
        assert_eq!(
            read.args,
            vec![
                (
                    "x".to_owned(),
                    Arg::List(vec![Arg::List(vec![Arg::Object(vec![(
                        "k".to_owned(),
                        Arg::List(vec![
                            Arg::List(vec![Arg::Decimal("1.5".to_owned())]),
                            Arg::List(vec![s("s"), Arg::Bool(true)]),
                        ])
                    )])])])
                ),
                (
                    "o.l".to_owned(),
                    Arg::List(vec![Arg::List(vec![Arg::Int(1)])])
                ),
            ]
        );
        // Read back as the JSON they came from.
        for value in [
            json!([[1, 2], [], [3]]),
            json!([{"name": "Ada", "observations": ["a", {"m": {"n": 1}}]}]),
            json!([[[{"k": [[1.5], ["s", true]]}]]]),
        ] {
            let arg = flatten_args(vec![("a".to_owned(), arg_from_json(&value).unwrap())]);
            assert_eq!(arg.len(), 1);
            assert_eq!(arg[0].1.to_json(), value);
        }
    }

    #[test]
    fn objects_inside_nested_list_elements_are_flattened_to_dotted_fields() {
        let line = r#"{"tool":"t","args":{"l":[[{"a":{"b":1,"c":{"d":"x"}},"e":2}]],"m":[{"f":[{"g":{"h":true}}],"i":{"j":[[{"k":{"n":3}}]]}}]}}"#;
        let read = read_both_ways(line);
        assert_eq!(
            read.args,
            vec![
                (
                    "l".to_owned(),
                    Arg::List(vec![Arg::List(vec![Arg::Object(vec![
                        ("a.b".to_owned(), Arg::Int(1)),
                        ("a.c.d".to_owned(), s("x")),
                        ("e".to_owned(), Arg::Int(2)),
                    ])])])
                ),
                (
                    "m".to_owned(),
                    Arg::List(vec![Arg::Object(vec![
                        (
                            "f".to_owned(),
                            Arg::List(vec![Arg::Object(vec![("g.h".to_owned(), Arg::Bool(true))])])
                        ),
                        (
                            "i.j".to_owned(),
                            Arg::List(vec![Arg::List(vec![Arg::Object(vec![(
                                "k.n".to_owned(),
                                Arg::Int(3)
                            )])])])
                        ),
                    ])])
                ),
            ]
        );
        // Already flat: given back as it is.
        let flat = vec![(
            "l".to_owned(),
            Arg::List(vec![Arg::List(vec![Arg::Object(vec![(
                "a.b".to_owned(),
                Arg::List(vec![Arg::Int(1)]),
            )])])]),
        )];
        assert_eq!(flatten_args(flat.clone()), flat);
    }

    #[test]
    fn nesting_is_read_up_to_json_s_recursion_limit_and_refused_past_it() {
        let nested = |depth: usize| {
            format!(
                r#"{{"tool":"t","args":{{"l":{}1{}}}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        // serde_json reads at most 127 arrays and objects inside each other, the line's object and
        // `args` among them: 125 lists fit.
        let read = read_both_ways(&nested(125));
        let mut arg = &read.args[0].1;
        let mut depth = 0;
        while let Arg::List(items) = arg {
            assert_eq!(items.len(), 1);
            arg = &items[0];
            depth += 1;
        }
        assert_eq!((depth, arg), (125, &Arg::Int(1)));
        with_arg_values(read.args.iter().map(|(n, a)| (n.as_str(), a)), |args| {
            let mut value = args[0].1;
            for _ in 0..125 {
                let ArgValue::List([inner]) = value else {
                    panic!("{value:?}")
                };
                value = *inner;
            }
            assert_eq!(value, ArgValue::Int(1));
        });
        for depth in [126, 200, 100_000] {
            let line = nested(depth);
            assert!(read_typed(line.as_bytes(), &mut Reader::default()).is_err());
            let (reason, detail) = read_request(line.as_bytes()).refused.unwrap();
            assert_eq!(reason, Reason::Malformed);
            assert!(detail.contains("recursion limit exceeded"), "{detail}");
        }
    }

    #[test]
    fn the_builder_borrows_each_depth_from_the_one_below() {
        // `m` and `n` in name order, as a call's arguments; `n` three lists deep, with objects
        // and their list fields at every depth.
        let args = [
            ("s".to_owned(), Arg::Int(7)),
            (
                "n".to_owned(),
                Arg::List(vec![
                    Arg::List(vec![
                        Arg::Object(vec![
                            ("k".to_owned(), Arg::List(vec![s("a"), s("b")])),
                            ("v".to_owned(), Arg::Bool(true)),
                        ]),
                        Arg::List(vec![Arg::Int(1), Arg::Decimal("2.5".to_owned())]),
                    ]),
                    Arg::List(Vec::new()),
                    Arg::Object(vec![("e".to_owned(), Arg::List(Vec::new()))]),
                    Arg::Int(3),
                ]),
            ),
            (
                "m".to_owned(),
                Arg::List(vec![Arg::Object(vec![(
                    "f".to_owned(),
                    Arg::List(vec![Arg::List(vec![s("x")])]),
                )])]),
            ),
            ("o".to_owned(), Arg::Object(vec![("p".to_owned(), s("q"))])),
        ];
        let built = with_arg_values(args.iter().map(|(n, a)| (n.as_str(), a)), |args| {
            use ArgValue::{Bool, Decimal, Int, List, Object, Str};
            let n = List(&[
                List(&[
                    Object(&[("k", List(&[Str("a"), Str("b")])), ("v", Bool(true))]),
                    List(&[Int(1), Decimal("2.5")]),
                ]),
                List(&[]),
                Object(&[("e", List(&[]))]),
                Int(3),
            ]);
            let m = List(&[Object(&[("f", List(&[List(&[Str("x")])]))])]);
            let o = Object(&[("p", Str("q"))]);
            assert_eq!(args, &[("s", Int(7)), ("n", n), ("m", m), ("o", o)][..]);
            // The callback may reorder them (the gate sorts them by name).
            args.sort_unstable_by(|a, b| a.0.cmp(b.0));
            args.iter().map(|(name, _)| *name).collect::<String>()
        });
        assert_eq!(built, "mnos");
        // No arguments, and scalars only: one depth, nothing below it.
        assert_eq!(with_arg_values([], |args| args.len()), 0);
        let one = Arg::Bool(false);
        with_arg_values([("b", &one)], |args| {
            assert_eq!(args, &[("b", ArgValue::Bool(false))][..])
        });
    }

    #[test]
    fn a_gateway_sets_a_decided_value_where_it_came_from() {
        let mut arguments = serde_json::Map::new();
        arguments.insert("p".to_owned(), json!("a/./b"));
        arguments.insert("o".to_owned(), json!({"d": {"p": "x//y"}, "k": 1}));
        set_argument(&mut arguments, "p", json!("a/b"));
        set_argument(&mut arguments, "o.d.p", json!("x/y"));
        // A path the call does not hold is not invented.
        set_argument(&mut arguments, "q.r", json!("z"));
        assert_eq!(
            serde_json::Value::Object(arguments),
            json!({"p": "a/b", "o": {"d": {"p": "x/y"}, "k": 1}})
        );
        // A list reported whole: its elements' flattened fields nested again.
        let list = Arg::List(vec![Arg::Object(vec![
            ("meta.size".to_owned(), Arg::Int(6)),
            ("path".to_owned(), Arg::Str("a".to_owned())),
        ])]);
        assert_eq!(list.to_json(), json!([{"meta": {"size": 6}, "path": "a"}]));
    }

    #[test]
    fn a_decision_line_is_written_field_by_field_and_escaped() {
        let mut line = DecisionLine {
            id: Some(json!({"n": [1, "x"]})),
            agent: "bot \"q\"\n".into(),
            agent_verified: false,
            tool: "crm.read".into(),
            via: vec!["lead".to_owned(), "a\\b".to_owned()],
            allowed: false,
            reason: Some(Reason::NotPermitted),
            rule: Some(7),
            rule_label: Some("no \u{1} secrets".into()),
            revoked_agent: true,
            seq: Some(42),
            detail: Some("é".to_owned()),
            normalized: vec![
                ("z".to_owned(), json!("a/b")),
                ("p".to_owned(), json!(["c", "d"])),
            ],
        };
        assert_eq!(
            line.to_json(),
            r#"{"agent":"bot \"q\"\n","tool":"crm.read","verdict":"deny","reason":"not_permitted","rule":7,"rule_label":"no \u0001 secrets","revoked_agent":true,"agent_verified":false,"seq":42,"id":{"n":[1,"x"]},"via":["lead","a\\b"],"detail":"é","normalized":{"p":["c","d"],"z":"a/b"}}"#
        );
        line = DecisionLine {
            id: None,
            agent: "".into(),
            agent_verified: false,
            tool: "".into(),
            via: Vec::new(),
            allowed: true,
            reason: None,
            rule: None,
            rule_label: None,
            revoked_agent: false,
            seq: None,
            detail: None,
            normalized: Vec::new(),
        };
        assert_eq!(
            line.to_json(),
            r#"{"agent":"","tool":"","verdict":"allow","reason":null,"rule":null,"revoked_agent":false}"#
        );
    }

    #[test]
    fn a_list_reads_back_as_the_json_it_came_from() {
        let value = json!([1, "a", true, 1.5, {"k": "v", "n": -2}]);
        assert_eq!(arg_from_json(&value).unwrap().to_json(), value);
    }

    #[test]
    fn each_bad_line_is_malformed_alone() {
        assert_eq!(reason("{\"tool\":\"t\"\u{0}"), Some(Reason::Malformed));
        assert_eq!(
            read_request(&[b'{', 0xff, b'}']).refused.map(|(r, _)| r),
            Some(Reason::Malformed)
        );
        assert_eq!(
            reason(r#"{"tool":"t","role":"admin"}"#),
            Some(Reason::Malformed)
        );
        assert_eq!(reason(r#"{"tool":"t","args":{"n":1.5}}"#), None);
        assert_eq!(
            reason(r#"{"tool":"t","args":[1]}"#),
            Some(Reason::Malformed)
        );
        assert_eq!(reason(r#"{"tool":7}"#), Some(Reason::Malformed));
        assert_eq!(reason("[]"), Some(Reason::Malformed));
        let long = vec![b' '; MAX_LINE + 1];
        assert_eq!(
            read_request(&long).refused.map(|(r, _)| r),
            Some(Reason::Malformed)
        );
    }
}
