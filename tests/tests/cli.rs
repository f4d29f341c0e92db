//! Snapshots of what the `tollgate` command prints, run in-process from the repository root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly at the first surprise"
)]

use tollgate_tests::{root, run_cli};

fn cli(args: &[&str]) -> String {
    cli_with_stdin(args, "")
}

fn cli_with_stdin(args: &[&str], stdin: &str) -> String {
    std::env::set_current_dir(root()).unwrap();
    let (code, out, err) = run_cli(args, stdin);
    format!("exit: {code}\n--- stdout\n{out}--- stderr\n{err}")
}

#[test]
fn check_clean_example() {
    insta::assert_snapshot!(cli(&["check", "examples/support-desk"]));
}

#[test]
fn check_reports_errors_human() {
    insta::assert_snapshot!(cli(&["check", "tests/fixtures/invalid/many_errors.toll"]));
}

#[test]
fn check_reports_errors_json() {
    insta::assert_snapshot!(cli(&[
        "check",
        "tests/fixtures/invalid/many_errors.toll",
        "--format",
        "json"
    ]));
}

#[test]
fn check_missing_path_is_a_usage_error() {
    insta::assert_snapshot!(cli(&["check", "no/such/dir"]));
}

#[test]
fn eval_allow() {
    insta::assert_snapshot!(cli(&[
        "eval",
        "examples/support-desk",
        "--request",
        "tests/fixtures/cli/refund_small.json"
    ]));
}

#[test]
fn eval_deny_explains_rules() {
    insta::assert_snapshot!(cli(&[
        "eval",
        "examples/support-desk",
        "--request",
        "tests/fixtures/cli/refund_big.json"
    ]));
}

#[test]
fn eval_json() {
    insta::assert_snapshot!(cli(&[
        "eval",
        "examples/support-desk",
        "--request",
        "tests/fixtures/cli/refund_big.json",
        "--format",
        "json"
    ]));
}

#[test]
fn eval_sequence_with_delegation() {
    insta::assert_snapshot!(cli(&[
        "eval",
        "examples/finance-ops",
        "--request",
        "tests/fixtures/cli/delegated_payment.json"
    ]));
}

#[test]
fn eval_reads_stdin_and_uses_the_given_time() {
    let request = r#"{"agent": "coder", "tool": "shell.run", "args": {"command": "ls", "timeout_s": 5}, "context": {"env": "sandbox"}}"#;
    insta::assert_snapshot!(cli_with_stdin(
        &[
            "eval",
            "examples/coding-agent",
            "--request",
            "-",
            "--time",
            "3600"
        ],
        request
    ));
}

#[test]
fn eval_rejects_malformed_requests() {
    let request = r#"{"agent": "coder", "tool": "shell.run", "args": {"timeout_s": null}}"#;
    insta::assert_snapshot!(cli_with_stdin(
        &["eval", "examples/coding-agent", "--request", "-"],
        request
    ));
}

/// Money is exact: `250.00` is allowed, a cent more is not permitted, and a fraction of a cent
/// (`12.345`) or a fraction for an integer is an invalid argument, never rounded.
#[test]
fn eval_decides_decimal_amounts_exactly() {
    let requests = r#"[
{"agent": "refund_bot", "tool": "payments.refund", "args": {"order": "A-1", "amount": 250.00, "currency": "usd"}},
{"agent": "refund_bot", "tool": "payments.refund", "args": {"order": "A-1", "amount": "250.01", "currency": "usd"}},
{"agent": "refund_bot", "tool": "payments.refund", "args": {"order": "A-1", "amount": 12.345, "currency": "usd"}},
{"agent": "refund_bot", "tool": "payments.refund", "args": {"order": "A-1", "amount": 2.5e1, "currency": "usd"}}
]"#;
    let output = cli_with_stdin(&["eval", "examples/payouts", "--request", "-"], requests);
    let decisions: Vec<&str> = output
        .lines()
        .filter(|l| l.starts_with("request "))
        .collect();
    assert_eq!(decisions.len(), 4, "{output}");
    assert!(
        decisions[0].ends_with(": allow by small_refunds"),
        "{output}"
    );
    assert!(decisions[1].ends_with(": deny not_permitted"), "{output}");
    assert!(
        decisions[2].ends_with(": deny invalid_argument"),
        "{output}"
    );
    assert!(
        decisions[3].ends_with(": allow by small_refunds"),
        "{output}"
    );
    insta::assert_snapshot!(output);
}

#[test]
fn test_passing_example() {
    insta::assert_snapshot!(cli(&["test", "examples/finance-ops"]));
}

#[test]
fn test_failures_show_expected_and_actual() {
    insta::assert_snapshot!(cli(&["test", "tests/fixtures/cli/failing_test.toll"]));
}

#[test]
fn test_json() {
    insta::assert_snapshot!(cli(&[
        "test",
        "tests/fixtures/cli/failing_test.toll",
        "--format",
        "json"
    ]));
}

#[test]
fn fmt_check_lists_unformatted_files() {
    insta::assert_snapshot!(cli(&[
        "fmt",
        "--check",
        "tests/fixtures/cli/unformatted.toll"
    ]));
}

#[test]
fn fmt_rewrites_in_place() {
    let dir = std::env::temp_dir().join(format!("tollgate-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("policy.toll");
    std::fs::copy(root().join("tests/fixtures/cli/unformatted.toll"), &file).unwrap();
    let path = file.display().to_string();
    let (code, _, _) = run_cli(&["fmt", &path], "");
    assert_eq!(code, 0);
    let formatted = std::fs::read_to_string(&file).unwrap();
    let (again, out, _) = run_cli(&["fmt", "--check", &path], "");
    assert_eq!((again, out.as_str()), (0, ""), "fmt is not idempotent");
    std::fs::remove_dir_all(&dir).unwrap();
    insta::assert_snapshot!(formatted);
}

#[test]
fn help_lists_the_commands() {
    insta::assert_snapshot!(cli(&["--help"]));
}

/// The enforcement flow through the command line, with fixed test keys: compile (translation
/// validated), issue, gate a session, verify the audit log, and catch a tampered one.
#[test]
fn compile_issue_gate_and_audit() {
    std::env::set_current_dir(root()).unwrap();
    let dir = std::env::temp_dir().join(format!("tollgate-flow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    for (name, seed) in [("compiler", 0x11u8), ("issuer", 0x22), ("gate", 0x33)] {
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let secret = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        std::fs::write(path(&format!("{name}.key")), secret.as_bytes()).unwrap();
        let public = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        std::fs::write(path(&format!("{name}.pub")), public).unwrap();
    }
    let mut transcript = String::new();
    let mut run = |args: &[&str], stdin: &str| {
        let (code, out, err) = run_cli(args, stdin);
        let shown: Vec<&str> = args
            .iter()
            .map(|a| {
                if a.contains(&*dir.display().to_string()) {
                    "<tmp>"
                } else {
                    a
                }
            })
            .collect();
        let shown_out = format!("{out}{err}").replace(&*dir.display().to_string(), "<tmp>");
        transcript.push_str(&format!(
            "$ tollgate {}\nexit: {code}\n{shown_out}\n",
            shown.join(" ")
        ));
        (code, out)
    };
    // A public key where a secret key is needed is a one-line error naming the file.
    let (code, _) = run(
        &[
            "compile",
            "examples/support-desk",
            "-o",
            &path("policy.tgt"),
            "--key",
            &path("compiler.pub"),
        ],
        "",
    );
    assert_eq!(code, 2);
    assert!(!dir.join("policy.tgt").exists());
    // Keys are never overwritten without --force.
    let (code, _) = run(&["keygen", &path("compiler")], "");
    assert_eq!(code, 2);
    run(
        &[
            "compile",
            "examples/support-desk",
            "-o",
            &path("policy.tgt"),
            "--key",
            &path("compiler.key"),
            "--policy-version",
            "2",
        ],
        "",
    );
    run(
        &[
            "issue",
            "--table",
            &path("policy.tgt"),
            "--agent",
            "support_bot",
            "--ttl",
            "10m",
            "--key",
            &path("issuer.key"),
            "--time",
            "1767261600",
            "-o",
            &path("bot.cred"),
        ],
        "",
    );
    run(
        &[
            "issue",
            "--table",
            &path("policy.tgt"),
            "--agent",
            "support_bot",
            "--ttl",
            "1h",
            "--key",
            &path("issuer.key"),
            "-o",
            &path("long.cred"),
        ],
        "",
    );
    let credential = std::fs::read_to_string(path("bot.cred")).unwrap();
    let credential = credential.trim();
    let mut session = format!(
        "{{\"id\": 0, \"credential\": \"{credential}\", \"tool\": \"payments.refund\", \"args\": {{\"amount\": 5000, \"currency\": \"usd\", \"customer_id\": \"c-1\", \"amount\": 50}}}}\n"
    );
    session.push_str(
        &std::fs::read_to_string("examples/sessions/support-desk.jsonl.template")
            .unwrap()
            .replace("@CREDENTIAL@", credential),
    );
    let gate = |audit: &str, table: &str| {
        vec![
            "gate".to_owned(),
            "--table".to_owned(),
            path(table),
            "--compiler-key".to_owned(),
            path("compiler.pub"),
            "--issuer-key".to_owned(),
            path("issuer.pub"),
            "--gate-key".to_owned(),
            path("gate.key"),
            "--state".to_owned(),
            path("state"),
            "--env".to_owned(),
            "prod".to_owned(),
            "--fixed-clock".to_owned(),
            "1767261620".to_owned(),
            "--audit".to_owned(),
            path(audit),
            "--checkpoint-every".to_owned(),
            "4".to_owned(),
        ]
    };
    let args = gate("audit.log", "policy.tgt");
    let (code, out) = run(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &session,
    );
    assert_eq!(code, 0);
    let decisions: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reason = |i: usize| {
        decisions[i]["reason"]
            .as_str()
            .unwrap_or("allow")
            .to_owned()
    };
    assert_eq!(reason(0), "malformed", "duplicate keys");
    assert_eq!(reason(1), "allow");
    assert_eq!(reason(5), "untrusted_field", "a claimed time");
    assert_eq!(decisions[7]["revoked_agent"], true);
    assert_eq!(reason(8), "credential_revoked");
    // A restart keeps the revocation, and the issuer refuses the revoked agent.
    let args = gate("audit-2.log", "policy.tgt");
    let first = session.lines().nth(1).unwrap();
    let (_, out) = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), first);
    assert!(out.contains("credential_revoked"), "{out}");
    let (code, _) = run(
        &[
            "issue",
            "--table",
            &path("policy.tgt"),
            "--agent",
            "support_bot",
            "--ttl",
            "10m",
            "--key",
            &path("issuer.key"),
            "--state",
            &path("state"),
            "-o",
            &path("again.cred"),
        ],
        "",
    );
    assert_eq!(code, 1);
    // An older policy version is refused after a newer one was accepted.
    run(
        &[
            "compile",
            "examples/support-desk",
            "-o",
            &path("old.tgt"),
            "--key",
            &path("compiler.key"),
            "--policy-version",
            "1",
        ],
        "",
    );
    let args = gate("audit-old.log", "old.tgt");
    let (code, _) = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), "");
    assert_eq!(code, 1);
    let (code, _) = run(
        &[
            "audit",
            "verify",
            &path("audit.log"),
            "--key",
            &path("gate.pub"),
        ],
        "",
    );
    assert_eq!(code, 0);
    let mut log = std::fs::read(path("audit.log")).unwrap();
    // A byte of the second record's agent name (each entry is a tag byte and a record).
    log[1 + tollgate_runtime::audit::RECORD_SIZE + 100] ^= 1;
    std::fs::write(path("tampered.log"), &log).unwrap();
    let (code, _) = run(
        &[
            "audit",
            "verify",
            &path("tampered.log"),
            "--key",
            &path("gate.pub"),
        ],
        "",
    );
    assert_eq!(code, 1);
    std::fs::remove_dir_all(&dir).unwrap();
    // The compile line carries the proof time, which varies.
    let transcript: String = transcript
        .lines()
        .filter(|l| !l.contains("translation validated"))
        .map(|l| format!("{l}\n"))
        .collect();
    insta::assert_snapshot!(transcript);
}

/// `compile` refuses a policy whose `verify` reports errors unless `--allow-unverified`, the
/// table says which it is, and `gate --require-verified` refuses an unverified one.
#[test]
fn unverified_policies_are_refused_unless_allowed_and_marked() {
    std::env::set_current_dir(root()).unwrap();
    let dir = std::env::temp_dir().join(format!("tollgate-unverified-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    for name in ["compiler", "issuer", "gate"] {
        assert_eq!(run_cli(&["keygen", &path(name)], "").0, 0);
    }
    let (table, key) = (path("flawed.tgt"), path("compiler.key"));
    let compile = |extra: &[&str]| {
        let mut args = vec![
            "compile",
            "examples/flawed/dead-permit",
            "-o",
            &table,
            "--key",
            &key,
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = run_cli(&args, "");
        (code, format!("{out}{err}"))
    };
    let (code, output) = compile(&[]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("the policy is not verified"), "{output}");
    assert!(!dir.join("flawed.tgt").exists(), "nothing is written");
    let (code, output) = compile(&["--allow-unverified"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("NOT verified"), "{output}");
    let gate = |extra: &str| {
        let mut args = vec![
            "gate".to_owned(),
            "--table".to_owned(),
            path("flawed.tgt"),
            "--compiler-key".to_owned(),
            path("compiler.pub"),
            "--issuer-key".to_owned(),
            path("issuer.pub"),
            "--gate-key".to_owned(),
            path("gate.key"),
            "--state".to_owned(),
            path("state"),
            "--audit".to_owned(),
            path("audit.log"),
        ];
        if !extra.is_empty() {
            args.push(extra.to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = run_cli(&args, "");
        (code, err)
    };
    let (code, err) = gate("--require-verified");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("requires a verified table"), "{err}");
    let (code, err) = gate("");
    assert_eq!(code, 0, "{err}");
}

/// `tollgate import mcp` on the saved `tools/list` results of the three reference MCP servers
/// the gateway's tests run (`tests/mcp/tools/*.json`, captured from the pinned servers with an
/// `initialize` and a `tools/list` over stdio).
#[test]
fn import_mcp_tool_lists_of_the_reference_servers() {
    for (server, domain) in [
        ("filesystem", "files"),
        ("everything", "demo"),
        ("memory", "knowledge"),
    ] {
        let file = format!("tests/mcp/tools/{server}.json");
        insta::assert_snapshot!(
            format!("import_mcp_{server}"),
            cli(&["import", "mcp", &file, "--prefix", server, "--domain", domain])
        );
    }
}

/// What `import` writes checks as soon as the domain is declared: the file system server's
/// tools become a policy the gate can enforce.
#[test]
fn imported_declarations_check_once_the_domain_is_declared() {
    std::env::set_current_dir(root()).unwrap();
    let (code, text, _) = run_cli(
        &[
            "import",
            "mcp",
            "tests/mcp/tools/filesystem.json",
            "--prefix",
            "fs",
            "--domain",
            "files",
        ],
        "",
    );
    assert_eq!(code, 0);
    let dir = std::env::temp_dir().join(format!("tollgate-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.toll");
    std::fs::write(&policy, &text).unwrap();
    let path = policy.display().to_string();
    let (code, _, _) = run_cli(&["fmt", "--check", &path], "");
    assert_eq!(code, 0, "the import is written in canonical form");
    // Without the domain the checker refuses the file, naming it.
    let (code, _, err) = run_cli(&["check", &path], "");
    assert_eq!(code, 1);
    assert!(err.contains("files"), "{err}");
    std::fs::write(
        &policy,
        format!("{text}\ndomain files {{ private }}\nagent a {{ roles [r] }}\nread: permit agent a to call effect read;\n"),
    )
    .unwrap();
    let (code, out, err) = run_cli(&["check", &path], "");
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn import_openai_function_definitions() {
    insta::assert_snapshot!(cli(&[
        "import",
        "openai",
        "tests/fixtures/cli/openai_tools.json",
        "--prefix",
        "pay",
        "--domain",
        "payments"
    ]));
}
