//! The Tollgate runtime: what runs inside every agent, on every tool call.
//!
//! `#![no_std]`, no `alloc`, no panics. [`format`] defines the decision table the compiler writes;
//! [`table::Table::load`] checks its signature and every offset once; [`gate::decide`] decides
//! calls against it with state (limit counters, revocations) in memory the caller provides.
//! The deny [`Reason`] codes are shared with the compiler's reference evaluator.

#![no_std]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod audit;
pub mod credential;
pub mod decimal;
pub mod format;
pub mod gate;
pub mod path;
pub mod reason;
pub mod table;

pub use reason::Reason;
