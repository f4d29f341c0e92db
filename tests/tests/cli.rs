//! Snapshots of what the `tollgate` command prints, run in-process from the repository root.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly at the first surprise"
)]

use tollgate_tests::{root, run_cli};

fn cli(args: &[&str]) -> String {
    cli_with_stdin(args, "")
}

fn cli_with_stdin(args: &[&str], stdin: &str) -> String {
    std::env::set_current_dir(root()).unwrap();
    let (code, out, err) = run_cli(args, stdin);
    format!("exit: {code}\n--- stdout\n{out}--- stderr\n{err}")
}

#[test]
fn check_clean_example() {
    insta::assert_snapshot!(cli(&["check", "examples/support-desk"]));
}

#[test]
fn check_reports_errors_human() {
    insta::assert_snapshot!(cli(&["check", "tests/fixtures/invalid/many_errors.toll"]));
}

#[test]
fn check_reports_errors_json() {
    insta::assert_snapshot!(cli(&[
        "check",
        "tests/fixtures/invalid/many_errors.toll",
        "--format",
        "json"
    ]));
}

#[test]
fn check_missing_path_is_a_usage_error() {
    insta::assert_snapshot!(cli(&["check", "no/such/dir"]));
}

#[test]
fn eval_allow() {
    insta::assert_snapshot!(cli(&[
        "eval",
        "examples/support-desk",
        "--request",
        "tests/fixtures/cli/refund_small.json"
    ]));
}

#[test]
fn eval_deny_explains_rules() {
    insta::assert_snapshot!(cli(&[
        "eval",
        "examples/support-desk",
        "--request",
        "tests/fixtures/cli/refund_big.json"
    ]));
}

#[test]
fn eval_json() {
    insta::assert_snapshot!(cli(&[
        "eval",
        "examples/support-desk",
        "--request",
        "tests/fixtures/cli/refund_big.json",
        "--format",
        "json"
    ]));
}

#[test]
fn eval_sequence_with_delegation() {
    insta::assert_snapshot!(cli(&[
        "eval",
        "examples/finance-ops",
        "--request",
        "tests/fixtures/cli/delegated_payment.json"
    ]));
}

#[test]
fn eval_reads_stdin_and_uses_the_given_time() {
    let request = r#"{"agent": "coder", "tool": "shell.run", "args": {"command": "ls", "timeout_s": 5}, "context": {"env": "sandbox"}}"#;
    insta::assert_snapshot!(cli_with_stdin(
        &[
            "eval",
            "examples/coding-agent",
            "--request",
            "-",
            "--time",
            "3600"
        ],
        request
    ));
}

#[test]
fn eval_rejects_malformed_requests() {
    let request = r#"{"agent": "coder", "tool": "shell.run", "args": {"timeout_s": 1.5}}"#;
    insta::assert_snapshot!(cli_with_stdin(
        &["eval", "examples/coding-agent", "--request", "-"],
        request
    ));
}

#[test]
fn test_passing_example() {
    insta::assert_snapshot!(cli(&["test", "examples/finance-ops"]));
}

#[test]
fn test_failures_show_expected_and_actual() {
    insta::assert_snapshot!(cli(&["test", "tests/fixtures/cli/failing_test.toll"]));
}

#[test]
fn test_json() {
    insta::assert_snapshot!(cli(&[
        "test",
        "tests/fixtures/cli/failing_test.toll",
        "--format",
        "json"
    ]));
}

#[test]
fn fmt_check_lists_unformatted_files() {
    insta::assert_snapshot!(cli(&[
        "fmt",
        "--check",
        "tests/fixtures/cli/unformatted.toll"
    ]));
}

#[test]
fn fmt_rewrites_in_place() {
    let dir = std::env::temp_dir().join(format!("tollgate-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("policy.toll");
    std::fs::copy(root().join("tests/fixtures/cli/unformatted.toll"), &file).unwrap();
    let path = file.display().to_string();
    let (code, _, _) = run_cli(&["fmt", &path], "");
    assert_eq!(code, 0);
    let formatted = std::fs::read_to_string(&file).unwrap();
    let (again, out, _) = run_cli(&["fmt", "--check", &path], "");
    assert_eq!((again, out.as_str()), (0, ""), "fmt is not idempotent");
    std::fs::remove_dir_all(&dir).unwrap();
    insta::assert_snapshot!(formatted);
}

#[test]
fn help_lists_the_commands() {
    insta::assert_snapshot!(cli(&["--help"]));
}
