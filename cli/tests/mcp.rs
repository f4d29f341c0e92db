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
            "edit_file",
            "get_file_info",
            "list_allowed_directories",
            "list_directory",
            "read_multiple_files",
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
    // So does a read that gives the optional `head` the policy declares.
    assert_eq!(report["read_head"]["is_error"], false, "{report}");
    assert!(report["read_head"]["text"]
        .as_str()
        .unwrap()
        .contains("hello docs"));
    // A list of paths, decided in normal form: the server reads both (the same file).
    assert_eq!(report["read_many"]["is_error"], false, "{report}");
    assert_eq!(
        report["read_many"]["text"]
            .as_str()
            .unwrap()
            .matches("hello docs")
            .count(),
        2,
        "{report}"
    );
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
    // Climbing out with `..` is an invalid path argument, denied before the server sees it.
    assert_eq!(report["climb"]["is_error"], true);
    assert_eq!(
        report["climb"]["meta"]["tollgate/decision"]["reason"],
        "invalid_argument"
    );
    // An allowed write lands, and an allowed edit (a list of objects) changes it; a private key
    // does not land.
    assert_eq!(report["write_out"]["is_error"], false, "{report}");
    assert_eq!(report["edit_out"]["is_error"], false, "{report}");
    assert_eq!(
        std::fs::read_to_string(workspace.join("out/summary.md")).unwrap(),
        "all great"
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
    // The audit log verifies and holds every decision: 5 allowed, 3 + attempts denied, plus the
    // revocation record.
    let verified = ok(tollgate(&[
        "audit",
        "verify",
        "--key",
        &dir.join("gate.pub").display().to_string(),
        &dir.join("audit.log").display().to_string(),
    ]));
    let decisions = 5 + 3 + 1 + attempts.len();
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

/// Starts `tollgate mcp serve` on a free port, in front of server-everything at `everything`
/// (its Streamable HTTP URL) and server-memory (a command); returns the child and its URL.
fn serve(dir: &Path, everything: &str) -> (std::process::Child, String) {
    let bin = root().join("tests/mcp/node_modules/.bin");
    serve_with(
        dir,
        &[
            "--upstream".to_owned(),
            format!("everything={everything}"),
            "--upstream".to_owned(),
            format!("memory={}", bin.join("mcp-server-memory").display()),
        ],
    )
}

/// Starts `tollgate mcp serve` on a free port with these upstreams and flags.
fn serve_with(dir: &Path, flags: &[String]) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let path = |file: &str| dir.join(file).display().to_string();
    let mut child = Command::new(BIN)
        .args([
            "mcp",
            "serve",
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
            "--listen",
            "127.0.0.1:0",
        ])
        .args(flags)
        .current_dir(dir)
        // server-memory keeps its graph in this file: one per test directory.
        .env("MEMORY_FILE_PATH", dir.join("memory.jsonl"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let url = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the gateway exited before listening"
        );
        if let Some(at) = line.find("http://") {
            break line[at..].split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (child, url)
}

/// Stops the gateway with `SIGTERM`: it closes its log and exits 0.
fn stop(mut child: std::process::Child) {
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "the gateway stopped with {status}");
}

fn http_session(python: &Path, url: &str, phase: &str, dir: &Path) -> Value {
    let output = Command::new(python)
        .arg(root().join("tests/mcp/http_session.py"))
        .args([url, phase])
        .arg(dir.join("researcher.cred"))
        .arg(dir.join("curator.cred"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().next().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Starts server-everything over its own Streamable HTTP transport on a free port; the child and
/// its URL.
fn everything_over_http() -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let everything = Command::new(root().join("tests/mcp/node_modules/.bin/mcp-server-everything"))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "server-everything did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (everything, format!("http://127.0.0.1:{port}/mcp"))
}

/// Two agents through one HTTP gateway to two real servers: server-everything reached by its URL
/// (Streamable HTTP) and server-memory started as a command (stdio).
#[test]
fn two_agents_through_one_http_gateway_to_two_servers() {
    let (python, _) = peers();
    let dir = std::env::temp_dir().join(format!("tollgate-mcp-{}-http", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = |file: &str| dir.join(file).display().to_string();
    for key in ["compiler", "issuer", "gate"] {
        ok(tollgate(&["keygen", &path(key)]));
    }
    ok(tollgate(&[
        "compile",
        "examples/mcp-gateway",
        "-o",
        &path("policy.tgt"),
        "--key",
        &path("compiler.key"),
    ]));
    for agent in ["researcher", "curator"] {
        ok(tollgate(&[
            "issue",
            "--table",
            &path("policy.tgt"),
            "--agent",
            agent,
            "--ttl",
            "10m",
            "--key",
            &path("issuer.key"),
            "-o",
            &path(&format!("{agent}.cred")),
        ]));
    }

    // server-everything over its own Streamable HTTP transport: an upstream reached by URL.
    let (everything, everything_url) = everything_over_http();

    let (gateway, url) = serve(&dir, &everything_url);
    let report = http_session(&python, &url, "first", &dir);
    stop(gateway);

    let researcher = &report["researcher"];
    let curator = &report["curator"];
    assert_eq!(researcher["protocol"], "2025-11-25");
    // Different agents, different tools, through the same gateway.
    assert_eq!(
        researcher["tools"],
        serde_json::json!([
            "everything.echo",
            "everything.get-sum",
            "memory.search_nodes"
        ])
    );
    assert_eq!(
        curator["tools"],
        serde_json::json!([
            "memory.create_entities",
            "memory.read_graph",
            "memory.search_nodes"
        ])
    );
    // Allowed calls reach the real servers and come back.
    assert_eq!(researcher["echo"]["is_error"], false, "{report}");
    assert!(researcher["echo"]["text"]
        .as_str()
        .unwrap()
        .contains("hello"));
    assert_eq!(researcher["search"]["is_error"], false, "{report}");
    // A tool whose MCP name is not a plain name, declared as `everything."get-sum"`.
    assert_eq!(researcher["sum"]["is_error"], false, "{report}");
    assert!(
        researcher["sum"]["text"].as_str().unwrap().contains('5'),
        "{report}"
    );
    // Entities with their lists of observations reach the real server, which keeps them.
    assert_eq!(curator["create"]["is_error"], false, "{report}");
    assert_eq!(curator["graph"]["is_error"], false, "{report}");
    assert!(
        curator["graph"]["text"]
            .as_str()
            .unwrap()
            .contains("wrote the first program"),
        "{report}"
    );
    // A denial says why, with the rule and the audit sequence.
    assert_eq!(researcher["secret"]["is_error"], true);
    assert_eq!(
        researcher["secret"]["meta"]["tollgate/decision"]["rule"],
        "no_secrets_echoed"
    );
    // The rate limit (3 per minute) holds across the agent's sessions.
    let again = &report["researcher_again"];
    assert_eq!(again["echo3"]["is_error"], false, "{report}");
    assert_eq!(again["echo4"]["is_error"], true, "{report}");
    assert_eq!(
        again["echo4"]["meta"]["tollgate/decision"]["reason"],
        "rate_limited"
    );
    // A tool the curator cannot see is unknown; the third such denial revokes the curator and
    // its later requests are refused with 403, while the researcher goes on.
    assert_eq!(curator["hidden1"]["error"], -32602);
    assert_eq!(curator["hidden3"]["error"], -32002, "{report}");
    assert_eq!(report["curator_status"], 403);
    assert_eq!(report["researcher_status"], 200);
    assert_eq!(report["anonymous_status"], 401);

    // The revocation survives a restart of the gateway.
    let (gateway, url) = serve(&dir, &everything_url);
    let report = http_session(&python, &url, "restarted", &dir);
    stop(gateway);
    let mut everything = everything;
    let _ = everything.kill();
    let _ = everything.wait();
    assert_eq!(report["curator_status"], 403);
    assert_eq!(report["researcher_status"], 200);

    // Every decision is in the audit log, which verifies.
    let verified = ok(tollgate(&[
        "audit",
        "verify",
        "--key",
        &path("gate.pub"),
        &path("audit.log"),
    ]));
    // researcher: 5 + 2 decisions; curator: 5 decisions and a revocation record.
    assert!(verified.contains("ok: 13 records"), "{verified}");
}

/// One JSON-RPC request POSTed to a Streamable HTTP endpoint (`http://HOST:PORT/mcp`) with a
/// bearer credential, as a client sends it; the answer's status and JSON body.
fn post(url: &str, credential: &str, message: &Value) -> (u16, Value) {
    use std::io::{Read as _, Write as _};
    let address = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap();
    let body = message.to_string();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST /mcp HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\nAuthorization: Bearer {credential}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}")),
    )
}

/// Over HTTP, what the policy cannot decide (resources, prompts, …) is refused with `-32601`
/// and the flag that would pass it; `--allow-method` passes exactly the methods it names to the
/// real server.
#[test]
fn http_methods_the_policy_cannot_decide_pass_only_when_allowed() {
    let _ = peers();
    let dir = std::env::temp_dir().join(format!("tollgate-mcp-{}-methods", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = |file: &str| dir.join(file).display().to_string();
    for key in ["compiler", "issuer", "gate"] {
        ok(tollgate(&["keygen", &path(key)]));
    }
    ok(tollgate(&[
        "compile",
        "examples/mcp-gateway",
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
        "researcher",
        "--ttl",
        "10m",
        "--key",
        &path("issuer.key"),
        "-o",
        &path("researcher.cred"),
    ]));
    let credential = std::fs::read_to_string(dir.join("researcher.cred")).unwrap();
    let credential = credential.trim();
    let everything = format!(
        "everything={}",
        root()
            .join("tests/mcp/node_modules/.bin/mcp-server-everything")
            .display()
    );
    let list = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"resources/list","params":{}});
    let prompts = serde_json::json!({"jsonrpc":"2.0","id":"p","method":"prompts/list"});

    // By default: refused, with the flag that would pass it; the gateway does not claim the
    // capability.
    let (gateway, url) = serve_with(&dir, &["--upstream".to_owned(), everything.clone()]);
    let (status, refused) = post(&url, credential, &list);
    let init = serde_json::json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let (_, initialized) = post(&url, credential, &init);
    stop(gateway);
    assert_eq!(status, 200);
    assert_eq!(refused["id"], 1);
    assert_eq!(refused["error"]["code"], -32601, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`resources/list`"),
        "{refused}"
    );
    assert_eq!(
        refused["error"]["data"]["help"],
        "the operator can allow it with `--allow-method resources/list`"
    );
    let capabilities = &initialized["result"]["capabilities"];
    assert!(capabilities.get("resources").is_none(), "{initialized}");

    // Allowed: the real server's resources come back, and one can be read; prompts, not
    // allowed, are still refused.
    let (gateway, url) = serve_with(
        &dir,
        &[
            "--upstream".to_owned(),
            everything,
            "--allow-method".to_owned(),
            "resources/*".to_owned(),
        ],
    );
    let (_, listed) = post(&url, credential, &list);
    let resources = listed["result"]["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(!resources.is_empty(), "{listed}");
    let uri = resources[0]["uri"].as_str().unwrap();
    let read =
        serde_json::json!({"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":uri}});
    let (_, read) = post(&url, credential, &read);
    let (_, prompts) = post(&url, credential, &prompts);
    let (_, initialized) = post(&url, credential, &init);
    stop(gateway);
    assert_eq!(read["id"], 2);
    assert_eq!(read["result"]["contents"][0]["uri"], uri, "{read}");
    assert_eq!(prompts["id"], "p");
    assert_eq!(prompts["error"]["code"], -32601, "{prompts}");
    assert!(
        initialized["result"]["capabilities"]
            .get("resources")
            .is_some(),
        "{initialized}"
    );
}

/// `tollgate import mcp -- COMMAND` asks the live server for its tools and writes the same
/// declarations as the saved `tools/list` of the same pinned server.
#[test]
fn import_from_a_live_server_matches_its_saved_tool_list() {
    let (_, server) = peers();
    let dir = std::env::temp_dir().join(format!("tollgate-mcp-{}-import", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let live = ok(tollgate(&[
        "import",
        "mcp",
        "--prefix",
        "fs",
        "--domain",
        "files",
        "--",
        &server.display().to_string(),
        &dir.display().to_string(),
    ]));
    let saved = ok(tollgate(&[
        "import",
        "mcp",
        "tests/mcp/tools/filesystem.json",
        "--prefix",
        "fs",
        "--domain",
        "files",
    ]));
    let body = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert!(live.contains("tool fs.read_text_file"), "{live}");
    assert_eq!(body(&live), body(&saved));
}

/// The policy of the notification tests: `alice` and `bob` may both run server-everything's long
/// operation; only `alice` sees the tools of `changing` (a server whose tool list changes), and
/// `bob` sees server-everything's echo; two denials revoke `bob`.
const NOTIFY_POLICY: &str = r#"
domain demo { public }

tool everything."trigger-long-running-operation" {
    domain demo
    effect read
    args { duration: int, steps: int }
}
tool everything.echo { domain demo  effect read  args { message: string } }
tool changing.grow { domain demo  effect write  args { name: string } }
tool changing.sprout { domain demo  effect read  args { } }

agent alice { roles [a]  credential_ttl 1h }
agent bob { roles [b]  credential_ttl 1h }

long: permit any to call everything."trigger-long-running-operation";
grow: permit agent alice to call changing.grow;
sprout: permit agent alice to call changing.sprout;
echo: permit agent bob to call everything.echo;

on agent bob deny 2 within 10m revoke;
"#;

/// Keys, the notification policy compiled and credentials for `alice` and `bob`.
fn notify_setup(name: &str) -> PathBuf {
    let _ = peers();
    let dir = std::env::temp_dir().join(format!("tollgate-mcp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policy")).unwrap();
    std::fs::write(dir.join("policy/policy.toll"), NOTIFY_POLICY).unwrap();
    let path = |file: &str| dir.join(file).display().to_string();
    for key in ["compiler", "issuer", "gate"] {
        ok(tollgate(&["keygen", &path(key)]));
    }
    ok(tollgate(&[
        "compile",
        &path("policy"),
        "-o",
        &path("policy.tgt"),
        "--key",
        &path("compiler.key"),
    ]));
    for agent in ["alice", "bob"] {
        ok(tollgate(&[
            "issue",
            "--table",
            &path("policy.tgt"),
            "--agent",
            agent,
            "--ttl",
            "10m",
            "--key",
            &path("issuer.key"),
            "-o",
            &path(&format!("{agent}.cred")),
        ]));
    }
    dir
}

fn notify_session(url: &str, phase: &str, dir: &Path) -> Value {
    let (python, _) = peers();
    let output = Command::new(python)
        .arg(root().join("tests/mcp/notify_session.py"))
        .args([url, phase])
        .arg(dir.join("alice.cred"))
        .arg(dir.join("bob.cred"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().next().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Two agents run a long operation at the same time through one HTTP gateway, each asking for
/// progress with the same token (the Python client's token is its request id): each gets its
/// own progress, on the SSE stream of its call, then its result; none of the other's.
#[test]
fn http_progress_reaches_only_the_agent_that_asked() {
    let dir = notify_setup("progress");
    let command = root()
        .join("tests/mcp/node_modules/.bin/mcp-server-everything")
        .display()
        .to_string();
    let (mut server, url) = everything_over_http();
    // The same server as a command (lines over stdio) and by its URL (`rmcp`'s client).
    let mut reports = Vec::new();
    for (upstream, exact) in [(command, true), (url, false)] {
        let (gateway, url) = serve_with(
            &dir,
            &["--upstream".to_owned(), format!("everything={upstream}")],
        );
        reports.push((notify_session(&url, "progress", &dir), exact));
        stop(gateway);
    }
    let _ = server.kill();
    let _ = server.wait();
    for (report, exact, agent, steps) in reports
        .iter()
        .flat_map(|(report, exact)| [(report, *exact, "alice", 3), (report, *exact, "bob", 5)])
    {
        let seen = &report[agent];
        assert_eq!(seen["is_error"], false, "{report}");
        assert!(
            seen["result"]
                .as_str()
                .unwrap()
                .contains(&format!("Steps: {steps}")),
            "{report}"
        );
        let progress = seen["progress"].as_array().unwrap();
        // Every step's progress, in order, each with this call's own total: none of the
        // other agent's (whose total differs) slipped in.
        let steps_seen: Vec<f64> = progress
            .iter()
            .map(|p| p["progress"].as_f64().unwrap())
            .collect();
        let expected: Vec<f64> = (1..=steps).map(f64::from).collect();
        if exact {
            assert_eq!(steps_seen, expected, "{agent}: {report}");
        } else {
            // By URL, `rmcp`'s client may let the result overtake the last progress (see the
            // book): what arrives is in order, and all but the last step at least.
            assert!(
                steps_seen.len() + 1 >= expected.len()
                    && steps_seen
                        .iter()
                        .zip(&expected)
                        .all(|(seen, step)| seen == step),
                "{agent}: {report}"
            );
        }
        assert!(
            progress.iter().all(|p| p["total"] == f64::from(steps)),
            "{agent}: {report}"
        );
        // Relayed while the call ran, not all at its end.
        let first = progress[0]["at"].as_f64().unwrap();
        let done = seen["done_at"].as_f64().unwrap();
        assert!(done - first > 0.4, "{agent}: {report}");
    }
}

/// An upstream's tool list changes: the session of the agent that can see its tools is told on
/// its GET stream and lists the new tool; the other agent's session is not told.
#[test]
fn http_tools_list_changed_reaches_the_sessions_that_can_see_the_upstream() {
    let dir = notify_setup("changed");
    let (python, _) = peers();
    let everything = format!(
        "everything={}",
        root()
            .join("tests/mcp/node_modules/.bin/mcp-server-everything")
            .display()
    );
    let server = root().join("tests/mcp/changing_server.py");
    let command = format!("{} {}", python.display(), server.display());
    // The same server by URL: its own Streamable HTTP transport, reached with `rmcp`'s client.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut listening = Command::new(&python)
        .arg(&server)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut reports = Vec::new();
    for changing in [command, format!("http://127.0.0.1:{port}/mcp")] {
        let (gateway, url) = serve_with(
            &dir,
            &[
                "--upstream".to_owned(),
                everything.clone(),
                "--upstream".to_owned(),
                format!("changing={changing}"),
            ],
        );
        reports.push(notify_session(&url, "tools_changed", &dir));
        stop(gateway);
    }
    let _ = listening.kill();
    let _ = listening.wait();
    for report in &reports {
        check_tools_changed(report);
    }
}

fn check_tools_changed(report: &Value) {
    let alice = &report["alice"];
    let long = "everything.trigger-long-running-operation";
    assert_eq!(
        alice["before"],
        serde_json::json!(["changing.grow", long]),
        "{report}"
    );
    assert_eq!(alice["changed"], 1, "{report}");
    // The list is filtered again: the new tool is one the policy lets alice see.
    assert_eq!(
        alice["after"],
        serde_json::json!(["changing.grow", "changing.sprout", long]),
        "{report}"
    );
    // Bob sees no tool of `changing`: no change of its list can change his.
    let bob = &report["bob"];
    assert_eq!(
        bob["tools"],
        serde_json::json!(["everything.echo", long]),
        "{report}"
    );
    assert_eq!(bob["changed"], 0, "{report}");
}

/// One raw HTTP/1.1 exchange with the gateway at `url`: the status, the head, and the body as
/// far as it has come when it holds `until` (a stream is not read to its end) or the
/// connection closes. The stream stays open while the returned connection lives.
fn exchange(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
    until: &str,
) -> (u16, String, String, std::net::TcpStream) {
    use std::io::{Read as _, Write as _};
    let address = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut request = format!("{method} /mcp HTTP/1.1\r\nHost: {address}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some((_, rest)) = text.split_once("\r\n\r\n") {
            if rest.contains(until) {
                break;
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
        }
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned(), stream)
}

/// A session is issued at `initialize` and is its agent's alone: another agent can neither
/// open its GET stream, nor use it, nor end it. A call that asks for progress is answered with
/// an SSE stream (also on the `rmcp` path, taken by a request with an `Origin`); a denied one,
/// with JSON.
#[test]
fn http_sessions_are_their_agents_alone_and_progress_streams() {
    let dir = notify_setup("sessions");
    let credential = |agent: &str| {
        let text = std::fs::read_to_string(dir.join(format!("{agent}.cred"))).unwrap();
        format!("Bearer {}", text.trim())
    };
    let (alice, bob) = (credential("alice"), credential("bob"));
    let everything = format!(
        "everything={}",
        root()
            .join("tests/mcp/node_modules/.bin/mcp-server-everything")
            .display()
    );
    let (gateway, url) = serve_with(&dir, &["--upstream".to_owned(), everything]);
    let post = |who: &str, session: Option<&str>, extra: &[(&str, &str)], message: &Value| {
        let mut headers = vec![
            ("Connection", "close"),
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", "2025-11-25"),
            ("Authorization", who),
        ];
        if let Some(session) = session {
            headers.push(("Mcp-Session-Id", session));
        }
        headers.extend_from_slice(extra);
        let (status, head, body, _) =
            exchange(&url, "POST", &headers, &message.to_string(), "\u{0}");
        (status, head, body)
    };
    let listen = |who: &str, session: Option<&str>| {
        let mut headers = vec![("Accept", "text/event-stream"), ("Authorization", who)];
        if let Some(session) = session {
            headers.push(("Mcp-Session-Id", session));
        }
        exchange(&url, "GET", &headers, "", "")
    };
    let init = serde_json::json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let list = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});

    let (status, head, body) = post(&alice, None, &[], &init);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""listChanged":true"#), "{body}");
    let session = head
        .lines()
        .find_map(|line| line.strip_prefix("mcp-session-id: "))
        .unwrap_or_else(|| panic!("no session: {head}"))
        .trim()
        .to_owned();
    let session = session.as_str();

    // Alice's stream opens; one stream a session.
    let (status, head, _, open) = listen(&alice, Some(session));
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert_eq!(listen(&alice, Some(session)).0, 409);
    // Bob cannot listen on it, use it, or end it; a GET without a session is refused.
    assert_eq!(listen(&bob, Some(session)).0, 404);
    assert_eq!(post(&bob, Some(session), &[], &list).0, 404);
    let (status, _, _, _) = exchange(
        &url,
        "DELETE",
        &[("Authorization", &bob), ("Mcp-Session-Id", session)],
        "",
        "",
    );
    assert_eq!(status, 404);
    assert_eq!(listen(&bob, None).0, 400);
    assert_eq!(post(&alice, Some(session), &[], &list).0, 200);
    assert_eq!(post(&alice, Some("not-a-session"), &[], &list).0, 404);

    // Progress on the SSE stream of the call, the gateway's own token never shown.
    let long = |token: &str| {
        serde_json::json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{
            "name":"everything.trigger-long-running-operation",
            "arguments":{"duration":1,"steps":2},"_meta":{"progressToken":token}}})
    };
    for (token, extra) in [
        ("fast", &[][..]),
        ("rmcp", &[("Origin", "http://localhost")][..]),
    ] {
        let (status, head, body) = post(&alice, Some(session), extra, &long(token));
        assert_eq!(status, 200, "{body}");
        assert!(
            head.contains("content-type: text/event-stream"),
            "{token}: {head}{body}"
        );
        let messages: Vec<Value> = body
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str(data.trim()).ok())
            .collect();
        let progress: Vec<&Value> = messages
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .collect();
        assert_eq!(progress.len(), 2, "{token}: {body}");
        assert!(
            progress
                .iter()
                .all(|p| p["params"]["progressToken"] == token),
            "{body}"
        );
        assert!(!body.contains("tollgate-"), "{body}");
        let last = messages.last().unwrap();
        assert_eq!(last["id"], 5, "{body}");
        assert!(last["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Steps: 2"));
    }
    // A call the agent may not make is answered with JSON, as without progress.
    let denied = serde_json::json!({"jsonrpc":"2.0","id":6,"method":"tools/call","params":{
        "name":"everything.echo","arguments":{"message":"hi"},"_meta":{"progressToken":"x"}}});
    let (status, head, body) = post(&alice, Some(session), &[], &denied);
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(body.contains("-32602"), "{body}");

    // Alice ends her session: it is gone, and so is its stream.
    let (status, _, _, _) = exchange(
        &url,
        "DELETE",
        &[("Authorization", &alice), ("Mcp-Session-Id", session)],
        "",
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(post(&alice, Some(session), &[], &list).0, 404);
    drop(open);

    // Bob is revoked (two calls of a tool he cannot see): his session's stream ends with him.
    let (_, head, _) = post(&bob, None, &[], &init);
    let session = head
        .lines()
        .find_map(|line| line.strip_prefix("mcp-session-id: "))
        .unwrap_or_else(|| panic!("no session: {head}"))
        .trim()
        .to_owned();
    let (status, _, _, mut stream) = listen(&bob, Some(&session));
    assert_eq!(status, 200);
    let hidden = serde_json::json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{
        "name":"changing.grow","arguments":{"name":"x"}}});
    let (_, _, first) = post(&bob, Some(&session), &[], &hidden);
    assert!(first.contains("-32602"), "{first}");
    let (_, _, second) = post(&bob, Some(&session), &[], &hidden);
    assert!(second.contains("-32002"), "{second}");
    // The chunked stream's last chunk, or the connection's end.
    use std::io::Read as _;
    let mut rest = Vec::new();
    let mut buffer = [0u8; 1024];
    // Keep-alive comments come every 15 s: a deadline, not the read timeout, says it stayed open.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !String::from_utf8_lossy(&rest).contains("0\r\n\r\n") {
        assert!(
            std::time::Instant::now() < deadline,
            "bob's stream stayed open after his revocation"
        );
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => rest.extend_from_slice(&buffer[..n]),
            Err(_) => {}
        }
    }
    assert_eq!(listen(&bob, Some(&session)).0, 403);
    stop(gateway);
}
