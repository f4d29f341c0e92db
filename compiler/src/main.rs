//! The `tollgate` command. All logic is in [`tollgate_compiler::cli`].

fn main() -> std::process::ExitCode {
    tollgate_compiler::cli::main()
}
