//! `tollgate mcp -- COMMAND…`: the MCP tool gateway over stdio. The agent's host starts this in
//! place of the MCP server; it starts the server as a child and relays, deciding every
//! `tools/call` at the gate first. The protocol logic is `tollgate-gateway`'s; this file wires
//! files, flags and the process's standard streams to it.

use crate::commands::gate::{self, GateArgs};
use crate::{Exit, Io};
use base64::Engine as _;
use std::path::PathBuf;
use tollgate_gateway::stdio::{self, Outcome};
use tollgate_gateway::{DenyAs, Ending, Options, Relay};

#[derive(Debug)]
pub struct McpArgs {
    pub credential: PathBuf,
    pub prefix: Option<String>,
    pub deny_as: DenyAs,
    pub allow_methods: Vec<String>,
    pub max_message: usize,
    pub command: Vec<String>,
}

/// The gate a gateway process runs on: it lives as long as the process, since the gateway's
/// threads and tasks share it.
type ProcessGate = tollgate_host::gate::Gate<
    'static,
    gate::HostClock,
    tollgate_host::store::FileStore,
    tollgate_host::audit_log::AuditFile,
>;

fn start_gate(io: &mut Io<'_>, gate_args: &GateArgs) -> Result<&'static ProcessGate, Exit> {
    let bytes = std::fs::read(&gate_args.table).map_err(|error| {
        io.usage(&format!(
            "cannot read `{}`: {error}",
            gate_args.table.display()
        ))
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    match gate::start(gate_args, bytes) {
        Ok(gate) => Ok(&*Box::leak(Box::new(gate))),
        Err((exit, message)) => {
            io.err(&format!("error: {message}\n"));
            Err(exit)
        }
    }
}

/// Closes the gate's log (a final checkpoint, also written to `--latest`); whether it closed.
fn close_gate(io: &mut Io<'_>, gate: &ProcessGate, gate_args: &GateArgs) -> bool {
    let note = match gate.close() {
        Ok(note) => note,
        Err(error) => {
            io.err(&format!("error: {error}\n"));
            return false;
        }
    };
    if let Some(latest) = &gate_args.latest {
        if let Err(error) = std::fs::write(latest, note) {
            io.err(&format!(
                "error: cannot write `{}`: {error}\n",
                latest.display()
            ));
            return false;
        }
    }
    true
}

pub fn run(io: &mut Io<'_>, gate_args: &GateArgs, args: McpArgs) -> Exit {
    let credential = match std::fs::read_to_string(&args.credential) {
        Ok(text) => match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
            Ok(credential) => credential,
            Err(_) => {
                return io.usage(&format!(
                    "`{}` is not a credential: expected the base64 text `tollgate issue` writes",
                    args.credential.display()
                ))
            }
        },
        Err(error) => {
            return io.usage(&format!(
                "cannot read `{}`: {error}",
                args.credential.display()
            ))
        }
    };
    let gate = match start_gate(io, gate_args) {
        Ok(gate) => gate,
        Err(exit) => return exit,
    };
    let options = Options {
        prefix: args.prefix,
        deny_as: args.deny_as,
        allow_methods: args.allow_methods,
    };
    let relay = match Relay::new(gate, credential, options) {
        Ok(relay) => relay,
        Err(reason) => {
            let _ = gate.close();
            return io.usage(&format!(
                "the credential `{}` is refused: {}",
                args.credential.display(),
                reason.as_str()
            ));
        }
    };
    if gate.is_revoked(relay.agent()) {
        io.err(&format!(
            "error: agent `{}` is revoked; the gateway does not start its session\n",
            relay.agent()
        ));
        let _ = gate.close();
        return Exit::Revoked;
    }
    let outcome = stdio::run(
        relay,
        &args.command,
        args.max_message,
        std::io::stdin(),
        Box::new(std::io::stdout()),
        Box::new(std::io::stderr()),
    );
    if !close_gate(io, gate, gate_args) {
        return Exit::Failure;
    }
    match outcome {
        Ok(Outcome::ClientClosed | Outcome::ServerExited(Some(0))) => Exit::Success,
        Ok(Outcome::ServerExited(status)) => {
            io.err(&format!(
                "error: the MCP server exited{}\n",
                status
                    .map(|s| format!(" with status {s}"))
                    .unwrap_or_default()
            ));
            Exit::Failure
        }
        Ok(Outcome::Ended(Ending::Revoked)) => Exit::Revoked,
        Ok(Outcome::Ended(Ending::AuditFailed)) => Exit::Failure,
        Err(error) => {
            io.err(&format!("error: {error}\n"));
            Exit::Usage
        }
    }
}

/// `tollgate mcp serve`: the Streamable HTTP gateway, in front of several upstream servers.
pub fn serve(
    io: &mut Io<'_>,
    gate_args: &GateArgs,
    options: tollgate_gateway::http::HttpOptions,
) -> Exit {
    let gate = match start_gate(io, gate_args) {
        Ok(gate) => gate,
        Err(exit) => return exit,
    };
    let names: Vec<String> = options.upstreams.iter().map(|u| u.name.clone()).collect();
    let served = {
        let stderr = &mut *io.stderr;
        tollgate_gateway::http::run(gate, options, |address| {
            let _ = writeln!(
                stderr,
                "tollgate mcp serve: listening on http://{address}/mcp (upstreams: {})",
                names.join(", ")
            );
            let _ = stderr.flush();
        })
    };
    let closed = close_gate(io, gate, gate_args);
    match served {
        Ok(()) if closed => Exit::Success,
        Ok(()) => Exit::Failure,
        Err(error) => {
            io.err(&format!("error: {error}\n"));
            Exit::Failure
        }
    }
}
