//! `parse(format(tree)) == tree` for generated trees covering every construct of the grammar.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly at the first surprise"
)]

use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;
use tollgate_grammar::ast::*;
use tollgate_grammar::{format::format, parse, FileId, Span};
use tollgate_tests::shape;

const NAMES: &[&str] = &["a", "b1", "support_bot", "x_y", "Zed", "_hidden"];
const FIELD_NAMES: &[&str] = &["amount", "to", "env", "cost", "n", "depth"];

fn span() -> Span {
    Span::default()
}

fn ident() -> impl Strategy<Value = Ident> {
    proptest::sample::select(NAMES).prop_map(|name| Ident {
        name: name.to_owned(),
        span: span(),
    })
}

fn field_name() -> impl Strategy<Value = Ident> {
    proptest::sample::select(FIELD_NAMES).prop_map(|name| Ident {
        name: name.to_owned(),
        span: span(),
    })
}

/// A field name, or a dotted path into an object's fields (`options.meta.team`): one `Ident`.
fn field_path() -> impl Strategy<Value = Ident> {
    proptest::collection::vec(field_name(), 1..4).prop_map(|parts| Ident {
        name: parts
            .iter()
            .map(|part| part.name.as_str())
            .collect::<Vec<_>>()
            .join("."),
        span: span(),
    })
}

fn dotted() -> impl Strategy<Value = DottedName> {
    proptest::collection::vec(ident(), 1..4).prop_map(|segments| DottedName {
        segments,
        span: span(),
    })
}

fn int() -> impl Strategy<Value = IntLit> {
    prop_oneof![any::<i64>(), -5i64..5].prop_map(|value| IntLit {
        value,
        span: span(),
    })
}

fn duration() -> impl Strategy<Value = DurationLit> {
    prop_oneof![0u64..200_000, any::<u64>()].prop_map(|seconds| DurationLit {
        seconds,
        span: span(),
    })
}

fn string() -> impl Strategy<Value = StringLit> {
    "\\PC{0,12}|[\"\\\\\n\t\r\u{0}\u{7}a]{0,6}".prop_map(|value| StringLit {
        value,
        span: span(),
    })
}

fn decimal() -> impl Strategy<Value = DecimalLit> {
    (-i64::MAX..=i64::MAX, 1u8..=18).prop_map(|(units, scale)| DecimalLit {
        units,
        scale,
        span: span(),
    })
}

fn number() -> impl Strategy<Value = Literal> {
    prop_oneof![
        int().prop_map(Literal::Int),
        decimal().prop_map(Literal::Decimal)
    ]
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        int().prop_map(Literal::Int),
        decimal().prop_map(Literal::Decimal),
        string().prop_map(Literal::Str),
        any::<bool>().prop_map(|b| Literal::Bool(b, span())),
        ident().prop_map(Literal::Name),
    ]
}

fn operand() -> impl Strategy<Value = Operand> {
    let root = proptest::sample::select(vec![
        FieldRoot::Args,
        FieldRoot::Context,
        FieldRoot::Agent,
        FieldRoot::Tool,
    ]);
    prop_oneof![
        (root, field_path()).prop_map(|(root, name)| Operand::Field {
            root,
            name,
            span: span()
        }),
        literal().prop_map(Operand::Literal),
        // A bare variable prints as a name; a variable's field stays one.
        (ident(), field_path()).prop_map(|(name, field)| Operand::Var {
            name,
            field: Some(field),
            span: span()
        }),
        (ident(), root_field()).prop_map(|(func, arg)| Operand::Call {
            func,
            arg: Box::new(arg),
            span: span()
        }),
    ]
}

fn root_field() -> impl Strategy<Value = Operand> {
    (Just(FieldRoot::Args), field_name()).prop_map(|(root, name)| Operand::Field {
        root,
        name,
        span: span(),
    })
}

fn expr() -> BoxedStrategy<Expr> {
    let compare = proptest::sample::select(vec![
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Gt,
        CompareOp::Ge,
    ]);
    let string_op = proptest::sample::select(vec![
        StringOp::StartsWith,
        StringOp::EndsWith,
        StringOp::Contains,
    ]);
    let leaf = prop_oneof![
        (compare, operand(), operand()).prop_map(|(op, lhs, rhs)| ExprKind::Compare {
            op,
            lhs,
            rhs
        }),
        (operand(), proptest::collection::vec(literal(), 0..3))
            .prop_map(|(lhs, set)| ExprKind::In { lhs, set }),
        (string_op, operand(), operand()).prop_map(|(op, lhs, rhs)| ExprKind::Str { op, lhs, rhs }),
        operand().prop_map(ExprKind::Operand),
        operand().prop_map(ExprKind::Has),
        (operand(), operand()).prop_map(|(lhs, root)| ExprKind::Under { lhs, root }),
        (operand(), operand()).prop_map(|(lhs, list)| ExprKind::Member { lhs, list }),
    ]
    .prop_map(|kind| Expr { kind, span: span() });
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| ExprKind::Or(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| ExprKind::And(Box::new(a), Box::new(b))),
            inner.clone().prop_map(|e| ExprKind::Not(Box::new(e))),
            (any::<bool>(), ident(), operand(), inner).prop_map(|(all, var, list, body)| {
                ExprKind::Quantified {
                    all,
                    var,
                    list,
                    body: Box::new(body),
                }
            }),
        ]
        .prop_map(|kind| Expr { kind, span: span() })
    })
    .boxed()
}

fn principal() -> impl Strategy<Value = Principal> {
    prop_oneof![
        Just(PrincipalKind::Any),
        ident().prop_map(PrincipalKind::Agent),
        ident().prop_map(PrincipalKind::Role),
    ]
    .prop_map(|kind| Principal { kind, span: span() })
}

fn tool_pattern() -> impl Strategy<Value = ToolPattern> {
    prop_oneof![
        Just(ToolPatternKind::Any),
        dotted().prop_map(ToolPatternKind::Exact),
        dotted().prop_map(ToolPatternKind::Prefix),
        ident().prop_map(ToolPatternKind::Domain),
        ident().prop_map(ToolPatternKind::Effect),
    ]
    .prop_map(|kind| ToolPattern { kind, span: span() })
}

fn attrs() -> impl Strategy<Value = Vec<AttrDecl>> {
    proptest::collection::vec(
        (field_name(), literal()).prop_map(|(name, value)| AttrDecl {
            name,
            value,
            span: span(),
        }),
        0..3,
    )
}

fn type_expr() -> BoxedStrategy<TypeExpr> {
    let leaf = prop_oneof![
        ident().prop_map(TypeExprKind::Named),
        (ident(), int(), int()).prop_map(|(base, min, max)| TypeExprKind::Bounded {
            base,
            min,
            max
        }),
        // (`list[a]` is a list: an enum's base is any other name.)
        (ident(), proptest::collection::vec(ident(), 0..3))
            .prop_map(|(base, variants)| TypeExprKind::Enum { base, variants }),
        (ident(), int(), proptest::option::of((number(), number()))).prop_map(
            |(base, scale, bounds)| TypeExprKind::Decimal {
                base,
                scale,
                bounds
            }
        ),
    ]
    .prop_map(|kind| TypeExpr { kind, span: span() });
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            (
                proptest::collection::vec(inner.clone(), 1..3),
                proptest::option::of((int(), proptest::option::of(int())))
            )
                .prop_map(|(elements, length)| TypeExprKind::List {
                    base: Ident {
                        name: "list".to_owned(),
                        span: span()
                    },
                    elements,
                    length
                }),
            (
                proptest::collection::vec(
                    (field_name(), any::<bool>(), inner).prop_map(|(name, optional, ty)| {
                        ArgDecl {
                            name,
                            optional,
                            ty,
                            span: span(),
                        }
                    }),
                    0..3
                ),
                any::<bool>()
            )
                .prop_map(|(fields, open)| TypeExprKind::Object { fields, open }),
        ]
        .prop_map(|kind| TypeExpr { kind, span: span() })
    })
    .boxed()
}

fn tool_prop() -> impl Strategy<Value = ToolProp> {
    prop_oneof![
        ident().prop_map(ToolPropKind::Domain),
        ident().prop_map(ToolPropKind::Effect),
        ident().prop_map(ToolPropKind::Env),
        (int(), proptest::option::of(field_name()))
            .prop_map(|(amount, per)| ToolPropKind::Cost { amount, per }),
        (
            proptest::collection::vec(
                (field_name(), any::<bool>(), type_expr()).prop_map(|(name, optional, ty)| {
                    ArgDecl {
                        name,
                        optional,
                        ty,
                        span: span(),
                    }
                }),
                0..3
            ),
            any::<bool>()
        )
            .prop_map(|(args, open)| ToolPropKind::Args { args, open }),
        attrs().prop_map(ToolPropKind::Attrs),
        ident().prop_map(ToolPropKind::Creates),
        ident().prop_map(ToolPropKind::Grants),
    ]
    .prop_map(|kind| ToolProp { kind, span: span() })
}

fn agent_prop() -> impl Strategy<Value = AgentProp> {
    prop_oneof![
        proptest::collection::vec(ident(), 0..3).prop_map(AgentPropKind::Roles),
        attrs().prop_map(AgentPropKind::Attrs),
        duration().prop_map(AgentPropKind::CredentialTtl),
        (int(), duration()).prop_map(|(amount, window)| AgentPropKind::Budget { amount, window }),
    ]
    .prop_map(|kind| AgentProp { kind, span: span() })
}

fn limit_kind() -> impl Strategy<Value = LimitKind> {
    prop_oneof![
        (int(), duration()).prop_map(|(count, window)| LimitKind::Rate { count, window }),
        (int(), duration()).prop_map(|(amount, window)| LimitKind::Budget { amount, window }),
        int().prop_map(|max| LimitKind::Depth { max }),
        (int(), duration()).prop_map(|(count, window)| LimitKind::Repeat { count, window }),
    ]
}

fn expectation() -> impl Strategy<Value = Expectation> {
    prop_oneof![
        proptest::option::of(ident()).prop_map(|rule| ExpectationKind::Allow { rule }),
        (proptest::option::of(ident()), proptest::option::of(ident()))
            .prop_map(|(reason, rule)| ExpectationKind::Deny { reason, rule }),
    ]
    .prop_map(|kind| Expectation { kind, span: span() })
}

fn test_value() -> impl Strategy<Value = TestValue> {
    literal()
        .prop_map(TestValue::Literal)
        .prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3)
                    .prop_map(|items| TestValue::List(items, span())),
                proptest::collection::vec(
                    (field_name(), inner).prop_map(|(name, value)| TestArg {
                        name,
                        value,
                        span: span(),
                    }),
                    0..3
                )
                .prop_map(|fields| TestValue::Object(fields, span())),
            ]
        })
}

fn test_args() -> impl Strategy<Value = Vec<TestArg>> {
    proptest::collection::vec(
        (field_name(), test_value()).prop_map(|(name, value)| TestArg {
            name,
            value,
            span: span(),
        }),
        0..3,
    )
}

fn test_step() -> impl Strategy<Value = TestStep> {
    (
        ident(),
        proptest::collection::vec(ident(), 0..3),
        dotted(),
        test_args(),
        proptest::option::of(ident()),
        proptest::option::of(duration()),
        expectation(),
    )
        .prop_map(|(agent, via, tool, args, env, at, expect)| TestStep {
            agent,
            via,
            tool,
            args,
            env,
            at,
            expect,
            span: span(),
        })
}

fn item() -> impl Strategy<Value = Item> {
    let effect = prop_oneof![Just(RuleEffect::Permit), Just(RuleEffect::Forbid)];
    let assert_kind = prop_oneof![
        (principal(), tool_pattern(), proptest::option::of(expr())).prop_map(
            |(principal, tools, condition)| AssertKind::Never {
                principal,
                tools,
                condition
            }
        ),
        (principal(), tool_pattern(), proptest::option::of(expr())).prop_map(
            |(principal, tools, condition)| AssertKind::Always {
                principal,
                tools,
                condition
            }
        ),
        proptest::option::of(principal())
            .prop_map(|principal| AssertKind::NoTrifecta { principal }),
    ];
    prop_oneof![
        proptest::collection::vec(ident(), 0..3).prop_map(|names| Item::Environments(
            Environments {
                names,
                span: span()
            }
        )),
        (ident(), proptest::collection::vec(ident(), 0..3)).prop_map(
            |(name, labels)| Item::Domain(Domain {
                name,
                labels,
                span: span()
            })
        ),
        (dotted(), proptest::collection::vec(tool_prop(), 0..4)).prop_map(|(name, props)| {
            Item::Tool(Tool {
                name,
                props,
                span: span(),
            })
        }),
        (ident(), proptest::collection::vec(agent_prop(), 0..4)).prop_map(|(name, props)| {
            Item::Agent(Agent {
                name,
                props,
                span: span(),
            })
        }),
        (
            proptest::option::of(ident()),
            effect,
            principal(),
            tool_pattern(),
            proptest::option::of(expr())
        )
            .prop_map(
                |(label, effect, principal, tools, condition)| Item::Rule(Rule {
                    label,
                    effect,
                    principal,
                    tools,
                    condition,
                    span: span()
                })
            ),
        (
            proptest::option::of(ident()),
            principal(),
            proptest::option::of(tool_pattern()),
            limit_kind()
        )
            .prop_map(|(label, principal, tools, kind)| Item::Limit(Limit {
                label,
                principal,
                tools,
                kind,
                span: span()
            })),
        (ident(), ident(), any::<bool>()).prop_map(|(from, to, widening)| Item::Delegate(
            Delegate {
                from,
                to,
                widening: widening.then(span),
                span: span()
            }
        )),
        (proptest::option::of(principal()), int(), duration()).prop_map(
            |(principal, count, window)| Item::OnDeny(OnDeny {
                principal,
                count,
                window,
                span: span()
            })
        ),
        (proptest::option::of(ident()), assert_kind).prop_map(|(label, kind)| Item::Assert(
            Assert {
                label,
                kind,
                span: span()
            }
        )),
        (string(), proptest::collection::vec(test_step(), 0..3)).prop_map(|(name, steps)| {
            Item::Test(Test {
                name,
                steps,
                span: span(),
            })
        }),
        (
            prop_oneof![
                ident().prop_map(|agent| AcknowledgeKind::Trifecta { agent }),
                (ident(), dotted())
                    .prop_map(|(agent, tool)| AcknowledgeKind::Escalation { agent, tool }),
                (ident(), dotted())
                    .prop_map(|(agent, tool)| AcknowledgeKind::Widening { agent, tool }),
            ],
            proptest::option::of(string()),
        )
            .prop_map(|(kind, reason)| Item::Acknowledge(Acknowledge {
                kind,
                reason,
                span: span()
            })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn parse_of_format_gives_back_the_tree(items in proptest::collection::vec(item(), 0..6)) {
        let tree = File { items, span: span() };
        let text = format(&tree, &[], "");
        let parsed = parse(&text, FileId(0));
        prop_assert!(parsed.errors.is_empty(), "errors {:?} in\n{}", parsed.errors, text);
        let before = shape(&serde_json::to_value(&tree).unwrap());
        let after = shape(&serde_json::to_value(&parsed.file).unwrap());
        prop_assert!(before == after, "tree changed through\n{}", text);
        prop_assert_eq!(format(&parsed.file, &parsed.comments, &text), text);
    }
}
