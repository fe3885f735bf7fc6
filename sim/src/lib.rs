//! `shardcast-sim`: tools that run the predictor's pure decision code over data from files.
//! This crate does the I/O (reading traces, printing tables, timing); the predictor crate it
//! calls does none.
//!
//! - `forecast`: walk-forward evaluation of the forecasting models over a trace
//!   (`shardcast-sim forecast --trace FILE.csv`).
//! - `policy`: the allocation policies judged on a simulated machine, with the server's own
//!   allocator, forecaster and layout functions (`shardcast-sim policy`).
//! - `cli`: the command line.

pub mod cli;
pub mod forecast;
pub mod policy;
