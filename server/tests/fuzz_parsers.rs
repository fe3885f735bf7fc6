//! The server's parsers under the fuzz targets' bodies (`shardcast_server::fuzz_targets`) on
//! stable: every file of `fuzz/corpus/<target>/`, every generated seed, then seeded mutations.
//! libFuzzer runs the same bodies for longer (`cargo +nightly fuzz run <target>` in `fuzz/`);
//! docs/testing.md has the commands. A failure prints its seed (`SHARDCAST_SEED=<seed>`
//! replays it) and saves the input under `fuzz/artifacts/<target>/`.
//! `SHARDCAST_WRITE_FUZZ_CORPUS=1` rewrites the generated seeds into the corpus.

use shardcast_engine::fuzz_targets::run_corpus_and_mutations;
use shardcast_server::fuzz_targets as targets;
use std::path::PathBuf;

/// Mutated inputs per target: a few seconds each in a debug build.
const MUTATIONS: usize = 200_000;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

#[test]
fn resp_parser_survives_corpus_and_mutations() {
    let seeds = targets::resp_seeds();
    run_corpus_and_mutations("resp", &corpus("resp"), seeds, MUTATIONS, targets::resp);
}

#[test]
fn http_head_parser_survives_corpus_and_mutations() {
    let seeds = targets::http_head_seeds();
    run_corpus_and_mutations(
        "http_head",
        &corpus("http_head"),
        seeds,
        MUTATIONS,
        targets::http_head,
    );
}
