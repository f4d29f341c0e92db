//! Short-lived credentials: issued by the platform (`tollgate issue`), Ed25519-signed, naming an
//! agent, a scope of tools, a validity window and the policy they are valid for. The gate checks a
//! credential once, in [`admit`], and then decides calls for the resulting [`Session`] without
//! another signature check — expiry and revocation are still checked on every call.
//!
//! Layout (version 1, little-endian):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 4 | magic `TGCR` |
//! | 4 | 2 | version (1) |
//! | 6 | 2 | reserved (0) |
//! | 8 | 16 | credential id (random) |
//! | 24 | 32 | policy hash of the table it is valid for |
//! | 56 | 8 | issued at (Unix seconds) |
//! | 64 | 8 | expires at (Unix seconds) |
//! | 72 | 1 + n | agent name: length (1–64), bytes |
//! | … | 1 | scope count (0: every tool) |
//! | … | 1 + n each | scope entries: a tool name, or a prefix ending in `.*` |
//! | end − 64 | 64 | Ed25519 signature over everything before it |

use crate::format::section;
use crate::gate::{self, Call, Decision, Slot, Verdict};
use crate::table::{Bytes, Table};
use crate::Reason;
use ed25519_dalek::{Signature, VerifyingKey};

pub const MAGIC: [u8; 4] = *b"TGCR";
pub const VERSION: u16 = 1;
pub const MAX_NAME: usize = 64;
pub const MAX_SCOPE: usize = 32;
pub const SIGNATURE_SIZE: usize = 64;
const FIXED: usize = 72;

/// A parsed (not yet verified) credential, borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Credential<'a> {
    signed: &'a [u8],
    signature: &'a [u8],
    pub id: [u8; 16],
    pub policy_hash: [u8; 32],
    pub issued_at: u64,
    pub expires_at: u64,
    pub agent: &'a [u8],
    scope: &'a [u8],
    scope_count: usize,
}

impl<'a> Credential<'a> {
    /// Reads the structure; `CredentialMalformed` if anything is out of place.
    pub fn parse(bytes: &'a [u8]) -> Result<Credential<'a>, Reason> {
        let bad = Reason::CredentialMalformed;
        let data = Bytes(bytes);
        if bytes.len() < FIXED + 2 + SIGNATURE_SIZE
            || data.slice(0, 4) != Some(&MAGIC[..])
            || data.u16(4) != Some(VERSION)
        {
            return Err(bad);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(data.slice(8, 16).ok_or(bad)?);
        let mut policy_hash = [0u8; 32];
        policy_hash.copy_from_slice(data.slice(24, 32).ok_or(bad)?);
        let issued_at = data.u64(56).ok_or(bad)?;
        let expires_at = data.u64(64).ok_or(bad)?;
        let agent_len = usize::from(data.u8(FIXED).ok_or(bad)?);
        if agent_len == 0 || agent_len > MAX_NAME {
            return Err(bad);
        }
        let agent = data.slice(FIXED + 1, agent_len).ok_or(bad)?;
        let scope_at = FIXED + 1 + agent_len;
        let scope_count = usize::from(data.u8(scope_at).ok_or(bad)?);
        if scope_count > MAX_SCOPE {
            return Err(bad);
        }
        let mut at = scope_at + 1;
        for _ in 0..scope_count {
            let len = usize::from(data.u8(at).ok_or(bad)?);
            if len == 0 || len > MAX_NAME {
                return Err(bad);
            }
            data.slice(at + 1, len).ok_or(bad)?;
            at += 1 + len;
        }
        if at + SIGNATURE_SIZE != bytes.len() || expires_at < issued_at {
            return Err(bad);
        }
        Ok(Credential {
            signed: data.slice(0, at).ok_or(bad)?,
            signature: data.slice(at, SIGNATURE_SIZE).ok_or(bad)?,
            id,
            policy_hash,
            issued_at,
            expires_at,
            agent,
            scope: data.slice(scope_at + 1, at - scope_at - 1).ok_or(bad)?,
            scope_count,
        })
    }

    /// Whether the scope admits this tool (an empty scope admits every tool).
    pub fn allows_tool(&self, tool: &[u8]) -> bool {
        if self.scope_count == 0 {
            return true;
        }
        let data = Bytes(self.scope);
        let mut at = 0;
        for _ in 0..self.scope_count {
            let Some(len) = data.u8(at).map(usize::from) else {
                return false;
            };
            let Some(entry) = data.slice(at + 1, len) else {
                return false;
            };
            let matches = match entry.strip_suffix(b".*") {
                Some(prefix) => {
                    tool.len() > prefix.len()
                        && tool.starts_with(prefix)
                        && tool.get(prefix.len()) == Some(&b'.')
                }
                None => entry == tool,
            };
            if matches {
                return true;
            }
            at += 1 + len;
        }
        false
    }
}

/// An admitted credential: calls are decided for its agent.
#[derive(Clone, Copy, Debug)]
pub struct Session<'a> {
    pub credential: Credential<'a>,
    agent: u16,
    agent_name: &'a str,
}

impl Session<'_> {
    pub fn agent(&self) -> &str {
        self.agent_name
    }
}

/// Checks a credential once: structure, issuer signature (`verify_strict`), policy, agent, the
/// agent's longest lifetime, validity window and revocation.
pub fn admit<'a>(
    table: &Table<'_>,
    state: &[Slot],
    issuer: &VerifyingKey,
    bytes: &'a [u8],
    now: u64,
) -> Result<Session<'a>, Reason> {
    let credential = Credential::parse(bytes)?;
    let signature =
        Signature::from_slice(credential.signature).map_err(|_| Reason::CredentialForged)?;
    issuer
        .verify_strict(credential.signed, &signature)
        .map_err(|_| Reason::CredentialForged)?;
    if &credential.policy_hash != table.policy_hash() {
        return Err(Reason::CredentialWrongPolicy);
    }
    let agent_name =
        core::str::from_utf8(credential.agent).map_err(|_| Reason::CredentialMalformed)?;
    let agent = table
        .find(section::AGENTS, credential.agent)
        .ok_or(Reason::UnknownAgent)? as u16;
    let ttl = table
        .record(section::AGENTS, usize::from(agent))
        .and_then(|at| table.bytes.u32(at + 16))
        .unwrap_or(0);
    if ttl > 0 && credential.expires_at - credential.issued_at > u64::from(ttl) {
        return Err(Reason::CredentialTtlExceeded);
    }
    if now < credential.issued_at {
        return Err(Reason::CredentialNotYetValid);
    }
    if now >= credential.expires_at {
        return Err(Reason::CredentialExpired);
    }
    if gate::is_revoked(state, agent) {
        return Err(Reason::CredentialRevoked);
    }
    Ok(Session {
        credential,
        agent,
        agent_name,
    })
}

/// A call made in a session: everything but the agent, which the credential names.
#[derive(Clone, Copy, Debug)]
pub struct SessionCall<'a> {
    pub tool: &'a str,
    pub args: &'a [(&'a str, gate::ArgValue<'a>)],
    pub via: &'a [&'a str],
    pub env: Option<&'a str>,
}

/// Decides a call of an admitted session at time `now`: expiry, revocation and scope first, then
/// the policy.
pub fn decide(
    table: &Table<'_>,
    state: &mut [Slot],
    session: &Session<'_>,
    call: &SessionCall<'_>,
    now: u64,
) -> Decision {
    let deny = |reason| Decision {
        verdict: Verdict::Deny,
        reason: Some(reason),
        rule: None,
        limit: None,
        revoked_agent: false,
    };
    if now >= session.credential.expires_at {
        return deny(Reason::CredentialExpired);
    }
    if now < session.credential.issued_at {
        return deny(Reason::CredentialNotYetValid);
    }
    if gate::is_revoked(state, session.agent) {
        return deny(Reason::CredentialRevoked);
    }
    if !session.credential.allows_tool(call.tool.as_bytes()) {
        return deny(Reason::CredentialOutOfScope);
    }
    gate::decide(
        table,
        state,
        &Call {
            agent: session.agent_name,
            tool: call.tool,
            args: call.args,
            via: call.via,
            env: call.env,
            time: now,
        },
    )
}
