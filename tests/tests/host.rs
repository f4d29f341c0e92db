//! The durable host: restarts and crashes lose no record, refill no budget and un-revoke no one;
//! one gate shared by threads keeps limits exact; a log that cannot be written allows nothing;
//! the session cache stays bounded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test should fail loudly at the first surprise"
)]

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use tollgate_compiler::codegen;
use tollgate_compiler::credential::{issue, Claims};
use tollgate_host::audit_log::{self, AuditFile, AuditStore, MemoryAudit, SyncPolicy};
use tollgate_host::clock::FixedClock;
use tollgate_host::gate::{Gate, GateOptions, GATE_KEY_NAME};
use tollgate_host::store::{FileStore, MemoryStore};
use tollgate_runtime::table::Table;
use tollgate_runtime::Reason;
use tollgate_tests::{load_dir, root};

const NOW: u64 = 1_767_261_600; // 2026-01-01T10:00:00Z

fn compiler() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}
fn issuer() -> SigningKey {
    SigningKey::from_bytes(&[2; 32])
}
fn gate_key() -> SigningKey {
    SigningKey::from_bytes(&[3; 32])
}

fn table_bytes(example: &str) -> Vec<u8> {
    let (_, policy) = load_dir(&root().join(example));
    codegen::compile(&policy, &compiler()).unwrap().bytes
}

fn credential(bytes: &[u8], agent: &str, ttl: u64) -> String {
    let table = Table::load(bytes, &compiler().verifying_key()).unwrap();
    let claims = Claims {
        agent,
        via: &[],
        env: None,
        audience: None,
        scope: &[],
        issued_at: NOW,
        ttl,
        id: [7; 16],
    };
    base64::engine::general_purpose::STANDARD
        .encode(issue(&table, &claims, &issuer(), &|_| false).unwrap())
}

fn options() -> GateOptions {
    GateOptions {
        env: Some("prod".to_owned()),
        checkpoint_every: 50,
        snapshot_every: 7,
        ..GateOptions::default()
    }
}

fn refund(credential: &str, customer: usize) -> Vec<u8> {
    format!(
        r#"{{"credential":"{credential}","tool":"payments.refund","args":{{"amount":1,"currency":"usd","customer_id":"c-{customer}"}}}}"#
    )
    .into_bytes()
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-host-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A gate on `bytes`' table at `NOW`, with its state in memory and its records in `audit`
/// (`existing`: the bytes that log already holds).
fn start_on<'t, A: AuditStore>(
    bytes: &'t [u8],
    audit: A,
    existing: &[u8],
    options: &GateOptions,
) -> Result<Gate<'t, FixedClock, MemoryStore, A>, tollgate_host::HostError> {
    let table = Table::load(bytes, &compiler().verifying_key()).unwrap();
    Gate::start(
        table,
        issuer().verifying_key(),
        gate_key(),
        FixedClock::new(NOW),
        MemoryStore::default(),
        audit,
        existing,
        options,
    )
    .map(|(gate, _)| gate)
}

/// Starts a gate on files in `dir`, runs `f`, and closes it unless `crash` (then the gate is
/// dropped without a final checkpoint or snapshot, as a `kill -9` would leave it).
fn with_gate<T>(
    bytes: &[u8],
    dir: &std::path::Path,
    clock: u64,
    crash: bool,
    f: impl FnOnce(&Gate<'_, FixedClock, FileStore, AuditFile>) -> T,
) -> T {
    let table = Table::load(bytes, &compiler().verifying_key()).unwrap();
    let store = FileStore::open(&dir.join("state")).unwrap();
    let (audit, existing) = AuditFile::open(&dir.join("audit.log"), SyncPolicy::Batch).unwrap();
    let (gate, _) = Gate::start(
        table,
        issuer().verifying_key(),
        gate_key(),
        FixedClock::new(clock),
        store,
        audit,
        &existing,
        &options(),
    )
    .unwrap();
    let out = f(&gate);
    if !crash {
        gate.close().unwrap();
    }
    out
}

fn allowed(gate: &Gate<'_, FixedClock, FileStore, AuditFile>, lines: &[Vec<u8>]) -> usize {
    lines
        .iter()
        .filter(|line| gate.decide_line(line).allowed)
        .count()
}

#[test]
fn a_restart_continues_the_chain_and_keeps_counters_and_revocations() {
    // support-desk: `rate 10 per 1h` on refunds, `on deny 5 within 10m revoke`.
    let bytes = table_bytes("examples/support-desk");
    let bot = credential(&bytes, "support_bot", 600);
    let dir = temp("restart");
    let lines: Vec<Vec<u8>> = (0..6).map(|i| refund(&bot, i)).collect();
    assert_eq!(
        with_gate(&bytes, &dir, NOW + 10, false, |g| allowed(g, &lines)),
        6
    );
    // Four more fit the hour (the budget, 50 a day at cost 1, is far away); two are denied.
    assert_eq!(
        with_gate(&bytes, &dir, NOW + 20, false, |g| allowed(g, &lines)),
        4
    );
    // Two more denials in each later run: the fifth denial (in the second) revokes, and the
    // revocation holds in the third.
    for run in 0..3 {
        let revoked = with_gate(&bytes, &dir, NOW + 30 + run, false, |g| {
            lines[..2].iter().for_each(|l| {
                g.decide_line(l);
            });
            g.is_revoked("support_bot")
        });
        assert_eq!(revoked, run >= 1, "run {run}");
    }
    let log = std::fs::read(dir.join("audit.log")).unwrap();
    let verified = audit_log::verify(&log, &gate_key().verifying_key(), GATE_KEY_NAME).unwrap();
    assert_eq!(
        verified.records,
        6 + 6 + 6 + 1,
        "every decision and the revocation"
    );
    let revocations = std::fs::read_to_string(dir.join("state/revocations")).unwrap();
    assert!(revocations.starts_with("support_bot\t"));
}

#[test]
fn a_crash_loses_no_counter() {
    let bytes = table_bytes("examples/support-desk");
    let bot = credential(&bytes, "support_bot", 600);
    let dir = temp("crash");
    let lines: Vec<Vec<u8>> = (0..20).map(|i| refund(&bot, i)).collect();
    // Seven allowed, then the gate dies without closing its log (no checkpoint, no snapshot
    // after the last one).
    assert_eq!(
        with_gate(&bytes, &dir, NOW + 10, true, |g| allowed(g, &lines[..7])),
        7
    );
    // The restart rebuilds the counters from the snapshot and the log tail: three are left.
    assert_eq!(
        with_gate(&bytes, &dir, NOW + 20, false, |g| allowed(g, &lines[7..])),
        3
    );
    let log = std::fs::read(dir.join("audit.log")).unwrap();
    audit_log::verify(&log, &gate_key().verifying_key(), GATE_KEY_NAME).unwrap();
}

#[test]
fn a_second_gate_on_the_same_log_is_refused() {
    let dir = temp("lock");
    let path = dir.join("audit.log");
    let (_first, _) = AuditFile::open(&path, SyncPolicy::Batch).unwrap();
    let error = AuditFile::open(&path, SyncPolicy::Batch).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("held by another gate"), "{message}");
    assert!(
        message.contains(&std::process::id().to_string()),
        "{message}"
    );
}

#[test]
fn a_torn_tail_stops_the_start_until_recovered() {
    let bytes = table_bytes("examples/support-desk");
    let bot = credential(&bytes, "support_bot", 600);
    let dir = temp("torn");
    with_gate(&bytes, &dir, NOW + 10, false, |g| {
        g.decide_line(&refund(&bot, 1));
    });
    let path = dir.join("audit.log");
    let mut log = std::fs::read(&path).unwrap();
    let intact = log.len();
    log.extend_from_slice(b"R\x02\x01");
    std::fs::write(&path, &log).unwrap();
    let (audit, existing) = AuditFile::open(&path, SyncPolicy::Batch).unwrap();
    let error = start_on(&bytes, audit, &existing, &options()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("torn entry at byte {intact}")),
        "{error}"
    );
    let recovered = audit_log::recover(&path, NOW + 20).unwrap().unwrap();
    assert_eq!((recovered.offset, recovered.bytes), (intact as u64, 3));
    assert_eq!(std::fs::read(&recovered.saved_to).unwrap(), b"R\x02\x01");
    // The recovery is a record of its own, and the gate starts again.
    with_gate(&bytes, &dir, NOW + 30, false, |g| {
        assert!(g.decide_line(&refund(&bot, 2)).allowed);
    });
    let log = std::fs::read(&path).unwrap();
    let verified = audit_log::verify(&log, &gate_key().verifying_key(), GATE_KEY_NAME).unwrap();
    assert_eq!(verified.records, 3);
}

/// A log that fails every write.
struct Full;

impl AuditStore for Full {
    fn append(&mut self, _: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::StorageFull))
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn len(&self) -> u64 {
        0
    }
}

#[test]
fn a_log_that_cannot_be_written_allows_nothing() {
    let bytes = table_bytes("examples/support-desk");
    let bot = credential(&bytes, "support_bot", 600);
    let gate = start_on(&bytes, Full, &[], &options()).unwrap();
    for i in 0..3 {
        let decision = gate.decide_line(&refund(&bot, i));
        assert!(!decision.allowed);
        assert_eq!(decision.reason, Some(Reason::AuditUnavailable));
    }
    assert!(gate.failed());
}

/// A customer read (allowed, no limit) with an `id`.
fn read(credential: &str, id: usize) -> String {
    format!(
        r#"{{"credential":"{credential}","tool":"crm.read_customer","args":{{"customer_id":"c-{id}"}},"id":{id}}}"#
    )
}

#[test]
fn a_stream_answers_every_line_in_order_once_its_record_is_in_the_log() {
    let bytes = table_bytes("examples/support-desk");
    let bot = credential(&bytes, "support_bot", 600);
    let dir = temp("stream");
    // 3,000 lines (several batches), a blank line, and a line that is not JSON.
    let mut input: String = (0..3_000).map(|i| read(&bot, i) + "\n").collect();
    input.push_str("\nnot json\n");
    let (ended, output) = with_gate(&bytes, &dir, NOW, false, |gate| {
        let mut output = Vec::new();
        let ended = tollgate_host::stream::serve(gate, std::io::Cursor::new(input), &mut output);
        (ended, String::from_utf8(output).unwrap())
    });
    assert!(
        matches!(ended, tollgate_host::stream::Ended::Closed),
        "{ended:?}"
    );
    let lines: Vec<serde_json::Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 3_001);
    for (i, line) in lines.iter().take(3_000).enumerate() {
        assert_eq!(line["id"], i, "{line}");
        assert_eq!(line["verdict"], "allow", "{line}");
        assert_eq!(line["seq"], i, "{line}");
    }
    assert_eq!(lines[3_000]["reason"], "malformed");
    let log = std::fs::read(dir.join("audit.log")).unwrap();
    let verified = audit_log::verify(&log, &gate_key().verifying_key(), GATE_KEY_NAME).unwrap();
    assert_eq!(verified.records, 3_001);
}

#[test]
fn a_stream_whose_log_fails_answers_no_allow_and_stops() {
    let bytes = table_bytes("examples/support-desk");
    let bot = credential(&bytes, "support_bot", 600);
    let gate = start_on(&bytes, Full, &[], &options()).unwrap();
    // Several batches' worth.
    let sent = 3 * tollgate_host::stream::BATCH;
    let input: String = (0..sent).map(|i| read(&bot, i) + "\n").collect();
    let mut output = Vec::new();
    let ended = tollgate_host::stream::serve(&gate, std::io::Cursor::new(input), &mut output);
    assert!(
        matches!(ended, tollgate_host::stream::Ended::AuditFailed),
        "{ended:?}"
    );
    let output = String::from_utf8(output).unwrap();
    assert!(!output.is_empty());
    assert!(!output.contains(r#""verdict":"allow""#), "{output}");
    assert!(output
        .lines()
        .all(|line| line.contains("audit_unavailable")));
    // It stopped at the first batch: the rest of the input was not answered.
    assert!(output.lines().count() <= tollgate_host::stream::BATCH);
}

/// A log that only counts what it is given.
#[derive(Default)]
struct Counting(u64);

impl AuditStore for Counting {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0 += bytes.len() as u64;
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn len(&self) -> u64 {
        self.0
    }
}

#[test]
fn threads_sharing_one_gate_keep_limits_exact() {
    // 2 threads × 1,000,000 decisions; the fixture's refunder may make 10 refunds an hour and
    // spend 100,000 a day at cost 100: exactly 10 are allowed, whatever the interleaving.
    let (_, policy) = load_dir(&root().join("tests/fixtures/trust"));
    let bytes = codegen::compile(&policy, &compiler()).unwrap().bytes;
    let refunder = credential(&bytes, "refunder", 600);
    let gate = start_on(
        &bytes,
        Counting::default(),
        &[],
        &GateOptions {
            checkpoint_every: 0,
            snapshot_every: u64::MAX,
            ..options()
        },
    )
    .unwrap();
    let request = tollgate_host::protocol::read_request(
        format!(r#"{{"credential":"{refunder}","tool":"pay.refund","args":{{"amount":1}}}}"#)
            .as_bytes(),
    );
    let per_thread = 1_000_000;
    let allowed = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    (0..per_thread)
                        .filter(|_| gate.decide_request(&request).allowed)
                        .count()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .sum::<usize>()
    });
    assert_eq!(allowed, 10);
    assert_eq!(
        gate.records(),
        2 * per_thread as u64 + 1,
        "and one revocation record"
    );
}

#[test]
fn forged_credentials_leave_no_trace_in_memory() {
    let bytes = table_bytes("examples/support-desk");
    let gate = start_on(
        &bytes,
        MemoryAudit::default(),
        &[],
        &GateOptions {
            max_sessions: 100,
            ..options()
        },
    )
    .unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let table = Table::load(&bytes, &compiler().verifying_key()).unwrap();
    for i in 0..2_000u32 {
        let mut claims_id = [0u8; 16];
        claims_id[..4].copy_from_slice(&i.to_le_bytes());
        let forged = issue(
            &table,
            &Claims {
                agent: "support_bot",
                via: &[],
                env: None,
                audience: None,
                scope: &[],
                issued_at: NOW,
                ttl: 60,
                id: claims_id,
            },
            &key,
            &|_| false,
        )
        .unwrap();
        let line = format!(
            r#"{{"credential":"{}","tool":"crm.read_customer","args":{{"customer_id":"c"}}}}"#,
            base64::engine::general_purpose::STANDARD.encode(forged)
        );
        let decision = gate.decide_line(line.as_bytes());
        assert_eq!(decision.reason, Some(Reason::CredentialForged));
        assert!(
            !decision.agent_verified,
            "a forged credential's agent is a claim"
        );
    }
    assert_eq!(gate.cached_sessions(), 0);
}

/// A line near the size limit with tens of thousands of arguments is decided (denied: the tool
/// declares one) and recorded like any other. Reading and recording its arguments is linear in
/// their number (sorted once): before, a duplicate check and the audit digest's name-order
/// selection compared every argument with every other, about 10⁹ name comparisons for this line.
#[test]
fn a_line_of_many_arguments_is_denied_and_recorded() {
    let bytes = table_bytes("examples/support-desk");
    let bot = credential(&bytes, "support_bot", 600);
    let args: Vec<String> = (0..60_000)
        .rev()
        .map(|i| format!(r#""a{i}":{i}"#))
        .collect();
    let line = format!(
        r#"{{"credential":"{bot}","tool":"crm.read_customer","args":{{"customer_id":"c-1",{}}}}}"#,
        args.join(",")
    );
    assert!(line.len() < tollgate_host::protocol::MAX_LINE);
    let dir = temp("many-arguments");
    let (decision, reordered) = with_gate(&bytes, &dir, NOW, false, |g| {
        let decision = g.decide_line(line.as_bytes());
        // The same arguments in another order are the same call: the same argument digest.
        let mut shuffled = args.clone();
        shuffled.reverse();
        let other = format!(
            r#"{{"credential":"{bot}","tool":"crm.read_customer","args":{{{},"customer_id":"c-1"}}}}"#,
            shuffled.join(",")
        );
        (decision, g.decide_line(other.as_bytes()))
    });
    assert!(!decision.allowed);
    assert!(!reordered.allowed);
    assert_eq!(decision.reason, Some(Reason::InvalidArgument));
    let log = std::fs::read(dir.join("audit.log")).unwrap();
    let records: Vec<_> = tollgate_host::audit_log::parse(&log)
        .unwrap()
        .into_iter()
        .filter_map(|(_, entry)| match entry {
            tollgate_host::audit_log::Entry::Record(record) => Some(record),
            _ => None,
        })
        .collect();
    assert_eq!(records.len(), 2);
    let digest = |r: &[u8; tollgate_runtime::audit::RECORD_SIZE]| {
        r[tollgate_runtime::audit::field::ARGS..][..32].to_vec()
    };
    assert_eq!(digest(&records[0]), digest(&records[1]));
}

#[test]
fn a_checkpoint_follows_every_n_records_one_at_a_time_and_once_per_batch() {
    // `options()` signs a checkpoint once 50 records are not covered by one.
    let bytes = table_bytes("examples/support-desk");
    let credential = credential(&bytes, "support_bot", 600);
    let read = format!(
        r#"{{"credential":"{credential}","tool":"crm.read_customer","args":{{"customer_id":"c-1"}}}}"#
    );
    let checkpoints = |name: &str, batch: usize| {
        let dir = temp(name);
        with_gate(&bytes, &dir, NOW, false, |gate| {
            let requests: Vec<_> = (0..120)
                .map(|_| tollgate_host::protocol::read_request(read.as_bytes()))
                .collect();
            for chunk in requests.chunks(batch) {
                assert!(gate.decide_batch(chunk).iter().all(|d| d.allowed));
            }
        });
        let log = std::fs::read(dir.join("audit.log")).unwrap();
        let verified = audit_log::verify(&log, &gate_key().verifying_key(), GATE_KEY_NAME).unwrap();
        assert_eq!(verified.records, 120);
        verified.checkpoints
    };
    // One line at a time (a live agent): at 50 and 100 records, and on close.
    assert_eq!(checkpoints("checkpoints-one", 1), 3);
    // Batches of 40: the batch that reaches 50 unsigned records ends with one (at 80 records;
    // the last 40 are covered by the close's), so a batch pays one signature at most.
    assert_eq!(checkpoints("checkpoints-batch", 40), 2);
    // One batch of 120: one at its end, and the close's.
    assert_eq!(checkpoints("checkpoints-whole", 120), 2);
}

/// The stream's reader hashes each request's arguments while the gate decides earlier lines; the
/// records must be those the gate writes when it hashes them itself, also for paths it decides
/// in normal form (whose digest the reader, which has no table, computed as sent), arguments
/// sent out of name order, lists of paths, and refused lines.
#[test]
fn a_stream_records_the_arguments_the_gate_decided() {
    let bytes = table_bytes("examples/mcp-filesystem");
    let writer = credential(&bytes, "writer", 600);
    let lines = [
        r#""tool":"fs.read_text_file","args":{"path":"docs/a.md"}"#,
        r#""tool":"fs.read_text_file","args":{"path":"docs/x/../a.md"}"#,
        r#""tool":"fs.read_text_file","args":{"tail":3,"path":"./docs//b.md"}"#,
        r#""tool":"fs.read_multiple_files","args":{"paths":["docs/a.md","docs/./c.md"]}"#,
        r#""tool":"fs.read_multiple_files","args":{"paths":["docs/a.md"]}"#,
        r#""tool":"fs.move_file","args":{"source":"docs/a.md","destination":"docs/b.md"}"#,
        r#""tool":"fs.read_text_file","args":{"path":"../etc/passwd"}"#,
        r#""tool":"fs.read_text_file","args":{"path":"docs/a.md","path":"docs/b.md"}"#,
        r#""tool":"fs.no_such_tool","args":{"path":"docs/a.md"}"#,
    ]
    .map(|rest| format!(r#"{{"credential":"{writer}",{rest}}}"#));
    let records = |streamed: bool| {
        let dir = temp(if streamed {
            "digest-stream"
        } else {
            "digest-lines"
        });
        let (audit, existing) = AuditFile::open(&dir.join("audit.log"), SyncPolicy::Batch).unwrap();
        let gate = start_on(&bytes, audit, &existing, &GateOptions::default()).unwrap();
        let normalized = if streamed {
            let input: String = lines.iter().map(|line| line.clone() + "\n").collect();
            let mut output = Vec::new();
            let ended =
                tollgate_host::stream::serve(&gate, std::io::Cursor::new(input), &mut output);
            assert!(matches!(ended, tollgate_host::stream::Ended::Closed));
            String::from_utf8(output)
                .unwrap()
                .lines()
                .filter(|line| line.contains("\"normalized\""))
                .count()
        } else {
            lines
                .iter()
                .filter(|line| !gate.decide_line(line.as_bytes()).normalized.is_empty())
                .count()
        };
        gate.close().unwrap();
        let log = std::fs::read(dir.join("audit.log")).unwrap();
        let records: Vec<[u8; tollgate_runtime::audit::RECORD_SIZE]> = audit_log::parse(&log)
            .unwrap()
            .into_iter()
            .filter_map(|(_, entry)| match entry {
                audit_log::Entry::Record(record) => Some(*record),
                _ => None,
            })
            .collect();
        (normalized, records)
    };
    let (streamed_normalized, streamed) = records(true);
    let (decided_normalized, decided) = records(false);
    assert_eq!(
        streamed_normalized, 3,
        "three lines have paths the gate normalizes"
    );
    assert_eq!(decided_normalized, 3);
    assert_eq!(streamed.len(), lines.len());
    for (i, (a, b)) in streamed.iter().zip(&decided).enumerate() {
        assert!(
            a == b,
            "line {i}: the stream recorded another record than the gate"
        );
    }
}
