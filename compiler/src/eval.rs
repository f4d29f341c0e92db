//! The reference evaluator: the semantics of the book's "Semantics" chapter, written to be
//! obviously right rather than fast. It is the oracle every other part — the Z3 encoding, the
//! compiled table, the runtime gate — is tested against, so it follows the judgement rules step
//! by step and keeps no cleverness.

use crate::model::*;
use crate::Error;
use std::collections::{BTreeMap, BTreeSet};
use tollgate_grammar::ast::{CompareOp, StringOp};
use tollgate_grammar::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// How one rule fared for one agent of the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleTrace {
    pub agent: String,
    pub rule: RuleId,
    /// The rule's principal and tool matched and its condition held.
    pub applies: bool,
    /// When the condition did not hold: the smallest part of it that was false.
    pub failed: Option<Span>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Option<Reason>,
    /// The forbid rule that denied, or the first permit that allowed the acting agent.
    pub rule: Option<RuleId>,
    /// The limit that denied.
    pub limit: Option<LimitId>,
    /// The agent of the chain whose authority fell short.
    pub denied_agent: Option<String>,
    /// A human explanation of a denial before rules are consulted (bad argument, limit...).
    pub detail: Option<String>,
    /// Every rule whose principal and tool patterns matched an agent of the chain.
    pub trace: Vec<RuleTrace>,
    /// This denial made a failure response revoke the acting agent.
    pub revoked_agent: bool,
}

impl Decision {
    fn deny(reason: Reason, detail: impl Into<Option<String>>) -> Self {
        Decision {
            verdict: Verdict::Deny,
            reason: Some(reason),
            rule: None,
            limit: None,
            denied_agent: None,
            detail: detail.into(),
            trace: Vec::new(),
            revoked_agent: false,
        }
    }

    pub fn is_allow(&self) -> bool {
        self.verdict == Verdict::Allow
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum CounterKey {
    /// Allowed calls (rate) or spent cost (budget) of one agent under one limit.
    Limit(LimitId, AgentId),
    /// Allowed identical calls of one agent under one `repeat` limit.
    Repeat(LimitId, AgentId, ToolId, BTreeMap<String, Value>),
    /// Denials of one agent under one failure response.
    Denials(usize, AgentId),
}

/// Everything the semantics remembers between requests: windowed counters, revocations and the
/// newest time seen (the clock never moves back).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// (window index, value) per counter; a counter from an older window reads as zero.
    counters: BTreeMap<CounterKey, (u64, i128)>,
    pub revoked: BTreeSet<String>,
    /// The newest request time decided so far.
    pub latest: u64,
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self, key: &CounterKey, window: u64) -> i128 {
        match self.counters.get(key) {
            Some((stored, value)) if *stored == window => *value,
            _ => 0,
        }
    }

    fn add(&mut self, key: CounterKey, window: u64, amount: i128) {
        let value = self.read(&key, window) + amount;
        self.counters.insert(key, (window, value));
    }
}

/// Decides one request and updates `state`: counters of limits on allow, failure responses on
/// deny. (T-Mono) A request is decided at its time or at the newest time decided before, if that
/// is later: the clock never moves back.
pub fn decide(policy: &Policy, request: &Request, state: &mut State) -> Decision {
    state.latest = state.latest.max(request.time);
    if state.latest != request.time {
        let at_latest = Request {
            time: state.latest,
            ..request.clone()
        };
        return decide_at(policy, &at_latest, state);
    }
    decide_at(policy, request, state)
}

fn decide_at(policy: &Policy, request: &Request, state: &mut State) -> Decision {
    let Some(agent) = policy.agent_id(&request.agent) else {
        return Decision::deny(
            Reason::UnknownAgent,
            format!("no agent is called `{}`", request.agent),
        );
    };
    let mut decision = decide_known_agent(policy, request, agent, state);
    if !decision.is_allow() && decision.reason != Some(Reason::Revoked) {
        decision.revoked_agent = count_denial(policy, request, agent, state);
    }
    decision
}

fn decide_known_agent(
    policy: &Policy,
    request: &Request,
    agent: AgentId,
    state: &mut State,
) -> Decision {
    // (1) The request must be well formed.
    let Some(tool) = policy.tool_id(&request.tool) else {
        return Decision::deny(
            Reason::UnknownTool,
            format!("no tool is called `{}`", request.tool),
        );
    };
    if let Some(hop) = request
        .via
        .iter()
        .find(|hop| policy.agent_id(hop).is_none())
    {
        return Decision::deny(
            Reason::InvalidRequest,
            format!("the chain names unknown agent `{hop}`"),
        );
    }
    match &request.env {
        Some(env) if !policy.environments.contains(env) => {
            return Decision::deny(
                Reason::InvalidRequest,
                format!("unknown environment `{env}`"),
            );
        }
        None if !policy.environments.is_empty() => {
            return Decision::deny(
                Reason::InvalidRequest,
                "the request has no environment".to_owned(),
            );
        }
        _ => {}
    }
    let args = match validate_args(&policy.tools[tool], &request.args) {
        Ok(args) => args,
        Err(error) => return Decision::deny(Reason::InvalidArgument, error.to_string()),
    };

    // (2) A revoked agent is denied everything, and so is a chain that holds one.
    if state.revoked.contains(&request.agent) {
        return Decision::deny(
            Reason::Revoked,
            format!("`{}` has been revoked", request.agent),
        );
    }
    if let Some(revoked) = request.via.iter().find(|hop| state.revoked.contains(*hop)) {
        return Decision::deny(
            Reason::ChainRevoked,
            format!("`{revoked}` on the delegation chain has been revoked"),
        );
    }

    // (3) Every hop of the chain must be a declared delegation, within the depth limits.
    let chain: Vec<AgentId> = request
        .via
        .iter()
        .filter_map(|hop| policy.agent_id(hop))
        .chain([agent])
        .collect();
    let mut widening_from = BTreeSet::new();
    for (position, pair) in chain.windows(2).enumerate() {
        let (from, to) = (pair[0], pair[1]);
        match policy
            .delegations
            .iter()
            .find(|d| d.from == from && d.to == to)
        {
            Some(delegation) => {
                if delegation.widening {
                    widening_from.insert(position);
                }
            }
            None => {
                return Decision::deny(
                    Reason::DelegationNotAllowed,
                    format!(
                        "`{}` may not delegate to `{}`",
                        policy.agents[from].name, policy.agents[to].name
                    ),
                );
            }
        }
    }
    let depth = request.via.len() as u64;
    for (id, limit) in policy.limits.iter().enumerate() {
        if let LimitKind::Depth { max } = limit.kind {
            if limit_applies(policy, limit, agent, tool) && depth > max {
                let mut decision = Decision::deny(
                    Reason::DelegationDepth,
                    format!("the chain has {depth} hops, the limit is {max}"),
                );
                decision.limit = Some(id);
                return decision;
            }
        }
    }

    // (4) Rules, for the acting agent and for every delegator whose hop does not widen.
    let mut required = vec![agent];
    for (position, &delegator) in chain.iter().enumerate().take(chain.len() - 1) {
        if !widening_from.contains(&position) {
            required.push(delegator);
        }
    }
    let context = Context::new(policy, request, &args, tool);
    let mut trace = Vec::new();
    let mut outcome: Option<Decision> = None;
    let mut allowing_rule = None;
    for &member in &required {
        let (forbids, permits) = rules_for(&context, member, &mut trace);
        if outcome.is_some() {
            continue; // keep tracing the rest of the chain for the explanation
        }
        if let Some(&rule) = forbids.first() {
            let mut decision = Decision::deny(Reason::Forbidden, None);
            decision.rule = Some(rule);
            decision.denied_agent = Some(policy.agents[member].name.clone());
            outcome = Some(decision);
        } else if permits.is_empty() {
            let mut decision = Decision::deny(Reason::NotPermitted, None);
            decision.denied_agent = Some(policy.agents[member].name.clone());
            outcome = Some(decision);
        } else if member == agent {
            allowing_rule = permits.first().copied();
        }
    }
    if let Some(mut decision) = outcome {
        decision.trace = trace;
        return decision;
    }

    // (5) Limits, in order; the first that would be exceeded denies.
    let charged: Vec<(LimitId, &Limit)> = policy
        .limits
        .iter()
        .enumerate()
        .filter(|(_, limit)| limit_applies(policy, limit, agent, tool))
        .collect();
    // A call's cost: the declared amount, times the argument it is charged per (exact in i128:
    // a product past i64::MAX exceeds every budget).
    let declared = &policy.tools[tool];
    let per = match declared.cost_per.as_ref().and_then(|name| args.get(name)) {
        Some(Value::Int(units)) => i128::from(*units),
        _ => 1,
    };
    let cost = i128::from(declared.cost) * per;
    for &(id, limit) in &charged {
        let exceeded = match limit.kind {
            LimitKind::Rate { count, window } => {
                let used = state.read(&CounterKey::Limit(id, agent), request.time / window);
                (used + 1 > i128::from(count)).then(|| {
                    (
                        Reason::RateLimited,
                        format!("{used} calls already in this window, the limit is {count}"),
                    )
                })
            }
            LimitKind::Repeat { count, window } => {
                let key = CounterKey::Repeat(id, agent, tool, args.clone());
                let used = state.read(&key, request.time / window);
                (used + 1 > i128::from(count)).then(|| {
                    (Reason::LoopGuard, format!("the same call was made {used} times in this window, the limit is {count}"))
                })
            }
            LimitKind::Budget { amount, window } => {
                let spent = state.read(&CounterKey::Limit(id, agent), request.time / window);
                (spent + cost > i128::from(amount)).then(|| {
                    (
                        Reason::BudgetExhausted,
                        format!("{spent} spent in this window, this call costs {cost}, the budget is {amount}"),
                    )
                })
            }
            LimitKind::Depth { .. } => None,
        };
        if let Some((reason, detail)) = exceeded {
            let mut decision = Decision::deny(reason, detail);
            decision.limit = Some(id);
            decision.trace = trace;
            return decision;
        }
    }

    // (6) Allow, and charge every limit that applies.
    for &(id, limit) in &charged {
        match limit.kind {
            LimitKind::Rate { window, .. } => {
                state.add(CounterKey::Limit(id, agent), request.time / window, 1)
            }
            LimitKind::Repeat { window, .. } => {
                let key = CounterKey::Repeat(id, agent, tool, args.clone());
                state.add(key, request.time / window, 1);
            }
            LimitKind::Budget { window, .. } => {
                state.add(CounterKey::Limit(id, agent), request.time / window, cost)
            }
            LimitKind::Depth { .. } => {}
        }
    }
    Decision {
        verdict: Verdict::Allow,
        reason: None,
        rule: allowing_rule,
        limit: None,
        denied_agent: None,
        detail: None,
        trace,
        revoked_agent: false,
    }
}

fn limit_applies(policy: &Policy, limit: &Limit, agent: AgentId, tool: ToolId) -> bool {
    policy.principal_matches(&limit.principal, agent) && policy.tool_matches(&limit.tools, tool)
}

/// Counts a denial against every failure response that covers the agent; returns whether one
/// of them just revoked it.
fn count_denial(policy: &Policy, request: &Request, agent: AgentId, state: &mut State) -> bool {
    let mut revoked = false;
    for (id, response) in policy.responses.iter().enumerate() {
        if !policy.principal_matches(&response.principal, agent) {
            continue;
        }
        let window = request.time / response.window;
        let key = CounterKey::Denials(id, agent);
        state.add(key.clone(), window, 1);
        if state.read(&key, window) >= i128::from(response.count)
            && state.revoked.insert(request.agent.clone())
        {
            revoked = true;
        }
    }
    revoked
}

/// An object argument is its fields: `{"a": {"b": 1, "c": {"d": true}}}` gives the arguments
/// `a.b` and `a.c.d`, and a list element's object holding an object gives its fields the same
/// way (`x.c.d`). Anything given twice (`"a.b"` beside `"a": {"b": …}`) is refused.
pub fn flatten_args(given: &BTreeMap<String, Value>) -> Result<BTreeMap<String, Value>, Error> {
    let mut flat = BTreeMap::new();
    for (name, value) in given {
        flatten_into(name.clone(), value, &mut flat)?;
    }
    Ok(flat)
}

fn flatten_into(
    path: String,
    value: &Value,
    flat: &mut BTreeMap<String, Value>,
) -> Result<(), Error> {
    let value = match value {
        Value::Object(fields) => {
            for (field, value) in fields {
                flatten_into(format!("{path}.{field}"), value, flat)?;
            }
            return Ok(());
        }
        list @ Value::List(_) => flatten_element(list)?,
        other => other.clone(),
    };
    if flat.contains_key(&path) {
        return Err(Error::MalformedRequest(format!(
            "argument `{path}` is given twice"
        )));
    }
    flat.insert(path, value);
    Ok(())
}

/// A list element as [`flatten_args`] reads it: an object as its fields (an object inside it as
/// its dotted fields), a list as its elements so read.
fn flatten_element(value: &Value) -> Result<Value, Error> {
    Ok(match value {
        Value::Object(fields) => {
            let mut element = BTreeMap::new();
            for (field, value) in fields {
                flatten_into(field.clone(), value, &mut element)?;
            }
            Value::Object(element)
        }
        Value::List(items) => Value::List(
            items
                .iter()
                .map(flatten_element)
                .collect::<Result<_, Error>>()?,
        ),
        other => other.clone(),
    })
}

/// Checks the arguments against the tool's schema; enum values become symbols. Object
/// arguments are read as their fields ([`flatten_args`]).
pub fn validate_args(
    tool: &Tool,
    given: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Value>, Error> {
    let given = &flatten_args(given)?;
    if let Some(extra) = given
        .keys()
        .find(|name| !tool.open_args && tool.arg(name).is_none())
    {
        return Err(Error::UnexpectedArgument {
            tool: tool.name.clone(),
            argument: extra.clone(),
        });
    }
    // Undeclared arguments of an open tool are let through, and read by no condition.
    let mut args = BTreeMap::new();
    for schema in &tool.args {
        let Some(value) = given.get(&schema.name) else {
            if schema.optional {
                continue;
            }
            return Err(Error::MissingArgument(schema.name.clone()));
        };
        let normalized = validate_value(schema, &schema.name, value)?;
        args.insert(schema.name.clone(), normalized);
    }
    Ok(args)
}

/// One value against its schema (`name` says where it is: `paths[2]`, `edits[0].newText`).
fn validate_value(schema: &ArgSchema, name: &str, value: &Value) -> Result<Value, Error> {
    let normalized = match (&schema.ty, value) {
        (ArgType::List { element, count }, Value::List(items)) => {
            let length = items.len() as u64;
            if length < count.0 || length > count.1 {
                return Err(Error::ListCount {
                    argument: name.to_owned(),
                    count: length,
                    min: count.0,
                    max: count.1,
                });
            }
            let mut valid = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                valid.push(validate_value(element, &format!("{name}[{index}]"), item)?);
            }
            Value::List(valid)
        }
        // Exactly the declared fields, each valid.
        (ArgType::Object(fields), Value::Object(given)) => {
            if let Some(extra) = given.keys().find(|f| !fields.iter().any(|d| d.name == **f)) {
                return Err(Error::ObjectField {
                    argument: name.to_owned(),
                    field: extra.clone(),
                    missing: false,
                });
            }
            let mut valid = BTreeMap::new();
            for field in fields {
                let Some(value) = given.get(&field.name) else {
                    // An optional field may be left out (`has x.FIELD` tells).
                    if field.optional {
                        continue;
                    }
                    return Err(Error::ObjectField {
                        argument: name.to_owned(),
                        field: field.name.clone(),
                        missing: true,
                    });
                };
                let path = format!("{name}.{}", field.name);
                valid.insert(field.name.clone(), validate_value(field, &path, value)?);
            }
            Value::Object(valid)
        }
        (ArgType::Int { min, max }, Value::Int(v)) => {
            if v < min || v > max {
                return Err(Error::ArgumentOutOfRange {
                    argument: name.to_owned(),
                    value: *v,
                    min: *min,
                    max: *max,
                });
            }
            Value::Int(*v)
        }
        // A decimal is decided as a whole number of `10^-scale` units, read exactly from
        // a JSON number or from a string holding one (`"12.50"`).
        (
            ArgType::Decimal { scale, min, max },
            Value::Int(_) | Value::Decimal(_) | Value::Str(_),
        ) => {
            let text = match value {
                Value::Str(text) => text.clone(),
                other => other.to_string(),
            };
            let Some(units) = crate::decimal::units(&text, *scale) else {
                return Err(Error::DecimalNotExact {
                    argument: name.to_owned(),
                    value: text,
                    scale: *scale,
                });
            };
            if units < *min || units > *max {
                let show =
                    |units: i64| tollgate_grammar::format::decimal(i128::from(units), *scale);
                return Err(Error::DecimalOutOfRange {
                    argument: name.to_owned(),
                    value: text,
                    min: show(*min),
                    max: show(*max),
                });
            }
            Value::Int(units)
        }
        (ArgType::Bool, Value::Bool(v)) => Value::Bool(*v),
        (ArgType::Str, Value::Str(v)) => Value::Str(v.clone()),
        // A path is decided in normal form; one that climbs above its root is invalid.
        (ArgType::Path, Value::Str(v)) => {
            let mut buffer = vec![0u8; v.len().max(1)];
            match tollgate_runtime::path::normalize(v, &mut buffer) {
                Some(normal) => Value::Str(normal.to_owned()),
                None => {
                    return Err(Error::PathClimbs {
                        argument: name.to_owned(),
                        path: v.clone(),
                    })
                }
            }
        }
        (ArgType::Enum(variants), Value::Str(v) | Value::Sym(v)) => {
            if !variants.contains(v) {
                return Err(Error::ArgumentNotVariant {
                    argument: name.to_owned(),
                    value: v.clone(),
                    variants: variants.clone(),
                });
            }
            Value::Sym(v.clone())
        }
        (ty, value) => {
            let expected = match ty {
                ArgType::Int { .. } => "an integer",
                ArgType::Bool => "a boolean",
                ArgType::Str => "a string",
                ArgType::Path => "a path",
                ArgType::Enum(_) => "an enum value",
                ArgType::Decimal { .. } => "a number",
                ArgType::List { .. } => "a list",
                ArgType::Object(_) => "an object",
            };
            return Err(Error::ArgumentType {
                argument: name.to_owned(),
                expected,
                found: value.clone(),
            });
        }
    };
    // A bounded string or path: its length in bytes (a path's, in normal form).
    if let (Some((min, max)), Value::Str(text)) = (schema.length, &normalized) {
        let length = text.len() as u64;
        if length < min || length > max {
            return Err(Error::ArgumentLength {
                argument: name.to_owned(),
                length,
                min,
                max,
            });
        }
    }
    Ok(normalized)
}

/// The elements the quantifiers around a body are at, innermost first.
struct Elements<'a> {
    element: &'a Value,
    outer: Option<&'a Elements<'a>>,
}

impl<'a> Elements<'a> {
    /// The element `up` quantifiers out (0: the innermost).
    fn at(&self, up: u8) -> Option<&'a Value> {
        let mut elements = self;
        for _ in 0..up {
            elements = elements.outer?;
        }
        Some(elements.element)
    }
}

#[derive(Clone, Copy)]
struct Context<'a> {
    /// The elements the quantifiers around a body are at.
    vars: Option<&'a Elements<'a>>,
    policy: &'a Policy,
    args: &'a BTreeMap<String, Value>,
    tool: ToolId,
    env: Option<&'a str>,
    hour: i64,
    depth: i64,
    origin: &'a str,
}

impl<'a> Context<'a> {
    /// The request's context as conditions read it (C-Hour, C-Depth, C-Origin).
    fn new(
        policy: &'a Policy,
        request: &'a Request,
        args: &'a BTreeMap<String, Value>,
        tool: ToolId,
    ) -> Self {
        Context {
            vars: None,
            policy,
            args,
            tool,
            env: request.env.as_deref(),
            hour: ((request.time / 3_600) % 24) as i64,
            depth: request.via.len() as i64,
            origin: request.via.first().unwrap_or(&request.agent),
        }
    }
}

/// The forbid and permit rules that apply to `agent`, by rule id; records a trace entry for
/// every rule whose patterns match.
fn rules_for(
    context: &Context<'_>,
    agent: AgentId,
    trace: &mut Vec<RuleTrace>,
) -> (Vec<RuleId>, Vec<RuleId>) {
    let policy = context.policy;
    let mut forbids = Vec::new();
    let mut permits = Vec::new();
    for (id, rule) in policy.rules.iter().enumerate() {
        if !policy.principal_matches(&rule.principal, agent)
            || !policy.tool_matches(&rule.tools, context.tool)
        {
            continue;
        }
        let holds = match &rule.condition {
            None => Some(true),
            Some(condition) => evaluate(context, agent, condition),
        };
        // A condition that cannot be evaluated (impossible for a checked policy) fails closed:
        // a forbid applies, a permit does not.
        let applies = match (holds, rule.effect) {
            (Some(value), _) => value,
            (None, RuleEffect::Forbid) => true,
            (None, RuleEffect::Permit) => false,
        };
        let failed = match (&rule.condition, applies) {
            (Some(condition), false) => Some(failing_part(context, agent, condition)),
            _ => None,
        };
        trace.push(RuleTrace {
            agent: policy.agents[agent].name.clone(),
            rule: id,
            applies,
            failed,
        });
        if applies {
            match rule.effect {
                RuleEffect::Forbid => forbids.push(id),
                RuleEffect::Permit => permits.push(id),
            }
        }
    }
    (forbids, permits)
}

fn term(context: &Context<'_>, agent: AgentId, term: &Term) -> Option<Value> {
    let policy = context.policy;
    let tool = &policy.tools[context.tool];
    match term {
        Term::Arg(name) => context.args.get(name).cloned(),
        Term::Context(ContextField::Env) => context.env.map(|env| Value::Sym(env.to_owned())),
        Term::Context(ContextField::Hour) => Some(Value::Int(context.hour)),
        Term::Context(ContextField::Depth) => Some(Value::Int(context.depth)),
        Term::Context(ContextField::Origin) => Some(Value::Sym(context.origin.to_owned())),
        Term::AgentAttr(name) => policy.agents[agent]
            .attrs
            .get(name)
            .map(|(value, _)| value.clone()),
        Term::ToolAttr(name) => tool.attrs.get(name).map(|(value, _)| value.clone()),
        Term::ToolCost => Some(Value::Int(tool.cost)),
        Term::ToolEnv => tool.env.clone().map(Value::Sym),
        Term::Const(value) => Some(value.clone()),
        Term::Var(up) => context.vars?.at(*up).cloned(),
        Term::VarField(up, field) => match context.vars?.at(*up)? {
            Value::Object(fields) => fields.get(field).cloned(),
            _ => None,
        },
        Term::Len(list) => match list_value(context, list)? {
            Value::List(items) => Some(Value::Int(items.len() as i64)),
            _ => None,
        },
    }
}

/// The list a condition reads (`None` for an absent one, which `has` guards).
fn list_value<'a>(context: &Context<'a>, list: &ListRef) -> Option<&'a Value> {
    match list {
        ListRef::Arg(name) => context.args.get(name),
        ListRef::Var(up) => context.vars?.at(*up),
        ListRef::VarField(up, field) => match context.vars?.at(*up)? {
            Value::Object(fields) => fields.get(field),
            _ => None,
        },
    }
}

/// Evaluates one condition for one agent and tool of a request whose arguments are already
/// validated. Three-valued only for robustness: `None` means a term was missing, which checking
/// rules out.
pub fn evaluate_condition(
    policy: &Policy,
    request: &Request,
    args: &BTreeMap<String, Value>,
    agent: AgentId,
    tool: ToolId,
    condition: &Condition,
) -> Option<bool> {
    let context = Context::new(policy, request, args, tool);
    evaluate(&context, agent, condition)
}

fn evaluate(context: &Context<'_>, agent: AgentId, condition: &Condition) -> Option<bool> {
    match &condition.kind {
        ConditionKind::Or(a, b) => {
            let (a, b) = (evaluate(context, agent, a), evaluate(context, agent, b));
            match (a, b) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }
        }
        ConditionKind::And(a, b) => {
            let (a, b) = (evaluate(context, agent, a), evaluate(context, agent, b));
            match (a, b) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            }
        }
        ConditionKind::Not(inner) => evaluate(context, agent, inner).map(|value| !value),
        // An absent optional argument is a missing term: `has` guards every read of it (checking
        // enforces that), so a condition never depends on a value the call did not give.
        ConditionKind::Has(name) => Some(context.args.contains_key(name)),
        ConditionKind::HasField(up, field) => match context.vars?.at(*up)? {
            Value::Object(fields) => Some(fields.contains_key(field)),
            _ => None,
        },
        // (C-All), (C-Any): the body at each element, in order; `all` of none holds, `any` of
        // none does not.
        ConditionKind::Quantified { all, list, body } => {
            let Value::List(items) = list_value(context, list)? else {
                return None;
            };
            let mut unknown = false;
            for item in items {
                let elements = Elements {
                    element: item,
                    outer: context.vars,
                };
                let at = Context {
                    vars: Some(&elements),
                    ..*context
                };
                match evaluate(&at, agent, body) {
                    Some(holds) if holds != *all => return Some(holds),
                    Some(_) => {}
                    None => unknown = true,
                }
            }
            (!unknown).then_some(*all)
        }
        ConditionKind::Bool(t) => match term(context, agent, t)? {
            Value::Bool(value) => Some(value),
            _ => None,
        },
        ConditionKind::Compare { op, lhs, rhs } => {
            let lhs = term(context, agent, lhs)?;
            let rhs = term(context, agent, rhs)?;
            compare(*op, &lhs, &rhs)
        }
        ConditionKind::In { lhs, set } => {
            let lhs = term(context, agent, lhs)?;
            Some(set.contains(&lhs))
        }
        ConditionKind::Str { op, lhs, rhs } => {
            let (Value::Str(lhs), Value::Str(rhs)) =
                (term(context, agent, lhs)?, term(context, agent, rhs)?)
            else {
                return None;
            };
            let (lhs, rhs) = (lhs.as_bytes(), rhs.as_bytes());
            Some(match op {
                StringOp::StartsWith => lhs.starts_with(rhs),
                StringOp::EndsWith => lhs.ends_with(rhs),
                StringOp::Contains => {
                    rhs.is_empty() || lhs.windows(rhs.len()).any(|window| window == rhs)
                }
            })
        }
    }
}

fn compare(op: CompareOp, lhs: &Value, rhs: &Value) -> Option<bool> {
    let same_kind = std::mem::discriminant(lhs) == std::mem::discriminant(rhs);
    match op {
        CompareOp::Eq if same_kind => Some(lhs == rhs),
        CompareOp::Ne if same_kind => Some(lhs != rhs),
        _ => {
            let (Value::Int(a), Value::Int(b)) = (lhs, rhs) else {
                return None;
            };
            match op {
                CompareOp::Lt => Some(a < b),
                CompareOp::Le => Some(a <= b),
                CompareOp::Gt => Some(a > b),
                CompareOp::Ge => Some(a >= b),
                CompareOp::Eq | CompareOp::Ne => None,
            }
        }
    }
}

/// The smallest part of a condition that made it not hold.
fn failing_part(context: &Context<'_>, agent: AgentId, condition: &Condition) -> Span {
    match &condition.kind {
        ConditionKind::And(a, b) => {
            if evaluate(context, agent, a) != Some(true) {
                failing_part(context, agent, a)
            } else {
                failing_part(context, agent, b)
            }
        }
        _ => condition.span,
    }
}

/// One test per judgement rule of the book's semantics chapter; each names its rule.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceSet;
    use crate::testing::describe_decision;

    const BASE: &str = "
        environments prod, sandbox;
        domain d { private }
        domain w { untrusted }
        tool t.read { domain d effect read args { n: int[0..100], s: string, c: enum[x, y], o?: int[0..9], t?: string[1..3] } }
        tool t.write { domain d effect write cost 3 }
        tool t.open { domain d effect read args { n: int[0..9], .. } }
        tool t.scale { domain d effect write cost 20 * args.k args { k: int[0..100] } }
        tool t.pay { domain d effect write args { amount: decimal(2)[0.01..500.00] } }
        tool t.many { domain d effect read args { ps: list[path][0..3], es?: list[{ k: enum[x, y], v: int[0..9], u?: int[0..9] }] } }
        tool t.nest { domain d effect read args { m: list[list[int[0..9]][0..3]][0..3], g?: list[{ n: string, w?: list[int[0..9]][0..3] }] } }
        tool t.obj { domain d effect read args { r: { o: string, m?: { t?: int[0..9] } }, l?: list[{ e: { s: enum[x, y] } }] } }
        tool w.get { domain w effect read env sandbox }
        agent a { roles [r] attrs { level: 2 } }
        agent b { roles [q] attrs { level: 1 } }
        agent c { roles [q] attrs { level: 3 } }
    ";

    fn policy(rules: &str) -> Policy {
        let text = format!("{BASE}\n{rules}");
        match crate::load(&SourceSet::single("test.toll", &text)) {
            Ok(policy) => policy,
            Err(errors) => panic!(
                "{}",
                crate::diagnostic::render_human(&errors, &SourceSet::single("test.toll", &text))
            ),
        }
    }

    fn call(agent: &str, tool: &str) -> Request {
        let mut args = BTreeMap::new();
        if tool == "t.read" {
            args.insert("n".to_owned(), Value::Int(1));
            args.insert("s".to_owned(), Value::Str("text".to_owned()));
            args.insert("c".to_owned(), Value::Str("x".to_owned()));
        }
        Request {
            agent: agent.to_owned(),
            tool: tool.to_owned(),
            args,
            via: Vec::new(),
            env: Some("prod".to_owned()),
            time: 0,
        }
    }

    fn with(mut request: Request, name: &str, value: Value) -> Request {
        request.args.insert(name.to_owned(), value);
        request
    }

    fn via(mut request: Request, chain: &[&str]) -> Request {
        request.via = chain.iter().map(|s| (*s).to_owned()).collect();
        request
    }

    fn at(mut request: Request, time: u64) -> Request {
        request.time = time;
        request
    }

    /// Decides the requests in order with one state; returns how each decision reads.
    fn check(rules: &str, requests: &[Request], expected: &[&str]) {
        let policy = policy(rules);
        let mut state = State::new();
        let actual: Vec<String> = requests
            .iter()
            .map(|request| describe_decision(&policy, &decide(&policy, request, &mut state)))
            .collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn v_agent_unknown_agents_are_denied() {
        check(
            "permit any to call any;",
            &[call("zed", "t.write")],
            &["deny unknown_agent"],
        );
    }

    #[test]
    fn v_tool_unknown_tools_are_denied() {
        check(
            "permit any to call any;",
            &[call("a", "t.nope")],
            &["deny unknown_tool"],
        );
    }

    #[test]
    fn v_context_unknown_chain_agents_and_environments_are_invalid() {
        let mut no_env = call("a", "t.write");
        no_env.env = None;
        let mut bad_env = call("a", "t.write");
        bad_env.env = Some("mars".to_owned());
        check(
            "permit any to call any;",
            &[via(call("a", "t.write"), &["ghost"]), no_env, bad_env],
            &[
                "deny invalid_request",
                "deny invalid_request",
                "deny invalid_request",
            ],
        );
    }

    #[test]
    fn v_args_arguments_must_match_the_schema() {
        let mut missing = call("a", "t.read");
        missing.args.remove("s");
        check(
            "permit any to call any;",
            &[
                missing,
                with(call("a", "t.read"), "extra", Value::Int(1)),
                with(call("a", "t.read"), "n", Value::Str("1".to_owned())),
                with(call("a", "t.read"), "n", Value::Int(101)),
                with(call("a", "t.read"), "n", Value::Int(-1)),
                with(call("a", "t.read"), "c", Value::Str("z".to_owned())),
                with(call("a", "t.read"), "n", Value::Int(100)),
            ],
            &[
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
                "allow by rule #1",
            ],
        );
    }

    fn object(fields: &[(&str, Value)]) -> Value {
        Value::Object(
            fields
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect(),
        )
    }

    #[test]
    fn v_args_an_object_argument_is_its_fields() {
        let owner = |o: &str| ("o", Value::Str(o.to_owned()));
        let call = |fields: &[(&str, Value)]| with(call("a", "t.obj"), "r", object(fields));
        let team = |t: i64| ("m", object(&[("t", Value::Int(t))]));
        let steps = |s: &str| {
            Value::List(vec![object(&[(
                "e",
                object(&[("s", Value::Str(s.to_owned()))]),
            )])])
        };
        check(
            "permit any to call t.obj when args.r.o == \"acme\" and (not has args.r.m.t or args.r.m.t < 5)\n\
             and (not has args.l or all st in args.l { st.e.s == x });",
            &[
                call(&[owner("acme")]),
                call(&[owner("evil")]),
                call(&[owner("acme"), team(3)]),
                call(&[owner("acme"), team(7)]),
                call(&[owner("acme"), ("m", object(&[]))]),
                with(call(&[owner("acme")]), "l", steps("x")),
                with(call(&[owner("acme")]), "l", steps("y")),
                // Exactly the declared fields, each of its type.
                call(&[]),
                call(&[owner("acme"), ("z", Value::Int(1))]),
                call(&[owner("acme"), ("m", Value::Int(1))]),
                with(call(&[owner("acme")]), "l", Value::List(vec![object(&[("e", Value::Int(1))])])),
                // Given twice: as its field and as the dotted name.
                with(call(&[owner("acme")]), "r.o", Value::Str("acme".to_owned())),
            ],
            &[
                "allow by rule #1",
                "deny not_permitted",
                "allow by rule #1",
                "deny not_permitted",
                "allow by rule #1",
                "allow by rule #1",
                "deny not_permitted",
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
            ],
        );
    }

    #[test]
    fn v_args_an_optional_argument_may_be_left_out_and_has_tests_it() {
        check(
            "permit any to call t.read when has args.o and args.o > 2;\n\
             forbid any to call t.read when not has args.o or args.o == 9;",
            &[
                call("a", "t.read"),
                with(call("a", "t.read"), "o", Value::Int(5)),
                with(call("a", "t.read"), "o", Value::Int(9)),
                with(call("a", "t.read"), "o", Value::Int(1)),
                with(call("a", "t.read"), "o", Value::Int(10)),
                with(call("a", "t.read"), "o", Value::Str("5".to_owned())),
            ],
            &[
                "deny forbidden by rule #2",
                "allow by rule #1",
                "deny forbidden by rule #2",
                "deny not_permitted",
                "deny invalid_argument",
                "deny invalid_argument",
            ],
        );
    }

    #[test]
    fn v_args_an_open_tool_lets_undeclared_arguments_through_unread() {
        let open = |extra: Option<(&str, Value)>| {
            let mut request = call("a", "t.open");
            request.args.insert("n".to_owned(), Value::Int(1));
            if let Some((name, value)) = extra {
                request.args.insert(name.to_owned(), value);
            }
            request
        };
        check(
            "permit any to call t.open when args.n == 1;",
            &[
                open(None),
                open(Some(("anything", Value::Str("x".to_owned())))),
                open(Some(("n", Value::Int(10)))),
                with(call("a", "t.read"), "anything", Value::Int(0)),
            ],
            &[
                "allow by rule #1",
                "allow by rule #1",
                "deny invalid_argument",
                "deny invalid_argument",
            ],
        );
    }

    #[test]
    fn l_budget_a_cost_charged_per_argument_counts_units() {
        let scale = |k: i64| {
            let mut request = call("a", "t.scale");
            request.args.insert("k".to_owned(), Value::Int(k));
            request
        };
        check(
            "permit any to call t.scale;\nlimit any on t.scale budget 100 per 1h;",
            &[scale(3), scale(3), scale(0), scale(6)],
            &[
                "allow by rule #1",
                "deny budget_exhausted",
                "allow by rule #1",
                "deny budget_exhausted",
            ],
        );
    }

    fn many(ps: &[&str], es: Option<&[(&str, i64)]>) -> Request {
        let mut request = call("a", "t.many");
        let list = ps.iter().map(|p| Value::Str((*p).to_owned())).collect();
        request.args.insert("ps".to_owned(), Value::List(list));
        if let Some(es) = es {
            let items = es
                .iter()
                .map(|(k, v)| {
                    Value::Object(BTreeMap::from([
                        ("k".to_owned(), Value::Str((*k).to_owned())),
                        ("v".to_owned(), Value::Int(*v)),
                    ]))
                })
                .collect();
            request.args.insert("es".to_owned(), Value::List(items));
        }
        request
    }

    #[test]
    fn v_args_an_element_may_leave_out_an_optional_field_and_has_tests_it() {
        let with_u = |u: Option<i64>| {
            let mut request = many(&["docs/a"], Some(&[("x", 1)]));
            if let (Some(u), Some(Value::List(items))) = (u, request.args.get_mut("es")) {
                if let Some(Value::Object(fields)) = items.first_mut() {
                    fields.insert("u".to_owned(), Value::Int(u));
                }
            }
            request
        };
        check(
            "permit any to call t.many when has args.es and any e in args.es { has e.u and e.u > 2 };",
            &[with_u(None), with_u(Some(5)), with_u(Some(1)), with_u(Some(10))],
            &[
                "deny not_permitted",
                "allow by rule #1",
                "deny not_permitted",
                "deny invalid_argument",
            ],
        );
    }

    #[test]
    fn c_all_and_c_any_hold_for_every_or_some_element() {
        check(
            "permit any to call t.many when all p in args.ps { p under \"docs\" };\n\
             forbid any to call t.many when has args.es and any e in args.es { e.k == y and e.v > 5 };",
            &[
                many(&["docs/a", "docs/./b/../c"], None),
                // `all` of no element holds.
                many(&[], None),
                many(&["docs/a", "etc/passwd"], None),
                many(&["docs/a"], Some(&[("x", 9), ("y", 5)])),
                many(&["docs/a"], Some(&[("x", 1), ("y", 6)])),
                // `any` of no element does not hold.
                many(&["docs/a"], Some(&[])),
            ],
            &[
                "allow by rule #1",
                "allow by rule #1",
                "deny not_permitted",
                "allow by rule #1",
                "deny forbidden by rule #2",
                "allow by rule #1",
            ],
        );
    }

    /// A call of `t.nest` with `m` as lists of integers and `g` as `(n, w)` elements.
    fn nest(m: &[&[i64]], g: &[(&str, Option<&[i64]>)]) -> Request {
        let ints = |v: &[i64]| Value::List(v.iter().map(|i| Value::Int(*i)).collect());
        let mut request = call("a", "t.nest");
        request.args.insert(
            "m".to_owned(),
            Value::List(m.iter().map(|l| ints(l)).collect()),
        );
        let elements = g
            .iter()
            .map(|(n, w)| {
                let mut fields = BTreeMap::from([("n".to_owned(), Value::Str((*n).to_owned()))]);
                fields.extend(w.map(|w| ("w".to_owned(), ints(w))));
                Value::Object(fields)
            })
            .collect();
        request.args.insert("g".to_owned(), Value::List(elements));
        request
    }

    /// (C-List): inside a body, a quantifier, `in` and `len` read the element itself (a list of
    /// lists) or its list field, and an inner body reads the element around it.
    #[test]
    fn c_list_quantifiers_range_over_an_element_or_its_list_field() {
        check(
            "permit any to call t.nest when all x in args.m { any y in x { y == 1 } and len(x) <= 2 };\n\
             forbid any to call t.nest when has args.g and any e in args.g { has e.w and 9 in e.w };\n\
             forbid any to call t.nest when has args.g and any e in args.g { has e.w and any v in e.w { e.n == \"z\" and v > 0 } };",
            &[
                nest(&[&[1], &[0, 1]], &[]),
                // `all` over no list, and `any` over an empty inner list.
                nest(&[], &[]),
                nest(&[&[1], &[]], &[]),
                nest(&[&[1, 1, 1]], &[]),
                // A list field: left out, holding 9, and read beside its element's `n`.
                nest(&[&[1]], &[("a", None), ("b", Some(&[0, 2]))]),
                nest(&[&[1]], &[("a", Some(&[9]))]),
                nest(&[&[1]], &[("z", Some(&[0]))]),
                nest(&[&[1]], &[("z", Some(&[0, 3]))]),
            ],
            &[
                "allow by rule #1",
                "allow by rule #1",
                "deny not_permitted",
                "deny not_permitted",
                "allow by rule #1",
                "deny forbidden by rule #2",
                "allow by rule #1",
                "deny forbidden by rule #3",
            ],
        );
    }

    #[test]
    fn c_len_and_member_read_a_list() {
        check(
            "permit any to call t.many when len(args.ps) >= 2 and \"b\" in args.ps;",
            &[
                many(&["a", "b"], None),
                many(&["b"], None),
                many(&["a", "c"], None),
            ],
            &[
                "allow by rule #1",
                "deny not_permitted",
                "deny not_permitted",
            ],
        );
    }

    #[test]
    fn v_args_a_list_is_counted_and_every_element_is_valid() {
        let bad_field = with(
            many(&["a"], None),
            "es",
            Value::List(vec![Value::Object(BTreeMap::from([(
                "k".to_owned(),
                Value::Str("x".to_owned()),
            )]))]),
        );
        let extra_field = with(
            many(&["a"], None),
            "es",
            Value::List(vec![Value::Object(BTreeMap::from([
                ("k".to_owned(), Value::Str("x".to_owned())),
                ("v".to_owned(), Value::Int(1)),
                ("w".to_owned(), Value::Int(1)),
            ]))]),
        );
        check(
            "permit any to call t.many;",
            &[
                many(&["a", "b", "c"], Some(&[("x", 0)])),
                // Too many elements; a path that climbs; a bad enum value; out of range.
                many(&["a", "b", "c", "d"], None),
                many(&["../a"], None),
                many(&["a"], Some(&[("z", 0)])),
                many(&["a"], Some(&[("x", 10)])),
                bad_field,
                extra_field,
                with(call("a", "t.many"), "ps", Value::Str("a".to_owned())),
            ],
            &[
                "allow by rule #1",
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
            ],
        );
    }

    #[test]
    fn v_args_a_decimal_is_read_exactly_in_units_of_its_scale() {
        let pay = |amount: Value| with(call("a", "t.pay"), "amount", amount);
        let text = |t: &str| Value::Decimal(t.to_owned());
        check(
            "permit any to call t.pay when args.amount <= 250.5;",
            &[
                pay(text("250.50")),
                pay(text("250.500")),
                pay(text("2.505e2")),
                pay(Value::Int(250)),
                pay(Value::Str("12.25".to_owned())),
                pay(text("250.51")),
                pay(text("12.345")),
                pay(text("0.001")),
                pay(text("500.01")),
                pay(Value::Int(0)),
                pay(Value::Str("twelve".to_owned())),
                pay(Value::Bool(true)),
            ],
            &[
                "allow by rule #1",
                "allow by rule #1",
                "allow by rule #1",
                "allow by rule #1",
                "allow by rule #1",
                "deny not_permitted",
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
                "deny invalid_argument",
            ],
        );
        // An integer argument takes no fraction, even a zero one.
        check(
            "permit any to call t.read;",
            &[with(call("a", "t.read"), "n", text("5.0"))],
            &["deny invalid_argument"],
        );
    }

    #[test]
    fn v_args_a_bounded_string_is_counted_in_bytes() {
        check(
            "permit any to call t.read;",
            &[
                with(call("a", "t.read"), "t", Value::Str("abc".to_owned())),
                with(call("a", "t.read"), "t", Value::Str("é".to_owned())),
                with(call("a", "t.read"), "t", Value::Str("éé".to_owned())),
                with(call("a", "t.read"), "t", Value::Str(String::new())),
            ],
            &[
                "allow by rule #1",
                "allow by rule #1",
                "deny invalid_argument",
                "deny invalid_argument",
            ],
        );
    }

    #[test]
    fn l_repeat_a_call_without_an_optional_argument_differs_from_one_with_it() {
        check(
            "permit any to call t.read;\nlimit any on t.read repeat 1 within 1h;",
            &[
                call("a", "t.read"),
                with(call("a", "t.read"), "o", Value::Int(0)),
                call("a", "t.read"),
            ],
            &["allow by rule #1", "allow by rule #1", "deny loop_guard"],
        );
    }

    #[test]
    fn a_default_no_permit_means_deny() {
        check("", &[call("a", "t.write")], &["deny not_permitted"]);
    }

    #[test]
    fn m_principal_patterns_match_agent_role_and_any() {
        check(
            "permit agent a to call t.write; permit role q to call w.get; permit any to call t.read;",
            &[
                call("a", "t.write"),
                call("b", "t.write"),
                call("b", "w.get"),
                call("a", "w.get"),
                call("c", "t.read"),
            ],
            &["allow by rule #1", "deny not_permitted", "allow by rule #2", "deny not_permitted", "allow by rule #3"],
        );
    }

    #[test]
    fn m_tool_patterns_match_exact_prefix_domain_and_effect() {
        check(
            "permit agent a to call t.*; permit agent b to call domain w; permit agent c to call effect write;",
            &[
                call("a", "t.read"),
                call("a", "w.get"),
                call("b", "w.get"),
                call("b", "t.read"),
                call("c", "t.write"),
                call("c", "t.read"),
            ],
            &[
                "allow by rule #1",
                "deny not_permitted",
                "allow by rule #2",
                "deny not_permitted",
                "allow by rule #3",
                "deny not_permitted",
            ],
        );
    }

    #[test]
    fn m_prefix_matches_whole_segments_only() {
        let policy = policy("permit any to call t.*;");
        assert!(policy.tool_matches(&ToolPattern::Prefix("t".to_owned()), 0));
        assert!(!policy.tool_matches(&ToolPattern::Prefix("t.re".to_owned()), 0));
    }

    #[test]
    fn a_forbid_overrides_permit_and_the_first_forbid_is_reported() {
        check(
            "permit any to call t.write; forbid agent a to call t.write; forbid role r to call any;",
            &[call("a", "t.write"), call("b", "t.write")],
            &["deny forbidden by rule #2", "allow by rule #1"],
        );
    }

    #[test]
    fn c_compare_integers_as_i64() {
        check(
            "permit any to call t.read when args.n >= 10 and args.n < 20 and args.n != 15;",
            &[
                with(call("a", "t.read"), "n", Value::Int(9)),
                with(call("a", "t.read"), "n", Value::Int(10)),
                with(call("a", "t.read"), "n", Value::Int(15)),
                with(call("a", "t.read"), "n", Value::Int(19)),
                with(call("a", "t.read"), "n", Value::Int(20)),
            ],
            &[
                "deny not_permitted",
                "allow by rule #1",
                "deny not_permitted",
                "allow by rule #1",
                "deny not_permitted",
            ],
        );
    }

    #[test]
    fn c_strings_compare_bytewise() {
        check(
            r#"permit any to call t.read when args.s starts_with "ab" or args.s ends_with "yz" or args.s contains "mm" or args.s == "";"#,
            &[
                with(call("a", "t.read"), "s", Value::Str("abc".to_owned())),
                with(call("a", "t.read"), "s", Value::Str("xyz".to_owned())),
                with(call("a", "t.read"), "s", Value::Str("hammer".to_owned())),
                with(call("a", "t.read"), "s", Value::Str(String::new())),
                with(call("a", "t.read"), "s", Value::Str("Abc".to_owned())),
                with(call("a", "t.read"), "s", Value::Str("é".to_owned())),
            ],
            &[
                "allow by rule #1",
                "allow by rule #1",
                "allow by rule #1",
                "allow by rule #1",
                "deny not_permitted",
                "deny not_permitted",
            ],
        );
    }

    #[test]
    fn c_membership_and_enum_equality() {
        check(
            "permit any to call t.read when args.c in [y] or args.n in [7, 8];",
            &[
                call("a", "t.read"),
                with(call("a", "t.read"), "c", Value::Str("y".to_owned())),
                with(call("a", "t.read"), "n", Value::Int(8)),
            ],
            &["deny not_permitted", "allow by rule #1", "allow by rule #1"],
        );
    }

    #[test]
    fn c_boolean_connectives() {
        check(
            "permit any to call t.read when not (args.n == 1) and (args.c == x or args.c == y);",
            &[
                call("a", "t.read"),
                with(call("a", "t.read"), "n", Value::Int(2)),
            ],
            &["deny not_permitted", "allow by rule #1"],
        );
    }

    #[test]
    fn c_context_hour_depth_origin_and_env() {
        check(
            "delegate b -> a;
             permit any to call t.write when context.hour >= 9 and context.hour < 17 and context.env == prod;
             permit agent a to call w.get when context.depth == 1 and context.origin == b;
             permit agent b to call w.get;",
            &[
                at(call("a", "t.write"), 8 * 3_600 + 3_599),
                at(call("a", "t.write"), 9 * 3_600),
                at(call("a", "t.write"), 86_400 + 10 * 3_600),
                call("a", "w.get"),
                via(call("a", "w.get"), &["b"]),
            ],
            &["deny not_permitted", "allow by rule #1", "allow by rule #1", "deny not_permitted", "allow by rule #2"],
        );
    }

    #[test]
    fn c_attributes_are_those_of_the_agent_and_tool_evaluated() {
        check(
            "permit role q to call t.write when agent.level >= 2 and tool.cost == 3;",
            &[call("b", "t.write"), call("c", "t.write")],
            &["deny not_permitted", "allow by rule #1"],
        );
    }

    #[test]
    fn d_edge_every_hop_must_be_declared() {
        check(
            "delegate a -> b; permit any to call t.write;",
            &[
                via(call("b", "t.write"), &["a"]),
                via(call("a", "t.write"), &["b"]),
                via(call("c", "t.write"), &["a", "b"]),
            ],
            &[
                "allow by rule #1",
                "deny delegation_not_allowed",
                "deny delegation_not_allowed",
            ],
        );
    }

    #[test]
    fn d_intersect_every_delegator_must_be_allowed_too() {
        check(
            "delegate a -> b; delegate b -> c; permit agent c to call t.write; permit agent b to call t.write;",
            &[
                via(call("c", "t.write"), &["b"]),
                via(call("c", "t.write"), &["a", "b"]),
                call("c", "t.write"),
            ],
            &["allow by rule #1", "deny not_permitted", "allow by rule #1"],
        );
    }

    #[test]
    fn d_intersect_a_delegator_forbid_denies() {
        check(
            "delegate a -> b; permit any to call t.write; forbid agent a to call t.write;",
            &[via(call("b", "t.write"), &["a"])],
            &["deny forbidden by rule #2"],
        );
    }

    #[test]
    fn d_widen_a_widening_hop_drops_the_delegator() {
        check(
            "delegate a -> b widening; permit agent b to call t.write;",
            &[via(call("b", "t.write"), &["a"])],
            &["allow by rule #1"],
        );
    }

    #[test]
    fn d_depth_limits_bound_the_chain() {
        check(
            "delegate a -> b; delegate b -> c; permit any to call t.write; limit any depth 1;",
            &[
                via(call("b", "t.write"), &["a"]),
                via(call("c", "t.write"), &["a", "b"]),
            ],
            &["allow by rule #1", "deny delegation_depth"],
        );
    }

    #[test]
    fn l_rate_counts_allowed_calls_in_fixed_windows() {
        check(
            "permit any to call t.write; limit agent a on t.write rate 2 per 1m;",
            &[
                at(call("a", "t.write"), 0),
                at(call("a", "t.write"), 10),
                at(call("a", "t.write"), 59),
                at(call("b", "t.write"), 59),
                at(call("a", "t.write"), 60),
            ],
            &[
                "allow by rule #1",
                "allow by rule #1",
                "deny rate_limited",
                "allow by rule #1",
                "allow by rule #1",
            ],
        );
    }

    #[test]
    fn l_charge_only_allowed_calls_count() {
        check(
            "permit any to call t.read when args.n < 50; limit any on t.read rate 1 per 1h;",
            &[
                with(call("a", "t.read"), "n", Value::Int(99)),
                call("a", "t.read"),
                call("a", "t.read"),
            ],
            &[
                "deny not_permitted",
                "allow by rule #1",
                "deny rate_limited",
            ],
        );
    }

    #[test]
    fn l_repeat_guards_identical_calls() {
        check(
            "permit any to call t.read; limit any on t.read repeat 1 within 1m;",
            &[
                call("a", "t.read"),
                with(call("a", "t.read"), "n", Value::Int(2)),
                call("a", "t.read"),
                call("b", "t.read"),
                at(call("a", "t.read"), 60),
            ],
            &[
                "allow by rule #1",
                "allow by rule #1",
                "deny loop_guard",
                "allow by rule #1",
                "allow by rule #1",
            ],
        );
    }

    #[test]
    fn l_budget_sums_tool_costs() {
        check(
            "agent d { budget 7 per 1h } permit any to call any;",
            &[
                call("d", "t.write"),
                call("d", "t.write"),
                call("d", "w.get"),
                call("d", "t.write"),
                at(call("d", "t.write"), 3_600),
            ],
            &[
                "allow by rule #1",
                "allow by rule #1",
                "allow by rule #1",
                "deny budget_exhausted",
                "allow by rule #1",
            ],
        );
    }

    #[test]
    fn l_order_the_first_exceeded_limit_denies_and_nothing_is_charged() {
        let policy = policy("permit any to call any; limit any on t.write rate 1 per 1h; limit any on t.write budget 3 per 1h;");
        let mut state = State::new();
        assert!(decide(&policy, &call("a", "t.write"), &mut state).is_allow());
        let second = decide(&policy, &call("a", "t.write"), &mut state);
        assert_eq!(second.reason, Some(Reason::RateLimited));
        assert_eq!(second.limit, Some(0));
    }

    #[test]
    fn f_revoke_after_n_denials_in_a_window() {
        check(
            "permit agent a to call t.read; on deny 2 within 1m revoke;",
            &[
                call("a", "t.write"),
                at(call("a", "t.write"), 60),
                at(call("a", "t.write"), 61),
                at(call("a", "t.read"), 62),
                at(call("b", "t.read"), 62),
            ],
            &[
                "deny not_permitted",
                "deny not_permitted",
                "deny not_permitted",
                "deny revoked",
                "deny not_permitted",
            ],
        );
    }

    #[test]
    fn f_revoke_is_reported_on_the_denial_that_causes_it() {
        let policy = policy("on agent a deny 1 within 1m revoke;");
        let mut state = State::new();
        assert!(decide(&policy, &call("a", "t.write"), &mut state).revoked_agent);
        assert!(state.revoked.contains("a"));
        assert!(!decide(&policy, &call("b", "t.write"), &mut state).revoked_agent);
    }

    #[test]
    fn t_mono_a_clock_that_moves_back_decides_at_the_newest_time() {
        // rate 1 per 1h: 3599 then 3600 opens the next window; back at 3599 it is still 3600's.
        check(
            "permit agent a to call t.read; limit agent a on t.read rate 1 per 1h;",
            &[
                at(call("a", "t.read"), 3_599),
                at(call("a", "t.read"), 3_600),
                at(call("a", "t.read"), 3_599),
            ],
            &["allow by rule #1", "allow by rule #1", "deny rate_limited"],
        );
        // context.hour follows the newest time, too.
        check(
            "permit agent a to call t.read when context.hour >= 9;",
            &[
                at(call("a", "t.read"), 10 * 3_600),
                at(call("a", "t.read"), 3 * 3_600),
            ],
            &["allow by rule #1", "allow by rule #1"],
        );
    }

    #[test]
    fn r_chain_a_revoked_agent_cannot_appear_on_a_chain() {
        check(
            "delegate b -> a; permit any to call t.read; permit agent b to call t.write;
             on agent b deny 1 within 1m revoke;",
            &[
                via(call("a", "t.read"), &["b"]),
                call("b", "w.get"),
                via(call("a", "t.read"), &["b"]),
            ],
            &[
                "allow by rule #1",
                "deny not_permitted",
                "deny chain_revoked",
            ],
        );
    }

    #[test]
    fn trace_names_the_failing_part_of_a_condition() {
        let text = format!("{BASE}\npermit any to call t.read when args.c == x and args.n > 5;");
        let sources = SourceSet::single("t.toll", &text);
        let policy = crate::load(&sources).unwrap();
        let decision = decide(&policy, &call("a", "t.read"), &mut State::new());
        let failed = decision.trace[0].failed.unwrap();
        assert_eq!(sources.snippet(failed), "args.n > 5");
    }
}
