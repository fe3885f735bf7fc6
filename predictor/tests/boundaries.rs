//! The workspace's boundaries, checked (rust-analyzer's tidy test, in spirit): the predictor is
//! pure computation (no I/O, no clock, no threads, no OS randomness), so the server and the
//! simulator run the very same decision code; the engine knows nothing of the server, RESP or
//! the predictor; and every file and Rust path that ARCHITECTURE.md, README.md and docs/*.md
//! name exists in the tree. A change that crosses a boundary fails here, naming the file (or the
//! doc) and the line.

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

/// The names a Cargo.toml depends on outside tests: `[dependencies]`, `[dependencies.<name>]`
/// and their `[target.<cfg>.…]` forms (not dev-dependencies).
fn dependencies(manifest: &Path) -> Vec<String> {
    dependencies_in(&std::fs::read_to_string(manifest).unwrap())
}

fn dependencies_in(text: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            // `target.'cfg(unix)'.dependencies` counts as `dependencies`.
            let header = match header.strip_prefix("target.") {
                Some(rest) => {
                    let cfg_end = match rest.chars().next() {
                        Some(q @ ('\'' | '"')) => rest[1..].find(q).map_or(rest.len(), |e| e + 2),
                        _ => rest.find('.').unwrap_or(rest.len()),
                    };
                    rest[cfg_end..].strip_prefix('.').unwrap_or("")
                }
                None => header,
            };
            let header = header.strip_prefix("dependencies").unwrap_or("-");
            in_deps = header.is_empty();
            if let Some(name) = header.strip_prefix('.') {
                out.push(name.trim_matches(['"', '\'']).to_owned());
            }
        } else if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.']).next().unwrap().trim();
            out.push(name.trim_matches('"').to_owned());
        }
    }
    out
}

/// The predictor's binaries (`src/main.rs`, `src/bin/`, `[[bin]]` paths): they are not the
/// library the server and the simulator link, so they may do I/O.
fn predictor_binaries() -> Vec<PathBuf> {
    let dir = workspace().join("predictor");
    let mut out = vec![dir.join("src/main.rs"), dir.join("src/bin")];
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if let Some(("path", path)) = line.split_once('=').map(|(k, v)| (k.trim(), v)) {
            if in_bin {
                out.push(dir.join(path.trim().trim_matches('"')));
            }
        }
    }
    out
}

#[test]
fn the_predictor_does_no_io_reads_no_clock_and_starts_no_threads() {
    let mut files = Vec::new();
    rust_files(&workspace().join("predictor/src"), &mut files);
    let binaries = predictor_binaries();
    files.retain(|f| !binaries.iter().any(|b| f.starts_with(b)));
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
fn the_dependency_reader_sees_every_form() {
    let manifest = r#"
[package]
name = "x"
[dependencies]
a = "1"
b.workspace = true
[dev-dependencies]
not-this = "1"
[dependencies.c]
version = "1"
[target.'cfg(unix)'.dependencies]
d = "1"
[target.'cfg(unix)'.dependencies.e]
version = "1"
[target.'cfg(unix)'.dev-dependencies]
nor-this = "1"
"#;
    assert_eq!(dependencies_in(manifest), ["a", "b", "c", "d", "e"]);
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

/// Names in the docs that look like repository paths but are not, with the reason.
const NOT_REPOSITORY_PATHS: [(&str, &str); 3] = [
    ("shards/", "a data directory's folder (docs/format.md)"),
    ("FILE.toml", "a placeholder for the operator's config file"),
    ("my.toml", "an example workload file of the operator's"),
];

/// First segments of Rust paths in the docs that live outside the workspace.
const FOREIGN_PATH_ROOTS: [&str; 9] =
    ["std", "core", "u64", "u128", "rkyv", "rancor", "Instant", "Directory", "DmaFile"];

/// Every file and folder of the tree, relative to the workspace, folders with a trailing `/`
/// (without `target/` and hidden folders).
fn tree(dir: &Path, root: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if name == "target" || name.starts_with('.') {
            continue;
        }
        let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            out.push(format!("{relative}/"));
            tree(&path, root, out);
        } else {
            out.push(relative);
        }
    }
}

/// The docs that describe the code: ARCHITECTURE.md, README.md and docs/*.md.
fn docs() -> Vec<PathBuf> {
    let root = workspace();
    let mut out = vec![root.join("ARCHITECTURE.md"), root.join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    out.extend(pages);
    out
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Maximal runs of the characters `keep` accepts, with the characters around each run.
fn runs(line: &str, keep: fn(char) -> bool) -> Vec<(Option<char>, &str, Option<char>)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices().chain([(line.len(), ' ')]) {
        match (start, keep(c) && i < line.len()) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                out.push((line[..s].chars().next_back(), &line[s..i], line[i..].chars().next()));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// The repository paths a doc line names: `engine/src/lib.rs`, `shard/stats.rs`, `log/`.
/// Runtime paths (`/proc/stat`, `<data-dir>/SHARDMAP`) and URLs are not repository paths.
fn named_paths(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for word in line.split_whitespace().filter(|w| !w.contains("://")) {
        for (before, run, after) in runs(word, is_path_char) {
            let run = run.trim_end_matches('.');
            if matches!(before, Some('<' | '>' | '#')) || after == Some('<') {
                continue;
            }
            if run.starts_with(['/', '.', '-']) {
                continue;
            }
            let file = [".rs", ".md", ".toml", ".sh", ".py"]
                .iter()
                .any(|ext| run.len() > ext.len() && run.ends_with(ext));
            let folder = run.ends_with('/') && run.len() > 1 && run.contains(char::is_alphabetic);
            if file || folder {
                out.push(run);
            }
        }
    }
    out
}

/// The Rust paths a doc line names: `keyspace::index`, `Shard::execute_at`.
fn named_rust_paths(line: &str) -> Vec<Vec<&str>> {
    let keep = |c: char| is_ident_char(c) || c == ':';
    runs(line, keep)
        .into_iter()
        .map(|(_, run, _)| run.trim_matches(':'))
        .filter(|run| run.contains("::"))
        .map(|run| run.split("::").collect::<Vec<_>>())
        .filter(|segs: &Vec<&str>| {
            segs.iter().all(|s| s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
        })
        .collect()
}

/// The workspace's Rust sources, each with the name of the module it is.
struct Sources {
    files: Vec<(PathBuf, String, String)>,
}

impl Sources {
    fn load() -> Sources {
        let root = workspace();
        let mut all = Vec::new();
        tree(&root, &root, &mut all);
        let mut files = Vec::new();
        for relative in all.iter().filter(|p| p.ends_with(".rs")) {
            let path = root.join(relative);
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            let parent = path.parent().unwrap();
            let module = match stem.as_str() {
                "mod" => parent.file_name().unwrap().to_string_lossy().into_owned(),
                // A crate root is named after its crate: `shardcast_loadgen::run`.
                "lib" | "main" => crate_name(parent.parent().unwrap()).unwrap_or(stem),
                _ => stem,
            };
            files.push((path.clone(), module, std::fs::read_to_string(&path).unwrap()));
        }
        Sources { files }
    }

    fn text(&self, file: &Path) -> &str {
        &self.files.iter().find(|f| f.0 == file).unwrap().2
    }

    /// Files that are module `name`, or hold an inline `mod name { .. }`.
    fn modules_named(&self, name: &str) -> Vec<PathBuf> {
        let named = self.files.iter().filter(|f| f.1 == name).map(|f| f.0.clone());
        let inline =
            self.files.iter().filter(|f| defines(&f.2, name, &["mod"])).map(|f| f.0.clone());
        named.chain(inline).collect()
    }

    /// The files that define type `name` or implement something for it.
    fn type_hosts(&self, name: &str) -> Vec<PathBuf> {
        let kinds = ["struct", "enum", "trait", "type"];
        self.files
            .iter()
            .filter(|f| {
                defines(&f.2, name, &kinds)
                    || f.2.lines().any(|l| l.trim_start().starts_with("impl") && has_word(l, name))
            })
            .map(|f| f.0.clone())
            .collect()
    }

    /// Whether some file in `hosts` has every one of `words`.
    fn any_has_words(&self, hosts: &[PathBuf], words: &[&str]) -> bool {
        !hosts.is_empty() && words.iter().all(|w| hosts.iter().any(|h| has_word(self.text(h), w)))
    }

    /// Whether `segs` (`a::b::c`) names a module, an item or a type's member in the workspace.
    fn resolves(&self, segs: &[&str]) -> bool {
        let segs = match segs {
            ["crate" | "self" | "super", rest @ ..] => rest,
            _ => segs,
        };
        let Some((first, rest)) = segs.split_first() else { return true };
        if FOREIGN_PATH_ROOTS.contains(first) {
            return true;
        }
        if first.starts_with(|c: char| c.is_ascii_uppercase()) {
            return self.any_has_words(&self.type_hosts(first), rest);
        }
        let mut current = self.modules_named(first);
        for (i, seg) in rest.iter().enumerate() {
            let mut children = Vec::new();
            for module in &current {
                let dir = match module.file_stem().unwrap().to_str().unwrap() {
                    "mod" | "lib" | "main" => module.parent().unwrap().to_path_buf(),
                    _ => module.with_extension(""),
                };
                for child in [dir.join(format!("{seg}.rs")), dir.join(seg).join("mod.rs")] {
                    if self.files.iter().any(|f| f.0 == child) {
                        children.push(child);
                    }
                }
                // `runtime::mod` names the folder's mod.rs; `routing::tests` an inline module.
                let own_file = *seg == "mod" && module.ends_with("mod.rs");
                if own_file || defines(self.text(module), seg, &["mod"]) {
                    children.push(module.clone());
                }
            }
            if !children.is_empty() {
                current = children;
                continue;
            }
            // Not a module: an item of the current module, then perhaps its members.
            let item_kinds = ["fn", "struct", "enum", "trait", "type", "const", "static"];
            let defined_here = current.iter().any(|m| {
                let text = self.text(m);
                defines(text, seg, &item_kinds)
                    || defines(text, seg, &["macro_rules!"])
                    || reexports(text, seg)
            });
            return defined_here && {
                let members = &rest[i + 1..];
                members.is_empty() || self.any_has_words(&self.type_hosts(seg), members)
            };
        }
        !current.is_empty()
    }
}

/// The `[package] name` of the crate in `dir`, as Rust spells it.
fn crate_name(dir: &Path) -> Option<String> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    let line = manifest.lines().find(|l| l.trim_start().starts_with("name"))?;
    Some(line.split_once('=')?.1.trim().trim_matches('"').replace('-', "_"))
}

fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_ident_char) && !after.is_some_and(is_ident_char)
    })
}

/// Whether `text` has `<kind> <name>` for one of `kinds` (`fn execute_at`, `mod tests`).
fn defines(text: &str, name: &str, kinds: &[&str]) -> bool {
    kinds.iter().any(|kind| {
        text.match_indices(kind).any(|(i, _)| {
            let before = text[..i].chars().next_back();
            let rest = &text[i + kind.len()..];
            let name_start = rest.len() - rest.trim_start().len();
            !before.is_some_and(is_ident_char)
                && name_start > 0
                && rest[name_start..].starts_with(name)
                && !rest[name_start + name.len()..].starts_with(is_ident_char)
        })
    })
}

/// Whether a `pub use` of `text` brings `name` in.
fn reexports(text: &str, name: &str) -> bool {
    text.match_indices("pub use").any(|(i, _)| {
        let statement = text[i..].split(';').next().unwrap();
        has_word(statement, name)
    })
}

/// Whether `path`, named in a doc in `doc_dir`, is in the tree: from the workspace's root, from
/// the doc's folder, or as the tail of a path (`shard/stats.rs` in the engine's section).
fn path_exists(entries: &[String], doc_dir: &Path, path: &str) -> bool {
    workspace().join(path).exists()
        || doc_dir.join(path).exists()
        || entries.iter().any(|e| e == path || e.ends_with(&format!("/{path}")))
        || NOT_REPOSITORY_PATHS.iter().any(|(p, _)| *p == path)
}

#[test]
fn every_path_the_docs_name_exists() {
    let root = workspace();
    let mut entries = Vec::new();
    tree(&root, &root, &mut entries);
    let sources = Sources::load();
    let mut missing = Vec::new();
    for doc in docs() {
        let doc_dir = doc.parent().unwrap();
        let doc_name = doc.strip_prefix(&root).unwrap().display().to_string();
        for (n, line) in std::fs::read_to_string(&doc).unwrap().lines().enumerate() {
            for path in named_paths(line) {
                if !path_exists(&entries, doc_dir, path) {
                    missing
                        .push(format!("{doc_name}:{}: the file {path} is not in the tree", n + 1));
                }
            }
            for segs in named_rust_paths(line) {
                if !sources.resolves(&segs) {
                    let path = segs.join("::");
                    missing.push(format!("{doc_name}:{}: {path} names nothing in the code", n + 1));
                }
            }
        }
    }
    assert!(missing.is_empty(), "the docs name what is not there:\n{}", missing.join("\n"));
}

#[test]
fn the_doc_check_finds_what_is_missing() {
    let sources = Sources::load();
    for present in [
        &["keyspace", "index"][..],
        &["runtime", "mod"],
        &["placement", "manifest", "recover_layout"],
        &["Shard", "execute_at"],
        &["routing", "tests"],
        &["shardcast_loadgen", "run"],
    ] {
        assert!(sources.resolves(present), "{present:?} should resolve");
    }
    for absent in [
        &["keyspace", "no_such_module"][..],
        &["shard", "partition_dir_name"],
        &["Shard", "no_such_method"],
        &["NoSuchType", "new"],
    ] {
        assert!(!sources.resolves(absent), "{absent:?} should not resolve");
    }
    assert_eq!(
        named_paths("see `engine/src/lib.rs`, <data-dir>/history.bin, /proc/stat and log/."),
        ["engine/src/lib.rs", "log/"]
    );
    assert_eq!(named_paths("https://github.com/x/y/blob/main/src/a.rs #605/#670"), [""; 0]);
    let root = workspace();
    let mut entries = Vec::new();
    tree(&root, &root, &mut entries);
    for present in ["shard/stats.rs", "engine/src/keyspace/", "docs/format.md", "format.md"] {
        assert!(path_exists(&entries, &root.join("docs"), present), "{present} should exist");
    }
    // The engine's files before it was reorganised into folders.
    for absent in ["engine/src/shard.rs", "engine/src/wal.rs", "keyspace.rs", "shard/wal.rs"] {
        assert!(!path_exists(&entries, &root.join("docs"), absent), "{absent} should be missing");
    }
}
