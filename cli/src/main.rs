//! The `tollgate` command. All logic is in [`tollgate_cli`].

fn main() -> std::process::ExitCode {
    tollgate_cli::main()
}
