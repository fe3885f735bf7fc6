//! The slow log (`SLOWLOG GET|LEN|RESET`): the latest commands that took at least
//! `slowlog-log-slower-than` µs, at most `slowlog-max-len` of them, as Redis keeps them.
//!
//! Entries are added only by slow commands, so the log is one mutex-guarded queue: the fast
//! path reads two atomics (the threshold) and takes no lock. A command's arguments are not
//! copied ahead in case it turns out slow: the connection reads them back from its input
//! buffer, where they still are (`connection.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Arguments kept per entry (Redis's `SLOWLOG_ENTRY_MAX_ARGC`); the last one kept says how
/// many more there were.
pub const SLOWLOG_ENTRY_ARGS_MAX: usize = 32;
/// Bytes kept per argument (Redis's `SLOWLOG_ENTRY_MAX_STRING`).
pub const SLOWLOG_ENTRY_ARG_BYTES_MAX: usize = 128;
/// `slowlog-log-slower-than` unless set (µs), as Redis.
pub const SLOWLOG_SLOWER_THAN_US_DEFAULT: i64 = 10_000;
/// `slowlog-max-len` unless set, as Redis.
pub const SLOWLOG_LEN_DEFAULT: u64 = 128;
/// The largest `slowlog-max-len` accepted (Redis allows up to LONG_MAX; each entry holds up
/// to 32 × 128 bytes of arguments, so this bounds the log near 470 MiB).
pub const SLOWLOG_LEN_MAX: u64 = 100_000;

/// One logged command.
#[derive(Debug, Clone)]
pub struct SlowEntry {
    pub id: u64,
    pub unix_s: u64,
    pub duration_us: u64,
    pub args: Vec<Vec<u8>>,
    pub client_addr: String,
    pub client_name: Vec<u8>,
}

pub struct SlowLog {
    /// µs; negative turns the log off.
    slower_than_us: AtomicI64,
    max_len: AtomicU64,
    next_id: AtomicU64,
    entries: Mutex<VecDeque<SlowEntry>>,
}

impl SlowLog {
    pub fn new(slower_than_us: i64, max_len: u64) -> Self {
        SlowLog {
            slower_than_us: AtomicI64::new(slower_than_us),
            max_len: AtomicU64::new(max_len.min(SLOWLOG_LEN_MAX)),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// Whether a command that took `duration_us` goes in the log.
    pub fn is_slow(&self, duration_us: u64) -> bool {
        let threshold = self.slower_than_us.load(Ordering::Relaxed);
        threshold >= 0
            && duration_us >= threshold as u64
            && self.max_len.load(Ordering::Relaxed) > 0
    }

    pub fn slower_than_us(&self) -> i64 {
        self.slower_than_us.load(Ordering::Relaxed)
    }

    pub fn set_slower_than_us(&self, us: i64) {
        self.slower_than_us.store(us, Ordering::Relaxed);
    }

    pub fn max_len(&self) -> u64 {
        self.max_len.load(Ordering::Relaxed)
    }

    pub fn set_max_len(&self, len: u64) {
        let len = len.min(SLOWLOG_LEN_MAX);
        self.max_len.store(len, Ordering::Relaxed);
        let mut entries = self.entries.lock().expect("slow log poisoned");
        entries.truncate(len as usize);
    }

    /// Logs a command: `args` as received (trimmed here to the entry limits).
    pub fn add(&self, duration_us: u64, args: &[Vec<u8>], client_addr: &str, client_name: &[u8]) {
        self.add_trimmed(duration_us, trim_args(args), client_addr, client_name);
    }

    /// Logs a command whose arguments are trimmed already (`trim_args`).
    pub fn add_trimmed(
        &self,
        duration_us: u64,
        args: Vec<Vec<u8>>,
        client_addr: &str,
        client_name: &[u8],
    ) {
        let entry = SlowEntry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            unix_s: crate::commands::now_ms() / 1000,
            duration_us,
            args,
            client_addr: client_addr.to_owned(),
            client_name: client_name.to_vec(),
        };
        let max = self.max_len() as usize;
        let mut entries = self.entries.lock().expect("slow log poisoned");
        entries.push_front(entry);
        entries.truncate(max);
    }

    /// The newest `count` entries (all with `None`), newest first.
    pub fn newest(&self, count: Option<usize>) -> Vec<SlowEntry> {
        let entries = self.entries.lock().expect("slow log poisoned");
        entries.iter().take(count.unwrap_or(usize::MAX)).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("slow log poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn reset(&self) {
        self.entries.lock().expect("slow log poisoned").clear();
    }
}

/// Redis's trimming: at most `SLOWLOG_ENTRY_ARGS_MAX` arguments, the last one then saying
/// `... (N more arguments)`; an argument past `SLOWLOG_ENTRY_ARG_BYTES_MAX` bytes ends with
/// `... (N more bytes)`.
pub fn trim_args(args: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let kept =
        if args.len() > SLOWLOG_ENTRY_ARGS_MAX { SLOWLOG_ENTRY_ARGS_MAX - 1 } else { args.len() };
    let mut out: Vec<Vec<u8>> = args[..kept]
        .iter()
        .map(|a| {
            if a.len() > SLOWLOG_ENTRY_ARG_BYTES_MAX {
                let mut t = a[..SLOWLOG_ENTRY_ARG_BYTES_MAX].to_vec();
                t.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - SLOWLOG_ENTRY_ARG_BYTES_MAX)
                        .as_bytes(),
                );
                t
            } else {
                a.clone()
            }
        })
        .collect();
    if kept < args.len() {
        out.push(format!("... ({} more arguments)", args.len() - kept).into_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_up_to_its_length() {
        let log = SlowLog::new(0, 3);
        for i in 0..5u64 {
            log.add(i, &[b"get".to_vec(), i.to_string().into_bytes()], "a:1", b"");
        }
        let ids: Vec<u64> = log.newest(None).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![4, 3, 2]);
        assert_eq!(log.newest(Some(1)).len(), 1);
        log.set_max_len(1);
        assert_eq!(log.len(), 1);
        log.reset();
        assert!(log.is_empty());
    }

    #[test]
    fn the_threshold_follows_redis() {
        let log = SlowLog::new(-1, 10);
        assert!(!log.is_slow(u64::MAX));
        log.set_slower_than_us(0);
        assert!(log.is_slow(0));
        log.set_slower_than_us(100);
        assert!(!log.is_slow(99) && log.is_slow(100));
        log.set_max_len(0);
        assert!(!log.is_slow(1_000));
    }

    #[test]
    fn long_commands_are_trimmed_as_redis_trims_them() {
        let mut args = vec![b"mset".to_vec(), vec![b'x'; 300]];
        args.extend((0..40).map(|i| i.to_string().into_bytes()));
        let t = trim_args(&args);
        assert_eq!(t.len(), SLOWLOG_ENTRY_ARGS_MAX);
        assert!(t[1].ends_with(b"... (172 more bytes)"));
        assert_eq!(t[1].len(), 128 + b"... (172 more bytes)".len());
        assert_eq!(t[31], b"... (11 more arguments)".to_vec());
    }
}
