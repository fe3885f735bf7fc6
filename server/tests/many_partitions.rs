//! Any number of partitions: a key prefix or a hash tag costs no shard, file or log of its
//! own. 100,000 keys with 100,000 distinct prefixes (the id-first scheme `N:cart`) and 20,000
//! hash tags of five keys each live in the shared shards: the shard directories stay the
//! shared ones, the disk holds the data plus its log (not a megabyte per prefix), everything
//! is read back before and after a restart, and MSETNX keeps a tag's keys together.
//! Throughput, memory per key and restart time against one prefix: `benches/many_partitions.sh`.

mod common;
use common::{shards, Server};

const PREFIXES: usize = 100_000;
const TAGS: usize = 20_000;
const KEYS_PER_TAG: usize = 5;

fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            // Blocks on disk, so preallocated log space counts.
            std::os::unix::fs::MetadataExt::blocks(&meta) * 512
        };
    }
    total
}

#[test]
fn a_hundred_thousand_prefixes_and_twenty_thousand_tags_cost_no_shards() {
    let mut server = Server::start("many-partitions", &["--cores", "2"]);
    let mut c = server.client();
    let mut logical = 0u64;
    for chunk in (0..PREFIXES).collect::<Vec<_>>().chunks(1000) {
        let mut p = redis::pipe();
        for i in chunk {
            let (k, v) = (format!("{i}:cart"), format!("c{i}"));
            logical += (k.len() + v.len()) as u64;
            p.cmd("SET").arg(k).arg(v).ignore();
        }
        let () = p.query(&mut c).unwrap();
    }
    for t in 0..TAGS {
        let mut cmd = redis::cmd("MSETNX");
        for k in 0..KEYS_PER_TAG {
            let (key, v) = (format!("{{user:{t}}}:f{k}"), format!("t{t}-{k}"));
            logical += (key.len() + v.len()) as u64;
            cmd.arg(key).arg(v);
        }
        let set: i64 = cmd.query(&mut c).unwrap();
        assert_eq!(set, 1, "MSETNX on tag {t}: a tag's keys share one shard");
    }
    let total = (PREFIXES + TAGS * KEYS_PER_TAG) as i64;
    let check = |c: &mut redis::Connection, when: &str| {
        let size: i64 = redis::cmd("DBSIZE").query(c).unwrap();
        assert_eq!(size, total, "{when}");
        for i in (0..PREFIXES).step_by(997) {
            let v: String = redis::cmd("GET").arg(format!("{i}:cart")).query(c).unwrap();
            assert_eq!(v, format!("c{i}"), "{when}");
        }
        for t in (0..TAGS).step_by(331) {
            let keys: Vec<String> =
                (0..KEYS_PER_TAG).map(|k| format!("{{user:{t}}}:f{k}")).collect();
            let got: Vec<String> = redis::cmd("MGET").arg(&keys).query(c).unwrap();
            let want: Vec<String> = (0..KEYS_PER_TAG).map(|k| format!("t{t}-{k}")).collect();
            assert_eq!(got, want, "{when}");
        }
        // The shards are the shared ones: one per core, whatever the partitions.
        let rows = shards(c);
        assert_eq!(rows.len(), 2, "{when}: {rows:?}");
        assert!(rows.iter().all(|r| r.partition == "(shared)"));
        assert_eq!(rows.iter().map(|r| r.keys).sum::<i64>(), total);
    };
    check(&mut c, "after the writes");
    server.terminate();
    let shard_dirs = std::fs::read_dir(server.dir.join("shards")).unwrap().count();
    assert_eq!(shard_dirs, 2, "shard directories");
    let top: Vec<String> = std::fs::read_dir(&server.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let allowed =
        [".iopoll-probe", "SHARDMAP", "shards", "history.bin", "predictor.state", "explain.log"];
    assert!(
        top.iter().all(|name| allowed.contains(&name.as_str())),
        "the data directory holds shards/, SHARDMAP, the probe, the load history, the \
         forecaster's models and the allocator's explanations, nothing per partition: {top:?}"
    );
    // The data, its log records' framing, and two preallocated logs (1 MiB each), with room
    // for the blocks' slack: not a megabyte per prefix.
    let disk = dir_size(&server.dir);
    let bound = 4 * logical + 4 * 1024 * 1024;
    assert!(disk < bound, "{disk} bytes on disk for {logical} bytes of keys and values");
    eprintln!("{total} keys, {logical} bytes of keys and values, {disk} bytes on disk");
    server.restart();
    check(&mut server.client(), "after a restart");
}
