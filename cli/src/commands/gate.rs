//! `tollgate gate`: the enforcement point as a process. JSON lines in (a credential and the
//! agent's intent), one decision line out per request, flushed before the next line is read.
//!
//! Who says what: the agent gives its credential, the tool and the arguments, and nothing else.
//! The time is this host's clock, the environment this host's `--env`, the agent and its
//! delegation chain the admitted credential's. A request line that carries `context`, `via`,
//! `time`, `env` or `agent` is denied (`untrusted_field`) and audited.

use crate::{keys, Exit, Io, GATE_KEY_NAME};
use base64::Engine as _;
use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use tollgate_runtime::credential::{self, Host, Session, SessionCall};
use tollgate_runtime::gate::{self, ArgValue, Decision, Verdict};
use tollgate_runtime::table::Table;
use tollgate_runtime::Reason;

/// The longest request line the gate reads; a longer one is denied alone.
pub const MAX_LINE: usize = 1 << 20;
/// Admitted sessions kept; expired ones are dropped first when the cache is full.
const MAX_SESSIONS: usize = 10_000;
/// Repeat-guard entries per agent.
const REPEAT_ROOM: usize = 4_096;

/// Request fields that are the host's or the credential's to say, never the agent's.
const UNTRUSTED: [(&str, &str); 5] = [
    ("agent", "the agent is the one its credential names"),
    ("via", "the delegation chain comes from the credential"),
    (
        "context",
        "the environment and the time come from the gate's host",
    ),
    (
        "env",
        "the environment comes from the gate's host (`--env`)",
    ),
    ("time", "the time comes from the gate's clock"),
];
/// Everything else a request line may hold.
const FIELDS: [&str; 4] = ["credential", "tool", "args", "id"];

#[derive(Debug)]
pub struct GateOptions {
    pub table: PathBuf,
    pub compiler_key: PathBuf,
    pub issuer_key: PathBuf,
    pub gate_key: PathBuf,
    pub audit: PathBuf,
    pub state: PathBuf,
    pub env: Option<String>,
    pub audience: Option<String>,
    pub pin_policy: Option<String>,
    pub checkpoint_every: u64,
    pub fixed_clock: Option<u64>,
    pub latest: Option<PathBuf>,
}

/// Audit entries appended to a file as they happen.
struct FileSink {
    file: std::fs::File,
    failed: bool,
    last_note: Vec<u8>,
}

impl tollgate_runtime::audit::AuditSink for FileSink {
    fn record(&mut self, record: &[u8; tollgate_runtime::audit::RECORD_SIZE]) {
        let entry = tollgate_compiler::audit::encode(&tollgate_compiler::audit::Entry::Record(
            Box::new(*record),
        ));
        self.failed |= self.file.write_all(&entry).is_err();
    }

    fn checkpoint(&mut self, note: &[u8]) {
        let entry = tollgate_compiler::audit::encode(&tollgate_compiler::audit::Entry::Checkpoint(
            note.to_vec(),
        ));
        self.failed |= self.file.write_all(&entry).is_err();
        self.last_note = note.to_vec();
    }
}

fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The newest policy this host has accepted, kept in `STATE/policy`: a table with a lower
/// version, or another table with the same version, is refused (anti-rollback).
fn check_policy_floor(state: &Path, table: &Table<'_>) -> Result<(), String> {
    let path = state.join("policy");
    let version = table.policy_version();
    let hash = hex::encode(table.policy_hash());
    if let Ok(text) = std::fs::read_to_string(&path) {
        let mut accepted_version = None;
        let mut accepted_hash = None;
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("version", v)) => accepted_version = v.trim().parse::<u64>().ok(),
                Some(("hash", h)) => accepted_hash = Some(h.trim().to_owned()),
                _ => {}
            }
        }
        let (Some(accepted_version), Some(accepted_hash)) = (accepted_version, accepted_hash)
        else {
            return Err(format!(
                "`{}` is not a policy record; restore it from a backup (it is how this host refuses older tables)",
                path.display()
            ));
        };
        if version < accepted_version {
            return Err(format!(
                "the table has policy version {version}, older than version {accepted_version} this host has accepted (`{}`): refusing a rollback",
                path.display()
            ));
        }
        if version == accepted_version && hash != accepted_hash {
            return Err(format!(
                "the table is a different policy with the same version {version} as the one this host has accepted: compile it with a higher `--policy-version`"
            ));
        }
        if version == accepted_version {
            return Ok(());
        }
    }
    write_atomically(&path, &format!("version {version}\nhash {hash}\n"))
}

fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let temporary = path.with_extension("tmp");
    let written = std::fs::File::create(&temporary)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, path));
    written.map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

/// The revocations this host has recorded, `STATE/revocations`: one line per revoked agent
/// (name, Unix time, reason, tab-separated). Appended and synced before the decision that revoked
/// is written, so a restart un-revokes no one.
pub fn read_revocations(state: &Path) -> Result<Vec<String>, String> {
    let path = state.join("revocations");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|line| line.split('\t').next())
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(format!("cannot read `{}`: {error}", path.display())),
    }
}

fn append_revocation(state: &Path, agent: &str, time: u64, reason: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("revocations"))?;
    file.write_all(format!("{agent}\t{time}\t{reason}\n").as_bytes())?;
    file.sync_all()
}

/// A request line, read strictly.
struct Line {
    id: Option<serde_json::Value>,
    credential: Vec<u8>,
    tool: String,
    args: Vec<(String, OwnedArg)>,
}

enum OwnedArg {
    Int(i64),
    Bool(bool),
    Str(String),
}

/// Why a line was denied before any credential or policy was consulted.
struct Refusal {
    id: Option<serde_json::Value>,
    reason: Reason,
    detail: String,
    credential: Vec<u8>,
    tool: String,
}

fn read_line(bytes: &[u8]) -> Result<Line, Box<Refusal>> {
    let refuse = |id, reason, detail: String, credential: Vec<u8>, tool: String| {
        Box::new(Refusal {
            id,
            reason,
            detail,
            credential,
            tool,
        })
    };
    let malformed =
        |detail: String| refuse(None, Reason::Malformed, detail, Vec::new(), String::new());
    if bytes.len() > MAX_LINE {
        return Err(malformed(format!(
            "the line is longer than {MAX_LINE} bytes"
        )));
    }
    let text =
        std::str::from_utf8(bytes).map_err(|_| malformed("the line is not UTF-8".to_owned()))?;
    let value = tollgate_compiler::request::parse_strict(text)
        .map_err(|e| malformed(format!("the line is not a JSON request: {e}")))?;
    let serde_json::Value::Object(mut object) = value else {
        return Err(malformed("the line is not a JSON object".to_owned()));
    };
    let id = object.remove("id");
    let credential = object
        .get("credential")
        .and_then(|c| c.as_str())
        .and_then(|c| {
            base64::engine::general_purpose::STANDARD
                .decode(c.trim())
                .ok()
        })
        .unwrap_or_default();
    let tool = object
        .get("tool")
        .and_then(|t| t.as_str())
        .unwrap_or_default()
        .to_owned();
    if let Some((field, owner)) = UNTRUSTED.iter().find(|(f, _)| object.contains_key(*f)) {
        return Err(refuse(
            id,
            Reason::UntrustedField,
            format!("`{field}` is not the agent's to give: {owner}"),
            credential,
            tool,
        ));
    }
    let malformed = |id, detail: String| {
        refuse(
            id,
            Reason::Malformed,
            detail,
            credential.clone(),
            tool.clone(),
        )
    };
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(malformed(id, format!("unknown field `{unknown}`")));
    }
    if !object.get("tool").is_some_and(|t| t.is_string()) {
        return Err(malformed(id, "`tool` must be a string".to_owned()));
    }
    let mut args = Vec::new();
    match object.remove("args") {
        None => {}
        Some(serde_json::Value::Object(given)) => {
            for (name, value) in given {
                let arg = match value {
                    serde_json::Value::Bool(b) => OwnedArg::Bool(b),
                    serde_json::Value::String(s) => OwnedArg::Str(s),
                    serde_json::Value::Number(n) => match n.as_i64() {
                        Some(i) => OwnedArg::Int(i),
                        None => {
                            return Err(malformed(
                                id,
                                format!("argument `{name}` is `{n}`, but numbers must be 64-bit integers"),
                            ))
                        }
                    },
                    other => {
                        return Err(malformed(
                            id,
                            format!("argument `{name}` is `{other}`, but arguments are integers, strings or booleans"),
                        ))
                    }
                };
                args.push((name, arg));
            }
        }
        Some(_) => return Err(malformed(id, "`args` must be an object".to_owned())),
    }
    Ok(Line {
        id,
        credential,
        tool,
        args,
    })
}

/// Admitted sessions by credential bytes, bounded.
#[derive(Default)]
struct Sessions {
    by_credential: HashMap<Vec<u8>, Session>,
}

impl Sessions {
    fn get(&self, credential: &[u8]) -> Option<Session> {
        self.by_credential.get(credential).copied()
    }

    fn insert(&mut self, credential: Vec<u8>, session: Session, now: u64) {
        if self.by_credential.len() >= MAX_SESSIONS {
            self.by_credential.retain(|_, s| s.expires_at > now);
        }
        if self.by_credential.len() >= MAX_SESSIONS {
            self.by_credential.clear();
        }
        self.by_credential.insert(credential, session);
    }
}

pub fn run(io: &mut Io<'_>, options: &GateOptions) -> Exit {
    let keys = (|| -> Result<_, String> {
        Ok((
            keys::verifying_key(&options.compiler_key)?,
            keys::verifying_key(&options.issuer_key)?,
            keys::signing_key(&options.gate_key)?,
        ))
    })();
    let (compiler_key, issuer_key, gate_key) = match keys {
        Ok(keys) => keys,
        Err(message) => return io.usage(&message),
    };
    let bytes = match std::fs::read(&options.table) {
        Ok(bytes) => bytes,
        Err(error) => {
            return io.usage(&format!(
                "cannot read `{}`: {error}",
                options.table.display()
            ))
        }
    };
    let table = match Table::load(&bytes, &compiler_key) {
        Ok(table) => table,
        Err(error) => {
            io.err(&format!(
                "error: the table `{}` is refused: {}\n",
                options.table.display(),
                error
            ));
            return Exit::Failure;
        }
    };
    if let Some(pin) = &options.pin_policy {
        if !pin.eq_ignore_ascii_case(&hex::encode(table.policy_hash())) {
            io.err(&format!(
                "error: the table's policy hash {} is not the pinned `{pin}`\n",
                hex::encode(table.policy_hash())
            ));
            return Exit::Failure;
        }
    }
    match (&options.env, table.has_envs()) {
        (None, true) => {
            return io
                .usage("the policy declares environments: run the gate in one with `--env NAME`")
        }
        (Some(env), true) if !table.declares_env(env) => {
            return io.usage(&format!("the policy declares no environment `{env}`"))
        }
        (Some(env), false) => {
            return io.usage(&format!(
                "the policy declares no environments, so the gate cannot run in `{env}`"
            ))
        }
        _ => {}
    }
    if let Err(error) = std::fs::create_dir_all(&options.state) {
        return io.usage(&format!(
            "cannot create the state directory `{}`: {error}",
            options.state.display()
        ));
    }
    if let Err(message) = check_policy_floor(&options.state, &table) {
        io.err(&format!("error: {message}\n"));
        return Exit::Failure;
    }
    let mut slots = vec![gate::Slot::EMPTY; gate::slots_needed(&table, REPEAT_ROOM)];
    let Ok(mut state) = gate::State::new(&table, &mut slots) else {
        return io.usage("the table needs more state than this gate can hold");
    };
    let revoked = match read_revocations(&options.state) {
        Ok(revoked) => revoked,
        Err(message) => return io.usage(&message),
    };
    for name in &revoked {
        if let Some(agent) = table.find_agent(name.as_bytes()) {
            state.revoke(agent as u16);
        }
    }
    let file = match std::fs::File::create(&options.audit) {
        Ok(file) => file,
        Err(error) => {
            return io.usage(&format!(
                "cannot write `{}`: {error}",
                options.audit.display()
            ))
        }
    };
    let origin = format!("tollgate/{}", hex::encode(&table.policy_hash()[..8]));
    let mut auditor = tollgate_runtime::audit::Auditor::new(
        FileSink {
            file,
            failed: false,
            last_note: Vec::new(),
        },
        &gate_key,
        &origin,
        GATE_KEY_NAME,
        options.checkpoint_every,
        *table.policy_hash(),
    );
    let host = Host {
        env: options.env.as_deref(),
        audience: options.audience.as_deref(),
    };
    let clock = || options.fixed_clock.unwrap_or_else(system_clock);
    let mut sessions = Sessions::default();
    let Io {
        stdin,
        stdout,
        stderr,
    } = io;
    let mut input = std::io::BufReader::new(stdin);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        // Read at most one byte past the limit, then skip the rest of an oversize line.
        let read = (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buffer);
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                let _ = writeln!(stderr, "error: cannot read standard input: {error}");
                return Exit::Usage;
            }
        }
        if buffer.len() > MAX_LINE && buffer.last() != Some(&b'\n') {
            let mut rest = Vec::new();
            let _ = input.read_until(b'\n', &mut rest);
        }
        while matches!(buffer.last(), Some(b'\n' | b'\r')) {
            buffer.pop();
        }
        if buffer.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let now = clock();
        let outcome = decide_line(
            &table,
            &mut state,
            &issuer_key,
            &host,
            &mut sessions,
            &buffer,
            now,
        );
        let time = state.latest();
        let chain_buffer = &mut [""; credential::MAX_CHAIN];
        let (agent, chain) = match &outcome.session {
            Some(session) => (
                session.agent(&table),
                session.chain_names(&table, chain_buffer),
            ),
            None => (outcome.claimed.as_str(), &[][..]),
        };
        let args: Vec<(&str, ArgValue<'_>)> = outcome.args();
        auditor.record(
            &gate::Call {
                agent,
                tool: &outcome.tool,
                args: &args,
                via: chain,
                env: host.env,
                time,
            },
            &outcome.decision,
        );
        if outcome.decision.revoked_agent {
            auditor.sink.failed |= append_revocation(
                &options.state,
                agent,
                time,
                outcome.decision.reason.map_or("", |r| r.as_str()),
            )
            .is_err();
        }
        if auditor.sink.failed {
            // Fail closed: nothing leaves the gate that the audit log does not hold.
            let _ = writeln!(
                stderr,
                "error: cannot write the audit log `{}` or the state `{}`: the gate stops",
                options.audit.display(),
                options.state.display()
            );
            let _ = writeln!(
                stdout,
                "{}",
                serde_json::json!({"id": outcome.id, "verdict": "deny", "reason": "audit_unavailable"})
            );
            let _ = stdout.flush();
            return Exit::Failure;
        }
        let mut out = serde_json::json!({
            "agent": agent,
            "tool": outcome.tool,
            "verdict": if outcome.decision.verdict == Verdict::Allow { "allow" } else { "deny" },
            "reason": outcome.decision.reason.map(|r| r.as_str()),
            "rule": outcome.decision.rule,
            "revoked_agent": outcome.decision.revoked_agent,
        });
        if let Some(object) = out.as_object_mut() {
            if let Some(id) = &outcome.id {
                object.insert("id".to_owned(), id.clone());
            }
            if !chain.is_empty() {
                object.insert("via".to_owned(), serde_json::json!(chain));
            }
            if let Some(detail) = &outcome.detail {
                object.insert("detail".to_owned(), serde_json::json!(detail));
            }
        }
        if writeln!(stdout, "{out}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return Exit::Failure;
        }
    }
    auditor.checkpoint();
    if let Some(latest) = &options.latest {
        auditor.sink.failed |= std::fs::write(latest, &auditor.sink.last_note).is_err();
    }
    if auditor.sink.failed {
        let _ = writeln!(
            stderr,
            "error: could not write every audit entry to `{}`",
            options.audit.display()
        );
        return Exit::Failure;
    }
    Exit::Success
}

/// What one line came to.
struct Outcome {
    id: Option<serde_json::Value>,
    session: Option<Session>,
    /// The agent a refused credential claims (unverified).
    claimed: String,
    tool: String,
    args: Vec<(String, OwnedArg)>,
    decision: Decision,
    detail: Option<String>,
}

impl Outcome {
    fn args(&self) -> Vec<(&str, ArgValue<'_>)> {
        self.args
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    OwnedArg::Int(v) => ArgValue::Int(*v),
                    OwnedArg::Bool(v) => ArgValue::Bool(*v),
                    OwnedArg::Str(v) => ArgValue::Str(v),
                };
                (name.as_str(), value)
            })
            .collect()
    }
}

fn decide_line(
    table: &Table<'_>,
    state: &mut gate::State<'_>,
    issuer_key: &ed25519_dalek::VerifyingKey,
    host: &Host<'_>,
    sessions: &mut Sessions,
    bytes: &[u8],
    now: u64,
) -> Outcome {
    let (line, refusal) = match read_line(bytes) {
        Ok(line) => (line, None),
        Err(refusal) => {
            let refusal = *refusal;
            (
                Line {
                    id: refusal.id,
                    credential: refusal.credential,
                    tool: refusal.tool,
                    args: Vec::new(),
                },
                Some((refusal.reason, refusal.detail)),
            )
        }
    };
    let claimed = credential::Credential::parse(&line.credential)
        .ok()
        .and_then(|c| std::str::from_utf8(c.agent).ok().map(str::to_owned))
        .unwrap_or_default();
    let admitted = match sessions.get(&line.credential) {
        Some(session) => Ok(session),
        None if line.credential.is_empty() => Err(Reason::CredentialMalformed),
        None => credential::admit(table, state, issuer_key, &line.credential, host, now)
            .inspect(|session| sessions.insert(line.credential.clone(), *session, now)),
    };
    let mut outcome = Outcome {
        id: line.id,
        session: admitted.ok(),
        claimed,
        tool: line.tool,
        args: line.args,
        decision: Decision {
            verdict: Verdict::Deny,
            reason: None,
            rule: None,
            limit: None,
            revoked_agent: false,
        },
        detail: None,
    };
    outcome.decision = match (refusal, admitted) {
        // A line the agent had no right to send: denied, and counted against an admitted agent.
        (Some((reason, detail)), admitted) => {
            outcome.detail = Some(detail);
            match admitted {
                Ok(session) => credential::deny(table, state, &session, reason, now),
                Err(_) => deny(reason),
            }
        }
        (None, Err(reason)) => deny(reason),
        (None, Ok(session)) => {
            let args = outcome.args();
            credential::decide(
                table,
                state,
                &session,
                &SessionCall {
                    tool: &outcome.tool,
                    args: &args,
                },
                now,
            )
        }
    };
    outcome
}

fn deny(reason: Reason) -> Decision {
    Decision {
        verdict: Verdict::Deny,
        reason: Some(reason),
        rule: None,
        limit: None,
        revoked_agent: false,
    }
}
