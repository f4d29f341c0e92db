//! Lists at the host and the gateway: request lines and `tools/call`s with lists of paths and of
//! objects are read under the host's nesting rule, decided on their paths' normal forms, and the
//! decided list is reported (`normalized`) and forwarded. The table is assembled by hand and
//! signed, since the compiler writes lists only once the language has them.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test should fail loudly at the first surprise"
)]

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use tollgate_compiler::credential::{issue, Claims};
use tollgate_gateway::relay::{Action, Options, Relay};
use tollgate_host::audit_log::MemoryAudit;
use tollgate_host::clock::FixedClock;
use tollgate_host::gate::{Gate, GateOptions};
use tollgate_host::store::MemoryStore;
use tollgate_runtime::format::{arg, arg_flag, op, ArgRecord};
use tollgate_runtime::table::Table;
use tollgate_runtime::Reason;
use tollgate_tests::tables::{signed, TableBuilder};

const NOW: u64 = 1_767_261_600;

fn compiler() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

fn issuer() -> SigningKey {
    SigningKey::from_bytes(&[2; 32])
}

/// Tool `t`: `edits?: list[{path: path, text: string}]`, `paths: list[path]`; permitted when
/// every path and every edit's path starts with `/ws/`.
fn table() -> Vec<u8> {
    let mut t = TableBuilder::new(&["a"]);
    t.args = vec![
        ArgRecord {
            variants_start: 2,
            variants_count: 1,
            flags: arg_flag::OPTIONAL,
            ..t.arg("edits", arg::LIST)
        },
        ArgRecord {
            variants_start: 5,
            variants_count: 1,
            ..t.arg("paths", arg::LIST)
        },
        ArgRecord {
            variants_start: 3,
            variants_count: 2,
            ..t.arg("", arg::OBJECT)
        },
        t.arg("path", arg::PATH),
        t.arg("text", arg::STR),
        t.arg("", arg::PATH),
    ];
    t.tool_args = 2;
    let mut paths = vec![op::VAR];
    t.push_str(&mut paths, "/ws/");
    paths.push(op::STARTS_WITH);
    let mut edits = vec![op::VAR, op::FIELD, 0];
    t.push_str(&mut edits, "/ws/");
    edits.push(op::STARTS_WITH);
    let mut code = vec![op::ARG, 1, op::ALL];
    code.extend_from_slice(&(paths.len() as u16).to_le_bytes());
    code.extend_from_slice(&paths);
    code.extend_from_slice(&[op::ARG, 0, op::ALL]);
    code.extend_from_slice(&(edits.len() as u16).to_le_bytes());
    code.extend_from_slice(&edits);
    code.extend_from_slice(&[op::AND, op::END]);
    t.permits.push(code);
    signed(t.build(), &compiler())
}

fn credential(bytes: &[u8]) -> Vec<u8> {
    let table = Table::load(bytes, &compiler().verifying_key()).unwrap();
    let claims = Claims {
        agent: "a",
        via: &[],
        env: None,
        audience: None,
        scope: &[],
        issued_at: NOW,
        ttl: 600,
        id: [7; 16],
    };
    issue(&table, &claims, &issuer(), &|_| false).unwrap()
}

type TestGate<'t> = Gate<'t, FixedClock, MemoryStore, MemoryAudit>;

fn with_gate(f: impl FnOnce(&TestGate<'_>, &[u8])) {
    let bytes = table();
    let table = Table::load(&bytes, &compiler().verifying_key()).unwrap();
    let (gate, _) = Gate::start(
        table,
        issuer().verifying_key(),
        SigningKey::from_bytes(&[3; 32]),
        FixedClock::new(NOW + 5),
        MemoryStore::default(),
        MemoryAudit::default(),
        &[],
        &GateOptions::default(),
    )
    .unwrap();
    f(&gate, &credential(&bytes));
}

fn line(credential: &[u8], args: Value) -> Vec<u8> {
    let credential = base64::engine::general_purpose::STANDARD.encode(credential);
    json!({"credential": credential, "tool": "t", "args": args})
        .to_string()
        .into_bytes()
}

#[test]
fn lists_are_decided_and_reported_in_normal_form() {
    with_gate(|gate, credential| {
        let decision = gate.decide_line(&line(
            credential,
            json!({"paths": ["/ws/a/../b", "/ws//c", "/ws/d"], "edits": [{"text": "x", "path": "/ws/./e"}]}),
        ));
        assert!(decision.allowed, "{decision:?}");
        let reported: Value = serde_json::from_str(&decision.to_json()).unwrap();
        assert_eq!(
            reported["normalized"],
            json!({"paths": ["/ws/b", "/ws/c", "/ws/d"], "edits": [{"text": "x", "path": "/ws/e"}]})
        );
        // Nothing to report when every path is normal already.
        let decision = gate.decide_line(&line(credential, json!({"paths": ["/ws/a"]})));
        assert!(decision.allowed);
        assert!(decision.normalized.is_empty());
        assert!(!decision.to_json().contains("normalized"));
        // An escape by `..` is decided on where it leads; a climb above the root is invalid.
        let escape = gate.decide_line(&line(credential, json!({"paths": ["/ws/../etc/passwd"]})));
        assert_eq!(escape.reason, Some(Reason::NotPermitted));
        let edit = gate.decide_line(&line(
            credential,
            json!({"paths": [], "edits": [{"path": "/ws/../../x", "text": ""}]}),
        ));
        assert_eq!(edit.reason, Some(Reason::InvalidArgument));
    });
}

#[test]
fn null_and_dotted_names_are_malformed_and_undeclared_nesting_is_invalid() {
    with_gate(|gate, credential| {
        // Objects are read as their fields: one where the table declares a list or a path is an
        // argument (or field) it does not declare, decided and denied as invalid. A list inside a
        // list is read at any depth, and where the tool declares none the gate refuses it.
        for args in [
            json!({"paths": {"a": "/ws/a"}}),
            json!({"paths": [], "edits": [{"path": {"p": 1}, "text": ""}]}),
            json!({"paths": [["/ws/a"]]}),
            json!({"paths": [], "edits": [{"path": ["/ws"], "text": ""}]}),
        ] {
            let decision = gate.decide_line(&line(credential, args.clone()));
            assert_eq!(decision.reason, Some(Reason::InvalidArgument), "{args}");
        }
        for (args, says) in [
            (json!({"paths": ["/ws/a", null]}), "element 1 is `null`"),
            (json!({"paths": [[null]]}), "element 0 element 0 is `null`"),
            (json!({"paths": null}), "is `null`"),
            (
                json!({"paths": [], "a.b": 1}),
                "`a.b` has a `.` in its name",
            ),
            (
                json!({"paths": [], "edits": [{"path": "/ws/a", "text": "", "x.y": 1}]}),
                "`x.y` has a `.` in its name",
            ),
        ] {
            let decision = gate.decide_line(&line(credential, args.clone()));
            assert_eq!(decision.reason, Some(Reason::Malformed), "{args}");
            let detail = decision.detail.unwrap();
            assert!(detail.contains(says), "{args}: {detail}");
        }
        // A duplicate key inside an object, which JSON values cannot even hold.
        let credential = base64::engine::general_purpose::STANDARD.encode(credential);
        let text = format!(
            r#"{{"credential":"{credential}","tool":"t","args":{{"paths":[],"edits":[{{"path":"/ws/a","text":"","path":"/etc"}}]}}}}"#
        );
        let decision = gate.decide_line(text.as_bytes());
        assert_eq!(decision.reason, Some(Reason::Malformed));
        assert!(decision.detail.unwrap().contains("duplicate key `path`"));
    });
}

#[test]
fn the_gateway_forwards_the_list_it_decided() {
    let bytes = table();
    let table = Table::load(&bytes, &compiler().verifying_key()).unwrap();
    let (gate, _) = Gate::start(
        table,
        issuer().verifying_key(),
        SigningKey::from_bytes(&[3; 32]),
        FixedClock::new(NOW + 5),
        MemoryStore::default(),
        MemoryAudit::default(),
        &[],
        &GateOptions::default(),
    )
    .unwrap();
    let mut relay = Relay::new(&gate, credential(&bytes), Options::default()).unwrap();
    let call = |id: u64, arguments: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "t", "arguments": arguments}})
            .to_string()
            .into_bytes()
    };
    let forwarded = |actions: &[Action]| -> Vec<Value> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::ToServer(m) => Some(serde_json::from_str(m).unwrap()),
                _ => None,
            })
            .collect()
    };
    let actions = relay.from_client(&call(
        1,
        json!({"paths": ["/ws/a/../b"], "edits": [{"path": "/ws//e", "text": "x"}]}),
    ));
    let sent = forwarded(&actions);
    assert_eq!(sent.len(), 1, "{actions:?}");
    assert_eq!(
        sent[0]["params"]["arguments"],
        json!({"paths": ["/ws/b"], "edits": [{"path": "/ws/e", "text": "x"}]})
    );
    // Denied on the normal form, and nested where the tool declares no list inside a list:
    // neither reaches the server.
    for arguments in [
        json!({"paths": ["/ws/../etc"]}),
        json!({"paths": [["/ws/a"]]}),
    ] {
        assert!(forwarded(&relay.from_client(&call(2, arguments))).is_empty());
    }
}

/// Tool `t`: `docs: list[{files: list[{n: int, path: path}], name: string}]`,
/// `grid: list[list[path]]`; always permitted (the gate still refuses a path not in normal form).
fn nested_table() -> Vec<u8> {
    let mut t = TableBuilder::new(&["a"]);
    let list = |t: &mut TableBuilder, name: &str, element: u32| ArgRecord {
        variants_start: element,
        variants_count: 1,
        ..t.arg(name, arg::LIST)
    };
    let object = |t: &mut TableBuilder, start: u32, count: u32| ArgRecord {
        variants_start: start,
        variants_count: count,
        ..t.arg("", arg::OBJECT)
    };
    t.args = vec![
        list(&mut t, "docs", 2),
        list(&mut t, "grid", 5),
        object(&mut t, 3, 2),
        list(&mut t, "files", 6),
        t.arg("name", arg::STR),
        list(&mut t, "", 9),
        object(&mut t, 7, 2),
        t.arg("n", arg::INT),
        t.arg("path", arg::PATH),
        t.arg("", arg::PATH),
    ];
    t.tool_args = 2;
    t.permits.push(vec![op::PUSH_BOOL, 1, op::END]);
    signed(t.build(), &compiler())
}

#[test]
fn paths_two_lists_deep_are_decided_reported_and_forwarded_in_normal_form() {
    let bytes = nested_table();
    let table = Table::load(&bytes, &compiler().verifying_key()).unwrap();
    let (gate, _) = Gate::start(
        table,
        issuer().verifying_key(),
        SigningKey::from_bytes(&[3; 32]),
        FixedClock::new(NOW + 5),
        MemoryStore::default(),
        MemoryAudit::default(),
        &[],
        &GateOptions::default(),
    )
    .unwrap();
    let credential = credential(&bytes);
    let sent = json!({
        "grid": [["/ws/./a", "b//c"], [], ["d"]],
        "docs": [{"name": "./x", "files": [{"n": 1, "path": "p/../q"}, {"n": 2, "path": "r"}]}],
    });
    let decided = json!({
        "grid": [["/ws/a", "b/c"], [], ["d"]],
        "docs": [{"name": "./x", "files": [{"n": 1, "path": "q"}, {"n": 2, "path": "r"}]}],
    });
    let decision = gate.decide_line(&line(&credential, sent.clone()));
    assert!(decision.allowed, "{decision:?}");
    let reported: Value = serde_json::from_str(&decision.to_json()).unwrap();
    assert_eq!(reported["normalized"], decided);
    // Normal already: allowed, nothing reported; a climb above the root has no normal form,
    // and the gate refuses it as sent.
    let decision = gate.decide_line(&line(&credential, decided.clone()));
    assert!(decision.allowed, "{decision:?}");
    assert!(decision.normalized.is_empty());
    let decision = gate.decide_line(&line(&credential, json!({"grid": [["../up"]], "docs": []})));
    assert_eq!(decision.reason, Some(Reason::InvalidArgument));
    // The gateway forwards what the gate decided.
    let mut relay = Relay::new(&gate, credential, Options::default()).unwrap();
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t", "arguments": sent}});
    let actions = relay.from_client(call.to_string().as_bytes());
    let forwarded: Vec<Value> = actions
        .iter()
        .filter_map(|a| match a {
            Action::ToServer(m) => Some(serde_json::from_str(m).unwrap()),
            _ => None,
        })
        .collect();
    assert_eq!(forwarded.len(), 1, "{actions:?}");
    assert_eq!(forwarded[0]["params"]["arguments"], decided);
}
