//! The engine's decoders under the fuzz targets' bodies (`shardcast_engine::fuzz_targets`) on
//! stable: every file of `fuzz/corpus/<target>/`, every generated seed, then seeded mutations.
//! libFuzzer runs the same bodies for longer (`cargo +nightly fuzz run <target>` in `fuzz/`);
//! docs/testing.md has the commands. A failure prints its seed (`SHARDCAST_SEED=<seed>`
//! replays it) and saves the input under `fuzz/artifacts/<target>/`.
//! `SHARDCAST_WRITE_FUZZ_CORPUS=1` rewrites the generated seeds into the corpus.

use shardcast_engine::fuzz_targets as targets;
use std::path::PathBuf;

/// Mutated inputs per target: a few seconds each in a debug build.
const MUTATIONS: usize = 200_000;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

#[test]
fn wal_record_and_log_reader_survive_corpus_and_mutations() {
    let seeds = targets::wal_log_seeds();
    targets::run_corpus_and_mutations(
        "wal_log",
        &corpus("wal_log"),
        seeds,
        MUTATIONS,
        targets::wal_log,
    );
}

#[test]
fn segment_decoder_survives_corpus_and_mutations() {
    let seeds = targets::segment_seeds();
    targets::run_corpus_and_mutations(
        "segment",
        &corpus("segment"),
        seeds,
        MUTATIONS,
        targets::segment,
    );
}

#[test]
fn manifest_and_meta_decoders_survive_corpus_and_mutations() {
    let seeds = targets::manifest_seeds();
    targets::run_corpus_and_mutations(
        "manifest",
        &corpus("manifest"),
        seeds,
        MUTATIONS,
        targets::manifest,
    );
}

#[test]
fn migration_batch_decoder_survives_corpus_and_mutations() {
    let seeds = targets::migration_batch_seeds();
    targets::run_corpus_and_mutations(
        "migration_batch",
        &corpus("migration_batch"),
        seeds,
        MUTATIONS,
        targets::migration_batch,
    );
}
