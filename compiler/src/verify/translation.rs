//! Translation validation: after `codegen` writes a table, prove with Z3 that it decides exactly
//! as the source model. Per (agent, tool) bucket: the table lists exactly the rules whose
//! patterns match, forbids first, in rule order, and exactly the limits that apply; and each
//! entry's bytecode, decompiled back into a formula, is equivalent to its rule's condition for
//! every argument value, environment, hour and delegation chain. The gate's combination of
//! entries mirrors the semantics step by step (and is checked against the evaluator by the
//! differential tests), so equal entries and equal programs mean equal decisions.

use super::encode::{chains_to, z3_string, Chain, Encoder, RuleIndex, Space, Symbols, Zv};
use super::{new_solver, request_from_model, Options};
use crate::model::*;
use crate::Error;
use tollgate_runtime::format::{self, op};
use tollgate_runtime::table::Table;
use z3::ast::{Bool, Int};
use z3::SatResult;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Proved {
    pub buckets: usize,
    pub programs: usize,
}

/// Proves that `table` (already loaded) decides as `policy`.
pub fn validate(policy: &Policy, table: &Table<'_>, options: &Options) -> Result<Proved, Error> {
    let mut config = z3::Config::new();
    config.set_timeout_msec(u64::from(options.timeout_ms));
    z3::with_z3_config(&config, || run(policy, table, options))
}

fn run(policy: &Policy, table: &Table<'_>, options: &Options) -> Result<Proved, Error> {
    let symbols = Symbols::of(&[policy]);
    let index = RuleIndex::new(policy);
    let solver = new_solver(options);
    let mut proved = Proved::default();
    // Every tool's arguments: the same names, in slot order, and the same ones optional.
    for declared in &policy.tools {
        let Some(table_tool) = table.find_tool(declared.name.as_bytes()) else {
            continue; // reported below, per agent
        };
        let mut sorted: Vec<&ArgSchema> = declared.args.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut expected: Vec<String> = sorted.iter().map(|a| source_declaration(a)).collect();
        let mut found: Vec<String> = (0..table.arg_count(table_tool).unwrap_or(0))
            .map(|slot| table_declaration(table, table_tool, slot))
            .collect();
        if declared.open_args {
            expected.push("..".to_owned());
        }
        if table.tool_open_args(table_tool).unwrap_or(false) {
            found.push("..".to_owned());
        }
        // And its cost: the amount, and what it is charged per.
        let per = |name: Option<&str>| name.map(|n| format!(" * args.{n}")).unwrap_or_default();
        expected.push(format!(
            "cost {}{}",
            declared.cost,
            per(declared.cost_per.as_deref())
        ));
        let table_per = table
            .tool_cost_per(table_tool)
            .and_then(|slot| table.arg_name(table_tool, slot))
            .map(|n| String::from_utf8_lossy(n).into_owned());
        found.push(format!(
            "cost {}{}",
            table.tool_cost(table_tool).unwrap_or(0),
            per(table_per.as_deref())
        ));
        if found != expected {
            return Err(Error::ToolArguments {
                tool: declared.name.clone(),
                listed: found,
                expected,
            });
        }
    }
    // Every agent and tool of the source is in the table.
    let mut table_agents = Vec::with_capacity(policy.agents.len());
    for agent in &policy.agents {
        let Some(found) = table.find_agent(agent.name.as_bytes()) else {
            return Err(Error::AgentNotInTable {
                agent: agent.name.clone(),
            });
        };
        table_agents.push(found);
    }
    let mut table_tools = Vec::with_capacity(policy.tools.len());
    for tool in &policy.tools {
        let Some(found) = table.find_tool(tool.name.as_bytes()) else {
            return Err(Error::ToolNotInTable {
                agent: policy
                    .agents
                    .first()
                    .map(|a| a.name.clone())
                    .unwrap_or_default(),
                tool: tool.name.clone(),
            });
        };
        table_tools.push(found);
    }
    let source_tool: std::collections::HashMap<usize, ToolId> = table_tools
        .iter()
        .enumerate()
        .map(|(tool, &found)| (found, tool))
        .collect();
    let expect = Expected::of(policy);
    // How often each rule and limit appears in the table's buckets.
    let mut rule_seen = vec![0u64; policy.rules.len()];
    let mut limit_seen = vec![0u64; policy.limits.len()];
    // Only the pairs the table has a bucket for: each must hold exactly what the source says
    // applies there. That every pair something applies to has one follows from the counts
    // checked after the loop.
    for (agent, &table_agent) in table_agents.iter().enumerate() {
        let agent_name = &policy.agents[agent].name;
        let (chains, _) = chains_to(policy, agent, options.max_chains);
        let bucket_tools: Vec<usize> = table.bucket_tools(table_agent).collect();
        for table_tool in bucket_tools {
            // A tool the source does not declare is not the source's to judge (as before).
            let Some(&tool) = source_tool.get(&table_tool) else {
                continue;
            };
            let tool_name = &policy.tools[tool].name;
            let found: Vec<(u16, bool, usize)> =
                table.bucket_entries(table_agent, table_tool).collect();
            let listed: Vec<(RuleId, bool)> = found
                .iter()
                .map(|(r, f, _)| (usize::from(*r), *f))
                .collect();
            let expected = expect.rules(policy, agent, tool);
            if listed != expected {
                return Err(Error::BucketRules {
                    agent: agent_name.clone(),
                    tool: tool_name.clone(),
                    listed,
                    expected,
                });
            }
            let limits: Vec<usize> = table
                .bucket_limits(table_agent, table_tool)
                .map(usize::from)
                .collect();
            let applying = expect.limits(agent, tool);
            if limits != applying {
                return Err(Error::BucketLimits {
                    agent: agent_name.clone(),
                    tool: tool_name.clone(),
                    listed: limits,
                    expected: applying,
                });
            }
            for &(rule, _) in &listed {
                rule_seen[rule] += 1;
            }
            for &limit in &limits {
                limit_seen[limit] += 1;
            }
            if found.is_empty() {
                continue;
            }
            proved.buckets += 1;
            // Lists get this bucket's small-model bounds: a query compares one rule's program
            // with its source for the acting agent, so twice its atoms (strings stay Z3
            // strings here).
            let mut lists = super::encode::FiniteStrings::default();
            lists.lists = super::encode::ListAtoms::for_bucket(&[policy], tool, &[agent], 2);
            let space = Space::with_finite_strings(
                symbols.clone(),
                &policy.tools[tool].args,
                &policy.environments,
                chains.clone(),
                false,
                &lists,
            );
            let encoder = Encoder {
                policy,
                index: &index,
                space: &space,
                tool,
                elements: Vec::new(),
            };
            for (rule, _, offset) in found {
                let rule = usize::from(rule);
                let mut differs = Vec::new();
                for (position, chain) in space.chains.iter().enumerate() {
                    let compiled =
                        decompile(table, table_tool, offset, &space, policy, agent, chain)
                            .ok_or_else(|| Error::ProgramUnreadable {
                                agent: agent_name.clone(),
                                tool: tool_name.clone(),
                                rule,
                            })?;
                    let source = encoder.applies(rule, agent, chain);
                    differs.push(Bool::and(&[
                        space.is_chain(position),
                        compiled.iff(&source).not(),
                    ]));
                }
                solver.push();
                solver.assert(&space.domain);
                solver.assert(Bool::or(&differs));
                let result = solver.check();
                let model = solver.get_model();
                solver.pop(1);
                proved.programs += 1;
                match result {
                    SatResult::Unsat => {}
                    SatResult::Sat => {
                        let request = model
                            .map(|m| request_from_model(policy, agent, tool, &space, &m))
                            .unwrap_or_else(|| Request {
                                agent: agent_name.clone(),
                                tool: tool_name.clone(),
                                args: Default::default(),
                                via: Vec::new(),
                                env: None,
                                time: 0,
                            });
                        return Err(Error::ProgramDiffers {
                            agent: agent_name.clone(),
                            tool: tool_name.clone(),
                            rule,
                            request: Box::new(request),
                        });
                    }
                    SatResult::Unknown => {
                        return Err(Error::ProofUnknown {
                            agent: agent_name.clone(),
                            tool: tool_name.clone(),
                            rule,
                        })
                    }
                }
            }
        }
    }
    // Every bucket holds exactly its pair's rules and limits, and no pair has two buckets (the
    // loader refuses that), so each rule appears at most once per pair it matches; appearing as
    // often as it matches pairs, it appears at every one of them.
    for (rule, &seen) in rule_seen.iter().enumerate() {
        if seen != expect.rule_pairs(rule) {
            let (agent, tool) = expect.missing(
                &table_agents,
                &table_tools,
                |a, t| {
                    table
                        .bucket_entries(a, t)
                        .any(|(r, _, _)| usize::from(r) == rule)
                },
                &expect.rule_agents[rule],
                &expect.rule_tools[rule],
            );
            return Err(Error::BucketRules {
                agent: policy.agents[agent].name.clone(),
                tool: policy.tools[tool].name.clone(),
                listed: table
                    .bucket_entries(table_agents[agent], table_tools[tool])
                    .map(|(r, f, _)| (usize::from(r), f))
                    .collect(),
                expected: expect.rules(policy, agent, tool),
            });
        }
    }
    for (limit, &seen) in limit_seen.iter().enumerate() {
        if seen != expect.limit_pairs(limit) {
            let (agent, tool) = expect.missing(
                &table_agents,
                &table_tools,
                |a, t| table.bucket_limits(a, t).any(|l| usize::from(l) == limit),
                &expect.limit_agents[limit],
                &expect.limit_tools[limit],
            );
            return Err(Error::BucketLimits {
                agent: policy.agents[agent].name.clone(),
                tool: policy.tools[tool].name.clone(),
                listed: table
                    .bucket_limits(table_agents[agent], table_tools[tool])
                    .map(usize::from)
                    .collect(),
                expected: expect.limits(agent, tool),
            });
        }
    }
    Ok(proved)
}

/// What the source says applies to each (agent, tool) pair, by the model's definition — a rule
/// or limit applies where its principal pattern matches the agent and its tool pattern the tool
/// (`Policy::rules_matching`) — computed once per agent and once per tool rather than once per
/// pair, so checking a table costs (agents + tools) × (rules + limits) plus its buckets, not
/// agents × tools × rules. (Codegen gathers pairs rule by rule instead: the two are different
/// computations of the same definition, so one's bug is not the other's.)
struct Expected {
    /// Per agent, the rules (and limits) whose principal matches it, ascending.
    agent_rules: Vec<Vec<RuleId>>,
    agent_limits: Vec<Vec<LimitId>>,
    /// Per tool, the rules (and limits) whose tool pattern matches it, ascending.
    tool_rules: Vec<Vec<RuleId>>,
    tool_limits: Vec<Vec<LimitId>>,
    /// Per rule (and limit), the agents and tools it matches.
    rule_agents: Vec<Vec<AgentId>>,
    rule_tools: Vec<Vec<ToolId>>,
    limit_agents: Vec<Vec<AgentId>>,
    limit_tools: Vec<Vec<ToolId>>,
}

impl Expected {
    fn of(policy: &Policy) -> Expected {
        let rule_agents: Vec<Vec<AgentId>> = policy
            .rules
            .iter()
            .map(|rule| policy.agents_matching(&rule.principal))
            .collect();
        let rule_tools: Vec<Vec<ToolId>> = policy
            .rules
            .iter()
            .map(|rule| policy.tools_matching(&rule.tools))
            .collect();
        let limit_agents: Vec<Vec<AgentId>> = policy
            .limits
            .iter()
            .map(|limit| policy.agents_matching(&limit.principal))
            .collect();
        let limit_tools: Vec<Vec<ToolId>> = policy
            .limits
            .iter()
            .map(|limit| policy.tools_matching(&limit.tools))
            .collect();
        let invert = |by_item: &[Vec<usize>], count: usize| {
            let mut out = vec![Vec::new(); count];
            for (item, matched) in by_item.iter().enumerate() {
                for &at in matched {
                    out[at].push(item);
                }
            }
            out
        };
        Expected {
            agent_rules: invert(&rule_agents, policy.agents.len()),
            agent_limits: invert(&limit_agents, policy.agents.len()),
            tool_rules: invert(&rule_tools, policy.tools.len()),
            tool_limits: invert(&limit_tools, policy.tools.len()),
            rule_agents,
            rule_tools,
            limit_agents,
            limit_tools,
        }
    }

    /// The rules that apply to (agent, tool): forbids then permits, each in rule order.
    fn rules(&self, policy: &Policy, agent: AgentId, tool: ToolId) -> Vec<(RuleId, bool)> {
        let both = intersect(&self.agent_rules[agent], &self.tool_rules[tool]);
        let of = |effect: RuleEffect| {
            both.iter()
                .copied()
                .filter(move |&rule| policy.rules[rule].effect == effect)
        };
        of(RuleEffect::Forbid)
            .map(|rule| (rule, true))
            .chain(of(RuleEffect::Permit).map(|rule| (rule, false)))
            .collect()
    }

    /// The limits that apply to (agent, tool), in limit order.
    fn limits(&self, agent: AgentId, tool: ToolId) -> Vec<LimitId> {
        intersect(&self.agent_limits[agent], &self.tool_limits[tool])
    }

    /// How many (agent, tool) pairs a rule (or limit) applies to.
    fn rule_pairs(&self, rule: RuleId) -> u64 {
        (self.rule_agents[rule].len() as u64) * (self.rule_tools[rule].len() as u64)
    }

    fn limit_pairs(&self, limit: LimitId) -> u64 {
        (self.limit_agents[limit].len() as u64) * (self.limit_tools[limit].len() as u64)
    }

    /// A pair among `agents` × `tools` where the table lacks what applies (`holds` is false).
    fn missing(
        &self,
        table_agents: &[usize],
        table_tools: &[usize],
        holds: impl Fn(usize, usize) -> bool,
        agents: &[AgentId],
        tools: &[ToolId],
    ) -> (AgentId, ToolId) {
        agents
            .iter()
            .flat_map(|&agent| tools.iter().map(move |&tool| (agent, tool)))
            .find(|&(agent, tool)| !holds(table_agents[agent], table_tools[tool]))
            .unwrap_or((
                agents.first().copied().unwrap_or(0),
                tools.first().copied().unwrap_or(0),
            ))
    }
}

/// The ids in both ascending lists, ascending.
fn intersect(a: &[usize], b: &[usize]) -> Vec<usize> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) {
        match x.cmp(&y) {
            std::cmp::Ordering::Equal => {
                out.push(x);
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
        }
    }
    out
}

/// Reads a program back into a formula over the space, for one agent and chain.
/// An argument as the source declares it, written as the table's is by [`table_declaration`].
fn source_declaration(arg: &ArgSchema) -> String {
    let optional = if arg.optional { "?" } else { "" };
    format!("{}{optional}: {}", arg.name, source_type(arg))
}

/// A type as [`table_type`] writes it: bounds explicit, an object's fields in name order.
fn source_type(arg: &ArgSchema) -> String {
    let length = |base: &str| match arg.length {
        Some((min, max)) => format!("{base}[{min}..{max}]"),
        None => base.to_owned(),
    };
    match &arg.ty {
        ArgType::Int { min, max } => format!("int[{min}..{max}]"),
        ArgType::Bool => "bool".to_owned(),
        ArgType::Str => length("string"),
        ArgType::Path => length("path"),
        ArgType::Enum(variants) => format!("enum[{}]", variants.join(", ")),
        ArgType::Decimal { scale, min, max } => format!("decimal({scale})[{min}..{max}]"),
        ArgType::List { element, count } => {
            format!("list[{}][{}..{}]", source_type(element), count.0, count.1)
        }
        ArgType::Object(fields) => {
            let mut fields: Vec<&ArgSchema> = fields.iter().collect();
            fields.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
            let fields: Vec<String> = fields.iter().map(|f| source_declaration(f)).collect();
            format!("{{ {} }}", fields.join(", "))
        }
    }
}

/// Argument `slot` of a table's tool, declared as the source would declare it.
fn table_declaration(table: &Table<'_>, tool: usize, slot: usize) -> String {
    let name = String::from_utf8_lossy(table.arg_name(tool, slot).unwrap_or_default()).into_owned();
    let Some(schema) = table.arg_schema(tool, slot) else {
        return format!("{name}: (unreadable)");
    };
    let optional = if schema.flags & format::arg_flag::OPTIONAL != 0 {
        "?"
    } else {
        ""
    };
    format!("{name}{optional}: {}", table_type(table, &schema, 0))
}

/// A table's argument type, written as [`source_type`] writes the source's.
fn table_type(
    table: &Table<'_>,
    schema: &tollgate_runtime::table::ArgSchema<'_, '_>,
    depth: usize,
) -> String {
    let length = |base: &str| {
        if schema.flags & format::arg_flag::LENGTH != 0 {
            format!("{base}[{}..{}]", schema.min, schema.max)
        } else {
            base.to_owned()
        }
    };
    match schema.kind {
        format::arg::INT => format!("int[{}..{}]", schema.min, schema.max),
        format::arg::DECIMAL => {
            format!("decimal({})[{}..{}]", schema.scale, schema.min, schema.max)
        }
        format::arg::BOOL => "bool".to_owned(),
        format::arg::STR => length("string"),
        format::arg::PATH => length("path"),
        format::arg::ENUM => {
            let variants: Vec<String> = schema
                .variants()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            format!("enum[{}]", variants.join(", "))
        }
        // (Depth-bounded: a malformed table could point a record at itself.)
        format::arg::LIST if depth <= 2 * format::MAX_NEST => {
            match table.arg_record(schema.children().start) {
                Some((_, element)) => format!(
                    "list[{}][{}..{}]",
                    table_type(table, &element, depth + 1),
                    schema.min,
                    schema.max
                ),
                None => "list[(unreadable)]".to_owned(),
            }
        }
        format::arg::OBJECT if depth <= 2 * format::MAX_NEST => {
            let fields: Vec<String> = schema
                .children()
                .map(|index| match table.arg_record(index) {
                    Some((name, field)) => {
                        let optional = if field.flags & format::arg_flag::OPTIONAL != 0 {
                            "?"
                        } else {
                            ""
                        };
                        format!(
                            "{}{optional}: {}",
                            String::from_utf8_lossy(name),
                            table_type(table, &field, depth + 1)
                        )
                    }
                    None => "(unreadable)".to_owned(),
                })
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        other => format!("(kind {other})"),
    }
}

fn decompile(
    table: &Table<'_>,
    tool: usize,
    offset: usize,
    space: &Space,
    policy: &Policy,
    agent: AgentId,
    chain: &Chain,
) -> Option<Bool> {
    let reader = Decompiler {
        code: table.program(offset)?,
        table,
        tool,
        space,
        policy,
        agent,
        chain,
    };
    reader.run(0, None, &[])
}

/// A program read back over a space: `run` from `at` to `END` (or, for a quantifier's body,
/// to `end`), with `elements` the elements the bodies around it are at, innermost last.
struct Decompiler<'t, 'a> {
    code: &'a [u8],
    table: &'t Table<'a>,
    tool: usize,
    space: &'t Space,
    policy: &'t Policy,
    agent: AgentId,
    chain: &'t Chain,
}

impl Decompiler<'_, '_> {
    fn run(&self, mut at: usize, end: Option<usize>, elements: &[Zv]) -> Option<Bool> {
        let (code, table, tool, space, policy, agent, chain) = (
            self.code,
            self.table,
            self.tool,
            self.space,
            self.policy,
            self.agent,
            self.chain,
        );
        let mut stack: Vec<Zv> = Vec::new();
        let read = |at: usize, len: usize| code.get(at..at + len);
        loop {
            if end == Some(at) {
                let Zv::Bool(value) = stack.pop()? else {
                    return None;
                };
                return stack.is_empty().then_some(value);
            }
            let opcode = *code.get(at)?;
            at += 1;
            match opcode {
                op::PUSH_INT => {
                    stack.push(Zv::Int(Int::from_i64(i64::from_le_bytes(
                        read(at, 8)?.try_into().ok()?,
                    ))));
                    at += 8;
                }
                op::PUSH_BOOL => {
                    stack.push(Zv::Bool(Bool::from_bool(*code.get(at)? == 1)));
                    at += 1;
                }
                op::PUSH_STR => {
                    let offset = u32::from_le_bytes(read(at, 4)?.try_into().ok()?);
                    let len = u32::from_le_bytes(read(at + 4, 4)?.try_into().ok()?);
                    let text = std::str::from_utf8(table.string_at(offset, len)?).ok()?;
                    stack.push(Zv::Str(z3_string(text)));
                    at += 8;
                }
                op::PUSH_SYM => {
                    let id = u16::from_le_bytes(read(at, 2)?.try_into().ok()?);
                    let name = std::str::from_utf8(table.symbol_name(usize::from(id))?).ok()?;
                    stack.push(Zv::Sym(Int::from_i64(space.symbols.index(name))));
                    at += 2;
                }
                op::ARG => {
                    let name =
                        std::str::from_utf8(table.arg_name(tool, usize::from(*code.get(at)?))?)
                            .ok()?;
                    stack.push(space.args.get(name)?.clone());
                    at += 1;
                }
                op::HAS => {
                    let name =
                        std::str::from_utf8(table.arg_name(tool, usize::from(*code.get(at)?))?)
                            .ok()?;
                    stack.push(Zv::Bool(
                        space
                            .present
                            .get(name)
                            .cloned()
                            .unwrap_or_else(|| Bool::from_bool(true)),
                    ));
                    at += 1;
                }
                op::CTX => {
                    let field = *code.get(at)?;
                    at += 1;
                    stack.push(match field {
                        op::CTX_ENV => Zv::Sym(space.env.clone()),
                        op::CTX_HOUR => Zv::Int(space.hour.clone()),
                        op::CTX_DEPTH => Zv::Int(Int::from_i64(chain.via.len() as i64)),
                        _ => {
                            let origin = chain
                                .via
                                .first()
                                .map_or(policy.agents.get(agent)?.name.as_str(), String::as_str);
                            Zv::Sym(Int::from_i64(space.symbols.index(origin)))
                        }
                    });
                }
                op::VAR => stack.push(elements.last()?.clone()),
                op::VAR_UP => {
                    let up = usize::from(*code.get(at)?);
                    at += 1;
                    let index = elements.len().checked_sub(1 + up)?;
                    stack.push(elements.get(index)?.clone());
                }
                // Fields in name order: the order of the space's map, which is the source's;
                // the table's own field names are compared with the source's separately.
                op::FIELD => {
                    let index = usize::from(*code.get(at)?);
                    at += 1;
                    let Zv::Object(object) = stack.pop()? else {
                        return None;
                    };
                    stack.push(object.fields.values().nth(index)?.clone());
                }
                op::HAS_FIELD => {
                    let index = usize::from(*code.get(at)?);
                    at += 1;
                    let Zv::Object(object) = stack.pop()? else {
                        return None;
                    };
                    let name = object.fields.keys().nth(index)?;
                    stack.push(Zv::Bool(
                        object
                            .present
                            .get(name)
                            .cloned()
                            .unwrap_or_else(|| Bool::from_bool(true)),
                    ));
                }
                op::LEN => {
                    let Zv::List(list) = stack.pop()? else {
                        return None;
                    };
                    stack.push(Zv::Int(list.len.clone()));
                }
                op::ALL | op::ANY => {
                    let length = usize::from(u16::from_le_bytes(read(at, 2)?.try_into().ok()?));
                    let (start, stop) = (at + 2, at + 2 + length);
                    let Zv::List(list) = stack.pop()? else {
                        return None;
                    };
                    let mut parts = Vec::with_capacity(list.elements.len());
                    for (i, item) in list.elements.iter().enumerate() {
                        let counts = list.len.gt(Int::from_i64(i as i64));
                        let mut inner = elements.to_vec();
                        inner.push(item.clone());
                        let holds = self.run(start, Some(stop), &inner)?;
                        parts.push(if opcode == op::ALL {
                            counts.implies(&holds)
                        } else {
                            Bool::and(&[counts, holds])
                        });
                    }
                    stack.push(Zv::Bool(if opcode == op::ALL {
                        Bool::and(&parts)
                    } else {
                        Bool::or(&parts)
                    }));
                    at = stop;
                }
                op::NOT => {
                    let Zv::Bool(value) = stack.pop()? else {
                        return None;
                    };
                    stack.push(Zv::Bool(value.not()));
                }
                op::END if end.is_none() => {
                    let Zv::Bool(value) = stack.pop()? else {
                        return None;
                    };
                    return stack.is_empty().then_some(value);
                }
                binary => {
                    let rhs = stack.pop()?;
                    let lhs = stack.pop()?;
                    let value = match (binary, lhs, rhs) {
                        (op::EQ, Zv::Int(a), Zv::Int(b)) | (op::EQ, Zv::Sym(a), Zv::Sym(b)) => {
                            a.eq(&b)
                        }
                        (op::EQ, Zv::Bool(a), Zv::Bool(b)) => a.iff(&b),
                        (op::EQ, Zv::Str(a), Zv::Str(b)) => a.eq(&b),
                        (op::NE, Zv::Int(a), Zv::Int(b)) | (op::NE, Zv::Sym(a), Zv::Sym(b)) => {
                            a.eq(&b).not()
                        }
                        (op::NE, Zv::Bool(a), Zv::Bool(b)) => a.iff(&b).not(),
                        (op::NE, Zv::Str(a), Zv::Str(b)) => a.eq(&b).not(),
                        (op::LT, Zv::Int(a), Zv::Int(b)) => a.lt(&b),
                        (op::LE, Zv::Int(a), Zv::Int(b)) => a.le(&b),
                        (op::GT, Zv::Int(a), Zv::Int(b)) => a.gt(&b),
                        (op::GE, Zv::Int(a), Zv::Int(b)) => a.ge(&b),
                        (op::STARTS_WITH, Zv::Str(a), Zv::Str(b)) => b.prefix(&a),
                        (op::ENDS_WITH, Zv::Str(a), Zv::Str(b)) => b.suffix(&a),
                        (op::CONTAINS, Zv::Str(a), Zv::Str(b)) => a.contains(&b),
                        (op::AND, Zv::Bool(a), Zv::Bool(b)) => Bool::and(&[a, b]),
                        (op::OR, Zv::Bool(a), Zv::Bool(b)) => Bool::or(&[a, b]),
                        _ => return None,
                    };
                    stack.push(Zv::Bool(value));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example's and valid fixture's policy, loaded from its `.toll` files.
    fn policies() -> Vec<Policy> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("examples"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.is_dir())
            .collect();
        dirs.push(root.join("tests/fixtures/valid"));
        let mut out = Vec::new();
        for dir in dirs {
            let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|e| e == "toll"))
                .collect();
            files.sort();
            // An example is one policy over its files; a fixture is one policy per file.
            let groups: Vec<Vec<std::path::PathBuf>> = if dir.ends_with("valid") {
                files.into_iter().map(|f| vec![f]).collect()
            } else {
                vec![files]
            };
            for group in groups {
                let mut sources = crate::source::SourceSet::new();
                for file in &group {
                    let text = std::fs::read_to_string(file).unwrap_or_default();
                    sources.add(&file.display().to_string(), &text);
                }
                if let Ok(policy) = crate::load(&sources) {
                    out.push(policy);
                }
            }
        }
        out
    }

    #[test]
    fn the_expected_rules_and_limits_of_each_pair_are_the_models() {
        let policies = policies();
        assert!(policies.len() >= 10, "{} policies loaded", policies.len());
        for policy in &policies {
            let expect = Expected::of(policy);
            for agent in 0..policy.agents.len() {
                for tool in 0..policy.tools.len() {
                    let matching = |effect| policy.rules_matching(agent, tool, effect);
                    let model: Vec<(RuleId, bool)> = matching(RuleEffect::Forbid)
                        .into_iter()
                        .map(|r| (r, true))
                        .chain(matching(RuleEffect::Permit).into_iter().map(|r| (r, false)))
                        .collect();
                    assert_eq!(expect.rules(policy, agent, tool), model);
                    assert_eq!(
                        expect.limits(agent, tool),
                        policy.limits_matching(agent, tool)
                    );
                }
            }
            for rule in 0..policy.rules.len() {
                let pairs = (0..policy.agents.len())
                    .flat_map(|a| (0..policy.tools.len()).map(move |t| (a, t)))
                    .filter(|&(a, t)| {
                        policy
                            .rules_matching(a, t, policy.rules[rule].effect)
                            .contains(&rule)
                    })
                    .count() as u64;
                assert_eq!(expect.rule_pairs(rule), pairs);
            }
        }
    }
}
