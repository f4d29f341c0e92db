//! Semantic diff: for every (agent, tool), what a new version of a policy newly allows and newly
//! denies, each with a witness request — decided by Z3 over the union of both versions' request
//! spaces, not by comparing text.

use super::encode::{chains_to, Chain, Encoder, FiniteStrings, RuleIndex, Space, Symbols};
use super::{request_from_model, Finding, Options, Subject, Witness};
use crate::diagnostic::{self, Diagnostic};
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
    /// Assertions and forbids the new version dropped without acknowledging the widening of
    /// every pair they covered (TG1103, TG1104 warnings).
    pub removed_unacknowledged: usize,
}

impl DiffReport {
    pub fn widened_unacknowledged(&self) -> usize {
        self.pairs
            .iter()
            .filter(|p| matches!(p.change, Change::Widened | Change::Changed) && !p.acknowledged)
            .count()
    }

    /// What `--fail-on widen` fails on: an unacknowledged widening, an unacknowledged removed
    /// assertion or forbid, or an inconclusive comparison.
    pub fn fails_on_widen(&self) -> bool {
        self.widened_unacknowledged() > 0
            || self.removed_unacknowledged > 0
            || self
                .findings
                .iter()
                .any(|f| f.diagnostic.code == diagnostic::Code::Inconclusive)
    }

    /// Raises to errors the warnings `--fail-on widen` fails on (unacknowledged widenings and
    /// removed assertions and forbids).
    pub fn gate_on_widen(&mut self) {
        for finding in &mut self.findings {
            let gated = matches!(
                finding.diagnostic.code,
                diagnostic::Code::Widened
                    | diagnostic::Code::AssertionRemoved
                    | diagnostic::Code::ForbidRemoved
            );
            if gated && finding.diagnostic.severity == diagnostic::Severity::Warning {
                finding.diagnostic = diagnostic::as_error(finding.diagnostic.clone());
            }
        }
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
        ArgType::Path => 4,
        ArgType::Decimal { scale, .. } => 5u8.saturating_add(*scale),
        // Lists and objects are compatible only when declared alike (a list's element shape
        // is part of its kind).
        ArgType::List { .. } => 100,
        ArgType::Object(_) => 101,
    }
}

/// Both versions take the same argument names with the same kinds of type, so one request can be
/// valid in both.
fn compatible(old: &Tool, new: &Tool) -> bool {
    old.args.len() == new.args.len()
        && old.args.iter().all(|a| {
            new.arg(&a.name).is_some_and(|b| {
                kind(&a.ty) == kind(&b.ty)
                    && a.optional == b.optional
                    && (a.ty.is_scalar() || a.ty == b.ty)
            })
        })
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
                (ArgType::Decimal { scale, .. }, _) => ArgType::Decimal {
                    scale: *scale,
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
                optional: a.optional,
                // Bounds that admit both versions' lengths (each version's own are asserted by
                // `validity`); a bounded string is a string variable, not a choice of candidates.
                length: match (a.length, new.arg(&a.name).and_then(|b| b.length)) {
                    (None, None) => None,
                    (x, y) => Some((
                        x.map_or(0, |l| l.0).min(y.map_or(0, |l| l.0)),
                        x.map_or(u64::MAX, |l| l.1).max(y.map_or(u64::MAX, |l| l.1)),
                    )),
                },
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
            (
                ArgType::Int { min, max } | ArgType::Decimal { min, max, .. },
                Some(super::encode::Zv::Int(v)),
            ) => {
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
            (ArgType::Str | ArgType::Path, Some(super::encode::Zv::Str(v))) => {
                if let Some(length) = super::encode::length_within(v, arg.length) {
                    parts.push(length);
                }
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
            elements: Vec::new(),
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
    if options.unknown_every > 0 && report.queries.is_multiple_of(options.unknown_every) {
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
    finite: &FiniteStrings,
) -> Space {
    let (chains, truncated) = chains_to(policy, agent, options.max_chains);
    Space::with_finite_strings(
        symbols.clone(),
        &policy.tools[tool].args,
        &policy.environments,
        chains,
        truncated,
        finite,
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
    // String arguments compared only with constants are decided over both versions' constants.
    let finite = FiniteStrings::of_all(&[old, new]);
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
                    let space = Space::with_finite_strings(
                        symbols.clone(),
                        &schema,
                        &environments,
                        chains,
                        false,
                        &finite,
                    );
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
                            let space = lone_space(
                                side.policy,
                                &symbols,
                                side.agent,
                                side.tool,
                                options,
                                &finite,
                            );
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
                fresh_acknowledgements(old, new)
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
    guards(old, new, &mut report);
    report
}

/// How a principal pattern reads, by names, so that versions compare.
fn principal_key(policy: &Policy, pattern: &PrincipalPattern) -> String {
    match pattern {
        PrincipalPattern::Any => "any".to_owned(),
        PrincipalPattern::Agent(id) => format!(
            "agent {}",
            policy.agents.get(*id).map_or("?", |a| a.name.as_str())
        ),
        PrincipalPattern::Role(role) => format!("role {role}"),
    }
}

fn tools_key(policy: &Policy, pattern: &ToolPattern) -> String {
    match pattern {
        ToolPattern::Any => "any".to_owned(),
        ToolPattern::Exact(id) => policy
            .tools
            .get(*id)
            .map_or("?".to_owned(), |t| t.name.clone()),
        ToolPattern::Prefix(prefix) => format!("{prefix}.*"),
        ToolPattern::Domain(id) => format!(
            "domain {}",
            policy.domains.get(*id).map_or("?", |d| d.name.as_str())
        ),
        ToolPattern::Effect(effect) => format!("effect {effect:?}"),
    }
}

/// A condition's structure without its spans.
fn condition_key(condition: &Condition) -> String {
    match &condition.kind {
        ConditionKind::Or(a, b) => format!("({} or {})", condition_key(a), condition_key(b)),
        ConditionKind::And(a, b) => format!("({} and {})", condition_key(a), condition_key(b)),
        ConditionKind::Not(inner) => format!("not {}", condition_key(inner)),
        ConditionKind::Compare { op, lhs, rhs } => format!("{lhs:?} {op:?} {rhs:?}"),
        ConditionKind::In { lhs, set } => format!("{lhs:?} in {set:?}"),
        ConditionKind::Str { op, lhs, rhs } => format!("{lhs:?} {op:?} {rhs:?}"),
        ConditionKind::Bool(term) => format!("{term:?}"),
        ConditionKind::Has(name) => format!("has {name}"),
        ConditionKind::HasField(up, field) => format!("has x{up}.{field}"),
        ConditionKind::Quantified { all, list, body } => format!(
            "{} in {list:?} {{ {} }}",
            if *all { "all" } else { "any" },
            condition_key(body)
        ),
    }
}

/// An assertion's identity across versions: its label, or what it says.
fn assertion_key(policy: &Policy, assertion: &Assertion) -> String {
    if let Some(label) = &assertion.label {
        return format!("label {label}");
    }
    let when = |c: &Option<Condition>| c.as_ref().map(condition_key).unwrap_or_default();
    match &assertion.kind {
        AssertionKind::Never {
            principal,
            tools,
            condition,
        } => format!(
            "never {} {} {}",
            principal_key(policy, principal),
            tools_key(policy, tools),
            when(condition)
        ),
        AssertionKind::Always {
            principal,
            tools,
            condition,
        } => format!(
            "always {} {} {}",
            principal_key(policy, principal),
            tools_key(policy, tools),
            when(condition)
        ),
        AssertionKind::NoTrifecta { principal } => {
            format!("no trifecta {}", principal_key(policy, principal))
        }
    }
}

/// A forbid's identity across versions: its label, or what it says.
fn forbid_key(policy: &Policy, rule: &Rule) -> String {
    if let Some(label) = &rule.label {
        return format!("label {label}");
    }
    format!(
        "{} {} {}",
        principal_key(policy, &rule.principal),
        tools_key(policy, &rule.tools),
        rule.condition
            .as_ref()
            .map(condition_key)
            .unwrap_or_default()
    )
}

/// The acknowledgements this change introduces: those of the new version that the old version
/// does not have with the same subject and reason. Only they approve a widening or a removal in
/// a diff, so an acknowledgement approves the change it came with, not every later widening of
/// its pair: a later widening needs an acknowledgement of its own (a new reason).
fn fresh_acknowledgements<'p>(
    old: &'p Policy,
    new: &'p Policy,
) -> impl Iterator<Item = &'p Acknowledgement> + 'p {
    new.acknowledgements.iter().filter(move |a| {
        let text = acknowledgement_text(new, a);
        !old.acknowledgements
            .iter()
            .any(|o| o.reason == a.reason && acknowledgement_text(old, o) == text)
    })
}

/// An acknowledgement as written (without its reason).
fn acknowledgement_text(policy: &Policy, acknowledgement: &Acknowledgement) -> String {
    let agent = |id: AgentId| policy.agents.get(id).map_or("?", |a| a.name.as_str());
    let tool = |id: ToolId| policy.tools.get(id).map_or("?", |t| t.name.as_str());
    match acknowledgement.kind {
        AcknowledgementKind::Trifecta(a) => format!("trifecta {}", agent(a)),
        AcknowledgementKind::Escalation(a, t) => format!("escalation {} -> {}", agent(a), tool(t)),
        AcknowledgementKind::Widening(a, t) => format!("widening {} -> {}", agent(a), tool(t)),
    }
}

fn assertion_name(assertion: &Assertion, index: usize) -> String {
    assertion
        .label
        .clone()
        .unwrap_or_else(|| format!("assertion #{}", index + 1))
}

/// Whether the new version acknowledges the widening of every (agent, tool) pair an old guard
/// covered (a pair gone from the new version allows nothing there), or, for `no trifecta`, the
/// trifecta of every agent it covered.
fn removal_acknowledged(
    old: &Policy,
    new: &Policy,
    principal: &PrincipalPattern,
    tools: Option<&ToolPattern>,
) -> bool {
    let acknowledged = |kind: &dyn Fn(&AcknowledgementKind) -> bool| {
        fresh_acknowledgements(old, new).any(|a| kind(&a.kind))
    };
    old.agents_matching(principal).into_iter().all(|agent| {
        let Some(new_agent) = new.agent_id(&old.agents[agent].name) else {
            return true;
        };
        match tools {
            None => acknowledged(&|k| *k == AcknowledgementKind::Trifecta(new_agent)),
            Some(pattern) => old.tools_matching(pattern).into_iter().all(|tool| {
                new.tool_id(&old.tools[tool].name).is_none_or(|new_tool| {
                    acknowledged(&|k| *k == AcknowledgementKind::Widening(new_agent, new_tool))
                })
            }),
        }
    })
}

/// Assertions, forbids and acknowledgements one version has and the other does not, and
/// widening acknowledgements of pairs that did not widen.
fn guards(old: &Policy, new: &Policy, report: &mut DiffReport) {
    let push = |report: &mut DiffReport, diagnostic: Diagnostic| {
        report.findings.push(Finding {
            diagnostic,
            witnesses: Vec::new(),
            subject: Subject::None,
        });
    };
    let old_assertions: Vec<String> = old
        .assertions
        .iter()
        .map(|a| assertion_key(old, a))
        .collect();
    let new_assertions: Vec<String> = new
        .assertions
        .iter()
        .map(|a| assertion_key(new, a))
        .collect();
    for (index, assertion) in old.assertions.iter().enumerate() {
        if new_assertions.contains(&old_assertions[index]) {
            continue;
        }
        let acknowledged = match &assertion.kind {
            AssertionKind::Never {
                principal, tools, ..
            }
            | AssertionKind::Always {
                principal, tools, ..
            } => removal_acknowledged(old, new, principal, Some(tools)),
            AssertionKind::NoTrifecta { principal } => {
                removal_acknowledged(old, new, principal, None)
            }
        };
        if !acknowledged {
            report.removed_unacknowledged += 1;
        }
        let name = assertion_name(assertion, index);
        push(
            report,
            diagnostic::guard_changed("assertion", &name, assertion.span, false, acknowledged),
        );
    }
    for (index, assertion) in new.assertions.iter().enumerate() {
        if !old_assertions.contains(&new_assertions[index]) {
            let name = assertion_name(assertion, index);
            push(
                report,
                diagnostic::guard_changed("assertion", &name, assertion.span, true, false),
            );
        }
    }
    let forbids = |policy: &Policy| -> Vec<(RuleId, String)> {
        policy
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.effect == RuleEffect::Forbid)
            .map(|(id, r)| (id, forbid_key(policy, r)))
            .collect()
    };
    let (old_forbids, new_forbids) = (forbids(old), forbids(new));
    for (id, key) in &old_forbids {
        if new_forbids.iter().any(|(_, k)| k == key) {
            continue;
        }
        let rule = &old.rules[*id];
        let acknowledged = removal_acknowledged(old, new, &rule.principal, Some(&rule.tools));
        if !acknowledged {
            report.removed_unacknowledged += 1;
        }
        push(
            report,
            diagnostic::guard_changed(
                "forbid",
                &old.rule_name(*id),
                rule.span,
                false,
                acknowledged,
            ),
        );
    }
    for (id, key) in &new_forbids {
        if !old_forbids.iter().any(|(_, k)| k == key) {
            let rule = &new.rules[*id];
            push(
                report,
                diagnostic::guard_changed("forbid", &new.rule_name(*id), rule.span, true, false),
            );
        }
    }
    let old_acknowledgements: Vec<String> = old
        .acknowledgements
        .iter()
        .map(|a| acknowledgement_text(old, a))
        .collect();
    let new_acknowledgements: Vec<String> = new
        .acknowledgements
        .iter()
        .map(|a| acknowledgement_text(new, a))
        .collect();
    for (acknowledgement, text) in old.acknowledgements.iter().zip(&old_acknowledgements) {
        if !new_acknowledgements.contains(text) {
            push(
                report,
                diagnostic::acknowledgement_changed(text, acknowledgement.span, false),
            );
        }
    }
    for (acknowledgement, text) in new.acknowledgements.iter().zip(&new_acknowledgements) {
        if !old_acknowledgements.contains(text) {
            push(
                report,
                diagnostic::acknowledgement_changed(text, acknowledgement.span, true),
            );
        }
    }
    // A widening acknowledgement for a pair that did not widen (and was decided) is stale.
    for acknowledgement in &new.acknowledgements {
        let AcknowledgementKind::Widening(agent, tool) = acknowledgement.kind else {
            continue;
        };
        let (agent, tool) = (&new.agents[agent].name, &new.tools[tool].name);
        let stale = report.pairs.iter().any(|p| {
            p.agent == *agent
                && p.tool == *tool
                && !p.undecided
                && matches!(p.change, Change::Unchanged | Change::Narrowed)
        });
        if stale {
            let text = format!("widening {agent} -> {tool}");
            push(
                report,
                diagnostic::stale_acknowledgement(&text, acknowledgement.span),
            );
        }
    }
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
