//! The explanation log: every decision the allocator made, and every decision not to act on a
//! partition near a threshold, with the figures it was made from. Bounded (`EXPLAIN_LOG_MAX`
//! entries, oldest dropped) and encoded to bytes for the data directory, so it survives a
//! restart (`docs/format.md`).

use std::collections::VecDeque;

/// Explanations kept (oldest dropped first).
pub const EXPLAIN_LOG_MAX: usize = 1000;
/// Longest text field kept in an explanation (reasons are a sentence or two).
pub const EXPLAIN_TEXT_MAX: usize = 1024;
/// The first bytes of an encoded log.
pub const EXPLAIN_MAGIC: &[u8; 8] = b"SCEXPL01";

/// One decision (or decision not to act) and its inputs, in ops per second.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub at_ms: u64,
    pub partition: Vec<u8>,
    pub policy: String,
    /// carve-out, split, merge, fold-back, move, or none.
    pub action: String,
    /// The change in words (shards and cores), empty for none.
    pub change: String,
    /// Load of the last round.
    pub observed: f64,
    /// The load the decision was made for (the forecast's upper quantile, the held observed
    /// load, or the remembered peak for a merge).
    pub demand: f64,
    /// The forecast: its peak over the horizon, upper quantile and the model behind it.
    pub forecast_peak: Option<f64>,
    pub forecast_upper: Option<f64>,
    pub quantile: f64,
    pub model: String,
    /// One core's capacity (ops/s at full busy) and the split cost used.
    pub core_capacity: f64,
    pub split_cost: f64,
    pub shards: usize,
    pub wanted: usize,
    /// The partition splits above `split_at` and merges below `merge_at`.
    pub split_at: f64,
    pub merge_at: f64,
    pub reason: String,
    /// The alternative considered and why it was not taken (empty if none).
    pub rejected: String,
}

/// The bounded log.
#[derive(Debug, Clone, Default)]
pub struct ExplainLog {
    entries: VecDeque<Explanation>,
    /// Explanations recorded since the start (including those dropped).
    pub recorded: u64,
}

impl ExplainLog {
    pub fn push(&mut self, mut e: Explanation) {
        for s in [&mut e.reason, &mut e.rejected, &mut e.change, &mut e.model, &mut e.policy] {
            truncate(s);
        }
        e.partition.truncate(EXPLAIN_TEXT_MAX);
        self.entries.push_back(e);
        self.recorded += 1;
        while self.entries.len() > EXPLAIN_LOG_MAX {
            self.entries.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The newest `count` explanations, of `partition` if given, newest first.
    pub fn recent(&self, partition: Option<&[u8]>, count: usize) -> Vec<Explanation> {
        self.entries
            .iter()
            .rev()
            .filter(|e| partition.is_none_or(|p| e.partition == p))
            .take(count)
            .cloned()
            .collect()
    }

    /// Counts by action over the kept entries.
    pub fn counts(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for e in &self.entries {
            match out.iter_mut().find(|(a, _)| *a == e.action) {
                Some((_, n)) => *n += 1,
                None => out.push((e.action.clone(), 1)),
            }
        }
        out.sort();
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        put_u64(&mut body, self.recorded);
        put_u64(&mut body, self.entries.len() as u64);
        for e in &self.entries {
            put_u64(&mut body, e.at_ms);
            put_bytes(&mut body, &e.partition);
            for s in [&e.policy, &e.action, &e.change, &e.model, &e.reason, &e.rejected] {
                put_bytes(&mut body, s.as_bytes());
            }
            for v in [e.observed, e.demand, e.quantile, e.core_capacity, e.split_cost] {
                put_u64(&mut body, v.to_bits());
            }
            for v in [e.split_at, e.merge_at] {
                put_u64(&mut body, v.to_bits());
            }
            for o in [e.forecast_peak, e.forecast_upper] {
                body.push(o.is_some() as u8);
                put_u64(&mut body, o.unwrap_or(0.0).to_bits());
            }
            put_u64(&mut body, e.shards as u64);
            put_u64(&mut body, e.wanted as u64);
        }
        let mut out = EXPLAIN_MAGIC.to_vec();
        put_u64(&mut out, body.len() as u64);
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes `encode`'s bytes; a damaged log is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<ExplainLog, String> {
        let header = EXPLAIN_MAGIC.len() + 12;
        if bytes.len() < header || &bytes[..8] != EXPLAIN_MAGIC {
            return Err("not an explanation log (bad magic)".into());
        }
        let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
        let body = &bytes[header..];
        if body.len() != len {
            return Err(format!("body of {} bytes, header says {len}", body.len()));
        }
        if crc32fast::hash(body) != crc {
            return Err("checksum mismatch".into());
        }
        let mut r = Reader { b: body };
        let recorded = r.u64()?;
        let n = r.u64()? as usize;
        if n > EXPLAIN_LOG_MAX {
            return Err(format!("{n} entries, more than {EXPLAIN_LOG_MAX}"));
        }
        let mut entries = VecDeque::with_capacity(n);
        for _ in 0..n {
            let at_ms = r.u64()?;
            let partition = r.bytes()?;
            let mut text = || r.bytes().map(|b| String::from_utf8_lossy(&b).into_owned());
            let (policy, action, change) = (text()?, text()?, text()?);
            let (model, reason, rejected) = (text()?, text()?, text()?);
            let mut f = || r.u64().map(f64::from_bits);
            let (observed, demand, quantile, core_capacity, split_cost) =
                (f()?, f()?, f()?, f()?, f()?);
            let (split_at, merge_at) = (f()?, f()?);
            let mut opt = || -> Result<Option<f64>, String> {
                let some = r.byte()? != 0;
                let v = f64::from_bits(r.u64()?);
                Ok(some.then_some(v))
            };
            let (forecast_peak, forecast_upper) = (opt()?, opt()?);
            let shards = r.u64()? as usize;
            let wanted = r.u64()? as usize;
            entries.push_back(Explanation {
                at_ms,
                partition,
                policy,
                action,
                change,
                observed,
                demand,
                forecast_peak,
                forecast_upper,
                quantile,
                model,
                core_capacity,
                split_cost,
                shards,
                wanted,
                split_at,
                merge_at,
                reason,
                rejected,
            });
        }
        if !r.b.is_empty() {
            return Err(format!("{} bytes after the last entry", r.b.len()));
        }
        Ok(ExplainLog { entries, recorded })
    }
}

fn truncate(s: &mut String) {
    if s.len() > EXPLAIN_TEXT_MAX {
        let mut end = EXPLAIN_TEXT_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.b.len() < n {
            return Err("the log ends inside an entry".into());
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        if n > EXPLAIN_TEXT_MAX {
            return Err(format!("a field of {n} bytes, more than {EXPLAIN_TEXT_MAX}"));
        }
        Ok(self.take(n)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> Explanation {
        Explanation {
            at_ms: i,
            partition: format!("p{}", i % 3).into_bytes(),
            policy: "predictive".into(),
            action: if i.is_multiple_of(2) { "split".into() } else { "none".into() },
            change: "split of 'p' shard 4 to core 1".into(),
            observed: i as f64,
            demand: 2.0 * i as f64,
            forecast_peak: i.is_multiple_of(2).then_some(1.5),
            forecast_upper: Some(2.5),
            quantile: 0.9,
            model: "spar".into(),
            core_capacity: 3000.0,
            split_cost: 1.24,
            shards: 1,
            wanted: 2,
            split_at: 2250.0,
            merge_at: 1125.0,
            reason: "é".repeat(EXPLAIN_TEXT_MAX),
            rejected: String::new(),
        }
    }

    #[test]
    fn the_log_is_bounded_and_round_trips_and_damage_is_an_error() {
        let mut log = ExplainLog::default();
        for i in 0..(EXPLAIN_LOG_MAX as u64 + 10) {
            log.push(entry(i));
        }
        assert_eq!(log.len(), EXPLAIN_LOG_MAX);
        assert_eq!(log.recorded, EXPLAIN_LOG_MAX as u64 + 10);
        let newest = log.recent(Some(b"p0"), 2);
        assert_eq!(newest.len(), 2);
        assert!(newest[0].at_ms > newest[1].at_ms);
        assert!(newest[0].reason.len() <= EXPLAIN_TEXT_MAX);
        let bytes = log.encode();
        let back = ExplainLog::decode(&bytes).unwrap();
        assert_eq!(back.recent(None, usize::MAX), log.recent(None, usize::MAX));
        assert_eq!(back.recorded, log.recorded);
        for cut in [0, 7, 20, bytes.len() / 2, bytes.len() - 1] {
            assert!(ExplainLog::decode(&bytes[..cut]).is_err());
        }
        let mut flipped = bytes.clone();
        flipped[100] ^= 1;
        assert!(ExplainLog::decode(&flipped).is_err());
    }
}
