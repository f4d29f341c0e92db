//! Every diagnostic code has a fixture in `tests/fixtures/invalid/` named after it, and a snapshot
//! of how it renders. Valid fixtures and every example check clean.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly at the first surprise"
)]

use tollgate_compiler::diagnostic::{render_human, Code};
use tollgate_tests::{relative, source_set, toll_files};

#[test]
fn every_invalid_fixture_reports_its_code() {
    let files = toll_files("tests/fixtures/invalid");
    let checker_codes = Code::ALL.iter().filter(|c| c.as_str() < "TG1000").count();
    assert!(files.len() >= checker_codes, "fixtures are missing");
    for path in files {
        let sources = source_set(&path);
        let diagnostics = tollgate_compiler::load(&sources).expect_err("fixture should not check");
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        if let Some(code) = name.split('_').next().filter(|c| c.starts_with("TG")) {
            assert!(
                diagnostics.iter().any(|d| d.code.as_str() == code),
                "{}: expected {code}, got {:?}",
                relative(&path),
                diagnostics
                    .iter()
                    .map(|d| d.code.as_str())
                    .collect::<Vec<_>>()
            );
        }
        let rendered = render_human(&diagnostics, &sources);
        insta::with_settings!({ snapshot_path => "snapshots/diagnostics", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(name, format!("{}\n---\n{rendered}", sources.files[0].text));
        });
    }
}

#[test]
fn every_code_has_a_fixture() {
    let names: Vec<String> = toll_files("tests/fixtures/invalid")
        .iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .collect();
    // Verifier findings (TG1xxx) are shown by the flawed examples and their snapshots instead.
    for code in Code::ALL.iter().filter(|c| c.as_str() < "TG1000") {
        assert!(
            names.iter().any(|n| n.starts_with(code.as_str())),
            "no fixture for {code} ({})",
            code.summary()
        );
    }
}

#[test]
fn one_run_reports_every_error() {
    let path = tollgate_tests::root().join("tests/fixtures/invalid/many_errors.toll");
    let diagnostics = tollgate_compiler::load(&source_set(&path)).expect_err("has errors");
    let codes: Vec<&str> = diagnostics.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, ["TG0101", "TG0102", "TG0301"]);
}

#[test]
fn diagnostics_point_at_the_offending_text() {
    let path = tollgate_tests::root().join("tests/fixtures/invalid/many_errors.toll");
    let sources = source_set(&path);
    let diagnostics = tollgate_compiler::load(&sources).expect_err("has errors");
    let snippets: Vec<&str> = diagnostics
        .iter()
        .map(|d| sources.snippet(d.span))
        .collect();
    assert_eq!(snippets, ["ghost", "t.reed", "5"]);
    let related: Vec<&str> = diagnostics[2]
        .related
        .iter()
        .map(|r| sources.snippet(r.span))
        .collect();
    assert_eq!(related, ["args.s"]);
}

/// Mistakes a newcomer makes while writing a first policy: each gets exactly one diagnostic that
/// names the mistake. `help` must appear in the help line and `not_help` must not.
#[test]
fn newcomer_mistakes_get_one_precise_diagnostic() {
    struct Case {
        fixture: &'static str,
        code: &'static str,
        message: &'static str,
        help: &'static str,
        not_help: &'static str,
        points_at: &'static str,
    }
    let cases = [
        Case {
            fixture: "TG0001_long_expected_list",
            code: "TG0001",
            message: "unexpected `efect`",
            help: "`grants`, `}`",
            not_help: "more",
            points_at: "efect",
        },
        Case {
            fixture: "TG0302_ordering_on_string",
            code: "TG0302",
            message: "`>` is not defined on a string",
            help: "`starts_with`",
            not_help: "quoted",
            points_at: "args.summary",
        },
        Case {
            fixture: "TG0111_unknown_type_used",
            code: "TG0111",
            message: "unknown type `str`",
            help: "`string`",
            not_help: "args.",
            points_at: "str",
        },
        Case {
            fixture: "TG0008_single_quoted_string",
            code: "TG0008",
            message: "strings use double quotes",
            help: "`\"single\"`",
            not_help: "//",
            points_at: "'single'",
        },
        Case {
            fixture: "TG0009_missing_semicolon",
            code: "TG0009",
            message: "expected `;` after `t.read`",
            help: "end with `;`",
            not_help: "forbid",
            points_at: "t.read",
        },
    ];
    for case in cases {
        let path = tollgate_tests::root()
            .join("tests/fixtures/invalid")
            .join(format!("{}.toll", case.fixture));
        assert!(path.is_file(), "missing fixture {}", case.fixture);
        let sources = source_set(&path);
        let diagnostics = tollgate_compiler::load(&sources).expect_err("has errors");
        let found: Vec<(&str, &str)> = diagnostics
            .iter()
            .map(|d| (d.code.as_str(), d.message.as_str()))
            .collect();
        assert_eq!(found, [(case.code, case.message)], "{}", case.fixture);
        let help = diagnostics[0].help.as_deref().unwrap_or_default();
        assert!(help.contains(case.help), "{}: help {help:?}", case.fixture);
        assert!(
            !help.contains(case.not_help),
            "{}: help {help:?}",
            case.fixture
        );
        assert_eq!(
            sources.snippet(diagnostics[0].span),
            case.points_at,
            "{}",
            case.fixture
        );
    }
}

#[test]
fn valid_fixtures_and_examples_check_clean() {
    let mut paths = toll_files("tests/fixtures/valid");
    for dir in tollgate_tests::all_policy_dirs() {
        paths.extend(toll_files(&relative(&dir)));
    }
    assert!(paths.len() >= 7);
    for path in paths {
        let sources = source_set(&path);
        if let Err(diagnostics) = tollgate_compiler::load(&sources) {
            panic!(
                "{}:\n{}",
                relative(&path),
                render_human(&diagnostics, &sources)
            );
        }
    }
}

#[test]
fn json_diagnostics_carry_code_location_and_help() {
    let path = tollgate_tests::root().join("tests/fixtures/invalid/TG0101_unknown_agent.toll");
    let sources = source_set(&path);
    let diagnostics = tollgate_compiler::load(&sources).expect_err("has errors");
    let json = tollgate_compiler::diagnostic::render_json(&diagnostics, &sources);
    insta::assert_json_snapshot!(json);
}

#[test]
fn the_book_lists_every_code() {
    let chapter =
        std::fs::read_to_string(tollgate_tests::root().join("book/src/diagnostics.md")).unwrap();
    for code in Code::ALL {
        assert!(
            chapter.contains(&format!("| {code} |")),
            "book/src/diagnostics.md lacks {code}"
        );
    }
}
