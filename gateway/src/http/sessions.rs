//! The HTTP gateway's MCP sessions: what lets it send a client what an upstream says on its own
//! (`notifications/tools/list_changed`), on the stream the client opens with a GET.
//!
//! A session is issued with the answer to a successful `initialize` (`Mcp-Session-Id`, 32 random
//! bytes in hex) and is bound to the agent whose credential sent that `initialize`: a request
//! that names the session with a credential of another agent is answered as if the session did
//! not exist (`404`), so one agent can neither read nor close another's stream. A request without
//! a session id is still served statelessly, as before sessions existed; the session only adds the
//! GET stream. Sessions live in memory, at most [`PER_AGENT`] per agent (an agent that opens more
//! ends its own oldest, never another agent's), and end on `DELETE`, when the agent is revoked,
//! or when the gateway stops: the client then gets `404` and initializes again, as the transport
//! specifies.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::mpsc;

/// The header that names a session.
pub(crate) const SESSION_HEADER: &str = "mcp-session-id";
/// The most sessions one agent holds; opening one more ends its oldest.
pub(crate) const PER_AGENT: usize = 64;
/// The most messages held for a stream whose client reads slowly; more are dropped (a
/// `tools/list_changed` dropped while one is still unread loses nothing).
const STREAM_BUFFER: usize = 16;

struct Session {
    agent: String,
    /// When it was opened, in the order of all sessions (the oldest is ended first).
    opened: u64,
    /// The open GET stream, if any.
    stream: Option<mpsc::Sender<String>>,
}

/// Why a GET stream is not opened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No such session for this agent.
    Unknown,
    /// The session has a stream open already (a message goes on one stream only).
    Busy,
}

/// Every open session.
#[derive(Default)]
pub(crate) struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    opened: std::sync::atomic::AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a few map operations: a panic leaves the map whole.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A new session id: 32 random bytes in hex; `None` when the system has no randomness to give.
fn new_id() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("open", &lock(&self.sessions).len())
            .finish()
    }
}

impl Sessions {
    /// Opens a session for `agent`; its id. `None` when no id could be made (the client is
    /// then served statelessly).
    pub(crate) fn open(&self, agent: &str) -> Option<String> {
        let id = new_id()?;
        let opened = self
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut sessions = lock(&self.sessions);
        let held: Vec<(&String, u64)> = sessions
            .iter()
            .filter(|(_, session)| session.agent == agent)
            .map(|(id, session)| (id, session.opened))
            .collect();
        if held.len() >= PER_AGENT {
            let oldest = held
                .iter()
                .min_by_key(|(_, opened)| *opened)
                .map(|(id, _)| (*id).clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                agent: agent.to_owned(),
                opened,
                stream: None,
            },
        );
        Some(id)
    }

    /// Whether the session is open and `agent`'s.
    pub(crate) fn holds(&self, id: &str, agent: &str) -> bool {
        lock(&self.sessions)
            .get(id)
            .is_some_and(|session| session.agent == agent)
    }

    /// Opens the session's GET stream: what the gateway sends the client on its own arrives
    /// here. One stream a session; a stream whose client has gone is replaced.
    pub(crate) fn listen(&self, id: &str, agent: &str) -> Result<mpsc::Receiver<String>, Refused> {
        let mut sessions = lock(&self.sessions);
        let session = sessions
            .get_mut(id)
            .filter(|session| session.agent == agent)
            .ok_or(Refused::Unknown)?;
        if session
            .stream
            .as_ref()
            .is_some_and(|stream| !stream.is_closed())
        {
            return Err(Refused::Busy);
        }
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        session.stream = Some(sender);
        Ok(receiver)
    }

    /// Ends `agent`'s session `id` (its stream closes); whether there was one.
    pub(crate) fn close(&self, id: &str, agent: &str) -> bool {
        let mut sessions = lock(&self.sessions);
        if sessions
            .get(id)
            .is_some_and(|session| session.agent == agent)
        {
            sessions.remove(id);
            true
        } else {
            false
        }
    }

    /// Ends every session of `agent` (revoked: its streams close).
    pub(crate) fn end_agent(&self, agent: &str) {
        lock(&self.sessions).retain(|_, session| session.agent != agent);
    }

    /// Sends `message` on the open stream of every session whose agent `to` accepts; how many
    /// streams took it. A stream that is full or gone is skipped.
    pub(crate) fn notify(&self, message: &str, mut to: impl FnMut(&str) -> bool) -> usize {
        let sessions = lock(&self.sessions);
        let mut verdicts: HashMap<&str, bool> = HashMap::new();
        let mut sent = 0;
        for session in sessions.values() {
            let Some(stream) = &session.stream else {
                continue;
            };
            let agent = session.agent.as_str();
            let wanted = *verdicts.entry(agent).or_insert_with(|| to(agent));
            if wanted && stream.try_send(message.to_owned()).is_ok() {
                sent += 1;
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test should fail loudly")]
    use super::{Refused, Sessions, PER_AGENT};

    #[test]
    fn a_session_is_its_agents_alone() {
        let sessions = Sessions::default();
        let id = sessions.open("alice").unwrap();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_ne!(sessions.open("alice").unwrap(), id);
        assert!(sessions.holds(&id, "alice"));
        // Another agent cannot use it, listen on it or close it.
        assert!(!sessions.holds(&id, "bob"));
        assert_eq!(sessions.listen(&id, "bob").err(), Some(Refused::Unknown));
        assert!(!sessions.close(&id, "bob"));
        assert!(sessions.holds(&id, "alice"));
        assert_eq!(
            sessions.listen("not-a-session", "alice").err(),
            Some(Refused::Unknown)
        );
        assert!(sessions.close(&id, "alice"));
        assert!(!sessions.holds(&id, "alice"));
    }

    #[test]
    fn one_stream_a_session_replaced_when_its_client_is_gone() {
        let sessions = Sessions::default();
        let id = sessions.open("alice").unwrap();
        let first = sessions.listen(&id, "alice").unwrap();
        assert_eq!(sessions.listen(&id, "alice").err(), Some(Refused::Busy));
        drop(first);
        assert!(sessions.listen(&id, "alice").is_ok());
    }

    #[test]
    fn notifications_reach_only_the_streams_of_the_agents_chosen() {
        let sessions = Sessions::default();
        let alice = sessions.open("alice").unwrap();
        let bob = sessions.open("bob").unwrap();
        let _quiet = sessions.open("alice").unwrap(); // no stream: nothing to send on
        let mut alice_stream = sessions.listen(&alice, "alice").unwrap();
        let mut bob_stream = sessions.listen(&bob, "bob").unwrap();
        let sent = sessions.notify("changed", |agent| agent == "alice");
        assert_eq!(sent, 1);
        assert_eq!(alice_stream.try_recv().unwrap(), "changed");
        assert!(bob_stream.try_recv().is_err());
        // A revoked agent's streams close.
        sessions.end_agent("alice");
        assert!(!sessions.holds(&alice, "alice"));
        assert!(alice_stream.try_recv().is_err());
        assert!(alice_stream.is_closed() || alice_stream.try_recv().is_err());
        assert!(sessions.holds(&bob, "bob"));
    }

    #[test]
    fn an_agent_that_opens_too_many_sessions_ends_its_own_oldest() {
        let sessions = Sessions::default();
        let bob = sessions.open("bob").unwrap();
        let first = sessions.open("alice").unwrap();
        for _ in 1..PER_AGENT {
            sessions.open("alice").unwrap();
        }
        assert!(sessions.holds(&first, "alice"));
        sessions.open("alice").unwrap();
        assert!(!sessions.holds(&first, "alice"));
        assert!(sessions.holds(&bob, "bob"));
    }
}
