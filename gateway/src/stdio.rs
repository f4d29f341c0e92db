//! The stdio transport: the agent's host starts the gateway in place of the MCP server; the
//! gateway starts the server as its child and relays newline-delimited JSON-RPC messages both
//! ways through the [`Relay`].
//!
//! One thread per direction reads a line, takes the relay's lock for the step (deciding a call,
//! filtering a list), releases it and writes the step's messages: a message crosses the gateway
//! on the thread that read it, with no hand-off. The calling thread waits for the session to end
//! (either side closing, or the relay ending it) and stops the server.

use crate::relay::{Action, Ending, Relay};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
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
}

/// What ends the wait of [`run`].
enum Event {
    ClientClosed,
    ServerClosed,
    Ended(Ending),
}

/// How long a server may take to exit after its input is closed, before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked mid-step left whole messages only (each is one write).
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Cuts `input` into lines of at most `limit` bytes and hands each to `step`, which says whether
/// to go on. Returns at the end of the input.
fn cut_lines(input: impl Read, limit: usize, mut step: impl FnMut(Line) -> bool) {
    let mut input = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut input)
            .take(limit as u64 + 1)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) | Err(_) => return,
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
            if !step(Line::Oversize(skipped)) {
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
        if !step(Line::Data(std::mem::take(&mut line))) {
            return;
        }
    }
}

/// Everything the two directions share.
struct Shared<R> {
    relay: Mutex<R>,
    client_out: Mutex<Box<dyn Write + Send>>,
    server_in: Mutex<Option<ChildStdin>>,
    log: Mutex<Box<dyn Write + Send>>,
    events: Mutex<mpsc::Sender<Event>>,
}

impl<R> Shared<R> {
    /// Carries out a step's actions; false when the session has ended.
    fn perform(&self, actions: Vec<Action>) -> bool {
        for action in actions {
            match action {
                Action::ToClient(message) => {
                    let mut out = lock(&self.client_out);
                    let written = out
                        .write_all(message.as_bytes())
                        .and_then(|()| out.write_all(b"\n"))
                        .and_then(|()| out.flush());
                    if written.is_err() {
                        let _ = lock(&self.events).send(Event::ClientClosed);
                        return false;
                    }
                }
                Action::ToServer(message) => {
                    let mut input = lock(&self.server_in);
                    let written = input.as_mut().map(|input| {
                        input
                            .write_all(message.as_bytes())
                            .and_then(|()| input.write_all(b"\n"))
                            .and_then(|()| input.flush())
                    });
                    if let Some(Err(error)) = written {
                        self.say(&format!("cannot write to the server: {error}"));
                    }
                }
                Action::Log(text) => self.say(&text),
                Action::End(ending) => {
                    let _ = lock(&self.events).send(Event::Ended(ending));
                    return false;
                }
            }
        }
        true
    }

    fn say(&self, text: &str) {
        let _ = writeln!(lock(&self.log), "tollgate mcp: {text}");
    }
}

/// Starts `command` as the server and relays between it and the client until one side closes
/// or the relay ends the session. The reader of `client_in` may outlive this call (a blocked
/// read of the process's standard input cannot be interrupted): the caller exits the process
/// after.
pub fn run<C, S, A>(
    relay: Relay<'static, 'static, C, S, A>,
    command: &[String],
    max_message: usize,
    client_in: impl Read + Send + 'static,
    client_out: Box<dyn Write + Send>,
    log: Box<dyn Write + Send>,
) -> std::io::Result<Outcome>
where
    C: Clock + Send + Sync + 'static,
    S: StateStore + Send + 'static,
    A: AuditStore + Send + 'static,
{
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
    let server_out = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("the server's output is not a pipe"))?;
    let (events, inbox) = mpsc::channel::<Event>();
    let shared = Arc::new(Shared {
        relay: Mutex::new(relay),
        client_out: Mutex::new(client_out),
        server_in: Mutex::new(child.stdin.take()),
        log: Mutex::new(log),
        events: Mutex::new(events),
    });
    let from_client = Arc::clone(&shared);
    std::thread::spawn(move || {
        cut_lines(client_in, max_message, |line| {
            let actions = {
                let mut relay = lock(&from_client.relay);
                match line {
                    Line::Data(line) => relay.from_client(&line),
                    Line::Oversize(bytes) => relay.client_oversize(bytes, max_message),
                }
            };
            from_client.perform(actions)
        });
        let _ = lock(&from_client.events).send(Event::ClientClosed);
    });
    let from_server = Arc::clone(&shared);
    std::thread::spawn(move || {
        cut_lines(server_out, max_message, |line| {
            let actions = {
                let mut relay = lock(&from_server.relay);
                match line {
                    Line::Data(line) => relay.from_server(&line),
                    Line::Oversize(bytes) => relay.server_oversize(bytes, max_message),
                }
            };
            from_server.perform(actions)
        });
        let _ = lock(&from_server.events).send(Event::ServerClosed);
    });
    let first = inbox.recv().unwrap_or(Event::ClientClosed);
    match first {
        Event::ClientClosed => {
            // Close the server's input; its last answers are still relayed until it exits.
            drop(lock(&shared.server_in).take());
            let deadline = Instant::now() + STOP_GRACE;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match inbox.recv_timeout(left) {
                    Ok(Event::ServerClosed) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            stop(&mut child, STOP_GRACE);
            Ok(Outcome::ClientClosed)
        }
        Event::ServerClosed => {
            let answers = lock(&shared.relay).server_closed();
            shared.perform(answers);
            drop(lock(&shared.server_in).take());
            let status = stop(&mut child, STOP_GRACE);
            shared.say("the server closed its output; the session ended");
            Ok(Outcome::ServerExited(status))
        }
        Event::Ended(ending) => {
            drop(lock(&shared.server_in).take());
            let _ = child.kill();
            let _ = child.wait();
            Ok(Outcome::Ended(ending))
        }
    }
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
