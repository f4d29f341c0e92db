//! The policies the README and the tutorial show are real: they check, and their tests pass.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly at the first surprise"
)]

use tollgate_compiler::diagnostic::render_human;
use tollgate_compiler::source::SourceSet;
use tollgate_compiler::testing::run_all;
use tollgate_tests::root;

fn toll_blocks(path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    text.split("```toll\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or("").to_owned())
        .collect()
}

fn check_and_test(name: &str, text: &str) {
    let sources = SourceSet::single(name, text);
    let policy = tollgate_compiler::load(&sources)
        .unwrap_or_else(|d| panic!("{name}:\n{}", render_human(&d, &sources)));
    for outcome in run_all(&policy) {
        assert!(outcome.passed(), "{name}: test {:?} fails", outcome.name);
    }
}

#[test]
fn the_readme_policy_checks_and_passes_its_tests() {
    let blocks = toll_blocks("README.md");
    assert!(!blocks.is_empty());
    for (index, block) in blocks.iter().enumerate() {
        check_and_test(&format!("README.md block {}", index + 1), block);
    }
}

#[test]
fn the_tutorial_builds_one_working_policy() {
    // The tutorial grows one policy step by step; its blocks together are that policy.
    let blocks = toll_blocks("book/src/tutorial.md");
    assert!(blocks.len() >= 4);
    check_and_test("book/src/tutorial.md", &blocks.join("\n"));
}

/// The tutorial's `refund.json` gets the decision the tutorial prints, and the reason it gives for
/// `context.env` holds: without it the same request is an invalid request.
#[test]
fn the_tutorial_request_gets_the_decision_shown() {
    use tollgate_compiler::eval::{decide, State};
    use tollgate_compiler::model::Reason;
    let tutorial = std::fs::read_to_string(root().join("book/src/tutorial.md")).unwrap();
    let json = tutorial
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the tutorial shows refund.json");
    assert!(tutorial
        .contains("tollgate eval desk --request refund.json\ndeny forbidden by no_big_refunds"));
    let sources = SourceSet::single("tutorial", &toll_blocks("book/src/tutorial.md").join("\n"));
    let policy = tollgate_compiler::load(&sources).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
    let request = tollgate_compiler::request::from_json(value.clone(), 0).unwrap();
    let decision = decide(&policy, &request, &mut State::new());
    assert_eq!(decision.reason, Some(Reason::Forbidden));
    assert_eq!(
        decision.rule,
        policy.rule_by_label("no_big_refunds"),
        "{decision:?}"
    );
    value.as_object_mut().unwrap().remove("context");
    let request = tollgate_compiler::request::from_json(value, 0).unwrap();
    let decision = decide(&policy, &request, &mut State::new());
    assert_eq!(decision.reason, Some(Reason::InvalidRequest));
}

fn book(chapter: &str) -> String {
    std::fs::read_to_string(root().join("book/src").join(chapter)).unwrap()
}

/// The book's byte-by-byte tables are the code's constants: a layout change that forgets the book
/// (or the reverse) fails here.
#[test]
fn the_table_format_chapter_matches_the_layout_constants() {
    use tollgate_runtime::format::{self, header, section};
    let text = book("table-format.md");
    for (offset, size, name) in [
        (header::MAGIC, "4", "magic"),
        (header::FORMAT_VERSION, "2", "format version"),
        (header::FLAGS, "2", "flags"),
        (header::POLICY_HASH, "32", "policy hash"),
        (header::POLICY_VERSION, "8", "policy version"),
        (header::SECTIONS, "18 × 8", "for each section"),
    ] {
        let row = format!("| {offset} | {size} | {name}");
        assert!(
            text.contains(&row),
            "table-format.md lacks the header row `{row}`"
        );
    }
    assert!(text.contains(&format!("format version ({})", format::VERSION)));
    assert!(text.contains(&format!("header ({})", format::HEADER_SIZE)));
    for (index, name, size) in [
        (section::AGENTS, "AGENTS", format::AGENT_SIZE),
        (section::TOOLS, "TOOLS", format::TOOL_SIZE),
        (section::ARGS, "ARGS", format::ARG_SIZE),
        (section::BUCKETS, "BUCKETS", format::BUCKET_SIZE),
        (section::ENTRIES, "ENTRIES", format::ENTRY_SIZE),
        (section::LIMITS, "LIMITS", format::LIMIT_SIZE),
        (section::DELEGATIONS, "DELEGATIONS", format::DELEGATION_SIZE),
        (section::RESPONSES, "RESPONSES", format::RESPONSE_SIZE),
    ] {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("| {index} | {name} |")))
            .unwrap_or_else(|| panic!("table-format.md lacks section {index} {name}"));
        assert!(
            row.contains(&format!("| {size} bytes:")),
            "section {name} is {size} bytes: {row}"
        );
    }
}

#[test]
fn the_credentials_chapter_matches_the_layout_constants() {
    use tollgate_runtime::credential::{field, VERSION};
    let text = book("credentials.md");
    for (offset, size, name) in [
        (field::MAGIC, 4, "magic"),
        (field::VERSION, 2, "version"),
        (field::RESERVED, 2, "reserved"),
        (field::ID, 16, "credential id"),
        (field::POLICY_HASH, 32, "policy hash"),
        (field::ISSUED_AT, 8, "issued at"),
        (field::EXPIRES_AT, 8, "expires at"),
    ] {
        let row = format!("| {offset} | {size} | {name}");
        assert!(text.contains(&row), "credentials.md lacks the row `{row}`");
    }
    assert!(text.contains(&format!("| {} | 1 + n | agent name", field::AGENT)));
    assert!(text.contains(&format!("## Layout (version {VERSION})")));
}

#[test]
fn every_deny_reason_is_in_the_book_with_its_code() {
    use tollgate_runtime::Reason;
    let semantics = book("semantics.md");
    let all: String = ["semantics.md", "credentials.md", "cli.md"]
        .iter()
        .map(|c| book(c))
        .collect();
    for reason in Reason::ALL {
        assert!(
            all.contains(&format!("`{}`", reason.as_str())),
            "the book never names `{}`",
            reason.as_str()
        );
        // Rows of the semantics chapter's reason table end with the stable code.
        if let Some(row) = semantics
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", reason.as_str())))
        {
            assert!(
                row.trim_end().ends_with(&format!("| {} |", reason.code())),
                "{row}"
            );
        }
    }
}
