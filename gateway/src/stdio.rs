//! The stdio transport: the agent's host starts the gateway in place of the MCP server; the
//! gateway starts the server as its child and relays newline-delimited JSON-RPC messages both
//! ways through the [`Relay`].
//!
//! Two reader threads (the client's input, the server's output) only cut lines (bounded by the
//! size limit) and send them to one loop, which owns the relay, the gate and both writers: one
//! message at a time, in arrival order, so no lock is held across a write.

use crate::relay::{Action, Ending, Relay};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tollgate_host::audit_log::AuditStore;
use tollgate_host::clock::Clock;
use tollgate_host::store::StateStore;

/// How a stdio session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The client closed its input; the server was asked to stop (input closed) and stopped.
    ClientClosed,
    /// The server exited (its status, when it exited by itself with one).
    ServerExited(Option<i32>),
    /// The gateway ended the session (and stopped the server).
    Ended(Ending),
}

/// A line cut by a reader thread.
enum Line {
    Data(Vec<u8>),
    /// A message over the limit: this many bytes were read before it was skipped.
    Oversize(usize),
    End,
}

enum Event {
    Client(Line),
    Server(Line),
}

/// How long a server may take to exit after its input is closed, before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

fn cut_lines(input: impl Read, limit: usize, send: impl Fn(Line) -> bool) {
    let mut input = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut input)
            .take(limit as u64 + 1)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) | Err(_) => {
                send(Line::End);
                return;
            }
            Ok(_) => {}
        }
        if line.len() > limit && line.last() != Some(&b'\n') {
            let mut skipped = line.len();
            loop {
                let buffer = match input.fill_buf() {
                    Ok([]) | Err(_) => break,
                    Ok(buffer) => buffer,
                };
                let (used, done) = match buffer.iter().position(|&b| b == b'\n') {
                    Some(at) => (at + 1, true),
                    None => (buffer.len(), false),
                };
                input.consume(used);
                skipped += used;
                if done {
                    break;
                }
            }
            if !send(Line::Oversize(skipped)) {
                return;
            }
            continue;
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if !send(Line::Data(std::mem::take(&mut line))) {
            return;
        }
    }
}

/// Starts `command` as the server and relays between it and the client until one side closes
/// or the relay ends the session. `client_in` is read on a thread of its own that may outlive
/// this call (a blocked read of the process's standard input cannot be interrupted); the caller
/// exits the process after.
pub fn run<C: Clock, S: StateStore, A: AuditStore>(
    relay: &mut Relay<'_, '_, C, S, A>,
    command: &[String],
    max_message: usize,
    client_in: impl Read + Send + 'static,
    client_out: &mut dyn Write,
    log: &mut dyn Write,
) -> std::io::Result<Outcome> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| std::io::Error::other("no server command given"))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start `{program}`: {e}")))?;
    let mut server_in = child.stdin.take();
    let server_out = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("the server's output is not a pipe"))?;
    let (events, inbox) = mpsc::channel::<Event>();
    let to_loop = events.clone();
    std::thread::spawn(move || {
        cut_lines(client_in, max_message, |line| {
            to_loop.send(Event::Client(line)).is_ok()
        })
    });
    std::thread::spawn(move || {
        cut_lines(server_out, max_message, |line| {
            events.send(Event::Server(line)).is_ok()
        })
    });
    let say = |log: &mut dyn Write, text: &str| {
        let _ = writeln!(log, "tollgate mcp: {text}");
    };
    // Once the client has closed its input, the server's input is closed too and its last
    // answers are still relayed, until it exits or the grace period ends.
    let mut client_closed: Option<Instant> = None;
    loop {
        let event = match client_closed {
            None => inbox.recv().ok(),
            Some(since) => {
                let left = STOP_GRACE.saturating_sub(since.elapsed());
                inbox.recv_timeout(left).ok()
            }
        };
        let Some(event) = event else {
            stop(&mut child, Duration::ZERO);
            return Ok(Outcome::ClientClosed);
        };
        let actions = match event {
            Event::Client(_) if client_closed.is_some() => continue,
            Event::Client(Line::Data(line)) => relay.from_client(&line),
            Event::Client(Line::Oversize(bytes)) => relay.client_oversize(bytes, max_message),
            Event::Client(Line::End) => {
                drop(server_in.take());
                client_closed = Some(Instant::now());
                continue;
            }
            Event::Server(Line::End) if client_closed.is_some() => {
                stop(&mut child, STOP_GRACE);
                return Ok(Outcome::ClientClosed);
            }
            Event::Server(Line::Data(line)) => relay.from_server(&line),
            Event::Server(Line::Oversize(bytes)) => relay.server_oversize(bytes, max_message),
            Event::Server(Line::End) => {
                let answers = relay.server_closed();
                perform(answers, client_out, &mut server_in, log)?;
                let status = stop(&mut child, STOP_GRACE);
                say(log, "the server closed its output; the session ended");
                return Ok(Outcome::ServerExited(status));
            }
        };
        if let Some(ending) = perform(actions, client_out, &mut server_in, log)? {
            drop(server_in.take());
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Outcome::Ended(ending));
        }
    }
}

/// Carries out a relay's actions; the ending, when one is among them.
fn perform(
    actions: Vec<Action>,
    client_out: &mut dyn Write,
    server_in: &mut Option<ChildStdin>,
    log: &mut dyn Write,
) -> std::io::Result<Option<Ending>> {
    let mut ending = None;
    for action in actions {
        match action {
            Action::ToClient(message) => {
                client_out.write_all(message.as_bytes())?;
                client_out.write_all(b"\n")?;
                client_out.flush()?;
            }
            Action::ToServer(message) => {
                let written = server_in.as_mut().map(|input| {
                    input
                        .write_all(message.as_bytes())
                        .and_then(|()| input.write_all(b"\n"))
                        .and_then(|()| input.flush())
                });
                if let Some(Err(error)) = written {
                    let _ = writeln!(log, "tollgate mcp: cannot write to the server: {error}");
                }
            }
            Action::Log(text) => {
                let _ = writeln!(log, "tollgate mcp: {text}");
            }
            Action::End(why) => ending = Some(why),
        }
    }
    Ok(ending)
}

/// Waits for the server to exit by itself for up to `grace`, then kills it. Its exit status,
/// when it exited by itself.
fn stop(child: &mut Child, grace: Duration) -> Option<i32> {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.code(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}
