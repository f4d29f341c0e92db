//! One module per command; each exposes a function that takes the command's arguments and the
//! streams and returns the exit code.

pub mod audit;
pub mod check;
pub mod compile;
pub mod diff;
pub mod eval;
pub mod fmt;
pub mod gate;
pub mod graph;
pub mod import;
pub mod issue;
pub mod keygen;
pub mod mcp;
pub mod revoke;
pub mod test;
pub mod verify;
