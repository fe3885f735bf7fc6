//! Real crashes: a child process writes with `fsync=always` and reports each acknowledged
//! write; the parent kills it with SIGKILL at a random moment, many times, and after every kill
//! checks through a fresh process that every acknowledged write is present with its value.
//! Replay a failing run with `SHARDCAST_SEED=<seed>`.

use shardcast_engine::testing::{seed_from_env, SplitMix64};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KILLS: u64 = 10;
const ACKS_BEFORE_KILL_DEADLINE: Duration = Duration::from_secs(60);

fn writer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shardcast-crash-writer"))
}

fn dump(dir: &std::path::Path) -> HashMap<String, String> {
    let out = writer().arg("dump").arg(dir).output().expect("run dump");
    assert!(out.status.success(), "dump failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut kv = HashMap::new();
    let mut end = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        match parts.next() {
            Some("KV") => {
                kv.insert(parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned());
            }
            Some("END") => end = Some(parts.next().unwrap().parse::<usize>().unwrap()),
            _ => {}
        }
    }
    assert_eq!(end, Some(kv.len()), "dump did not finish cleanly");
    kv
}

#[test]
fn every_acknowledged_write_survives_kill_9() {
    let seed = seed_from_env();
    eprintln!("crash seed {seed} (replay: SHARDCAST_SEED={seed})");
    let mut rng = SplitMix64::new(seed);
    let dir = tempdir();
    let mut acked: HashMap<String, String> = HashMap::new();
    for run in 0..KILLS {
        let mut child = writer()
            .arg("write")
            .arg(&dir)
            .arg(run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the first acknowledgement, then let it run a random while and kill it.
        let first =
            rx.recv_timeout(ACKS_BEFORE_KILL_DEADLINE).expect("writer acknowledged nothing");
        let mut lines = vec![first];
        let deadline = Instant::now() + Duration::from_millis(50 + rng.below(700));
        while Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(5)) {
                lines.push(l);
            }
        }
        child.kill().expect("SIGKILL the writer");
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        let before = acked.len();
        for line in lines {
            // A line cut by the kill was never complete, so never counted.
            let mut parts = line.splitn(3, ' ');
            if let (Some("ACK"), Some(k), Some(v)) = (parts.next(), parts.next(), parts.next()) {
                acked.insert(k.to_owned(), v.to_owned());
            }
        }
        let present = dump(&dir);
        let mut lost = 0;
        for (k, v) in &acked {
            match present.get(k) {
                Some(got) if got == v => {}
                other => {
                    lost += 1;
                    eprintln!(
                        "seed {seed}, kill {run}: {k} acknowledged as {v:?}, found {other:?}"
                    );
                }
            }
        }
        assert_eq!(lost, 0, "seed {seed}: acknowledged writes lost after kill {run}");
        eprintln!(
            "kill {run}: {} new acknowledged writes, {} total, all present",
            acked.len() - before,
            acked.len()
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "shardcast-crash-{}-{}",
        std::process::id(),
        seed_from_env()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
