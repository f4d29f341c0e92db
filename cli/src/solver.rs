//! Solver work runs in a child process, so that a crash of the Z3 library (Debian's libz3 4.8.12
//! was seen to segfault on about one run in 23 of a string-heavy policy) becomes an inconclusive
//! result instead of a dead CI job.
//!
//! `verify`, `diff`, `graph` and `compile` (which proves the table with Z3) re-run themselves as a
//! child with `TOLLGATE_SOLVER_CHILD=1`. The parent forwards the child's output and exit code
//! when it exits normally; when it dies from a signal, it runs it once more; when that dies too,
//! it reports TG1009 (inconclusive) and exits 1, so a crash is never taken for a pass.

use std::io::Write as _;
use std::process::{Command, ExitCode, Stdio};

const CHILD: &str = "TOLLGATE_SOLVER_CHILD";
/// For tests: `always` makes every solver child abort; `once:PATH` makes it abort when `PATH`
/// does not exist yet (and creates it), so the retry succeeds.
const CRASH_FOR_TESTS: &str = "TOLLGATE_TEST_SOLVER_CRASH";

const SOLVER_COMMANDS: [&str; 4] = ["verify", "diff", "graph", "compile"];

/// In the parent: runs the command in a child and returns its exit code. `None` when this process
/// should run the command itself (not a solver command, or already the child).
pub fn isolate(args: &[String]) -> Option<ExitCode> {
    let command = args.get(1)?;
    if !SOLVER_COMMANDS.contains(&command.as_str()) {
        return None;
    }
    if std::env::var_os(CHILD).is_some() {
        crash_if_asked();
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let mut signals = Vec::new();
    for _ in 0..2 {
        let output = Command::new(&exe)
            .args(args.iter().skip(1))
            .env(CHILD, "1")
            .stdin(Stdio::null())
            .output();
        let Ok(output) = output else {
            // Cannot start a child: run in this process rather than not at all.
            return None;
        };
        match output.status.code() {
            Some(code) => {
                let _ = std::io::stdout().write_all(&output.stdout);
                let _ = std::io::stderr().write_all(&output.stderr);
                return Some(ExitCode::from(u8::try_from(code).unwrap_or(1)));
            }
            None => signals.push(signal_of(&output.status)),
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "error[TG1009]: the solver crashed twice ({}): `tollgate {command}` is inconclusive\n  help: a crash is never a pass; run it again, or build Z3 from source with the `vendored-z3` feature",
        signals.join(", then ")
    );
    Some(ExitCode::from(1))
}

fn signal_of(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return format!("signal {signal}");
        }
    }
    format!("{status}")
}

fn crash_if_asked() {
    let Some(mode) = std::env::var_os(CRASH_FOR_TESTS) else {
        return;
    };
    let mode = mode.to_string_lossy().into_owned();
    if mode == "always" {
        std::process::abort();
    }
    if let Some(path) = mode.strip_prefix("once:") {
        if std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .is_ok()
        {
            std::process::abort();
        }
    }
}
