//! The Tollgate runtime: what runs inside every agent, on every tool call.
//!
//! `#![no_std]`, no `alloc`, no panics. This crate defines the vocabulary that the compiler and the
//! gate share — today the deny [`Reason`] codes — so that the format the compiler writes and the
//! gate reads is defined once, here.

#![no_std]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

pub mod reason;

pub use reason::Reason;
