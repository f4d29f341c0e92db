fn main() {
    // The grammar lives next to the AST (src/parser.lalrpop); generated code goes to OUT_DIR so it
    // never shows up in the source tree or in diffs.
    lalrpop::Configuration::new()
        .use_cargo_dir_conventions()
        .process_file("src/parser.lalrpop")
        .unwrap_or_else(|error| {
            eprintln!("lalrpop failed: {error}");
            std::process::exit(1)
        });
}
