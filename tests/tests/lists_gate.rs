//! Lists and objects at the gate: the table format's kinds 7 (list) and 8 (object), the ops
//! `VAR`, `FIELD`, `LEN`, `ALL` and `ANY`, element validation, the loader's refusals and the
//! repeat guard's digest. Tables are assembled by hand ([`TableBuilder`]) because the compiler
//! writes these shapes only once the language has them.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test should fail loudly at the first surprise"
)]

use tollgate_runtime::format::{self, arg, arg_flag, op, ArgRecord, LimitRecord};
use tollgate_runtime::gate::{self, ArgValue, Call, Decision, Slot, Verdict};
use tollgate_runtime::table::{Fault, LoadError, Table};
use tollgate_runtime::Reason;
use tollgate_tests::tables::TableBuilder;

/// Slots of the tool's arguments (sorted by name).
const EDITS: u8 = 0;
const LEVELS: u8 = 1;
const NS: u8 = 2;
const PATHS: u8 = 3;
/// Fields of an edit, sorted by name.
const LINE: u8 = 0;
const NEW_TEXT: u8 = 1;
const PATH: u8 = 2;

/// Tool `t`: `edits?: list[{line: int[1..1000], newText: string, path: path}][..8]`,
/// `levels?: list[enum[read, write]]`, `ns?: list[int[0..100]][1..3]`,
/// `paths: list[path, length 1..64][..4]`.
fn schema() -> TableBuilder {
    let mut t = TableBuilder::new(&["a", "admin", "read", "write"]);
    t.variants = vec![t.symbol("read"), t.symbol("write")];
    let list =
        |t: &mut TableBuilder, name: &str, element: u32, min: i64, max: i64, flags: u8| ArgRecord {
            variants_start: element,
            variants_count: 1,
            min,
            max,
            flags,
            ..t.arg(name, arg::LIST)
        };
    let records = [
        list(&mut t, "edits", 4, 0, 8, arg_flag::OPTIONAL),
        list(&mut t, "levels", 8, 0, i64::MAX, arg_flag::OPTIONAL),
        list(&mut t, "ns", 9, 1, 3, arg_flag::OPTIONAL),
        list(&mut t, "paths", 10, 0, 4, 0),
        // 4: an edit, fields 5..8.
        ArgRecord {
            variants_start: 5,
            variants_count: 3,
            ..t.arg("", arg::OBJECT)
        },
        ArgRecord {
            min: 1,
            max: 1000,
            ..t.arg("line", arg::INT)
        },
        t.arg("newText", arg::STR),
        t.arg("path", arg::PATH),
        // 8: a level.
        ArgRecord {
            variants_start: 0,
            variants_count: 2,
            ..t.arg("", arg::ENUM)
        },
        // 9: an n.
        ArgRecord {
            min: 0,
            max: 100,
            ..t.arg("", arg::INT)
        },
        // 10: a path.
        ArgRecord {
            flags: arg_flag::LENGTH,
            min: 1,
            max: 64,
            ..t.arg("", arg::PATH)
        },
    ];
    t.args = records.to_vec();
    t.tool_args = 4;
    t
}

fn with_permit(mut t: TableBuilder, program: Vec<u8>) -> TableBuilder {
    t.permits.push(program);
    t
}

fn decide_on(bytes: &[u8], args: &[(&str, ArgValue<'_>)], time: u64) -> Decision {
    let table = Table::parse(bytes).unwrap();
    let mut slots = vec![Slot::EMPTY; gate::slots_needed(&table, 16)];
    let mut state = gate::State::new(&table, &mut slots).unwrap();
    gate::decide(&table, &mut state, &call(args, time))
}

fn call<'a>(args: &'a [(&'a str, ArgValue<'a>)], time: u64) -> Call<'a> {
    Call {
        agent: "a",
        tool: "t",
        args,
        via: &[],
        env: None,
        time,
    }
}

/// The verdict of the one permit `program` on `args` (which always give `paths`).
fn check(t: TableBuilder, args: &[(&str, ArgValue<'_>)]) -> Result<(), Reason> {
    let decision = decide_on(&t.build(), args, 1_000);
    match decision.verdict {
        Verdict::Allow => Ok(()),
        Verdict::Deny => Err(decision.reason.unwrap()),
    }
}

/// `op` over the elements of argument `slot` with `body` (without a length).
fn quantifier(code: &mut Vec<u8>, quantifier: u8, slot: u8, body: &[u8]) {
    code.extend_from_slice(&[op::ARG, slot, quantifier]);
    code.extend_from_slice(&(body.len() as u16).to_le_bytes());
    code.extend_from_slice(body);
}

fn strs<'a>(items: &'a [ArgValue<'a>]) -> ArgValue<'a> {
    ArgValue::List(items)
}

/// `all p in args.paths: p starts_with "/ws/"`.
fn all_under_ws() -> TableBuilder {
    let mut t = schema();
    let mut body = vec![op::VAR];
    t.push_str(&mut body, "/ws/");
    body.push(op::STARTS_WITH);
    let mut code = Vec::new();
    quantifier(&mut code, op::ALL, PATHS, &body);
    code.push(op::END);
    with_permit(t, code)
}

#[test]
fn all_holds_for_every_element_and_for_none() {
    let inside = [ArgValue::Str("/ws/a"), ArgValue::Str("/ws/b/c")];
    let mixed = [ArgValue::Str("/ws/a"), ArgValue::Str("/etc/passwd")];
    assert_eq!(check(all_under_ws(), &[("paths", strs(&inside))]), Ok(()));
    assert_eq!(
        check(all_under_ws(), &[("paths", strs(&mixed))]),
        Err(Reason::NotPermitted)
    );
    assert_eq!(check(all_under_ws(), &[("paths", strs(&[]))]), Ok(()));
}

#[test]
fn any_holds_for_some_element_and_not_for_none() {
    let mut t = schema();
    let mut body = vec![op::VAR];
    t.push_str(&mut body, "/etc/");
    body.push(op::STARTS_WITH);
    let mut code = Vec::new();
    quantifier(&mut code, op::ANY, PATHS, &body);
    code.push(op::END);
    let t = with_permit(t, code);
    let mixed = [ArgValue::Str("/ws/a"), ArgValue::Str("/etc/passwd")];
    let inside = [ArgValue::Str("/ws/a")];
    assert_eq!(check(t.clone(), &[("paths", strs(&mixed))]), Ok(()));
    assert_eq!(
        check(t.clone(), &[("paths", strs(&inside))]),
        Err(Reason::NotPermitted)
    );
    assert_eq!(check(t, &[("paths", strs(&[]))]), Err(Reason::NotPermitted));
}

#[test]
fn len_counts_elements_and_an_absent_list_is_empty() {
    // `args.paths.len == 2 and (not has args.ns) and args.ns.len == 0`
    let mut code = vec![op::ARG, PATHS, op::LEN, op::PUSH_INT];
    code.extend_from_slice(&2i64.to_le_bytes());
    code.extend_from_slice(&[op::EQ, op::HAS, NS, op::NOT, op::AND]);
    code.extend_from_slice(&[op::ARG, NS, op::LEN, op::PUSH_INT]);
    code.extend_from_slice(&0i64.to_le_bytes());
    code.extend_from_slice(&[op::EQ, op::AND, op::END]);
    let t = with_permit(schema(), code);
    let two = [ArgValue::Str("a"), ArgValue::Str("b")];
    let one = [ArgValue::Str("a")];
    assert_eq!(check(t.clone(), &[("paths", strs(&two))]), Ok(()));
    assert_eq!(
        check(t.clone(), &[("paths", strs(&one))]),
        Err(Reason::NotPermitted)
    );
    let ns = [ArgValue::Int(1)];
    assert_eq!(
        check(t, &[("paths", strs(&two)), ("ns", ArgValue::List(&ns))]),
        Err(Reason::NotPermitted)
    );
}

/// `all e in args.edits: not (e.newText contains "PRIVATE KEY") and e.line <= 500 and
/// e.path starts_with "/ws/out/"`.
fn edits_rule() -> TableBuilder {
    let mut t = schema();
    let mut body = vec![op::VAR, op::FIELD, NEW_TEXT];
    t.push_str(&mut body, "PRIVATE KEY");
    body.extend_from_slice(&[
        op::CONTAINS,
        op::NOT,
        op::VAR,
        op::FIELD,
        LINE,
        op::PUSH_INT,
    ]);
    body.extend_from_slice(&500i64.to_le_bytes());
    body.extend_from_slice(&[op::LE, op::AND, op::VAR, op::FIELD, PATH]);
    t.push_str(&mut body, "/ws/out/");
    body.extend_from_slice(&[op::STARTS_WITH, op::AND]);
    let mut code = Vec::new();
    quantifier(&mut code, op::ALL, EDITS, &body);
    code.push(op::END);
    with_permit(t, code)
}

fn edit<'a>(line: i64, text: &'a str, path: &'a str) -> [(&'a str, ArgValue<'a>); 3] {
    [
        ("path", ArgValue::Str(path)),
        ("newText", ArgValue::Str(text)),
        ("line", ArgValue::Int(line)),
    ]
}

#[test]
fn field_reads_each_objects_fields_by_name_in_any_order() {
    let good = edit(3, "hello", "/ws/out/a.txt");
    let key = edit(3, "-----BEGIN PRIVATE KEY-----", "/ws/out/a.txt");
    let far = edit(501, "hello", "/ws/out/a.txt");
    let outside = edit(3, "hello", "/ws/docs/a.txt");
    let paths = [ArgValue::Str("/ws")];
    let run = |edits: &[ArgValue<'_>]| {
        check(
            edits_rule(),
            &[("paths", strs(&paths)), ("edits", ArgValue::List(edits))],
        )
    };
    assert_eq!(run(&[ArgValue::Object(&good)]), Ok(()));
    assert_eq!(run(&[]), Ok(()));
    for bad in [&key, &far, &outside] {
        assert_eq!(
            run(&[ArgValue::Object(&good), ArgValue::Object(bad)]),
            Err(Reason::NotPermitted)
        );
    }
}

#[test]
fn enum_elements_are_read_as_symbols() {
    let t = schema();
    let write = t.symbol("write");
    let mut body = vec![op::VAR, op::PUSH_SYM];
    body.extend_from_slice(&write.to_le_bytes());
    body.push(op::EQ);
    let mut code = Vec::new();
    quantifier(&mut code, op::ANY, LEVELS, &body);
    code.push(op::END);
    let t = with_permit(t, code);
    let paths = [ArgValue::Str("/ws")];
    let with = [ArgValue::Str("read"), ArgValue::Str("write")];
    let without = [ArgValue::Str("read")];
    assert_eq!(
        check(
            t.clone(),
            &[("paths", strs(&paths)), ("levels", strs(&with))]
        ),
        Ok(())
    );
    assert_eq!(
        check(t, &[("paths", strs(&paths)), ("levels", strs(&without))]),
        Err(Reason::NotPermitted)
    );
}

#[test]
fn comparing_a_list_is_a_type_mismatch_that_fails_closed() {
    // `args.paths == "x"`: a permit that cannot be evaluated does not apply, a forbid does.
    let mut t = schema();
    let mut code = vec![op::ARG, PATHS];
    t.push_str(&mut code, "x");
    code.extend_from_slice(&[op::EQ, op::END]);
    let paths = [ArgValue::Str("x")];
    let args = [("paths", strs(&paths))];
    assert_eq!(
        check(with_permit(t.clone(), code.clone()), &args),
        Err(Reason::NotPermitted)
    );
    t.forbids.push(code);
    t.permits.push(vec![op::PUSH_BOOL, 1, op::END]);
    assert_eq!(check(t, &args), Err(Reason::Forbidden));
}

fn allow_all() -> TableBuilder {
    with_permit(schema(), vec![op::PUSH_BOOL, 1, op::END])
}

#[test]
fn list_lengths_are_bounded() {
    let one = [ArgValue::Str("/a")];
    let five = [ArgValue::Str("/a"); 5];
    let four = [ArgValue::Str("/a"); 4];
    let ints = |n: usize| vec![ArgValue::Int(1); n];
    let ok = |args: &[(&str, ArgValue<'_>)]| check(allow_all(), args);
    assert_eq!(ok(&[("paths", strs(&four))]), Ok(()));
    assert_eq!(ok(&[("paths", strs(&five))]), Err(Reason::InvalidArgument));
    for (n, expected) in [
        (0, Err(Reason::InvalidArgument)),
        (1, Ok(())),
        (3, Ok(())),
        (4, Err(Reason::InvalidArgument)),
    ] {
        let ns = ints(n);
        assert_eq!(
            ok(&[("paths", strs(&one)), ("ns", ArgValue::List(&ns))]),
            expected,
            "{n} elements"
        );
    }
}

#[test]
fn every_element_is_validated_as_a_top_level_argument_is() {
    let ok = |args: &[(&str, ArgValue<'_>)]| check(allow_all(), args);
    let one = [ArgValue::Str("/a")];
    let bad_paths: [&[ArgValue<'_>]; 6] = [
        &[ArgValue::Str("/ws/../x")],
        &[ArgValue::Str("/ws//x")],
        &[ArgValue::Str("")],
        &[ArgValue::Int(1)],
        &[ArgValue::Str("/a"), ArgValue::List(&[])],
        &[
            ArgValue::Str("/a"),
            ArgValue::Str("/ws/0123456789012345678901234567890123456789012345678901234567890123"),
        ],
    ];
    for paths in bad_paths {
        assert_eq!(
            ok(&[("paths", ArgValue::List(paths))]),
            Err(Reason::InvalidArgument),
            "{paths:?}"
        );
    }
    // Not a list at all.
    assert_eq!(
        ok(&[("paths", ArgValue::Str("/a"))]),
        Err(Reason::InvalidArgument)
    );
    let with = |name: &'static str, value: ArgValue<'static>| {
        let args = [
            ("paths", ArgValue::List(&[ArgValue::Str("/a")])),
            (name, value),
        ];
        check(allow_all(), &args)
    };
    assert_eq!(
        with("levels", ArgValue::List(&[ArgValue::Str("admin")])),
        Err(Reason::InvalidArgument)
    );
    assert_eq!(
        with("levels", ArgValue::List(&[ArgValue::Str("read")])),
        Ok(())
    );
    assert_eq!(
        with("ns", ArgValue::List(&[ArgValue::Int(101)])),
        Err(Reason::InvalidArgument)
    );
    assert_eq!(
        with("ns", ArgValue::List(&[ArgValue::Int(-1)])),
        Err(Reason::InvalidArgument)
    );
    assert_eq!(with("ns", ArgValue::List(&[ArgValue::Int(100)])), Ok(()));
    assert_eq!(
        with("ns", ArgValue::List(&[ArgValue::Decimal("1.5")])),
        Err(Reason::InvalidArgument)
    );
    let _ = one;
}

#[test]
fn an_object_element_gives_exactly_its_fields_each_once() {
    let ok = |edits: &[ArgValue<'_>]| {
        let paths = [ArgValue::Str("/a")];
        check(
            allow_all(),
            &[("paths", strs(&paths)), ("edits", ArgValue::List(edits))],
        )
    };
    let good = edit(1, "x", "/ws/out/a");
    assert_eq!(ok(&[ArgValue::Object(&good)]), Ok(()));
    let missing = [("path", ArgValue::Str("/a")), ("line", ArgValue::Int(1))];
    let extra = [
        ("path", ArgValue::Str("/a")),
        ("newText", ArgValue::Str("x")),
        ("line", ArgValue::Int(1)),
        ("dryRun", ArgValue::Bool(true)),
    ];
    let duplicate = [
        ("path", ArgValue::Str("/a")),
        ("newText", ArgValue::Str("x")),
        ("newText", ArgValue::Str("y")),
    ];
    let renamed = [
        ("path", ArgValue::Str("/a")),
        ("newtext", ArgValue::Str("x")),
        ("line", ArgValue::Int(1)),
    ];
    let bad_line = edit(0, "x", "/ws/out/a");
    let bad_path = edit(1, "x", "/ws/../..");
    let wrong_type = [
        ("path", ArgValue::Str("/a")),
        ("newText", ArgValue::Int(3)),
        ("line", ArgValue::Int(1)),
    ];
    for object in [
        &missing[..],
        &extra,
        &duplicate,
        &renamed,
        &bad_line,
        &bad_path,
        &wrong_type,
    ] {
        assert_eq!(
            ok(&[ArgValue::Object(&good), ArgValue::Object(object)]),
            Err(Reason::InvalidArgument),
            "{object:?}"
        );
    }
    // A scalar where an object belongs, and an object where a scalar belongs.
    assert_eq!(ok(&[ArgValue::Str("x")]), Err(Reason::InvalidArgument));
    let paths = [ArgValue::Object(&good)];
    assert_eq!(
        check(allow_all(), &[("paths", ArgValue::List(&paths))]),
        Err(Reason::InvalidArgument)
    );
    // An object as a top-level argument.
    assert_eq!(
        check(allow_all(), &[("paths", ArgValue::Object(&good))]),
        Err(Reason::InvalidArgument)
    );
}

#[test]
fn the_repeat_guard_tells_lists_apart_by_structure() {
    let mut t = allow_all();
    t.limits.push(LimitRecord {
        kind: format::limit::REPEAT,
        value: 1,
        window: 3_600,
    });
    let bytes = t.build();
    let table = Table::parse(&bytes).unwrap();
    let mut slots = vec![Slot::EMPTY; gate::slots_needed(&table, 16)];
    let mut state = gate::State::new(&table, &mut slots).unwrap();
    let joined = [ArgValue::Str("ab")];
    let split = [ArgValue::Str("a"), ArgValue::Str("b")];
    let nested_a = edit(1, "ab", "/x");
    let nested_b = edit(1, "a", "/x");
    let mut decide = |args: &[(&str, ArgValue<'_>)]| {
        gate::decide(&table, &mut state, &call(args, 1_000)).verdict
    };
    assert_eq!(decide(&[("paths", strs(&joined))]), Verdict::Allow);
    assert_eq!(decide(&[("paths", strs(&split))]), Verdict::Allow);
    assert_eq!(decide(&[("paths", strs(&[]))]), Verdict::Allow);
    assert_eq!(decide(&[("paths", strs(&joined))]), Verdict::Deny);
    assert_eq!(decide(&[("paths", strs(&split))]), Verdict::Deny);
    let empty_paths = [ArgValue::Str("/x")];
    let object_a = [ArgValue::Object(&nested_a)];
    let object_b = [ArgValue::Object(&nested_b)];
    assert_eq!(
        decide(&[
            ("paths", strs(&empty_paths)),
            ("edits", ArgValue::List(&object_a))
        ]),
        Verdict::Allow
    );
    assert_eq!(
        decide(&[
            ("paths", strs(&empty_paths)),
            ("edits", ArgValue::List(&object_b))
        ]),
        Verdict::Allow
    );
    assert_eq!(
        decide(&[
            ("paths", strs(&empty_paths)),
            ("edits", ArgValue::List(&object_a))
        ]),
        Verdict::Deny
    );
}

fn refused(t: &TableBuilder) -> LoadError {
    Table::parse(&t.build()).unwrap_err()
}

fn bad_program(t: TableBuilder, code: Vec<u8>) {
    let t = with_permit(t, code);
    assert_eq!(
        refused(&t),
        LoadError::InSection {
            section: format::section::PROGRAMS as u8,
            fault: Fault::BadProgram
        }
    );
}

fn invalid_args(t: TableBuilder) {
    let t = with_permit(t, vec![op::PUSH_BOOL, 1, op::END]);
    let error = refused(&t);
    assert!(
        matches!(
            error,
            LoadError::InSection {
                section,
                fault: Fault::Invalid | Fault::OutOfBounds
            } if usize::from(section) == format::section::ARGS
        ),
        "{error:?}"
    );
}

#[test]
fn the_loader_refuses_malformed_bodies() {
    let body = |inner: &[u8]| {
        let mut code = Vec::new();
        quantifier(&mut code, op::ALL, PATHS, inner);
        code.push(op::END);
        code
    };
    // Well formed first, so each refusal below is about its one fault.
    Table::parse(&with_permit(schema(), body(&[op::PUSH_BOOL, 1])).build()).unwrap();
    // Quantifiers nested up to `MAX_NEST` deep load (each inner one over the element around it:
    // the loader checks code, and a list value's type only shows when it runs); one deeper does
    // not, nor one over an argument inside a body.
    let nested = |depth: usize, inner: &[u8]| {
        let mut code = inner.to_vec();
        for _ in 1..depth {
            let mut around = vec![op::VAR, op::ANY];
            around.extend_from_slice(&(code.len() as u16).to_le_bytes());
            around.extend_from_slice(&code);
            code = around;
        }
        body(&code)
    };
    let mut over_an_argument = Vec::new();
    quantifier(&mut over_an_argument, op::ANY, PATHS, &[op::PUSH_BOOL, 1]);
    bad_program(schema(), body(&over_an_argument));
    Table::parse(&with_permit(schema(), nested(format::MAX_NEST, &[op::PUSH_BOOL, 1])).build())
        .unwrap();
    bad_program(schema(), nested(format::MAX_NEST + 1, &[op::PUSH_BOOL, 1]));
    // VAR outside a body, and VAR_UP past the bodies around it (or at level 0, which is VAR).
    bad_program(schema(), vec![op::VAR, op::END]);
    let up = |level: u8| [op::VAR_UP, level, op::VAR, op::EQ];
    Table::parse(&with_permit(schema(), nested(2, &up(1))).build()).unwrap();
    Table::parse(&with_permit(schema(), nested(3, &up(2))).build()).unwrap();
    bad_program(schema(), nested(2, &up(2)));
    bad_program(schema(), nested(1, &up(1)));
    bad_program(schema(), nested(2, &up(0)));
    bad_program(schema(), vec![op::VAR_UP, 1, op::END]);
    // A body past the end of the program section.
    let mut past = vec![op::ARG, PATHS, op::ALL];
    past.extend_from_slice(&200u16.to_le_bytes());
    past.extend_from_slice(&[op::PUSH_BOOL, 1, op::END]);
    bad_program(schema(), past);
    // A body that leaves two values, none, or holds END.
    bad_program(schema(), body(&[op::PUSH_BOOL, 1, op::PUSH_BOOL, 1]));
    bad_program(schema(), body(&[]));
    bad_program(schema(), body(&[op::PUSH_BOOL, 1, op::END]));
    // An operand that runs over the body's end.
    bad_program(schema(), body(&[op::PUSH_BOOL, 1, op::PUSH_INT, 0, 0]));
    // A body deeper than the stack.
    let mut deep = Vec::new();
    for _ in 0..=format::MAX_STACK {
        deep.extend_from_slice(&[op::PUSH_BOOL, 1]);
    }
    deep.extend(std::iter::repeat_n(op::AND, format::MAX_STACK));
    bad_program(schema(), body(&deep));
    // A quantifier over nothing.
    bad_program(schema(), vec![op::ALL, 0, 0, op::END]);
    // A field index no object can have.
    bad_program(
        schema(),
        body(&[
            op::VAR,
            op::FIELD,
            format::MAX_FIELDS as u8,
            op::PUSH_BOOL,
            1,
            op::EQ,
        ]),
    );
}

#[test]
fn the_loader_refuses_shapes_the_language_cannot_declare() {
    // An object as a tool's own argument.
    let mut t = schema();
    t.args[3] = ArgRecord {
        variants_start: 5,
        variants_count: 3,
        ..t.args[4]
    };
    t.args[3].name = t.string("paths");
    invalid_args(t);
    // A list of lists, and an object with a list field, load (`ns` becomes a list of lists of
    // paths; an edit's `newText` a list of ints).
    let mut t = schema();
    t.args[9] = ArgRecord {
        variants_start: 10,
        variants_count: 1,
        min: 0,
        max: 4,
        ..t.arg("", arg::LIST)
    };
    assert!(Table::parse(&t.build()).is_ok());
    let list_field = |t: &mut TableBuilder, kind: u8, element: u32| ArgRecord {
        variants_start: element,
        variants_count: 1,
        min: 0,
        max: 1,
        ..t.arg("newText", kind)
    };
    let mut t = schema();
    t.args[6] = list_field(&mut t, arg::LIST, 9);
    assert!(Table::parse(&t.build()).is_ok());
    // An object with an object field (the compiler flattens those into dotted fields).
    let mut t = schema();
    t.args[6] = list_field(&mut t, arg::OBJECT, 9);
    invalid_args(t);
    // A list that holds itself: an element record pointing back at its own list.
    let mut t = schema();
    t.args[9] = ArgRecord {
        variants_start: 9,
        variants_count: 1,
        min: 0,
        max: 4,
        ..t.arg("", arg::LIST)
    };
    invalid_args(t);
    // Lists nested past `MAX_NEST`: `ns` made a chain of list records, one deeper than allowed.
    let mut t = schema();
    let first = t.args.len() as u32;
    t.args[2].variants_start = first;
    for depth in 0..format::MAX_NEST as u32 {
        let record = ArgRecord {
            variants_start: first + depth + 1,
            variants_count: 1,
            min: 0,
            max: 4,
            ..t.arg("", arg::LIST)
        };
        t.args.push(record);
    }
    let leaf = ArgRecord {
        min: 0,
        max: 100,
        ..t.arg("", arg::INT)
    };
    t.args.push(leaf);
    invalid_args(t.clone());
    // One list fewer loads.
    let last = t.args.len() - 2;
    t.args[last] = leaf;
    assert!(Table::parse(&t.build()).is_ok());
    // Unsorted and duplicate field names.
    let mut t = schema();
    t.args.swap(5, 6);
    invalid_args(t);
    let mut t = schema();
    t.args[6].name = t.args[5].name;
    invalid_args(t);
    // An optional element (an optional field is allowed: `has x.FIELD` tests it).
    let mut t = schema();
    t.args[7].flags = arg_flag::OPTIONAL;
    assert!(Table::parse(&t.build()).is_ok());
    let mut t = schema();
    t.args[9].flags = arg_flag::OPTIONAL;
    invalid_args(t);
    // An element record inside the tool's own range.
    let mut t = schema();
    t.args[3].variants_start = 1;
    invalid_args(t);
    // References out of range, and count bounds that are not a range.
    let mut t = schema();
    t.args[3].variants_start = 11;
    invalid_args(t);
    let mut t = schema();
    t.args[4].variants_count = 7;
    invalid_args(t);
    let mut t = schema();
    t.args[4].variants_count = format::MAX_FIELDS as u32 + 1;
    invalid_args(t);
    let mut t = schema();
    t.args[3].variants_count = 2;
    invalid_args(t);
    for (min, max) in [(-1, 4), (5, 4)] {
        let mut t = schema();
        t.args[3].min = min;
        t.args[3].max = max;
        invalid_args(t);
    }
    // A length flag on a list.
    let mut t = schema();
    t.args[3].flags = arg_flag::LENGTH;
    invalid_args(t);
}

#[test]
fn random_mutations_of_a_list_table_never_panic() {
    let bytes = edits_rule().build();
    let good = edit(3, "hello", "/ws/out/a.txt");
    let edits = [ArgValue::Object(&good)];
    let paths = [ArgValue::Str("/ws")];
    let args = [("paths", strs(&paths)), ("edits", ArgValue::List(&edits))];
    let header = format::HEADER_SIZE;
    for at in header..bytes.len() - format::SIGNATURE_SIZE {
        for bit in 0..8 {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1 << bit;
            // The policy hash no longer matches; rehash so the loader reads the contents.
            let body_end = flipped.len() - format::SIGNATURE_SIZE;
            let hash: [u8; 32] = sha2::Digest::finalize(
                <sha2::Sha256 as sha2::Digest>::new_with_prefix(&flipped[header..body_end]),
            )
            .into();
            flipped[format::header::POLICY_HASH..format::header::POLICY_HASH + 32]
                .copy_from_slice(&hash);
            if let Ok(table) = Table::parse(&flipped) {
                let mut slots = vec![Slot::EMPTY; gate::slots_needed(&table, 4).min(1 << 16)];
                if let Ok(mut state) = gate::State::new(&table, &mut slots) {
                    let _ = gate::decide(&table, &mut state, &call(&args, 1_000));
                }
            }
        }
    }
}
