//! `tollgate revoke` and `tollgate revocations`: revocations by hand, through the same gate
//! (stored in the state directory and audited in the log), and the list of them.

use super::gate::{start, GateArgs};
use crate::{Exit, Io};
use std::path::Path;

pub fn revoke(io: &mut Io<'_>, args: &GateArgs, agent: &str, reason: &str) -> Exit {
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
    let revoked = gate.revoke(agent, reason);
    let closed = gate.close();
    match (revoked, closed) {
        (Ok(seq), Ok(_)) => {
            io.out(&format!(
                "revoked `{agent}`: audit record {seq} in {}, listed in {}\n",
                args.audit.display(),
                args.state.join("revocations").display()
            ));
            Exit::Success
        }
        (Err(error), _) | (_, Err(error)) => {
            io.err(&format!("error: {error}\n"));
            Exit::Failure
        }
    }
}

pub fn list(io: &mut Io<'_>, state: &Path) -> Exit {
    let path = state.join("revocations");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return io.usage(&format!("cannot read `{}`: {error}", path.display())),
    };
    let mut count = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut fields = line.split('\t');
        let agent = fields.next().unwrap_or("");
        let time = fields
            .next()
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
        let reason = fields.next().unwrap_or("");
        io.out(&format!(
            "{agent}\trevoked at {}\t{reason}\n",
            crate::when(time)
        ));
        count += 1;
    }
    if count == 0 {
        io.out(&format!("no revocations in {}\n", state.display()));
    }
    Exit::Success
}
