//! The gate: decides calls against a loaded table, keeping limit counters, failure-response
//! counters and revocations in memory the caller provides. It follows the book's semantics step
//! by step (the same order as the reference evaluator) and never allocates or panics: anything
//! malformed is a deny.

use crate::format::{self, op, section};
use crate::table::Table;
use crate::Reason;
use sha2::{Digest, Sha256};

/// An argument value as the agent sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgValue<'a> {
    Int(i64),
    Bool(bool),
    /// A string, or an enum value by name.
    Str(&'a str),
}

/// One tool call to decide.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub agent: &'a str,
    pub tool: &'a str,
    pub args: &'a [(&'a str, ArgValue<'a>)],
    /// Agents that delegated, origin first; the acting agent is not included.
    pub via: &'a [&'a str],
    pub env: Option<&'a str>,
    /// Seconds since the Unix epoch.
    pub time: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Option<Reason>,
    /// The forbid that denied, or the first permit that allowed the acting agent (source order).
    pub rule: Option<u16>,
    /// The limit that denied.
    pub limit: Option<u16>,
    /// This denial revoked the acting agent.
    pub revoked_agent: bool,
}

impl Decision {
    const fn deny(reason: Reason) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            reason: Some(reason),
            rule: None,
            limit: None,
            revoked_agent: false,
        }
    }
}

/// What a state slot counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotKind {
    Empty,
    /// Allowed calls (rate) or spent cost (budget) of an agent under a limit.
    Limit,
    /// Allowed identical calls of an agent under a `repeat` limit; `digest` names the call.
    Repeat,
    /// Denials of an agent under a failure response.
    Denials,
    /// The agent is revoked.
    Revoked,
}

/// One counter of gate state. Callers allocate `[Slot::EMPTY; N]` (statically, on the stack or
/// however they like) and hand it to [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub kind: SlotKind,
    pub id: u16,
    pub agent: u16,
    pub digest: [u8; 16],
    pub window: u64,
    pub value: i64,
}

impl Slot {
    pub const EMPTY: Slot = Slot {
        kind: SlotKind::Empty,
        id: 0,
        agent: 0,
        digest: [0; 16],
        window: 0,
        value: 0,
    };

    fn matches(&self, kind: SlotKind, id: u16, agent: u16, digest: &[u8; 16]) -> bool {
        self.kind == kind && self.id == id && self.agent == agent && self.digest == *digest
    }
}

/// Slots a table needs besides repeat guards: one per (limit, agent), per (response, agent) and
/// per agent (revocation). Add room for as many distinct repeated calls as you want tracked.
pub fn slots_needed(table: &Table<'_>, repeat_capacity: usize) -> usize {
    let agents = table.agent_count();
    (table.limit_count() + table.response_count() + 1)
        .saturating_mul(agents)
        .saturating_add(repeat_capacity)
}

const NO_DIGEST: [u8; 16] = [0; 16];

/// Finds a slot, or the empty one to claim for it. `None` when the state is full.
fn slot_index(
    state: &[Slot],
    kind: SlotKind,
    id: u16,
    agent: u16,
    digest: &[u8; 16],
) -> Option<usize> {
    if state.is_empty() {
        return None;
    }
    // Open addressing: start where the key hashes, probe linearly.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let key = [
        kind as u8,
        (id >> 8) as u8,
        id as u8,
        (agent >> 8) as u8,
        agent as u8,
    ];
    for byte in key.iter().chain(digest.iter()) {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let start = (hash % state.len() as u64) as usize;
    for step in 0..state.len() {
        let index = (start + step) % state.len();
        let slot = state.get(index)?;
        if slot.kind == SlotKind::Empty || slot.matches(kind, id, agent, digest) {
            return Some(index);
        }
    }
    None
}

fn read(
    state: &[Slot],
    kind: SlotKind,
    id: u16,
    agent: u16,
    digest: &[u8; 16],
    window: u64,
) -> i64 {
    slot_index(state, kind, id, agent, digest)
        .and_then(|index| state.get(index))
        .filter(|slot| slot.kind == kind && slot.window == window)
        .map_or(0, |slot| slot.value)
}

/// Adds to a counter; `false` when the state is full.
fn add(
    state: &mut [Slot],
    kind: SlotKind,
    id: u16,
    agent: u16,
    digest: &[u8; 16],
    window: u64,
    amount: i64,
) -> bool {
    let Some(index) = slot_index(state, kind, id, agent, digest) else {
        return false;
    };
    let Some(slot) = state.get_mut(index) else {
        return false;
    };
    if slot.kind == SlotKind::Empty || slot.window != window {
        *slot = Slot {
            kind,
            id,
            agent,
            digest: *digest,
            window,
            value: 0,
        };
    }
    slot.value = slot.value.saturating_add(amount);
    true
}

/// Whether `agent` is revoked.
pub fn is_revoked(state: &[Slot], agent: u16) -> bool {
    read(state, SlotKind::Revoked, 0, agent, &NO_DIGEST, 0) > 0
}

/// A value on the program stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value<'a> {
    Int(i64),
    Bool(bool),
    Str(&'a [u8]),
    Sym(u16),
}

/// A validated argument: the schema's value, enum values as symbols.
type Args<'a> = [Option<Value<'a>>; format::MAX_ARGS];

struct Context {
    env: Option<u16>,
    hour: i64,
    depth: i64,
    origin: u16,
}

/// Decides one call and updates the state.
pub fn decide(table: &Table<'_>, state: &mut [Slot], call: &Call<'_>) -> Decision {
    let Some(agent) = table.find(section::AGENTS, call.agent.as_bytes()) else {
        return Decision::deny(Reason::UnknownAgent);
    };
    let agent = agent as u16;
    let mut decision = decide_known(table, state, call, agent);
    if decision.verdict == Verdict::Deny && decision.reason != Some(Reason::Revoked) {
        decision.revoked_agent = count_denial(table, state, agent, call.time);
    }
    decision
}

fn agent_symbol(table: &Table<'_>, agent: u16) -> Option<u16> {
    table
        .bytes
        .u16(table.record(section::AGENTS, usize::from(agent))? + 8)
}

fn decide_known(table: &Table<'_>, state: &mut [Slot], call: &Call<'_>, agent: u16) -> Decision {
    // (1) Validation.
    let Some(tool) = table.find(section::TOOLS, call.tool.as_bytes()) else {
        return Decision::deny(Reason::UnknownTool);
    };
    if call.via.len() > format::MAX_CHAIN {
        return Decision::deny(Reason::InvalidRequest);
    }
    let mut chain = [0u16; format::MAX_CHAIN + 1];
    for (slot, name) in chain.iter_mut().zip(call.via.iter()) {
        match table.find(section::AGENTS, name.as_bytes()) {
            Some(found) => *slot = found as u16,
            None => return Decision::deny(Reason::InvalidRequest),
        }
    }
    if let Some(last) = chain.get_mut(call.via.len()) {
        *last = agent;
    }
    let chain = chain.get(..=call.via.len()).unwrap_or(&[]);
    let env = match (call.env, table.count(section::ENVS)) {
        (None, 0) => None,
        (Some(name), declared) if declared > 0 => {
            let symbol = table
                .find(section::SYMBOLS, name.as_bytes())
                .map(|s| s as u16);
            let known = symbol.is_some_and(|s| {
                (0..declared).any(|i| table.u16_item(section::ENVS, i) == Some(s))
            });
            if !known {
                return Decision::deny(Reason::InvalidRequest);
            }
            symbol
        }
        _ => return Decision::deny(Reason::InvalidRequest),
    };
    let mut args: Args<'_> = [None; format::MAX_ARGS];
    if !validate_args(table, tool, call, &mut args) {
        return Decision::deny(Reason::InvalidArgument);
    }

    // (2) Revocation.
    if is_revoked(state, agent) {
        return Decision::deny(Reason::Revoked);
    }

    // (3) Delegation edges.
    let mut widening = [false; format::MAX_CHAIN];
    for (position, pair) in chain.windows(2).enumerate() {
        let (Some(from), Some(to)) = (pair.first(), pair.get(1)) else {
            return Decision::deny(Reason::InvalidRequest);
        };
        match delegation(table, *from, *to) {
            Some(is_widening) => {
                if let Some(flag) = widening.get_mut(position) {
                    *flag = is_widening;
                }
            }
            None => return Decision::deny(Reason::DelegationNotAllowed),
        }
    }

    let bucket = dispatch(table, agent, tool);
    // (4) Depth limits.
    let depth = call.via.len() as u64;
    for limit in limits_of(table, bucket) {
        let Some((kind, value, _)) = limit_record(table, limit) else {
            return Decision::deny(Reason::Malformed);
        };
        if kind == format::limit::DEPTH && depth > value as u64 {
            let mut decision = Decision::deny(Reason::DelegationDepth);
            decision.limit = Some(limit);
            return decision;
        }
    }

    // (5) Rules for the acting agent and every delegator whose hop does not widen.
    let context = Context {
        env,
        hour: ((call.time / 3_600) % 24) as i64,
        depth: depth as i64,
        origin: chain
            .first()
            .and_then(|&a| agent_symbol(table, a))
            .unwrap_or(0),
    };
    let mut allowing = None;
    let delegators = chain.len().saturating_sub(1);
    let members = core::iter::once(agent).chain(
        chain
            .iter()
            .take(delegators)
            .enumerate()
            .filter(|(position, _)| !widening.get(*position).copied().unwrap_or(false))
            .map(|(_, &member)| member),
    );
    for member in members {
        match authority(table, dispatch(table, member, tool), &args, &context) {
            Authority::Forbidden(rule) => {
                let mut decision = Decision::deny(Reason::Forbidden);
                decision.rule = Some(rule);
                return decision;
            }
            Authority::NotPermitted => return Decision::deny(Reason::NotPermitted),
            Authority::Malformed => return Decision::deny(Reason::Malformed),
            Authority::Permitted(rule) => {
                if member == agent && allowing.is_none() {
                    allowing = Some(rule);
                }
            }
        }
    }

    // (6) Limits, in order.
    let cost = tool_cost(table, tool);
    // Only repeat guards need the call's digest; most buckets have none, so compute it lazily.
    let has_repeat = limits_of(table, bucket)
        .any(|l| limit_record(table, l).is_some_and(|(kind, _, _)| kind == format::limit::REPEAT));
    let digest = if has_repeat {
        call_digest(tool, &args)
    } else {
        NO_DIGEST
    };
    for limit in limits_of(table, bucket) {
        let Some((kind, value, window)) = limit_record(table, limit) else {
            return Decision::deny(Reason::Malformed);
        };
        let Some((slot, amount, reason)) = counter(kind, cost) else {
            continue; // depth limits were checked in (4)
        };
        let digest = if slot == SlotKind::Repeat {
            &digest
        } else {
            &NO_DIGEST
        };
        let window_index = call.time.checked_div(window).unwrap_or(0);
        if read(state, slot, limit, agent, digest, window_index).saturating_add(amount) > value {
            let mut decision = Decision::deny(reason);
            decision.limit = Some(limit);
            return decision;
        }
    }

    // (7) Allow, and charge every limit that applies.
    for limit in limits_of(table, bucket) {
        let Some((kind, _, window)) = limit_record(table, limit) else {
            continue;
        };
        let Some((slot, amount, _)) = counter(kind, cost) else {
            continue;
        };
        let digest = if slot == SlotKind::Repeat {
            &digest
        } else {
            &NO_DIGEST
        };
        let window_index = call.time.checked_div(window).unwrap_or(0);
        if !add(state, slot, limit, agent, digest, window_index, amount) {
            // Fail closed: a limit that cannot be counted is not enforced by allowing.
            return Decision::deny(Reason::StateFull);
        }
    }
    Decision {
        verdict: Verdict::Allow,
        reason: None,
        rule: allowing,
        limit: None,
        revoked_agent: false,
    }
}

/// What a counting limit counts: its slot kind, how much one allowed call adds, and the reason
/// it denies with. `None` for depth limits, which count nothing.
fn counter(kind: u8, cost: i64) -> Option<(SlotKind, i64, Reason)> {
    match kind {
        format::limit::RATE => Some((SlotKind::Limit, 1, Reason::RateLimited)),
        format::limit::REPEAT => Some((SlotKind::Repeat, 1, Reason::LoopGuard)),
        format::limit::BUDGET => Some((SlotKind::Limit, cost, Reason::BudgetExhausted)),
        _ => None,
    }
}

fn count_denial(table: &Table<'_>, state: &mut [Slot], agent: u16, time: u64) -> bool {
    let Some(at) = table.record(section::AGENTS, usize::from(agent)) else {
        return false;
    };
    let start = usize::from(table.bytes.u16(at + 10).unwrap_or(0));
    let count = usize::from(table.bytes.u16(at + 12).unwrap_or(0));
    let mut revoked = false;
    for index in start..start.saturating_add(count) {
        let Some(response) = table.u16_item(section::RESPONSE_REFS, index) else {
            continue;
        };
        let Some(record) = table.record(section::RESPONSES, usize::from(response)) else {
            continue;
        };
        let needed = i64::from(table.bytes.u32(record).unwrap_or(1));
        let window = table.bytes.u64(record + 8).unwrap_or(1);
        let window_index = time.checked_div(window).unwrap_or(0);
        // A full state cannot count denials; revoke rather than forget them (fail closed).
        let counted = add(
            state,
            SlotKind::Denials,
            response,
            agent,
            &NO_DIGEST,
            window_index,
            1,
        );
        let reached = read(
            state,
            SlotKind::Denials,
            response,
            agent,
            &NO_DIGEST,
            window_index,
        ) >= needed;
        if (!counted || reached) && !is_revoked(state, agent) {
            let _ = add(state, SlotKind::Revoked, 0, agent, &NO_DIGEST, 0, 1);
            revoked = true;
        }
    }
    revoked
}

fn delegation(table: &Table<'_>, from: u16, to: u16) -> Option<bool> {
    let (mut low, mut high) = (0usize, table.count(section::DELEGATIONS));
    while low < high {
        let middle = low + (high - low) / 2;
        let at = table.record(section::DELEGATIONS, middle)?;
        let pair = (table.bytes.u16(at)?, table.bytes.u16(at + 2)?);
        match pair.cmp(&(from, to)) {
            core::cmp::Ordering::Equal => return Some(table.bytes.u8(at + 4)? == 1),
            core::cmp::Ordering::Less => low = middle + 1,
            core::cmp::Ordering::Greater => high = middle,
        }
    }
    None
}

fn dispatch(table: &Table<'_>, agent: u16, tool: usize) -> Option<usize> {
    let index = usize::from(agent)
        .checked_mul(table.tool_count())?
        .checked_add(tool)?;
    let bucket = table.bytes.u32(table.record(section::DISPATCH, index)?)?;
    (bucket != format::NO_BUCKET).then_some(bucket as usize)
}

/// The limit ids of a bucket, in order.
fn limits_of<'t>(table: &'t Table<'_>, bucket: Option<usize>) -> impl Iterator<Item = u16> + 't {
    let (start, count) = bucket
        .and_then(|b| table.record(section::BUCKETS, b))
        .map_or((0, 0), |at| {
            (
                table.bytes.u32(at + 8).unwrap_or(0) as usize,
                usize::from(table.bytes.u16(at + 12).unwrap_or(0)),
            )
        });
    (start..start.saturating_add(count))
        .filter_map(move |index| table.u16_item(section::LIMIT_REFS, index))
}

fn limit_record(table: &Table<'_>, limit: u16) -> Option<(u8, i64, u64)> {
    let at = table.record(section::LIMITS, usize::from(limit))?;
    Some((
        table.bytes.u8(at)?,
        table.bytes.i64(at + 8)?,
        table.bytes.u64(at + 16)?,
    ))
}

fn tool_cost(table: &Table<'_>, tool: usize) -> i64 {
    table
        .record(section::TOOLS, tool)
        .and_then(|at| table.bytes.i64(at + 8))
        .unwrap_or(0)
}

/// Identifies a call for repeat guards: SHA-256 of the tool and its validated arguments.
fn call_digest(tool: usize, args: &Args<'_>) -> [u8; 16] {
    let mut hasher = Sha256::new();
    hasher.update((tool as u32).to_le_bytes());
    for value in args.iter().flatten() {
        match value {
            Value::Int(v) => {
                hasher.update([1]);
                hasher.update(v.to_le_bytes());
            }
            Value::Bool(v) => hasher.update([2, u8::from(*v)]),
            Value::Str(v) => {
                hasher.update([3]);
                hasher.update((v.len() as u64).to_le_bytes());
                hasher.update(v);
            }
            Value::Sym(v) => {
                hasher.update([4]);
                hasher.update(v.to_le_bytes());
            }
        }
    }
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    for (o, d) in out.iter_mut().zip(digest.iter()) {
        *o = *d;
    }
    out
}

/// (V-Args): every schema argument present once with the right type and within bounds, nothing
/// else. Fills `args` in schema (name) order.
fn validate_args<'a>(table: &Table<'a>, tool: usize, call: &Call<'a>, args: &mut Args<'a>) -> bool {
    let Some(at) = table.record(section::TOOLS, tool) else {
        return false;
    };
    let start = usize::from(table.bytes.u16(at + 16).unwrap_or(0));
    let count = usize::from(table.bytes.u16(at + 18).unwrap_or(0));
    if call.args.len() != count {
        return false;
    }
    for (slot, index) in args.iter_mut().zip(start..start.saturating_add(count)) {
        let Some(record) = table.record(section::ARGS, index) else {
            return false;
        };
        let Some(name) = table.ref_at(record) else {
            return false;
        };
        let mut given = call.args.iter().filter(|(n, _)| n.as_bytes() == name);
        let (Some((_, value)), None) = (given.next(), given.next()) else {
            return false; // missing or given twice
        };
        let kind = table.bytes.u8(record + 8).unwrap_or(0);
        *slot = match (kind, value) {
            (format::arg::INT, ArgValue::Int(v)) => {
                let (min, max) = (table.bytes.i64(record + 20), table.bytes.i64(record + 28));
                if min.is_none_or(|m| *v < m) || max.is_none_or(|m| *v > m) {
                    return false;
                }
                Some(Value::Int(*v))
            }
            (format::arg::BOOL, ArgValue::Bool(v)) => Some(Value::Bool(*v)),
            (format::arg::STR, ArgValue::Str(v)) => Some(Value::Str(v.as_bytes())),
            (format::arg::ENUM, ArgValue::Str(v)) => {
                let variants_start = table.bytes.u32(record + 12).unwrap_or(0) as usize;
                let variants = table.bytes.u32(record + 16).unwrap_or(0) as usize;
                let Some(symbol) = table.find(section::SYMBOLS, v.as_bytes()).map(|s| s as u16)
                else {
                    return false;
                };
                let listed = (variants_start..variants_start.saturating_add(variants))
                    .any(|i| table.u16_item(section::VARIANTS, i) == Some(symbol));
                if !listed {
                    return false;
                }
                Some(Value::Sym(symbol))
            }
            _ => return false,
        };
    }
    true
}

enum Authority {
    Forbidden(u16),
    Permitted(u16),
    NotPermitted,
    Malformed,
}

/// (A-Forbid), (A-Permit), (A-Default) for one bucket.
fn authority(
    table: &Table<'_>,
    bucket: Option<usize>,
    args: &Args<'_>,
    context: &Context,
) -> Authority {
    let Some(at) = bucket.and_then(|b| table.record(section::BUCKETS, b)) else {
        return Authority::NotPermitted;
    };
    let start = table.bytes.u32(at).unwrap_or(0) as usize;
    let forbids = usize::from(table.bytes.u16(at + 4).unwrap_or(0));
    let permits = usize::from(table.bytes.u16(at + 6).unwrap_or(0));
    for index in start..start.saturating_add(forbids).saturating_add(permits) {
        let Some(entry) = table.record(section::ENTRIES, index) else {
            return Authority::Malformed;
        };
        let rule = table.bytes.u16(entry).unwrap_or(0);
        let program = table.bytes.u32(entry + 4).unwrap_or(0) as usize;
        let is_forbid = index < start.saturating_add(forbids);
        match run(table, program, args, context) {
            Some(true) => {
                return if is_forbid {
                    Authority::Forbidden(rule)
                } else {
                    Authority::Permitted(rule)
                };
            }
            Some(false) => {}
            // A program that cannot be evaluated fails closed: a forbid applies, a permit does not.
            None if is_forbid => return Authority::Forbidden(rule),
            None => {}
        }
    }
    Authority::NotPermitted
}

/// Runs a program to its boolean result; `None` on a type mismatch or a bad operand.
fn run(table: &Table<'_>, program: usize, args: &Args<'_>, context: &Context) -> Option<bool> {
    let programs = table.sections.get(section::PROGRAMS)?;
    let mut at = programs.offset.checked_add(program)?;
    let mut stack: [Value<'_>; format::MAX_STACK] = [Value::Bool(false); format::MAX_STACK];
    let mut depth = 0usize;
    let bytes = table.bytes;
    loop {
        let code = bytes.u8(at)?;
        at += 1;
        let pushed = match code {
            op::PUSH_INT => {
                let v = bytes.i64(at)?;
                at += 8;
                Value::Int(v)
            }
            op::PUSH_BOOL => {
                let v = bytes.u8(at)? == 1;
                at += 1;
                Value::Bool(v)
            }
            op::PUSH_STR => {
                let s = table.string(bytes.u32(at)?, bytes.u32(at + 4)?)?;
                at += 8;
                Value::Str(s)
            }
            op::PUSH_SYM => {
                let s = bytes.u16(at)?;
                at += 2;
                Value::Sym(s)
            }
            op::ARG => {
                let slot = usize::from(bytes.u8(at)?);
                at += 1;
                (*args.get(slot)?)?
            }
            op::CTX => {
                let field = bytes.u8(at)?;
                at += 1;
                match field {
                    op::CTX_ENV => Value::Sym(context.env?),
                    op::CTX_HOUR => Value::Int(context.hour),
                    op::CTX_DEPTH => Value::Int(context.depth),
                    _ => Value::Sym(context.origin),
                }
            }
            op::NOT => {
                depth = depth.checked_sub(1)?;
                let Value::Bool(v) = *stack.get(depth)? else {
                    return None;
                };
                Value::Bool(!v)
            }
            op::END => {
                return match (depth, stack.first()) {
                    (1, Some(Value::Bool(v))) => Some(*v),
                    _ => None,
                };
            }
            binary => {
                depth = depth.checked_sub(2)?;
                let (lhs, rhs) = (*stack.get(depth)?, *stack.get(depth + 1)?);
                Value::Bool(apply(binary, lhs, rhs)?)
            }
        };
        *stack.get_mut(depth)? = pushed;
        depth += 1;
    }
}

fn apply(code: u8, lhs: Value<'_>, rhs: Value<'_>) -> Option<bool> {
    use Value::*;
    Some(match (code, lhs, rhs) {
        (op::EQ, Int(a), Int(b)) => a == b,
        (op::EQ, Bool(a), Bool(b)) => a == b,
        (op::EQ, Str(a), Str(b)) => a == b,
        (op::EQ, Sym(a), Sym(b)) => a == b,
        (op::NE, Int(a), Int(b)) => a != b,
        (op::NE, Bool(a), Bool(b)) => a != b,
        (op::NE, Str(a), Str(b)) => a != b,
        (op::NE, Sym(a), Sym(b)) => a != b,
        (op::LT, Int(a), Int(b)) => a < b,
        (op::LE, Int(a), Int(b)) => a <= b,
        (op::GT, Int(a), Int(b)) => a > b,
        (op::GE, Int(a), Int(b)) => a >= b,
        (op::STARTS_WITH, Str(a), Str(b)) => a.starts_with(b),
        (op::ENDS_WITH, Str(a), Str(b)) => a.ends_with(b),
        (op::CONTAINS, Str(a), Str(b)) => b.is_empty() || a.windows(b.len()).any(|w| w == b),
        (op::AND, Bool(a), Bool(b)) => a && b,
        (op::OR, Bool(a), Bool(b)) => a || b,
        _ => return None,
    })
}
