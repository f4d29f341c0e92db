//! Diagnostics: what went wrong, where, and how to fix it.
//!
//! Every stage returns all its problems as [`Diagnostic`] values: a stable [`Code`], a primary span
//! with a label, related spans (the other half of a duplicate, say) and a help line. All wording
//! lives in this module — the stages only pick a constructor and pass data. Rendering, human
//! (miette) or JSON, is here too.

use crate::source::SourceSet;
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;
use std::fmt;
use tollgate_grammar::{Span, SyntaxError, SyntaxErrorKind};

macro_rules! codes {
    ($($variant:ident = $code:literal, $summary:literal;)*) => {
        /// A stable diagnostic code. Codes are never reused; the book lists each with an example.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $($variant,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// One line saying what the code is about.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary,)* }
            }
        }
    };
}

codes! {
    UnexpectedToken = "TG0001", "unexpected token";
    UnexpectedEof = "TG0002", "unexpected end of file";
    InvalidCharacter = "TG0003", "invalid character";
    UnterminatedString = "TG0004", "unterminated string";
    InvalidEscape = "TG0005", "invalid escape in a string";
    IntegerTooLarge = "TG0006", "integer out of range";
    DurationTooLarge = "TG0007", "duration out of range";
    SingleQuotedString = "TG0008", "string in single quotes";
    MissingSemicolon = "TG0009", "missing `;` at the end of a statement";
    UnknownAgent = "TG0101", "unknown agent";
    UnknownTool = "TG0102", "unknown tool";
    UnknownDomain = "TG0103", "unknown domain";
    UnknownRole = "TG0104", "unknown role";
    UnknownEnvironment = "TG0105", "unknown environment";
    UnknownArgument = "TG0106", "unknown argument";
    UnknownAttribute = "TG0107", "unknown attribute";
    UnknownValue = "TG0108", "unknown enum value";
    UnknownEffect = "TG0109", "unknown effect";
    UnknownLabel = "TG0110", "unknown domain label";
    UnknownType = "TG0111", "unknown type";
    UnknownReason = "TG0112", "unknown deny reason";
    UnknownRule = "TG0113", "unknown rule label";
    UnknownContextField = "TG0114", "unknown context or tool field";
    EmptyPattern = "TG0115", "pattern matches no tool";
    Duplicate = "TG0201", "duplicate declaration";
    DuplicateProperty = "TG0202", "property given twice";
    MissingProperty = "TG0203", "required property missing";
    MisplacedProperty = "TG0204", "property does not fit this declaration";
    SelfDelegation = "TG0205", "agent delegates to itself";
    TypeMismatch = "TG0301", "mismatched types";
    UnsupportedOperator = "TG0302", "operator does not apply to this type";
    InconsistentField = "TG0303", "field has different types across matched agents or tools";
    NotBoolean = "TG0304", "condition is not boolean";
    InvalidType = "TG0305", "invalid type";
    BareName = "TG0306", "bare name where a value is needed";
    UnguardedOptional = "TG0307", "optional argument read without a presence test";
    HasNotArgument = "TG0308", "`has` applied to something other than an argument";
    UnderNeedsPath = "TG0309", "`under` needs a path argument and a root in normal form";
    CostPer = "TG0310", "cost charged per an argument that is not a required non-negative integer";
    DecimalScale = "TG0311", "decimal constant or comparison does not fit the scale";
    ListUse = "TG0312", "list, element or quantifier used where it does not apply";
    ZeroQuantity = "TG0401", "zero window, count or lifetime";
    NegativeQuantity = "TG0402", "negative cost, budget or bound";
    MissingEnvironment = "TG0501", "test step has no environment";
    ReasonWithRule = "TG0502", "`by RULE` needs the reason `forbidden`";
    NeverApplies = "TG1001", "rule can never apply";
    DeadPermit = "TG1002", "permit is always overridden by forbids";
    VacuousForbid = "TG1003", "forbid never overrides a permit";
    Overlap = "TG1004", "permit and forbid overlap";
    Redundant = "TG1005", "rule is redundant";
    AssertionViolated = "TG1006", "assertion does not hold";
    Escalation = "TG1007", "agent reaches a tool it is not permitted directly";
    Trifecta = "TG1008", "agent has the lethal trifecta";
    Inconclusive = "TG1009", "analysis inconclusive";
    Widened = "TG1101", "new version allows more";
    Narrowed = "TG1102", "new version allows less";
    InvalidTestArguments = "TG0503", "test step arguments do not fit the tool";
    StaleAcknowledgement = "TG1010", "acknowledgement matches no finding";
    AssertionRemoved = "TG1103", "assertion removed";
    ForbidRemoved = "TG1104", "forbid removed";
    AssertionAdded = "TG1105", "assertion added";
    ForbidAdded = "TG1106", "forbid added";
    AcknowledgementChanged = "TG1107", "acknowledgement added or removed";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Note,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Related {
    pub span: Span,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    pub label: String,
    pub related: Vec<Related>,
    pub help: Option<String>,
}

impl Diagnostic {
    fn error(code: Code, message: String, span: Span, label: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message,
            span,
            label: label.into(),
            related: Vec::new(),
            help: None,
        }
    }

    fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    fn related(mut self, span: Span, message: impl Into<String>) -> Self {
        self.related.push(Related {
            span,
            message: message.into(),
        });
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

// ---------------------------------------------------------------------------------------------
// Wording. Every message a user can see comes from a function below.
// ---------------------------------------------------------------------------------------------

pub fn syntax(error: &SyntaxError) -> Diagnostic {
    let span = error.span;
    match &error.kind {
        SyntaxErrorKind::UnexpectedToken { found, expected } => Diagnostic::error(
            Code::UnexpectedToken,
            format!("unexpected `{found}`"),
            span,
            "not expected here",
        )
        .help(expected_help(expected)),
        SyntaxErrorKind::UnexpectedEof { expected } => Diagnostic::error(
            Code::UnexpectedEof,
            "unexpected end of file".to_owned(),
            span,
            "the file ends here",
        )
        .help(expected_help(expected)),
        SyntaxErrorKind::MissingSemicolon { after } => Diagnostic::error(
            Code::MissingSemicolon,
            format!("expected `;` after `{after}`"),
            span,
            "the statement ends here, without `;`",
        )
        .help("rules, limits, assertions, test steps and other statements end with `;`"),
        SyntaxErrorKind::InvalidCharacter { character } => Diagnostic::error(
            Code::InvalidCharacter,
            format!("invalid character `{}`", character.escape_debug()),
            span,
            "not part of the language",
        )
        .help("remove it; comments start with `//`"),
        SyntaxErrorKind::UnterminatedString => Diagnostic::error(
            Code::UnterminatedString,
            "unterminated string".to_owned(),
            span,
            "this string has no closing quote",
        )
        .help("close the string with `\"` before the end of the line"),
        SyntaxErrorKind::SingleQuotedString { value } => Diagnostic::error(
            Code::SingleQuotedString,
            "strings use double quotes".to_owned(),
            span,
            "single quotes do not make a string",
        )
        .help(format!(
            "write `{}`",
            tollgate_grammar::format::string(value)
        )),
        SyntaxErrorKind::InvalidEscape { escape } => Diagnostic::error(
            Code::InvalidEscape,
            format!("invalid escape `{escape}`"),
            span,
            "unknown escape",
        )
        .help("use one of `\\\"`, `\\\\`, `\\n`, `\\r`, `\\t`, `\\0` or `\\u{…}`"),
        SyntaxErrorKind::IntegerTooLarge => Diagnostic::error(
            Code::IntegerTooLarge,
            "integer out of range".to_owned(),
            span,
            "does not fit in a signed 64-bit integer",
        )
        .help("integers range from -9223372036854775808 to 9223372036854775807"),
        SyntaxErrorKind::DurationTooLarge => Diagnostic::error(
            Code::DurationTooLarge,
            "duration out of range".to_owned(),
            span,
            "too many seconds",
        )
        .help("durations must fit in an unsigned 64-bit number of seconds"),
    }
}

/// The whole list: the longest the grammar produces is about a dozen tokens, and a cut list can
/// hide the one token the writer needed.
fn expected_help(expected: &[String]) -> String {
    match expected {
        [] => "remove it".to_owned(),
        [one] => format!("expected {one}"),
        many => format!("expected one of {}", many.join(", ")),
    }
}

/// What kind of name failed to resolve; used in wording only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    Agent,
    Tool,
    Domain,
    Role,
    Environment,
    Effect,
    Label,
    Type,
    Reason,
    Rule,
}

impl NameKind {
    fn noun(self) -> &'static str {
        match self {
            NameKind::Agent => "agent",
            NameKind::Tool => "tool",
            NameKind::Domain => "domain",
            NameKind::Role => "role",
            NameKind::Environment => "environment",
            NameKind::Effect => "effect",
            NameKind::Label => "domain label",
            NameKind::Type => "type",
            NameKind::Reason => "deny reason",
            NameKind::Rule => "rule label",
        }
    }

    fn code(self) -> Code {
        match self {
            NameKind::Agent => Code::UnknownAgent,
            NameKind::Tool => Code::UnknownTool,
            NameKind::Domain => Code::UnknownDomain,
            NameKind::Role => Code::UnknownRole,
            NameKind::Environment => Code::UnknownEnvironment,
            NameKind::Effect => Code::UnknownEffect,
            NameKind::Label => Code::UnknownLabel,
            NameKind::Type => Code::UnknownType,
            NameKind::Reason => Code::UnknownReason,
            NameKind::Rule => Code::UnknownRule,
        }
    }

    fn declare_hint(self) -> &'static str {
        match self {
            NameKind::Agent => "declare it with `agent NAME { ... }`",
            NameKind::Tool => "declare it with `tool NAME { domain ... effect ... }`",
            NameKind::Domain => "declare it with `domain NAME { private }`",
            NameKind::Role => {
                "give the role to an agent with `roles [...]`, or grant it with a `grants` tool"
            }
            NameKind::Environment => "list it in `environments ...;`",
            NameKind::Effect => {
                "effects are `read`, `write`, `external`, `exec`, `spawn` and `grant`"
            }
            NameKind::Label => "labels are `private`, `untrusted` and `public`",
            NameKind::Type => {
                "types are `int`, `int[MIN..MAX]`, `bool`, `string` and `enum[A, B, ...]`"
            }
            NameKind::Reason => "see `tollgate` reason codes in the language reference",
            NameKind::Rule => "give a rule a label with `LABEL: permit ...` or `LABEL: forbid ...`",
        }
    }
}

/// The closest candidate to `name`, if any is close enough to be a likely typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, candidate)| (*distance, *candidate))
        .map(|(_, candidate)| candidate)
}

pub fn unknown_name<'a>(
    kind: NameKind,
    name: &str,
    span: Span,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Diagnostic {
    let noun = kind.noun();
    let diagnostic = Diagnostic::error(
        kind.code(),
        format!("unknown {noun} `{name}`"),
        span,
        format!("no {noun} is called `{name}`"),
    );
    match suggest(name, candidates) {
        Some(candidate) => diagnostic.help(format!("did you mean `{candidate}`?")),
        None => diagnostic.help(kind.declare_hint()),
    }
}

pub fn unknown_argument(
    field: &str,
    span: Span,
    tool: &str,
    tool_span: Span,
    known: &[&str],
) -> Diagnostic {
    let diagnostic = Diagnostic::error(
        Code::UnknownArgument,
        format!("unknown argument `{field}` of tool `{tool}`"),
        span,
        format!("`{tool}` has no argument `{field}`"),
    )
    .related(tool_span, format!("`{tool}` is declared here"));
    match suggest(field, known.iter().copied()) {
        Some(candidate) => diagnostic.help(format!("did you mean `args.{candidate}`?")),
        None if known.is_empty() => diagnostic.help(format!("`{tool}` takes no arguments")),
        None => diagnostic.help(format!("`{tool}` takes {}", backticked(known))),
    }
}

pub fn unknown_attribute(
    owner_kind: &str,
    field: &str,
    span: Span,
    owner: &str,
    owner_span: Span,
    known: &[&str],
) -> Diagnostic {
    let diagnostic = Diagnostic::error(
        Code::UnknownAttribute,
        format!("unknown attribute `{field}` of {owner_kind} `{owner}`"),
        span,
        format!("`{owner}` has no attribute `{field}`"),
    )
    .related(owner_span, format!("`{owner}` is declared here"));
    match suggest(field, known.iter().copied()) {
        Some(candidate) => diagnostic.help(format!("did you mean `{candidate}`?")),
        None => diagnostic.help(format!(
            "every {owner_kind} the rule matches must declare it in `attrs {{ {field}: ... }}`"
        )),
    }
}

pub fn unknown_field(root: &str, field: &str, span: Span, known: &[&str]) -> Diagnostic {
    let diagnostic = Diagnostic::error(
        Code::UnknownContextField,
        format!("unknown field `{root}.{field}`"),
        span,
        "no such field",
    );
    match suggest(field, known.iter().copied()) {
        Some(candidate) => diagnostic.help(format!("did you mean `{root}.{candidate}`?")),
        None => diagnostic.help(format!("`{root}` has {}", backticked(known))),
    }
}

pub fn unknown_value(value: &str, span: Span, what: &str, variants: &[&str]) -> Diagnostic {
    let diagnostic = Diagnostic::error(
        Code::UnknownValue,
        format!("unknown value `{value}` for {what}"),
        span,
        "not one of the declared values",
    );
    match suggest(value, variants.iter().copied()) {
        Some(candidate) => diagnostic.help(format!("did you mean `{candidate}`?")),
        None => diagnostic.help(format!("{what} is one of {}", backticked(variants))),
    }
}

pub fn empty_pattern(pattern: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        Code::EmptyPattern,
        format!("`{pattern}` matches no tool"),
        span,
        "no declared tool matches",
    )
    .help("check the spelling, or declare a tool this pattern should cover")
}

pub fn duplicate(kind: &str, name: &str, span: Span, first: Span) -> Diagnostic {
    Diagnostic::error(
        Code::Duplicate,
        format!("{kind} `{name}` is declared twice"),
        span,
        "declared again here",
    )
    .related(first, "first declared here")
    .help(format!("rename one of them or remove the second {kind}"))
}

pub fn duplicate_property(property: &str, span: Span, first: Span) -> Diagnostic {
    Diagnostic::error(
        Code::DuplicateProperty,
        format!("`{property}` is given twice"),
        span,
        "given again here",
    )
    .related(first, "first given here")
    .help(format!("keep one `{property}`"))
}

pub fn missing_property(
    declaration: &str,
    name: &str,
    property: &str,
    span: Span,
    example: &str,
) -> Diagnostic {
    Diagnostic::error(
        Code::MissingProperty,
        format!("{declaration} `{name}` has no `{property}`"),
        span,
        format!("`{property}` is required here"),
    )
    .help(format!("add `{example}`"))
}

pub fn misplaced_property(property: &str, span: Span, reason: &str) -> Diagnostic {
    Diagnostic::error(
        Code::MisplacedProperty,
        format!("`{property}` does not fit here"),
        span,
        reason.to_owned(),
    )
    .help(format!("remove `{property}`, or change the tool's effect"))
}

pub fn self_delegation(agent: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        Code::SelfDelegation,
        format!("agent `{agent}` delegates to itself"),
        span,
        "a delegation must name two different agents",
    )
    .help("remove this delegation; an agent always acts with its own authority")
}

/// A short name for a type, used in messages.
pub fn type_mismatch(
    left: (&str, &str, Span),
    right: (&str, &str, Span),
    help: String,
) -> Diagnostic {
    let (left_text, left_type, left_span) = left;
    let (right_text, right_type, right_span) = right;
    Diagnostic::error(
        Code::TypeMismatch,
        format!(
            "mismatched types: `{left_text}` is {left_type} but `{right_text}` is {right_type}"
        ),
        right_span,
        format!("this is {right_type}"),
    )
    .related(left_span, format!("this is {left_type}"))
    .help(help)
}

pub fn unsupported_operator(
    operator: &str,
    operand: &str,
    operand_type: &str,
    span: Span,
    help: &str,
) -> Diagnostic {
    Diagnostic::error(
        Code::UnsupportedOperator,
        format!("`{operator}` does not apply to {operand_type}"),
        span,
        format!("`{operand}` is {operand_type}"),
    )
    .help(help.to_owned())
}

/// An ordering (`<`, `>`, ...) on a value of a type that has no order.
pub fn not_ordered(
    operator: &str,
    operand: &str,
    operand_type: &str,
    span: Span,
    operators: &[&str],
) -> Diagnostic {
    Diagnostic::error(
        Code::UnsupportedOperator,
        format!("`{operator}` is not defined on {operand_type}"),
        span,
        format!("`{operand}` is {operand_type}"),
    )
    .help(format!(
        "only integers are ordered; {operand_type} takes {}",
        alternatives(operators)
    ))
}

pub fn inconsistent_field(
    field: &str,
    span: Span,
    first: (&str, &str, Span),
    second: (&str, &str, Span),
) -> Diagnostic {
    Diagnostic::error(
        Code::InconsistentField,
        format!(
            "`{field}` is {} in `{}` but {} in `{}`",
            first.1, first.0, second.1, second.0
        ),
        span,
        "used here with more than one type",
    )
    .related(first.2, format!("{} here", first.1))
    .related(second.2, format!("{} here", second.1))
    .help("narrow the rule's pattern so the field has one type, or give both the same type")
}

pub fn not_boolean(text: &str, ty: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        Code::NotBoolean,
        format!("`{text}` is {ty}, not a condition"),
        span,
        format!("this is {ty}"),
    )
    .help(format!("compare it, e.g. `{text} == ...`"))
}

pub fn unguarded_optional(name: &str, span: Span, tool: &str, declared: Span) -> Diagnostic {
    Diagnostic::error(
        Code::UnguardedOptional,
        format!("`args.{name}` is optional in `{tool}` and may be absent here"),
        span,
        "read without a presence test",
    )
    .related(declared, format!("declared optional here (`{name}?`)"))
    .help(format!(
        "test it first: `has args.{name} and ...`, or `not has args.{name} or ...`"
    ))
}

/// An optional field of a list's elements read without `has` (TG0307, as for arguments).
pub fn unguarded_field(
    text: &str,
    var: &str,
    field: &str,
    span: Span,
    tool: &str,
    declared: Span,
) -> Diagnostic {
    Diagnostic::error(
        Code::UnguardedOptional,
        format!("`{text}` is optional in `{tool}` and may be absent here"),
        span,
        "read without a presence test",
    )
    .related(declared, format!("declared optional here (`{field}?`)"))
    .help(format!(
        "test it first: `has {var}.{field} and ...`, or `not has {var}.{field} or ...`"
    ))
}

pub fn under_needs_path(
    message: String,
    (span, label): (Span, &str),
    help: &str,
    declared: Option<Span>,
) -> Diagnostic {
    let d = Diagnostic::error(Code::UnderNeedsPath, message, span, label).help(help.to_owned());
    match declared {
        Some(declared) => d.related(declared, "declared here"),
        None => d,
    }
}

pub fn cost_per(message: String, span: Span) -> Diagnostic {
    Diagnostic::error(Code::CostPer, message, span, "charged per this").help(
        "charge per a required argument declared `int[0..MAX]`, as in `cost 20 * args.instances`"
            .to_owned(),
    )
}

/// `labels`: the primary span and its label, and optionally a second span with its own.
pub fn decimal_scale(
    message: String,
    primary: (Span, String),
    secondary: Option<(Span, String)>,
    help: &str,
) -> Diagnostic {
    let mut d = Diagnostic::error(Code::DecimalScale, message, primary.0, primary.1);
    if let Some((span, label)) = secondary {
        d = d.related(span, label);
    }
    d.help(help.to_owned())
}

pub fn list_use(message: String, span: Span, label: &str, help: &str) -> Diagnostic {
    Diagnostic::error(Code::ListUse, message, span, label).help(help.to_owned())
}

pub fn has_not_argument(text: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        Code::HasNotArgument,
        format!("`has {text}` does not test an argument"),
        span,
        "not an argument",
    )
    .help("`has` tests whether a call gives an optional argument: `has args.NAME`".to_owned())
}

pub fn invalid_type(message: String, span: Span, help: &str) -> Diagnostic {
    Diagnostic::error(Code::InvalidType, message, span, "invalid type").help(help.to_owned())
}

pub fn bare_name(name: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        Code::BareName,
        format!("bare name `{name}` is not a value here"),
        span,
        "attributes hold integers, strings and booleans",
    )
    .help(format!("write a string: `\"{name}\"`"))
}

pub fn zero_quantity(what: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        Code::ZeroQuantity,
        format!("{what} must be greater than zero"),
        span,
        "zero here",
    )
    .help(format!("give a {what} of at least 1"))
}

pub fn negative_quantity(what: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        Code::NegativeQuantity,
        format!("{what} must not be negative"),
        span,
        "negative here",
    )
    .help(format!("give a {what} of 0 or more"))
}

pub fn missing_environment(span: Span, environments: &[&str]) -> Diagnostic {
    Diagnostic::error(
        Code::MissingEnvironment,
        "test step has no environment".to_owned(),
        span,
        "no `in ENV` here or on an earlier step of this test",
    )
    .help(format!(
        "add `in ENV` with one of {}",
        backticked(environments)
    ))
}

pub fn test_arguments_invalid(
    tool: &str,
    detail: &crate::Error,
    span: Span,
    denies: bool,
) -> Diagnostic {
    let d = Diagnostic::error(
        Code::InvalidTestArguments,
        format!("this step's arguments do not fit `{tool}`"),
        span,
        detail.to_string(),
    );
    if denies {
        d.help("the gate would deny it as malformed whatever the rules say; fix the arguments, or write `expect deny invalid_argument` if that is what the step tests")
    } else {
        d.help("fix the arguments to match the tool's `args`")
    }
}

pub fn reason_with_rule(reason: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        Code::ReasonWithRule,
        format!("`by RULE` cannot go with the reason `{reason}`"),
        span,
        "only a `forbid` rule denies by rule",
    )
    .help("write `expect deny forbidden by RULE`, or drop `by RULE`")
}

// -- verifier findings ----------------------------------------------------------------------

pub fn never_applies(rule: &str, span: Span, why: &str) -> Diagnostic {
    Diagnostic::error(
        Code::NeverApplies,
        format!("{rule} can never apply"),
        span,
        why.to_owned(),
    )
    .with_severity(Severity::Warning)
    .help("fix or remove the condition; as written the rule changes no decision")
}

pub fn dead_permit(rule: &str, span: Span, forbids: &[(String, Span)]) -> Diagnostic {
    let names: Vec<&str> = forbids.iter().map(|(n, _)| n.as_str()).collect();
    let mut d = Diagnostic::error(
        Code::DeadPermit,
        format!("{rule} never allows anything"),
        span,
        "every request this permits is forbidden",
    )
    .help(format!(
        "{} override{} it everywhere; narrow the forbid or remove the permit",
        backticked(&names),
        if names.len() == 1 { "s" } else { "" }
    ));
    for (name, forbid_span) in forbids {
        d = d.related(*forbid_span, format!("`{name}` covers it"));
    }
    d
}

pub fn vacuous_forbid(rule: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        Code::VacuousForbid,
        format!("{rule} never overrides a permit"),
        span,
        "no request it forbids is permitted anyway",
    )
    .with_severity(Severity::Note)
    .help("harmless as defence in depth; remove it if it was meant to restrict something")
}

pub fn overlap(
    permit: &str,
    permit_span: Span,
    forbid: &str,
    forbid_span: Span,
    class: &str,
) -> Diagnostic {
    Diagnostic::error(
        Code::Overlap,
        format!("{forbid} overrides {permit} for some requests ({class})"),
        forbid_span,
        "this forbid",
    )
    .related(permit_span, "overrides part of this permit")
    .with_severity(Severity::Note)
    .help("expected when a forbid guards a permit; the witness shows a request in the overlap")
}

pub fn redundant(rule: &str, span: Span, covering: &[(String, Span)]) -> Diagnostic {
    let names: Vec<&str> = covering.iter().map(|(n, _)| n.as_str()).collect();
    let mut d = Diagnostic::error(
        Code::Redundant,
        format!("{rule} is redundant"),
        span,
        "removing it changes no decision",
    )
    .with_severity(Severity::Warning)
    .help(if names.is_empty() {
        "remove it, or make it say what the other rules do not".to_owned()
    } else {
        format!(
            "{} already decide{} everything it decides; remove it",
            backticked(&names),
            if names.len() == 1 { "s" } else { "" }
        )
    });
    for (name, other) in covering {
        d = d.related(*other, format!("`{name}` covers it"));
    }
    d
}

pub fn assertion_violated(
    assertion: &str,
    span: Span,
    detail: &str,
    rule: Option<(String, Span)>,
) -> Diagnostic {
    let mut d = Diagnostic::error(
        Code::AssertionViolated,
        format!("{assertion} does not hold"),
        span,
        detail.to_owned(),
    )
    .help("the witness is a counterexample; replay it with `tollgate eval`");
    if let Some((name, rule_span)) = rule {
        d = d.related(rule_span, format!("`{name}` allows it"));
    }
    d
}

pub fn escalation(
    agent: &str,
    tool: &str,
    span: Span,
    path: &str,
    acknowledged: bool,
    steps: &[(String, Span)],
) -> Diagnostic {
    let mut d = Diagnostic::error(
        Code::Escalation,
        format!("`{agent}` can reach `{tool}`, which it may not call directly"),
        span,
        format!("through {path}"),
    )
    .help(format!(
        "if intended, say so with `acknowledge escalation {agent} -> {tool};`"
    ));
    if acknowledged {
        d = d
            .with_severity(Severity::Note)
            .help("acknowledged in the policy");
    }
    for (message, step_span) in steps {
        d = d.related(*step_span, message.clone());
    }
    d
}

/// An escalation to a tool the agent may call itself, but not with this request.
pub fn escalation_beyond_direct(
    agent: &str,
    tool: &str,
    span: Span,
    path: &str,
    acknowledged: bool,
    steps: &[(String, Span)],
) -> Diagnostic {
    let mut d = escalation(agent, tool, span, path, acknowledged, steps);
    d.message = format!("`{agent}` can get `{tool}` called with requests it may not make directly");
    d
}

pub fn trifecta(
    agent: &str,
    span: Span,
    tools: [&str; 3],
    acknowledged: bool,
    rules: &[(String, Span)],
) -> Diagnostic {
    let mut d = Diagnostic::error(
        Code::Trifecta,
        format!(
            "`{agent}` can read private data (`{}`), is exposed to untrusted input (`{}`) and can act externally (`{}`)",
            tools[0], tools[1], tools[2]
        ),
        span,
        "this agent has the lethal trifecta",
    )
    .help(format!(
        "split the external effect off to another agent, or accept it with `acknowledge trifecta {agent};`"
    ));
    if acknowledged {
        d = d
            .with_severity(Severity::Note)
            .help("acknowledged in the policy");
    }
    for (message, rule_span) in rules {
        d = d.related(*rule_span, message.clone());
    }
    d
}

/// A violated `assert no trifecta`: the trifecta itself, reported once, under the assertion.
pub fn trifecta_assertion_violated(
    assertion: &str,
    span: Span,
    agent: &str,
    tools: [&str; 3],
    rules: &[(String, Span)],
) -> Diagnostic {
    let mut d = Diagnostic::error(
        Code::AssertionViolated,
        format!("{assertion} does not hold"),
        span,
        format!(
            "`{agent}` can read private data (`{}`), is exposed to untrusted input (`{}`) and can act externally (`{}`)",
            tools[0], tools[1], tools[2]
        ),
    )
    .help(format!(
        "the three witnesses are the three legs; split the external effect off to another agent than `{agent}`"
    ));
    for (message, rule_span) in rules {
        d = d.related(*rule_span, message.clone());
    }
    d
}

pub fn inconclusive(what: &str, span: Span, why: &str) -> Diagnostic {
    Diagnostic::error(
        Code::Inconclusive,
        format!("inconclusive: {what}"),
        span,
        why.to_owned(),
    )
    .with_severity(Severity::Warning)
    .help("raise `--timeout`, or simplify the conditions involved; this is not a proof of safety")
}

pub fn widened(agent: &str, tool: &str, span: Span, acknowledged: bool) -> Diagnostic {
    let d = Diagnostic::error(
        Code::Widened,
        format!("`{agent}` may now do more with `{tool}`"),
        span,
        "the new version allows requests the old one denied",
    )
    .help(format!(
        "if intended, acknowledge it in the new version: `acknowledge widening {agent} -> {tool};`"
    ));
    if acknowledged {
        d.with_severity(Severity::Note)
            .help("acknowledged in the new version")
    } else {
        d.with_severity(Severity::Warning)
    }
}

pub fn narrowed(agent: &str, tool: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        Code::Narrowed,
        format!("`{agent}` may now do less with `{tool}`"),
        span,
        "the new version denies requests the old one allowed",
    )
    .with_severity(Severity::Note)
    .help("check that no legitimate flow depends on what was removed")
}

pub fn stale_acknowledgement(what: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        Code::StaleAcknowledgement,
        format!("`acknowledge {what}` matches no finding"),
        span,
        "nothing here needs acknowledging any more",
    )
    .with_severity(Severity::Warning)
    .help("remove it, so that it cannot silence a finding that appears later")
}

/// An assertion (`added` false: of the old version) or forbid that only one version has.
pub fn guard_changed(
    what: &str,
    name: &str,
    span: Span,
    added: bool,
    acknowledged: bool,
) -> Diagnostic {
    let code = match (what, added) {
        ("assertion", false) => Code::AssertionRemoved,
        ("assertion", true) => Code::AssertionAdded,
        (_, false) => Code::ForbidRemoved,
        (_, true) => Code::ForbidAdded,
    };
    if added {
        return Diagnostic::error(
            code,
            format!("{what} {name} is new"),
            span,
            "only the new version has it",
        )
        .with_severity(Severity::Note)
        .help("new guards narrow what the policy allows or promises");
    }
    let d = Diagnostic::error(
        code,
        format!("{what} {name} was removed"),
        span,
        "the old version has it, the new one does not",
    );
    if acknowledged {
        d.with_severity(Severity::Note)
            .help("every (agent, tool) pair it covered is acknowledged in the new version")
    } else {
        d.with_severity(Severity::Warning).help(
            "a removed guard can widen the policy even where no pair widens today; acknowledge the widening of each pair it covered in the new version, or keep it",
        )
    }
}

pub fn acknowledgement_changed(what: &str, span: Span, added: bool) -> Diagnostic {
    let (message, label) = if added {
        (
            format!("`acknowledge {what}` is new"),
            "only the new version has it",
        )
    } else {
        (
            format!("`acknowledge {what}` was removed"),
            "only the old version has it",
        )
    };
    Diagnostic::error(Code::AcknowledgementChanged, message, span, label)
        .with_severity(Severity::Note)
        .help("acknowledgements are reviewed with the policy: check the reason given")
}

/// A diagnostic that must be raised to an error (CI gates such as `--fail-on widen`).
pub fn as_error(mut diagnostic: Diagnostic) -> Diagnostic {
    diagnostic.severity = Severity::Error;
    diagnostic
}

/// `` `a`, `b` or `c` ``.
fn alternatives(names: &[&str]) -> String {
    match names {
        [] => "nothing".to_owned(),
        [one] => format!("`{one}`"),
        [init @ .., last] => format!(
            "{} or `{last}`",
            init.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn backticked(names: &[&str]) -> String {
    if names.is_empty() {
        return "nothing".to_owned();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct MietteView {
    message: String,
    code: String,
    severity: miette::Severity,
    help: Option<String>,
    labels: Vec<LabeledSpan>,
    source: NamedSource<String>,
}

impl fmt::Display for MietteView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MietteView {}

impl miette::Diagnostic for MietteView {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }
}

fn source_span(span: Span) -> SourceSpan {
    SourceSpan::new((span.start as usize).into(), span.len())
}

/// Renders diagnostics as miette draws them, without colour (stable for snapshots and logs).
pub fn render_human(diagnostics: &[Diagnostic], sources: &SourceSet) -> String {
    let handler =
        GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_width(100);
    let mut out = String::new();
    for diagnostic in diagnostics {
        let file = sources.file(diagnostic.span.file);
        let (path, text) = file.map_or(("<unknown>", ""), |f| (f.path.as_str(), f.text.as_str()));
        let mut labels = vec![LabeledSpan::new_primary_with_span(
            Some(diagnostic.label.clone()),
            source_span(diagnostic.span),
        )];
        let mut notes = Vec::new();
        for related in &diagnostic.related {
            if related.span.file == diagnostic.span.file {
                labels.push(LabeledSpan::new_with_span(
                    Some(related.message.clone()),
                    source_span(related.span),
                ));
            } else {
                let (line, column) = sources.line_column(related.span);
                let other = sources
                    .file(related.span.file)
                    .map_or("<unknown>", |f| f.path.as_str());
                notes.push(format!("{}: {other}:{line}:{column}", related.message));
            }
        }
        let help = match (&diagnostic.help, notes.is_empty()) {
            (Some(help), true) => Some(help.clone()),
            (Some(help), false) => Some(format!("{help}\n{}", notes.join("\n"))),
            (None, false) => Some(notes.join("\n")),
            (None, true) => None,
        };
        let view = MietteView {
            message: diagnostic.message.clone(),
            code: diagnostic.code.to_string(),
            severity: match diagnostic.severity {
                Severity::Error => miette::Severity::Error,
                Severity::Warning => miette::Severity::Warning,
                Severity::Note => miette::Severity::Advice,
            },
            help,
            labels,
            source: NamedSource::new(path, text.to_owned()),
        };
        let _ = handler.render_report(&mut out, &view);
        out.push('\n');
    }
    out
}

#[derive(Serialize)]
struct JsonLocation<'a> {
    file: &'a str,
    line: usize,
    column: usize,
    start: u32,
    end: u32,
}

#[derive(Serialize)]
struct JsonRelated<'a> {
    message: &'a str,
    location: JsonLocation<'a>,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    code: &'static str,
    severity: Severity,
    message: &'a str,
    label: &'a str,
    location: JsonLocation<'a>,
    related: Vec<JsonRelated<'a>>,
    help: Option<&'a str>,
}

fn location(span: Span, sources: &SourceSet) -> JsonLocation<'_> {
    let (line, column) = sources.line_column(span);
    JsonLocation {
        file: sources
            .file(span.file)
            .map_or("<unknown>", |f| f.path.as_str()),
        line,
        column,
        start: span.start,
        end: span.end,
    }
}

/// One JSON document: `{"diagnostics": [...]}`.
pub fn render_json(diagnostics: &[Diagnostic], sources: &SourceSet) -> serde_json::Value {
    let list: Vec<JsonDiagnostic<'_>> = diagnostics
        .iter()
        .map(|d| JsonDiagnostic {
            code: d.code.as_str(),
            severity: d.severity,
            message: &d.message,
            label: &d.label,
            location: location(d.span, sources),
            related: d
                .related
                .iter()
                .map(|r| JsonRelated {
                    message: &r.message,
                    location: location(r.span, sources),
                })
                .collect(),
            help: d.help.as_deref(),
        })
        .collect();
    serde_json::json!({ "diagnostics": list })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for code in Code::ALL {
            let text = code.as_str();
            assert!(text.starts_with("TG") && text.len() == 6, "{text}");
            assert!(seen.insert(text), "{text} used twice");
        }
    }

    #[test]
    fn suggestions_find_close_names() {
        assert_eq!(
            suggest("suport_bot", ["support_bot", "coder"]),
            Some("support_bot")
        );
        assert_eq!(suggest("zzz", ["support_bot", "coder"]), None);
    }
}
