//! Issuing credentials in the layout `tollgate_runtime::credential` defines (and encodes).
//! Randomness (the credential id) and the clock come from the caller: this module does no IO.
//!
//! The issuer is where delegation is attested: a credential for delegated work names the chain
//! (origin first), and is issued only when every hop is a declared `delegate` edge, every agent on
//! the chain is known and not revoked, and the lifetime is within every chain member's
//! `credential_ttl` (or the default cap where the policy names none).

use crate::Error;
use ed25519_dalek::{Signer, SigningKey};
use tollgate_runtime::credential::{
    self as layout, DEFAULT_MAX_TTL, MAX_CHAIN, MAX_NAME, MAX_SCOPE,
};
use tollgate_runtime::table::Table;

/// What to put in a credential.
#[derive(Clone, Debug)]
pub struct Claims<'a> {
    pub agent: &'a str,
    /// The agents that delegated, origin first (empty: the agent acts on its own).
    pub via: &'a [String],
    /// Binds the credential to one environment.
    pub env: Option<&'a str>,
    /// Binds the credential to one gate deployment.
    pub audience: Option<&'a str>,
    /// Tool names, or prefixes ending in `.*`; empty means every tool.
    pub scope: &'a [String],
    pub issued_at: u64,
    pub ttl: u64,
    pub id: [u8; 16],
}

fn agent_index(table: &Table<'_>, name: &str) -> Result<usize, Error> {
    table.find_agent(name.as_bytes()).ok_or_else(|| {
        let known = (0..table.agent_count())
            .filter_map(|a| table.agent_name(a))
            .filter_map(|n| std::str::from_utf8(n).ok());
        Error::UnknownAgent {
            name: name.to_owned(),
            suggestion: known
                .map(|k| (strsim::levenshtein(k, name), k))
                .filter(|(distance, _)| *distance <= 2)
                .min()
                .map(|(_, k)| k.to_owned()),
        }
    })
}

/// Signs a credential valid for a compiled table. `revoked` tells whether an agent is revoked
/// (the host's revocation list); no credential is issued for a revoked agent or chain.
pub fn issue(
    table: &Table<'_>,
    claims: &Claims<'_>,
    key: &SigningKey,
    revoked: &dyn Fn(&str) -> bool,
) -> Result<Vec<u8>, Error> {
    issue_for_hash(table, table.policy_hash(), claims, key, revoked)
}

/// As [`issue`], but stamped with another policy hash (to test that a gate refuses it).
pub fn issue_for_hash(
    table: &Table<'_>,
    policy_hash: &[u8; 32],
    claims: &Claims<'_>,
    key: &SigningKey,
    revoked: &dyn Fn(&str) -> bool,
) -> Result<Vec<u8>, Error> {
    if claims.agent.len() > MAX_NAME {
        return Err(Error::CredentialTooLong {
            what: "the agent name",
        });
    }
    if claims.via.len() > MAX_CHAIN {
        return Err(Error::CredentialTooLong {
            what: "the delegation chain",
        });
    }
    let members: Vec<&str> = claims
        .via
        .iter()
        .map(String::as_str)
        .chain([claims.agent])
        .collect();
    let indexes = members
        .iter()
        .map(|name| agent_index(table, name))
        .collect::<Result<Vec<usize>, _>>()?;
    for pair in indexes.windows(2).zip(members.windows(2)) {
        if let ([from, to], [from_name, to_name]) = pair {
            if table.delegation(*from, *to).is_none() {
                return Err(Error::NoDelegation {
                    from: (*from_name).to_owned(),
                    to: (*to_name).to_owned(),
                });
            }
        }
    }
    if let Some(name) = members.iter().find(|name| revoked(name)) {
        return Err(Error::Revoked((*name).to_owned()));
    }
    if claims.ttl == 0 {
        return Err(Error::ZeroTtl);
    }
    for (index, name) in indexes.iter().zip(&members) {
        let ttl = u64::from(table.agent_ttl(*index).unwrap_or(0));
        let (allowed, default_cap) = if ttl == 0 {
            (DEFAULT_MAX_TTL, true)
        } else {
            (ttl, false)
        };
        if claims.ttl > allowed {
            return Err(Error::TtlTooLong {
                agent: (*name).to_owned(),
                requested: claims.ttl,
                allowed,
                default_cap,
            });
        }
    }
    if let Some(env) = claims.env {
        if !table.declares_env(env) {
            return Err(Error::UnknownEnvironment(env.to_owned()));
        }
    }
    if claims.scope.len() > MAX_SCOPE {
        return Err(Error::CredentialTooLong { what: "the scope" });
    }
    let tools: Vec<&[u8]> = (0..table.tool_count())
        .filter_map(|t| table.tool_name(t))
        .collect();
    for entry in claims.scope {
        let known = match entry.strip_suffix(".*") {
            Some(prefix) => tools.iter().any(|t| {
                t.strip_prefix(prefix.as_bytes())
                    .is_some_and(|rest| rest.first() == Some(&b'.'))
            }),
            None => tools.contains(&entry.as_bytes()),
        };
        if !known {
            return Err(Error::UnknownScope(entry.clone()));
        }
        if entry.is_empty() || entry.len() > MAX_NAME {
            return Err(Error::CredentialTooLong {
                what: "a scope entry",
            });
        }
    }
    let via: Vec<&str> = claims.via.iter().map(String::as_str).collect();
    let scope: Vec<&str> = claims.scope.iter().map(String::as_str).collect();
    let encoded = layout::Claims {
        id: claims.id,
        policy_hash: *policy_hash,
        issued_at: claims.issued_at,
        expires_at: claims.issued_at.saturating_add(claims.ttl),
        agent: claims.agent,
        chain: &via,
        env: claims.env,
        audience: claims.audience,
        scope: &scope,
    };
    let mut bytes = vec![0u8; layout::MAX_SIZE];
    let len = layout::encode(&encoded, &mut bytes)
        .map_err(|_| Error::CredentialTooLong { what: "a name" })?;
    bytes.truncate(len);
    let signature = key.sign(&bytes);
    bytes.extend_from_slice(&signature.to_bytes());
    Ok(bytes)
}
