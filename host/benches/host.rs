//! The host's cost per decision: 100,000 JSON request lines for the support desk through
//! `Gate::decide_line` with the audit log on a file, for `--sync batch` (the default) and
//! `--sync every`, against the runtime's in-process `credential::decide` on the same calls.
//! Prints figures; run with `cargo bench -p tollgate-host --bench host`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark should fail loudly at the first surprise"
)]

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use std::io::Write as _;
use std::time::Instant;
use tollgate_compiler::credential::{issue, Claims};
use tollgate_host::audit_log::{AuditFile, SyncPolicy};
use tollgate_host::clock::FixedClock;
use tollgate_host::gate::{Gate, GateOptions};
use tollgate_host::store::FileStore;
use tollgate_runtime::credential::{self, Host, SessionCall};
use tollgate_runtime::gate::{self, ArgValue, Slot, State};
use tollgate_runtime::table::Table;

/// The allocator the `tollgate` binary is built with (`cli/src/main.rs`), so the figures are the
/// binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOW: u64 = 1_767_261_600;

/// Resident memory of this process, from `/proc/self/status` (kB; 0 where there is no /proc).
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Rounds per arm: this machine's figures vary by tens of percent between runs, so each arm runs
/// this many times and the median (with the fastest and slowest) is printed.
const ROUNDS: usize = 5;

/// Median, fastest and slowest of a round's per-item seconds.
fn spread(mut rounds: Vec<f64>) -> (f64, f64, f64) {
    rounds.sort_by(f64::total_cmp);
    (
        rounds[rounds.len() / 2],
        rounds[0],
        rounds[rounds.len() - 1],
    )
}

fn main() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("examples/support-desk/policy.toll")).unwrap();
    let sources = tollgate_compiler::source::SourceSet::single("policy.toll", &text);
    let policy = tollgate_compiler::load(&sources).expect("the example checks");
    let compiler = SigningKey::from_bytes(&[1; 32]);
    let issuer = SigningKey::from_bytes(&[2; 32]);
    let bytes = tollgate_compiler::codegen::compile(&policy, &compiler)
        .unwrap()
        .bytes;
    let table = Table::load(&bytes, &compiler.verifying_key()).unwrap();
    let credential = issue(
        &table,
        &Claims {
            agent: "support_bot",
            via: &[],
            env: None,
            audience: None,
            scope: &[],
            issued_at: NOW,
            ttl: 600,
            id: [7; 16],
        },
        &issuer,
        &|_| false,
    )
    .unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&credential);
    // Reads of customers and notes on them (allowed, no limit): the common path of a support
    // bot. (Denials would soon revoke it under `on deny 5 within 10m revoke`.)
    let lines: Vec<Vec<u8>> = (0..100_000)
        .map(|i| match i % 4 {
            0 | 1 => format!(r#"{{"credential":"{encoded}","tool":"crm.read_customer","args":{{"customer_id":"c-{i}"}},"id":{i}}}"#),
            _ => format!(r#"{{"credential":"{encoded}","tool":"crm.update_notes","args":{{"customer_id":"c-{i}","note":"called back"}},"id":{i}}}"#),
        }
        .into_bytes())
        .collect();

    // The runtime alone, in process: admitted once, then decided.
    let mut slots = vec![Slot::EMPTY; gate::slots_needed(&table, 1_024)];
    let mut state = State::new(&table, &mut slots).unwrap();
    let host = Host {
        env: Some("prod"),
        audience: None,
    };
    let session = credential::admit(
        &table,
        &mut state,
        &issuer.verifying_key(),
        &credential,
        &host,
        NOW,
    )
    .unwrap();
    let read_args = [("customer_id", ArgValue::Str("c-1"))];
    let note_args = [
        ("customer_id", ArgValue::Str("c-1")),
        ("note", ArgValue::Str("called back")),
    ];
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for i in 0..lines.len() {
            let call = if i % 4 < 2 {
                SessionCall {
                    tool: "crm.read_customer",
                    args: &read_args,
                }
            } else {
                SessionCall {
                    tool: "crm.update_notes",
                    args: &note_args,
                }
            };
            std::hint::black_box(credential::decide(&table, &mut state, &session, &call, NOW));
        }
        rounds.push(started.elapsed().as_secs_f64() / lines.len() as f64);
    }
    let (runtime, fastest, slowest) = spread(rounds);
    println!(
        "runtime decide (in process, no audit):      {:>8.3} µs per decision (median of {ROUNDS}; {:.3}–{:.3})",
        runtime * 1e6,
        fastest * 1e6,
        slowest * 1e6
    );

    // `HOST_BENCH_ONLY=batch` (or `none`, `every`, `memory`, `parts`, `live`, `restart`) runs only
    // that arm (for a profiler).
    let only = std::env::var("HOST_BENCH_ONLY").ok();
    // The host with its log in memory: the protocol, sessions, state and records, without IO.
    if only.as_deref().is_none_or(|only| only == "memory") {
        let mut rounds = Vec::new();
        let mut allowed = 0usize;
        for _ in 0..ROUNDS {
            let table = Table::load(&bytes, &compiler.verifying_key()).unwrap();
            let (gate, _) = Gate::start(
                table,
                issuer.verifying_key(),
                SigningKey::from_bytes(&[3; 32]),
                FixedClock::new(NOW),
                tollgate_host::store::MemoryStore::default(),
                tollgate_host::audit_log::MemoryAudit::default(),
                &[],
                &GateOptions {
                    env: Some("prod".to_owned()),
                    ..GateOptions::default()
                },
            )
            .unwrap();
            allowed = 0;
            let started = Instant::now();
            for line in &lines {
                let decision = gate.decide_line(line);
                allowed += usize::from(decision.allowed);
                std::hint::black_box(decision.to_json());
            }
            rounds.push(started.elapsed().as_secs_f64() / lines.len() as f64);
        }
        let (per, fastest, slowest) = spread(rounds);
        println!(
            "host decide_line, audit in memory:           {:>8.3} µs per decision, {:>9.0} decisions/s ({} lines, {allowed} allowed; {:.1}× the runtime; {:.3}–{:.3})",
            per * 1e6,
            1.0 / per,
            lines.len(),
            per / runtime,
            fastest * 1e6,
            slowest * 1e6
        );
    }

    // Where a line's time goes: reading it, deciding it (audit in memory), writing its decision.
    if only.as_deref().is_none_or(|only| only == "parts") {
        let (mut read, mut decide, mut write) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let table = Table::load(&bytes, &compiler.verifying_key()).unwrap();
            let (gate, _) = Gate::start(
                table,
                issuer.verifying_key(),
                SigningKey::from_bytes(&[3; 32]),
                FixedClock::new(NOW),
                tollgate_host::store::MemoryStore::default(),
                tollgate_host::audit_log::MemoryAudit::default(),
                &[],
                &GateOptions {
                    env: Some("prod".to_owned()),
                    ..GateOptions::default()
                },
            )
            .unwrap();
            let mut reader = tollgate_host::protocol::Reader::default();
            let started = Instant::now();
            let requests: Vec<_> = lines.iter().map(|line| reader.read(line)).collect();
            read.push(started.elapsed().as_secs_f64() / lines.len() as f64);
            let started = Instant::now();
            let decisions: Vec<_> = requests
                .chunks(tollgate_host::stream::BATCH)
                .flat_map(|chunk| gate.decide_batch(chunk))
                .collect();
            decide.push(started.elapsed().as_secs_f64() / lines.len() as f64);
            let mut output = std::io::BufWriter::new(std::io::sink());
            let started = Instant::now();
            for decision in &decisions {
                decision.write_json(&mut output).unwrap();
                output.write_all(b"\n").unwrap();
            }
            output.flush().unwrap();
            write.push(started.elapsed().as_secs_f64() / lines.len() as f64);
            drop(decisions);
            drop(requests);
        }
        let (read, decide, write) = (spread(read).0, spread(decide).0, spread(write).0);
        println!(
            "host parts (medians of {ROUNDS}): read {:.3} µs, decide and audit in memory {:.3} µs, write {:.3} µs per line",
            read * 1e6,
            decide * 1e6,
            write * 1e6
        );
    }

    for (name, sync, count) in [
        ("none", SyncPolicy::None, lines.len()),
        ("batch", SyncPolicy::Batch, lines.len()),
        ("every", SyncPolicy::Every, 2_000),
    ] {
        if only.as_deref().is_some_and(|only| only != name) {
            continue;
        }
        let mut rounds = (Vec::new(), Vec::new());
        let mut allowed = (0usize, 0usize);
        let input: Vec<u8> = lines[..count]
            .iter()
            .flat_map(|line| line.iter().copied().chain([b'\n']))
            .collect();
        for round in 0..ROUNDS {
            let dir = std::env::temp_dir().join(format!(
                "tollgate-bench-{}-{name}-{round}",
                std::process::id()
            ));
            let open = |arm: &str| file_gate(&bytes, &compiler, &issuer, &dir.join(arm), sync);
            // In one thread, as `tollgate gate` did before it read on a thread of its own: lines
            // that are already waiting are read and decided together and their records appended
            // in one write (at most `stream::BATCH` at a time), and the decision lines written to a buffered
            // output.
            let gate = open("one-thread");
            let mut output = std::io::BufWriter::new(std::io::sink());
            let mut reader = tollgate_host::protocol::Reader::default();
            allowed.0 = 0;
            let started = Instant::now();
            for chunk in lines[..count].chunks(tollgate_host::stream::BATCH) {
                let requests: Vec<_> = chunk.iter().map(|line| reader.read(line)).collect();
                for decision in gate.decide_batch(&requests) {
                    allowed.0 += usize::from(decision.allowed);
                    decision.write_json(&mut output).unwrap();
                    output.write_all(b"\n").unwrap();
                }
                output.flush().unwrap();
            }
            gate.close().unwrap();
            rounds
                .0
                .push(started.elapsed().as_secs_f64() / count as f64);
            // As `tollgate gate` does: `stream::serve`, the bytes of the input read and split
            // into lines on a thread of its own while the gate decides the previous batch.
            let gate = open("stream");
            // Decision lines go through a `BufWriter`, as `tollgate gate` writes its standard
            // output, to a sink that counts them.
            let mut output = std::io::BufWriter::new(Tally::default());
            let input = std::io::Cursor::new(input.clone());
            let started = Instant::now();
            let ended = tollgate_host::stream::serve(&gate, input, &mut output);
            gate.close().unwrap();
            rounds
                .1
                .push(started.elapsed().as_secs_f64() / count as f64);
            let output = output.into_inner().map_err(|e| e.into_error()).unwrap();
            assert!(
                matches!(ended, tollgate_host::stream::Ended::Closed),
                "{ended:?}"
            );
            assert_eq!(output.lines, count);
            allowed.1 = output.allowed;
            let _ = std::fs::remove_dir_all(&dir);
        }
        for (arm, rounds, allowed) in [
            ("decide_batch(BATCH), one thread", rounds.0, allowed.0),
            ("stream::serve, reader thread ", rounds.1, allowed.1),
        ] {
            let (per, fastest, slowest) = spread(rounds);
            println!(
                "host {arm}, audit on a file, --sync {name:<5}: {:>8.3} µs per JSON line, {:>9.0} decisions/s ({count} lines, {allowed} allowed; {:.1}× the runtime; {:.3}–{:.3})",
                per * 1e6,
                1.0 / per,
                per / runtime,
                fastest * 1e6,
                slowest * 1e6
            );
        }
    }

    // A live agent: each line decided alone (`decide_line`), as `tollgate gate` decides a line
    // that arrives with nothing behind it: one write of its entries and, under `--sync every`,
    // one `fsync` before its answer. 1,000 lines, so this is the cost of a decision that waits
    // for the disk, where the piped arms above share each write and `fsync` among a batch.
    if only.as_deref().is_none_or(|only| only == "live") {
        for (name, sync) in [("batch", SyncPolicy::Batch), ("every", SyncPolicy::Every)] {
            let dir = std::env::temp_dir()
                .join(format!("tollgate-bench-{}-live-{name}", std::process::id()));
            let gate = file_gate(&bytes, &compiler, &issuer, &dir, sync);
            let mut each = Vec::with_capacity(1_000);
            for line in &lines[..1_000] {
                let started = Instant::now();
                let decision = gate.decide_line(line);
                each.push(started.elapsed().as_secs_f64());
                assert!(decision.allowed);
            }
            gate.close().unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            each.sort_by(f64::total_cmp);
            println!(
                "host decide_line, one line at a time (a live agent), --sync {name:<5}: p50 {:>8.3} µs, p99 {:>8.3} µs per decision (1000 lines)",
                each[each.len() / 2] * 1e6,
                each[each.len() * 99 / 100] * 1e6
            );
        }
    }

    // A restart on a long log: 1,000,000 records written through the stream, then the gate
    // started on it again — reading the log one entry at a time (`AuditFile::open_reading` and
    // `Gate::start_reading`, as `tollgate gate` starts), and, for comparison, with its bytes
    // read into memory first (`AuditFile::open` and `Gate::start` on them).
    if only.as_deref().is_none_or(|only| only == "restart") {
        let dir =
            std::env::temp_dir().join(format!("tollgate-bench-{}-restart", std::process::id()));
        let gate = file_gate(&bytes, &compiler, &issuer, &dir, SyncPolicy::None);
        let input: Vec<u8> = lines
            .iter()
            .flat_map(|line| line.iter().copied().chain([b'\n']))
            .collect();
        for _ in 0..10 {
            let mut output = std::io::BufWriter::new(std::io::sink());
            let ended = tollgate_host::stream::serve(
                &gate,
                std::io::Cursor::new(input.clone()),
                &mut output,
            );
            assert!(matches!(ended, tollgate_host::stream::Ended::Closed));
        }
        gate.close().unwrap();
        // Dropped, so the log's lock is released for the restarts.
        drop(gate);
        drop(input);
        let log = dir.join("audit.log");
        let size = std::fs::metadata(&log).unwrap().len();
        for whole in [false, true] {
            let table = Table::load(&bytes, &compiler.verifying_key()).unwrap();
            let store = FileStore::open(&dir.join("state")).unwrap();
            let before = rss_kb();
            let started = Instant::now();
            let key = SigningKey::from_bytes(&[3; 32]);
            let options = GateOptions {
                env: Some("prod".to_owned()),
                ..GateOptions::default()
            };
            let clock = FixedClock::new(NOW);
            let (gate, resident) = if whole {
                let (audit, existing) = AuditFile::open(&log, SyncPolicy::None).unwrap();
                let (gate, _) = Gate::start(
                    table,
                    issuer.verifying_key(),
                    key,
                    clock,
                    store,
                    audit,
                    &existing,
                    &options,
                )
                .unwrap();
                (gate, rss_kb())
            } else {
                let (audit, existing) = AuditFile::open_reading(&log, SyncPolicy::None).unwrap();
                let (gate, _) = Gate::start_reading(
                    table,
                    issuer.verifying_key(),
                    key,
                    clock,
                    store,
                    audit,
                    existing,
                    &options,
                )
                .unwrap();
                (gate, rss_kb())
            };
            let took = started.elapsed().as_secs_f64();
            println!(
                "host restart on a log of {} records ({} MB), {}: {took:.2} s, resident memory {} MB more after the start",
                gate.records(),
                size >> 20,
                if whole {
                    "the log read whole first"
                } else {
                    "the log read one entry at a time"
                },
                resident.saturating_sub(before) >> 10
            );
            gate.close().unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    if only.is_some() {
        return;
    }
    // 100,000 distinct forged credentials: none is admitted, so none is cached; memory stays flat.
    let table = Table::load(&bytes, &compiler.verifying_key()).unwrap();
    let (gate, _) = Gate::start(
        table,
        issuer.verifying_key(),
        SigningKey::from_bytes(&[3; 32]),
        FixedClock::new(NOW),
        tollgate_host::store::MemoryStore::default(),
        Discard,
        &[],
        &GateOptions {
            env: Some("prod".to_owned()),
            ..GateOptions::default()
        },
    )
    .unwrap();
    let forger = SigningKey::from_bytes(&[9; 32]);
    let table = Table::load(&bytes, &compiler.verifying_key()).unwrap();
    let before = rss_kb();
    for i in 0..100_000u32 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_le_bytes());
        let claims = Claims {
            agent: "support_bot",
            via: &[],
            env: None,
            audience: None,
            scope: &[],
            issued_at: NOW,
            ttl: 600,
            id,
        };
        let forged = issue(&table, &claims, &forger, &|_| false).unwrap();
        let line = format!(
            r#"{{"credential":"{}","tool":"crm.read_customer","args":{{"customer_id":"c"}}}}"#,
            base64::engine::general_purpose::STANDARD.encode(forged)
        );
        std::hint::black_box(gate.decide_line(line.as_bytes()));
    }
    println!(
        "100,000 distinct forged credentials: resident memory {} kB before, {} kB after, {} sessions cached",
        before,
        rss_kb(),
        gate.cached_sessions()
    );
}

/// A gate on a fresh directory `dir` (emptied first): its state and its audit log there, with
/// `sync`, as `tollgate gate` runs by default (a signed checkpoint every 100 records,
/// `DEFAULT_CHECKPOINT_EVERY`).
fn file_gate<'t>(
    bytes: &'t [u8],
    compiler: &SigningKey,
    issuer: &SigningKey,
    dir: &std::path::Path,
    sync: SyncPolicy,
) -> Gate<'t, FixedClock, FileStore, AuditFile> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let table = Table::load(bytes, &compiler.verifying_key()).unwrap();
    let store = FileStore::open(&dir.join("state")).unwrap();
    let (audit, existing) = AuditFile::open(&dir.join("audit.log"), sync).unwrap();
    Gate::start(
        table,
        issuer.verifying_key(),
        SigningKey::from_bytes(&[3; 32]),
        FixedClock::new(NOW),
        store,
        audit,
        &existing,
        &GateOptions {
            env: Some("prod".to_owned()),
            ..GateOptions::default()
        },
    )
    .unwrap()
    .0
}

/// An output that keeps nothing but counts decision lines and allows. It sits behind a
/// `BufWriter`, so a verdict may be split between two writes: the bytes that could begin one are
/// carried into the next.
#[derive(Default)]
struct Tally {
    lines: usize,
    allowed: usize,
    carry: Vec<u8>,
}

const ALLOW: &[u8] = b"\"verdict\":\"allow\"";

impl std::io::Write for Tally {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.lines += memchr::memchr_iter(b'\n', bytes).count();
        // Verdicts across the seam (the last bytes of earlier writes and the first of this
        // one), then within this write: memchr's SIMD search, so counting costs the gate's
        // thread about what a real sink's copy would. A match across the seam holds bytes of
        // both sides, so none is counted twice.
        let keep = ALLOW.len() - 1;
        let seam = self.carry.len();
        self.carry
            .extend_from_slice(&bytes[..bytes.len().min(keep)]);
        self.allowed += memchr::memmem::find_iter(&self.carry, ALLOW)
            .filter(|&at| at < seam)
            .count();
        self.allowed += memchr::memmem::find_iter(bytes, ALLOW).count();
        if bytes.len() >= keep {
            self.carry.clear();
            self.carry.extend_from_slice(&bytes[bytes.len() - keep..]);
        } else {
            self.carry.truncate(seam);
            self.carry.extend_from_slice(bytes);
            let excess = self.carry.len().saturating_sub(keep);
            self.carry.drain(..excess);
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A log that keeps nothing (the memory figure is the gate's own).
struct Discard;

impl tollgate_host::audit_log::AuditStore for Discard {
    fn append(&mut self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn len(&self) -> u64 {
        0
    }
}
