//! Escalation paths, and the graph they live in.
//!
//! The graph (petgraph) has agents, tools and roles as nodes; its edges are "may call" (proved
//! feasible with Z3), "delegates to", "spawns" and "grants". An agent escalates when it reaches
//! a tool it may not call itself: through a chain it starts (a `widening` hop, or a delegate whose
//! rules look at depth or origin), through a `spawn` tool that creates a more privileged agent,
//! or through a `grant` tool whose role unlocks more. Every edge of a reported path comes with a
//! witness request; a delegation path is one request, so its conditions hold together.

use super::*;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use std::fmt::Write;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Agent(AgentId),
    Tool(ToolId),
    Role(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edge {
    Calls,
    Delegates {
        widening: bool,
    },
    Spawns,
    Grants,
    /// Part of a reported escalation path.
    Escalates,
}

/// The escalation graph of a verified policy.
#[derive(Debug, Default)]
pub struct Graph {
    pub graph: DiGraph<Node, Edge>,
}

impl Graph {
    fn node(&mut self, node: Node) -> NodeIndex {
        match self.graph.node_indices().find(|&i| self.graph[i] == node) {
            Some(index) => index,
            None => self.graph.add_node(node),
        }
    }

    /// Graphviz text; escalation paths in red.
    pub fn to_dot(&self, policy: &Policy) -> String {
        let mut out =
            String::from("digraph tollgate {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
        for index in self.graph.node_indices() {
            let (label, shape, colour) = match &self.graph[index] {
                Node::Agent(a) => (policy.agents[*a].name.clone(), "box", "black"),
                Node::Tool(t) => {
                    let tool = &policy.tools[*t];
                    let labels = policy
                        .domains
                        .get(tool.domain)
                        .map(|d| d.labels.clone())
                        .unwrap_or_default();
                    let colour = if tool.effect == Effect::External {
                        "orange"
                    } else if labels.contains(&DomainLabel::Private) {
                        "blue"
                    } else if labels.contains(&DomainLabel::Untrusted) {
                        "purple"
                    } else {
                        "black"
                    };
                    (tool.name.clone(), "ellipse", colour)
                }
                Node::Role(r) => (format!("role {r}"), "diamond", "gray"),
            };
            let _ = writeln!(
                out,
                "  n{} [label=\"{}\", shape={shape}, color={colour}];",
                index.index(),
                label.replace('"', "\\\"")
            );
        }
        for edge in self.graph.edge_references() {
            let style = match edge.weight() {
                Edge::Calls => "label=\"calls\"",
                Edge::Delegates { widening: false } => "label=\"delegates\", style=dashed",
                Edge::Delegates { widening: true } => {
                    "label=\"delegates (widening)\", style=dashed, color=red"
                }
                Edge::Spawns => "label=\"spawns\", style=dotted",
                Edge::Grants => "label=\"grants\", style=dotted",
                Edge::Escalates => "label=\"escalates\", color=red, penwidth=2",
            };
            let _ = writeln!(
                out,
                "  n{} -> n{} [{style}];",
                edge.source().index(),
                edge.target().index()
            );
        }
        out.push_str("}\n");
        out
    }
}

/// Builds the graph from proved reach and finds escalation paths, as findings.
pub(super) fn escalations(verifier: &mut Verifier<'_>, reach: &Reach) -> Vec<Finding> {
    let (graph, findings) = build(verifier, reach);
    verifier.graph = Some(graph);
    findings
}

fn build(verifier: &mut Verifier<'_>, reach: &Reach) -> (Graph, Vec<Finding>) {
    let policy = verifier.policy;
    let mut graph = Graph::default();
    for &(agent, tool) in reach.direct.keys() {
        let (a, t) = (graph.node(Node::Agent(agent)), graph.node(Node::Tool(tool)));
        graph.graph.add_edge(a, t, Edge::Calls);
    }
    for delegation in &policy.delegations {
        let (from, to) = (
            graph.node(Node::Agent(delegation.from)),
            graph.node(Node::Agent(delegation.to)),
        );
        graph.graph.add_edge(
            from,
            to,
            Edge::Delegates {
                widening: delegation.widening,
            },
        );
    }
    for (id, tool) in policy.tools.iter().enumerate() {
        if let Some(created) = tool.creates {
            let (t, a) = (graph.node(Node::Tool(id)), graph.node(Node::Agent(created)));
            graph.graph.add_edge(t, a, Edge::Spawns);
        }
        if let Some(role) = &tool.grants {
            let (t, r) = (
                graph.node(Node::Tool(id)),
                graph.node(Node::Role(role.clone())),
            );
            graph.graph.add_edge(t, r, Edge::Grants);
        }
    }

    let mut findings = Vec::new();
    let mut reported = BTreeSet::new();
    let acknowledged = |agent: AgentId, tool: ToolId| {
        policy
            .acknowledgements
            .iter()
            .any(|a| a.kind == AcknowledgementKind::Escalation(agent, tool))
    };
    let rule_step = |request: &Request, verb: &str| rule_step_in(policy, request, verb);

    // Through delegation chains the agent starts: a request allowed through such a chain that
    // the origin may not make itself, with the same arguments, environment and time — whether
    // or not it may call the tool with other arguments.
    let starts = Starts::of(verifier);
    for origin in 0..policy.agents.len() {
        for tool in 0..policy.tools.len() {
            let request = match beyond_direct(verifier, &starts, origin, tool) {
                Search::Found(request, _) => request,
                Search::NotFound => continue,
                Search::Unknown(why) => {
                    let d = diagnostic::inconclusive(
                        &format!(
                            "whether `{}` escalates to `{}` through delegation",
                            policy.agents[origin].name, policy.tools[tool].name
                        ),
                        policy.agents[origin].span,
                        &why,
                    );
                    findings.push(Finding {
                        diagnostic: d,
                        witnesses: Vec::new(),
                        subject: Subject::None,
                    });
                    continue;
                }
            };
            reported.insert((origin, tool));
            let mut steps = Vec::new();
            let mut names = request.via.clone();
            names.push(request.agent.clone());
            for pair in names.windows(2) {
                let (Some(from), Some(to)) = (policy.agent_id(&pair[0]), policy.agent_id(&pair[1]))
                else {
                    continue;
                };
                if let Some(delegation) = policy
                    .delegations
                    .iter()
                    .find(|d| d.from == from && d.to == to)
                {
                    let kind = if delegation.widening {
                        "widening delegation"
                    } else {
                        "delegation"
                    };
                    steps.push((
                        format!("{kind} `{}` -> `{}`", pair[0], pair[1]),
                        delegation.span,
                    ));
                }
            }
            // The delegators whose authority the request also needs, and the permit that gives it.
            let decision = eval::decide(policy, &request, &mut State::new());
            let mut named = BTreeSet::new();
            for entry in decision
                .trace
                .iter()
                .filter(|t| t.applies && t.agent != request.agent)
            {
                let Some(rule) = policy.rules.get(entry.rule) else {
                    continue;
                };
                if rule.effect == RuleEffect::Permit && named.insert(entry.agent.clone()) {
                    steps.push((
                        format!(
                            "`{}` delegates under `{}`",
                            entry.agent,
                            policy.rule_name(entry.rule)
                        ),
                        rule.span,
                    ));
                }
            }
            steps.extend(rule_step(
                &request,
                &format!("`{}` calls `{}`", request.agent, policy.tools[tool].name),
            ));
            let path = format!("delegation {}", names.join(" -> "));
            let (origin_name, tool_name) = (&policy.agents[origin].name, &policy.tools[tool].name);
            // "May not call it directly" only when that was decided; the per-request claim
            // holds either way (its second witness shows it).
            let never_directly = !reach.direct.contains_key(&(origin, tool))
                && !reach.direct_unknown.contains(&(origin, tool));
            let d = if !never_directly {
                diagnostic::escalation_beyond_direct(
                    origin_name,
                    tool_name,
                    policy.agents[origin].span,
                    &path,
                    acknowledged(origin, tool),
                    &steps,
                )
            } else {
                diagnostic::escalation(
                    origin_name,
                    tool_name,
                    policy.agents[origin].span,
                    &path,
                    acknowledged(origin, tool),
                    &steps,
                )
            };
            let direct = Request {
                agent: origin_name.clone(),
                via: Vec::new(),
                ..request.clone()
            };
            let witnesses = vec![
                Witness {
                    label: format!(
                        "{} calls {} on behalf of {origin_name}",
                        request.agent, tool_name
                    ),
                    request,
                    claims: vec![Claim::Verdict(Verdict::Allow)],
                    granted_role: None,
                },
                Witness {
                    label: format!("{origin_name} may not make the same call itself"),
                    request: direct,
                    claims: vec![Claim::Verdict(Verdict::Deny)],
                    granted_role: None,
                },
            ];
            mark(&mut graph, origin, tool);
            findings.push(Finding {
                diagnostic: d,
                witnesses,
                subject: Subject::AgentTool(origin, tool),
            });
        }
    }

    // Through spawn tools: the created agent's own authority.
    for (&(agent, spawn_tool), spawn_reached) in &reach.direct {
        let Some(created) = policy.tools[spawn_tool].creates else {
            continue;
        };
        for (&(other, tool), reached) in &reach.direct {
            if other != created
                || reach.entries.contains_key(&(agent, tool))
                || !reach.decided(agent, tool)
                || !reported.insert((agent, tool))
            {
                continue;
            }
            let mut steps = Vec::new();
            steps.extend(rule_step(
                &spawn_reached.request,
                &format!(
                    "`{}` calls `{}`",
                    policy.agents[agent].name, policy.tools[spawn_tool].name
                ),
            ));
            steps.push((
                format!(
                    "`{}` creates `{}`",
                    policy.tools[spawn_tool].name, policy.agents[created].name
                ),
                policy.tools[spawn_tool].span,
            ));
            steps.extend(rule_step(
                &reached.request,
                &format!(
                    "`{}` calls `{}`",
                    policy.agents[created].name, policy.tools[tool].name
                ),
            ));
            let path = format!(
                "spawn tool `{}` creating `{}`",
                policy.tools[spawn_tool].name, policy.agents[created].name
            );
            let d = diagnostic::escalation(
                &policy.agents[agent].name,
                &policy.tools[tool].name,
                policy.agents[agent].span,
                &path,
                acknowledged(agent, tool),
                &steps,
            );
            let witnesses = vec![
                Witness::allowed(spawn_reached.label.clone(), spawn_reached.request.clone()),
                Witness::allowed(reached.label.clone(), reached.request.clone()),
            ];
            mark(&mut graph, agent, tool);
            findings.push(Finding {
                diagnostic: d,
                witnesses,
                subject: Subject::AgentTool(agent, tool),
            });
        }
    }

    // Through grant tools: the agent with the granted role.
    let grants: Vec<(AgentId, ToolId, String, Reached)> = reach
        .direct
        .iter()
        .filter_map(|(&(agent, tool), reached)| {
            let role = policy.tools[tool].grants.clone()?;
            (!policy.agents[agent].roles.contains(&role))
                .then(|| (agent, tool, role, reached.clone()))
        })
        .collect();
    for (agent, grant_tool, role, grant_reached) in grants {
        let mut granted = policy.clone();
        granted.agents[agent].roles.push(role.clone());
        let gained = granted_reach(
            &granted,
            &verifier.symbols,
            agent,
            &verifier.options,
            &mut verifier.report.stats,
        );
        for (tool, found) in gained {
            if reach.entries.contains_key(&(agent, tool)) || !reach.decided(agent, tool) {
                continue;
            }
            let request = match found {
                Ok(request) => request,
                Err(why) => {
                    // The final call is undecided: say so rather than drop the path.
                    let d = diagnostic::inconclusive(
                        &format!(
                            "whether `{}` reaches `{}` through grant tool `{}`",
                            policy.agents[agent].name,
                            policy.tools[tool].name,
                            policy.tools[grant_tool].name
                        ),
                        policy.agents[agent].span,
                        &why,
                    );
                    findings.push(Finding {
                        diagnostic: d,
                        witnesses: Vec::new(),
                        subject: Subject::None,
                    });
                    continue;
                }
            };
            if !reported.insert((agent, tool)) {
                continue;
            }
            let mut steps = Vec::new();
            steps.extend(rule_step(
                &grant_reached.request,
                &format!(
                    "`{}` calls `{}`",
                    policy.agents[agent].name, policy.tools[grant_tool].name
                ),
            ));
            steps.push((
                format!("`{}` grants role `{role}`", policy.tools[grant_tool].name),
                policy.tools[grant_tool].span,
            ));
            // The final call is decided in the policy where the agent holds the role.
            steps.extend(rule_step_in(
                &granted,
                &request,
                &format!(
                    "with role `{role}`, `{}` calls `{}`",
                    policy.agents[agent].name, policy.tools[tool].name
                ),
            ));
            let path = format!(
                "grant tool `{}` giving role `{role}`",
                policy.tools[grant_tool].name
            );
            let d = diagnostic::escalation(
                &policy.agents[agent].name,
                &policy.tools[tool].name,
                policy.agents[agent].span,
                &path,
                acknowledged(agent, tool),
                &steps,
            );
            let witnesses = vec![
                Witness::allowed(grant_reached.label.clone(), grant_reached.request.clone()),
                Witness {
                    label: format!(
                        "with role {role}, {} may call {}",
                        policy.agents[agent].name, policy.tools[tool].name
                    ),
                    request,
                    claims: vec![Claim::Verdict(Verdict::Allow)],
                    granted_role: Some(role.clone()),
                },
            ];
            mark(&mut graph, agent, tool);
            findings.push(Finding {
                diagnostic: d,
                witnesses,
                subject: Subject::AgentTool(agent, tool),
            });
        }
    }
    (graph, findings)
}

/// A request `origin` gets allowed through a chain it starts (acting agent, chain) that it may
/// not make directly, with the same arguments, environment and time. Both requests are encoded
/// over the acting bucket's space (its lists are bounded for the origin's rules too), so one
/// query compares them.
fn beyond_direct(
    verifier: &mut Verifier<'_>,
    starts: &Starts,
    origin: AgentId,
    tool: ToolId,
) -> Search {
    let policy = verifier.policy;
    if !verifier.buckets.contains_key(&(origin, tool)) {
        return Search::NotFound;
    }
    let origin_name = policy.agents[origin].name.as_str();
    if !starts.relevant(origin_name, tool) {
        // No chain starts here and none was cut short: nothing to ask (most agents start none).
        return Search::NotFound;
    }
    let mut unknown = None;
    for acting in 0..policy.agents.len() {
        let Some(bucket) = verifier.buckets.get(&(acting, tool)) else {
            continue;
        };
        let encoder = bucket.encoder();
        let denied_directly = encoder.allowed_directly(origin).not();
        for (index, chain) in bucket.reach.chains.iter().enumerate() {
            if chain.via.first().map(String::as_str) != Some(origin_name) {
                continue;
            }
            let query = vec![
                bucket.space().is_chain(index),
                encoder.allowed_on(acting, index),
                denied_directly.clone(),
            ];
            match bucket.ask(&mut verifier.report.stats, &query) {
                Answer::Sat(model) => return Search::Found(bucket.request(&model), acting),
                Answer::Unsat(_) => {}
                Answer::Unknown(why) => unknown = Some(why),
            }
        }
        if bucket.truncated {
            unknown = Some("too many delegation chains to consider them all".to_owned());
        }
    }
    match unknown {
        Some(why) => Search::Unknown(why),
        None => Search::NotFound,
    }
}

/// The related span of the rule that allows `request` in `policy` (from a fresh state).
fn rule_step_in(
    policy: &Policy,
    request: &Request,
    verb: &str,
) -> Option<(String, tollgate_grammar::Span)> {
    let decision = eval::decide(policy, request, &mut State::new());
    decision.rule.and_then(|r| {
        let rule = policy.rules.get(r)?;
        Some((format!("{verb} by `{}`", policy.rule_name(r)), rule.span))
    })
}

fn mark(graph: &mut Graph, agent: AgentId, tool: ToolId) {
    let (a, t) = (graph.node(Node::Agent(agent)), graph.node(Node::Tool(tool)));
    graph.graph.add_edge(a, t, Edge::Escalates);
}

/// Where delegation chains start, per tool, read once from every bucket (asking every bucket
/// for each (origin, tool) pair would cost pairs × pairs).
struct Starts {
    /// (origin, tool): some bucket of the tool has a chain that starts at the origin.
    origins: BTreeSet<(String, ToolId)>,
    /// Tools some bucket of which had more chains than it could consider.
    truncated: BTreeSet<ToolId>,
}

impl Starts {
    fn of(verifier: &Verifier<'_>) -> Starts {
        let mut starts = Starts {
            origins: BTreeSet::new(),
            truncated: BTreeSet::new(),
        };
        for bucket in verifier.buckets.values() {
            if bucket.truncated {
                starts.truncated.insert(bucket.tool);
            }
            for origin in bucket
                .reach
                .chains
                .iter()
                .filter_map(|chain| chain.via.first())
            {
                starts.origins.insert((origin.clone(), bucket.tool));
            }
        }
        starts
    }

    /// Whether some bucket of `tool` has a chain starting at `origin`, or was cut short.
    fn relevant(&self, origin: &str, tool: ToolId) -> bool {
        self.truncated.contains(&tool) || self.origins.contains(&(origin.to_owned(), tool))
    }
}

/// The tools `agent` may call directly in a policy where it holds a granted role, each with a
/// witness request, or with the solver's reason when the query was undecided.
fn granted_reach(
    policy: &Policy,
    symbols: &Symbols,
    agent: AgentId,
    options: &Options,
    stats: &mut Stats,
) -> Vec<(ToolId, Result<Request, String>)> {
    let mut out = Vec::new();
    let index = RuleIndex::new(policy);
    let solver = new_solver(options);
    let symbols = std::rc::Rc::new(symbols.clone());
    for tool in 0..policy.tools.len() {
        let bucket = Bucket::new(policy, &index, &symbols, agent, tool, options, &solver);
        let query = vec![
            bucket.space().is_chain(0),
            bucket.encoder().allowed_on(agent, 0),
        ];
        match bucket.ask(stats, &query) {
            Answer::Sat(model) => out.push((tool, Ok(bucket.request(&model)))),
            Answer::Unsat(_) => {}
            Answer::Unknown(why) => out.push((tool, Err(why))),
        }
    }
    out
}
