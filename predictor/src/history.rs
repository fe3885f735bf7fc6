//! The bounded per-partition load history: what the server's control thread records every tick,
//! shows (recent rows), exports (all rows, as a trace) and persists in the data directory.
//!
//! Owns [`LoadHistory`] with its limits, the minute folding, the eviction of idle partitions
//! and the byte encoding ([`LoadHistory::encode`], [`LoadHistory::decode`]). The server does the
//! file I/O; this module only turns a history into bytes and back.
//!
//! Two resolutions per partition, both rings (the oldest row is dropped first):
//!
//! - **ticks**: every recorded row as it came, at most `tick_rows_max` (default
//!   `TICK_ROWS_MAX` = 600).
//! - **minutes**: every recorded row is also folded into the row of its minute
//!   (`ts_ms - ts_ms % 60_000`): reads, writes, deletes, other, bytes_in, bytes_out and the
//!   app counts are summed (saturating); `keys` is the minute's last value; `distinct_keys` is
//!   the largest of the minute's ticks, a lower bound of the minute's distinct keys (keys
//!   touched in different ticks are not known to differ); `top_key_share` is the mean of the
//!   ticks' shares weighted by their ops (the plain mean if the minute has no ops). Storage is
//!   sparse: a minute without a recorded row has no row. The last minute row is the minute in
//!   progress. At most `minute_rows_max` (default `MINUTE_ROWS_MAX` = 8 days + 1 hour = 11,580).
//!
//! Partitions: at most `partitions_max` (default `HISTORY_PARTITIONS_MAX` = 32). A row of a new
//! partition in a full history evicts the least active partition if that one's activity is
//! below the row's ops, else the row is refused. Activity is ops decayed exponentially with a
//! half-life of `ACTIVITY_HALF_LIFE_MS` (1 hour) of row time: rows' `ts_ms`, never a clock.
//!
//! Applications: rows store app ids into one name table per history of at most
//! `HISTORY_APPS_MAX` (64) names, `(other)` included (always id 0). A name no stored row uses
//! any more frees its slot for the next new name; when every slot is in use, further apps are
//! summed under `(other)` (as is an app name longer than `HISTORY_NAME_BYTES_MAX`, or an app
//! literally named `(other)`).
//!
//! A row counts at most `HISTORY_ROW_APPS_MAX` (8) apps: past that, the smallest are summed
//! under `(other)`, so a row's size is bounded whatever the clients do.
//!
//! Memory (64-bit targets): a stored row costs `HISTORY_ROW_BYTES` = 104 bytes plus
//! `HISTORY_APP_ENTRY_BYTES` = 16 bytes per app it counts (a heap block, only if it counts
//! any); the partition name is stored once per partition, not per row. With the default
//! limits, 32 partitions × (600 + 11,580) rows = 389,760 rows: 40,535,040 bytes (39 MiB)
//! without apps, about 6 MB more per app per row, and 90,424,320 bytes plus small change
//! (86 MiB) in the worst case, every row counting 8 apps ([`HistoryLimits::memory_bytes_max`]).
//! Allocator overhead per app block is not counted. Rows are sparse (an interval without
//! ops has none), so a partition busy one hour a day costs a twenty-fourth of that.
//! [`HistoryStats::memory_bytes`] estimates the current use from the rings' capacities and
//! the counts of app entries.
//!
//! Encoding (all integers little-endian; `name` = u32 length + bytes; `f64` = its IEEE bits
//! as u64):
//!
//! ```text
//! "SCHIST01"                      magic, 8 bytes
//! u32 version = 1
//! u32 app_count, app_count × name  the app name table; entry 0 is "(other)"
//! u32 partition_count, then per partition, names strictly increasing:
//!     name, u64 last_ts_ms, f64 activity (decayed ops as of last_ts_ms),
//!     u32 tick_count, tick_count × row, u32 minute_count, minute_count × row
//! u32 crc32 (crc32fast) of every byte before it
//! row: u64 ts_ms, reads, writes, deletes, other, bytes_in, bytes_out, keys, distinct_keys,
//!      f64 top_key_share, u32 ticks folded, u16 app_count, app_count × (u16 id, u64 ops)
//!      with ids strictly increasing
//! ```
//!
//! A row takes 86 bytes + 10 per app in the file (67 MB for the default limits without apps).
//! Decoding checks the magic, the checksum, then every count and length against the limits
//! and the bytes left before allocating. Decoding with smaller limits than the file's keeps the
//! newest rows and the most active partitions, so lowering a limit never refuses a file.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::mem::size_of;

use crate::trace::TraceRow;

/// Default of [`HistoryLimits::partitions_max`].
pub const HISTORY_PARTITIONS_MAX: usize = 32;
/// Default of [`HistoryLimits::tick_rows_max`]: full-resolution rows kept per partition.
pub const TICK_ROWS_MAX: usize = 600;
/// Default of [`HistoryLimits::minute_rows_max`]: 8 days and 1 hour of minutes.
pub const MINUTE_ROWS_MAX: usize = 8 * 24 * 60 + 60;
/// The most app names a history tracks, `(other)` included.
pub const HISTORY_APPS_MAX: usize = 64;
/// Apps one row counts; more are summed under `(other)`.
pub const HISTORY_ROW_APPS_MAX: usize = 8;
/// The longest partition or app name a history stores, in bytes (the engine's partitions are
/// at most 128). A row of a longer partition is refused; a longer app counts as `(other)`.
pub const HISTORY_NAME_BYTES_MAX: usize = 256;
/// The half-life of a partition's activity, in ms of row time.
pub const ACTIVITY_HALF_LIFE_MS: u64 = 3_600_000;
/// The length of a minute row's interval, in ms.
pub const MINUTE_MS: u64 = 60_000;
/// The app every app past the table's capacity is counted under.
pub const OTHER_APP_NAME: &[u8] = b"(other)";
/// The first bytes of an encoded history.
pub const HISTORY_MAGIC: [u8; 8] = *b"SCHIST01";
/// The encoding's version.
pub const HISTORY_VERSION: u32 = 1;
/// Memory of one stored row, app entries not included, in bytes.
pub const HISTORY_ROW_BYTES: usize = size_of::<Row>();
/// Memory of one app entry of a stored row, in bytes.
pub const HISTORY_APP_ENTRY_BYTES: usize = size_of::<(u16, u64)>();

/// Encoded bytes of a row without apps: 9 u64, the share, the tick count, the app count.
const ROW_ENCODED_BYTES_MIN: usize = 9 * 8 + 8 + 4 + 2;
/// Encoded bytes of one app entry of a row.
const APP_ENCODED_BYTES: usize = 2 + 8;
/// Encoded bytes of a partition without name bytes or rows.
const PARTITION_ENCODED_BYTES_MIN: usize = 4 + 8 + 8 + 4 + 4;
/// Magic, version and crc.
const FRAME_BYTES: usize = 8 + 4 + 4;

const _: () = assert!(HISTORY_APPS_MAX >= 1 && HISTORY_APPS_MAX <= u16::MAX as usize + 1);
const _: () = assert!(OTHER_APP_NAME.len() <= HISTORY_NAME_BYTES_MAX);

/// How much a history keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Partitions tracked; default `HISTORY_PARTITIONS_MAX`.
    pub partitions_max: usize,
    /// Full-resolution rows kept per partition; default `TICK_ROWS_MAX`.
    pub tick_rows_max: usize,
    /// Minute rows kept per partition; default `MINUTE_ROWS_MAX`.
    pub minute_rows_max: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            partitions_max: HISTORY_PARTITIONS_MAX,
            tick_rows_max: TICK_ROWS_MAX,
            minute_rows_max: MINUTE_ROWS_MAX,
        }
    }
}

impl HistoryLimits {
    /// The most memory a history under these limits can take, in bytes (saturating): every
    /// partition full of rows counting every app, names at their longest. Allocator overhead
    /// not included.
    pub fn memory_bytes_max(&self) -> usize {
        let row = HISTORY_ROW_BYTES + HISTORY_ROW_APPS_MAX * HISTORY_APP_ENTRY_BYTES;
        let rows = self.tick_rows_max.saturating_add(self.minute_rows_max);
        let partition = PARTITION_OVERHEAD_BYTES + HISTORY_NAME_BYTES_MAX;
        let per_partition = rows.saturating_mul(row).saturating_add(partition);
        self.partitions_max
            .saturating_mul(per_partition)
            .saturating_add(size_of::<LoadHistory>())
            .saturating_add(HISTORY_APPS_MAX * (HISTORY_NAME_BYTES_MAX + APP_SLOT_BYTES))
    }
}

/// Counts and the memory estimate of a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryStats {
    /// Partitions tracked.
    pub partitions: usize,
    /// Full-resolution rows held, all partitions.
    pub tick_rows: usize,
    /// Minute rows held, all partitions (the minutes in progress included).
    pub minute_rows: usize,
    /// Names in the app table, `(other)` included (some may be unused slots).
    pub app_names: usize,
    /// Rows refused since the history was made or decoded: not newer than their partition's
    /// last row, of a too-long partition name, or of a new partition in a full history that
    /// was not busier than the least active partition.
    pub rows_refused: u64,
    /// Partitions evicted for a busier new partition since the history was made or decoded.
    pub partitions_evicted: u64,
    /// Estimated memory held, in bytes: rows by the rings' capacities × `HISTORY_ROW_BYTES`,
    /// app entries × `HISTORY_APP_ENTRY_BYTES`, names and fixed parts.
    pub memory_bytes: usize,
}

/// Why an encoded history was refused. Offsets are byte offsets in the encoded history.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistoryError {
    /// The bytes do not start with `HISTORY_MAGIC`; `got` is their first (up to 8) bytes.
    BadMagic { got: Vec<u8> },
    /// The bytes end before the history does.
    Truncated { offset: usize },
    /// The trailing crc32 (`expected`) does not match the bytes before it (`got`).
    ChecksumMismatch { expected: u32, got: u32 },
    /// The version is not `HISTORY_VERSION`.
    UnsupportedVersion { got: u32 },
    /// A count or length is over its maximum.
    TooLarge { what: &'static str, len: u64, max: u64 },
    /// A value breaks an invariant of the encoding.
    Corrupt { offset: usize, reason: &'static str },
    /// Bytes are left between the last partition and the crc.
    TrailingBytes { offset: usize },
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::BadMagic { got } => {
                write!(f, "not a load history: starts with {got:02x?}, expected \"SCHIST01\"")
            }
            HistoryError::Truncated { offset } => {
                write!(f, "load history truncated at byte {offset}")
            }
            HistoryError::ChecksumMismatch { expected, got } => write!(
                f,
                "load history checksum mismatch: stored {expected:#010x}, computed {got:#010x}"
            ),
            HistoryError::UnsupportedVersion { got } => write!(
                f,
                "load history version {got} is not supported (expected {HISTORY_VERSION})"
            ),
            HistoryError::TooLarge { what, len, max } => {
                write!(f, "load history: {what} {len} over the maximum of {max}")
            }
            HistoryError::Corrupt { offset, reason } => {
                write!(f, "load history corrupt at byte {offset}: {reason}")
            }
            HistoryError::TrailingBytes { offset } => {
                write!(f, "load history has unexpected bytes from byte {offset} on")
            }
        }
    }
}

impl std::error::Error for HistoryError {}

/// A stored row: the counters of a `TraceRow` without the partition name, apps as ids.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    ts_ms: u64,
    reads: u64,
    writes: u64,
    deletes: u64,
    other: u64,
    bytes_in: u64,
    bytes_out: u64,
    keys: u64,
    distinct_keys: u64,
    top_key_share: f64,
    /// Ticks folded into the row (1 for a tick row).
    ticks: u32,
    /// (app id, ops), ids strictly increasing. Every entry holds a reference in `AppTable`.
    apps: Box<[(u16, u64)]>,
}

impl Row {
    fn ops(&self) -> u64 {
        self.reads
            .saturating_add(self.writes)
            .saturating_add(self.deletes)
            .saturating_add(self.other)
    }
}

/// The app name table: `names[id]`, with the number of stored row entries using each id.
#[derive(Debug, Clone, PartialEq)]
struct AppTable {
    names: Vec<Vec<u8>>,
    refs: Vec<usize>,
}

const APP_SLOT_BYTES: usize = size_of::<Vec<u8>>() + size_of::<usize>();
const PARTITION_OVERHEAD_BYTES: usize =
    size_of::<Partition>() + size_of::<Vec<u8>>() + 2 * size_of::<usize>();

impl AppTable {
    fn new() -> Self {
        AppTable { names: vec![OTHER_APP_NAME.to_vec()], refs: vec![0] }
    }

    /// The id of `name`, taking a reference on it: its own slot, a freed or new one, else
    /// `(other)` (id 0).
    fn intern_retain(&mut self, name: &[u8]) -> u16 {
        let id = if name.len() > HISTORY_NAME_BYTES_MAX {
            0
        } else if let Some(id) = self.names.iter().position(|n| n == name) {
            id
        } else if let Some(id) = (1..self.names.len()).find(|&id| self.refs[id] == 0) {
            self.names[id] = name.to_vec();
            id
        } else if self.names.len() < HISTORY_APPS_MAX {
            self.names.push(name.to_vec());
            self.refs.push(0);
            self.names.len() - 1
        } else {
            0
        };
        self.refs[id] += 1;
        id as u16
    }

    fn retain(&mut self, apps: &[(u16, u64)]) {
        for &(id, _) in apps {
            self.refs[usize::from(id)] += 1;
        }
    }

    fn release(&mut self, apps: &[(u16, u64)]) {
        for &(id, _) in apps {
            self.refs[usize::from(id)] -= 1;
        }
    }

    /// A copy of `row` whose app entries hold their own references.
    fn copy(&mut self, row: &Row) -> Row {
        self.retain(&row.apps);
        row.clone()
    }

    /// `row` stored: apps as ids (retained), share made a valid 0..=1 value.
    fn compact(&mut self, row: &TraceRow) -> Row {
        let mut apps: Vec<(u16, u64)> = Vec::with_capacity(row.apps.len().min(HISTORY_APPS_MAX));
        for (name, ops) in &row.apps {
            if *ops > 0 {
                apps.push((self.intern_retain(name), *ops));
            }
        }
        apps.sort_unstable_by_key(|&(id, _)| id);
        let mut merged: Vec<(u16, u64)> = Vec::with_capacity(apps.len());
        for (id, ops) in apps {
            match merged.last_mut() {
                Some(last) if last.0 == id => {
                    last.1 = last.1.saturating_add(ops);
                    self.refs[usize::from(id)] -= 1;
                }
                _ => merged.push((id, ops)),
            }
        }
        let merged = self.cap(merged);
        let share = row.top_key_share;
        Row {
            ts_ms: row.ts_ms,
            reads: row.reads,
            writes: row.writes,
            deletes: row.deletes,
            other: row.other,
            bytes_in: row.bytes_in,
            bytes_out: row.bytes_out,
            keys: row.keys,
            distinct_keys: row.distinct_keys,
            top_key_share: if share > 0.0 { share.min(1.0) } else { 0.0 },
            ticks: 1,
            apps: merged.into_boxed_slice(),
        }
    }

    /// `row` of `partition` as a `TraceRow`, apps by name.
    fn expand(&self, partition: &[u8], row: &Row) -> TraceRow {
        let mut apps: Vec<(Vec<u8>, u64)> = row
            .apps
            .iter()
            .filter(|&&(_, ops)| ops > 0)
            .map(|&(id, ops)| (self.names[usize::from(id)].clone(), ops))
            .collect();
        apps.sort();
        TraceRow {
            ts_ms: row.ts_ms,
            partition: partition.to_vec(),
            reads: row.reads,
            writes: row.writes,
            deletes: row.deletes,
            other: row.other,
            bytes_in: row.bytes_in,
            bytes_out: row.bytes_out,
            keys: row.keys,
            distinct_keys: row.distinct_keys,
            top_key_share: row.top_key_share,
            apps,
        }
    }

    /// Folds `row` (a tick) into `minute`, retaining the ids `minute` did not count yet.
    fn fold(&mut self, minute: &mut Row, row: &Row) {
        let (minute_ops, row_ops) = (minute.ops() as f64, row.ops() as f64);
        let share = if minute_ops + row_ops > 0.0 {
            (minute.top_key_share * minute_ops + row.top_key_share * row_ops)
                / (minute_ops + row_ops)
        } else {
            let (n, m) = (f64::from(minute.ticks), f64::from(row.ticks));
            (minute.top_key_share * n + row.top_key_share * m) / (n + m)
        };
        minute.top_key_share = share.clamp(0.0, 1.0);
        minute.ticks = minute.ticks.saturating_add(row.ticks);
        minute.reads = minute.reads.saturating_add(row.reads);
        minute.writes = minute.writes.saturating_add(row.writes);
        minute.deletes = minute.deletes.saturating_add(row.deletes);
        minute.other = minute.other.saturating_add(row.other);
        minute.bytes_in = minute.bytes_in.saturating_add(row.bytes_in);
        minute.bytes_out = minute.bytes_out.saturating_add(row.bytes_out);
        minute.keys = row.keys;
        minute.distinct_keys = minute.distinct_keys.max(row.distinct_keys);
        let mut merged: Vec<(u16, u64)> = Vec::with_capacity(minute.apps.len() + row.apps.len());
        let (mut a, mut b) = (minute.apps.iter().peekable(), row.apps.iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x.0 == y.0 => {
                    a.next();
                    b.next();
                    (x.0, x.1.saturating_add(y.1))
                }
                (Some(&&x), Some(&&y)) if x.0 < y.0 => {
                    a.next();
                    x
                }
                (_, Some(&&y)) => {
                    b.next();
                    self.refs[usize::from(y.0)] += 1;
                    y
                }
                (Some(&&x), None) => {
                    a.next();
                    x
                }
                (None, None) => break,
            };
            merged.push(next);
        }
        let merged = self.cap(merged);
        if merged.len() == minute.apps.len() {
            minute.apps.copy_from_slice(&merged);
        } else {
            minute.apps = merged.into_boxed_slice();
        }
    }

    /// `apps` (sorted by id, each holding a reference) cut to `HISTORY_ROW_APPS_MAX`: the
    /// smallest are summed under `(other)` (id 0) and their references released.
    fn cap(&mut self, apps: Vec<(u16, u64)>) -> Vec<(u16, u64)> {
        if apps.len() <= HISTORY_ROW_APPS_MAX {
            return apps;
        }
        let mut other = 0u64;
        let mut named: Vec<(u16, u64)> = Vec::with_capacity(apps.len());
        for (id, ops) in apps {
            if id == 0 {
                other = other.saturating_add(ops);
                self.refs[0] -= 1;
            } else {
                named.push((id, ops));
            }
        }
        // The biggest first (ties: the smaller id), keep room for `(other)`.
        named.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for &(id, ops) in &named[HISTORY_ROW_APPS_MAX - 1..] {
            other = other.saturating_add(ops);
            self.refs[usize::from(id)] -= 1;
        }
        named.truncate(HISTORY_ROW_APPS_MAX - 1);
        self.refs[0] += 1;
        named.push((0, other));
        named.sort_unstable_by_key(|&(id, _)| id);
        named
    }
}

/// One partition's rows.
#[derive(Debug, Clone, PartialEq)]
struct Partition {
    ticks: VecDeque<Row>,
    minutes: VecDeque<Row>,
    /// The `ts_ms` of the last accepted row (0 before the first).
    last_ts_ms: u64,
    /// Ops decayed with `ACTIVITY_HALF_LIFE_MS`, as of `last_ts_ms`.
    activity: f64,
}

impl Partition {
    fn new() -> Self {
        Partition { ticks: VecDeque::new(), minutes: VecDeque::new(), last_ts_ms: 0, activity: 0.0 }
    }

    /// The activity decayed to `ts_ms` (not decayed for an earlier `ts_ms`).
    fn activity_at(&self, ts_ms: u64) -> f64 {
        let elapsed = ts_ms.saturating_sub(self.last_ts_ms) as f64;
        self.activity * (-elapsed / ACTIVITY_HALF_LIFE_MS as f64).exp2()
    }

    fn release_all(&self, table: &mut AppTable) {
        for row in self.ticks.iter().chain(&self.minutes) {
            table.release(&row.apps);
        }
    }
}

/// Appends `row` to a ring of at most `max` rows, dropping (and releasing) the oldest. The
/// ring's capacity is trimmed to `max` the first time it fills, so it never holds more.
fn push_bounded(ring: &mut VecDeque<Row>, row: Row, max: usize, table: &mut AppTable) {
    if max == 0 {
        table.release(&row.apps);
        return;
    }
    if ring.len() == max {
        if let Some(old) = ring.pop_front() {
            table.release(&old.apps);
        }
        ring.push_back(row);
    } else {
        ring.push_back(row);
        if ring.len() == max {
            ring.shrink_to_fit();
        }
    }
}

/// The bounded, persistable per-partition load history (see the module doc).
#[derive(Debug, Clone)]
pub struct LoadHistory {
    limits: HistoryLimits,
    partitions: BTreeMap<Vec<u8>, Partition>,
    apps: AppTable,
    rows_refused: u64,
    partitions_evicted: u64,
}

impl LoadHistory {
    /// An empty history keeping at most `limits`.
    pub fn new(limits: HistoryLimits) -> Self {
        LoadHistory {
            limits,
            partitions: BTreeMap::new(),
            apps: AppTable::new(),
            rows_refused: 0,
            partitions_evicted: 0,
        }
    }

    /// The limits the history keeps to.
    pub fn limits(&self) -> HistoryLimits {
        self.limits
    }

    /// One tick's row of one partition. Rows of one partition must arrive in `ts_ms` order: a
    /// row not newer than the partition's last row is ignored and counted in `rows_refused`,
    /// as is a row whose partition name is longer than `HISTORY_NAME_BYTES_MAX`. A row of a new
    /// partition in a full history evicts the least active partition if its activity is below
    /// the row's ops, else it is refused. A `top_key_share` outside 0..=1 is stored clamped
    /// (NaN as 0).
    pub fn record(&mut self, row: TraceRow) {
        let ops = row.ops();
        let accepted = match self.partitions.get(&row.partition) {
            Some(partition) => row.ts_ms > partition.last_ts_ms,
            None => row.partition.len() <= HISTORY_NAME_BYTES_MAX && self.make_room(row.ts_ms, ops),
        };
        if !accepted {
            self.rows_refused += 1;
            return;
        }
        let stored = self.apps.compact(&row);
        let partition = self.partitions.entry(row.partition).or_insert_with(Partition::new);
        partition.activity = partition.activity_at(stored.ts_ms) + ops as f64;
        partition.last_ts_ms = stored.ts_ms;
        if self.limits.minute_rows_max > 0 {
            let minute_ts_ms = stored.ts_ms - stored.ts_ms % MINUTE_MS;
            match partition.minutes.back_mut() {
                Some(minute) if minute.ts_ms == minute_ts_ms => self.apps.fold(minute, &stored),
                _ => {
                    let mut minute = self.apps.copy(&stored);
                    minute.ts_ms = minute_ts_ms;
                    let max = self.limits.minute_rows_max;
                    push_bounded(&mut partition.minutes, minute, max, &mut self.apps);
                }
            }
        }
        push_bounded(&mut partition.ticks, stored, self.limits.tick_rows_max, &mut self.apps);
    }

    /// Makes room for a new partition whose first row (at `ts_ms`) has `ops`: true if there is
    /// room or the least active partition was evicted for it.
    fn make_room(&mut self, ts_ms: u64, ops: u64) -> bool {
        if self.partitions.len() < self.limits.partitions_max {
            return true;
        }
        let least = self
            .partitions
            .iter()
            .map(|(name, partition)| (name, partition.activity_at(ts_ms)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((name, activity)) = least else { return false };
        if activity >= ops as f64 {
            return false;
        }
        let name = name.clone();
        if let Some(evicted) = self.partitions.remove(&name) {
            evicted.release_all(&mut self.apps);
            self.partitions_evicted += 1;
        }
        self.partitions.len() < self.limits.partitions_max
    }

    /// The newest `count` full-resolution rows of `partition`, oldest first.
    pub fn recent(&self, partition: &[u8], count: usize) -> Vec<TraceRow> {
        let Some(p) = self.partitions.get(partition) else { return Vec::new() };
        let skip = p.ticks.len().saturating_sub(count);
        p.ticks.iter().skip(skip).map(|row| self.apps.expand(partition, row)).collect()
    }

    /// The minute rows of `partition`, or of every partition (grouped by partition in name
    /// order, then by time), the minute in progress as each partition's last row.
    pub fn minutes(&self, partition: Option<&[u8]>) -> Vec<TraceRow> {
        self.rows(partition, |p| &p.minutes)
    }

    /// The full-resolution rows of `partition`, or of every partition (grouped by partition in
    /// name order, then by time).
    pub fn ticks(&self, partition: Option<&[u8]>) -> Vec<TraceRow> {
        self.rows(partition, |p| &p.ticks)
    }

    fn rows(
        &self,
        partition: Option<&[u8]>,
        ring: fn(&Partition) -> &VecDeque<Row>,
    ) -> Vec<TraceRow> {
        let selected: Vec<(&Vec<u8>, &Partition)> = match partition {
            Some(name) => self.partitions.get_key_value(name).into_iter().collect(),
            None => self.partitions.iter().collect(),
        };
        let mut rows = Vec::with_capacity(selected.iter().map(|(_, p)| ring(p).len()).sum());
        for (name, p) in selected {
            rows.extend(ring(p).iter().map(|row| self.apps.expand(name, row)));
        }
        rows
    }

    /// The partitions tracked, sorted.
    pub fn partitions(&self) -> Vec<Vec<u8>> {
        self.partitions.keys().cloned().collect()
    }

    /// Counts and the memory estimate.
    pub fn stats(&self) -> HistoryStats {
        let mut stats = HistoryStats {
            partitions: self.partitions.len(),
            app_names: self.apps.names.len(),
            rows_refused: self.rows_refused,
            partitions_evicted: self.partitions_evicted,
            ..HistoryStats::default()
        };
        let mut row_slots = 0usize;
        let mut bytes = size_of::<LoadHistory>();
        for (name, p) in &self.partitions {
            stats.tick_rows += p.ticks.len();
            stats.minute_rows += p.minutes.len();
            row_slots += p.ticks.capacity() + p.minutes.capacity();
            bytes += PARTITION_OVERHEAD_BYTES + name.capacity();
        }
        let app_entries: usize = self.apps.refs.iter().sum();
        bytes += row_slots * HISTORY_ROW_BYTES + app_entries * HISTORY_APP_ENTRY_BYTES;
        bytes += self.apps.names.iter().map(|n| n.capacity() + APP_SLOT_BYTES).sum::<usize>();
        stats.memory_bytes = bytes;
        stats
    }

    /// The history as bytes (see the module doc for the layout). Counters of refused rows and
    /// evictions are not kept.
    pub fn encode(&self) -> Vec<u8> {
        let rows = self.partitions.values().map(|p| p.ticks.len() + p.minutes.len()).sum::<usize>();
        let mut out = Vec::with_capacity(FRAME_BYTES + rows * ROW_ENCODED_BYTES_MIN);
        out.extend_from_slice(&HISTORY_MAGIC);
        put_u32(&mut out, HISTORY_VERSION);
        put_u32(&mut out, self.apps.names.len() as u32);
        for name in &self.apps.names {
            put_name(&mut out, name);
        }
        put_u32(&mut out, self.partitions.len() as u32);
        for (name, p) in &self.partitions {
            put_name(&mut out, name);
            put_u64(&mut out, p.last_ts_ms);
            put_u64(&mut out, p.activity.to_bits());
            for ring in [&p.ticks, &p.minutes] {
                put_u32(&mut out, ring.len() as u32);
                for row in ring {
                    put_row(&mut out, row);
                }
            }
        }
        let crc = crc32fast::hash(&out);
        put_u32(&mut out, crc);
        out
    }

    /// A history from the bytes [`encode`](Self::encode) made, kept to `limits`: if the bytes
    /// hold more rows or partitions, the newest rows and the most active partitions (activity
    /// decayed to the newest row of the file) are kept. Any damage is an error, never a panic
    /// or an allocation larger than the input calls for.
    pub fn decode(bytes: &[u8], limits: HistoryLimits) -> Result<LoadHistory, HistoryError> {
        let magic_len = bytes.len().min(HISTORY_MAGIC.len());
        if bytes[..magic_len] != HISTORY_MAGIC[..magic_len] {
            return Err(HistoryError::BadMagic { got: bytes[..magic_len].to_vec() });
        }
        if bytes.len() < FRAME_BYTES {
            return Err(HistoryError::Truncated { offset: bytes.len() });
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let expected = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let got = crc32fast::hash(body);
        if expected != got {
            return Err(HistoryError::ChecksumMismatch { expected, got });
        }
        let mut r = Reader { bytes: body, at: HISTORY_MAGIC.len() };
        let version = r.u32()?;
        if version != HISTORY_VERSION {
            return Err(HistoryError::UnsupportedVersion { got: version });
        }

        let app_count = r.u32()? as usize;
        if app_count > HISTORY_APPS_MAX {
            return Err(too_large("app names", app_count, HISTORY_APPS_MAX));
        }
        r.need(app_count, 4)?;
        let mut names: Vec<Vec<u8>> = Vec::with_capacity(app_count);
        for _ in 0..app_count {
            let at = r.at;
            let name = r.name("app name length")?;
            if names.iter().any(|n| n == name) {
                return Err(HistoryError::Corrupt { offset: at, reason: "app name appears twice" });
            }
            names.push(name.to_vec());
        }
        if names.first().map(Vec::as_slice) != Some(OTHER_APP_NAME) {
            return Err(HistoryError::Corrupt {
                offset: HISTORY_MAGIC.len() + 8,
                reason: "the first app name is not (other)",
            });
        }

        let partition_count = r.u32()? as usize;
        r.need(partition_count, PARTITION_ENCODED_BYTES_MIN)?;
        let mut partitions: Vec<(Vec<u8>, Partition)> = Vec::with_capacity(partition_count);
        for _ in 0..partition_count {
            let at = r.at;
            let name = r.name("partition name length")?;
            if partitions.last().is_some_and(|(last, _)| last.as_slice() >= name) {
                return Err(HistoryError::Corrupt {
                    offset: at,
                    reason: "partition names not strictly increasing",
                });
            }
            let name = name.to_vec();
            let last_ts_ms = r.u64()?;
            let at = r.at;
            let activity = f64::from_bits(r.u64()?);
            if !(activity >= 0.0 && activity.is_finite()) {
                return Err(HistoryError::Corrupt {
                    offset: at,
                    reason: "activity not a finite value >= 0",
                });
            }
            let ticks = r.ring(limits.tick_rows_max, last_ts_ms, 1, names.len())?;
            let minutes = r.ring(limits.minute_rows_max, last_ts_ms, MINUTE_MS, names.len())?;
            partitions.push((name, Partition { ticks, minutes, last_ts_ms, activity }));
        }
        if r.at != body.len() {
            return Err(HistoryError::TrailingBytes { offset: r.at });
        }

        if partitions.len() > limits.partitions_max {
            let now_ms = partitions.iter().map(|(_, p)| p.last_ts_ms).max().unwrap_or(0);
            // Most active first; equal activity keeps name order (the sort is stable).
            partitions.sort_by(|a, b| b.1.activity_at(now_ms).total_cmp(&a.1.activity_at(now_ms)));
            partitions.truncate(limits.partitions_max);
        }
        let mut apps = AppTable { refs: vec![0; names.len()], names };
        for (_, p) in &partitions {
            for row in p.ticks.iter().chain(&p.minutes) {
                apps.retain(&row.apps);
            }
        }
        Ok(LoadHistory {
            limits,
            partitions: partitions.into_iter().collect(),
            apps,
            rows_refused: 0,
            partitions_evicted: 0,
        })
    }
}

fn too_large(what: &'static str, len: usize, max: usize) -> HistoryError {
    HistoryError::TooLarge { what, len: len as u64, max: max as u64 }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_name(out: &mut Vec<u8>, name: &[u8]) {
    put_u32(out, name.len() as u32);
    out.extend_from_slice(name);
}

fn put_row(out: &mut Vec<u8>, row: &Row) {
    for v in [
        row.ts_ms,
        row.reads,
        row.writes,
        row.deletes,
        row.other,
        row.bytes_in,
        row.bytes_out,
        row.keys,
        row.distinct_keys,
        row.top_key_share.to_bits(),
    ] {
        put_u64(out, v);
    }
    put_u32(out, row.ticks);
    put_u16(out, row.apps.len() as u16);
    for &(id, ops) in row.apps.iter() {
        put_u16(out, id);
        put_u64(out, ops);
    }
}

/// A cursor over the body of an encoded history (crc excluded).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], HistoryError> {
        if self.bytes.len() - self.at < len {
            return Err(HistoryError::Truncated { offset: self.at });
        }
        let taken = &self.bytes[self.at..self.at + len];
        self.at += len;
        Ok(taken)
    }

    /// Fails unless `count` items of at least `each` bytes can follow.
    fn need(&self, count: usize, each: usize) -> Result<(), HistoryError> {
        if count.saturating_mul(each) > self.bytes.len() - self.at {
            return Err(HistoryError::Truncated { offset: self.at });
        }
        Ok(())
    }

    fn u16(&mut self) -> Result<u16, HistoryError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, HistoryError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, HistoryError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn name(&mut self, what: &'static str) -> Result<&'a [u8], HistoryError> {
        let len = self.u32()? as usize;
        if len > HISTORY_NAME_BYTES_MAX {
            return Err(too_large(what, len, HISTORY_NAME_BYTES_MAX));
        }
        self.take(len)
    }

    /// A ring of rows, keeping the newest `max`. Rows must be strictly increasing in time, not
    /// after `last_ts_ms`, at multiples of `step_ms`, with app ids below `app_count`.
    fn ring(
        &mut self,
        max: usize,
        last_ts_ms: u64,
        step_ms: u64,
        app_count: usize,
    ) -> Result<VecDeque<Row>, HistoryError> {
        let count = self.u32()? as usize;
        self.need(count, ROW_ENCODED_BYTES_MIN)?;
        let mut ring = VecDeque::with_capacity(count.min(max));
        let mut previous_ts_ms: Option<u64> = None;
        for _ in 0..count {
            let at = self.at;
            let row = self.row(app_count)?;
            let corrupt = |reason| Err(HistoryError::Corrupt { offset: at, reason });
            if previous_ts_ms.is_some_and(|previous| row.ts_ms <= previous) {
                return corrupt("rows not strictly increasing in time");
            }
            if row.ts_ms > last_ts_ms {
                return corrupt("row newer than its partition's last row");
            }
            if row.ts_ms % step_ms != 0 {
                return corrupt("minute row not at the start of a minute");
            }
            previous_ts_ms = Some(row.ts_ms);
            if ring.len() == max {
                ring.pop_front();
            }
            if max > 0 {
                ring.push_back(row);
            }
        }
        Ok(ring)
    }

    fn row(&mut self, app_count: usize) -> Result<Row, HistoryError> {
        let start = self.at;
        let mut v = [0u64; 10];
        for slot in &mut v {
            *slot = self.u64()?;
        }
        let top_key_share = f64::from_bits(v[9]);
        if !(0.0..=1.0).contains(&top_key_share) {
            return Err(HistoryError::Corrupt { offset: start + 72, reason: "share not in 0..=1" });
        }
        let ticks_at = self.at;
        let ticks = self.u32()?;
        if ticks == 0 {
            return Err(HistoryError::Corrupt { offset: ticks_at, reason: "row of zero ticks" });
        }
        let len = usize::from(self.u16()?);
        if len > HISTORY_APPS_MAX {
            return Err(too_large("apps of a row", len, HISTORY_APPS_MAX));
        }
        self.need(len, APP_ENCODED_BYTES)?;
        let mut apps = Vec::with_capacity(len);
        for _ in 0..len {
            let at = self.at;
            let id = self.u16()?;
            let ops = self.u64()?;
            if usize::from(id) >= app_count {
                return Err(HistoryError::Corrupt {
                    offset: at,
                    reason: "app id not in the table",
                });
            }
            if apps.last().is_some_and(|&(last, _)| last >= id) {
                return Err(HistoryError::Corrupt { offset: at, reason: "app ids not increasing" });
            }
            apps.push((id, ops));
        }
        Ok(Row {
            ts_ms: v[0],
            reads: v[1],
            writes: v[2],
            deletes: v[3],
            other: v[4],
            bytes_in: v[5],
            bytes_out: v[6],
            keys: v[7],
            distinct_keys: v[8],
            top_key_share,
            ticks,
            apps: apps.into_boxed_slice(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(
        partitions_max: usize,
        tick_rows_max: usize,
        minute_rows_max: usize,
    ) -> HistoryLimits {
        HistoryLimits { partitions_max, tick_rows_max, minute_rows_max }
    }

    fn row(partition: &str, ts_ms: u64, reads: u64) -> TraceRow {
        TraceRow { ts_ms, partition: partition.as_bytes().to_vec(), reads, ..TraceRow::default() }
    }

    fn apps(list: &[(&str, u64)]) -> Vec<(Vec<u8>, u64)> {
        list.iter().map(|&(name, ops)| (name.as_bytes().to_vec(), ops)).collect()
    }

    /// The table's reference counts equal the app entries of the stored rows.
    fn assert_refs_consistent(h: &LoadHistory) {
        let mut refs = vec![0usize; h.apps.names.len()];
        for p in h.partitions.values() {
            for row in p.ticks.iter().chain(&p.minutes) {
                for &(id, _) in row.apps.iter() {
                    refs[usize::from(id)] += 1;
                }
            }
        }
        assert_eq!(refs, h.apps.refs);
    }

    /// A small history with apps, several partitions, odd names and a minute in progress.
    fn sample() -> LoadHistory {
        let mut h = LoadHistory::new(limits(8, 5, 4));
        for tick in 0..12u64 {
            for (i, name) in [&b""[..], b"a,b", b"\xff\x00", b"users"].iter().enumerate() {
                let i = i as u64;
                h.record(TraceRow {
                    ts_ms: 1_700_000_000_000 + tick * 25_000,
                    partition: name.to_vec(),
                    reads: tick + i,
                    writes: 2 * tick,
                    deletes: i,
                    other: 1,
                    bytes_in: 100 * tick,
                    bytes_out: 7,
                    keys: 1000 + tick,
                    distinct_keys: tick % 5,
                    top_key_share: (tick as f64) / 16.0,
                    apps: if tick % 2 == 0 {
                        apps(&[("", 1), ("web", tick + 1)])
                    } else {
                        apps(&[("batch", 3)])
                    },
                });
            }
        }
        h
    }

    #[test]
    fn row_storage_costs_what_the_module_doc_says() {
        assert_eq!(HISTORY_ROW_BYTES, 104);
        assert_eq!(HISTORY_APP_ENTRY_BYTES, 16);
        assert_eq!(MINUTE_ROWS_MAX, 11_580);
        let rows = HISTORY_PARTITIONS_MAX * (TICK_ROWS_MAX + MINUTE_ROWS_MAX);
        assert_eq!(rows, 389_760);
        assert_eq!(rows * HISTORY_ROW_BYTES, 40_535_040);
        assert_eq!(
            rows * (HISTORY_ROW_BYTES + HISTORY_ROW_APPS_MAX * HISTORY_APP_ENTRY_BYTES),
            90_424_320
        );
        let max = HistoryLimits::default().memory_bytes_max();
        assert!((90_424_320..90_424_320 + 100_000).contains(&max), "{max}");
    }

    #[test]
    fn tick_rows_past_the_limit_drop_the_oldest() {
        let mut h = LoadHistory::new(limits(4, 3, 100));
        for ts in 1..=5 {
            h.record(row("p", ts * 1000, ts));
        }
        let ts: Vec<u64> = h.ticks(Some(b"p")).iter().map(|r| r.ts_ms).collect();
        assert_eq!(ts, [3000, 4000, 5000]);
        assert_eq!(h.partitions["p".as_bytes()].ticks.capacity(), 3);
        assert_eq!(h.stats().tick_rows, 3);
    }

    #[test]
    fn minute_rows_past_the_limit_drop_the_oldest() {
        let mut h = LoadHistory::new(limits(4, 3, 2));
        for minute in 0..5 {
            h.record(row("p", minute * MINUTE_MS + 5, 1));
        }
        let ts: Vec<u64> = h.minutes(Some(b"p")).iter().map(|r| r.ts_ms).collect();
        assert_eq!(ts, [3 * MINUTE_MS, 4 * MINUTE_MS]);
    }

    #[test]
    fn recent_returns_the_newest_rows_oldest_first() {
        let mut h = LoadHistory::new(HistoryLimits::default());
        for ts in 1..=10 {
            h.record(row("p", ts, ts));
        }
        let reads: Vec<u64> = h.recent(b"p", 3).iter().map(|r| r.reads).collect();
        assert_eq!(reads, [8, 9, 10]);
        assert_eq!(h.recent(b"p", 100).len(), 10);
        assert!(h.recent(b"q", 3).is_empty());
        assert_eq!(h.recent(b"p", 1)[0], row("p", 10, 10));
    }

    #[test]
    fn a_minute_folds_counters_keys_distinct_keys_and_share() {
        let mut h = LoadHistory::new(HistoryLimits::default());
        let base = 10 * MINUTE_MS;
        let ticks = [
            // ts offset, reads, writes, keys, distinct, share, apps
            (0, 10, 0, 100, 5, 0.5, apps(&[("a", 10)])),
            (20_000, 20, 10, 90, 9, 0.2, apps(&[("b", 25), ("a", 5)])),
            (40_000, 0, 0, 95, 2, 0.9, apps(&[])),
            (59_999, 5, 5, 80, 3, 1.0, apps(&[("c", 10)])),
        ];
        for (offset, reads, writes, keys, distinct_keys, top_key_share, apps) in ticks {
            h.record(TraceRow {
                ts_ms: base + offset,
                partition: b"p".to_vec(),
                reads,
                writes,
                deletes: 1,
                other: 2,
                bytes_in: 1000,
                bytes_out: 3,
                keys,
                distinct_keys,
                top_key_share,
                apps,
            });
        }
        h.record(row("p", base + MINUTE_MS, 7));
        let minutes = h.minutes(Some(b"p"));
        assert_eq!(minutes.len(), 2);
        let m = &minutes[0];
        assert_eq!(m.ts_ms, base);
        assert_eq!((m.reads, m.writes, m.deletes, m.other), (35, 15, 4, 8));
        assert_eq!((m.bytes_in, m.bytes_out), (4000, 12));
        assert_eq!(m.keys, 80, "the last tick's keys");
        assert_eq!(m.distinct_keys, 9, "the largest tick's distinct keys");
        assert_eq!(m.apps, apps(&[("a", 15), ("b", 25), ("c", 10)]));
        // ops 13, 33, 3, 13: (0.5*13 + 0.2*33 + 0.9*3 + 1.0*13) / 62
        let expected = (0.5 * 13.0 + 0.2 * 33.0 + 0.9 * 3.0 + 13.0) / 62.0;
        assert!((m.top_key_share - expected).abs() < 1e-12, "{} {expected}", m.top_key_share);
        assert_eq!(minutes[1], row("p", base + MINUTE_MS, 7));
        assert_refs_consistent(&h);
    }

    #[test]
    fn a_minute_without_ops_takes_the_plain_mean_of_shares() {
        let mut h = LoadHistory::new(HistoryLimits::default());
        for (ts, share) in [(1, 0.2), (2, 0.4), (3, 0.9)] {
            h.record(TraceRow { top_key_share: share, ..row("p", ts, 0) });
        }
        let share = h.minutes(None)[0].top_key_share;
        assert!((share - 0.5).abs() < 1e-12, "{share}");
        // Once ops come, ticks without ops weigh nothing.
        h.record(TraceRow { top_key_share: 0.1, ..row("p", 4, 10) });
        assert!((h.minutes(None)[0].top_key_share - 0.1).abs() < 1e-12);
    }

    #[test]
    fn minutes_are_sparse_and_the_last_is_the_minute_in_progress() {
        let mut h = LoadHistory::new(HistoryLimits::default());
        h.record(row("p", 0, 1));
        h.record(row("p", 5 * MINUTE_MS + 1, 2));
        assert_eq!(
            h.minutes(Some(b"p")).iter().map(|r| r.ts_ms).collect::<Vec<_>>(),
            [0, 5 * MINUTE_MS]
        );
        h.record(row("p", 5 * MINUTE_MS + 2, 3));
        let last = h.minutes(Some(b"p")).pop().unwrap();
        assert_eq!((last.ts_ms, last.reads), (5 * MINUTE_MS, 5));
    }

    #[test]
    fn an_old_or_equal_timestamp_is_refused_and_counted() {
        let mut h = LoadHistory::new(HistoryLimits::default());
        h.record(row("p", 1000, 1));
        h.record(row("p", 1000, 2));
        h.record(row("p", 999, 3));
        h.record(row("q", 5, 1)); // another partition has its own order
        assert_eq!(h.ticks(Some(b"p")).len(), 1);
        assert_eq!(h.minutes(Some(b"p"))[0].reads, 1);
        assert_eq!(h.stats().rows_refused, 2);
        assert_eq!(h.ticks(Some(b"q")).len(), 1);
    }

    #[test]
    fn a_too_long_partition_name_is_refused() {
        let mut h = LoadHistory::new(HistoryLimits::default());
        let name = "x".repeat(HISTORY_NAME_BYTES_MAX + 1);
        h.record(row(&name, 1, 1));
        h.record(row(&name[1..], 1, 1));
        assert_eq!(h.partitions(), vec![name.as_bytes()[1..].to_vec()]);
        assert_eq!(h.stats().rows_refused, 1);
    }

    #[test]
    fn a_full_history_evicts_the_least_active_partition_for_a_busier_one() {
        let mut h = LoadHistory::new(limits(3, 10, 10));
        for ts in 1..=5 {
            h.record(row("busy", ts, 100));
            h.record(row("calm", ts, 10));
            h.record(row("idle", ts, 1));
        }
        h.record(row("new", 6, 6)); // idle's activity is 5: evicted
        assert_eq!(h.partitions(), [b"busy".to_vec(), b"calm".to_vec(), b"new".to_vec()]);
        assert_eq!(h.stats().partitions_evicted, 1);
        h.record(row("newer", 7, 5)); // new's activity (6, barely decayed) is not below 5
        assert_eq!(h.partitions(), [b"busy".to_vec(), b"calm".to_vec(), b"new".to_vec()]);
        assert_eq!(h.stats().rows_refused, 1);
        assert_eq!(h.stats().partitions_evicted, 1);
        h.record(row("zero", 8, 0)); // a row without ops never evicts
        assert_eq!(h.stats().rows_refused, 2);
    }

    #[test]
    fn activity_decays_with_row_time() {
        let mut h = LoadHistory::new(limits(2, 10, 10));
        h.record(row("old", 0, 1000));
        h.record(row("steady", 0, 100));
        // Ten hours later "old" has decayed to 1000 / 1024, below 1 op; "steady" stays busy.
        let later = 10 * ACTIVITY_HALF_LIFE_MS;
        h.record(row("steady", later, 100));
        h.record(row("new", later + 1, 1));
        assert_eq!(h.partitions(), [b"new".to_vec(), b"steady".to_vec()]);
        let activity = h.partitions[b"steady".as_slice()].activity;
        assert!((activity - (100.0 / 1024.0 + 100.0)).abs() < 1e-9, "{activity}");
    }

    #[test]
    fn eviction_releases_the_evicted_partitions_app_names() {
        let mut h = LoadHistory::new(limits(1, 10, 10));
        h.record(TraceRow { apps: apps(&[("gone", 1)]), ..row("a", 1, 1) });
        h.record(TraceRow { apps: apps(&[("kept", 5)]), ..row("b", 2, 5) });
        assert_eq!(h.partitions(), [b"b".to_vec()]);
        assert_refs_consistent(&h);
        // The evicted partition's app freed its slot, which the new app took.
        assert_eq!(h.apps.names, [OTHER_APP_NAME.to_vec(), b"kept".to_vec()]);
    }

    #[test]
    fn apps_past_the_table_limit_are_summed_under_other() {
        let mut h = LoadHistory::new(HistoryLimits::default());
        let names: Vec<String> = (0..HISTORY_APPS_MAX + 2).map(|i| format!("app{i:03}")).collect();
        let mut list: Vec<(Vec<u8>, u64)> =
            names.iter().map(|n| (n.as_bytes().to_vec(), 1)).collect();
        list.push((b"x".repeat(HISTORY_NAME_BYTES_MAX + 1), 10));
        h.record(TraceRow { apps: list, ..row("p", 1, 1) });
        let stored = &h.ticks(None)[0].apps;
        // 63 names get ids, the other 3 apps and the too-long name go under (other); the row
        // keeps 7 of the 63 and sums the other 56 under (other) too.
        assert_eq!(stored.len(), HISTORY_ROW_APPS_MAX);
        let other = stored.iter().find(|(n, _)| n == OTHER_APP_NAME).unwrap();
        assert_eq!(other.1, 3 + 10 + 56);
        assert_eq!(stored.iter().map(|a| a.1).sum::<u64>(), 66 + 10, "no op lost");
        assert_eq!(h.stats().app_names, HISTORY_APPS_MAX);
        assert_refs_consistent(&h);
    }

    /// A minute folding ticks of many apps keeps the busiest 7 and sums the rest.
    #[test]
    fn a_minute_of_many_apps_keeps_the_busiest_and_sums_the_rest() {
        let mut h = LoadHistory::new(HistoryLimits::default());
        for i in 0..20u64 {
            let name = format!("app{i:02}");
            h.record(TraceRow { apps: apps(&[(&name, i + 1)]), ..row("p", 1 + i, i + 1) });
        }
        let minute = &h.minutes(None)[0].apps;
        assert_eq!(minute.len(), HISTORY_ROW_APPS_MAX);
        let kept: Vec<&[u8]> = minute.iter().map(|(n, _)| n.as_slice()).collect();
        assert!(kept.contains(&&b"app19"[..]) && kept.contains(&&b"app13"[..]), "{kept:?}");
        assert!(!kept.contains(&&b"app12"[..]), "{kept:?}");
        assert_eq!(minute.iter().map(|a| a.1).sum::<u64>(), (1..=20).sum::<u64>());
        assert_refs_consistent(&h);
    }

    #[test]
    fn app_names_no_row_uses_any_more_are_reused() {
        let mut h = LoadHistory::new(limits(4, 1, 1));
        for i in 0..200u64 {
            // Each row drops the previous one (rings of 1 row, one row per minute).
            let name = format!("app{i}");
            h.record(TraceRow { apps: apps(&[(&name, 1)]), ..row("p", i * MINUTE_MS, 1) });
            assert_eq!(h.ticks(None)[0].apps, apps(&[(&name, 1)]), "{i}");
            assert_eq!(h.minutes(None)[0].apps, apps(&[(&name, 1)]), "{i}");
        }
        assert!(h.stats().app_names <= 3, "{:?}", h.stats());
        assert_refs_consistent(&h);
    }

    #[test]
    fn selection_of_every_partition_is_grouped_by_partition_then_time() {
        let mut h = LoadHistory::new(HistoryLimits::default());
        for ts in [1, 2] {
            h.record(row("b", ts, 1));
            h.record(row("a", ts, 1));
        }
        let order: Vec<(Vec<u8>, u64)> =
            h.ticks(None).into_iter().map(|r| (r.partition, r.ts_ms)).collect();
        assert_eq!(
            order,
            [(b"a".to_vec(), 1), (b"a".to_vec(), 2), (b"b".to_vec(), 1), (b"b".to_vec(), 2)]
        );
        assert_eq!(h.minutes(None).len(), 2);
        assert_eq!(h.ticks(Some(b"a")).len(), 2);
        assert!(h.ticks(Some(b"c")).is_empty());
        assert_eq!(h.partitions(), [b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn stats_count_rows_and_estimate_memory() {
        let h = sample();
        let stats = h.stats();
        assert_eq!((stats.partitions, stats.tick_rows, stats.minute_rows), (4, 20, 16));
        let app_entries: usize = h.apps.refs.iter().sum();
        assert!(app_entries > 0);
        let floor = 36 * HISTORY_ROW_BYTES + app_entries * HISTORY_APP_ENTRY_BYTES;
        assert!(stats.memory_bytes >= floor && stats.memory_bytes < floor + 4096, "{stats:?}");
        assert!(stats.memory_bytes < HistoryLimits::default().memory_bytes_max());
    }

    #[test]
    fn encode_then_decode_gives_back_the_same_history() {
        let h = sample();
        assert_refs_consistent(&h);
        let bytes = h.encode();
        let d = LoadHistory::decode(&bytes, h.limits()).unwrap();
        assert_eq!(d.partitions, h.partitions);
        assert_eq!(d.apps, h.apps);
        assert_eq!(d.ticks(None), h.ticks(None));
        assert_eq!(d.minutes(None), h.minutes(None));
        assert_eq!(d.encode(), bytes);
        let empty = LoadHistory::new(HistoryLimits::default());
        let d = LoadHistory::decode(&empty.encode(), HistoryLimits::default()).unwrap();
        assert_eq!(d.stats(), empty.stats());
    }

    #[test]
    fn exported_tick_rows_read_back_as_a_trace() {
        let h = sample();
        let rows = h.ticks(None);
        assert_eq!(crate::trace::parse_trace(&crate::trace::write_trace(&rows)), Ok(rows));
    }

    #[test]
    fn every_byte_flip_of_an_encoded_history_is_an_error() {
        let bytes = sample().encode();
        for at in 0..bytes.len() {
            for mask in [0x01, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[at] ^= mask;
                let err = LoadHistory::decode(&bad, HistoryLimits::default()).unwrap_err();
                if at < 8 {
                    assert!(matches!(err, HistoryError::BadMagic { .. }), "{at}: {err}");
                } else {
                    assert!(matches!(err, HistoryError::ChecksumMismatch { .. }), "{at}: {err}");
                }
            }
        }
    }

    #[test]
    fn every_truncation_of_an_encoded_history_is_an_error() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            let err = LoadHistory::decode(&bytes[..len], HistoryLimits::default()).unwrap_err();
            assert!(
                matches!(
                    err,
                    HistoryError::Truncated { .. } | HistoryError::ChecksumMismatch { .. }
                ),
                "{len}: {err}"
            );
        }
        assert!(matches!(
            LoadHistory::decode(b"SCHIST0", HistoryLimits::default()),
            Err(HistoryError::Truncated { offset: 7 })
        ));
        assert!(matches!(
            LoadHistory::decode(b"SCHISTxx", HistoryLimits::default()),
            Err(HistoryError::BadMagic { .. })
        ));
    }

    /// `bytes` with its crc recomputed.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        let body = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn a_damaged_body_with_a_valid_checksum_never_panics() {
        let bytes = sample().encode();
        let small = limits(2, 2, 2);
        let mut refused = 0;
        for at in 8..bytes.len() - 4 {
            for mask in [0x01, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[at] ^= mask;
                let bad = reseal(bad);
                for limits in [HistoryLimits::default(), small] {
                    match LoadHistory::decode(&bad, limits) {
                        Ok(h) => assert_refs_consistent(&h),
                        Err(_) => refused += 1,
                    }
                }
            }
        }
        assert!(refused > 0);
        // Cut anywhere and resealed: still an error or a history, never a panic.
        for len in FRAME_BYTES..bytes.len() {
            let mut cut = bytes[..len - 4].to_vec();
            cut.extend_from_slice(&[0; 4]);
            let _ = LoadHistory::decode(&reseal(cut), HistoryLimits::default());
        }
    }

    #[test]
    fn a_huge_count_with_a_valid_checksum_is_refused_before_allocating() {
        let h = sample();
        let bytes = h.encode();
        // The app table count sits right after magic and version.
        let mut bad = bytes.clone();
        bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            LoadHistory::decode(&reseal(bad), HistoryLimits::default()),
            Err(HistoryError::TooLarge { what: "app names", len, max })
                if len == u64::from(u32::MAX) && max == HISTORY_APPS_MAX as u64
        ));
        // The partition count follows the app table.
        let table_len: usize = h.apps.names.iter().map(|n| 4 + n.len()).sum();
        let at = 16 + table_len;
        let mut bad = bytes.clone();
        bad[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            LoadHistory::decode(&reseal(bad), HistoryLimits::default()),
            Err(HistoryError::Truncated { offset }) if offset == at + 4
        ));
        // The first partition's name length.
        let mut bad = bytes.clone();
        bad[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            LoadHistory::decode(&reseal(bad), HistoryLimits::default()),
            Err(HistoryError::TooLarge { what: "partition name length", .. })
        ));
        // The first partition's tick count (its name is empty).
        let ticks_at = at + 4 + 4 + 8 + 8;
        let mut bad = bytes;
        bad[ticks_at..ticks_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            LoadHistory::decode(&reseal(bad), HistoryLimits::default()),
            Err(HistoryError::Truncated { offset }) if offset == ticks_at + 4
        ));
    }

    #[test]
    fn an_unknown_version_or_trailing_bytes_are_refused() {
        let bytes = sample().encode();
        let mut bad = bytes.clone();
        bad[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(
            LoadHistory::decode(&reseal(bad), HistoryLimits::default()),
            Err(HistoryError::UnsupportedVersion { got: 2 })
        ));
        let mut longer = bytes[..bytes.len() - 4].to_vec();
        longer.extend_from_slice(&[0, 0, 0, 0, 0]);
        assert!(matches!(
            LoadHistory::decode(&reseal(longer), HistoryLimits::default()),
            Err(HistoryError::TrailingBytes { offset }) if offset == bytes.len() - 4
        ));
    }

    #[test]
    fn decoding_with_smaller_limits_keeps_the_newest_rows_and_most_active_partitions() {
        let mut h = LoadHistory::new(HistoryLimits::default());
        for ts in 1..=10u64 {
            h.record(TraceRow { apps: apps(&[("old", 1)]), ..row("quiet", ts * MINUTE_MS, 1) });
            h.record(row("busy", ts * MINUTE_MS, 1000));
            h.record(row("middle", ts * MINUTE_MS, 100));
        }
        let bytes = h.encode();
        let d = LoadHistory::decode(&bytes, limits(2, 3, 4)).unwrap();
        assert_eq!(d.partitions(), [b"busy".to_vec(), b"middle".to_vec()]);
        let ticks: Vec<u64> = d.ticks(Some(b"busy")).iter().map(|r| r.ts_ms / MINUTE_MS).collect();
        assert_eq!(ticks, [8, 9, 10]);
        let minutes: Vec<u64> =
            d.minutes(Some(b"busy")).iter().map(|r| r.ts_ms / MINUTE_MS).collect();
        assert_eq!(minutes, [7, 8, 9, 10]);
        assert_eq!(d.ticks(Some(b"busy")), h.ticks(Some(b"busy"))[7..]);
        assert_refs_consistent(&d);
        // The dropped partition's app name is a free slot now.
        let old = d.apps.names.iter().position(|n| n == b"old").unwrap();
        assert_eq!(d.apps.refs[old], 0);
        let none = LoadHistory::decode(&bytes, limits(0, 0, 0)).unwrap();
        assert_eq!(none.stats().partitions, 0);
        // Recording goes on after a decode.
        let mut d = d;
        d.record(row("busy", 11 * MINUTE_MS, 1));
        d.record(row("busy", 10 * MINUTE_MS, 1));
        assert_eq!(d.recent(b"busy", 1)[0].ts_ms, 11 * MINUTE_MS);
        assert_eq!(d.stats().rows_refused, 1);
    }
}
