//! The reference evaluator: the semantics of the book's "Semantics" chapter, written to be
//! obviously right rather than fast. It is the oracle every other part — the Z3 encoding, the
//! compiled table, the runtime gate — is tested against, so it follows the judgement rules step
//! by step and keeps no cleverness.

use crate::model::*;
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

/// Everything the semantics remembers between requests: windowed counters and revocations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// (window index, value) per counter; a counter from an older window reads as zero.
    counters: BTreeMap<CounterKey, (u64, i128)>,
    pub revoked: BTreeSet<String>,
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
/// deny.
pub fn decide(policy: &Policy, request: &Request, state: &mut State) -> Decision {
    let Some(agent) = policy.agent_id(&request.agent) else {
        return Decision::deny(Reason::UnknownAgent, format!("no agent is called `{}`", request.agent));
    };
    let mut decision = decide_known_agent(policy, request, agent, state);
    if !decision.is_allow() && decision.reason != Some(Reason::Revoked) {
        decision.revoked_agent = count_denial(policy, request, agent, state);
    }
    decision
}

fn decide_known_agent(policy: &Policy, request: &Request, agent: AgentId, state: &mut State) -> Decision {
    // (1) The request must be well formed.
    let Some(tool) = policy.tool_id(&request.tool) else {
        return Decision::deny(Reason::UnknownTool, format!("no tool is called `{}`", request.tool));
    };
    if let Some(hop) = request.via.iter().find(|hop| policy.agent_id(hop).is_none()) {
        return Decision::deny(Reason::InvalidRequest, format!("the chain names unknown agent `{hop}`"));
    }
    match &request.env {
        Some(env) if !policy.environments.contains(env) => {
            return Decision::deny(Reason::InvalidRequest, format!("unknown environment `{env}`"));
        }
        None if !policy.environments.is_empty() => {
            return Decision::deny(Reason::InvalidRequest, "the request has no environment".to_owned());
        }
        _ => {}
    }
    let args = match validate_args(&policy.tools[tool], &request.args) {
        Ok(args) => args,
        Err(detail) => return Decision::deny(Reason::InvalidArgument, detail),
    };

    // (2) A revoked agent is denied everything.
    if state.revoked.contains(&request.agent) {
        return Decision::deny(Reason::Revoked, format!("`{}` has been revoked", request.agent));
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
        match policy.delegations.iter().find(|d| d.from == from && d.to == to) {
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
    let context = Context {
        policy,
        args: &args,
        tool,
        env: request.env.as_deref(),
        hour: ((request.time / 3_600) % 24) as i64,
        depth: request.via.len() as i64,
        origin: request.via.first().unwrap_or(&request.agent),
    };
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
    let cost = i128::from(policy.tools[tool].cost);
    for &(id, limit) in &charged {
        let exceeded = match limit.kind {
            LimitKind::Rate { count, window } => {
                let used = state.read(&CounterKey::Limit(id, agent), request.time / window);
                (used + 1 > i128::from(count)).then(|| {
                    (Reason::RateLimited, format!("{used} calls already in this window, the limit is {count}"))
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
            LimitKind::Rate { window, .. } => state.add(CounterKey::Limit(id, agent), request.time / window, 1),
            LimitKind::Repeat { window, .. } => {
                let key = CounterKey::Repeat(id, agent, tool, args.clone());
                state.add(key, request.time / window, 1);
            }
            LimitKind::Budget { window, .. } => state.add(CounterKey::Limit(id, agent), request.time / window, cost),
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
        if state.read(&key, window) >= i128::from(response.count) && state.revoked.insert(request.agent.clone()) {
            revoked = true;
        }
    }
    revoked
}

/// Checks the arguments against the tool's schema; enum values become symbols.
pub fn validate_args(tool: &Tool, given: &BTreeMap<String, Value>) -> Result<BTreeMap<String, Value>, String> {
    if let Some(extra) = given.keys().find(|name| tool.arg(name).is_none()) {
        return Err(format!("`{}` takes no argument `{extra}`", tool.name));
    }
    let mut args = BTreeMap::new();
    for schema in &tool.args {
        let Some(value) = given.get(&schema.name) else {
            return Err(format!("argument `{}` is missing", schema.name));
        };
        let normalized = match (&schema.ty, value) {
            (ArgType::Int { min, max }, Value::Int(v)) => {
                if v < min || v > max {
                    return Err(format!("argument `{}` is {v}, outside {min}..{max}", schema.name));
                }
                Value::Int(*v)
            }
            (ArgType::Bool, Value::Bool(v)) => Value::Bool(*v),
            (ArgType::Str, Value::Str(v)) => Value::Str(v.clone()),
            (ArgType::Enum(variants), Value::Str(v) | Value::Sym(v)) => {
                if !variants.contains(v) {
                    return Err(format!("argument `{}` is `{v}`, not one of {}", schema.name, variants.join(", ")));
                }
                Value::Sym(v.clone())
            }
            (ty, value) => {
                let expected = match ty {
                    ArgType::Int { .. } => "an integer",
                    ArgType::Bool => "a boolean",
                    ArgType::Str => "a string",
                    ArgType::Enum(_) => "an enum value",
                };
                return Err(format!("argument `{}` should be {expected}, found `{value}`", schema.name));
            }
        };
        args.insert(schema.name.clone(), normalized);
    }
    Ok(args)
}

struct Context<'a> {
    policy: &'a Policy,
    args: &'a BTreeMap<String, Value>,
    tool: ToolId,
    env: Option<&'a str>,
    hour: i64,
    depth: i64,
    origin: &'a str,
}

/// The forbid and permit rules that apply to `agent`, by rule id; records a trace entry for
/// every rule whose patterns match.
fn rules_for(context: &Context<'_>, agent: AgentId, trace: &mut Vec<RuleTrace>) -> (Vec<RuleId>, Vec<RuleId>) {
    let policy = context.policy;
    let mut forbids = Vec::new();
    let mut permits = Vec::new();
    for (id, rule) in policy.rules.iter().enumerate() {
        if !policy.principal_matches(&rule.principal, agent) || !policy.tool_matches(&rule.tools, context.tool) {
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
        Term::AgentAttr(name) => policy.agents[agent].attrs.get(name).map(|(value, _)| value.clone()),
        Term::ToolAttr(name) => tool.attrs.get(name).map(|(value, _)| value.clone()),
        Term::ToolCost => Some(Value::Int(tool.cost)),
        Term::ToolEnv => tool.env.clone().map(Value::Sym),
        Term::Const(value) => Some(value.clone()),
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
    let context = Context {
        policy,
        args,
        tool,
        env: request.env.as_deref(),
        hour: ((request.time / 3_600) % 24) as i64,
        depth: request.via.len() as i64,
        origin: request.via.first().unwrap_or(&request.agent),
    };
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
            let (Value::Str(lhs), Value::Str(rhs)) = (term(context, agent, lhs)?, term(context, agent, rhs)?) else {
                return None;
            };
            let (lhs, rhs) = (lhs.as_bytes(), rhs.as_bytes());
            Some(match op {
                StringOp::StartsWith => lhs.starts_with(rhs),
                StringOp::EndsWith => lhs.ends_with(rhs),
                StringOp::Contains => rhs.is_empty() || lhs.windows(rhs.len()).any(|window| window == rhs),
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
