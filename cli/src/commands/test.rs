//! `tollgate test`: run the policy's `test` blocks.

use crate::{load, location, plural, Exit, Format, Io};
use std::path::Path;
use tollgate_compiler::testing;

pub fn run(io: &mut Io<'_>, path: &Path, format: Format) -> Exit {
    let (policy, sources) = match load(io, path, format) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let outcomes = testing::run_all(&policy);
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    match format {
        Format::Human => {
            for outcome in &outcomes {
                let status = if outcome.passed() { "ok" } else { "FAILED" };
                io.out(&format!(
                    "test {} ... {status}\n",
                    tollgate_grammar::format::string(&outcome.name)
                ));
                for step in outcome.steps.iter().filter(|s| !s.passed) {
                    let request = &policy
                        .tests
                        .iter()
                        .find(|t| t.span == outcome.span)
                        .and_then(|t| t.steps.get(step.index));
                    let what = request.map_or(String::new(), |s| {
                        format!(": {} calls {}", s.request.agent, s.request.tool)
                    });
                    io.out(&format!(
                        "  step {} at {}{what}\n    expected: {}\n    actual:   {}\n",
                        step.index + 1,
                        location(&sources, step.span),
                        testing::describe_expectation(&policy, &step.expected),
                        testing::describe_decision(&policy, &step.actual),
                    ));
                    if let Some(detail) = &step.actual.detail {
                        io.out(&format!("    because:  {detail}\n"));
                    }
                }
            }
            io.out(&format!(
                "\n{} test{}: {} passed; {failed} failed\n",
                outcomes.len(),
                plural(outcomes.len()),
                outcomes.len() - failed
            ));
        }
        Format::Json => {
            let tests: Vec<serde_json::Value> = outcomes
                .iter()
                .map(|outcome| {
                    let failures: Vec<serde_json::Value> = outcome
                        .steps
                        .iter()
                        .filter(|s| !s.passed)
                        .map(|s| {
                            serde_json::json!({
                                "step": s.index + 1,
                                "location": location(&sources, s.span),
                                "expected": testing::describe_expectation(&policy, &s.expected),
                                "actual": testing::describe_decision(&policy, &s.actual),
                                "detail": s.actual.detail,
                            })
                        })
                        .collect();
                    serde_json::json!({
                        "name": outcome.name,
                        "passed": outcome.passed(),
                        "steps": outcome.steps.len(),
                        "failures": failures,
                    })
                })
                .collect();
            let json = serde_json::json!({
                "tests": tests,
                "passed": outcomes.len() - failed,
                "failed": failed,
            });
            io.out(&format!("{json:#}\n"));
        }
    }
    if failed == 0 {
        Exit::Success
    } else {
        Exit::Failure
    }
}
