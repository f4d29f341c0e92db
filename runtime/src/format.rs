//! The decision table format, version 4: defined here, once. The compiler writes it
//! (`tollgate-compiler`'s `codegen`), the gate reads it in place. The book's "Decision table"
//! chapter describes the same layout byte by byte.
//!
//! All integers are little-endian. A table is a header, sections, and a 64-byte Ed25519 signature
//! over everything before it. The policy hash in the header is the SHA-256 of the bytes between
//! the header and the signature.

/// `b"TGTB"`.
pub const MAGIC: [u8; 4] = *b"TGTB";
/// The format version. Nested lists and `op::VAR_UP` kept it at 4: a table without them is
/// byte-identical to before, and a loader that predates them refuses one with them anyway (it
/// refuses a list element or object field that is a list, `VAR_UP`, and nested bodies).
pub const VERSION: u16 = 4;

/// Sections, in header order.
pub mod section {
    /// Raw bytes that names and string constants point into.
    pub const STRINGS: usize = 0;
    /// Symbol names (environments, enum variants, agents), sorted by bytes: `Ref` (8 bytes) each.
    pub const SYMBOLS: usize = 1;
    /// Declared environments: `u16` symbol ids.
    pub const ENVS: usize = 2;
    /// Agents, sorted by name: `AGENT_SIZE` bytes each.
    pub const AGENTS: usize = 3;
    /// Tools, sorted by name: `TOOL_SIZE` bytes each.
    pub const TOOLS: usize = 4;
    /// Argument schemas, each tool's sorted by name: `ARG_SIZE` bytes each.
    pub const ARGS: usize = 5;
    /// Enum variant lists: `u16` symbol ids.
    pub const VARIANTS: usize = 6;
    /// Where each agent's buckets start: agents + 1 `u32` bucket indexes, the first 0, never
    /// decreasing, the last the bucket count. Agent `a`'s buckets are `DISPATCH[a]..DISPATCH[a +
    /// 1]`, one per tool something applies to, in ascending tool order; a pair without a bucket
    /// has nothing that applies (sparse: the table grows with the pairs rules reach, not with
    /// agents × tools).
    pub const DISPATCH: usize = 7;
    /// Buckets, grouped by agent (see `DISPATCH`): `BUCKET_SIZE` bytes each.
    pub const BUCKETS: usize = 8;
    /// Bucket rule entries, forbids then permits, each by rule id: `ENTRY_SIZE` bytes each.
    pub const ENTRIES: usize = 9;
    /// Bucket limit references: `u16` limit ids, in limit order.
    pub const LIMIT_REFS: usize = 10;
    /// Limits: `LIMIT_SIZE` bytes each.
    pub const LIMITS: usize = 11;
    /// Delegations, sorted by (from, to): `DELEGATION_SIZE` bytes each.
    pub const DELEGATIONS: usize = 12;
    /// Failure responses: `RESPONSE_SIZE` bytes each.
    pub const RESPONSES: usize = 13;
    /// Each agent's failure responses: `u16` response ids.
    pub const RESPONSE_REFS: usize = 14;
    /// Condition programs (bytecode, see `op`).
    pub const PROGRAMS: usize = 15;
    /// Rule labels, by rule id: `Ref` (8 bytes) each (the label, or `rule #N` for an unlabelled
    /// rule), so a decision names its rule in words.
    pub const RULES: usize = 16;
    /// Hash indexes of the symbol, agent and tool names, in that order: `u16` slots, each 0
    /// (empty) or 1 + a record index; see [`super::index`].
    pub const NAME_INDEX: usize = 17;
    pub const COUNT: usize = 18;
    /// Each section's name in words, by index (a refused table names the section at fault).
    pub const NAMES: [&str; COUNT] = [
        "strings",
        "symbols",
        "environments",
        "agents",
        "tools",
        "arguments",
        "enum variants",
        "dispatch",
        "buckets",
        "bucket entries",
        "limit references",
        "limits",
        "delegations",
        "failure responses",
        "failure response references",
        "programs",
        "rule labels",
        "name index",
    ];
}

/// Where each header field starts: magic, format version, reserved, policy hash, policy version,
/// then (offset `u32`, count `u32`) per section. Writer and reader use these and no literals.
pub mod header {
    /// `MAGIC`, 4 bytes.
    pub const MAGIC: usize = 0;
    /// `VERSION`, `u16`.
    pub const FORMAT_VERSION: usize = 4;
    /// Flags, `u16`: see [`super::flags`].
    pub const FLAGS: usize = 6;
    /// SHA-256 of the body (the bytes between the header and the signature), 32 bytes.
    pub const POLICY_HASH: usize = 8;
    /// The author's monotonic policy version (`compile --policy-version`), `u64`: hosts refuse a
    /// table older than the newest one they have accepted.
    pub const POLICY_VERSION: usize = 40;
    /// `section::COUNT` pairs of (offset `u32`, count `u32`).
    pub const SECTIONS: usize = 48;
}

pub const HEADER_SIZE: usize = header::SECTIONS + section::COUNT * 8;

/// Header flags.
pub mod flags {
    /// The policy's own tests passed and `verify` reported no errors when it was compiled
    /// (`tollgate compile` without `--allow-unverified`); `tollgate gate --require-verified`
    /// refuses a table without it.
    pub const VERIFIED: u16 = 1;
    /// Every flag this version defines; a table with others is refused.
    pub const ALL: u16 = VERIFIED;
}
pub const SIGNATURE_SIZE: usize = 64;

pub const REF_SIZE: usize = 8;
/// name `Ref`, symbol `u16`, response refs start `u16`, count `u16`, reserved `u16`, longest
/// credential lifetime in seconds `u32` (0: no limit).
pub const AGENT_SIZE: usize = 20;
/// name `Ref`, cost `i64`, args start `u16`, args count `u16`, reserved `u32`.
pub const TOOL_SIZE: usize = 24;
/// name `Ref`, kind `u8`, reserved 3, variants start `u32`, variants count `u32`, min `i64`, max `i64`.
pub const ARG_SIZE: usize = 36;
/// entries start `u32`, forbid count `u16`, permit count `u16`, limit refs start `u32`, limit count `u16`, tool `u16`.
pub const BUCKET_SIZE: usize = 16;
/// rule id `u16`, reserved `u16`, program offset `u32`.
pub const ENTRY_SIZE: usize = 8;
/// kind `u8`, reserved 7, value `i64` (count, amount or max depth), window `u64` (seconds).
pub const LIMIT_SIZE: usize = 24;
/// from `u16`, to `u16`, widening `u8`, reserved 3.
pub const DELEGATION_SIZE: usize = 8;
/// count `u32`, reserved `u32`, window `u64`.
pub const RESPONSE_SIZE: usize = 16;

/// Writes `bytes` at `at` of a fixed record (the record sizes above make every write fit).
fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(target) = at
        .checked_add(bytes.len())
        .and_then(|end| out.get_mut(at..end))
    {
        target.copy_from_slice(bytes);
    }
}

/// A string in STRINGS: offset `u32`, length `u32`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ref {
    pub offset: u32,
    pub len: u32,
}

impl Ref {
    pub fn encode(&self) -> [u8; REF_SIZE] {
        let mut out = [0u8; REF_SIZE];
        put(&mut out, 0, &self.offset.to_le_bytes());
        put(&mut out, 4, &self.len.to_le_bytes());
        out
    }
}

/// Field offsets inside each record, and each record's encoder. The compiler writes records with
/// the encoders; the loader and the gate read them at these offsets and no others.
pub mod field {
    /// AGENTS records.
    pub mod agent {
        pub const NAME: usize = 0;
        pub const SYMBOL: usize = 8;
        pub const RESPONSES_START: usize = 10;
        pub const RESPONSES_COUNT: usize = 12;
        pub const RESERVED: usize = 14;
        pub const TTL: usize = 16;
    }
    /// TOOLS records.
    pub mod tool {
        pub const NAME: usize = 0;
        pub const COST: usize = 8;
        pub const ARGS_START: usize = 16;
        pub const ARGS_COUNT: usize = 18;
        /// `tool_flag::*` bits.
        pub const FLAGS: usize = 20;
        /// 0, or 1 + the slot of the integer argument the cost is charged per.
        pub const COST_PER: usize = 21;
        pub const RESERVED: usize = 22;
    }
    /// ARGS records.
    pub mod arg {
        pub const NAME: usize = 0;
        pub const KIND: usize = 8;
        /// `arg_flag::*` bits.
        pub const FLAGS: usize = 9;
        /// Digits after the point of a decimal argument (0 for every other kind).
        pub const SCALE: usize = 10;
        pub const RESERVED: usize = 11;
        pub const VARIANTS_START: usize = 12;
        pub const VARIANTS_COUNT: usize = 16;
        pub const MIN: usize = 20;
        pub const MAX: usize = 28;
    }
    /// BUCKETS records.
    pub mod bucket {
        pub const ENTRIES_START: usize = 0;
        pub const FORBIDS: usize = 4;
        pub const PERMITS: usize = 6;
        pub const LIMITS_START: usize = 8;
        pub const LIMITS_COUNT: usize = 12;
        /// The tool (TOOLS index) the bucket is for; its agent is the one whose `DISPATCH`
        /// range holds it.
        pub const TOOL: usize = 14;
    }
    /// ENTRIES records.
    pub mod entry {
        pub const RULE: usize = 0;
        pub const RESERVED: usize = 2;
        pub const PROGRAM: usize = 4;
    }
    /// LIMITS records.
    pub mod limit {
        pub const KIND: usize = 0;
        pub const RESERVED: usize = 1;
        pub const VALUE: usize = 8;
        pub const WINDOW: usize = 16;
    }
    /// DELEGATIONS records.
    pub mod delegation {
        pub const FROM: usize = 0;
        pub const TO: usize = 2;
        pub const WIDENING: usize = 4;
        pub const RESERVED: usize = 5;
    }
    /// RESPONSES records.
    pub mod response {
        pub const COUNT: usize = 0;
        pub const RESERVED: usize = 4;
        pub const WINDOW: usize = 8;
    }
}

/// An AGENTS record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentRecord {
    pub name: Ref,
    pub symbol: u16,
    pub responses_start: u16,
    pub responses_count: u16,
    /// Longest credential lifetime in seconds (0: the default cap).
    pub ttl: u32,
}

impl AgentRecord {
    pub fn encode(&self) -> [u8; AGENT_SIZE] {
        use field::agent::*;
        let mut out = [0u8; AGENT_SIZE];
        put(&mut out, NAME, &self.name.encode());
        put(&mut out, SYMBOL, &self.symbol.to_le_bytes());
        put(
            &mut out,
            RESPONSES_START,
            &self.responses_start.to_le_bytes(),
        );
        put(
            &mut out,
            RESPONSES_COUNT,
            &self.responses_count.to_le_bytes(),
        );
        put(&mut out, TTL, &self.ttl.to_le_bytes());
        out
    }
}

/// A TOOLS record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToolRecord {
    pub name: Ref,
    pub cost: i64,
    pub args_start: u16,
    pub args_count: u16,
    /// `tool_flag::*` bits.
    pub flags: u8,
    /// 0, or 1 + the slot of the argument the cost is charged per.
    pub cost_per: u8,
}

impl ToolRecord {
    pub fn encode(&self) -> [u8; TOOL_SIZE] {
        use field::tool::*;
        let mut out = [0u8; TOOL_SIZE];
        put(&mut out, NAME, &self.name.encode());
        put(&mut out, COST, &self.cost.to_le_bytes());
        put(&mut out, ARGS_START, &self.args_start.to_le_bytes());
        put(&mut out, ARGS_COUNT, &self.args_count.to_le_bytes());
        put(&mut out, FLAGS, &[self.flags]);
        put(&mut out, COST_PER, &[self.cost_per]);
        out
    }
}

/// An ARGS record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgRecord {
    pub name: Ref,
    /// One of `arg::*`.
    pub kind: u8,
    /// `arg_flag::*` bits.
    pub flags: u8,
    /// Digits after the point of a `DECIMAL` argument, whose `min` and `max` are in units of
    /// `10^-scale`.
    pub scale: u8,
    pub variants_start: u32,
    pub variants_count: u32,
    pub min: i64,
    pub max: i64,
}

impl ArgRecord {
    pub fn encode(&self) -> [u8; ARG_SIZE] {
        use field::arg::*;
        let mut out = [0u8; ARG_SIZE];
        put(&mut out, NAME, &self.name.encode());
        put(&mut out, KIND, &[self.kind]);
        put(&mut out, FLAGS, &[self.flags]);
        put(&mut out, SCALE, &[self.scale]);
        put(&mut out, VARIANTS_START, &self.variants_start.to_le_bytes());
        put(&mut out, VARIANTS_COUNT, &self.variants_count.to_le_bytes());
        put(&mut out, MIN, &self.min.to_le_bytes());
        put(&mut out, MAX, &self.max.to_le_bytes());
        out
    }
}

/// A BUCKETS record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketRecord {
    pub entries_start: u32,
    pub forbids: u16,
    pub permits: u16,
    pub limits_start: u32,
    pub limits_count: u16,
    /// The tool's TOOLS index.
    pub tool: u16,
}

impl BucketRecord {
    pub fn encode(&self) -> [u8; BUCKET_SIZE] {
        use field::bucket::*;
        let mut out = [0u8; BUCKET_SIZE];
        put(&mut out, ENTRIES_START, &self.entries_start.to_le_bytes());
        put(&mut out, FORBIDS, &self.forbids.to_le_bytes());
        put(&mut out, PERMITS, &self.permits.to_le_bytes());
        put(&mut out, LIMITS_START, &self.limits_start.to_le_bytes());
        put(&mut out, LIMITS_COUNT, &self.limits_count.to_le_bytes());
        put(&mut out, TOOL, &self.tool.to_le_bytes());
        out
    }
}

/// An ENTRIES record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryRecord {
    pub rule: u16,
    /// Offset into PROGRAMS.
    pub program: u32,
}

impl EntryRecord {
    pub fn encode(&self) -> [u8; ENTRY_SIZE] {
        use field::entry::*;
        let mut out = [0u8; ENTRY_SIZE];
        put(&mut out, RULE, &self.rule.to_le_bytes());
        put(&mut out, PROGRAM, &self.program.to_le_bytes());
        out
    }
}

/// A LIMITS record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitRecord {
    /// One of `limit::*`.
    pub kind: u8,
    pub value: i64,
    pub window: u64,
}

impl LimitRecord {
    pub fn encode(&self) -> [u8; LIMIT_SIZE] {
        use field::limit::*;
        let mut out = [0u8; LIMIT_SIZE];
        put(&mut out, KIND, &[self.kind]);
        put(&mut out, VALUE, &self.value.to_le_bytes());
        put(&mut out, WINDOW, &self.window.to_le_bytes());
        out
    }
}

/// A DELEGATIONS record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DelegationRecord {
    pub from: u16,
    pub to: u16,
    pub widening: bool,
}

impl DelegationRecord {
    pub fn encode(&self) -> [u8; DELEGATION_SIZE] {
        use field::delegation::*;
        let mut out = [0u8; DELEGATION_SIZE];
        put(&mut out, FROM, &self.from.to_le_bytes());
        put(&mut out, TO, &self.to.to_le_bytes());
        put(&mut out, WIDENING, &[u8::from(self.widening)]);
        out
    }
}

/// A RESPONSES record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseRecord {
    pub count: u32,
    pub window: u64,
}

impl ResponseRecord {
    pub fn encode(&self) -> [u8; RESPONSE_SIZE] {
        use field::response::*;
        let mut out = [0u8; RESPONSE_SIZE];
        put(&mut out, COUNT, &self.count.to_le_bytes());
        put(&mut out, WINDOW, &self.window.to_le_bytes());
        out
    }
}

/// Argument kinds.
pub mod arg {
    pub const INT: u8 = 1;
    pub const BOOL: u8 = 2;
    pub const STR: u8 = 3;
    pub const ENUM: u8 = 4;
    /// A string in normal form (`crate::path`): the host normalizes it before deciding and
    /// forwards the normal form; the gate refuses one that is not.
    pub const PATH: u8 = 5;
    /// An exact number with at most `scale` digits after the point, decided as the integer
    /// `value × 10^scale` (`crate::decimal::units`); `min` and `max` are in those units.
    pub const DECIMAL: u8 = 6;
    /// A list: `variants_start` is the absolute ARGS index of its element record,
    /// `variants_count` is 1, and `min..=max` bounds its number of elements. The element record
    /// is a scalar kind (`INT`..=`DECIMAL`), `OBJECT` or `LIST` (a list of lists), never
    /// optional; no path from a tool's argument down to a scalar passes more than
    /// [`super::MAX_NEST`] lists.
    pub const LIST: u8 = 7;
    /// An object with named fields, only as a list's element: `variants_start` and
    /// `variants_count` are the ARGS range of its field records, strictly sorted by name, each a
    /// scalar or a `LIST` (never an object), required or optional (`arg_flag::OPTIONAL`; an
    /// absent list field reads as an empty list). A value must give every required field, may
    /// give each optional one, and gives no other, each at most once.
    pub const OBJECT: u8 = 8;

    /// Whether `kind` is a scalar kind (one value, no records below it).
    pub const fn is_scalar(kind: u8) -> bool {
        matches!(kind, INT | BOOL | STR | ENUM | PATH | DECIMAL)
    }
}

/// The most fields an object may declare (a `FIELD` operand is below it).
pub const MAX_FIELDS: usize = 32;

/// How deep lists nest: at most this many `LIST` records on any path from a tool's argument down
/// to a scalar (`list[list[list[list[int]]]]`, counting lists that are fields of a list's element
/// objects), and at most this many `ALL`/`ANY` bodies nested in a program (a body inside a body
/// inside …). The loader refuses deeper shapes and programs; the gate's validation, reading and
/// hashing of arguments and its bodies recurse at most this deep and fail closed past it.
pub const MAX_NEST: usize = 4;

/// The largest scale a decimal argument may have (`10^18` fits an `i64`).
pub const MAX_SCALE: u8 = 18;

/// Tool flags.
pub mod tool_flag {
    /// `args { …, .. }`: a call may give undeclared arguments, which the gate lets through.
    pub const OPEN_ARGS: u8 = 1;
    /// Every flag a loader accepts.
    pub const ALL: u8 = OPEN_ARGS;
}

/// Argument flags.
pub mod arg_flag {
    /// A call may leave the argument out (`name?: type`); `HAS` tests whether it did.
    pub const OPTIONAL: u8 = 1;
    /// A string or path whose length in bytes lies within `min..=max` (otherwise those fields
    /// are unused for strings).
    pub const LENGTH: u8 = 2;
    /// Every flag a loader accepts.
    pub const ALL: u8 = OPTIONAL | LENGTH;
}

/// Limit kinds.
pub mod limit {
    pub const RATE: u8 = 1;
    pub const BUDGET: u8 = 2;
    pub const DEPTH: u8 = 3;
    pub const REPEAT: u8 = 4;
}

/// Condition bytecode: a stack machine over values; a program ends with `END` leaving one boolean.
pub mod op {
    /// `i64` operand.
    pub const PUSH_INT: u8 = 0x01;
    /// `u8` operand, 0 or 1.
    pub const PUSH_BOOL: u8 = 0x02;
    /// `u32` offset, `u32` length into STRINGS.
    pub const PUSH_STR: u8 = 0x03;
    /// `u16` symbol id.
    pub const PUSH_SYM: u8 = 0x04;
    /// `u8` argument slot (the tool's arguments in name order).
    pub const ARG: u8 = 0x05;
    /// `u8` context field: `CTX_ENV`, `CTX_HOUR`, `CTX_DEPTH`, `CTX_ORIGIN`.
    pub const CTX: u8 = 0x06;
    /// `u8` argument slot: whether the call gives that (optional) argument.
    pub const HAS: u8 = 0x07;
    /// No operand: push the current element of the innermost `ALL`/`ANY` body around it (only
    /// inside a body), converted by its element record as `ARG` converts an argument (an object
    /// element is an object value, a list element a list value). `VAR_UP` with `up` 0, encoded
    /// on its own.
    pub const VAR: u8 = 0x08;
    /// `u8` field index (position among the object's fields, sorted by name): pop an object,
    /// push that field's value.
    pub const FIELD: u8 = 0x09;
    /// No operand: pop a list, push its number of elements.
    pub const LEN: u8 = 0x0A;
    /// `u8` field index (as `FIELD`): pop an object, push whether it gives that (optional)
    /// field.
    pub const HAS_FIELD: u8 = 0x0B;
    /// `u8` operand `up`, at least 1: push the current element of the body `up` levels out from
    /// the innermost `ALL`/`ANY` body around it (`VAR` is level 0), converted as `VAR` converts
    /// it. Only where at least `up + 1` bodies enclose it.
    pub const VAR_UP: u8 = 0x0C;
    pub const EQ: u8 = 0x10;
    pub const NE: u8 = 0x11;
    pub const LT: u8 = 0x12;
    pub const LE: u8 = 0x13;
    pub const GT: u8 = 0x14;
    pub const GE: u8 = 0x15;
    pub const STARTS_WITH: u8 = 0x16;
    pub const ENDS_WITH: u8 = 0x17;
    pub const CONTAINS: u8 = 0x18;
    pub const NOT: u8 = 0x20;
    pub const AND: u8 = 0x21;
    pub const OR: u8 = 0x22;
    /// `u16` body length in bytes: pop a list; the body (the next `length` bytes, a fragment
    /// without `END` leaving one boolean, run once per element with that element current, on a
    /// stack of its own) must be true for every element (true for an empty list). A body may
    /// hold `ALL`/`ANY` of its own, lying inside it, at most [`super::MAX_NEST`] bodies deep.
    pub const ALL: u8 = 0x30;
    /// As `ALL`, true when the body is true for some element (false for an empty list).
    pub const ANY: u8 = 0x31;
    pub const END: u8 = 0xFF;

    pub const CTX_ENV: u8 = 0;
    pub const CTX_HOUR: u8 = 1;
    pub const CTX_DEPTH: u8 = 2;
    pub const CTX_ORIGIN: u8 = 3;
}

/// The name indexes: open addressing with linear probing, one index per named section (symbols,
/// agents, tools). An index of `count` names has [`index::slots`]`(count)` slots, so at least
/// half of them are empty and every probe ends; a name is placed at its hash's slot (the hash
/// masked to the slot count) or the first empty slot after it, wrapping, in record order. The
/// compiler fills an index with [`index::build`]; the loader checks that every name is found at
/// its own record through it, so a lookup through a loaded table's index finds exactly the names
/// the section holds.
pub mod index {
    /// Slots of the index of `count` names: the smallest power of two at least twice `count`
    /// (none for no names); `None` when that overflows.
    pub const fn slots(count: usize) -> Option<usize> {
        if count == 0 {
            return Some(0);
        }
        match count.checked_mul(2) {
            Some(twice) => twice.checked_next_power_of_two(),
            None => None,
        }
    }

    /// The hash a name is placed by: eight bytes at a time (little-endian; the last 1 to 7 as
    /// one word), each word mixed in by a folded multiply (the 128-bit product's halves
    /// xor-ed), the length mixed in first, then MurmurHash3's 64-bit finalizer so every input
    /// bit reaches the low bits an index keeps. Not a cryptographic hash: the compiler fixes
    /// where every name sits, so a caller's chosen name can at worst walk the longest run of
    /// full slots, which the signed table bounds.
    pub fn hash(name: &[u8]) -> u64 {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mix = |h: u64, word: u64| {
            let product = u128::from(h ^ word) * u128::from(K);
            (product as u64) ^ ((product >> 64) as u64)
        };
        let mut h = (name.len() as u64).wrapping_mul(K) ^ 0x2545_F491_4F6C_DD1D;
        let mut rest = name;
        while let Some((word, tail)) = rest.split_first_chunk::<8>() {
            h = mix(h, u64::from_le_bytes(*word));
            rest = tail;
        }
        if !rest.is_empty() {
            h = mix(
                h,
                rest.iter()
                    .rev()
                    .fold(0, |word, &b| (word << 8) | u64::from(b)),
            );
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^ (h >> 33)
    }

    /// Places `names` (in record order) into `out`, which must have [`slots`] of their count:
    /// `false` when it does not or when there are more than `u16::MAX - 1` names.
    pub fn build<'n>(names: impl ExactSizeIterator<Item = &'n [u8]>, out: &mut [u16]) -> bool {
        let count = names.len();
        if slots(count) != Some(out.len()) || count >= usize::from(u16::MAX) {
            return false;
        }
        out.fill(0);
        let mask = out.len().wrapping_sub(1);
        for (record, name) in names.enumerate() {
            let mut at = (hash(name) as usize) & mask;
            // Fewer names than slots: an empty slot is always reached.
            while out.get(at).is_some_and(|slot| *slot != 0) {
                at = (at + 1) & mask;
            }
            if let Some(slot) = out.get_mut(at) {
                *slot = record as u16 + 1;
            }
        }
        true
    }
}

/// The deepest value stack a program may need; the loader rejects deeper programs.
pub const MAX_STACK: usize = 16;
/// The most arguments a tool may declare.
pub const MAX_ARGS: usize = 32;
/// The longest delegation chain a request may carry.
pub const MAX_CHAIN: usize = 16;

#[cfg(test)]
mod tests {
    use super::index;

    #[test]
    fn an_index_has_twice_its_names_in_a_power_of_two_and_places_each_name_once() {
        assert_eq!(index::slots(0), Some(0));
        assert_eq!(index::slots(1), Some(2));
        assert_eq!(index::slots(3), Some(8));
        assert_eq!(index::slots(4), Some(8));
        assert_eq!(index::slots(usize::MAX), None);
        let names: [&[u8]; 6] = [
            b"a",
            b"a\0",
            b"ab",
            b"refunds.issue",
            b"refunds.issue2",
            b"",
        ];
        let mut out = [0u16; 16];
        assert!(index::build(names.iter().copied(), &mut out));
        let mut seen = [0usize; 6];
        for slot in out.iter().filter(|s| **s != 0) {
            seen[usize::from(*slot) - 1] += 1;
        }
        assert_eq!(seen, [1; 6]);
        // The wrong slot count is refused.
        assert!(!index::build(names.iter().copied(), &mut [0u16; 8]));
    }

    /// Names that differ only in their high bytes once spread over every slot: a hash that
    /// kept only the low bits of a product placed 1,000 names `tool_N` about 400 probes deep.
    #[test]
    fn similar_names_spread_over_the_index() {
        for make in [
            |i: usize| -> [u8; 8] { (i as u64).to_be_bytes() },
            |i: usize| -> [u8; 8] { (i as u64).to_le_bytes() },
            |i: usize| -> [u8; 8] { (i as u64 * 0x1_0000_0000).to_le_bytes() },
        ] {
            let names: [[u8; 8]; 4096] = core::array::from_fn(make);
            let mut out = [0u16; 8192];
            assert!(index::build(names.iter().map(|n| n.as_slice()), &mut out));
            let mask = out.len() - 1;
            let mut probes = 0usize;
            for (record, name) in names.iter().enumerate() {
                let mut at = index::hash(name) as usize & mask;
                probes += 1;
                while usize::from(out[at]) != record + 1 {
                    at = (at + 1) & mask;
                    probes += 1;
                }
            }
            // Linear probing at half load averages 1.5 probes per name found.
            assert!(
                probes < 2 * names.len(),
                "{probes} probes for {} names",
                names.len()
            );
        }
    }

    #[test]
    fn the_hash_reads_every_byte_and_the_length() {
        let names: [&[u8]; 7] = [
            b"",
            b"\0",
            b"\0\0",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefgi",
            b"bbcdefgh",
        ];
        for (i, a) in names.iter().enumerate() {
            for b in names.iter().skip(i + 1) {
                assert_ne!(index::hash(a), index::hash(b), "{a:?} {b:?}");
            }
        }
    }
}
