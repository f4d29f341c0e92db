//! The host's gate: one owned, thread-safe enforcement point.
//!
//! A [`Gate`] holds the loaded table, the host's clock, environment and audience, the runtime
//! state, a bounded cache of admitted sessions, the [`StateStore`] and the audit log. Every
//! decision, under one lock:
//!
//! 1. reads the request line strictly ([`protocol::read_request`]);
//! 2. admits the credential (or finds its session) and decides, with the host's time;
//! 3. appends, in one write, the counters it changed (a state entry), its audit record (and a
//!    revocation record, and a checkpoint when one is due) to the log — the write-ahead log;
//! 4. records a revocation in the store (synced) before reporting it;
//! 5. only then returns the decision. When the log cannot be written, the decision is a deny
//!    (`audit_unavailable`) and the gate allows nothing more.
//!
//! At start the gate replays the log: it verifies the chain and every checkpoint, continues the
//! sequence and the chain, and rebuilds the counters from the store's snapshot plus the state
//! entries after it; revocations come from the store. So a restart, a crash or a `kill -9` neither
//! loses a released decision's record, nor un-revokes an agent, nor refills a budget.

use crate::audit_log::{self, AuditStore, Entry};
use crate::clock::Clock;
use crate::protocol::{self, Arg, DecisionLine, RequestLine};
use crate::store::{Snapshot, StateStore};
use crate::HostError;
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tollgate_runtime::audit::{self, Log, Subject, MAX_NOTE};
use tollgate_runtime::credential::{self, Host, Session};
use tollgate_runtime::format;
use tollgate_runtime::gate::{self, ArgValue, Call, Decision, Slot, State, Verdict};
use tollgate_runtime::table::{ArgSchema, Table};
use tollgate_runtime::Reason;

/// The name the gate's key signs checkpoints under.
pub const GATE_KEY_NAME: &str = "tollgate-gate";

/// How many records a signed checkpoint may leave uncovered, by default (`tollgate gate`'s and
/// `tollgate mcp`'s `--checkpoint-every`, and [`GateOptions`]'s).
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 100;

/// Arguments a decision reads from the stack; a request with more takes a heap copy.
const ARGS_ON_STACK: usize = 16;

/// How a gate runs.
#[derive(Clone, Debug)]
pub struct GateOptions {
    /// The environment this gate runs in (required when the policy declares environments).
    pub env: Option<String>,
    /// This gate's deployment name, for credentials bound to an audience.
    pub audience: Option<String>,
    /// Accept only the table with this policy hash (hex).
    pub pin_policy: Option<String>,
    /// Sign a checkpoint every N records (0: only on close).
    pub checkpoint_every: u64,
    /// Repeat-guard entries per agent.
    pub repeat_room: usize,
    /// Admitted sessions kept; expired ones are dropped first when the cache is full.
    pub max_sessions: usize,
    /// Snapshot the counters every N decisions (and on close).
    pub snapshot_every: u64,
    /// Refuse a table compiled with `--allow-unverified`.
    pub require_verified: bool,
}

impl Default for GateOptions {
    fn default() -> Self {
        GateOptions {
            env: None,
            audience: None,
            pin_policy: None,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            repeat_room: 1_024,
            max_sessions: 10_000,
            snapshot_every: 100_000,
            require_verified: false,
        }
    }
}

/// Admitted sessions by credential bytes, bounded: expired sessions go first, then (when every
/// session is live) the whole cache, which only costs re-admission.
#[derive(Debug, Default)]
struct Sessions {
    by_credential: HashMap<Vec<u8>, Session>,
    max: usize,
}

impl Sessions {
    fn insert(&mut self, credential: &[u8], session: Session, now: u64) {
        if self.by_credential.len() >= self.max {
            self.by_credential.retain(|_, s| s.expires_at > now);
        }
        if self.by_credential.len() >= self.max {
            self.by_credential.clear();
        }
        self.by_credential.insert(credential.to_vec(), session);
    }
}

#[derive(Debug)]
struct Inner<S, A> {
    slots: Vec<Slot>,
    latest: u64,
    sessions: Sessions,
    /// The last admitted credential and its session: a stream from one agent skips the hash.
    last: Option<(Arc<[u8]>, Session)>,
    store: S,
    audit: A,
    log: Log,
    since_checkpoint: u64,
    since_snapshot: u64,
    last_note: Option<Vec<u8>>,
    /// Entries of decisions not yet appended (one batch: written before any is released).
    pending: Vec<u8>,
    /// A decision changed more slots than its state entry lists: snapshot at the next commit.
    snapshot_due: bool,
    /// The log could not be written: nothing more is allowed.
    failed: bool,
}

/// An enforcement point. `Send + Sync`: share one gate between threads and limits hold exactly.
pub struct Gate<'t, C, S, A> {
    table: Table<'t>,
    clock: C,
    issuer_key: VerifyingKey,
    gate_key: SigningKey,
    env: Option<String>,
    audience: Option<String>,
    origin: String,
    checkpoint_every: u64,
    snapshot_every: u64,
    /// Whether the table declares any `path` argument (else nothing is ever normalized).
    has_paths: bool,
    /// The table's names, shared by every decision line that reports them.
    names: Names,
    inner: Mutex<Inner<S, A>>,
    /// Credentials whose signature and policy checked, by bytes, with their agent (bounded like
    /// the session cache): a gateway asks for each request's agent before deciding it.
    checked: Mutex<HashMap<Vec<u8>, String>>,
    max_checked: usize,
}

impl<C, S, A> std::fmt::Debug for Gate<'_, C, S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("policy_hash", &hex::encode(self.table.policy_hash()))
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// What a gate's start found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    /// Records already in the log (the next record's sequence number).
    pub records: u64,
    /// State entries replayed on top of the snapshot.
    pub replayed: u64,
    pub revoked: usize,
}

impl<'t, C: Clock, S: StateStore, A: AuditStore> Gate<'t, C, S, A> {
    /// Starts a gate on a loaded table, continuing the log whose bytes `existing` holds.
    #[allow(
        clippy::too_many_arguments,
        reason = "each is one owned part of the gate"
    )]
    pub fn start(
        table: Table<'t>,
        issuer_key: VerifyingKey,
        gate_key: SigningKey,
        clock: C,
        store: S,
        audit: A,
        existing: &[u8],
        options: &GateOptions,
    ) -> Result<(Gate<'t, C, S, A>, Started), HostError> {
        Gate::start_reading(
            table, issuer_key, gate_key, clock, store, audit, existing, options,
        )
    }

    /// [`Gate::start`] on a log read from `existing` (the reader
    /// [`crate::audit_log::AuditFile::open_reading`] returns beside the log): the log is verified
    /// and replayed one entry at a time, so a restart holds no more of it than that, whatever its
    /// size.
    #[allow(
        clippy::too_many_arguments,
        reason = "each is one owned part of the gate"
    )]
    pub fn start_reading(
        table: Table<'t>,
        issuer_key: VerifyingKey,
        gate_key: SigningKey,
        clock: C,
        mut store: S,
        audit: A,
        existing: impl std::io::Read,
        options: &GateOptions,
    ) -> Result<(Gate<'t, C, S, A>, Started), HostError> {
        if let Some(pin) = &options.pin_policy {
            let actual = hex::encode(table.policy_hash());
            if !pin.eq_ignore_ascii_case(&actual) {
                return Err(HostError::NotPinned {
                    actual,
                    pinned: pin.clone(),
                });
            }
        }
        if options.require_verified && !table.verified() {
            return Err(HostError::Unverified);
        }
        match (&options.env, table.has_envs()) {
            (None, true) => return Err(HostError::EnvironmentRequired),
            (Some(env), true) if !table.declares_env(env) => {
                return Err(HostError::UnknownEnvironment(env.clone()))
            }
            (Some(env), false) => return Err(HostError::NoEnvironments(env.clone())),
            _ => {}
        }
        store.accept_policy(table.policy_version(), table.policy_hash())?;
        let log_path = || std::path::PathBuf::from("the audit log");
        let mut slots = vec![Slot::EMPTY; gate::slots_needed(&table, options.repeat_room)];
        let policy: [u8; 8] = table.policy_hash()[..8].try_into().unwrap_or([0; 8]);
        let mut latest = 0;
        let mut replayed = 0;
        let mut revoked = 0;
        let resumed = {
            let mut state = State::new(&table, &mut slots).map_err(|_| HostError::Damaged {
                path: "the table".into(),
                why: "it needs more state than a host can hold".to_owned(),
            })?;
            // Counters: the snapshot (if it is of this policy), then the log's state entries
            // after it, replayed as the log is read and verified.
            let snapshot = store.load_snapshot()?.filter(|s| {
                s.policy_hash == *table.policy_hash() && s.slots.len() == state.slots().len()
            });
            let from = snapshot.as_ref().map_or(0, |s| s.log_offset);
            if let Some(snapshot) = snapshot {
                for (index, slot) in snapshot.slots.into_iter().enumerate() {
                    state.restore_slot(index, slot);
                }
                latest = snapshot.latest;
            }
            let replay = |offset: u64, entry: audit_log::StateEntry| {
                if offset < from || entry.policy != policy {
                    return;
                }
                for (index, slot) in &entry.slots {
                    state.restore_slot(*index as usize, *slot);
                }
                latest = latest.max(entry.latest);
                replayed += 1;
            };
            let resumed =
                audit_log::resume(existing, &gate_key.verifying_key(), GATE_KEY_NAME, replay)
                    .map_err(|problem| {
                        if problem.torn {
                            HostError::TornTail {
                                path: log_path(),
                                offset: problem.offset,
                            }
                        } else {
                            HostError::LogInvalid {
                                path: log_path(),
                                why: problem.message,
                            }
                        }
                    })?;
            // Revocations, by name, whatever policy revoked them.
            for name in store.revocations()? {
                if let Some(agent) = table.find_agent(name.as_bytes()) {
                    state.revoke(agent as u16);
                    revoked += 1;
                }
            }
            resumed
        };
        let records = resumed.log.size();
        // Whether any argument holds a `path` (itself, or anywhere in its lists: an element, an
        // element's field, at any depth): a policy without paths normalizes nothing, so its calls
        // skip the search.
        let has_paths = (0..table.tool_count()).any(|tool| {
            (0..table.arg_count(tool).unwrap_or(0)).any(|slot| {
                table
                    .arg_schema(tool, slot)
                    .is_some_and(|schema| Paths::of(&schema, SHAPE_DEPTH).is_some())
            })
        });
        let gate = Gate {
            has_paths,
            names: Names::of(&table),
            origin: format!("tollgate/{}", hex::encode(&table.policy_hash()[..8])),
            table,
            clock,
            issuer_key,
            gate_key,
            env: options.env.clone(),
            audience: options.audience.clone(),
            checkpoint_every: options.checkpoint_every,
            snapshot_every: options.snapshot_every.max(1),
            inner: Mutex::new(Inner {
                slots,
                latest,
                sessions: Sessions {
                    by_credential: HashMap::new(),
                    max: options.max_sessions.max(1),
                },
                last: None,
                store,
                audit,
                log: resumed.log,
                since_checkpoint: 0,
                since_snapshot: 0,
                last_note: resumed.last_note,
                pending: Vec::new(),
                snapshot_due: false,
                failed: false,
            }),
            checked: Mutex::new(HashMap::new()),
            max_checked: options.max_sessions.max(1),
        };
        Ok((
            gate,
            Started {
                records,
                replayed,
                revoked,
            },
        ))
    }

    pub fn table(&self) -> &Table<'t> {
        &self.table
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S, A>> {
        // A thread that panicked while holding the lock left the state as it was after its last
        // complete step; the log is append-only, so continuing is safe.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decides one request line: the whole protocol, audited.
    pub fn decide_line(&self, bytes: &[u8]) -> DecisionLine {
        let request = protocol::read_request(bytes);
        self.decide_request(&request)
    }

    /// Decides a request already read.
    pub fn decide_request(&self, request: &RequestLine) -> DecisionLine {
        let mut lines = self.decide_batch(std::slice::from_ref(request));
        lines
            .pop()
            .unwrap_or_else(|| refusal(request, Reason::AuditUnavailable))
    }

    /// Decides several requests in order and appends all their entries to the log in one write
    /// before returning any decision (group commit: one write per batch instead of per
    /// decision). When the write fails, every decision of the batch is `audit_unavailable`.
    pub fn decide_batch(&self, requests: &[RequestLine]) -> Vec<DecisionLine> {
        self.decide_read(requests.iter().map(|request| (request, None)))
    }

    /// [`Gate::decide_batch`] for requests whose argument digests the reader computed
    /// ([`args_digest`]): `digests` holds one per request, in order.
    pub(crate) fn decide_digested(
        &self,
        requests: &[RequestLine],
        digests: &[audit::Hash],
    ) -> Vec<DecisionLine> {
        if digests.len() != requests.len() {
            return self.decide_batch(requests);
        }
        self.decide_read(requests.iter().zip(digests.iter().map(Some)))
    }

    fn decide_read<'r>(
        &self,
        requests: impl ExactSizeIterator<Item = (&'r RequestLine, Option<&'r audit::Hash>)>,
    ) -> Vec<DecisionLine> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut lines: Vec<DecisionLine> = requests
            .map(|(request, digest)| self.decide_one(inner, request, now, digest))
            .collect();
        if self.commit(inner).is_err() {
            for line in &mut lines {
                line.allowed = false;
                line.reason = Some(Reason::AuditUnavailable);
                line.rule = None;
                line.rule_label = None;
                line.seq = None;
            }
        }
        lines
    }

    /// Decides one request: its arguments in the runtime's form (paths in normal form), then
    /// [`Gate::decide_args`] with them.
    /// `digest`, when the reader computed it, is [`args_digest`] of the request as sent: the
    /// record takes it unless normalization changed an argument.
    fn decide_one(
        &self,
        inner: &mut Inner<S, A>,
        request: &RequestLine,
        now: u64,
        digest: Option<&audit::Hash>,
    ) -> DecisionLine {
        // Path arguments are decided, and forwarded, in normal form (one that climbs above its
        // root has none: it reaches the gate as sent, which refuses it).
        let normalized = self.normalize_paths(request);
        let digest = digest.filter(|_| normalized.is_empty());
        with_decided_args(request, &normalized, |args| {
            self.decide_args(inner, request, now, args, &normalized, digest)
        })
    }

    /// Decides a request whose arguments `args` are in the runtime's form (each as decided:
    /// `normalized`'s value where it has one), audits it, and reports it.
    fn decide_args(
        &self,
        inner: &mut Inner<S, A>,
        request: &RequestLine,
        now: u64,
        args: &mut [(&str, ArgValue<'_>)],
        normalized: &[(String, Arg)],
        digest: Option<&audit::Hash>,
    ) -> DecisionLine {
        let host = Host {
            env: self.env.as_deref(),
            audience: self.audience.as_deref(),
        };
        // Looked up once: to decide, and to report the tool by its shared name.
        let tool = self.table.find_tool(request.tool.as_bytes());
        let Ok(mut state) = State::new(&self.table, &mut inner.slots) else {
            return refusal(request, Reason::Malformed);
        };
        state.restore_clock(inner.latest);
        if inner.failed {
            return refusal(request, Reason::AuditUnavailable);
        }
        let cached = match &inner.last {
            // The reader hands a repeated credential out as one shared copy: the pointers
            // usually say it is the same before any byte is compared.
            Some((bytes, session))
                if Arc::ptr_eq(bytes, &request.credential) || **bytes == *request.credential =>
            {
                Some(*session)
            }
            _ => inner
                .sessions
                .by_credential
                .get(&*request.credential)
                .copied(),
        };
        let admitted = match cached {
            Some(session) => Ok(session),
            None if request.credential.is_empty() => Err(Reason::CredentialMalformed),
            None => credential::admit(
                &self.table,
                &mut state,
                &self.issuer_key,
                &request.credential,
                &host,
                now,
            )
            .inspect(|session| inner.sessions.insert(&request.credential, *session, now)),
        };
        // In name order, as the audit digest reads them (it then reads them in one pass; the
        // gate's decision does not depend on the order).
        args.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let args: &[(&str, ArgValue<'_>)] = args;
        let digest = digest.copied().unwrap_or_else(|| audit::args_digest(args));
        let decision = match (&request.refused, admitted) {
            // A line the agent had no right to send: denied, and counted against an admitted agent.
            (Some((reason, _)), Ok(session)) => {
                credential::deny(&self.table, &mut state, &session, *reason, now)
            }
            (Some((reason, _)), Err(_)) => denial(*reason),
            (None, Err(reason)) => denial(reason),
            (None, Ok(session)) => {
                credential::decide_tool(&self.table, &mut state, &session, tool, args, now)
            }
        };
        if let Ok(session) = admitted {
            if inner.last.as_ref().is_none_or(|(bytes, _)| {
                !Arc::ptr_eq(bytes, &request.credential) && **bytes != *request.credential
            }) {
                inner.last = Some((Arc::clone(&request.credential), session));
            }
        }
        let time = state.latest();
        let (changes, overflowed) = state.changes();
        if !overflowed && !changes.is_empty() {
            // The counters this decision changed, staged ahead of its record.
            let policy: [u8; 8] = self.table.policy_hash()[..8].try_into().unwrap_or([0; 8]);
            audit_log::encode_state_into(
                &mut inner.pending,
                &policy,
                time,
                // Changed indexes are in range; a slot that were not is replayed as ignored.
                changes.iter().map(|&index| {
                    let slot = state.slots().get(index as usize);
                    (index, slot.copied().unwrap_or(Slot::EMPTY))
                }),
            );
        }
        inner.snapshot_due |= overflowed;
        inner.latest = time;
        let session = admitted.ok();
        let agent_name = session.and_then(|session| self.names.agent(session.agent_index()));
        let mut chain_names = [""; credential::MAX_CHAIN];
        let (agent, chain, subject) = match &session {
            Some(session) => (
                session.agent(&self.table),
                session.chain_names(&self.table, &mut chain_names),
                Subject {
                    credential_id: session.id,
                    unverified: false,
                },
            ),
            None => {
                // Refused: record the agent the credential claims, marked unverified.
                let claimed = credential::Credential::parse(&request.credential).ok();
                (
                    claimed
                        .and_then(|c| std::str::from_utf8(c.agent).ok())
                        .unwrap_or(""),
                    &[][..],
                    Subject {
                        credential_id: claimed.map_or([0; 16], |c| c.id),
                        unverified: true,
                    },
                )
            }
        };
        let call = Call {
            agent,
            tool: &request.tool,
            args,
            via: chain,
            env: host.env,
            time,
        };
        let seq = Some(self.stage(inner, &call, &decision, &subject, &digest));
        if decision.revoked_agent {
            let reason = decision.reason.map_or("", |r| r.as_str());
            if inner.store.record_revocation(agent, time, reason).is_err() {
                inner.failed = true;
            }
        }
        DecisionLine {
            id: request.id.clone(),
            agent: agent_name.unwrap_or_else(|| Arc::from(agent)),
            agent_verified: session.is_some(),
            tool: tool
                .and_then(|tool| self.names.tools.get(tool).cloned())
                .unwrap_or_else(|| Arc::from(request.tool.as_str())),
            via: chain.iter().map(|s| (*s).to_owned()).collect(),
            allowed: decision.verdict == Verdict::Allow && !inner.failed,
            reason: if inner.failed && decision.verdict == Verdict::Allow {
                Some(Reason::AuditUnavailable)
            } else {
                decision.reason
            },
            rule: decision.rule,
            rule_label: decision
                .rule
                .and_then(|rule| self.names.rules.get(usize::from(rule)).cloned().flatten()),
            revoked_agent: decision.revoked_agent,
            seq,
            detail: request.refused.as_ref().map(|(_, detail)| detail.clone()),
            normalized: normalized
                .iter()
                .map(|(name, value)| (name.clone(), value.to_json()))
                .collect(),
        }
    }

    /// The decided form of each argument of the request that holds a `path` not in normal form
    /// (and has one): a path argument's normal form; a list holding paths — as elements, as
    /// fields of its objects, at any depth of lists inside lists and list fields — whole, with
    /// each such path in normal form. What the gate decides, and what must be forwarded instead
    /// of what was sent.
    fn normalize_paths(&self, request: &RequestLine) -> Vec<(String, Arg)> {
        let mut normalized = Vec::new();
        if !self.has_paths {
            return normalized;
        }
        let Some(tool) = self.table.find_tool(request.tool.as_bytes()) else {
            return normalized;
        };
        for (name, value) in &request.args {
            let decided = match value {
                Arg::Str(text) => {
                    if tollgate_runtime::path::is_normal(text)
                        || self.table.arg_kind(tool, name.as_bytes()) != Some(format::arg::PATH)
                    {
                        continue;
                    }
                    normal_path(text).map(Arg::Str)
                }
                Arg::List(_) => self
                    .paths_of(tool, name)
                    .and_then(|paths| paths.normalize(value)),
                _ => None,
            };
            if let Some(decided) = decided {
                normalized.push((name.clone(), decided));
            }
        }
        normalized
    }

    /// Where tool `tool`'s argument `name` holds paths, by its schema; `None` when it holds none
    /// (or the tool declares no such argument).
    fn paths_of(&self, tool: usize, name: &str) -> Option<Paths<'t>> {
        let slot = (0..self.table.arg_count(tool)?)
            .find(|&slot| self.table.arg_name(tool, slot) == Some(name.as_bytes()))?;
        Paths::of(&self.table.arg_schema(tool, slot)?, SHAPE_DEPTH)
    }

    /// Stages a decision's entries (its state changes and record(s)) for the next commit, which
    /// adds a due checkpoint; returns its record's sequence number.
    fn stage(
        &self,
        inner: &mut Inner<S, A>,
        call: &Call<'_>,
        decision: &Decision,
        subject: &Subject,
        digest: &audit::Hash,
    ) -> u64 {
        let policy_hash = self.table.policy_hash();
        let seq = inner.log.size();
        let revocation = decision.revoked_agent.then_some(audit::KIND_REVOCATION);
        for kind in std::iter::once(audit::KIND_DECISION).chain(revocation) {
            let mut record =
                audit::digested_record(call, decision, policy_hash, kind, subject, digest);
            inner.log.seal(&mut record);
            inner.pending.push(audit_log::RECORD_TAG);
            inner.pending.extend_from_slice(&record);
            inner.since_checkpoint += 1;
        }
        inner.since_snapshot += 1;
        seq
    }

    /// Stages a signed checkpoint once `checkpoint_every` records are not covered by one: at the
    /// end of the batch that reaches the count, so a batch of piped lines pays one signature (a
    /// record waits for its checkpoint no longer than its batch takes to decide).
    fn checkpoint_if_due(&self, inner: &mut Inner<S, A>) {
        if self.checkpoint_every > 0 && inner.since_checkpoint >= self.checkpoint_every {
            if let Some(note) = self.note(&inner.log) {
                inner
                    .pending
                    .extend(audit_log::encode(&Entry::Checkpoint(note.clone())));
                inner.last_note = Some(note);
                inner.since_checkpoint = 0;
            }
        }
    }

    /// Appends everything staged in one write; on failure the gate allows nothing more.
    fn commit(&self, inner: &mut Inner<S, A>) -> Result<(), ()> {
        if inner.failed {
            inner.pending.clear();
            return Err(());
        }
        self.checkpoint_if_due(inner);
        if inner.pending.is_empty() {
            return Ok(());
        }
        let written = inner.audit.append(&inner.pending);
        inner.pending.clear();
        if written.is_err() {
            inner.failed = true;
            return Err(());
        }
        if inner.snapshot_due || inner.since_snapshot >= self.snapshot_every {
            // The counters are in memory and the log holds everything up to here.
            if self.snapshot(inner).is_err() {
                inner.failed = true;
                return Err(());
            }
        }
        Ok(())
    }

    /// The encoded state entry for slots a decision changed (nothing when none changed).
    fn state_entry(&self, latest: u64, changed: &[(u32, Slot)]) -> Vec<u8> {
        let mut out = Vec::new();
        if !changed.is_empty() {
            let policy: [u8; 8] = self.table.policy_hash()[..8].try_into().unwrap_or([0; 8]);
            audit_log::encode_state_into(&mut out, &policy, latest, changed.iter().copied());
        }
        out
    }

    fn note(&self, log: &Log) -> Option<Vec<u8>> {
        let mut note = [0u8; MAX_NOTE];
        let len = audit::checkpoint(log, &self.origin, GATE_KEY_NAME, &self.gate_key, &mut note)?;
        note.get(..len).map(<[u8]>::to_vec)
    }

    fn snapshot(&self, inner: &mut Inner<S, A>) -> std::io::Result<()> {
        inner.audit.sync()?;
        let snapshot = Snapshot {
            policy_hash: *self.table.policy_hash(),
            log_offset: inner.audit.len(),
            latest: inner.latest,
            slots: inner.slots.clone(),
        };
        inner.store.save_snapshot(&snapshot)?;
        inner.since_snapshot = 0;
        inner.snapshot_due = false;
        Ok(())
    }

    /// Revokes an agent by hand (an operator's decision): stored, audited, and in force at once.
    pub fn revoke(&self, agent: &str, reason: &str) -> Result<u64, HostError> {
        let index = self
            .table
            .find_agent(agent.as_bytes())
            .ok_or_else(|| HostError::UnknownAgent(agent.to_owned()))?;
        let now = self.clock.now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let changed = {
            let Ok(mut state) = State::new(&self.table, &mut inner.slots) else {
                return Err(HostError::Damaged {
                    path: "the gate's state".into(),
                    why: "it does not fit the table".to_owned(),
                });
            };
            state.restore_clock(inner.latest);
            let now = state.latest().max(now);
            state.revoke(index as u16);
            inner.latest = now;
            let (changes, _) = state.changes();
            changes
                .iter()
                .filter_map(|&i| Some((i, *state.slots().get(i as usize)?)))
                .collect::<Vec<_>>()
        };
        inner
            .store
            .record_revocation(agent, inner.latest, reason)
            .map_err(|e| HostError::io("record a revocation in", "the state store", e))?;
        let decision = Decision {
            verdict: Verdict::Deny,
            reason: Some(Reason::CredentialRevoked),
            rule: None,
            limit: None,
            revoked_agent: true,
        };
        let call = Call {
            agent,
            tool: "",
            args: &[],
            via: &[],
            env: self.env.as_deref(),
            time: inner.latest,
        };
        // One revocation record, no decision record: it is not a tool call.
        let mut log = inner.log;
        let seq = log.size();
        let record = audit::subject_record(
            &call,
            &decision,
            self.table.policy_hash(),
            audit::KIND_REVOCATION,
            &Subject::default(),
        );
        let mut bytes = self.state_entry(inner.latest, &changed);
        bytes.extend(audit_log::encode(&Entry::Record(Box::new(
            log.append(record),
        ))));
        inner.audit.append(&bytes).map_err(|e| {
            inner.failed = true;
            HostError::io("append to", "the audit log", e)
        })?;
        inner.log = log;
        inner.since_checkpoint += 1;
        Ok(seq)
    }

    /// Closes the log: a final checkpoint, a snapshot, and everything synced. Returns the final
    /// checkpoint note (keep it outside the gate to detect a later cut).
    pub fn close(&self) -> Result<Vec<u8>, HostError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if inner.failed {
            return Err(HostError::io(
                "write",
                "the audit log",
                std::io::Error::other("an earlier write failed"),
            ));
        }
        let note = self.note(&inner.log).unwrap_or_default();
        inner
            .audit
            .append(&audit_log::encode(&Entry::Checkpoint(note.clone())))
            .map_err(|e| HostError::io("append to", "the audit log", e))?;
        inner.last_note = Some(note.clone());
        inner.since_checkpoint = 0;
        self.snapshot(inner)
            .map_err(|e| HostError::io("snapshot", "the state store", e))?;
        Ok(note)
    }

    /// Whether the gate has stopped allowing because its log failed.
    pub fn failed(&self) -> bool {
        self.lock().failed
    }

    /// Admitted sessions in the cache (bounded by `GateOptions::max_sessions`).
    pub fn cached_sessions(&self) -> usize {
        self.lock().sessions.by_credential.len()
    }

    /// Records in the log.
    pub fn records(&self) -> u64 {
        self.lock().log.size()
    }

    /// The agent a credential names, once its issuer signature and policy are checked. Reads no
    /// state and records nothing: what a gateway needs to know whose session it serves before
    /// any call. Every call is still admitted and decided in full by [`Gate::decide_request`].
    /// A credential that checked is remembered by its bytes (bounded like the session cache), so
    /// asking again costs a lookup, not a signature check.
    pub fn credential_agent(&self, bytes: &[u8]) -> Result<String, Reason> {
        let lock = || {
            self.checked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(agent) = lock().get(bytes) {
            return Ok(agent.clone());
        }
        let agent = self.check_credential(bytes)?;
        let mut checked = lock();
        if checked.len() >= self.max_checked {
            checked.clear();
        }
        checked.insert(bytes.to_vec(), agent.clone());
        Ok(agent)
    }

    fn check_credential(&self, bytes: &[u8]) -> Result<String, Reason> {
        let parsed = credential::Credential::parse(bytes)?;
        parsed.verify(&self.issuer_key)?;
        if &parsed.policy_hash != self.table.policy_hash() {
            return Err(Reason::CredentialWrongPolicy);
        }
        let agent = std::str::from_utf8(parsed.agent).map_err(|_| Reason::CredentialMalformed)?;
        if self.table.find_agent(agent.as_bytes()).is_none() {
            return Err(Reason::UnknownAgent);
        }
        Ok(agent.to_owned())
    }

    /// The tools `agent` could ever be allowed to call: those with at least one permit rule for
    /// the agent in the table (a superset of what any single call is allowed: conditions, limits
    /// and forbids are decided per call). None for a revoked or unknown agent.
    pub fn visible_tools(&self, agent: &str) -> Vec<&'t str> {
        let Some(index) = self.table.find_agent(agent.as_bytes()) else {
            return Vec::new();
        };
        if self.is_revoked(agent) {
            return Vec::new();
        }
        (0..self.table.tool_count())
            .filter(|&tool| {
                self.table
                    .bucket_entries(index, tool)
                    .any(|(_, forbid, _)| !forbid)
            })
            .filter_map(|tool| std::str::from_utf8(self.table.tool_name(tool)?).ok())
            .collect()
    }

    /// Whether `agent` is revoked now.
    pub fn is_revoked(&self, agent: &str) -> bool {
        let Some(index) = self.table.find_agent(agent.as_bytes()) else {
            return false;
        };
        let mut inner = self.lock();
        State::new(&self.table, &mut inner.slots).is_ok_and(|state| state.is_revoked(index as u16))
    }
}

/// The table's agent and tool names and rule labels, each allocated once when the gate starts:
/// a decision line reports them by sharing these, not by copying them (a stream of lines used to
/// allocate and free three strings per decision on its busiest thread).
struct Names {
    agents: Vec<Arc<str>>,
    tools: Vec<Arc<str>>,
    /// By rule id: its label, if the table has one ([`Table::rule_label`]).
    rules: Vec<Option<Arc<str>>>,
}

impl Names {
    fn of(table: &Table<'_>) -> Names {
        let text = |name: Option<&[u8]>| -> Arc<str> {
            Arc::from(name.and_then(|n| std::str::from_utf8(n).ok()).unwrap_or(""))
        };
        Names {
            agents: (0..table.agent_count())
                .map(|agent| text(table.agent_name(agent)))
                .collect(),
            tools: (0..table.tool_count())
                .map(|tool| text(table.tool_name(tool)))
                .collect(),
            rules: (0..table.rule_count())
                .map(|rule| {
                    let label = u16::try_from(rule).ok().and_then(|r| table.rule_label(r));
                    label.map(Arc::from)
                })
                .collect(),
        }
    }

    /// Agent `index`'s name, when the table has it as UTF-8 (else `None`: reported as the
    /// runtime names it).
    fn agent(&self, index: u16) -> Option<Arc<str>> {
        self.agents
            .get(usize::from(index))
            .filter(|name| !name.is_empty())
            .cloned()
    }
}

/// Runs `then` with the request's arguments in the runtime's form, each as decided
/// (`normalized`'s value where it has one, see [`decided_arg`]), in the order sent.
fn with_decided_args<R>(
    request: &RequestLine,
    normalized: &[(String, Arg)],
    then: impl FnOnce(&mut [(&str, ArgValue<'_>)]) -> R,
) -> R {
    let decided = |arg| decided_arg(arg, normalized);
    // Lists and objects, at any depth: their elements and fields built bottom-up before the
    // arguments borrow them.
    let nested = request
        .args
        .iter()
        .any(|(_, a)| matches!(a, Arg::List(_) | Arg::Object(_)));
    if nested {
        let args = request
            .args
            .iter()
            .map(|arg| (arg.0.as_str(), decided(arg)));
        return protocol::with_arg_values(args, then);
    }
    // Scalars only: the arguments on the stack for any call the gate can allow.
    let mut on_stack = [("", ArgValue::Bool(false)); ARGS_ON_STACK];
    let mut spilled: Vec<(&str, ArgValue<'_>)>;
    let args: &mut [(&str, ArgValue<'_>)] = if request.args.len() <= ARGS_ON_STACK {
        for (slot, arg) in on_stack.iter_mut().zip(&request.args) {
            *slot = (arg.0.as_str(), decided(arg).as_value());
        }
        on_stack.get_mut(..request.args.len()).unwrap_or(&mut [])
    } else {
        spilled = request
            .args
            .iter()
            .map(|arg| (arg.0.as_str(), decided(arg).as_value()))
            .collect();
        &mut spilled
    };
    then(args)
}

/// The digest an audit record holds for the request's arguments as sent
/// ([`audit::args_digest`], in name order). A reader thread computes it while the gate decides
/// earlier lines; the gate uses it for a request whose arguments it decides as sent, and hashes
/// again one whose paths it normalized.
pub(crate) fn args_digest(request: &RequestLine) -> audit::Hash {
    with_decided_args(request, &[], |args| {
        args.sort_unstable_by(|a, b| a.0.cmp(b.0));
        audit::args_digest(args)
    })
}

/// An argument as the gate decides it: the value normalized for it (a path argument, or a list
/// with paths), else as sent.
fn decided_arg<'a>((name, value): &'a (String, Arg), normalized: &'a [(String, Arg)]) -> &'a Arg {
    normalized
        .iter()
        .find(|(n, _)| n == name)
        .map_or(value, |(_, decided)| decided)
}

/// How deep [`Paths::of`] follows a schema: a loaded table's shapes nest at most
/// `format::MAX_NEST` lists deep (a list's element, an element's field, …), far less than this;
/// the bound only keeps the walk finite whatever a table says. A path deeper than it is not
/// normalized, and the gate refuses it as sent.
const SHAPE_DEPTH: usize = 64;

/// Where a value of a declared shape holds `path`s: only the parts of the schema that lead to
/// one, read from the table once per argument and then followed through the value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Paths<'t> {
    /// The value is a path.
    Here,
    /// The value is a list whose elements hold paths thus.
    Elements(Box<Paths<'t>>),
    /// The value is an object whose fields, by name, hold paths thus (the others hold none).
    Fields(Vec<(&'t [u8], Paths<'t>)>),
}

impl<'t> Paths<'t> {
    /// Where a value of `schema` holds paths; `None` when it holds none (or only past `depth`
    /// more steps down).
    fn of(schema: &ArgSchema<'t, '_>, depth: usize) -> Option<Paths<'t>> {
        let depth = depth.checked_sub(1)?;
        match schema.kind {
            format::arg::PATH => Some(Paths::Here),
            format::arg::LIST => {
                let element = Paths::of(&schema.element()?, depth)?;
                Some(Paths::Elements(Box::new(element)))
            }
            format::arg::OBJECT => {
                let fields: Vec<_> = schema
                    .fields()
                    .filter_map(|(name, field)| Some((name, Paths::of(&field, depth)?)))
                    .collect();
                (!fields.is_empty()).then_some(Paths::Fields(fields))
            }
            _ => None,
        }
    }

    /// `value` with every path it holds here in normal form; `None` when every one already is
    /// (or has none), or the value is not of this shape (the gate refuses it as sent).
    fn normalize(&self, value: &Arg) -> Option<Arg> {
        match (self, value) {
            (Paths::Here, Arg::Str(text)) => normal_path(text).map(Arg::Str),
            (Paths::Elements(element), Arg::List(items)) => {
                changed(items, |item| element.normalize(item)).map(Arg::List)
            }
            (Paths::Fields(paths), Arg::Object(fields)) => changed(fields, |(name, field)| {
                let (_, paths) = paths.iter().find(|(n, _)| *n == name.as_bytes())?;
                Some((name.clone(), paths.normalize(field)?))
            })
            .map(Arg::Object),
            _ => None,
        }
    }
}

/// `items` with each one `change` changes replaced, copied only when one changes; `None` when
/// none does.
fn changed<T: Clone>(items: &[T], mut change: impl FnMut(&T) -> Option<T>) -> Option<Vec<T>> {
    let mut copy: Option<Vec<T>> = None;
    for (at, item) in items.iter().enumerate() {
        match (change(item), &mut copy) {
            (Some(new), Some(copy)) => copy.push(new),
            (Some(new), None) => {
                let mut started = Vec::with_capacity(items.len());
                started.extend(items.iter().take(at).cloned());
                started.push(new);
                copy = Some(started);
            }
            (None, Some(copy)) => copy.push(item.clone()),
            (None, None) => {}
        }
    }
    copy
}

/// The normal form of a path that is not in it; `None` when it already is, or has none (it
/// climbs above its root: the gate refuses it as sent).
fn normal_path(text: &str) -> Option<String> {
    if tollgate_runtime::path::is_normal(text) {
        return None;
    }
    let mut buffer = vec![0u8; text.len().max(1)];
    tollgate_runtime::path::normalize(text, &mut buffer).map(str::to_owned)
}

fn denial(reason: Reason) -> Decision {
    Decision {
        verdict: Verdict::Deny,
        reason: Some(reason),
        rule: None,
        limit: None,
        revoked_agent: false,
    }
}

/// A decision line for a request the gate refused without recording it (it cannot record).
fn refusal(request: &RequestLine, reason: Reason) -> DecisionLine {
    DecisionLine {
        id: request.id.clone(),
        agent: Arc::from(""),
        agent_verified: false,
        tool: Arc::from(request.tool.as_str()),
        via: Vec::new(),
        allowed: false,
        reason: Some(reason),
        rule: None,
        rule_label: None,
        revoked_agent: false,
        seq: None,
        detail: None,
        normalized: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Arg {
        Arg::Str(text.to_owned())
    }

    fn list(items: impl IntoIterator<Item = Arg>) -> Arg {
        Arg::List(items.into_iter().collect())
    }

    fn object<const N: usize>(fields: [(&str, Arg); N]) -> Arg {
        Arg::Object(fields.map(|(n, v)| (n.to_owned(), v)).into())
    }

    #[test]
    fn a_path_two_lists_deep_is_normalized() {
        // `list[list[path]]`
        let paths = Paths::Elements(Box::new(Paths::Elements(Box::new(Paths::Here))));
        let sent = list([list([s("a/./b"), s("c")]), list([]), list([s("d//e/")])]);
        assert_eq!(
            paths.normalize(&sent),
            Some(list([list([s("a/b"), s("c")]), list([]), list([s("d/e")])]))
        );
        // Already normal (or without a normal form: the gate refuses it as sent): nothing.
        let normal = list([list([s("a/b"), s("../up")]), list([s("/")])]);
        assert_eq!(paths.normalize(&normal), None);
        // A value not of the shape is left to the gate.
        assert_eq!(paths.normalize(&list([s("a/./b")])), None);
        assert_eq!(paths.normalize(&s("a/./b")), None);
    }

    #[test]
    fn a_path_field_inside_a_list_field_of_an_element_is_normalized() {
        // `list[{ name: string, items: list[{ n: int, path: path }] }]`: only the parts that
        // lead to a path are kept.
        let paths = Paths::Elements(Box::new(Paths::Fields(vec![(
            &b"items"[..],
            Paths::Elements(Box::new(Paths::Fields(vec![(&b"path"[..], Paths::Here)]))),
        )])));
        let sent = list([
            object([("name", s("./x")), ("items", list([]))]),
            object([
                ("name", s("y")),
                (
                    "items",
                    list([
                        object([("n", Arg::Int(1)), ("path", s("p"))]),
                        object([("n", Arg::Int(2)), ("path", s("p/../q//r"))]),
                    ]),
                ),
            ]),
        ]);
        assert_eq!(
            paths.normalize(&sent),
            Some(list([
                object([("name", s("./x")), ("items", list([]))]),
                object([
                    ("name", s("y")),
                    (
                        "items",
                        list([
                            object([("n", Arg::Int(1)), ("path", s("p"))]),
                            object([("n", Arg::Int(2)), ("path", s("q/r"))]),
                        ]),
                    ),
                ]),
            ]))
        );
        // A path-typed name elsewhere is no path: `name` is a string.
        let only_name = list([object([("name", s("./x")), ("items", list([]))])]);
        assert_eq!(paths.normalize(&only_name), None);
    }

    #[test]
    fn the_schema_says_where_paths_are() {
        let text = r#"
            domain files { private }
            tool fs.put {
                domain files
                effect write
                args {
                    one: path,
                    many: list[path][0..8],
                    files: list[{ at: path, meta: { dir: path }, n: int }][0..8],
                    names: list[string][0..8],
                    rows: list[{ n: int }][0..8],
                }
            }
            agent bot { roles [writer] }
            permit role writer to call fs.put;
        "#;
        let sources = tollgate_compiler::source::SourceSet::single("policy.toll", text);
        let policy = tollgate_compiler::load(&sources).expect("the policy checks");
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let bytes = tollgate_compiler::codegen::compile(&policy, &key)
            .unwrap()
            .bytes;
        let table = Table::parse(&bytes).unwrap();
        let tool = table.find_tool(b"fs.put").unwrap();
        let paths = |name: &str| {
            let slot = (0..table.arg_count(tool).unwrap())
                .find(|&slot| table.arg_name(tool, slot) == Some(name.as_bytes()))
                .unwrap();
            Paths::of(&table.arg_schema(tool, slot).unwrap(), SHAPE_DEPTH)
        };
        assert_eq!(paths("one"), Some(Paths::Here));
        assert_eq!(paths("many"), Some(Paths::Elements(Box::new(Paths::Here))));
        assert_eq!(
            paths("files"),
            Some(Paths::Elements(Box::new(Paths::Fields(vec![
                (&b"at"[..], Paths::Here),
                (&b"meta.dir"[..], Paths::Here),
            ]))))
        );
        assert_eq!(paths("names"), None);
        assert_eq!(paths("rows"), None);
        // Past the depth bound, nothing (the gate refuses a path not in normal form).
        let slot = (0..table.arg_count(tool).unwrap())
            .find(|&slot| table.arg_name(tool, slot) == Some(&b"many"[..]))
            .unwrap();
        let many = table.arg_schema(tool, slot).unwrap();
        assert_eq!(Paths::of(&many, 1), None);
        assert_eq!(
            Paths::of(&many, 2),
            Some(Paths::Elements(Box::new(Paths::Here)))
        );
    }

    #[test]
    fn only_what_changes_is_copied() {
        let double = |n: &i64| (*n % 2 == 0).then_some(n * 10);
        assert_eq!(changed(&[1, 3, 5], double), None);
        assert_eq!(changed(&[1, 2, 3, 4], double), Some(vec![1, 20, 3, 40]));
        assert_eq!(changed(&[2], double), Some(vec![20]));
        assert_eq!(changed(&[], double), None);
    }
}
