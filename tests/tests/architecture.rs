//! Architecture invariants that are about the dependency graph, checked with `cargo tree`.

#![allow(
    clippy::panic,
    reason = "a test should fail loudly at the first surprise"
)]

use std::process::Command;

/// The normal (non-dev, non-build) dependency closure of a workspace package, one crate a line.
fn dependencies(package: &str) -> String {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "none"])
        .current_dir(tollgate_tests::root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `cargo tree`: {e}"));
    assert!(
        output.status.success(),
        "`cargo tree -p {package}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The compiler is a library without a command line: clap belongs to `tollgate-cli` alone.
#[test]
fn the_compiler_does_not_depend_on_clap() {
    let clap = |tree: &str| -> Vec<String> {
        tree.lines()
            .filter(|l| l.starts_with("clap "))
            .map(str::to_owned)
            .collect()
    };
    let compiler = clap(&dependencies("tollgate-compiler"));
    assert!(
        compiler.is_empty(),
        "tollgate-compiler depends on clap: {compiler:?}"
    );
    // The check itself works: the command line does depend on clap.
    assert!(!clap(&dependencies("tollgate-cli")).is_empty());
}

/// The enforcement side links none of the compiler's machinery: no solver, no parser generator,
/// no graph library, no command line, and no crate of ours but the runtime.
fn compiler_machinery(tree: &str) -> Vec<&str> {
    tree.lines()
        .filter(|l| {
            [
                "z3 ",
                "z3-sys ",
                "lalrpop",
                "petgraph ",
                "clap ",
                "tollgate-compiler ",
                "tollgate-grammar ",
            ]
            .iter()
            .any(|name| l.starts_with(name))
        })
        .collect()
}

#[test]
fn the_host_links_no_compiler_machinery() {
    let tree = dependencies("tollgate-host");
    let heavy = compiler_machinery(&tree);
    assert!(heavy.is_empty(), "tollgate-host depends on {heavy:?}");
    assert!(tree.lines().any(|l| l.starts_with("tollgate-runtime ")));
    // The check itself works: the compiler does link Z3.
    assert!(dependencies("tollgate-compiler")
        .lines()
        .any(|l| l.starts_with("z3 ")));
}

/// The MCP gateway sits on the host and links none of the compiler's machinery either: it
/// decides with the compiled table alone.
#[test]
fn the_gateway_links_no_compiler_machinery() {
    let tree = dependencies("tollgate-gateway");
    let heavy = compiler_machinery(&tree);
    assert!(heavy.is_empty(), "tollgate-gateway depends on {heavy:?}");
    assert!(tree.lines().any(|l| l.starts_with("tollgate-host ")));
    assert!(tree.lines().any(|l| l.starts_with("rmcp ")));
}
