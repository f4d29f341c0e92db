//! Issuing credentials in the layout `tollgate_runtime::credential` reads. Randomness (the
//! credential id) and the clock come from the caller: this module does no IO.

use ed25519_dalek::{Signer, SigningKey};
use tollgate_runtime::credential::{MAGIC, MAX_NAME, MAX_SCOPE, VERSION};
use tollgate_runtime::table::Table;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssueError {
    UnknownAgent(String),
    /// The requested lifetime exceeds the agent's `credential_ttl` (seconds).
    TtlTooLong {
        requested: u64,
        allowed: u64,
    },
    ZeroTtl,
    /// A scope entry names no tool (or a prefix that matches none).
    UnknownScope(String),
    TooLong(&'static str),
}

impl std::fmt::Display for IssueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IssueError::UnknownAgent(name) => write!(f, "no agent is called `{name}`"),
            IssueError::TtlTooLong { requested, allowed } => write!(
                f,
                "a lifetime of {} exceeds the agent's `credential_ttl` of {}",
                tollgate_grammar::format::duration(*requested),
                tollgate_grammar::format::duration(*allowed)
            ),
            IssueError::ZeroTtl => write!(f, "a credential must live longer than zero seconds"),
            IssueError::UnknownScope(entry) => write!(f, "scope entry `{entry}` matches no tool"),
            IssueError::TooLong(what) => write!(f, "{what} is too long for a credential"),
        }
    }
}

/// What to put in a credential.
#[derive(Clone, Debug)]
pub struct Claims<'a> {
    pub agent: &'a str,
    /// Tool names, or prefixes ending in `.*`; empty means every tool.
    pub scope: &'a [String],
    pub issued_at: u64,
    pub ttl: u64,
    pub id: [u8; 16],
}

/// Signs a credential valid for a compiled table: the agent must be in it, the lifetime within
/// the agent's `credential_ttl`, and every scope entry must match a tool of it.
pub fn issue(
    table: &Table<'_>,
    claims: &Claims<'_>,
    key: &SigningKey,
) -> Result<Vec<u8>, IssueError> {
    issue_for_hash(table, table.policy_hash(), claims, key)
}

/// As [`issue`], but stamped with another policy hash (to test that a gate refuses it).
pub fn issue_for_hash(
    table: &Table<'_>,
    policy_hash: &[u8; 32],
    claims: &Claims<'_>,
    key: &SigningKey,
) -> Result<Vec<u8>, IssueError> {
    let Some(agent) = table.find_agent(claims.agent.as_bytes()) else {
        return Err(IssueError::UnknownAgent(claims.agent.to_owned()));
    };
    if claims.ttl == 0 {
        return Err(IssueError::ZeroTtl);
    }
    let allowed = u64::from(table.agent_ttl(agent).unwrap_or(0));
    if allowed > 0 && claims.ttl > allowed {
        return Err(IssueError::TtlTooLong {
            requested: claims.ttl,
            allowed,
        });
    }
    let tools: Vec<&[u8]> = (0..table.tool_count())
        .filter_map(|t| table.tool_name(t))
        .collect();
    if claims.agent.len() > MAX_NAME {
        return Err(IssueError::TooLong("the agent name"));
    }
    if claims.scope.len() > MAX_SCOPE {
        return Err(IssueError::TooLong("the scope"));
    }
    for entry in claims.scope {
        let known = match entry.strip_suffix(".*") {
            Some(prefix) => tools.iter().any(|t| {
                t.strip_prefix(prefix.as_bytes())
                    .is_some_and(|rest| rest.first() == Some(&b'.'))
            }),
            None => tools.contains(&entry.as_bytes()),
        };
        if !known {
            return Err(IssueError::UnknownScope(entry.clone()));
        }
        if entry.is_empty() || entry.len() > MAX_NAME {
            return Err(IssueError::TooLong("a scope entry"));
        }
    }
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes.extend_from_slice(&claims.id);
    bytes.extend_from_slice(policy_hash);
    bytes.extend_from_slice(&claims.issued_at.to_le_bytes());
    bytes.extend_from_slice(&claims.issued_at.saturating_add(claims.ttl).to_le_bytes());
    bytes.push(claims.agent.len() as u8);
    bytes.extend_from_slice(claims.agent.as_bytes());
    bytes.push(claims.scope.len() as u8);
    for entry in claims.scope {
        bytes.push(entry.len() as u8);
        bytes.extend_from_slice(entry.as_bytes());
    }
    let signature = key.sign(&bytes);
    bytes.extend_from_slice(&signature.to_bytes());
    Ok(bytes)
}
