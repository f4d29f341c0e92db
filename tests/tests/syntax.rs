//! Parser properties: valid files parse without errors and every child span nests in its
//! parent's; formatting is idempotent and preserves the tree; arbitrary text never panics.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly at the first surprise"
)]

use proptest::prelude::*;
use serde_json::Value;
use tollgate_grammar::{format::format, parse, FileId};
use tollgate_tests::{relative, shape, toll_files};

/// Walks the JSON form of a tree and checks that each object's `span` covers every span below it.
fn check_nesting(value: &Value, parent: Option<(u64, u64)>, path: &str) {
    match value {
        Value::Object(map) => {
            let own = map
                .get("span")
                .and_then(|span| Some((span.get("start")?.as_u64()?, span.get("end")?.as_u64()?)));
            if let (Some((start, end)), Some((outer_start, outer_end))) = (own, parent) {
                assert!(
                    outer_start <= start && end <= outer_end && start <= end,
                    "{path}: span {start}..{end} escapes its parent {outer_start}..{outer_end}"
                );
            }
            let next = own.or(parent);
            for (key, child) in map {
                if key != "span" {
                    check_nesting(child, next, &format!("{path}.{key}"));
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                check_nesting(item, parent, &format!("{path}[{index}]"));
            }
        }
        _ => {}
    }
}

fn all_valid_files() -> Vec<std::path::PathBuf> {
    let mut files = toll_files("tests/fixtures/valid");
    for dir in tollgate_tests::all_policy_dirs() {
        files.extend(toll_files(&relative(&dir)));
    }
    files
}

#[test]
fn valid_files_parse_and_spans_nest() {
    for path in all_valid_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = parse(&text, FileId(0));
        assert!(
            parsed.errors.is_empty(),
            "{}: {:?}",
            relative(&path),
            parsed.errors
        );
        let json = serde_json::to_value(&parsed.file).unwrap();
        check_nesting(&json, None, &relative(&path));
    }
}

#[test]
fn invalid_files_report_at_least_one_error_and_still_nest() {
    for path in toll_files("tests/fixtures/invalid") {
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = parse(&text, FileId(0));
        let json = serde_json::to_value(&parsed.file).unwrap();
        check_nesting(&json, None, &relative(&path));
        for error in &parsed.errors {
            assert!(
                error.span.end as usize <= text.len(),
                "{}: error span past the end",
                relative(&path)
            );
        }
    }
}

#[test]
fn formatting_is_idempotent_and_keeps_the_tree() {
    for path in all_valid_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = parse(&text, FileId(0));
        let once = format(&parsed.file, &parsed.comments, &text);
        let reparsed = parse(&once, FileId(0));
        assert!(
            reparsed.errors.is_empty(),
            "{}: formatted text does not parse",
            relative(&path)
        );
        let twice = format(&reparsed.file, &reparsed.comments, &once);
        assert_eq!(
            once,
            twice,
            "{}: formatting is not idempotent",
            relative(&path)
        );
        assert!(
            shape(&serde_json::to_value(&parsed.file).unwrap())
                == shape(&serde_json::to_value(&reparsed.file).unwrap()),
            "{}: formatting changed the tree",
            relative(&path)
        );
        let comments: Vec<&str> = parsed.comments.iter().map(|c| c.text.as_str()).collect();
        let kept: Vec<&str> = reparsed.comments.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(comments, kept, "{}: comments lost", relative(&path));
    }
}

#[test]
fn examples_are_formatted() {
    for dir in tollgate_tests::all_policy_dirs() {
        for path in toll_files(&relative(&dir)) {
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed = parse(&text, FileId(0));
            assert_eq!(
                format(&parsed.file, &parsed.comments, &text),
                text,
                "{} is not formatted",
                relative(&path)
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_parser_never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        let parsed = parse(&text, FileId(0));
        for error in &parsed.errors {
            prop_assert!(error.span.end as usize <= text.len());
        }
    }

    #[test]
    fn the_parser_never_panics_on_token_soup(words in proptest::collection::vec(
        prop_oneof![
            Just("permit"), Just("forbid"), Just("agent"), Just("tool"), Just("any"), Just("to"),
            Just("call"), Just("when"), Just("{"), Just("}"), Just("["), Just("]"), Just(";"),
            Just("args.x"), Just("=="), Just("1"), Just("\"s\""), Just("test"), Just("expect"),
            Just("a"), Just("b.c"), Just(".*"), Just("and"), Just("or"), Just("not"), Just("("),
            Just(")"), Just("limit"), Just("rate"), Just("per"), Just("1h"), Just("-"), Just(":"),
        ],
        0..60,
    )) {
        let text = words.join(" ");
        let _ = parse(&text, FileId(0));
    }
}
