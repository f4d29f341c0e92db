//! `tollgate eval`: decide requests given as JSON against a policy, and explain each decision.

use crate::{load, location, Exit, Format, Io};
use std::path::Path;
use tollgate_compiler::eval::{self, Decision, State};
use tollgate_compiler::model::{Policy, RuleEffect};
use tollgate_compiler::request;
use tollgate_compiler::source::SourceSet;
use tollgate_compiler::testing;

pub fn run(
    io: &mut Io<'_>,
    path: &Path,
    request_path: &str,
    time: Option<u64>,
    format: Format,
) -> Exit {
    let (policy, sources) = match load(io, path, format) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let mut text = String::new();
    let read = if request_path == "-" {
        io.stdin.read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(request_path).map(|t| text = t)
    };
    if let Err(error) = read {
        return io.usage(&format!("cannot read `{request_path}`: {error}"));
    }
    let json: serde_json::Value = match tollgate_host::protocol::parse_strict(&text) {
        Ok(json) => json,
        Err(error) => return io.usage(&format!("`{request_path}` is not JSON: {error}")),
    };
    let now = time.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let list = match json {
        serde_json::Value::Array(items) => items,
        single => vec![single],
    };
    let mut requests = Vec::new();
    for (index, item) in list.into_iter().enumerate() {
        match request::from_json(item, now) {
            Ok(request) => requests.push(request),
            Err(error) => {
                return io.usage(&format!(
                    "request {} in `{request_path}`: {error}",
                    index + 1
                ))
            }
        }
    }
    let mut state = State::new();
    let mut all_allowed = true;
    let mut json_out = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        let decision = eval::decide(&policy, request, &mut state);
        all_allowed &= decision.is_allow();
        match format {
            Format::Human => {
                if requests.len() > 1 {
                    io.out(&format!("request {}: ", index + 1));
                }
                io.out(&explain(&policy, &sources, request, &decision));
            }
            Format::Json => json_out.push(decision_json(&policy, &sources, request, &decision)),
        }
    }
    if format == Format::Json {
        let value = if json_out.len() == 1 {
            json_out.remove(0)
        } else {
            serde_json::Value::Array(json_out)
        };
        io.out(&format!("{value:#}\n"));
    }
    if all_allowed {
        Exit::Success
    } else {
        Exit::Denied
    }
}

/// A decision as a person reads it: the verdict, then why.
fn explain(
    policy: &Policy,
    sources: &SourceSet,
    request: &tollgate_compiler::model::Request,
    decision: &Decision,
) -> String {
    let mut out = format!("{}\n", testing::describe_decision(policy, decision));
    let chain = if request.via.is_empty() {
        String::new()
    } else {
        format!(" via [{}]", request.via.join(", "))
    };
    out.push_str(&format!(
        "  request: {}{chain} calls {}\n",
        request.agent, request.tool
    ));
    if let Some(agent) = &decision.denied_agent {
        if *agent != request.agent {
            out.push_str(&format!(
                "  denied for: {agent} (a delegator on the chain)\n"
            ));
        }
    }
    if let Some(detail) = &decision.detail {
        out.push_str(&format!("  because: {detail}\n"));
    }
    if let Some(limit) = decision.limit.and_then(|id| policy.limits.get(id)) {
        out.push_str(&format!(
            "  limit: {} at {}\n",
            sources.snippet(limit.span),
            location(sources, limit.span)
        ));
    }
    if decision.revoked_agent {
        out.push_str(&format!(
            "  revoked: this denial revoked `{}`\n",
            request.agent
        ));
    }
    if !decision.trace.is_empty() {
        out.push_str("  rules:\n");
    }
    for entry in &decision.trace {
        let Some(rule) = policy.rules.get(entry.rule) else {
            continue;
        };
        let effect = match rule.effect {
            RuleEffect::Permit => "permit",
            RuleEffect::Forbid => "forbid",
        };
        let status = if entry.applies {
            "applies".to_owned()
        } else {
            match entry.failed {
                Some(span) => format!("does not apply: `{}` is false", sources.snippet(span)),
                None => "does not apply".to_owned(),
            }
        };
        out.push_str(&format!(
            "    {effect} {} ({}) for {}: {status}\n",
            policy.rule_name(entry.rule),
            location(sources, rule.span),
            entry.agent
        ));
    }
    if decision.trace.is_empty()
        && decision.reason == Some(tollgate_compiler::model::Reason::NotPermitted)
    {
        out.push_str("  rules: none matches this agent and tool\n");
    }
    out
}

fn decision_json(
    policy: &Policy,
    sources: &SourceSet,
    request: &tollgate_compiler::model::Request,
    decision: &Decision,
) -> serde_json::Value {
    let trace: Vec<serde_json::Value> = decision
        .trace
        .iter()
        .map(|entry| {
            serde_json::json!({
                "agent": entry.agent,
                "rule": policy.rule_name(entry.rule),
                "applies": entry.applies,
                "failed": entry.failed.map(|span| sources.snippet(span).to_owned()),
            })
        })
        .collect();
    serde_json::json!({
        "request": request::to_json(request),
        "verdict": decision.verdict.as_str(),
        "reason": decision.reason.map(|r| r.as_str()),
        "rule": decision.rule.map(|r| policy.rule_name(r)),
        "denied_agent": decision.denied_agent,
        "detail": decision.detail,
        "revoked_agent": decision.revoked_agent,
        "trace": trace,
    })
}
