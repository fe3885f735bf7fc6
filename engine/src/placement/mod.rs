//! Where data lives: `shard_map` says which shard owns which range of the position space and
//! on which core; `manifest` persists that map and brings the data directory to it at start.

pub mod manifest;
pub mod shard_map;
pub mod upgrade;
