//! The verifier on the shipped examples: clean examples stay clean, every flawed example reports
//! exactly its planted defects, and every witness any analysis produces replays through the
//! reference evaluator with the decisions the finding claims.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly at the first surprise"
)]

use tollgate_compiler::diagnostic::{Code, Severity};
use tollgate_compiler::verify::{self, diff, replay, Options};
use tollgate_tests::{all_policy_dirs, example_dirs, load_dir, relative, root, run_cli};

fn codes(report: &verify::Report) -> Vec<&'static str> {
    let mut codes: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.diagnostic.severity != Severity::Note)
        .map(|f| f.diagnostic.code.as_str())
        .collect();
    codes.sort_unstable();
    codes
}

#[test]
fn every_witness_replays() {
    let mut witnesses = 0;
    for dir in all_policy_dirs() {
        let (_, policy) = load_dir(&dir);
        let report = verify::verify(&policy, &Options::default());
        for finding in &report.findings {
            assert_ne!(
                finding.diagnostic.code,
                Code::Inconclusive,
                "{}: {}",
                relative(&dir),
                finding.diagnostic.message
            );
            for witness in &finding.witnesses {
                witnesses += 1;
                assert!(
                    replay(&policy, witness),
                    "{}: witness {:?} of {:?} does not replay",
                    relative(&dir),
                    witness.label,
                    finding.diagnostic.message
                );
            }
        }
    }
    assert!(witnesses >= 20, "only {witnesses} witnesses");
    println!("witnesses replayed: {witnesses}");
}

#[test]
fn clean_examples_have_no_errors_or_warnings() {
    for dir in example_dirs() {
        let (_, policy) = load_dir(&dir);
        let report = verify::verify(&policy, &Options::default());
        assert_eq!(codes(&report), Vec::<&str>::new(), "{}", relative(&dir));
        assert_eq!(
            report.proved.len(),
            policy.assertions.len(),
            "{}: unproved assertions",
            relative(&dir)
        );
    }
}

#[test]
fn flawed_examples_report_exactly_their_planted_defects() {
    let expected: &[(&str, &[&str])] = &[
        ("assertion", &["TG1006"]),
        ("dead-permit", &["TG1002"]),
        ("escalation", &["TG1007", "TG1007", "TG1007"]),
        ("redundant", &["TG1005"]),
        ("trifecta", &["TG1008"]),
        ("unsat-condition", &["TG1001"]),
    ];
    for (name, wanted) in expected {
        let (_, policy) = load_dir(&root().join("examples/flawed").join(name));
        let report = verify::verify(&policy, &Options::default());
        assert_eq!(codes(&report), *wanted, "examples/flawed/{name}");
    }
}

#[test]
fn dead_permits_name_their_covering_forbids() {
    let (sources, policy) = load_dir(&root().join("examples/flawed/dead-permit"));
    let report = verify::verify(&policy, &Options::default());
    let dead = report
        .findings
        .iter()
        .find(|f| f.diagnostic.code == Code::DeadPermit)
        .unwrap();
    let related: Vec<&str> = dead
        .diagnostic
        .related
        .iter()
        .map(|r| sources.snippet(r.span))
        .collect();
    assert_eq!(related.len(), 1);
    assert!(related[0].starts_with("no_small_refunds:"), "{related:?}");
}

#[test]
fn diff_witnesses_replay_against_both_versions() {
    let (_, old) = load_dir(&root().join("examples/support-desk"));
    let (_, new) = load_dir(&root().join("examples/versions/support-desk-v2"));
    let report = diff::diff(&old, &new, &Options::default());
    assert!(!report.findings.is_empty());
    for index in 0..report.findings.len() {
        assert!(
            diff::replay_diff(&old, &new, &report, index),
            "{}",
            report.findings[index].diagnostic.message
        );
    }
    let widened: Vec<String> = report
        .pairs
        .iter()
        .filter(|p| p.change == diff::Change::Widened)
        .map(|p| {
            format!(
                "{} -> {}{}",
                p.agent,
                p.tool,
                if p.acknowledged { " (ack)" } else { "" }
            )
        })
        .collect();
    assert_eq!(
        widened,
        [
            "support_bot -> payments.refund (ack)",
            "support_bot -> email.send",
            "supervisor_bot -> email.send"
        ]
    );
    assert_eq!(report.widened_unacknowledged(), 2);
}

#[test]
fn a_policy_diffed_with_itself_is_unchanged() {
    for dir in example_dirs() {
        let (_, policy) = load_dir(&dir);
        let report = diff::diff(&policy, &policy, &Options::default());
        assert!(report.findings.is_empty(), "{}", relative(&dir));
    }
}

fn cli(args: &[&str]) -> String {
    std::env::set_current_dir(root()).unwrap();
    let (code, out, err) = run_cli(args, "");
    // Timing lines vary from run to run.
    let err: String = err
        .lines()
        .filter(|l| !l.starts_with("verified in"))
        .map(|l| format!("{l}\n"))
        .collect();
    format!("exit: {code}\n--- stdout\n{out}--- stderr\n{err}")
}

#[test]
fn verify_snapshots_of_every_example() {
    for dir in all_policy_dirs() {
        let path = relative(&dir);
        if path.contains("versions") {
            continue;
        }
        let name = path.replace('/', "_");
        insta::with_settings!({ snapshot_path => "snapshots/verify", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(name, cli(&["verify", &path]));
        });
    }
}

#[test]
fn every_finding_kind_as_json_and_sarif() {
    for dir in all_policy_dirs() {
        let path = relative(&dir);
        if !path.contains("flawed") {
            continue;
        }
        let name = path.replace('/', "_");
        insta::with_settings!({ snapshot_path => "snapshots/verify", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(format!("{name}.json"), cli(&["verify", &path, "--format", "json"]));
            insta::assert_snapshot!(format!("{name}.sarif"), cli(&["verify", &path, "--format", "sarif"]));
        });
    }
    // Notes (overlaps, forbids that never override) live in a clean example.
    insta::assert_snapshot!(
        "verify_notes_json",
        cli(&["verify", "examples/support-desk", "--format", "json"])
    );
}

#[test]
fn diff_fails_on_unacknowledged_widening() {
    insta::assert_snapshot!(
        "diff_fail_on_widen",
        cli(&[
            "diff",
            "examples/support-desk",
            "examples/versions/support-desk-v2",
            "--fail-on",
            "widen"
        ])
    );
    insta::assert_snapshot!(
        "diff_json",
        cli(&[
            "diff",
            "examples/support-desk",
            "examples/versions/support-desk-v2",
            "--format",
            "json"
        ])
    );
}

#[test]
fn graph_is_dot() {
    insta::assert_snapshot!(
        "graph_escalation",
        cli(&["graph", "examples/flawed/escalation"])
    );
}

/// Verifies one regression fixture of `tests/fixtures/verify/`: it must report exactly these
/// codes (notes aside), prove exactly these assertions, and every witness must replay.
fn check_fixture(name: &str, wanted: &[&str], proved: &[&str]) -> verify::Report {
    let path = root().join("tests/fixtures/verify").join(name);
    assert!(path.is_file(), "missing fixture {name}");
    let (_, policy) = load_dir(&path);
    let report = verify::verify(&policy, &Options::default());
    let messages: Vec<String> = report
        .findings
        .iter()
        .map(|f| format!("{}: {}", f.diagnostic.code.as_str(), f.diagnostic.message))
        .collect();
    assert_eq!(codes(&report), wanted, "{name}: {messages:#?}");
    assert_eq!(report.proved, proved, "{name}: proved");
    for finding in &report.findings {
        for witness in &finding.witnesses {
            assert!(
                replay(&policy, witness),
                "{name}: witness {:?} of {:?} does not replay",
                witness.label,
                finding.diagnostic.message
            );
        }
    }
    report
}

#[test]
fn a_string_above_the_last_plane_is_verified_not_a_crash() {
    check_fixture("astral-string.toll", &["TG1006"], &[]);
}

#[test]
fn supplementary_characters_mean_what_the_gate_means() {
    let report = check_fixture(
        "supplementary-string.toll",
        &["TG1006"],
        &["last_never", "cat_never", "grin_always"],
    );
    let violated = report
        .findings
        .iter()
        .find(|f| f.diagnostic.code == Code::AssertionViolated)
        .unwrap();
    assert!(violated.diagnostic.message.contains("spelled_never"));
    let text = &violated.witnesses[0].request.args["text"];
    assert_eq!(
        text,
        &tollgate_compiler::model::Value::Str("\\u{10ffff}".to_owned())
    );
}

#[test]
fn a_backslash_before_u_braces_survives_the_solver() {
    let report = check_fixture("backslash-string.toll", &["TG1006"], &[]);
    let violated = report
        .findings
        .iter()
        .find(|f| f.diagnostic.code == Code::AssertionViolated)
        .unwrap();
    let path = &violated.witnesses[0].request.args["path"];
    assert!(
        matches!(path, tollgate_compiler::model::Value::Str(s) if s.starts_with("C:\\u{41}")),
        "{path:?}"
    );
}

#[test]
fn a_length_in_a_set_of_numbers_is_reached() {
    let report = check_fixture("length-in-a-set.toll", &["TG1006"], &[]);
    let violated = &report.findings[0].witnesses[0].request.args["a"];
    assert!(
        matches!(violated, tollgate_compiler::model::Value::List(items) if items.len() == 5 || items.len() == 7),
        "{violated:?}"
    );
}

#[test]
fn a_depth_compared_inside_a_body_is_reached() {
    let report = check_fixture("depth-in-a-body.toll", &["TG1006"], &[]);
    let violated = report
        .findings
        .iter()
        .find(|f| f.diagnostic.code == Code::AssertionViolated)
        .unwrap();
    assert!(violated.witnesses[0].request.via.len() >= 9);
}

/// Every policy the verifier tests read: the examples and the regression fixtures.
fn every_policy() -> Vec<std::path::PathBuf> {
    let mut all = all_policy_dirs();
    all.extend(tollgate_tests::toll_files("tests/fixtures/verify"));
    all
}

/// A solver `unknown` is never taken as an answer: with every n-th query forced to `unknown`,
/// every finding other than TG1009 is one the fully decided run makes too (an overlap may stay
/// unclassified, an escalation may claim only the per-request fact), every assertion proved is proved there too, and some TG1009 says what was
/// left undecided.
#[test]
fn an_unknown_answer_is_never_taken_as_an_answer() {
    let mut compared = 0;
    for path in every_policy() {
        let (_, policy) = load_dir(&path);
        let decided = verify::verify(&policy, &Options::default());
        for every in [1, 2, 3, 5, 7] {
            let options = Options {
                unknown_every: every,
                ..Options::default()
            };
            let forced = verify::verify(&policy, &options);
            let place = format!("{} (every {every})", relative(&path));
            for finding in &forced.findings {
                if finding.diagnostic.code == Code::Inconclusive {
                    continue;
                }
                compared += 1;
                let same = decided.findings.iter().any(|d| {
                    d.diagnostic.code == finding.diagnostic.code
                        && d.subject == finding.subject
                        && (d.diagnostic.message == finding.diagnostic.message
                            || finding.diagnostic.message.contains("not classified")
                            || finding
                                .diagnostic
                                .message
                                .contains("with requests it may not make directly"))
                });
                assert!(
                    same,
                    "{place}: {} `{}` is not a finding of the decided run",
                    finding.diagnostic.code.as_str(),
                    finding.diagnostic.message
                );
            }
            for name in &forced.proved {
                assert!(decided.proved.contains(name), "{place}: {name} proved");
            }
            if every == 1 {
                assert_eq!(forced.proved, Vec::<String>::new(), "{place}");
            }
            if forced.stats.unknown > 0 {
                assert!(
                    forced
                        .findings
                        .iter()
                        .any(|f| f.diagnostic.code == Code::Inconclusive),
                    "{place}: {} unknown answers and no TG1009",
                    forced.stats.unknown
                );
            }
        }
    }
    println!("findings under forced unknowns compared: {compared}");
}

#[test]
fn a_diff_with_unknown_answers_claims_no_pair_unchanged() {
    let (_, old) = load_dir(&root().join("examples/support-desk"));
    let (_, new) = load_dir(&root().join("examples/versions/support-desk-v2"));
    let options = Options {
        unknown_every: 1,
        ..Options::default()
    };
    let report = diff::diff(&old, &new, &options);
    assert!(report.unknown > 0);
    for pair in &report.pairs {
        assert!(pair.undecided, "{} -> {}", pair.agent, pair.tool);
    }
    // Guards and acknowledgements are compared as text; nothing the solver decides is claimed.
    assert!(report.findings.iter().all(|f| !matches!(
        f.diagnostic.code,
        Code::Widened | Code::Narrowed | Code::StaleAcknowledgement
    )));
    assert!(report
        .findings
        .iter()
        .any(|f| f.diagnostic.code == Code::Inconclusive));
}

#[test]
fn rules_of_a_delegator_apply_on_its_chains() {
    let report = check_fixture("delegator-rules.toll", &[], &[]);
    let overlap = report
        .findings
        .iter()
        .find(|f| f.diagnostic.code == Code::Overlap)
        .unwrap();
    let request = &overlap.witnesses[0].request;
    assert_eq!(request.via, ["lead"], "{request:?}");
    // The escalation path names the delegator's permit among its steps.
    let escalation = report
        .findings
        .iter()
        .find(|f| f.diagnostic.code == Code::Escalation)
        .unwrap();
    assert!(
        escalation
            .diagnostic
            .related
            .iter()
            .any(|r| r.message == "`lead` delegates under `lead_through_helpers`"),
        "{:?}",
        escalation.diagnostic.related
    );
}

#[test]
fn the_delegation_horizon_counts_every_value_a_depth_meets() {
    let report = check_fixture("depth-horizon.toll", &["TG1006"], &[]);
    let violated = report
        .findings
        .iter()
        .find(|f| f.diagnostic.code == Code::AssertionViolated)
        .unwrap();
    assert!(violated.witnesses[0].request.via.len() >= 4);
}

#[test]
fn a_grant_path_names_the_rule_allowing_its_final_call() {
    let (sources, policy) = load_dir(&root().join("examples/flawed/escalation"));
    let report = verify::verify(&policy, &Options::default());
    let grant = report
        .findings
        .iter()
        .find(|f| {
            f.diagnostic.code == Code::Escalation
                && f.witnesses.iter().any(|w| w.granted_role.is_some())
        })
        .unwrap();
    let last = grant.diagnostic.related.last().unwrap();
    assert!(
        last.message.starts_with("with role `dba`"),
        "{}",
        last.message
    );
    assert_eq!(
        sources.snippet(last.span),
        "permit role dba to call db.drop_table;"
    );
}

#[test]
fn an_asserted_trifecta_is_reported_once_with_a_witness_per_leg() {
    let report = check_fixture("asserted-trifecta.toll", &["TG1006", "TG1008"], &[]);
    let assertion = report
        .findings
        .iter()
        .find(|f| f.diagnostic.code == Code::AssertionViolated)
        .unwrap();
    let legs: Vec<&str> = assertion
        .witnesses
        .iter()
        .map(|w| w.label.split(':').next().unwrap())
        .collect();
    assert_eq!(legs, ["private data", "untrusted input", "external action"]);
    // The TG1008 left is the archivist's, which no assertion covers.
    let trifecta = report
        .findings
        .iter()
        .find(|f| f.diagnostic.code == Code::Trifecta)
        .unwrap();
    assert!(trifecta.diagnostic.message.starts_with("`archivist`"));
}

fn fixture_policy(name: &str) -> tollgate_compiler::model::Policy {
    let path = root().join("tests/fixtures/verify").join(name);
    assert!(path.is_file(), "missing fixture {name}");
    load_dir(&path).1
}

fn finding_lines(findings: &[verify::Finding]) -> Vec<String> {
    let mut lines: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "{} {:?}: {}",
                f.diagnostic.code.as_str(),
                f.diagnostic.severity,
                f.diagnostic.message
            )
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn diff_reports_guards_and_acknowledgements_that_come_and_go() {
    let (old, new) = (
        fixture_policy("diff-guards-old.toll"),
        fixture_policy("diff-guards-new.toll"),
    );
    let mut report = diff::diff(&old, &new, &Options::default());
    assert_eq!(
        finding_lines(&report.findings),
        [
            "TG1010 Warning: `acknowledge widening clerk -> pay.audit` matches no finding",
            "TG1101 Note: `clerk` may now do more with `pay.lookup`",
            "TG1101 Warning: `clerk` may now do more with `pay.refund`",
            "TG1102 Note: `clerk` may now do less with `pay.refund`",
            "TG1103 Warning: assertion cap was removed",
            "TG1104 Note: forbid no_lookups_at_night was removed",
            "TG1104 Warning: forbid no_big was removed",
            "TG1105 Note: assertion small_only is new",
            "TG1106 Note: forbid no_zero is new",
            "TG1107 Note: `acknowledge trifecta clerk` was removed",
            "TG1107 Note: `acknowledge widening clerk -> pay.audit` is new",
            "TG1107 Note: `acknowledge widening clerk -> pay.lookup` is new",
        ]
    );
    assert_eq!(report.removed_unacknowledged, 2);
    assert!(report.fails_on_widen());
    report.gate_on_widen();
    let errors: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.diagnostic.severity == Severity::Error)
        .map(|f| f.diagnostic.code.as_str())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
}

#[test]
fn removing_an_assertion_fails_the_widening_gate_though_nothing_widens() {
    let path = root().join("tests/fixtures/verify/diff-guards-old.toll");
    let text = std::fs::read_to_string(&path).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("cap:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(text, without);
    let sources = tollgate_compiler::source::SourceSet::single("new.toll", &without);
    let new = tollgate_compiler::load(&sources).unwrap();
    let old = fixture_policy("diff-guards-old.toll");
    let report = diff::diff(&old, &new, &Options::default());
    assert_eq!(report.widened_unacknowledged(), 0);
    assert_eq!(report.removed_unacknowledged, 1);
    assert!(report.fails_on_widen());
    let unchanged = diff::diff(&old, &old, &Options::default());
    assert!(!unchanged.fails_on_widen());
}

#[test]
fn an_acknowledgement_that_matches_nothing_is_a_warning() {
    let report = check_fixture("stale-acknowledgements.toll", &["TG1010", "TG1010"], &[]);
    assert!(report
        .findings
        .iter()
        .all(|f| f.diagnostic.severity != Severity::Error));
}

#[test]
fn a_widening_hop_that_widens_only_arguments_is_an_escalation() {
    let report = check_fixture("widening-arguments.toll", &["TG1007"], &[]);
    let escalation = report
        .findings
        .iter()
        .find(|f| f.diagnostic.code == Code::Escalation)
        .unwrap();
    let [through, direct] = &escalation.witnesses[..] else {
        panic!("{:?}", escalation.witnesses);
    };
    assert_eq!(through.request.via, ["clerk"]);
    assert_eq!(direct.request.agent, "clerk");
    assert_eq!(through.request.args, direct.request.args);
    assert!(matches!(
        through.request.args["amount"],
        tollgate_compiler::model::Value::Int(amount) if amount > 100
    ));
}

#[test]
fn a_four_literal_string_problem_is_decided() {
    let report = check_fixture("four-literal-strings.toll", &[], &["no_localhost"]);
    assert_eq!(report.stats.unknown, 0);
    let overlap = report
        .findings
        .iter()
        .find(|f| f.diagnostic.code == Code::Overlap)
        .unwrap();
    let url = &overlap.witnesses[0].request.args["url"];
    assert!(
        matches!(url, tollgate_compiler::model::Value::Str(s) if s.starts_with("https://") && s.contains(".example.com")),
        "{url:?}"
    );
}

#[test]
fn an_acknowledgement_approves_the_change_it_came_with_not_every_later_one() {
    let (v1, v2, v3) = (
        fixture_policy("ack-carried-v1.toll"),
        fixture_policy("ack-carried-v2.toll"),
        fixture_policy("ack-carried-v3.toll"),
    );
    // Version 2 widens refunds and acknowledges it: the gate passes.
    let report = diff::diff(&v1, &v2, &Options::default());
    assert_eq!(report.widened_unacknowledged(), 0);
    assert!(!report.fails_on_widen());
    // Version 3 widens them again under the same, carried-over acknowledgement: it fails.
    let report = diff::diff(&v2, &v3, &Options::default());
    assert_eq!(report.widened_unacknowledged(), 1);
    assert!(report.fails_on_widen());
    // A new acknowledgement (a new reason) approves the new change.
    let path = root().join("tests/fixtures/verify/ack-carried-v3.toll");
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("FIN-7: refunds up to 500", "FIN-9: refunds up to 5000");
    let v3_acknowledged = tollgate_compiler::load(&tollgate_compiler::source::SourceSet::single(
        "v3.toll", &text,
    ))
    .unwrap();
    assert!(!diff::diff(&v2, &v3_acknowledged, &Options::default()).fails_on_widen());
}

/// No policy the checker accepts crashes the verifier, whatever Unicode its strings hold: string
/// constants drawn from every class of code point (ASCII, 2-, 3- and 4-byte UTF-8, the last
/// planes, controls, quotes and backslashes), in every string operation and in an assertion,
/// through every analysis. A panic fails the test; every witness must replay.
#[test]
fn no_unicode_string_constant_crashes_the_verifier() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let escape = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == ' ' {
                    c.to_string()
                } else {
                    format!("\\u{{{:x}}}", u32::from(c))
                }
            })
            .collect()
    };
    let class = prop_oneof![
        proptest::char::range('\u{0}', '\u{7f}'),
        proptest::char::range('\u{80}', '\u{7ff}'),
        proptest::char::range('\u{800}', '\u{ffff}'),
        proptest::char::range('\u{10000}', '\u{2ffff}'),
        proptest::char::range('\u{30000}', '\u{10ffff}'),
        proptest::sample::select(vec!['"', '\\', 'u', '{', '}', '\u{e0041}', '\u{10ffff}']),
    ];
    let constant =
        proptest::collection::vec(class, 0..4).prop_map(|c| c.into_iter().collect::<String>());
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&20_261_127u64.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 40,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    let verified = std::cell::Cell::new(0usize);
    let result = runner.run(&proptest::collection::vec(constant, 5), |c| {
        let text = format!(
            "domain d {{ public }}\n\
             tool t.x {{ domain d effect read args {{ s: string }} }}\n\
             agent a {{ roles [r] }}\n\
             permit any to call t.x when args.s starts_with \"{}\" or args.s contains \"{}\";\n\
             forbid any to call t.x when args.s == \"{}\" and not args.s ends_with \"{}\";\n\
             assert never agent a calls t.x when args.s contains \"{}\";\n",
            escape(&c[0]),
            escape(&c[1]),
            escape(&c[2]),
            escape(&c[3]),
            escape(&c[4]),
        );
        let sources = tollgate_compiler::source::SourceSet::single("unicode.toll", &text);
        let policy = tollgate_compiler::load(&sources).map_err(|d| {
            TestCaseError::fail(format!("does not check: {}\n{text}", d[0].message))
        })?;
        let options = Options {
            timeout_ms: 2_000,
            ..Options::default()
        };
        let report = verify::verify(&policy, &options);
        for finding in &report.findings {
            for witness in &finding.witnesses {
                prop_assert!(
                    replay(&policy, witness),
                    "a witness does not replay\n{text}"
                );
            }
        }
        verified.set(verified.get() + 1);
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    assert_eq!(verified.get(), 40);
}

#[test]
fn a_budget_bounds_a_cost_charged_per_argument() {
    let path = root().join("tests/fixtures/valid/costs_per_argument.toll");
    let text = std::fs::read_to_string(&path).unwrap();
    let load = |text: &str| {
        tollgate_compiler::load(&tollgate_compiler::source::SourceSet::single(
            "p.toll", text,
        ))
        .unwrap()
    };
    // 20 per instance within a budget of 200: no call asks for more than 10 instances.
    let report = verify::verify(&load(&text), &Options::default());
    assert_eq!(codes(&report), Vec::<&str>::new(), "{:?}", report.findings);
    assert_eq!(report.proved.len(), 1);
    // With a budget of 400, 11 instances fit: the assertion fails, with a witness that replays.
    let wider = text.replace("budget 200 per 1h", "budget 400 per 1h");
    let policy = load(&wider);
    let report = verify::verify(&policy, &Options::default());
    let finding = report
        .findings
        .iter()
        .find(|f| f.diagnostic.code == Code::AssertionViolated)
        .expect("the assertion fails");
    let witness = finding.witnesses.first().expect("with a witness");
    assert!(replay(&policy, witness), "the witness replays");
    let instances = match witness.request.args.get("instances") {
        Some(tollgate_compiler::model::Value::Int(n)) => *n,
        other => panic!("{other:?}"),
    };
    assert!((11..=20).contains(&instances), "{instances}");
}

/// Many agents and tools, few rules: the verifier asks about the pairs rules reach, not about
/// every pair (a pair whose agent has no permit there is unreachable without a query), so its
/// work follows the rules, not agents × tools.
#[test]
fn the_verifier_asks_about_the_pairs_rules_reach() {
    use std::fmt::Write as _;
    let (agents, tools) = (300, 300);
    let mut text = String::from("domain d { private }\n");
    for t in 0..tools {
        let _ = writeln!(
            text,
            "tool t{t}.op {{ domain d effect read args {{ n: int[0..100] }} }}"
        );
    }
    for a in 0..agents {
        let _ = writeln!(text, "agent a{a} {{ }}");
    }
    for r in 0..agents {
        let _ = writeln!(
            text,
            "permit agent a{r} to call t{}.op when args.n <= {};",
            (r * 7) % tools,
            r % 100
        );
    }
    let sources = tollgate_compiler::source::SourceSet::single("p.toll", &text);
    let policy = tollgate_compiler::load(&sources).unwrap();
    let report = verify::verify(&policy, &Options::default());
    assert_eq!(report.errors(), 0, "{:?}", report.findings);
    assert_eq!(report.stats.buckets, agents * tools);
    // A handful of queries per rule (applies, overridden, redundant, reach), not one per pair.
    assert!(
        report.stats.queries <= 5 * agents,
        "{} queries for {} rules over {} pairs",
        report.stats.queries,
        agents,
        agents * tools
    );
}

/// A finding's witness shows a list with no more elements than its claims need: the solver's
/// model for the private-key edit held two edits (one of them idle); the witness holds the one
/// that matters, and still replays.
#[test]
fn witnesses_hold_the_fewest_list_elements_their_claims_need() {
    use tollgate_compiler::model::Value;
    let (_, policy) = load_dir(&root().join("examples/mcp-filesystem"));
    let report = verify::verify(&policy, &Options::default());
    let mut lists = 0;
    for finding in &report.findings {
        for witness in &finding.witnesses {
            assert!(replay(&policy, witness), "{}", witness.label);
            for value in witness.request.args.values() {
                if let Value::List(items) = value {
                    lists += 1;
                    assert_eq!(items.len(), 1, "{}: {value}", finding.diagnostic.message);
                    // One element fewer and the witness no longer shows what it claims.
                    let mut shorter = witness.clone();
                    for value in shorter.request.args.values_mut() {
                        if let Value::List(items) = value {
                            items.clear();
                        }
                    }
                    assert!(!replay(&policy, &shorter), "{}", witness.label);
                }
            }
        }
    }
    assert!(lists >= 1, "no witness of the example holds a list");
}
