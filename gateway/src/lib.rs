//! `tollgate-gateway`: the MCP tool gateway. It stands between an MCP client (the agent's host)
//! and a real MCP server: `tools/list` shows the agent only the tools it could ever be allowed,
//! every `tools/call` is decided by a [`tollgate_host::gate::Gate`] — with the host's clock and
//! environment and the credential's identity and chain, never the client's word — audited, and
//! only when allowed forwarded. A denial is answered by the gateway; a revoked agent's session
//! ends.
//!
//! [`relay`] is the protocol logic, message by message; [`stdio`] runs it between a client on
//! standard input and output and a server started as a child process; [`http`] is the Streamable
//! HTTP gateway (several upstreams, many agents, each request decided for the agent of its own
//! credential; progress relayed on a call's SSE stream, `tools/list_changed` on a session's GET
//! stream). Messages are relayed as
//! lines of JSON and forwarded unchanged when passed (unknown fields of newer protocol
//! revisions survive); see `ARCHITECTURE.md` for why this is not built on `rmcp`'s typed model.

pub mod http;
pub mod relay;
pub mod stdio;
mod upstream;

pub use relay::{Action, DenyAs, Ending, Options, Relay};
