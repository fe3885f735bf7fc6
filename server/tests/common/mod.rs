//! Starts the real `shardcast-server` binary on a free port with its own data directory, and
//! stops it (gracefully or with SIGKILL).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start listening.
const START_DEADLINE: Duration = Duration::from_secs(30);

pub struct Server {
    pub port: u16,
    /// The data directory (absolute).
    pub dir: PathBuf,
    /// The process's current directory, when the test chose one (`start_in`); removed at drop.
    cwd: Option<PathBuf>,
    /// Whether `--data-dir` is passed (not for `start_in`, which starts as the README does).
    data_dir_flag: bool,
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// Starts a server with a fresh data dir named after `name`, and extra flags.
    pub fn start(name: &str, args: &[&str]) -> Server {
        let dir = std::env::temp_dir().join(format!("shardcast-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Server::launch(dir, None, args)
    }

    /// Starts a server on an existing data directory (`dir`, absolute), with extra flags.
    pub fn start_at(dir: &std::path::Path, args: &[&str]) -> Server {
        Server::launch(dir.to_owned(), None, args)
    }

    /// Starts a server as a newcomer does with the README's command: the current directory a
    /// fresh folder named after `name`, no flag but `--port` and `args` (which may hold a
    /// relative `--data-dir`). `data_dir` is where the data is expected, relative to it.
    pub fn start_in(name: &str, data_dir: &str, args: &[&str]) -> Server {
        let cwd = std::env::temp_dir().join(format!("shardcast-cwd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cwd);
        std::fs::create_dir_all(&cwd).unwrap();
        Server::launch(cwd.join(data_dir), Some(cwd), args)
    }

    /// Starts a server whose data is in `dir`: passed as `--data-dir` unless `cwd` is given
    /// (then the process runs there, and `args` say where the data goes).
    fn launch(dir: PathBuf, cwd: Option<PathBuf>, args: &[&str]) -> Server {
        let mut s = Server {
            port: free_port(),
            dir,
            data_dir_flag: cwd.is_none(),
            cwd,
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
        };
        s.spawn();
        s
    }

    /// Starts the process and waits until it listens. Tests run in parallel, so while a
    /// server is down (restarts) another test may be handed its free port: if the process
    /// exits before it is ready, start it again on a new port.
    fn spawn(&mut self) {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let mut command = Command::new(env!("CARGO_BIN_EXE_shardcast-server"));
            command.arg("--port").arg(self.port.to_string());
            if self.data_dir_flag {
                command.arg("--data-dir").arg(&self.dir);
            }
            if let Some(cwd) = &self.cwd {
                command.current_dir(cwd);
            }
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())
                .expect("server log file");
            let mut child = command
                .args(&self.args)
                .env("SHARDCAST_LOG", "warn")
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log))
                .spawn()
                .expect("start shardcast-server");
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.contains("Ready to accept connections") {
                        let _ = tx.send(());
                    }
                }
            });
            match rx.recv_timeout(START_DEADLINE) {
                Ok(()) => {
                    self.child = Some(child);
                    return;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) if attempt < ATTEMPTS => {
                    // Exited before listening (its stderr says why): try another port.
                    let _ = child.wait();
                    self.port = free_port();
                }
                Err(e) => panic!("server did not become ready: {e}\n{}", self.log()),
            }
        }
    }

    /// Where the server's log (stderr) goes: a file in the temporary directory named after
    /// the data directory, kept over restarts, removed at drop.
    pub fn log_path(&self) -> PathBuf {
        let name = self.dir.display().to_string().replace('/', "_");
        std::env::temp_dir().join(format!("shardcast-log{name}.log"))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().expect("connect")
    }

    /// SIGKILL and wait.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) {
        let child = self.child.take().expect("running");
        let pid = child.id().to_string();
        Command::new("kill").arg("-TERM").arg(&pid).status().unwrap();
        wait_exit(child);
    }

    /// Waits for the process to exit by itself (after SHUTDOWN).
    pub fn wait_exit(&mut self) {
        wait_exit(self.child.take().expect("running"));
    }

    /// Sets (or with `None` removes) an environment variable for the next (re)start.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.to_owned(), v.to_owned()));
        }
    }

    /// Waits for the process to die by itself (a fault point aborted it); true if it did
    /// before `deadline`, false if it is still running.
    pub fn wait_died(&mut self, deadline: Duration) -> bool {
        let child = self.child.as_mut().expect("running");
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(!status.success(), "expected a crash, got {status}");
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Whether the process is still running (it was started and has not exited).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn();
    }

    /// Runs redis-cli against this server with `args`; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .output()
            .expect("redis-cli (apt-get install redis-tools)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn wait_exit(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "server exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // Where SAVE and BGSAVE put backups unless told otherwise.
        let _ = std::fs::remove_dir_all(shardcast_server::config::backup_dir_beside(&self.dir));
        let _ = std::fs::remove_file(self.log_path());
        if let Some(cwd) = &self.cwd {
            let _ = std::fs::remove_dir_all(cwd);
        }
    }
}

/// `SHARDCAST <args...>` with a string reply.
pub fn admin(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<String> {
    let mut cmd = redis::cmd("SHARDCAST");
    for a in args {
        cmd.arg(*a);
    }
    cmd.query(c)
}

/// An error reply as redis-cli shows it: the code, a space, the detail.
pub fn error_text(r: redis::RedisResult<String>) -> String {
    let e = r.expect_err("an error reply");
    format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
}

/// One row of `SHARDCAST SHARDS`.
#[derive(Debug, Clone)]
pub struct ShardRow {
    /// The partition whose own shard it is, or `(shared)`.
    pub partition: String,
    pub shard: i64,
    /// Inclusive position ranges.
    pub ranges: Vec<(u128, u128)>,
    pub core: i64,
    pub keys: i64,
    pub epoch: i64,
}

/// `SHARDCAST SHARDS`, parsed.
pub fn shards(c: &mut redis::Connection) -> Vec<ShardRow> {
    let rows: Vec<Vec<redis::Value>> = redis::cmd("SHARDCAST").arg("SHARDS").query(c).unwrap();
    rows.into_iter()
        .map(|fields| {
            let mut m = std::collections::HashMap::new();
            for pair in fields.chunks(2) {
                let k: String = redis::from_redis_value(&pair[0]).unwrap();
                m.insert(k, pair[1].clone());
            }
            let s = |k: &str| -> String { redis::from_redis_value(&m[k]).unwrap() };
            let i = |k: &str| -> i64 { redis::from_redis_value(&m[k]).unwrap() };
            let ranges = s("ranges")
                .split(',')
                .map(|r| {
                    let (lo, hi) = r.split_once('-').unwrap();
                    (u128::from_str_radix(lo, 16).unwrap(), u128::from_str_radix(hi, 16).unwrap())
                })
                .collect();
            ShardRow {
                partition: s("partition"),
                shard: i("shard"),
                ranges,
                core: i("core"),
                keys: i("keys"),
                epoch: i("epoch"),
            }
        })
        .collect()
}

/// Checks that the shards' ranges tile the whole position space exactly (each key has exactly
/// one owner) and that a partition's own shards lie in its span; returns the number of own
/// shards per partition (shared shards are not counted).
pub fn assert_tiled(rows: &[ShardRow]) -> std::collections::BTreeMap<String, usize> {
    let mut all: Vec<(u128, u128, &ShardRow)> =
        rows.iter().flat_map(|r| r.ranges.iter().map(move |&(lo, hi)| (lo, hi, r))).collect();
    all.sort_by_key(|x| x.0);
    let mut next = Some(0u128);
    for (lo, hi, r) in &all {
        assert_eq!(Some(*lo), next, "gap or overlap before shard {}: {rows:?}", r.shard);
        assert!(hi >= lo);
        if r.partition != "(shared)" {
            let name = if r.partition == "(default)" { "" } else { r.partition.as_str() };
            let (plo, phi) = shardcast_engine::routing::partition_span(name.as_bytes());
            assert!(plo <= *lo && *hi <= phi, "shard {} strays outside {}", r.shard, r.partition);
        }
        next = hi.checked_add(1);
    }
    assert_eq!(next, None, "the ranges do not reach the end of the space: {rows:?}");
    let mut counts = std::collections::BTreeMap::new();
    for r in rows.iter().filter(|r| r.partition != "(shared)") {
        *counts.entry(r.partition.clone()).or_insert(0) += 1;
    }
    counts
}

/// The core holding `partition` (its first position), by `SHARDCAST SHARDS`.
pub fn core_of_partition(rows: &[ShardRow], partition: &str) -> i64 {
    let (lo, _) = shardcast_engine::routing::partition_span(partition.as_bytes());
    rows.iter()
        .find(|r| r.ranges.iter().any(|&(a, b)| (a..=b).contains(&lo)))
        .expect("the shards tile the space")
        .core
}

/// Debian's redis-server on a free port, without persistence; killed at drop.
pub struct Redis {
    pub port: u16,
    child: Child,
}

impl Redis {
    pub fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "yes"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server; .ci/run installs it)");
        let deadline = Instant::now() + START_DEADLINE;
        while redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection())
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { port, child }
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two partition names whose keys live on different cores of a 2-core server: one on core 0,
/// one on core 1.
pub fn partitions_on_both_cores(c: &mut redis::Connection) -> (String, String) {
    let rows = shards(c);
    let names: Vec<String> = (0..64).map(|i| format!("p{i}")).collect();
    let on = |core| names.iter().find(|p| core_of_partition(&rows, p) == core).cloned();
    (on(0).expect("a core-0 partition"), on(1).expect("a core-1 partition"))
}

/// Readers that check an invariant over and over while a test changes the data: each runs
/// `check` on its own connection until `stop`; a failed check panics its thread.
pub struct Readers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    reads: std::sync::Arc<std::sync::atomic::AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Starts `n` readers running `check` (see `Readers`).
pub fn spawn_readers(
    server: &Server,
    n: usize,
    check: impl Fn(&mut redis::Connection) + Send + Clone + 'static,
) -> Readers {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let reads = std::sync::Arc::new(AtomicU64::new(0));
    let threads = (0..n)
        .map(|_| {
            let (mut c, stop, reads, check) =
                (server.client(), stop.clone(), reads.clone(), check.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    check(&mut c);
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    Readers { stop, reads, threads }
}

impl Readers {
    /// Stops the readers; panics with `what` if a check failed. The number of checks made.
    pub fn stop(self, what: &str) -> u64 {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect(what);
        }
        self.reads.load(Ordering::Relaxed)
    }
}
