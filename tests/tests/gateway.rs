//! The MCP gateway's relay, message by message, on a real gate over `examples/mcp-filesystem`:
//! what is forwarded, what is answered here, what is audited, and when the session ends. The
//! same relay runs between real MCP clients and servers in `tests/tests/mcp.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test should fail loudly at the first surprise"
)]

use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use tollgate_compiler::codegen;
use tollgate_compiler::credential::{issue, Claims};
use tollgate_gateway::{Action, DenyAs, Ending, Options, Relay};
use tollgate_host::audit_log::MemoryAudit;
use tollgate_host::clock::FixedClock;
use tollgate_host::gate::{Gate, GateOptions};
use tollgate_host::store::MemoryStore;
use tollgate_runtime::table::Table;
use tollgate_runtime::Reason;
use tollgate_tests::{load_dir, root};

const NOW: u64 = 1_767_261_600;

fn compiler() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}
fn issuer() -> SigningKey {
    SigningKey::from_bytes(&[2; 32])
}

fn table_bytes() -> Vec<u8> {
    table_bytes_of("examples/mcp-filesystem")
}

fn table_bytes_of(dir: &str) -> Vec<u8> {
    let (_, policy) = load_dir(&root().join(dir));
    codegen::compile(&policy, &compiler()).unwrap().bytes
}

fn credential(bytes: &[u8], agent: &str) -> Vec<u8> {
    let table = Table::load(bytes, &compiler().verifying_key()).unwrap();
    let claims = Claims {
        agent,
        via: &[],
        env: None,
        audience: None,
        scope: &[],
        issued_at: NOW,
        ttl: 600,
        id: [9; 16],
    };
    issue(&table, &claims, &issuer(), &|_| false).unwrap()
}

type TestGate<'t> = Gate<'t, FixedClock, MemoryStore, MemoryAudit>;

fn with_relay(
    options: Options,
    f: impl FnOnce(&TestGate<'_>, &mut Relay<'_, '_, FixedClock, MemoryStore, MemoryAudit>),
) {
    with_relay_on("examples/mcp-filesystem", "writer", options, f);
}

fn with_relay_on(
    dir: &str,
    agent: &str,
    options: Options,
    f: impl FnOnce(&TestGate<'_>, &mut Relay<'_, '_, FixedClock, MemoryStore, MemoryAudit>),
) {
    let bytes = table_bytes_of(dir);
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
    let mut relay = Relay::new(&gate, credential(&bytes, agent), options).unwrap();
    f(&gate, &mut relay);
}

fn fs_options() -> Options {
    Options {
        prefix: Some("fs".to_owned()),
        ..Options::default()
    }
}

fn call(id: u64, tool: &str, arguments: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
        .to_string()
        .into_bytes()
}

fn to_client(actions: &[Action]) -> Vec<Value> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ToClient(m) => Some(serde_json::from_str(m).unwrap()),
            _ => None,
        })
        .collect()
}

fn to_server(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ToServer(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_allowed_call_is_audited_then_forwarded_unchanged() {
    with_relay(fs_options(), |gate, relay| {
        let line = call(1, "read_text_file", json!({"path": "docs/readme.md"}));
        let actions = relay.from_client(&line);
        assert_eq!(to_server(&actions), vec![String::from_utf8(line).unwrap()]);
        assert!(to_client(&actions).is_empty());
        assert_eq!(
            gate.records(),
            1,
            "the allow is in the log before it is forwarded"
        );
        // The server's answer goes back to the client as it came.
        let answer =
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello"}]}}"#;
        let back = relay.from_server(answer.as_bytes());
        assert_eq!(back, vec![Action::ToClient(answer.to_owned())]);
    });
}

#[test]
fn a_path_is_decided_and_forwarded_in_normal_form_and_a_climb_never_leaves() {
    with_relay(fs_options(), |gate, relay| {
        // `docs/./guide/../readme.md` is `docs/readme.md`: allowed, and forwarded as that.
        let line = call(
            1,
            "read_text_file",
            json!({"path": "docs/./guide/../readme.md"}),
        );
        let forwarded = to_server(&relay.from_client(&line));
        assert_eq!(forwarded.len(), 1);
        let message: Value = serde_json::from_str(&forwarded[0]).unwrap();
        assert_eq!(message["params"]["arguments"]["path"], "docs/readme.md");
        assert_eq!(message["id"], 1);
        // `docs/../secrets.txt` is `secrets.txt`, not under docs; a climb above the root is
        // invalid. Neither reaches the server.
        for (id, path, reason) in [
            (2, "docs/../secrets.txt", "not_permitted"),
            (3, "docs/../../etc/passwd", "invalid_argument"),
        ] {
            let actions = relay.from_client(&call(id, "read_text_file", json!({ "path": path })));
            assert!(to_server(&actions).is_empty(), "{path}");
            let answer = &to_client(&actions)[0];
            assert_eq!(
                answer["result"]["_meta"]["tollgate/decision"]["reason"], reason,
                "{path}"
            );
        }
        assert_eq!(gate.records(), 3);
    });
}

/// A number with a fraction reaches the server as the gate read it (the double JSON gives, in its
/// shortest form), never as the digits the client spelled; a fraction of a cent, or a fraction
/// for an integer argument, never leaves.
#[test]
fn a_decimal_is_decided_exactly_and_forwarded_as_decided() {
    let options = Options {
        prefix: Some("payments".to_owned()),
        ..fs_options()
    };
    with_relay_on("examples/payouts", "refund_bot", options, |gate, relay| {
        // JSON's reader rounds this to 250.0: decided as 250.00, and forwarded as `250.0`.
        let line = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"refund","arguments":{"order":"A-1","amount":250.000000000000000001,"currency":"usd"}}}"#;
        let forwarded = to_server(&relay.from_client(line));
        assert_eq!(forwarded.len(), 1);
        assert!(
            forwarded[0].contains(r#""amount":250.0"#),
            "{}",
            forwarded[0]
        );
        for (id, amount, reason) in [
            (2, json!(250.01), "not_permitted"),
            (3, json!(12.345), "invalid_argument"),
        ] {
            let arguments = json!({"order": "A-1", "amount": amount, "currency": "usd"});
            let actions = relay.from_client(&call(id, "refund", arguments));
            assert!(to_server(&actions).is_empty(), "{amount}");
            let answer = &to_client(&actions)[0];
            assert_eq!(
                answer["result"]["_meta"]["tollgate/decision"]["reason"], reason,
                "{amount}"
            );
        }
        assert_eq!(gate.records(), 3);
    });
    with_relay(fs_options(), |_, relay| {
        let line = call(
            1,
            "read_text_file",
            json!({"path": "docs/readme.md", "head": 5.5}),
        );
        let actions = relay.from_client(&line);
        assert!(to_server(&actions).is_empty());
        assert_eq!(
            to_client(&actions)[0]["result"]["_meta"]["tollgate/decision"]["reason"],
            "invalid_argument"
        );
    });
}

#[test]
fn a_denied_call_is_answered_here_with_the_reason_and_the_audit_sequence() {
    with_relay(fs_options(), |gate, relay| {
        let actions = relay.from_client(&call(
            7,
            "write_file",
            json!({"path": "out/id_rsa", "content": "-----BEGIN OPENSSH PRIVATE KEY-----"}),
        ));
        assert!(to_server(&actions).is_empty(), "nothing reaches the server");
        let answer = &to_client(&actions)[0];
        assert_eq!(answer["id"], 7);
        assert_eq!(answer["result"]["isError"], true);
        let text = answer["result"]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("forbids"), "{text}");
        assert!(text.contains("rule `no_private_keys`"), "{text}");
        let decision = &answer["result"]["_meta"]["tollgate/decision"];
        assert_eq!(decision["reason"], "forbidden");
        assert_eq!(decision["rule"], "no_private_keys");
        assert_eq!(decision["seq"], 0);
        assert_eq!(gate.records(), 1);
        // Its cancellation is dropped: the server never saw the call.
        let cancel =
            json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}});
        assert!(to_server(&relay.from_client(cancel.to_string().as_bytes())).is_empty());
    });
}

#[test]
fn deny_as_error_answers_with_a_json_rpc_error() {
    let options = Options {
        deny_as: DenyAs::Error,
        ..fs_options()
    };
    with_relay(options, |_, relay| {
        let actions = relay.from_client(&call(
            2,
            "write_file",
            json!({"path": "docs/x", "content": "y"}),
        ));
        let answer = &to_client(&actions)[0];
        assert_eq!(answer["error"]["code"], tollgate_gateway::relay::DENIED);
        assert_eq!(
            answer["error"]["data"]["tollgate/decision"]["reason"],
            "not_permitted"
        );
    });
}

#[test]
fn a_hidden_tool_is_an_unknown_tool_and_still_audited() {
    with_relay(fs_options(), |gate, relay| {
        let actions = relay.from_client(&call(
            3,
            "move_file",
            json!({"source": "a", "destination": "b"}),
        ));
        let answer = &to_client(&actions)[0];
        assert_eq!(answer["error"]["code"], -32602);
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`move_file`"));
        assert_eq!(gate.records(), 1);
    });
}

#[test]
fn tools_list_shows_only_what_the_agent_could_ever_be_allowed() {
    with_relay(fs_options(), |_, relay| {
        let list = json!({"jsonrpc":"2.0","id":"l1","method":"tools/list","params":{}});
        assert_eq!(
            to_server(&relay.from_client(list.to_string().as_bytes())).len(),
            1
        );
        let tools: Vec<Value> = [
            "read_text_file",
            "move_file",
            "write_file",
            "edit_file",
            "directory_tree",
        ]
        .iter()
        .map(|name| json!({"name": name, "inputSchema": {"type": "object"}}))
        .collect();
        let page = json!({"jsonrpc":"2.0","id":"l1","result":{"tools": tools, "nextCursor": "p2"}});
        let shown = &to_client(&relay.from_server(page.to_string().as_bytes()))[0];
        let names: Vec<&str> = shown["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["read_text_file", "write_file", "edit_file"]);
        assert_eq!(shown["result"]["nextCursor"], "p2", "paging passes through");
    });
}

#[test]
fn the_protocol_version_is_negotiated_down_or_refused() {
    with_relay(fs_options(), |_, relay| {
        let init = |id: u64, version: &str| {
            json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{"protocolVersion":version,
                "capabilities":{"roots":{"listChanged":true},"sampling":{}},"clientInfo":{"name":"t","version":"1"}}})
            .to_string()
        };
        let old = to_client(&relay.from_client(init(1, "2024-11-05").as_bytes()));
        assert_eq!(old[0]["error"]["code"], -32602);
        assert_eq!(
            old[0]["error"]["data"]["supported"],
            json!(["2025-11-25", "2025-06-18"])
        );
        let newer = relay.from_client(init(2, "2026-07-28").as_bytes());
        let forwarded: Value = serde_json::from_str(&to_server(&newer)[0]).unwrap();
        assert_eq!(forwarded["params"]["protocolVersion"], "2025-11-25");
        assert_eq!(
            forwarded["params"]["capabilities"],
            json!({}),
            "roots and sampling are not passed by default"
        );
        let reply = json!({"jsonrpc":"2.0","id":2,"result":{"protocolVersion":"2025-06-18",
            "capabilities":{"tools":{"listChanged":true},"resources":{},"prompts":{}},"serverInfo":{"name":"s","version":"1"}}});
        let shown = &to_client(&relay.from_server(reply.to_string().as_bytes()))[0];
        assert_eq!(
            shown["result"]["capabilities"],
            json!({"tools":{"listChanged":true}})
        );
        // A server that answers with a version the gateway does not speak is refused.
        relay.from_client(init(3, "2025-11-25").as_bytes());
        let odd = json!({"jsonrpc":"2.0","id":3,"result":{"protocolVersion":"2024-11-05","capabilities":{}}});
        let refused = &to_client(&relay.from_server(odd.to_string().as_bytes()))[0];
        assert!(refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`2024-11-05`"));
    });
}

#[test]
fn methods_the_policy_cannot_decide_are_refused_unless_allowed() {
    with_relay(fs_options(), |_, relay| {
        let read = json!({"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"file:///etc/passwd"}});
        let actions = relay.from_client(read.to_string().as_bytes());
        assert!(to_server(&actions).is_empty());
        assert_eq!(to_client(&actions)[0]["error"]["code"], -32601);
        // The server may not ask the client to sample, elicit or list roots either.
        let sample =
            json!({"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{}});
        let actions = relay.from_server(sample.to_string().as_bytes());
        assert!(to_client(&actions).is_empty());
        assert!(to_server(&actions)[0].contains("-32601"));
        // Unknown methods fail closed, whoever sends them.
        let discover = json!({"jsonrpc":"2.0","id":6,"method":"server/discover","params":{}});
        assert_eq!(
            to_client(&relay.from_client(discover.to_string().as_bytes()))[0]["error"]["code"],
            -32601
        );
    });
    let options = Options {
        allow_methods: vec!["resources/*".to_owned()],
        ..fs_options()
    };
    with_relay(options, |_, relay| {
        let read =
            json!({"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"file:///x"}});
        assert_eq!(
            to_server(&relay.from_client(read.to_string().as_bytes())).len(),
            1
        );
        let updated = json!({"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///x"}});
        assert_eq!(
            to_client(&relay.from_server(updated.to_string().as_bytes())).len(),
            1
        );
    });
}

#[test]
fn bad_input_from_either_side_never_crosses() {
    with_relay(fs_options(), |gate, relay| {
        for bad in [
            &b"not json"[..],
            b"[1,2]",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\"}",
            b"\xff\xfe",
            b"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}",
        ] {
            let actions = relay.from_client(bad);
            assert!(to_server(&actions).is_empty(), "{bad:?} reached the server");
            assert!(to_client(&actions)[0]["error"].is_object());
            let actions = relay.from_server(bad);
            assert!(to_client(&actions).is_empty(), "{bad:?} reached the client");
        }
        // A response to a request nobody sent is dropped, both ways.
        let stray = br#"{"jsonrpc":"2.0","id":99,"result":{}}"#;
        assert!(matches!(relay.from_server(stray)[..], [Action::Log(_)]));
        assert!(matches!(relay.from_client(stray)[..], [Action::Log(_)]));
        // Arguments holding `null`, at any depth of lists, are denied as malformed, and
        // audited.
        let list = relay.from_client(&call(
            4,
            "read_text_file",
            json!({"path": "docs/a", "head": [[1, null]]}),
        ));
        let answer = &to_client(&list)[0];
        assert_eq!(
            answer["result"]["_meta"]["tollgate/decision"]["reason"],
            "malformed"
        );
        assert!(answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("argument `head` element 0 element 1 is `null`"));
        assert_eq!(gate.records(), 1);
        assert_eq!(relay.client_oversize(20, 10).len(), 2);
        assert!(to_client(&relay.server_oversize(20, 10)).is_empty());
    });
}

#[test]
fn repeated_denials_revoke_the_agent_and_end_the_session() {
    with_relay(fs_options(), |gate, relay| {
        // An allowed call is open at the server when the revocation comes.
        let open = relay.from_client(&call(
            100,
            "read_text_file",
            json!({"path": "docs/readme.md"}),
        ));
        assert_eq!(to_server(&open).len(), 1);
        let mut ended = None;
        for id in 0..5 {
            let actions = relay.from_client(&call(
                id,
                "write_file",
                json!({"path": "docs/x", "content": "y"}),
            ));
            if let Some(Action::End(ending)) = actions.last() {
                let answers = to_client(&actions);
                assert_eq!(answers[0]["id"], id);
                assert_eq!(
                    answers[0]["error"]["code"],
                    tollgate_gateway::relay::SESSION_ENDED
                );
                assert!(
                    answers.iter().any(|a| a["id"] == 100),
                    "the open call gets an error too"
                );
                ended = Some((id, *ending));
                break;
            }
        }
        assert_eq!(
            ended,
            Some((4, Ending::Revoked)),
            "the fifth denial within 10m revokes"
        );
        assert!(gate.is_revoked("writer"));
        assert!(relay.ended());
        assert!(relay
            .from_client(&call(
                9,
                "read_text_file",
                json!({"path": "docs/readme.md"})
            ))
            .is_empty());
    });
}

#[test]
fn a_forged_or_foreign_credential_starts_no_session() {
    let bytes = table_bytes();
    let table = Table::load(&bytes, &compiler().verifying_key()).unwrap();
    let (gate, _) = Gate::start(
        table,
        issuer().verifying_key(),
        SigningKey::from_bytes(&[3; 32]),
        FixedClock::new(NOW),
        MemoryStore::default(),
        MemoryAudit::default(),
        &[],
        &GateOptions::default(),
    )
    .unwrap();
    let mut forged = credential(&bytes, "writer");
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(
        Relay::new(&gate, forged, fs_options()).unwrap_err(),
        Reason::CredentialForged
    );
    assert_eq!(
        Relay::new(&gate, b"junk".to_vec(), fs_options()).unwrap_err(),
        Reason::CredentialMalformed
    );
}

#[test]
fn progress_and_list_changes_pass_both_ways() {
    with_relay(fs_options(), |_, relay| {
        // A call in flight, with a progress token.
        let line = json!({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"read_text_file",
            "arguments":{"path":"docs/a"},"_meta":{"progressToken":"p8"}}});
        assert_eq!(
            to_server(&relay.from_client(line.to_string().as_bytes())).len(),
            1
        );
        let progress = json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p8","progress":1,"total":2}});
        assert_eq!(
            relay.from_server(progress.to_string().as_bytes()),
            vec![Action::ToClient(progress.to_string())]
        );
        let changed = json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"});
        assert_eq!(
            to_client(&relay.from_server(changed.to_string().as_bytes())).len(),
            1
        );
        // The client's own progress notifications (for a server request) pass too.
        let back = json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"s1","progress":1}});
        assert_eq!(
            to_server(&relay.from_client(back.to_string().as_bytes())).len(),
            1
        );
    });
}
