//! The enforcement host: everything a long-running gate needs around the `no_std` runtime, and
//! nothing of the compiler (no Z3, no parser, no clap).
//!
//! - [`gate::Gate`] owns the loaded table's view, the host's [`clock::Clock`], its environment
//!   and audience, a bounded session cache, the runtime state, the [`store::StateStore`] and the
//!   audit log. It is `Send + Sync`: one gate shared by many threads keeps limits exact.
//! - [`audit_log`] is the audit log file: entries, the verifier, and the writer that makes it the
//!   write-ahead log (append only, one locked writer, the chain continued across restarts, a torn
//!   tail refused until `recover` sets it aside).
//! - [`protocol`] is the JSON-lines protocol, defined once: strict request lines in, decision
//!   lines out.
//! - [`stream`] serves a stream of request lines: read on a thread of its own, decided in
//!   batches, each answered after its record is in the log.
//! - [`store`] keeps what must survive a restart: the newest accepted policy version, the
//!   revocations, and snapshots of the counters (the log tail holds the changes since).
//! - [`keys`] reads and writes Ed25519 keys as PKCS#8 / SPKI PEM.

pub mod audit_log;
pub mod clock;
pub mod error;
pub mod gate;
pub mod keys;
pub mod protocol;
pub mod store;
pub mod stream;

pub use error::HostError;
