//! Arbitrary bytes as a decision table: loading never panics, and a table that parses (signature
//! aside) can be asked to decide without panicking. The bytes are tried as given and again with
//! their policy hash made to fit their body, so that mutations of a seed table reach the
//! section validators instead of stopping at the hash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use tollgate_runtime::format;
use tollgate_runtime::gate::{self, ArgValue, Call, Slot};
use tollgate_runtime::table::Table;

fuzz_target!(|bytes: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    let _ = Table::load(bytes, &key);
    decide_with(bytes);
    if bytes.len() >= format::HEADER_SIZE + format::SIGNATURE_SIZE {
        let mut fitted = bytes.to_vec();
        let body_end = fitted.len() - format::SIGNATURE_SIZE;
        let hash: [u8; 32] = Sha256::digest(&fitted[format::HEADER_SIZE..body_end]).into();
        fitted[format::header::POLICY_HASH..format::header::POLICY_HASH + 32]
            .copy_from_slice(&hash);
        decide_with(&fitted);
    }
});

/// Parses the bytes as a table (signature aside) and, if they parse, decides calls with them.
fn decide_with(bytes: &[u8]) {
    if let Ok(table) = Table::parse(bytes) {
        // As a host would: state sized by the table (bounded here, as a host bounds its memory).
        let needed = gate::slots_needed(&table, 4);
        if needed > 1 << 16 {
            return;
        }
        let mut slots = vec![Slot::EMPTY; needed];
        let Ok(mut state) = gate::State::new(&table, &mut slots) else {
            return;
        };
        let args = [("amount", ArgValue::Int(5)), ("note", ArgValue::Str("x"))];
        for (agent, tool) in [("a0", "t.a"), ("ops", "crm.read_customer")] {
            for via in [&[][..], &["a1"][..]] {
                let call = Call {
                    agent,
                    tool,
                    args: &args,
                    via,
                    env: Some("prod"),
                    time: 7,
                };
                let _ = gate::decide(&table, &mut state, &call);
            }
        }
        // Every agent on every tool, with arguments shaped by the tool's own schema (scalars at
        // their bounds, strings empty or "a/b", a list of none): reaches every bucket the table
        // holds and runs its programs.
        for tool in 0..table.tool_count().min(64) {
            let Some(Ok(tool_name)) = table.tool_name(tool).map(core::str::from_utf8) else {
                continue;
            };
            for pick in 0..2 {
                let mut given: Vec<(&str, ArgValue<'_>)> = Vec::new();
                for slot in 0..table.arg_count(tool).unwrap_or(0).min(32) {
                    let (Some(Ok(name)), Some(schema)) = (
                        table.arg_name(tool, slot).map(core::str::from_utf8),
                        table.arg_schema(tool, slot),
                    ) else {
                        continue;
                    };
                    let value = match schema.kind {
                        format::arg::INT | format::arg::DECIMAL => {
                            ArgValue::Int(if pick == 0 { schema.min } else { schema.max })
                        }
                        format::arg::BOOL => ArgValue::Bool(pick == 1),
                        format::arg::LIST => ArgValue::List(&[]),
                        _ => ArgValue::Str(if pick == 0 { "" } else { "a/b" }),
                    };
                    given.push((name, value));
                }
                for agent in 0..table.agent_count().min(64) {
                    let Some(Ok(agent)) = table.agent_name(agent).map(core::str::from_utf8) else {
                        continue;
                    };
                    let env = table.has_envs().then_some("prod");
                    let call = Call {
                        agent,
                        tool: tool_name,
                        args: &given,
                        via: &[],
                        env,
                        time: 7,
                    };
                    let _ = gate::decide(&table, &mut state, &call);
                }
            }
        }
    }
}
