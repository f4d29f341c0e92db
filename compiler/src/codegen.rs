//! `codegen`: a checked policy to a signed decision table in the format `tollgate-runtime`
//! defines (`tollgate_runtime::format`). Deterministic: names are sorted, programs are
//! deduplicated by content, and Ed25519 signatures are deterministic, so the same policy and key
//! give the same bytes.

use crate::model::*;
use crate::Error;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use tollgate_grammar::ast::{CompareOp, StringOp};
use tollgate_runtime::format::{self, op, section};

/// Sizes of a compiled table, for reports and the book's size budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub bytes: usize,
    pub buckets: usize,
    pub entries: usize,
    pub programs_bytes: usize,
}

struct Strings {
    bytes: Vec<u8>,
    index: BTreeMap<Vec<u8>, u32>,
}

impl Strings {
    fn add(&mut self, value: &[u8]) -> (u32, u32) {
        if let Some(&offset) = self.index.get(value) {
            return (offset, value.len() as u32);
        }
        let offset = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value);
        self.index.insert(value.to_vec(), offset);
        (offset, value.len() as u32)
    }

    fn reference(&mut self, value: &str) -> format::Ref {
        let (offset, len) = self.add(value.as_bytes());
        format::Ref { offset, len }
    }
}

/// The compiled table, and how the policy's names map into it.
pub struct Compiled {
    pub bytes: Vec<u8>,
    pub policy_hash: [u8; 32],
    pub stats: TableStats,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("bytes", &self.bytes.len())
            .field("stats", &self.stats)
            .finish()
    }
}

struct Generator<'p> {
    policy: &'p Policy,
    strings: Strings,
    symbols: BTreeMap<String, u16>,
    /// Model tool id → its arguments' names in slot order.
    slots: Vec<Vec<String>>,
    programs: Vec<u8>,
    program_index: BTreeMap<Vec<u8>, u32>,
    /// While quantifiers' bodies are emitted: the schemas of their lists' elements, innermost
    /// last (`FIELD` operands are positions among an element's fields in name order).
    elements: Vec<ArgSchema>,
}

/// An argument's enum variants, with those of a list's element and its fields.
fn enum_variants(schema: &ArgSchema, out: &mut Vec<String>) {
    match &schema.ty {
        ArgType::Enum(variants) => out.extend(variants.iter().cloned()),
        ArgType::List { element, .. } => enum_variants(element, out),
        ArgType::Object(fields) => fields.iter().for_each(|f| enum_variants(f, out)),
        _ => {}
    }
}

/// Where argument records go: each tool's arguments in its range, and the element and field
/// records of lists after every tool's range (`nested_base` onward).
struct ArgRecords {
    variants: Vec<u8>,
    variant_count: u32,
    nested: Vec<u8>,
    nested_count: usize,
    nested_base: usize,
}

impl ArgRecords {
    /// The record of `schema`, named `name`; a list's element (and an object's fields) are
    /// appended to the nested records, which its own record points to.
    fn record(
        &mut self,
        generator: &mut Generator<'_>,
        name: &str,
        schema: &ArgSchema,
    ) -> [u8; format::ARG_SIZE] {
        let name = generator.strings.reference(name);
        // A bounded string's length bounds go where an integer's bounds go.
        let (low, high) = schema.length.map_or((0, 0), |(low, high)| {
            (
                i64::try_from(low).unwrap_or(i64::MAX),
                i64::try_from(high).unwrap_or(i64::MAX),
            )
        });
        let scale = match schema.ty {
            ArgType::Decimal { scale, .. } => scale,
            _ => 0,
        };
        let (kind, start, count, min, max) = match &schema.ty {
            ArgType::Int { min, max } => (format::arg::INT, 0, 0, *min, *max),
            ArgType::Decimal { min, max, .. } => (format::arg::DECIMAL, 0, 0, *min, *max),
            ArgType::Bool => (format::arg::BOOL, 0, 0, 0, 0),
            ArgType::Str => (format::arg::STR, 0, 0, low, high),
            ArgType::Path => (format::arg::PATH, 0, 0, low, high),
            ArgType::Enum(list) => {
                let start = self.variant_count;
                for variant in list {
                    self.variants
                        .extend_from_slice(&generator.symbol(variant).to_le_bytes());
                    self.variant_count += 1;
                }
                (format::arg::ENUM, start, list.len() as u32, 0, 0)
            }
            ArgType::List { element, count } => {
                let index = self.reserve(1);
                let record = self.record(generator, "", element);
                self.put(index, &record);
                (
                    format::arg::LIST,
                    (self.nested_base + index) as u32,
                    1,
                    i64::try_from(count.0).unwrap_or(i64::MAX),
                    i64::try_from(count.1).unwrap_or(i64::MAX),
                )
            }
            ArgType::Object(fields) => {
                let mut sorted: Vec<&ArgSchema> = fields.iter().collect();
                sorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
                let first = self.reserve(sorted.len());
                for (offset, field) in sorted.iter().enumerate() {
                    let record = self.record(generator, &field.name, field);
                    self.put(first + offset, &record);
                }
                (
                    format::arg::OBJECT,
                    (self.nested_base + first) as u32,
                    sorted.len() as u32,
                    0,
                    0,
                )
            }
        };
        format::ArgRecord {
            name,
            kind,
            flags: if schema.optional {
                format::arg_flag::OPTIONAL
            } else {
                0
            } | if schema.length.is_some() {
                format::arg_flag::LENGTH
            } else {
                0
            },
            scale,
            variants_start: start,
            variants_count: count,
            min,
            max,
        }
        .encode()
    }

    /// Reserves `count` nested records; the index (from `nested_base`) of the first.
    fn reserve(&mut self, count: usize) -> usize {
        let first = self.nested_count;
        self.nested
            .resize(self.nested.len() + count * format::ARG_SIZE, 0);
        self.nested_count += count;
        first
    }

    fn put(&mut self, index: usize, record: &[u8; format::ARG_SIZE]) {
        let at = index * format::ARG_SIZE;
        if let Some(slot) = self.nested.get_mut(at..at + format::ARG_SIZE) {
            slot.copy_from_slice(record);
        }
    }
}

/// The forbids, permits and limits that apply to each (agent, tool) pair, each list in id order
/// (what `Policy::rules_matching` and `Policy::limits_matching` give), built rule by rule: the
/// work is each rule's matching agents times its matching tools, where asking every pair about
/// every rule would be agents × tools × rules (10¹⁰ steps at 1,000 agents, 1,000 tools and
/// 10,000 rules). Pairs nothing applies to hold nothing.
struct Applying {
    at: std::collections::HashMap<(AgentId, ToolId), PairRules>,
}

/// What applies to one (agent, tool) pair, each in id order.
#[derive(Default)]
struct PairRules {
    forbids: Vec<RuleId>,
    permits: Vec<RuleId>,
    limits: Vec<LimitId>,
}

impl Applying {
    fn of(policy: &Policy) -> Applying {
        let mut at: std::collections::HashMap<(AgentId, ToolId), PairRules> =
            std::collections::HashMap::new();
        // Every (agent, tool) pair a principal and tool pattern cover.
        let pairs = |principal: &PrincipalPattern, tools: &ToolPattern| {
            let tools = policy.tools_matching(tools);
            policy
                .agents_matching(principal)
                .into_iter()
                .flat_map(move |agent| tools.clone().into_iter().map(move |tool| (agent, tool)))
        };
        for (rule, found) in policy.rules.iter().enumerate() {
            for pair in pairs(&found.principal, &found.tools) {
                let applying = at.entry(pair).or_default();
                match found.effect {
                    RuleEffect::Forbid => applying.forbids.push(rule),
                    RuleEffect::Permit => applying.permits.push(rule),
                }
            }
        }
        for (limit, found) in policy.limits.iter().enumerate() {
            for pair in pairs(&found.principal, &found.tools) {
                at.entry(pair).or_default().limits.push(limit);
            }
        }
        Applying { at }
    }

    /// The forbids, permits and limits of (agent, tool).
    fn at(&self, agent: AgentId, tool: ToolId) -> (&[RuleId], &[RuleId], &[LimitId]) {
        self.at.get(&(agent, tool)).map_or((&[], &[], &[]), |pair| {
            (&pair.forbids, &pair.permits, &pair.limits)
        })
    }
}

/// Compiles a policy and signs the table, with policy version 0.
pub fn compile(policy: &Policy, key: &SigningKey) -> Result<Compiled, Error> {
    compile_version(policy, key, 0)
}

/// Compiles a policy and signs the table, stamped with the author's monotonic policy version
/// (hosts refuse a table older than the newest one they have accepted).
pub fn compile_version(
    policy: &Policy,
    key: &SigningKey,
    policy_version: u64,
) -> Result<Compiled, Error> {
    compile_stamped(policy, key, policy_version, 0)
}

/// As [`compile_version`], with header flags (`tollgate_runtime::format::flags`).
pub fn compile_stamped(
    policy: &Policy,
    key: &SigningKey,
    policy_version: u64,
    flags: u16,
) -> Result<Compiled, Error> {
    let mut body_sections: Vec<(usize, Vec<u8>, usize)> = Vec::new(); // (section id, bytes, count)
    let mut generator = Generator {
        policy,
        strings: Strings {
            bytes: Vec::new(),
            index: BTreeMap::new(),
        },
        symbols: BTreeMap::new(),
        slots: Vec::new(),
        programs: Vec::new(),
        program_index: BTreeMap::new(),
        elements: Vec::new(),
    };

    // Symbols: environments, enum variants and agents, sorted by bytes.
    let mut names: Vec<String> = policy.environments.clone();
    names.extend(policy.agents.iter().map(|a| a.name.clone()));
    for tool in &policy.tools {
        for arg in &tool.args {
            enum_variants(arg, &mut names);
        }
    }
    names.sort();
    names.dedup();
    if names.len() > usize::from(u16::MAX) {
        return Err(Error::TableTooLarge { what: "symbols" });
    }
    for (id, name) in names.iter().enumerate() {
        generator.symbols.insert(name.clone(), id as u16);
    }

    // Agents and tools in name order.
    let mut agent_order: Vec<AgentId> = (0..policy.agents.len()).collect();
    agent_order.sort_by(|a, b| {
        policy.agents[*a]
            .name
            .as_bytes()
            .cmp(policy.agents[*b].name.as_bytes())
    });
    let mut tool_order: Vec<ToolId> = (0..policy.tools.len()).collect();
    tool_order.sort_by(|a, b| {
        policy.tools[*a]
            .name
            .as_bytes()
            .cmp(policy.tools[*b].name.as_bytes())
    });
    if agent_order.len() > usize::from(u16::MAX) || tool_order.len() > usize::from(u16::MAX) {
        return Err(Error::TableTooLarge {
            what: "agents or tools",
        });
    }
    let mut agent_index = vec![0u16; policy.agents.len()];
    for (position, &agent) in agent_order.iter().enumerate() {
        agent_index[agent] = position as u16;
    }
    for tool in &policy.tools {
        let mut slot_names: Vec<String> = tool.args.iter().map(|a| a.name.clone()).collect();
        slot_names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        generator.slots.push(slot_names);
    }
    if let Some(tool) = policy
        .tools
        .iter()
        .position(|t| t.args.len() > format::MAX_ARGS)
    {
        return Err(Error::ToolTooManyArguments { tool });
    }

    let mut symbols_section = Vec::new();
    for name in &names {
        symbols_section.extend_from_slice(&generator.strings.reference(name).encode());
    }
    let mut envs = Vec::new();
    for env in &policy.environments {
        envs.extend_from_slice(&generator.symbol(env).to_le_bytes());
    }

    // Failure responses and each agent's list of them.
    let mut responses = Vec::new();
    for response in &policy.responses {
        let record = format::ResponseRecord {
            count: response.count.min(u64::from(u32::MAX)) as u32,
            window: response.window,
        };
        responses.extend_from_slice(&record.encode());
    }
    let mut response_refs = Vec::new();
    let mut response_ref_count = 0usize;
    let mut agents = Vec::new();
    for &agent in &agent_order {
        let name = generator.strings.reference(&policy.agents[agent].name);
        let symbol = generator.symbol(&policy.agents[agent].name);
        let start = response_ref_count as u16;
        let mut count = 0u16;
        for (id, response) in policy.responses.iter().enumerate() {
            if policy.principal_matches(&response.principal, agent) {
                response_refs.extend_from_slice(&(id as u16).to_le_bytes());
                response_ref_count += 1;
                count += 1;
            }
        }
        let ttl = policy.agents[agent]
            .credential_ttl
            .unwrap_or(0)
            .min(u64::from(u32::MAX)) as u32;
        let record = format::AgentRecord {
            name,
            symbol,
            responses_start: start,
            responses_count: count,
            ttl,
        };
        agents.extend_from_slice(&record.encode());
    }

    // Tools and their argument schemas (slot order).
    let mut tools = Vec::new();
    let mut args = Vec::new();
    let mut arg_count = 0usize;
    let mut records = ArgRecords {
        variants: Vec::new(),
        variant_count: 0,
        nested: Vec::new(),
        nested_count: 0,
        nested_base: tool_order.iter().map(|&t| policy.tools[t].args.len()).sum(),
    };
    for &tool in &tool_order {
        let declared = &policy.tools[tool];
        let record = format::ToolRecord {
            name: generator.strings.reference(&declared.name),
            cost: declared.cost,
            args_start: arg_count as u16,
            args_count: declared.args.len() as u16,
            flags: if declared.open_args {
                format::tool_flag::OPEN_ARGS
            } else {
                0
            },
            // Slots are the arguments in name order.
            cost_per: declared
                .cost_per
                .as_ref()
                .and_then(|name| generator.slots[tool].iter().position(|n| n == name))
                .map_or(0, |slot| (slot + 1).min(usize::from(u8::MAX)) as u8),
        };
        tools.extend_from_slice(&record.encode());
        for name in generator.slots[tool].clone() {
            let Some(schema) = declared.arg(&name) else {
                continue;
            };
            let record = records.record(&mut generator, &name, schema);
            args.extend_from_slice(&record);
            arg_count += 1;
        }
    }
    // Lists' element and field records, after every tool's arguments.
    args.extend_from_slice(&records.nested);
    arg_count += records.nested_count;
    let (variants, variant_count) = (records.variants, records.variant_count);
    if arg_count > usize::from(u16::MAX) {
        return Err(Error::TableTooLarge { what: "arguments" });
    }

    // Limits, in model order.
    let mut limits = Vec::new();
    for limit in &policy.limits {
        let (kind, value, window) = match limit.kind {
            LimitKind::Rate { count, window } => (
                format::limit::RATE,
                count.min(i64::MAX as u64) as i64,
                window,
            ),
            LimitKind::Budget { amount, window } => (format::limit::BUDGET, amount, window),
            LimitKind::Depth { max } => (format::limit::DEPTH, max.min(i64::MAX as u64) as i64, 0),
            LimitKind::Repeat { count, window } => (
                format::limit::REPEAT,
                count.min(i64::MAX as u64) as i64,
                window,
            ),
        };
        limits.extend_from_slice(
            &format::LimitRecord {
                kind,
                value,
                window,
            }
            .encode(),
        );
    }
    if policy.limits.len() > usize::from(u16::MAX) || policy.rules.len() > usize::from(u16::MAX) {
        return Err(Error::TableTooLarge {
            what: "rules or limits",
        });
    }

    // Buckets: per (agent, tool) in table order that something applies to, the rules that can
    // apply (forbids first) and the limits that apply; DISPATCH says where each agent's start.
    let mut dispatch = Vec::new();
    let mut buckets = Vec::new();
    let mut bucket_count = 0u32;
    let mut entries = Vec::new();
    let mut entry_count = 0u32;
    let mut limit_refs = Vec::new();
    let mut limit_ref_count = 0u32;
    let applying = Applying::of(policy);
    for &agent in &agent_order {
        dispatch.extend_from_slice(&bucket_count.to_le_bytes());
        for (tool_index, &tool) in tool_order.iter().enumerate() {
            let (forbids, permits, applying) = applying.at(agent, tool);
            if forbids.is_empty() && permits.is_empty() && applying.is_empty() {
                continue;
            }
            bucket_count += 1;
            let record = format::BucketRecord {
                entries_start: entry_count,
                forbids: forbids.len() as u16,
                permits: permits.len() as u16,
                limits_start: limit_ref_count,
                limits_count: applying.len() as u16,
                tool: tool_index as u16,
            };
            buckets.extend_from_slice(&record.encode());
            for &rule in forbids.iter().chain(permits) {
                let program = generator.program(rule, agent, tool)?;
                let record = format::EntryRecord {
                    rule: rule as u16,
                    program,
                };
                entries.extend_from_slice(&record.encode());
                entry_count += 1;
            }
            for &limit in applying {
                limit_refs.extend_from_slice(&(limit as u16).to_le_bytes());
                limit_ref_count += 1;
            }
        }
    }

    let mut delegation_pairs: Vec<(u16, u16, bool)> = policy
        .delegations
        .iter()
        .map(|d| (agent_index[d.from], agent_index[d.to], d.widening))
        .collect();
    delegation_pairs.sort();
    let mut delegations = Vec::new();
    for (from, to, widening) in &delegation_pairs {
        let record = format::DelegationRecord {
            from: *from,
            to: *to,
            widening: *widening,
        };
        delegations.extend_from_slice(&record.encode());
    }

    let agent_total = agent_order.len();
    let tool_total = tool_order.len();
    body_sections.push((section::SYMBOLS, symbols_section, names.len()));
    body_sections.push((section::ENVS, envs, policy.environments.len()));
    body_sections.push((section::AGENTS, agents, agent_total));
    body_sections.push((section::TOOLS, tools, tool_total));
    body_sections.push((section::ARGS, args, arg_count));
    body_sections.push((section::VARIANTS, variants, variant_count as usize));
    dispatch.extend_from_slice(&bucket_count.to_le_bytes());
    body_sections.push((section::DISPATCH, dispatch, agent_total + 1));
    body_sections.push((section::BUCKETS, buckets, bucket_count as usize));
    body_sections.push((section::ENTRIES, entries, entry_count as usize));
    body_sections.push((section::LIMIT_REFS, limit_refs, limit_ref_count as usize));
    body_sections.push((section::LIMITS, limits, policy.limits.len()));
    body_sections.push((section::DELEGATIONS, delegations, delegation_pairs.len()));
    body_sections.push((section::RESPONSES, responses, policy.responses.len()));
    body_sections.push((section::RESPONSE_REFS, response_refs, response_ref_count));
    let programs_bytes = generator.programs.len();
    body_sections.push((
        section::PROGRAMS,
        std::mem::take(&mut generator.programs),
        programs_bytes,
    ));
    let mut rules = Vec::new();
    for rule in 0..policy.rules.len() {
        rules.extend_from_slice(
            &generator
                .strings
                .reference(&policy.rule_name(rule))
                .encode(),
        );
    }
    body_sections.push((section::RULES, rules, policy.rules.len()));
    // The name indexes: symbols, agents, tools, each in its section's record order.
    let mut name_index = Vec::new();
    let mut name_slots = 0usize;
    for names in [
        names.iter().map(String::as_bytes).collect::<Vec<_>>(),
        agent_order
            .iter()
            .map(|&a| policy.agents[a].name.as_bytes())
            .collect(),
        tool_order
            .iter()
            .map(|&t| policy.tools[t].name.as_bytes())
            .collect(),
    ] {
        let too_large = || Error::TableTooLarge { what: "names" };
        let mut slots = vec![0u16; format::index::slots(names.len()).ok_or_else(too_large)?];
        if !format::index::build(names.into_iter(), &mut slots) {
            return Err(too_large());
        }
        name_slots += slots.len();
        name_index.extend(slots.iter().flat_map(|slot| slot.to_le_bytes()));
    }
    body_sections.push((section::NAME_INDEX, name_index, name_slots));
    let strings = std::mem::take(&mut generator.strings.bytes);
    let strings_len = strings.len();
    body_sections.push((section::STRINGS, strings, strings_len));
    body_sections.sort_by_key(|(id, _, _)| *id);

    let mut header_sections = [(0u32, 0u32); section::COUNT];
    let mut body = Vec::new();
    for (id, bytes, count) in &body_sections {
        let offset = format::HEADER_SIZE + body.len();
        header_sections[*id] = (offset as u32, *count as u32);
        body.extend_from_slice(bytes);
    }
    let policy_hash: [u8; 32] = Sha256::digest(&body).into();
    let mut table = Vec::with_capacity(format::HEADER_SIZE + body.len() + format::SIGNATURE_SIZE);
    table.resize(format::header::SECTIONS, 0);
    table[format::header::MAGIC..][..4].copy_from_slice(&format::MAGIC);
    table[format::header::FORMAT_VERSION..][..2].copy_from_slice(&format::VERSION.to_le_bytes());
    table[format::header::POLICY_HASH..][..32].copy_from_slice(&policy_hash);
    table[format::header::POLICY_VERSION..][..8].copy_from_slice(&policy_version.to_le_bytes());
    table[format::header::FLAGS..][..2].copy_from_slice(&flags.to_le_bytes());
    for (offset, count) in header_sections {
        table.extend_from_slice(&offset.to_le_bytes());
        table.extend_from_slice(&count.to_le_bytes());
    }
    table.extend_from_slice(&body);
    let signature = key.sign(&table);
    table.extend_from_slice(&signature.to_bytes());
    Ok(Compiled {
        stats: TableStats {
            bytes: table.len(),
            buckets: bucket_count as usize,
            entries: entry_count as usize,
            programs_bytes,
        },
        bytes: table,
        policy_hash,
    })
}

impl Generator<'_> {
    fn symbol(&self, name: &str) -> u16 {
        self.symbols.get(name).copied().unwrap_or(0)
    }

    /// The program of `rule` for `agent` calling `tool` (attributes folded to constants), stored
    /// once per distinct byte content; returns its offset.
    fn program(&mut self, rule: RuleId, agent: AgentId, tool: ToolId) -> Result<u32, Error> {
        let mut code = Vec::new();
        match &self.policy.rules[rule].condition {
            None => code.extend_from_slice(&[op::PUSH_BOOL, 1]),
            Some(condition) => {
                if depth(condition) > format::MAX_STACK {
                    return Err(Error::ConditionTooDeep { rule });
                }
                if let Err(constant) = self.condition(&mut code, condition, agent, tool) {
                    code.extend_from_slice(&[op::PUSH_BOOL, u8::from(constant)]);
                }
            }
        }
        code.push(op::END);
        if let Some(&offset) = self.program_index.get(&code) {
            return Ok(offset);
        }
        let offset = self.programs.len() as u32;
        self.programs.extend_from_slice(&code);
        self.program_index.insert(code, offset);
        Ok(offset)
    }

    fn constant(&mut self, code: &mut Vec<u8>, value: &Value) {
        match value {
            Value::Int(v) => {
                code.push(op::PUSH_INT);
                code.extend_from_slice(&v.to_le_bytes());
            }
            Value::Bool(v) => code.extend_from_slice(&[op::PUSH_BOOL, u8::from(*v)]),
            Value::Str(v) => {
                let (offset, len) = self.strings.add(v.as_bytes());
                code.push(op::PUSH_STR);
                code.extend_from_slice(&offset.to_le_bytes());
                code.extend_from_slice(&len.to_le_bytes());
            }
            Value::Sym(v) => {
                code.push(op::PUSH_SYM);
                code.extend_from_slice(&self.symbol(v).to_le_bytes());
            }
            // Lists and objects are never constants in a checked condition; as text they
            // compare with nothing, as above.
            Value::List(_) | Value::Object(_) => {
                let (offset, len) = self.strings.add(b"");
                code.push(op::PUSH_STR);
                code.extend_from_slice(&offset.to_le_bytes());
                code.extend_from_slice(&len.to_le_bytes());
            }
            // Checking turns every decimal constant into an integer in its argument's units;
            // were one left, it would be text, and comparing it with a number denies as
            // malformed (and translation validation reports the difference).
            Value::Decimal(v) => {
                let (offset, len) = self.strings.add(v.as_bytes());
                code.push(op::PUSH_STR);
                code.extend_from_slice(&offset.to_le_bytes());
                code.extend_from_slice(&len.to_le_bytes());
            }
        }
    }

    /// The schema of the element `up` quantifiers out (0: the innermost).
    fn element(&self, up: u8) -> Option<&ArgSchema> {
        let index = self.elements.len().checked_sub(1 + usize::from(up))?;
        self.elements.get(index)
    }

    /// The index of an element's field `field` among its fields in name order, as `FIELD` and
    /// `HAS_FIELD` take it. A field a checked policy always has; the impossible miss is an index
    /// the loader refuses.
    fn field_index(&self, up: u8, field: &str) -> u8 {
        let index = match self.element(up).map(|e| &e.ty) {
            Some(ArgType::Object(fields)) => {
                let mut names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
                names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                names.iter().position(|n| *n == field)
            }
            _ => None,
        };
        index
            .unwrap_or(usize::from(u8::MAX))
            .min(usize::from(u8::MAX)) as u8
    }

    fn term(&mut self, code: &mut Vec<u8>, term: &Term, agent: AgentId, tool: ToolId) {
        let policy = self.policy;
        match term {
            Term::Arg(name) => {
                let slot = self.slots[tool]
                    .iter()
                    .position(|n| n == name)
                    .unwrap_or(usize::from(u8::MAX));
                code.extend_from_slice(&[op::ARG, slot.min(usize::from(u8::MAX)) as u8]);
            }
            Term::Context(field) => {
                let field = match field {
                    ContextField::Env => op::CTX_ENV,
                    ContextField::Hour => op::CTX_HOUR,
                    ContextField::Depth => op::CTX_DEPTH,
                    ContextField::Origin => op::CTX_ORIGIN,
                };
                code.extend_from_slice(&[op::CTX, field]);
            }
            // An attribute a checked policy always has; the (impossible) missing case is a
            // type error at run time, which fails closed.
            Term::AgentAttr(name) => match policy.agents[agent].attrs.get(name) {
                Some((value, _)) => self.constant(code, &value.clone()),
                None => code.extend_from_slice(&[op::PUSH_BOOL, 0]),
            },
            Term::ToolAttr(name) => match policy.tools[tool].attrs.get(name) {
                Some((value, _)) => self.constant(code, &value.clone()),
                None => code.extend_from_slice(&[op::PUSH_BOOL, 0]),
            },
            Term::ToolCost => self.constant(code, &Value::Int(policy.tools[tool].cost)),
            Term::ToolEnv => match policy.tools[tool].env.clone() {
                Some(env) => self.constant(code, &Value::Sym(env)),
                None => code.extend_from_slice(&[op::PUSH_BOOL, 0]),
            },
            Term::Const(value) => self.constant(code, value),
            Term::Var(up) => var(code, *up),
            Term::VarField(up, field) => {
                let index = self.field_index(*up, field);
                var(code, *up);
                code.extend_from_slice(&[op::FIELD, index]);
            }
            Term::Len(list) => {
                self.term(code, &list.term(), agent, tool);
                code.push(op::LEN);
            }
        }
    }

    /// The schema of a list a condition reads, in `tool`.
    fn list_schema(&self, list: &ListRef, tool: ToolId) -> Option<ArgSchema> {
        match list {
            ListRef::Arg(name) => self.policy.tools[tool].arg(name).cloned(),
            ListRef::Var(up) => self.element(*up).cloned(),
            ListRef::VarField(up, field) => match &self.element(*up)?.ty {
                ArgType::Object(fields) => fields.iter().find(|f| f.name == *field).cloned(),
                _ => None,
            },
        }
    }

    /// The value of a term that does not depend on the request: attributes, cost, constants.
    fn constant_term(&self, term: &Term, agent: AgentId, tool: ToolId) -> Option<Value> {
        let policy = self.policy;
        match term {
            Term::AgentAttr(name) => policy.agents[agent].attrs.get(name).map(|(v, _)| v.clone()),
            Term::ToolAttr(name) => policy.tools[tool].attrs.get(name).map(|(v, _)| v.clone()),
            Term::ToolCost => Some(Value::Int(policy.tools[tool].cost)),
            Term::ToolEnv => policy.tools[tool].env.clone().map(Value::Sym),
            Term::Const(value) => Some(value.clone()),
            Term::Arg(_) | Term::Context(_) | Term::Var(_) | Term::VarField(..) | Term::Len(_) => {
                None
            }
        }
    }

    /// Emits a condition. Parts that do not depend on the request are folded at compile time:
    /// `Err(b)` means the condition is the constant `b` and nothing was emitted. Translation
    /// validation proves the folded program equivalent to the source condition.
    fn condition(
        &mut self,
        code: &mut Vec<u8>,
        condition: &Condition,
        agent: AgentId,
        tool: ToolId,
    ) -> Result<(), bool> {
        match &condition.kind {
            ConditionKind::Or(a, b) | ConditionKind::And(a, b) => {
                let is_or = matches!(condition.kind, ConditionKind::Or(..));
                // Both are commutative and side-effect free: the deeper side first keeps the stack
                // shallow.
                let (first, second) = if depth(b) > depth(a) { (b, a) } else { (a, b) };
                let (mut first_code, mut second_code) = (Vec::new(), Vec::new());
                let first_result = self.condition(&mut first_code, first, agent, tool);
                let second_result = self.condition(&mut second_code, second, agent, tool);
                match (first_result, second_result) {
                    (Err(x), _) | (_, Err(x)) if x == is_or => Err(is_or),
                    (Err(_), Err(_)) => Err(!is_or),
                    (Err(_), Ok(())) => {
                        code.extend_from_slice(&second_code);
                        Ok(())
                    }
                    (Ok(()), Err(_)) => {
                        code.extend_from_slice(&first_code);
                        Ok(())
                    }
                    (Ok(()), Ok(())) => {
                        code.extend_from_slice(&first_code);
                        code.extend_from_slice(&second_code);
                        code.push(if is_or { op::OR } else { op::AND });
                        Ok(())
                    }
                }
            }
            ConditionKind::Not(inner) => match self.condition(code, inner, agent, tool) {
                Err(value) => Err(!value),
                Ok(()) => {
                    code.push(op::NOT);
                    Ok(())
                }
            },
            ConditionKind::HasField(up, field) => {
                let optional = match self.element(*up).map(|e| &e.ty) {
                    Some(ArgType::Object(fields)) => {
                        fields.iter().any(|f| f.name == *field && f.optional)
                    }
                    _ => false,
                };
                // A required field is always given (validation denies an element without it).
                if !optional {
                    return Err(true);
                }
                let index = self.field_index(*up, field);
                var(code, *up);
                code.extend_from_slice(&[op::HAS_FIELD, index]);
                Ok(())
            }
            ConditionKind::Has(name) => {
                let declared = &self.policy.tools[tool];
                match declared.arg(name) {
                    // A required argument is always given (validation denies a call without it).
                    Some(arg) if !arg.optional => Err(true),
                    _ => {
                        let slot = self.slots[tool]
                            .iter()
                            .position(|n| n == name)
                            .unwrap_or(usize::from(u8::MAX));
                        code.extend_from_slice(&[op::HAS, slot.min(usize::from(u8::MAX)) as u8]);
                        Ok(())
                    }
                }
            }
            ConditionKind::Quantified { all, list, body } => {
                // A list a checked policy always has; the impossible miss reads as an element
                // without fields (its programs fail closed at the loader or the gate).
                let element = match self.list_schema(list, tool).map(|a| a.ty) {
                    Some(ArgType::List { element, .. }) => *element,
                    _ => ArgSchema {
                        name: String::new(),
                        ty: ArgType::Bool,
                        optional: false,
                        length: None,
                        span: condition.span,
                    },
                };
                self.elements.push(element);
                let mut body_code = Vec::new();
                let folded = self.condition(&mut body_code, body, agent, tool);
                self.elements.pop();
                match folded {
                    // Every element of any list satisfies a true body; none a false one.
                    Err(value) if value == *all => return Err(value),
                    Err(value) => body_code = vec![op::PUSH_BOOL, u8::from(value)],
                    Ok(()) => {}
                }
                let Ok(length) = u16::try_from(body_code.len()) else {
                    // Too long to jump over: a program the loader refuses (it fails closed).
                    code.push(op::END);
                    return Ok(());
                };
                self.term(code, &list.term(), agent, tool);
                code.push(if *all { op::ALL } else { op::ANY });
                code.extend_from_slice(&length.to_le_bytes());
                code.extend_from_slice(&body_code);
                Ok(())
            }
            ConditionKind::Bool(term) => match self.constant_term(term, agent, tool) {
                Some(Value::Bool(value)) => Err(value),
                _ => {
                    self.term(code, term, agent, tool);
                    Ok(())
                }
            },
            ConditionKind::Compare {
                op: compare,
                lhs,
                rhs,
            } => {
                if let (Some(a), Some(b)) = (
                    self.constant_term(lhs, agent, tool),
                    self.constant_term(rhs, agent, tool),
                ) {
                    if let Some(value) = fold_compare(*compare, &a, &b) {
                        return Err(value);
                    }
                }
                self.term(code, lhs, agent, tool);
                self.term(code, rhs, agent, tool);
                code.push(match compare {
                    CompareOp::Eq => op::EQ,
                    CompareOp::Ne => op::NE,
                    CompareOp::Lt => op::LT,
                    CompareOp::Le => op::LE,
                    CompareOp::Gt => op::GT,
                    CompareOp::Ge => op::GE,
                });
                Ok(())
            }
            ConditionKind::In { lhs, set } => {
                if let Some(value) = self.constant_term(lhs, agent, tool) {
                    return Err(set.contains(&value));
                }
                if set.is_empty() {
                    return Err(false);
                }
                for (index, value) in set.iter().enumerate() {
                    self.term(code, lhs, agent, tool);
                    self.constant(code, value);
                    code.push(op::EQ);
                    if index > 0 {
                        code.push(op::OR);
                    }
                }
                Ok(())
            }
            ConditionKind::Str {
                op: string_op,
                lhs,
                rhs,
            } => {
                if let (Some(Value::Str(a)), Some(Value::Str(b))) = (
                    self.constant_term(lhs, agent, tool),
                    self.constant_term(rhs, agent, tool),
                ) {
                    let (a, b) = (a.as_bytes(), b.as_bytes());
                    return Err(match string_op {
                        StringOp::StartsWith => a.starts_with(b),
                        StringOp::EndsWith => a.ends_with(b),
                        StringOp::Contains => b.is_empty() || a.windows(b.len()).any(|w| w == b),
                    });
                }
                self.term(code, lhs, agent, tool);
                self.term(code, rhs, agent, tool);
                code.push(match string_op {
                    StringOp::StartsWith => op::STARTS_WITH,
                    StringOp::EndsWith => op::ENDS_WITH,
                    StringOp::Contains => op::CONTAINS,
                });
                Ok(())
            }
        }
    }
}

/// A comparison of two constants, as `eval` compares; `None` for mismatched kinds (left to the
/// gate, which fails closed on them).
fn fold_compare(op: CompareOp, a: &Value, b: &Value) -> Option<bool> {
    let same_kind = std::mem::discriminant(a) == std::mem::discriminant(b);
    match (op, a, b) {
        (CompareOp::Eq, _, _) if same_kind => Some(a == b),
        (CompareOp::Ne, _, _) if same_kind => Some(a != b),
        (CompareOp::Lt, Value::Int(x), Value::Int(y)) => Some(x < y),
        (CompareOp::Le, Value::Int(x), Value::Int(y)) => Some(x <= y),
        (CompareOp::Gt, Value::Int(x), Value::Int(y)) => Some(x > y),
        (CompareOp::Ge, Value::Int(x), Value::Int(y)) => Some(x >= y),
        _ => None,
    }
}

/// Pushes the element `up` quantifiers out: `VAR` for the innermost, `VAR_UP up` beyond it.
fn var(code: &mut Vec<u8>, up: u8) {
    match up {
        0 => code.push(op::VAR),
        up => code.extend_from_slice(&[op::VAR_UP, up]),
    }
}

/// Stack slots a condition needs when compiled deeper-side-first.
fn depth(condition: &Condition) -> usize {
    match &condition.kind {
        ConditionKind::Or(a, b) | ConditionKind::And(a, b) => {
            let (x, y) = (depth(a), depth(b));
            if x == y {
                x + 1
            } else {
                x.max(y)
            }
        }
        ConditionKind::Not(inner) => depth(inner),
        // The list on the stack, then its result; the body runs on a stack of its own.
        ConditionKind::Quantified { body, .. } => depth(body).max(1),
        ConditionKind::Bool(_) | ConditionKind::Has(_) | ConditionKind::HasField(..) => 1,
        ConditionKind::Compare { .. } | ConditionKind::Str { .. } | ConditionKind::In { .. } => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceSet;
    use std::fmt::Write as _;

    /// The pairs built rule by rule are the model's definition, pair by pair: every kind of
    /// principal (agent, role, any) and tool pattern (exact, prefix, domain, effect, any), both
    /// effects, and limits.
    #[test]
    fn the_rules_and_limits_of_each_pair_are_the_models() {
        let mut text = String::from("domain money { private }\ndomain docs { public }\n");
        for t in 0..12 {
            let domain = if t % 3 == 0 { "docs" } else { "money" };
            let effect = ["read", "write", "external"][t % 3];
            let _ = writeln!(
                text,
                "tool svc{}.op{t} {{ domain {domain} effect {effect} args {{ n: int }} }}",
                t % 4
            );
        }
        for a in 0..9 {
            let _ = writeln!(
                text,
                "agent a{a} {{ roles [{}] }}",
                ["team", "ops", "audit"][a % 3]
            );
        }
        for i in 0..60usize {
            let principal = match i % 4 {
                0 => format!("agent a{}", i % 9),
                1 => "role team".to_owned(),
                2 => "role ops".to_owned(),
                _ => "any".to_owned(),
            };
            let tools = match i % 5 {
                0 => format!("svc{}.op{}", (i % 12) % 4, i % 12),
                1 => format!("svc{}.*", i % 4),
                2 => "domain money".to_owned(),
                3 => "effect read".to_owned(),
                _ => "any".to_owned(),
            };
            let effect = if i % 7 == 0 { "forbid" } else { "permit" };
            let _ = writeln!(
                text,
                "{effect} {principal} to call {tools} when args.n <= {i};"
            );
        }
        for i in 0..8usize {
            let principal = ["role team", "any", "agent a1", "role ops"][i % 4];
            let tools = ["svc1.*", "domain docs", "effect write", "svc2.op6"][i % 4];
            let _ = writeln!(text, "limit {principal} on {tools} rate {} per 1h;", 10 + i);
        }
        let policy = crate::load(&SourceSet::single("pairs.toll", &text)).unwrap();
        let applying = Applying::of(&policy);
        let mut nonempty = 0;
        for agent in 0..policy.agents.len() {
            for tool in 0..policy.tools.len() {
                let (forbids, permits, limits) = applying.at(agent, tool);
                assert_eq!(
                    forbids,
                    policy.rules_matching(agent, tool, RuleEffect::Forbid)
                );
                assert_eq!(
                    permits,
                    policy.rules_matching(agent, tool, RuleEffect::Permit)
                );
                assert_eq!(limits, policy.limits_matching(agent, tool));
                nonempty += usize::from(!permits.is_empty());
            }
        }
        assert!(nonempty > 50, "{nonempty}");
    }
}
