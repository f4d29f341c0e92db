//! `tollgate import mcp|openai`: tool declarations from the tools' own JSON Schema — a saved MCP
//! `tools/list` result, a live MCP server started over stdio, or OpenAI function definitions.
//! The mapping is `tollgate_compiler::import`'s; this file reads files, runs the server, writes.

use crate::{Exit, Io};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tollgate_compiler::import::{self, Options, Source};

#[derive(Debug)]
pub struct ImportArgs {
    pub source: Source,
    pub file: Option<PathBuf>,
    pub command: Vec<String>,
    pub prefix: String,
    pub domain: String,
    pub output: Option<PathBuf>,
}

/// How long a server may take to answer the handshake and each page of its tool list.
const SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts an MCP server over stdio, initializes it and lists every page of its tools.
fn list_tools(command: &[String]) -> Result<Value, String> {
    let (program, args) = command
        .split_first()
        .ok_or("no server command given after `--`")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let mut input = child
        .stdin
        .take()
        .ok_or("the server's input is not a pipe")?;
    let output = child
        .stdout
        .take()
        .ok_or("the server's output is not a pipe")?;
    let (lines, inbox) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut request = |id: u64, method: &str, params: Value| -> Result<Value, String> {
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(input, "{message}").map_err(|e| format!("cannot write to the server: {e}"))?;
        if method == "initialize" {
            // The handshake ends with the client's notification, sent once the answer is in.
            let answer = answer(&inbox, id, method);
            writeln!(
                input,
                r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
            )
            .map_err(|e| format!("cannot write to the server: {e}"))?;
            return answer;
        }
        answer(&inbox, id, method)
    };
    let mut listed = || {
        request(
            0,
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "tollgate-import", "version": env!("CARGO_PKG_VERSION")}}),
        )?;
        let mut tools = Vec::new();
        let mut cursor: Option<Value> = None;
        for page in 1..=1_000u64 {
            let params = match &cursor {
                Some(cursor) => json!({ "cursor": cursor }),
                None => json!({}),
            };
            let result = request(page, "tools/list", params)?;
            tools.extend(
                result
                    .get("tools")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
            cursor = result.get("nextCursor").filter(|c| !c.is_null()).cloned();
            if cursor.is_none() {
                return Ok(json!({ "tools": tools }));
            }
        }
        Err("the server's tool list did not end after 1,000 pages".to_owned())
    };
    let listed = listed();
    let _ = child.kill();
    let _ = child.wait();
    listed
}

/// Waits for the answer to request `id`, skipping notifications and other messages.
fn answer(
    inbox: &mpsc::Receiver<std::io::Result<String>>,
    id: u64,
    method: &str,
) -> Result<Value, String> {
    let deadline = Instant::now() + SERVER_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = inbox
            .recv_timeout(left)
            .map_err(|_| {
                format!(
                    "the server did not answer `{method}` within {}s",
                    SERVER_TIMEOUT.as_secs()
                )
            })?
            .map_err(|e| format!("cannot read the server: {e}"))?;
        let Ok(answer) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if answer.get("id") == Some(&json!(id)) {
            if let Some(error) = answer.get("error") {
                return Err(format!("the server refused `{method}`: {error}"));
            }
            return answer
                .get("result")
                .cloned()
                .ok_or_else(|| format!("the server's answer to `{method}` has no result"));
        }
    }
}

pub fn run(io: &mut Io<'_>, args: &ImportArgs) -> Exit {
    let (input, origin) = match (&args.file, args.command.is_empty()) {
        (Some(file), true) => {
            let text = match std::fs::read_to_string(file) {
                Ok(text) => text,
                Err(error) => {
                    return io.usage(&format!("cannot read `{}`: {error}", file.display()))
                }
            };
            match serde_json::from_str::<Value>(&text) {
                Ok(value) => (value, format!("`{}`", file.display())),
                Err(error) => {
                    return io.usage(&format!("`{}` is not JSON: {error}", file.display()))
                }
            }
        }
        (None, false) if args.source == Source::Mcp => match list_tools(&args.command) {
            Ok(value) => (
                value,
                format!("the MCP server `{}`", args.command.join(" ")),
            ),
            Err(error) => return io.usage(&error),
        },
        (Some(_), false) => {
            return io.usage("give a FILE or a server command after `--`, not both")
        }
        (None, _) => {
            return io.usage(match args.source {
                Source::Mcp => "give a saved `tools/list` FILE, or the server command after `--`",
                Source::OpenAi => "give the FILE of function definitions",
            })
        }
    };
    let options = Options {
        prefix: args.prefix.clone(),
        domain: args.domain.clone(),
        origin,
    };
    let imported = match import::import(&input, args.source, &options) {
        Ok(imported) => imported,
        Err(error) => return io.usage(&error.to_string()),
    };
    match &args.output {
        Some(path) => {
            if let Err(error) = std::fs::write(path, &imported.text) {
                return io.usage(&format!("cannot write `{}`: {error}", path.display()));
            }
        }
        None => io.out(&imported.text),
    }
    for note in &imported.notes {
        io.err(&format!("note: {note}\n"));
    }
    io.err(&format!(
        "imported {} tool(s) as `{}.*` in domain `{}`; {} construct(s) not expressed (each noted above and as a comment in the declarations); declare `domain {} {{ … }}` before use\n",
        imported.tools,
        args.prefix,
        args.domain,
        imported.notes.len(),
        args.domain
    ));
    Exit::Success
}
