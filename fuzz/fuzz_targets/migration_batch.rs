//! libFuzzer runner of `shardcast_engine::fuzz_targets::migration_batch` (the body and what it checks are
//! there; the stable runner is `engine/tests/fuzz_decoders.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast_engine::fuzz_targets::migration_batch(data);
});
