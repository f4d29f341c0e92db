//! The resolved policy model: what `check` produces and `eval`, the verifier and the code
//! generator consume. Names are resolved to indices, conditions are typed, and every element keeps
//! the span of its source so later stages can point back at it.

use std::collections::BTreeMap;
use std::fmt;
use tollgate_grammar::ast::{CompareOp, StringOp};
use tollgate_grammar::Span;
pub use tollgate_runtime::Reason;

pub type AgentId = usize;
pub type ToolId = usize;
pub type DomainId = usize;
pub type RuleId = usize;
pub type LimitId = usize;

#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub environments: Vec<String>,
    pub domains: Vec<Domain>,
    pub tools: Vec<Tool>,
    pub agents: Vec<Agent>,
    pub rules: Vec<Rule>,
    pub limits: Vec<Limit>,
    pub delegations: Vec<Delegation>,
    pub responses: Vec<FailureResponse>,
    pub assertions: Vec<Assertion>,
    pub acknowledgements: Vec<Acknowledgement>,
    pub tests: Vec<TestCase>,
}

impl Policy {
    pub fn agent_id(&self, name: &str) -> Option<AgentId> {
        self.agents.iter().position(|agent| agent.name == name)
    }

    pub fn tool_id(&self, name: &str) -> Option<ToolId> {
        self.tools.iter().position(|tool| tool.name == name)
    }

    pub fn rule_by_label(&self, label: &str) -> Option<RuleId> {
        self.rules
            .iter()
            .position(|rule| rule.label.as_deref() == Some(label))
    }

    /// How a rule is named in messages: its label, or `rule #N` (one-based, in source order).
    pub fn rule_name(&self, id: RuleId) -> String {
        match self.rules.get(id).and_then(|rule| rule.label.clone()) {
            Some(label) => label,
            None => format!("rule #{}", id + 1),
        }
    }

    pub fn principal_matches(&self, pattern: &PrincipalPattern, agent: AgentId) -> bool {
        match pattern {
            PrincipalPattern::Any => true,
            PrincipalPattern::Agent(id) => *id == agent,
            PrincipalPattern::Role(role) => self
                .agents
                .get(agent)
                .is_some_and(|a| a.roles.iter().any(|r| r == role)),
        }
    }

    pub fn tool_matches(&self, pattern: &ToolPattern, tool: ToolId) -> bool {
        let Some(declared) = self.tools.get(tool) else {
            return false;
        };
        match pattern {
            ToolPattern::Any => true,
            ToolPattern::Exact(id) => *id == tool,
            ToolPattern::Prefix(prefix) => declared
                .name
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.starts_with('.')),
            ToolPattern::Domain(domain) => declared.domain == *domain,
            ToolPattern::Effect(effect) => declared.effect == *effect,
        }
    }

    /// The rules of one effect whose patterns match (agent, tool), in rule order.
    pub fn rules_matching(&self, agent: AgentId, tool: ToolId, effect: RuleEffect) -> Vec<RuleId> {
        (0..self.rules.len())
            .filter(|&r| {
                let rule = &self.rules[r];
                rule.effect == effect
                    && self.principal_matches(&rule.principal, agent)
                    && self.tool_matches(&rule.tools, tool)
            })
            .collect()
    }

    /// The limits that apply to (agent, tool), in limit order.
    pub fn limits_matching(&self, agent: AgentId, tool: ToolId) -> Vec<LimitId> {
        (0..self.limits.len())
            .filter(|&l| {
                self.principal_matches(&self.limits[l].principal, agent)
                    && self.tool_matches(&self.limits[l].tools, tool)
            })
            .collect()
    }

    pub fn agents_matching(&self, pattern: &PrincipalPattern) -> Vec<AgentId> {
        (0..self.agents.len())
            .filter(|&agent| self.principal_matches(pattern, agent))
            .collect()
    }

    pub fn tools_matching(&self, pattern: &ToolPattern) -> Vec<ToolId> {
        (0..self.tools.len())
            .filter(|&tool| self.tool_matches(pattern, tool))
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DomainLabel {
    Private,
    Untrusted,
    Public,
}

impl DomainLabel {
    pub const ALL: [(&'static str, DomainLabel); 3] = [
        ("private", DomainLabel::Private),
        ("untrusted", DomainLabel::Untrusted),
        ("public", DomainLabel::Public),
    ];
}

#[derive(Clone, Debug)]
pub struct Domain {
    pub name: String,
    pub labels: Vec<DomainLabel>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Effect {
    Read,
    Write,
    External,
    Exec,
    Spawn,
    Grant,
}

impl Effect {
    pub const ALL: [(&'static str, Effect); 6] = [
        ("read", Effect::Read),
        ("write", Effect::Write),
        ("external", Effect::External),
        ("exec", Effect::Exec),
        ("spawn", Effect::Spawn),
        ("grant", Effect::Grant),
    ];

    pub fn as_str(self) -> &'static str {
        Effect::ALL
            .iter()
            .find(|(_, effect)| *effect == self)
            .map_or("read", |(name, _)| name)
    }
}

/// The type of an argument as declared in a tool's schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgType {
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    Str,
    Enum(Vec<String>),
    /// A string in normal form (`tollgate_runtime::path`): requests are normalized first.
    Path,
    /// `decimal(SCALE)[MIN..MAX]`: an exact number with at most `scale` digits after the point,
    /// held (in conditions, the table and the gate) as the integer `value × 10^scale`; `min` and
    /// `max` are in those units.
    Decimal {
        scale: u8,
        min: i64,
        max: i64,
    },
    /// `list[T][MIN..MAX]`: MIN to MAX elements, each valid for `element` (a scalar, a list, or
    /// an object of scalars and lists), at most [`MAX_NEST`] lists deep. Conditions read a list
    /// through `all`, `any`, `in` and `len`.
    List {
        element: Box<ArgSchema>,
        count: (u64, u64),
    },
    /// `{ name: T, … }`, a list's element: exactly these fields (scalars and lists, each
    /// required or optional; an object inside is its dotted fields).
    Object(Vec<ArgSchema>),
}

impl ArgType {
    /// Integers, booleans, strings, enums, paths and decimals: what a comparison reads.
    pub fn is_scalar(&self) -> bool {
        !matches!(self, ArgType::List { .. } | ArgType::Object(_))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgSchema {
    pub name: String,
    pub ty: ArgType,
    /// `name?: type`: a call may leave it out; conditions read it only after `has args.name`.
    pub optional: bool,
    /// `string[MIN..MAX]`, `path[MIN..MAX]`: the value's length in bytes (of a path, its normal
    /// form) must lie in these bounds.
    pub length: Option<(u64, u64)>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Tool {
    pub name: String,
    pub domain: DomainId,
    pub effect: Effect,
    pub env: Option<String>,
    /// The declared cost: of every call, or per unit of `cost_per`.
    pub cost: i64,
    /// `cost N * args.NAME`: a call costs N times this (required, non-negative integer)
    /// argument; a product past `i64::MAX` exceeds every budget.
    pub cost_per: Option<String>,
    pub args: Vec<ArgSchema>,
    /// `args { …, .. }`: a call may also give undeclared arguments (integers, strings,
    /// booleans), which no condition reads and the gate lets through unexamined.
    pub open_args: bool,
    pub attrs: BTreeMap<String, (Value, Span)>,
    /// For `spawn` tools: the agent the tool creates.
    pub creates: Option<AgentId>,
    /// For `grant` tools: the role the tool grants.
    pub grants: Option<String>,
    pub span: Span,
}

impl Tool {
    pub fn arg(&self, name: &str) -> Option<&ArgSchema> {
        self.args.iter().find(|arg| arg.name == name)
    }
}

#[derive(Clone, Debug)]
pub struct Agent {
    pub name: String,
    pub roles: Vec<String>,
    pub attrs: BTreeMap<String, (Value, Span)>,
    /// The longest lifetime, in seconds, of a credential issued to this agent.
    pub credential_ttl: Option<u64>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalPattern {
    Any,
    Agent(AgentId),
    Role(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolPattern {
    Any,
    Exact(ToolId),
    /// Tools whose name starts with this prefix followed by `.`.
    Prefix(String),
    Domain(DomainId),
    Effect(Effect),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleEffect {
    Permit,
    Forbid,
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub label: Option<String>,
    pub effect: RuleEffect,
    pub principal: PrincipalPattern,
    pub tools: ToolPattern,
    /// `None` when the rule has no `when`.
    pub condition: Option<Condition>,
    pub span: Span,
}

/// A value in a request, an attribute, or a condition constant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    Int(i64),
    Bool(bool),
    /// A byte string (UTF-8 text compared byte by byte).
    Str(String),
    /// An enum variant, environment or agent name.
    Sym(String),
    /// A number with a fraction as a request gives it (`"12.50"`, `"1.5e2"`): exact decimal
    /// text, never a float. A decimal argument takes it when it has no more places than the
    /// argument's scale; conditions see it as an integer in the argument's units.
    Decimal(String),
    /// A JSON array: a list argument's elements.
    List(Vec<Value>),
    /// A JSON object: a list element's fields.
    Object(BTreeMap<String, Value>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(v) => f.write_str(&tollgate_grammar::format::string(v)),
            Value::Sym(v) => write!(f, "{v}"),
            Value::Decimal(v) => f.write_str(v),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Object(fields) => {
                f.write_str("{")?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{name}: {value}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// The context a condition can read besides arguments and attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextField {
    /// The environment the request runs in.
    Env,
    /// Hour of day (UTC) of the request time, 0 to 23.
    Hour,
    /// Number of delegation hops before the acting agent.
    Depth,
    /// The first agent of the delegation chain (the acting agent if there is none).
    Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Term {
    Arg(String),
    Context(ContextField),
    AgentAttr(String),
    ToolAttr(String),
    ToolCost,
    ToolEnv,
    Const(Value),
    /// The element a quantifier is at (`p` in `all p in args.paths { … }`): of the innermost
    /// quantifier at 0, of the one around it at 1, and so on.
    Var(u8),
    /// A field of the element a quantifier is at (`e.newText`), counted as `Var` counts.
    VarField(u8, String),
    /// `len(LIST)`: how many elements a list has.
    Len(ListRef),
}

/// How many lists deep an argument's shape, and quantifiers in a condition, may nest: the
/// runtime's bound (`tollgate_runtime::format::MAX_NEST`).
pub const MAX_NEST: usize = tollgate_runtime::format::MAX_NEST;

/// A list a condition reads: an argument, or (inside a quantifier's body) an element that is
/// itself a list or a list field of an element, counted as [`Term::Var`] counts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListRef {
    Arg(String),
    Var(u8),
    VarField(u8, String),
}

impl ListRef {
    /// The list as a term (`len` and quantifiers read it through this).
    pub fn term(&self) -> Term {
        match self {
            ListRef::Arg(name) => Term::Arg(name.clone()),
            ListRef::Var(up) => Term::Var(*up),
            ListRef::VarField(up, field) => Term::VarField(*up, field.clone()),
        }
    }

    /// The key of this list among the lists of a tool's arguments, `keys` being those of the
    /// lists the enclosing quantifiers range over, innermost last (see [`list_key`]).
    pub fn key(&self, keys: &[String]) -> Option<String> {
        let element = |up: u8| {
            let index = keys.len().checked_sub(1 + usize::from(up))?;
            keys.get(index).map(|key| format!("{key}[]"))
        };
        match self {
            ListRef::Arg(name) => Some(name.clone()),
            ListRef::Var(up) => element(*up),
            ListRef::VarField(up, field) => element(*up).map(|e| format!("{e}.{field}")),
        }
    }
}

/// The schema a list key names in a tool's arguments: `NAME` an argument, `KEY[]` the element
/// of the list `KEY`, `KEY[].FIELD` a field of that element (an object). Keys are how the
/// verifier and the code generator tell nested lists apart.
pub fn list_key<'t>(tool: &'t Tool, key: &str) -> Option<&'t ArgSchema> {
    if let Some(element) = key.strip_suffix("[]") {
        return match &list_key(tool, element)?.ty {
            ArgType::List { element, .. } => Some(element),
            _ => None,
        };
    }
    match key.rfind("[].") {
        Some(at) => {
            let (element, field) = (key.get(..at + 2)?, key.get(at + 3..)?);
            match &list_key(tool, element)?.ty {
                ArgType::Object(fields) => fields.iter().find(|f| f.name == field),
                _ => None,
            }
        }
        None => tool.arg(key),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConditionKind {
    Or(Box<Condition>, Box<Condition>),
    And(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
    Compare {
        op: CompareOp,
        lhs: Term,
        rhs: Term,
    },
    In {
        lhs: Term,
        set: Vec<Value>,
    },
    Str {
        op: StringOp,
        lhs: Term,
        rhs: Term,
    },
    /// A boolean term used as a condition.
    Bool(Term),
    /// `has args.NAME`: the call gives this argument.
    Has(String),
    /// `has x.FIELD` in a quantifier's body: the element (an object; counted as `Term::Var`
    /// counts) gives this field.
    HasField(u8, String),
    /// `all x in LIST { body }` (`all`) or `any …`: the body holds for every element (true for
    /// none), or for some. In the body, `Term::Var(0)` and `Term::VarField(0, _)` read the
    /// element; bodies nest up to [`MAX_NEST`] deep. `v in LIST` is `any x in LIST { x == v }`.
    Quantified {
        all: bool,
        list: ListRef,
        body: Box<Condition>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub kind: ConditionKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// At most `count` allowed calls per fixed window of `window` seconds.
    Rate { count: u64, window: u64 },
    /// At most `amount` total tool cost per fixed window.
    Budget { amount: i64, window: u64 },
    /// At most `max` delegation hops.
    Depth { max: u64 },
    /// At most `count` identical calls (same tool and arguments) per fixed window.
    Repeat { count: u64, window: u64 },
}

#[derive(Clone, Debug)]
pub struct Limit {
    pub label: Option<String>,
    pub principal: PrincipalPattern,
    pub tools: ToolPattern,
    pub kind: LimitKind,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Delegation {
    pub from: AgentId,
    pub to: AgentId,
    /// A widening delegation lets the delegate act with its own authority alone.
    pub widening: bool,
    pub span: Span,
}

/// `on P deny N within W revoke`: N denials of one agent within one window revoke it.
#[derive(Clone, Debug)]
pub struct FailureResponse {
    pub principal: PrincipalPattern,
    pub count: u64,
    pub window: u64,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum AssertionKind {
    Never {
        principal: PrincipalPattern,
        tools: ToolPattern,
        condition: Option<Condition>,
    },
    Always {
        principal: PrincipalPattern,
        tools: ToolPattern,
        condition: Option<Condition>,
    },
    NoTrifecta {
        principal: PrincipalPattern,
    },
}

#[derive(Clone, Debug)]
pub struct Assertion {
    pub label: Option<String>,
    pub kind: AssertionKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcknowledgementKind {
    Trifecta(AgentId),
    Escalation(AgentId, ToolId),
    Widening(AgentId, ToolId),
}

/// A verifier finding the author has reviewed and accepts; it is reported, but does not fail.
#[derive(Clone, Debug)]
pub struct Acknowledgement {
    pub kind: AcknowledgementKind,
    pub reason: Option<String>,
    pub span: Span,
}

/// A request as the reference evaluator takes it. Names are kept as text: a request may name
/// agents and tools the policy does not know, and the evaluator must deny those, not crash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub agent: String,
    pub tool: String,
    pub args: BTreeMap<String, Value>,
    /// Agents that delegated, origin first; the acting agent is not included.
    pub via: Vec<String>,
    pub env: Option<String>,
    /// Seconds since the Unix epoch.
    pub time: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// Allowed; when a rule is named, it must be the permit the decision reports.
    Allow { rule: Option<RuleId> },
    Deny {
        reason: Option<Reason>,
        rule: Option<RuleId>,
    },
}

#[derive(Clone, Debug)]
pub struct TestStep {
    pub request: Request,
    pub expect: Expectation,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct TestCase {
    pub name: String,
    pub steps: Vec<TestStep>,
    pub span: Span,
}
