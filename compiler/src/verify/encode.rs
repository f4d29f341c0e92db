//! The Z3 encoding of the semantics, for one (agent, tool) bucket at a time.
//!
//! Free variables are the request's arguments, its environment, its hour, and which delegation
//! chain it comes through; agent and tool attributes are constants, because a bucket fixes both.
//! The encoding means what `eval` means: integers are constrained to the signed 64-bit range (and
//! declared bounds), strings are Z3 strings (for valid UTF-8, prefix, suffix and substring on
//! characters coincide with the evaluator's byte-wise tests), and enum values, environments and
//! agents are integers indexing one shared symbol table.

use crate::model::*;
use std::collections::BTreeMap;
use std::str::FromStr;
use tollgate_grammar::ast::{CompareOp, StringOp};
use z3::ast::{Bool, Int, String as ZString};

/// A value in the encoding.
#[derive(Clone, Debug)]
pub enum Zv {
    Int(Int),
    Bool(Bool),
    Str(ZString),
    /// An index into the symbol table.
    Sym(Int),
}

/// Every name that can be a value (environments, enum variants, agents), numbered once, so that
/// values of different policies and enum types compare by name.
#[derive(Clone, Debug, Default)]
pub struct Symbols {
    index: BTreeMap<String, i64>,
    names: Vec<String>,
}

impl Symbols {
    pub fn add(&mut self, name: &str) {
        if !self.index.contains_key(name) {
            self.index.insert(name.to_owned(), self.names.len() as i64);
            self.names.push(name.to_owned());
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
                    if let ArgType::Enum(variants) = &arg.ty {
                        for variant in variants {
                            symbols.add(variant);
                        }
                    }
                }
            }
        }
        symbols
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

/// Z3 string literal text: every character outside printable ASCII, and the backslash, is
/// written as `\u{…}`, the form Z3 reads back.
pub fn z3_string(value: &str) -> ZString {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        if character.is_ascii_graphic() && character != '\\' || character == ' ' {
            escaped.push(character);
        } else {
            escaped.push_str(&format!("\\u{{{:x}}}", u32::from(character)));
        }
    }
    ZString::from_str(&escaped).unwrap_or_else(|_| ZString::new_const("unrepresentable_string"))
}

/// Reads back a string constant from a model: Z3 prints characters outside printable ASCII as
/// `\u{…}`. `None` if it names no Unicode scalar value (a witness then fails replay and the
/// finding is reported as inconclusive).
pub fn decode_z3_string(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find("\\u{") {
        out.push_str(rest.get(..position)?);
        let after = rest.get(position + 3..)?;
        let close = after.find('}')?;
        let code = u32::from_str_radix(after.get(..close)?, 16).ok()?;
        out.push(char::from_u32(code)?);
        rest = after.get(close + 1..)?;
    }
    out.push_str(rest);
    Some(out)
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
        let mut args = BTreeMap::new();
        let mut domain = vec![];
        for arg in schema {
            let name = format!("args.{}", arg.name);
            let value = match &arg.ty {
                ArgType::Int { min, max } => {
                    let v = Int::new_const(name);
                    domain.push(v.ge(Int::from_i64(*min)));
                    domain.push(v.le(Int::from_i64(*max)));
                    Zv::Int(v)
                }
                ArgType::Bool => Zv::Bool(Bool::new_const(name)),
                ArgType::Str => Zv::Str(ZString::new_const(name)),
                ArgType::Enum(variants) => {
                    let v = Int::new_const(name);
                    let options: Vec<Bool> = variants
                        .iter()
                        .map(|x| v.eq(Int::from_i64(symbols.index(x))))
                        .collect();
                    domain.push(Bool::or(&options));
                    Zv::Sym(v)
                }
            };
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
            env,
            hour,
            chain,
            chains,
            domain: Bool::and(&domain),
            truncated,
        }
    }

    pub fn is_chain(&self, index: usize) -> Bool {
        self.chain.eq(Int::from_i64(index as i64))
    }
}

/// For each agent, the rules whose principal pattern matches it, in rule order: computed once per
/// policy so that finding a bucket's rules does not scan every rule.
#[derive(Debug, Default)]
pub struct RuleIndex {
    by_agent: Vec<Vec<RuleId>>,
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
        RuleIndex { by_agent }
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
}

impl Encoder<'_> {
    fn constant(&self, value: &Value) -> Zv {
        match value {
            Value::Int(v) => Zv::Int(Int::from_i64(*v)),
            Value::Bool(v) => Zv::Bool(Bool::from_bool(*v)),
            Value::Str(v) => Zv::Str(z3_string(v)),
            Value::Sym(v) => Zv::Sym(Int::from_i64(self.space.symbols.index(v))),
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
        })
    }

    /// ⟦C⟧ for `agent` on `chain`; `None` only for ill-typed conditions, which checking excludes.
    pub fn condition(&self, agent: AgentId, chain: &Chain, condition: &Condition) -> Option<Bool> {
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
            ConditionKind::Bool(term) => match self.term(agent, chain, term)? {
                Zv::Bool(b) => b,
                _ => return None,
            },
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
        let Some(rules) = self.index.by_agent.get(agent) else {
            return Vec::new();
        };
        rules
            .iter()
            .copied()
            .filter(|&r| {
                let rule = &self.policy.rules[r];
                rule.effect == effect && self.policy.tool_matches(&rule.tools, self.tool)
            })
            .collect()
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
        let Some(required) = required_agents(self.policy, agent, self.tool, chain) else {
            return Bool::from_bool(false);
        };
        if budget_blocked(self.policy, agent, self.tool) {
            return Bool::from_bool(false);
        }
        let parts: Vec<Bool> = required
            .into_iter()
            .map(|member| self.authorized(member, chain))
            .collect();
        Bool::and(&parts)
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
    let cost = policy.tools.get(tool).map_or(0, |t| t.cost);
    policy.limits.iter().any(|limit| {
        matches!(limit.kind, LimitKind::Budget { amount, .. } if amount < cost)
            && policy.principal_matches(&limit.principal, agent)
            && policy.tool_matches(&limit.tools, tool)
    })
}

/// The largest depth any condition or depth limit can tell apart, plus one: deeper chains are
/// indistinguishable from each other.
fn depth_horizon(policy: &Policy) -> u64 {
    fn constants(condition: &Condition, out: &mut u64) {
        match &condition.kind {
            ConditionKind::Or(a, b) | ConditionKind::And(a, b) => {
                constants(a, out);
                constants(b, out);
            }
            ConditionKind::Not(inner) => constants(inner, out),
            ConditionKind::Compare { lhs, rhs, .. } => {
                for term in [lhs, rhs] {
                    if let Term::Const(Value::Int(v)) = term {
                        *out = (*out).max(u64::try_from(*v).unwrap_or(0));
                    }
                }
            }
            ConditionKind::In { set, .. } => {
                for value in set {
                    if let Value::Int(v) = value {
                        *out = (*out).max(u64::try_from(*v).unwrap_or(0));
                    }
                }
            }
            _ => {}
        }
    }
    let mut horizon = 0;
    for rule in &policy.rules {
        if let Some(condition) = &rule.condition {
            constants(condition, &mut horizon);
        }
    }
    for limit in &policy.limits {
        if let LimitKind::Depth { max } = limit.kind {
            horizon = horizon.max(max);
        }
    }
    horizon.saturating_add(1).min(64)
}

/// Every chain (walk of declared delegations) ending at `agent`, up to the depth horizon plus
/// the number of agents — a longer walk contains a cycle whose removal keeps its depth class and
/// needs fewer agents' authority — capped at `max`. Returns whether the cap cut the list short.
pub fn chains_to(policy: &Policy, agent: AgentId, max: usize) -> (Vec<Chain>, bool) {
    let longest = depth_horizon(policy).saturating_add(policy.agents.len() as u64);
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
        if next.is_empty() || truncated {
            break;
        }
        frontier = next;
    }
    (out, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_survive_the_round_trip_through_z3() {
        for text in [
            "plain",
            "é and ü",
            "back\\slash",
            "quote\"",
            "tab\tnew\nline",
            "",
            "\u{1F600}",
        ] {
            let value = z3_string(text);
            let shown = value.as_string().unwrap();
            assert_eq!(decode_z3_string(&shown).as_deref(), Some(text), "{shown}");
        }
    }
}
