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
use tollgate_runtime::format::op;
use tollgate_runtime::table::Table;
use z3::ast::{Bool, Int};
use z3::SatResult;

/// Why a table does not decide as its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The bucket lists other rules or limits than the source says apply.
    Entries {
        agent: String,
        tool: String,
        detail: String,
    },
    /// A program means something else than its rule's condition; the request tells them apart.
    Program {
        agent: String,
        tool: String,
        rule: RuleId,
        request: Box<Request>,
    },
    /// A program cannot be read back.
    Unreadable {
        agent: String,
        tool: String,
        rule: RuleId,
    },
    /// The solver could not decide equivalence.
    Unknown {
        agent: String,
        tool: String,
        rule: RuleId,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Entries { agent, tool, detail } => write!(f, "the table's bucket for `{agent}` calling `{tool}` {detail}"),
            Mismatch::Program { agent, tool, rule, request } => write!(
                f,
                "rule {} compiles to a program for `{agent}` calling `{tool}` that decides differently, e.g. for {}",
                rule + 1,
                crate::request::to_json(request)
            ),
            Mismatch::Unreadable { agent, tool, rule } => write!(f, "rule {}'s program for `{agent}` calling `{tool}` cannot be read back", rule + 1),
            Mismatch::Unknown { agent, tool, rule } => write!(f, "the solver could not prove rule {}'s program for `{agent}` calling `{tool}` equivalent (inconclusive)", rule + 1),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Proved {
    pub buckets: usize,
    pub programs: usize,
}

/// Proves that `table` (already loaded) decides as `policy`.
pub fn validate(policy: &Policy, table: &Table<'_>, options: &Options) -> Result<Proved, Mismatch> {
    let mut config = z3::Config::new();
    config.set_timeout_msec(u64::from(options.timeout_ms));
    z3::with_z3_config(&config, || run(policy, table, options))
}

fn run(policy: &Policy, table: &Table<'_>, options: &Options) -> Result<Proved, Mismatch> {
    let symbols = Symbols::of(&[policy]);
    let index = RuleIndex::new(policy);
    let solver = new_solver(options);
    let mut proved = Proved::default();
    // Every tool's arguments: the same names, in slot order, and the same ones optional.
    for declared in &policy.tools {
        let Some(table_tool) = table.find_tool(declared.name.as_bytes()) else {
            continue; // reported below, per agent
        };
        let mut expected: Vec<(&str, bool)> = declared
            .args
            .iter()
            .map(|a| (a.name.as_str(), a.optional))
            .collect();
        expected.sort();
        let found: Vec<(String, bool)> = (0..table.arg_count(table_tool).unwrap_or(0))
            .map(|slot| {
                let name = table.arg_name(table_tool, slot).unwrap_or_default();
                (
                    String::from_utf8_lossy(name).into_owned(),
                    table.arg_optional(table_tool, slot).unwrap_or(false),
                )
            })
            .collect();
        let same = found.len() == expected.len()
            && found
                .iter()
                .zip(&expected)
                .all(|((name, optional), (want, want_optional))| {
                    name == want && optional == want_optional
                });
        if !same {
            return Err(entries(
                "-",
                &declared.name,
                &format!("declares arguments (name, optional) {found:?}, the source {expected:?}"),
            ));
        }
    }
    for agent in 0..policy.agents.len() {
        let agent_name = &policy.agents[agent].name;
        let Some(table_agent) = table.find_agent(agent_name.as_bytes()) else {
            return Err(entries(
                agent_name,
                "-",
                "is missing: the agent is not in the table",
            ));
        };
        let (chains, _) = chains_to(policy, agent, options.max_chains);
        for tool in 0..policy.tools.len() {
            let tool_name = &policy.tools[tool].name;
            let Some(table_tool) = table.find_tool(tool_name.as_bytes()) else {
                return Err(entries(
                    agent_name,
                    tool_name,
                    "is missing: the tool is not in the table",
                ));
            };
            let matching = |effect: RuleEffect| policy.rules_matching(agent, tool, effect);
            let expected: Vec<(u16, bool)> = matching(RuleEffect::Forbid)
                .into_iter()
                .map(|r| (r as u16, true))
                .chain(
                    matching(RuleEffect::Permit)
                        .into_iter()
                        .map(|r| (r as u16, false)),
                )
                .collect();
            let found: Vec<(u16, bool, usize)> =
                table.bucket_entries(table_agent, table_tool).collect();
            let listed: Vec<(u16, bool)> = found.iter().map(|(r, f, _)| (*r, *f)).collect();
            if listed != expected {
                return Err(entries(
                    agent_name,
                    tool_name,
                    &format!("lists rules {listed:?}, the source {expected:?}"),
                ));
            }
            let limits: Vec<u16> = table.bucket_limits(table_agent, table_tool).collect();
            let applying: Vec<u16> = policy
                .limits_matching(agent, tool)
                .into_iter()
                .map(|l| l as u16)
                .collect();
            if limits != applying {
                return Err(entries(
                    agent_name,
                    tool_name,
                    &format!("applies limits {limits:?}, the source {applying:?}"),
                ));
            }
            if found.is_empty() {
                continue;
            }
            proved.buckets += 1;
            let space = Space::new(
                symbols.clone(),
                &policy.tools[tool].args,
                &policy.environments,
                chains.clone(),
                false,
            );
            let encoder = Encoder {
                policy,
                index: &index,
                space: &space,
                tool,
            };
            for (rule, _, offset) in found {
                let rule = usize::from(rule);
                let mut differs = Vec::new();
                for (position, chain) in space.chains.iter().enumerate() {
                    let compiled =
                        decompile(table, table_tool, offset, &space, policy, agent, chain)
                            .ok_or_else(|| Mismatch::Unreadable {
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
                        return Err(Mismatch::Program {
                            agent: agent_name.clone(),
                            tool: tool_name.clone(),
                            rule,
                            request: Box::new(request),
                        });
                    }
                    SatResult::Unknown => {
                        return Err(Mismatch::Unknown {
                            agent: agent_name.clone(),
                            tool: tool_name.clone(),
                            rule,
                        })
                    }
                }
            }
        }
    }
    Ok(proved)
}

fn entries(agent: &str, tool: &str, detail: &str) -> Mismatch {
    Mismatch::Entries {
        agent: agent.to_owned(),
        tool: tool.to_owned(),
        detail: detail.to_owned(),
    }
}

/// Reads a program back into a formula over the space, for one agent and chain.
fn decompile(
    table: &Table<'_>,
    tool: usize,
    offset: usize,
    space: &Space,
    policy: &Policy,
    agent: AgentId,
    chain: &Chain,
) -> Option<Bool> {
    let code = table.program(offset)?;
    let mut stack: Vec<Zv> = Vec::new();
    let mut at = 0usize;
    let read = |at: usize, len: usize| code.get(at..at + len);
    loop {
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
                    std::str::from_utf8(table.arg_name(tool, usize::from(*code.get(at)?))?).ok()?;
                stack.push(space.args.get(name)?.clone());
                at += 1;
            }
            op::HAS => {
                let name =
                    std::str::from_utf8(table.arg_name(tool, usize::from(*code.get(at)?))?).ok()?;
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
            op::NOT => {
                let Zv::Bool(value) = stack.pop()? else {
                    return None;
                };
                stack.push(Zv::Bool(value.not()));
            }
            op::END => {
                let Zv::Bool(value) = stack.pop()? else {
                    return None;
                };
                return stack.is_empty().then_some(value);
            }
            binary => {
                let rhs = stack.pop()?;
                let lhs = stack.pop()?;
                let value = match (binary, lhs, rhs) {
                    (op::EQ, Zv::Int(a), Zv::Int(b)) | (op::EQ, Zv::Sym(a), Zv::Sym(b)) => a.eq(&b),
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
