//! The relay: what the gateway does with each MCP message, as a pure step from one message to
//! the actions it causes (messages to either side, log lines, the end of the session).
//!
//! The transport (a child process over stdio, see [`crate::stdio`]) only moves lines; every
//! decision is here, so it is tested message by message without processes.
//!
//! What passes, by default:
//!
//! | from the client | |
//! |---|---|
//! | `initialize` | forwarded when the version is supported (a newer one is negotiated down); the client's capabilities for refused methods are removed |
//! | `ping`, `logging/setLevel` | forwarded |
//! | `tools/list` | forwarded; the result shows only tools the agent could ever be allowed |
//! | `tools/call` | decided by the gate, audited, and only when allowed forwarded |
//! | `notifications/initialized`, `notifications/progress`, `notifications/cancelled` | forwarded (a cancellation of a call denied here is dropped) |
//! | anything else | refused (`-32601`) unless allowed with `--allow-method` |
//!
//! | from the server | |
//! |---|---|
//! | responses | only to requests the client sent and the gateway forwarded |
//! | `ping` | forwarded |
//! | `roots/list`, `sampling/createMessage`, `elicitation/create`, anything else | refused unless allowed |
//! | `notifications/progress`, `notifications/message`, `notifications/cancelled`, `notifications/tools/list_changed` | forwarded |
//! | other notifications | dropped (logged) unless their method family is allowed |

use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use tollgate_host::audit_log::AuditStore;
use tollgate_host::clock::Clock;
use tollgate_host::gate::Gate;
use tollgate_host::protocol::{parse_strict, Arg, DecisionLine, RequestLine};
use tollgate_host::store::StateStore;
use tollgate_runtime::Reason;

/// The protocol versions the gateway speaks, newest first.
pub const SUPPORTED_VERSIONS: [&str; 2] = ["2025-11-25", "2025-06-18"];

/// The JSON-RPC error code of a call denied by policy (`--deny-as error`).
pub const DENIED: i64 = -32001;
/// The JSON-RPC error code for requests still open when the gateway ends the session.
pub const SESSION_ENDED: i64 = -32002;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INVALID_REQUEST: i64 = -32600;
const PARSE_ERROR: i64 = -32700;

/// How a denied `tools/call` is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyAs {
    /// A tool result with `isError: true` and the reason in words: the model reads why.
    Result,
    /// A JSON-RPC error (`-32001`) with the reason in `data`.
    Error,
}

/// How the relay runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The policy names the server's tools under this prefix: `PREFIX.tool`.
    pub prefix: Option<String>,
    pub deny_as: DenyAs,
    /// Methods allowed beyond the default set: exact names, or a family as `resources/*`.
    pub allow_methods: Vec<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            prefix: None,
            deny_as: DenyAs::Result,
            allow_methods: Vec::new(),
        }
    }
}

/// What the transport does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write this message (one line) to the client.
    ToClient(String),
    /// Write this message (one line) to the server.
    ToServer(String),
    /// Write this line to the gateway's log (standard error).
    Log(String),
    /// End the session: stop the server, close the gate, exit.
    End(Ending),
}

/// Why the gateway ended a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The agent was revoked (by its failure responses, or before): nothing more of it passes.
    Revoked,
    /// The audit log could not be written: the gate allows nothing more.
    AuditFailed,
}

/// A request the client sent and the gateway forwarded, by what its response needs.
#[derive(Clone, Copy, Debug)]
enum Pending {
    Initialize,
    ToolsList,
    Other,
}

/// The most ids of locally denied calls remembered (to drop their cancellations).
const DENIED_MEMORY: usize = 4_096;

/// One agent's session through the gateway.
pub struct Relay<'g, 't, C, S, A> {
    gate: &'g Gate<'t, C, S, A>,
    credential: Vec<u8>,
    agent: String,
    /// The policy names of the tools the agent could ever be allowed.
    visible: HashSet<String>,
    options: Options,
    /// Client requests forwarded to the server, by id (as JSON text).
    client_requests: HashMap<String, Pending>,
    /// Server requests forwarded to the client, by id.
    server_requests: HashSet<String>,
    /// Ids of calls denied here (their cancellations are dropped).
    denied: HashSet<String>,
    ended: bool,
}

impl<C, S, A> std::fmt::Debug for Relay<'_, '_, C, S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("agent", &self.agent)
            .field("visible", &self.visible.len())
            .field("open", &self.client_requests.len())
            .finish_non_exhaustive()
    }
}

fn key(id: &Value) -> String {
    id.to_string()
}

fn error(id: &Value, code: i64, message: &str, data: Option<Value>) -> String {
    let mut error = json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": error }).to_string()
}

/// A decision's reason in words a model (and a person) reads.
pub fn reason_words(reason: Reason) -> &'static str {
    match reason {
        Reason::NotPermitted => "no rule of the policy permits this call",
        Reason::Forbidden => "a rule of the policy forbids this call",
        Reason::RateLimited => "the agent's rate limit for this tool is reached",
        Reason::BudgetExhausted => "the agent's budget is spent",
        Reason::LoopGuard => "the same call was repeated too often",
        Reason::InvalidArgument => {
            "an argument is missing, not declared by the policy, or outside its declared range"
        }
        Reason::UnknownTool => "the policy does not know this tool",
        Reason::Malformed | Reason::InvalidRequest => "the call could not be read",
        Reason::Revoked | Reason::CredentialRevoked => "the agent is revoked",
        Reason::ChainRevoked => "an agent on the delegation chain is revoked",
        Reason::CredentialExpired => "the agent's credential has expired",
        Reason::CredentialNotYetValid => "the agent's credential is not valid yet",
        Reason::CredentialOutOfScope => "the agent's credential does not cover this tool",
        Reason::DelegationNotAllowed | Reason::DelegationDepth => {
            "the delegation chain is not allowed"
        }
        Reason::StateFull => "the gate cannot track more state for this agent",
        Reason::AuditUnavailable => "the decision could not be audited, so nothing is allowed",
        Reason::UntrustedField => "the call carries a field that is not the agent's to give",
        Reason::UnknownAgent
        | Reason::CredentialMalformed
        | Reason::CredentialForged
        | Reason::CredentialWrongPolicy
        | Reason::CredentialTtlExceeded
        | Reason::CredentialWrongEnvironment
        | Reason::CredentialWrongAudience => "the agent's credential is refused",
    }
}

pub(crate) fn is_revocation(decision: &DecisionLine) -> bool {
    decision.revoked_agent
        || matches!(
            decision.reason,
            Some(Reason::Revoked | Reason::CredentialRevoked | Reason::ChainRevoked)
        )
}

/// Whether an argument is, or holds, a number with a fraction (which is forwarded as decided).
fn holds_decimal(arg: &Arg) -> bool {
    match arg {
        Arg::Decimal(_) => true,
        Arg::List(items) => items.iter().any(holds_decimal),
        Arg::Object(fields) => fields.iter().any(|(_, field)| holds_decimal(field)),
        _ => false,
    }
}

/// An argument as the gate reads it (scalars, lists and objects at any depth; never `null`, no
/// dotted name: the host's rule, [`tollgate_host::protocol::arg_from_json`]), or why the
/// language cannot decide it.
fn argument(value: &Value) -> Result<Arg, String> {
    tollgate_host::protocol::arg_from_json(value)
}

/// Whether a protocol version is date-shaped and newer than every version the gateway speaks.
fn is_newer(version: &str) -> bool {
    let date_shaped = version.len() == 10
        && version.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    date_shaped && version > SUPPORTED_VERSIONS[0]
}

impl<'g, 't, C: Clock, S: StateStore, A: AuditStore> Relay<'g, 't, C, S, A> {
    /// A session for the agent the credential names; refused when the credential is (forged,
    /// for another policy, for an unknown agent). Expiry and revocation are decided per call.
    pub fn new(
        gate: &'g Gate<'t, C, S, A>,
        credential: Vec<u8>,
        options: Options,
    ) -> Result<Relay<'g, 't, C, S, A>, Reason> {
        let agent = gate.credential_agent(&credential)?;
        let visible = gate
            .visible_tools(&agent)
            .into_iter()
            .map(str::to_owned)
            .collect();
        Ok(Relay {
            gate,
            credential,
            agent,
            visible,
            options,
            client_requests: HashMap::new(),
            server_requests: HashSet::new(),
            denied: HashSet::new(),
            ended: false,
        })
    }

    /// The agent this session serves (from its credential).
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// Whether the session has ended; nothing passes after.
    pub fn ended(&self) -> bool {
        self.ended
    }

    fn policy_name(&self, tool: &str) -> String {
        match &self.options.prefix {
            Some(prefix) => format!("{prefix}.{tool}"),
            None => tool.to_owned(),
        }
    }

    fn allowed(&self, method: &str) -> bool {
        method_allowed(&self.options.allow_methods, method)
    }

    fn family_allowed(&self, family: &str) -> bool {
        family_allowed(&self.options.allow_methods, family)
    }

    /// A message from the client (one line, without its newline).
    pub fn from_client(&mut self, line: &[u8]) -> Vec<Action> {
        if self.ended {
            return Vec::new();
        }
        let message = match read(line) {
            Ok(message) => message,
            Err(why) => {
                return vec![
                    Action::Log(format!("refused a client message: {why}")),
                    Action::ToClient(error(&Value::Null, PARSE_ERROR, &why, None)),
                ]
            }
        };
        let Some(message) = message else {
            return vec![
                Action::Log(
                    "refused a client message that is not one JSON-RPC 2.0 message".to_owned(),
                ),
                Action::ToClient(error(
                    &Value::Null,
                    INVALID_REQUEST,
                    "not a JSON-RPC 2.0 message (batches are not supported)",
                    None,
                )),
            ];
        };
        match classify(&message) {
            Kind::Request { id, method } => self.client_request(id, method, &message, line),
            Kind::Notification { method } => self.client_notification(method, &message, line),
            Kind::Response { id } => {
                if self.server_requests.remove(&key(id)) {
                    vec![Action::ToServer(raw(line))]
                } else {
                    vec![Action::Log(format!(
                        "dropped a client response to unknown request id {id}"
                    ))]
                }
            }
            Kind::Invalid => vec![
                Action::Log("refused a client message that is not a JSON-RPC request, notification or response".to_owned()),
                Action::ToClient(error(
                    message.get("id").unwrap_or(&Value::Null),
                    INVALID_REQUEST,
                    "not a JSON-RPC 2.0 request, notification or response",
                    None,
                )),
            ],
        }
    }

    fn client_request(
        &mut self,
        id: &Value,
        method: &str,
        message: &Map<String, Value>,
        line: &[u8],
    ) -> Vec<Action> {
        match method {
            "initialize" => self.initialize(id, message),
            "tools/call" => self.call(id, message, line),
            "tools/list" => self.forward(id, Pending::ToolsList, line),
            "ping" | "logging/setLevel" => self.forward(id, Pending::Other, line),
            _ if self.allowed(method) => self.forward(id, Pending::Other, line),
            _ => vec![
                Action::Log(format!("refused the client's `{method}` request")),
                Action::ToClient(method_refused(id, method)),
            ],
        }
    }

    fn forward(&mut self, id: &Value, pending: Pending, line: &[u8]) -> Vec<Action> {
        self.client_requests.insert(key(id), pending);
        vec![Action::ToServer(raw(line))]
    }

    fn initialize(&mut self, id: &Value, message: &Map<String, Value>) -> Vec<Action> {
        let mut message = message.clone();
        let params = message.get_mut("params").and_then(Value::as_object_mut);
        let Some(params) = params else {
            return vec![Action::ToClient(error(
                id,
                INVALID_PARAMS,
                "`initialize` needs `params`",
                None,
            ))];
        };
        let requested = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut actions = Vec::new();
        if is_newer(&requested) {
            actions.push(Action::Log(format!(
                "the client asked for protocol `{requested}`; offering `{}`",
                SUPPORTED_VERSIONS[0]
            )));
            params.insert("protocolVersion".to_owned(), json!(SUPPORTED_VERSIONS[0]));
        } else if !SUPPORTED_VERSIONS.contains(&requested.as_str()) {
            return vec![
                Action::Log(format!("refused protocol version `{requested}`")),
                Action::ToClient(error(
                    id,
                    INVALID_PARAMS,
                    &format!("unsupported protocol version `{requested}`"),
                    Some(json!({ "supported": SUPPORTED_VERSIONS, "requested": requested })),
                )),
            ];
        }
        // What the client offers the server to ask for: only what the operator allowed.
        if let Some(capabilities) = params
            .get_mut("capabilities")
            .and_then(Value::as_object_mut)
        {
            let keep = |name: &str| match name {
                "roots" => self.allowed("roots/list"),
                "sampling" => self.allowed("sampling/createMessage"),
                "elicitation" => self.allowed("elicitation/create"),
                "tasks" => self.family_allowed("tasks"),
                _ => false,
            };
            actions.extend(keep_only(capabilities, keep, "client"));
        }
        self.client_requests.insert(key(id), Pending::Initialize);
        actions.push(Action::ToServer(Value::Object(message).to_string()));
        actions
    }

    fn call(&mut self, id: &Value, message: &Map<String, Value>, line: &[u8]) -> Vec<Action> {
        let params = message.get("params");
        let name = params.and_then(|p| p.get("name")).and_then(Value::as_str);
        let request = request_line(
            &self.credential,
            name.map(|n| self.policy_name(n)),
            params.and_then(|p| p.get("arguments")),
        );
        // Decided and audited: the record is in the log before anything is forwarded.
        let decision = self.gate.decide_request(&request);
        if decision.allowed {
            if decision.normalized.is_empty() && !request.args.iter().any(|(_, a)| holds_decimal(a))
            {
                return self.forward(id, Pending::Other, line);
            }
            // The server gets the paths the gate decided (their normal form) and the numbers
            // it decided (a number with a fraction is written as the gate read it, not as the
            // client spelled it: `100.000000000000000001` reaches the server as `100.0`).
            let mut rewritten = message.clone();
            if let Some(arguments) = rewritten
                .get_mut("params")
                .and_then(|p| p.get_mut("arguments"))
                .and_then(Value::as_object_mut)
            {
                // A path as a string; a list whole, its paths (elements, its objects' path
                // fields, at any depth of lists inside lists) in normal form.
                for (name, decided) in &decision.normalized {
                    tollgate_host::protocol::set_argument(arguments, name, decided.clone());
                }
            }
            let text = Value::Object(rewritten).to_string();
            return self.forward(id, Pending::Other, text.as_bytes());
        }
        let mut actions = vec![Action::Log(format!(
            "denied `{}` for `{}`: {}{}",
            request.tool,
            self.agent,
            decision.reason.map_or("denied", Reason::as_str),
            decision
                .seq
                .map(|s| format!(" (audit record {s})"))
                .unwrap_or_default()
        ))];
        if is_revocation(&decision) || self.gate.failed() {
            let ending = if is_revocation(&decision) {
                Ending::Revoked
            } else {
                Ending::AuditFailed
            };
            actions.push(Action::ToClient(self.ending_error(id, ending, &decision)));
            actions.extend(self.end(ending));
            return actions;
        }
        self.remember_denied(id);
        let visible = name.is_some_and(|n| self.visible.contains(&self.policy_name(n)));
        if !visible && request.refused.is_none() {
            actions.push(Action::ToClient(error(
                id,
                INVALID_PARAMS,
                &format!("unknown tool: `{}`", name.unwrap_or("")),
                Some(json!({ "tollgate/seq": decision.seq })),
            )));
            return actions;
        }
        actions.push(Action::ToClient(self.denial(id, &decision)));
        actions
    }

    fn remember_denied(&mut self, id: &Value) {
        if self.denied.len() >= DENIED_MEMORY {
            self.denied.clear();
        }
        self.denied.insert(key(id));
    }

    fn denial(&self, id: &Value, decision: &DecisionLine) -> String {
        let text = explanation(decision);
        match self.options.deny_as {
            DenyAs::Result => json!({
                "jsonrpc": "2.0",
                "id": id,
                "result": {
                    "content": [{ "type": "text", "text": text }],
                    "isError": true,
                    "_meta": decision_meta(decision),
                }
            })
            .to_string(),
            DenyAs::Error => error(id, DENIED, &text, Some(decision_meta(decision))),
        }
    }

    fn ending_error(&self, id: &Value, ending: Ending, decision: &DecisionLine) -> String {
        let message = match ending {
            Ending::Revoked => format!(
                "agent `{}` is revoked: the tollgate gateway ended this session ({})",
                self.agent,
                explanation(decision)
            ),
            Ending::AuditFailed => {
                "the tollgate gateway cannot write its audit log: it allows nothing more and ends this session".to_owned()
            }
        };
        error(id, SESSION_ENDED, &message, Some(decision_meta(decision)))
    }

    /// Ends the session: every request still open gets an error.
    fn end(&mut self, ending: Ending) -> Vec<Action> {
        self.ended = true;
        let message = match ending {
            Ending::Revoked => format!("agent `{}` is revoked: the session ended", self.agent),
            Ending::AuditFailed => "the audit log cannot be written: the session ended".to_owned(),
        };
        let mut actions = self.fail_open_requests(&message);
        actions.push(Action::Log(message));
        actions.push(Action::End(ending));
        actions
    }

    fn client_notification(
        &mut self,
        method: &str,
        message: &Map<String, Value>,
        line: &[u8],
    ) -> Vec<Action> {
        match method {
            "notifications/cancelled" => {
                let request = message
                    .get("params")
                    .and_then(|p| p.get("requestId"))
                    .map(key);
                if request.is_some_and(|r| self.denied.remove(&r)) {
                    vec![Action::Log(
                        "dropped the cancellation of a call denied here".to_owned(),
                    )]
                } else {
                    vec![Action::ToServer(raw(line))]
                }
            }
            "notifications/initialized" | "notifications/progress" => {
                vec![Action::ToServer(raw(line))]
            }
            "notifications/roots/list_changed" if self.allowed("roots/list") => {
                vec![Action::ToServer(raw(line))]
            }
            _ if self.allowed(method) => vec![Action::ToServer(raw(line))],
            _ => vec![Action::Log(format!(
                "dropped the client's `{method}` notification"
            ))],
        }
    }

    /// A message from the server (one line, without its newline).
    pub fn from_server(&mut self, line: &[u8]) -> Vec<Action> {
        if self.ended {
            return Vec::new();
        }
        // The common case, a response passed through as it came (a tool's result): read only its
        // envelope, without building the result's value tree.
        if let Some(id) = response_id(line) {
            if let Some(Pending::Other) = self.client_requests.get(&id) {
                self.client_requests.remove(&id);
                return vec![Action::ToClient(raw(line))];
            }
        }
        let message = match read(line) {
            Ok(Some(message)) => message,
            Ok(None) => {
                return vec![Action::Log(
                    "dropped a server message that is not one JSON-RPC 2.0 message".to_owned(),
                )]
            }
            Err(why) => return vec![Action::Log(format!("dropped a server message: {why}"))],
        };
        let response = match classify(&message) {
            Kind::Response { id } => Some((id.clone(), self.client_requests.remove(&key(id)))),
            _ => None,
        };
        if let Some((id, pending)) = response {
            // The message is no longer borrowed: a result to rewrite is taken, not copied.
            return match pending {
                Some(Pending::Initialize) => self.initialized(&id, message),
                Some(Pending::ToolsList) => self.listed(message),
                Some(Pending::Other) => vec![Action::ToClient(raw(line))],
                None => vec![Action::Log(format!(
                    "dropped a server response to unknown request id {id}"
                ))],
            };
        }
        match classify(&message) {
            // Answered above.
            Kind::Response { .. } => Vec::new(),
            Kind::Request { id, method } => {
                if method == "ping" || self.allowed(method) {
                    self.server_requests.insert(key(id));
                    vec![Action::ToClient(raw(line))]
                } else {
                    vec![
                        Action::Log(format!("refused the server's `{method}` request")),
                        Action::ToServer(error(
                            id,
                            METHOD_NOT_FOUND,
                            &format!(
                                "method `{method}` is not available through the tollgate gateway"
                            ),
                            None,
                        )),
                    ]
                }
            }
            Kind::Notification { method } => match method {
                "notifications/progress"
                | "notifications/message"
                | "notifications/cancelled"
                | "notifications/tools/list_changed" => vec![Action::ToClient(raw(line))],
                _ if self.allowed(method) => vec![Action::ToClient(raw(line))],
                _ => vec![Action::Log(format!(
                    "dropped the server's `{method}` notification"
                ))],
            },
            Kind::Invalid => vec![Action::Log(
                "dropped a server message that is not a JSON-RPC request, notification or response"
                    .to_owned(),
            )],
        }
    }

    fn initialized(&mut self, id: &Value, mut message: Map<String, Value>) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(result) = message.get_mut("result").and_then(Value::as_object_mut) {
            let version = result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
                return vec![
                    Action::Log(format!("the server speaks protocol `{version}`, which the gateway does not")),
                    Action::ToClient(error(
                        id,
                        INVALID_PARAMS,
                        &format!("the server answered with protocol version `{version}`, which the tollgate gateway does not support"),
                        Some(json!({ "supported": SUPPORTED_VERSIONS })),
                    )),
                ];
            }
            if let Some(capabilities) = result
                .get_mut("capabilities")
                .and_then(Value::as_object_mut)
            {
                let keep = |name: &str| match name {
                    "tools" | "logging" => true,
                    "resources" => self.family_allowed("resources"),
                    "prompts" => self.family_allowed("prompts"),
                    "completions" => self.allowed("completion/complete"),
                    "tasks" => self.family_allowed("tasks"),
                    _ => false,
                };
                actions.extend(keep_only(capabilities, keep, "server"));
            }
        }
        actions.push(Action::ToClient(Value::Object(message).to_string()));
        actions
    }

    fn listed(&mut self, mut message: Map<String, Value>) -> Vec<Action> {
        let mut hidden = 0;
        if let Some(tools) = message
            .get_mut("result")
            .and_then(|r| r.get_mut("tools"))
            .and_then(Value::as_array_mut)
        {
            let before = tools.len();
            tools.retain(|tool| {
                tool.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|name| self.visible.contains(&self.policy_name(name)))
            });
            hidden = before - tools.len();
        }
        let mut actions = Vec::new();
        if hidden > 0 {
            actions.push(Action::Log(format!(
                "hid {hidden} tool(s) the policy never allows `{}`",
                self.agent
            )));
        }
        actions.push(Action::ToClient(Value::Object(message).to_string()));
        actions
    }

    /// A client message over the size limit (not read).
    pub fn client_oversize(&mut self, bytes: usize, limit: usize) -> Vec<Action> {
        let why = format!("a message of more than {limit} bytes ({bytes} read)");
        vec![
            Action::Log(format!("refused a client message: {why}")),
            Action::ToClient(error(&Value::Null, INVALID_REQUEST, &why, None)),
        ]
    }

    /// A server message over the size limit (not read).
    pub fn server_oversize(&mut self, bytes: usize, limit: usize) -> Vec<Action> {
        vec![Action::Log(format!(
            "dropped a server message of more than {limit} bytes ({bytes} read)"
        ))]
    }

    /// The server has gone: every request still open gets an error.
    pub fn server_closed(&mut self) -> Vec<Action> {
        self.ended = true;
        self.fail_open_requests("the MCP server behind the tollgate gateway has exited")
    }

    /// Answers every request still open at the server with a `-32002` error saying `why`.
    fn fail_open_requests(&mut self, why: &str) -> Vec<Action> {
        self.client_requests
            .drain()
            .filter_map(|(id, _)| serde_json::from_str::<Value>(&id).ok())
            .map(|id| Action::ToClient(error(&id, SESSION_ENDED, why, None)))
            .collect()
    }
}

/// Whether `--allow-method` lets this method (or notification) pass: by its exact name, or by
/// its family (`resources/*`).
pub(crate) fn method_allowed(allow_methods: &[String], method: &str) -> bool {
    let method = method.strip_prefix("notifications/").unwrap_or(method);
    allow_methods.iter().any(|allowed| {
        allowed == method
            || allowed.strip_suffix("/*").is_some_and(|family| {
                method
                    .strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with('/'))
            })
    })
}

/// Whether `--allow-method` lets some method of this family pass (`resources` for
/// `resources/read`).
pub(crate) fn family_allowed(allow_methods: &[String], family: &str) -> bool {
    allow_methods.iter().any(|allowed| {
        allowed
            .strip_prefix(family)
            .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// The answer to a client's request for a method the gateway does not pass: `-32601`, with the
/// flag that would let it pass.
pub(crate) fn method_refused(id: &Value, method: &str) -> String {
    error(
        id,
        METHOD_NOT_FOUND,
        &format!("method `{method}` is not available through the tollgate gateway"),
        Some(
            json!({ "help": format!("the operator can allow it with `--allow-method {method}`") }),
        ),
    )
}

/// A denial in words, for the model to read: the reason, the rule, the detail, the audit record.
pub(crate) fn explanation(decision: &DecisionLine) -> String {
    let reason = decision.reason.unwrap_or(Reason::NotPermitted);
    let mut text = format!(
        "Denied by the tollgate policy: {} (reason `{}`",
        reason_words(reason),
        reason.as_str()
    );
    if let Some(label) = &decision.rule_label {
        text.push_str(&format!(", rule `{label}`"));
    }
    text.push(')');
    if let Some(detail) = &decision.detail {
        text.push_str(&format!(": {detail}"));
    }
    text.push_str(". The tool was not called. Retrying the same call will be denied again");
    if let Some(seq) = decision.seq {
        text.push_str(&format!("; audit record {seq}"));
    }
    text.push('.');
    text
}

/// A denial for programs: under `_meta` as `tollgate/decision`.
pub(crate) fn decision_meta(decision: &DecisionLine) -> Value {
    json!({
        "tollgate/decision": {
            "reason": decision.reason.map(Reason::as_str),
            "rule": decision.rule_label,
            "seq": decision.seq,
            "agent": decision.agent,
            "tool": decision.tool,
        }
    })
}

/// The request the gate decides for a `tools/call`: the credential's, with the policy's tool name
/// and the call's arguments; refused as malformed when they are not what the language decides.
pub(crate) fn request_line(
    credential: &[u8],
    tool: Option<String>,
    arguments: Option<&Value>,
) -> RequestLine {
    let mut request = RequestLine {
        id: None,
        credential: credential.into(),
        tool: tool.clone().unwrap_or_default(),
        args: Vec::new(),
        refused: None,
    };
    match (tool, arguments) {
        (None, _) => {
            request.refused = Some((
                Reason::Malformed,
                "`params.name` must be a string".to_owned(),
            ));
        }
        (Some(_), None | Some(Value::Null)) => {}
        (Some(_), Some(Value::Object(arguments))) => {
            for (name, value) in arguments {
                if name.contains('.') {
                    request.refused = Some((
                        Reason::Malformed,
                        format!("argument `{name}` has a `.` in its name, which cannot be decided (`a.b` is the field `b` of the object `a`)"),
                    ));
                    break;
                }
                match argument(value) {
                    Ok(arg) => request.args.push((name.clone(), arg)),
                    Err(why) => {
                        request.refused =
                            Some((Reason::Malformed, format!("argument `{name}` {why}")));
                        break;
                    }
                }
            }
            request.args = tollgate_host::protocol::flatten_args(std::mem::take(&mut request.args));
        }
        (Some(_), Some(_)) => {
            request.refused = Some((
                Reason::Malformed,
                "`params.arguments` must be an object".to_owned(),
            ));
        }
    }
    request
}

/// The envelope of a JSON-RPC message, read without the value trees of its members.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: std::borrow::Cow<'a, str>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    result: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

/// The id (as a key) of a well-formed JSON-RPC 2.0 response: one object, no duplicate member,
/// a string or integer id, exactly one of `result` and `error`, no `method`. `None` for
/// anything else (which the full reading then judges).
fn response_id(line: &[u8]) -> Option<String> {
    let envelope: Envelope<'_> = serde_json::from_slice(line).ok()?;
    let id = envelope
        .id
        .filter(|id| id.is_string() || id.is_i64() || id.is_u64())?;
    let one_outcome = envelope.result.is_some() != envelope.error.is_some();
    (envelope.jsonrpc == "2.0" && envelope.method.is_none() && one_outcome).then(|| key(&id))
}

/// Removes the capabilities `keep` refuses; a log line naming them, when there were any.
fn keep_only(
    capabilities: &mut Map<String, Value>,
    keep: impl Fn(&str) -> bool,
    side: &str,
) -> Option<Action> {
    let removed: Vec<String> = capabilities
        .keys()
        .filter(|name| !keep(name))
        .cloned()
        .collect();
    for name in &removed {
        capabilities.remove(name);
    }
    (!removed.is_empty()).then(|| {
        Action::Log(format!(
            "removed the {side}'s capabilities the gateway does not pass: {}",
            removed.join(", ")
        ))
    })
}

/// A line as text, for forwarding unchanged.
fn raw(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

/// One JSON-RPC message: `Ok(None)` for valid JSON that is not one object (a batch, a scalar).
fn read(line: &[u8]) -> Result<Option<Map<String, Value>>, String> {
    let text = std::str::from_utf8(line).map_err(|_| "the message is not UTF-8".to_owned())?;
    let value = parse_strict(text).map_err(|e| format!("the message is not JSON: {e}"))?;
    match value {
        Value::Object(object) if object.get("jsonrpc") == Some(&json!("2.0")) => Ok(Some(object)),
        _ => Ok(None),
    }
}

enum Kind<'m> {
    Request { id: &'m Value, method: &'m str },
    Notification { method: &'m str },
    Response { id: &'m Value },
    Invalid,
}

fn classify(message: &Map<String, Value>) -> Kind<'_> {
    let id = message
        .get("id")
        .filter(|id| id.is_string() || id.is_i64() || id.is_u64());
    match (message.get("method").and_then(Value::as_str), id) {
        (Some(method), Some(id)) => Kind::Request { id, method },
        (Some(method), None) if !message.contains_key("id") => Kind::Notification { method },
        (None, Some(id)) if message.contains_key("result") != message.contains_key("error") => {
            Kind::Response { id }
        }
        _ => Kind::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::{is_newer, response_id};

    #[test]
    fn only_well_formed_responses_take_the_envelope_path() {
        assert_eq!(
            response_id(br#"{"jsonrpc":"2.0","id":7,"result":{"content":[]}}"#),
            Some("7".to_owned())
        );
        assert_eq!(
            response_id(br#"{"id":"a","jsonrpc":"2.0","error":{"code":1,"message":"x"}}"#),
            Some("\"a\"".to_owned())
        );
        for refused in [
            &br#"{"jsonrpc":"2.0","id":7,"id":8,"result":{}}"#[..],
            br#"{"jsonrpc":"2.0","id":7,"result":{},"error":{}}"#,
            br#"{"jsonrpc":"2.0","id":7}"#,
            br#"{"jsonrpc":"2.0","id":7,"method":"ping","result":{}}"#,
            br#"{"jsonrpc":"1.0","id":7,"result":{}}"#,
            br#"{"jsonrpc":"2.0","id":null,"result":{}}"#,
            br#"{"jsonrpc":"2.0","id":7,"result":{"a":1,}}"#,
            b"[1]",
        ] {
            assert_eq!(
                response_id(refused),
                None,
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
    }

    #[test]
    fn newer_means_a_later_date() {
        assert!(is_newer("2026-07-28"));
        assert!(!is_newer("2025-11-25"));
        assert!(!is_newer("2024-11-05"));
        assert!(!is_newer("zzzz-zz-zz"));
        assert!(!is_newer("2026-07-28x"));
    }
}
