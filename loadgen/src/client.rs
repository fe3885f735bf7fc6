//! Blocking helpers around one connection: connect with retries and backoff, the handshake
//! (AUTH, CLIENT SETNAME), and one-shot commands (SHARDCAST SHARDS).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::resp::{self, Reply};

/// How long one connection attempt, or one handshake reply, may take.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// The largest reply accepted by the blocking helpers (SHARDCAST SHARDS of many shards).
pub const BLOCKING_REPLY_BYTES_MAX: usize = 16 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Retry {
    pub attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// Every attempt failed.
#[derive(Clone, Debug)]
pub struct Unreachable {
    pub addr: String,
    pub attempts: u32,
    pub elapsed: Duration,
    pub last_error: String,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot reach {}: {} attempts over {:.1} s failed; last error: {}",
            self.addr,
            self.attempts,
            self.elapsed.as_secs_f64(),
            self.last_error
        )
    }
}

/// Reads one complete reply (blocking, with the stream's timeout).
pub fn read_reply(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match resp::reply_len(buf) {
            Ok(Some(n)) => {
                let r = buf[..n].to_vec();
                buf.drain(..n);
                return Ok(r);
            }
            Ok(None) => {}
            Err(e) => {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
            }
        }
        if buf.len() > BLOCKING_REPLY_BYTES_MAX {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("reply larger than {BLOCKING_REPLY_BYTES_MAX} bytes"),
            ));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends one command and returns its raw reply.
pub fn call(s: &mut TcpStream, args: &[&[u8]]) -> std::io::Result<Vec<u8>> {
    s.write_all(&resp::command(args))?;
    let mut buf = Vec::new();
    read_reply(s, &mut buf)
}

fn error_text(reply: &[u8]) -> Option<String> {
    match resp::parse(reply) {
        Ok(Some((Reply::Error(e), _))) => Some(String::from_utf8_lossy(e).into_owned()),
        _ => None,
    }
}

/// One connection, handshaken: AUTH when a password is given, CLIENT SETNAME when a name is.
pub fn connect_once(
    addr: &SocketAddr,
    name: Option<&str>,
    password: Option<&str>,
) -> std::io::Result<TcpStream> {
    let timeout = Duration::from_millis(CONNECT_TIMEOUT_MS);
    let mut s = TcpStream::connect_timeout(addr, timeout)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    if let Some(pw) = password {
        let r = call(&mut s, &[b"AUTH", pw.as_bytes()])?;
        if let Some(e) = error_text(&r) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("AUTH refused: {e}"),
            ));
        }
    }
    if let Some(n) = name {
        // A server without CLIENT SETNAME still gets the load; its error is not fatal.
        let _ = call(&mut s, &[b"CLIENT", b"SETNAME", n.as_bytes()])?;
    }
    Ok(s)
}

/// Connects, retrying with exponential backoff.
pub fn connect(
    addr: &SocketAddr,
    name: Option<&str>,
    password: Option<&str>,
    retry: &Retry,
) -> Result<TcpStream, Unreachable> {
    let start = Instant::now();
    let mut backoff = retry.backoff_initial;
    let attempts = retry.attempts.max(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        match connect_once(addr, name, password) {
            Ok(s) => return Ok(s),
            Err(e) => {
                // A refused password will not improve by retrying.
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    return Err(Unreachable {
                        addr: addr.to_string(),
                        attempts: attempt,
                        elapsed: start.elapsed(),
                        last_error: e.to_string(),
                    });
                }
                last = e.to_string();
            }
        }
        if attempt < attempts {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(retry.backoff_max);
        }
    }
    Err(Unreachable {
        addr: addr.to_string(),
        attempts,
        elapsed: start.elapsed(),
        last_error: last,
    })
}

/// Shards per partition from a `SHARDCAST SHARDS` reply; `None` if the server answered an
/// error (it is not Shardcast).
pub fn parse_shards(
    reply: &[u8],
) -> Result<Option<std::collections::BTreeMap<String, u64>>, String> {
    let mut counts = std::collections::BTreeMap::new();
    let (top, mut pos) = match resp::parse(reply).map_err(|e| e.to_string())? {
        Some((Reply::Error(_), _)) => return Ok(None),
        Some((Reply::Array(n), used)) => (n, used),
        Some((other, _)) => return Err(format!("unexpected SHARDCAST SHARDS reply {other:?}")),
        None => return Err("incomplete reply".into()),
    };
    let next = |pos: &mut usize| -> Result<Reply<'_>, String> {
        let (r, used) =
            resp::parse(&reply[*pos..]).map_err(|e| e.to_string())?.ok_or("incomplete reply")?;
        *pos += used;
        Ok(r)
    };
    for _ in 0..top {
        let fields = match next(&mut pos)? {
            Reply::Array(m) => m,
            other => return Err(format!("shard entry is not a map: {other:?}")),
        };
        let mut partition = None;
        for _ in 0..fields / 2 {
            let key = match next(&mut pos)? {
                Reply::Bulk(k) | Reply::Simple(k) => k.to_vec(),
                other => return Err(format!("field name is not a string: {other:?}")),
            };
            let start = pos;
            let value = next(&mut pos)?;
            if let Reply::Array(_) = value {
                // Skip nested values whole.
                pos = start
                    + resp::reply_len(&reply[start..])
                        .map_err(|e| e.to_string())?
                        .ok_or("incomplete reply")?;
            }
            if key == b"partition" {
                if let Reply::Bulk(p) | Reply::Simple(p) = value {
                    partition = Some(String::from_utf8_lossy(p).into_owned());
                }
            }
        }
        *counts.entry(partition.unwrap_or_else(|| "(unknown)".into())).or_insert(0) += 1;
    }
    Ok(Some(counts))
}
