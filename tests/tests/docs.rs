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
