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
    pub dir: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// Starts a server with a fresh data dir named after `name`, and extra flags.
    pub fn start(name: &str, args: &[&str]) -> Server {
        let dir = std::env::temp_dir().join(format!("shardcast-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Server {
            port: free_port(),
            dir,
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
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
            let mut child = Command::new(env!("CARGO_BIN_EXE_shardcast-server"))
                .arg("--port")
                .arg(self.port.to_string())
                .arg("--data-dir")
                .arg(&self.dir)
                .args(&self.args)
                .env("SHARDCAST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
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
                Err(e) => panic!("server did not become ready: {e}"),
            }
        }
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
    }
}
