//! `shardcast-loadgen`: drives any RESP server (Shardcast or Redis) the way production traffic
//! does, and reports latency the way engineers trust.
//!
//! - [`workload`]: applications (key prefix, keyspace, key and value-size distributions, op
//!   mix, rate profile) from TOML or a preset.
//! - [`dist`], [`profile`]: the distributions and rate profiles, usable on their own.
//! - [`runner::run`]: the load itself (open loop corrected for coordinated omission, or closed
//!   loop), returning a [`stats::Report`] and writing outputs.
//! - [`cli`]: the command line (the binary is a thin wrapper).

pub mod cli;
pub mod client;
pub mod dist;
pub mod output;
pub mod plot;
pub mod profile;
pub mod resp;
pub mod rng;
pub mod runner;
pub mod sent;
pub mod stats;
pub mod verify;
pub mod workload;

pub use runner::{run, LoopMode, RunConfig, RunError};
pub use stats::Report;
pub use workload::{Workload, WorkloadError};
