//! libFuzzer runner of `shardcast_server::fuzz_targets::http_head` (the body and what it checks are
//! there; the stable runner is `server/tests/fuzz_parsers.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shardcast_server::fuzz_targets::http_head(data);
});
