//! `tollgate gate` as a process, as an operator runs it: streaming through a pipe, `kill -9` at
//! random points and restarts, one writer per log, a log on a full disk, bad lines denied alone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test should fail loudly at the first surprise"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
const CLOCK: &str = "1767261600";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tollgate(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

/// Keys, a compiled table and a credential for `agent` in a fresh directory.
fn setup(name: &str, policy: &str, agent: &str) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("tollgate-process-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = |file: &str| dir.join(file).display().to_string();
    for key in ["compiler", "issuer", "gate"] {
        assert!(tollgate(&["keygen", &path(key)]).status.success());
    }
    let compiled = tollgate(&[
        "compile",
        policy,
        "-o",
        &path("policy.tgt"),
        "--key",
        &path("compiler.key"),
    ]);
    assert!(
        compiled.status.success(),
        "{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let issued = tollgate(&[
        "issue",
        "--table",
        &path("policy.tgt"),
        "--agent",
        agent,
        "--ttl",
        "5m",
        "--key",
        &path("issuer.key"),
        "--time",
        CLOCK,
        "-o",
        &path("agent.cred"),
    ]);
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let credential = std::fs::read_to_string(dir.join("agent.cred"))
        .unwrap()
        .trim()
        .to_owned();
    (dir, credential)
}

fn gate_args(dir: &Path, audit: &str, extra: &[&str]) -> Vec<String> {
    let path = |file: &str| dir.join(file).display().to_string();
    let mut args: Vec<String> = [
        "gate",
        "--table",
        &path("policy.tgt"),
        "--compiler-key",
        &path("compiler.pub"),
        "--issuer-key",
        &path("issuer.pub"),
        "--gate-key",
        &path("gate.key"),
        "--state",
        &path("state"),
        "--fixed-clock",
        CLOCK,
        "--checkpoint-every",
        "64",
        "--audit",
        audit,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

fn spawn(args: &[String]) -> Running {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Running {
        stdin: child.stdin.take().unwrap(),
        stdout: BufReader::new(child.stdout.take().unwrap()),
        child,
    }
}

impl Running {
    /// Writes one line and reads its decision before anything else is written.
    fn ask(&mut self, line: &[u8]) -> serde_json::Value {
        self.stdin.write_all(line).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap_or_else(|_| panic!("not a decision: {answer:?}"))
    }
}

fn job(credential: &str, n: usize) -> Vec<u8> {
    format!(r#"{{"credential":"{credential}","tool":"job.run","args":{{"n":{n}}},"id":{n}}}"#)
        .into_bytes()
}

#[test]
fn decisions_stream_and_bad_lines_are_denied_alone() {
    let (dir, credential) = setup("stream", "tests/fixtures/host", "worker");
    let audit = dir.join("audit.log").display().to_string();
    let mut gate = spawn(&gate_args(&dir, &audit, &[]));
    // Each decision is read back before the next line is written.
    assert_eq!(gate.ask(&job(&credential, 1))["verdict"], "allow");
    let bad = gate.ask(&[b'{', 0xff, 0xfe, b'}']);
    assert_eq!(bad["reason"], "malformed");
    let mut long = br#"{"credential":"x","tool":""#.to_vec();
    long.extend(std::iter::repeat_n(b'a', 2 << 20));
    long.extend(br#""}"#);
    assert_eq!(gate.ask(&long)["reason"], "malformed");
    assert_eq!(gate.ask(&job(&credential, 2))["verdict"], "allow");
    drop(gate.stdin);
    assert!(gate.child.wait().unwrap().success());
    let key = dir.join("gate.pub").display().to_string();
    let verified = tollgate(&["audit", "verify", &audit, "--key", &key]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("ok: 4 records"));
}

#[test]
fn kill_9_at_random_points_loses_no_record_and_no_count() {
    let (dir, credential) = setup("crash", "tests/fixtures/host", "worker");
    let audit = dir.join("audit.log").display().to_string();
    let args = gate_args(&dir, &audit, &[]);
    let total = 10_000;
    let mut next = 0;
    let mut allowed_seqs = Vec::new();
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..20 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let answered_before_kill = (seed % 800) as usize;
        let mut gate = spawn(&args);
        for _ in 0..answered_before_kill {
            if next == total {
                break;
            }
            let decision = gate.ask(&job(&credential, next));
            if decision["verdict"] == "allow" {
                allowed_seqs.push(decision["seq"].as_u64().unwrap());
            }
            next += 1;
        }
        // SIGKILL: no checkpoint, no snapshot, no goodbye.
        gate.child.kill().unwrap();
        gate.child.wait().unwrap();
    }
    // A last run answers the rest and closes the log.
    let mut gate = spawn(&args);
    while next < total {
        let decision = gate.ask(&job(&credential, next));
        if decision["verdict"] == "allow" {
            allowed_seqs.push(decision["seq"].as_u64().unwrap());
        }
        next += 1;
    }
    drop(gate.stdin);
    assert!(gate.child.wait().unwrap().success());
    // No counter went back: exactly the day's 3000 were allowed, across 21 processes.
    assert_eq!(allowed_seqs.len(), 3_000);
    // The log verifies as one chain, and every allow the agent received is in it, as an allow.
    let key = dir.join("gate.pub").display().to_string();
    let verified = tollgate(&["audit", "verify", &audit, "--key", &key]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let shown = tollgate(&["audit", "show", &audit]);
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&shown.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|entry| entry.get("seq").is_some())
        .collect();
    assert_eq!(records.len(), total, "one record per answered call");
    for seq in allowed_seqs {
        assert_eq!(records[seq as usize]["verdict"], "allow", "record {seq}");
    }
}

#[test]
fn a_second_gate_on_the_same_log_is_refused() {
    let (dir, _) = setup("lock", "tests/fixtures/host", "worker");
    let audit = dir.join("audit.log").display().to_string();
    let mut first = spawn(&gate_args(&dir, &audit, &[]));
    // The first gate holds the lock once it answers.
    assert_eq!(first.ask(b"{}")["reason"], "malformed");
    let second = Command::new(BIN)
        .args(gate_args(&dir, &audit, &[]))
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let error = String::from_utf8_lossy(&second.stderr);
    assert!(error.contains("held by another gate"), "{error}");
    assert!(error.contains(&first.child.id().to_string()), "{error}");
    drop(first.stdin);
    assert!(first.child.wait().unwrap().success());
}

#[test]
fn a_full_disk_lets_no_allow_out() {
    let (dir, credential) = setup("full", "tests/fixtures/host", "worker");
    let mut gate = spawn(&gate_args(&dir, "/dev/full", &[]));
    let decision = gate.ask(&job(&credential, 1));
    assert_eq!(decision["verdict"], "deny");
    assert_eq!(decision["reason"], "audit_unavailable");
    drop(gate.stdin);
    let status = gate.child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
}

#[test]
fn a_solver_crash_is_retried_once_and_then_inconclusive() {
    let dir = std::env::temp_dir().join(format!(
        "tollgate-process-{}-crash-solver",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let verify = |crash: &str| {
        Command::new(BIN)
            .args(["verify", "examples/support-desk"])
            .current_dir(root())
            .env("TOLLGATE_TEST_SOLVER_CRASH", crash)
            .output()
            .unwrap()
    };
    // The first child dies; the retry succeeds, and its report is the result.
    let once = verify(&format!("once:{}", dir.join("crashed").display()));
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    assert!(String::from_utf8_lossy(&once.stdout).contains("0 errors"));
    // Both children die: inconclusive, never a pass.
    let always = verify("always");
    assert_eq!(always.status.code(), Some(1));
    let error = String::from_utf8_lossy(&always.stderr);
    assert!(
        error.contains("error[TG1009]: the solver crashed twice"),
        "{error}"
    );
}

#[test]
fn a_revocation_by_hand_is_audited_listed_and_enforced() {
    let (dir, credential) = setup("revoke", "tests/fixtures/host", "worker");
    let audit = dir.join("audit.log").display().to_string();
    let mut args = gate_args(&dir, &audit, &[]);
    args[0] = "revoke".to_owned();
    args.extend(["--agent", "worker", "--reason", "leaked credential"].map(str::to_owned));
    let revoked = Command::new(BIN)
        .args(&args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert!(String::from_utf8_lossy(&revoked.stdout).contains("revoked `worker`: audit record 0"));
    let state = dir.join("state").display().to_string();
    let listed = tollgate(&["revocations", "--state", &state]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.starts_with(
            "worker\trevoked at 1767261600 (2026-01-01 10:00:00 UTC)\tleaked credential"
        ),
        "{listed}"
    );
    // The gate refuses the agent from then on, and the log holds the revocation and the refusal.
    let mut gate = spawn(&gate_args(&dir, &audit, &[]));
    assert_eq!(
        gate.ask(&job(&credential, 1))["reason"],
        "credential_revoked"
    );
    drop(gate.stdin);
    assert!(gate.child.wait().unwrap().success());
    let shown = tollgate(&["audit", "show", &audit]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown
            .lines()
            .next()
            .unwrap()
            .contains(r#""kind":"revocation""#),
        "{shown}"
    );
    let key = dir.join("gate.pub").display().to_string();
    assert!(tollgate(&["audit", "verify", &audit, "--key", &key])
        .status
        .success());
    // The issuer refuses it too.
    let path = |file: &str| dir.join(file).display().to_string();
    let issued = tollgate(&[
        "issue",
        "--table",
        &path("policy.tgt"),
        "--agent",
        "worker",
        "--ttl",
        "5m",
        "--key",
        &path("issuer.key"),
        "--state",
        &state,
        "-o",
        &path("again.cred"),
    ]);
    assert_eq!(issued.status.code(), Some(1));
}
