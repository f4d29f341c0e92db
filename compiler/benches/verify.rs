//! `cargo bench -p tollgate-compiler --bench verify`: times `verify` and `diff` on generated
//! policy sets of 100, 1,000 and 5,000 rules and prints the figures (time per rule shows how it
//! scales). Each size runs a few times; the median is reported.
//!
//! The generated workload: agents × tools, one conditional permit per (agent, tool) with an
//! amount cap and an environment test, a conditional forbid per tool, and delegation pairs.
//!
//! A second, string-heavy workload (100 and 1,000 rules) gives every permit a prefix, a negated
//! containment and an `or` of an empty-string test and another containment — the shape that
//! made Z3 4.8's string solver time out — and prints its time and unknown count. Pass `strings`
//! (`cargo bench -p tollgate-compiler --bench verify -- strings`) to run only that one.
//!
//! A third, list-heavy workload (100 and 1,000 rules; `-- lists` runs only it): every tool takes
//! `paths: list[string][1..16]` and `tags: list[enum[…]][0..4]`; every permit requires every
//! path to start with the tool's folder and at most a few paths, every forbid refuses any key
//! file or a tag. (Elements declared `path` carry the normal-form constraint, which Z3 4.8's
//! string solver is slow on: see the performance chapter.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a benchmark fails loudly"
)]

use std::fmt::Write;
use std::time::{Duration, Instant};
use tollgate_compiler::source::SourceSet;
use tollgate_compiler::verify::{self, diff, Options};

const TOOLS: usize = 20;

/// About `rules` rules: `rules / TOOLS` agents, each permitted every tool under a condition, plus
/// one forbid per tool. `cap` shifts the permits' amount caps, to make a second version.
fn generate(rules: usize, cap: i64) -> String {
    let agents = (rules / TOOLS).max(1);
    let mut text = String::from(
        "environments prod, sandbox;\ndomain money { private }\ndomain web { untrusted }\n",
    );
    for t in 0..TOOLS {
        let domain = if t % 5 == 0 { "web" } else { "money" };
        let _ = writeln!(text, "tool svc{t}.op {{ domain {domain} effect write args {{ amount: int[0..100000], region: enum[eu, us], note: string }} }}");
    }
    for a in 0..agents {
        let _ = writeln!(
            text,
            "agent a{a} {{ roles [team{}] attrs {{ level: {} }} }}",
            a % 7,
            a % 4
        );
    }
    for a in (0..agents.saturating_sub(1)).step_by(2) {
        let _ = writeln!(text, "delegate a{a} -> a{};", a + 1);
    }
    for a in 0..agents {
        for t in 0..TOOLS.min(rules.saturating_sub(TOOLS)) {
            let limit = 100 + ((a * 37 + t * 11) % 900) as i64 + cap;
            let _ = writeln!(
                text,
                "permit agent a{a} to call svc{t}.op when args.amount <= {limit} and (context.env == prod or agent.level >= 2);"
            );
        }
    }
    for t in 0..TOOLS {
        let _ = writeln!(
            text,
            "forbid any to call svc{t}.op when args.amount > 50000 or (args.region == us and args.note contains \"override\");"
        );
    }
    text
}

/// About `rules` string-heavy rules over `TOOLS` tools (see the crate doc).
fn generate_strings(rules: usize) -> String {
    let agents = (rules / TOOLS).max(1);
    let mut text = String::from("domain web { untrusted }\n");
    for t in 0..TOOLS {
        let _ = writeln!(
            text,
            "tool web{t}.fetch {{ domain web effect read args {{ url: string, mirror: string }} }}"
        );
    }
    for a in 0..agents {
        let _ = writeln!(text, "agent a{a} {{ roles [crawler] }}");
    }
    for a in 0..agents {
        for t in 0..TOOLS.min(rules.saturating_sub(TOOLS)) {
            let _ = writeln!(
                text,
                "permit agent a{a} to call web{t}.fetch when args.url starts_with \"https://s{t}.\" and not (args.url contains \"localhost\") and (args.mirror == \"\" or args.mirror contains \".a{a}.example\");"
            );
        }
    }
    for t in 0..TOOLS {
        let _ = writeln!(
            text,
            "forbid any to call web{t}.fetch when args.url contains \"169.254\" or args.url ends_with \".internal\" or args.mirror starts_with \"http://\";"
        );
    }
    text
}

/// About `rules` list-heavy rules over `TOOLS` tools (see the crate doc).
fn generate_lists(rules: usize) -> String {
    let agents = (rules / TOOLS).max(1);
    let mut text = String::from("domain files { private }\n");
    for t in 0..TOOLS {
        let _ = writeln!(
            text,
            "tool fs{t}.read_many {{ domain files effect read args {{ paths: list[string][1..16], tags: list[enum[public, internal, secret]][0..4] }} }}"
        );
    }
    for a in 0..agents {
        let _ = writeln!(text, "agent a{a} {{ roles [reader] }}");
    }
    for a in 0..agents {
        for t in 0..TOOLS.min(rules.saturating_sub(TOOLS)) {
            let _ = writeln!(
                text,
                "permit agent a{a} to call fs{t}.read_many when all p in args.paths {{ p starts_with \"/workspace/docs{t}/\" }} and len(args.paths) <= {};",
                2 + (a + t) % 6
            );
        }
    }
    for t in 0..TOOLS {
        let _ = writeln!(
            text,
            "forbid any to call fs{t}.read_many when any p in args.paths {{ p ends_with \".key\" }} or secret in args.tags;"
        );
    }
    text
}

/// Verifies `generate(100)` and `generate(1_000)` and prints the figures; `what` names the
/// workload in the 1,000-rule target line.
fn workload(options: &Options, what: &str, generate: fn(usize) -> String) {
    println!(
        "{:>6} {:>7} {:>12} {:>14} {:>9} {:>8}",
        "rules", "buckets", "verify", "verify/rule", "queries", "unknown"
    );
    for size in [100, 1_000] {
        let policy = load(&generate(size));
        let rules = policy.rules.len();
        let started = Instant::now();
        let report = verify::verify(&policy, options);
        let time = started.elapsed();
        println!(
            "{:>6} {:>7} {:>10.2?} {:>12.2?} {:>9} {:>8}",
            rules,
            report.stats.buckets,
            time,
            time / rules as u32,
            report.stats.queries,
            report.stats.unknown,
        );
        if size == 1_000 {
            println!(
                "        {what} at 1,000 rules: verify {:.1}s of 10s, {} unknown (target 0)",
                time.as_secs_f64(),
                report.stats.unknown
            );
        }
    }
}

fn load(text: &str) -> tollgate_compiler::model::Policy {
    tollgate_compiler::load(&SourceSet::single("bench.toll", text)).unwrap()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let options = Options::default();
    if std::env::args().any(|a| a == "strings") {
        workload(&options, "strings", generate_strings);
        return;
    }
    if std::env::args().any(|a| a == "lists") {
        workload(&options, "lists", generate_lists);
        return;
    }
    println!(
        "{:>6} {:>7} {:>12} {:>14} {:>12} {:>14} {:>9}",
        "rules", "buckets", "verify", "verify/rule", "diff", "diff/rule", "queries"
    );
    for size in [100, 1_000, 5_000] {
        let old = load(&generate(size, 0));
        let new = load(&generate(size, 25));
        let rules = old.rules.len();
        let runs = if size >= 5_000 { 1 } else { 3 };
        let mut verify_times = Vec::new();
        let mut report = None;
        for _ in 0..runs {
            let started = Instant::now();
            report = Some(verify::verify(&old, &options));
            verify_times.push(started.elapsed());
        }
        let report = report.unwrap();
        let mut diff_times = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let result = diff::diff(&old, &new, &options);
            diff_times.push(started.elapsed());
            assert!(result.widened_unacknowledged() > 0);
        }
        let (verify_time, diff_time) = (median(verify_times), median(diff_times));
        println!(
            "{:>6} {:>7} {:>10.2?} {:>12.2?} {:>10.2?} {:>12.2?} {:>9}",
            rules,
            report.stats.buckets,
            verify_time,
            verify_time / rules as u32,
            diff_time,
            diff_time / rules as u32,
            report.stats.queries,
        );
        if size == 1_000 {
            println!(
                "        targets at 1,000 rules: verify {:.1}s of 10s ({:.2}x the budget), diff {:.1}s of 5s ({:.2}x the budget)",
                verify_time.as_secs_f64(),
                verify_time.as_secs_f64() / 10.0,
                diff_time.as_secs_f64(),
                diff_time.as_secs_f64() / 5.0
            );
        }
    }
    println!("string-heavy workload:");
    workload(&options, "strings", generate_strings);
    println!("list-heavy workload:");
    workload(&options, "lists", generate_lists);
}
