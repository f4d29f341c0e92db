//! The Z3 encoding of the semantics, for one (agent, tool) bucket at a time.
//!
//! Free variables are the request's arguments, its environment, its hour, and which delegation
//! chain it comes through; agent and tool attributes are constants, because a bucket fixes both.
//! The encoding means what `eval` means: integers are constrained to the signed 64-bit range (and
//! declared bounds), strings are sequences of their UTF-8 bytes (one Z3 character below 256 per
//! byte, so equality, prefix, suffix and substring are the evaluator's byte-wise tests over the
//! whole Unicode range), and enum values, environments and agents are integers indexing one
//! shared symbol table.

use crate::model::*;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::str::FromStr;
use tollgate_grammar::ast::{CompareOp, StringOp};
use z3::ast::{Bool, Int, Regexp, String as ZString};
use z3::{Model, Solver};

/// A value in the encoding.
#[derive(Clone, Debug)]
pub enum Zv {
    Int(Int),
    Bool(Bool),
    Str(ZString),
    /// An index into the symbol table.
    Sym(Int),
    /// A string argument decided over its policy's constants ([`FiniteStrings`]).
    Finite(Rc<FiniteString>),
    /// A list argument: its length and its first elements (see [`ListAtoms`] for how many).
    List(Rc<ZList>),
    /// A list element's fields.
    Object(Rc<ZObject>),
}

/// A list element's object in the encoding: a value per field (in name order, as the table's
/// field indexes count them) and, per optional field, whether the element gives it (an absent
/// field's value is free: programs read it only behind `has`).
#[derive(Debug)]
pub struct ZObject {
    pub fields: BTreeMap<String, Zv>,
    pub present: BTreeMap<String, Bool>,
}

/// A list in the encoding: its length, and values for elements `0..elements.len()`; the length
/// never exceeds that many (the small-model bound of [`ListAtoms::bound`]).
#[derive(Debug)]
pub struct ZList {
    pub len: Int,
    pub elements: Vec<Zv>,
}

/// What bounds a list's length in the encoding, per list argument name: how many quantifier
/// atoms (`all`, `any`, `in`) read it, and one past the largest constant `len(…)` meets.
///
/// Why a bounded length decides every query exactly (the semantics chapter states it): a
/// query's formula is a boolean combination of atoms; over one list these are quantifiers
/// `all x in L { B }` and `any x in L { B }` (bodies do not nest and read one element each) and
/// comparisons of `len(L)` with constants. Take a request that satisfies the formula with a
/// list of n elements. Keep one witness element per quantifier atom whose truth needs one (a
/// true `any`, a false `all`) and pad with copies of any element up to m elements: a copy
/// satisfies every body all elements satisfy and no body no element satisfies, so every
/// quantifier atom keeps its value; every `len` comparison keeps its value when m and n are
/// both at or past the threshold T. With q atoms in the query, m = max(q, T, declared minimum)
/// suffices, and m ≤ n whenever n is larger. An atom of a rule's condition appears once per
/// member of the chain (agent attributes differ per member) and twice in translation
/// validation (source and program), so the bound is `max(min, T, 2 × atoms × members)`,
/// capped at the declared maximum.
#[derive(Clone, Debug, Default)]
pub struct ListAtoms {
    by_name: BTreeMap<String, (usize, u64)>,
    /// Counted per bucket ([`ListAtoms::for_bucket`]): each rule once per member it applies to,
    /// times `factor`; otherwise once per rule, times `2 × members` at [`ListAtoms::bound`].
    per_bucket: Option<usize>,
}

impl ListAtoms {
    pub fn of_all(policies: &[&Policy]) -> ListAtoms {
        let mut atoms = ListAtoms::default();
        for policy in policies {
            for rule in &policy.rules {
                if let Some(condition) = &rule.condition {
                    atoms.count(condition, &[]);
                }
            }
            for assertion in &policy.assertions {
                if let AssertionKind::Never { condition, .. }
                | AssertionKind::Always { condition, .. } = &assertion.kind
                {
                    if let Some(condition) = condition {
                        atoms.count(condition, &[]);
                    }
                }
            }
        }
        atoms
    }

    /// The atoms of one bucket's queries: each rule that can apply to `tool`, once for every
    /// agent of `members` (the agents whose conditions a query conjoins) it matches; every
    /// assertion once. `factor` is 2 when a query compares two formulas of the same rules
    /// (translation validation), else 1.
    pub fn for_bucket(
        policies: &[&Policy],
        tool: ToolId,
        members: &[AgentId],
        factor: usize,
    ) -> ListAtoms {
        let mut atoms = ListAtoms {
            by_name: BTreeMap::new(),
            per_bucket: Some(factor),
        };
        for policy in policies {
            for rule in &policy.rules {
                let Some(condition) = &rule.condition else {
                    continue;
                };
                if !policy.tool_matches(&rule.tools, tool) {
                    continue;
                }
                for &member in members {
                    if policy.principal_matches(&rule.principal, member) {
                        atoms.count(condition, &[]);
                    }
                }
            }
            for assertion in &policy.assertions {
                if let AssertionKind::Never { condition, .. }
                | AssertionKind::Always { condition, .. } = &assertion.kind
                {
                    if let Some(condition) = condition {
                        atoms.count(condition, &[]);
                    }
                }
            }
        }
        atoms
    }

    /// Counts a condition's atoms, `keys` the keys of the lists the quantifiers around it range
    /// over (innermost last).
    fn count(&mut self, condition: &Condition, keys: &[String]) {
        match &condition.kind {
            ConditionKind::Or(a, b) | ConditionKind::And(a, b) => {
                self.count(a, keys);
                self.count(b, keys);
            }
            ConditionKind::Not(inner) => self.count(inner, keys),
            ConditionKind::Quantified { list, body, .. } => {
                let Some(key) = list.key(keys) else {
                    return;
                };
                self.by_name.entry(key.clone()).or_default().0 += 1;
                let mut inner = keys.to_vec();
                inner.push(key);
                self.count(body, &inner);
            }
            // `len(L) in [a, b]` is `len(L) == a or len(L) == b`.
            ConditionKind::In {
                lhs: Term::Len(list),
                set,
            } => {
                if let Some(key) = list.key(keys) {
                    let entry = self.by_name.entry(key).or_default();
                    for value in set {
                        if let Value::Int(c) = value {
                            entry.1 = entry
                                .1
                                .max(u64::try_from(*c).unwrap_or(0).saturating_add(1));
                        }
                    }
                }
            }
            ConditionKind::Compare { lhs, rhs, .. } => {
                for (side, other) in [(lhs, rhs), (rhs, lhs)] {
                    if let (Term::Len(list), Term::Const(Value::Int(c))) = (side, other) {
                        let Some(key) = list.key(keys) else {
                            continue;
                        };
                        let entry = self.by_name.entry(key).or_default();
                        entry.1 = entry
                            .1
                            .max(u64::try_from(*c).unwrap_or(0).saturating_add(1));
                    }
                }
            }
            _ => {}
        }
    }

    /// How many elements the encoding gives list `name` declared with `count` bounds, when a
    /// query conjoins conditions of at most `members` agents.
    pub fn bound(&self, name: &str, count: (u64, u64), members: usize) -> u64 {
        let (atoms, threshold) = self.by_name.get(name).copied().unwrap_or_default();
        let needed = match self.per_bucket {
            Some(factor) => atoms * factor,
            None => 2 * atoms * members.max(1),
        } as u64;
        count.0.max(threshold).max(needed).min(count.1)
    }
}

/// The pieces a [`FiniteString`] is built from, for one argument name.
#[derive(Debug)]
pub struct Pieces {
    /// Every constant the argument meets: the value may be exactly one of them.
    constants: Vec<String>,
    /// `""` first, then every constant it must start with somewhere.
    prefixes: Vec<String>,
    /// `""` first, then every constant it must end with somewhere.
    suffixes: Vec<String>,
    /// Every constant it must contain somewhere.
    contained: Vec<String>,
    /// A character no constant holds.
    filler: char,
}

/// A string argument as a choice among the candidates of [`FiniteStrings`]: either a constant
/// (`exact` is its index), or (`exact` is -1) the composite `P # C… # S` of a prefix, the
/// contained constants whose `include` is true, and a suffix, joined by the filler.
#[derive(Debug)]
pub struct FiniteString {
    pub exact: Int,
    pub prefix: Int,
    pub suffix: Int,
    pub include: Vec<Bool>,
    pub pieces: Rc<Pieces>,
}

impl FiniteString {
    fn new(name: &str, pieces: &Rc<Pieces>, domain: &mut Vec<Bool>) -> FiniteString {
        let exact = Int::new_const(format!("{name}#exact"));
        let prefix = Int::new_const(format!("{name}#prefix"));
        let suffix = Int::new_const(format!("{name}#suffix"));
        let include = (0..pieces.contained.len())
            .map(|i| Bool::new_const(format!("{name}#include{i}")))
            .collect();
        let within = |v: &Int, low: i64, count: usize| {
            Bool::and(&[v.ge(Int::from_i64(low)), v.lt(Int::from_i64(count as i64))])
        };
        domain.push(within(&exact, -1, pieces.constants.len()));
        domain.push(within(&prefix, 0, pieces.prefixes.len()));
        domain.push(within(&suffix, 0, pieces.suffixes.len()));
        FiniteString {
            exact,
            prefix,
            suffix,
            include,
            pieces: Rc::clone(pieces),
        }
    }

    fn composite(&self) -> Bool {
        self.exact.eq(Int::from_i64(-1))
    }

    /// The value is exactly a constant for which `holds`.
    fn exact_where(&self, holds: impl Fn(&str) -> bool) -> Bool {
        one_of(&self.exact, &self.pieces.constants, holds)
    }

    /// ⟦value == text⟧: only a constant can equal a constant (a composite holds the filler).
    pub fn equals(&self, text: &str) -> Bool {
        self.exact_where(|c| c == text)
    }

    pub fn starts_with(&self, text: &str) -> Bool {
        let composite = if text.is_empty() {
            Bool::from_bool(true)
        } else {
            one_of(&self.prefix, &self.pieces.prefixes, |p| p.starts_with(text))
        };
        Bool::or(&[
            self.exact_where(|c| c.starts_with(text)),
            Bool::and(&[self.composite(), composite]),
        ])
    }

    pub fn ends_with(&self, text: &str) -> Bool {
        let composite = if text.is_empty() {
            Bool::from_bool(true)
        } else {
            one_of(&self.suffix, &self.pieces.suffixes, |s| s.ends_with(text))
        };
        Bool::or(&[
            self.exact_where(|c| c.ends_with(text)),
            Bool::and(&[self.composite(), composite]),
        ])
    }

    pub fn contains(&self, text: &str) -> Bool {
        let composite = if text.is_empty() || text.contains(self.pieces.filler) {
            Bool::from_bool(text.is_empty())
        } else {
            let mut options = vec![
                one_of(&self.prefix, &self.pieces.prefixes, |p| p.contains(text)),
                one_of(&self.suffix, &self.pieces.suffixes, |s| s.contains(text)),
            ];
            for (piece, include) in self.pieces.contained.iter().zip(&self.include) {
                if piece.contains(text) {
                    options.push(include.clone());
                }
            }
            Bool::or(&options)
        };
        Bool::or(&[
            self.exact_where(|c| c.contains(text)),
            Bool::and(&[self.composite(), composite]),
        ])
    }

    /// The value a model gives.
    pub fn value(&self, model: &Model) -> Option<String> {
        let index = |v: &Int| {
            model
                .eval(v, true)
                .and_then(|v| v.as_i64())
                .and_then(|i| usize::try_from(i).ok())
        };
        let exact = model.eval(&self.exact, true)?.as_i64()?;
        if exact >= 0 {
            return self
                .pieces
                .constants
                .get(usize::try_from(exact).ok()?)
                .cloned();
        }
        let filler = self.pieces.filler.to_string();
        let mut value = self.pieces.prefixes.get(index(&self.prefix)?)?.clone();
        value.push_str(&filler);
        for (piece, include) in self.pieces.contained.iter().zip(&self.include) {
            if model.eval(include, true)?.as_bool()? {
                value.push_str(piece);
                value.push_str(&filler);
            }
        }
        value.push_str(self.pieces.suffixes.get(index(&self.suffix)?)?);
        Some(value)
    }
}

/// `index` names one of `values` for which `holds`.
fn one_of(index: &Int, values: &[String], holds: impl Fn(&str) -> bool) -> Bool {
    let options: Vec<Bool> = values
        .iter()
        .enumerate()
        .filter(|(_, v)| holds(v))
        .map(|(i, _)| index.eq(Int::from_i64(i as i64)))
        .collect();
    Bool::or(&options)
}

/// For each string argument name that a policy only ever compares with string constants
/// (`==`, `!=`, `in`, and `starts_with`, `ends_with`, `contains` with the argument on the
/// left), a finite list of candidate values that decides every such comparison exactly.
///
/// Why it is exact: for any value `v`, let `P` be the longest constant `v` starts with, `S` the
/// longest it ends with and `C` the constants it contains; take a filler character `#` that no
/// constant holds. If `v` equals a constant, that constant is a candidate. Otherwise the
/// candidate `P # C1 # … # Ck # S` satisfies every comparison `v` satisfies (it starts with
/// `P`, ends with `S`, contains every `Ci`), and no other: an occurrence of a filler-free
/// constant lies inside one piece, which `v` also contains; a constant prefix or suffix of the
/// candidate is one of `P` or `S`, which `v` also has; and it equals no constant. So every
/// formula over these comparisons is satisfiable over the candidates iff over all strings,
/// and Z3 decides it over integers instead of strings (Z3 4.8's string solver times out on
/// mixes of prefixes and negated containment).
#[derive(Clone, Debug, Default)]
pub struct FiniteStrings {
    by_name: BTreeMap<String, Rc<Pieces>>,
    /// The list bounds of the same policies (carried here: every space that decides strings
    /// over candidates also needs them).
    pub lists: ListAtoms,
}

#[derive(Default)]
struct Constants {
    equal: BTreeSet<String>,
    prefixes: BTreeSet<String>,
    suffixes: BTreeSet<String>,
    contained: BTreeSet<String>,
}

impl FiniteStrings {
    pub fn of(policy: &Policy) -> FiniteStrings {
        FiniteStrings::of_all(&[policy])
    }

    /// One encoding for several policies (the two versions of a diff): every constant any of
    /// them compares an argument with counts, which keeps it exact for each (a constant no
    /// comparison uses only adds candidates).
    pub fn of_all(policies: &[&Policy]) -> FiniteStrings {
        let mut constants: BTreeMap<String, Constants> = BTreeMap::new();
        let mut excluded: BTreeSet<String> = BTreeSet::new();
        for policy in policies {
            let mut conditions: Vec<&Condition> = Vec::new();
            for rule in &policy.rules {
                conditions.extend(rule.condition.as_ref());
            }
            for assertion in &policy.assertions {
                if let AssertionKind::Never { condition, .. }
                | AssertionKind::Always { condition, .. } = &assertion.kind
                {
                    conditions.extend(condition.as_ref());
                }
            }
            for condition in conditions {
                collect(policy, condition, &[], &mut constants, &mut excluded);
            }
        }
        let mut by_name = BTreeMap::new();
        for tool in policies.iter().flat_map(|p| &p.tools) {
            // A list's string elements, and its elements' string fields, are string variables
            // too (keys `LIST[]` and `LIST[].FIELD`, and so on into lists inside).
            for arg in &tool.args {
                let ArgType::List { element, .. } = &arg.ty else {
                    continue;
                };
                let mut keys = Vec::new();
                element_string_keys(element, format!("{}[]", arg.name), &mut keys);
                for key in keys {
                    if excluded.contains(&key) || by_name.contains_key(&key) {
                        continue;
                    }
                    let empty = Constants::default();
                    let found = constants.get(&key).unwrap_or(&empty);
                    if let Some(pieces) = pieces(found) {
                        by_name.insert(key, Rc::new(pieces));
                    }
                }
            }
            for arg in &tool.args {
                // One list per name: every tool's argument of that name meets the same atoms.
                if !matches!(arg.ty, ArgType::Str)
                    || excluded.contains(&arg.name)
                    || by_name.contains_key(&arg.name)
                {
                    continue;
                }
                let empty = Constants::default();
                let found = constants.get(&arg.name).unwrap_or(&empty);
                if let Some(pieces) = pieces(found) {
                    by_name.insert(arg.name.clone(), Rc::new(pieces));
                }
            }
        }
        FiniteStrings {
            by_name,
            lists: ListAtoms::of_all(policies),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Rc<Pieces>> {
        self.by_name.get(name)
    }
}

/// The keys of the string variables in a list's element of key `key`: the element itself, its
/// fields, and those of lists inside (strings without a declared length only).
fn element_string_keys(element: &ArgSchema, key: String, out: &mut Vec<String>) {
    match &element.ty {
        ArgType::Str if element.length.is_none() => out.push(key),
        ArgType::Object(fields) => {
            for field in fields {
                element_string_keys(field, format!("{key}.{}", field.name), out);
            }
        }
        ArgType::List { element, .. } => element_string_keys(element, format!("{key}[]"), out),
        _ => {}
    }
}

/// Every string value a term can take in this policy, if it is a constant of the policy
/// (a literal, an agent's or a tool's attribute); `None` for anything a request supplies.
fn string_constants(policy: &Policy, term: &Term) -> Option<Vec<String>> {
    let text = |value: &Value| match value {
        Value::Str(v) => Some(v.clone()),
        _ => None,
    };
    match term {
        Term::Const(value) => Some(text(value).into_iter().collect()),
        Term::AgentAttr(name) => Some(
            policy
                .agents
                .iter()
                .filter_map(|a| a.attrs.get(name).and_then(|(v, _)| text(v)))
                .collect(),
        ),
        Term::ToolAttr(name) => Some(
            policy
                .tools
                .iter()
                .filter_map(|t| t.attrs.get(name).and_then(|(v, _)| text(v)))
                .collect(),
        ),
        Term::ToolCost | Term::ToolEnv => Some(Vec::new()),
        Term::Arg(_) | Term::Context(_) | Term::Var(_) | Term::VarField(..) | Term::Len(_) => None,
    }
}

/// The candidate key of a term read as a string variable: an argument's name, `LIST[]` for the
/// element a quantifier over `LIST` is at, `LIST[].FIELD` for that element's field (`keys`: the
/// keys of the lists the enclosing quantifiers range over, innermost last). Each is its own
/// string variable (every element of a list gets candidates from the same constants).
fn string_key(term: &Term, keys: &[String]) -> Option<String> {
    match term {
        Term::Arg(name) => Some(name.clone()),
        Term::Var(up) => ListRef::Var(*up).key(keys),
        Term::VarField(up, field) => ListRef::VarField(*up, field.clone()).key(keys),
        _ => None,
    }
}

fn collect(
    policy: &Policy,
    condition: &Condition,
    keys: &[String],
    constants: &mut BTreeMap<String, Constants>,
    excluded: &mut BTreeSet<String>,
) {
    let key = |term: &Term| string_key(term, keys);
    let mut exclude = |terms: &[&Term]| {
        for term in terms {
            if let Some(name) = string_key(term, keys) {
                excluded.insert(name);
            }
        }
    };
    match &condition.kind {
        ConditionKind::Or(a, b) | ConditionKind::And(a, b) => {
            collect(policy, a, keys, constants, excluded);
            collect(policy, b, keys, constants, excluded);
        }
        ConditionKind::Not(inner) => collect(policy, inner, keys, constants, excluded),
        ConditionKind::Bool(_) | ConditionKind::Has(_) | ConditionKind::HasField(..) => {}
        ConditionKind::Quantified { list, body, .. } => {
            let mut inner = keys.to_vec();
            inner.extend(list.key(keys));
            collect(policy, body, &inner, constants, excluded)
        }
        ConditionKind::Compare { lhs, rhs, .. } => {
            let (name, other) = match (key(lhs), key(rhs)) {
                (Some(name), None) => (name, rhs),
                (None, Some(name)) => (name, lhs),
                (Some(_), Some(_)) => return exclude(&[lhs, rhs]),
                (None, None) => return,
            };
            match string_constants(policy, other) {
                Some(values) => constants.entry(name).or_default().equal.extend(values),
                None => exclude(&[lhs, rhs]),
            }
        }
        ConditionKind::In { lhs, set } => {
            if let Some(name) = key(lhs) {
                let entry = constants.entry(name).or_default();
                for value in set {
                    if let Value::Str(v) = value {
                        entry.equal.insert(v.clone());
                    }
                }
            }
        }
        ConditionKind::Str { op, lhs, rhs } => {
            match (key(lhs), key(rhs), string_constants(policy, rhs)) {
                (Some(name), None, Some(values)) => {
                    let entry = constants.entry(name).or_default();
                    let set = match op {
                        StringOp::StartsWith => &mut entry.prefixes,
                        StringOp::EndsWith => &mut entry.suffixes,
                        StringOp::Contains => &mut entry.contained,
                    };
                    set.extend(values);
                }
                _ => exclude(&[lhs, rhs]),
            }
        }
    }
}

/// The pieces of [`FiniteStrings`], or `None` when no filler character is free.
fn pieces(constants: &Constants) -> Option<Pieces> {
    let all: BTreeSet<&String> = constants
        .equal
        .iter()
        .chain(&constants.prefixes)
        .chain(&constants.suffixes)
        .chain(&constants.contained)
        .collect();
    let filler = ['#', '~', '_', '|', '^', '`', '@', 'Z', 'Q', 'X']
        .into_iter()
        .find(|c| all.iter().all(|k| !k.contains(*c)))?;
    let with_empty = |set: &BTreeSet<String>| -> Vec<String> {
        std::iter::once(String::new())
            .chain(set.iter().filter(|k| !k.is_empty()).cloned())
            .collect()
    };
    Some(Pieces {
        constants: all.into_iter().cloned().collect(),
        prefixes: with_empty(&constants.prefixes),
        suffixes: with_empty(&constants.suffixes),
        contained: constants
            .contained
            .iter()
            .filter(|k| !k.is_empty())
            .cloned()
            .collect(),
        filler,
    })
}

/// Every name that can be a value (environments, enum variants, agents), numbered once, so that
/// values of different policies and enum types compare by name. Shared, not copied, by every
/// space that holds it (a policy of 1,000 agents has a thousand names, and a verifier builds a
/// space per bucket it asks about); adding a name copies it first if it is shared.
#[derive(Clone, Debug, Default)]
pub struct Symbols {
    index: Rc<BTreeMap<String, i64>>,
    names: Rc<Vec<String>>,
}

impl Symbols {
    pub fn add(&mut self, name: &str) {
        if !self.index.contains_key(name) {
            let next = self.names.len() as i64;
            Rc::make_mut(&mut self.index).insert(name.to_owned(), next);
            Rc::make_mut(&mut self.names).push(name.to_owned());
        }
    }

    pub fn of(policies: &[&Policy]) -> Symbols {
        let mut symbols = Symbols::default();
        for policy in policies {
            for env in &policy.environments {
                symbols.add(env);
            }
            for agent in &policy.agents {
                symbols.add(&agent.name);
            }
            for tool in &policy.tools {
                for arg in &tool.args {
                    symbols.add_variants(arg);
                }
            }
        }
        symbols
    }

    /// The enum variants of an argument, of a list's element and of its fields.
    fn add_variants(&mut self, arg: &ArgSchema) {
        match &arg.ty {
            ArgType::Enum(variants) => variants.iter().for_each(|v| self.add(v)),
            ArgType::List { element, .. } => self.add_variants(element),
            ArgType::Object(fields) => fields.iter().for_each(|f| self.add_variants(f)),
            _ => {}
        }
    }

    pub fn index(&self, name: &str) -> i64 {
        self.index.get(name).copied().unwrap_or(-1)
    }

    pub fn name(&self, index: i64) -> Option<&str> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.names.get(i))
            .map(String::as_str)
    }
}

/// The Z3 string of `value`'s UTF-8 bytes: one Z3 character, below 256, per byte. The gate
/// compares byte strings, and equality, prefix, suffix and containment of UTF-8 strings are the
/// same relations on their bytes, so over the whole Unicode range the encoding means what the
/// gate means. Every byte outside printable ASCII, and the backslash, is written `\u{XX}`: Z3
/// never sees a code point it could refuse (above U+2FFFF) or a backslash it could read as the
/// start of an escape.
pub fn z3_string(value: &str) -> ZString {
    ZString::from_str(&z3_literal(value.as_bytes()))
        .unwrap_or_else(|_| ZString::new_const("unrepresentable_string"))
}

/// Z3 literal text for a byte string (see [`z3_string`]); it never holds a NUL byte.
fn z3_literal(bytes: &[u8]) -> String {
    let mut escaped = String::with_capacity(bytes.len());
    for &byte in bytes {
        if (b' '..=b'~').contains(&byte) && byte != b'\\' {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("\\u{{{byte:x}}}"));
        }
    }
    escaped
}

/// Strings longer than this in a model are not read back (the witness is then missing an
/// argument and fails replay, so the finding is inconclusive).
const LONGEST_WITNESS_STRING: u64 = 4_096;

/// Reads the bytes of a string from a model one character at a time: the printed form of a
/// whole string is ambiguous (Z3 prints a backslash as itself, other bytes as `\u{XX}`), that of
/// one character is not. `None` if a character is not a byte.
pub fn bytes_from_model(model: &Model, value: &ZString) -> Option<Vec<u8>> {
    let length = model.eval(&value.length(), true)?.as_u64()?;
    if length > LONGEST_WITNESS_STRING {
        return None;
    }
    let mut bytes = Vec::new();
    for position in 0..length {
        let text = model
            .eval(&value.at(Int::from_u64(position)), true)?
            .as_string()?;
        bytes.push(character_byte(&text)?);
    }
    Some(bytes)
}

/// The byte a one-character Z3 string holds: the character itself, or an escape
/// (`\u{XX}`, `\uXXXX`, `\xXX`).
fn character_byte(text: &str) -> Option<u8> {
    let mut characters = text.chars();
    if let (Some(only), None) = (characters.next(), characters.next()) {
        return u8::try_from(u32::from(only)).ok().filter(u8::is_ascii);
    }
    let digits = text
        .strip_prefix("\\u{")
        .and_then(|rest| rest.strip_suffix('}'))
        .or_else(|| text.strip_prefix("\\u"))
        .or_else(|| text.strip_prefix("\\x"))?;
    u8::try_from(u32::from_str_radix(digits, 16).ok()?).ok()
}

/// A model's string as the gate receives it: its bytes, if they are valid UTF-8.
pub fn string_from_model(model: &Model, value: &ZString) -> Option<String> {
    String::from_utf8(bytes_from_model(model, value)?).ok()
}

/// `value`'s length in bytes (one character per byte) lies within `bounds`, if there are any.
pub fn length_within(value: &ZString, bounds: Option<(u64, u64)>) -> Option<Bool> {
    let (low, high) = bounds?;
    let length = value.length();
    let bound = |n: u64| Int::from_u64(n);
    Some(Bool::and(&[length.ge(bound(low)), length.le(bound(high))]))
}

/// `path` is in normal form (`tollgate_runtime::path::is_normal`): `/`, `.`, or segments joined by
/// `/` (with a leading `/` when absolute), none empty, `.` or `..`. Said with `contains`, `prefix`
/// and `suffix`, which the string solver decides far faster than the equivalent regular
/// expression.
pub fn normal_path(path: &ZString) -> Bool {
    let text = |t: &str| z3_string(t);
    let is = |t: &str| path.eq(text(t));
    let contains = |t: &str| path.contains(text(t));
    let starts = |t: &str| text(t).prefix(path);
    let ends = |t: &str| text(t).suffix(path);
    Bool::or(&[
        is("/"),
        is("."),
        Bool::and(&[
            is("").not(),
            is("..").not(),
            is("/.").not(),
            is("/..").not(),
            contains("//").not(),
            contains("/./").not(),
            contains("/../").not(),
            starts("./").not(),
            starts("../").not(),
            ends("/").not(),
            ends("/.").not(),
            ends("/..").not(),
        ]),
    ])
}

/// The strings whose characters are bytes forming valid UTF-8 (RFC 3629: no overlong forms, no
/// surrogates, nothing above U+10FFFF): the strings the gate can receive.
pub fn valid_utf8() -> Regexp {
    // Z3 4.8 wants at least two operands for `re.union`.
    let class = |low: u8, high: u8| {
        let mut members: Vec<Regexp> = (low..=high)
            .map(|byte| Regexp::literal(&z3_literal(&[byte])))
            .collect();
        match members.pop() {
            Some(only) if members.is_empty() => only,
            Some(last) => {
                members.push(last);
                Regexp::union(&members)
            }
            None => Regexp::empty(),
        }
    };
    let sequence = |parts: &[Regexp]| Regexp::concat(parts);
    let tail = || class(0x80, 0xbf);
    let character = Regexp::union(&[
        class(0x00, 0x7f),
        sequence(&[class(0xc2, 0xdf), tail()]),
        sequence(&[class(0xe0, 0xe0), class(0xa0, 0xbf), tail()]),
        sequence(&[class(0xe1, 0xec), tail(), tail()]),
        sequence(&[class(0xed, 0xed), class(0x80, 0x9f), tail()]),
        sequence(&[class(0xee, 0xef), tail(), tail()]),
        sequence(&[class(0xf0, 0xf0), class(0x90, 0xbf), tail(), tail()]),
        sequence(&[class(0xf1, 0xf3), tail(), tail(), tail()]),
        sequence(&[class(0xf4, 0xf4), class(0x80, 0x8f), tail(), tail()]),
    ]);
    character.star()
}

/// A variable for a single value of `arg`'s type (strings as Z3 strings), its range constraints
/// added to `range`.
fn scalar(name: &str, arg: &ArgSchema, symbols: &Symbols, range: &mut Vec<Bool>) -> Zv {
    match &arg.ty {
        // A decimal is its integer count of `10^-scale` units.
        ArgType::Int { min, max } | ArgType::Decimal { min, max, .. } => {
            let v = Int::new_const(name);
            range.push(v.ge(Int::from_i64(*min)));
            range.push(v.le(Int::from_i64(*max)));
            Zv::Int(v)
        }
        ArgType::Bool => Zv::Bool(Bool::new_const(name)),
        // A path: any string in normal form (what requests are normalized to).
        ArgType::Path => {
            let v = ZString::new_const(name);
            range.push(normal_path(&v));
            range.extend(length_within(&v, arg.length));
            Zv::Str(v)
        }
        // A string, its length bounded when declared so.
        ArgType::Str => {
            let v = ZString::new_const(name);
            range.extend(length_within(&v, arg.length));
            Zv::Str(v)
        }
        ArgType::Enum(variants) => {
            let v = Int::new_const(name);
            let options: Vec<Bool> = variants
                .iter()
                .map(|x| v.eq(Int::from_i64(symbols.index(x))))
                .collect();
            range.push(Bool::or(&options));
            Zv::Sym(v)
        }
        // Not a single value: checking never declares these where a scalar goes.
        ArgType::List { .. } | ArgType::Object(_) => Zv::Bool(Bool::from_bool(false)),
    }
}

/// Builds the encoding of list arguments: for each list, its length and its elements, each
/// within its own schema (a list inside as a list of its own, with its own bound).
struct Lists<'s> {
    finite: &'s FiniteStrings,
    symbols: &'s Symbols,
    /// The most agents a query over this space conjoins conditions of.
    members: usize,
    /// Where candidate strings put their own constraints.
    domain: &'s mut Vec<Bool>,
}

impl Lists<'_> {
    /// The list named `at` in the model, of key `key` (`model::list_key`): its length within
    /// `count` and the small-model bound, its elements within their schema.
    fn list(
        &mut self,
        at: &str,
        key: &str,
        element: &ArgSchema,
        count: (u64, u64),
        range: &mut Vec<Bool>,
    ) -> Zv {
        let bound = self.finite.lists.bound(key, count, self.members);
        let len = Int::new_const(format!("{at}#len"));
        range.push(len.ge(Int::from_i64(i64::try_from(count.0).unwrap_or(i64::MAX))));
        range.push(len.le(Int::from_i64(i64::try_from(bound).unwrap_or(i64::MAX))));
        let element_key = format!("{key}[]");
        let elements = (0..bound)
            .map(|i| self.value(&format!("{at}[{i}]"), &element_key, element, range))
            .collect();
        Zv::List(Rc::new(ZList { len, elements }))
    }

    /// An element (or an element's field) named `at`, of key `key`: an object as its fields (an
    /// optional field's range holding only when it is given), a list as a list, a string
    /// compared only with constants over candidates, as a string argument is.
    fn value(&mut self, at: &str, key: &str, schema: &ArgSchema, range: &mut Vec<Bool>) -> Zv {
        match &schema.ty {
            ArgType::Object(fields) => {
                let mut object = ZObject {
                    fields: BTreeMap::new(),
                    present: BTreeMap::new(),
                };
                for f in fields {
                    let at = format!("{at}.{}", f.name);
                    let mut own = Vec::new();
                    let v = self.value(&at, &format!("{key}.{}", f.name), f, &mut own);
                    if f.optional {
                        let given = Bool::new_const(format!("{at}?"));
                        if !own.is_empty() {
                            range.push(given.implies(Bool::and(&own)));
                        }
                        object.present.insert(f.name.clone(), given);
                    } else {
                        range.extend(own);
                    }
                    object.fields.insert(f.name.clone(), v);
                }
                Zv::Object(Rc::new(object))
            }
            ArgType::List { element, count } => self.list(at, key, element, *count, range),
            ArgType::Str if schema.length.is_none() => match self.finite.get(key) {
                Some(pieces) => Zv::Finite(Rc::new(FiniteString::new(at, pieces, self.domain))),
                None => scalar(at, schema, self.symbols, range),
            },
            _ => scalar(at, schema, self.symbols, range),
        }
    }
}

/// Every string variable in a value, elements and fields included.
fn strings_in<'v>(value: &'v Zv, out: &mut Vec<&'v ZString>) {
    match value {
        Zv::Str(v) => out.push(v),
        Zv::List(list) => list.elements.iter().for_each(|e| strings_in(e, out)),
        Zv::Object(object) => object.fields.values().for_each(|f| strings_in(f, out)),
        _ => {}
    }
}

/// A delegation chain a request can come through: `via` (origin first) then the acting agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub via: Vec<String>,
}

/// The shared variables of one bucket's request space.
#[derive(Debug)]
pub struct Space {
    pub symbols: Symbols,
    pub args: BTreeMap<String, Zv>,
    /// Whether the call gives each optional argument (`args.NAME?`). An absent argument's value
    /// variable stays in the space, unconstrained by the call: checking guarantees that no
    /// condition depends on it then.
    pub present: BTreeMap<String, Bool>,
    pub env: Int,
    pub hour: Int,
    pub chain: Int,
    pub chains: Vec<Chain>,
    /// Constraints every request of the space satisfies (variable ranges).
    pub domain: Bool,
    /// Whether the chain list was cut short: proofs over this space are then inconclusive.
    pub truncated: bool,
}

impl Space {
    /// The space of requests from `agent` (by name) to a tool with this argument schema.
    /// `chains` is the list of chains to consider (the first is the direct call).
    pub fn new(
        symbols: Symbols,
        schema: &[ArgSchema],
        environments: &[String],
        chains: Vec<Chain>,
        truncated: bool,
    ) -> Space {
        Space::with_finite_strings(
            symbols,
            schema,
            environments,
            chains,
            truncated,
            &FiniteStrings::default(),
        )
    }

    /// As [`Space::new`], with the string arguments `finite` covers decided over candidates.
    pub fn with_finite_strings(
        symbols: Symbols,
        schema: &[ArgSchema],
        environments: &[String],
        chains: Vec<Chain>,
        truncated: bool,
        finite: &FiniteStrings,
    ) -> Space {
        let mut args = BTreeMap::new();
        let mut present = BTreeMap::new();
        let mut domain = vec![];
        for arg in schema {
            let name = format!("args.{}", arg.name);
            let presence = arg.optional.then(|| Bool::new_const(format!("{name}?")));
            if let Some(presence) = &presence {
                present.insert(arg.name.clone(), presence.clone());
            }
            // The value's own range: for an optional argument, only when it is given (an absent
            // one's value is free, so proofs also cover the gate's placeholder for it).
            let mut range: Vec<Bool> = Vec::new();
            let value = match &arg.ty {
                ArgType::Str if arg.length.is_none() => match finite.get(&arg.name) {
                    Some(pieces) => {
                        Zv::Finite(Rc::new(FiniteString::new(&name, pieces, &mut domain)))
                    }
                    None => Zv::Str(ZString::new_const(name)),
                },
                // A list: its length within the declared count, capped at the small-model bound;
                // each element (and each of its fields) within its own schema.
                ArgType::List { element, count } => {
                    let mut lists = Lists {
                        finite,
                        symbols: &symbols,
                        members: chains.iter().map(|c| c.via.len() + 1).max().unwrap_or(1),
                        domain: &mut domain,
                    };
                    lists.list(&name, &arg.name, element, *count, &mut range)
                }
                _ => scalar(&name, arg, &symbols, &mut range),
            };
            match (presence, range.is_empty()) {
                (_, true) => {}
                (Some(presence), false) => domain.push(presence.implies(Bool::and(&range))),
                (None, false) => domain.extend(range),
            }
            args.insert(arg.name.clone(), value);
        }
        let env = Int::new_const("context.env");
        if !environments.is_empty() {
            let options: Vec<Bool> = environments
                .iter()
                .map(|e| env.eq(Int::from_i64(symbols.index(e))))
                .collect();
            domain.push(Bool::or(&options));
        }
        let hour = Int::new_const("context.hour");
        domain.push(hour.ge(Int::from_i64(0)));
        domain.push(hour.le(Int::from_i64(23)));
        let chain = Int::new_const("chain");
        domain.push(chain.ge(Int::from_i64(0)));
        domain.push(chain.lt(Int::from_i64(chains.len() as i64)));
        Space {
            symbols,
            args,
            present,
            env,
            hour,
            chain,
            chains,
            domain: Bool::and(&domain),
            truncated,
        }
    }

    /// Whether every string argument of the model is valid UTF-8 bytes.
    pub fn receivable(&self, model: &Model) -> bool {
        let mut strings = Vec::new();
        self.args.values().for_each(|v| strings_in(v, &mut strings));
        strings
            .into_iter()
            .all(|v| string_from_model(model, v).is_some())
    }

    /// Constrains every string argument to valid UTF-8 bytes. Kept out of `domain` because
    /// the regular expression slows the string solver: proofs without it cover a superset of
    /// the requests, and only a model needs it.
    pub fn assert_receivable(&self, solver: &Solver) {
        let mut strings = Vec::new();
        self.args.values().for_each(|v| strings_in(v, &mut strings));
        for v in strings {
            solver.assert(v.regex_matches(&valid_utf8()));
        }
    }

    pub fn is_chain(&self, index: usize) -> Bool {
        self.chain.eq(Int::from_i64(index as i64))
    }
}

/// For each agent, the rules whose principal pattern matches it, in rule order, and the string
/// arguments decided over candidates: computed once per policy so that finding a bucket's rules
/// does not scan every rule.
#[derive(Debug, Default)]
pub struct RuleIndex {
    by_agent: Vec<Vec<RuleId>>,
    pub finite: FiniteStrings,
    /// [`depth_horizon`] of the policy, computed once.
    pub horizon: (u64, bool),
}

impl RuleIndex {
    pub fn new(policy: &Policy) -> RuleIndex {
        let by_agent = (0..policy.agents.len())
            .map(|agent| {
                (0..policy.rules.len())
                    .filter(|&rule| policy.principal_matches(&policy.rules[rule].principal, agent))
                    .collect()
            })
            .collect();
        RuleIndex {
            by_agent,
            finite: FiniteStrings::of(policy),
            horizon: depth_horizon(policy),
        }
    }

    /// The rules of `effect` whose patterns match `agent` and `tool`, in rule order.
    pub fn candidates(
        &self,
        policy: &Policy,
        agent: AgentId,
        tool: ToolId,
        effect: RuleEffect,
    ) -> Vec<RuleId> {
        let Some(rules) = self.by_agent.get(agent) else {
            return Vec::new();
        };
        rules
            .iter()
            .copied()
            .filter(|&r| {
                let rule = &policy.rules[r];
                rule.effect == effect && policy.tool_matches(&rule.tools, tool)
            })
            .collect()
    }
}

/// Evaluates conditions of one policy for one agent and tool over a space, with the chain's
/// depth and origin given for a fixed chain.
#[derive(Debug)]
pub struct Encoder<'a> {
    pub policy: &'a Policy,
    pub index: &'a RuleIndex,
    pub space: &'a Space,
    pub tool: ToolId,
    /// In quantifiers' bodies: the elements they are at, innermost last.
    pub elements: Vec<Zv>,
}

impl Encoder<'_> {
    fn constant(&self, value: &Value) -> Zv {
        match value {
            Value::Int(v) => Zv::Int(Int::from_i64(*v)),
            Value::Bool(v) => Zv::Bool(Bool::from_bool(*v)),
            Value::Str(v) => Zv::Str(z3_string(v)),
            Value::Sym(v) => Zv::Sym(Int::from_i64(self.space.symbols.index(v))),
            // Checking leaves no decimal constant (each becomes its argument's units); as
            // text, one would compare with nothing numeric, as in the gate.
            Value::Decimal(v) => Zv::Str(z3_string(v)),
            // Nor a list or object constant.
            Value::List(_) | Value::Object(_) => Zv::Str(z3_string("")),
        }
    }

    fn term(&self, agent: AgentId, chain: &Chain, term: &Term) -> Option<Zv> {
        let policy = self.policy;
        let tool = policy.tools.get(self.tool)?;
        Some(match term {
            Term::Arg(name) => self.space.args.get(name)?.clone(),
            Term::Context(ContextField::Env) => Zv::Sym(self.space.env.clone()),
            Term::Context(ContextField::Hour) => Zv::Int(self.space.hour.clone()),
            Term::Context(ContextField::Depth) => Zv::Int(Int::from_i64(chain.via.len() as i64)),
            Term::Context(ContextField::Origin) => {
                let origin = chain
                    .via
                    .first()
                    .map_or(policy.agents.get(agent)?.name.as_str(), String::as_str);
                Zv::Sym(Int::from_i64(self.space.symbols.index(origin)))
            }
            Term::AgentAttr(name) => self.constant(&policy.agents.get(agent)?.attrs.get(name)?.0),
            Term::ToolAttr(name) => self.constant(&tool.attrs.get(name)?.0),
            Term::ToolCost => Zv::Int(Int::from_i64(tool.cost)),
            Term::ToolEnv => Zv::Sym(Int::from_i64(
                self.space.symbols.index(tool.env.as_deref()?),
            )),
            Term::Const(value) => self.constant(value),
            Term::Var(up) => self.element(*up)?.clone(),
            Term::VarField(up, field) => match self.element(*up)? {
                Zv::Object(object) => object.fields.get(field)?.clone(),
                _ => return None,
            },
            Term::Len(list) => Zv::Int(self.list(list)?.len.clone()),
        })
    }

    /// The element `up` quantifiers out (0: the innermost).
    fn element(&self, up: u8) -> Option<&Zv> {
        let index = self.elements.len().checked_sub(1 + usize::from(up))?;
        self.elements.get(index)
    }

    /// The list a condition reads.
    fn list(&self, list: &ListRef) -> Option<&Rc<ZList>> {
        let value = match list {
            ListRef::Arg(name) => self.space.args.get(name)?,
            ListRef::Var(up) => self.element(*up)?,
            ListRef::VarField(up, field) => match self.element(*up)? {
                Zv::Object(object) => object.fields.get(field)?,
                _ => return None,
            },
        };
        match value {
            Zv::List(list) => Some(list),
            _ => None,
        }
    }

    /// The text of a string constant term for `agent` in this bucket.
    fn string_value(&self, agent: AgentId, term: &Term) -> Option<String> {
        let value = match term {
            Term::Const(value) => value,
            Term::AgentAttr(name) => &self.policy.agents.get(agent)?.attrs.get(name)?.0,
            Term::ToolAttr(name) => &self.policy.tools.get(self.tool)?.attrs.get(name)?.0,
            _ => return None,
        };
        match value {
            Value::Str(text) => Some(text.clone()),
            _ => None,
        }
    }

    /// ⟦C⟧ for a comparison involving a string argument decided over its policy's constants;
    /// `None` when the condition does not involve one.
    fn finite_condition(
        &self,
        agent: AgentId,
        chain: &Chain,
        condition: &Condition,
    ) -> Option<Option<Bool>> {
        let finite = |term: &Term| match self.term(agent, chain, term) {
            Some(Zv::Finite(value)) => Some(value),
            _ => None,
        };
        Some(match &condition.kind {
            ConditionKind::Compare { op, lhs, rhs } => {
                let (value, other) = match (finite(lhs), finite(rhs)) {
                    (Some(found), None) => (found, rhs),
                    (None, Some(found)) => (found, lhs),
                    (None, None) => return None,
                    (Some(_), Some(_)) => return Some(None),
                };
                let Some(text) = self.string_value(agent, other) else {
                    return Some(None);
                };
                match op {
                    CompareOp::Eq => Some(value.equals(&text)),
                    CompareOp::Ne => Some(value.equals(&text).not()),
                    _ => None,
                }
            }
            ConditionKind::In { lhs, set } => {
                let value = finite(lhs)?;
                let options: Vec<Bool> = set
                    .iter()
                    .filter_map(|v| match v {
                        Value::Str(k) => Some(value.equals(k)),
                        _ => None,
                    })
                    .collect();
                Some(Bool::or(&options))
            }
            ConditionKind::Str { op, lhs, rhs } => {
                if finite(rhs).is_some() {
                    return Some(None);
                }
                let value = finite(lhs)?;
                let Some(text) = self.string_value(agent, rhs) else {
                    return Some(None);
                };
                Some(match op {
                    StringOp::StartsWith => value.starts_with(&text),
                    StringOp::EndsWith => value.ends_with(&text),
                    StringOp::Contains => value.contains(&text),
                })
            }
            _ => return None,
        })
    }

    /// ⟦C⟧ for `agent` on `chain`; `None` only for ill-typed conditions, which checking excludes.
    pub fn condition(&self, agent: AgentId, chain: &Chain, condition: &Condition) -> Option<Bool> {
        if let Some(decided) = self.finite_condition(agent, chain, condition) {
            return decided;
        }
        Some(match &condition.kind {
            ConditionKind::Or(a, b) => Bool::or(&[
                self.condition(agent, chain, a)?,
                self.condition(agent, chain, b)?,
            ]),
            ConditionKind::And(a, b) => Bool::and(&[
                self.condition(agent, chain, a)?,
                self.condition(agent, chain, b)?,
            ]),
            ConditionKind::Not(inner) => self.condition(agent, chain, inner)?.not(),
            // A required argument is always given.
            ConditionKind::Has(name) => self
                .space
                .present
                .get(name)
                .cloned()
                .unwrap_or_else(|| Bool::from_bool(true)),
            // A required field is always given.
            ConditionKind::HasField(up, field) => match self.element(*up)? {
                Zv::Object(object) => object
                    .present
                    .get(field)
                    .cloned()
                    .unwrap_or_else(|| Bool::from_bool(true)),
                _ => return None,
            },
            ConditionKind::Bool(term) => match self.term(agent, chain, term)? {
                Zv::Bool(b) => b,
                _ => return None,
            },
            // Element i counts when the list is longer than i: `all` is ∧ (len > i → B(i)),
            // `any` is ∨ (len > i ∧ B(i)), over the elements the space gives the list.
            ConditionKind::Quantified { all, list, body } => {
                let zlist = self.list(list)?;
                let mut parts = Vec::with_capacity(zlist.elements.len());
                for (i, element) in zlist.elements.iter().enumerate() {
                    let mut elements = self.elements.clone();
                    elements.push(element.clone());
                    let at = Encoder {
                        policy: self.policy,
                        index: self.index,
                        space: self.space,
                        tool: self.tool,
                        elements,
                    };
                    let counts = zlist.len.gt(Int::from_i64(i as i64));
                    let holds = at.condition(agent, chain, body)?;
                    parts.push(if *all {
                        counts.implies(&holds)
                    } else {
                        Bool::and(&[counts, holds])
                    });
                }
                if *all {
                    Bool::and(&parts)
                } else {
                    Bool::or(&parts)
                }
            }
            ConditionKind::Compare { op, lhs, rhs } => {
                let (lhs, rhs) = (self.term(agent, chain, lhs)?, self.term(agent, chain, rhs)?);
                match (lhs, rhs, op) {
                    (Zv::Int(a), Zv::Int(b), op)
                    | (Zv::Sym(a), Zv::Sym(b), op @ (CompareOp::Eq | CompareOp::Ne)) => match op {
                        CompareOp::Eq => a.eq(&b),
                        CompareOp::Ne => a.eq(&b).not(),
                        CompareOp::Lt => a.lt(&b),
                        CompareOp::Le => a.le(&b),
                        CompareOp::Gt => a.gt(&b),
                        CompareOp::Ge => a.ge(&b),
                    },
                    (Zv::Bool(a), Zv::Bool(b), CompareOp::Eq) => a.iff(&b),
                    (Zv::Bool(a), Zv::Bool(b), CompareOp::Ne) => a.iff(&b).not(),
                    (Zv::Str(a), Zv::Str(b), CompareOp::Eq) => a.eq(&b),
                    (Zv::Str(a), Zv::Str(b), CompareOp::Ne) => a.eq(&b).not(),
                    _ => return None,
                }
            }
            ConditionKind::In { lhs, set } => {
                let lhs = self.term(agent, chain, lhs)?;
                let mut options = Vec::new();
                for value in set {
                    options.push(match (&lhs, self.constant(value)) {
                        (Zv::Int(a), Zv::Int(b)) | (Zv::Sym(a), Zv::Sym(b)) => a.eq(&b),
                        (Zv::Bool(a), Zv::Bool(b)) => a.iff(&b),
                        (Zv::Str(a), Zv::Str(b)) => a.eq(&b),
                        _ => return None,
                    });
                }
                Bool::or(&options)
            }
            ConditionKind::Str { op, lhs, rhs } => {
                let (Zv::Str(a), Zv::Str(b)) =
                    (self.term(agent, chain, lhs)?, self.term(agent, chain, rhs)?)
                else {
                    return None;
                };
                match op {
                    StringOp::StartsWith => b.prefix(&a),
                    StringOp::EndsWith => b.suffix(&a),
                    StringOp::Contains => a.contains(&b),
                }
            }
        })
    }

    /// Whether rule `rule` applies to `agent` (false if its patterns do not match), on `chain`.
    /// An ill-typed condition fails closed, as in `eval`.
    pub fn applies(&self, rule: RuleId, agent: AgentId, chain: &Chain) -> Bool {
        let Some(rule_def) = self.policy.rules.get(rule) else {
            return Bool::from_bool(false);
        };
        if !self.policy.principal_matches(&rule_def.principal, agent)
            || !self.policy.tool_matches(&rule_def.tools, self.tool)
        {
            return Bool::from_bool(false);
        }
        match &rule_def.condition {
            None => Bool::from_bool(true),
            Some(condition) => self
                .condition(agent, chain, condition)
                .unwrap_or_else(|| Bool::from_bool(rule_def.effect == RuleEffect::Forbid)),
        }
    }

    /// The rules whose patterns match `agent` and this tool, by effect.
    pub fn candidates(&self, agent: AgentId, effect: RuleEffect) -> Vec<RuleId> {
        self.index.candidates(self.policy, agent, self.tool, effect)
    }

    /// (A-Permit) for one agent on one chain: some permit applies and no forbid does.
    pub fn authorized(&self, agent: AgentId, chain: &Chain) -> Bool {
        let permits: Vec<Bool> = self
            .candidates(agent, RuleEffect::Permit)
            .into_iter()
            .map(|r| self.applies(r, agent, chain))
            .collect();
        let forbids: Vec<Bool> = self
            .candidates(agent, RuleEffect::Forbid)
            .into_iter()
            .map(|r| self.applies(r, agent, chain))
            .collect();
        Bool::and(&[Bool::or(&permits), Bool::or(&forbids).not()])
    }

    /// The request (acting `agent`, this tool, chain number `index` of the space) is allowed
    /// from a fresh state: every required agent is authorized and no budget is smaller than
    /// the tool's cost. Chains invalid in this policy (unknown agents, undeclared hops, depth
    /// limits) are never allowed.
    pub fn allowed_on(&self, agent: AgentId, index: usize) -> Bool {
        let Some(chain) = self.space.chains.get(index) else {
            return Bool::from_bool(false);
        };
        self.allowed_through(agent, chain)
    }

    /// `agent` calling this tool itself, over this space's variables (whichever bucket's space
    /// it is: the escalation search compares a delegated call with the origin's direct one).
    pub fn allowed_directly(&self, agent: AgentId) -> Bool {
        self.allowed_through(agent, &Chain { via: Vec::new() })
    }

    fn allowed_through(&self, agent: AgentId, chain: &Chain) -> Bool {
        let Some(required) = required_agents(self.policy, agent, self.tool, chain) else {
            return Bool::from_bool(false);
        };
        if budget_blocked(self.policy, agent, self.tool) {
            return Bool::from_bool(false);
        }
        let mut parts: Vec<Bool> = required
            .into_iter()
            .map(|member| self.authorized(member, chain))
            .collect();
        parts.extend(self.budgets_fit(agent));
        Bool::and(&parts)
    }

    /// For a tool charged per an argument: its first call fits every budget that applies
    /// (`cost × args.N ≤ amount`, exact integers).
    fn budgets_fit(&self, agent: AgentId) -> Vec<Bool> {
        let Some(tool) = self.policy.tools.get(self.tool) else {
            return Vec::new();
        };
        let Some(Zv::Int(units)) = tool.cost_per.as_ref().and_then(|n| self.space.args.get(n))
        else {
            return Vec::new();
        };
        let cost = Int::mul(&[Int::from_i64(tool.cost), units.clone()]);
        self.policy
            .limits
            .iter()
            .filter(|limit| {
                self.policy.principal_matches(&limit.principal, agent)
                    && self.policy.tool_matches(&limit.tools, self.tool)
            })
            .filter_map(|limit| match limit.kind {
                LimitKind::Budget { amount, .. } => Some(cost.le(Int::from_i64(amount))),
                _ => None,
            })
            .collect()
    }

    /// Allowed through any chain of the space.
    pub fn allowed(&self, agent: AgentId) -> Bool {
        let options: Vec<Bool> = (0..self.space.chains.len())
            .map(|index| Bool::and(&[self.space.is_chain(index), self.allowed_on(agent, index)]))
            .collect();
        Bool::or(&options)
    }
}

/// The agents whose authority a request needs (D-Intersect, D-Widen), acting agent first; `None`
/// when the chain is not valid in this policy (V-Context, D-Edge, D-Depth).
pub fn required_agents(
    policy: &Policy,
    agent: AgentId,
    tool: ToolId,
    chain: &Chain,
) -> Option<Vec<AgentId>> {
    let mut ids = Vec::new();
    for name in &chain.via {
        ids.push(policy.agent_id(name)?);
    }
    ids.push(agent);
    let mut required = vec![agent];
    for (position, pair) in ids.windows(2).enumerate() {
        let delegation = policy
            .delegations
            .iter()
            .find(|d| d.from == pair[0] && d.to == pair[1])?;
        if !delegation.widening {
            required.push(ids[position]);
        }
    }
    let depth = chain.via.len() as u64;
    for limit in &policy.limits {
        if let LimitKind::Depth { max } = limit.kind {
            if policy.principal_matches(&limit.principal, agent)
                && policy.tool_matches(&limit.tools, tool)
                && depth > max
            {
                return None;
            }
        }
    }
    Some(required)
}

/// A budget smaller than the tool's cost denies even the first call.
pub fn budget_blocked(policy: &Policy, agent: AgentId, tool: ToolId) -> bool {
    // A cost charged per an argument depends on the call: `Encoder::allowed_on` says it.
    if policy.tools.get(tool).is_some_and(|t| t.cost_per.is_some()) {
        return false;
    }
    let cost = policy.tools.get(tool).map_or(0, |t| t.cost);
    policy.limits.iter().any(|limit| {
        matches!(limit.kind, LimitKind::Budget { amount, .. } if amount < cost)
            && policy.principal_matches(&limit.principal, agent)
            && policy.tool_matches(&limit.tools, tool)
    })
}

/// Beyond this many hops, depths are not told apart one by one: a policy that compares depths
/// with larger values gets chains cut at the cap, and its proofs are reported inconclusive.
const DEPTH_CAP: u64 = 64;

/// The largest value an integer term can take in this policy (`None`: not an integer term, or
/// one it cannot bound).
fn largest_value(policy: &Policy, term: &Term) -> Option<i64> {
    let int = |value: &Value| match value {
        Value::Int(v) => Some(*v),
        _ => None,
    };
    match term {
        Term::Const(value) => int(value),
        Term::AgentAttr(name) => policy
            .agents
            .iter()
            .filter_map(|agent| agent.attrs.get(name).and_then(|(value, _)| int(value)))
            .max(),
        Term::ToolAttr(name) => policy
            .tools
            .iter()
            .filter_map(|tool| tool.attrs.get(name).and_then(|(value, _)| int(value)))
            .max(),
        Term::ToolCost => policy.tools.iter().map(|tool| tool.cost).max(),
        Term::Arg(name) => policy
            .tools
            .iter()
            .filter_map(|tool| match tool.arg(name).map(|arg| &arg.ty) {
                Some(ArgType::Int { max, .. }) => Some(*max),
                _ => None,
            })
            .max(),
        Term::Context(ContextField::Hour) => Some(23),
        Term::Context(ContextField::Depth) => Some(0),
        Term::Context(_) | Term::ToolEnv | Term::Var(_) | Term::VarField(..) => None,
        // A list inside an element: not bounded here.
        Term::Len(ListRef::Var(_) | ListRef::VarField(..)) => None,
        Term::Len(ListRef::Arg(name)) => policy
            .tools
            .iter()
            .filter_map(|tool| match tool.arg(name).map(|arg| &arg.ty) {
                Some(ArgType::List { count, .. }) => i64::try_from(count.1).ok(),
                _ => None,
            })
            .max(),
    }
}

/// The largest depth any condition or depth limit can tell apart, plus one — deeper chains are
/// indistinguishable from each other — and whether that bound is exact (false when a depth is
/// compared with a value above `DEPTH_CAP` (64)). Every value a depth is compared with counts:
/// literals, attributes, costs, declared argument bounds, even another depth.
pub fn depth_horizon(policy: &Policy) -> (u64, bool) {
    fn walk(policy: &Policy, condition: &Condition, out: &mut i64) {
        let is_depth = |term: &Term| matches!(term, Term::Context(ContextField::Depth));
        match &condition.kind {
            ConditionKind::Or(a, b) | ConditionKind::And(a, b) => {
                walk(policy, a, out);
                walk(policy, b, out);
            }
            ConditionKind::Not(inner) => walk(policy, inner, out),
            // A depth compared inside a body counts too (with an element, it is compared with
            // anything: `largest_value` cannot bound an element).
            ConditionKind::Quantified { body, .. } => walk(policy, body, out),
            ConditionKind::Compare { lhs, rhs, .. } if is_depth(lhs) || is_depth(rhs) => {
                for term in [lhs, rhs] {
                    // A depth compared with a term this cannot bound is compared with anything.
                    *out = (*out).max(largest_value(policy, term).unwrap_or(i64::MAX));
                }
            }
            ConditionKind::In { lhs, set } if is_depth(lhs) => {
                for value in set {
                    if let Value::Int(v) = value {
                        *out = (*out).max(*v);
                    }
                }
            }
            _ => {}
        }
    }
    let mut largest: i64 = 0;
    for rule in &policy.rules {
        if let Some(condition) = &rule.condition {
            walk(policy, condition, &mut largest);
        }
    }
    for assertion in &policy.assertions {
        if let AssertionKind::Never {
            condition: Some(condition),
            ..
        }
        | AssertionKind::Always {
            condition: Some(condition),
            ..
        } = &assertion.kind
        {
            walk(policy, condition, &mut largest);
        }
    }
    for limit in &policy.limits {
        if let LimitKind::Depth { max } = limit.kind {
            largest = largest.max(i64::try_from(max).unwrap_or(i64::MAX));
        }
    }
    let largest = u64::try_from(largest).unwrap_or(0);
    (
        largest.min(DEPTH_CAP).saturating_add(1),
        largest <= DEPTH_CAP,
    )
}

/// Every chain (walk of declared delegations) ending at `agent`, up to the depth horizon plus
/// twice the number of agents, capped at `max`. A longer walk contains a cycle whose removal
/// keeps its origin and depth class, needs no agent's authority it did not need, and keeps any
/// one chosen agent deciding (one side of that agent's place on the walk has more hops than
/// there are agents). Returns whether the list was cut short — by `max`, or by a horizon that
/// is not exact while longer walks exist.
pub fn chains_to(policy: &Policy, agent: AgentId, max: usize) -> (Vec<Chain>, bool) {
    chains_within(policy, agent, max, depth_horizon(policy))
}

/// As [`chains_to`], with the policy's [`depth_horizon`] already computed (it walks every
/// condition; a caller that needs the chains of many agents computes it once).
pub fn chains_within(
    policy: &Policy,
    agent: AgentId,
    max: usize,
    (horizon, exact): (u64, bool),
) -> (Vec<Chain>, bool) {
    let agents = policy.agents.len() as u64;
    let longest = horizon.saturating_add(agents.saturating_mul(2));
    let mut out = vec![Chain { via: Vec::new() }];
    let mut frontier: Vec<Vec<AgentId>> = vec![vec![agent]];
    let mut truncated = false;
    for _ in 0..longest {
        let mut next = Vec::new();
        for walk in &frontier {
            let head = walk[0];
            for delegation in policy.delegations.iter().filter(|d| d.to == head) {
                let mut longer = vec![delegation.from];
                longer.extend(walk.iter().copied());
                if out.len() >= max {
                    truncated = true;
                    break;
                }
                let via = longer[..longer.len() - 1]
                    .iter()
                    .map(|&id| policy.agents[id].name.clone())
                    .collect();
                out.push(Chain { via });
                next.push(longer);
            }
        }
        frontier = next;
        if frontier.is_empty() || truncated {
            break;
        }
    }
    if !exact && !frontier.is_empty() {
        truncated = true;
    }
    (out, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use z3::{SatResult, Solver};

    /// One string of every class of code point: ASCII (printable, control, NUL, backslash),
    /// two-, three- and four-byte UTF-8 (below and above U+2FFFF, the last plane), and the
    /// escape forms Z3 reads, written out literally.
    const SAMPLES: [&str; 16] = [
        "plain",
        "",
        "quote\" and space",
        "tab\tnew\nline\u{0}nul\u{7f}",
        "back\\slash",
        "\\u{41}",
        "\\u0041",
        "\\x41",
        "é and ü",
        "\u{800}\u{ffff}\u{fffd}",
        "\u{10000}",
        "\u{1F600}",
        "\u{2FFFF}\u{30000}",
        "\u{E0041}",
        "\u{10FFFF}",
        "A",
    ];

    fn solved(formula: &Bool) -> Option<Model> {
        let solver = Solver::new();
        solver.assert(formula);
        match solver.check() {
            SatResult::Sat => solver.get_model(),
            _ => None,
        }
    }

    #[test]
    fn the_normal_path_expression_is_the_runtimes_normal_form() {
        let paths = [
            "/", ".", "a", "a/b", "/a/b", ".x", "..x", "...", "a/.b/..c", "é/ü", "", "a/", "//",
            "a//b", "./a", "a/.", "a/./b", "..", "../a", "a/..", "/..", "/a/", "a/../b",
        ];
        for path in paths {
            let value = z3_string(path);
            let accepted = solved(&normal_path(&value)).is_some();
            assert_eq!(
                accepted,
                tollgate_runtime::path::is_normal(path),
                "{path:?}"
            );
        }
        // And a free path variable constrained to normal form has models only in normal form.
        let free = ZString::new_const("p");
        let model = solved(&Bool::and(&[
            normal_path(&free),
            free.contains(z3_string("..")),
            free.regex_matches(&valid_utf8()),
        ]))
        .unwrap();
        let found = string_from_model(&model, &free).unwrap();
        assert!(tollgate_runtime::path::is_normal(&found), "{found:?}");
    }

    #[test]
    fn strings_survive_the_round_trip_through_z3() {
        for text in SAMPLES {
            let variable = ZString::new_const("x");
            let model = solved(&variable.eq(z3_string(text))).unwrap();
            assert_eq!(
                string_from_model(&model, &variable).as_deref(),
                Some(text),
                "{text:?}"
            );
            assert_eq!(
                bytes_from_model(&model, &variable).map(|b| b.len()),
                Some(text.len())
            );
        }
    }

    #[test]
    fn different_strings_stay_different_and_relations_are_the_gates() {
        for a in SAMPLES {
            for b in SAMPLES {
                let (za, zb) = (z3_string(a), z3_string(b));
                for (what, formula, expected) in [
                    ("==", za.eq(&zb), a == b),
                    (
                        "starts_with",
                        zb.prefix(&za),
                        a.as_bytes().starts_with(b.as_bytes()),
                    ),
                    (
                        "ends_with",
                        zb.suffix(&za),
                        a.as_bytes().ends_with(b.as_bytes()),
                    ),
                    ("contains", za.contains(&zb), a.contains(b)),
                ] {
                    assert_eq!(solved(&formula).is_some(), expected, "{a:?} {what} {b:?}");
                }
            }
        }
    }

    /// Characters from every class of code point, and the pieces of escapes Z3 reads.
    fn character() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            (0x20u32..0x7f).prop_map(|c| char::from_u32(c).unwrap_or('a').to_string()),
            (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap_or('a').to_string()),
            (0x80u32..0x800).prop_map(|c| char::from_u32(c).unwrap_or('a').to_string()),
            (0x800u32..0x10000)
                .prop_filter("not a surrogate", |c| !(0xd800..0xe000).contains(c))
                .prop_map(|c| char::from_u32(c).unwrap_or('a').to_string()),
            (0x10000u32..0x110000).prop_map(|c| char::from_u32(c).unwrap_or('a').to_string()),
            proptest::sample::select(vec![
                "\\",
                "\\u{41}",
                "\\u0041",
                "\\x41",
                "u{",
                "}",
                "\\u{10ffff}"
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        proptest::collection::vec(character(), 0..5).prop_map(|parts| parts.concat())
    }

    #[test]
    fn every_class_of_code_point_round_trips_and_compares_as_bytes() {
        use proptest::test_runner::{Config, TestCaseError, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 200,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&(text(), text()), |(a, b)| {
            let variable = ZString::new_const("x");
            let model = solved(&variable.eq(z3_string(&a)))
                .ok_or_else(|| TestCaseError::fail("no model"))?;
            if string_from_model(&model, &variable).as_deref() != Some(a.as_str()) {
                return Err(TestCaseError::fail(format!("{a:?} does not round-trip")));
            }
            let (za, zb) = (z3_string(&a), z3_string(&b));
            for (what, formula, expected) in [
                ("==", za.eq(&zb), a == b),
                ("starts_with", za.prefix(&zb), b.starts_with(a.as_str())),
                ("ends_with", za.suffix(&zb), b.ends_with(a.as_str())),
                ("contains", zb.contains(&za), b.contains(a.as_str())),
            ] {
                if solved(&formula).is_some() != expected {
                    return Err(TestCaseError::fail(format!("{a:?} {what} {b:?}")));
                }
            }
            Ok(())
        });
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn a_string_that_is_not_utf8_is_excluded_by_the_regex() {
        let variable = ZString::new_const("x");
        // A lone continuation byte, then an overlong `/`, then a surrogate.
        for bytes in [
            &[0x80u8][..],
            &[0xc0, 0xaf],
            &[0xed, 0xa0, 0x80],
            &[0xf4, 0x90, 0x80, 0x80],
        ] {
            let constant = ZString::from_str(&z3_literal(bytes)).unwrap();
            let formula = Bool::and(&[
                variable.eq(&constant),
                variable.regex_matches(&valid_utf8()),
            ]);
            assert!(solved(&formula).is_none(), "{bytes:?}");
        }
        for text in SAMPLES {
            let formula = Bool::and(&[
                variable.eq(z3_string(text)),
                variable.regex_matches(&valid_utf8()),
            ]);
            assert!(solved(&formula).is_some(), "{text:?}");
        }
    }
}
