//! The Streamable HTTP gateway: one gateway, several upstream MCP servers, many agents.
//!
//! Built on `rmcp`: its Streamable HTTP server transport (stateless, JSON answers; origin and
//! host checks) faces the agents, and its client — over a child process's stdio, or over plain
//! HTTP to an upstream's URL — faces each upstream. The gateway is an MCP server of its own whose
//! tools are the upstreams' tools, named `NAME.tool`.
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
//! Resources, prompts, sampling and elicitation are not offered (the gateway's capabilities list
//! tools only). Protocol versions: 2025-11-25 and 2025-06-18.

use crate::relay::{
    decision_meta, explanation, is_revocation, request_line, DenyAs, SESSION_ENDED,
};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode,
    Implementation, InitializeResult, ListToolsResult, MetaObject, PaginatedRequestParams,
    ProtocolVersion, ServerCapabilities, Tool,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{
    StreamableHttpClientTransport, StreamableHttpServerConfig, StreamableHttpService,
    TokioChildProcess,
};
use rmcp::{ErrorData, RoleClient, RoleServer, ServerHandler, ServiceExt};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;
use tollgate_host::audit_log::AuditStore;
use tollgate_host::clock::Clock;
use tollgate_host::gate::Gate;
use tollgate_host::store::StateStore;

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
    client: RunningService<RoleClient, ()>,
}

struct Shared<C, S, A>
where
    C: 'static,
    S: 'static,
    A: 'static,
{
    gate: &'static Gate<'static, C, S, A>,
    upstreams: Vec<Upstream>,
    deny_as: DenyAs,
}

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
        let (name, rest) = tool.split_once('.')?;
        let upstream = self.shared.upstreams.iter().find(|u| u.name == name)?;
        Some((upstream, rest.to_owned()))
    }

    async fn tools(&self, agent: &str) -> Result<Vec<Tool>, ErrorData> {
        let visible = self.shared.gate.visible_tools(agent);
        let mut tools = Vec::new();
        for upstream in &self.shared.upstreams {
            let listed = upstream.client.peer().list_all_tools().await.map_err(|e| {
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
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
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
        let arguments = request.arguments.clone().map(Value::Object);
        let line = request_line(
            &credential,
            Some(request.name.to_string()),
            arguments.as_ref(),
        );
        // Decided and audited: the record is in the log before anything is forwarded.
        let gate = self.shared.gate;
        let decision = tokio::task::block_in_place(|| gate.decide_request(&line));
        let target = self.upstream(&request.name);
        if decision.allowed {
            let Some((upstream, tool)) = target else {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool: `{}`", request.name),
                    None,
                ));
            };
            let mut forwarded = request.clone();
            forwarded.name = Cow::Owned(tool);
            // The server gets the paths the gate decided: their normal form (a list whole).
            if let Some(arguments) = forwarded.arguments.as_mut() {
                for (name, decided) in &decision.normalized {
                    arguments.insert(name.clone(), decided.clone());
                }
            }
            let result = upstream
                .client
                .peer()
                .call_tool(forwarded)
                .await
                .map_err(|e| {
                    ErrorData::internal_error(
                        format!("upstream `{}` failed: {e}", upstream.name),
                        None,
                    )
                })?;
            return Ok(CallToolResponse::Complete(result));
        }
        let meta = decision_meta(&decision);
        if is_revocation(&decision) {
            return Err(ErrorData::new(
                ErrorCode(SESSION_ENDED as i32),
                format!(
                    "agent `{}` is revoked: the tollgate gateway refuses it from now on ({})",
                    decision.agent,
                    explanation(&decision)
                ),
                Some(meta),
            ));
        }
        let visible = decision.agent_verified
            && gate
                .visible_tools(&decision.agent)
                .contains(&request.name.as_ref());
        if !visible && line.refused.is_none() && decision.agent_verified {
            return Err(ErrorData::invalid_params(
                format!("unknown tool: `{}`", request.name),
                Some(serde_json::json!({ "tollgate/seq": decision.seq })),
            ));
        }
        let text = explanation(&decision);
        match self.shared.deny_as {
            DenyAs::Result => {
                let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
                if let Value::Object(meta) = meta {
                    result.meta = Some(MetaObject(meta));
                }
                Ok(CallToolResponse::Complete(result))
            }
            DenyAs::Error => Err(ErrorData::new(
                ErrorCode(crate::relay::DENIED as i32),
                text,
                Some(meta),
            )),
        }
    }
}

/// Refuses, before any MCP handling, a request without a usable credential (`401`) or from a
/// revoked agent (`403`).
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
        Ok(_) => next.run(request).await,
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
    let mut upstreams = Vec::new();
    for spec in &options.upstreams {
        let client = match &spec.target {
            Target::Command(command) => {
                let mut process = tokio::process::Command::new("sh");
                process.arg("-c").arg(format!("exec {command}"));
                let transport = TokioChildProcess::new(process).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot start upstream `{}`: {e}", spec.name),
                    )
                })?;
                ().serve(transport).await
            }
            Target::Url(url) => {
                let transport = StreamableHttpClientTransport::from_uri(url.as_str());
                ().serve(transport).await
            }
        }
        .map_err(|e| {
            std::io::Error::other(format!("upstream `{}` did not initialize: {e}", spec.name))
        })?;
        upstreams.push(Upstream {
            name: spec.name.clone(),
            client,
        });
    }
    let shared = Arc::new(Shared {
        gate,
        upstreams,
        deny_as: options.deny_as,
    });
    let handler = Handler {
        shared: Arc::clone(&shared),
    };
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        // Stateless, JSON answers: each POST is answered in its own HTTP response, without a
        // session to keep or an SSE stream to open (the gateway sends no request of its own to
        // the client, and each request names its agent anyway).
        {
            let mut config = StreamableHttpServerConfig::default();
            config.legacy_session_mode = false;
            config.json_response = true;
            config
        },
    );
    let router = axum::Router::new()
        .nest_service("/mcp", service)
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
            let _ = upstream.client.cancel().await;
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
    use super::{Target, UpstreamSpec};

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
