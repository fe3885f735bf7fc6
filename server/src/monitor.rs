//! MONITOR: every command any core runs, as Redis prints it
//! (`+1339518083.107412 [0 127.0.0.1:60866] "set" "k" "v"`), streamed to the connections that
//! asked.
//!
//! Costs nothing while nobody monitors (one atomic load per command). While someone does,
//! each command is formatted once on the core that runs it and appended to every listener's
//! feed (a lock per feed: MONITOR is a debugging tool, and costs Redis about half its
//! throughput too); each listener's own core writes its feed out every `MONITOR_FLUSH_MS`.
//! A listener that falls `MONITOR_BACKLOG_MAX_BYTES` behind is disconnected, as Redis drops
//! a client past its output buffer limit, even while a write to it is stuck (it then holds
//! at most twice that: the batch being written and a full feed). Admin commands (CONFIG, SHUTDOWN, ...) are not
//! shown, and AUTH's and HELLO's secrets are redacted, as in Redis.

use crate::accounting::redact;
use crate::resp::{parse, Limits, Parsed};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a listener's core writes out its feed.
pub const MONITOR_FLUSH_MS: u64 = 10;
/// Unsent bytes a listener may fall behind before it is disconnected.
pub const MONITOR_BACKLOG_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Bytes a listener's unparsed input may hold (it may send only PING and QUIT).
const MONITOR_INPUT_MAX_BYTES: usize = 64 * 1024;

/// One listener's lines not yet written.
#[derive(Default)]
pub struct Feed {
    pending: Mutex<Vec<u8>>,
    overflowed: AtomicBool,
}

impl Feed {
    fn push(&self, line: &[u8]) {
        let mut pending = self.pending.lock().expect("monitor feed poisoned");
        if pending.len() + line.len() > MONITOR_BACKLOG_MAX_BYTES {
            self.overflowed.store(true, Ordering::Relaxed);
        } else {
            pending.extend_from_slice(line);
        }
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.pending.lock().expect("monitor feed poisoned"))
    }
}

/// Every listener.
#[derive(Default)]
pub struct Monitors {
    count: AtomicUsize,
    feeds: Mutex<Vec<Arc<Feed>>>,
}

impl Monitors {
    /// Whether anyone listens (the data path's one check).
    pub fn active(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    pub fn subscribe(&self) -> Arc<Feed> {
        let feed = Arc::new(Feed::default());
        let mut feeds = self.feeds.lock().expect("monitor feeds poisoned");
        feeds.push(feed.clone());
        self.count.store(feeds.len(), Ordering::Relaxed);
        feed
    }

    fn unsubscribe(&self, feed: &Arc<Feed>) {
        let mut feeds = self.feeds.lock().expect("monitor feeds poisoned");
        feeds.retain(|f| !Arc::ptr_eq(f, feed));
        self.count.store(feeds.len(), Ordering::Relaxed);
    }

    /// Shows the command `args` (named `name` in the table) from client `addr`.
    pub fn feed(&self, name: &str, args: &[Vec<u8>], addr: &str) {
        let line = if matches!(name, "auth" | "hello") {
            let mut args = args.to_vec();
            redact(name, &mut args);
            format_line(&args, addr, crate::commands::now_us())
        } else {
            format_line(args, addr, crate::commands::now_us())
        };
        for f in self.feeds.lock().expect("monitor feeds poisoned").iter() {
            f.push(&line);
        }
    }
}

/// One MONITOR line: `+secs.micros [0 addr] "arg" ...` with each argument quoted as Redis's
/// `sdscatrepr` quotes it.
pub fn format_line(args: &[Vec<u8>], addr: &str, unix_us: u64) -> Vec<u8> {
    let mut line = format!("+{}.{:06} [0 {addr}]", unix_us / 1_000_000, unix_us % 1_000_000);
    for a in args {
        line.push_str(" \"");
        for &b in a {
            match b {
                b'\\' => line.push_str("\\\\"),
                b'"' => line.push_str("\\\""),
                b'\n' => line.push_str("\\n"),
                b'\r' => line.push_str("\\r"),
                b'\t' => line.push_str("\\t"),
                7 => line.push_str("\\a"),
                8 => line.push_str("\\b"),
                b' '..=b'~' => line.push(b as char),
                _ => line.push_str(&format!("\\x{b:02x}")),
            }
        }
        line.push('"');
    }
    line.push_str("\r\n");
    line.into_bytes()
}

/// Unsubscribes its feed when dropped, whichever way the listener's loop ends.
struct Subscription<'a> {
    monitors: &'a Monitors,
    feed: Arc<Feed>,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.monitors.unsubscribe(&self.feed);
    }
}

/// Serves a connection that ran MONITOR (its `+OK` written) until it closes, quits, is
/// killed, the server stops, or it falls `MONITOR_BACKLOG_MAX_BYTES` behind. `input` holds
/// what it sent after MONITOR.
pub async fn serve(
    core: &shardcast_engine::Core,
    shared: &crate::shared::Shared,
    stream: &mut TcpStream,
    client: &crate::shared::ClientInfo,
    mut input: Vec<u8>,
) {
    let subscription =
        Subscription { monitors: &shared.monitors, feed: shared.monitors.subscribe() };
    let feed = &subscription.feed;
    // Why the listener must stop, checked between steps and while a write is stuck.
    let must_end = || {
        if feed.overflowed.load(Ordering::Relaxed) {
            tracing::warn!(client = client.id, "closing MONITOR client that fell behind");
            return true;
        }
        core.stop_requested() || client.is_killed()
    };
    let mut chunk = vec![0u8; 4096];
    'serving: loop {
        let mut replies = Vec::new();
        let limits = Limits { bulk_len_max: MONITOR_INPUT_MAX_BYTES };
        loop {
            match parse(&input, limits) {
                Parsed::Command { args, consumed } => {
                    input.drain(..consumed);
                    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
                    match name.as_str() {
                        "quit" => {
                            let _ = stream.write_all(b"+OK\r\n").await;
                            break 'serving;
                        }
                        "ping" => replies.extend_from_slice(b"+PONG\r\n"),
                        _ => replies.extend_from_slice(
                            b"-ERR a MONITOR connection accepts only PING and QUIT\r\n",
                        ),
                    }
                }
                Parsed::Skip { consumed } => {
                    input.drain(..consumed);
                }
                Parsed::Incomplete if input.len() <= MONITOR_INPUT_MAX_BYTES => break,
                Parsed::Incomplete | Parsed::Error(_) => break 'serving,
            }
        }
        if must_end() {
            break;
        }
        let mut out = feed.take();
        out.extend_from_slice(&replies);
        if !out.is_empty() {
            // A listener that stops reading would block this write for ever: it is watched.
            let written =
                futures_lite::future::or(async { stream.write_all(&out).await.is_ok() }, async {
                    while !must_end() {
                        glommio::timer::sleep(Duration::from_millis(MONITOR_FLUSH_MS)).await;
                    }
                    false
                })
                .await;
            if !written {
                break;
            }
        }
        let read = futures_lite::future::or(async { Some(stream.read(&mut chunk).await) }, async {
            glommio::timer::sleep(Duration::from_millis(MONITOR_FLUSH_MS)).await;
            None
        })
        .await;
        match read {
            None => {}
            Some(Ok(0)) | Some(Err(_)) => break,
            Some(Ok(n)) => input.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_quoted_as_redis_quotes_them() {
        let args = vec![b"set".to_vec(), b"a b".to_vec(), b"x\"y\nz\x01\\".to_vec()];
        let line = format_line(&args, "127.0.0.1:5", 1_796_663_670_000_042);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "+1796663670.000042 [0 127.0.0.1:5] \"set\" \"a b\" \"x\\\"y\\nz\\x01\\\\\"\r\n"
        );
    }

    #[test]
    fn a_listener_that_falls_behind_is_marked_and_nothing_else_grows() {
        let monitors = Monitors::default();
        assert!(!monitors.active());
        let feed = monitors.subscribe();
        assert!(monitors.active());
        let big = vec![vec![b'x'; 1024 * 1024]];
        for _ in 0..40 {
            monitors.feed("set", &big, "a:1");
        }
        assert!(feed.overflowed.load(Ordering::Relaxed));
        assert!(feed.take().len() <= MONITOR_BACKLOG_MAX_BYTES);
        monitors.unsubscribe(&feed);
        assert!(!monitors.active());
    }

    #[test]
    fn secrets_are_redacted() {
        let monitors = Monitors::default();
        let feed = monitors.subscribe();
        let args = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        monitors.feed("auth", &args(&["AUTH", "secret"]), "a:1");
        monitors.feed("hello", &args(&["HELLO", "3", "AUTH", "u", "pw", "SETNAME", "n"]), "a:1");
        let text = String::from_utf8(feed.take()).unwrap();
        assert!(!text.contains("secret") && !text.contains("pw"), "{text}");
        assert!(text.contains("\"SETNAME\" \"n\""), "{text}");
    }
}
