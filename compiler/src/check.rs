//! `check`: syntax trees to a resolved, typed [`Policy`].
//!
//! Resolves every name (with "did you mean" suggestions), type-checks every condition against the
//! argument schemas of all the tools a rule can match and the attributes of all the agents it can
//! match, rejects duplicates and meaningless quantities, and returns every problem at once.
//!
//! Static typing is what makes evaluation total: once a policy checks, no condition can meet a
//! missing argument or attribute at run time.

use crate::diagnostic::{self, Diagnostic, NameKind};
use crate::model::*;
use std::collections::{BTreeMap, BTreeSet};
use tollgate_grammar::ast;
use tollgate_grammar::Span;

/// Checks the files of one policy set (in order) and returns the model with every diagnostic.
/// The model is only meaningful when no diagnostic is an error.
pub fn check(files: &[&ast::File]) -> (Policy, Vec<Diagnostic>) {
    let mut checker = Checker::default();
    let items: Vec<&ast::Item> = files.iter().flat_map(|file| file.items.iter()).collect();
    checker.declare(&items);
    checker.define(&items);
    checker.rules_and_the_rest(&items);
    (checker.policy, checker.diagnostics)
}

#[derive(Default)]
struct Checker {
    policy: Policy,
    diagnostics: Vec<Diagnostic>,
    environment_spans: BTreeMap<String, Span>,
    domain_ids: BTreeMap<String, DomainId>,
    tool_ids: BTreeMap<String, ToolId>,
    agent_ids: BTreeMap<String, AgentId>,
    roles: BTreeSet<String>,
    labels: BTreeMap<String, Span>,
    /// Arguments declared with a type that did not check. They are declared all the same, so
    /// that their uses are not reported again: one cause, one error.
    untyped_args: BTreeSet<(ToolId, String)>,
}

/// The type of a field or value in a condition.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ty {
    Int,
    Bool,
    Str,
    /// An enum; the variants valid for every tool the rule matches.
    Enum(Vec<String>),
    Env,
    Agent,
    /// A decimal argument's value, in units of `10^-scale`; a decimal literal has the scale it
    /// is written with until it meets a decimal argument.
    Decimal(u8),
    /// A list argument, with its element's type.
    List(Box<Ty>),
    /// A list element's fields.
    Object(Vec<(String, Ty)>),
}

impl Ty {
    fn describe(&self) -> &'static str {
        match self {
            Ty::Int => "an integer",
            Ty::Bool => "a boolean",
            Ty::Str => "a string",
            Ty::Enum(_) => "an enum",
            Ty::Env => "an environment",
            Ty::Agent => "an agent",
            Ty::Decimal(_) => "a decimal",
            Ty::List(_) => "a list",
            Ty::Object(_) => "an object",
        }
    }

    /// The operators that apply to a value of this type.
    fn operators(&self) -> &'static [&'static str] {
        match self {
            Ty::Int | Ty::Decimal(_) => &["==", "!=", "<", "<=", ">", ">=", "in [...]"],
            Ty::Str => &[
                "==",
                "!=",
                "in [...]",
                "starts_with",
                "ends_with",
                "contains",
            ],
            Ty::Bool | Ty::Enum(_) | Ty::Env | Ty::Agent => &["==", "!=", "in [...]"],
            Ty::List(_) => &[
                "all x in … { … }",
                "any x in … { … }",
                "VALUE in …",
                "len(…)",
            ],
            Ty::Object(_) => &["x.FIELD"],
        }
    }

    fn same_kind(&self, other: &Ty) -> bool {
        match (self, other) {
            (Ty::Decimal(a), Ty::Decimal(b)) => a == b,
            (Ty::List(_) | Ty::Object(_), _) => self == other,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }

    fn ordered(&self) -> bool {
        matches!(self, Ty::Int | Ty::Decimal(_))
    }

    fn example(&self) -> String {
        match self {
            Ty::Int => "an integer such as `100`".to_owned(),
            Ty::Bool => "`true` or `false`".to_owned(),
            Ty::Str => "a quoted string such as `\"text\"`".to_owned(),
            Ty::Enum(variants) => match variants.first() {
                Some(first) => format!("a variant without quotes, such as `{first}`"),
                None => "a variant without quotes".to_owned(),
            },
            Ty::Env => "an environment name without quotes".to_owned(),
            Ty::Agent => "an agent name without quotes".to_owned(),
            Ty::List(_) => "an element, inside `all x in LIST { … }`".to_owned(),
            Ty::Object(_) => "a field, as in `x.FIELD`".to_owned(),
            Ty::Decimal(0) => "a whole number such as `12`".to_owned(),
            Ty::Decimal(scale) => format!(
                "a number with at most {scale} digits after the point, such as `{}`",
                tollgate_grammar::format::decimal(
                    1250 * 10i128.pow(u32::from(*scale)) / 100,
                    *scale
                )
            ),
        }
    }
}

/// An object type to flatten (see `Checker::object_fields`).
struct ObjectDecl<'a> {
    /// The dotted path of the object ("" for a list element's object).
    prefix: &'a str,
    optional: bool,
    fields: &'a [ast::ArgDecl],
    open: bool,
    span: Span,
    in_list: bool,
}

/// Whether a type is an object whose every field is optional (or such an object in turn), so
/// it may stand in an optional object without being marked optional itself.
fn is_all_optional(ty: &ast::TypeExpr) -> bool {
    match &ty.kind {
        ast::TypeExprKind::Object { fields, .. } => fields
            .iter()
            .all(|field| field.optional || is_all_optional(&field.ty)),
        _ => false,
    }
}

fn value_ty(value: &Value) -> Ty {
    match value {
        Value::Int(_) => Ty::Int,
        Value::Bool(_) => Ty::Bool,
        Value::Str(_) => Ty::Str,
        Value::Sym(_) => Ty::Enum(Vec::new()),
        Value::Decimal(text) => Ty::Decimal(places(text)),
        Value::List(_) => Ty::List(Box::new(Ty::Bool)),
        Value::Object(_) => Ty::Object(Vec::new()),
    }
}

fn arg_ty(ty: &ArgType) -> Ty {
    match ty {
        ArgType::Int { .. } => Ty::Int,
        ArgType::Bool => Ty::Bool,
        // A path is a string (in normal form) to every operator; `under` asks for a path.
        ArgType::Str | ArgType::Path => Ty::Str,
        ArgType::Enum(variants) => Ty::Enum(variants.clone()),
        ArgType::Decimal { scale, .. } => Ty::Decimal(*scale),
        ArgType::List { element, .. } => Ty::List(Box::new(arg_ty(&element.ty))),
        ArgType::Object(fields) => Ty::Object(
            fields
                .iter()
                .map(|f| (f.name.clone(), arg_ty(&f.ty)))
                .collect(),
        ),
    }
}

/// How many digits a decimal literal has after its point.
fn places(text: &str) -> u8 {
    text.split_once('.').map_or(0, |(_, fraction)| {
        u8::try_from(fraction.len()).unwrap_or(u8::MAX)
    })
}

/// A number constant (`12`, `12.5`) in `10^-scale` units, when it has no more places than that.
fn constant_units(value: &Value, scale: u8) -> Option<i64> {
    match value {
        Value::Int(v) => v.checked_mul(10i64.checked_pow(u32::from(scale))?),
        Value::Decimal(text) => crate::decimal::units(text, scale),
        _ => None,
    }
}

/// How many lists deep a type is: 0 for a scalar, one more than its element for a list, the
/// deepest field for an object.
fn list_depth(ty: &ArgType) -> usize {
    match ty {
        ArgType::List { element, .. } => 1 + list_depth(&element.ty),
        ArgType::Object(fields) => fields.iter().map(|f| list_depth(&f.ty)).max().unwrap_or(0),
        _ => 0,
    }
}

/// The agents and tools a condition may be evaluated for.
struct Scope {
    agents: Vec<AgentId>,
    tools: Vec<ToolId>,
    /// Optional arguments a condition here may read: an earlier `has` guarantees them.
    present: Vec<String>,
    /// Inside quantifiers' bodies: each one's variable, innermost last.
    vars: Vec<Bound>,
}

/// A quantifier's variable: its name, its element's type, and the key of the list it ranges
/// over (`model::list_key`).
#[derive(Clone)]
struct Bound {
    name: String,
    ty: Ty,
    key: String,
}

/// What a `has x.FIELD` makes known, `up` counted as `Term::Var` counts (an argument's name
/// never starts with a dot).
fn field_known(up: u8, field: &str) -> String {
    format!(".{up}.{field}")
}

/// A term as the body of a quantifier around it reads it: its element references one further
/// out.
fn shifted(term: Term) -> Term {
    let out = |up: u8| up.saturating_add(1);
    match term {
        Term::Var(up) => Term::Var(out(up)),
        Term::VarField(up, field) => Term::VarField(out(up), field),
        Term::Len(ListRef::Var(up)) => Term::Len(ListRef::Var(out(up))),
        Term::Len(ListRef::VarField(up, field)) => Term::Len(ListRef::VarField(out(up), field)),
        other => other,
    }
}

impl Scope {
    /// This scope, with more arguments known present.
    fn knowing(&self, present: Vec<String>) -> Scope {
        let mut known = self.present.clone();
        known.extend(present);
        Scope {
            agents: self.agents.clone(),
            tools: self.tools.clone(),
            present: known,
            vars: self.vars.clone(),
        }
    }

    /// The scope of a quantifier's body over `key`, its variable `name` at elements of `ty`:
    /// what is known of the enclosing elements' fields, one further out.
    fn inside(&self, name: &str, ty: Ty, key: String) -> Scope {
        let present = self
            .present
            .iter()
            .map(|known| {
                let Some((up, field)) = known
                    .strip_prefix('.')
                    .and_then(|rest| rest.split_once('.'))
                else {
                    return known.clone();
                };
                match up.parse::<u8>() {
                    Ok(up) => field_known(up.saturating_add(1), field),
                    Err(_) => known.clone(),
                }
            })
            .collect();
        let mut vars = self.vars.clone();
        vars.push(Bound {
            name: name.to_owned(),
            ty,
            key,
        });
        Scope {
            agents: self.agents.clone(),
            tools: self.tools.clone(),
            present,
            vars,
        }
    }

    /// The variable `name`, innermost first: how far out it is, and it.
    fn bound(&self, name: &str) -> Option<(u8, &Bound)> {
        self.vars
            .iter()
            .rev()
            .enumerate()
            .find(|(_, bound)| bound.name == name)
            .and_then(|(up, bound)| Some((u8::try_from(up).ok()?, bound)))
    }

    /// The keys of the lists the enclosing quantifiers range over, innermost last.
    fn keys(&self) -> Vec<String> {
        self.vars.iter().map(|bound| bound.key.clone()).collect()
    }
}

/// The arguments a condition guarantees present when it holds.
fn present_when_true(condition: &Condition) -> Vec<String> {
    match &condition.kind {
        ConditionKind::Has(name) => vec![name.clone()],
        // The current element's field: `.FIELD` (no argument's name starts with a dot).
        ConditionKind::HasField(up, field) => vec![field_known(*up, field)],
        ConditionKind::And(a, b) => {
            let mut both = present_when_true(a);
            both.extend(present_when_true(b));
            both
        }
        ConditionKind::Or(a, b) => {
            let right = present_when_true(b);
            present_when_true(a)
                .into_iter()
                .filter(|name| right.contains(name))
                .collect()
        }
        ConditionKind::Not(inner) => present_when_false(inner),
        _ => Vec::new(),
    }
}

/// The arguments a condition guarantees present when it does not hold.
fn present_when_false(condition: &Condition) -> Vec<String> {
    match &condition.kind {
        ConditionKind::Or(a, b) => {
            let mut both = present_when_false(a);
            both.extend(present_when_false(b));
            both
        }
        ConditionKind::And(a, b) => {
            let right = present_when_false(b);
            present_when_false(a)
                .into_iter()
                .filter(|name| right.contains(name))
                .collect()
        }
        ConditionKind::Not(inner) => present_when_true(inner),
        _ => Vec::new(),
    }
}

/// A checked operand: its term, its type (`None` when unknown after an error, or when it is a
/// bare name whose meaning depends on the other side), and how it reads in source.
struct Typed {
    term: Term,
    ty: Option<Ty>,
    bare_name: Option<String>,
    text: String,
    span: Span,
}

/// A number constant that a `decimal(scale)` cannot hold: too many places, or too large.
fn decimal_constant(text: &str, value: &Value, scale: u8, span: Span) -> Diagnostic {
    // Too fine: it fits at its own scale but not at this one.
    let finer = match value {
        Value::Decimal(digits) => {
            places(digits) > scale && crate::decimal::units(digits, places(digits)).is_some()
        }
        _ => false,
    };
    if finer {
        diagnostic::decimal_scale(
            format!("`{text}` has more digits after the point than `decimal({scale})` holds"),
            (span, format!("more than {scale} places")),
            None,
            "write the constant with at most as many places as the scale; amounts are never rounded",
        )
    } else {
        diagnostic::decimal_scale(
            format!("`{text}` is out of range for `decimal({scale})`"),
            (span, "out of range".to_owned()),
            None,
            "a decimal holds `value × 10^scale` in a signed 64-bit integer",
        )
    }
}

/// A test step's value as a request carries it.
fn test_value(value: &ast::TestValue) -> Value {
    match value {
        ast::TestValue::Literal(literal) => match literal {
            ast::Literal::Int(int) => Value::Int(int.value),
            ast::Literal::Decimal(_) => Value::Decimal(tollgate_grammar::format::literal(literal)),
            ast::Literal::Str(s) => Value::Str(s.value.clone()),
            ast::Literal::Bool(b, _) => Value::Bool(*b),
            ast::Literal::Name(name) => Value::Sym(name.name.clone()),
        },
        ast::TestValue::List(items, _) => Value::List(items.iter().map(test_value).collect()),
        ast::TestValue::Object(fields, _) => Value::Object(
            fields
                .iter()
                .map(|f| (f.name.name.clone(), test_value(&f.value)))
                .collect(),
        ),
    }
}

/// `decimal(2)` or `an integer`, for messages about scales.
fn scale_words(ty: &Ty) -> String {
    match ty {
        Ty::Decimal(scale) => format!("`decimal({scale})`"),
        other => other.describe().to_owned(),
    }
}

fn operand_text(operand: &ast::Operand) -> String {
    match operand {
        ast::Operand::Var { name, field, .. } => match field {
            Some(field) => format!("{}.{}", name.name, field.name),
            None => name.name.clone(),
        },
        ast::Operand::Call { func, arg, .. } => format!("{}({})", func.name, operand_text(arg)),
        ast::Operand::Field { root, name, .. } => format!("{}.{}", root.keyword(), name.name),
        ast::Operand::Literal(literal) => tollgate_grammar::format::literal(literal),
    }
}

impl Checker {
    fn error(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    // -- pass 1: names ----------------------------------------------------------------------

    fn declare(&mut self, items: &[&ast::Item]) {
        for item in items {
            match item {
                ast::Item::Environments(environments) => {
                    for name in &environments.names {
                        if let Some(first) = self.environment_spans.get(&name.name) {
                            let d =
                                diagnostic::duplicate("environment", &name.name, name.span, *first);
                            self.error(d);
                        } else {
                            self.environment_spans.insert(name.name.clone(), name.span);
                            self.policy.environments.push(name.name.clone());
                        }
                    }
                }
                ast::Item::Domain(domain) => {
                    if let Some(&first) = self.domain_ids.get(&domain.name.name) {
                        let first = self.policy.domains[first].span;
                        let d = diagnostic::duplicate(
                            "domain",
                            &domain.name.name,
                            domain.name.span,
                            first,
                        );
                        self.error(d);
                        continue;
                    }
                    let mut labels = Vec::new();
                    for label in &domain.labels {
                        match DomainLabel::ALL
                            .iter()
                            .find(|(name, _)| *name == label.name)
                        {
                            Some((_, value)) => {
                                if !labels.contains(value) {
                                    labels.push(*value);
                                }
                            }
                            None => {
                                let names = DomainLabel::ALL.iter().map(|(name, _)| *name);
                                let d = diagnostic::unknown_name(
                                    NameKind::Label,
                                    &label.name,
                                    label.span,
                                    names,
                                );
                                self.error(d);
                            }
                        }
                    }
                    labels.sort();
                    self.domain_ids
                        .insert(domain.name.name.clone(), self.policy.domains.len());
                    self.policy.domains.push(Domain {
                        name: domain.name.name.clone(),
                        labels,
                        span: domain.name.span,
                    });
                }
                ast::Item::Agent(agent) => {
                    if let Some(&first) = self.agent_ids.get(&agent.name.name) {
                        let first = self.policy.agents[first].span;
                        let d = diagnostic::duplicate(
                            "agent",
                            &agent.name.name,
                            agent.name.span,
                            first,
                        );
                        self.error(d);
                        continue;
                    }
                    self.agent_ids
                        .insert(agent.name.name.clone(), self.policy.agents.len());
                    self.policy.agents.push(Agent {
                        name: agent.name.name.clone(),
                        roles: Vec::new(),
                        attrs: BTreeMap::new(),
                        credential_ttl: None,
                        span: agent.name.span,
                    });
                }
                _ => {}
            }
        }
        // Tools last: their `domain` and `creates` refer to domains and agents.
        for item in items {
            if let ast::Item::Tool(tool) = item {
                let name = tool.name.text();
                if let Some(&first) = self.tool_ids.get(&name) {
                    let first = self.policy.tools[first].span;
                    let d = diagnostic::duplicate("tool", &name, tool.name.span, first);
                    self.error(d);
                    continue;
                }
                self.tool_ids.insert(name.clone(), self.policy.tools.len());
                self.policy.tools.push(Tool {
                    name,
                    domain: 0,
                    effect: Effect::Read,
                    env: None,
                    cost: 0,
                    cost_per: None,
                    args: Vec::new(),
                    open_args: false,
                    attrs: BTreeMap::new(),
                    creates: None,
                    grants: None,
                    span: tool.name.span,
                });
            }
        }
    }

    // -- pass 2: declarations' bodies -------------------------------------------------------

    fn define(&mut self, items: &[&ast::Item]) {
        for item in items {
            match item {
                ast::Item::Tool(tool) => self.define_tool(tool),
                ast::Item::Agent(agent) => self.define_agent(agent),
                _ => {}
            }
        }
        for agent in &self.policy.agents {
            self.roles.extend(agent.roles.iter().cloned());
        }
        for tool in &self.policy.tools {
            self.roles.extend(tool.grants.iter().cloned());
        }
    }

    fn resolve_agent(&mut self, name: &ast::Ident) -> Option<AgentId> {
        let found = self.agent_ids.get(&name.name).copied();
        if found.is_none() {
            let names: Vec<&str> = self.agent_ids.keys().map(String::as_str).collect();
            let d = diagnostic::unknown_name(NameKind::Agent, &name.name, name.span, names);
            self.diagnostics.push(d);
        }
        found
    }

    fn resolve_environment(&mut self, name: &ast::Ident) -> Option<String> {
        if self.environment_spans.contains_key(&name.name) {
            return Some(name.name.clone());
        }
        let names: Vec<&str> = self.environment_spans.keys().map(String::as_str).collect();
        let d = diagnostic::unknown_name(NameKind::Environment, &name.name, name.span, names);
        self.diagnostics.push(d);
        None
    }

    fn attributes(&mut self, list: &[ast::AttrDecl]) -> BTreeMap<String, (Value, Span)> {
        let mut attrs: BTreeMap<String, (Value, Span)> = BTreeMap::new();
        for attr in list {
            if let Some((_, first)) = attrs.get(&attr.name.name) {
                let d = diagnostic::duplicate("attribute", &attr.name.name, attr.name.span, *first);
                self.error(d);
                continue;
            }
            let value = match &attr.value {
                ast::Literal::Int(int) => Value::Int(int.value),
                ast::Literal::Str(text) => Value::Str(text.value.clone()),
                ast::Literal::Bool(value, _) => Value::Bool(*value),
                ast::Literal::Name(name) => {
                    self.error(diagnostic::bare_name(&name.name, name.span));
                    continue;
                }
                ast::Literal::Decimal(number) => {
                    let d = diagnostic::invalid_type(
                        format!(
                            "attribute `{}` is a decimal",
                            attr.name.name
                        ),
                        number.span,
                        "attributes are integers, strings or booleans: give the amount in its smallest unit (`1250` cents)",
                    );
                    self.error(d);
                    continue;
                }
            };
            attrs.insert(attr.name.name.clone(), (value, attr.name.span));
        }
        attrs
    }

    fn define_tool(&mut self, tool: &ast::Tool) {
        let name = tool.name.text();
        let Some(&id) = self.tool_ids.get(&name) else {
            return;
        };
        if self.policy.tools[id].span != tool.name.span {
            return; // a duplicate, already reported
        }
        let mut seen: BTreeMap<&'static str, Span> = BTreeMap::new();
        let mut domain = None;
        let mut effect = None;
        let mut creates = None;
        let mut grants = None;
        let mut cost_per: Option<&ast::Ident> = None;
        for prop in &tool.props {
            let key = match &prop.kind {
                ast::ToolPropKind::Domain(_) => "domain",
                ast::ToolPropKind::Effect(_) => "effect",
                ast::ToolPropKind::Env(_) => "env",
                ast::ToolPropKind::Cost { .. } => "cost",
                ast::ToolPropKind::Args { .. } => "args",
                ast::ToolPropKind::Attrs(_) => "attrs",
                ast::ToolPropKind::Creates(_) => "creates",
                ast::ToolPropKind::Grants(_) => "grants",
            };
            if let Some(first) = seen.get(key) {
                let d = diagnostic::duplicate_property(key, prop.span, *first);
                self.error(d);
                continue;
            }
            seen.insert(key, prop.span);
            match &prop.kind {
                ast::ToolPropKind::Domain(name) => match self.domain_ids.get(&name.name) {
                    Some(&found) => domain = Some(found),
                    None => {
                        let names: Vec<&str> = self.domain_ids.keys().map(String::as_str).collect();
                        let d = diagnostic::unknown_name(
                            NameKind::Domain,
                            &name.name,
                            name.span,
                            names,
                        );
                        self.error(d);
                        domain = Some(usize::MAX);
                    }
                },
                ast::ToolPropKind::Effect(name) => {
                    match Effect::ALL.iter().find(|(n, _)| *n == name.name) {
                        Some((_, found)) => effect = Some((*found, prop.span)),
                        None => {
                            let names = Effect::ALL.iter().map(|(n, _)| *n);
                            let d = diagnostic::unknown_name(
                                NameKind::Effect,
                                &name.name,
                                name.span,
                                names,
                            );
                            self.error(d);
                        }
                    }
                }
                ast::ToolPropKind::Env(name) => {
                    let env = self.resolve_environment(name);
                    self.policy.tools[id].env = env;
                }
                ast::ToolPropKind::Cost { amount, per } => {
                    if amount.value < 0 {
                        self.error(diagnostic::negative_quantity("cost", amount.span));
                    }
                    self.policy.tools[id].cost = amount.value;
                    cost_per = per.as_ref();
                }
                ast::ToolPropKind::Args { args, open } => {
                    self.policy.tools[id].open_args = *open;
                    let mut schema: Vec<ArgSchema> = Vec::new();
                    let mut declared: BTreeMap<&str, Span> = BTreeMap::new();
                    for arg in args {
                        if let Some(first) = declared.get(arg.name.name.as_str()) {
                            let d = diagnostic::duplicate(
                                "argument",
                                &arg.name.name,
                                arg.name.span,
                                *first,
                            );
                            self.error(d);
                            continue;
                        }
                        declared.insert(&arg.name.name, arg.name.span);
                        if let ast::TypeExprKind::Object { fields, open } = &arg.ty.kind {
                            // An object argument is its fields: `a: { b: int }` declares
                            // the argument `a.b` (read as `args.a.b`).
                            let object = ObjectDecl {
                                prefix: &arg.name.name,
                                optional: arg.optional,
                                fields,
                                open: *open,
                                span: arg.ty.span,
                                in_list: false,
                            };
                            match self.object_fields(&object) {
                                Some(leaves) => schema.extend(leaves),
                                None => {
                                    self.untyped_args.insert((id, arg.name.name.clone()));
                                }
                            }
                            continue;
                        }
                        match self.arg_type(&arg.ty) {
                            Some((ty, length)) => schema.push(ArgSchema {
                                name: arg.name.name.clone(),
                                ty,
                                optional: arg.optional,
                                length,
                                span: arg.name.span,
                            }),
                            None => {
                                self.untyped_args.insert((id, arg.name.name.clone()));
                            }
                        }
                    }
                    self.policy.tools[id].args = schema;
                }
                ast::ToolPropKind::Attrs(list) => {
                    let attrs = self.attributes(list);
                    self.policy.tools[id].attrs = attrs;
                }
                ast::ToolPropKind::Creates(agent) => creates = Some((agent, prop.span)),
                ast::ToolPropKind::Grants(role) => grants = Some((role, prop.span)),
            }
        }
        match domain {
            Some(found) if found != usize::MAX => self.policy.tools[id].domain = found,
            Some(_) => {}
            None => {
                let d = diagnostic::missing_property(
                    "tool",
                    &name,
                    "domain",
                    tool.name.span,
                    "domain NAME",
                );
                self.error(d);
            }
        }
        let effect = match effect {
            Some((found, _)) => {
                self.policy.tools[id].effect = found;
                Some(found)
            }
            None => {
                if !seen.contains_key("effect") {
                    let d = diagnostic::missing_property(
                        "tool",
                        &name,
                        "effect",
                        tool.name.span,
                        "effect read",
                    );
                    self.error(d);
                }
                None
            }
        };
        if let Some(per) = cost_per {
            let declared = &self.policy.tools[id];
            let problem = match declared.arg(&per.name) {
                None if !self.untyped_args.contains(&(id, per.name.clone())) => Some(format!(
                    "`{}` declares no argument `{}` to charge per",
                    declared.name, per.name
                )),
                None => None, // its type was already reported
                Some(arg) if arg.optional => Some(format!(
                    "the cost is charged per `args.{}`, which a call may leave out",
                    per.name
                )),
                Some(arg) => match arg.ty {
                    ArgType::Int { min, .. } if min >= 0 => None,
                    ArgType::Int { .. } => Some(format!(
                        "the cost is charged per `args.{}`, which may be negative",
                        per.name
                    )),
                    _ => Some(format!(
                        "the cost is charged per `args.{}`, which is not an integer",
                        per.name
                    )),
                },
            };
            match problem {
                Some(message) => self.error(diagnostic::cost_per(message, per.span)),
                None => self.policy.tools[id].cost_per = Some(per.name.clone()),
            }
        }
        match (creates, effect) {
            (Some((agent, _)), Some(Effect::Spawn)) => {
                self.policy.tools[id].creates = self.resolve_agent(agent);
            }
            (Some((_, span)), Some(_)) => {
                let d = diagnostic::misplaced_property(
                    "creates",
                    span,
                    "only a tool with `effect spawn` creates an agent",
                );
                self.error(d);
            }
            (None, Some(Effect::Spawn)) => {
                let d = diagnostic::missing_property(
                    "spawn tool",
                    &name,
                    "creates",
                    tool.name.span,
                    "creates AGENT",
                );
                self.error(d);
            }
            _ => {}
        }
        match (grants, effect) {
            (Some((role, _)), Some(Effect::Grant)) => {
                self.policy.tools[id].grants = Some(role.name.clone())
            }
            (Some((_, span)), Some(_)) => {
                let d = diagnostic::misplaced_property(
                    "grants",
                    span,
                    "only a tool with `effect grant` grants a role",
                );
                self.error(d);
            }
            (None, Some(Effect::Grant)) => {
                let d = diagnostic::missing_property(
                    "grant tool",
                    &name,
                    "grants",
                    tool.name.span,
                    "grants ROLE",
                );
                self.error(d);
            }
            _ => {}
        }
    }

    /// An argument's type, and its length bounds for a bounded string or path.
    fn arg_type(&mut self, ty: &ast::TypeExpr) -> Option<(ArgType, Option<(u64, u64)>)> {
        match &ty.kind {
            ast::TypeExprKind::List {
                base,
                elements,
                length,
            } => {
                return self
                    .list_type(ty.span, base, elements, length.as_ref())
                    .map(|list| (list, None))
            }
            ast::TypeExprKind::Object { .. } => {
                let d = diagnostic::invalid_type(
                    "an object is declared as a list's element".to_owned(),
                    ty.span,
                    "declare `list[{ FIELD: TYPE, … }]`; an object argument of its own is not supported yet",
                );
                self.error(d);
                return None;
            }
            _ => {}
        }
        if let ast::TypeExprKind::Bounded { base, min, max } = &ty.kind {
            if base.name == "string" || base.name == "path" {
                let (Ok(low), Ok(high)) = (u64::try_from(min.value), u64::try_from(max.value))
                else {
                    let d = diagnostic::invalid_type(
                        format!(
                            "a length cannot be negative: `{}..{}`",
                            min.value, max.value
                        ),
                        ty.span,
                        "bound the length in bytes, as in `string[0..280]`",
                    );
                    self.error(d);
                    return None;
                };
                if low > high {
                    let d = diagnostic::invalid_type(
                        format!("empty range `{low}..{high}`"),
                        ty.span,
                        "the lower bound must not exceed the upper bound",
                    );
                    self.error(d);
                    return None;
                }
                let kind = if base.name == "path" {
                    ArgType::Path
                } else {
                    ArgType::Str
                };
                return Some((kind, Some((low, high))));
            }
        }
        self.scalar_type(ty).map(|ty| (ty, None))
    }

    /// The fields of an object type, flattened: a field holding an object is its own fields,
    /// named by their dotted path from the object (`b.c`), after `prefix` (`a.b.c` for the
    /// argument `a`). An object is closed and has at least one field; an optional object's fields
    /// are all optional (a call gives any of them or none); a field holding a list is a list of
    /// its own (in an argument's object, an argument; in a list element's object, a field).
    fn object_fields(&mut self, object: &ObjectDecl<'_>) -> Option<Vec<ArgSchema>> {
        let what = if object.in_list {
            "a list element's object"
        } else {
            "an object argument"
        };
        if object.open {
            let d = diagnostic::invalid_type(
                format!("{what} cannot be open (`..`)"),
                object.span,
                "list its fields; a call giving any other field is denied",
            );
            self.error(d);
            return None;
        }
        if object.fields.is_empty() {
            let d = diagnostic::invalid_type(
                format!("{what} has no fields"),
                object.span,
                "declare its fields, as in `{ name: string }`",
            );
            self.error(d);
            return None;
        }
        let mut schema: Vec<ArgSchema> = Vec::new();
        let mut seen: Vec<(&str, Span)> = Vec::new();
        let mut failed = false;
        for field in object.fields {
            let name = field.name.name.as_str();
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                let d = diagnostic::duplicate("field", name, field.name.span, *first);
                self.error(d);
                failed = true;
                continue;
            }
            seen.push((name, field.name.span));
            let path = match object.prefix {
                "" => name.to_owned(),
                prefix => format!("{prefix}.{name}"),
            };
            if object.optional && !field.optional && !is_all_optional(&field.ty) {
                let d = diagnostic::invalid_type(
                    format!("field `{name}` of an optional object is required"),
                    field.span,
                    &format!("an optional object's fields are optional: declare `{name}?: …`, or the object required"),
                );
                self.error(d);
                failed = true;
                continue;
            }
            if let ast::TypeExprKind::Object { fields, open } = &field.ty.kind {
                let inner = ObjectDecl {
                    prefix: &path,
                    optional: object.optional || field.optional,
                    fields,
                    open: *open,
                    span: field.ty.span,
                    in_list: object.in_list,
                };
                match self.object_fields(&inner) {
                    Some(leaves) => schema.extend(leaves),
                    None => failed = true,
                }
                continue;
            }
            match self.arg_type(&field.ty) {
                Some((ty, length)) => schema.push(ArgSchema {
                    name: path,
                    ty,
                    optional: object.optional || field.optional,
                    length,
                    span: field.name.span,
                }),
                None => failed = true,
            }
        }
        (!failed).then_some(schema)
    }

    /// `list[T]` or `list[T][MIN..MAX]`: T a scalar type, a list, or an object of scalars and
    /// lists; at most [`MAX_NEST`] lists deep.
    fn list_type(
        &mut self,
        span: Span,
        base: &ast::Ident,
        elements: &[ast::TypeExpr],
        length: Option<&(ast::IntLit, Option<ast::IntLit>)>,
    ) -> Option<ArgType> {
        if base.name != "list" {
            let d = diagnostic::invalid_type(
                format!("`{}` cannot take a type", base.name),
                span,
                "write `list[T]` for a list, or `enum[A, B]` for a set of names",
            );
            self.error(d);
            return None;
        }
        let [element] = elements else {
            let d = diagnostic::invalid_type(
                format!("a list has one element type, not {}", elements.len()),
                span,
                "write `list[string]`, or `list[{ a: string, b: int }]` for elements with fields",
            );
            self.error(d);
            return None;
        };
        let count = match length {
            None => (0, i64::MAX as u64),
            // `MIN..`: at least MIN, no maximum (as with no count at all).
            Some((min, max)) => {
                let high = match max {
                    Some(max) => u64::try_from(max.value).ok(),
                    None => Some(i64::MAX as u64),
                };
                match (u64::try_from(min.value), high) {
                    (Ok(low), Some(high)) if low <= high => (low, high),
                    _ => {
                        let range = match max {
                            Some(max) => format!("{}..{}", min.value, max.value),
                            None => format!("{}..", min.value),
                        };
                        let d = diagnostic::invalid_type(
                            format!("`{range}` is not a range of element counts"),
                            span,
                            "bound the number of elements, as in `list[path][1..16]` or `list[path][1..]`",
                        );
                        self.error(d);
                        return None;
                    }
                }
            }
        };
        let element = match &element.kind {
            ast::TypeExprKind::Object { fields, open } => {
                let object = ObjectDecl {
                    prefix: "",
                    optional: false,
                    fields,
                    open: *open,
                    span: element.span,
                    in_list: true,
                };
                let schema = self.object_fields(&object)?;
                ArgSchema {
                    name: String::new(),
                    ty: ArgType::Object(schema),
                    optional: false,
                    length: None,
                    span: element.span,
                }
            }
            _ => {
                let (ty, length) = self.arg_type(element)?;
                ArgSchema {
                    name: String::new(),
                    ty,
                    optional: false,
                    length,
                    span: element.span,
                }
            }
        };
        let list = ArgType::List {
            element: Box::new(element),
            count,
        };
        if list_depth(&list) > MAX_NEST {
            let d = diagnostic::invalid_type(
                format!("lists nest {} deep here", list_depth(&list)),
                span,
                &format!("lists nest at most {MAX_NEST} deep, counting lists inside list elements' objects"),
            );
            self.error(d);
            return None;
        }
        Some(list)
    }

    /// `decimal(SCALE)` with optional bounds, in units of `10^-SCALE`.
    fn decimal_type(
        &mut self,
        span: Span,
        base: &ast::Ident,
        scale: &ast::IntLit,
        bounds: Option<&(ast::Literal, ast::Literal)>,
    ) -> Option<ArgType> {
        if base.name != "decimal" {
            let d = diagnostic::invalid_type(
                format!("`{}` takes no scale", base.name),
                span,
                "only `decimal` has a scale, as in `decimal(2)`",
            );
            self.error(d);
            return None;
        }
        let Some(scale) = u8::try_from(scale.value)
            .ok()
            .filter(|s| *s <= tollgate_grammar::lexer::MAX_SCALE)
        else {
            let d = diagnostic::invalid_type(
                format!("scale `{}` is out of range", scale.value),
                scale.span,
                "a decimal has 0 to 18 digits after the point",
            );
            self.error(d);
            return None;
        };
        let (mut min, mut max) = (i64::MIN, i64::MAX);
        if let Some((low, high)) = bounds {
            let mut bound = |literal: &ast::Literal| -> Option<i64> {
                let value = match literal {
                    ast::Literal::Int(int) => Value::Int(int.value),
                    ast::Literal::Decimal(_) => {
                        Value::Decimal(tollgate_grammar::format::literal(literal))
                    }
                    _ => return None,
                };
                let units = constant_units(&value, scale);
                if units.is_none() {
                    let text = tollgate_grammar::format::literal(literal);
                    self.error(decimal_constant(&text, &value, scale, literal.span()));
                }
                units
            };
            let (low, high) = (bound(low), bound(high));
            let (low, high) = (low?, high?);
            if low > high {
                let d = diagnostic::invalid_type(
                    "empty range".to_owned(),
                    span,
                    "the lower bound must not exceed the upper bound",
                );
                self.error(d);
                return None;
            }
            (min, max) = (low, high);
        }
        Some(ArgType::Decimal { scale, min, max })
    }

    fn scalar_type(&mut self, ty: &ast::TypeExpr) -> Option<ArgType> {
        const TYPES: [&str; 6] = ["int", "bool", "string", "enum", "path", "decimal"];
        match &ty.kind {
            ast::TypeExprKind::Named(name) => match name.name.as_str() {
                "int" => Some(ArgType::Int {
                    min: i64::MIN,
                    max: i64::MAX,
                }),
                "bool" => Some(ArgType::Bool),
                "string" => Some(ArgType::Str),
                "path" => Some(ArgType::Path),
                "decimal" => {
                    let d = diagnostic::invalid_type(
                        "`decimal` needs its scale".to_owned(),
                        ty.span,
                        "write `decimal(2)` for amounts with two digits after the point",
                    );
                    self.error(d);
                    None
                }
                "enum" => {
                    let d = diagnostic::invalid_type(
                        "`enum` needs its variants".to_owned(),
                        ty.span,
                        "write `enum[A, B, ...]`",
                    );
                    self.error(d);
                    None
                }
                other => {
                    let d = diagnostic::unknown_name(NameKind::Type, other, name.span, TYPES);
                    self.error(d);
                    None
                }
            },
            ast::TypeExprKind::Bounded { base, min, max } => {
                if base.name != "int" {
                    let d = diagnostic::invalid_type(
                        format!("`{}` cannot have bounds", base.name),
                        ty.span,
                        "`int` takes bounds (`int[0..1000]`), and `string` and `path` a length in bytes (`string[0..280]`)",
                    );
                    self.error(d);
                    return None;
                }
                if min.value > max.value {
                    let d = diagnostic::invalid_type(
                        format!("empty range `{}..{}`", min.value, max.value),
                        ty.span,
                        "the lower bound must not exceed the upper bound",
                    );
                    self.error(d);
                    return None;
                }
                Some(ArgType::Int {
                    min: min.value,
                    max: max.value,
                })
            }
            ast::TypeExprKind::Decimal {
                base,
                scale,
                bounds,
            } => self.decimal_type(ty.span, base, scale, bounds.as_ref()),
            // `arg_type` takes these; in any other position they are not a single value.
            ast::TypeExprKind::List { .. } | ast::TypeExprKind::Object { .. } => {
                let d = diagnostic::invalid_type(
                    "a list or an object where a single value is declared".to_owned(),
                    ty.span,
                    "lists and objects are argument types",
                );
                self.error(d);
                None
            }
            ast::TypeExprKind::Enum { base, variants } => {
                if base.name != "enum" {
                    let d = diagnostic::invalid_type(
                        format!("`{}` cannot list variants", base.name),
                        ty.span,
                        "write `enum[A, B, ...]` for a set of names",
                    );
                    self.error(d);
                    return None;
                }
                let mut names: Vec<String> = Vec::new();
                let mut spans: BTreeMap<&str, Span> = BTreeMap::new();
                for variant in variants {
                    if let Some(first) = spans.get(variant.name.as_str()) {
                        let d = diagnostic::duplicate(
                            "enum variant",
                            &variant.name,
                            variant.span,
                            *first,
                        );
                        self.diagnostics.push(d);
                        continue;
                    }
                    spans.insert(&variant.name, variant.span);
                    names.push(variant.name.clone());
                }
                if names.is_empty() {
                    let d = diagnostic::invalid_type(
                        "`enum[]` has no variants".to_owned(),
                        ty.span,
                        "list at least one variant",
                    );
                    self.error(d);
                    return None;
                }
                Some(ArgType::Enum(names))
            }
        }
    }

    fn define_agent(&mut self, agent: &ast::Agent) {
        let Some(&id) = self.agent_ids.get(&agent.name.name) else {
            return;
        };
        if self.policy.agents[id].span != agent.name.span {
            return;
        }
        let mut seen: BTreeMap<&'static str, Span> = BTreeMap::new();
        for prop in &agent.props {
            let key = match &prop.kind {
                ast::AgentPropKind::Roles(_) => "roles",
                ast::AgentPropKind::Attrs(_) => "attrs",
                ast::AgentPropKind::CredentialTtl(_) => "credential_ttl",
                ast::AgentPropKind::Budget { .. } => "budget",
            };
            if let Some(first) = seen.get(key) {
                let d = diagnostic::duplicate_property(key, prop.span, *first);
                self.error(d);
                continue;
            }
            seen.insert(key, prop.span);
            match &prop.kind {
                ast::AgentPropKind::Roles(roles) => {
                    let mut list: Vec<String> = Vec::new();
                    for role in roles {
                        if !list.contains(&role.name) {
                            list.push(role.name.clone());
                        }
                    }
                    self.policy.agents[id].roles = list;
                }
                ast::AgentPropKind::Attrs(list) => {
                    let attrs = self.attributes(list);
                    self.policy.agents[id].attrs = attrs;
                }
                ast::AgentPropKind::CredentialTtl(ttl) => {
                    if ttl.seconds == 0 {
                        self.error(diagnostic::zero_quantity("credential lifetime", ttl.span));
                    }
                    self.policy.agents[id].credential_ttl = Some(ttl.seconds);
                }
                ast::AgentPropKind::Budget { amount, window } => {
                    if amount.value < 0 {
                        self.error(diagnostic::negative_quantity("budget", amount.span));
                    }
                    if window.seconds == 0 {
                        self.error(diagnostic::zero_quantity("window", window.span));
                    }
                    self.policy.limits.push(Limit {
                        label: None,
                        principal: PrincipalPattern::Agent(id),
                        tools: ToolPattern::Any,
                        kind: LimitKind::Budget {
                            amount: amount.value,
                            window: window.seconds,
                        },
                        span: prop.span,
                    });
                }
            }
        }
    }

    // -- pass 3: rules, limits, delegation, responses, assertions, tests --------------------

    fn rules_and_the_rest(&mut self, items: &[&ast::Item]) {
        let mut tests = Vec::new();
        for item in items {
            match item {
                ast::Item::Rule(rule) => self.rule(rule),
                ast::Item::Limit(limit) => self.limit(limit),
                ast::Item::Delegate(delegate) => self.delegate(delegate),
                ast::Item::OnDeny(on_deny) => self.on_deny(on_deny),
                ast::Item::Assert(assert) => self.assertion(assert),
                ast::Item::Test(test) => tests.push(test),
                ast::Item::Acknowledge(acknowledge) => self.acknowledge(acknowledge),
                _ => {}
            }
        }
        // Tests may name rule labels declared after them.
        for test in tests {
            self.test(test);
        }
    }

    fn label(&mut self, label: &Option<ast::Ident>) -> Option<String> {
        let label = label.as_ref()?;
        if let Some(first) = self.labels.get(&label.name) {
            let d = diagnostic::duplicate("label", &label.name, label.span, *first);
            self.error(d);
        } else {
            self.labels.insert(label.name.clone(), label.span);
        }
        Some(label.name.clone())
    }

    fn principal(&mut self, principal: &ast::Principal) -> Option<PrincipalPattern> {
        match &principal.kind {
            ast::PrincipalKind::Any => Some(PrincipalPattern::Any),
            ast::PrincipalKind::Agent(name) => {
                self.resolve_agent(name).map(PrincipalPattern::Agent)
            }
            ast::PrincipalKind::Role(role) => {
                if self.roles.contains(&role.name) {
                    Some(PrincipalPattern::Role(role.name.clone()))
                } else {
                    let names: Vec<&str> = self.roles.iter().map(String::as_str).collect();
                    let d = diagnostic::unknown_name(NameKind::Role, &role.name, role.span, names);
                    self.error(d);
                    None
                }
            }
        }
    }

    fn tool_pattern(&mut self, pattern: &ast::ToolPattern) -> Option<ToolPattern> {
        match &pattern.kind {
            ast::ToolPatternKind::Any => Some(ToolPattern::Any),
            ast::ToolPatternKind::Exact(name) => {
                let text = name.text();
                match self.tool_ids.get(&text) {
                    Some(&id) => Some(ToolPattern::Exact(id)),
                    None => {
                        let names: Vec<&str> = self.tool_ids.keys().map(String::as_str).collect();
                        let d = diagnostic::unknown_name(NameKind::Tool, &text, name.span, names);
                        self.error(d);
                        None
                    }
                }
            }
            ast::ToolPatternKind::Prefix(name) => {
                let resolved = ToolPattern::Prefix(name.text());
                if self.policy.tools_matching(&resolved).is_empty() {
                    let d = diagnostic::empty_pattern(&format!("{}.*", name.text()), pattern.span);
                    self.error(d);
                    return None;
                }
                Some(resolved)
            }
            ast::ToolPatternKind::Domain(name) => match self.domain_ids.get(&name.name) {
                Some(&id) => Some(ToolPattern::Domain(id)),
                None => {
                    let names: Vec<&str> = self.domain_ids.keys().map(String::as_str).collect();
                    let d =
                        diagnostic::unknown_name(NameKind::Domain, &name.name, name.span, names);
                    self.error(d);
                    None
                }
            },
            ast::ToolPatternKind::Effect(name) => match Effect::ALL
                .iter()
                .find(|(n, _)| *n == name.name)
            {
                Some((_, effect)) => Some(ToolPattern::Effect(*effect)),
                None => {
                    let names = Effect::ALL.iter().map(|(n, _)| *n);
                    let d =
                        diagnostic::unknown_name(NameKind::Effect, &name.name, name.span, names);
                    self.error(d);
                    None
                }
            },
        }
    }

    fn rule(&mut self, rule: &ast::Rule) {
        let label = self.label(&rule.label);
        let principal = self.principal(&rule.principal);
        let tools = self.tool_pattern(&rule.tools);
        let (Some(principal), Some(tools)) = (principal, tools) else {
            return;
        };
        let condition = self.optional_condition(rule.condition.as_ref(), &principal, &tools);
        let Ok(condition) = condition else {
            return;
        };
        self.policy.rules.push(Rule {
            label,
            effect: match rule.effect {
                ast::RuleEffect::Permit => RuleEffect::Permit,
                ast::RuleEffect::Forbid => RuleEffect::Forbid,
            },
            principal,
            tools,
            condition,
            span: rule.span,
        });
    }

    /// `Err` when the condition had errors (already reported).
    fn optional_condition(
        &mut self,
        condition: Option<&ast::Expr>,
        principal: &PrincipalPattern,
        tools: &ToolPattern,
    ) -> Result<Option<Condition>, ()> {
        let Some(condition) = condition else {
            return Ok(None);
        };
        let scope = Scope {
            agents: self.policy.agents_matching(principal),
            tools: self.policy.tools_matching(tools),
            present: Vec::new(),
            vars: Vec::new(),
        };
        let before = self.diagnostics.len();
        let checked = self.condition(condition, &scope);
        if self.diagnostics.len() > before {
            return Err(());
        }
        checked.map(Some).ok_or(())
    }

    fn limit(&mut self, limit: &ast::Limit) {
        let label = self.label(&limit.label);
        let principal = self.principal(&limit.principal);
        let tools = match &limit.tools {
            Some(pattern) => self.tool_pattern(pattern),
            None => Some(ToolPattern::Any),
        };
        let kind = match &limit.kind {
            ast::LimitKind::Rate { count, window } => {
                let count = self.positive_count(count);
                let window = self.window(window);
                count
                    .zip(window)
                    .map(|(count, window)| LimitKind::Rate { count, window })
            }
            ast::LimitKind::Budget { amount, window } => {
                if amount.value < 0 {
                    self.error(diagnostic::negative_quantity("budget", amount.span));
                }
                self.window(window).map(|window| LimitKind::Budget {
                    amount: amount.value,
                    window,
                })
            }
            ast::LimitKind::Depth { max } => match u64::try_from(max.value) {
                Ok(max) => Some(LimitKind::Depth { max }),
                Err(_) => {
                    self.error(diagnostic::negative_quantity("delegation depth", max.span));
                    None
                }
            },
            ast::LimitKind::Repeat { count, window } => {
                let count = self.positive_count(count);
                let window = self.window(window);
                count
                    .zip(window)
                    .map(|(count, window)| LimitKind::Repeat { count, window })
            }
        };
        if let (Some(principal), Some(tools), Some(kind)) = (principal, tools, kind) {
            self.policy.limits.push(Limit {
                label,
                principal,
                tools,
                kind,
                span: limit.span,
            });
        }
    }

    fn positive_count(&mut self, count: &ast::IntLit) -> Option<u64> {
        match u64::try_from(count.value) {
            Ok(0) => {
                self.error(diagnostic::zero_quantity("count", count.span));
                None
            }
            Ok(value) => Some(value),
            Err(_) => {
                self.error(diagnostic::negative_quantity("count", count.span));
                None
            }
        }
    }

    fn window(&mut self, window: &ast::DurationLit) -> Option<u64> {
        if window.seconds == 0 {
            self.error(diagnostic::zero_quantity("window", window.span));
            return None;
        }
        Some(window.seconds)
    }

    fn delegate(&mut self, delegate: &ast::Delegate) {
        let from = self.resolve_agent(&delegate.from);
        let to = self.resolve_agent(&delegate.to);
        let (Some(from), Some(to)) = (from, to) else {
            return;
        };
        if from == to {
            self.error(diagnostic::self_delegation(
                &delegate.from.name,
                delegate.span,
            ));
            return;
        }
        if let Some(first) = self
            .policy
            .delegations
            .iter()
            .find(|d| d.from == from && d.to == to)
        {
            let name = format!("{} -> {}", delegate.from.name, delegate.to.name);
            let d = diagnostic::duplicate("delegation", &name, delegate.span, first.span);
            self.error(d);
            return;
        }
        self.policy.delegations.push(Delegation {
            from,
            to,
            widening: delegate.widening.is_some(),
            span: delegate.span,
        });
    }

    fn on_deny(&mut self, on_deny: &ast::OnDeny) {
        let principal = match &on_deny.principal {
            Some(principal) => self.principal(principal),
            None => Some(PrincipalPattern::Any),
        };
        let count = self.positive_count(&on_deny.count);
        let window = self.window(&on_deny.window);
        if let (Some(principal), Some(count), Some(window)) = (principal, count, window) {
            self.policy.responses.push(FailureResponse {
                principal,
                count,
                window,
                span: on_deny.span,
            });
        }
    }

    fn assertion(&mut self, assert: &ast::Assert) {
        let label = self.label(&assert.label);
        let kind = match &assert.kind {
            ast::AssertKind::Never {
                principal,
                tools,
                condition,
            }
            | ast::AssertKind::Always {
                principal,
                tools,
                condition,
            } => {
                let principal = self.principal(principal);
                let tools = self.tool_pattern(tools);
                let (Some(principal), Some(tools)) = (principal, tools) else {
                    return;
                };
                let Ok(condition) = self.optional_condition(condition.as_ref(), &principal, &tools)
                else {
                    return;
                };
                if matches!(assert.kind, ast::AssertKind::Never { .. }) {
                    AssertionKind::Never {
                        principal,
                        tools,
                        condition,
                    }
                } else {
                    AssertionKind::Always {
                        principal,
                        tools,
                        condition,
                    }
                }
            }
            ast::AssertKind::NoTrifecta { principal } => {
                let principal = match principal {
                    Some(principal) => self.principal(principal),
                    None => Some(PrincipalPattern::Any),
                };
                let Some(principal) = principal else {
                    return;
                };
                AssertionKind::NoTrifecta { principal }
            }
        };
        self.policy.assertions.push(Assertion {
            label,
            kind,
            span: assert.span,
        });
    }

    fn acknowledge(&mut self, acknowledge: &ast::Acknowledge) {
        let resolve_tool = |checker: &mut Self, name: &ast::DottedName| {
            let text = name.text();
            let found = checker.tool_ids.get(&text).copied();
            if found.is_none() {
                let names: Vec<&str> = checker.tool_ids.keys().map(String::as_str).collect();
                let d = diagnostic::unknown_name(NameKind::Tool, &text, name.span, names);
                checker.error(d);
            }
            found
        };
        let kind = match &acknowledge.kind {
            ast::AcknowledgeKind::Trifecta { agent } => {
                self.resolve_agent(agent).map(AcknowledgementKind::Trifecta)
            }
            ast::AcknowledgeKind::Escalation { agent, tool } => {
                let agent = self.resolve_agent(agent);
                let tool = resolve_tool(self, tool);
                agent
                    .zip(tool)
                    .map(|(a, t)| AcknowledgementKind::Escalation(a, t))
            }
            ast::AcknowledgeKind::Widening { agent, tool } => {
                let agent = self.resolve_agent(agent);
                let tool = resolve_tool(self, tool);
                agent
                    .zip(tool)
                    .map(|(a, t)| AcknowledgementKind::Widening(a, t))
            }
        };
        if let Some(kind) = kind {
            self.policy.acknowledgements.push(Acknowledgement {
                kind,
                reason: acknowledge.reason.as_ref().map(|r| r.value.clone()),
                span: acknowledge.span,
            });
        }
    }

    // -- conditions -------------------------------------------------------------------------

    fn condition(&mut self, expr: &ast::Expr, scope: &Scope) -> Option<Condition> {
        let kind = match &expr.kind {
            // Left to right, as a reader reads it: the right side of `and` may read what the
            // left side tested present; the right side of `or` what the left side's failure
            // implies present (`not has args.x or args.x > 5`).
            ast::ExprKind::Or(a, b) => {
                let a = self.condition(a, scope);
                let known = a.as_ref().map(present_when_false).unwrap_or_default();
                let b = self.condition(b, &scope.knowing(known));
                ConditionKind::Or(Box::new(a?), Box::new(b?))
            }
            ast::ExprKind::And(a, b) => {
                let a = self.condition(a, scope);
                let known = a.as_ref().map(present_when_true).unwrap_or_default();
                let b = self.condition(b, &scope.knowing(known));
                ConditionKind::And(Box::new(a?), Box::new(b?))
            }
            ast::ExprKind::Under { lhs, root } => return self.under(expr, lhs, root, scope),
            ast::ExprKind::Member { lhs, list } => {
                let (list_ref, _, element, list_span) = self.list_operand(list, scope)?;
                self.along_the_data(scope, &list_ref, list, list_span)?;
                if let Ty::Object(_) | Ty::List(_) = element {
                    let (holds, help) = match element {
                        Ty::Object(_) => (
                            "objects",
                            "compare a field: `any e in LIST { e.FIELD == VALUE }`",
                        ),
                        _ => (
                            "lists",
                            "test the inner lists' elements: `any x in LIST { VALUE in x }`",
                        ),
                    };
                    let d = diagnostic::list_use(
                        format!(
                            "`{}` holds {holds}: `in` compares single values",
                            operand_text(list)
                        ),
                        list_span,
                        &format!("a list of {holds}"),
                        help,
                    );
                    self.error(d);
                    return None;
                }
                let value = self.operand(lhs, scope)?;
                // `len(…)` meets number constants only: the verifier's bound on list lengths
                // counts them.
                if matches!(value.term, Term::Len(_)) {
                    let d = diagnostic::list_use(
                        format!("`{}` is compared with the elements of `{}`", value.text, operand_text(list)),
                        value.span,
                        "not against constants",
                        "compare `len(…)` with numbers, as in `len(args.paths) in [1, 2]` or `len(args.paths) <= 16`",
                    );
                    self.error(d);
                    return None;
                }
                let each = Typed {
                    term: Term::Var(0),
                    ty: Some(element),
                    bare_name: None,
                    text: format!("an element of `{}`", operand_text(list)),
                    span: list_span,
                };
                let (each, value) = self.unify(each, value)?;
                ConditionKind::Quantified {
                    all: false,
                    list: list_ref,
                    // The value is read in the body: its elements one further out.
                    body: Box::new(Condition {
                        kind: ConditionKind::Compare {
                            op: tollgate_grammar::ast::CompareOp::Eq,
                            lhs: each.term,
                            rhs: shifted(value.term),
                        },
                        span: expr.span,
                    }),
                }
            }
            ast::ExprKind::Quantified {
                all,
                var,
                list,
                body,
            } => {
                let (list_ref, key, element, list_span) = self.list_operand(list, scope)?;
                self.along_the_data(scope, &list_ref, list, list_span)?;
                if let Some((_, outer)) = scope.bound(&var.name) {
                    let d = diagnostic::list_use(
                        format!("`{}` is already the variable of a quantifier around this one", var.name),
                        var.span,
                        "already bound",
                        &format!("give this quantifier's variable a name of its own: `{}` already names the element of a quantifier around it", outer.name),
                    );
                    self.error(d);
                    return None;
                }
                let inner = scope.inside(&var.name, element, key);
                let body = self.condition(body, &inner)?;
                ConditionKind::Quantified {
                    all: *all,
                    list: list_ref,
                    body: Box::new(body),
                }
            }
            ast::ExprKind::Has(ast::Operand::Var {
                name,
                field: Some(field),
                ..
            }) if scope.bound(&name.name).is_some() => {
                // `has x.FIELD`: the field is known (its type is not read).
                let up = scope.bound(&name.name).map_or(0, |(up, _)| up);
                let inner = scope.knowing(vec![field_known(up, &field.name)]);
                self.var_field(name, Some(field), expr.span, &inner)?;
                ConditionKind::HasField(up, field.name.clone())
            }
            ast::ExprKind::Has(operand) => {
                let ast::Operand::Field {
                    root: ast::FieldRoot::Args,
                    name,
                    span,
                } = operand
                else {
                    let d = diagnostic::has_not_argument(&operand_text(operand), expr.span);
                    self.error(d);
                    return None;
                };
                self.arg_field(&name.name, *span, scope, false)?;
                ConditionKind::Has(name.name.clone())
            }
            ast::ExprKind::Not(inner) => {
                ConditionKind::Not(Box::new(self.condition(inner, scope)?))
            }
            ast::ExprKind::Operand(operand) => {
                let typed = self.operand(operand, scope)?;
                match (&typed.ty, &typed.bare_name) {
                    (Some(Ty::Bool), _) => ConditionKind::Bool(typed.term),
                    (Some(ty), _) => {
                        let d = diagnostic::not_boolean(&typed.text, ty.describe(), typed.span);
                        self.error(d);
                        return None;
                    }
                    (None, Some(name)) => {
                        let d = diagnostic::not_boolean(name, "a bare name", typed.span);
                        self.error(d);
                        return None;
                    }
                    (None, None) => return None,
                }
            }
            ast::ExprKind::Compare { op, lhs, rhs } => {
                let lhs = self.operand(lhs, scope);
                let rhs = self.operand(rhs, scope);
                let (lhs, rhs) = (lhs?, rhs?);
                for side in [&lhs, &rhs] {
                    if let Some(ty @ (Ty::List(_) | Ty::Object(_))) = &side.ty {
                        let d = diagnostic::list_use(
                            format!("`{}` is {}: compare its parts", side.text, ty.describe()),
                            side.span,
                            "not a single value",
                            "use `all x in LIST { x … }`, `any`, `VALUE in LIST` or `len(LIST)`; an element's field is `x.FIELD`",
                        );
                        self.error(d);
                        return None;
                    }
                }
                // `len(…)` against a constant only: the verifier's bound on list lengths counts
                // the constants it is compared with.
                for (side, other) in [(&lhs, &rhs), (&rhs, &lhs)] {
                    if matches!(side.term, Term::Len(_))
                        && !matches!(other.term, Term::Const(Value::Int(_)))
                    {
                        let d = diagnostic::list_use(
                            format!("`{}` is compared with `{}`", side.text, other.text),
                            other.span,
                            "not a number constant",
                            "compare `len(…)` with a number, as in `len(args.paths) <= 16`",
                        );
                        self.error(d);
                        return None;
                    }
                }
                let ordering = !matches!(
                    op,
                    tollgate_grammar::ast::CompareOp::Eq | tollgate_grammar::ast::CompareOp::Ne
                );
                // The operator before the operands: in `args.summary > 100` the mistake is `>`
                // on a string, and a type mismatch would suggest quoting the number.
                if ordering {
                    for side in [&lhs, &rhs] {
                        if let Some(ty) = side.ty.as_ref().filter(|ty| !ty.ordered()) {
                            let d = diagnostic::not_ordered(
                                op.symbol(),
                                &side.text,
                                ty.describe(),
                                side.span,
                                ty.operators(),
                            );
                            self.error(d);
                            return None;
                        }
                    }
                }
                // A bare name has no type yet; it can only take an integer's, which is ordered.
                let (lhs, rhs) = self.unify(lhs, rhs)?;
                ConditionKind::Compare {
                    op: *op,
                    lhs: lhs.term,
                    rhs: rhs.term,
                }
            }
            ast::ExprKind::Str { op, lhs, rhs } => {
                let lhs = self.operand(lhs, scope);
                let rhs = self.operand(rhs, scope);
                let (lhs, rhs) = self.unify(lhs?, rhs?)?;
                for side in [&lhs, &rhs] {
                    if let Some(ty) = side.ty.as_ref().filter(|ty| **ty != Ty::Str) {
                        let d = diagnostic::unsupported_operator(
                            op.keyword(),
                            &side.text,
                            ty.describe(),
                            side.span,
                            "`starts_with`, `ends_with` and `contains` compare strings",
                        );
                        self.error(d);
                        return None;
                    }
                }
                ConditionKind::Str {
                    op: *op,
                    lhs: lhs.term,
                    rhs: rhs.term,
                }
            }
            ast::ExprKind::In { lhs, set } => {
                let lhs = self.operand(lhs, scope)?;
                let mut values = Vec::new();
                let mut failed = false;
                for literal in set {
                    let element = self.literal(literal);
                    match self.unify(
                        Typed {
                            term: lhs.term.clone(),
                            ty: lhs.ty.clone(),
                            bare_name: lhs.bare_name.clone(),
                            text: lhs.text.clone(),
                            span: lhs.span,
                        },
                        element,
                    ) {
                        Some((
                            _,
                            Typed {
                                term: Term::Const(value),
                                ..
                            },
                        )) => values.push(value),
                        _ => failed = true,
                    }
                }
                if failed {
                    return None;
                }
                values.sort();
                values.dedup();
                ConditionKind::In {
                    lhs: lhs.term,
                    set: values,
                }
            }
        };
        Some(Condition {
            kind,
            span: expr.span,
        })
    }

    /// Quantifiers (and `in` over a list) nest along the data: inside a body, they range over
    /// the innermost element (a list of lists) or a list field of it, never over another list.
    /// Each list is then read once per element of the lists around it, which keeps the
    /// verifier's bound on list lengths exact (see the semantics chapter), and nesting is as
    /// deep as the shapes, at most [`MAX_NEST`].
    fn along_the_data(
        &mut self,
        scope: &Scope,
        list: &ListRef,
        operand: &ast::Operand,
        span: Span,
    ) -> Option<()> {
        let Some(inner) = scope.vars.last() else {
            return Some(());
        };
        if matches!(list, ListRef::Var(0) | ListRef::VarField(0, _)) {
            return Some(());
        }
        let d = diagnostic::list_use(
            format!(
                "`{}` is not the element `{}` or a list inside it",
                operand_text(operand),
                inner.name
            ),
            span,
            "another list",
            &format!("inside `… {0} in …`, a quantifier ranges over `{0}` (a list of lists) or a list field `{0}.FIELD`; test other lists in a condition of their own, joined with `and`", inner.name),
        );
        self.error(d);
        None
    }

    /// `args.P under "ROOT"`: P is a path argument of every tool in scope, ROOT a path literal in
    /// normal form. It means `args.P == ROOT or args.P starts_with "ROOT/"` (for `/`: any
    /// absolute path; for `.`: any relative one), so evaluation, verification and code
    /// generation need nothing new.
    fn under(
        &mut self,
        expr: &ast::Expr,
        lhs: &ast::Operand,
        root: &ast::Operand,
        scope: &Scope,
    ) -> Option<Condition> {
        let typed = self.operand(lhs, scope)?;
        // A path argument, a list's path element, or a path field of a list's element.
        let keys = scope.keys();
        let key = match &typed.term {
            Term::Arg(name) => ListRef::Arg(name.clone()).key(&keys),
            Term::Var(up) => ListRef::Var(*up).key(&keys),
            Term::VarField(up, field) => ListRef::VarField(*up, field.clone()).key(&keys),
            _ => None,
        };
        let declared =
            |tool: &Tool| -> Option<ArgSchema> { list_key(tool, key.as_deref()?).cloned() };
        if key.is_none() {
            let d = diagnostic::under_needs_path(
                format!("`{}` is not a path argument", typed.text),
                (typed.span, "not an argument"),
                "declare the argument as `path` and test `args.NAME under \"ROOT\"`",
                None,
            );
            self.error(d);
            return None;
        }
        let name = &typed.text;
        for &id in &scope.tools {
            let tool = &self.policy.tools[id];
            if let Some(arg) = declared(tool).filter(|a| a.ty != ArgType::Path) {
                let d = diagnostic::under_needs_path(
                    format!("`{name}` is not a path in `{}`", tool.name),
                    (typed.span, "not a path"),
                    "declare it `path` (requests are normalized, so `..` cannot escape the root)",
                    Some(arg.span),
                );
                self.error(d);
                return None;
            }
        }
        let ast::Operand::Literal(ast::Literal::Str(literal)) = root else {
            let d = diagnostic::under_needs_path(
                "the root of `under` must be a path in quotes".to_owned(),
                (root.span(), "not a string"),
                "write the root as a string, as in `args.path under \"docs\"`",
                None,
            );
            self.error(d);
            return None;
        };
        let root_text = literal.value.as_str();
        if !tollgate_runtime::path::is_normal(root_text) {
            let mut buffer = vec![0u8; root_text.len().max(1)];
            let help = match tollgate_runtime::path::normalize(root_text, &mut buffer) {
                Some(normal) => format!("write it in normal form: `\"{normal}\"`"),
                None => "a root cannot climb above itself with `..`".to_owned(),
            };
            let d = diagnostic::under_needs_path(
                format!("the root `\"{root_text}\"` is not a path in normal form"),
                (literal.span, "not in normal form"),
                &help,
                None,
            );
            self.error(d);
            return None;
        }
        let span = expr.span;
        let leaf = |kind| Condition { kind, span };
        let subject = typed.term.clone();
        let arg = || subject.clone();
        let text = |t: &str| Term::Const(Value::Str(t.to_owned()));
        let starts_with = |prefix: &str| {
            leaf(ConditionKind::Str {
                op: tollgate_grammar::ast::StringOp::StartsWith,
                lhs: arg(),
                rhs: text(prefix),
            })
        };
        Some(match root_text {
            "/" => starts_with("/"),
            "." => leaf(ConditionKind::Not(Box::new(starts_with("/")))),
            _ => leaf(ConditionKind::Or(
                Box::new(leaf(ConditionKind::Compare {
                    op: tollgate_grammar::ast::CompareOp::Eq,
                    lhs: arg(),
                    rhs: text(root_text),
                })),
                Box::new(starts_with(&format!("{root_text}/"))),
            )),
        })
    }

    fn literal(&mut self, literal: &ast::Literal) -> Typed {
        let text = tollgate_grammar::format::literal(literal);
        let span = literal.span();
        let (term, ty, bare_name) = match literal {
            ast::Literal::Int(int) => (Term::Const(Value::Int(int.value)), Some(Ty::Int), None),
            ast::Literal::Decimal(number) => (
                Term::Const(Value::Decimal(text.clone())),
                Some(Ty::Decimal(number.scale)),
                None,
            ),
            ast::Literal::Str(s) => (
                Term::Const(Value::Str(s.value.clone())),
                Some(Ty::Str),
                None,
            ),
            ast::Literal::Bool(b, _) => (Term::Const(Value::Bool(*b)), Some(Ty::Bool), None),
            ast::Literal::Name(name) => (
                Term::Const(Value::Sym(name.name.clone())),
                None,
                Some(name.name.clone()),
            ),
        };
        Typed {
            term,
            ty,
            bare_name,
            text,
            span,
        }
    }

    /// Gives both sides one type: a bare name takes its meaning from the other side.
    fn unify(&mut self, lhs: Typed, rhs: Typed) -> Option<(Typed, Typed)> {
        if let Some(pair) = self.unify_decimal(&lhs, &rhs) {
            return pair;
        }
        match (&lhs.ty, &rhs.ty) {
            (Some(_), None) if rhs.bare_name.is_some() => {
                let rhs = self.resolve_bare(&lhs, rhs)?;
                Some((lhs, rhs))
            }
            (None, Some(_)) if lhs.bare_name.is_some() => {
                let lhs = self.resolve_bare(&rhs, lhs)?;
                Some((lhs, rhs))
            }
            (None, None) if lhs.bare_name.is_some() && rhs.bare_name.is_some() => {
                let name = rhs.bare_name.as_deref().unwrap_or("");
                self.error(diagnostic::bare_name(name, rhs.span));
                None
            }
            (Some(a), Some(b)) if !a.same_kind(b) => {
                let help = format!("compare `{}` with {}", lhs.text, a.example());
                let d = diagnostic::type_mismatch(
                    (&lhs.text, a.describe(), lhs.span),
                    (&rhs.text, b.describe(), rhs.span),
                    help,
                );
                self.error(d);
                None
            }
            _ => Some((lhs, rhs)),
        }
    }

    /// Decimals: a number constant meeting a decimal argument becomes an integer in the
    /// argument's units (an error when it has more places than the argument's scale); two
    /// decimal constants meet at the finer scale. `None` when neither side is a decimal.
    fn unify_decimal(&mut self, lhs: &Typed, rhs: &Typed) -> Option<Option<(Typed, Typed)>> {
        let constant = |typed: &Typed| match &typed.term {
            Term::Const(value @ (Value::Int(_) | Value::Decimal(_))) => Some(value.clone()),
            _ => None,
        };
        let (lhs_scale, rhs_scale) = match (&lhs.ty, &rhs.ty) {
            (Some(Ty::Decimal(a)), Some(Ty::Decimal(b))) => (Some(*a), Some(*b)),
            (Some(Ty::Decimal(a)), Some(Ty::Int)) => (Some(*a), None),
            (Some(Ty::Int), Some(Ty::Decimal(b))) => (None, Some(*b)),
            _ => return None,
        };
        let (lhs_constant, rhs_constant) = (constant(lhs), constant(rhs));
        // The scale both sides meet at: an argument's, else the finer constant's.
        let scale = match (lhs_constant.is_some(), rhs_constant.is_some()) {
            (false, false) => None,
            (false, true) => lhs_scale,
            (true, false) => rhs_scale,
            (true, true) => Some(lhs_scale.unwrap_or(0).max(rhs_scale.unwrap_or(0))),
        };
        let Some(scale) = scale else {
            if lhs.ty == rhs.ty {
                return None;
            }
            // Two fields: only decimals of one scale compare.
            let (a, b) = (lhs.ty.clone()?, rhs.ty.clone()?);
            let d = diagnostic::decimal_scale(
                format!(
                    "`{}` is {} and `{}` is {}",
                    lhs.text,
                    scale_words(&a),
                    rhs.text,
                    scale_words(&b)
                ),
                (rhs.span, format!("this is {}", scale_words(&b))),
                Some((lhs.span, format!("this is {}", scale_words(&a)))),
                "compare decimals declared with the same scale, or a decimal with a constant",
            );
            self.error(d);
            return Some(None);
        };
        let mut convert = |typed: &Typed, constant: Option<Value>| -> Option<Typed> {
            let Some(value) = constant else {
                return Some(Typed {
                    term: typed.term.clone(),
                    ty: typed.ty.clone(),
                    bare_name: None,
                    text: typed.text.clone(),
                    span: typed.span,
                });
            };
            let Some(units) = constant_units(&value, scale) else {
                let d = decimal_constant(&typed.text, &value, scale, typed.span);
                self.error(d);
                return None;
            };
            Some(Typed {
                term: Term::Const(Value::Int(units)),
                ty: Some(Ty::Decimal(scale)),
                bare_name: None,
                text: typed.text.clone(),
                span: typed.span,
            })
        };
        let lhs = convert(lhs, lhs_constant);
        let rhs = convert(rhs, rhs_constant);
        Some(lhs.zip(rhs))
    }

    fn resolve_bare(&mut self, typed: &Typed, bare: Typed) -> Option<Typed> {
        let name = bare.bare_name.clone().unwrap_or_default();
        let ty = typed.ty.clone()?;
        let known: Vec<String> = match &ty {
            Ty::Enum(variants) => variants.clone(),
            Ty::Env => self.policy.environments.clone(),
            Ty::Agent => self.policy.agents.iter().map(|a| a.name.clone()).collect(),
            other => {
                let help = format!("compare `{}` with {}", typed.text, other.example());
                let d = diagnostic::type_mismatch(
                    (&typed.text, other.describe(), typed.span),
                    (&name, "a bare name", bare.span),
                    help,
                );
                self.error(d);
                return None;
            }
        };
        if !known.contains(&name) {
            let names: Vec<&str> = known.iter().map(String::as_str).collect();
            let d = match ty {
                Ty::Env => diagnostic::unknown_name(NameKind::Environment, &name, bare.span, names),
                Ty::Agent => diagnostic::unknown_name(NameKind::Agent, &name, bare.span, names),
                _ => diagnostic::unknown_value(
                    &name,
                    bare.span,
                    &format!("`{}`", typed.text),
                    &names,
                ),
            };
            self.error(d);
            return None;
        }
        Some(Typed {
            ty: Some(ty),
            bare_name: None,
            ..bare
        })
    }

    fn operand(&mut self, operand: &ast::Operand, scope: &Scope) -> Option<Typed> {
        match operand {
            // A quantifier's variable shadows any name of the same spelling.
            ast::Operand::Literal(ast::Literal::Name(name))
                if scope.bound(&name.name).is_some() =>
            {
                let (up, bound) = scope.bound(&name.name)?;
                return Some(Typed {
                    term: Term::Var(up),
                    ty: Some(bound.ty.clone()),
                    bare_name: None,
                    text: name.name.clone(),
                    span: name.span,
                });
            }
            ast::Operand::Var { name, field, span } => {
                return self.var_field(name, field.as_ref(), *span, scope)
            }
            ast::Operand::Call { func, arg, span } => return self.call(func, arg, *span, scope),
            _ => {}
        }
        let ast::Operand::Field { root, name, span } = operand else {
            let ast::Operand::Literal(literal) = operand else {
                return None;
            };
            return Some(self.literal(literal));
        };
        let text = operand_text(operand);
        let field = name.name.as_str();
        let (term, ty) = match root {
            ast::FieldRoot::Args => (
                Term::Arg(field.to_owned()),
                self.arg_field(field, *span, scope, true)?,
            ),
            ast::FieldRoot::Context => match field {
                "env" => (Term::Context(ContextField::Env), Ty::Env),
                "hour" => (Term::Context(ContextField::Hour), Ty::Int),
                "depth" => (Term::Context(ContextField::Depth), Ty::Int),
                "origin" => (Term::Context(ContextField::Origin), Ty::Agent),
                _ => {
                    let d = diagnostic::unknown_field(
                        "context",
                        field,
                        *span,
                        &["env", "hour", "depth", "origin"],
                    );
                    self.error(d);
                    return None;
                }
            },
            ast::FieldRoot::Agent => (
                Term::AgentAttr(field.to_owned()),
                self.agent_field(field, *span, scope)?,
            ),
            ast::FieldRoot::Tool => match field {
                "cost" => (Term::ToolCost, Ty::Int),
                "env" => {
                    self.tools_declare(*span, scope, "env", |tool| tool.env.is_some())?;
                    (Term::ToolEnv, Ty::Env)
                }
                _ => (
                    Term::ToolAttr(field.to_owned()),
                    self.tool_field(field, *span, scope)?,
                ),
            },
        };
        Some(Typed {
            term,
            ty: Some(ty),
            bare_name: None,
            text,
            span: *span,
        })
    }

    /// `e.FIELD`: a field of the element the quantifier is at.
    fn var_field(
        &mut self,
        name: &ast::Ident,
        field: Option<&ast::Ident>,
        span: Span,
        scope: &Scope,
    ) -> Option<Typed> {
        let text = match field {
            Some(field) => format!("{}.{}", name.name, field.name),
            None => name.name.clone(),
        };
        let Some((
            up,
            Bound {
                ty: element, key, ..
            },
        )) = scope.bound(&name.name)
        else {
            let d = diagnostic::list_use(
                format!("`{}` is not a quantified variable", name.name),
                name.span,
                "not bound here",
                "`x.FIELD` reads a field of the element `x` in `all x in args.LIST { … }` or `any`",
            );
            self.error(d);
            return None;
        };
        let Some(field) = field else {
            return Some(Typed {
                term: Term::Var(up),
                ty: Some(element.clone()),
                bare_name: None,
                text,
                span,
            });
        };
        let Ty::Object(fields) = element else {
            let d = diagnostic::list_use(
                format!(
                    "`{}` has no fields: its elements are {}",
                    name.name,
                    element.describe()
                ),
                span,
                "not an object",
                &format!("compare the element itself: `{}`", name.name),
            );
            self.error(d);
            return None;
        };
        let Some((_, ty)) = fields.iter().find(|(f, _)| *f == field.name) else {
            let known: Vec<&str> = fields.iter().map(|(f, _)| f.as_str()).collect();
            let d = diagnostic::list_use(
                format!("the elements have no field `{}`", field.name),
                field.span,
                "unknown field",
                &format!("the fields are: {}", known.join(", ")),
            );
            self.error(d);
            return None;
        };
        let ty = ty.clone();
        let key = key.clone();
        if !scope.present.contains(&field_known(up, &field.name)) {
            if let Some((tool, declared)) = self.optional_field(scope, &key, &field.name) {
                let d = diagnostic::unguarded_field(
                    &text,
                    &name.name,
                    &field.name,
                    span,
                    &tool,
                    declared,
                );
                self.error(d);
                return None;
            }
        }
        Some(Typed {
            term: Term::VarField(up, field.name.clone()),
            ty: Some(ty),
            bare_name: None,
            text,
            span,
        })
    }

    /// The first tool in scope whose list `key` has elements with the optional field `field`,
    /// and where that field is declared.
    fn optional_field(&self, scope: &Scope, key: &str, field: &str) -> Option<(String, Span)> {
        scope.tools.iter().find_map(|&id| {
            let tool = &self.policy.tools[id];
            let declared = list_key(tool, &format!("{key}[].{field}")).filter(|f| f.optional)?;
            Some((tool.name.clone(), declared.span))
        })
    }

    /// `len(args.LIST)`, the one function.
    fn call(
        &mut self,
        func: &ast::Ident,
        arg: &ast::Operand,
        span: Span,
        scope: &Scope,
    ) -> Option<Typed> {
        if func.name != "len" {
            let d = diagnostic::list_use(
                format!("unknown function `{}`", func.name),
                func.span,
                "not a function",
                "`len(args.LIST)` counts a list's elements; it is the only function",
            );
            self.error(d);
            return None;
        }
        let (list, _, _, _) = self.list_operand(arg, scope)?;
        Some(Typed {
            term: Term::Len(list),
            ty: Some(Ty::Int),
            bare_name: None,
            text: format!("len({})", operand_text(arg)),
            span,
        })
    }

    /// An operand that names a list (an argument, or an element or element's field that is a
    /// list): the list, its key, its element type and its span.
    fn list_operand(
        &mut self,
        operand: &ast::Operand,
        scope: &Scope,
    ) -> Option<(ListRef, String, Ty, Span)> {
        let typed = self.operand(operand, scope)?;
        let list = match &typed.term {
            Term::Arg(name) => Some(ListRef::Arg(name.clone())),
            Term::Var(up) => Some(ListRef::Var(*up)),
            Term::VarField(up, field) => Some(ListRef::VarField(*up, field.clone())),
            _ => None,
        };
        let key = list.as_ref().and_then(|list| list.key(&scope.keys()));
        match (list, key, typed.ty) {
            (Some(list), Some(key), Some(Ty::List(element))) => {
                Some((list, key, *element, typed.span))
            }
            (_, _, ty) => {
                let d = diagnostic::list_use(
                    format!(
                        "`{}` is {}, not a list",
                        typed.text,
                        ty.as_ref().map_or("a name", Ty::describe)
                    ),
                    typed.span,
                    "not a list",
                    "quantifiers, `in` and `len` read a list: an argument declared `list[T]`, or an element or field that is one",
                );
                self.error(d);
                None
            }
        }
    }

    /// Checks that every tool in scope has a property; reports the first that lacks it.
    fn tools_declare(
        &mut self,
        span: Span,
        scope: &Scope,
        field: &str,
        has: impl Fn(&Tool) -> bool,
    ) -> Option<()> {
        for &id in &scope.tools {
            let tool = &self.policy.tools[id];
            if !has(tool) {
                let known: Vec<&str> = tool.attrs.keys().map(String::as_str).collect();
                let d = diagnostic::unknown_attribute(
                    "tool", field, span, &tool.name, tool.span, &known,
                );
                self.error(d);
                return None;
            }
        }
        Some(())
    }

    /// The type of `args.FIELD` across the tools in scope; `read` when the condition reads its
    /// value (an optional argument must then be known present).
    fn arg_field(&mut self, field: &str, span: Span, scope: &Scope, read: bool) -> Option<Ty> {
        let mut found: Option<(Ty, &str, Span)> = None;
        let mut problem = None;
        let mut untyped = false;
        for &id in &scope.tools {
            let tool = &self.policy.tools[id];
            let root = field.split('.').next().unwrap_or(field);
            if self.untyped_args.contains(&(id, root.to_owned())) {
                untyped = true;
                continue;
            }
            let object = format!("{field}.");
            if tool.arg(field).is_none() {
                if let Some(leaf) = tool.args.iter().find(|a| a.name.starts_with(&object)) {
                    problem = Some(diagnostic::list_use(
                        format!("argument `{field}` of tool `{}` is an object", tool.name),
                        span,
                        "an object, not a value",
                        &format!("name one of its fields, as in `args.{}`", leaf.name),
                    ));
                    break;
                }
            }
            let Some(arg) = tool.arg(field) else {
                let known: Vec<&str> = tool.args.iter().map(|a| a.name.as_str()).collect();
                problem = Some(diagnostic::unknown_argument(
                    field, span, &tool.name, tool.span, &known,
                ));
                break;
            };
            if read && arg.optional && !scope.present.iter().any(|p| p == field) {
                problem = Some(diagnostic::unguarded_optional(
                    field, span, &tool.name, arg.span,
                ));
                break;
            }
            let ty = arg_ty(&arg.ty);
            found = match found.take() {
                None => Some((ty, &tool.name, arg.span)),
                Some((previous, first_tool, first_span)) => {
                    if !previous.same_kind(&ty) {
                        problem = Some(diagnostic::inconsistent_field(
                            &format!("args.{field}"),
                            span,
                            (first_tool, previous.describe(), first_span),
                            (&tool.name, ty.describe(), arg.span),
                        ));
                        break;
                    }
                    let merged = match (previous, ty) {
                        (Ty::Enum(a), Ty::Enum(b)) => {
                            Ty::Enum(a.into_iter().filter(|v| b.contains(v)).collect())
                        }
                        (previous, _) => previous,
                    };
                    Some((merged, first_tool, first_span))
                }
            };
        }
        if let Some(problem) = problem {
            self.error(problem);
            return None;
        }
        if untyped {
            return None;
        }
        found.map(|(ty, _, _)| ty)
    }

    fn attribute_type<'p>(
        &self,
        owners: impl Iterator<Item = (&'p str, Span, &'p BTreeMap<String, (Value, Span)>)>,
        owner_kind: &str,
        field: &str,
        span: Span,
    ) -> Result<Option<Ty>, Diagnostic> {
        let mut found: Option<(Ty, &str, Span)> = None;
        for (name, owner_span, attrs) in owners {
            let Some((value, attr_span)) = attrs.get(field) else {
                let known: Vec<&str> = attrs.keys().map(String::as_str).collect();
                return Err(diagnostic::unknown_attribute(
                    owner_kind, field, span, name, owner_span, &known,
                ));
            };
            let ty = value_ty(value);
            match &found {
                None => found = Some((ty, name, *attr_span)),
                Some((previous, first, first_span)) if !previous.same_kind(&ty) => {
                    return Err(diagnostic::inconsistent_field(
                        &format!("{owner_kind}.{field}"),
                        span,
                        (first, previous.describe(), *first_span),
                        (name, ty.describe(), *attr_span),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(found.map(|(ty, _, _)| ty))
    }

    fn agent_field(&mut self, field: &str, span: Span, scope: &Scope) -> Option<Ty> {
        let owners = scope
            .agents
            .iter()
            .filter_map(|&id| self.policy.agents.get(id))
            .map(|a| (a.name.as_str(), a.span, &a.attrs));
        match self.attribute_type(owners, "agent", field, span) {
            Ok(ty) => ty,
            Err(d) => {
                self.error(d);
                None
            }
        }
    }

    fn tool_field(&mut self, field: &str, span: Span, scope: &Scope) -> Option<Ty> {
        let owners = scope
            .tools
            .iter()
            .filter_map(|&id| self.policy.tools.get(id))
            .map(|t| (t.name.as_str(), t.span, &t.attrs));
        match self.attribute_type(owners, "tool", field, span) {
            Ok(ty) => ty,
            Err(d) => {
                self.error(d);
                None
            }
        }
    }

    // -- tests ------------------------------------------------------------------------------

    fn test(&mut self, test: &ast::Test) {
        let mut steps = Vec::new();
        let mut env: Option<String> = None;
        let mut time = 0;
        for step in &test.steps {
            let expect = self.expectation(&step.expect);
            let expects = |reason: Reason| matches!(&expect, Some(Expectation::Deny { reason: Some(r), .. }) if *r == reason);
            if !self.agent_ids.contains_key(&step.agent.name) && !expects(Reason::UnknownAgent) {
                self.resolve_agent(&step.agent);
            }
            let tool = step.tool.text();
            if !self.tool_ids.contains_key(&tool) && !expects(Reason::UnknownTool) {
                let names: Vec<&str> = self.tool_ids.keys().map(String::as_str).collect();
                let d = diagnostic::unknown_name(NameKind::Tool, &tool, step.tool.span, names);
                self.error(d);
            }
            let tolerates_bad_context = expects(Reason::InvalidRequest);
            for hop in &step.via {
                if !self.agent_ids.contains_key(&hop.name) && !tolerates_bad_context {
                    self.resolve_agent(hop);
                }
            }
            if let Some(name) = &step.env {
                if !self.environment_spans.contains_key(&name.name) && !tolerates_bad_context {
                    self.resolve_environment(name);
                }
                env = Some(name.name.clone());
            } else if env.is_none()
                && !self.policy.environments.is_empty()
                && !tolerates_bad_context
            {
                let names: Vec<&str> = self
                    .policy
                    .environments
                    .iter()
                    .map(String::as_str)
                    .collect();
                self.error(diagnostic::missing_environment(step.span, &names));
            }
            if let Some(at) = &step.at {
                time = at.seconds;
            }
            let mut args = BTreeMap::new();
            for arg in &step.args {
                let value = test_value(&arg.value);
                if args.insert(arg.name.name.clone(), value).is_some() {
                    let first = step
                        .args
                        .iter()
                        .find(|a| a.name.name == arg.name.name)
                        .map_or(arg.span, |a| a.span);
                    self.error(diagnostic::duplicate(
                        "argument",
                        &arg.name.name,
                        arg.name.span,
                        first,
                    ));
                }
            }
            let Some(expect) = expect else {
                continue;
            };
            // A step is typed against its tool's schema like any request: a `deny` that holds
            // only because the request is malformed would otherwise test nothing.
            let tests_invalid = matches!(
                expect,
                Expectation::Deny {
                    reason: Some(Reason::InvalidArgument),
                    ..
                }
            );
            // A tool with an argument of unknown type has no schema to hold the step to; that
            // type is already reported.
            let schema = self
                .tool_ids
                .get(&tool)
                .filter(|&&t| !self.untyped_args.iter().any(|(owner, _)| *owner == t))
                .and_then(|&t| self.policy.tools.get(t));
            if let Some(schema) = schema {
                if let (Err(error), false) =
                    (crate::eval::validate_args(schema, &args), tests_invalid)
                {
                    let denies = matches!(expect, Expectation::Deny { .. });
                    self.error(diagnostic::test_arguments_invalid(
                        &tool, &error, step.span, denies,
                    ));
                }
            }
            steps.push(TestStep {
                request: Request {
                    agent: step.agent.name.clone(),
                    tool,
                    args,
                    via: step.via.iter().map(|v| v.name.clone()).collect(),
                    env: env.clone(),
                    time,
                },
                expect,
                span: step.span,
            });
        }
        self.policy.tests.push(TestCase {
            name: test.name.value.clone(),
            steps,
            span: test.span,
        });
    }

    fn expectation(&mut self, expect: &ast::Expectation) -> Option<Expectation> {
        match &expect.kind {
            ast::ExpectationKind::Allow { rule: None } => Some(Expectation::Allow { rule: None }),
            ast::ExpectationKind::Allow { rule: Some(label) } => match self
                .policy
                .rule_by_label(&label.name)
            {
                Some(id) => Some(Expectation::Allow { rule: Some(id) }),
                // The label exists but its rule had errors, already reported.
                None if self.labels.contains_key(&label.name) => None,
                None => {
                    let names: Vec<&str> = self
                        .policy
                        .rules
                        .iter()
                        .filter_map(|r| r.label.as_deref())
                        .collect();
                    let d =
                        diagnostic::unknown_name(NameKind::Rule, &label.name, label.span, names);
                    self.error(d);
                    None
                }
            },
            ast::ExpectationKind::Deny { reason, rule } => {
                let reason_value = match reason {
                    None => None,
                    Some(name) => match Reason::from_name(&name.name) {
                        Some(found) => Some(found),
                        None => {
                            let names = Reason::ALL.iter().map(|r| r.as_str());
                            let d = diagnostic::unknown_name(
                                NameKind::Reason,
                                &name.name,
                                name.span,
                                names,
                            );
                            self.error(d);
                            return None;
                        }
                    },
                };
                let rule_value = match rule {
                    None => None,
                    Some(label) => {
                        if let (Some(found), Some(name)) = (reason_value, reason) {
                            if found != Reason::Forbidden {
                                self.error(diagnostic::reason_with_rule(&name.name, expect.span));
                                return None;
                            }
                        }
                        match self.policy.rule_by_label(&label.name) {
                            Some(id) => Some(id),
                            None if self.labels.contains_key(&label.name) => return None,
                            None => {
                                let names: Vec<&str> = self
                                    .policy
                                    .rules
                                    .iter()
                                    .filter_map(|r| r.label.as_deref())
                                    .collect();
                                let d = diagnostic::unknown_name(
                                    NameKind::Rule,
                                    &label.name,
                                    label.span,
                                    names,
                                );
                                self.error(d);
                                return None;
                            }
                        }
                    }
                };
                let reason_value = match (reason_value, rule_value) {
                    (None, Some(_)) => Some(Reason::Forbidden),
                    (reason, _) => reason,
                };
                Some(Expectation::Deny {
                    reason: reason_value,
                    rule: rule_value,
                })
            }
        }
    }
}
