//! The host's one error type. `Display` is for users: lowercase, no trailing period, user input
//! in backticks.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the table `{}` is refused: {reason}", path.display())]
    TableRefused {
        path: PathBuf,
        reason: tollgate_runtime::table::LoadError,
    },
    #[error("the table's policy hash {actual} is not the pinned `{pinned}`")]
    NotPinned { actual: String, pinned: String },
    #[error("the table has policy version {version}, older than version {accepted} this host has accepted (`{}`): refusing a rollback", path.display())]
    Rollback {
        version: u64,
        accepted: u64,
        path: PathBuf,
    },
    #[error("the table is a different policy with the same version {version} as the one this host has accepted: compile it with a higher `--policy-version`")]
    SameVersionOtherPolicy { version: u64 },
    #[error("`{}` is damaged: {why}", path.display())]
    Damaged { path: PathBuf, why: String },
    #[error("the policy declares environments: run the gate in one with `--env NAME`")]
    EnvironmentRequired,
    #[error("the policy declares no environment `{0}`")]
    UnknownEnvironment(String),
    #[error("the policy declares no environments, so the gate cannot run in `{0}`")]
    NoEnvironments(String),
    #[error("the audit log `{}` is held by another gate{holder}: one writer per log", path.display())]
    Locked { path: PathBuf, holder: String },
    #[error("the audit log `{}` ends with a torn entry at byte {offset} (a crash mid-write): run `tollgate audit recover {}` to set it aside", path.display(), path.display())]
    TornTail { path: PathBuf, offset: u64 },
    #[error("the audit log `{}` does not verify: {why}", path.display())]
    LogInvalid { path: PathBuf, why: String },
    #[error("the table was compiled with `--allow-unverified` (its tests fail or `verify` reports errors), and this gate requires a verified table")]
    Unverified,
    #[error("no agent is called `{0}`")]
    UnknownAgent(String),
    #[error("{0}")]
    Key(String),
}

impl HostError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        HostError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
