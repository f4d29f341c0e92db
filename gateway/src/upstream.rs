//! The HTTP gateway's clients of its upstream MCP servers.
//!
//! An upstream started as a command is spoken to as the stdio gateway speaks to its server: lines
//! of JSON over the child's standard input and output, a `tools/call` forwarded with its params
//! as the agent sent them (the tool's name unprefixed, paths in their normal form) and its result
//! relayed as the bytes the server wrote, read no further than the response's envelope. The typed
//! model of `rmcp` would decode every result into its structs and encode it again, which costs
//! time per call and drops fields of protocol revisions newer than the SDK. An upstream reached
//! by URL goes through `rmcp`'s Streamable HTTP client (sessions, SSE), whose answers are typed.
//!
//! Several agents' calls share one upstream, so a client's `progressToken` never reaches it: a
//! call whose progress the gateway relays carries a token of the gateway's own
//! (`tollgate-N`, unique in the process), and the upstream's `notifications/progress` with that
//! token goes back to that call's client only, with the client's token restored. Any other
//! progress notification is dropped. A `notifications/tools/list_changed` is handed to the
//! gateway (which tells the sessions that can see a tool of this upstream).

use crate::relay::SUPPORTED_VERSIONS;
use rmcp::model::{CallToolRequestParams, ProgressNotificationParam, Tool};
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot};

/// The largest message read from an upstream; a longer line is skipped.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// How long an upstream may take to exit after its input is closed, before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What the gateway does when an upstream says its tool list changed.
pub(crate) type ToolsChanged = Arc<dyn Fn() + Send + Sync>;

/// Where the progress of one forwarded call goes.
#[derive(Debug)]
pub(crate) struct Progress {
    /// The client's own `progressToken`, put back on each notification.
    pub(crate) token: Value,
    /// The call's stream to its client: each notification as one JSON-RPC message. Sent to
    /// without waiting: when the client reads too slowly and the stream is full, progress is
    /// dropped rather than the upstream's reader stalled (progress is advisory; the result is
    /// not dropped, see `http`).
    pub(crate) sender: mpsc::Sender<String>,
}

/// The calls of one upstream whose progress is relayed, by the token the upstream was given (as
/// JSON text: `"tollgate-3"` with its quotes, `7`).
#[derive(Default)]
pub(crate) struct ProgressRoutes {
    routes: Mutex<HashMap<String, Progress>>,
}

/// How often a call through `rmcp`'s client yields, after its response, to the tasks that
/// deliver the notifications sent before it.
const RMCP_NOTIFICATION_YIELDS: usize = 8;

/// The gateway's progress tokens: unique in the process, so no two calls share one.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(0);

/// A route open while its call is: dropping it (the answer came, or the agent went away)
/// removes it.
pub(crate) struct Route {
    routes: Arc<ProgressRoutes>,
    /// The token the upstream is given, when the gateway chose it.
    token: String,
    /// Its key in the routes (the token's JSON text).
    key: String,
}

impl Drop for Route {
    fn drop(&mut self) {
        lock(&self.routes.routes).remove(&self.key);
    }
}

impl ProgressRoutes {
    /// Gives a call a token of the gateway's own and routes its progress to `progress`.
    pub(crate) fn open(self: &Arc<Self>, progress: Progress) -> Route {
        let token = format!("tollgate-{}", NEXT_TOKEN.fetch_add(1, Ordering::Relaxed));
        let mut route = self.open_as(progress, &Value::String(token.clone()));
        route.token = token;
        route
    }

    /// Routes the progress of a call that carries `token` (one `rmcp`'s client chose) to
    /// `progress`.
    fn open_as(self: &Arc<Self>, progress: Progress, token: &Value) -> Route {
        let key = token.to_string();
        lock(&self.routes).insert(key.clone(), progress);
        Route {
            routes: Arc::clone(self),
            token: String::new(),
            key,
        }
    }

    /// Relays an upstream's `notifications/progress` (its params): to the call whose token it
    /// carries, with that call's client token. Whether it was relayed; anything else (an
    /// unknown token, a full stream) is dropped.
    pub(crate) fn relay(&self, mut params: Map<String, Value>) -> bool {
        let routes = lock(&self.routes);
        let route = params
            .get("progressToken")
            .and_then(|token| routes.get(&token.to_string()));
        let Some(route) = route else {
            return false;
        };
        params.insert("progressToken".to_owned(), route.token.clone());
        let message =
            json!({ "jsonrpc": "2.0", "method": "notifications/progress", "params": params });
        route.sender.try_send(message.to_string()).is_ok()
    }
}

/// A request's params as they go to an upstream: a client's `_meta.progressToken` removed (it
/// could name another call's gateway token and so steal that call's progress), and `token`, the
/// gateway's own, in its place when the call's progress is relayed. Borrowed when unchanged.
pub(crate) fn upstream_params<'p>(
    params: &'p Map<String, Value>,
    token: Option<&str>,
) -> std::borrow::Cow<'p, Map<String, Value>> {
    let carries = params
        .get("_meta")
        .and_then(Value::as_object)
        .is_some_and(|meta| meta.contains_key("progressToken"));
    if !carries && token.is_none() {
        return std::borrow::Cow::Borrowed(params);
    }
    let mut params = params.clone();
    if let Some(token) = token {
        let meta = params
            .entry("_meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        if let Value::Object(meta) = meta {
            meta.insert("progressToken".to_owned(), Value::String(token.to_owned()));
        }
    } else if let Some(Value::Object(meta)) = params.get_mut("_meta") {
        meta.remove("progressToken");
    }
    std::borrow::Cow::Owned(params)
}

/// The client side of an upstream reached by URL: its progress and tool list changes, routed as
/// a command upstream's are.
pub(crate) struct Notified {
    progress: Arc<ProgressRoutes>,
    tools_changed: ToolsChanged,
}

impl ClientHandler for Notified {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Ok(Value::Object(params)) = serde_json::to_value(&params) {
            self.progress.relay(params);
        }
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        (self.tools_changed)();
    }
}

/// An upstream's answer to a request: its `result` or its `error`, as the JSON it sent.
#[derive(Debug)]
pub(crate) enum Answer {
    Result(Box<RawValue>),
    Error(Box<RawValue>),
}

/// A client of one upstream server.
pub(crate) enum Client {
    Lines(Lines),
    Rmcp {
        client: RunningService<RoleClient, Notified>,
        progress: Arc<ProgressRoutes>,
    },
}

impl Client {
    /// Starts `command` with `sh -c` and initializes it over its stdio.
    pub(crate) async fn command(
        name: &str,
        command: &str,
        tools_changed: ToolsChanged,
    ) -> std::io::Result<Client> {
        Lines::start(name, command, tools_changed)
            .await
            .map(Client::Lines)
    }

    /// Connects to a Streamable HTTP endpoint and initializes it.
    pub(crate) async fn url(
        name: &str,
        url: &str,
        tools_changed: ToolsChanged,
    ) -> std::io::Result<Client> {
        let transport = StreamableHttpClientTransport::from_uri(url);
        let progress = Arc::new(ProgressRoutes::default());
        let handler = Notified {
            progress: Arc::clone(&progress),
            tools_changed,
        };
        let client = handler.serve(transport).await.map_err(|e| {
            std::io::Error::other(format!("upstream `{name}` did not initialize: {e}"))
        })?;
        Ok(Client::Rmcp { client, progress })
    }

    /// Every tool the upstream lists, page by page.
    pub(crate) async fn list_tools(&self) -> Result<Vec<Tool>, String> {
        match self {
            Client::Lines(lines) => lines.list_tools().await,
            Client::Rmcp { client, .. } => client
                .peer()
                .list_all_tools()
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Forwards a `tools/call` with these params; the upstream's answer. With `progress`, the
    /// upstream's progress notifications for this call go there while it runs.
    pub(crate) async fn call_tool(
        &self,
        params: &Map<String, Value>,
        progress: Option<Progress>,
    ) -> Result<Answer, String> {
        match self {
            Client::Lines(lines) => lines.request("tools/call", params, progress).await,
            Client::Rmcp {
                client,
                progress: routes,
            } => {
                let params = upstream_params(params, None);
                let params: CallToolRequestParams =
                    serde_json::from_value(Value::Object(params.into_owned()))
                        .map_err(|e| format!("the call is not a `tools/call`: {e}"))?;
                // `rmcp`'s client gives every request a progress token of its own (a number
                // unique on this connection): the call's progress is routed by that one. The
                // route opens as soon as the request is queued, before `rmcp`'s transport has
                // written it to the upstream.
                let request = rmcp::model::ClientRequest::CallToolRequest(
                    rmcp::model::CallToolRequest::new(params),
                );
                let handle = client
                    .peer()
                    .send_request_with_option(request, PeerRequestOptions::no_options())
                    .await
                    .map_err(|e| e.to_string())?;
                let route = match (progress, serde_json::to_value(&handle.progress_token)) {
                    (Some(progress), Ok(token)) => Some(routes.open_as(progress, &token)),
                    _ => None,
                };
                let answer = handle.await_response().await;
                if route.is_some() {
                    // `rmcp`'s client hands each notification to a task of its own, spawned
                    // before the response that followed it on the wire is delivered: let those
                    // tasks run before the route closes, or the last progress is overtaken by
                    // the result. Not a guarantee under load (the result is never lost; a
                    // progress notification may be).
                    for _ in 0..RMCP_NOTIFICATION_YIELDS {
                        tokio::task::yield_now().await;
                    }
                }
                drop(route);
                match answer {
                    // A tool's result, or what else the server answered, as it did.
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
            Client::Lines(lines) => lines.request(method, params, None).await,
            Client::Rmcp { client, .. } => {
                let params = upstream_params(params, None).into_owned();
                let request = rmcp::model::ClientRequest::CustomRequest(
                    rmcp::model::CustomRequest::new(method, Some(Value::Object(params))),
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
            Client::Rmcp { client, .. } => {
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
    progress: Arc<ProgressRoutes>,
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
    async fn start(
        name: &str,
        command: &str,
        tools_changed: ToolsChanged,
    ) -> std::io::Result<Lines> {
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
            progress: Arc::default(),
            next_id: AtomicU64::new(0),
            child: tokio::sync::Mutex::new(child),
        };
        tokio::spawn(read_upstream(
            output,
            Arc::clone(&lines.waiting),
            Arc::clone(&lines.input),
            Arc::clone(&lines.progress),
            tools_changed,
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
        let result = match self.request("initialize", &params, None).await? {
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

    /// Sends a request and waits for its answer; with `progress`, the upstream's progress
    /// notifications for it go there until then.
    async fn request(
        &self,
        method: &str,
        params: &Map<String, Value>,
        progress: Option<Progress>,
    ) -> Result<Answer, String> {
        let route = progress.map(|progress| self.progress.open(progress));
        let params = upstream_params(params, route.as_ref().map(|r| r.token.as_str()));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut line = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":").into_bytes();
        serde_json::to_writer(&mut line, method).map_err(|e| e.to_string())?;
        line.extend_from_slice(b",\"params\":");
        serde_json::to_writer(&mut line, &*params).map_err(|e| e.to_string())?;
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
        drop(route);
        answer(&response)
    }

    async fn list_tools(&self) -> Result<Vec<Tool>, String> {
        let mut tools = Vec::new();
        let mut params = Map::new();
        loop {
            let result = match self.request("tools/list", &params, None).await? {
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
/// answered, any other request of its own refused; its progress goes to the call it is for (see
/// [`ProgressRoutes`]), a change of its tool list to `tools_changed`, and its other
/// notifications are dropped.
async fn read_upstream(
    output: ChildStdout,
    waiting: Arc<Mutex<Waiting>>,
    input: Arc<tokio::sync::Mutex<Option<ChildStdin>>>,
    progress: Arc<ProgressRoutes>,
    tools_changed: ToolsChanged,
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
            (None, Some(method)) => match method.as_ref() {
                "notifications/progress" => {
                    let params = serde_json::from_slice::<Value>(&line)
                        .ok()
                        .and_then(|mut message| message.get_mut("params").map(Value::take));
                    if let Some(Value::Object(params)) = params {
                        progress.relay(params);
                    }
                }
                "notifications/tools/list_changed" => tools_changed(),
                _ => {}
            },
            (None, None) => {}
        }
    }
    let mut waiting = lock(&waiting);
    waiting.closed = true;
    waiting.answers.clear();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test should fail loudly")]
    use super::{answer, upstream_params, Answer, Progress, ProgressRoutes};
    use serde_json::{json, Map, Value};
    use std::sync::Arc;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            _ => Map::new(),
        }
    }

    #[test]
    fn a_clients_progress_token_never_reaches_an_upstream() {
        // A token that names another call's (guessed) would route that call's progress here.
        let params =
            object(json!({"name": "t", "_meta": {"progressToken": "tollgate-0", "other": 1}}));
        assert_eq!(
            Value::Object(upstream_params(&params, None).into_owned()),
            json!({"name": "t", "_meta": {"other": 1}})
        );
        assert_eq!(
            Value::Object(upstream_params(&params, Some("tollgate-9")).into_owned()),
            json!({"name": "t", "_meta": {"progressToken": "tollgate-9", "other": 1}})
        );
        let bare = object(json!({"name": "t"}));
        assert!(matches!(
            upstream_params(&bare, None),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            Value::Object(upstream_params(&bare, Some("tollgate-1")).into_owned()),
            json!({"name": "t", "_meta": {"progressToken": "tollgate-1"}})
        );
        let odd = object(json!({"name": "t", "_meta": 5}));
        assert_eq!(
            Value::Object(upstream_params(&odd, Some("tollgate-2")).into_owned()),
            json!({"name": "t", "_meta": {"progressToken": "tollgate-2"}})
        );
    }

    #[test]
    fn progress_goes_to_its_own_call_with_its_clients_token() {
        let routes = Arc::new(ProgressRoutes::default());
        let (alice, mut alice_stream) = tokio::sync::mpsc::channel(4);
        let (bob, mut bob_stream) = tokio::sync::mpsc::channel(4);
        // Both clients chose the same token; the upstream sees two different ones.
        let alice_route = routes.open(Progress {
            token: json!(2),
            sender: alice,
        });
        let bob_route = routes.open(Progress {
            token: json!(2),
            sender: bob,
        });
        assert_ne!(alice_route.token, bob_route.token);
        let progress = |token: &str, step: u64| {
            object(json!({"progressToken": token, "progress": step, "total": 3}))
        };
        assert!(routes.relay(progress(&bob_route.token, 1)));
        assert!(routes.relay(progress(&alice_route.token, 2)));
        let sent: Value = serde_json::from_str(&alice_stream.try_recv().unwrap()).unwrap();
        assert_eq!(
            sent,
            json!({"jsonrpc": "2.0", "method": "notifications/progress",
                   "params": {"progressToken": 2, "progress": 2, "total": 3}})
        );
        assert!(alice_stream.try_recv().is_err());
        let sent: Value = serde_json::from_str(&bob_stream.try_recv().unwrap()).unwrap();
        assert_eq!(sent["params"]["progress"], 1);
        // Unknown, malformed or finished: dropped.
        assert!(!routes.relay(progress("tollgate-999999", 1)));
        assert!(!routes.relay(object(json!({"progressToken": 7, "progress": 1}))));
        assert!(!routes.relay(Map::new()));
        let finished = alice_route.token.clone();
        drop(alice_route);
        assert!(!routes.relay(progress(&finished, 3)));
        drop(bob_route);
        // A token `rmcp`'s client chose (a number), routed as it is.
        let (carol, mut carol_stream) = tokio::sync::mpsc::channel(4);
        let carol_route = routes.open_as(
            Progress {
                token: json!("c"),
                sender: carol,
            },
            &json!(7),
        );
        assert!(!routes.relay(object(json!({"progressToken": "7", "progress": 1}))));
        assert!(routes.relay(object(json!({"progressToken": 7, "progress": 1}))));
        let sent: Value = serde_json::from_str(&carol_stream.try_recv().unwrap()).unwrap();
        assert_eq!(sent["params"]["progressToken"], "c");
        drop(carol_route);
    }

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
