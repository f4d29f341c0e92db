//! The `tollgate` command. All logic is in [`tollgate_cli`].

/// mimalloc rather than the system allocator: `tollgate gate` reads request lines on one thread
/// and decides them on another, and its small per-line allocations cost glibc's allocator
/// several times what they cost mimalloc's thread-local free lists (measured in the host bench;
/// see the book's performance chapter).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tollgate_cli::main()
}
