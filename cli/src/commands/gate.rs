//! `tollgate gate`: the host's gate as a process. JSON lines in (a credential and the agent's
//! intent), one decision line out per request, the audit log as write-ahead log, the state
//! directory for what survives a restart. The protocol and the gate are `tollgate-host`'s; this
//! file only wires files, streams and flags to them.

use crate::{Exit, Io};
use std::io::Write;
use std::path::PathBuf;
use tollgate_host::audit_log::{AuditFile, SyncPolicy};
use tollgate_host::clock::{Clock, SystemClock};
use tollgate_host::gate::{Gate, GateOptions};
use tollgate_host::stream::{self, Ended};

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
    let (audit, existing) = AuditFile::open_reading(&args.audit, args.sync).map_err(failure)?;
    let clock = args.fixed_clock.map_or(HostClock::System, HostClock::Fixed);
    let options = GateOptions {
        env: args.env.clone(),
        audience: args.audience.clone(),
        pin_policy: args.pin_policy.clone(),
        checkpoint_every: args.checkpoint_every,
        require_verified: args.require_verified,
        ..GateOptions::default()
    };
    let (gate, _) = Gate::start_reading(
        table, issuer_key, gate_key, clock, store, audit, existing, &options,
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
    let input = std::mem::replace(&mut io.stdin, Box::new(std::io::empty()));
    let mut output = std::io::BufWriter::new(&mut *io.stdout);
    let ended = stream::serve(&gate, input, &mut output);
    let _ = output.flush();
    drop(output);
    let stderr = &mut *io.stderr;
    match ended {
        Ended::Closed => {}
        Ended::Input(error) => {
            let _ = writeln!(stderr, "error: cannot read standard input: {error}");
            let _ = gate.close();
            return Exit::Usage;
        }
        Ended::Output(_) => {
            let _ = gate.close();
            return Exit::Failure;
        }
        Ended::AuditFailed => {
            let _ = writeln!(
                stderr,
                "error: cannot write the audit log `{}` or the state `{}`: the gate allows nothing more and stops",
                args.audit.display(),
                args.state.display()
            );
            return Exit::Failure;
        }
    }
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
