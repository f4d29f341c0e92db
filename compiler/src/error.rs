//! The compiler's one error type. Every fallible public function of the crate returns [`Error`],
//! except `load` and `load_subset`, which report policy text through source diagnostics
//! (`diagnostic`). The variants are data; their wording is here and nowhere else. `Display` is for
//! users: lowercase, no trailing period, user input in backticks.

use crate::model::{Request, RuleId, ToolId, Value};
use tollgate_grammar::format::duration;
use tollgate_runtime::format::{MAX_ARGS, MAX_STACK};
use tollgate_runtime::table::LoadError;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    // Reading a request (`request::from_json`).
    /// The JSON is not a request: serde's account of the first field at fault.
    #[error("{0}")]
    MalformedRequest(String),
    #[error("argument `{name}` is `{value}`, but arguments are numbers, strings, booleans, lists or objects")]
    ArgumentNotScalar {
        name: String,
        value: serde_json::Value,
    },

    // Holding arguments to a tool's schema (`eval::validate_args`).
    #[error("`{tool}` takes no argument `{argument}`")]
    UnexpectedArgument { tool: String, argument: String },
    #[error("argument `{0}` is missing")]
    MissingArgument(String),
    #[error("argument `{argument}` is {value}, outside {min}..{max}")]
    ArgumentOutOfRange {
        argument: String,
        value: i64,
        min: i64,
        max: i64,
    },
    #[error("argument `{argument}` has {count} elements, outside {min}..{max}")]
    ListCount {
        argument: String,
        count: u64,
        min: u64,
        max: u64,
    },
    #[error("argument `{argument}` {} field `{field}`", if *.missing { "lacks" } else { "has no" })]
    ObjectField {
        argument: String,
        field: String,
        missing: bool,
    },
    #[error("argument `{argument}` is `{value}`, which `decimal({scale})` cannot hold exactly")]
    DecimalNotExact {
        argument: String,
        value: String,
        scale: u8,
    },
    #[error("argument `{argument}` is {value}, outside {min}..{max}")]
    DecimalOutOfRange {
        argument: String,
        value: String,
        min: String,
        max: String,
    },
    #[error("argument `{argument}` is `{value}`, not one of {}", .variants.join(", "))]
    ArgumentNotVariant {
        argument: String,
        value: String,
        variants: Vec<String>,
    },
    #[error("argument `{argument}` is the path `{path}`, which climbs above its root")]
    PathClimbs { argument: String, path: String },
    #[error("argument `{argument}` is {length} bytes long, outside {min}..{max}")]
    ArgumentLength {
        argument: String,
        length: u64,
        min: u64,
        max: u64,
    },
    /// `expected` names the declared type with its article: "an integer".
    #[error("argument `{argument}` should be {expected}, found `{found}`")]
    ArgumentType {
        argument: String,
        expected: &'static str,
        found: Value,
    },

    // Writing the table (`codegen`). `what` names the items: "symbols", "rules or limits".
    #[error(
        "cannot compile: the policy has more {what} than the table format's 16-bit indexes allow"
    )]
    TableTooLarge { what: &'static str },
    #[error("cannot compile: the condition of rule #{} needs a deeper value stack than the gate's {}", .rule + 1, MAX_STACK)]
    ConditionTooDeep { rule: RuleId },
    #[error("cannot compile: tool #{} declares more than the gate's {} arguments", .tool + 1, MAX_ARGS)]
    ToolTooManyArguments { tool: ToolId },

    // Proving the table (`proved::compile`, `verify::translation::validate`).
    #[error("the compiler wrote a table its own loader refuses: {0}")]
    TableRefused(LoadError),
    #[error("translation validation failed: the table's bucket for `{agent}` calling `-` is missing: the agent is not in the table")]
    AgentNotInTable { agent: String },
    #[error("translation validation failed: the table's bucket for `{agent}` calling `{tool}` is missing: the tool is not in the table")]
    ToolNotInTable { agent: String, tool: String },
    /// A tool's arguments or cost in the table differ from the source: each declared as in the
    /// source (`head?: int[0..9]`), in slot (name) order, then `..` if open, then the cost.
    #[error("translation validation failed: the table declares `{tool}` with {}, the source with {}", argument_list(.listed), argument_list(.expected))]
    ToolArguments {
        tool: String,
        listed: Vec<String>,
        expected: Vec<String>,
    },
    /// The bucket lists other rules than the source says apply: (rule, is a forbid), table order.
    #[error("translation validation failed: the table's bucket for `{agent}` calling `{tool}` lists rules {}, the source {}", rule_list(.listed), rule_list(.expected))]
    BucketRules {
        agent: String,
        tool: String,
        listed: Vec<(RuleId, bool)>,
        expected: Vec<(RuleId, bool)>,
    },
    /// The bucket applies other limits than the source says apply.
    #[error("translation validation failed: the table's bucket for `{agent}` calling `{tool}` applies limits {}, the source {}", limit_list(.listed), limit_list(.expected))]
    BucketLimits {
        agent: String,
        tool: String,
        listed: Vec<usize>,
        expected: Vec<usize>,
    },
    /// A program means something else than its rule's condition; the request tells them apart.
    #[error("translation validation failed: rule {} compiles to a program for `{agent}` calling `{tool}` that decides differently, e.g. for {}", .rule + 1, crate::request::to_json(.request))]
    ProgramDiffers {
        agent: String,
        tool: String,
        rule: RuleId,
        request: Box<Request>,
    },
    #[error("translation validation failed: rule {}'s program for `{agent}` calling `{tool}` cannot be read back", .rule + 1)]
    ProgramUnreadable {
        agent: String,
        tool: String,
        rule: RuleId,
    },
    /// The solver could not decide equivalence.
    #[error("translation validation failed: the solver could not prove rule {}'s program for `{agent}` calling `{tool}` equivalent (inconclusive)", .rule + 1)]
    ProofUnknown {
        agent: String,
        tool: String,
        rule: RuleId,
    },
    #[error("the policy is not verified: its test {} fails; {}", backticked(.tests), UNVERIFIED_HELP)]
    TestsFail { tests: Vec<String> },
    #[error("the policy is not verified: `tollgate verify` reports {count} error{}; {}", if *.count == 1 { "" } else { "s" }, UNVERIFIED_HELP)]
    VerifyErrors { count: usize },

    // Issuing a credential (`credential::issue`).
    #[error("no agent is called `{name}`{}", did_you_mean(.suggestion))]
    UnknownAgent {
        name: String,
        suggestion: Option<String>,
    },
    /// The requested lifetime exceeds an agent's `credential_ttl` (or the default cap).
    #[error(
        "a lifetime of {} exceeds the {} of {} for `{agent}`",
        duration(*.requested),
        if *.default_cap { "default credential lifetime cap" } else { "`credential_ttl`" },
        duration(*.allowed)
    )]
    TtlTooLong {
        agent: String,
        requested: u64,
        allowed: u64,
        default_cap: bool,
    },
    #[error("a credential must live longer than zero seconds")]
    ZeroTtl,
    /// A scope entry names no tool (or a prefix that matches none).
    #[error("scope entry `{0}` matches no tool")]
    UnknownScope(String),
    /// `what` names the part: "the agent name", "the scope".
    #[error("{what} is too long for a credential")]
    CredentialTooLong { what: &'static str },
    #[error(
        "`{from}` may not delegate to `{to}`: the policy declares no `delegate {from} -> {to}`"
    )]
    NoDelegation { from: String, to: String },
    #[error("`{0}` is revoked: no credential is issued for it or for a chain that holds it")]
    Revoked(String),
    #[error("the policy declares no environment `{0}`")]
    UnknownEnvironment(String),

    // Importing tool schemas (`import::import`). `expected` describes the accepted shape.
    #[error("no tool list found: expected {expected}")]
    NoToolList { expected: &'static str },
    #[error("`{0}` is not a name: use letters, digits and `_`, starting with a letter or `_`")]
    NotAName(String),
}

const UNVERIFIED_HELP: &str = "fix it, or compile with `--allow-unverified` (the table then says so, and `gate --require-verified` refuses it)";

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

fn backticked(names: &[String]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rules as authors count them (from 1), with their effect: `[#1 forbid, #3 permit]`.
fn rule_list(rules: &[(RuleId, bool)]) -> String {
    let items: Vec<String> = rules
        .iter()
        .map(|(rule, forbid)| {
            let effect = if *forbid { "forbid" } else { "permit" };
            format!("#{} {effect}", rule + 1)
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// Arguments as declared: `{ head?: int[0..9], path: path }`.
fn argument_list(arguments: &[String]) -> String {
    format!("{{ {} }}", arguments.join(", "))
}

/// Limits as authors count them (from 1): `[#1, #2]`.
fn limit_list(limits: &[usize]) -> String {
    let items: Vec<String> = limits
        .iter()
        .map(|limit| format!("#{}", limit + 1))
        .collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One value of every variant, with user input that could trip the rules (capitals, periods).
    fn every_variant() -> Vec<Error> {
        let text = |s: &str| s.to_owned();
        let request = Request {
            agent: text("Bot"),
            tool: text("T.x"),
            args: Default::default(),
            via: Vec::new(),
            env: None,
            time: 0,
        };
        vec![
            Error::MalformedRequest(text("missing field `agent`")),
            Error::ArgumentNotScalar {
                name: text("n"),
                value: serde_json::Value::Null,
            },
            Error::UnexpectedArgument {
                tool: text("T.x"),
                argument: text("X"),
            },
            Error::MissingArgument(text("X.")),
            Error::ArgumentOutOfRange {
                argument: text("n"),
                value: 101,
                min: 0,
                max: 100,
            },
            Error::ArgumentNotVariant {
                argument: text("c"),
                value: text("Eur."),
                variants: vec![text("usd"), text("gbp")],
            },
            Error::ListCount {
                argument: text("paths"),
                count: 17,
                min: 1,
                max: 16,
            },
            Error::ObjectField {
                argument: text("edits[0]"),
                field: text("newText"),
                missing: true,
            },
            Error::DecimalNotExact {
                argument: text("amount"),
                value: text("12.345"),
                scale: 2,
            },
            Error::DecimalOutOfRange {
                argument: text("amount"),
                value: text("12.50"),
                min: text("0.00"),
                max: text("10.00"),
            },
            Error::PathClimbs {
                argument: text("path"),
                path: text("../X."),
            },
            Error::ArgumentLength {
                argument: text("note"),
                length: 300,
                min: 0,
                max: 280,
            },
            Error::ArgumentType {
                argument: text("n"),
                expected: "an integer",
                found: Value::Str(text("X.")),
            },
            Error::TableTooLarge { what: "symbols" },
            Error::ConditionTooDeep { rule: 0 },
            Error::ToolTooManyArguments { tool: 0 },
            Error::TableRefused(LoadError::HashMismatch),
            Error::AgentNotInTable {
                agent: text("Bot."),
            },
            Error::ToolNotInTable {
                agent: text("Bot"),
                tool: text("T.x"),
            },
            Error::ToolArguments {
                tool: text("T.x"),
                listed: vec![text("head: int[0..9]"), text("path: path")],
                expected: vec![text("head?: int[0..9]"), text("path: path")],
            },
            Error::BucketRules {
                agent: text("Bot"),
                tool: text("T.x"),
                listed: vec![(0, true), (2, false)],
                expected: vec![(0, true)],
            },
            Error::BucketLimits {
                agent: text("Bot"),
                tool: text("T.x"),
                listed: vec![0, 1],
                expected: Vec::new(),
            },
            Error::ProgramDiffers {
                agent: text("Bot"),
                tool: text("T.x"),
                rule: 0,
                request: Box::new(request),
            },
            Error::ProgramUnreadable {
                agent: text("Bot"),
                tool: text("T.x"),
                rule: 0,
            },
            Error::ProofUnknown {
                agent: text("Bot"),
                tool: text("T.x"),
                rule: 0,
            },
            Error::TestsFail {
                tests: vec![text("Refunds."), text("pays")],
            },
            Error::VerifyErrors { count: 1 },
            Error::UnknownAgent {
                name: text("Bot."),
                suggestion: Some(text("bot")),
            },
            Error::TtlTooLong {
                agent: text("Bot."),
                requested: 3_600,
                allowed: 900,
                default_cap: false,
            },
            Error::ZeroTtl,
            Error::UnknownScope(text("X.*")),
            Error::CredentialTooLong {
                what: "the agent name",
            },
            Error::NoDelegation {
                from: text("A"),
                to: text("B."),
            },
            Error::Revoked(text("Bot.")),
            Error::UnknownEnvironment(text("Prod.")),
            Error::NoToolList {
                expected: "a `tools/list` result: {\"tools\": [...]}",
            },
            Error::NotAName(text("My.")),
        ]
    }

    /// Every variant is in `every_variant`: adding one without a value here fails to compile.
    fn covered(error: &Error) {
        match error {
            Error::MalformedRequest(_)
            | Error::ArgumentNotScalar { .. }
            | Error::UnexpectedArgument { .. }
            | Error::MissingArgument(_)
            | Error::ArgumentOutOfRange { .. }
            | Error::ArgumentNotVariant { .. }
            | Error::ArgumentType { .. }
            | Error::PathClimbs { .. }
            | Error::DecimalNotExact { .. }
            | Error::ListCount { .. }
            | Error::ObjectField { .. }
            | Error::DecimalOutOfRange { .. }
            | Error::ArgumentLength { .. }
            | Error::TableTooLarge { .. }
            | Error::ConditionTooDeep { .. }
            | Error::ToolTooManyArguments { .. }
            | Error::TableRefused(_)
            | Error::AgentNotInTable { .. }
            | Error::ToolNotInTable { .. }
            | Error::ToolArguments { .. }
            | Error::BucketRules { .. }
            | Error::BucketLimits { .. }
            | Error::ProgramDiffers { .. }
            | Error::ProgramUnreadable { .. }
            | Error::ProofUnknown { .. }
            | Error::TestsFail { .. }
            | Error::VerifyErrors { .. }
            | Error::UnknownAgent { .. }
            | Error::TtlTooLong { .. }
            | Error::ZeroTtl
            | Error::UnknownScope(_)
            | Error::CredentialTooLong { .. }
            | Error::NoDelegation { .. }
            | Error::Revoked(_)
            | Error::UnknownEnvironment(_)
            | Error::NoToolList { .. }
            | Error::NotAName(_) => {}
        }
    }

    #[test]
    fn every_message_is_lowercase_without_a_final_period() {
        let errors = every_variant();
        assert_eq!(errors.len(), 37, "one value per variant");
        for error in &errors {
            covered(error);
            let message = error.to_string();
            let first = message.chars().next();
            assert!(
                first.is_some_and(|c| !c.is_uppercase()),
                "starts with a capital: {message}"
            );
            assert!(
                !message.ends_with('.') && !message.ends_with(char::is_whitespace),
                "ends with a period or space: {message}"
            );
        }
    }

    #[test]
    fn messages_read_as_before() {
        let check = |error: Error, expected: &str| assert_eq!(error.to_string(), expected);
        check(
            Error::UnknownAgent {
                name: "suport_bot".to_owned(),
                suggestion: Some("support_bot".to_owned()),
            },
            "no agent is called `suport_bot` (did you mean `support_bot`?)",
        );
        check(
            Error::TtlTooLong {
                agent: "support_bot".to_owned(),
                requested: 3_600,
                allowed: 900,
                default_cap: false,
            },
            "a lifetime of 1h exceeds the `credential_ttl` of 15m for `support_bot`",
        );
        check(
            Error::TestsFail {
                tests: vec!["a".to_owned(), "b".to_owned()],
            },
            "the policy is not verified: its test `a`, `b` fails; fix it, or compile with `--allow-unverified` (the table then says so, and `gate --require-verified` refuses it)",
        );
        check(
            Error::VerifyErrors { count: 2 },
            "the policy is not verified: `tollgate verify` reports 2 errors; fix it, or compile with `--allow-unverified` (the table then says so, and `gate --require-verified` refuses it)",
        );
        check(
            Error::BucketRules {
                agent: "a".to_owned(),
                tool: "t".to_owned(),
                listed: vec![(0, true), (2, false)],
                expected: Vec::new(),
            },
            "translation validation failed: the table's bucket for `a` calling `t` lists rules [#1 forbid, #3 permit], the source []",
        );
        check(
            Error::ArgumentType {
                argument: "n".to_owned(),
                expected: "an integer",
                found: Value::Str("x\"y".to_owned()),
            },
            "argument `n` should be an integer, found `\"x\\\"y\"`",
        );
    }
}
