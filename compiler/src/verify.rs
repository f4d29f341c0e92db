//! `verify`: what a policy means, proved with Z3 before anything runs.
//!
//! For every (agent, tool) bucket the request space is encoded once ([`encode`]) and queried
//! with push/pop on one solver. Analyses: rules that can never apply, permits every forbid
//! overrides (with the covering forbids from an unsat core), forbids that never override a
//! permit, permit/forbid overlaps, redundant rules, author assertions, the lethal trifecta and
//! escalation paths (delegation, spawn, grant; graph in [`graph`]).
//!
//! Every finding that exists because some request exists carries that request as a witness, and
//! every witness is replayed through the reference evaluator before it is reported: a witness
//! that does not replay turns the finding into an inconclusive one, never into a silent pass.
//! Every solver call has a timeout; `unknown` is reported as inconclusive, never as safe.

pub mod diff;
pub mod encode;
pub mod graph;
pub mod translation;

use crate::diagnostic::{self, Diagnostic, Severity};
use crate::eval::{self, State, Verdict};
use crate::model::*;
use encode::{string_from_model, Chain, Encoder, RuleIndex, Space, Symbols, Zv};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use z3::ast::{Bool, Int};
use z3::{Model, Params, SatResult, Solver};

/// A solver with the per-call timeout set.
pub(crate) fn new_solver(options: &Options) -> Rc<Solver> {
    let solver = Solver::new();
    let mut params = Params::new();
    params.set_u32("timeout", options.timeout_ms);
    solver.set_params(&params);
    Rc::new(solver)
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Per solver call.
    pub timeout_ms: u32,
    /// Delegation chains considered per bucket before the analysis is declared incomplete.
    pub max_chains: usize,
    /// For tests of how `unknown` is handled: every n-th solver query answers `unknown` without
    /// asking Z3 (0: never).
    pub unknown_every: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout_ms: 10_000,
            max_chains: 256,
            unknown_every: 0,
        }
    }
}

/// Something a witness request is claimed to show, checked by replaying it through `eval`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The rule applies (or not) to this agent of the chain.
    Applies {
        agent: String,
        rule: RuleId,
        applies: bool,
    },
    /// The decision, from a fresh state.
    Verdict(Verdict),
    /// Denied by the rules themselves (`forbidden` or `not_permitted`).
    DeniedByRules,
    /// For this agent of the chain, no forbid applies and a permit other than `rule` does.
    OtherPermitDecides { agent: String, rule: RuleId },
    /// An assertion's condition holds for the acting agent (what a witness of a broken
    /// assertion must also show; shortening a witness must keep it).
    Meets(Condition),
}

#[derive(Clone, Debug)]
pub struct Witness {
    /// What this request shows, for people.
    pub label: String,
    pub request: Request,
    pub claims: Vec<Claim>,
    /// Replay with this role added to the acting agent (the second step of a grant path).
    pub granted_role: Option<String>,
}

impl Witness {
    /// A request claimed to be allowed, from a fresh state.
    pub fn allowed(label: String, request: Request) -> Witness {
        Witness {
            label,
            request,
            claims: vec![Claim::Verdict(Verdict::Allow)],
            granted_role: None,
        }
    }
}

/// What a finding is about, for tools and tests that need more than the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Subject {
    #[default]
    None,
    Rule(RuleId),
    /// A permit and a forbid.
    Pair(RuleId, RuleId),
    Assertion(usize),
    Agent(AgentId),
    AgentTool(AgentId, ToolId),
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub diagnostic: Diagnostic,
    pub witnesses: Vec<Witness>,
    pub subject: Subject,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub buckets: usize,
    pub queries: usize,
    pub unknown: usize,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Assertions proved, by name.
    pub proved: Vec<String>,
    pub stats: Stats,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.diagnostic.severity == Severity::Error)
            .count()
    }
}

/// A replaying witness with its lists as short as its claims allow: elements are dropped one at a
/// time, down to each list's declared minimum, while the witness still replays (so a finding
/// shows one element where one suffices; the solver's model may hold more) — outer lists first,
/// then the lists inside each remaining element. Only the reference evaluator is asked, not the
/// solver.
pub fn shorten_lists(policy: &Policy, witness: &Witness) -> Witness {
    let mut shortest = witness.clone();
    let Some(tool) = policy.tool_id(&witness.request.tool) else {
        return shortest;
    };
    for arg in &policy.tools[tool].args {
        shorten_list(policy, &mut shortest, &arg.name, &mut Vec::new(), arg);
    }
    shortest
}

/// A step from an argument's value to a list inside it.
#[derive(Clone)]
enum Step {
    Element(usize),
    Field(String),
}

/// The value at `path` inside `value`.
fn value_at<'v>(value: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    let Some((step, rest)) = path.split_first() else {
        return Some(value);
    };
    let inner = match (step, value) {
        (Step::Element(index), Value::List(items)) => items.get_mut(*index)?,
        (Step::Field(field), Value::Object(fields)) => fields.get_mut(field)?,
        _ => return None,
    };
    value_at(inner, rest)
}

/// Shortens the list at `path` in argument `arg` (of schema `schema`), then the lists inside its
/// remaining elements.
fn shorten_list(
    policy: &Policy,
    shortest: &mut Witness,
    arg: &str,
    path: &mut Vec<Step>,
    schema: &ArgSchema,
) {
    let ArgType::List { element, count } = &schema.ty else {
        return;
    };
    let length = |witness: &mut Witness, path: &[Step]| match witness
        .request
        .args
        .get_mut(arg)
        .and_then(|v| value_at(v, path))
    {
        Some(Value::List(items)) => Some(items.len()),
        _ => None,
    };
    let mut at = 0;
    while let Some(len) = length(shortest, path) {
        if at >= len || (len as u64) <= count.0 {
            break;
        }
        let mut candidate = shortest.clone();
        if let Some(Value::List(items)) = candidate
            .request
            .args
            .get_mut(arg)
            .and_then(|v| value_at(v, path))
        {
            items.remove(at);
        }
        if replay(policy, &candidate) {
            *shortest = candidate;
        } else {
            at += 1;
        }
    }
    for index in 0..length(shortest, path).unwrap_or(0) {
        path.push(Step::Element(index));
        match &element.ty {
            ArgType::List { .. } => shorten_list(policy, shortest, arg, path, element),
            ArgType::Object(fields) => {
                for field in fields {
                    path.push(Step::Field(field.name.clone()));
                    shorten_list(policy, shortest, arg, path, field);
                    path.pop();
                }
            }
            _ => {}
        }
        path.pop();
    }
}

/// Replays a witness through the reference evaluator from a fresh state; true when every claim
/// holds.
pub fn replay(policy: &Policy, witness: &Witness) -> bool {
    let granted;
    let policy = match &witness.granted_role {
        None => policy,
        Some(role) => {
            let mut changed = policy.clone();
            if let Some(id) = changed.agent_id(&witness.request.agent) {
                changed.agents[id].roles.push(role.clone());
            }
            granted = changed;
            &granted
        }
    };
    let decision = eval::decide(policy, &witness.request, &mut State::new());
    witness.claims.iter().all(|claim| match claim {
        Claim::Verdict(verdict) => decision.verdict == *verdict,
        Claim::DeniedByRules => matches!(
            decision.reason,
            Some(Reason::Forbidden | Reason::NotPermitted)
        ),
        Claim::OtherPermitDecides { agent, rule } => {
            let mut other_permit = false;
            for entry in decision
                .trace
                .iter()
                .filter(|t| t.agent == *agent && t.applies)
            {
                match policy.rules.get(entry.rule).map(|r| r.effect) {
                    Some(RuleEffect::Forbid) => return false,
                    Some(RuleEffect::Permit) if entry.rule != *rule => other_permit = true,
                    _ => {}
                }
            }
            other_permit
        }
        Claim::Meets(condition) => {
            let request = &witness.request;
            let (Some(agent), Some(tool)) = (
                policy.agent_id(&request.agent),
                policy.tool_id(&request.tool),
            ) else {
                return false;
            };
            let Ok(args) = eval::validate_args(&policy.tools[tool], &request.args) else {
                return false;
            };
            eval::evaluate_condition(policy, request, &args, agent, tool, condition) == Some(true)
        }
        Claim::Applies {
            agent,
            rule,
            applies,
        } => {
            let found = decision
                .trace
                .iter()
                .find(|t| t.agent == *agent && t.rule == *rule);
            match found {
                Some(entry) => entry.applies == *applies,
                None => !*applies && decision.trace.iter().any(|t| t.agent == *agent),
            }
        }
    })
}

enum Answer {
    Sat(Model),
    Unsat(Vec<Bool>),
    Unknown(String),
}

/// One bucket's request space, queried on the solver all buckets share (creating a Z3 solver
/// costs more than most queries, so each query works in its own push/pop scope instead).
///
/// The Z3 space is built the first time a query needs it: a policy has a bucket per (agent,
/// tool) pair, a million at 1,000 × 1,000, and most are never asked anything (no rule or
/// assertion reaches them, and a pair whose acting agent has no permit is unreachable without
/// a query). What every bucket holds is its chains and which agents decide them.
struct Bucket<'p> {
    policy: &'p Policy,
    index: &'p RuleIndex,
    agent: AgentId,
    tool: ToolId,
    /// The delegation chains of the space and the agents deciding each; shared by the acting
    /// agent's tools that its chains reach alike (at 1,000 agents × 1,000 tools, most pairs).
    reach: Rc<ChainReach>,
    /// Whether more chains were cut.
    truncated: bool,
    symbols: Rc<Symbols>,
    space: std::cell::OnceCell<Box<Space>>,
    solver: Rc<Solver>,
    unknown_every: usize,
}

/// Which delegation chains reach a tool's rules for an acting agent, and whose rules decide
/// each.
#[derive(Debug, PartialEq, Eq)]
struct ChainReach {
    /// The chains of the space (the direct call first).
    chains: Vec<Chain>,
    /// For each chain, the agents whose rules decide it (acting agent first).
    required: Vec<Vec<AgentId>>,
    /// The agents whose rules a query of this bucket can conjoin (for its lists' bounds).
    conjoined: Vec<AgentId>,
    /// The agents whose rules decide some request of this bucket, ascending.
    members: Vec<AgentId>,
}

impl ChainReach {
    /// Of the acting agent's `chains` (`chains_within`), those that reach `tool`'s rules.
    fn new(policy: &Policy, agent: AgentId, tool: ToolId, chains: &[Chain]) -> ChainReach {
        // Chains a depth limit refuses never reach the rules (D-Depth).
        let (chains, required): (Vec<Chain>, Vec<Vec<AgentId>>) = chains
            .iter()
            .filter_map(|chain| {
                let required = encode::required_agents(policy, agent, tool, chain)?;
                Some((chain.clone(), required))
            })
            .unzip();
        // Lists are bounded by the atoms this bucket's queries can hold: the agents a chain
        // conjoins, and each chain's origin once more (the escalation search adds its direct
        // call, over this space).
        let mut conjoined: Vec<AgentId> = required.iter().flatten().copied().collect();
        conjoined.sort_unstable();
        conjoined.dedup();
        let mut members = conjoined.clone();
        let mut origins: Vec<AgentId> = chains
            .iter()
            .filter_map(|c| c.via.first())
            .filter_map(|name| policy.agents.iter().position(|a| a.name == *name))
            .collect();
        origins.sort_unstable();
        origins.dedup();
        conjoined.extend(origins);
        members.shrink_to_fit();
        ChainReach {
            chains,
            required,
            conjoined,
            members,
        }
    }
}

impl<'p> Bucket<'p> {
    fn new(
        policy: &'p Policy,
        index: &'p RuleIndex,
        symbols: &Rc<Symbols>,
        agent: AgentId,
        tool: ToolId,
        options: &Options,
        solver: &Rc<Solver>,
    ) -> Bucket<'p> {
        let (chains, truncated) =
            encode::chains_within(policy, agent, options.max_chains, index.horizon);
        let reach = Rc::new(ChainReach::new(policy, agent, tool, &chains));
        Bucket::with_reach(
            policy,
            index,
            symbols,
            (agent, tool),
            (reach, truncated),
            options,
            solver,
        )
    }

    /// As [`Bucket::new`], with the reach of the agent's chains (`chains_within`) computed by
    /// the caller, to be shared.
    fn with_reach(
        policy: &'p Policy,
        index: &'p RuleIndex,
        symbols: &Rc<Symbols>,
        (agent, tool): (AgentId, ToolId),
        (reach, truncated): (Rc<ChainReach>, bool),
        options: &Options,
        solver: &Rc<Solver>,
    ) -> Bucket<'p> {
        Bucket {
            policy,
            index,
            agent,
            tool,
            reach,
            truncated,
            symbols: Rc::clone(symbols),
            space: std::cell::OnceCell::new(),
            solver: Rc::clone(solver),
            unknown_every: options.unknown_every,
        }
    }

    /// The bucket's Z3 space, built on first use.
    fn space(&self) -> &Space {
        self.space.get_or_init(|| {
            let mut finite = self.index.finite.clone();
            finite.lists =
                encode::ListAtoms::for_bucket(&[self.policy], self.tool, &self.reach.conjoined, 1);
            Box::new(Space::with_finite_strings(
                (*self.symbols).clone(),
                &self.policy.tools[self.tool].args,
                &self.policy.environments,
                self.reach.chains.clone(),
                self.truncated,
                &finite,
            ))
        })
    }

    fn encoder(&self) -> Encoder<'_> {
        Encoder {
            policy: self.policy,
            index: self.index,
            space: self.space(),
            tool: self.tool,
            elements: Vec::new(),
        }
    }

    /// Whether `member`'s rules decide a request through chain `index`: it is the acting agent
    /// or a delegator whose hop does not widen.
    fn decides(&self, member: AgentId, index: usize) -> bool {
        self.reach
            .required
            .get(index)
            .is_some_and(|required| required.contains(&member))
    }

    /// Whether `member`'s rules decide some request of this bucket.
    fn has_member(&self, member: AgentId) -> bool {
        self.reach.members.binary_search(&member).is_ok()
    }

    /// Rule `rule` applies to `member`, which decides the request on whichever chain it comes
    /// through: the acting agent, or a delegator on the chain (the semantics evaluates each
    /// required agent's rules with the request's depth and origin).
    fn applies(&self, member: AgentId, rule: RuleId) -> Bool {
        let encoder = self.encoder();
        let options: Vec<Bool> = self
            .reach
            .chains
            .iter()
            .enumerate()
            .filter(|(index, _)| self.decides(member, *index))
            .map(|(index, chain)| {
                Bool::and(&[
                    self.space().is_chain(index),
                    encoder.applies(rule, member, chain),
                ])
            })
            .collect();
        Bool::or(&options)
    }

    fn any(&self, member: AgentId, rules: &[RuleId]) -> Bool {
        let parts: Vec<Bool> = rules.iter().map(|&r| self.applies(member, r)).collect();
        Bool::or(&parts)
    }

    /// The rules of `effect` whose patterns match `member` and this bucket's tool.
    fn candidates(&self, member: AgentId, effect: RuleEffect) -> Vec<RuleId> {
        self.index
            .candidates(self.policy, member, self.tool, effect)
    }

    fn ask(&self, stats: &mut Stats, formulas: &[Bool]) -> Answer {
        self.ask_tracked(stats, formulas, &[])
    }

    /// Checks the formulas under tracked assumptions; an unsat answer carries the core.
    fn ask_tracked(&self, stats: &mut Stats, formulas: &[Bool], tracked: &[Bool]) -> Answer {
        stats.queries += 1;
        if self.unknown_every > 0 && stats.queries.is_multiple_of(self.unknown_every) {
            stats.unknown += 1;
            return Answer::Unknown("forced by the test options".to_owned());
        }
        self.solver.push();
        self.solver.assert(&self.space().domain);
        for formula in formulas {
            self.solver.assert(formula);
        }
        let mut result = self.solver.check_assumptions(tracked);
        if result == SatResult::Sat && !self.model_is_receivable() {
            // Z3's strings hold any characters; ask again for one whose strings are UTF-8 bytes.
            self.space().assert_receivable(&self.solver);
            result = self.solver.check_assumptions(tracked);
        }
        let answer = match result {
            SatResult::Sat => match self.solver.get_model() {
                Some(model) => Answer::Sat(model),
                None => Answer::Unknown("the solver gave no model".to_owned()),
            },
            SatResult::Unsat => Answer::Unsat(self.solver.get_unsat_core()),
            SatResult::Unknown => {
                stats.unknown += 1;
                Answer::Unknown(
                    self.solver
                        .get_reason_unknown()
                        .unwrap_or_else(|| "unknown".to_owned()),
                )
            }
        };
        self.solver.pop(1);
        answer
    }

    /// Whether every string of the current model is one the gate can receive (valid UTF-8).
    fn model_is_receivable(&self) -> bool {
        self.solver
            .get_model()
            .is_some_and(|model| self.space().receivable(&model))
    }

    /// The request a model describes.
    fn request(&self, model: &Model) -> Request {
        request_from_model(self.policy, self.agent, self.tool, self.space(), model)
    }

    fn agent_name(&self) -> &str {
        &self.policy.agents[self.agent].name
    }
}

/// The request a model of `space` describes, for `agent` calling `tool` of `policy`.
/// A variable's value in a model, as a request gives it (`arg` is its schema).
fn value_from_model(model: &Model, space: &Space, var: &Zv, arg: &ArgSchema) -> Option<Value> {
    match var {
        // A decimal's units are written back as the number they stand for.
        Zv::Int(v) => model
            .eval(v, true)
            .and_then(|v| v.as_i64())
            .map(|units| match arg.ty {
                ArgType::Decimal { scale, .. } => {
                    Value::Decimal(tollgate_grammar::format::decimal(i128::from(units), scale))
                }
                _ => Value::Int(units),
            }),
        Zv::Bool(v) => model
            .eval(v, true)
            .and_then(|v| v.as_bool())
            .map(Value::Bool),
        Zv::Str(v) => string_from_model(model, v).map(Value::Str),
        Zv::Finite(value) => value.value(model).map(Value::Str),
        Zv::Sym(v) => model
            .eval(v, true)
            .and_then(|v| v.as_i64())
            .and_then(|i| space.symbols.name(i))
            .map(|name| Value::Str(name.to_owned())),
        // The list's first `len` elements.
        Zv::List(list) => {
            let ArgType::List { element, .. } = &arg.ty else {
                return None;
            };
            let len = model.eval(&list.len, true).and_then(|v| v.as_i64())?;
            let len = usize::try_from(len).ok()?.min(list.elements.len());
            let items = list.elements.get(..len)?;
            items
                .iter()
                .map(|item| value_from_model(model, space, item, element))
                .collect::<Option<Vec<_>>>()
                .map(Value::List)
        }
        // The fields the model gives: every required one, an optional one when present.
        Zv::Object(object) => {
            let ArgType::Object(schema) = &arg.ty else {
                return None;
            };
            let mut fields = BTreeMap::new();
            for field in schema {
                if let Some(given) = object.present.get(&field.name) {
                    if !model.eval(given, true).and_then(|v| v.as_bool())? {
                        continue;
                    }
                }
                let var = object.fields.get(&field.name)?;
                fields.insert(
                    field.name.clone(),
                    value_from_model(model, space, var, field)?,
                );
            }
            Some(Value::Object(fields))
        }
    }
}

pub(crate) fn request_from_model(
    policy: &Policy,
    agent: AgentId,
    tool: ToolId,
    space: &Space,
    model: &Model,
) -> Request {
    let tool = &policy.tools[tool];
    let mut args = BTreeMap::new();
    for arg in &tool.args {
        let Some(var) = space.args.get(&arg.name) else {
            continue;
        };
        // An optional argument the model leaves out is left out of the request.
        if let Some(present) = space.present.get(&arg.name) {
            if model.eval(present, true).and_then(|v| v.as_bool()) != Some(true) {
                continue;
            }
        }
        let value = value_from_model(model, space, var, arg);
        if let Some(value) = value {
            args.insert(arg.name.clone(), value);
        }
    }
    let chain = eval_index(model, &space.chain);
    let via = space
        .chains
        .get(chain)
        .map(|c| c.via.clone())
        .unwrap_or_default();
    let env = if policy.environments.is_empty() {
        None
    } else {
        let index = model
            .eval(&space.env, true)
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        space.symbols.name(index).map(str::to_owned)
    };
    let hour = model
        .eval(&space.hour, true)
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    Request {
        agent: policy.agents[agent].name.clone(),
        tool: tool.name.clone(),
        args,
        via,
        env,
        time: hour * 3_600,
    }
}

fn eval_index(model: &Model, var: &Int) -> usize {
    model
        .eval(var, true)
        .and_then(|v| v.as_u64())
        .and_then(|v| usize::try_from(v).ok())
        .unwrap_or(0)
}

/// Runs every analysis.
pub fn verify(policy: &Policy, options: &Options) -> Report {
    verify_with_graph(policy, options).0
}

/// Runs every analysis and returns the escalation graph too.
pub fn verify_with_graph(policy: &Policy, options: &Options) -> (Report, graph::Graph) {
    let mut config = z3::Config::new();
    config.set_timeout_msec(u64::from(options.timeout_ms));
    z3::with_z3_config(&config, || {
        let index = RuleIndex::new(policy);
        Verifier::new(policy, &index, *options).run()
    })
}

struct Verifier<'p> {
    policy: &'p Policy,
    options: Options,
    symbols: Symbols,
    buckets: BTreeMap<(AgentId, ToolId), Bucket<'p>>,
    report: Report,
    graph: Option<graph::Graph>,
}

/// An agent whose rules a question is about, and the (acting agent, tool) bucket it is asked in.
type Position = (AgentId, (AgentId, ToolId));

/// The outcome of asking one question of several buckets.
enum Search {
    /// A request, and the agent whose rules the question was about.
    Found(Request, AgentId),
    NotFound,
    Unknown(String),
}

impl<'p> Verifier<'p> {
    fn new(policy: &'p Policy, index: &'p RuleIndex, options: Options) -> Self {
        let symbols = Symbols::of(&[policy]);
        let shared = Rc::new(symbols.clone());
        let mut buckets = BTreeMap::new();
        let solver = new_solver(&options);
        for agent in 0..policy.agents.len() {
            // An agent's chains are the same for every tool; each tool keeps those it reaches,
            // and tools reached alike share one `ChainReach`.
            let (chains, truncated) =
                encode::chains_within(policy, agent, options.max_chains, index.horizon);
            let mut distinct: Vec<Rc<ChainReach>> = Vec::new();
            for tool in 0..policy.tools.len() {
                let reach = ChainReach::new(policy, agent, tool, &chains);
                let reach = match distinct.iter().find(|known| ***known == reach) {
                    Some(known) => Rc::clone(known),
                    None => {
                        let reach = Rc::new(reach);
                        distinct.push(Rc::clone(&reach));
                        reach
                    }
                };
                buckets.insert(
                    (agent, tool),
                    Bucket::with_reach(
                        policy,
                        index,
                        &shared,
                        (agent, tool),
                        (reach, truncated),
                        &options,
                        &solver,
                    ),
                );
            }
        }
        Verifier {
            policy,
            options,
            symbols,
            report: Report {
                stats: Stats {
                    buckets: buckets.len(),
                    ..Stats::default()
                },
                ..Report::default()
            },
            buckets,
            graph: None,
        }
    }

    fn run(mut self) -> (Report, graph::Graph) {
        self.rules();
        self.assertions_and_reach();
        (self.report, self.graph.unwrap_or_default())
    }

    fn push_about(&mut self, subject: Subject, diagnostic: Diagnostic, witnesses: Vec<Witness>) {
        // A witness that does not replay means the encoding and the evaluator disagree: say so.
        if let Some(bad) = witnesses.iter().find(|w| !replay(self.policy, w)) {
            let what = diagnostic.message.clone();
            let d = diagnostic::inconclusive(
                &what,
                diagnostic.span,
                &format!("its witness ({}) did not replay", bad.label),
            );
            self.report.findings.push(Finding {
                diagnostic: d,
                witnesses,
                subject,
            });
            return;
        }
        let witnesses = witnesses
            .iter()
            .map(|witness| shorten_lists(self.policy, witness))
            .collect();
        self.report.findings.push(Finding {
            diagnostic,
            witnesses,
            subject,
        });
    }

    fn inconclusive(&mut self, what: &str, span: tollgate_grammar::Span, why: &str) {
        let d = diagnostic::inconclusive(what, span, why);
        self.report.findings.push(Finding {
            diagnostic: d,
            witnesses: Vec::new(),
            subject: Subject::None,
        });
    }

    /// The positions where the patterns' agents act themselves: (agent, its bucket).
    fn buckets_of(&self, principal: &PrincipalPattern, tools: &ToolPattern) -> Vec<Position> {
        let mut out = Vec::new();
        for agent in self.policy.agents_matching(principal) {
            for tool in self.policy.tools_matching(tools) {
                out.push((agent, (agent, tool)));
            }
        }
        out
    }

    /// Every position a rule's agents can take: (agent, a bucket in which its rules decide some
    /// request), as the acting agent or as a delegator on a chain.
    fn positions_of(&self, principal: &PrincipalPattern, tools: &ToolPattern) -> Vec<Position> {
        let mut out = Vec::new();
        for member in self.policy.agents_matching(principal) {
            for tool in self.policy.tools_matching(tools) {
                for acting in 0..self.policy.agents.len() {
                    if self
                        .buckets
                        .get(&(acting, tool))
                        .is_some_and(|bucket| bucket.has_member(member))
                    {
                        out.push((member, (acting, tool)));
                    }
                }
            }
        }
        out
    }

    /// Looks for a request in any of the positions satisfying `formulas(bucket, member)`.
    fn search(
        &mut self,
        positions: &[Position],
        formulas: impl Fn(&Bucket<'p>, AgentId) -> Vec<Bool>,
    ) -> Search {
        let mut unknown = None;
        for (member, key) in positions {
            let Some(bucket) = self.buckets.get(key) else {
                continue;
            };
            let query = formulas(bucket, *member);
            match bucket.ask(&mut self.report.stats, &query) {
                Answer::Sat(model) => return Search::Found(bucket.request(&model), *member),
                Answer::Unsat(_) => {
                    if bucket.truncated {
                        unknown =
                            Some("too many delegation chains to consider them all".to_owned());
                    }
                }
                Answer::Unknown(reason) => unknown = Some(reason),
            }
        }
        match unknown {
            Some(reason) => Search::Unknown(reason),
            None => Search::NotFound,
        }
    }

    fn rule_ref(&self, rule: RuleId) -> (String, tollgate_grammar::Span) {
        (self.policy.rule_name(rule), self.policy.rules[rule].span)
    }

    fn rules(&mut self) {
        let policy = self.policy;
        let mut live_permits = Vec::new();
        let mut effective_forbids = Vec::new();
        for (id, rule) in policy.rules.iter().enumerate() {
            let name = policy.rule_name(id);
            let keys = self.positions_of(&rule.principal, &rule.tools);
            let granted_only = matches!(&rule.principal, PrincipalPattern::Role(role)
                if policy.tools.iter().any(|t| t.grants.as_ref() == Some(role)));
            if keys.is_empty() && granted_only {
                // It applies once a `grant` tool gives the role: the escalation analysis covers it.
                continue;
            }
            if keys.is_empty() {
                let d = diagnostic::never_applies(
                    &name,
                    rule.span,
                    "no declared agent and tool match its patterns",
                );
                self.push_about(Subject::Rule(id), d, Vec::new());
                continue;
            }
            let (applies, member) = match self.search(&keys, |b, m| vec![b.applies(m, id)]) {
                Search::Found(request, member) => (request, member),
                Search::NotFound => {
                    let d =
                        diagnostic::never_applies(&name, rule.span, "its condition can never hold");
                    self.push_about(Subject::Rule(id), d, Vec::new());
                    continue;
                }
                Search::Unknown(why) => {
                    self.inconclusive(&format!("whether {name} can apply"), rule.span, &why);
                    continue;
                }
            };
            let member_name = policy.agents[member].name.clone();
            match rule.effect {
                RuleEffect::Permit => {
                    // Dead: wherever it applies, some forbid applies too.
                    let alive = self.search(&keys, |b, m| {
                        let forbids = b.candidates(m, RuleEffect::Forbid);
                        vec![b.applies(m, id), b.any(m, &forbids).not()]
                    });
                    match alive {
                        Search::Found(..) => live_permits.push(id),
                        Search::Unknown(why) => {
                            self.inconclusive(
                                &format!("whether {name} is overridden everywhere"),
                                rule.span,
                                &why,
                            );
                            continue;
                        }
                        Search::NotFound => {
                            let covering = self.covering(&keys, id, RuleEffect::Forbid);
                            let covering: Vec<(String, tollgate_grammar::Span)> =
                                covering.into_iter().map(|r| self.rule_ref(r)).collect();
                            let witness = Witness {
                                label: format!("{name} applies and is overridden"),
                                claims: vec![
                                    Claim::Applies {
                                        agent: member_name.clone(),
                                        rule: id,
                                        applies: true,
                                    },
                                    Claim::Verdict(Verdict::Deny),
                                ],
                                request: applies,
                                granted_role: None,
                            };
                            let d = diagnostic::dead_permit(&name, rule.span, &covering);
                            self.push_about(Subject::Rule(id), d, vec![witness]);
                        }
                    }
                }
                RuleEffect::Forbid => {
                    let effective = self.search(&keys, |b, m| {
                        let permits = b.candidates(m, RuleEffect::Permit);
                        vec![b.applies(m, id), b.any(m, &permits)]
                    });
                    match effective {
                        Search::Found(..) => effective_forbids.push(id),
                        Search::Unknown(why) => {
                            self.inconclusive(
                                &format!("whether {name} overrides a permit"),
                                rule.span,
                                &why,
                            );
                            continue;
                        }
                        Search::NotFound => {
                            let witness = Witness {
                                label: format!("{name} applies where nothing is permitted"),
                                claims: vec![
                                    Claim::Applies {
                                        agent: member_name.clone(),
                                        rule: id,
                                        applies: true,
                                    },
                                    Claim::Verdict(Verdict::Deny),
                                ],
                                request: applies,
                                granted_role: None,
                            };
                            let d = diagnostic::vacuous_forbid(&name, rule.span);
                            self.push_about(Subject::Rule(id), d, vec![witness]);
                        }
                    }
                }
            }
        }
        self.redundancy(&live_permits, &effective_forbids);
        self.overlaps(&live_permits, &effective_forbids);
    }

    /// The rules of `effect` (other than `rule`) that together cover `rule` in every bucket,
    /// from unsat cores.
    fn covering(&mut self, keys: &[Position], rule: RuleId, effect: RuleEffect) -> Vec<RuleId> {
        self.core_rules(keys, rule, effect, |_, _| Vec::new())
    }

    /// The rules of `effect` other than `rule` that the unsat cores of "`rule` applies, `extra`
    /// holds, and none of the others apply" name, over every bucket.
    fn core_rules(
        &mut self,
        keys: &[Position],
        rule: RuleId,
        effect: RuleEffect,
        extra: impl Fn(&Bucket<'p>, AgentId) -> Vec<Bool>,
    ) -> Vec<RuleId> {
        let mut found = BTreeSet::new();
        let mut unknown = None;
        for (member, key) in keys {
            let member = *member;
            let Some(bucket) = self.buckets.get(key) else {
                continue;
            };
            let others: Vec<RuleId> = bucket
                .candidates(member, effect)
                .into_iter()
                .filter(|&r| r != rule)
                .collect();
            let literals: Vec<Bool> = others
                .iter()
                .map(|r| Bool::new_const(format!("track_{r}")))
                .collect();
            let mut formulas = vec![bucket.applies(member, rule)];
            formulas.extend(extra(bucket, member));
            for (literal, other) in literals.iter().zip(&others) {
                formulas.push(literal.implies(bucket.applies(member, *other).not()));
            }
            match bucket.ask_tracked(&mut self.report.stats, &formulas, &literals) {
                Answer::Unsat(core) => {
                    for (literal, other) in literals.iter().zip(&others) {
                        if core.iter().any(|c| c == literal) {
                            found.insert(*other);
                        }
                    }
                }
                // The finding stands on its own query; only its list of covering rules is short.
                Answer::Unknown(why) => unknown = Some(why),
                Answer::Sat(_) => {}
            }
        }
        if let Some(why) = unknown {
            let name = self.policy.rule_name(rule);
            let span = self.policy.rules[rule].span;
            self.inconclusive(&format!("which rules cover {name}"), span, &why);
        }
        found.into_iter().collect()
    }

    fn redundancy(&mut self, permits: &[RuleId], forbids: &[RuleId]) {
        let policy = self.policy;
        for &id in permits {
            let rule = &policy.rules[id];
            let keys = self.positions_of(&rule.principal, &rule.tools);
            // Removing the permit changes a decision iff somewhere it is the only permit and no
            // forbid applies.
            let needed = self.search(&keys, |b, m| {
                let others: Vec<RuleId> = b
                    .candidates(m, RuleEffect::Permit)
                    .into_iter()
                    .filter(|&r| r != id)
                    .collect();
                let forbids = b.candidates(m, RuleEffect::Forbid);
                vec![
                    b.applies(m, id),
                    b.any(m, &others).not(),
                    b.any(m, &forbids).not(),
                ]
            });
            match needed {
                Search::Found(..) => {}
                Search::Unknown(why) => self.inconclusive(
                    &format!("whether {} is redundant", policy.rule_name(id)),
                    rule.span,
                    &why,
                ),
                Search::NotFound => {
                    let witness_request = self.search(&keys, |b, m| {
                        let forbids = b.candidates(m, RuleEffect::Forbid);
                        vec![b.applies(m, id), b.any(m, &forbids).not()]
                    });
                    let covering: Vec<(String, tollgate_grammar::Span)> = self
                        .covering_allowed(&keys, id)
                        .into_iter()
                        .map(|r| self.rule_ref(r))
                        .collect();
                    let witnesses = match witness_request {
                        Search::Found(request, member) => vec![Witness {
                            label: format!(
                                "{} applies, and so does another permit",
                                policy.rule_name(id)
                            ),
                            claims: vec![
                                Claim::Applies {
                                    agent: policy.agents[member].name.clone(),
                                    rule: id,
                                    applies: true,
                                },
                                Claim::OtherPermitDecides {
                                    agent: policy.agents[member].name.clone(),
                                    rule: id,
                                },
                            ],
                            request,
                            granted_role: None,
                        }],
                        Search::NotFound => Vec::new(),
                        Search::Unknown(why) => {
                            self.inconclusive(
                                &format!("a witness for {}", policy.rule_name(id)),
                                rule.span,
                                &why,
                            );
                            Vec::new()
                        }
                    };
                    let d = diagnostic::redundant(&policy.rule_name(id), rule.span, &covering);
                    self.push_about(Subject::Rule(id), d, witnesses);
                }
            }
        }
        for &id in forbids {
            let rule = &policy.rules[id];
            let keys = self.positions_of(&rule.principal, &rule.tools);
            let needed = self.search(&keys, |b, m| {
                let others: Vec<RuleId> = b
                    .candidates(m, RuleEffect::Forbid)
                    .into_iter()
                    .filter(|&r| r != id)
                    .collect();
                let permits = b.candidates(m, RuleEffect::Permit);
                vec![
                    b.applies(m, id),
                    b.any(m, &permits),
                    b.any(m, &others).not(),
                ]
            });
            match needed {
                Search::Found(..) => {}
                Search::Unknown(why) => self.inconclusive(
                    &format!("whether {} is redundant", policy.rule_name(id)),
                    rule.span,
                    &why,
                ),
                Search::NotFound => {
                    let covering: Vec<(String, tollgate_grammar::Span)> = self
                        .covering(&keys, id, RuleEffect::Forbid)
                        .into_iter()
                        .map(|r| self.rule_ref(r))
                        .collect();
                    let witness_request = self.search(&keys, |b, m| {
                        let permits = b.candidates(m, RuleEffect::Permit);
                        vec![b.applies(m, id), b.any(m, &permits)]
                    });
                    let witnesses = match witness_request {
                        Search::Found(request, member) => vec![Witness {
                            label: format!(
                                "{} applies, and so does another forbid",
                                policy.rule_name(id)
                            ),
                            claims: vec![
                                Claim::Applies {
                                    agent: policy.agents[member].name.clone(),
                                    rule: id,
                                    applies: true,
                                },
                                Claim::Verdict(Verdict::Deny),
                            ],
                            request,
                            granted_role: None,
                        }],
                        Search::NotFound => Vec::new(),
                        Search::Unknown(why) => {
                            self.inconclusive(
                                &format!("a witness for {}", policy.rule_name(id)),
                                rule.span,
                                &why,
                            );
                            Vec::new()
                        }
                    };
                    let d = diagnostic::redundant(&policy.rule_name(id), rule.span, &covering);
                    self.push_about(Subject::Rule(id), d, witnesses);
                }
            }
        }
    }

    /// For a redundant permit: the other permits that decide in its place (unsat cores of
    /// "it applies, no forbid, none of the others").
    fn covering_allowed(&mut self, keys: &[Position], rule: RuleId) -> Vec<RuleId> {
        self.core_rules(keys, rule, RuleEffect::Permit, |bucket, member| {
            let forbids = bucket.candidates(member, RuleEffect::Forbid);
            vec![bucket.any(member, &forbids).not()]
        })
    }

    fn overlaps(&mut self, permits: &[RuleId], forbids: &[RuleId]) {
        let policy = self.policy;
        for &permit in permits {
            for &forbid in forbids {
                let (p, f) = (&policy.rules[permit], &policy.rules[forbid]);
                let keys: Vec<Position> = self
                    .positions_of(&p.principal, &p.tools)
                    .into_iter()
                    .filter(|&(member, (_, tool))| {
                        policy.principal_matches(&f.principal, member)
                            && policy.tool_matches(&f.tools, tool)
                    })
                    .collect();
                if keys.is_empty() {
                    continue;
                }
                let (request, member) = match self.search(&keys, |b, m| {
                    vec![b.applies(m, permit), b.applies(m, forbid)]
                }) {
                    Search::Found(request, member) => (request, member),
                    Search::NotFound => continue,
                    Search::Unknown(why) => {
                        self.inconclusive(
                            &format!(
                                "whether {} and {} overlap",
                                policy.rule_name(permit),
                                policy.rule_name(forbid)
                            ),
                            f.span,
                            &why,
                        );
                        continue;
                    }
                };
                let class = match self.search(&keys, |b, m| {
                    vec![b.applies(m, forbid), b.applies(m, permit).not()]
                }) {
                    Search::Found(..) => "partial overlap",
                    Search::NotFound => "the permit covers the forbid",
                    Search::Unknown(why) => {
                        self.inconclusive(
                            &format!(
                                "how {} and {} overlap",
                                policy.rule_name(permit),
                                policy.rule_name(forbid)
                            ),
                            f.span,
                            &why,
                        );
                        "not classified"
                    }
                };
                let witness = Witness {
                    label: "both apply".to_owned(),
                    claims: vec![
                        Claim::Applies {
                            agent: policy.agents[member].name.clone(),
                            rule: permit,
                            applies: true,
                        },
                        Claim::Applies {
                            agent: policy.agents[member].name.clone(),
                            rule: forbid,
                            applies: true,
                        },
                        Claim::Verdict(Verdict::Deny),
                    ],
                    request,
                    granted_role: None,
                };
                let d = diagnostic::overlap(
                    &policy.rule_name(permit),
                    p.span,
                    &policy.rule_name(forbid),
                    f.span,
                    class,
                );
                self.push_about(Subject::Pair(permit, forbid), d, vec![witness]);
            }
        }
    }

    fn assertion_name(&self, index: usize) -> String {
        match self
            .policy
            .assertions
            .get(index)
            .and_then(|a| a.label.clone())
        {
            Some(label) => label,
            None => format!("assertion #{}", index + 1),
        }
    }

    fn assertions_and_reach(&mut self) {
        let policy = self.policy;
        let reach = self.reach();
        let mut asserted = BTreeSet::new();
        for (index, assertion) in policy.assertions.iter().enumerate() {
            let name = self.assertion_name(index);
            match &assertion.kind {
                AssertionKind::Never {
                    principal,
                    tools,
                    condition,
                } => {
                    let keys = self.buckets_of(principal, tools);
                    let condition = condition.clone();
                    let found = self.search(&keys, |b, _| {
                        let encoder = b.encoder();
                        let mut query = vec![encoder.allowed(b.agent)];
                        if let Some(condition) = &condition {
                            query.push(condition_on_chains(b, condition));
                        }
                        query
                    });
                    match found {
                        Search::NotFound => self.report.proved.push(name),
                        Search::Unknown(why) => self.inconclusive(
                            &format!("whether {name} holds"),
                            assertion.span,
                            &why,
                        ),
                        Search::Found(request, _) => {
                            let decision = eval::decide(policy, &request, &mut State::new());
                            let rule = decision.rule.map(|r| self.rule_ref(r));
                            let detail = format!("`{}` may call `{}`", request.agent, request.tool);
                            let mut claims = vec![Claim::Verdict(Verdict::Allow)];
                            claims.extend(condition.map(Claim::Meets));
                            let witness = Witness {
                                label: "allowed, though the assertion says never".to_owned(),
                                claims,
                                request,
                                granted_role: None,
                            };
                            let d = diagnostic::assertion_violated(
                                &name,
                                assertion.span,
                                &detail,
                                rule,
                            );
                            self.push_about(Subject::Assertion(index), d, vec![witness]);
                        }
                    }
                }
                AssertionKind::Always {
                    principal,
                    tools,
                    condition,
                } => {
                    let keys = self.buckets_of(principal, tools);
                    let condition = condition.clone();
                    let found = self.search(&keys, |b, _| {
                        let encoder = b.encoder();
                        let direct = &b.reach.chains[0];
                        let mut query = vec![
                            b.space().is_chain(0),
                            encoder.authorized(b.agent, direct).not(),
                        ];
                        if let Some(condition) = &condition {
                            query.push(
                                encoder
                                    .condition(b.agent, direct, condition)
                                    .unwrap_or_else(|| Bool::from_bool(false)),
                            );
                        }
                        query
                    });
                    match found {
                        Search::NotFound => self.report.proved.push(name),
                        Search::Unknown(why) => self.inconclusive(
                            &format!("whether {name} holds"),
                            assertion.span,
                            &why,
                        ),
                        Search::Found(request, _) => {
                            let detail =
                                format!("`{}` is denied `{}` here", request.agent, request.tool);
                            let mut claims =
                                vec![Claim::Verdict(Verdict::Deny), Claim::DeniedByRules];
                            claims.extend(condition.map(Claim::Meets));
                            let witness = Witness {
                                label: "denied by the rules, though the assertion says always"
                                    .to_owned(),
                                claims,
                                request,
                                granted_role: None,
                            };
                            let d = diagnostic::assertion_violated(
                                &name,
                                assertion.span,
                                &detail,
                                None,
                            );
                            self.push_about(Subject::Assertion(index), d, vec![witness]);
                        }
                    }
                }
                AssertionKind::NoTrifecta { principal } => {
                    let mut violated = false;
                    let mut undecided = None;
                    for agent in policy.agents_matching(principal) {
                        if let Some((_, why)) = reach
                            .unknown
                            .iter()
                            .find(|((origin, _), _)| *origin == agent)
                        {
                            undecided = Some(why.clone());
                        }
                        if let Some(tools) = trifecta_of(policy, &reach, agent) {
                            violated = true;
                            // The assertion's failure is the trifecta's report: TG1008 is not
                            // given again for this agent.
                            asserted.insert(agent);
                            let (witnesses, rules, names) = trifecta_legs(policy, &tools);
                            let d = diagnostic::trifecta_assertion_violated(
                                &name,
                                assertion.span,
                                &policy.agents[agent].name,
                                [names[0], names[1], names[2]],
                                &rules,
                            );
                            self.push_about(Subject::Assertion(index), d, witnesses);
                        }
                    }
                    match undecided {
                        // A trifecta found is one whatever the undecided queries say.
                        Some(why) if !violated => self.inconclusive(
                            &format!("whether {name} holds"),
                            assertion.span,
                            &why,
                        ),
                        _ if !violated => self.report.proved.push(name),
                        _ => {}
                    }
                }
            }
        }
        self.trifectas(&reach, &asserted);
        let escalations = graph::escalations(self, &reach);
        for finding in escalations {
            self.push_about(finding.subject, finding.diagnostic, finding.witnesses);
        }
        self.stale_acknowledgements(&reach);
    }

    /// TG1010 for a trifecta or escalation acknowledgement that matches no finding. Only said
    /// when every query was decided: an undecided one might have found what it acknowledges.
    /// Widening acknowledgements are for `diff` to judge.
    fn stale_acknowledgements(&mut self, reach: &Reach) {
        let policy = self.policy;
        let undecided = self.report.stats.unknown > 0
            || self
                .report
                .findings
                .iter()
                .any(|f| f.diagnostic.code == diagnostic::Code::Inconclusive);
        if undecided {
            return;
        }
        for acknowledgement in &policy.acknowledgements {
            let (stale, what) = match acknowledgement.kind {
                AcknowledgementKind::Trifecta(agent) => (
                    trifecta_of(policy, reach, agent).is_none(),
                    format!("trifecta {}", policy.agents[agent].name),
                ),
                AcknowledgementKind::Escalation(agent, tool) => (
                    !self.report.findings.iter().any(|f| {
                        f.diagnostic.code == diagnostic::Code::Escalation
                            && f.subject == Subject::AgentTool(agent, tool)
                    }),
                    format!(
                        "escalation {} -> {}",
                        policy.agents[agent].name, policy.tools[tool].name
                    ),
                ),
                AcknowledgementKind::Widening(..) => continue,
            };
            if stale {
                let d = diagnostic::stale_acknowledgement(&what, acknowledgement.span);
                self.report.findings.push(Finding {
                    diagnostic: d,
                    witnesses: Vec::new(),
                    subject: Subject::None,
                });
            }
        }
    }

    /// For every agent: the tools it can get called — directly, or by delegates acting for it
    /// (chains it starts) — each with a witness request.
    fn reach(&mut self) -> Reach {
        let policy = self.policy;
        let mut reach = Reach::default();
        for agent in 0..policy.agents.len() {
            for tool in 0..policy.tools.len() {
                let Some(bucket) = self.buckets.get(&(agent, tool)) else {
                    continue;
                };
                // The acting agent's own rules decide every chain (D-Chain): without a permit
                // among them, no chain is allowed, and no query is needed to say so.
                if bucket.candidates(agent, RuleEffect::Permit).is_empty() {
                    continue;
                }
                let encoder = bucket.encoder();
                for (index, chain) in bucket.reach.chains.iter().enumerate() {
                    let origin = chain
                        .via
                        .first()
                        .and_then(|name| policy.agent_id(name))
                        .unwrap_or(agent);
                    if index > 0 && reach.entries.contains_key(&(origin, tool)) {
                        continue;
                    }
                    let query = vec![
                        bucket.space().is_chain(index),
                        encoder.allowed_on(agent, index),
                    ];
                    match bucket.ask(&mut self.report.stats, &query) {
                        Answer::Sat(model) => {
                            let request = bucket.request(&model);
                            let witness = Reached {
                                label: format!(
                                    "{} may call {}{}",
                                    bucket.agent_name(),
                                    policy.tools[tool].name,
                                    via_text(chain)
                                ),
                                request,
                            };
                            if index == 0 {
                                reach.direct.insert((agent, tool), witness.clone());
                            }
                            reach.entries.entry((origin, tool)).or_insert(witness);
                        }
                        Answer::Unsat(_) => {}
                        Answer::Unknown(why) => {
                            if index == 0 {
                                reach.direct_unknown.insert((agent, tool));
                            }
                            reach.unknown.push(((origin, tool), why));
                        }
                    }
                }
            }
        }
        reach
    }

    /// TG1008 for every agent with the lethal trifecta, except those a violated
    /// `assert no trifecta` already reports.
    fn trifectas(&mut self, reach: &Reach, asserted: &BTreeSet<AgentId>) {
        let policy = self.policy;
        for agent in 0..policy.agents.len() {
            if asserted.contains(&agent) {
                continue;
            }
            let Some(tools) = trifecta_of(policy, reach, agent) else {
                continue;
            };
            let acknowledged = policy
                .acknowledgements
                .iter()
                .any(|a| a.kind == AcknowledgementKind::Trifecta(agent));
            let (witnesses, rules, names) = trifecta_legs(policy, &tools);
            let d = diagnostic::trifecta(
                &policy.agents[agent].name,
                policy.agents[agent].span,
                [names[0], names[1], names[2]],
                acknowledged,
                &rules,
            );
            self.push_about(Subject::Agent(agent), d, witnesses);
        }
        for ((agent, tool), why) in reach.unknown.clone() {
            let what = format!(
                "whether `{}` can reach `{}`",
                policy.agents[agent].name, policy.tools[tool].name
            );
            self.inconclusive(&what, policy.agents[agent].span, &why);
        }
    }
}

fn via_text(chain: &Chain) -> String {
    if chain.via.is_empty() {
        String::new()
    } else {
        format!(" via [{}]", chain.via.join(", "))
    }
}

/// A condition of an assertion, for the acting agent on whichever chain the request takes.
fn condition_on_chains(bucket: &Bucket<'_>, condition: &Condition) -> Bool {
    let encoder = bucket.encoder();
    let options: Vec<Bool> = bucket
        .reach
        .chains
        .iter()
        .enumerate()
        .map(|(index, chain)| {
            Bool::and(&[
                bucket.space().is_chain(index),
                encoder
                    .condition(bucket.agent, chain, condition)
                    .unwrap_or_else(|| Bool::from_bool(false)),
            ])
        })
        .collect();
    Bool::or(&options)
}

#[derive(Clone, Debug)]
pub struct Reached {
    pub label: String,
    pub request: Request,
}

/// What each agent can get done, from a fresh state.
#[derive(Clone, Debug, Default)]
pub struct Reach {
    /// (agent, tool): the agent may call the tool itself, directly.
    pub direct: BTreeMap<(AgentId, ToolId), Reached>,
    /// (origin, tool): the tool is called directly or by a delegate in a chain the agent starts.
    pub entries: BTreeMap<(AgentId, ToolId), Reached>,
    /// (agent, tool) pairs whose direct call the solver left undecided.
    pub direct_unknown: BTreeSet<(AgentId, ToolId)>,
    /// (origin, tool) pairs some reach query left undecided, with the solver's reason.
    pub unknown: Vec<((AgentId, ToolId), String)>,
}

impl Reach {
    /// Whether every query about `origin` getting `tool` called was decided.
    pub fn decided(&self, origin: AgentId, tool: ToolId) -> bool {
        !self
            .unknown
            .iter()
            .any(|((o, t), _)| *o == origin && *t == tool)
    }
}

/// The three legs of a trifecta (private, untrusted, external, in that order): a witness for
/// each, labelled with the leg it shows; the rule allowing each; the tools' names.
fn trifecta_legs<'p>(
    policy: &'p Policy,
    tools: &[(ToolId, Reached)],
) -> (
    Vec<Witness>,
    Vec<(String, tollgate_grammar::Span)>,
    Vec<&'p str>,
) {
    let legs = ["private data", "untrusted input", "external action"];
    let mut witnesses = Vec::new();
    let mut rules = Vec::new();
    let mut names = Vec::new();
    for ((tool, reached), leg) in tools.iter().zip(legs) {
        let tool_name = policy.tools[*tool].name.as_str();
        names.push(tool_name);
        let decision = eval::decide(policy, &reached.request, &mut State::new());
        if let Some(rule) = decision.rule {
            rules.push((
                format!("`{}` allows `{tool_name}`", policy.rule_name(rule)),
                policy.rules[rule].span,
            ));
        }
        witnesses.push(Witness::allowed(
            format!("{leg}: {}", reached.label),
            reached.request.clone(),
        ));
    }
    (witnesses, rules, names)
}

/// The private, untrusted and external tools an agent reaches, if it reaches all three kinds.
fn trifecta_of(policy: &Policy, reach: &Reach, agent: AgentId) -> Option<Vec<(ToolId, Reached)>> {
    let has_label = |tool: ToolId, label: DomainLabel| {
        policy
            .tools
            .get(tool)
            .and_then(|t| policy.domains.get(t.domain))
            .is_some_and(|d| d.labels.contains(&label))
    };
    let find = |wanted: &dyn Fn(ToolId) -> bool| {
        reach
            .entries
            .iter()
            .find(|((origin, tool), _)| *origin == agent && wanted(*tool))
            .map(|((_, tool), reached)| (*tool, reached.clone()))
    };
    let private = find(&|t| has_label(t, DomainLabel::Private))?;
    let untrusted = find(&|t| has_label(t, DomainLabel::Untrusted))?;
    let external = find(&|t| {
        policy
            .tools
            .get(t)
            .is_some_and(|t| t.effect == Effect::External)
    })?;
    Some(vec![private, untrusted, external])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An acting agent's tools that its chains reach alike share one `ChainReach` (so the
    /// verifier holds one per agent, not one per pair), a tool whose depth limit cuts chains
    /// gets its own, and every shared one is what the pair alone would have computed.
    #[test]
    fn an_agents_tools_reached_alike_share_one_chain_reach() {
        use std::fmt::Write as _;
        let mut text = String::from("domain d { private }\n");
        for t in 0..20 {
            let _ = writeln!(text, "tool s.t{t} {{ domain d effect read args {{ }} }}");
        }
        for a in ["boss", "lead", "worker"] {
            let _ = writeln!(text, "agent {a} {{ }}");
        }
        text.push_str("delegate boss -> lead;\ndelegate lead -> worker;\n");
        text.push_str("permit any to call s.*;\nlimit any on s.t7 depth 1;\n");
        let policy = crate::load(&crate::source::SourceSet::single("p.toll", &text)).unwrap();
        let index = RuleIndex::new(&policy);
        let verifier = Verifier::new(&policy, &index, Options::default());
        for agent in 0..policy.agents.len() {
            let reaches: Vec<&Rc<ChainReach>> = (0..policy.tools.len())
                .map(|tool| &verifier.buckets[&(agent, tool)].reach)
                .collect();
            let mut distinct: Vec<*const ChainReach> =
                reaches.iter().map(|r| Rc::as_ptr(r)).collect();
            distinct.sort_unstable();
            distinct.dedup();
            let (chains, _) = encode::chains_within(&policy, agent, 256, index.horizon);
            let limited = policy.tool_id("s.t7").unwrap();
            let cut = ChainReach::new(&policy, agent, limited, &chains)
                .chains
                .len()
                < chains.len();
            // The worker's two-hop chain (boss → lead → worker) is cut on s.t7 alone: its
            // reach stands apart, every other tool shares one.
            let expected = if cut { 2 } else { 1 };
            assert_eq!(distinct.len(), expected, "agent {agent}");
            for (tool, reach) in reaches.iter().enumerate() {
                assert_eq!(***reach, ChainReach::new(&policy, agent, tool, &chains));
            }
        }
        let worker = policy.agent_id("worker").unwrap();
        let (chains, _) = encode::chains_within(&policy, worker, 256, index.horizon);
        assert_eq!(chains.len(), 3);
        let limited = policy.tool_id("s.t7").unwrap();
        assert_eq!(
            ChainReach::new(&policy, worker, limited, &chains)
                .chains
                .len(),
            2
        );
    }
}
