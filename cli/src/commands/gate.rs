//! `tollgate gate`: the host's gate as a process. JSON lines in (a credential and the agent's
//! intent), one decision line out per request, the audit log as write-ahead log, the state
//! directory for what survives a restart. The protocol and the gate are `tollgate-host`'s; this
//! file only wires files, streams and flags to them.

use crate::{Exit, Io};
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use tollgate_host::audit_log::{AuditFile, SyncPolicy};
use tollgate_host::clock::{Clock, SystemClock};
use tollgate_host::gate::{Gate, GateOptions};
use tollgate_host::protocol::{self, RequestLine, MAX_LINE};

/// The most request lines decided (and appended to the log) together.
const BATCH: usize = 256;

/// Reads the next non-blank request line; `None` at the end of input. A line over `MAX_LINE`
/// bytes is read up to one byte past the limit (so it is refused as oversize) and the rest of it
/// skipped.
fn read_request_line(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    reader: &mut protocol::Reader,
) -> std::io::Result<Option<RequestLine>> {
    loop {
        line.clear();
        if input.take(MAX_LINE as u64 + 1).read_until(b'\n', line)? == 0 {
            return Ok(None);
        }
        if line.len() > MAX_LINE && line.last() != Some(&b'\n') {
            let mut rest = Vec::new();
            input.read_until(b'\n', &mut rest)?;
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            return Ok(Some(reader.read(line)));
        }
    }
}
use tollgate_host::store::FileStore;
use tollgate_host::{keys, HostError};
use tollgate_runtime::table::Table;

#[derive(Debug)]
pub struct GateArgs {
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
    pub sync: SyncPolicy,
    pub require_verified: bool,
}

/// The system clock, or a fixed one the operator set (tests and demos).
#[derive(Debug)]
pub enum HostClock {
    System,
    Fixed(u64),
}

impl Clock for HostClock {
    fn now(&self) -> u64 {
        match self {
            HostClock::System => SystemClock.now(),
            HostClock::Fixed(seconds) => *seconds,
        }
    }
}

/// Loads keys and table and starts a gate on the audit log and state directory.
pub fn start<'t>(
    args: &GateArgs,
    bytes: &'t [u8],
) -> Result<Gate<'t, HostClock, FileStore, AuditFile>, (Exit, String)> {
    let usage = |message: String| (Exit::Usage, message);
    let failure = |error: HostError| (Exit::Failure, error.to_string());
    let compiler_key = keys::verifying_key(&args.compiler_key).map_err(usage)?;
    let issuer_key = keys::verifying_key(&args.issuer_key).map_err(usage)?;
    let gate_key = keys::signing_key(&args.gate_key).map_err(usage)?;
    let table = Table::load(bytes, &compiler_key).map_err(|reason| {
        failure(HostError::TableRefused {
            path: args.table.clone(),
            reason,
        })
    })?;
    let store = FileStore::open(&args.state).map_err(failure)?;
    let (audit, existing) = AuditFile::open(&args.audit, args.sync).map_err(failure)?;
    let clock = args.fixed_clock.map_or(HostClock::System, HostClock::Fixed);
    let options = GateOptions {
        env: args.env.clone(),
        audience: args.audience.clone(),
        pin_policy: args.pin_policy.clone(),
        checkpoint_every: args.checkpoint_every,
        require_verified: args.require_verified,
        ..GateOptions::default()
    };
    let (gate, _) = Gate::start(
        table, issuer_key, gate_key, clock, store, audit, &existing, &options,
    )
    .map_err(|error| match error {
        HostError::TornTail { offset, .. } => failure(HostError::TornTail {
            path: args.audit.clone(),
            offset,
        }),
        HostError::LogInvalid { why, .. } => failure(HostError::LogInvalid {
            path: args.audit.clone(),
            why,
        }),
        other => failure(other),
    })?;
    Ok(gate)
}

pub fn run(io: &mut Io<'_>, args: &GateArgs) -> Exit {
    let bytes = match std::fs::read(&args.table) {
        Ok(bytes) => bytes,
        Err(error) => return io.usage(&format!("cannot read `{}`: {error}", args.table.display())),
    };
    let gate = match start(args, &bytes) {
        Ok(gate) => gate,
        Err((exit, message)) => {
            io.err(&format!("error: {message}\n"));
            return exit;
        }
    };
    let Io {
        stdin,
        stdout,
        stderr,
    } = io;
    let mut input = std::io::BufReader::new(stdin);
    let mut output = std::io::BufWriter::new(stdout);
    let mut batch = Vec::new();
    let mut line = Vec::new();
    let mut reader = protocol::Reader::default();
    let mut closed = false;
    while !closed {
        // Take the next line, and every further line already waiting (up to a batch), so a piped
        // file is decided in batches while a live agent gets each answer at once.
        batch.clear();
        loop {
            match read_request_line(&mut input, &mut line, &mut reader) {
                Ok(Some(line)) => batch.push(line),
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(error) => {
                    let _ = writeln!(stderr, "error: cannot read standard input: {error}");
                    let _ = gate.close();
                    return Exit::Usage;
                }
            }
            if batch.len() >= BATCH || !input.buffer().contains(&b'\n') {
                break;
            }
        }
        if batch.is_empty() {
            continue;
        }
        // Every decision's record is in the log before `decide_batch` returns any of them.
        let decisions = gate.decide_batch(&batch);
        let mut written = Ok(());
        for decision in &decisions {
            written = written
                .and_then(|()| decision.write_json(&mut output))
                .and_then(|()| output.write_all(b"\n"));
        }
        if written.and_then(|()| output.flush()).is_err() {
            let _ = gate.close();
            return Exit::Failure;
        }
        if gate.failed() {
            let _ = writeln!(
                stderr,
                "error: cannot write the audit log `{}` or the state `{}`: the gate allows nothing more and stops",
                args.audit.display(),
                args.state.display()
            );
            return Exit::Failure;
        }
    }
    let _ = output.flush();
    match gate.close() {
        Ok(note) => {
            if let Some(latest) = &args.latest {
                if let Err(error) = std::fs::write(latest, note) {
                    let _ = writeln!(
                        stderr,
                        "error: cannot write `{}`: {error}",
                        latest.display()
                    );
                    return Exit::Failure;
                }
            }
            Exit::Success
        }
        Err(error) => {
            let _ = writeln!(stderr, "error: {error}");
            Exit::Failure
        }
    }
}
