//! The HTTP gateway's clients of its upstream MCP servers.
//!
//! An upstream started as a command is spoken to as the stdio gateway speaks to its server: lines
//! of JSON over the child's standard input and output, a `tools/call` forwarded with its params
//! as the agent sent them (the tool's name unprefixed, paths in their normal form) and its result
//! relayed as the bytes the server wrote, read no further than the response's envelope. The typed
//! model of `rmcp` would decode every result into its structs and encode it again, which costs
//! time per call and drops fields of protocol revisions newer than the SDK. An upstream reached
//! by URL goes through `rmcp`'s Streamable HTTP client (sessions, SSE), whose answers are typed.

use crate::relay::SUPPORTED_VERSIONS;
use rmcp::model::{CallToolRequestParams, Tool};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::oneshot;

/// The largest message read from an upstream; a longer line is skipped.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// How long an upstream may take to exit after its input is closed, before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// An upstream's answer to a request: its `result` or its `error`, as the JSON it sent.
#[derive(Debug)]
pub(crate) enum Answer {
    Result(Box<RawValue>),
    Error(Box<RawValue>),
}

/// A client of one upstream server.
pub(crate) enum Client {
    Lines(Lines),
    Rmcp(RunningService<RoleClient, ()>),
}

impl Client {
    /// Starts `command` with `sh -c` and initializes it over its stdio.
    pub(crate) async fn command(name: &str, command: &str) -> std::io::Result<Client> {
        Lines::start(name, command).await.map(Client::Lines)
    }

    /// Connects to a Streamable HTTP endpoint and initializes it.
    pub(crate) async fn url(name: &str, url: &str) -> std::io::Result<Client> {
        let transport = StreamableHttpClientTransport::from_uri(url);
        ().serve(transport).await.map(Client::Rmcp).map_err(|e| {
            std::io::Error::other(format!("upstream `{name}` did not initialize: {e}"))
        })
    }

    /// Every tool the upstream lists, page by page.
    pub(crate) async fn list_tools(&self) -> Result<Vec<Tool>, String> {
        match self {
            Client::Lines(lines) => lines.list_tools().await,
            Client::Rmcp(client) => client
                .peer()
                .list_all_tools()
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Forwards a `tools/call` with these params; the upstream's answer.
    pub(crate) async fn call_tool(&self, params: &Map<String, Value>) -> Result<Answer, String> {
        match self {
            Client::Lines(lines) => lines.request("tools/call", params).await,
            Client::Rmcp(client) => {
                let params: CallToolRequestParams =
                    serde_json::from_value(Value::Object(params.clone()))
                        .map_err(|e| format!("the call is not a `tools/call`: {e}"))?;
                match client.peer().call_tool(params).await {
                    Ok(result) => serde_json::value::to_raw_value(&result)
                        .map(Answer::Result)
                        .map_err(|e| e.to_string()),
                    Err(ServiceError::McpError(error)) => serde_json::value::to_raw_value(&error)
                        .map(Answer::Error)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    /// Forwards a request of a method `--allow-method` lets pass; the upstream's answer.
    pub(crate) async fn request(
        &self,
        method: &str,
        params: &Map<String, Value>,
    ) -> Result<Answer, String> {
        match self {
            Client::Lines(lines) => lines.request(method, params).await,
            Client::Rmcp(client) => {
                let request = rmcp::model::ClientRequest::CustomRequest(
                    rmcp::model::CustomRequest::new(method, Some(Value::Object(params.clone()))),
                );
                match client.peer().send_request(request).await {
                    Ok(result) => serde_json::value::to_raw_value(&result)
                        .map(Answer::Result)
                        .map_err(|e| e.to_string()),
                    Err(ServiceError::McpError(error)) => serde_json::value::to_raw_value(&error)
                        .map(Answer::Error)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    /// Closes the upstream: a command's input is closed and it is stopped.
    pub(crate) async fn stop(self) {
        match self {
            Client::Lines(lines) => lines.stop().await,
            Client::Rmcp(client) => {
                let _ = client.cancel().await;
            }
        }
    }
}

/// Requests sent to an upstream and not yet answered, by their id there.
#[derive(Default)]
struct Waiting {
    answers: HashMap<u64, oneshot::Sender<Vec<u8>>>,
    /// The upstream's output has ended: nothing more is answered.
    closed: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is one map operation: a panic leaves the map whole.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An upstream started as a command, spoken to in lines of JSON over its stdio.
pub(crate) struct Lines {
    input: Arc<tokio::sync::Mutex<Option<ChildStdin>>>,
    waiting: Arc<Mutex<Waiting>>,
    next_id: AtomicU64,
    child: tokio::sync::Mutex<Child>,
}

/// The members of an upstream's message that route it, read without the value trees of the
/// others.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default, borrow)]
    method: Option<std::borrow::Cow<'a, str>>,
}

/// A response's outcome, borrowed from its line.
#[derive(serde::Deserialize)]
struct Outcome<'a> {
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

/// The answer in a response line: its result or error as sent, or why it is neither.
fn answer(line: &[u8]) -> Result<Answer, String> {
    let outcome: Outcome<'_> =
        serde_json::from_slice(line).map_err(|e| format!("an unreadable response: {e}"))?;
    match (outcome.result, outcome.error) {
        (Some(result), None) => Ok(Answer::Result(result.to_owned())),
        (None, Some(error)) => Ok(Answer::Error(error.to_owned())),
        _ => Err("a response without exactly one of `result` and `error`".to_owned()),
    }
}

impl Lines {
    async fn start(name: &str, command: &str) -> std::io::Result<Lines> {
        let mut process = tokio::process::Command::new("sh");
        process
            .arg("-c")
            .arg(format!("exec {command}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = process.spawn().map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot start upstream `{name}`: {e}"))
        })?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other(format!(
                "cannot start upstream `{name}`: no pipes to its stdio"
            )));
        };
        let lines = Lines {
            input: Arc::new(tokio::sync::Mutex::new(Some(input))),
            waiting: Arc::default(),
            next_id: AtomicU64::new(0),
            child: tokio::sync::Mutex::new(child),
        };
        tokio::spawn(read_upstream(
            output,
            Arc::clone(&lines.waiting),
            Arc::clone(&lines.input),
        ));
        lines.initialize().await.map_err(|why| {
            std::io::Error::other(format!("upstream `{name}` did not initialize: {why}"))
        })?;
        Ok(lines)
    }

    async fn initialize(&self) -> Result<(), String> {
        let mut params = Map::new();
        params.insert("protocolVersion".into(), json!(SUPPORTED_VERSIONS[0]));
        params.insert("capabilities".into(), json!({}));
        params.insert(
            "clientInfo".into(),
            json!({ "name": "tollgate-gateway", "version": env!("CARGO_PKG_VERSION") }),
        );
        let result = match self.request("initialize", &params).await? {
            Answer::Result(result) => result,
            Answer::Error(error) => return Err(format!("it answered {error}")),
        };
        let result: Value = serde_json::from_str(result.get()).map_err(|e| e.to_string())?;
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(format!(
                "it speaks protocol `{version}`, which the gateway does not"
            ));
        }
        self.write(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
            .await
    }

    async fn write(&self, line: &[u8]) -> Result<(), String> {
        let mut input = self.input.lock().await;
        let Some(input) = input.as_mut() else {
            return Err("it is stopped".to_owned());
        };
        input
            .write_all(line)
            .await
            .map_err(|e| format!("cannot write to it: {e}"))
    }

    /// Sends a request and waits for its answer.
    async fn request(&self, method: &str, params: &Map<String, Value>) -> Result<Answer, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut line = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":").into_bytes();
        serde_json::to_writer(&mut line, method).map_err(|e| e.to_string())?;
        line.extend_from_slice(b",\"params\":");
        serde_json::to_writer(&mut line, params).map_err(|e| e.to_string())?;
        line.extend_from_slice(b"}\n");
        let (sender, receiver) = oneshot::channel();
        {
            let mut waiting = lock(&self.waiting);
            if waiting.closed {
                return Err("it has exited".to_owned());
            }
            waiting.answers.insert(id, sender);
        }
        // An answer that never comes (the agent went away) is removed here, not left behind.
        let forget = Forget {
            waiting: &self.waiting,
            id,
        };
        self.write(&line).await?;
        let response = receiver.await.map_err(|_| "it has exited".to_owned())?;
        drop(forget);
        answer(&response)
    }

    async fn list_tools(&self) -> Result<Vec<Tool>, String> {
        let mut tools = Vec::new();
        let mut params = Map::new();
        loop {
            let result = match self.request("tools/list", &params).await? {
                Answer::Result(result) => result,
                Answer::Error(error) => return Err(format!("it answered {error}")),
            };
            let page: rmcp::model::ListToolsResult =
                serde_json::from_str(result.get()).map_err(|e| e.to_string())?;
            tools.extend(page.tools);
            match page.next_cursor {
                Some(cursor) => {
                    params.insert("cursor".into(), Value::String(cursor));
                }
                None => return Ok(tools),
            }
        }
    }

    async fn stop(self) {
        // Closing its input asks the server to exit; one that does not is killed.
        self.input.lock().await.take();
        let mut child = self.child.lock().await;
        if tokio::time::timeout(STOP_GRACE, child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

/// Removes a request from the waiting ones when its caller stops waiting.
struct Forget<'a> {
    waiting: &'a Mutex<Waiting>,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.waiting).answers.remove(&self.id);
    }
}

/// Reads the upstream's output to its end: answers go to their waiting requests, its `ping` is
/// answered, any other request of its own refused, and its notifications dropped (the HTTP
/// gateway keeps no session to send them in).
async fn read_upstream(
    output: ChildStdout,
    waiting: Arc<Mutex<Waiting>>,
    input: Arc<tokio::sync::Mutex<Option<ChildStdin>>>,
) {
    let mut output = BufReader::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut output)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.len() > MAX_LINE {
            // Skip the rest of an oversize line.
            let mut rest = Vec::new();
            if !matches!(output.read_until(b'\n', &mut rest).await, Ok(n) if n > 0) {
                break;
            }
            continue;
        }
        let Ok(envelope) = serde_json::from_slice::<Envelope<'_>>(&line) else {
            continue;
        };
        match (envelope.id, envelope.method) {
            (Some(id), None) => {
                let sender = id
                    .as_u64()
                    .and_then(|id| lock(&waiting).answers.remove(&id));
                if let Some(sender) = sender {
                    let _ = sender.send(std::mem::take(&mut line));
                }
            }
            (Some(id), Some(method)) => {
                let reply = if method == "ping" {
                    json!({ "jsonrpc": "2.0", "id": id, "result": {} })
                } else {
                    json!({ "jsonrpc": "2.0", "id": id, "error": {
                        "code": -32601,
                        "message": format!("method `{method}` is not available through the tollgate gateway"),
                    }})
                };
                let mut reply = reply.to_string().into_bytes();
                reply.push(b'\n');
                if let Some(input) = input.lock().await.as_mut() {
                    let _ = input.write_all(&reply).await;
                }
            }
            (None, _) => {}
        }
    }
    let mut waiting = lock(&waiting);
    waiting.closed = true;
    waiting.answers.clear();
}

#[cfg(test)]
mod tests {
    use super::{answer, Answer};

    #[test]
    fn an_answer_is_its_result_or_its_error_as_sent() {
        let line = br#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"x"}],"newer":{"field":1}}}"#;
        match answer(line) {
            Ok(Answer::Result(result)) => assert_eq!(
                result.get(),
                r#"{"content":[{"type":"text","text":"x"}],"newer":{"field":1}}"#
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            answer(br#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"m"}}"#),
            Ok(Answer::Error(_))
        ));
        assert!(answer(br#"{"jsonrpc":"2.0","id":3}"#).is_err());
        assert!(answer(br#"{"jsonrpc":"2.0","id":3,"result":{},"error":{}}"#).is_err());
    }
}
