//! The gate: decides calls against a loaded table, keeping limit counters, failure-response
//! counters and revocations in memory the caller provides. It follows the book's semantics step
//! by step (the same order as the reference evaluator) and never allocates or panics: anything
//! malformed is a deny.

use crate::format::{self, field, op, section};
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
    /// A number with a fraction or an exponent, as its JSON text (`12.50`, `1.5e2`): a decimal
    /// argument reads it exactly ([`crate::decimal::units`]); no float is involved.
    Decimal(&'a str),
    /// A list (a JSON array), its elements as sent.
    List(&'a [ArgValue<'a>]),
    /// An object (a JSON object), its fields as sent; only a list's element in this format (its
    /// fields scalars or lists).
    Object(&'a [(&'a str, ArgValue<'a>)]),
}

/// One tool call to decide, with every input named.
///
/// Only `tool` and `args` are the agent's intent. `agent`, `via`, `env` and `time` must come from
/// the embedder's trusted sources: the admitted credential (agent and attested chain), the host's
/// configuration (environment) and the host's clock (time). An agent that could set them could
/// claim authority it does not have; the credential API ([`crate::credential::decide`]) takes
/// them from the credential and the host and nowhere else.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub agent: &'a str,
    pub tool: &'a str,
    pub args: &'a [(&'a str, ArgValue<'a>)],
    /// Agents that delegated, origin first; the acting agent is not included.
    pub via: &'a [&'a str],
    pub env: Option<&'a str>,
    /// Seconds since the Unix epoch, from a trusted clock. The gate's clock never moves back: a
    /// time earlier than one the state has seen counts as the newest time seen.
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
    /// This denial revoked the acting agent (the revocation is stored in the state).
    pub revoked_agent: bool,
}

impl Decision {
    pub(crate) const fn deny(reason: Reason) -> Decision {
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
/// however they like), with `N` from [`slots_needed`], and wrap it in a [`State`].
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

    /// The persisted form of a slot: kind `u8`, id `u16`, agent `u16`, digest (16), window `u64`,
    /// value `i64`, little-endian; hosts store state in this form and no other.
    pub fn encode(&self) -> [u8; SLOT_SIZE] {
        let mut out = [0u8; SLOT_SIZE];
        let kind = match self.kind {
            SlotKind::Empty => 0u8,
            SlotKind::Limit => 1,
            SlotKind::Repeat => 2,
            SlotKind::Denials => 3,
            SlotKind::Revoked => 4,
        };
        let parts: [&[u8]; 6] = [
            &[kind],
            &self.id.to_le_bytes(),
            &self.agent.to_le_bytes(),
            &self.digest,
            &self.window.to_le_bytes(),
            &self.value.to_le_bytes(),
        ];
        let mut at = 0;
        for part in parts {
            if let Some(target) = out.get_mut(at..at + part.len()) {
                target.copy_from_slice(part);
            }
            at += part.len();
        }
        out
    }

    /// Reads [`Slot::encode`]'s form; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Slot> {
        let data = crate::table::Bytes(bytes);
        if bytes.len() != SLOT_SIZE {
            return None;
        }
        let kind = match data.u8(0)? {
            0 => SlotKind::Empty,
            1 => SlotKind::Limit,
            2 => SlotKind::Repeat,
            3 => SlotKind::Denials,
            4 => SlotKind::Revoked,
            _ => return None,
        };
        let mut digest = [0u8; 16];
        digest.copy_from_slice(data.slice(5, 16)?);
        Some(Slot {
            kind,
            id: data.u16(1)?,
            agent: data.u16(3)?,
            digest,
            window: data.u64(21)?,
            value: data.i64(29)?,
        })
    }
}

/// Bytes of [`Slot::encode`].
pub const SLOT_SIZE: usize = 37;

/// Slots for the counters a table fixes at load time: one per (limit, agent), per (failure
/// response, agent) and per agent (revocation). `None` when the count overflows.
fn dense_slots(table: &Table<'_>) -> Option<usize> {
    table
        .limit_count()
        .checked_add(table.response_count())?
        .checked_add(1)?
        .checked_mul(table.agent_count())
}

/// Slots a table needs: the dense counters (see [`State`]) plus `repeat_per_agent` slots of
/// repeat-guard room for every agent.
pub fn slots_needed(table: &Table<'_>, repeat_per_agent: usize) -> usize {
    dense_slots(table)
        .and_then(|dense| dense.checked_add(table.agent_count().checked_mul(repeat_per_agent)?))
        .unwrap_or(usize::MAX)
}

/// Why caller-provided memory cannot hold a table's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateError {
    /// Fewer slots than the table's dense counters need ([`slots_needed`] with 0 repeat room).
    TooSmall,
}

impl core::fmt::Display for StateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StateError::TooSmall => f.write_str(
                "the state has fewer slots than the table's counters need (see `slots_needed`)",
            ),
        }
    }
}

/// The gate's memory between calls, in slots the caller provides.
///
/// Layout, with `A` agents, `L` limits and `R` failure responses (all fixed by the table): slot
/// `l·A + a` counts limit `l` for agent `a`; slot `L·A + r·A + a` counts denials of agent `a`
/// under response `r`; slot `(L+R)·A + a` is agent `a`'s revocation flag. These are indexed
/// directly, so no agent can crowd out another's counters and a revocation can always be
/// recorded. The rest is split evenly into one repeat-guard room per agent: only an agent's own
/// repeated calls can fill its room, entries whose window has passed are reclaimed, and a full
/// room denies that agent alone (`state_full`). A decision does bounded work: at most one probe
/// of one room per repeat limit.
///
/// The state also keeps the newest time it has seen, so the gate's clock never moves back.
#[derive(Debug)]
pub struct State<'s> {
    slots: &'s mut [Slot],
    agents: usize,
    limits: usize,
    responses: usize,
    room: usize,
    latest: u64,
    /// Slots written since the state was wrapped (or since `clear_changes`), for a host that
    /// journals them; `changes_overflowed` when more were written than this list holds.
    changes: [u32; MAX_CHANGES],
    change_count: usize,
    changes_overflowed: bool,
}

/// The most slot writes a [`State`] lists before it only says that there were more.
pub const MAX_CHANGES: usize = 64;

impl<'s> State<'s> {
    /// Wraps caller-provided slots (fresh `Slot::EMPTY`s, or slots saved from an earlier state of
    /// the same table) as the state of `table`.
    pub fn new(table: &Table<'_>, slots: &'s mut [Slot]) -> Result<State<'s>, StateError> {
        let dense = dense_slots(table).ok_or(StateError::TooSmall)?;
        let agents = table.agent_count();
        let spare = slots.len().checked_sub(dense).ok_or(StateError::TooSmall)?;
        Ok(State {
            room: spare.checked_div(agents).unwrap_or(0),
            slots,
            agents,
            limits: table.limit_count(),
            responses: table.response_count(),
            latest: 0,
            changes: [0; MAX_CHANGES],
            change_count: 0,
            changes_overflowed: false,
        })
    }

    /// The slots written since the state was wrapped or the list cleared, by index, and whether
    /// more were written than the list holds (then persist every slot).
    pub fn changes(&self) -> (&[u32], bool) {
        (
            self.changes.get(..self.change_count).unwrap_or(&[]),
            self.changes_overflowed,
        )
    }

    pub fn clear_changes(&mut self) {
        self.change_count = 0;
        self.changes_overflowed = false;
    }

    fn changed(&mut self, index: usize) {
        let Ok(index) = u32::try_from(index) else {
            self.changes_overflowed = true;
            return;
        };
        if self
            .changes
            .get(..self.change_count)
            .is_some_and(|c| c.contains(&index))
        {
            return;
        }
        match self.changes.get_mut(self.change_count) {
            Some(slot) => {
                *slot = index;
                self.change_count += 1;
            }
            None => self.changes_overflowed = true,
        }
    }

    /// The slots, for an embedder that persists them.
    pub fn slots(&self) -> &[Slot] {
        self.slots
    }

    /// Restores one persisted slot (a host replaying its journal); ignored when out of range.
    pub fn restore_slot(&mut self, index: usize, slot: Slot) {
        if let Some(target) = self.slots.get_mut(index) {
            *target = slot;
        }
    }

    /// Repeat-guard slots per agent.
    pub fn repeat_room(&self) -> usize {
        self.room
    }

    /// The newest time the gate has seen (seconds since the Unix epoch).
    pub fn latest(&self) -> u64 {
        self.latest
    }

    /// Advances the clock to a time restored from storage; the clock never moves back.
    pub fn restore_clock(&mut self, latest: u64) {
        self.latest = self.latest.max(latest);
    }

    /// The time a decision at `now` is made at: `now`, or the newest time seen if that is later.
    pub(crate) fn observe(&mut self, now: u64) -> u64 {
        self.latest = self.latest.max(now);
        self.latest
    }

    fn dense(&self) -> usize {
        (self.limits + self.responses + 1) * self.agents
    }

    fn limit_slot(&self, limit: u16, agent: u16) -> Option<usize> {
        let (limit, agent) = (usize::from(limit), usize::from(agent));
        (limit < self.limits && agent < self.agents).then(|| limit * self.agents + agent)
    }

    fn denial_slot(&self, response: u16, agent: u16) -> Option<usize> {
        let (response, agent) = (usize::from(response), usize::from(agent));
        (response < self.responses && agent < self.agents)
            .then(|| (self.limits + response) * self.agents + agent)
    }

    fn revoked_slot(&self, agent: u16) -> Option<usize> {
        let agent = usize::from(agent);
        (agent < self.agents).then(|| (self.limits + self.responses) * self.agents + agent)
    }

    /// Whether `agent` (a table index) is revoked.
    pub fn is_revoked(&self, agent: u16) -> bool {
        self.revoked_slot(agent)
            .and_then(|index| self.slots.get(index))
            .is_some_and(|slot| slot.value > 0)
    }

    /// Revokes `agent` (a table index); `true` when it was not revoked before.
    pub fn revoke(&mut self, agent: u16) -> bool {
        let Some(index) = self.revoked_slot(agent) else {
            return false;
        };
        match self.slots.get_mut(index) {
            Some(slot) if slot.value == 0 => {
                *slot = Slot {
                    kind: SlotKind::Revoked,
                    id: 0,
                    agent,
                    digest: NO_DIGEST,
                    window: 0,
                    value: 1,
                };
                self.changed(index);
                true
            }
            _ => false,
        }
    }

    /// A dense counter's value in `window` (0 when it last counted an earlier window).
    fn read(&self, index: usize, window: u64) -> i64 {
        self.slots
            .get(index)
            .filter(|slot| slot.kind != SlotKind::Empty && slot.window == window)
            .map_or(0, |slot| slot.value)
    }

    /// Adds to the counter at `index` in `window`, starting from 0 in a new window.
    fn add(&mut self, index: usize, kind: SlotKind, id: u16, agent: u16, window: u64, amount: i64) {
        let current = self.read(index, window);
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Slot {
                kind,
                id,
                agent,
                digest: NO_DIGEST,
                window,
                value: current.saturating_add(amount),
            };
            self.changed(index);
        }
    }

    /// The slot of `agent`'s room that holds (or may take) the repeat entry for `(limit,
    /// digest)`: the entry itself, else the first reclaimable slot (empty, or counting a window
    /// that has passed). `None` when the room is full of live entries.
    fn repeat_slot(
        &self,
        table: &Table<'_>,
        limit: u16,
        agent: u16,
        digest: &[u8; 16],
        now: u64,
    ) -> Option<usize> {
        if self.room == 0 || usize::from(agent) >= self.agents {
            return None;
        }
        let base = self.dense() + usize::from(agent) * self.room;
        let mut key = u64::from(limit).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for (i, byte) in digest.iter().take(8).enumerate() {
            key ^= u64::from(*byte) << (8 * i);
        }
        let start = (key % self.room as u64) as usize;
        let mut reclaimable = None;
        for step in 0..self.room {
            let index = base + (start + step) % self.room;
            let slot = self.slots.get(index)?;
            match slot.kind {
                SlotKind::Empty => return reclaimable.or(Some(index)),
                SlotKind::Repeat if slot.id == limit && slot.digest == *digest => {
                    return Some(index)
                }
                _ => {
                    let passed = limit_record(table, slot.id)
                        .is_none_or(|(_, _, window)| slot.window != window_index(now, window));
                    if reclaimable.is_none() && passed {
                        reclaimable = Some(index);
                    }
                }
            }
        }
        reclaimable
    }

    fn repeat_read(&self, index: usize, limit: u16, digest: &[u8; 16], window: u64) -> i64 {
        self.slots
            .get(index)
            .filter(|slot| {
                slot.kind == SlotKind::Repeat
                    && slot.id == limit
                    && slot.digest == *digest
                    && slot.window == window
            })
            .map_or(0, |slot| slot.value)
    }
}

/// The fixed window (aligned to the Unix epoch) that `now` falls in.
fn window_index(now: u64, window: u64) -> u64 {
    now.checked_div(window).unwrap_or(0)
}

const NO_DIGEST: [u8; 16] = [0; 16];

/// Up to this many enum values, a value is found by comparing names; more, through the symbol
/// index.
const FEW_VARIANTS: usize = 8;

/// A value on the program stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value<'a> {
    Int(i64),
    Bool(bool),
    Str(&'a [u8]),
    Sym(u16),
    /// A list (an argument, a list's element or an object's field): its validated elements as
    /// sent, and the ARGS index of its element record, which converts each element when a body
    /// reads it.
    List(&'a [ArgValue<'a>], u32),
    /// An object element: its validated fields as sent, and the ARGS index of its record.
    Object(&'a [(&'a str, ArgValue<'a>)], u32),
}

/// The validated arguments, in schema (name) order: each one's value (enum values as symbols)
/// and which optional ones the call left out. An absent argument holds a value of its type within
/// its bounds, which no condition reads: checking guards every read with `has`.
struct Args<'a> {
    values: [Option<Value<'a>>; format::MAX_ARGS],
    /// Bit `slot`: the call left that optional argument out.
    absent: u32,
}

impl Args<'_> {
    const fn new() -> Self {
        Args {
            values: [None; format::MAX_ARGS],
            absent: 0,
        }
    }

    fn present(&self, slot: usize) -> Option<bool> {
        if slot >= format::MAX_ARGS {
            return None;
        }
        Some(self.absent.checked_shr(slot as u32).unwrap_or(0) & 1 == 0)
    }
}

struct Context {
    env: Option<u16>,
    hour: i64,
    depth: i64,
    origin: u16,
}

/// The environment a call is decided in, resolved against the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Env {
    /// No environment (valid only when the policy declares none).
    Unset,
    /// A declared environment's symbol.
    Known(u16),
    /// A name the policy does not declare.
    Invalid,
}

impl Env {
    pub(crate) fn resolve(table: &Table<'_>, name: Option<&str>) -> Env {
        let Some(name) = name else {
            return Env::Unset;
        };
        // A policy declares a few environments: comparing their names beats hashing the name.
        (0..table.count(section::ENVS))
            .filter_map(|i| table.u16_item(section::ENVS, i))
            .find(|&symbol| table.symbol_name(usize::from(symbol)) == Some(name.as_bytes()))
            .map_or(Env::Invalid, Env::Known)
    }
}

/// A call whose agent, chain and environment have been resolved to table indexes by a trusted
/// party: [`decide`] from a [`Call`], or the credential API from an admitted session.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resolved<'c, 'a> {
    pub(crate) agent: u16,
    /// The tool's TOOLS index (`table.find` of the name called; `None` for an unknown tool),
    /// looked up once by whoever resolved the call.
    pub(crate) tool_index: Option<usize>,
    pub(crate) args: &'a [(&'a str, ArgValue<'a>)],
    /// Delegators, origin first.
    pub(crate) chain: &'c [u16],
    pub(crate) env: Env,
}

/// Decides one call and updates the state.
pub fn decide(table: &Table<'_>, state: &mut State<'_>, call: &Call<'_>) -> Decision {
    let now = state.observe(call.time);
    let Some(agent) = table.find(section::AGENTS, call.agent.as_bytes()) else {
        return Decision::deny(Reason::UnknownAgent);
    };
    let agent = agent as u16;
    let mut chain = [0u16; format::MAX_CHAIN];
    let mut valid = call.via.len() <= format::MAX_CHAIN;
    for (slot, name) in chain.iter_mut().zip(call.via.iter()) {
        match table.find(section::AGENTS, name.as_bytes()) {
            Some(found) => *slot = found as u16,
            None => valid = false,
        }
    }
    let tool_index = table.find(section::TOOLS, call.tool.as_bytes());
    let resolved = Resolved {
        agent,
        tool_index,
        args: call.args,
        chain: chain.get(..call.via.len()).unwrap_or(&[]),
        env: Env::resolve(table, call.env),
    };
    if !valid {
        // (V-Chain) after (V-Tool): an unknown tool is reported first.
        let reason = if tool_index.is_none() {
            Reason::UnknownTool
        } else {
            Reason::InvalidRequest
        };
        return count(table, state, agent, Decision::deny(reason), now);
    }
    decide_resolved(table, state, &resolved, now)
}

/// Decides a resolved call at `now` (already observed by the state's clock) and counts a denial
/// toward the agent's failure responses.
pub(crate) fn decide_resolved(
    table: &Table<'_>,
    state: &mut State<'_>,
    call: &Resolved<'_, '_>,
    now: u64,
) -> Decision {
    let decision = decide_known(table, state, call, now);
    count(table, state, call.agent, decision, now)
}

/// Counts a denial (other than "already revoked") toward the agent's failure responses.
pub(crate) fn count(
    table: &Table<'_>,
    state: &mut State<'_>,
    agent: u16,
    mut decision: Decision,
    now: u64,
) -> Decision {
    if decision.verdict == Verdict::Deny
        && decision.reason != Some(Reason::Revoked)
        && decision.reason != Some(Reason::CredentialRevoked)
    {
        decision.revoked_agent = count_denial(table, state, agent, now);
    }
    decision
}

pub(crate) fn agent_symbol(table: &Table<'_>, agent: u16) -> Option<u16> {
    table
        .bytes
        .u16(table.record(section::AGENTS, usize::from(agent))? + field::agent::SYMBOL)
}

fn decide_known(
    table: &Table<'_>,
    state: &mut State<'_>,
    call: &Resolved<'_, '_>,
    now: u64,
) -> Decision {
    let agent = call.agent;
    // (1) Validation.
    let Some(tool) = call.tool_index else {
        return Decision::deny(Reason::UnknownTool);
    };
    if call.chain.len() > format::MAX_CHAIN {
        return Decision::deny(Reason::InvalidRequest);
    }
    let mut members = [0u16; format::MAX_CHAIN + 1];
    for (slot, member) in members.iter_mut().zip(call.chain.iter()) {
        *slot = *member;
    }
    if let Some(last) = members.get_mut(call.chain.len()) {
        *last = agent;
    }
    let chain = members.get(..=call.chain.len()).unwrap_or(&[]);
    let env = match (call.env, table.count(section::ENVS)) {
        (Env::Unset, 0) => None,
        (Env::Known(symbol), declared) if declared > 0 => Some(symbol),
        _ => return Decision::deny(Reason::InvalidRequest),
    };
    let mut args = Args::new();
    if !validate_args(table, tool, call.args, &mut args) {
        return Decision::deny(Reason::InvalidArgument);
    }

    // (2) Revocation: of the acting agent, then of anyone on its chain.
    if state.is_revoked(agent) {
        return Decision::deny(Reason::Revoked);
    }
    if call.chain.iter().any(|&member| state.is_revoked(member)) {
        return Decision::deny(Reason::ChainRevoked);
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
    let limits = limit_refs(table, bucket);
    // (4) Depth limits: a call without a chain (depth 0) exceeds none, so only a chained call
    // reads them here.
    let depth = call.chain.len() as u64;
    if depth > 0 {
        for (limit, record) in bucket_limits(table, limits) {
            let Some((kind, value, _)) = record else {
                return Decision::deny(Reason::Malformed);
            };
            if kind == format::limit::DEPTH && depth > value as u64 {
                let mut decision = Decision::deny(Reason::DelegationDepth);
                decision.limit = Some(limit);
                return decision;
            }
        }
    }

    // (5) Rules for the acting agent and every delegator whose hop does not widen.
    let context = Context {
        env,
        hour: ((now / 3_600) % 24) as i64,
        depth: depth as i64,
        origin: chain
            .first()
            .and_then(|&a| agent_symbol(table, a))
            .unwrap_or(0),
    };
    let mut allowing = None;
    let delegators = chain.len().saturating_sub(1);
    let required = core::iter::once(agent).chain(
        chain
            .iter()
            .take(delegators)
            .enumerate()
            .filter(|(position, _)| !widening.get(*position).copied().unwrap_or(false))
            .map(|(_, &member)| member),
    );
    for member in required {
        // The acting agent's bucket was found above; a delegator's is looked up here.
        let member_bucket = if member == agent {
            bucket
        } else {
            dispatch(table, member, tool)
        };
        match authority(table, member_bucket, &args, &context) {
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

    // (6) Limits, in order. Sums are exact: a total past `i64::MAX` exceeds every limit.
    let cost = tool_cost(table, tool, &args);
    // Only repeat guards need the call's digest; most buckets have none, so it is computed at
    // the first one.
    let mut digest = None;
    for (limit, record) in bucket_limits(table, limits) {
        let Some((kind, value, window)) = record else {
            return Decision::deny(Reason::Malformed);
        };
        let Some((slot_kind, amount, reason)) = counter(kind, cost) else {
            continue; // depth limits were checked in (4)
        };
        let window = window_index(now, window);
        let used = if slot_kind == SlotKind::Repeat {
            let digest = digest.get_or_insert_with(|| call_digest(table, tool, &args));
            match state.repeat_slot(table, limit, agent, digest, now) {
                Some(index) => state.repeat_read(index, limit, digest, window),
                // The agent's repeat room is full of live entries: deny this agent alone.
                None => return Decision::deny(Reason::StateFull),
            }
        } else {
            match state.limit_slot(limit, agent) {
                Some(index) => state.read(index, window),
                None => return Decision::deny(Reason::Malformed),
            }
        };
        let exceeded = amount
            .and_then(|amount| used.checked_add(amount))
            .is_none_or(|total| total > value);
        if exceeded {
            let mut decision = Decision::deny(reason);
            decision.limit = Some(limit);
            return decision;
        }
    }

    // (7) Allow, and charge every limit that applies.
    for (limit, record) in bucket_limits(table, limits) {
        let Some((kind, _, window)) = record else {
            continue;
        };
        // (A cost past i64::MAX was denied in (6) by every budget; nothing else charges it.)
        let Some((slot_kind, Some(amount), _)) = counter(kind, cost) else {
            continue;
        };
        let window = window_index(now, window);
        if slot_kind == SlotKind::Repeat {
            // (Computed in (6), which met this limit.)
            let digest = *digest.get_or_insert_with(|| call_digest(table, tool, &args));
            let Some(index) = state.repeat_slot(table, limit, agent, &digest, now) else {
                // Fail closed: a limit that cannot be counted is not enforced by allowing.
                return Decision::deny(Reason::StateFull);
            };
            let used = state.repeat_read(index, limit, &digest, window);
            if let Some(slot) = state.slots.get_mut(index) {
                *slot = Slot {
                    kind: SlotKind::Repeat,
                    id: limit,
                    agent,
                    digest,
                    window,
                    value: used.saturating_add(amount),
                };
                state.changed(index);
            }
        } else if let Some(index) = state.limit_slot(limit, agent) {
            state.add(index, slot_kind, limit, agent, window, amount);
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
/// What a limit counts and charges per call: `None` for the amount when it is past `i64::MAX`
/// (a cost charged per an argument), which exceeds every limit.
fn counter(kind: u8, cost: Option<i64>) -> Option<(SlotKind, Option<i64>, Reason)> {
    match kind {
        format::limit::RATE => Some((SlotKind::Limit, Some(1), Reason::RateLimited)),
        format::limit::REPEAT => Some((SlotKind::Repeat, Some(1), Reason::LoopGuard)),
        format::limit::BUDGET => Some((SlotKind::Limit, cost, Reason::BudgetExhausted)),
        _ => None,
    }
}

/// Counts a denial of `agent` under each of its failure responses; `true` when one of them just
/// revoked it. The counters and the flag are dense, so both are always stored.
fn count_denial(table: &Table<'_>, state: &mut State<'_>, agent: u16, now: u64) -> bool {
    let Some(at) = table.record(section::AGENTS, usize::from(agent)) else {
        return false;
    };
    let start = usize::from(
        table
            .bytes
            .u16(at + field::agent::RESPONSES_START)
            .unwrap_or(0),
    );
    let count = usize::from(
        table
            .bytes
            .u16(at + field::agent::RESPONSES_COUNT)
            .unwrap_or(0),
    );
    let mut revoked = false;
    for index in start..start.saturating_add(count) {
        let Some(response) = table.u16_item(section::RESPONSE_REFS, index) else {
            continue;
        };
        let Some(record) = table.record(section::RESPONSES, usize::from(response)) else {
            continue;
        };
        let needed = i64::from(
            table
                .bytes
                .u32(record + field::response::COUNT)
                .unwrap_or(1),
        );
        let window = window_index(
            now,
            table
                .bytes
                .u64(record + field::response::WINDOW)
                .unwrap_or(1),
        );
        let Some(slot) = state.denial_slot(response, agent) else {
            continue;
        };
        state.add(slot, SlotKind::Denials, response, agent, window, 1);
        if state.read(slot, window) >= needed && state.revoke(agent) {
            revoked = true;
        }
    }
    revoked
}

pub(crate) fn delegation(table: &Table<'_>, from: u16, to: u16) -> Option<bool> {
    let (mut low, mut high) = (0usize, table.count(section::DELEGATIONS));
    while low < high {
        let middle = low + (high - low) / 2;
        let at = table.record(section::DELEGATIONS, middle)?;
        let pair = (
            table.bytes.u16(at + field::delegation::FROM)?,
            table.bytes.u16(at + field::delegation::TO)?,
        );
        match pair.cmp(&(from, to)) {
            core::cmp::Ordering::Equal => {
                return Some(table.bytes.u8(at + field::delegation::WIDENING)? == 1)
            }
            core::cmp::Ordering::Less => low = middle + 1,
            core::cmp::Ordering::Greater => high = middle,
        }
    }
    None
}

fn dispatch(table: &Table<'_>, agent: u16, tool: usize) -> Option<usize> {
    table.bucket_index(usize::from(agent), tool)
}

/// A bucket's limits, in order, from its refs (see [`limit_refs`]): each one's id and record
/// (kind, value, window; `None` when the table cannot say, which the loader refuses).
fn bucket_limits<'t>(
    table: &'t Table<'_>,
    (start, count): (usize, usize),
) -> impl Iterator<Item = (u16, Option<(u8, i64, u64)>)> + 't {
    (start..start.saturating_add(count)).filter_map(move |index| {
        let limit = table.u16_item(section::LIMIT_REFS, index)?;
        Some((limit, limit_record(table, limit)))
    })
}

/// Where a bucket's limit refs start in LIMIT_REFS, and how many it has.
fn limit_refs(table: &Table<'_>, bucket: Option<usize>) -> (usize, usize) {
    bucket
        .and_then(|b| table.record(section::BUCKETS, b))
        .map_or((0, 0), |at| {
            (
                table
                    .bytes
                    .u32(at + field::bucket::LIMITS_START)
                    .unwrap_or(0) as usize,
                usize::from(
                    table
                        .bytes
                        .u16(at + field::bucket::LIMITS_COUNT)
                        .unwrap_or(0),
                ),
            )
        })
}

fn limit_record(table: &Table<'_>, limit: u16) -> Option<(u8, i64, u64)> {
    let at = table.record(section::LIMITS, usize::from(limit))?;
    Some((
        table.bytes.u8(at + field::limit::KIND)?,
        table.bytes.i64(at + field::limit::VALUE)?,
        table.bytes.u64(at + field::limit::WINDOW)?,
    ))
}

/// A call's cost: the declared amount, times the argument it is charged per; `None` past
/// `i64::MAX`, which exceeds every budget (as the evaluator's exact product does).
fn tool_cost(table: &Table<'_>, tool: usize, args: &Args<'_>) -> Option<i64> {
    let amount = table.tool_cost(tool).unwrap_or(0);
    match table
        .tool_cost_per(tool)
        .and_then(|slot| *args.values.get(slot)?)
    {
        Some(Value::Int(units)) => amount.checked_mul(units),
        _ => Some(amount),
    }
}

/// Identifies a call for repeat guards: SHA-256 of the tool and its validated arguments. A list
/// is hashed as a tag, its length and each element's validated value (an object's fields in
/// schema order, a list element or field as a list again, see [`hash_list`]), so two different
/// lists never hash the same input.
fn call_digest(table: &Table<'_>, tool: usize, args: &Args<'_>) -> [u8; 16] {
    let mut hasher = Sha256::new();
    hasher.update((tool as u32).to_le_bytes());
    // Which optional arguments were left out, when any was (a call that gives every argument
    // hashes as it did before optional arguments existed).
    if args.absent != 0 {
        hasher.update([5]);
        hasher.update(args.absent.to_le_bytes());
    }
    for value in args.values.iter().flatten() {
        match value {
            Value::List(items, element) => hash_list(&mut hasher, table, items, *element, 1),
            _ => hash_scalar(&mut hasher, value),
        }
    }
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    for (o, d) in out.iter_mut().zip(digest.iter()) {
        *o = *d;
    }
    out
}

/// Hashes a validated list, the `lists`-th on its path from a tool's argument (1 for the
/// argument itself), whose element record is ARGS index `element`: tag 7, its length, then each
/// element — a scalar with its tag, an object as tag 8, its field count and its fields in schema
/// order (an absent optional field as the marker 0xFF, a list field as a list), a list as a list
/// — and 0xFF for an element that does not convert. A list past [`format::MAX_NEST`] (which
/// validation never leaves) hashes as the marker 0xFE, so the recursion stays bounded. A call
/// without lists inside lists hashes as it did before they existed.
fn hash_list(
    hasher: &mut Sha256,
    table: &Table<'_>,
    items: &[ArgValue<'_>],
    element: u32,
    lists: usize,
) {
    if lists > format::MAX_NEST {
        hasher.update([0xFE]);
        return;
    }
    hasher.update([7]);
    hasher.update((items.len() as u64).to_le_bytes());
    for item in items.iter() {
        match element_value(table, element, item) {
            Some(Value::Object(fields, record)) => {
                let count = field_count(table, record).unwrap_or(0);
                hasher.update([8]);
                hasher.update((count as u64).to_le_bytes());
                for index in 0..count {
                    // An absent optional field hashes as a marker, never as a value (an absent
                    // list field too, unlike an empty one).
                    let Some((at, Some(value))) = field_given(table, record, fields, index) else {
                        hasher.update([0xFF]);
                        continue;
                    };
                    let field = match table.bytes.u8(at + field::arg::KIND) {
                        Some(format::arg::LIST) => accepted(table, at, value),
                        _ => scalar(table, at, value),
                    };
                    match field {
                        Some(Value::List(items, element)) => {
                            hash_list(hasher, table, items, element, lists + 1);
                        }
                        Some(field) => hash_scalar(hasher, &field),
                        None => hasher.update([0xFF]),
                    }
                }
            }
            Some(Value::List(items, element)) => {
                hash_list(hasher, table, items, element, lists + 1);
            }
            Some(scalar) => hash_scalar(hasher, &scalar),
            None => hasher.update([0xFF]),
        }
    }
}

/// Hashes a scalar value with its type tag (a list or object here, which validation never
/// leaves, hashes as a marker of its own).
fn hash_scalar(hasher: &mut Sha256, value: &Value<'_>) {
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
        Value::List(..) | Value::Object(..) => hasher.update([0xFE]),
    }
}

/// (V-Args): every required schema argument present once, every optional one at most once, each
/// with the right type and within bounds, nothing else. Fills `args` in schema (name) order.
fn validate_args<'a>(
    table: &Table<'a>,
    tool: usize,
    given: &[(&'a str, ArgValue<'a>)],
    args: &mut Args<'a>,
) -> bool {
    let Some(at) = table.record(section::TOOLS, tool) else {
        return false;
    };
    let start = usize::from(table.bytes.u16(at + field::tool::ARGS_START).unwrap_or(0));
    let count = usize::from(table.bytes.u16(at + field::tool::ARGS_COUNT).unwrap_or(0));
    let open =
        table.bytes.u8(at + field::tool::FLAGS).unwrap_or(0) & format::tool_flag::OPEN_ARGS != 0;
    if given.len() > count && !open {
        return false;
    }
    let mut matched = 0usize;
    for (slot, index) in (start..start.saturating_add(count)).enumerate() {
        let Some(record) = table.record(section::ARGS, index) else {
            return false;
        };
        let Some(name) = table.ref_at(record) else {
            return false;
        };
        let Some(value_slot) = args.values.get_mut(slot) else {
            return false;
        };
        let mut named = given.iter().filter(|(n, _)| n.as_bytes() == name);
        let value = match (named.next(), named.next()) {
            (Some((_, value)), None) => value,
            (None, _) => {
                let flags = table.bytes.u8(record + field::arg::FLAGS).unwrap_or(0);
                if flags & format::arg_flag::OPTIONAL == 0 {
                    return false; // a required argument is missing
                }
                args.absent |= 1u32.checked_shl(slot as u32).unwrap_or(0);
                *value_slot = Some(absent_value(table, record));
                continue;
            }
            _ => return false, // given twice
        };
        matched += 1;
        let checked = if table.bytes.u8(record + field::arg::KIND) == Some(format::arg::LIST) {
            list(table, record, value, 1)
        } else {
            scalar(table, record, value)
        };
        match checked {
            Some(checked) => *value_slot = Some(checked),
            None => return false,
        }
    }
    // Every name given matched a declared argument (none is unknown), unless the tool is open.
    open || matched == given.len()
}

/// A list checked against its record (at byte offset `record`), the `lists`-th list on its path
/// from a tool's argument (1 for the argument itself): its length within `min..=max` and every
/// element against the element record — a scalar as a top-level argument is, an object by
/// [`object_fits`], a list (a list of lists) by this, one list deeper. Past
/// [`format::MAX_NEST`] lists it fails (the loader refuses such shapes; this keeps the
/// recursion bounded whatever the records say).
fn list<'a>(
    table: &Table<'a>,
    record: usize,
    value: &ArgValue<'a>,
    lists: usize,
) -> Option<Value<'a>> {
    if lists > format::MAX_NEST {
        return None;
    }
    let ArgValue::List(items) = value else {
        return None;
    };
    let (min, max) = (
        table.bytes.i64(record + field::arg::MIN)?,
        table.bytes.i64(record + field::arg::MAX)?,
    );
    let length = i64::try_from(items.len()).ok()?;
    if length < min || length > max {
        return None;
    }
    let element = table.bytes.u32(record + field::arg::VARIANTS_START)?;
    let element_record = table.record(section::ARGS, element as usize)?;
    let kind = table.bytes.u8(element_record + field::arg::KIND)?;
    for item in items.iter() {
        let fits = match kind {
            format::arg::OBJECT => object_fits(table, element_record, item, lists),
            format::arg::LIST => list(table, element_record, item, lists + 1).is_some(),
            _ => scalar(table, element_record, item).is_some(),
        };
        if !fits {
            return None;
        }
    }
    Some(Value::List(items, element))
}

/// Whether an object value gives exactly the fields of the object record at byte offset
/// `record` (the element of the `lists`-th list on its path), each once and each fitting its
/// field record: a scalar as a top-level argument does, a list field by [`list`], one list
/// deeper (no field missing but optional ones, none unknown).
fn object_fits(table: &Table<'_>, record: usize, value: &ArgValue<'_>, lists: usize) -> bool {
    let ArgValue::Object(fields) = value else {
        return false;
    };
    let (Some(start), Some(count)) = (
        table.bytes.u32(record + field::arg::VARIANTS_START),
        table.bytes.u32(record + field::arg::VARIANTS_COUNT),
    ) else {
        return false;
    };
    let (start, count) = (start as usize, count as usize);
    if fields.len() > count {
        return false;
    }
    // Every declared field given at most once and valid, a required one given; counting the
    // given ones, none is unknown when the count is every field given.
    let mut given = 0usize;
    let declared = (start..start.saturating_add(count)).all(|index| {
        let Some(at) = table.record(section::ARGS, index) else {
            return false;
        };
        let (Some(name), Some(flags), Some(kind)) = (
            table.ref_at(at),
            table.bytes.u8(at + field::arg::FLAGS),
            table.bytes.u8(at + field::arg::KIND),
        ) else {
            return false;
        };
        let mut named = fields.iter().filter(|(n, _)| n.as_bytes() == name);
        match (named.next(), named.next()) {
            (Some((_, value)), None) => {
                given += 1;
                if kind == format::arg::LIST {
                    list(table, at, value, lists.saturating_add(1)).is_some()
                } else {
                    scalar(table, at, value).is_some()
                }
            }
            (None, _) => flags & format::arg_flag::OPTIONAL != 0,
            _ => false,
        }
    });
    declared && given == fields.len()
}

/// A scalar value checked against its ARGS record (at byte offset `record`) and converted as a
/// program reads it: an integer within bounds, a decimal as its exact units within bounds, an
/// enum value as its symbol, a path only in normal form, a bounded string's length within
/// bounds. `None` when it does not fit.
fn scalar<'a>(table: &Table<'a>, record: usize, value: &ArgValue<'a>) -> Option<Value<'a>> {
    let kind = table.bytes.u8(record + field::arg::KIND)?;
    // A bounded string or path: its length in bytes within `min..=max`.
    if table.bytes.u8(record + field::arg::FLAGS)? & format::arg_flag::LENGTH != 0 {
        let ArgValue::Str(text) = value else {
            return None;
        };
        let (min, max) = (
            table.bytes.i64(record + field::arg::MIN)?,
            table.bytes.i64(record + field::arg::MAX)?,
        );
        let length = i64::try_from(text.len()).unwrap_or(i64::MAX);
        if length < min || length > max {
            return None;
        }
    }
    Some(match (kind, value) {
        (format::arg::INT, ArgValue::Int(v)) => {
            let (min, max) = (
                table.bytes.i64(record + field::arg::MIN)?,
                table.bytes.i64(record + field::arg::MAX)?,
            );
            if *v < min || *v > max {
                return None;
            }
            Value::Int(*v)
        }
        // A decimal is decided as an integer count of `10^-scale` units.
        // A JSON number, or a string holding one (`"12.50"`).
        (format::arg::DECIMAL, ArgValue::Int(_) | ArgValue::Decimal(_) | ArgValue::Str(_)) => {
            let scale = table.bytes.u8(record + field::arg::SCALE)?;
            let units = match value {
                ArgValue::Int(v) => 10i64
                    .checked_pow(u32::from(scale))
                    .and_then(|unit| v.checked_mul(unit)),
                ArgValue::Decimal(text) | ArgValue::Str(text) => {
                    crate::decimal::units(text.as_bytes(), scale)
                }
                _ => None,
            }?;
            let (min, max) = (
                table.bytes.i64(record + field::arg::MIN)?,
                table.bytes.i64(record + field::arg::MAX)?,
            );
            if units < min || units > max {
                return None;
            }
            Value::Int(units)
        }
        (format::arg::BOOL, ArgValue::Bool(v)) => Value::Bool(*v),
        (format::arg::STR, ArgValue::Str(v)) => Value::Str(v.as_bytes()),
        // Hosts normalize path arguments (`path::normalize`) before deciding.
        (format::arg::PATH, ArgValue::Str(v)) if crate::path::is_normal(v) => {
            Value::Str(v.as_bytes())
        }
        (format::arg::ENUM, ArgValue::Str(v)) => {
            let variants_start = table.bytes.u32(record + field::arg::VARIANTS_START)? as usize;
            let variants = table.bytes.u32(record + field::arg::VARIANTS_COUNT)? as usize;
            let listed = variants_start..variants_start.saturating_add(variants);
            let symbol = if variants <= FEW_VARIANTS {
                // A few values: compare their names (lengths first) rather than hash the value.
                listed
                    .filter_map(|i| table.u16_item(section::VARIANTS, i))
                    .find(|&symbol| table.symbol_name(usize::from(symbol)) == Some(v.as_bytes()))?
            } else {
                let symbol = table.find(section::SYMBOLS, v.as_bytes())? as u16;
                if !listed
                    .into_iter()
                    .any(|i| table.u16_item(section::VARIANTS, i) == Some(symbol))
                {
                    return None;
                }
                symbol
            };
            Value::Sym(symbol)
        }
        _ => return None,
    })
}

/// A list element as a program reads it (`VAR`, `VAR_UP`), by its element record (ARGS index
/// `element`): a scalar as [`scalar`] converts it, an object as an object value, a list (an
/// element of a list of lists) as a list value, as [`accepted`] converts it.
fn element_value<'a>(table: &Table<'a>, element: u32, value: &ArgValue<'a>) -> Option<Value<'a>> {
    let record = table.record(section::ARGS, element as usize)?;
    match (table.bytes.u8(record + field::arg::KIND)?, value) {
        (format::arg::OBJECT, ArgValue::Object(fields)) => Some(Value::Object(fields, element)),
        (format::arg::OBJECT, _) => None,
        _ => accepted(table, record, value),
    }
}

/// A scalar or list that validation has already accepted against its record, converted as
/// [`scalar`] converts it: integers, booleans, strings and paths as they are, without checking
/// their bounds or normal form again (a body reads an element once per element, so this is its
/// hot path); a list (an element or object field of kind `LIST`) as a list value of its
/// elements with its record's element index, as [`list`] gives it; decimals and enum values
/// through [`scalar`].
fn accepted<'a>(table: &Table<'a>, record: usize, value: &ArgValue<'a>) -> Option<Value<'a>> {
    match (table.bytes.u8(record + field::arg::KIND)?, value) {
        (format::arg::LIST, ArgValue::List(items)) => Some(Value::List(
            items,
            table.bytes.u32(record + field::arg::VARIANTS_START)?,
        )),
        (format::arg::INT, ArgValue::Int(v)) => Some(Value::Int(*v)),
        (format::arg::BOOL, ArgValue::Bool(v)) => Some(Value::Bool(*v)),
        (format::arg::STR | format::arg::PATH, ArgValue::Str(v)) => Some(Value::Str(v.as_bytes())),
        _ => scalar(table, record, value),
    }
}

/// The number of fields of the object record at ARGS index `record`.
fn field_count(table: &Table<'_>, record: u32) -> Option<usize> {
    let at = table.record(section::ARGS, record as usize)?;
    Some(table.bytes.u32(at + field::arg::VARIANTS_COUNT)? as usize)
}

/// Field `index` (in name order) of an object value whose record is ARGS index `record`: its
/// record's offset and the value given, if any.
fn field_given<'a>(
    table: &Table<'a>,
    record: u32,
    fields: &'a [(&'a str, ArgValue<'a>)],
    index: usize,
) -> Option<(usize, Option<&'a ArgValue<'a>>)> {
    let at = table.record(section::ARGS, record as usize)?;
    let start = table.bytes.u32(at + field::arg::VARIANTS_START)? as usize;
    if index >= field_count(table, record)? {
        return None;
    }
    let field_record = table.record(section::ARGS, start.checked_add(index)?)?;
    let name = table.ref_at(field_record)?;
    let value = fields
        .iter()
        .find(|(n, _)| n.as_bytes() == name)
        .map(|(_, v)| v);
    Some((field_record, value))
}

/// Field `index` (in name order) of an object value, as a program reads it (`FIELD`): a scalar
/// or a list value as [`accepted`] converts it; an absent optional field holds its placeholder
/// (see [`absent_value`]; programs read it only behind `HAS_FIELD`, except a list field's, an
/// empty list, which they may read as it is).
fn field_value<'a>(
    table: &Table<'a>,
    record: u32,
    fields: &'a [(&'a str, ArgValue<'a>)],
    index: usize,
) -> Option<Value<'a>> {
    match field_given(table, record, fields, index)? {
        (at, Some(value)) => accepted(table, at, value),
        (at, None) => Some(absent_value(table, at)),
    }
}

/// The value an absent optional argument holds: of its type and within its bounds (the smallest
/// integer allowed, the first enum value), so a program reading it computes as on a real call.
fn absent_value<'a>(table: &Table<'a>, record: usize) -> Value<'a> {
    match table.bytes.u8(record + field::arg::KIND).unwrap_or(0) {
        format::arg::INT | format::arg::DECIMAL => {
            Value::Int(table.bytes.i64(record + field::arg::MIN).unwrap_or(0))
        }
        format::arg::STR => Value::Str(&[]),
        format::arg::PATH => Value::Str(b"."),
        // An absent list is empty.
        format::arg::LIST => Value::List(
            &[],
            table
                .bytes
                .u32(record + field::arg::VARIANTS_START)
                .unwrap_or(0),
        ),
        format::arg::ENUM => {
            let first = table
                .bytes
                .u32(record + field::arg::VARIANTS_START)
                .unwrap_or(0) as usize;
            Value::Sym(table.u16_item(section::VARIANTS, first).unwrap_or(0))
        }
        _ => Value::Bool(false),
    }
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
    let start = table
        .bytes
        .u32(at + field::bucket::ENTRIES_START)
        .unwrap_or(0) as usize;
    let forbids = usize::from(table.bytes.u16(at + field::bucket::FORBIDS).unwrap_or(0));
    let permits = usize::from(table.bytes.u16(at + field::bucket::PERMITS).unwrap_or(0));
    for index in start..start.saturating_add(forbids).saturating_add(permits) {
        let Some(entry) = table.record(section::ENTRIES, index) else {
            return Authority::Malformed;
        };
        let rule = table.bytes.u16(entry + field::entry::RULE).unwrap_or(0);
        let program = table.bytes.u32(entry + field::entry::PROGRAM).unwrap_or(0) as usize;
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
    exec(
        table,
        args,
        context,
        programs.offset.checked_add(program)?,
        None,
    )
}

/// The body an `ALL`/`ANY` runs: where it ends, the current element as sent, the ARGS index of
/// its element record, and the body around it (`VAR_UP` reads that one's element) with how many
/// bodies enclose this one's code, itself included.
#[derive(Clone, Copy)]
struct Body<'a, 'b> {
    end: usize,
    element: &'a ArgValue<'a>,
    record: u32,
    outer: Option<&'b Body<'a, 'b>>,
    nest: usize,
}

/// Runs code from byte `at`: a program to its `END`, or (with `body`) one element's run of an
/// `ALL`/`ANY` body to the body's end. Bodies run on a stack of their own; an `ALL`/`ANY` inside
/// a body runs its own body one call deeper, linked to the one around it. The loader bounds the
/// nesting by `MAX_NEST`, and so does this (an `ALL`/`ANY` past it fails closed), so the
/// recursion is at most `MAX_NEST` deep on any bytes.
fn exec<'a>(
    table: &Table<'a>,
    args: &Args<'a>,
    context: &Context,
    mut at: usize,
    body: Option<&Body<'a, '_>>,
) -> Option<bool> {
    let mut stack: [Value<'a>; format::MAX_STACK] = [Value::Bool(false); format::MAX_STACK];
    let mut depth = 0usize;
    let bytes = table.bytes;
    loop {
        if let Some(body) = body {
            if at >= body.end {
                return match (at == body.end, depth, stack.first()) {
                    (true, 1, Some(Value::Bool(v))) => Some(*v),
                    _ => None,
                };
            }
        }
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
                (*args.values.get(slot)?)?
            }
            op::HAS => {
                let slot = usize::from(bytes.u8(at)?);
                at += 1;
                Value::Bool(args.present(slot)?)
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
            op::VAR => {
                let body = body?;
                element_value(table, body.record, body.element)?
            }
            op::VAR_UP => {
                let up = bytes.u8(at)?;
                at += 1;
                if up == 0 {
                    return None; // level 0 is `VAR`; the loader refuses this
                }
                let mut target = body?;
                for _ in 0..up {
                    target = target.outer?;
                }
                element_value(table, target.record, target.element)?
            }
            op::FIELD => {
                let index = usize::from(bytes.u8(at)?);
                at += 1;
                depth = depth.checked_sub(1)?;
                let Value::Object(fields, record) = *stack.get(depth)? else {
                    return None;
                };
                field_value(table, record, fields, index)?
            }
            op::HAS_FIELD => {
                let index = usize::from(bytes.u8(at)?);
                at += 1;
                depth = depth.checked_sub(1)?;
                let Value::Object(fields, record) = *stack.get(depth)? else {
                    return None;
                };
                Value::Bool(field_given(table, record, fields, index)?.1.is_some())
            }
            op::LEN => {
                depth = depth.checked_sub(1)?;
                let Value::List(items, _) = *stack.get(depth)? else {
                    return None;
                };
                Value::Int(i64::try_from(items.len()).ok()?)
            }
            op::ALL | op::ANY => {
                let nest = body.map_or(0, |body| body.nest);
                if nest >= format::MAX_NEST {
                    return None; // nested deeper than the loader allows
                }
                let length = usize::from(bytes.u16(at)?);
                let start = at.checked_add(2)?;
                let end = start.checked_add(length)?;
                depth = depth.checked_sub(1)?;
                let Value::List(items, record) = *stack.get(depth)? else {
                    return None;
                };
                // ALL: true unless some element is false; ANY: false unless some is true.
                let every = code == op::ALL;
                let mut result = every;
                for element in items.iter() {
                    let inner = Body {
                        end,
                        element,
                        record,
                        outer: body,
                        nest: nest + 1,
                    };
                    if exec(table, args, context, start, Some(&inner))? != every {
                        result = !every;
                        break;
                    }
                }
                at = end;
                Value::Bool(result)
            }
            op::NOT => {
                depth = depth.checked_sub(1)?;
                let Value::Bool(v) = *stack.get(depth)? else {
                    return None;
                };
                Value::Bool(!v)
            }
            op::END if body.is_none() => {
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
        // A value followed by a constant and a comparison (`args.amount > 50000`, the commonest
        // shape of a condition) is compared at once: what pushing both and comparing them
        // computes, in one step instead of three.
        let pushed = match fused(table, at, body) {
            Some((code, constant, next)) => {
                at = next;
                Value::Bool(apply(code, pushed, constant)?)
            }
            None => pushed,
        };
        *stack.get_mut(depth)? = pushed;
        depth += 1;
    }
}

/// A constant and a comparison at `at` (`PUSH_INT`, `PUSH_BOOL`, `PUSH_STR` or `PUSH_SYM`, then
/// one of `EQ` to `CONTAINS`), both inside the running body if any: the comparison's code, the
/// constant, and where the next op starts.
fn fused<'a>(
    table: &Table<'a>,
    at: usize,
    body: Option<&Body<'a, '_>>,
) -> Option<(u8, Value<'a>, usize)> {
    let bytes = table.bytes;
    let operand = at.checked_add(1)?;
    let (constant, next) = match bytes.u8(at)? {
        op::PUSH_INT => (Value::Int(bytes.i64(operand)?), operand.checked_add(8)?),
        op::PUSH_SYM => (Value::Sym(bytes.u16(operand)?), operand.checked_add(2)?),
        op::PUSH_STR => (
            Value::Str(table.string(bytes.u32(operand)?, bytes.u32(operand.checked_add(4)?)?)?),
            operand.checked_add(8)?,
        ),
        op::PUSH_BOOL => (
            Value::Bool(bytes.u8(operand)? == 1),
            operand.checked_add(1)?,
        ),
        _ => return None,
    };
    let code = bytes.u8(next)?;
    let end = next.checked_add(1)?;
    if !(op::EQ..=op::CONTAINS).contains(&code) || body.is_some_and(|body| end > body.end) {
        return None;
    }
    Some((code, constant, end))
}

/// Whether `needle` occurs in `haystack` (the empty string occurs in every string): windows are
/// compared only where their first byte matches.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    haystack
        .windows(needle.len())
        .any(|window| window.split_first() == Some((&first, rest)))
}

fn apply(code: u8, lhs: Value<'_>, rhs: Value<'_>) -> Option<bool> {
    use Value::*;
    // By the operands' types first, then the operator: one test of each instead of a walk
    // through every (operator, type, type) case.
    Some(match (lhs, rhs) {
        (Int(a), Int(b)) => match code {
            op::EQ => a == b,
            op::NE => a != b,
            op::LT => a < b,
            op::LE => a <= b,
            op::GT => a > b,
            op::GE => a >= b,
            _ => return None,
        },
        (Bool(a), Bool(b)) => match code {
            op::EQ => a == b,
            op::NE => a != b,
            op::AND => a && b,
            op::OR => a || b,
            _ => return None,
        },
        (Str(a), Str(b)) => match code {
            op::EQ => a == b,
            op::NE => a != b,
            op::STARTS_WITH => a.starts_with(b),
            op::ENDS_WITH => a.ends_with(b),
            op::CONTAINS => contains(a, b),
            _ => return None,
        },
        (Sym(a), Sym(b)) => match code {
            op::EQ => a == b,
            op::NE => a != b,
            _ => return None,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::{
        call_digest, contains, decide, element_value, exec, field_count, field_given, hash_scalar,
        list, scalar, validate_args, ArgValue, Args, Call, Context, Decision, Slot, State, Value,
        Verdict,
    };
    use crate::format::{self, arg as kind, arg_flag, op, section};
    use crate::table::testing::{arg, build, nested_args, Built, NO_NAME, OBS_NAMED, STRINGS};
    use crate::table::Table;
    use crate::Reason;
    use sha2::{Digest, Sha256};

    /// `all x in m { any y in x { y == "ok" } }`: a body inside a body, each reading its own
    /// element.
    #[rustfmt::skip]
    const ALL_HAVE_OK: [u8; 21] = [
        op::ARG, 0, op::ALL, 15, 0, // over m
        op::VAR, op::ANY, 11, 0, // over x
        op::VAR, op::PUSH_STR, 9, 0, 0, 0, 2, 0, 0, 0, op::EQ, // y == "ok"
        op::END,
    ];

    /// `any e in n { len(e.obs) == 0 }`: an absent optional list field reads as empty.
    #[rustfmt::skip]
    const OBS_EMPTY: [u8; 20] = [
        op::ARG, 1, op::ANY, 14, 0, // over n
        op::VAR, op::FIELD, 1, op::LEN, // len(e.obs)
        op::PUSH_INT, 0, 0, 0, 0, 0, 0, 0, 0, op::EQ, // == 0
        op::END,
    ];

    /// The [`nested_args`] table running `program`.
    fn nested_table(program: &[u8]) -> Built {
        build(STRINGS, &nested_args(), 2, program)
    }

    /// Decides `a` calling `t` with `args` (`m` and `n`) under `program`.
    fn decide_nested(program: &[u8], args: &[(&str, ArgValue<'_>)]) -> Decision {
        let built = nested_table(program);
        let table = built.table().unwrap();
        let mut slots = [Slot::EMPTY; 8];
        let mut state = State::new(&table, &mut slots).unwrap();
        let call = Call {
            agent: "a",
            tool: "t",
            args,
            via: &[],
            env: None,
            time: 0,
        };
        decide(&table, &mut state, &call)
    }

    /// The verdict and reason of a decision.
    fn outcome(decision: Decision) -> (Verdict, Option<Reason>) {
        (decision.verdict, decision.reason)
    }

    const ALLOW: (Verdict, Option<Reason>) = (Verdict::Allow, None);
    const NOT_PERMITTED: (Verdict, Option<Reason>) = (Verdict::Deny, Some(Reason::NotPermitted));
    const INVALID: (Verdict, Option<Reason>) = (Verdict::Deny, Some(Reason::InvalidArgument));

    #[test]
    fn a_body_inside_a_body_reads_a_list_of_lists() {
        let (ok, x, y) = (ArgValue::Str("ok"), ArgValue::Str("x"), ArgValue::Str("y"));
        let (ok_x, y_ok, just_x) = ([ok, x], [y, ok], [x]);
        let both = [ArgValue::List(&ok_x), ArgValue::List(&y_ok)];
        let one_without = [ArgValue::List(&ok_x), ArgValue::List(&just_x)];
        let empty_inner = [ArgValue::List(&[])];
        let n = ("n", ArgValue::List(&[]));
        let run = |m: &[ArgValue<'_>]| {
            outcome(decide_nested(&ALL_HAVE_OK, &[("m", ArgValue::List(m)), n]))
        };
        assert_eq!(run(&both), ALLOW);
        assert_eq!(run(&one_without), NOT_PERMITTED);
        assert_eq!(run(&[]), ALLOW); // every element of none
        assert_eq!(run(&empty_inner), NOT_PERMITTED); // some element of none
    }

    #[test]
    fn var_up_reads_the_element_of_the_body_around() {
        let (a, b) = (ArgValue::Str("a"), ArgValue::Str("b"));
        let (b_a, just_b) = ([b, a], [b]);
        let run = |fields: &[(&str, ArgValue<'_>)], program: &[u8]| {
            let element = [ArgValue::Object(fields)];
            let args = [("m", ArgValue::List(&[])), ("n", ArgValue::List(&element))];
            outcome(decide_nested(program, &args))
        };
        let named = [("name", a), ("obs", ArgValue::List(&b_a))];
        let unnamed = [("name", a), ("obs", ArgValue::List(&just_b))];
        let absent = [("name", a)];
        let empty = [("name", a), ("obs", ArgValue::List(&[]))];
        assert_eq!(run(&named, &OBS_NAMED), ALLOW);
        assert_eq!(run(&unnamed, &OBS_NAMED), NOT_PERMITTED);
        assert_eq!(run(&absent, &OBS_NAMED), NOT_PERMITTED);
        // A list field is a list value, and an absent optional one an empty list.
        assert_eq!(run(&absent, &OBS_EMPTY), ALLOW);
        assert_eq!(run(&empty, &OBS_EMPTY), ALLOW);
        assert_eq!(run(&named, &OBS_EMPTY), NOT_PERMITTED);
    }

    #[test]
    fn nested_lists_are_validated_at_every_level() {
        let (s, i) = (ArgValue::Str("s"), ArgValue::Int(1));
        let four = [s, s, s, s];
        let run = |m: &[ArgValue<'_>], n: &[ArgValue<'_>]| {
            let args = [("m", ArgValue::List(m)), ("n", ArgValue::List(n))];
            outcome(decide_nested(&[op::PUSH_BOOL, 1, op::END], &args))
        };
        let (three, ints) = ([s, s, s], [s, i]);
        assert_eq!(run(&[ArgValue::List(&three)], &[]), ALLOW);
        // An inner list past its bounds, an element of the wrong type, a scalar for a list.
        assert_eq!(run(&[ArgValue::List(&four)], &[]), INVALID);
        assert_eq!(run(&[ArgValue::List(&ints)], &[]), INVALID);
        assert_eq!(run(&[s], &[]), INVALID);
        // A list field: its elements checked, a scalar refused, unknown fields refused.
        let good = [("name", s), ("obs", ArgValue::List(&three))];
        let bad_element = [("name", s), ("obs", ArgValue::List(&ints))];
        let scalar_obs = [("name", s), ("obs", s)];
        let unknown = [("name", s), ("other", ArgValue::List(&[]))];
        let missing = [("obs", ArgValue::List(&three))];
        let object = |fields| [ArgValue::Object(fields)];
        assert_eq!(run(&[], &object(&good)), ALLOW);
        assert_eq!(run(&[], &object(&bad_element)), INVALID);
        assert_eq!(run(&[], &object(&scalar_obs)), INVALID);
        assert_eq!(run(&[], &object(&unknown)), INVALID);
        assert_eq!(run(&[], &object(&missing)), INVALID);
    }

    /// `list` stops past `MAX_NEST` lists whatever the records say.
    #[test]
    fn list_validation_fails_closed_past_max_nest() {
        let built = nested_table(&[op::PUSH_BOOL, 1, op::END]);
        let table = built.table().unwrap();
        let m = table.record(section::ARGS, 0).unwrap();
        let inner = [ArgValue::Str("s")];
        let value = ArgValue::List(&[ArgValue::List(&inner)]);
        // `m` is two lists deep: from the 1st or the (MAX_NEST - 1)th, within the bound.
        assert!(list(&table, m, &value, 1).is_some());
        assert!(list(&table, m, &value, format::MAX_NEST - 1).is_some());
        assert!(list(&table, m, &value, format::MAX_NEST).is_none());
    }

    /// Runs the code at offset 1 of a table's strings (`b"m"` then `code`; never walked by the
    /// loader) with argument `m: list[int]` holding one element.
    fn exec_unchecked(code: &[u8]) -> Option<bool> {
        let mut strings = [0u8; 256];
        strings[0] = b'm';
        strings[1..=code.len()].copy_from_slice(code);
        let records = [
            arg((0, 1), kind::LIST, 0, 1, 1, (0, 5)),
            arg(NO_NAME, kind::INT, 0, 0, 0, (0, 9)),
        ];
        let built = build(
            &strings[..=code.len()],
            &records,
            1,
            &[op::PUSH_BOOL, 1, op::END],
        );
        let table = built.table().unwrap();
        let items = [ArgValue::Int(1)];
        let mut args = Args::new();
        args.values[0] = Some(Value::List(&items, 1));
        let context = Context {
            env: None,
            hour: 0,
            depth: 0,
            origin: 0,
        };
        let at = table.sections[section::STRINGS].offset + 1;
        exec(&table, &args, &context, at, None)
    }

    /// `levels` bodies, each over argument `m` (so every level type-checks), the innermost
    /// `innermost`.
    fn bodies(levels: usize, innermost: &[u8], out: &mut [u8; 128]) -> usize {
        let mut len = 0;
        for level in 1..=levels {
            let body = (levels - level) * 5 + innermost.len();
            let header = [op::ARG, 0, op::ANY, body as u8, 0];
            out[len..len + 5].copy_from_slice(&header);
            len += 5;
        }
        out[len..len + innermost.len()].copy_from_slice(innermost);
        len += innermost.len();
        out[len] = op::END;
        len + 1
    }

    /// Code the loader would refuse fails closed at run time: bodies past `MAX_NEST`, `VAR_UP`
    /// past the outermost body or at level 0.
    #[test]
    fn exec_fails_closed_past_max_nest_and_the_outermost_body() {
        let mut code = [0u8; 128];
        let len = bodies(format::MAX_NEST, &[op::PUSH_BOOL, 1], &mut code);
        assert_eq!(exec_unchecked(&code[..len]), Some(true));
        let len = bodies(format::MAX_NEST + 1, &[op::PUSH_BOOL, 1], &mut code);
        assert_eq!(exec_unchecked(&code[..len]), None);
        // `VAR_UP`: the element `up` bodies out, compared with the innermost one.
        let compare = |up: u8| [op::VAR, op::VAR_UP, up, op::EQ];
        let len = bodies(3, &compare(2), &mut code);
        assert_eq!(exec_unchecked(&code[..len]), Some(true));
        let len = bodies(3, &compare(3), &mut code);
        assert_eq!(exec_unchecked(&code[..len]), None);
        let len = bodies(3, &compare(0), &mut code);
        assert_eq!(exec_unchecked(&code[..len]), None);
    }

    /// A value, a constant and a comparison run as one step, but never across a body's end: a
    /// body that ends with a value, followed outside it by a constant and a comparison, returns
    /// its value, and the comparison applies to the `ANY`'s result.
    #[test]
    fn a_fused_comparison_stays_inside_its_body() {
        // `(any x in m { true }) == true`, then `== false`.
        for (constant, expected) in [(1, Some(true)), (0, Some(false))] {
            let code = [
                op::ARG,
                0,
                op::ANY,
                2,
                0,
                op::PUSH_BOOL,
                1, // the body: `true`
                op::PUSH_BOOL,
                constant,
                op::EQ,
                op::END,
            ];
            assert_eq!(exec_unchecked(&code), expected, "{constant}");
        }
        // Inside the body, up to its last byte: `any x in m { x == 1 }`.
        #[rustfmt::skip]
        let code = [
            op::ARG, 0, op::ANY, 11, 0,
            op::VAR, op::PUSH_INT, 1, 0, 0, 0, 0, 0, 0, 0, op::EQ,
            op::END,
        ];
        assert_eq!(exec_unchecked(&code), Some(true));
        // A type mismatch fails closed, fused or not: `m == 1`, and `m` pushed on its own.
        #[rustfmt::skip]
        let code = [op::ARG, 0, op::PUSH_INT, 1, 0, 0, 0, 0, 0, 0, 0, op::EQ, op::END];
        assert_eq!(exec_unchecked(&code), None);
    }

    /// The call's repeat digest under the [`nested_args`] table.
    fn digest_of(table: &Table<'_>, given: &[(&str, ArgValue<'_>)]) -> [u8; 16] {
        let mut args = Args::new();
        assert!(validate_args(table, 0, given, &mut args), "{given:?}");
        call_digest(table, 0, &args)
    }

    #[test]
    fn different_nested_lists_never_hash_the_same() {
        let built = nested_table(&[op::PUSH_BOOL, 1, op::END]);
        let table = built.table().unwrap();
        let (a, b, ab) = (ArgValue::Str("a"), ArgValue::Str("b"), ArgValue::Str("ab"));
        let (l_ab, l_a, l_b, l_joined) = ([a, b], [a], [b], [ab]);
        let ms: [&[ArgValue<'_>]; 5] = [
            &[ArgValue::List(&l_ab)],
            &[ArgValue::List(&l_a), ArgValue::List(&l_b)],
            &[ArgValue::List(&l_joined)],
            &[ArgValue::List(&[])],
            &[],
        ];
        let obs: [Option<&[ArgValue<'_>]>; 4] = [None, Some(&[]), Some(&l_a), Some(&l_b)];
        let mut digests = [[0u8; 16]; 20];
        for (i, m) in ms.iter().enumerate() {
            for (j, obs) in obs.iter().enumerate() {
                let with = [("name", a), ("obs", ArgValue::List(obs.unwrap_or(&[])))];
                let without = [("name", a)];
                let fields: &[(&str, ArgValue<'_>)] = if obs.is_some() { &with } else { &without };
                let element = [ArgValue::Object(fields)];
                let args = [("m", ArgValue::List(m)), ("n", ArgValue::List(&element))];
                digests[i * 4 + j] = digest_of(&table, &args);
            }
        }
        for (i, x) in digests.iter().enumerate() {
            for (j, y) in digests.iter().enumerate().skip(i + 1) {
                assert_ne!(x, y, "{i} {j}");
            }
        }
    }

    /// `call_digest` as it was before lists nested, kept to check that a call without nested
    /// lists hashes as it did.
    fn digest_before_nesting(table: &Table<'_>, tool: usize, args: &Args<'_>) -> [u8; 16] {
        let mut hasher = Sha256::new();
        hasher.update((tool as u32).to_le_bytes());
        if args.absent != 0 {
            hasher.update([5]);
            hasher.update(args.absent.to_le_bytes());
        }
        for value in args.values.iter().flatten() {
            let Value::List(items, element) = value else {
                hash_scalar(&mut hasher, value);
                continue;
            };
            hasher.update([7]);
            hasher.update((items.len() as u64).to_le_bytes());
            for item in items.iter() {
                match element_value(table, *element, item) {
                    Some(Value::Object(fields, record)) => {
                        let count = field_count(table, record).unwrap_or(0);
                        hasher.update([8]);
                        hasher.update((count as u64).to_le_bytes());
                        for index in 0..count {
                            let field = match field_given(table, record, fields, index) {
                                Some((at, Some(value))) => scalar(table, at, value),
                                _ => None,
                            };
                            match field {
                                Some(field) => hash_scalar(&mut hasher, &field),
                                None => hasher.update([0xFF]),
                            }
                        }
                    }
                    Some(scalar) => hash_scalar(&mut hasher, &scalar),
                    None => hasher.update([0xFF]),
                }
            }
        }
        let digest = hasher.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }

    #[test]
    fn calls_without_nested_lists_hash_as_before() {
        // p: list[{k: string, v?: int}], q?: int, r: list[int].
        let records = [
            arg((0, 1), kind::LIST, 0, 3, 1, (0, 5)),
            arg((1, 1), kind::INT, arg_flag::OPTIONAL, 0, 0, (0, 100)),
            arg((2, 1), kind::LIST, 0, 6, 1, (0, 5)),
            arg(NO_NAME, kind::OBJECT, 0, 4, 2, (0, 0)),
            arg((3, 1), kind::STR, 0, 0, 0, (0, 0)),
            arg((4, 1), kind::INT, arg_flag::OPTIONAL, 0, 0, (0, 100)),
            arg(NO_NAME, kind::INT, 0, 0, 0, (0, 100)),
        ];
        let built = build(b"pqrkv", &records, 3, &[op::PUSH_BOOL, 1, op::END]);
        let table = built.table().unwrap();
        let (full, partial) = (
            [("k", ArgValue::Str("x")), ("v", ArgValue::Int(1))],
            [("k", ArgValue::Str(""))],
        );
        let elements = [ArgValue::Object(&full), ArgValue::Object(&partial)];
        let ints = [ArgValue::Int(3), ArgValue::Int(4)];
        let calls: [&[(&str, ArgValue<'_>)]; 3] = [
            &[
                ("p", ArgValue::List(&elements)),
                ("q", ArgValue::Int(5)),
                ("r", ArgValue::List(&ints)),
            ],
            &[("p", ArgValue::List(&[])), ("r", ArgValue::List(&[]))],
            &[
                ("p", ArgValue::List(&elements[1..])),
                ("r", ArgValue::List(&ints[..1])),
            ],
        ];
        for given in calls {
            let mut args = Args::new();
            assert!(validate_args(&table, 0, given, &mut args));
            assert_eq!(
                call_digest(&table, 0, &args),
                digest_before_nesting(&table, 0, &args)
            );
        }
    }

    #[test]
    fn contains_is_a_byte_substring_test() {
        let cases: [(&[u8], &[u8], bool); 11] = [
            (b"override please", b"override", true),
            (b"please override", b"override", true),
            (b"overrid", b"override", false),
            (b"oooverride", b"override", true),
            (b"ovverride", b"override", false),
            (b"ovrride", b"override", false),
            (b"", b"", true),
            (b"abc", b"", true),
            (b"", b"a", false),
            (b"abc", b"abc", true),
            ("caf\u{e9}".as_bytes(), &[0xA9], true),
        ];
        for (haystack, needle, expected) in cases {
            assert_eq!(
                contains(haystack, needle),
                expected,
                "{haystack:?} {needle:?}"
            );
            let naive = needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle);
            assert_eq!(naive, expected);
        }
    }
}
