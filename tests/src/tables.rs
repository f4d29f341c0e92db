//! Decision tables assembled by hand from `runtime::format`'s record encoders: one agent `a`,
//! one tool `t`, the argument records and the programs a test gives. For table shapes the
//! compiler does not write yet (lists and objects), and for refusals it never writes.

use sha2::{Digest, Sha256};
use tollgate_runtime::format::{
    self, op, section, AgentRecord, ArgRecord, BucketRecord, EntryRecord, LimitRecord, Ref,
    ToolRecord,
};

/// A table under construction. `symbols` must be sorted and include the agent `a`.
#[derive(Clone, Debug, Default)]
pub struct TableBuilder {
    pub strings: Vec<u8>,
    pub symbols: Vec<String>,
    /// ARGS records: the tool's own first (`tool_args` of them, sorted by name), then element
    /// and field records.
    pub args: Vec<ArgRecord>,
    pub tool_args: u16,
    pub variants: Vec<u16>,
    /// Programs of forbid rules, then of permit rules, each ending with `END`.
    pub forbids: Vec<Vec<u8>>,
    pub permits: Vec<Vec<u8>>,
    pub limits: Vec<LimitRecord>,
}

impl TableBuilder {
    pub fn new(symbols: &[&str]) -> TableBuilder {
        let mut builder = TableBuilder::default();
        for symbol in symbols {
            builder.symbols.push((*symbol).to_owned());
        }
        builder
    }

    /// Adds bytes to STRINGS and returns their `Ref`.
    pub fn string(&mut self, text: &str) -> Ref {
        let offset = self.strings.len() as u32;
        self.strings.extend_from_slice(text.as_bytes());
        Ref {
            offset,
            len: text.len() as u32,
        }
    }

    /// The id of a symbol (panics when it is not one).
    pub fn symbol(&self, name: &str) -> u16 {
        self.symbols
            .iter()
            .position(|s| s == name)
            .unwrap_or_else(|| panic!("no symbol `{name}`")) as u16
    }

    /// An ARGS record named `name` of `kind`, with full integer bounds.
    pub fn arg(&mut self, name: &str, kind: u8) -> ArgRecord {
        ArgRecord {
            name: self.string(name),
            kind,
            min: if kind == format::arg::LIST {
                0
            } else {
                i64::MIN
            },
            max: i64::MAX,
            ..ArgRecord::default()
        }
    }

    /// `PUSH_STR` of a new string constant.
    pub fn push_str(&mut self, code: &mut Vec<u8>, text: &str) {
        let constant = self.string(text);
        code.push(op::PUSH_STR);
        code.extend_from_slice(&constant.offset.to_le_bytes());
        code.extend_from_slice(&constant.len.to_le_bytes());
    }

    /// The table's bytes, with a zero signature (`Table::parse` does not check it).
    pub fn build(&self) -> Vec<u8> {
        let mut builder = self.clone();
        let agent_name = builder.string("a");
        let tool_name = builder.string("t");
        let symbol_refs: Vec<Ref> = self
            .symbols
            .clone()
            .iter()
            .map(|s| builder.string(s))
            .collect();
        let rules = self.forbids.len() + self.permits.len();
        let labels: Vec<Ref> = (0..rules)
            .map(|r| builder.string(&format!("rule #{r}")))
            .collect();
        let mut programs = Vec::new();
        let mut entries = Vec::new();
        for (rule, program) in self.forbids.iter().chain(&self.permits).enumerate() {
            entries.extend(
                EntryRecord {
                    rule: rule as u16,
                    program: programs.len() as u32,
                }
                .encode(),
            );
            programs.extend_from_slice(program);
        }
        let mut sections: Vec<(Vec<u8>, usize)> = vec![(Vec::new(), 0); section::COUNT];
        sections[section::STRINGS] = (builder.strings.clone(), builder.strings.len());
        sections[section::SYMBOLS] = (
            symbol_refs.iter().flat_map(Ref::encode).collect(),
            symbol_refs.len(),
        );
        sections[section::AGENTS] = (
            AgentRecord {
                name: agent_name,
                symbol: self.symbol("a"),
                ..AgentRecord::default()
            }
            .encode()
            .to_vec(),
            1,
        );
        sections[section::TOOLS] = (
            ToolRecord {
                name: tool_name,
                args_start: 0,
                args_count: self.tool_args,
                ..ToolRecord::default()
            }
            .encode()
            .to_vec(),
            1,
        );
        sections[section::ARGS] = (
            self.args.iter().flat_map(ArgRecord::encode).collect(),
            self.args.len(),
        );
        sections[section::VARIANTS] = (
            self.variants.iter().flat_map(|v| v.to_le_bytes()).collect(),
            self.variants.len(),
        );
        // One agent, whose one bucket (for the one tool) is bucket 0.
        sections[section::DISPATCH] = ([0u32, 1].iter().flat_map(|s| s.to_le_bytes()).collect(), 2);
        sections[section::BUCKETS] = (
            BucketRecord {
                entries_start: 0,
                forbids: self.forbids.len() as u16,
                permits: self.permits.len() as u16,
                limits_start: 0,
                limits_count: self.limits.len() as u16,
                tool: 0,
            }
            .encode()
            .to_vec(),
            1,
        );
        sections[section::ENTRIES] = (entries, rules);
        sections[section::LIMIT_REFS] = (
            (0..self.limits.len() as u16)
                .flat_map(u16::to_le_bytes)
                .collect(),
            self.limits.len(),
        );
        sections[section::LIMITS] = (
            self.limits.iter().flat_map(LimitRecord::encode).collect(),
            self.limits.len(),
        );
        sections[section::PROGRAMS] = (programs.clone(), programs.len());
        sections[section::RULES] = (labels.iter().flat_map(Ref::encode).collect(), rules);
        let mut index = Vec::new();
        for names in [
            self.symbols
                .iter()
                .map(|s| s.as_bytes())
                .collect::<Vec<_>>(),
            vec![b"a".as_slice()],
            vec![b"t".as_slice()],
        ] {
            let mut slots = vec![0u16; format::index::slots(names.len()).unwrap_or(0)];
            assert!(format::index::build(names.into_iter(), &mut slots));
            index.extend(slots);
        }
        sections[section::NAME_INDEX] = (
            index.iter().flat_map(|slot| slot.to_le_bytes()).collect(),
            index.len(),
        );

        let mut header = vec![0u8; format::HEADER_SIZE];
        let mut body = Vec::new();
        for (index, (bytes, count)) in sections.iter().enumerate() {
            let offset = (format::HEADER_SIZE + body.len()) as u32;
            let at = format::header::SECTIONS + index * 8;
            header[at..at + 4].copy_from_slice(&offset.to_le_bytes());
            header[at + 4..at + 8].copy_from_slice(&(*count as u32).to_le_bytes());
            body.extend_from_slice(bytes);
        }
        header[format::header::MAGIC..format::header::MAGIC + 4].copy_from_slice(&format::MAGIC);
        header[format::header::FORMAT_VERSION..format::header::FORMAT_VERSION + 2]
            .copy_from_slice(&format::VERSION.to_le_bytes());
        header[format::header::POLICY_HASH..format::header::POLICY_HASH + 32]
            .copy_from_slice(&Sha256::digest(&body));
        header[format::header::POLICY_VERSION..format::header::POLICY_VERSION + 8]
            .copy_from_slice(&1u64.to_le_bytes());
        let mut table = header;
        table.extend_from_slice(&body);
        table.extend_from_slice(&[0u8; format::SIGNATURE_SIZE]);
        table
    }
}

/// `bytes` (from [`TableBuilder::build`]) signed with the compiler key `key`, as `Table::load`
/// and a host's gate accept it.
pub fn signed(mut bytes: Vec<u8>, key: &ed25519_dalek::SigningKey) -> Vec<u8> {
    use ed25519_dalek::Signer as _;
    let body = bytes.len() - format::SIGNATURE_SIZE;
    let signature = key.sign(&bytes[..body]).to_bytes();
    bytes[body..].copy_from_slice(&signature);
    bytes
}
