//! The abstract syntax tree. Every node carries the [`Span`] of the text it came from; the parser
//! guarantees that a child's span lies inside its parent's.

use crate::span::Span;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A dotted name such as `crm.read_customer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DottedName {
    pub segments: Vec<Ident>,
    pub span: Span,
}

impl DottedName {
    /// The name as the policy means it: the segments joined by `.`.
    pub fn text(&self) -> String {
        let parts: Vec<&str> = self.segments.iter().map(|s| s.name.as_str()).collect();
        parts.join(".")
    }

    /// The name as source text: a segment that is not a name (or is a keyword) is quoted, as in
    /// `everything."get-sum"`.
    pub fn source(&self) -> String {
        let parts: Vec<String> = self
            .segments
            .iter()
            .map(|segment| {
                if is_plain_name(&segment.name) {
                    segment.name.clone()
                } else {
                    crate::format::string(&segment.name)
                }
            })
            .collect();
        parts.join(".")
    }
}

/// Whether `text` lexes as one name (letters, digits and `_`, not starting with a digit, not a
/// keyword).
pub fn is_plain_name(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !crate::lexer::is_keyword(text)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IntLit {
    pub value: i64,
    pub span: Span,
}

/// A decimal number such as `12.50`: `units / 10^scale`, with the scale as written (`12.50` has
/// scale 2, `12.5` scale 1), so that it prints back as it was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DecimalLit {
    pub units: i64,
    pub scale: u8,
    pub span: Span,
}

/// A duration such as `15m` or `1h30m`, in seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DurationLit {
    pub seconds: u64,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct File {
    pub items: Vec<Item>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Item {
    Environments(Environments),
    Domain(Domain),
    Tool(Tool),
    Agent(Agent),
    Rule(Rule),
    Limit(Limit),
    Delegate(Delegate),
    OnDeny(OnDeny),
    Assert(Assert),
    Test(Test),
    Acknowledge(Acknowledge),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Environments(x) => x.span,
            Item::Domain(x) => x.span,
            Item::Tool(x) => x.span,
            Item::Agent(x) => x.span,
            Item::Rule(x) => x.span,
            Item::Limit(x) => x.span,
            Item::Delegate(x) => x.span,
            Item::OnDeny(x) => x.span,
            Item::Assert(x) => x.span,
            Item::Test(x) => x.span,
            Item::Acknowledge(x) => x.span,
        }
    }
}

/// `environments prod, staging, sandbox;`
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Environments {
    pub names: Vec<Ident>,
    pub span: Span,
}

/// `domain customer_pii { private }`
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Domain {
    pub name: Ident,
    pub labels: Vec<Ident>,
    pub span: Span,
}

/// `tool payments.refund { domain finance effect write cost 1 args { ... } }`
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tool {
    pub name: DottedName,
    pub props: Vec<ToolProp>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ToolPropKind {
    Domain(Ident),
    Effect(Ident),
    Env(Ident),
    /// `cost 3`, or `cost 20 * args.instances`: a call's cost is the amount times the argument.
    Cost {
        amount: IntLit,
        per: Option<Ident>,
    },
    /// `args { … }`; `open` when it ends in `..`: a call may also give undeclared arguments,
    /// which no condition reads and the gate lets through.
    Args {
        args: Vec<ArgDecl>,
        open: bool,
    },
    Attrs(Vec<AttrDecl>),
    Creates(Ident),
    Grants(Ident),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ToolProp {
    pub kind: ToolPropKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: Ident,
    /// `name?: type`: a call may leave the argument out.
    pub optional: bool,
    pub ty: TypeExpr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum TypeExprKind {
    /// `int`, `bool`, `string`, or a misspelling the checker reports.
    Named(Ident),
    /// `int[0..1000]`
    Bounded {
        base: Ident,
        min: IntLit,
        max: IntLit,
    },
    /// `enum[usd, eur]`
    Enum { base: Ident, variants: Vec<Ident> },
    /// `list[T]`, `list[T][MIN..MAX]` (MIN to MAX elements) or `list[T][MIN..]` (at least MIN);
    /// a base other than `list`, or other than one element type, is the checker's to report.
    List {
        base: Ident,
        elements: Vec<TypeExpr>,
        length: Option<(IntLit, Option<IntLit>)>,
    },
    /// `{ oldText: string, newText: string }`: an object's named fields (`..`: more allowed).
    Object { fields: Vec<ArgDecl>, open: bool },
    /// `decimal(2)` or `decimal(2)[0..5000.00]`: a number with at most `scale` digits after
    /// the point, optionally within bounds (integers or decimals).
    Decimal {
        base: Ident,
        scale: IntLit,
        bounds: Option<(Literal, Literal)>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TypeExpr {
    pub kind: TypeExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttrDecl {
    pub name: Ident,
    pub value: Literal,
    pub span: Span,
}

/// `agent support_bot { roles [support] credential_ttl 15m budget 500 per 1d }`
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Agent {
    pub name: Ident,
    pub props: Vec<AgentProp>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum AgentPropKind {
    Roles(Vec<Ident>),
    Attrs(Vec<AttrDecl>),
    CredentialTtl(DurationLit),
    Budget { amount: IntLit, window: DurationLit },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentProp {
    pub kind: AgentPropKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RuleEffect {
    Permit,
    Forbid,
}

/// `[label:] permit|forbid PRINCIPAL to call TOOLS [when CONDITION];`
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub label: Option<Ident>,
    pub effect: RuleEffect,
    pub principal: Principal,
    pub tools: ToolPattern,
    pub condition: Option<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum PrincipalKind {
    Any,
    Agent(Ident),
    Role(Ident),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ToolPatternKind {
    Any,
    Exact(DottedName),
    /// `payments.*`: the dotted prefix without the `.*`.
    Prefix(DottedName),
    Domain(Ident),
    Effect(Ident),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ToolPattern {
    pub kind: ToolPatternKind,
    pub span: Span,
}

/// `[label:] limit PRINCIPAL [on TOOLS] KIND;`
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub label: Option<Ident>,
    pub principal: Principal,
    pub tools: Option<ToolPattern>,
    pub kind: LimitKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum LimitKind {
    /// `rate N per WINDOW`
    Rate { count: IntLit, window: DurationLit },
    /// `budget N per WINDOW`
    Budget { amount: IntLit, window: DurationLit },
    /// `depth N`: longest delegation chain
    Depth { max: IntLit },
    /// `repeat N within WINDOW`: identical calls
    Repeat { count: IntLit, window: DurationLit },
}

/// `delegate A -> B [widening];`
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delegate {
    pub from: Ident,
    pub to: Ident,
    pub widening: Option<Span>,
    pub span: Span,
}

/// `on [PRINCIPAL] deny N within WINDOW revoke;`
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OnDeny {
    pub principal: Option<Principal>,
    pub count: IntLit,
    pub window: DurationLit,
    pub span: Span,
}

/// `[label:] assert ...;`
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assert {
    pub label: Option<Ident>,
    pub kind: AssertKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum AssertKind {
    /// `never P calls T [when C]`: no such request is allowed.
    Never {
        principal: Principal,
        tools: ToolPattern,
        condition: Option<Expr>,
    },
    /// `always P calls T [when C]`: every such request is permitted by the rules.
    Always {
        principal: Principal,
        tools: ToolPattern,
        condition: Option<Expr>,
    },
    /// `no trifecta [for P]`
    NoTrifecta { principal: Option<Principal> },
}

/// `acknowledge KIND ["reason"];`: a finding the author has reviewed and accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Acknowledge {
    pub kind: AcknowledgeKind,
    pub reason: Option<StringLit>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum AcknowledgeKind {
    /// `trifecta AGENT`: the agent may reach private data, untrusted input and an external effect.
    Trifecta { agent: Ident },
    /// `escalation AGENT -> TOOL`: the agent may reach the tool indirectly.
    Escalation { agent: Ident, tool: DottedName },
    /// `widening AGENT -> TOOL`: a new version may allow the agent more on the tool.
    Widening { agent: Ident, tool: DottedName },
}

/// `test "name" { STEP; ... }`
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Test {
    pub name: StringLit,
    pub steps: Vec<TestStep>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StringLit {
    pub value: String,
    pub span: Span,
}

/// A test step's argument: `paths: ["a", "b"]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TestArg {
    pub name: Ident,
    pub value: TestValue,
    pub span: Span,
}

/// A value a test step gives: a literal, a list `[…]`, or an object `{ name: value, … }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum TestValue {
    Literal(Literal),
    List(Vec<TestValue>, Span),
    Object(Vec<TestArg>, Span),
}

impl TestValue {
    pub fn span(&self) -> Span {
        match self {
            TestValue::Literal(literal) => literal.span(),
            TestValue::List(_, span) | TestValue::Object(_, span) => *span,
        }
    }
}

/// `AGENT [via [A, B]] calls TOOL [{ ARGS }] [in ENV] [at TIME] expect OUTCOME;`
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TestStep {
    pub agent: Ident,
    pub via: Vec<Ident>,
    pub tool: DottedName,
    pub args: Vec<TestArg>,
    pub env: Option<Ident>,
    pub at: Option<DurationLit>,
    pub expect: Expectation,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ExpectationKind {
    /// `allow [by RULE]`
    Allow { rule: Option<Ident> },
    /// `deny [REASON] [by RULE]`
    Deny {
        reason: Option<Ident>,
        rule: Option<Ident>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Expectation {
    pub kind: ExpectationKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Literal {
    Int(IntLit),
    Decimal(DecimalLit),
    Str(StringLit),
    Bool(bool, Span),
    /// A bare identifier: an enum variant, environment or agent name.
    Name(Ident),
}

impl Literal {
    pub fn span(&self) -> Span {
        match self {
            Literal::Int(x) => x.span,
            Literal::Decimal(x) => x.span,
            Literal::Str(x) => x.span,
            Literal::Bool(_, span) => *span,
            Literal::Name(x) => x.span,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum FieldRoot {
    Args,
    Context,
    Agent,
    Tool,
}

impl FieldRoot {
    pub fn keyword(self) -> &'static str {
        match self {
            FieldRoot::Args => "args",
            FieldRoot::Context => "context",
            FieldRoot::Agent => "agent",
            FieldRoot::Tool => "tool",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Operand {
    /// `args.amount`, `context.env`, `agent.tier`, `tool.cost`
    Field {
        root: FieldRoot,
        name: Ident,
        span: Span,
    },
    Literal(Literal),
    /// A field of a quantified variable, `e.newText` (a bare variable parses as a name).
    Var {
        name: Ident,
        field: Option<Ident>,
        span: Span,
    },
    /// `len(args.paths)`: a function applied to an operand.
    Call {
        func: Ident,
        arg: Box<Operand>,
        span: Span,
    },
}

impl Operand {
    pub fn span(&self) -> Span {
        match self {
            Operand::Field { span, .. } => *span,
            Operand::Var { span, .. } => *span,
            Operand::Call { span, .. } => *span,
            Operand::Literal(literal) => literal.span(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum StringOp {
    StartsWith,
    EndsWith,
    Contains,
}

impl StringOp {
    pub fn keyword(self) -> &'static str {
        match self {
            StringOp::StartsWith => "starts_with",
            StringOp::EndsWith => "ends_with",
            StringOp::Contains => "contains",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ExprKind {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        op: CompareOp,
        lhs: Operand,
        rhs: Operand,
    },
    In {
        lhs: Operand,
        set: Vec<Literal>,
    },
    Str {
        op: StringOp,
        lhs: Operand,
        rhs: Operand,
    },
    /// A bare operand used as a condition, e.g. `args.urgent` or `true`.
    Operand(Operand),
    /// `has args.head`: whether the call gives an optional argument.
    Has(Operand),
    /// `args.path under "docs"`: a path argument is the root or inside it, segment by segment.
    Under {
        lhs: Operand,
        root: Operand,
    },
    /// `"x" in args.tags`: a list has an element equal to the value.
    Member {
        lhs: Operand,
        list: Operand,
    },
    /// `all p in args.paths { … }` (`all: true`) or `any e in args.edits { … }`.
    Quantified {
        all: bool,
        var: Ident,
        list: Operand,
        body: Box<Expr>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

/// A comment in the source; kept beside the tree so the formatter can put it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Comment {
    /// The text after `//`, without the line ending.
    pub text: String,
    pub span: Span,
}
