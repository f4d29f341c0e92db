//! Every shipped example checks clean and passes its own `test` blocks, with both allowed and
//! denied steps.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly at the first surprise"
)]

use tollgate_compiler::diagnostic::render_human;
use tollgate_compiler::source::SourceSet;
use tollgate_compiler::testing::{describe_decision, describe_expectation, run_all};
use tollgate_tests::{example_dirs, relative, toll_files};

#[test]
fn examples_pass_their_tests() {
    let dirs = example_dirs();
    assert!(dirs.len() >= 4, "expected at least four examples");
    let mut steps = 0;
    for dir in dirs {
        let mut sources = SourceSet::new();
        for file in toll_files(&relative(&dir)) {
            sources.add(&relative(&file), &std::fs::read_to_string(&file).unwrap());
        }
        let policy = tollgate_compiler::load(&sources)
            .unwrap_or_else(|d| panic!("{}:\n{}", relative(&dir), render_human(&d, &sources)));
        let outcomes = run_all(&policy);
        assert!(outcomes.len() >= 2, "{}: too few tests", relative(&dir));
        let (mut allowed, mut denied) = (0, 0);
        for outcome in &outcomes {
            for step in &outcome.steps {
                steps += 1;
                assert!(
                    step.passed,
                    "{}: test {:?} step {}: expected {}, got {}",
                    relative(&dir),
                    outcome.name,
                    step.index + 1,
                    describe_expectation(&policy, &step.expected),
                    describe_decision(&policy, &step.actual)
                );
                if step.actual.is_allow() {
                    allowed += 1;
                } else {
                    denied += 1;
                }
            }
        }
        assert!(
            allowed > 0 && denied > 0,
            "{}: needs allowed and denied flows",
            relative(&dir)
        );
    }
    println!("example test steps run: {steps}");
}
