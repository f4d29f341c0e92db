//! Short-lived credentials: issued by the platform (`tollgate issue`), Ed25519-signed, naming an
//! agent, the delegation chain the issuer attests, an optional environment and audience binding,
//! a scope of tools, a validity window and the policy they are valid for. The gate checks a
//! credential once, in [`admit`], and then decides calls for the resulting [`Session`] without
//! another signature check — expiry, revocation (of the agent and of everyone on its chain) and
//! scope are still checked on every call.
//!
//! The agent supplies its intent (tool and arguments) and nothing else: who it is and on whose
//! behalf it acts come from the credential; the environment and the time from the host.
//!
//! Layout (version 2, little-endian), defined here once; [`encode`] writes it and
//! [`Credential::parse`] reads it:
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0 | 4 | magic `TGCR` |
//! | 4 | 2 | version (2) |
//! | 6 | 2 | reserved (0) |
//! | 8 | 16 | credential id (random) |
//! | 24 | 32 | policy hash of the table it is valid for |
//! | 56 | 8 | issued at (Unix seconds) |
//! | 64 | 8 | expires at (Unix seconds) |
//! | 72 | 1 + n | agent name: length (1–64), bytes |
//! | … | 1 | chain count (0–16): the agents that delegated, origin first |
//! | … | 1 + n each | chain entries: agent names (1–64 bytes) |
//! | … | 1 + n | environment binding: length (0: not bound), bytes |
//! | … | 1 + n | audience (the gate deployment it is for): length (0: any), bytes |
//! | … | 1 | scope count (0: every tool) |
//! | … | 1 + n each | scope entries: a tool name, or a prefix ending in `.*` |
//! | end − 64 | 64 | Ed25519 signature over everything before it |

use crate::format::{self, section};
use crate::gate::{self, ArgValue, Decision, Env, Resolved, State};
use crate::table::{Bytes, Table};
use crate::Reason;
use ed25519_dalek::{Signature, VerifyingKey};

pub const MAGIC: [u8; 4] = *b"TGCR";
pub const VERSION: u16 = 2;
pub const MAX_NAME: usize = 64;
pub const MAX_SCOPE: usize = 32;
pub const MAX_CHAIN: usize = format::MAX_CHAIN;
pub const SIGNATURE_SIZE: usize = 64;
/// Where each fixed field starts.
pub mod field {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const RESERVED: usize = 6;
    pub const ID: usize = 8;
    pub const POLICY_HASH: usize = 24;
    pub const ISSUED_AT: usize = 56;
    pub const EXPIRES_AT: usize = 64;
    /// The agent name; the variable-length fields follow it in table order.
    pub const AGENT: usize = 72;
}
/// The longest credential lifetime when the policy names none for an agent (`credential_ttl`):
/// one hour.
pub const DEFAULT_MAX_TTL: u64 = 3_600;
/// The largest credential this layout allows, signature included.
pub const MAX_SIZE: usize = field::AGENT
    + (1 + MAX_NAME)
    + 1
    + MAX_CHAIN * (1 + MAX_NAME)
    + 2 * (1 + MAX_NAME)
    + 1
    + MAX_SCOPE * (1 + MAX_NAME)
    + SIGNATURE_SIZE;

/// What a credential says, for [`encode`].
#[derive(Clone, Copy, Debug)]
pub struct Claims<'a> {
    pub id: [u8; 16],
    pub policy_hash: [u8; 32],
    pub issued_at: u64,
    pub expires_at: u64,
    pub agent: &'a str,
    /// The agents that delegated, origin first.
    pub chain: &'a [&'a str],
    pub env: Option<&'a str>,
    pub audience: Option<&'a str>,
    /// Tool names, or prefixes ending in `.*`; empty means every tool.
    pub scope: &'a [&'a str],
}

/// Why claims cannot be written as a credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// A name is empty or longer than `MAX_NAME` bytes (the field is named).
    BadName(&'static str),
    /// More than `MAX_CHAIN` delegators.
    ChainTooLong,
    /// More than `MAX_SCOPE` scope entries.
    ScopeTooLong,
    /// Expiry before issue.
    BadWindow,
    /// The output buffer is too small (`MAX_SIZE` always suffices).
    BufferTooSmall,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EncodeError::BadName(what) => write!(f, "{what} must be 1 to {MAX_NAME} bytes long"),
            EncodeError::ChainTooLong => {
                write!(f, "a delegation chain holds at most {MAX_CHAIN} agents")
            }
            EncodeError::ScopeTooLong => write!(f, "a scope holds at most {MAX_SCOPE} entries"),
            EncodeError::BadWindow => f.write_str("a credential cannot expire before it is issued"),
            EncodeError::BufferTooSmall => {
                f.write_str("the buffer is too small for the credential")
            }
        }
    }
}

struct Writer<'o> {
    out: &'o mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let end = self
            .at
            .checked_add(bytes.len())
            .ok_or(EncodeError::BufferTooSmall)?;
        self.out
            .get_mut(self.at..end)
            .ok_or(EncodeError::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }

    /// A length-prefixed name; `optional` allows the empty name (absent).
    fn name(&mut self, name: &str, optional: bool, what: &'static str) -> Result<(), EncodeError> {
        if (name.is_empty() && !optional) || name.len() > MAX_NAME {
            return Err(EncodeError::BadName(what));
        }
        self.bytes(&[name.len() as u8])?;
        self.bytes(name.as_bytes())
    }
}

/// Writes the signed part of a credential (everything but the signature) into `out`; returns its
/// length. The issuer signs those bytes and appends the 64-byte signature.
pub fn encode(claims: &Claims<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    if claims.expires_at < claims.issued_at {
        return Err(EncodeError::BadWindow);
    }
    if claims.chain.len() > MAX_CHAIN {
        return Err(EncodeError::ChainTooLong);
    }
    if claims.scope.len() > MAX_SCOPE {
        return Err(EncodeError::ScopeTooLong);
    }
    let mut w = Writer { out, at: 0 };
    w.bytes(&MAGIC)?;
    w.bytes(&VERSION.to_le_bytes())?;
    w.bytes(&0u16.to_le_bytes())?;
    w.bytes(&claims.id)?;
    w.bytes(&claims.policy_hash)?;
    w.bytes(&claims.issued_at.to_le_bytes())?;
    w.bytes(&claims.expires_at.to_le_bytes())?;
    w.name(claims.agent, false, "the agent name")?;
    w.bytes(&[claims.chain.len() as u8])?;
    for member in claims.chain {
        w.name(member, false, "a chain entry")?;
    }
    w.name(claims.env.unwrap_or(""), true, "the environment")?;
    w.name(claims.audience.unwrap_or(""), true, "the audience")?;
    w.bytes(&[claims.scope.len() as u8])?;
    for entry in claims.scope {
        w.name(entry, false, "a scope entry")?;
    }
    Ok(w.at)
}

/// A list of length-prefixed names inside a credential.
#[derive(Clone, Copy, Debug)]
pub struct Names<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> Names<'a> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> {
        let data = Bytes(self.bytes);
        let mut at = 0usize;
        (0..self.count).map_while(move |_| {
            let len = usize::from(data.u8(at)?);
            let name = data.slice(at + 1, len)?;
            at += 1 + len;
            Some(name)
        })
    }
}

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
    /// The delegators the issuer attests, origin first.
    pub chain: Names<'a>,
    pub env: Option<&'a [u8]>,
    pub audience: Option<&'a [u8]>,
    pub scope: Names<'a>,
}

/// Reads `count` length-prefixed names (each 1–`MAX_NAME` bytes) at `at`; returns them and the
/// offset after them.
fn names(data: Bytes<'_>, at: usize, count: usize) -> Option<(Names<'_>, usize)> {
    let mut end = at;
    for _ in 0..count {
        let len = usize::from(data.u8(end)?);
        if len == 0 || len > MAX_NAME {
            return None;
        }
        data.slice(end + 1, len)?;
        end += 1 + len;
    }
    Some((
        Names {
            bytes: data.slice(at, end - at)?,
            count,
        },
        end,
    ))
}

/// Reads an optional length-prefixed name (length 0: absent).
fn optional_name(data: Bytes<'_>, at: usize) -> Option<(Option<&[u8]>, usize)> {
    let len = usize::from(data.u8(at)?);
    if len > MAX_NAME {
        return None;
    }
    let name = data.slice(at + 1, len)?;
    Some(((len > 0).then_some(name), at + 1 + len))
}

impl<'a> Credential<'a> {
    /// Reads the structure; `CredentialMalformed` if anything is out of place.
    /// Checks the issuer's signature (`verify_strict`); `credential_forged` when it fails.
    pub fn verify(&self, issuer: &VerifyingKey) -> Result<(), Reason> {
        let signature =
            Signature::from_slice(self.signature).map_err(|_| Reason::CredentialForged)?;
        issuer
            .verify_strict(self.signed, &signature)
            .map_err(|_| Reason::CredentialForged)
    }

    pub fn parse(bytes: &'a [u8]) -> Result<Credential<'a>, Reason> {
        Credential::read(bytes).ok_or(Reason::CredentialMalformed)
    }

    fn read(bytes: &'a [u8]) -> Option<Credential<'a>> {
        let data = Bytes(bytes);
        if bytes.len() > MAX_SIZE
            || data.slice(field::MAGIC, 4)? != MAGIC
            || data.u16(field::VERSION)? != VERSION
            || data.u16(field::RESERVED)? != 0
        {
            return None;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(data.slice(field::ID, 16)?);
        let mut policy_hash = [0u8; 32];
        policy_hash.copy_from_slice(data.slice(field::POLICY_HASH, 32)?);
        let issued_at = data.u64(field::ISSUED_AT)?;
        let expires_at = data.u64(field::EXPIRES_AT)?;
        let (agent, at) = names(data, field::AGENT, 1)?;
        let agent = agent.iter().next()?;
        let chain_count = usize::from(data.u8(at)?);
        if chain_count > MAX_CHAIN {
            return None;
        }
        let (chain, at) = names(data, at + 1, chain_count)?;
        let (env, at) = optional_name(data, at)?;
        let (audience, at) = optional_name(data, at)?;
        let scope_count = usize::from(data.u8(at)?);
        if scope_count > MAX_SCOPE {
            return None;
        }
        let (scope, at) = names(data, at + 1, scope_count)?;
        if at.checked_add(SIGNATURE_SIZE)? != bytes.len() || expires_at < issued_at {
            return None;
        }
        Some(Credential {
            signed: data.slice(0, at)?,
            signature: data.slice(at, SIGNATURE_SIZE)?,
            id,
            policy_hash,
            issued_at,
            expires_at,
            agent,
            chain,
            env,
            audience,
            scope,
        })
    }
}

/// Where a gate runs: its environment and, optionally, the deployment name credentials may be
/// bound to. Both are the host's configuration, never the agent's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Host<'h> {
    pub env: Option<&'h str>,
    pub audience: Option<&'h str>,
}

/// An admitted credential, resolved against the table: calls are decided for its agent, on behalf
/// of its attested chain, in the host's environment. It owns everything it needs (no borrow of
/// the credential bytes), so a host can cache it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: [u8; 16],
    pub policy_hash: [u8; 32],
    pub issued_at: u64,
    pub expires_at: u64,
    agent: u16,
    chain: [u16; MAX_CHAIN],
    chain_len: u8,
    env: Env,
    /// Ranges of tool indexes (tools are sorted by name, so a prefix is one range).
    scope: [(u16, u16); MAX_SCOPE],
    /// 0: every tool.
    scope_len: u8,
}

impl Session {
    /// The agent's table index.
    pub fn agent_index(&self) -> u16 {
        self.agent
    }

    /// The agent's name.
    pub fn agent<'t>(&self, table: &Table<'t>) -> &'t str {
        name_of(table, self.agent)
    }

    /// The attested delegators' table indexes, origin first.
    pub fn chain(&self) -> &[u16] {
        self.chain.get(..usize::from(self.chain_len)).unwrap_or(&[])
    }

    /// The attested delegators' names, origin first, written into `out`.
    pub fn chain_names<'t, 'o>(
        &self,
        table: &Table<'t>,
        out: &'o mut [&'t str; MAX_CHAIN],
    ) -> &'o [&'t str] {
        for (slot, &member) in out.iter_mut().zip(self.chain()) {
            *slot = name_of(table, member);
        }
        out.get(..self.chain().len()).unwrap_or(&[])
    }

    fn allows_tool(&self, tool: u16) -> bool {
        self.scope_len == 0
            || self
                .scope
                .iter()
                .take(usize::from(self.scope_len))
                .any(|&(start, end)| start <= tool && tool < end)
    }
}

fn name_of<'t>(table: &Table<'t>, agent: u16) -> &'t str {
    table
        .agent_name(usize::from(agent))
        .and_then(|name| core::str::from_utf8(name).ok())
        .unwrap_or("")
}

/// The range of tool indexes a scope entry admits: one tool, or every tool under a prefix `p.*`
/// (names starting with `p.`; sorted, so contiguous).
fn scope_range(table: &Table<'_>, entry: &[u8]) -> (u16, u16) {
    let tools = table.tool_count();
    let name = |index: usize| table.tool_name(index).unwrap_or(&[]);
    match entry.strip_suffix(b".*") {
        Some(prefix) => {
            let under = |index: usize| {
                let tool = name(index);
                tool.len() > prefix.len()
                    && tool.starts_with(prefix)
                    && tool.get(prefix.len()) == Some(&b'.')
            };
            let start = (0..tools).find(|&i| under(i)).unwrap_or(tools);
            let end = (start..tools).find(|&i| !under(i)).unwrap_or(tools);
            (start as u16, end as u16)
        }
        None => match table.find(section::TOOLS, entry) {
            Some(index) => (index as u16, index as u16 + 1),
            None => (0, 0),
        },
    }
}

/// Checks a credential once: structure, issuer signature (`verify_strict`), policy, agent and
/// chain, environment and audience binding, the longest lifetime of every agent on the chain,
/// validity window and revocation of everyone on it. `now` is the host's trusted clock. A
/// refusal of a credential whose signature verified counts toward its agent's failure responses.
pub fn admit(
    table: &Table<'_>,
    state: &mut State<'_>,
    issuer: &VerifyingKey,
    bytes: &[u8],
    host: &Host<'_>,
    now: u64,
) -> Result<Session, Reason> {
    let now = state.observe(now);
    let credential = Credential::parse(bytes)?;
    credential.verify(issuer)?;
    if &credential.policy_hash != table.policy_hash() {
        return Err(Reason::CredentialWrongPolicy);
    }
    core::str::from_utf8(credential.agent).map_err(|_| Reason::CredentialMalformed)?;
    let agent = table
        .find(section::AGENTS, credential.agent)
        .ok_or(Reason::UnknownAgent)? as u16;
    if state.is_revoked(agent) {
        return Err(Reason::CredentialRevoked);
    }
    let refuse = |state: &mut State<'_>, reason| {
        gate::count(table, state, agent, Decision::deny(reason), now);
        Err(reason)
    };
    let session = match resolve(table, &credential, agent, host) {
        Ok(session) => session,
        Err(reason) => return refuse(state, reason),
    };
    if session
        .chain()
        .iter()
        .any(|&member| state.is_revoked(member))
    {
        return refuse(state, Reason::ChainRevoked);
    }
    if let Err(reason) = check_window(&session, now) {
        return refuse(state, reason);
    }
    Ok(session)
}

/// Resolves a verified credential's names against the table and the host.
fn resolve(
    table: &Table<'_>,
    credential: &Credential<'_>,
    agent: u16,
    host: &Host<'_>,
) -> Result<Session, Reason> {
    let mut chain = [0u16; MAX_CHAIN];
    for (slot, name) in chain.iter_mut().zip(credential.chain.iter()) {
        *slot = table
            .find(section::AGENTS, name)
            .ok_or(Reason::CredentialMalformed)? as u16;
    }
    let lifetime = credential.expires_at - credential.issued_at;
    for member in chain
        .iter()
        .take(credential.chain.len())
        .chain(core::iter::once(&agent))
    {
        let ttl = table.agent_ttl(usize::from(*member)).unwrap_or(0);
        let allowed = if ttl == 0 {
            DEFAULT_MAX_TTL
        } else {
            u64::from(ttl)
        };
        if lifetime > allowed {
            return Err(Reason::CredentialTtlExceeded);
        }
    }
    if let Some(bound) = credential.env {
        if host.env.map(str::as_bytes) != Some(bound) {
            return Err(Reason::CredentialWrongEnvironment);
        }
    }
    if let Some(audience) = credential.audience {
        if host.audience.map(str::as_bytes) != Some(audience) {
            return Err(Reason::CredentialWrongAudience);
        }
    }
    let mut scope = [(0u16, 0u16); MAX_SCOPE];
    for (slot, entry) in scope.iter_mut().zip(credential.scope.iter()) {
        *slot = scope_range(table, entry);
    }
    Ok(Session {
        id: credential.id,
        policy_hash: credential.policy_hash,
        issued_at: credential.issued_at,
        expires_at: credential.expires_at,
        agent,
        chain,
        chain_len: credential.chain.len() as u8,
        env: Env::resolve(table, host.env),
        scope,
        scope_len: credential.scope.len() as u8,
    })
}

fn check_window(session: &Session, now: u64) -> Result<(), Reason> {
    if now < session.issued_at {
        return Err(Reason::CredentialNotYetValid);
    }
    if now >= session.expires_at {
        return Err(Reason::CredentialExpired);
    }
    Ok(())
}

/// A call made in a session: the agent's intent, and nothing else. The agent, its chain and the
/// environment come from the session; the time from the host.
#[derive(Clone, Copy, Debug)]
pub struct SessionCall<'a> {
    pub tool: &'a str,
    pub args: &'a [(&'a str, ArgValue<'a>)],
}

/// Decides a call of an admitted session at the host's time `now`: validity window, revocation
/// and scope first, then the policy. Every denial but "already revoked" counts toward the agent's
/// failure responses.
pub fn decide(
    table: &Table<'_>,
    state: &mut State<'_>,
    session: &Session,
    call: &SessionCall<'_>,
    now: u64,
) -> Decision {
    let tool_index = table.find(section::TOOLS, call.tool.as_bytes());
    decide_tool(table, state, session, tool_index, call.args, now)
}

/// [`decide`] for a host that has looked the tool up already: `tool` is
/// [`Table::find_tool`] of the name called (`None` for a tool the policy does not declare).
pub fn decide_tool(
    table: &Table<'_>,
    state: &mut State<'_>,
    session: &Session,
    tool_index: Option<usize>,
    args: &[(&str, ArgValue<'_>)],
    now: u64,
) -> Decision {
    let now = state.observe(now);
    let agent = session.agent;
    let early = if let Err(reason) = check_window(session, now) {
        Some(reason)
    } else if state.is_revoked(agent) {
        return Decision::deny(Reason::CredentialRevoked);
    } else {
        match tool_index {
            Some(tool) if !session.allows_tool(tool as u16) => Some(Reason::CredentialOutOfScope),
            _ => None,
        }
    };
    if let Some(reason) = early {
        return gate::count(table, state, agent, Decision::deny(reason), now);
    }
    gate::decide_resolved(
        table,
        state,
        &Resolved {
            agent,
            tool_index,
            args,
            chain: session.chain(),
            env: session.env,
        },
        now,
    )
}

/// Records a denial the host made of an admitted agent's call before the policy was consulted
/// (for example a request carrying a field the agent does not own): it counts toward the agent's
/// failure responses like any other denial.
pub fn deny(
    table: &Table<'_>,
    state: &mut State<'_>,
    session: &Session,
    reason: Reason,
    now: u64,
) -> Decision {
    let now = state.observe(now);
    if state.is_revoked(session.agent) {
        return Decision::deny(Reason::CredentialRevoked);
    }
    gate::count(table, state, session.agent, Decision::deny(reason), now)
}
