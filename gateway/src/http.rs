//! The Streamable HTTP gateway: one gateway, several upstream MCP servers, many agents.
//!
//! Built on `rmcp`: its Streamable HTTP server transport (stateless, JSON answers; origin and
//! host checks) faces the agents, and clients of the upstreams (see `upstream`: lines over a
//! child process's stdio, or `rmcp`'s client over plain HTTP to an upstream's URL) face each
//! upstream. The gateway is an MCP server of its own whose tools are the upstreams' tools, named
//! `NAME.tool`.
//! Every HTTP request carries the agent's credential as `Authorization: Bearer <credential>`
//! (the base64 text `tollgate issue` writes); the credential of the request is the identity each
//! decision is made for:
//!
//! - no or unreadable credential, a forged one, one for another policy: `401`;
//! - a revoked agent: `403` for every later request, also after a restart (the revocation is in
//!   the gate's state store);
//! - `tools/list`: the upstreams' tools the agent could ever be allowed, listed afresh each time;
//! - `tools/call`: decided and audited by the gate, and only when allowed forwarded to the
//!   upstream; a denial is an `isError` result with the reason (or a `-32001` error), a tool
//!   the agent cannot see is `-32602`, and the call that revokes the agent gets `-32002`.
//!
//! A plain `tools/call` is answered without `rmcp`'s typed model (see [`crate::relay`]): decided on
//! the request's task and relayed to a command upstream as lines, its result as the server wrote
//! it.
//! Resources, prompts and completion are refused (`-32601`, with the flag that passes them)
//! unless `--allow-method` passes them; sampling and elicitation are not offered. Protocol
//! versions: 2025-11-25 and 2025-06-18.
//!
//! What an upstream says on its own reaches the agents in two cases. An allowed `tools/call`
//! that carries `params._meta.progressToken` is answered with an SSE stream: the upstream's
//! progress for that call (routed by a token the upstream was given, never the client's: see
//! `upstream`), then the response. And an upstream's `tools/list_changed` goes to the GET
//! stream of every session whose agent can see one of that upstream's tools: sessions (see
//! `http/sessions.rs`) are issued with the answer to `initialize`, bound to the agent of its
//! credential, and optional (a request without one is served statelessly).

use crate::relay::{
    decision_meta, explanation, family_allowed, is_revocation, method_allowed, method_refused,
    request_line, DenyAs, SESSION_ENDED,
};
use crate::upstream::{Answer, Client, Progress};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode,
    Implementation, InitializeResult, ListToolsResult, MetaObject, PaginatedRequestParams,
    ProtocolVersion, ServerCapabilities, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sessions::{Refused, Sessions, SESSION_HEADER};
use std::borrow::Cow;
use std::sync::Arc;
use tollgate_host::audit_log::AuditStore;
use tollgate_host::clock::Clock;
use tollgate_host::gate::Gate;
use tollgate_host::protocol::parse_strict;
use tollgate_host::store::StateStore;

mod sessions;

/// The protocol versions the HTTP gateway speaks, newest first.
const VERSIONS: [ProtocolVersion; 2] =
    [ProtocolVersion::V_2025_11_25, ProtocolVersion::V_2025_06_18];

/// How the gateway reaches an upstream MCP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A command started by `sh -c`, spoken to over its stdio.
    Command(String),
    /// A Streamable HTTP endpoint (`http://`; this build has no TLS client).
    Url(String),
}

/// An upstream MCP server as the operator names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// The prefix of its tools: `NAME.tool`.
    pub name: String,
    pub target: Target,
}

impl std::str::FromStr for UpstreamSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<UpstreamSpec, String> {
        let (name, target) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}` is not NAME=COMMAND or NAME=URL"))?;
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(format!(
                "`{name}` is not an upstream name: use letters, digits, `_` and `-`"
            ));
        }
        if target.starts_with("https://") {
            return Err(format!(
                "upstream `{name}` is an https URL: this gateway speaks plain http to its upstreams (keep them on a private network or loopback), or run the server as a command"
            ));
        }
        if target.trim().is_empty() {
            return Err(format!("upstream `{name}` has no command or URL"));
        }
        let target = if target.starts_with("http://") {
            Target::Url(target.to_owned())
        } else {
            Target::Command(target.to_owned())
        };
        Ok(UpstreamSpec {
            name: name.to_owned(),
            target,
        })
    }
}

struct Upstream {
    name: String,
    client: Client,
}

struct Shared<C, S, A>
where
    C: 'static,
    S: 'static,
    A: 'static,
{
    gate: &'static Gate<'static, C, S, A>,
    upstreams: Vec<Upstream>,
    sessions: Arc<Sessions>,
    deny_as: DenyAs,
    allow_methods: Vec<String>,
}

/// An allowed `tools/call`, ready for its upstream.
struct Forward {
    /// The upstream's index in [`Shared::upstreams`].
    upstream: usize,
    /// The call's params as the upstream gets them: its own tool name, paths in normal form.
    params: Map<String, Value>,
}

/// A `tools/call` after the gate: forwarded, or answered by the gateway.
enum Decided {
    Forward(Forward),
    Answer(Result<Box<RawValue>, ErrorData>),
}

/// The most progress notifications held for a client that reads slowly; more are dropped.
const PROGRESS_BUFFER: usize = 64;

/// What the gateway sends a session's GET stream when an upstream's tool list changes.
const TOOLS_CHANGED: &str = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;

/// The gateway's MCP server: one per request (stateless), all sharing the gate and the upstreams.
pub struct Handler<C: 'static, S: 'static, A: 'static> {
    shared: Arc<Shared<C, S, A>>,
}

impl<C, S, A> std::fmt::Debug for Handler<C, S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .shared
            .upstreams
            .iter()
            .map(|u| u.name.as_str())
            .collect();
        f.debug_struct("Handler")
            .field("upstreams", &names)
            .finish_non_exhaustive()
    }
}

impl<C, S, A> Clone for Handler<C, S, A> {
    fn clone(&self) -> Self {
        Handler {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The credential of an HTTP request: the bearer token, base64-decoded.
fn bearer(headers: &axum::http::HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
}

fn request_credential(context: &RequestContext<RoleServer>) -> Result<Vec<u8>, ErrorData> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| bearer(&parts.headers))
        .ok_or_else(|| {
            ErrorData::invalid_request(
                "no credential: send `Authorization: Bearer <credential>`",
                None,
            )
        })
}

impl<C, S, A> Handler<C, S, A>
where
    C: Clock + Send + Sync + 'static,
    S: StateStore + Send + 'static,
    A: AuditStore + Send + 'static,
{
    fn upstream(&self, tool: &str) -> Option<(&Upstream, String)> {
        let (index, rest) = self.upstream_index(tool)?;
        Some((self.shared.upstreams.get(index)?, rest))
    }

    /// The upstream a policy tool name (`NAME.tool`) names, by its index, and the tool's name
    /// there.
    fn upstream_index(&self, tool: &str) -> Option<(usize, String)> {
        let (name, rest) = tool.split_once('.')?;
        let index = self.shared.upstreams.iter().position(|u| u.name == name)?;
        Some((index, rest.to_owned()))
    }

    async fn tools(&self, agent: &str) -> Result<Vec<Tool>, ErrorData> {
        let visible = self.shared.gate.visible_tools(agent);
        let mut tools = Vec::new();
        for upstream in &self.shared.upstreams {
            let listed = upstream.client.list_tools().await.map_err(|e| {
                ErrorData::internal_error(
                    format!("upstream `{}` did not list its tools: {e}", upstream.name),
                    None,
                )
            })?;
            for mut tool in listed {
                let name = format!("{}.{}", upstream.name, tool.name);
                if visible.contains(&name.as_str()) {
                    tool.name = Cow::Owned(name);
                    tools.push(tool);
                }
            }
        }
        Ok(tools)
    }
}

impl<C, S, A> ServerHandler for Handler<C, S, A>
where
    C: Clock + Send + Sync + 'static,
    S: StateStore + Send + 'static,
    A: AuditStore + Send + 'static,
{
    fn get_info(&self) -> InitializeResult {
        let names: Vec<&str> = self
            .shared
            .upstreams
            .iter()
            .map(|u| u.name.as_str())
            .collect();
        let allowed = |family| family_allowed(&self.shared.allow_methods, family);
        // A session's GET stream carries `tools/list_changed` (see `sessions`).
        let mut capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        if allowed("resources") {
            capabilities.resources = Some(Default::default());
        }
        if allowed("prompts") {
            capabilities.prompts = Some(Default::default());
        }
        if method_allowed(&self.shared.allow_methods, "completion/complete") {
            capabilities.completions = Some(Default::default());
        }
        InitializeResult::new(capabilities)
            .with_server_info(Implementation::new("tollgate-gateway", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "The tools of {} behind a Tollgate policy: every call is decided and audited before it runs; a denial says why.",
                names.join(", ")
            ))
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(&VERSIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let credential = request_credential(&context)?;
        let agent = self
            .shared
            .gate
            .credential_agent(&credential)
            .map_err(|reason| {
                ErrorData::invalid_request(
                    format!("the credential is refused: {}", reason.as_str()),
                    None,
                )
            })?;
        Ok(ListToolsResult::with_all_items(self.tools(&agent).await?))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let credential = request_credential(&context)?;
        let params = match serde_json::to_value(&request) {
            Ok(Value::Object(params)) => params,
            _ => return Err(ErrorData::invalid_params("unreadable `tools/call`", None)),
        };
        // `rmcp` reads the request's `_meta` into the context.
        let token = progress_token(&params).or_else(|| {
            context
                .meta
                .get_progress_token()
                .and_then(|token| serde_json::to_value(token).ok())
        });
        let result = match self.decide_call(&credential, params) {
            Decided::Answer(answer) => answer,
            Decided::Forward(forward) => match token {
                None => self.forward(forward, None).await,
                Some(token) => {
                    // The upstream's progress goes out through `rmcp`'s service, which answers
                    // with an SSE stream once a notification is sent before the response.
                    let (sender, mut receiver) =
                        tokio::sync::mpsc::channel::<String>(PROGRESS_BUFFER);
                    let peer = context.peer.clone();
                    let relayed = tokio::spawn(async move {
                        while let Some(message) = receiver.recv().await {
                            let params = serde_json::from_str::<Value>(&message)
                                .ok()
                                .and_then(|mut message| message.get_mut("params").map(Value::take))
                                .and_then(|params| serde_json::from_value(params).ok());
                            if let Some(params) = params {
                                let _ = peer.notify_progress(params).await;
                            }
                        }
                    });
                    let answer = self
                        .forward(forward, Some(Progress { token, sender }))
                        .await;
                    // Its route is closed: every progress notification is out before the result.
                    let _ = relayed.await;
                    answer
                }
            },
        }?;
        serde_json::from_str::<CallToolResult>(result.get())
            .map(CallToolResponse::Complete)
            .map_err(|e| ErrorData::internal_error(format!("an unreadable tool result: {e}"), None))
    }
}

impl<C, S, A> Handler<C, S, A>
where
    C: Clock + Send + Sync + 'static,
    S: StateStore + Send + 'static,
    A: AuditStore + Send + 'static,
{
    /// Forwards an allowed call to its upstream; with `progress`, the upstream's progress for it
    /// goes there while it runs.
    async fn forward(
        &self,
        forward: Forward,
        progress: Option<Progress>,
    ) -> Result<Box<RawValue>, ErrorData> {
        let Some(upstream) = self.shared.upstreams.get(forward.upstream) else {
            return Err(ErrorData::internal_error("no such upstream", None));
        };
        let failed = |why: String| {
            ErrorData::internal_error(format!("upstream `{}` failed: {why}", upstream.name), None)
        };
        match upstream
            .client
            .call_tool(&forward.params, progress)
            .await
            .map_err(failed)?
        {
            Answer::Result(result) => Ok(result),
            Answer::Error(error) => Err(serde_json::from_str::<ErrorData>(error.get())
                .unwrap_or_else(|e| failed(format!("an unreadable error: {e}")))),
        }
    }

    /// A `tools/call` decided and audited: the call to forward when it is allowed, else the
    /// answer (a denial, an unknown tool, the end of a revoked agent).
    fn decide_call(&self, credential: &[u8], mut params: Map<String, Value>) -> Decided {
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let line = request_line(credential, name.clone(), params.get("arguments"));
        let name = name.unwrap_or_default();
        // Decided and audited: the record is in the log before anything is forwarded. On this
        // task: a decision takes microseconds, and handing it to a blocking thread
        // (`block_in_place`) cost more than that (about 45 µs a call, measured); with
        // `--sync every` the worker waits for the log's fsync.
        let gate = self.shared.gate;
        let decision = gate.decide_request(&line);
        let target = self.upstream_index(&name);
        if decision.allowed {
            let Some((upstream, tool)) = target else {
                return Decided::Answer(Err(ErrorData::invalid_params(
                    format!("unknown tool: `{name}`"),
                    None,
                )));
            };
            params.insert("name".to_owned(), Value::String(tool));
            // The server gets the paths the gate decided: their normal form (a list whole).
            if let Some(Value::Object(arguments)) = params.get_mut("arguments") {
                for (name, decided) in &decision.normalized {
                    tollgate_host::protocol::set_argument(arguments, name, decided.clone());
                }
            }
            return Decided::Forward(Forward { upstream, params });
        }
        Decided::Answer(self.refusal(&decision, &line, &name))
    }

    /// The answer to a call the gate did not allow.
    fn refusal(
        &self,
        decision: &tollgate_host::protocol::DecisionLine,
        line: &tollgate_host::protocol::RequestLine,
        name: &str,
    ) -> Result<Box<RawValue>, ErrorData> {
        let gate = self.shared.gate;
        let meta = decision_meta(decision);
        if is_revocation(decision) {
            // Its GET streams close with it.
            self.shared.sessions.end_agent(&decision.agent);
            return Err(ErrorData::new(
                ErrorCode(SESSION_ENDED as i32),
                format!(
                    "agent `{}` is revoked: the tollgate gateway refuses it from now on ({})",
                    decision.agent,
                    explanation(decision)
                ),
                Some(meta),
            ));
        }
        let visible =
            decision.agent_verified && gate.visible_tools(&decision.agent).contains(&name);
        if !visible && line.refused.is_none() && decision.agent_verified {
            return Err(ErrorData::invalid_params(
                format!("unknown tool: `{name}`"),
                Some(serde_json::json!({ "tollgate/seq": decision.seq })),
            ));
        }
        let text = explanation(decision);
        match self.shared.deny_as {
            DenyAs::Result => {
                let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
                if let Value::Object(meta) = meta {
                    result.meta = Some(MetaObject(meta));
                }
                serde_json::value::to_raw_value(&result).map_err(|e| {
                    ErrorData::internal_error(format!("cannot write the denial: {e}"), None)
                })
            }
            DenyAs::Error => Err(ErrorData::new(
                ErrorCode(crate::relay::DENIED as i32),
                text,
                Some(meta),
            )),
        }
    }

    /// A POST the gateway answers itself, without `rmcp`'s typed model: one `tools/call`
    /// request. `None` for anything else, which `rmcp`'s service handles.
    async fn relay(&self, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
        let message = std::str::from_utf8(body)
            .ok()
            .and_then(|text| parse_strict(text).ok());
        let Some(Value::Object(mut message)) = message else {
            return None;
        };
        let id = message
            .get("id")
            .filter(|id| id.is_string() || id.is_i64() || id.is_u64())?
            .clone();
        let method = message.get("method").and_then(Value::as_str)?.to_owned();
        let plain = message.get("jsonrpc").and_then(Value::as_str) == Some("2.0")
            && !message.contains_key("result")
            && !message.contains_key("error");
        let params = match message.remove("params") {
            Some(Value::Object(params)) => params,
            None if method != "tools/call" => Map::new(),
            _ => return None,
        };
        // A request that negotiates its protocol version in `_meta` is `rmcp`'s to judge.
        let negotiates = params
            .get("_meta")
            .and_then(Value::as_object)
            .is_some_and(|meta| {
                meta.keys()
                    .any(|key| key.starts_with("io.modelcontextprotocol/"))
            });
        if !plain || negotiates {
            return None;
        }
        let answer = match method.as_str() {
            "tools/call" => {
                let token = progress_token(&params);
                match self.decide_call(&bearer(headers)?, params) {
                    Decided::Answer(answer) => answer,
                    Decided::Forward(forward) => match token {
                        Some(token) => return Some(self.stream_call(id, forward, token)),
                        None => self.forward(forward, None).await,
                    },
                }
            }
            // The gateway's own MCP handling: `rmcp`'s service.
            "initialize" | "ping" | "tools/list" | "logging/setLevel" => return None,
            _ if method_allowed(&self.shared.allow_methods, &method) => {
                self.pass(&method, params).await
            }
            _ => return Some(json_response(method_refused(&id, &method).into_bytes())),
        };
        Some(json_response(response_message(&id, answer)?))
    }

    /// Answers an allowed call that asked for progress with an SSE stream: each of the
    /// upstream's progress notifications for it (with the client's token), then the response,
    /// then the end of the stream. The call runs on a task of its own: a client that goes away
    /// does not cancel it (the transport says so; a client cancels with
    /// `notifications/cancelled`).
    fn stream_call(&self, id: Value, forward: Forward, token: Value) -> Response {
        let (sender, receiver) = tokio::sync::mpsc::channel(PROGRESS_BUFFER);
        let progress = Progress {
            token,
            sender: sender.clone(),
        };
        let handler = self.clone();
        tokio::spawn(async move {
            let answer = handler.forward(forward, Some(progress)).await;
            if let Some(message) = response_message(&id, answer) {
                // Waits for room: the response is never dropped, progress may be.
                let _ = sender
                    .send(String::from_utf8_lossy(&message).into_owned())
                    .await;
            }
        });
        sse_response(receiver)
    }

    /// The GET stream of a session: what the gateway sends the client on its own.
    fn listen(&self, headers: &HeaderMap, agent: &str, session: Option<&str>) -> Response {
        if !loopback_host(headers) {
            return refuse(
                StatusCode::FORBIDDEN,
                "the `Host` of the request is not a loopback name: the gateway answers `localhost`, `127.0.0.1` and `::1` only (put a proxy of your own in front to expose it)",
            );
        }
        if !accepts(headers, "text/event-stream") {
            return refuse(
                StatusCode::NOT_ACCEPTABLE,
                "a GET opens an SSE stream: send `Accept: text/event-stream`",
            );
        }
        let Some(session) = session else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "a GET stream belongs to a session: send the `Mcp-Session-Id` that `initialize` answered with",
            );
        };
        match self.shared.sessions.listen(session, agent) {
            Ok(receiver) => sse_response(receiver),
            Err(Refused::Unknown) => unknown_session(),
            Err(Refused::Busy) => refuse(
                StatusCode::CONFLICT,
                "this session has a GET stream open already: one stream a session (close it, or use another session)",
            ),
        }
    }

    /// An answer to a successful `initialize`, with a new session for `agent` in
    /// `Mcp-Session-Id`. Any other answer passes unchanged.
    async fn with_session(&self, agent: &str, response: Response) -> Response {
        let json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"));
        if response.status() != StatusCode::OK || !json {
            return response;
        }
        let (mut parts, body) = response.into_parts();
        let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the answer to `initialize` could not be read",
            );
        };
        let initialized = serde_json::from_slice::<Value>(&body)
            .ok()
            .is_some_and(|answer| answer.get("result").is_some_and(Value::is_object));
        let session = initialized
            .then(|| self.shared.sessions.open(agent))
            .flatten();
        if let Some(session) = session {
            if let Ok(value) = header::HeaderValue::from_str(&session) {
                parts.headers.insert(SESSION_HEADER, value);
            }
        }
        Response::from_parts(parts, Body::from(body))
    }

    /// A request of a method `--allow-method` lets pass, relayed to the upstream it names: a
    /// prompt's `NAME.` prefix names its upstream (and is removed); a list (`resources/list`,
    /// `prompts/list`, …) is every upstream's, page by page, prompts named `NAME.prompt`; any
    /// other request (`resources/read` of a URI, …) goes to each upstream in turn until one
    /// answers it with a result.
    async fn pass(
        &self,
        method: &str,
        mut params: Map<String, Value>,
    ) -> Result<Box<RawValue>, ErrorData> {
        let upstreams = &self.shared.upstreams;
        let failed = |upstream: &Upstream, why: String| {
            ErrorData::internal_error(format!("upstream `{}` failed: {why}", upstream.name), None)
        };
        let as_error = |upstream: &Upstream, error: Box<RawValue>| {
            serde_json::from_str::<ErrorData>(error.get())
                .unwrap_or_else(|e| failed(upstream, format!("an unreadable error: {e}")))
        };
        let named = params
            .get("name")
            .and_then(Value::as_str)
            .and_then(|name| self.upstream(name));
        if let Some((upstream, name)) = named {
            params.insert("name".to_owned(), Value::String(name));
            return match upstream
                .client
                .request(method, &params)
                .await
                .map_err(|why| failed(upstream, why))?
            {
                Answer::Result(result) => Ok(result),
                Answer::Error(error) => Err(as_error(upstream, error)),
            };
        }
        if method.ends_with("/list") {
            let mut member = None;
            let mut items = Vec::new();
            for upstream in upstreams {
                let mut page = Map::new();
                loop {
                    let result = match upstream
                        .client
                        .request(method, &page)
                        .await
                        .map_err(|why| failed(upstream, why))?
                    {
                        Answer::Result(result) => result,
                        Answer::Error(error) => return Err(as_error(upstream, error)),
                    };
                    let Ok(Value::Object(mut result)) = serde_json::from_str(result.get()) else {
                        return Err(failed(
                            upstream,
                            format!("a `{method}` result that is not an object"),
                        ));
                    };
                    let list = result.iter_mut().find(|(_, value)| value.is_array());
                    if let Some((name, Value::Array(list))) = list {
                        member.get_or_insert_with(|| name.clone());
                        for mut item in list.drain(..) {
                            if method == "prompts/list" {
                                if let Some(Value::String(prompt)) = item.get_mut("name") {
                                    *prompt = format!("{}.{prompt}", upstream.name);
                                }
                            }
                            items.push(item);
                        }
                    }
                    match result.get("nextCursor") {
                        Some(cursor @ Value::String(_)) => {
                            page.insert("cursor".to_owned(), cursor.clone());
                        }
                        _ => break,
                    }
                }
            }
            let mut result = Map::new();
            result.insert(
                member.unwrap_or_else(|| {
                    method
                        .trim_end_matches("/list")
                        .rsplit('/')
                        .next()
                        .unwrap_or("items")
                        .to_owned()
                }),
                Value::Array(items),
            );
            return serde_json::value::to_raw_value(&result).map_err(|e| {
                ErrorData::internal_error(format!("cannot write the list: {e}"), None)
            });
        }
        let mut last = ErrorData::new(
            ErrorCode(-32601),
            format!("no upstream answers `{method}`"),
            None,
        );
        for upstream in upstreams {
            match upstream.client.request(method, &params).await {
                Ok(Answer::Result(result)) => return Ok(result),
                Ok(Answer::Error(error)) => last = as_error(upstream, error),
                Err(why) => last = failed(upstream, why),
            }
        }
        Err(last)
    }
}

fn json_response(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Whether a request is one the gateway may answer without `rmcp`'s service: every check that
/// service makes before handling a `tools/call` passes on its face (a loopback `Host`, no
/// `Origin`, both media types accepted, a JSON body, a protocol version the gateway speaks).
/// Anything less plain goes to the service, which answers it as it would have.
fn plain(request: &axum::http::request::Parts) -> bool {
    let headers = &request.headers;
    let text = |name| headers.get(name).and_then(|value| value.to_str().ok());
    let host = text(header::HOST)
        .and_then(|host| host.parse::<axum::http::uri::Authority>().ok())
        .is_some_and(|host| matches!(host.host(), "localhost" | "127.0.0.1"));
    let accepts = |wanted: &str| accepts(headers, wanted);
    let json_body = text(header::CONTENT_TYPE).is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
    });
    let version = text(header::HeaderName::from_static("mcp-protocol-version"))
        .is_none_or(|version| VERSIONS.iter().any(|known| known.as_str() == version));
    request.method == Method::POST
        && request.uri.path() == "/mcp"
        && host
        && !headers.contains_key(header::ORIGIN)
        && accepts("application/json")
        && accepts("text/event-stream")
        && json_body
        && version
}

/// The largest request body the gateway reads (as `rmcp`'s service).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Whether an `Accept` header of the request lists this media type.
fn accepts(headers: &HeaderMap, wanted: &str) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value.split(',').any(|entry| {
                entry
                    .split(';')
                    .next()
                    .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(wanted))
            })
        })
    })
}

/// Whether the request's `Host` is a loopback name (as `rmcp`'s service requires of the
/// requests it handles: DNS-rebinding protection).
fn loopback_host(headers: &HeaderMap) -> bool {
    headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .and_then(|host| host.parse::<axum::http::uri::Authority>().ok())
        .is_some_and(|host| matches!(host.host(), "localhost" | "127.0.0.1" | "[::1]"))
}

/// A refusal before any MCP handling: a status and a line saying why.
fn refuse(status: StatusCode, why: &str) -> Response {
    (status, format!("{why}\n")).into_response()
}

fn unknown_session() -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        "unknown session: it ended (deleted, the agent revoked, the gateway restarted) or is not this agent's; start a new one with `initialize`",
    )
}

/// The client's `params._meta.progressToken` (a string or an integer, as the protocol says).
fn progress_token(params: &Map<String, Value>) -> Option<Value> {
    params
        .get("_meta")?
        .get("progressToken")
        .filter(|token| token.is_string() || token.is_i64() || token.is_u64())
        .cloned()
}

/// A JSON-RPC response to request `id`.
fn response_message(id: &Value, answer: Result<Box<RawValue>, ErrorData>) -> Option<Vec<u8>> {
    let mut body = br#"{"jsonrpc":"2.0","id":"#.to_vec();
    serde_json::to_writer(&mut body, id).ok()?;
    match answer {
        Ok(result) => {
            body.extend_from_slice(br#","result":"#);
            body.extend_from_slice(result.get().as_bytes());
        }
        Err(error) => {
            body.extend_from_slice(br#","error":"#);
            serde_json::to_writer(&mut body, &error).ok()?;
        }
    }
    body.push(b'}');
    Some(body)
}

/// One SSE event carrying one JSON-RPC message. A message is one line as the gateway relays
/// it; should it hold a line break, each line is a `data:` field of its own (the client joins
/// them with the line break, which JSON reads as whitespace).
fn sse_event(message: &str) -> Vec<u8> {
    let mut event = b"event: message\n".to_vec();
    for line in message.split('\n') {
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(line.trim_end_matches('\r').as_bytes());
        event.push(b'\n');
    }
    event.push(b'\n');
    event
}

/// How often an SSE stream with nothing to say sends a comment, so that a client that went
/// away is noticed (the write fails) and proxies keep the connection.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// An SSE response whose events are the messages `receiver` gets; it ends when every sender is
/// gone. Events carry no `id`: the gateway keeps no messages to replay, so a client has no
/// `Last-Event-ID` to resume from.
fn sse_response(receiver: tokio::sync::mpsc::Receiver<String>) -> Response {
    let events = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let event = match tokio::time::timeout(KEEP_ALIVE, receiver.recv()).await {
            Ok(Some(message)) => sse_event(&message),
            Ok(None) => return None,
            Err(_) => b": keep-alive\n\n".to_vec(),
        };
        Some((
            Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(event)),
            receiver,
        ))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

/// Whether a body is an `initialize` request (read no further than its method).
fn is_initialize(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Method<'a> {
        #[serde(default, borrow)]
        method: Option<Cow<'a, str>>,
    }
    serde_json::from_slice::<Method<'_>>(body)
        .is_ok_and(|message| message.method.as_deref() == Some("initialize"))
}

/// The gateway's own handling of HTTP before `rmcp`'s service: sessions (a request that names
/// one must be its agent's; `GET` opens a session's stream, `DELETE` ends it; the answer to
/// `initialize` issues one) and a plain `tools/call`, answered without `rmcp`'s service (see
/// [`Handler::relay`]). Everything else is handed on.
async fn relay<C, S, A>(
    State(handler): State<Handler<C, S, A>>,
    request: Request,
    next: Next,
) -> Response
where
    C: Clock + Send + Sync + 'static,
    S: StateStore + Send + 'static,
    A: AuditStore + Send + 'static,
{
    if request.uri().path() != "/mcp" {
        return next.run(request).await;
    }
    // The agent `admit` read from the credential (one signature check a request).
    let Some(Admitted(agent)) = request.extensions().get::<Admitted>().cloned() else {
        return next.run(request).await;
    };
    let session = match request.headers().get(SESSION_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(session)) => Some(session.to_owned()),
        Some(Err(_)) => return unknown_session(),
    };
    if request.method() == Method::GET {
        return handler.listen(request.headers(), &agent, session.as_deref());
    }
    if let Some(session) = &session {
        if request.method() == Method::DELETE {
            return if handler.shared.sessions.close(session, &agent) {
                StatusCode::OK.into_response()
            } else {
                unknown_session()
            };
        }
        if !handler.shared.sessions.holds(session, &agent) {
            return unknown_session();
        }
    }
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("a request body of more than {MAX_BODY} bytes"),
        );
    };
    if plain(&parts) {
        if let Some(response) = handler.relay(&parts.headers, &body).await {
            return response;
        }
    }
    let initialize = session.is_none() && is_initialize(&body);
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if initialize {
        return handler.with_session(&agent, response).await;
    }
    response
}

/// The agent of a request's credential, as `admit` read it.
#[derive(Clone)]
struct Admitted(String);

/// Refuses, before any MCP handling, a request without a usable credential (`401`) or from a
/// revoked agent (`403`); hands the others on with their agent ([`Admitted`]).
async fn admit<C, S, A>(
    State(gate): State<&'static Gate<'static, C, S, A>>,
    request: Request,
    next: Next,
) -> Response
where
    C: Clock + Send + Sync + 'static,
    S: StateStore + Send + 'static,
    A: AuditStore + Send + 'static,
{
    let refuse = |status: StatusCode, why: String| {
        let mut response = (status, format!("{why}\n")).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"tollgate\""),
            );
        }
        response
    };
    let Some(credential) = bearer(request.headers()) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "no credential: send `Authorization: Bearer <credential>` (the text `tollgate issue` writes)".to_owned(),
        );
    };
    match gate.credential_agent(&credential) {
        Ok(agent) if gate.is_revoked(&agent) => {
            refuse(StatusCode::FORBIDDEN, format!("agent `{agent}` is revoked"))
        }
        Ok(agent) => {
            let mut request = request;
            request.extensions_mut().insert(Admitted(agent));
            next.run(request).await
        }
        Err(reason) => refuse(
            StatusCode::UNAUTHORIZED,
            format!("the credential is refused: {}", reason.as_str()),
        ),
    }
}

/// How the HTTP gateway runs.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub listen: std::net::SocketAddr,
    pub upstreams: Vec<UpstreamSpec>,
    pub deny_as: DenyAs,
    /// Methods passed beyond tools (exact names, or a family as `resources/*`); anything else
    /// is refused with `-32601`.
    pub allow_methods: Vec<String>,
}

/// Starts the upstreams, then serves agents on `options.listen` until `shutdown` resolves; the
/// upstreams are stopped after. `ready` is called with the bound address once it accepts.
pub async fn serve<C, S, A>(
    gate: &'static Gate<'static, C, S, A>,
    options: HttpOptions,
    ready: impl FnOnce(std::net::SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    C: Clock + Send + Sync + 'static,
    S: StateStore + Send + 'static,
    A: AuditStore + Send + 'static,
{
    let sessions = Arc::new(Sessions::default());
    let mut upstreams = Vec::new();
    for spec in &options.upstreams {
        // An upstream's tool list changed: every session whose agent could see one of its
        // tools lists again (and the list is filtered again). Other agents' lists cannot
        // change, so they are not told.
        let tools_changed: crate::upstream::ToolsChanged = {
            let sessions = Arc::clone(&sessions);
            let prefix = format!("{}.", spec.name);
            Arc::new(move || {
                sessions.notify(TOOLS_CHANGED, |agent| {
                    !gate.is_revoked(agent)
                        && gate
                            .visible_tools(agent)
                            .iter()
                            .any(|tool| tool.starts_with(&prefix))
                });
            })
        };
        let client = match &spec.target {
            Target::Command(command) => Client::command(&spec.name, command, tools_changed).await?,
            Target::Url(url) => Client::url(&spec.name, url, tools_changed).await?,
        };
        upstreams.push(Upstream {
            name: spec.name.clone(),
            client,
        });
    }
    let shared = Arc::new(Shared {
        gate,
        upstreams,
        sessions,
        deny_as: options.deny_as,
        allow_methods: options.allow_methods,
    });
    let handler = Handler {
        shared: Arc::clone(&shared),
    };
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        // Stateless, JSON answers (an SSE stream only when a call's progress is relayed): each
        // POST is answered in its own HTTP response, and each request names its agent anyway.
        // The sessions that carry `tools/list_changed` are the `relay` layer's own.
        {
            let mut config = StreamableHttpServerConfig::default();
            config.legacy_session_mode = false;
            config.json_response = true;
            config
        },
    );
    let router = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(
            Handler {
                shared: Arc::clone(&shared),
            },
            relay::<C, S, A>,
        ))
        .layer(axum::middleware::from_fn_with_state(gate, admit::<C, S, A>));
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    ready(listener.local_addr()?);
    // Answers go out as several writes (headers, SSE events): without `TCP_NODELAY`, Nagle's
    // algorithm holds the last one for the client's delayed ACK, 40 ms a call.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    if let Ok(shared) = Arc::try_unwrap(shared) {
        for upstream in shared.upstreams {
            upstream.client.stop().await;
        }
    }
    Ok(())
}

/// Runs [`serve`] on a runtime of its own until the process is interrupted (Ctrl-C or
/// `SIGTERM`).
pub fn run<C, S, A>(
    gate: &'static Gate<'static, C, S, A>,
    options: HttpOptions,
    ready: impl FnOnce(std::net::SocketAddr),
) -> std::io::Result<()>
where
    C: Clock + Send + Sync + 'static,
    S: StateStore + Send + 'static,
    A: AuditStore + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let shutdown = async {
            let mut terminate =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(signal) => signal,
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                        return;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        };
        serve(gate, options, ready, shutdown).await
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test should fail loudly")]
    use super::{progress_token, sse_event, Target, UpstreamSpec};
    use serde_json::{json, Value};

    #[test]
    fn an_sse_event_is_one_message_whatever_its_lines() {
        assert_eq!(
            sse_event(r#"{"a":1}"#),
            b"event: message\ndata: {\"a\":1}\n\n".to_vec()
        );
        // A line break inside a message cannot end the event early.
        assert_eq!(
            sse_event("{\"a\":\r\n1}"),
            b"event: message\ndata: {\"a\":\ndata: 1}\n\n".to_vec()
        );
    }

    #[test]
    fn a_progress_token_is_a_string_or_an_integer() {
        let token = |meta: Value| match json!({ "name": "t", "_meta": meta }) {
            Value::Object(params) => progress_token(&params),
            _ => None,
        };
        assert_eq!(token(json!({"progressToken": "a"})), Some(json!("a")));
        assert_eq!(token(json!({"progressToken": 7})), Some(json!(7)));
        for refused in [
            json!({"progressToken": true}),
            json!({"progressToken": 1.5}),
            json!({"progressToken": null}),
            json!({}),
            json!(3),
        ] {
            assert_eq!(token(refused.clone()), None, "{refused}");
        }
    }

    #[test]
    fn upstreams_are_commands_or_plain_http_urls() {
        let command: UpstreamSpec = "fs=npx -y server /tmp".parse().unwrap();
        assert_eq!(
            command.target,
            Target::Command("npx -y server /tmp".to_owned())
        );
        let url: UpstreamSpec = "remote=http://10.0.0.2:3001/mcp".parse().unwrap();
        assert_eq!(
            url.target,
            Target::Url("http://10.0.0.2:3001/mcp".to_owned())
        );
        for refused in ["no-equals", "=cmd", "bad name=cmd", "x=", "x=https://a/mcp"] {
            assert!(refused.parse::<UpstreamSpec>().is_err(), "{refused}");
        }
    }
}
