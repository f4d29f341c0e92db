//! Loading a decision table: the signature, the policy hash and every offset, index and count are
//! checked once, here. After `Table::load` succeeds, every read the gate makes is in bounds.

use crate::format::{self, header, op, section};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// Why a table was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    TooShort,
    BadMagic,
    UnsupportedVersion,
    BadSignature,
    HashMismatch,
    /// A section or a reference points outside the table, or a count is inconsistent.
    OutOfBounds,
    /// Names are not sorted, or a value is not one the format allows.
    Invalid,
    /// A condition program is malformed.
    BadProgram,
    /// One of the above (`OutOfBounds`, `Invalid`, `BadProgram`), in the section named by
    /// `format::section::NAMES[section]`.
    InSection {
        section: u8,
        fault: Fault,
    },
}

/// What is wrong inside a section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    OutOfBounds,
    Invalid,
    BadProgram,
}

impl LoadError {
    /// This error, placed in section `section` (errors that are not about a section's contents
    /// stay as they are).
    fn in_section(self, section: usize) -> LoadError {
        let fault = match self {
            LoadError::OutOfBounds => Fault::OutOfBounds,
            LoadError::Invalid => Fault::Invalid,
            LoadError::BadProgram => Fault::BadProgram,
            other => return other,
        };
        LoadError::InSection {
            section: u8::try_from(section).unwrap_or(u8::MAX),
            fault,
        }
    }
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if let LoadError::InSection { section, fault } = self {
            let name = format::section::NAMES
                .get(usize::from(*section))
                .copied()
                .unwrap_or("unknown");
            return write!(
                f,
                "its `{name}` section is damaged: {}",
                match fault {
                    Fault::OutOfBounds => "a record or reference points outside the table",
                    Fault::Invalid => "names are unsorted or a value is not one the format allows",
                    Fault::BadProgram => "a condition program is malformed",
                }
            );
        }
        f.write_str(match self {
            LoadError::TooShort => "it is shorter than a table header and signature",
            LoadError::BadMagic => "it is not a decision table (bad magic)",
            LoadError::UnsupportedVersion => "its format version is not one this gate reads",
            LoadError::BadSignature => "its signature is not the compiler key's",
            LoadError::HashMismatch => "its policy hash does not match its body",
            LoadError::OutOfBounds => "a section or reference points outside the table",
            LoadError::Invalid => "names are unsorted or a value is not one the format allows",
            LoadError::BadProgram => "a condition program is malformed",
            LoadError::InSection { .. } => "",
        })
    }
}

/// A byte slice read with bounds checks that never panic.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl<'a> Bytes<'a> {
    pub(crate) fn slice(self, start: usize, len: usize) -> Option<&'a [u8]> {
        self.0.get(start..start.checked_add(len)?)
    }

    pub(crate) fn u8(self, at: usize) -> Option<u8> {
        self.0.get(at).copied()
    }

    /// `N` bytes from `at`, with one bounds check.
    fn array<const N: usize>(self, at: usize) -> Option<[u8; N]> {
        self.0.get(at..)?.first_chunk::<N>().copied()
    }

    pub(crate) fn u16(self, at: usize) -> Option<u16> {
        self.array(at).map(u16::from_le_bytes)
    }

    pub(crate) fn u32(self, at: usize) -> Option<u32> {
        self.array(at).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(self, at: usize) -> Option<u64> {
        self.array(at).map(u64::from_le_bytes)
    }

    pub(crate) fn i64(self, at: usize) -> Option<i64> {
        self.array(at).map(i64::from_le_bytes)
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Section {
    pub(crate) offset: usize,
    pub(crate) count: usize,
}

/// What [`Table::validate_shapes`] carries down the shapes: where the records below the tools'
/// own arguments start, and how many records inside nested lists (the second list on a path and
/// below) may still be checked. The compiler writes every element and field record for one list
/// or object alone, so a table it wrote checks each of those at most once and never runs out;
/// one whose records are shared to multiply the work (up to `MAX_FIELDS` per level) is refused
/// instead of walked.
struct Shapes {
    top_end: usize,
    budget: usize,
}

/// A loaded, validated table, read in place.
#[derive(Clone, Copy, Debug)]
pub struct Table<'a> {
    pub(crate) bytes: Bytes<'a>,
    pub(crate) sections: [Section; section::COUNT],
    /// The name indexes of SYMBOLS, AGENTS and TOOLS: absolute byte offset of the first slot and
    /// the slot count, fixed at load (see [`format::index`]).
    indexes: [(usize, usize); 3],
    policy_hash: [u8; 32],
    policy_version: u64,
    flags: u16,
}

const SIZES: [usize; section::COUNT] = [
    1,
    format::REF_SIZE,
    2,
    format::AGENT_SIZE,
    format::TOOL_SIZE,
    format::ARG_SIZE,
    2,
    4,
    format::BUCKET_SIZE,
    format::ENTRY_SIZE,
    2,
    format::LIMIT_SIZE,
    format::DELEGATION_SIZE,
    format::RESPONSE_SIZE,
    2,
    1,
    format::REF_SIZE,
    2,
];

/// One argument's schema as a table holds it (see [`Table::arg_schema`]).
#[derive(Clone, Copy, Debug)]
pub struct ArgSchema<'a, 't> {
    table: &'t Table<'a>,
    pub kind: u8,
    pub flags: u8,
    /// Digits after the point of a decimal argument.
    pub scale: u8,
    pub min: i64,
    pub max: i64,
    variants_start: usize,
    variants_count: usize,
}

impl<'a, 't> ArgSchema<'a, 't> {
    /// The ARGS records a list (its element) or an object (its fields) points to.
    pub fn children(&self) -> core::ops::Range<usize> {
        self.variants_start..self.variants_start.saturating_add(self.variants_count)
    }

    /// A list's element schema — a scalar, an object or (a list of lists) a list — (`None` for
    /// every other kind). Shapes nest at most [`format::MAX_NEST`] lists deep, so following
    /// `element` and [`ArgSchema::fields`] down from a loaded table's argument always ends.
    pub fn element(&self) -> Option<ArgSchema<'a, 't>> {
        if self.kind != format::arg::LIST {
            return None;
        }
        self.table.schema_at(self.variants_start)
    }

    /// An object's fields, by name (sorted), with their schemas, each a scalar or a list (none for
    /// every other kind).
    pub fn fields(&self) -> impl Iterator<Item = (&'a [u8], ArgSchema<'a, 't>)> + 't {
        let count = if self.kind == format::arg::OBJECT {
            self.variants_count
        } else {
            0
        };
        let table = self.table;
        (self.variants_start..self.variants_start.saturating_add(count)).filter_map(move |index| {
            let name = table.ref_at(table.record(section::ARGS, index)?)?;
            Some((name, table.schema_at(index)?))
        })
    }

    /// The names of an enum argument's values, in table order.
    pub fn variants(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (self.variants_start..self.variants_start.saturating_add(self.variants_count)).filter_map(
            |i| {
                let symbol = self.table.u16_item(section::VARIANTS, i)?;
                self.table.symbol_name(usize::from(symbol))
            },
        )
    }
}

impl<'a> Table<'a> {
    /// Verifies the signature with the compiler's public key, then validates everything.
    pub fn load(bytes: &'a [u8], compiler_key: &VerifyingKey) -> Result<Table<'a>, LoadError> {
        let minimum = format::HEADER_SIZE + format::SIGNATURE_SIZE;
        if bytes.len() < minimum {
            return Err(LoadError::TooShort);
        }
        let signed_len = bytes.len() - format::SIGNATURE_SIZE;
        let (signed, signature) = bytes.split_at(signed_len);
        let signature = Signature::from_slice(signature).map_err(|_| LoadError::BadSignature)?;
        compiler_key
            .verify_strict(signed, &signature)
            .map_err(|_| LoadError::BadSignature)?;
        Table::parse(bytes)
    }

    /// Validates a table without checking its signature: for tools that inspect tables, and for
    /// tests. The gate always uses [`Table::load`].
    pub fn parse(bytes: &'a [u8]) -> Result<Table<'a>, LoadError> {
        let data = Bytes(bytes);
        if bytes.len() < format::HEADER_SIZE + format::SIGNATURE_SIZE {
            return Err(LoadError::TooShort);
        }
        if data.slice(header::MAGIC, 4) != Some(&format::MAGIC[..]) {
            return Err(LoadError::BadMagic);
        }
        if data.u16(header::FORMAT_VERSION) != Some(format::VERSION) {
            return Err(LoadError::UnsupportedVersion);
        }
        let body_end = bytes.len() - format::SIGNATURE_SIZE;
        let body = data
            .slice(format::HEADER_SIZE, body_end - format::HEADER_SIZE)
            .ok_or(LoadError::TooShort)?;
        let mut policy_hash = [0u8; 32];
        policy_hash.copy_from_slice(
            data.slice(header::POLICY_HASH, 32)
                .ok_or(LoadError::TooShort)?,
        );
        let policy_version = data
            .u64(header::POLICY_VERSION)
            .ok_or(LoadError::TooShort)?;
        let flags = data.u16(header::FLAGS).ok_or(LoadError::TooShort)?;
        if flags & !format::flags::ALL != 0 {
            return Err(LoadError::Invalid);
        }
        let digest = Sha256::digest(body);
        if digest.as_slice() != policy_hash {
            return Err(LoadError::HashMismatch);
        }
        let mut sections = [Section::default(); section::COUNT];
        for (index, (entry, size)) in sections.iter_mut().zip(SIZES).enumerate() {
            let at = header::SECTIONS + index * 8;
            let bounds = LoadError::OutOfBounds.in_section(index);
            let offset = data.u32(at).ok_or(bounds)? as usize;
            let count = data.u32(at + 4).ok_or(bounds)? as usize;
            let end = count
                .checked_mul(size)
                .and_then(|len| offset.checked_add(len))
                .ok_or(bounds)?;
            if offset < format::HEADER_SIZE || end > body_end {
                return Err(bounds);
            }
            *entry = Section { offset, count };
        }
        // Each index's slots, one after another in NAME_INDEX (the loader checks the total).
        let mut indexes = [(0usize, 0usize); 3];
        let mut next = sections[section::NAME_INDEX].offset;
        for (index, id) in
            indexes
                .iter_mut()
                .zip([section::SYMBOLS, section::AGENTS, section::TOOLS])
        {
            let slots = sections
                .get(id)
                .and_then(|s| format::index::slots(s.count))
                .ok_or(LoadError::Invalid.in_section(section::NAME_INDEX))?;
            *index = (next, slots);
            next = slots
                .checked_mul(2)
                .and_then(|bytes| next.checked_add(bytes))
                .ok_or(LoadError::Invalid.in_section(section::NAME_INDEX))?;
        }
        let table = Table {
            bytes: data,
            sections,
            indexes,
            policy_hash,
            policy_version,
            flags,
        };
        let current = core::cell::Cell::new(section::SYMBOLS);
        table
            .validate(&current)
            .map_err(|error| error.in_section(current.get()))?;
        Ok(table)
    }

    pub fn policy_hash(&self) -> &[u8; 32] {
        &self.policy_hash
    }

    /// The author's policy version: hosts refuse a table older than one they have accepted.
    pub fn policy_version(&self) -> u64 {
        self.policy_version
    }

    /// Whether the policy's tests passed and `verify` reported no errors when it was compiled.
    pub fn verified(&self) -> bool {
        self.flags & format::flags::VERIFIED != 0
    }

    pub(crate) fn count(&self, id: usize) -> usize {
        self.sections.get(id).map_or(0, |s| s.count)
    }

    /// Start of record `index` of a section.
    pub(crate) fn record(&self, id: usize, index: usize) -> Option<usize> {
        let section = self.sections.get(id)?;
        if index >= section.count {
            return None;
        }
        let size = *SIZES.get(id)?;
        section.offset.checked_add(index.checked_mul(size)?)
    }

    /// The bytes of a `Ref` (offset, length) into STRINGS.
    pub(crate) fn string(&self, offset: u32, len: u32) -> Option<&'a [u8]> {
        let strings = self.sections.get(section::STRINGS)?;
        let (offset, len) = (offset as usize, len as usize);
        if offset.checked_add(len)? > strings.count {
            return None;
        }
        self.bytes.slice(strings.offset.checked_add(offset)?, len)
    }

    pub(crate) fn ref_at(&self, at: usize) -> Option<&'a [u8]> {
        self.string(self.bytes.u32(at)?, self.bytes.u32(at + 4)?)
    }

    pub(crate) fn u16_item(&self, id: usize, index: usize) -> Option<u16> {
        self.bytes.u16(self.record(id, index)?)
    }

    pub fn agent_count(&self) -> usize {
        self.count(section::AGENTS)
    }

    pub fn tool_count(&self) -> usize {
        self.count(section::TOOLS)
    }

    pub fn limit_count(&self) -> usize {
        self.count(section::LIMITS)
    }

    /// The rules (permits and forbids) the table labels: ids `0..rule_count()`.
    pub fn rule_count(&self) -> usize {
        self.count(section::RULES)
    }

    pub fn response_count(&self) -> usize {
        self.count(section::RESPONSES)
    }

    /// The name of agent `index` (in name order).
    pub fn agent_name(&self, index: usize) -> Option<&'a [u8]> {
        self.ref_at(self.record(section::AGENTS, index)?)
    }

    pub fn tool_name(&self, index: usize) -> Option<&'a [u8]> {
        self.ref_at(self.record(section::TOOLS, index)?)
    }

    /// The BUCKETS index for (agent, tool), if anything applies to that pair: the bucket of that
    /// tool among the agent's (`DISPATCH`), which the loader has checked are in ascending tool
    /// order. A few are scanned, more are halved.
    pub(crate) fn bucket_index(&self, agent: usize, tool: usize) -> Option<usize> {
        let start = self.bytes.u32(self.record(section::DISPATCH, agent)?)? as usize;
        let end =
            self.bytes
                .u32(self.record(section::DISPATCH, agent.checked_add(1)?)?)? as usize;
        let tool = u16::try_from(tool).ok()?;
        let tool_of = |bucket: usize| {
            self.bytes
                .u16(self.record(section::BUCKETS, bucket)? + format::field::bucket::TOOL)
        };
        let (mut low, mut high) = (start, end);
        while high - low > 8 {
            let middle = low + (high - low) / 2;
            match tool_of(middle)?.cmp(&tool) {
                core::cmp::Ordering::Equal => return Some(middle),
                core::cmp::Ordering::Less => low = middle + 1,
                core::cmp::Ordering::Greater => high = middle,
            }
        }
        (low..high).find(|&bucket| tool_of(bucket) == Some(tool))
    }

    /// Where the bucket record for (agent, tool) starts, if anything applies to that pair.
    fn bucket_record(&self, agent: usize, tool: usize) -> Option<usize> {
        self.record(section::BUCKETS, self.bucket_index(agent, tool)?)
    }

    /// The rule entries of the bucket for (agent, tool), by table indexes: `(rule id, is_forbid,
    /// program offset)`, forbids first. Empty when nothing applies.
    pub fn bucket_entries(
        &self,
        agent: usize,
        tool: usize,
    ) -> impl Iterator<Item = (u16, bool, usize)> + '_ {
        let bucket = self.bucket_record(agent, tool);
        let (start, forbids, permits) = bucket.map_or((0, 0, 0), |at| {
            (
                self.bytes
                    .u32(at + format::field::bucket::ENTRIES_START)
                    .unwrap_or(0) as usize,
                usize::from(
                    self.bytes
                        .u16(at + format::field::bucket::FORBIDS)
                        .unwrap_or(0),
                ),
                usize::from(
                    self.bytes
                        .u16(at + format::field::bucket::PERMITS)
                        .unwrap_or(0),
                ),
            )
        });
        (start..start + forbids + permits).filter_map(move |index| {
            let at = self.record(section::ENTRIES, index)?;
            Some((
                self.bytes.u16(at + format::field::entry::RULE)?,
                index < start + forbids,
                self.bytes.u32(at + format::field::entry::PROGRAM)? as usize,
            ))
        })
    }

    /// The tools (TOOLS indexes, ascending) that agent `agent` has a bucket for: the only pairs
    /// anything applies to.
    pub fn bucket_tools(&self, agent: usize) -> impl Iterator<Item = usize> + '_ {
        let start_of = |agent: usize| {
            self.record(section::DISPATCH, agent)
                .and_then(|at| self.bytes.u32(at))
                .map_or(0, |start| start as usize)
        };
        let (start, end) = (start_of(agent), start_of(agent.saturating_add(1)));
        (start..end.max(start)).filter_map(move |bucket| {
            let at = self.record(section::BUCKETS, bucket)?;
            self.bytes
                .u16(at + format::field::bucket::TOOL)
                .map(usize::from)
        })
    }

    /// The limit ids of the bucket for (agent, tool), in order.
    pub fn bucket_limits(&self, agent: usize, tool: usize) -> impl Iterator<Item = u16> + '_ {
        let bucket = self.bucket_record(agent, tool);
        let (start, count) = bucket.map_or((0, 0), |at| {
            (
                self.bytes
                    .u32(at + format::field::bucket::LIMITS_START)
                    .unwrap_or(0) as usize,
                usize::from(
                    self.bytes
                        .u16(at + format::field::bucket::LIMITS_COUNT)
                        .unwrap_or(0),
                ),
            )
        });
        (start..start + count).filter_map(move |index| self.u16_item(section::LIMIT_REFS, index))
    }

    /// The bytecode from a program offset to the end of the program section.
    pub fn program(&self, offset: usize) -> Option<&'a [u8]> {
        let programs = self.sections.get(section::PROGRAMS)?;
        let start = programs.offset.checked_add(offset)?;
        self.bytes.slice(start, programs.count.checked_sub(offset)?)
    }

    /// The name of argument `slot` of tool `tool`.
    pub fn arg_name(&self, tool: usize, slot: usize) -> Option<&'a [u8]> {
        let at = self.record(section::TOOLS, tool)?;
        let start = usize::from(self.bytes.u16(at + format::field::tool::ARGS_START)?);
        let count = usize::from(self.bytes.u16(at + format::field::tool::ARGS_COUNT)?);
        if slot >= count {
            return None;
        }
        self.ref_at(self.record(section::ARGS, start.checked_add(slot)?)?)
    }

    /// The number of arguments tool `tool` declares.
    pub fn arg_count(&self, tool: usize) -> Option<usize> {
        let at = self.record(section::TOOLS, tool)?;
        Some(usize::from(
            self.bytes.u16(at + format::field::tool::ARGS_COUNT)?,
        ))
    }

    /// The kind (`format::arg::*`) of tool `tool`'s argument called `name`.
    pub fn arg_kind(&self, tool: usize, name: &[u8]) -> Option<u8> {
        let slot =
            (0..self.arg_count(tool)?).find(|&slot| self.arg_name(tool, slot) == Some(name))?;
        self.arg_schema(tool, slot).map(|schema| schema.kind)
    }

    /// Argument `slot` of tool `tool` as the gate reads it: kind, flags, `min`, `max` (integer
    /// bounds, or length bounds with `arg_flag::LENGTH`), and its enum variants' symbols.
    pub fn arg_schema(&self, tool: usize, slot: usize) -> Option<ArgSchema<'a, '_>> {
        let at = self.record(section::TOOLS, tool)?;
        let start = usize::from(self.bytes.u16(at + format::field::tool::ARGS_START)?);
        if slot >= self.arg_count(tool)? {
            return None;
        }
        self.schema_at(start.checked_add(slot)?)
    }

    /// The ARGS record at `index` — a tool's argument, or a list's element or an object's field
    /// ([`ArgSchema::children`]) — with its name.
    pub fn arg_record(&self, index: usize) -> Option<(&'a [u8], ArgSchema<'a, '_>)> {
        Some((
            self.ref_at(self.record(section::ARGS, index)?)?,
            self.schema_at(index)?,
        ))
    }

    /// The schema in ARGS record `index`.
    fn schema_at(&self, index: usize) -> Option<ArgSchema<'a, '_>> {
        let record = self.record(section::ARGS, index)?;
        let field = |offset: usize| record + offset;
        Some(ArgSchema {
            table: self,
            kind: self.bytes.u8(field(format::field::arg::KIND))?,
            flags: self.bytes.u8(field(format::field::arg::FLAGS))?,
            scale: self.bytes.u8(field(format::field::arg::SCALE))?,
            min: self.bytes.i64(field(format::field::arg::MIN))?,
            max: self.bytes.i64(field(format::field::arg::MAX))?,
            variants_start: self.bytes.u32(field(format::field::arg::VARIANTS_START))? as usize,
            variants_count: self.bytes.u32(field(format::field::arg::VARIANTS_COUNT))? as usize,
        })
    }

    /// The slot of the argument tool `tool`'s cost is charged per, if any.
    pub fn tool_cost_per(&self, tool: usize) -> Option<usize> {
        let at = self.record(section::TOOLS, tool)?;
        let per = self.bytes.u8(at + format::field::tool::COST_PER)?;
        usize::from(per).checked_sub(1)
    }

    /// Tool `tool`'s declared cost (of every call, or per unit of its cost argument).
    pub fn tool_cost(&self, tool: usize) -> Option<i64> {
        let at = self.record(section::TOOLS, tool)?;
        self.bytes.i64(at + format::field::tool::COST)
    }

    /// Whether tool `tool` lets undeclared arguments through (`args { …, .. }`).
    pub fn tool_open_args(&self, tool: usize) -> Option<bool> {
        let at = self.record(section::TOOLS, tool)?;
        let flags = self.bytes.u8(at + format::field::tool::FLAGS)?;
        Some(flags & format::tool_flag::OPEN_ARGS != 0)
    }

    /// String constant bytes by (offset, length) into the string pool.
    pub fn string_at(&self, offset: u32, len: u32) -> Option<&'a [u8]> {
        self.string(offset, len)
    }

    /// The index of the agent with this name.
    pub fn find_agent(&self, name: &[u8]) -> Option<usize> {
        self.find(section::AGENTS, name)
    }

    /// The index of the tool with this name.
    pub fn find_tool(&self, name: &[u8]) -> Option<usize> {
        self.find(section::TOOLS, name)
    }

    /// The longest credential lifetime (seconds) agent `index` may hold; 0 means no limit.
    pub fn agent_ttl(&self, index: usize) -> Option<u32> {
        self.bytes
            .u32(self.record(section::AGENTS, index)? + format::field::agent::TTL)
    }

    pub fn symbol_name(&self, index: usize) -> Option<&'a [u8]> {
        self.ref_at(self.record(section::SYMBOLS, index)?)
    }

    /// The label of rule `rule` (its source label, or `rule #N`), if the table has it.
    pub fn rule_label(&self, rule: u16) -> Option<&'a str> {
        let name = self.ref_at(self.record(section::RULES, usize::from(rule))?)?;
        core::str::from_utf8(name).ok()
    }

    /// Whether `from` may delegate to `to` (agent indexes): `Some(widening)` for a declared
    /// `delegate` edge, `None` for none.
    pub fn delegation(&self, from: usize, to: usize) -> Option<bool> {
        crate::gate::delegation(self, u16::try_from(from).ok()?, u16::try_from(to).ok()?)
    }

    /// Whether the policy declares environment `name`.
    pub fn declares_env(&self, name: &str) -> bool {
        matches!(
            crate::gate::Env::resolve(self, Some(name)),
            crate::gate::Env::Known(_)
        )
    }

    /// Whether the policy declares any environment (then a gate must run in one).
    pub fn has_envs(&self) -> bool {
        self.count(section::ENVS) > 0
    }

    /// The record of `name` in a named section (symbols, agents or tools), through the
    /// section's hash index; `None` for a name it does not hold, or another section.
    pub(crate) fn find(&self, id: usize, name: &[u8]) -> Option<usize> {
        let (start, slots) = self.name_index(id)?;
        self.find_hashed(id, start, slots, name)
    }

    /// A named section's hash index: the byte offset of its first slot and its slot count;
    /// `None` for a section without one.
    fn name_index(&self, id: usize) -> Option<(usize, usize)> {
        match id {
            section::SYMBOLS => self.indexes.first().copied(),
            section::AGENTS => self.indexes.get(1).copied(),
            section::TOOLS => self.indexes.get(2).copied(),
            _ => None,
        }
    }

    /// A lookup through the index at byte `start` of `slots` slots (see [`format::index`]):
    /// probes from the name's hash to the first empty slot, at most `slots` of them, comparing
    /// lengths before bytes.
    fn find_hashed(&self, id: usize, start: usize, slots: usize, name: &[u8]) -> Option<usize> {
        let mask = slots.checked_sub(1)?;
        let records = self.sections.get(id)?;
        let size = *SIZES.get(id)?;
        let mut at = (format::index::hash(name) as usize) & mask;
        for _ in 0..slots {
            let record = usize::from(self.bytes.u16(start + 2 * at)?).checked_sub(1)?;
            if record >= records.count {
                return None;
            }
            let name_at = records.offset + record * size;
            if self.bytes.u32(name_at + 4)? as usize == name.len() && self.ref_at(name_at)? == name
            {
                return Some(record);
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// Each name index holds `slots(count)` slots of its section (the starts are fixed at
    /// load), every slot empty or naming a record of its section, and finds every name of its
    /// section at its own record.
    fn validate_name_indexes(&self) -> Result<(), LoadError> {
        let total = self.indexes.iter().map(|(_, slots)| slots).sum::<usize>();
        if total != self.count(section::NAME_INDEX) {
            return Err(LoadError::Invalid);
        }
        for id in [section::SYMBOLS, section::AGENTS, section::TOOLS] {
            let (start, slots) = self.name_index(id).ok_or(LoadError::Invalid)?;
            for slot in 0..slots {
                let entry = self
                    .bytes
                    .u16(start + 2 * slot)
                    .ok_or(LoadError::OutOfBounds)?;
                if usize::from(entry) > self.count(id) {
                    return Err(LoadError::OutOfBounds);
                }
            }
            for record in 0..self.count(id) {
                let name = self
                    .ref_at(self.record(id, record).ok_or(LoadError::OutOfBounds)?)
                    .ok_or(LoadError::OutOfBounds)?;
                if self.find_hashed(id, start, slots, name) != Some(record) {
                    return Err(LoadError::Invalid);
                }
            }
        }
        Ok(())
    }

    /// Checks every section; `current` says which section is being checked, so that a refusal
    /// can name it.
    fn validate(&self, current: &core::cell::Cell<usize>) -> Result<(), LoadError> {
        let bounds = LoadError::OutOfBounds;
        let symbols = self.count(section::SYMBOLS);
        let agents = self.count(section::AGENTS);
        let tools = self.count(section::TOOLS);
        self.sorted_names(section::SYMBOLS, 0, symbols)?;
        current.set(section::AGENTS);
        self.sorted_names(section::AGENTS, 0, agents)?;
        current.set(section::TOOLS);
        self.sorted_names(section::TOOLS, 0, tools)?;
        if agents > usize::from(u16::MAX)
            || tools > usize::from(u16::MAX)
            || symbols > usize::from(u16::MAX)
        {
            return Err(LoadError::Invalid);
        }
        current.set(section::NAME_INDEX);
        self.validate_name_indexes()?;
        current.set(section::ENVS);
        for index in 0..self.count(section::ENVS) {
            let symbol = self.u16_item(section::ENVS, index).ok_or(bounds)?;
            if usize::from(symbol) >= symbols {
                return Err(bounds);
            }
        }
        current.set(section::VARIANTS);
        for index in 0..self.count(section::VARIANTS) {
            let symbol = self.u16_item(section::VARIANTS, index).ok_or(bounds)?;
            if usize::from(symbol) >= symbols {
                return Err(bounds);
            }
        }
        current.set(section::AGENTS);
        for agent in 0..agents {
            let at = self.record(section::AGENTS, agent).ok_or(bounds)?;
            let symbol = self
                .bytes
                .u16(at + format::field::agent::SYMBOL)
                .ok_or(bounds)?;
            let start = usize::from(
                self.bytes
                    .u16(at + format::field::agent::RESPONSES_START)
                    .ok_or(bounds)?,
            );
            let count = usize::from(
                self.bytes
                    .u16(at + format::field::agent::RESPONSES_COUNT)
                    .ok_or(bounds)?,
            );
            if usize::from(symbol) >= symbols || start + count > self.count(section::RESPONSE_REFS)
            {
                return Err(bounds);
            }
            for index in start..start + count {
                let response = self.u16_item(section::RESPONSE_REFS, index).ok_or(bounds)?;
                if usize::from(response) >= self.count(section::RESPONSES) {
                    return Err(bounds);
                }
            }
        }
        current.set(section::TOOLS);
        for tool in 0..tools {
            let at = self.record(section::TOOLS, tool).ok_or(bounds)?;
            let start = usize::from(
                self.bytes
                    .u16(at + format::field::tool::ARGS_START)
                    .ok_or(bounds)?,
            );
            let count = usize::from(
                self.bytes
                    .u16(at + format::field::tool::ARGS_COUNT)
                    .ok_or(bounds)?,
            );
            if count > format::MAX_ARGS || start + count > self.count(section::ARGS) {
                return Err(bounds);
            }
            let flags = self
                .bytes
                .u8(at + format::field::tool::FLAGS)
                .ok_or(bounds)?;
            if flags & !format::tool_flag::ALL != 0 {
                return Err(LoadError::Invalid);
            }
            // A cost charged per an argument: a non-negative integer argument of this tool.
            let per = usize::from(
                self.bytes
                    .u8(at + format::field::tool::COST_PER)
                    .ok_or(bounds)?,
            );
            if per > count {
                return Err(LoadError::Invalid);
            }
            if per > 0 {
                let record = self.record(section::ARGS, start + per - 1).ok_or(bounds)?;
                let kind = self
                    .bytes
                    .u8(record + format::field::arg::KIND)
                    .ok_or(bounds)?;
                let min = self
                    .bytes
                    .i64(record + format::field::arg::MIN)
                    .ok_or(bounds)?;
                if kind != format::arg::INT || min < 0 {
                    return Err(LoadError::Invalid);
                }
            }
            self.sorted_names(section::ARGS, start, count)?;
        }
        current.set(section::ARGS);
        for index in 0..self.count(section::ARGS) {
            let at = self.record(section::ARGS, index).ok_or(bounds)?;
            self.ref_at(at).ok_or(bounds)?;
            let kind = self.bytes.u8(at + format::field::arg::KIND).ok_or(bounds)?;
            let flags = self
                .bytes
                .u8(at + format::field::arg::FLAGS)
                .ok_or(bounds)?;
            if flags & !format::arg_flag::ALL != 0 {
                return Err(LoadError::Invalid);
            }
            let start = self
                .bytes
                .u32(at + format::field::arg::VARIANTS_START)
                .ok_or(bounds)? as usize;
            let count = self
                .bytes
                .u32(at + format::field::arg::VARIANTS_COUNT)
                .ok_or(bounds)? as usize;
            let (min, max) = (
                self.bytes.i64(at + format::field::arg::MIN).ok_or(bounds)?,
                self.bytes.i64(at + format::field::arg::MAX).ok_or(bounds)?,
            );
            let scale = self
                .bytes
                .u8(at + format::field::arg::SCALE)
                .ok_or(bounds)?;
            if scale > format::MAX_SCALE || (scale != 0 && kind != format::arg::DECIMAL) {
                return Err(LoadError::Invalid);
            }
            let bounded = flags & format::arg_flag::LENGTH != 0;
            if bounded
                && !(matches!(kind, format::arg::STR | format::arg::PATH) && 0 <= min && min <= max)
            {
                return Err(LoadError::Invalid);
            }
            let valid = match kind {
                format::arg::INT | format::arg::DECIMAL => min <= max,
                format::arg::BOOL | format::arg::STR | format::arg::PATH => true,
                format::arg::ENUM => {
                    count > 0
                        && start
                            .checked_add(count)
                            .is_some_and(|e| e <= self.count(section::VARIANTS))
                }
                // Bounds on the number of elements; the element record is checked below.
                format::arg::LIST => {
                    count == 1 && start < self.count(section::ARGS) && 0 <= min && min <= max
                }
                format::arg::OBJECT => {
                    count <= format::MAX_FIELDS
                        && start
                            .checked_add(count)
                            .is_some_and(|e| e <= self.count(section::ARGS))
                }
                _ => false,
            };
            if !valid {
                return Err(LoadError::Invalid);
            }
        }
        self.validate_shapes(tools)?;
        current.set(section::DISPATCH);
        // Agents + 1 starts, from 0 to the bucket count, never decreasing; within each agent's
        // range, tools strictly ascending and declared. So every bucket is one agent's, and a
        // lookup's search meets each pair's bucket, if any, exactly once.
        if self.count(section::DISPATCH) != agents.checked_add(1).ok_or(bounds)? {
            return Err(bounds);
        }
        let buckets = self.count(section::BUCKETS);
        let start_of = |agent: usize| {
            self.record(section::DISPATCH, agent)
                .and_then(|at| self.bytes.u32(at))
                .map(|start| start as usize)
                .ok_or(bounds)
        };
        if start_of(0)? != 0 || start_of(agents)? != buckets {
            return Err(bounds);
        }
        for agent in 0..agents {
            let (start, end) = (start_of(agent)?, start_of(agent + 1)?);
            if start > end {
                return Err(bounds);
            }
            let mut previous: Option<u16> = None;
            for bucket in start..end {
                let at = self.record(section::BUCKETS, bucket).ok_or(bounds)?;
                let tool = self
                    .bytes
                    .u16(at + format::field::bucket::TOOL)
                    .ok_or(bounds)?;
                if usize::from(tool) >= tools || previous.is_some_and(|p| p >= tool) {
                    return Err(LoadError::Invalid);
                }
                previous = Some(tool);
            }
        }
        current.set(section::RULES);
        for index in 0..self.count(section::RULES) {
            let at = self.record(section::RULES, index).ok_or(bounds)?;
            let label = self.ref_at(at).ok_or(bounds)?;
            if core::str::from_utf8(label).is_err() {
                return Err(LoadError::Invalid);
            }
        }
        let programs = self.sections[section::PROGRAMS];
        current.set(section::BUCKETS);
        for bucket in 0..buckets {
            let at = self.record(section::BUCKETS, bucket).ok_or(bounds)?;
            let start = self
                .bytes
                .u32(at + format::field::bucket::ENTRIES_START)
                .ok_or(bounds)? as usize;
            let rules = usize::from(
                self.bytes
                    .u16(at + format::field::bucket::FORBIDS)
                    .ok_or(bounds)?,
            ) + usize::from(
                self.bytes
                    .u16(at + format::field::bucket::PERMITS)
                    .ok_or(bounds)?,
            );
            let limit_start = self
                .bytes
                .u32(at + format::field::bucket::LIMITS_START)
                .ok_or(bounds)? as usize;
            let limits = usize::from(
                self.bytes
                    .u16(at + format::field::bucket::LIMITS_COUNT)
                    .ok_or(bounds)?,
            );
            if start
                .checked_add(rules)
                .is_none_or(|e| e > self.count(section::ENTRIES))
                || limit_start
                    .checked_add(limits)
                    .is_none_or(|e| e > self.count(section::LIMIT_REFS))
            {
                return Err(bounds);
            }
            for index in limit_start..limit_start + limits {
                let limit = self.u16_item(section::LIMIT_REFS, index).ok_or(bounds)?;
                if usize::from(limit) >= self.count(section::LIMITS) {
                    return Err(bounds);
                }
            }
        }
        current.set(section::ENTRIES);
        for index in 0..self.count(section::ENTRIES) {
            let at = self.record(section::ENTRIES, index).ok_or(bounds)?;
            let program = self
                .bytes
                .u32(at + format::field::entry::PROGRAM)
                .ok_or(bounds)? as usize;
            if program >= programs.count {
                return Err(bounds);
            }
            current.set(section::PROGRAMS);
            self.validate_program(programs.offset + program)?;
            current.set(section::ENTRIES);
        }
        current.set(section::LIMITS);
        for index in 0..self.count(section::LIMITS) {
            let at = self.record(section::LIMITS, index).ok_or(bounds)?;
            let kind = self
                .bytes
                .u8(at + format::field::limit::KIND)
                .ok_or(bounds)?;
            let value = self
                .bytes
                .i64(at + format::field::limit::VALUE)
                .ok_or(bounds)?;
            let window = self
                .bytes
                .u64(at + format::field::limit::WINDOW)
                .ok_or(bounds)?;
            let valid = match kind {
                format::limit::RATE | format::limit::REPEAT => value > 0 && window > 0,
                format::limit::BUDGET => value >= 0 && window > 0,
                format::limit::DEPTH => value >= 0,
                _ => false,
            };
            if !valid {
                return Err(LoadError::Invalid);
            }
        }
        let mut previous: Option<(u16, u16)> = None;
        current.set(section::DELEGATIONS);
        for index in 0..self.count(section::DELEGATIONS) {
            let at = self.record(section::DELEGATIONS, index).ok_or(bounds)?;
            let pair = (
                self.bytes
                    .u16(at + format::field::delegation::FROM)
                    .ok_or(bounds)?,
                self.bytes
                    .u16(at + format::field::delegation::TO)
                    .ok_or(bounds)?,
            );
            if usize::from(pair.0) >= agents
                || usize::from(pair.1) >= agents
                || previous.is_some_and(|p| p >= pair)
            {
                return Err(LoadError::Invalid);
            }
            previous = Some(pair);
        }
        current.set(section::RESPONSES);
        for index in 0..self.count(section::RESPONSES) {
            let at = self.record(section::RESPONSES, index).ok_or(bounds)?;
            if self
                .bytes
                .u32(at + format::field::response::COUNT)
                .ok_or(bounds)?
                == 0
                || self
                    .bytes
                    .u64(at + format::field::response::WINDOW)
                    .ok_or(bounds)?
                    == 0
            {
                return Err(LoadError::Invalid);
            }
        }
        Ok(())
    }

    /// An ARGS record's kind, flags and `variants_start`, `variants_count`.
    fn arg_shape(&self, index: usize) -> Option<(u8, u8, usize, usize)> {
        let at = self.record(section::ARGS, index)?;
        Some((
            self.bytes.u8(at + format::field::arg::KIND)?,
            self.bytes.u8(at + format::field::arg::FLAGS)?,
            self.bytes.u32(at + format::field::arg::VARIANTS_START)? as usize,
            self.bytes.u32(at + format::field::arg::VARIANTS_COUNT)? as usize,
        ))
    }

    /// Argument shapes nest at most [`format::MAX_NEST`] lists deep: a tool's argument is a
    /// scalar or a list (never an object); a list's element is a required scalar, list or object
    /// stored after every tool's range; an object's fields are scalars or lists (each required or
    /// optional) stored there too, strictly sorted by name. Every record's own fields were
    /// checked before. The recursion follows lists, so it is at most `MAX_NEST` calls deep
    /// whatever the records point to (a list that is its own element included).
    fn validate_shapes(&self, tools: usize) -> Result<(), LoadError> {
        let bounds = LoadError::OutOfBounds;
        let mut top_end = 0usize;
        for tool in 0..tools {
            let (start, count) = self.tool_args(tool).ok_or(bounds)?;
            top_end = top_end.max(start + count);
        }
        let mut shapes = Shapes {
            top_end,
            budget: self.count(section::ARGS).saturating_sub(top_end),
        };
        for tool in 0..tools {
            let (start, count) = self.tool_args(tool).ok_or(bounds)?;
            for index in start..start + count {
                let (kind, _, element, _) = self.arg_shape(index).ok_or(bounds)?;
                match kind {
                    format::arg::LIST => self.validate_list(element, 1, &mut shapes)?,
                    format::arg::OBJECT => return Err(LoadError::Invalid),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The element record `element` of a list that is the `lists`-th on its path from a tool's
    /// argument (1 for the argument itself), with everything below it: a scalar, a list (the
    /// next on the path) or an object whose fields are scalars or lists. Past
    /// [`format::MAX_NEST`] lists the shape is refused, so this recurses at most that deep.
    fn validate_list(
        &self,
        element: usize,
        lists: usize,
        shapes: &mut Shapes,
    ) -> Result<(), LoadError> {
        let invalid = LoadError::Invalid;
        if lists > format::MAX_NEST {
            return Err(invalid);
        }
        let (kind, start, count) = self.below(element, false, lists, shapes)?;
        match kind {
            format::arg::LIST => self.validate_list(start, lists + 1, shapes),
            format::arg::OBJECT => {
                self.sorted_names(section::ARGS, start, count)?;
                for field in start..start.checked_add(count).ok_or(invalid)? {
                    match self.below(field, true, lists, shapes)? {
                        (format::arg::LIST, element, _) => {
                            self.validate_list(element, lists + 1, shapes)?;
                        }
                        (kind, _, _) if format::arg::is_scalar(kind) => {}
                        _ => return Err(invalid),
                    }
                }
                Ok(())
            }
            kind if format::arg::is_scalar(kind) => Ok(()),
            _ => Err(invalid),
        }
    }

    /// Record `index`, the element or (`field`) an object field inside the `lists`-th list on
    /// its path: stored after every tool's own arguments, optional only as a field. Its kind,
    /// `variants_start` and `variants_count`. Inside a nested list (`lists` ≥ 2) it spends one
    /// of the shapes' budget.
    fn below(
        &self,
        index: usize,
        field: bool,
        lists: usize,
        shapes: &mut Shapes,
    ) -> Result<(u8, usize, usize), LoadError> {
        let invalid = LoadError::Invalid;
        if index < shapes.top_end {
            return Err(invalid); // inside some tool's own arguments
        }
        if lists >= 2 {
            shapes.budget = shapes.budget.checked_sub(1).ok_or(invalid)?;
        }
        let (kind, flags, start, count) = self.arg_shape(index).ok_or(LoadError::OutOfBounds)?;
        if flags & format::arg_flag::OPTIONAL != 0 && !field {
            return Err(invalid);
        }
        Ok((kind, start, count))
    }

    /// Tool `tool`'s argument range in ARGS: start and count.
    fn tool_args(&self, tool: usize) -> Option<(usize, usize)> {
        let at = self.record(section::TOOLS, tool)?;
        Some((
            usize::from(self.bytes.u16(at + format::field::tool::ARGS_START)?),
            usize::from(self.bytes.u16(at + format::field::tool::ARGS_COUNT)?),
        ))
    }

    /// Records `start..start + count` of a named section are strictly sorted by name.
    fn sorted_names(&self, id: usize, start: usize, count: usize) -> Result<(), LoadError> {
        let mut previous: Option<&[u8]> = None;
        for index in start..start + count {
            let name = self
                .ref_at(self.record(id, index).ok_or(LoadError::OutOfBounds)?)
                .ok_or(LoadError::OutOfBounds)?;
            if previous.is_some_and(|p| p >= name) {
                return Err(LoadError::Invalid);
            }
            previous = Some(name);
        }
        Ok(())
    }

    /// Walks a program: every opcode known, every operand in bounds, the stack within
    /// `MAX_STACK`, exactly one value left at `END`; every `ALL`/`ANY` body inside the program
    /// (a nested one inside the body around it), free of `END`, within `MAX_STACK` from an empty
    /// stack and leaving exactly one value, at most `MAX_NEST` bodies deep; `VAR` only inside a
    /// body, `VAR_UP up` only inside more than `up` bodies.
    fn validate_program(&self, start: usize) -> Result<(), LoadError> {
        let end = self.sections[section::PROGRAMS].offset + self.sections[section::PROGRAMS].count;
        self.walk(start, end, None, 0).map(|_| ())
    }

    /// Walks code from `start`: to its `END` (`body_end` `None`, `bodies` 0), or a body to
    /// exactly `body_end`, inside `bodies` bodies (itself included). `end` is the end of the
    /// program section. Each nested body is walked by one call more, so the recursion is at most
    /// `MAX_NEST` deep, and every byte is walked once.
    fn walk(
        &self,
        start: usize,
        end: usize,
        body_end: Option<usize>,
        bodies: usize,
    ) -> Result<(), LoadError> {
        let bad = LoadError::BadProgram;
        let in_body = body_end.is_some();
        if in_body != (bodies > 0) || bodies > format::MAX_NEST {
            return Err(bad);
        }
        let mut at = start;
        let mut depth: usize = 0;
        // The last two opcodes walked, the latest first.
        let mut previous = [op::END; 2];
        loop {
            if let Some(stop) = body_end {
                if at == stop {
                    return if depth == 1 { Ok(()) } else { Err(bad) };
                }
                if at > stop {
                    return Err(bad); // an operand runs past the body
                }
            }
            if at >= end {
                return Err(bad);
            }
            let code = self.bytes.u8(at).ok_or(bad)?;
            let (operand, pushes, pops) = match code {
                op::PUSH_INT => (8, 1, 0),
                op::PUSH_BOOL => (1, 1, 0),
                op::PUSH_STR => {
                    let offset = self.bytes.u32(at + 1).ok_or(bad)?;
                    let len = self.bytes.u32(at + 5).ok_or(bad)?;
                    self.string(offset, len).ok_or(bad)?;
                    (8, 1, 0)
                }
                op::PUSH_SYM => {
                    let symbol = self.bytes.u16(at + 1).ok_or(bad)?;
                    if usize::from(symbol) >= self.count(section::SYMBOLS) {
                        return Err(bad);
                    }
                    (2, 1, 0)
                }
                op::ARG | op::HAS => {
                    if usize::from(self.bytes.u8(at + 1).ok_or(bad)?) >= format::MAX_ARGS {
                        return Err(bad);
                    }
                    (1, 1, 0)
                }
                op::CTX => {
                    if self.bytes.u8(at + 1).ok_or(bad)? > op::CTX_ORIGIN {
                        return Err(bad);
                    }
                    (1, 1, 0)
                }
                op::VAR if in_body => (0, 1, 0),
                op::VAR_UP => {
                    // Level 0 is `VAR`; level `up` needs `up + 1` bodies around it.
                    let up = usize::from(self.bytes.u8(at + 1).ok_or(bad)?);
                    if up == 0 || up >= bodies {
                        return Err(bad);
                    }
                    (1, 1, 0)
                }
                op::FIELD | op::HAS_FIELD => {
                    if usize::from(self.bytes.u8(at + 1).ok_or(bad)?) >= format::MAX_FIELDS {
                        return Err(bad);
                    }
                    (1, 1, 1)
                }
                op::LEN | op::NOT => (0, 1, 1),
                op::ALL | op::ANY if bodies < format::MAX_NEST => {
                    // Inside a body, a quantifier ranges over the current element (`VAR`) or a
                    // field of it (`VAR`, `FIELD`), as the compiler writes them: the work of a
                    // call then grows with its size, never as a power of one list's length.
                    let along = previous[0] == op::VAR
                        || (previous[0] == op::FIELD && previous[1] == op::VAR);
                    if in_body && !along {
                        return Err(bad);
                    }
                    let length = usize::from(self.bytes.u16(at + 1).ok_or(bad)?);
                    let body = at + 3;
                    let stop = body.checked_add(length).ok_or(bad)?;
                    // Inside the program section, and a nested body inside the body around it.
                    if stop > end || body_end.is_some_and(|outer| stop > outer) {
                        return Err(bad);
                    }
                    self.walk(body, end, Some(stop), bodies + 1)?;
                    (2 + length, 1, 1)
                }
                op::EQ
                | op::NE
                | op::LT
                | op::LE
                | op::GT
                | op::GE
                | op::STARTS_WITH
                | op::ENDS_WITH
                | op::CONTAINS
                | op::AND
                | op::OR => (0, 1, 2),
                op::END if !in_body => {
                    return if depth == 1 { Ok(()) } else { Err(bad) };
                }
                _ => return Err(bad),
            };
            depth = depth.checked_sub(pops).ok_or(bad)? + pushes;
            if depth > format::MAX_STACK {
                return Err(bad);
            }
            previous = [code, previous[0]];
            at = at + 1 + operand;
        }
    }
}

/// A table built by hand for unit tests (no compiler, no `std`): one agent `a`, one tool `t`
/// whose arguments are the first ARGS records given, one permit rule `r` whose program is given,
/// nothing else; unsigned, so it is read with [`Table::parse`].
#[cfg(test)]
pub(crate) mod testing {
    use super::{LoadError, Table};
    use crate::format::{self, arg as kind, arg_flag, header, op, section, ArgRecord, Ref};
    use sha2::{Digest, Sha256};

    /// An unnamed record's name (an element's).
    pub(crate) const NO_NAME: (u32, u32) = (0, 0);

    /// The most bytes a built table has.
    pub(crate) const SIZE: usize = 4096;

    /// A built table's bytes.
    pub(crate) struct Built {
        bytes: [u8; SIZE],
        len: usize,
    }

    impl Built {
        /// The table, as the loader reads it (signature aside).
        pub(crate) fn table(&self) -> Result<Table<'_>, LoadError> {
            Table::parse(&self.bytes[..self.len])
        }
    }

    /// An ARGS record named by `name` (offset and length into the caller's strings).
    pub(crate) fn arg(
        name: (u32, u32),
        kind: u8,
        flags: u8,
        start: u32,
        count: u32,
        (min, max): (i64, i64),
    ) -> ArgRecord {
        ArgRecord {
            name: Ref {
                offset: name.0,
                len: name.1,
            },
            kind,
            flags,
            scale: 0,
            variants_start: start,
            variants_count: count,
            min,
            max,
        }
    }

    /// A table whose STRINGS start with `strings` (the records' names and the program's string
    /// constants point into them), whose ARGS are `args` (tool `t`'s own the first `tool_args`)
    /// and whose one rule, a permit of `a` calling `t`, runs `program`. STRINGS lie right after
    /// the header.
    pub(crate) fn build(
        strings: &[u8],
        args: &[ArgRecord],
        tool_args: u16,
        program: &[u8],
    ) -> Built {
        let mut out = Built {
            bytes: [0; SIZE],
            len: format::HEADER_SIZE,
        };
        let mut sections = [(format::HEADER_SIZE, 0usize); section::COUNT];
        let own = strings.len() as u32;
        let name = |at: u32| Ref {
            offset: own + at,
            len: 1,
        };
        let mut section = |out: &mut Built, id: usize, count: usize, parts: &[&[u8]]| {
            sections[id] = (out.len, count);
            for part in parts {
                put(out, part);
            }
        };
        section(
            &mut out,
            section::STRINGS,
            strings.len() + 3,
            &[strings, b"atr"],
        );
        section(&mut out, section::SYMBOLS, 1, &[&name(0).encode()]);
        let agent = format::AgentRecord {
            name: name(0),
            ..Default::default()
        };
        section(&mut out, section::AGENTS, 1, &[&agent.encode()]);
        let tool = format::ToolRecord {
            name: name(1),
            args_count: tool_args,
            ..Default::default()
        };
        section(&mut out, section::TOOLS, 1, &[&tool.encode()]);
        let start = out.len;
        for record in args {
            put(&mut out, &record.encode());
        }
        let args_at = (start, args.len());
        section(
            &mut out,
            section::DISPATCH,
            2,
            &[&0u32.to_le_bytes(), &1u32.to_le_bytes()],
        );
        let bucket = format::BucketRecord {
            permits: 1,
            ..Default::default()
        };
        section(&mut out, section::BUCKETS, 1, &[&bucket.encode()]);
        let entry = format::EntryRecord::default();
        section(&mut out, section::ENTRIES, 1, &[&entry.encode()]);
        section(&mut out, section::PROGRAMS, program.len(), &[program]);
        section(&mut out, section::RULES, 1, &[&name(2).encode()]);
        // Symbols, agents, tools: one name each, two slots each.
        let mut index = [0u8; 12];
        for (at, single) in [b"a", b"a", b"t"].into_iter().enumerate() {
            let mut slots = [0u16; 2];
            assert!(format::index::build([&single[..]].into_iter(), &mut slots));
            for (i, slot) in slots.into_iter().enumerate() {
                let at = 4 * at + 2 * i;
                index[at..at + 2].copy_from_slice(&slot.to_le_bytes());
            }
        }
        section(&mut out, section::NAME_INDEX, 6, &[&index]);
        sections[section::ARGS] = args_at;
        let body_end = out.len;
        out.len += format::SIGNATURE_SIZE;
        let hash = Sha256::digest(&out.bytes[format::HEADER_SIZE..body_end]);
        let mut head = [0u8; format::HEADER_SIZE];
        head[header::MAGIC..header::MAGIC + 4].copy_from_slice(&format::MAGIC);
        head[header::FORMAT_VERSION..header::FORMAT_VERSION + 2]
            .copy_from_slice(&format::VERSION.to_le_bytes());
        head[header::POLICY_HASH..header::POLICY_HASH + 32].copy_from_slice(&hash);
        for (id, (offset, count)) in sections.iter().enumerate() {
            let at = header::SECTIONS + id * 8;
            head[at..at + 4].copy_from_slice(&(*offset as u32).to_le_bytes());
            head[at + 4..at + 8].copy_from_slice(&(*count as u32).to_le_bytes());
        }
        out.bytes[..format::HEADER_SIZE].copy_from_slice(&head);
        out
    }

    /// The strings [`nested_args`] and the programs over them point into: `m`, `n`, `name`,
    /// `obs`, `ok` (at 9).
    pub(crate) const STRINGS: &[u8] = b"mnnameobsok";

    /// A tool with `m: list[list[string][..3]][..10]` (slot 0) and
    /// `n: list[{name: string, obs?: list[string][..50]}][..10]` (slot 1).
    pub(crate) fn nested_args() -> [ArgRecord; 8] {
        [
            arg((0, 1), kind::LIST, 0, 2, 1, (0, 10)),
            arg((1, 1), kind::LIST, 0, 4, 1, (0, 10)),
            arg(NO_NAME, kind::LIST, 0, 3, 1, (0, 3)),
            arg(NO_NAME, kind::STR, 0, 0, 0, (0, 0)),
            arg(NO_NAME, kind::OBJECT, 0, 5, 2, (0, 0)),
            arg((2, 4), kind::STR, 0, 0, 0, (0, 0)),
            arg((6, 3), kind::LIST, arg_flag::OPTIONAL, 7, 1, (0, 50)),
            arg(NO_NAME, kind::STR, 0, 0, 0, (0, 0)),
        ]
    }

    /// `any e in n { any o in e.obs { o == e.name } }`: a nested body and `VAR_UP`.
    #[rustfmt::skip]
    pub(crate) const OBS_NAMED: [u8; 18] = [
        op::ARG, 1, op::ANY, 12, 0, // over n
        op::VAR, op::FIELD, 1, op::ANY, 6, 0, // over e.obs
        op::VAR, op::VAR_UP, 1, op::FIELD, 0, op::EQ, // o == e.name
        op::END,
    ];

    /// Appends `bytes` to a table being built.
    fn put(out: &mut Built, bytes: &[u8]) {
        out.bytes[out.len..out.len + bytes.len()].copy_from_slice(bytes);
        out.len += bytes.len();
    }

    /// A program over list argument 0 with `levels` `ANY` bodies nested (each but the outermost
    /// over the current element, `VAR`), the innermost body `innermost`; its length.
    pub(crate) fn nested(levels: usize, innermost: &[u8], out: &mut [u8; 256]) -> usize {
        use format::op;
        let mut len = 0;
        let mut push = |bytes: &[u8]| {
            out[len..len + bytes.len()].copy_from_slice(bytes);
            len += bytes.len();
        };
        push(&[op::ARG, 0]);
        for level in 1..=levels {
            if level > 1 {
                push(&[op::VAR]);
            }
            let body = (levels - level) * 4 + innermost.len();
            push(&[op::ANY]);
            push(&(body as u16).to_le_bytes());
        }
        push(innermost);
        push(&[op::END]);
        len
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{arg, build, nested, nested_args, NO_NAME, OBS_NAMED, STRINGS};
    use super::{Fault, LoadError};
    use crate::format::{self, arg as kind, arg_flag, op, section, ArgRecord};

    const PERMIT_ALL: [u8; 3] = [op::PUSH_BOOL, 1, op::END];
    const REFUSED_SHAPE: LoadError = LoadError::InSection {
        section: section::ARGS as u8,
        fault: Fault::Invalid,
    };
    const REFUSED_PROGRAM: LoadError = LoadError::InSection {
        section: section::PROGRAMS as u8,
        fault: Fault::BadProgram,
    };

    #[test]
    fn nested_lists_var_up_and_nested_bodies_load() {
        let built = build(STRINGS, &nested_args(), 2, &OBS_NAMED);
        let table = built.table().unwrap();
        // m: a list whose element is a list of strings.
        let m = table.arg_schema(0, 0).unwrap();
        let inner = m.element().unwrap();
        assert_eq!((inner.kind, inner.max), (kind::LIST, 3));
        assert_eq!(inner.element().unwrap().kind, kind::STR);
        // n: a list of objects with an optional list field.
        let n = table.arg_schema(0, 1).unwrap().element().unwrap();
        let mut fields = n.fields();
        let (name, schema) = fields.next().unwrap();
        assert_eq!((name, schema.kind), (&b"name"[..], kind::STR));
        let (name, schema) = fields.next().unwrap();
        assert_eq!((name, schema.kind), (&b"obs"[..], kind::LIST));
        assert_eq!(schema.flags, arg_flag::OPTIONAL);
        assert_eq!(schema.element().unwrap().kind, kind::STR);
        assert!(fields.next().is_none());
    }

    /// Records for a tool with one argument: `lists` lists, each one's element the next list,
    /// or (`objects`) an object whose one field `f` is the next list; an integer at the bottom.
    fn chain(lists: usize, objects: bool, out: &mut [ArgRecord; 16]) -> usize {
        let mut len = 0;
        for list in 0..lists {
            let last = list + 1 == lists;
            let name = if list == 0 || objects {
                (0, 1)
            } else {
                NO_NAME
            };
            // Its element: the record after it (the next list, an object, or the integer).
            out[len] = arg(name, kind::LIST, 0, (len + 1) as u32, 1, (0, 5));
            len += 1;
            if objects && !last {
                out[len] = arg(NO_NAME, kind::OBJECT, 0, (len + 1) as u32, 1, (0, 0));
                len += 1;
            }
        }
        out[len] = arg(NO_NAME, kind::INT, 0, 0, 0, (0, 9));
        len + 1
    }

    #[test]
    fn shapes_nest_at_most_max_nest_lists_deep() {
        for objects in [false, true] {
            let mut records = [ArgRecord::default(); 16];
            let len = chain(format::MAX_NEST, objects, &mut records);
            let built = build(b"f", &records[..len], 1, &PERMIT_ALL);
            assert!(built.table().is_ok(), "{objects}");
            let len = chain(format::MAX_NEST + 1, objects, &mut records);
            let built = build(b"f", &records[..len], 1, &PERMIT_ALL);
            assert_eq!(built.table().err(), Some(REFUSED_SHAPE), "{objects}");
        }
    }

    #[test]
    fn a_list_that_is_its_own_element_is_refused() {
        let records = [
            arg((0, 1), kind::LIST, 0, 1, 1, (0, 5)),
            arg(NO_NAME, kind::LIST, 0, 1, 1, (0, 5)),
        ];
        let built = build(b"f", &records, 1, &PERMIT_ALL);
        assert_eq!(built.table().err(), Some(REFUSED_SHAPE));
        // An object whose field is the list around it.
        let records = [
            arg((0, 1), kind::LIST, 0, 1, 1, (0, 5)),
            arg(NO_NAME, kind::OBJECT, 0, 2, 1, (0, 0)),
            arg((0, 1), kind::LIST, 0, 1, 1, (0, 5)),
        ];
        let built = build(b"f", &records, 1, &PERMIT_ALL);
        assert_eq!(built.table().err(), Some(REFUSED_SHAPE));
    }

    #[test]
    fn malformed_nested_shapes_are_refused() {
        let refused = |records: &[ArgRecord]| build(b"fg", records, 1, &PERMIT_ALL).table().err();
        let int = arg(NO_NAME, kind::INT, 0, 0, 0, (0, 9));
        // The shape that loads: list[{f: list[int]}].
        let good = [
            arg((0, 1), kind::LIST, 0, 1, 1, (0, 5)),
            arg(NO_NAME, kind::OBJECT, 0, 2, 1, (0, 0)),
            arg((0, 1), kind::LIST, arg_flag::OPTIONAL, 3, 1, (0, 5)),
            int,
        ];
        assert_eq!(refused(&good), None);
        // An object as an object's field.
        let mut bad = good;
        bad[2].kind = kind::OBJECT;
        assert_eq!(refused(&bad), Some(REFUSED_SHAPE));
        // A nested list's element optional.
        let mut bad = good;
        bad[3].flags = arg_flag::OPTIONAL;
        assert_eq!(refused(&bad), Some(REFUSED_SHAPE));
        // A nested list's element inside the tool's own arguments.
        let mut bad = good;
        bad[2].variants_start = 0;
        assert_eq!(refused(&bad), Some(REFUSED_SHAPE));
        // A nested list's element out of range.
        let mut bad = good;
        bad[2].variants_start = 9;
        assert!(refused(&bad).is_some());
        // A nested list's element an object whose fields are not sorted.
        let unsorted = [
            arg((0, 1), kind::LIST, 0, 1, 1, (0, 5)),
            arg(NO_NAME, kind::LIST, 0, 2, 1, (0, 5)),
            arg(NO_NAME, kind::OBJECT, 0, 3, 2, (0, 0)),
            arg((1, 1), kind::INT, 0, 0, 0, (0, 9)),
            arg((0, 1), kind::INT, 0, 0, 0, (0, 9)),
        ];
        assert_eq!(refused(&unsorted), Some(REFUSED_SHAPE));
        let mut sorted = unsorted;
        sorted.swap(3, 4);
        assert_eq!(refused(&sorted), None);
    }

    /// Records shared between nested lists would multiply the loader's work; the compiler writes
    /// a tree, which loads, and the same shape sharing its records is refused.
    #[test]
    fn records_shared_inside_nested_lists_are_refused() {
        let (f, g, h, i) = ((0, 1), (1, 1), (2, 1), (3, 1));
        let str = arg(NO_NAME, kind::STR, 0, 0, 0, (0, 0));
        let list = |name, element| arg(name, kind::LIST, 0, element, 1, (0, 5));
        let object = |start| arg(NO_NAME, kind::OBJECT, 0, start, 2, (0, 0));
        // f: list[{f: list[{h: list[string], i: list[string]}], g: (the same)}], as a tree.
        let tree = [
            list(f, 1),
            object(2),
            list(f, 4),
            list(g, 9),
            object(5),
            list(h, 7),
            list(i, 8),
            str,
            str,
            object(10),
            list(h, 12),
            list(i, 13),
            str,
            str,
        ];
        assert!(build(b"fghi", &tree, 1, &PERMIT_ALL).table().is_ok());
        // The same shape, `g` sharing `f`'s element and `i` sharing `h`'s.
        let shared = [
            list(f, 1),
            object(2),
            list(f, 4),
            list(g, 4),
            object(5),
            list(h, 7),
            list(i, 7),
            str,
        ];
        let built = build(b"fghi", &shared, 1, &PERMIT_ALL);
        assert_eq!(built.table().err(), Some(REFUSED_SHAPE));
    }

    /// A table over `nested_args` running `program`.
    fn load(program: &[u8]) -> Result<(), LoadError> {
        build(STRINGS, &nested_args(), 2, program)
            .table()
            .map(|_| ())
    }

    #[test]
    fn bodies_nest_at_most_max_nest_deep() {
        let mut program = [0u8; 256];
        for levels in 1..=format::MAX_NEST {
            let len = nested(levels, &[op::PUSH_BOOL, 1], &mut program);
            assert_eq!(load(&program[..len]), Ok(()), "{levels}");
        }
        let len = nested(format::MAX_NEST + 1, &[op::PUSH_BOOL, 1], &mut program);
        assert_eq!(load(&program[..len]), Err(REFUSED_PROGRAM));
    }

    /// Inside a body, a quantifier ranges over the current element or a field of it, never over
    /// an argument: nested over one argument, a call's work would grow as a power of its length.
    #[test]
    fn a_nested_quantifier_ranges_over_the_element_only() {
        let around = |inner: &[u8]| {
            let mut program = [0u8; 64];
            let mut len = 0;
            for part in [
                &[op::ARG, 0, op::ANY][..],
                &(inner.len() as u16).to_le_bytes(),
                inner,
                &[op::END],
            ] {
                program[len..len + part.len()].copy_from_slice(part);
                len += part.len();
            }
            (program, len)
        };
        for (inner, loads) in [
            (&[op::VAR, op::ANY, 2, 0, op::PUSH_BOOL, 1][..], true),
            (
                &[op::VAR, op::FIELD, 0, op::ANY, 2, 0, op::PUSH_BOOL, 1][..],
                true,
            ),
            (&[op::ARG, 0, op::ANY, 2, 0, op::PUSH_BOOL, 1][..], false),
            (
                &[
                    op::VAR,
                    op::LEN,
                    op::NOT,
                    op::ANY,
                    2,
                    0,
                    op::PUSH_BOOL,
                    1,
                    op::AND,
                ][..],
                false,
            ),
        ] {
            let (program, len) = around(inner);
            let expected = if loads { Ok(()) } else { Err(REFUSED_PROGRAM) };
            assert_eq!(load(&program[..len]), expected, "{inner:?}");
        }
    }

    #[test]
    fn var_up_needs_more_bodies_around_it_than_its_level() {
        let mut program = [0u8; 256];
        // `VAR_UP up` inside `levels` bodies.
        for levels in 1..=format::MAX_NEST {
            for up in 0..=format::MAX_NEST as u8 {
                let len = nested(levels, &[op::VAR_UP, up], &mut program);
                let expected = if up >= 1 && usize::from(up) < levels {
                    Ok(())
                } else {
                    Err(REFUSED_PROGRAM)
                };
                assert_eq!(load(&program[..len]), expected, "{levels} {up}");
            }
        }
        // Outside any body.
        assert_eq!(load(&[op::VAR_UP, 1, op::END]), Err(REFUSED_PROGRAM));
        assert_eq!(load(&[op::VAR_UP, 0, op::END]), Err(REFUSED_PROGRAM));
        // `VAR` as before: inside a body, not outside.
        let len = nested(1, &[op::VAR], &mut program);
        assert_eq!(load(&program[..len]), Ok(()));
        assert_eq!(load(&[op::VAR, op::END]), Err(REFUSED_PROGRAM));
    }

    #[test]
    fn a_nested_body_lies_inside_the_body_around_it() {
        // The outer body claims 8 bytes, one short of the inner body it holds (whose last byte
        // would lie outside it).
        #[rustfmt::skip]
        let program = [
            op::ARG, 1, op::ANY, 8, 0, // 8 bytes of body
            op::VAR, op::FIELD, 1, op::ANY, 3, 0, // the inner body: 3 bytes claimed
            op::VAR, op::NOT, op::NOT, // …inside the outer one
            op::END,
        ];
        assert_eq!(load(&program), Err(REFUSED_PROGRAM));
        let mut program = program;
        program[3] = 9; // the outer body holds the inner one
        assert_eq!(load(&program), Ok(()));
        program[9] = 4; // the inner body runs past the outer one's end
        assert_eq!(load(&program), Err(REFUSED_PROGRAM));
    }
}
