//! Semantic diff: for every (agent, tool), what a new version of a policy newly allows and newly
//! denies, each with a witness request — decided by Z3 over the union of both versions' request
//! spaces, not by comparing text.

use super::encode::{chains_to, Chain, Encoder, RuleIndex, Space, Symbols};
use super::{request_from_model, Finding, Options, Subject, Witness};
use crate::diagnostic;
use crate::eval::{self, State, Verdict};
use crate::model::*;
use z3::ast::{Bool, Int};
use z3::{Params, SatResult, Solver};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    Widened,
    Narrowed,
    /// Both: some requests are newly allowed and others newly denied.
    Changed,
}

#[derive(Clone, Debug)]
pub struct PairChange {
    pub agent: String,
    pub tool: String,
    /// What the solver decided; `Unchanged` with `undecided` set means it could not tell.
    pub change: Change,
    pub acknowledged: bool,
    /// A widening or narrowing query came back `unknown` (reported as TG1009).
    pub undecided: bool,
}

#[derive(Clone, Debug, Default)]
pub struct DiffReport {
    pub findings: Vec<Finding>,
    pub pairs: Vec<PairChange>,
    /// Witnesses that must be replayed against the old policy (the rest replay against the new).
    pub old_witnesses: Vec<(usize, usize)>,
    pub unknown: usize,
    pub queries: usize,
}

impl DiffReport {
    pub fn widened_unacknowledged(&self) -> usize {
        self.pairs
            .iter()
            .filter(|p| matches!(p.change, Change::Widened | Change::Changed) && !p.acknowledged)
            .count()
    }
}

/// Compares two checked versions of a policy.
pub fn diff(old: &Policy, new: &Policy, options: &Options) -> DiffReport {
    let mut config = z3::Config::new();
    config.set_timeout_msec(u64::from(options.timeout_ms));
    z3::with_z3_config(&config, || run(old, new, options))
}

fn kind(ty: &ArgType) -> u8 {
    match ty {
        ArgType::Int { .. } => 0,
        ArgType::Bool => 1,
        ArgType::Str => 2,
        ArgType::Enum(_) => 3,
    }
}

/// Both versions take the same argument names with the same kinds of type, so one request can be
/// valid in both.
fn compatible(old: &Tool, new: &Tool) -> bool {
    old.args.len() == new.args.len()
        && old
            .args
            .iter()
            .all(|a| new.arg(&a.name).is_some_and(|b| kind(&a.ty) == kind(&b.ty)))
}

/// A schema that admits every value either version admits.
fn merged_schema(old: &Tool, new: &Tool) -> Vec<ArgSchema> {
    old.args
        .iter()
        .map(|a| {
            let ty = match (&a.ty, new.arg(&a.name).map(|b| &b.ty)) {
                (ArgType::Int { .. }, _) => ArgType::Int {
                    min: i64::MIN,
                    max: i64::MAX,
                },
                (ArgType::Enum(x), Some(ArgType::Enum(y))) => {
                    let mut all = x.clone();
                    all.extend(y.iter().filter(|v| !x.contains(v)).cloned());
                    ArgType::Enum(all)
                }
                (other, _) => other.clone(),
            };
            ArgSchema {
                name: a.name.clone(),
                ty,
                span: a.span,
            }
        })
        .collect()
}

/// The request is valid for this version: argument values within its schema, environment known.
fn validity(space: &Space, policy: &Policy, tool: &Tool) -> Bool {
    let mut parts = Vec::new();
    for arg in &tool.args {
        match (&arg.ty, space.args.get(&arg.name)) {
            (ArgType::Int { min, max }, Some(super::encode::Zv::Int(v))) => {
                parts.push(v.ge(Int::from_i64(*min)));
                parts.push(v.le(Int::from_i64(*max)));
            }
            (ArgType::Enum(variants), Some(super::encode::Zv::Sym(v))) => {
                let options: Vec<Bool> = variants
                    .iter()
                    .map(|x| v.eq(Int::from_i64(space.symbols.index(x))))
                    .collect();
                parts.push(Bool::or(&options));
            }
            _ => {}
        }
    }
    if !policy.environments.is_empty() {
        let options: Vec<Bool> = policy
            .environments
            .iter()
            .map(|e| space.env.eq(Int::from_i64(space.symbols.index(e))))
            .collect();
        parts.push(Bool::or(&options));
    }
    Bool::and(&parts)
}

struct Side<'a> {
    policy: &'a Policy,
    index: &'a RuleIndex,
    agent: AgentId,
    tool: ToolId,
}

impl Side<'_> {
    fn allowed(&self, space: &Space) -> Bool {
        let encoder = Encoder {
            policy: self.policy,
            index: self.index,
            space,
            tool: self.tool,
        };
        Bool::and(&[
            validity(space, self.policy, &self.policy.tools[self.tool]),
            encoder.allowed(self.agent),
        ])
    }
}

fn solver(options: &Options) -> Solver {
    let solver = Solver::new();
    let mut params = Params::new();
    params.set_u32("timeout", options.timeout_ms);
    solver.set_params(&params);
    solver
}

enum Outcome {
    Found(Request),
    None,
    Unknown,
}

fn find(
    options: &Options,
    report: &mut DiffReport,
    solver: &Solver,
    space: &Space,
    formula: &Bool,
    side: &Side<'_>,
) -> Outcome {
    report.queries += 1;
    if options.unknown_every > 0 && report.queries % options.unknown_every == 0 {
        report.unknown += 1;
        return Outcome::Unknown;
    }
    solver.push();
    solver.assert(formula);
    let mut result = solver.check();
    if result == SatResult::Sat
        && !solver
            .get_model()
            .is_some_and(|model| space.receivable(&model))
    {
        // Ask again for a request whose strings are valid UTF-8, one the gate can receive.
        space.assert_receivable(solver);
        result = solver.check();
    }
    let outcome = match result {
        SatResult::Sat => match solver.get_model() {
            Some(model) => Outcome::Found(request_from_model(
                side.policy,
                side.agent,
                side.tool,
                space,
                &model,
            )),
            None => Outcome::Unknown,
        },
        SatResult::Unsat => Outcome::None,
        SatResult::Unknown => Outcome::Unknown,
    };
    solver.pop(1);
    if matches!(outcome, Outcome::Unknown) {
        report.unknown += 1;
    }
    outcome
}

/// A space for one side alone (an agent or tool that exists in only one version).
fn lone_space(
    policy: &Policy,
    symbols: &Symbols,
    agent: AgentId,
    tool: ToolId,
    options: &Options,
) -> Space {
    let (chains, truncated) = chains_to(policy, agent, options.max_chains);
    Space::new(
        symbols.clone(),
        &policy.tools[tool].args,
        &policy.environments,
        chains,
        truncated,
    )
}

fn run(old: &Policy, new: &Policy, options: &Options) -> DiffReport {
    let symbols = Symbols::of(&[old, new]);
    let mut report = DiffReport::default();
    let mut agents: Vec<String> = old.agents.iter().map(|a| a.name.clone()).collect();
    agents.extend(
        new.agents
            .iter()
            .map(|a| a.name.clone())
            .filter(|n| old.agent_id(n).is_none()),
    );
    let mut tools: Vec<String> = old.tools.iter().map(|t| t.name.clone()).collect();
    tools.extend(
        new.tools
            .iter()
            .map(|t| t.name.clone())
            .filter(|n| old.tool_id(n).is_none()),
    );
    let (old_index, new_index) = (RuleIndex::new(old), RuleIndex::new(new));
    let solver = solver(options);
    let environments_agree = old.environments.is_empty() == new.environments.is_empty();
    for agent in &agents {
        for tool in &tools {
            let old_side = old
                .agent_id(agent)
                .zip(old.tool_id(tool))
                .map(|(a, t)| Side {
                    policy: old,
                    index: &old_index,
                    agent: a,
                    tool: t,
                });
            let new_side = new
                .agent_id(agent)
                .zip(new.tool_id(tool))
                .map(|(a, t)| Side {
                    policy: new,
                    index: &new_index,
                    agent: a,
                    tool: t,
                });
            // One solver for the whole diff; each pair works inside its own scope.
            solver.push();
            let (widened, narrowed) = match (&old_side, &new_side) {
                (Some(o), Some(n))
                    if environments_agree && compatible(&old.tools[o.tool], &new.tools[n.tool]) =>
                {
                    let schema = merged_schema(&old.tools[o.tool], &new.tools[n.tool]);
                    let mut chains: Vec<Chain> = chains_to(old, o.agent, options.max_chains).0;
                    for chain in chains_to(new, n.agent, options.max_chains).0 {
                        if !chains.contains(&chain) {
                            chains.push(chain);
                        }
                    }
                    let mut environments = old.environments.clone();
                    environments.extend(
                        new.environments
                            .iter()
                            .filter(|e| !old.environments.contains(e))
                            .cloned(),
                    );
                    let space = Space::new(symbols.clone(), &schema, &environments, chains, false);
                    solver.assert(&space.domain);
                    let (old_allowed, new_allowed) = (o.allowed(&space), n.allowed(&space));
                    let widened = find(
                        options,
                        &mut report,
                        &solver,
                        &space,
                        &Bool::and(&[new_allowed.clone(), old_allowed.clone().not()]),
                        n,
                    );
                    let narrowed = find(
                        options,
                        &mut report,
                        &solver,
                        &space,
                        &Bool::and(&[old_allowed, new_allowed.not()]),
                        o,
                    );
                    (widened, narrowed)
                }
                _ => {
                    // No request is valid in both versions: everything one allows is a change.
                    let one = |side: &Option<Side<'_>>, report: &mut DiffReport| match side {
                        None => Outcome::None,
                        Some(side) => {
                            let space =
                                lone_space(side.policy, &symbols, side.agent, side.tool, options);
                            solver.push();
                            solver.assert(&space.domain);
                            let outcome = find(
                                options,
                                report,
                                &solver,
                                &space,
                                &side.allowed(&space),
                                side,
                            );
                            solver.pop(1);
                            outcome
                        }
                    };
                    let widened = one(&new_side, &mut report);
                    let narrowed = one(&old_side, &mut report);
                    (widened, narrowed)
                }
            };
            let acknowledged = new_side.as_ref().is_some_and(|n| {
                new.acknowledgements
                    .iter()
                    .any(|a| a.kind == AcknowledgementKind::Widening(n.agent, n.tool))
            });
            let change = match (&widened, &narrowed) {
                (Outcome::Found(_), Outcome::Found(_)) => Change::Changed,
                (Outcome::Found(_), _) => Change::Widened,
                (_, Outcome::Found(_)) => Change::Narrowed,
                _ => Change::Unchanged,
            };
            for (outcome, direction) in [(&widened, "widening"), (&narrowed, "narrowing")] {
                if let Outcome::Unknown = outcome {
                    let span = new_side
                        .as_ref()
                        .map(|n| new.agents[n.agent].span)
                        .or(old_side.as_ref().map(|o| old.agents[o.agent].span));
                    if let Some(span) = span {
                        let d = diagnostic::inconclusive(
                            &format!("{direction} of `{agent}` on `{tool}`"),
                            span,
                            "the solver gave up",
                        );
                        report.findings.push(Finding {
                            diagnostic: d,
                            witnesses: Vec::new(),
                            subject: Subject::None,
                        });
                    }
                }
            }
            if let (Outcome::Found(request), Some(n)) = (&widened, &new_side) {
                let decision = eval::decide(new, request, &mut State::new());
                let span = decision
                    .rule
                    .map_or(new.agents[n.agent].span, |r| new.rules[r].span);
                let d = diagnostic::widened(agent, tool, span, acknowledged);
                report.findings.push(Finding {
                    diagnostic: d,
                    witnesses: vec![Witness::allowed(
                        "allowed by the new version, denied by the old".to_owned(),
                        request.clone(),
                    )],
                    subject: Subject::None,
                });
            }
            if let (Outcome::Found(request), Some(o)) = (&narrowed, &old_side) {
                let decision = eval::decide(old, request, &mut State::new());
                let span = decision
                    .rule
                    .map_or(old.agents[o.agent].span, |r| old.rules[r].span);
                let d = diagnostic::narrowed(agent, tool, span);
                report.old_witnesses.push((report.findings.len(), 0));
                report.findings.push(Finding {
                    diagnostic: d,
                    witnesses: vec![Witness::allowed(
                        "allowed by the old version, denied by the new".to_owned(),
                        request.clone(),
                    )],
                    subject: Subject::None,
                });
            }
            solver.pop(1);
            report.pairs.push(PairChange {
                agent: agent.clone(),
                tool: tool.clone(),
                change,
                acknowledged,
                undecided: matches!(widened, Outcome::Unknown)
                    || matches!(narrowed, Outcome::Unknown),
            });
        }
    }
    report
}

/// Replays a diff witness against both versions: allowed by the version it is claimed for,
/// denied by the other.
pub fn replay_diff(old: &Policy, new: &Policy, report: &DiffReport, finding: usize) -> bool {
    let Some(found) = report.findings.get(finding) else {
        return false;
    };
    let against_old = report.old_witnesses.iter().any(|(f, _)| *f == finding);
    let (allows, denies) = if against_old { (old, new) } else { (new, old) };
    found.witnesses.iter().all(|w| {
        let yes = eval::decide(allows, &w.request, &mut State::new()).verdict == Verdict::Allow;
        let no = eval::decide(denies, &w.request, &mut State::new()).verdict == Verdict::Deny;
        yes && no
    })
}
