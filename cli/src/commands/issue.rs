//! `tollgate issue`: issue a short-lived credential for an agent of a compiled table.

use crate::{now, parse_duration, when, Exit, Io};
use base64::Engine as _;
use std::path::PathBuf;
use tollgate_host::keys;

#[derive(Debug)]
pub struct IssueOptions {
    pub table: PathBuf,
    pub agent: String,
    pub via: Vec<String>,
    pub ttl: String,
    pub scope: Vec<String>,
    pub env: Option<String>,
    pub audience: Option<String>,
    pub state: Option<PathBuf>,
    pub key: PathBuf,
    pub time: Option<u64>,
    pub output: PathBuf,
}

pub fn run(io: &mut Io<'_>, options: &IssueOptions) -> Exit {
    let Some(ttl) = parse_duration(&options.ttl) else {
        return io.usage(&format!(
            "`{}` is not a duration such as `10m`",
            options.ttl
        ));
    };
    let bytes = match std::fs::read(&options.table) {
        Ok(bytes) => bytes,
        Err(error) => {
            return io.usage(&format!(
                "cannot read `{}`: {error}",
                options.table.display()
            ))
        }
    };
    let table = match tollgate_runtime::table::Table::parse(&bytes) {
        Ok(table) => table,
        Err(error) => {
            return io.usage(&format!(
                "`{}` is not a decision table: {error}",
                options.table.display()
            ))
        }
    };
    let key = match keys::signing_key(&options.key) {
        Ok(key) => key,
        Err(message) => return io.usage(&message),
    };
    let revoked = match &options.state {
        Some(state) => match tollgate_host::store::read_revocations(state) {
            Ok(revoked) => revoked,
            Err(error) => return io.usage(&error.to_string()),
        },
        None => Vec::new(),
    };
    let mut id = [0u8; 16];
    if let Err(error) = getrandom::getrandom(&mut id) {
        return io.usage(&format!("no randomness for a credential id: {error}"));
    }
    let claims = tollgate_compiler::credential::Claims {
        agent: &options.agent,
        via: &options.via,
        env: options.env.as_deref(),
        audience: options.audience.as_deref(),
        scope: &options.scope,
        issued_at: options.time.unwrap_or_else(now),
        ttl,
        id,
    };
    let is_revoked = |name: &str| revoked.iter().any(|r| r == name);
    match tollgate_compiler::credential::issue(&table, &claims, &key, &is_revoked) {
        Ok(credential) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&credential);
            if let Err(error) = std::fs::write(&options.output, format!("{encoded}\n")) {
                return io.usage(&format!(
                    "cannot write `{}`: {error}",
                    options.output.display()
                ));
            }
            let chain = if options.via.is_empty() {
                String::new()
            } else {
                format!(" on behalf of `{}`", options.via.join(" -> "))
            };
            io.out(&format!(
                "issued a credential for `{}`{chain} valid {} from {} to {}: {}\n",
                options.agent,
                tollgate_grammar::format::duration(ttl),
                when(claims.issued_at),
                when(claims.issued_at.saturating_add(ttl)),
                options.output.display()
            ));
            Exit::Success
        }
        Err(error) => {
            io.err(&format!("error: {error}\n"));
            Exit::Failure
        }
    }
}
