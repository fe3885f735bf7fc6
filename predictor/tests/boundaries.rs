//! The workspace's boundaries, checked (rust-analyzer's tidy test, in spirit): the predictor is
//! pure computation (no I/O, no clock, no threads, no OS randomness), so the server and the
//! simulator run the very same decision code; the engine knows nothing of the server, RESP or
//! the predictor. A change that crosses a boundary fails here, naming the file and the line.

use std::path::{Path, PathBuf};

/// What the predictor's sources must not use, with the reason.
const FORBIDDEN_IN_PREDICTOR: [(&str, &str); 12] = [
    ("std::fs", "file I/O"),
    ("std::net", "network I/O"),
    ("std::io::std", "standard streams"),
    ("std::process", "processes"),
    ("std::env", "the environment"),
    ("std::thread", "threads"),
    ("std::sync::mpsc", "threads' channels"),
    ("SystemTime", "the wall clock"),
    ("Instant", "the monotonic clock"),
    ("println!", "standard output"),
    ("eprintln!", "standard error"),
    ("RandomState", "randomness from the OS"),
];

/// The only dependencies the predictor may have. forust-ml has a thread pool (rayon) and a
/// seeded generator: the predictor sets `parallel = false` and a fixed seed (forecast/gbt.rs).
const PREDICTOR_DEPENDENCIES: [&str; 2] = ["crc32fast", "forust-ml"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The names under `[dependencies]` of a Cargo.toml (not dev-dependencies).
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.']).next().unwrap().trim();
            out.push(name.to_owned());
        }
    }
    out
}

#[test]
fn the_predictor_does_no_io_reads_no_clock_and_starts_no_threads() {
    let mut files = Vec::new();
    rust_files(&workspace().join("predictor/src"), &mut files);
    assert!(!files.is_empty());
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for (token, why) in FORBIDDEN_IN_PREDICTOR {
                if code.contains(token) {
                    found.push(format!("{}:{}: {token} ({why})", file.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "the predictor must stay pure:\n{}", found.join("\n"));
}

#[test]
fn the_predictor_depends_on_nothing_that_does_io() {
    let deps = dependencies(&workspace().join("predictor/Cargo.toml"));
    for d in &deps {
        assert!(PREDICTOR_DEPENDENCIES.contains(&d.as_str()), "predictor depends on {d}");
    }
}

#[test]
fn the_engine_knows_nothing_of_the_server_resp_or_the_predictor() {
    let deps = dependencies(&workspace().join("engine/Cargo.toml"));
    for forbidden in ["shardcast-server", "shardcast-predictor", "shardcast-loadgen", "redis"] {
        assert!(!deps.iter().any(|d| d == forbidden), "engine depends on {forbidden}");
    }
    let mut files = Vec::new();
    rust_files(&workspace().join("engine/src"), &mut files);
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for forbidden in ["shardcast_server", "shardcast_predictor", "RESP"] {
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap();
                assert!(
                    !code.contains(forbidden),
                    "{}:{}: the engine uses {forbidden}",
                    file.display(),
                    n + 1
                );
            }
        }
    }
}
