//! Shardcast's load predictor: pure computation. It does no I/O (no files, no sockets), reads no
//! clock, starts no threads and draws no randomness from the OS: data and time come in as
//! arguments, results go out as values, so the same inputs always give the same outputs and the
//! crate runs unchanged inside a deterministic simulation.
//!
//! - `trace`: the trace format (CSV) shared by the server's history export, the load
//!   generator's `--trace-out` and the simulator's replay; `docs/trace-format.md` is its
//!   reference.
//! - `allocator`: the shard layout each partition should have (split, merge, move), from its
//!   forecast and the measured capacity, with an explanation of every decision.
//! - `forecast`: load forecasting: series, features, models (last value, seasonal naive,
//!   SPAR) and their walk-forward evaluation.
//! - `health`: the health monitor's rules: a state per core and shard from each tick's
//!   figures.
//! - `history`: the bounded per-partition load history the server records every tick, at full
//!   resolution and folded into minutes, with its byte encoding for persistence.

pub mod allocator;
pub mod forecast;
pub mod health;
pub mod history;
pub mod trace;
