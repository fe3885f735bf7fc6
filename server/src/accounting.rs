//! The bookkeeping of one pipeline's commands as they run: which command each batch held and
//! how it ended, and, when a batch ends, its time recorded into the command statistics, the
//! slow log, the latency monitor and the error counts (`stats`).
//!
//! The fast path costs one clock read per batch and one add per counter per run of equal
//! commands. A slow command's arguments are parsed again from the connection's input buffer
//! (`raw`), where they still are: nothing is copied ahead in case a command turns out slow.

use crate::resp::{parse, Limits, Parsed};
use crate::shared::{ClientInfo, Shared};
use crate::stats::commands::{slot_name, Batch, Slot};
use std::ops::Range;
use std::time::Instant;

/// How a command of the batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Ran; the flag says whether its reply was an error.
    Ran { failed: bool },
    /// Refused before it ran (arity, authentication, OOM): counted at once, not timed.
    Rejected,
    /// Not a command: only its error reply is counted.
    Unknown,
}

/// One command of the batch. The buffer of marks is kept by the connection between
/// pipelines (`Ledger::into_marks`), so a ledger allocates nothing once warm.
pub struct Mark {
    slot: Slot,
    outcome: Outcome,
    /// Its bytes in `raw`.
    raw: Range<usize>,
}

/// One pipeline's ledger.
pub struct Ledger<'a> {
    shared: &'a Shared,
    core: usize,
    raw: &'a [u8],
    since: Instant,
    marks: Vec<Mark>,
}

impl<'a> Ledger<'a> {
    /// A ledger for commands parsed from `raw`, keeping its marks in `marks` (emptied); the
    /// first batch starts now.
    pub fn new(shared: &'a Shared, core: usize, raw: &'a [u8], mut marks: Vec<Mark>) -> Self {
        marks.clear();
        Ledger { shared, core, raw, since: Instant::now(), marks }
    }

    /// The marks' buffer, for the next ledger.
    pub fn into_marks(self) -> Vec<Mark> {
        self.marks
    }

    /// A command `slot` joins the batch.
    pub fn ran(&mut self, slot: Slot, raw: Range<usize>) {
        self.marks.push(Mark { slot, outcome: Outcome::Ran { failed: false }, raw });
    }

    /// A command refused before running.
    pub fn rejected(&mut self, slot: Slot, raw: Range<usize>) {
        self.shared.observe.commands[self.core].record_rejected(slot);
        self.marks.push(Mark { slot, outcome: Outcome::Rejected, raw });
    }

    pub fn unknown(&mut self, raw: Range<usize>) {
        self.marks.push(Mark { slot: Slot(0), outcome: Outcome::Unknown, raw });
    }

    /// The reply of the batch's `i`th command was rendered as `reply`.
    pub fn replied(&mut self, i: usize, reply: &[u8]) {
        if let Some(line) = reply.strip_prefix(b"-") {
            self.shared.observe.errors.count(line);
            if let Some(Mark { outcome: Outcome::Ran { failed }, .. }) = self.marks.get_mut(i) {
                *failed = true;
            }
        }
    }

    /// The next batch starts now (after a wait that is not the commands' own: a pause).
    pub fn restart(&mut self) {
        self.since = Instant::now();
    }

    /// The batch's replies are ready: records its commands (run by `client`) and starts the
    /// next batch.
    pub fn batch_done(&mut self, client: &ClientInfo) {
        if self.marks.is_empty() {
            return;
        }
        let now = Instant::now();
        let ns = now.duration_since(self.since).as_nanos() as u64;
        self.since = now;
        let ran = self.marks.iter().filter(|m| matches!(m.outcome, Outcome::Ran { .. })).count();
        let obs = &self.shared.observe;
        if ran > 0 {
            let batch = Batch { ns, share_ns: ns / ran as u64, track_latency: obs.tracking() };
            let stats = &obs.commands[self.core];
            let mut i = 0;
            while i < self.marks.len() {
                let Outcome::Ran { .. } = self.marks[i].outcome else {
                    i += 1;
                    continue;
                };
                let slot = self.marks[i].slot;
                let (mut calls, mut failed) = (0, 0);
                while let Some(Mark { slot: s2, outcome: Outcome::Ran { failed: f }, .. }) =
                    self.marks.get(i)
                {
                    if *s2 != slot {
                        break;
                    }
                    calls += 1;
                    failed += u64::from(*f);
                    i += 1;
                }
                stats.record_run(slot, calls, failed, batch);
            }
            let took = std::time::Duration::from_nanos(ns);
            if obs.events.is_over(took) {
                let all_fast = self
                    .marks
                    .iter()
                    .all(|m| !matches!(m.outcome, Outcome::Ran { .. }) || slot_is_fast(m.slot));
                obs.events.observe(if all_fast { "fast-command" } else { "command" }, took);
            }
            if obs.slowlog.is_slow(ns / 1000) {
                self.log_slow(ns / 1000, client);
            }
        }
        self.marks.clear();
    }

    /// Adds the batch's commands to the slow log, their arguments read again from `raw`
    /// (only what an entry keeps is copied).
    fn log_slow(&self, us: u64, client: &ClientInfo) {
        let name = client.name.lock().expect("client name poisoned").clone();
        for m in self.marks.iter().filter(|m| matches!(m.outcome, Outcome::Ran { .. })) {
            let Some(bytes) = self.raw.get(m.raw.clone()) else { continue };
            let Some(mut args) = trimmed_args(bytes) else { continue };
            redact(slot_name(m.slot), &mut args);
            self.shared.observe.slowlog.add_trimmed(us, args, &client.addr, &name);
        }
    }
}

/// Whether the command of row `slot` has the table's `fast` flag (a subcommand: its
/// container's).
fn slot_is_fast(slot: Slot) -> bool {
    let name = slot_name(slot);
    let command = name.split_once('|').map_or(name, |(container, _)| container);
    crate::table::lookup(command.as_bytes()).is_some_and(|(_, spec)| spec.has("fast"))
}

/// A command's arguments as a slow log entry keeps them (`slowlog::trim_args`), read from its
/// bytes on the wire without copying more than that: a RESP array is walked bulk by bulk; an
/// inline command (at most 64 KiB) is parsed whole and trimmed.
fn trimmed_args(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    use crate::stats::slowlog::{trim_args, SLOWLOG_ENTRY_ARGS_MAX, SLOWLOG_ENTRY_ARG_BYTES_MAX};
    if bytes.first() != Some(&b'*') {
        let Parsed::Command { args, .. } = parse(bytes, Limits { bulk_len_max: usize::MAX }) else {
            return None;
        };
        return Some(trim_args(&args));
    }
    // The parser accepted these bytes already: `*N\r\n` then N times `$len\r\n<len bytes>\r\n`.
    fn line(bytes: &[u8], at: &mut usize) -> Option<usize> {
        let end = *at + bytes.get(*at..)?.windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(bytes.get(*at + 1..end)?).ok()?.parse().ok()?;
        *at = end + 2;
        Some(n)
    }
    let mut at = 0;
    let count = line(bytes, &mut at)?;
    let kept = if count > SLOWLOG_ENTRY_ARGS_MAX { SLOWLOG_ENTRY_ARGS_MAX - 1 } else { count };
    let mut out = Vec::with_capacity(kept + 1);
    for _ in 0..kept {
        let len = line(bytes, &mut at)?;
        let data = bytes.get(at..at + len)?;
        at += len + 2;
        let mut arg = data[..len.min(SLOWLOG_ENTRY_ARG_BYTES_MAX)].to_vec();
        if len > SLOWLOG_ENTRY_ARG_BYTES_MAX {
            let more = len - SLOWLOG_ENTRY_ARG_BYTES_MAX;
            arg.extend_from_slice(format!("... ({more} more bytes)").as_bytes());
        }
        out.push(arg);
    }
    if kept < count {
        out.push(format!("... ({} more arguments)", count - kept).into_bytes());
    }
    Some(out)
}

/// Hides secrets as Redis does in its slow log and MONITOR: AUTH's arguments, HELLO's AUTH
/// pair, and the values of `requirepass` and `masterauth` in CONFIG SET.
pub fn redact(name: &str, args: &mut [Vec<u8>]) {
    if name == "config|set" {
        for pair in args.get_mut(2..).unwrap_or_default().chunks_mut(2) {
            let secret = |k: &[u8]| {
                k.eq_ignore_ascii_case(b"requirepass") || k.eq_ignore_ascii_case(b"masterauth")
            };
            if let [key, value] = pair {
                if secret(key) {
                    *value = b"(redacted)".to_vec();
                }
            }
        }
        return;
    }
    let secrets = match name {
        "auth" => 1..args.len(),
        // HELLO [protover [AUTH username password] [SETNAME clientname]]
        "hello" => match args.iter().position(|a| a.eq_ignore_ascii_case(b"auth")) {
            Some(i) => i + 1..(i + 3).min(args.len()),
            None => return,
        },
        _ => return,
    };
    for a in &mut args[secrets] {
        *a = b"(redacted)".to_vec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::slowlog::trim_args;

    fn wire(args: &[&[u8]]) -> Vec<u8> {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
        crate::fuzz_targets::encode_command(&args)
    }

    /// Reading only what an entry keeps gives what parsing everything and trimming gives.
    #[test]
    fn trimmed_args_match_a_full_parse_then_trim() {
        let long = vec![b'x'; 1000];
        let many: Vec<Vec<u8>> = (0..40).map(|i| format!("k{i}").into_bytes()).collect();
        let mut many_refs: Vec<&[u8]> = vec![b"MGET"];
        many_refs.extend(many.iter().map(|k| k.as_slice()));
        let cases: Vec<Vec<u8>> = vec![
            wire(&[b"GET", b"k"]),
            wire(&[b"SET", b"k", &long]),
            wire(&many_refs),
            wire(&[b"SET", b"k", b"with\r\ninside"]),
            b"SET inline value\r\n".to_vec(),
        ];
        for bytes in cases {
            let Parsed::Command { args, .. } = parse(&bytes, Limits { bulk_len_max: usize::MAX })
            else {
                panic!("{bytes:?}")
            };
            assert_eq!(trimmed_args(&bytes), Some(trim_args(&args)), "{bytes:?}");
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let mut args: Vec<Vec<u8>> =
            ["CONFIG", "SET", "maxmemory", "1mb", "MasterAuth", "pw", "requirepass", "pw2"]
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect();
        redact("config|set", &mut args);
        let text: Vec<String> = args.iter().map(|a| String::from_utf8_lossy(a).into()).collect();
        assert_eq!(text[3], "1mb");
        assert_eq!((text[5].as_str(), text[7].as_str()), ("(redacted)", "(redacted)"));
        let mut auth: Vec<Vec<u8>> = vec![b"AUTH".to_vec(), b"user".to_vec(), b"pw".to_vec()];
        redact("auth", &mut auth);
        assert!(auth[1..].iter().all(|a| a == b"(redacted)"));
    }
}
