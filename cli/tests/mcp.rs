//! The MCP gateway end to end with real peers: the official Python MCP client (pinned in
//! `tests/mcp/requirements.txt`) talks through `tollgate mcp` to the reference MCP file system
//! server (pinned in `tests/mcp/package-lock.json`), both installed by `scripts/setup`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test should fail loudly at the first surprise"
)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The installed peers, or a failure that says how to install them.
fn peers() -> (PathBuf, PathBuf) {
    let python = root().join("tests/mcp/.venv/bin/python");
    let server = root().join("tests/mcp/node_modules/.bin/mcp-server-filesystem");
    assert!(
        python.exists() && server.exists(),
        "the real MCP peers are not installed: run `bash scripts/setup` (or `bash scripts/test`)"
    );
    (python, server)
}

fn tollgate(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn ok(output: std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Keys, the compiled example table and a credential for `writer` in a fresh directory, and a
/// workspace with a docs folder for the server.
fn setup(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-mcp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("workspace/docs")).unwrap();
    std::fs::create_dir_all(dir.join("workspace/out")).unwrap();
    std::fs::write(dir.join("workspace/docs/readme.md"), "hello docs\n").unwrap();
    let path = |file: &str| dir.join(file).display().to_string();
    for key in ["compiler", "issuer", "gate"] {
        ok(tollgate(&["keygen", &path(key)]));
    }
    ok(tollgate(&[
        "compile",
        "examples/mcp-filesystem",
        "-o",
        &path("policy.tgt"),
        "--key",
        &path("compiler.key"),
    ]));
    ok(tollgate(&[
        "issue",
        "--table",
        &path("policy.tgt"),
        "--agent",
        "writer",
        "--ttl",
        "10m",
        "--key",
        &path("issuer.key"),
        "-o",
        &path("writer.cred"),
    ]));
    dir
}

fn gateway_args(dir: &Path) -> Vec<String> {
    let path = |file: &str| dir.join(file).display().to_string();
    [
        "mcp",
        "--table",
        &path("policy.tgt"),
        "--compiler-key",
        &path("compiler.pub"),
        "--issuer-key",
        &path("issuer.pub"),
        "--gate-key",
        &path("gate.key"),
        "--audit",
        &path("audit.log"),
        "--state",
        &path("state"),
        "--credential",
        &path("writer.cred"),
        "--prefix",
        "fs",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

#[test]
fn a_python_agent_through_the_gateway_to_the_file_system_server() {
    let (python, server) = peers();
    let dir = setup("fs");
    let workspace = dir.join("workspace");
    // The client starts the gateway as its server; a shell records the gateway's exit status and
    // the real server's pid (to see that the gateway stopped it).
    let gateway = gateway_args(&dir)
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "'{BIN}' {gateway} -- sh -c 'echo $$ > \"{pid}\"; exec \"{server}\" \"{workspace}\"'; echo $? > '{status}'",
        pid = dir.join("server.pid").display(),
        server = server.display(),
        workspace = workspace.display(),
        status = dir.join("status").display(),
    );
    let output = Command::new(&python)
        .arg(root().join("tests/mcp/filesystem_session.py"))
        .args(["sh", "-c", &script])
        .env("WORKSPACE", &workspace)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(stdout.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no report ({e}); stdout: {stdout}\nstderr: {stderr}"));

    assert_eq!(report["protocol"], "2025-11-25");
    // Only the tools the policy could ever allow `writer`.
    assert_eq!(
        report["tools"],
        serde_json::json!([
            "create_directory",
            "get_file_info",
            "list_allowed_directories",
            "list_directory",
            "read_text_file",
            "write_file"
        ]),
        "{stderr}"
    );
    // An allowed read returns the file.
    assert_eq!(report["read"]["is_error"], false, "{report}");
    assert!(report["read"]["text"]
        .as_str()
        .unwrap()
        .contains("hello docs"));
    // A denied write is an error result with the reason, and the file is unchanged.
    assert_eq!(report["write_docs"]["is_error"], true);
    assert!(report["write_docs"]["text"]
        .as_str()
        .unwrap()
        .contains("not_permitted"));
    assert_eq!(
        std::fs::read_to_string(workspace.join("docs/readme.md")).unwrap(),
        "hello docs\n"
    );
    // Climbing out with `..` is denied by the policy, before the server sees it.
    assert_eq!(report["climb"]["is_error"], true);
    assert_eq!(
        report["climb"]["meta"]["tollgate/decision"]["rule"],
        "no_climbing"
    );
    // An allowed write lands; a private key does not.
    assert_eq!(report["write_out"]["is_error"], false, "{report}");
    assert_eq!(
        std::fs::read_to_string(workspace.join("out/summary.md")).unwrap(),
        "all good"
    );
    assert_eq!(report["private_key"]["is_error"], true);
    assert!(!workspace.join("out/id_rsa").exists());
    // A tool the agent never sees is an unknown tool.
    assert_eq!(report["hidden"]["error"], -32602);
    // Repeated denials revoke the agent: the pending call gets an error and the session ends.
    let attempts = report["attempts"].as_array().unwrap();
    assert_eq!(
        attempts.last().unwrap()["error"],
        tollgate_gateway_codes::SESSION_ENDED,
        "{report}"
    );
    assert!(attempts.last().unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    assert_ne!(report["after_end"], "answered");
    // The gateway exited with its documented status and stopped the server.
    let status = std::fs::read_to_string(dir.join("status")).unwrap();
    assert_eq!(status.trim(), "4", "{stderr}");
    let pid = std::fs::read_to_string(dir.join("server.pid")).unwrap();
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the server (pid {pid}) is still running"
    );
    // The audit log verifies and holds every decision: 2 allowed, 3 + attempts denied, plus the
    // revocation record.
    let verified = ok(tollgate(&[
        "audit",
        "verify",
        "--key",
        &dir.join("gate.pub").display().to_string(),
        &dir.join("audit.log").display().to_string(),
    ]));
    let decisions = 2 + 3 + 1 + attempts.len();
    assert!(
        verified.contains(&format!("ok: {} records", decisions + 1)),
        "{verified} (expected {decisions} decisions and a revocation)"
    );

    // The revocation survives: a new session for the same agent does not start.
    let again = Command::new(BIN)
        .args(gateway_args(&dir))
        .args(["--", "true"])
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&again.stderr).contains("agent `writer` is revoked"));
}

/// The JSON-RPC codes the gateway documents (kept here as numbers: the test reads the wire).
mod tollgate_gateway_codes {
    pub const SESSION_ENDED: i64 = -32002;
}
