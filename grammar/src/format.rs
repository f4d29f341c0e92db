//! The canonical formatter: a tree (and the comments beside it) printed back as text.
//!
//! `format` is idempotent, and `parse(format(tree))` gives back the same tree (spans aside). Blank
//! lines between items are kept (at most one); comments are never dropped: a comment inside a
//! one-line item moves to the line above it.

use crate::ast::*;
use std::fmt::Write;

const INDENT: &str = "    ";
const WIDTH: usize = 100;

/// Formats a parsed file. `source` is the text it was parsed from (used for blank lines and to
/// place comments).
/// `{ inner }`, or `{ }` when there is nothing inside.
fn braced(inner: &str) -> String {
    if inner.is_empty() {
        "{ }".to_owned()
    } else {
        format!("{{ {inner} }}")
    }
}

pub fn format(file: &File, comments: &[Comment], source: &str) -> String {
    let mut printer = Printer {
        out: String::new(),
        comments,
        next_comment: 0,
        source,
        last_end: 0,
    };
    for item in &file.items {
        printer.item(item);
    }
    printer.flush_comments_before(u32::MAX, "");
    while printer.out.ends_with("\n\n") {
        printer.out.pop();
    }
    printer.out
}

struct Printer<'a> {
    out: String,
    comments: &'a [Comment],
    next_comment: usize,
    source: &'a str,
    last_end: u32,
}

impl Printer<'_> {
    /// Writes a blank line if the source had one between the last thing printed and `start`.
    fn blank_line_before(&mut self, start: u32) {
        let gap = self
            .source
            .get(self.last_end as usize..start as usize)
            .unwrap_or("");
        let newlines = gap.chars().filter(|c| *c == '\n').count();
        let at_block_start = self.out.is_empty() || self.out.ends_with("{\n");
        if newlines >= 2 && !at_block_start && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    fn flush_comments_before(&mut self, position: u32, indent: &str) {
        while let Some(comment) = self.comments.get(self.next_comment) {
            if comment.span.start >= position {
                break;
            }
            self.blank_line_before(comment.span.start);
            let _ = writeln!(self.out, "{indent}//{}", comment.text);
            self.last_end = comment.span.end;
            self.next_comment += 1;
        }
    }

    /// Ends a line, attaching a comment that followed `end` on the same source line.
    fn end_line(&mut self, end: u32) {
        self.last_end = end;
        if let Some(comment) = self.comments.get(self.next_comment) {
            let between = self
                .source
                .get(end as usize..comment.span.start as usize)
                .unwrap_or("\n");
            if comment.span.start >= end && !between.contains('\n') {
                let _ = write!(self.out, " //{}", comment.text);
                self.last_end = comment.span.end;
                self.next_comment += 1;
            }
        }
        self.out.push('\n');
    }

    /// A node printed on one line: its comments go above it.
    fn line(&mut self, start: u32, end: u32, indent: &str, text: &str) {
        self.flush_comments_before(start, indent);
        self.blank_line_before(start);
        self.flush_comments_before(end, indent);
        self.out.push_str(indent);
        self.out.push_str(text);
        self.end_line(end);
    }

    fn open_block(&mut self, start: u32, header: &str) {
        self.flush_comments_before(start, "");
        self.blank_line_before(start);
        self.out.push_str(header);
        self.out.push_str(" {\n");
        self.last_end = start;
    }

    fn close_block(&mut self, end: u32) {
        self.flush_comments_before(end, INDENT);
        self.out.push('}');
        self.end_line(end);
    }

    fn item(&mut self, item: &Item) {
        let span = item.span();
        match item {
            Item::Environments(environments) => {
                let names: Vec<&str> = environments.names.iter().map(|n| n.name.as_str()).collect();
                let text = format!("environments {};", names.join(", "));
                self.line(span.start, span.end, "", &text);
            }
            Item::Domain(domain) => {
                let labels: Vec<&str> = domain.labels.iter().map(|n| n.name.as_str()).collect();
                let text = format!("domain {} {}", domain.name.name, braced(&labels.join(", ")));
                self.line(span.start, span.end, "", &text);
            }
            Item::Tool(tool) => {
                self.open_block(span.start, &format!("tool {}", tool.name.source()));
                for prop in &tool.props {
                    let text = tool_prop(&prop.kind);
                    self.line(prop.span.start, prop.span.end, INDENT, &text);
                }
                self.close_block(span.end);
            }
            Item::Agent(agent) => {
                self.open_block(span.start, &format!("agent {}", agent.name.name));
                for prop in &agent.props {
                    let text = agent_prop(&prop.kind);
                    self.line(prop.span.start, prop.span.end, INDENT, &text);
                }
                self.close_block(span.end);
            }
            Item::Rule(rule) => {
                let head = format!(
                    "{}{} {} to call {}",
                    label(&rule.label),
                    match rule.effect {
                        RuleEffect::Permit => "permit",
                        RuleEffect::Forbid => "forbid",
                    },
                    principal(&rule.principal),
                    tool_pattern(&rule.tools)
                );
                let text = with_condition(&head, rule.condition.as_ref());
                self.line(span.start, span.end, "", &text);
            }
            Item::Limit(limit) => {
                let mut text = format!(
                    "{}limit {}",
                    label(&limit.label),
                    principal(&limit.principal)
                );
                if let Some(tools) = &limit.tools {
                    let _ = write!(text, " on {}", tool_pattern(tools));
                }
                let _ = match &limit.kind {
                    LimitKind::Rate { count, window } => {
                        write!(
                            text,
                            " rate {} per {}",
                            count.value,
                            duration(window.seconds)
                        )
                    }
                    LimitKind::Budget { amount, window } => {
                        write!(
                            text,
                            " budget {} per {}",
                            amount.value,
                            duration(window.seconds)
                        )
                    }
                    LimitKind::Depth { max } => write!(text, " depth {}", max.value),
                    LimitKind::Repeat { count, window } => {
                        write!(
                            text,
                            " repeat {} within {}",
                            count.value,
                            duration(window.seconds)
                        )
                    }
                };
                text.push(';');
                self.line(span.start, span.end, "", &text);
            }
            Item::Delegate(delegate) => {
                let widening = if delegate.widening.is_some() {
                    " widening"
                } else {
                    ""
                };
                let text = format!(
                    "delegate {} -> {}{widening};",
                    delegate.from.name, delegate.to.name
                );
                self.line(span.start, span.end, "", &text);
            }
            Item::OnDeny(on_deny) => {
                let who = match &on_deny.principal {
                    Some(p) => format!(" {}", principal(p)),
                    None => String::new(),
                };
                let text = format!(
                    "on{who} deny {} within {} revoke;",
                    on_deny.count.value,
                    duration(on_deny.window.seconds)
                );
                self.line(span.start, span.end, "", &text);
            }
            Item::Assert(assert) => {
                let text = format!("{}assert {}", label(&assert.label), assertion(&assert.kind));
                self.line(span.start, span.end, "", &text);
            }
            Item::Acknowledge(acknowledge) => {
                let mut text = match &acknowledge.kind {
                    AcknowledgeKind::Trifecta { agent } => {
                        format!("acknowledge trifecta {}", agent.name)
                    }
                    AcknowledgeKind::Escalation { agent, tool } => {
                        format!("acknowledge escalation {} -> {}", agent.name, tool.source())
                    }
                    AcknowledgeKind::Widening { agent, tool } => {
                        format!("acknowledge widening {} -> {}", agent.name, tool.source())
                    }
                };
                if let Some(reason) = &acknowledge.reason {
                    text.push(' ');
                    text.push_str(&string(&reason.value));
                }
                text.push(';');
                self.line(span.start, span.end, "", &text);
            }
            Item::Test(test) => {
                self.open_block(span.start, &format!("test {}", string(&test.name.value)));
                for step in &test.steps {
                    let text = test_step(step);
                    self.line(step.span.start, step.span.end, INDENT, &text);
                }
                self.close_block(span.end);
            }
        }
    }
}

fn with_condition(head: &str, condition: Option<&Expr>) -> String {
    match condition {
        None => format!("{head};"),
        Some(condition) => {
            let condition = expr(condition);
            let one_line = format!("{head} when {condition};");
            if one_line.len() <= WIDTH {
                one_line
            } else {
                format!("{head}\n{INDENT}when {condition};")
            }
        }
    }
}

fn assertion(kind: &AssertKind) -> String {
    match kind {
        AssertKind::Never {
            principal: p,
            tools,
            condition,
        } => with_condition(
            &format!("never {} calls {}", principal(p), tool_pattern(tools)),
            condition.as_ref(),
        ),
        AssertKind::Always {
            principal: p,
            tools,
            condition,
        } => with_condition(
            &format!("always {} calls {}", principal(p), tool_pattern(tools)),
            condition.as_ref(),
        ),
        AssertKind::NoTrifecta { principal: None } => "no trifecta;".to_owned(),
        AssertKind::NoTrifecta { principal: Some(p) } => {
            format!("no trifecta for {};", principal(p))
        }
    }
}

fn test_step(step: &TestStep) -> String {
    let mut text = step.agent.name.clone();
    if !step.via.is_empty() {
        let via: Vec<&str> = step.via.iter().map(|v| v.name.as_str()).collect();
        let _ = write!(text, " via [{}]", via.join(", "));
    }
    let _ = write!(text, " calls {}", step.tool.source());
    if !step.args.is_empty() {
        let _ = write!(text, " {}", braced(&test_args(&step.args)));
    }
    if let Some(env) = &step.env {
        let _ = write!(text, " in {}", env.name);
    }
    if let Some(at) = &step.at {
        let _ = write!(text, " at {}", duration(at.seconds));
    }
    text.push_str(" expect ");
    match &step.expect.kind {
        ExpectationKind::Allow { rule } => {
            text.push_str("allow");
            if let Some(rule) = rule {
                let _ = write!(text, " by {}", rule.name);
            }
        }
        ExpectationKind::Deny { reason, rule } => {
            text.push_str("deny");
            if let Some(reason) = reason {
                let _ = write!(text, " {}", reason.name);
            }
            if let Some(rule) = rule {
                let _ = write!(text, " by {}", rule.name);
            }
        }
    }
    text.push(';');
    text
}

fn label(label: &Option<Ident>) -> String {
    match label {
        Some(label) => format!("{}: ", label.name),
        None => String::new(),
    }
}

fn tool_prop(kind: &ToolPropKind) -> String {
    match kind {
        ToolPropKind::Domain(name) => format!("domain {}", name.name),
        ToolPropKind::Effect(name) => format!("effect {}", name.name),
        ToolPropKind::Env(name) => format!("env {}", name.name),
        ToolPropKind::Cost { amount, per } => match per {
            Some(arg) => format!("cost {} * args.{}", amount.value, arg.name),
            None => format!("cost {}", amount.value),
        },
        ToolPropKind::Args { args, open } => format!("args {}", arg_decls(args, *open)),
        ToolPropKind::Attrs(list) => format!("attrs {}", braced(&attrs(list))),
        ToolPropKind::Creates(name) => format!("creates {}", name.name),
        ToolPropKind::Grants(name) => format!("grants {}", name.name),
    }
}

/// `{ name: type, name?: type, .. }`
fn arg_decls(args: &[ArgDecl], open: bool) -> String {
    let mut args: Vec<String> = args
        .iter()
        .map(|arg| {
            let optional = if arg.optional { "?" } else { "" };
            format!("{}{optional}: {}", arg.name.name, type_expr(&arg.ty))
        })
        .collect();
    if open {
        args.push("..".to_owned());
    }
    braced(&args.join(", "))
}

fn type_expr(ty: &TypeExpr) -> String {
    match &ty.kind {
        TypeExprKind::List {
            base,
            elements,
            length,
        } => {
            let elements: Vec<String> = elements.iter().map(type_expr).collect();
            let length = length
                .as_ref()
                .map(|(min, max)| match max {
                    Some(max) => format!("[{}..{}]", min.value, max.value),
                    None => format!("[{}..]", min.value),
                })
                .unwrap_or_default();
            format!("{}[{}]{length}", base.name, elements.join(", "))
        }
        TypeExprKind::Object { fields, open } => arg_decls(fields, *open),
        TypeExprKind::Named(name) => name.name.clone(),
        TypeExprKind::Bounded { base, min, max } => {
            format!("{}[{}..{}]", base.name, min.value, max.value)
        }
        TypeExprKind::Enum { base, variants } => {
            let variants: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
            format!("{}[{}]", base.name, variants.join(", "))
        }
        TypeExprKind::Decimal {
            base,
            scale,
            bounds,
        } => match bounds {
            None => format!("{}({})", base.name, scale.value),
            Some((min, max)) => format!(
                "{}({})[{}..{}]",
                base.name,
                scale.value,
                literal(min),
                literal(max)
            ),
        },
    }
}

fn agent_prop(kind: &AgentPropKind) -> String {
    match kind {
        AgentPropKind::Roles(roles) => {
            let roles: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
            format!("roles [{}]", roles.join(", "))
        }
        AgentPropKind::Attrs(list) => format!("attrs {}", braced(&attrs(list))),
        AgentPropKind::CredentialTtl(ttl) => format!("credential_ttl {}", duration(ttl.seconds)),
        AgentPropKind::Budget { amount, window } => {
            format!("budget {} per {}", amount.value, duration(window.seconds))
        }
    }
}

fn test_args(list: &[TestArg]) -> String {
    let parts: Vec<String> = list
        .iter()
        .map(|arg| format!("{}: {}", arg.name.name, test_value(&arg.value)))
        .collect();
    parts.join(", ")
}

fn test_value(value: &TestValue) -> String {
    match value {
        TestValue::Literal(value) => literal(value),
        TestValue::List(items, _) => {
            let items: Vec<String> = items.iter().map(test_value).collect();
            format!("[{}]", items.join(", "))
        }
        TestValue::Object(fields, _) => braced(&test_args(fields)),
    }
}

fn attrs(list: &[AttrDecl]) -> String {
    let parts: Vec<String> = list
        .iter()
        .map(|attr| format!("{}: {}", attr.name.name, literal(&attr.value)))
        .collect();
    parts.join(", ")
}

fn principal(principal: &Principal) -> String {
    match &principal.kind {
        PrincipalKind::Any => "any".to_owned(),
        PrincipalKind::Agent(name) => format!("agent {}", name.name),
        PrincipalKind::Role(name) => format!("role {}", name.name),
    }
}

fn tool_pattern(pattern: &ToolPattern) -> String {
    match &pattern.kind {
        ToolPatternKind::Any => "any".to_owned(),
        ToolPatternKind::Exact(name) => name.source(),
        ToolPatternKind::Prefix(name) => format!("{}.*", name.source()),
        ToolPatternKind::Domain(name) => format!("domain {}", name.name),
        ToolPatternKind::Effect(name) => format!("effect {}", name.name),
    }
}

/// Prints a literal so that the lexer reads back the same value.
pub fn literal(literal: &Literal) -> String {
    match literal {
        Literal::Int(int) => int.value.to_string(),
        Literal::Decimal(number) => decimal(i128::from(number.units), number.scale),
        Literal::Str(text) => string(&text.value),
        Literal::Bool(value, _) => value.to_string(),
        Literal::Name(name) => name.name.clone(),
    }
}

/// A string literal with the escapes the lexer understands.
pub fn string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for character in value.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `units / 10^scale` written out with exactly `scale` digits after the point: `(1250, 2)` is
/// `12.50`, `(-5, 1)` is `-0.5`, `(7, 0)` is `7`.
pub fn decimal(units: i128, scale: u8) -> String {
    let digits = units.unsigned_abs().to_string();
    let sign = if units < 0 { "-" } else { "" };
    let scale = usize::from(scale);
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// Seconds in the largest units that divide them: `5400` is `1h30m`.
pub fn duration(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".to_owned();
    }
    let mut rest = seconds;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= size {
            let _ = write!(out, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    out
}

fn operand(operand: &Operand) -> String {
    match operand {
        Operand::Field { root, name, .. } => format!("{}.{}", root.keyword(), name.name),
        Operand::Literal(value) => literal(value),
        Operand::Var { name, field, .. } => match field {
            Some(field) => format!("{}.{}", name.name, field.name),
            None => name.name.clone(),
        },
        Operand::Call { func, arg, .. } => format!("{}({})", func.name, self::operand(arg)),
    }
}

/// Prints a condition with the fewest parentheses that keep its shape.
pub fn expr(expr: &Expr) -> String {
    expr_at(expr, 0)
}

fn precedence(expr: &Expr) -> u8 {
    match expr.kind {
        ExprKind::Or(..) => 1,
        ExprKind::And(..) => 2,
        ExprKind::Not(..) => 3,
        _ => 4,
    }
}

fn expr_at(node: &Expr, context: u8) -> String {
    let text = match &node.kind {
        ExprKind::Or(a, b) => format!("{} or {}", expr_at(a, 1), expr_at(b, 2)),
        ExprKind::And(a, b) => format!("{} and {}", expr_at(a, 2), expr_at(b, 3)),
        ExprKind::Not(inner) => format!("not {}", expr_at(inner, 3)),
        ExprKind::Compare { op, lhs, rhs } => {
            format!("{} {} {}", operand(lhs), op.symbol(), operand(rhs))
        }
        ExprKind::In { lhs, set } => {
            let set: Vec<String> = set.iter().map(literal).collect();
            format!("{} in [{}]", operand(lhs), set.join(", "))
        }
        ExprKind::Str { op, lhs, rhs } => {
            format!("{} {} {}", operand(lhs), op.keyword(), operand(rhs))
        }
        ExprKind::Operand(value) => operand(value),
        ExprKind::Has(value) => format!("has {}", operand(value)),
        ExprKind::Under { lhs, root } => format!("{} under {}", operand(lhs), operand(root)),
        ExprKind::Member { lhs, list } => format!("{} in {}", operand(lhs), operand(list)),
        ExprKind::Quantified {
            all,
            var,
            list,
            body,
        } => format!(
            "{} {} in {} {{ {} }}",
            if *all { "all" } else { "any" },
            var.name,
            operand(list),
            expr_at(body, 0)
        ),
    };
    if precedence(node) < context {
        format!("({text})")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, FileId};

    fn check(input: &str, expected: &str) {
        let parsed = parse(input, FileId(0));
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let once = format(&parsed.file, &parsed.comments, input);
        assert_eq!(once, expected);
        let again = parse(&once, FileId(0));
        assert_eq!(
            format(&again.file, &again.comments, &once),
            once,
            "not idempotent"
        );
    }

    #[test]
    fn tool_name_segments_are_quoted_only_when_they_are_not_plain_names() {
        check(
            "tool everything.\"get-sum\" { domain d effect read args { } }\nr: permit any to call fs.\"read\";\ns: permit any to call everything.\"get-sum\";\n",
            "tool everything.\"get-sum\" {\n    domain d\n    effect read\n    args { }\n}\nr: permit any to call fs.read;\ns: permit any to call everything.\"get-sum\";\n",
        );
        // A keyword as a segment stays quoted.
        check(
            "r: permit any to call fs.\"test\";\n",
            "r: permit any to call fs.\"test\";\n",
        );
    }

    #[test]
    fn lists_objects_and_quantifiers_print_back() {
        check(
            "tool fs.edit { domain d effect write args { paths: list[path][1..16], edits: list[{oldText: string, newText: string}], tags?: list[enum[a, b]] } }\nr: permit any to call fs.edit when all p in args.paths { p under \"docs\" } and len(args.paths) <= 4 and not any e in args.edits { e.newText contains \"KEY\" } and a in args.tags;\n",
            "tool fs.edit {\n    domain d\n    effect write\n    args { paths: list[path][1..16], edits: list[{ oldText: string, newText: string }], tags?: list[enum[a, b]] }\n}\nr: permit any to call fs.edit\n    when all p in args.paths { p under \"docs\" } and len(args.paths) <= 4 and not any e in args.edits { e.newText contains \"KEY\" } and a in args.tags;\n",
        );
    }

    #[test]
    fn decimals_keep_their_scale() {
        assert_eq!(decimal(1250, 2), "12.50");
        assert_eq!(decimal(-5, 1), "-0.5");
        assert_eq!(decimal(5, 3), "0.005");
        assert_eq!(decimal(7, 0), "7");
        assert_eq!(decimal(i128::from(i64::MIN), 2), "-92233720368547758.08");
    }

    #[test]
    fn durations_use_the_largest_units() {
        assert_eq!(duration(5_400), "1h30m");
        assert_eq!(duration(90_061), "1d1h1m1s");
        assert_eq!(duration(0), "0s");
    }

    #[test]
    fn rules_are_one_line() {
        check(
            "permit   agent a to call  x.y\n when args.n<=3 ;",
            "permit agent a to call x.y when args.n <= 3;\n",
        );
    }

    #[test]
    fn parentheses_only_where_needed() {
        check(
            "permit any to call x when (args.a == 1 or args.b == 2) and not (args.c == 3 and args.d) ;",
            "permit any to call x when (args.a == 1 or args.b == 2) and not (args.c == 3 and args.d);\n",
        );
        check(
            "permit any to call x when args.a or (args.b or args.c);",
            "permit any to call x when args.a or (args.b or args.c);\n",
        );
    }

    #[test]
    fn blocks_are_indented_and_comments_kept() {
        check(
            "// tools\ntool crm.read { domain pii // where\n effect read args {id:string,n:int[0..5]} }\n\n\n\nagent a { roles [x, y] credential_ttl 900s }",
            "// tools\ntool crm.read {\n    domain pii // where\n    effect read\n    args { id: string, n: int[0..5] }\n}\n\nagent a {\n    roles [x, y]\n    credential_ttl 15m\n}\n",
        );
    }

    #[test]
    fn comments_inside_a_rule_move_above_it() {
        check(
            "permit any to call x // a\n  when args.a; // b\n",
            "// a\npermit any to call x when args.a; // b\n",
        );
    }

    #[test]
    fn strings_round_trip_escapes() {
        check(
            "test \"a\\\"b\\n\" { a calls t { s: \"x\\\\y\\u{7}\" } expect allow; }",
            "test \"a\\\"b\\n\" {\n    a calls t { s: \"x\\\\y\\u{7}\" } expect allow;\n}\n",
        );
    }

    #[test]
    fn long_conditions_go_to_the_next_line() {
        let input = "permit agent some_long_agent_name to call payments.refund when args.amount <= 100 and args.currency == usd;";
        check(
            input,
            "permit agent some_long_agent_name to call payments.refund\n    when args.amount <= 100 and args.currency == usd;\n",
        );
    }
}
