//! Test helpers: a real redis-server on a free port in a temp dir, and small in-process RESP
//! servers with deliberate faults (a stall, lies).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const START_DEADLINE: Duration = Duration::from_secs(20);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("loadgen-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Waits for `cond` with a deadline.
pub fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub struct Redis {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl Redis {
    /// Debian's redis-server, no persistence, on a free port (retried if the port is taken).
    pub fn start(name: &str) -> Redis {
        let dir = temp_dir(name);
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("/usr/bin/redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start /usr/bin/redis-server (apt-get install redis-server)");
            let end = Instant::now() + START_DEADLINE;
            loop {
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                    let _ = s.write_all(b"PING\r\n");
                    let mut line = String::new();
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("+PONG") {
                        return Redis { port, dir, child };
                    }
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited (port taken?): try another port
                }
                assert!(Instant::now() < end, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("redis-server could not start on a free port");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads one command (an array of bulk strings) from a RESP client.
fn read_command(r: &mut BufReader<TcpStream>) -> Option<Vec<Vec<u8>>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let n: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut buf = vec![0u8; len + 2];
        std::io::Read::read_exact(r, &mut buf).ok()?;
        buf.truncate(len);
        args.push(buf);
    }
    Some(args)
}

fn bulk(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => out.extend_from_slice(b"$-1\r\n"),
        Some(v) => {
            out.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Every value each key was set to, oldest first.
type History = HashMap<Vec<u8>, Vec<Vec<u8>>>;

/// What a fake server does with a GET of a key whose history of values is given.
pub type GetPolicy = dyn Fn(u64, &[Vec<u8>]) -> Option<Vec<u8>> + Send + Sync;

/// A small RESP server: GET/SET/DEL/MGET/MSET/INCR over a map, one thread per connection.
/// `stall_at`: when the server has received this many commands (counted over all
/// connections), it stops answering for `stall` once.
pub struct FakeServer {
    pub port: u16,
    pub commands: Arc<AtomicU64>,
    /// Connections accepted.
    pub accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    pub fn start(stall_at: Option<u64>, stall: Duration, get: Arc<GetPolicy>) -> FakeServer {
        FakeServer::start_with(stall_at, stall, None, get)
    }

    /// As `start`; `drop_at`: the connection that brings the command count to this number is
    /// closed without a reply.
    pub fn start_with(
        stall_at: Option<u64>,
        stall: Duration,
        drop_at: Option<u64>,
        get: Arc<GetPolicy>,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let commands = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let data: Arc<Mutex<History>> = Arc::default();
        let gets = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let (c2, s2, a2) = (commands.clone(), stop.clone(), accepted.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.load(Ordering::Acquire) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                a2.fetch_add(1, Ordering::AcqRel);
                let (commands, data, get, gets) =
                    (c2.clone(), data.clone(), get.clone(), gets.clone());
                std::thread::spawn(move || {
                    let _ = conn.set_nodelay(true);
                    let mut w = conn.try_clone().unwrap();
                    let mut r = BufReader::new(conn);
                    let mut out = Vec::new();
                    while let Some(args) = read_command(&mut r) {
                        let n = commands.fetch_add(1, Ordering::AcqRel) + 1;
                        if Some(n) == drop_at {
                            return; // closes the connection, replies unsent
                        }
                        if Some(n) == stall_at {
                            // The deliberate stall this server exists for.
                            std::thread::sleep(stall);
                        }
                        let cmd = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
                        let mut d = data.lock().unwrap();
                        match cmd.as_str() {
                            "GET" => {
                                let g = gets.fetch_add(1, Ordering::AcqRel);
                                let v = d.get(&args[1]).and_then(|h| get(g, h));
                                bulk(&mut out, v.as_deref());
                            }
                            "MGET" => {
                                out.extend_from_slice(
                                    format!("*{}\r\n", args.len() - 1).as_bytes(),
                                );
                                for k in &args[1..] {
                                    let g = gets.fetch_add(1, Ordering::AcqRel);
                                    let v = d.get(k).and_then(|h| get(g, h));
                                    bulk(&mut out, v.as_deref());
                                }
                            }
                            "SET" => {
                                d.entry(args[1].clone()).or_default().push(args[2].clone());
                                out.extend_from_slice(b"+OK\r\n");
                            }
                            "MSET" => {
                                for kv in args[1..].chunks(2) {
                                    d.entry(kv[0].clone()).or_default().push(kv[1].clone());
                                }
                                out.extend_from_slice(b"+OK\r\n");
                            }
                            "DEL" => {
                                let n = args[1..].iter().filter(|k| d.remove(*k).is_some()).count();
                                out.extend_from_slice(format!(":{n}\r\n").as_bytes());
                            }
                            "INCR" => out.extend_from_slice(b":1\r\n"),
                            "CLIENT" | "AUTH" => out.extend_from_slice(b"+OK\r\n"),
                            _ => out.extend_from_slice(
                                format!("-ERR unknown command '{cmd}'\r\n").as_bytes(),
                            ),
                        }
                        drop(d);
                        // Answer once the client's pipeline has been read.
                        if r.buffer().is_empty() {
                            if w.write_all(&out).is_err() {
                                return;
                            }
                            out.clear();
                        }
                    }
                });
            }
        });
        FakeServer { port, commands, accepted, stop }
    }

    /// An honest server: GET returns the last value.
    pub fn honest(stall_at: Option<u64>, stall: Duration) -> FakeServer {
        FakeServer::start(stall_at, stall, Arc::new(|_, h: &[Vec<u8>]| h.last().cloned()))
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
