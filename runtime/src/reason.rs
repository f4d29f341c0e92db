//! Why a request was denied. The numeric codes are stable: they appear in decision tables and audit
//! records, so a code is never reused or renumbered.

/// A deny reason. `as_str` gives the stable snake_case name used in JSON, tests and the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Reason {
    /// The request names an agent the policy does not declare.
    UnknownAgent = 1,
    /// The request names a tool the policy does not declare.
    UnknownTool = 2,
    /// An argument is missing, unexpected, of the wrong type or outside its declared bounds.
    InvalidArgument = 3,
    /// The request's context is malformed: an unknown environment, or a chain naming an unknown agent.
    InvalidRequest = 4,
    /// The acting agent has been revoked by a failure response.
    Revoked = 5,
    /// A hop of the delegation chain is not a declared `delegate` edge.
    DelegationNotAllowed = 6,
    /// The delegation chain is longer than a `depth` limit allows.
    DelegationDepth = 7,
    /// A `forbid` rule matched.
    Forbidden = 8,
    /// No `permit` rule matched.
    NotPermitted = 9,
    /// A `rate` limit is used up for the current window.
    RateLimited = 10,
    /// A `budget` limit would be exceeded by this call's cost.
    BudgetExhausted = 11,
    /// The same call (tool and arguments) was repeated more often than a `repeat` limit allows.
    LoopGuard = 12,
    /// The gate could not evaluate the table (it never happens with a table the compiler wrote
    /// and the loader accepted); the gate fails closed.
    Malformed = 13,
    /// The caller-provided state is full, so a limit could not be counted; the gate fails closed.
    StateFull = 14,
    /// The credential is not a well-formed credential.
    CredentialMalformed = 15,
    /// The credential's signature is not the issuer's.
    CredentialForged = 16,
    /// The credential has expired.
    CredentialExpired = 17,
    /// The credential is not valid yet.
    CredentialNotYetValid = 18,
    /// The credential's agent has been revoked.
    CredentialRevoked = 19,
    /// The tool is outside the credential's scope.
    CredentialOutOfScope = 20,
    /// The credential was issued for another policy.
    CredentialWrongPolicy = 21,
    /// The credential lives longer than the agent's `credential_ttl`.
    CredentialTtlExceeded = 22,
    /// An agent on the delegation chain has been revoked: a revoked agent can neither act nor
    /// appear on a chain.
    ChainRevoked = 23,
    /// The credential is bound to another environment than the gate's.
    CredentialWrongEnvironment = 24,
    /// The credential is bound to another gate deployment (audience).
    CredentialWrongAudience = 25,
    /// The request carries a field the agent does not own: time, environment and delegation
    /// chain come from the host and the credential, never from the request.
    UntrustedField = 26,
    /// The gate could not append the decision's audit record, so it allows nothing more.
    AuditUnavailable = 27,
}

impl Reason {
    /// Every reason, in code order.
    pub const ALL: [Reason; 27] = [
        Reason::UnknownAgent,
        Reason::UnknownTool,
        Reason::InvalidArgument,
        Reason::InvalidRequest,
        Reason::Revoked,
        Reason::DelegationNotAllowed,
        Reason::DelegationDepth,
        Reason::Forbidden,
        Reason::NotPermitted,
        Reason::RateLimited,
        Reason::BudgetExhausted,
        Reason::LoopGuard,
        Reason::Malformed,
        Reason::StateFull,
        Reason::CredentialMalformed,
        Reason::CredentialForged,
        Reason::CredentialExpired,
        Reason::CredentialNotYetValid,
        Reason::CredentialRevoked,
        Reason::CredentialOutOfScope,
        Reason::CredentialWrongPolicy,
        Reason::CredentialTtlExceeded,
        Reason::ChainRevoked,
        Reason::CredentialWrongEnvironment,
        Reason::CredentialWrongAudience,
        Reason::UntrustedField,
        Reason::AuditUnavailable,
    ];

    pub const fn code(self) -> u8 {
        self as u8
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownAgent => "unknown_agent",
            Reason::UnknownTool => "unknown_tool",
            Reason::InvalidArgument => "invalid_argument",
            Reason::InvalidRequest => "invalid_request",
            Reason::Revoked => "revoked",
            Reason::DelegationNotAllowed => "delegation_not_allowed",
            Reason::DelegationDepth => "delegation_depth",
            Reason::Forbidden => "forbidden",
            Reason::NotPermitted => "not_permitted",
            Reason::RateLimited => "rate_limited",
            Reason::BudgetExhausted => "budget_exhausted",
            Reason::LoopGuard => "loop_guard",
            Reason::Malformed => "malformed",
            Reason::StateFull => "state_full",
            Reason::CredentialMalformed => "credential_malformed",
            Reason::CredentialForged => "credential_forged",
            Reason::CredentialExpired => "credential_expired",
            Reason::CredentialNotYetValid => "credential_not_yet_valid",
            Reason::CredentialRevoked => "credential_revoked",
            Reason::CredentialOutOfScope => "credential_out_of_scope",
            Reason::CredentialWrongPolicy => "credential_wrong_policy",
            Reason::CredentialTtlExceeded => "credential_ttl_exceeded",
            Reason::ChainRevoked => "chain_revoked",
            Reason::CredentialWrongEnvironment => "credential_wrong_environment",
            Reason::CredentialWrongAudience => "credential_wrong_audience",
            Reason::UntrustedField => "untrusted_field",
            Reason::AuditUnavailable => "audit_unavailable",
        }
    }

    pub fn from_code(code: u8) -> Option<Reason> {
        Reason::ALL.into_iter().find(|reason| reason.code() == code)
    }

    pub fn from_name(name: &str) -> Option<Reason> {
        Reason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn codes_and_names_round_trip() {
        for reason in Reason::ALL {
            assert_eq!(Reason::from_code(reason.code()), Some(reason));
            assert_eq!(Reason::from_name(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::from_code(0), None);
        assert_eq!(Reason::from_name("allowed"), None);
    }

    #[test]
    fn codes_are_distinct() {
        for (i, a) in Reason::ALL.iter().enumerate() {
            for b in Reason::ALL.iter().skip(i + 1) {
                assert_ne!(a.code(), b.code());
            }
        }
    }
}
