//! Runs the `test` blocks of a policy through the reference evaluator.

use crate::eval::{decide, Decision, State, Verdict};
use crate::model::{Expectation, Policy, Reason, RuleId, TestCase};
use tollgate_grammar::Span;

#[derive(Debug)]
pub struct StepOutcome {
    pub index: usize,
    pub span: Span,
    pub expected: Expectation,
    pub actual: Decision,
    pub passed: bool,
}

#[derive(Debug)]
pub struct TestOutcome {
    pub name: String,
    pub span: Span,
    pub steps: Vec<StepOutcome>,
}

impl TestOutcome {
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|step| step.passed)
    }
}

/// Whether a decision meets an expectation: `deny` alone accepts any reason; a reason or rule,
/// when given, must be the one reported.
pub fn meets(expected: &Expectation, actual: &Decision) -> bool {
    match expected {
        Expectation::Allow { rule } => {
            actual.verdict == Verdict::Allow && rule.is_none_or(|r| actual.rule == Some(r))
        }
        Expectation::Deny { reason, rule } => {
            actual.verdict == Verdict::Deny
                && reason.is_none_or(|r| actual.reason == Some(r))
                && rule.is_none_or(|r| actual.rule == Some(r))
        }
    }
}

/// Runs one test: its steps share one fresh state, in order.
pub fn run_test(policy: &Policy, test: &TestCase) -> TestOutcome {
    let mut state = State::new();
    let steps = test
        .steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let actual = decide(policy, &step.request, &mut state);
            StepOutcome {
                index,
                span: step.span,
                passed: meets(&step.expect, &actual),
                expected: step.expect.clone(),
                actual,
            }
        })
        .collect();
    TestOutcome {
        name: test.name.clone(),
        span: test.span,
        steps,
    }
}

pub fn run_all(policy: &Policy) -> Vec<TestOutcome> {
    policy
        .tests
        .iter()
        .map(|test| run_test(policy, test))
        .collect()
}

/// `allow`, `deny`, `deny rate_limited`, `deny forbidden by no_big_refunds`.
pub fn describe_expectation(policy: &Policy, expected: &Expectation) -> String {
    match expected {
        Expectation::Allow { rule: None } => "allow".to_owned(),
        Expectation::Allow { rule: Some(rule) } => format!("allow by {}", policy.rule_name(*rule)),
        Expectation::Deny { reason, rule } => describe_deny(policy, *reason, *rule),
    }
}

pub fn describe_decision(policy: &Policy, decision: &Decision) -> String {
    match decision.verdict {
        Verdict::Allow => match decision.rule {
            Some(rule) => format!("allow by {}", policy.rule_name(rule)),
            None => "allow".to_owned(),
        },
        Verdict::Deny => describe_deny(policy, decision.reason, decision.rule),
    }
}

fn describe_deny(policy: &Policy, reason: Option<Reason>, rule: Option<RuleId>) -> String {
    let mut text = "deny".to_owned();
    if let Some(reason) = reason {
        text.push(' ');
        text.push_str(reason.as_str());
    }
    if let Some(rule) = rule {
        text.push_str(" by ");
        text.push_str(&policy.rule_name(rule));
    }
    text
}
