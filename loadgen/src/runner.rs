//! The load: worker threads, each driving its share of the connections with mio, and the
//! coordinating thread that merges interval statistics, tracks shards and writes outputs.
//!
//! Open loop: each (worker, application) pair follows a schedule of intended start times
//! (wrk2's model). A request is sent when it is due and a connection of its application has
//! room in its pipeline; its latency is measured from its *intended* start, so time spent
//! waiting behind a stalled server counts (coordinated omission corrected). The latency from
//! the actual send is kept too, as `service` latency.
//! Closed loop: every connection keeps `pipeline` requests in flight.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::client::{self, Retry, Unreachable};
use crate::dist::{KeySampler, ValueSize};
use crate::output::Outputs;
use crate::profile::{RateProfile, Schedule};
use crate::resp::{self, Reply};
use crate::rng::Rng;
use crate::stats::{self, Aggregator, OpStats, WorkerInterval};
use crate::verify::{Floor, ReadResult, VerifyCounts, VerifyTable, WriteOutcome};
use crate::workload::{Op, Workload, MULTI_KEYS_MAX, OP_COUNT};

/// The deepest pipeline per connection.
pub const PIPELINE_MAX: u32 = 10_000;
/// The most connections in one run.
pub const CONNECTIONS_MAX: u32 = 10_000;
/// The most worker threads.
pub const THREADS_MAX: u32 = 256;
/// Read buffer of a connection at start; it grows (to `REPLY_BYTES_MAX`) for large replies.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;
/// The largest single reply accepted.
pub const REPLY_BYTES_MAX: usize = 256 * 1024 * 1024;
/// mio events handled per poll.
pub const EVENTS_MAX: usize = 1024;
/// Distinct error messages kept (each with its count).
pub const ERROR_MESSAGES_MAX: usize = 16;
/// Backoff between reconnections of a lost connection.
const RECONNECT_BACKOFF_MIN_MS: u64 = 100;
const RECONNECT_BACKOFF_MAX_MS: u64 = 2_000;
/// The `op` of the GET half of a read-modify-write (not counted as an op of its own).
const RMW_READ: u8 = 255;
/// The in-flight marker of a transaction's replies before EXEC's (MULTI's OK, each QUEUED):
/// counted only if one is an error, under `multi`.
const MULTI_PART: u8 = 254;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopMode {
    /// Open loop if the workload (or `--rate`) gives a rate, else closed.
    Auto,
    Open,
    Closed,
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub host: String,
    pub port: u16,
    pub workload: Workload,
    /// Overrides the workload's duration.
    pub duration: Option<Duration>,
    /// Total target rate: scales every application's profile so their nominal rates sum to it.
    pub rate: Option<f64>,
    pub connections: u32,
    pub pipeline: u32,
    pub threads: u32,
    pub mode: LoopMode,
    pub seed: u64,
    pub verify: bool,
    pub verify_keys: u64,
    /// Overrides the workload's time compression.
    pub time_compression: Option<f64>,
    pub out_dir: Option<PathBuf>,
    pub interval: Duration,
    /// Print a progress line to stderr each interval.
    pub progress: bool,
    pub password: Option<String>,
    pub retry: Retry,
    /// After the duration, how long to wait for replies still in flight.
    pub drain_timeout: Duration,
    /// Poll SHARDCAST SHARDS each interval (skipped automatically on other servers).
    pub track_shards: bool,
    /// Before the run, SET every key of every application's keyspace once (YCSB's load
    /// phase), so reads find values. Not measured.
    pub preload: bool,
    /// Write what was sent, per partition and interval, in the trace format to this file.
    pub trace_out: Option<PathBuf>,
}

impl RunConfig {
    pub fn new(host: &str, port: u16, workload: Workload) -> RunConfig {
        RunConfig {
            host: host.to_string(),
            port,
            workload,
            duration: None,
            rate: None,
            connections: 50,
            pipeline: 1,
            threads: 1,
            mode: LoopMode::Auto,
            seed: 1,
            verify: false,
            verify_keys: crate::verify::VERIFY_KEYS_DEFAULT,
            time_compression: None,
            out_dir: None,
            interval: Duration::from_secs(1),
            progress: false,
            password: None,
            retry: Retry {
                attempts: 5,
                backoff_initial: Duration::from_millis(100),
                backoff_max: Duration::from_secs(2),
            },
            drain_timeout: Duration::from_secs(5),
            track_shards: true,
            trace_out: None,
            preload: false,
        }
    }
}

#[derive(Debug)]
pub enum RunError {
    /// A flag or combination of flags that cannot work.
    Config {
        field: String,
        message: String,
    },
    Unreachable(Unreachable),
    /// A worker lost every way to continue, or an output could not be written.
    Failed(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config { field, message } => write!(f, "{field}: {message}"),
            RunError::Unreachable(u) => write!(f, "{u}"),
            RunError::Failed(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for RunError {}

fn config_err<T>(field: &str, message: impl Into<String>) -> Result<T, RunError> {
    Err(RunError::Config { field: field.into(), message: message.into() })
}

/// One application as planned for this run.
pub(crate) struct AppPlan {
    pub name: String,
    pub client_name: String,
    pub prefix: Vec<u8>,
    pub sampler: KeySampler,
    pub value: ValueSize,
    pub op_cdf: [f64; OP_COUNT],
    pub ops_used: [bool; OP_COUNT],
    pub multi: (u64, u64),
    pub scan: bool,
    pub profile: Option<RateProfile>,
    pub connections: u32,
    pub inserted: Arc<AtomicU64>,
    pub verify: Option<Arc<VerifyTable>>,
}

/// What the coordinator knows of the plan.
pub(crate) struct Plan {
    pub apps: Vec<AppPlan>,
    pub open: bool,
    pub duration: Duration,
    pub time_compression: f64,
    pub value_bytes_max: usize,
    /// After the duration, how long to wait for replies in flight.
    pub drain: Duration,
}

fn plan(cfg: &RunConfig) -> Result<Plan, RunError> {
    let w = &cfg.workload;
    if !(1..=PIPELINE_MAX).contains(&cfg.pipeline) {
        return config_err(
            "--pipeline",
            format!("must be between 1 and {PIPELINE_MAX}, got {}", cfg.pipeline),
        );
    }
    if !(1..=THREADS_MAX).contains(&cfg.threads) {
        return config_err(
            "--threads",
            format!("must be between 1 and {THREADS_MAX}, got {}", cfg.threads),
        );
    }
    if !(1..=CONNECTIONS_MAX).contains(&cfg.connections) {
        return config_err(
            "--connections",
            format!("must be between 1 and {CONNECTIONS_MAX}, got {}", cfg.connections),
        );
    }
    if cfg.interval < Duration::from_millis(10) {
        return config_err("--interval", "must be at least 10 ms");
    }
    let duration = cfg.duration.unwrap_or(Duration::from_secs_f64(w.duration_s.unwrap_or(10.0)));
    if duration.is_zero() {
        return config_err("--duration", "must be positive");
    }
    let time_compression = cfg.time_compression.unwrap_or(w.time_compression);
    if !(time_compression > 0.0 && time_compression.is_finite()) {
        return config_err("--time-compression", "must be a positive number");
    }
    let open = match cfg.mode {
        LoopMode::Closed => false,
        LoopMode::Open => true,
        LoopMode::Auto => !w.is_closed() || cfg.rate.is_some(),
    };
    if let Some(r) = cfg.rate {
        if !(r > 0.0 && r <= crate::workload::RATE_OPS_MAX) {
            return config_err("--rate", format!("must be a positive rate of ops/s, got {r}"));
        }
    }
    // Profiles: an application without one gets a constant share of --rate.
    let mut profiles: Vec<Option<RateProfile>> = Vec::new();
    if open {
        for a in &w.applications {
            match (&a.rate, cfg.rate) {
                (Some(p), _) => profiles.push(Some(p.clone())),
                (None, Some(_)) => profiles.push(Some(RateProfile::Constant { ops: 1.0 })),
                (None, None) => {
                    return config_err(
                        "--rate",
                        format!(
                        "open loop needs a rate: give --rate OPS, or `rate` to application {:?}",
                        a.name
                    ),
                    )
                }
            }
        }
        if let Some(total) = cfg.rate {
            let nominal: f64 = profiles.iter().flatten().map(|p| p.nominal()).sum();
            if nominal <= 0.0 {
                return config_err(
                    "--rate",
                    "the workload's nominal rates sum to 0; nothing to scale",
                );
            }
            let f = total / nominal;
            for p in profiles.iter_mut().flatten() {
                *p = p.scaled(f);
            }
        }
    } else {
        profiles = vec![None; w.applications.len()];
    }
    // Connections: explicit ones first, the rest of --connections split evenly.
    let n_apps = w.applications.len() as u32;
    let explicit: u64 = w.applications.iter().filter_map(|a| a.connections).sum();
    let implicit_apps = w.applications.iter().filter(|a| a.connections.is_none()).count() as u32;
    let rest = (cfg.connections as u64).saturating_sub(explicit) as u32;
    if implicit_apps > 0 && rest < implicit_apps {
        return config_err(
            "--connections",
            format!(
                "{} connections cannot cover {n_apps} applications (at least one each)",
                cfg.connections
            ),
        );
    }
    let mut implicit_i = 0u32;
    // Tags this run's verified values (distinct from any earlier run's).
    let run_tag = crate::rng::mix64(
        cfg.seed
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
    ) >> 1;
    let mut apps = Vec::new();
    let mut value_bytes_max = 64usize;
    for (i, (a, profile)) in w.applications.iter().zip(profiles).enumerate() {
        let connections = match a.connections {
            Some(c) => c as u32,
            None => {
                let c = rest / implicit_apps + u32::from(implicit_i < rest % implicit_apps);
                implicit_i += 1;
                c
            }
        };
        let cdf = op_cdf(&a.ops);
        let verify = cfg
            .verify
            .then(|| Arc::new(VerifyTable::new(a.keyspace, a.keyspace, cfg.verify_keys, run_tag)));
        value_bytes_max = value_bytes_max
            .max(a.value_size.max_bytes() as usize + crate::verify::HEADER_BYTES_MAX);
        apps.push(AppPlan {
            name: a.name.clone(),
            client_name: a.client_name.clone(),
            prefix: a.key_prefix.as_bytes().to_vec(),
            sampler: KeySampler::new(&a.key_distribution, a.keyspace, cfg.seed ^ i as u64),
            value: a.value_size.clone(),
            op_cdf: cdf,
            ops_used: a.ops.map(|w| w > 0.0),
            multi: a.multi_keys,
            scan: a.scan,
            profile,
            connections,
            inserted: Arc::new(AtomicU64::new(a.keyspace)),
            verify,
        });
    }
    Ok(Plan { apps, open, duration, time_compression, value_bytes_max, drain: cfg.drain_timeout })
}

/// Cumulative op weights for picking an op with one uniform draw in [0, 1). The last op in
/// the mix takes whatever rounding leaves above the sum, so no draw lands outside the mix.
fn op_cdf(ops: &[f64; OP_COUNT]) -> [f64; OP_COUNT] {
    let mut cdf = [0.0; OP_COUNT];
    let mut acc = 0.0;
    for (j, w) in ops.iter().enumerate() {
        acc += w;
        cdf[j] = acc;
    }
    let last = ops.iter().rposition(|&w| w > 0.0).expect("validated: some op weighs");
    cdf[last] = f64::INFINITY;
    cdf
}

#[inline]
fn pick_op(cdf: &[f64; OP_COUNT], u: f64) -> usize {
    cdf.iter().position(|&x| u < x).unwrap_or(OP_COUNT - 1)
}

/// Messages from workers to the coordinator.
pub(crate) enum Msg {
    Ready(usize, Result<(), String>),
    Interval(Box<WorkerInterval>),
    Done(usize, u64),
    Fatal(usize, String),
}

#[derive(Clone, Copy)]
struct InFlight {
    intended_ns: u64,
    sent_ns: u64,
    op: u8,
    /// Verification entries of this request (at the front of the connection's queue).
    nv: u16,
}

#[derive(Clone, Copy)]
enum VEntry {
    Read { slot: u32, id: u64, floor: Floor, pos: u16 },
    Write { slot: u32, version: u64, delete: bool },
}

struct Conn {
    stream: Option<TcpStream>,
    app: usize,
    out: Vec<u8>,
    out_pos: usize,
    inbuf: Vec<u8>,
    in_len: usize,
    inflight: VecDeque<InFlight>,
    vq: VecDeque<VEntry>,
    dirty: bool,
    want_write: bool,
    retry_at_ns: u64,
    backoff_ms: u64,
}

struct AppGen {
    rng: Rng,
    /// The open-loop schedule of this worker's share (None: closed loop or no connection).
    schedule: Option<Schedule>,
    conns: Vec<usize>,
    rr: usize,
}

/// Per-worker statistics since the last interval.
pub(crate) struct WorkerStats {
    pub ops: Vec<Option<OpStats>>,
    /// Keys sent per application (with `--trace-out` only).
    pub sent: Vec<crate::sent::Sent>,
    pub verify: Vec<VerifyCounts>,
    pub errors: Vec<(String, u64)>,
    pub connections_lost: u64,
}

impl WorkerStats {
    fn new(apps: &[AppPlan]) -> WorkerStats {
        let mut ops = Vec::with_capacity(apps.len() * OP_COUNT);
        for a in apps {
            for used in a.ops_used {
                ops.push(used.then(OpStats::new));
            }
        }
        WorkerStats {
            ops,
            sent: apps.iter().map(|_| Default::default()).collect(),
            verify: vec![VerifyCounts::default(); apps.len()],
            errors: Vec::new(),
            connections_lost: 0,
        }
    }

    fn take(&mut self) -> WorkerStats {
        // `take` leaves each application's counts empty and returns the interval's.
        let sent: Vec<crate::sent::Sent> = self.sent.iter_mut().map(|s| s.take()).collect();
        let emptied = std::mem::replace(&mut self.sent, sent);
        let fresh = WorkerStats {
            ops: self.ops.iter().map(|o| o.as_ref().map(|_| OpStats::new())).collect(),
            sent: emptied,
            verify: vec![VerifyCounts::default(); self.verify.len()],
            errors: Vec::new(),
            connections_lost: 0,
        };
        std::mem::replace(self, fresh)
    }

    fn error(&mut self, msg: &[u8]) {
        if let Some(e) = self.errors.iter_mut().find(|e| e.0.as_bytes() == msg) {
            e.1 += 1;
        } else if self.errors.len() < ERROR_MESSAGES_MAX {
            self.errors.push((String::from_utf8_lossy(msg).into_owned(), 1));
        }
    }
}

struct Worker {
    id: usize,
    poll: Poll,
    conns: Vec<Conn>,
    apps: Arc<Plan>,
    gens: Vec<AppGen>,
    stats: WorkerStats,
    filler: Vec<u8>,
    scratch: Vec<(u64, Option<(u32, u64)>)>,
    start: Instant,
    open: bool,
    pipeline: usize,
    duration_ns: u64,
    interval_ns: u64,
    interval_idx: u64,
    inflight_total: usize,
    dirty: Vec<usize>,
    tx: Sender<Msg>,
    addr: SocketAddr,
    password: Option<String>,
    /// Count the keys sent (`--trace-out`), noted per op in `notes` (reused).
    trace: bool,
    notes: Vec<KeyNote>,
}

/// A key an op sent: its kind, id, whether it is a counter key (`c` infix) and value length.
type KeyNote = (crate::sent::Kind, u64, bool, usize);

impl Worker {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn register(&mut self, ci: usize, stream: std::net::TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(None)?;
        stream.set_nonblocking(true)?;
        let mut s = TcpStream::from_std(stream);
        self.poll.registry().register(&mut s, Token(ci), Interest::READABLE)?;
        self.conns[ci].stream = Some(s);
        self.conns[ci].want_write = false;
        Ok(())
    }

    /// Drops a broken connection: its requests in flight fail, and it is retried later.
    fn lose(&mut self, ci: usize, why: &str, now: u64) {
        let c = &mut self.conns[ci];
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        let app = c.app;
        for f in c.inflight.drain(..) {
            let op = match f.op {
                RMW_READ => Op::Rmw as usize,
                MULTI_PART => Op::Multi as usize,
                op => op as usize,
            };
            if let Some(s) = self.stats.ops[app * OP_COUNT + op].as_mut() {
                s.errors += 1;
            }
        }
        for e in c.vq.drain(..) {
            if let VEntry::Write { slot, version, delete } = e {
                if let Some(v) = &self.apps.apps[app].verify {
                    v.end_write(slot, version, delete, WriteOutcome::Lost);
                }
            }
        }
        self.inflight_total = self.conns.iter().map(|c| c.inflight.len()).sum();
        let c = &mut self.conns[ci];
        c.out.clear();
        c.out_pos = 0;
        c.in_len = 0;
        c.backoff_ms = (c.backoff_ms * 2).clamp(RECONNECT_BACKOFF_MIN_MS, RECONNECT_BACKOFF_MAX_MS);
        c.retry_at_ns = now + c.backoff_ms * 1_000_000;
        self.stats.connections_lost += 1;
        self.stats.error(format!("connection lost: {why}").as_bytes());
    }

    fn reconnect_due(&mut self, now: u64) {
        for ci in 0..self.conns.len() {
            if self.conns[ci].stream.is_some() || self.conns[ci].retry_at_ns > now {
                continue;
            }
            let name = self.apps.apps[self.conns[ci].app].client_name.clone();
            match client::connect_once(&self.addr, Some(&name), self.password.as_deref()) {
                Ok(s) => {
                    if self.register(ci, s).is_ok() {
                        self.conns[ci].backoff_ms = 0;
                    }
                }
                Err(_) => {
                    let c = &mut self.conns[ci];
                    c.backoff_ms = (c.backoff_ms * 2)
                        .clamp(RECONNECT_BACKOFF_MIN_MS, RECONNECT_BACKOFF_MAX_MS);
                    c.retry_at_ns = now + c.backoff_ms * 1_000_000;
                }
            }
        }
    }

    fn mark_dirty(&mut self, ci: usize) {
        if !self.conns[ci].dirty {
            self.conns[ci].dirty = true;
            self.dirty.push(ci);
        }
    }

    /// Writes what the connection has buffered; on a full socket, waits for writability.
    fn flush(&mut self, ci: usize, now: u64) {
        let c = &mut self.conns[ci];
        c.dirty = false;
        let Some(s) = c.stream.as_mut() else { return };
        while c.out_pos < c.out.len() {
            match s.write(&c.out[c.out_pos..]) {
                Ok(0) => return self.lose(ci, "write returned 0", now),
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !c.want_write {
                        c.want_write = true;
                        let _ = self.poll.registry().reregister(
                            s,
                            Token(ci),
                            Interest::READABLE | Interest::WRITABLE,
                        );
                    }
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return self.lose(ci, &e.to_string(), now),
            }
        }
        c.out.clear();
        c.out_pos = 0;
        if c.want_write {
            c.want_write = false;
            let _ = self.poll.registry().reregister(s, Token(ci), Interest::READABLE);
        }
    }

    /// Encodes one request of the connection's application.
    fn issue(&mut self, ci: usize, intended_ns: u64, now: u64) {
        use crate::sent::Kind;
        let mut notes = std::mem::take(&mut self.notes);
        notes.clear();
        let app_i = self.conns[ci].app;
        let plan = &self.apps.apps[app_i];
        let g = &mut self.gens[app_i];
        let c = &mut self.conns[ci];
        let u = g.rng.f64();
        let op_i = pick_op(&plan.op_cdf, u);
        let op = Op::from_index(op_i);
        let latest = plan.inserted.load(Ordering::Relaxed);
        let verify = plan.verify.as_deref();
        let run_tag = verify.map(|v| v.run_tag()).unwrap_or(0);
        let counts = &mut self.stats.verify[app_i];
        let mut nv: u16 = 0;
        let key = |rng: &mut Rng| plan.sampler.sample(rng, latest);
        // A sampled key's write, or None: then the op is sent as a GET (see verify.rs).
        let claim =
            |id: u64, delete: bool, counts: &mut VerifyCounts| -> Result<Option<(u32, u64)>, ()> {
                let Some(v) = verify else { return Ok(None) };
                let Some(slot) = v.slot(id) else { return Ok(None) };
                match v.begin_write(slot, delete) {
                    Some(version) => Ok(Some((slot, version))),
                    None => {
                        counts.converted_writes += 1;
                        Err(())
                    }
                }
            };
        let push_read = |c: &mut Conn, id: u64, pos: u16, nv: &mut u16| {
            if let Some(v) = verify {
                if let Some(slot) = v.slot(id) {
                    c.vq.push_back(VEntry::Read { slot, id, floor: v.floor(slot), pos });
                    *nv += 1;
                }
            }
        };
        let value_len = |rng: &mut Rng| plan.value.sample(rng) as usize;
        let put_get = |c: &mut Conn, id: u64, notes: &mut Vec<KeyNote>| {
            resp::put_array(&mut c.out, 2);
            resp::put_bulk(&mut c.out, b"GET");
            resp::put_key(&mut c.out, &plan.prefix, b"", id);
            notes.push((Kind::Read, id, false, 0));
        };
        // A SET's key and value (or an MSET pair), and the verification entry of its write.
        let filler = &self.filler;
        let put_pair = |c: &mut Conn,
                        rng: &mut Rng,
                        id: u64,
                        w: Option<(u32, u64)>,
                        nv: &mut u16,
                        notes: &mut Vec<KeyNote>| {
            resp::put_key(&mut c.out, &plan.prefix, b"", id);
            let len = value_len(rng);
            put_value(&mut c.out, len, id, w.map(|x| (x.1, run_tag)), filler);
            notes.push((Kind::Write, id, false, len));
            if let Some((slot, version)) = w {
                c.vq.push_back(VEntry::Write { slot, version, delete: false });
                *nv += 1;
            }
        };
        match op {
            Op::Get | Op::Set | Op::Del | Op::Insert | Op::Rmw => {
                let id = if op == Op::Insert {
                    plan.inserted.fetch_add(1, Ordering::Relaxed)
                } else {
                    key(&mut g.rng)
                };
                if op == Op::Rmw {
                    put_get(c, id, &mut notes);
                    let mut rnv = 0;
                    push_read(c, id, 0, &mut rnv);
                    c.inflight.push_back(InFlight {
                        intended_ns,
                        sent_ns: now,
                        op: RMW_READ,
                        nv: rnv,
                    });
                }
                let write = match op {
                    Op::Get => Err(()),
                    _ => claim(id, op == Op::Del, counts),
                };
                match (op, write) {
                    // A write converted to a GET stays counted under its op.
                    (Op::Get, _) | (_, Err(())) => {
                        put_get(c, id, &mut notes);
                        push_read(c, id, 0, &mut nv);
                    }
                    (Op::Del, Ok(w)) => {
                        resp::put_array(&mut c.out, 2);
                        resp::put_bulk(&mut c.out, b"DEL");
                        resp::put_key(&mut c.out, &plan.prefix, b"", id);
                        notes.push((Kind::Delete, id, false, 0));
                        if let Some((slot, version)) = w {
                            c.vq.push_back(VEntry::Write { slot, version, delete: true });
                            nv += 1;
                        }
                    }
                    (_, Ok(w)) => {
                        resp::put_array(&mut c.out, 3);
                        resp::put_bulk(&mut c.out, b"SET");
                        put_pair(c, &mut g.rng, id, w, &mut nv, &mut notes);
                    }
                }
            }
            Op::Incr => {
                let id = key(&mut g.rng);
                resp::put_array(&mut c.out, 2);
                resp::put_bulk(&mut c.out, b"INCR");
                resp::put_key(&mut c.out, &plan.prefix, b"c", id);
                notes.push((Kind::Write, id, true, 0));
            }
            Op::Mget => {
                let n =
                    g.rng.range_inclusive(plan.multi.0, plan.multi.1).min(MULTI_KEYS_MAX) as usize;
                resp::put_array(&mut c.out, n + 1);
                resp::put_bulk(&mut c.out, b"MGET");
                let start = key(&mut g.rng);
                for pos in 0..n {
                    let id = if plan.scan {
                        (start + pos as u64) % latest.max(1)
                    } else if pos == 0 {
                        start
                    } else {
                        key(&mut g.rng)
                    };
                    resp::put_key(&mut c.out, &plan.prefix, b"", id);
                    notes.push((Kind::Read, id, false, 0));
                    push_read(c, id, pos as u16, &mut nv);
                }
            }
            Op::Multi => {
                let n =
                    g.rng.range_inclusive(plan.multi.0, plan.multi.1).min(MULTI_KEYS_MAX) as usize;
                let part = InFlight { intended_ns, sent_ns: now, op: MULTI_PART, nv: 0 };
                resp::put_array(&mut c.out, 1);
                resp::put_bulk(&mut c.out, b"MULTI");
                c.inflight.push_back(part);
                for _ in 0..n {
                    let id = key(&mut g.rng);
                    resp::put_array(&mut c.out, 2);
                    resp::put_bulk(&mut c.out, b"INCR");
                    resp::put_key(&mut c.out, &plan.prefix, b"c", id);
                    notes.push((Kind::Write, id, true, 0));
                    c.inflight.push_back(part);
                }
                resp::put_array(&mut c.out, 1);
                resp::put_bulk(&mut c.out, b"EXEC");
                self.inflight_total += n + 1;
            }
            Op::Mset => {
                let n =
                    g.rng.range_inclusive(plan.multi.0, plan.multi.1).min(MULTI_KEYS_MAX) as usize;
                self.scratch.clear();
                for _ in 0..n {
                    let id = key(&mut g.rng);
                    if let Ok(w) = claim(id, false, counts) {
                        self.scratch.push((id, w));
                    }
                }
                if self.scratch.is_empty() {
                    let id = key(&mut g.rng);
                    put_get(c, id, &mut notes);
                    push_read(c, id, 0, &mut nv);
                } else {
                    resp::put_array(&mut c.out, 1 + 2 * self.scratch.len());
                    resp::put_bulk(&mut c.out, b"MSET");
                    for &(id, w) in &self.scratch {
                        put_pair(c, &mut g.rng, id, w, &mut nv, &mut notes);
                    }
                }
            }
        }
        c.inflight.push_back(InFlight { intended_ns, sent_ns: now, op: op as u8, nv });
        self.inflight_total += 1 + usize::from(op == Op::Rmw);
        self.mark_dirty(ci);
        if self.trace {
            let prefix = &self.apps.apps[app_i].prefix;
            let sent = &mut self.stats.sent[app_i];
            let mut key = Vec::with_capacity(prefix.len() + 21);
            for &(kind, id, counter, value_len) in &notes {
                key.clear();
                key.extend_from_slice(prefix);
                if counter {
                    key.push(b'c');
                }
                key.extend_from_slice(id.to_string().as_bytes());
                sent.note(&key, kind, value_len);
            }
        }
        self.notes = notes;
    }

    /// Closed loop: top the connection's pipeline up.
    fn fill(&mut self, ci: usize, now: u64) {
        if self.conns[ci].stream.is_none() {
            return;
        }
        while self.conns[ci].inflight.len() < self.pipeline {
            self.issue(ci, now, now);
        }
    }

    /// Open loop: send what is due, while a connection of the application has room.
    fn issue_due(&mut self, now: u64) {
        let horizon = now.min(self.duration_ns.saturating_sub(1));
        for a in 0..self.gens.len() {
            while let Some(s) = self.gens[a].schedule.as_ref() {
                if s.peek() > horizon {
                    break;
                }
                let g = &self.gens[a];
                let n = g.conns.len();
                let mut found = None;
                for k in 0..n {
                    let ci = g.conns[(g.rr + k) % n];
                    let c = &self.conns[ci];
                    if c.stream.is_some() && c.inflight.len() < self.pipeline {
                        found = Some((ci, (g.rr + k + 1) % n));
                        break;
                    }
                }
                let Some((ci, rr)) = found else { break };
                self.gens[a].rr = rr;
                let Some(t) = self.gens[a].schedule.as_mut().and_then(|s| s.next_due(horizon))
                else {
                    continue;
                };
                self.issue(ci, t, now);
            }
        }
    }

    fn next_due(&self) -> Option<u64> {
        self.gens.iter().filter_map(|g| g.schedule.as_ref().map(Schedule::peek)).min()
    }

    /// Reads what arrived and handles every complete reply.
    fn read(&mut self, ci: usize) {
        loop {
            let c = &mut self.conns[ci];
            let Some(s) = c.stream.as_mut() else { return };
            if c.in_len == c.inbuf.len() {
                if c.inbuf.len() >= REPLY_BYTES_MAX {
                    let now = self.now_ns();
                    return self.lose(
                        ci,
                        &format!("reply larger than {REPLY_BYTES_MAX} bytes"),
                        now,
                    );
                }
                let n = (c.inbuf.len() * 2).min(REPLY_BYTES_MAX);
                c.inbuf.resize(n, 0);
            }
            match s.read(&mut c.inbuf[c.in_len..]) {
                Ok(0) => {
                    let now = self.now_ns();
                    return self.lose(ci, "closed by the server", now);
                }
                Ok(n) => {
                    c.in_len += n;
                    let now = self.now_ns();
                    if let Err(e) = self.handle_replies(ci, now) {
                        return self.lose(ci, &e, now);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let now = self.now_ns();
                    return self.lose(ci, &e.to_string(), now);
                }
            }
        }
        if !self.open && self.now_ns() < self.duration_ns {
            let now = self.now_ns();
            self.fill(ci, now);
        }
    }

    fn handle_replies(&mut self, ci: usize, now: u64) -> Result<(), String> {
        let mut pos = 0;
        let c = &mut self.conns[ci];
        let app = c.app;
        let verify = self.apps.apps[app].verify.as_deref();
        while pos < c.in_len {
            let buf = &c.inbuf[pos..c.in_len];
            let Some(len) = resp::reply_len(buf).map_err(|e| e.to_string())? else { break };
            let reply = &buf[..len];
            pos += len;
            let Some(f) = c.inflight.pop_front() else {
                return Err("a reply arrived with no request in flight".into());
            };
            self.inflight_total -= 1;
            let (r, used) = resp::parse(reply).map_err(|e| e.to_string())?.expect("complete");
            let is_err = matches!(r, Reply::Error(_));
            if let Reply::Error(m) = r {
                self.stats.error(m);
            }
            for _ in 0..f.nv {
                let Some(e) = c.vq.pop_front() else { break };
                let Some(v) = verify else { continue };
                match e {
                    VEntry::Write { slot, version, delete } => {
                        let outcome =
                            if is_err { WriteOutcome::Rejected } else { WriteOutcome::Acked };
                        v.end_write(slot, version, delete, outcome);
                    }
                    VEntry::Read { slot, id, floor, pos: at } => {
                        let el = match r {
                            Reply::Array(n) => nth_element(reply, used, n, at as usize),
                            other if at == 0 => Some(other),
                            _ => None,
                        };
                        let counts = &mut self.stats.verify[app];
                        match el {
                            Some(Reply::Bulk(b)) => {
                                v.check(slot, id, floor, ReadResult::Value(b), counts)
                            }
                            Some(Reply::Nil) => v.check(slot, id, floor, ReadResult::Nil, counts),
                            Some(Reply::Error(_)) => {}
                            _ => {
                                counts.checked += 1;
                                counts.wrong += 1;
                            }
                        }
                    }
                }
            }
            let op = match f.op {
                RMW_READ | MULTI_PART if !is_err => continue,
                RMW_READ => Op::Rmw as usize,
                MULTI_PART => Op::Multi as usize,
                op => op as usize,
            };
            let s = self.stats.ops[app * OP_COUNT + op].as_mut().expect("op in the mix");
            if is_err {
                s.errors += 1;
            } else {
                s.ok += 1;
                s.nil += matches!(r, Reply::Nil) as u64;
            }
            s.hist.saturating_record(now.saturating_sub(f.intended_ns));
            if self.open {
                s.service.saturating_record(now.saturating_sub(f.sent_ns));
            }
        }
        c.inbuf.copy_within(pos..c.in_len, 0);
        c.in_len -= pos;
        Ok(())
    }

    fn send_interval(&mut self, end_ns: u64) {
        let s = self.stats.take();
        let _ = self.tx.send(Msg::Interval(Box::new(WorkerInterval {
            worker: self.id,
            index: self.interval_idx,
            end_ns,
            ops: s.ops,
            sent: s.sent,
            verify: s.verify,
            errors: s.errors,
            connections_lost: s.connections_lost,
        })));
        self.interval_idx += 1;
    }

    fn run(&mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(EVENTS_MAX);
        let now = self.now_ns();
        if !self.open {
            for ci in 0..self.conns.len() {
                self.fill(ci, now);
            }
        }
        let mut stopping_at: Option<u64> = None;
        loop {
            let now = self.now_ns();
            if stopping_at.is_none() && now >= self.duration_ns {
                stopping_at = Some(now);
            }
            if stopping_at.is_none() {
                if self.open {
                    self.issue_due(now);
                }
                self.reconnect_due(now);
                if !self.open {
                    for ci in 0..self.conns.len() {
                        if self.conns[ci].inflight.is_empty() {
                            self.fill(ci, now);
                        }
                    }
                }
            }
            while let Some(ci) = self.dirty.pop() {
                self.flush(ci, now);
            }
            while now >= (self.interval_idx + 1) * self.interval_ns
                && self.interval_idx * self.interval_ns < self.duration_ns
            {
                let end = (self.interval_idx + 1) * self.interval_ns;
                self.send_interval(end);
            }
            if let Some(t) = stopping_at {
                if self.inflight_total == 0 || now >= t + self.drain_ns() {
                    break;
                }
            }
            let mut wake = u64::MAX;
            if self.interval_idx * self.interval_ns < self.duration_ns {
                wake = (self.interval_idx + 1) * self.interval_ns;
            }
            match stopping_at {
                None => {
                    wake = wake.min(self.duration_ns);
                    if self.open {
                        if let Some(d) = self.next_due() {
                            wake = wake.min(d);
                        }
                    }
                    if let Some(r) = self
                        .conns
                        .iter()
                        .filter(|c| c.stream.is_none())
                        .map(|c| c.retry_at_ns)
                        .min()
                    {
                        wake = wake.min(r);
                    }
                }
                Some(t) => wake = wake.min(t + self.drain_ns()),
            }
            // epoll waits in whole milliseconds (mio rounds up), which would make requests
            // late by up to 1 ms: counted as latency from their intended start. With nothing
            // in flight there is nothing to miss, so sleep precisely instead.
            let wait_ns = wake.saturating_sub(now);
            if self.open && wait_ns > 0 && wait_ns < 1_000_000 && self.inflight_total == 0 {
                std::thread::sleep(Duration::from_nanos(wait_ns));
                continue;
            }
            let timeout = Duration::from_nanos(wait_ns);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(format!("poll failed: {e}"));
                }
            }
            for ev in events.iter() {
                let ci = ev.token().0;
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.read(ci);
                }
                if ev.is_writable() && self.conns[ci].stream.is_some() {
                    let now = self.now_ns();
                    self.flush(ci, now);
                }
            }
        }
        // Requests still without a reply at the drain deadline failed.
        let now = self.now_ns();
        let mut unanswered = 0;
        for ci in 0..self.conns.len() {
            if !self.conns[ci].inflight.is_empty() {
                unanswered += self.conns[ci].inflight.len();
                self.lose(ci, "no reply before the drain deadline", now);
            }
        }
        if unanswered > 0 {
            self.stats.error(
                format!("{unanswered} requests unanswered at the drain deadline").as_bytes(),
            );
        }
        self.send_interval(now);
        Ok(())
    }

    fn drain_ns(&self) -> u64 {
        self.apps.drain.as_nanos() as u64
    }
}

/// The `pos`-th element of an array reply whose elements start at `from`.
fn nth_element(reply: &[u8], from: usize, n: usize, pos: usize) -> Option<Reply<'_>> {
    if pos >= n {
        return None;
    }
    let mut p = from;
    for _ in 0..pos {
        p += resp::reply_len(&reply[p..]).ok()??;
    }
    resp::parse(&reply[p..]).ok()?.map(|x| x.0)
}

/// A value of `len` bytes; for a sampled key, it starts with its version header.
#[inline]
fn put_value(out: &mut Vec<u8>, len: usize, id: u64, version: Option<(u64, u64)>, filler: &[u8]) {
    match version {
        None => {
            let len = len.min(filler.len());
            resp::put_bulk(out, &filler[..len]);
        }
        Some((v, run)) => {
            let mut h = [0u8; crate::verify::HEADER_BYTES_MAX];
            let hl = crate::verify::header(v, id, run, &mut h);
            let total = len.max(hl).min(filler.len());
            resp::put_len(out, total);
            out.extend_from_slice(&h[..hl]);
            out.extend_from_slice(&filler[..total - hl]);
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, RunError> {
    match (host, port).to_socket_addrs() {
        Ok(mut it) => it.next().ok_or_else(|| RunError::Config {
            field: "--host".into(),
            message: format!("{host:?} resolves to no address"),
        }),
        Err(e) => config_err("--host", format!("cannot resolve {host:?}: {e}")),
    }
}

/// Runs the load and returns its report. Outputs go to `cfg.out_dir` as the run proceeds.
pub fn run(cfg: &RunConfig) -> Result<stats::Report, RunError> {
    let plan = Arc::new(plan(cfg)?);
    let addr = resolve(&cfg.host, cfg.port)?;

    // A first connection with retries: an unreachable server is reported once, clearly.
    // It then serves to ask SHARDCAST SHARDS.
    let mut probe =
        client::connect(&addr, Some("shardcast-loadgen"), cfg.password.as_deref(), &cfg.retry)
            .map_err(RunError::Unreachable)?;
    let mut shards_supported = false;
    if cfg.track_shards {
        if let Ok(r) = client::call(&mut probe, &[b"SHARDCAST", b"SHARDS"]) {
            shards_supported = matches!(client::parse_shards(&r), Ok(Some(_)));
        }
    }
    let mut probe = Some(probe);

    if cfg.preload {
        let t = Instant::now();
        let n = preload(&plan, &addr, cfg)?;
        if cfg.progress {
            eprintln!("preloaded {n} keys in {:.1} s", t.elapsed().as_secs_f64());
        }
    }

    let mut outputs = match &cfg.out_dir {
        Some(d) => Some(
            Outputs::create(d, &plan, cfg)
                .map_err(|e| RunError::Failed(format!("cannot write to {}: {e}", d.display())))?,
        ),
        None => None,
    };

    // Connections: application by application, dealt round-robin over workers.
    let threads = cfg.threads as usize;
    let mut worker_conns: Vec<Vec<usize>> = vec![Vec::new(); threads];
    let mut k = 0usize;
    for (a, app) in plan.apps.iter().enumerate() {
        for _ in 0..app.connections {
            worker_conns[k % threads].push(a);
            k += 1;
        }
    }
    let (tx, rx) = mpsc::channel::<Msg>();
    let barrier = Arc::new(Barrier::new(threads + 1));
    let abort = Arc::new(AtomicBool::new(false));
    let start_at = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut handles = Vec::new();
    for (w, conn_apps) in worker_conns.into_iter().enumerate() {
        let (plan, tx, barrier, abort, start_at) =
            (plan.clone(), tx.clone(), barrier.clone(), abort.clone(), start_at.clone());
        let (pipeline, seed, open, interval_ns) =
            (cfg.pipeline as usize, cfg.seed, plan.open, cfg.interval.as_nanos() as u64);
        let password = cfg.password.clone();
        let trace = cfg.trace_out.is_some();
        let retry = Retry { attempts: cfg.retry.attempts.min(3), ..cfg.retry.clone() };
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{w}"))
            .spawn(move || {
                // Connect this worker's share, handshaken, before the clock starts.
                let mut streams = Vec::new();
                let mut ready = Ok(());
                for &a in &conn_apps {
                    match client::connect(
                        &addr,
                        Some(&plan.apps[a].client_name),
                        password.as_deref(),
                        &retry,
                    ) {
                        Ok(s) => streams.push(s),
                        Err(e) => {
                            ready = Err(e.to_string());
                            break;
                        }
                    }
                }
                let ok = ready.is_ok();
                let _ = tx.send(Msg::Ready(w, ready));
                barrier.wait();
                if !ok || abort.load(Ordering::Acquire) {
                    return;
                }
                let start = *start_at.get().expect("set before the barrier");
                match Worker::build(
                    w,
                    plan,
                    conn_apps,
                    streams,
                    start,
                    pipeline,
                    seed,
                    open,
                    interval_ns,
                    tx.clone(),
                    addr,
                    password,
                ) {
                    Ok(mut worker) => {
                        worker.trace = trace;
                        let r = worker.run();
                        if let Err(e) = r {
                            let _ = tx.send(Msg::Fatal(w, e));
                        }
                        let _ = tx.send(Msg::Done(w, worker.interval_idx));
                    }
                    Err(e) => {
                        let _ = tx.send(Msg::Fatal(w, e));
                        let _ = tx.send(Msg::Done(w, 0));
                    }
                }
            })
            .map_err(|e| RunError::Failed(format!("cannot start a worker thread: {e}")))?;
        handles.push(h);
    }
    drop(tx);
    let mut failure = None;
    for _ in 0..threads {
        match rx.recv() {
            Ok(Msg::Ready(_, Ok(()))) => {}
            Ok(Msg::Ready(w, Err(e))) => {
                failure = Some(format!("worker {w} could not open its connections: {e}"))
            }
            _ => failure = Some("a worker ended before connecting".into()),
        }
    }
    if failure.is_some() {
        abort.store(true, Ordering::Release);
    }
    let _ = start_at.set(Instant::now());
    barrier.wait();
    if let Some(f) = failure {
        for h in handles {
            let _ = h.join();
        }
        return Err(RunError::Failed(f));
    }
    let start = *start_at.get().expect("set");
    let mut trace_out = match &cfg.trace_out {
        None => None,
        Some(path) => {
            let apps: Vec<(Vec<u8>, String)> =
                plan.apps.iter().map(|a| (a.prefix.clone(), a.client_name.clone())).collect();
            let start_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let out = crate::sent::TraceOut::create(path, &apps, start_ms)
                .map_err(|e| RunError::Failed(format!("cannot write {}: {e}", path.display())))?;
            Some(out)
        }
    };

    let mut agg = Aggregator::new(&plan, cfg, threads);
    let mut fatal: Vec<String> = Vec::new();
    let mut done = 0usize;
    let deadline_slack = cfg.drain_timeout + Duration::from_secs(30);
    while done < threads {
        let limit = plan.duration + deadline_slack;
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            fatal.push("workers did not finish in time".into());
            break;
        }
        let msg = match rx.recv_timeout(left.min(Duration::from_secs(1))) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match msg {
            Msg::Interval(iv) => agg.add(*iv),
            Msg::Done(w, last) => {
                done += 1;
                agg.worker_done(w, last);
            }
            Msg::Fatal(w, e) => fatal.push(format!("worker {w}: {e}")),
            Msg::Ready(..) => {}
        }
        while let Some(mut rec) = agg.next_complete() {
            // The drain after the last full interval, when nothing arrived in it, is noise.
            if rec.all.ops == 0 && rec.end_s - rec.start_s < cfg.interval.as_secs_f64() / 2.0 {
                continue;
            }
            if shards_supported {
                // A failed call (a timeout, say) may leave a late reply on the socket: drop
                // the connection and open a fresh one next time rather than misread it.
                if probe.is_none() {
                    probe = client::connect_once(
                        &addr,
                        Some("shardcast-loadgen"),
                        cfg.password.as_deref(),
                    )
                    .ok();
                }
                if let Some(p) = probe.as_mut() {
                    match client::call(p, &[b"SHARDCAST", b"SHARDS"]) {
                        Ok(r) => match client::parse_shards(&r) {
                            Ok(Some(m)) => rec.shards = Some(m),
                            _ => probe = None,
                        },
                        Err(_) => probe = None,
                    }
                }
            }
            let sent = std::mem::take(&mut rec.sent);
            if let Some(t) = trace_out.as_mut() {
                t.interval(rec.start_s, &sent)
                    .map_err(|e| RunError::Failed(format!("cannot write the trace: {e}")))?;
            }
            if cfg.progress {
                stats::progress_line(&rec, &agg, plan.duration);
            }
            if let Some(o) = outputs.as_mut() {
                o.interval(&rec, &agg)
                    .map_err(|e| RunError::Failed(format!("cannot write outputs: {e}")))?;
            }
            agg.push_record(rec);
        }
    }
    for h in handles {
        let _ = h.join();
    }
    if cfg.progress {
        eprintln!();
    }
    let report = agg.finish(start.elapsed(), shards_supported, fatal);
    if let Some(o) = outputs.as_mut() {
        o.finish(&report).map_err(|e| RunError::Failed(format!("cannot write outputs: {e}")))?;
    }
    Ok(report)
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    fn build(
        id: usize,
        plan: Arc<Plan>,
        conn_apps: Vec<usize>,
        streams: Vec<std::net::TcpStream>,
        start: Instant,
        pipeline: usize,
        seed: u64,
        open: bool,
        interval_ns: u64,
        tx: Sender<Msg>,
        addr: SocketAddr,
        password: Option<String>,
    ) -> Result<Worker, String> {
        let poll = Poll::new().map_err(|e| format!("cannot create a poller: {e}"))?;
        let mut gens: Vec<AppGen> = (0..plan.apps.len())
            .map(|a| AppGen {
                rng: Rng::derive(seed, ((id as u64) << 32) | a as u64),
                schedule: None,
                conns: Vec::new(),
                rr: 0,
            })
            .collect();
        let conns = conn_apps
            .iter()
            .enumerate()
            .map(|(ci, &a)| {
                gens[a].conns.push(ci);
                Conn {
                    stream: None,
                    app: a,
                    out: Vec::with_capacity(pipeline * 64),
                    out_pos: 0,
                    inbuf: vec![0u8; READ_BUFFER_BYTES],
                    in_len: 0,
                    inflight: VecDeque::with_capacity(pipeline + 2),
                    vq: VecDeque::new(),
                    dirty: false,
                    want_write: false,
                    retry_at_ns: 0,
                    backoff_ms: 0,
                }
            })
            .collect();
        if open {
            for (a, g) in gens.iter_mut().enumerate() {
                let app = &plan.apps[a];
                if g.conns.is_empty() || app.connections == 0 {
                    continue;
                }
                let share = g.conns.len() as f64 / app.connections as f64;
                let profile = app.profile.clone().expect("open loop has profiles");
                let mut rng = Rng::derive(seed ^ 0x5eed, ((id as u64) << 32) | a as u64);
                g.schedule = Some(Schedule::new(profile, share, plan.time_compression, &mut rng));
            }
        }
        // Filler bytes for values: printable, varied.
        let mut frng = Rng::new(seed ^ 0xf111);
        let filler = (0..plan.value_bytes_max).map(|_| b'a' + frng.below(26) as u8).collect();
        let duration_ns = plan.duration.as_nanos() as u64;
        let mut w = Worker {
            id,
            poll,
            conns,
            apps: plan.clone(),
            gens,
            stats: WorkerStats::new(&plan.apps),
            filler,
            scratch: Vec::with_capacity(MULTI_KEYS_MAX as usize),
            start,
            open,
            pipeline,
            duration_ns,
            interval_ns,
            interval_idx: 0,
            inflight_total: 0,
            dirty: Vec::new(),
            tx,
            addr,
            password,
            trace: false,
            notes: Vec::new(),
        };
        for (ci, s) in streams.into_iter().enumerate() {
            w.register(ci, s).map_err(|e| format!("cannot register a connection: {e}"))?;
        }
        Ok(w)
    }
}

/// SETs per round trip while preloading.
const PRELOAD_BATCH_KEYS: u64 = 512;
/// Connections (one thread each) that preload an application.
const PRELOAD_CONNECTIONS_MAX: u64 = 8;

/// Writes every key of every application once, pipelined over a few blocking connections.
fn preload(plan: &Plan, addr: &SocketAddr, cfg: &RunConfig) -> Result<u64, RunError> {
    let mut total = 0;
    for (a, app) in plan.apps.iter().enumerate() {
        let n = app.inserted.load(Ordering::Relaxed);
        let conns = PRELOAD_CONNECTIONS_MAX.min(n.div_ceil(PRELOAD_BATCH_KEYS)).max(1);
        let per = n.div_ceil(conns);
        let filler: Vec<u8> = (0..plan.value_bytes_max).map(|i| b'a' + (i % 26) as u8).collect();
        let result: Result<(), String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..conns)
                .map(|k| {
                    let filler = &filler;
                    scope.spawn(move || -> Result<(), String> {
                        let retry =
                            Retry { attempts: cfg.retry.attempts.min(3), ..cfg.retry.clone() };
                        let mut s = client::connect(
                            addr,
                            Some(&app.client_name),
                            cfg.password.as_deref(),
                            &retry,
                        )
                        .map_err(|e| e.to_string())?;
                        let mut rng = Rng::derive(cfg.seed ^ 0x9e10ad, ((a as u64) << 32) | k);
                        let (lo, hi) = (k * per, ((k + 1) * per).min(n));
                        let mut out = Vec::new();
                        let mut inbuf = Vec::new();
                        let mut writes = Vec::new();
                        let mut id = lo;
                        while id < hi {
                            let end = (id + PRELOAD_BATCH_KEYS).min(hi);
                            out.clear();
                            writes.clear();
                            for i in id..end {
                                let w = app.verify.as_ref().and_then(|v| {
                                    let slot = v.slot(i)?;
                                    Some((slot, v.begin_write(slot, false)?, v.run_tag()))
                                });
                                resp::put_array(&mut out, 3);
                                resp::put_bulk(&mut out, b"SET");
                                resp::put_key(&mut out, &app.prefix, b"", i);
                                let len = app.value.sample(&mut rng) as usize;
                                put_value(&mut out, len, i, w.map(|x| (x.1, x.2)), filler);
                                if let Some(w) = w {
                                    writes.push(w);
                                }
                            }
                            s.write_all(&out).map_err(|e| format!("preload: {e}"))?;
                            let mut rejected = None;
                            for _ in id..end {
                                let r = client::read_reply(&mut s, &mut inbuf)
                                    .map_err(|e| format!("preload: {e}"))?;
                                if let Ok(Some((Reply::Error(e), _))) = resp::parse(&r) {
                                    rejected = Some(String::from_utf8_lossy(e).into_owned());
                                }
                            }
                            for &(slot, version, _) in &writes {
                                let v = app.verify.as_ref().expect("verified writes");
                                let outcome = if rejected.is_some() {
                                    WriteOutcome::Lost
                                } else {
                                    WriteOutcome::Acked
                                };
                                v.end_write(slot, version, false, outcome);
                            }
                            if let Some(e) = rejected {
                                return Err(format!(
                                    "preload of {}: the server refused a SET: {e}",
                                    app.name
                                ));
                            }
                            id = end;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().map_err(|_| "preload thread panicked".to_string())?)
        });
        result.map_err(RunError::Failed)?;
        total += n;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draw_above_the_rounded_sum_still_picks_an_op_of_the_mix() {
        // Normalised weights whose running sum rounds to 1 - 2^-53: the largest draw is not
        // below it. Without the guard it fell through to `rmw`, absent from this mix.
        let mut w = [0.0; OP_COUNT];
        w[Op::Get as usize] = 0.9414746821824703;
        w[Op::Set as usize] = 0.03194898747681001;
        w[Op::Del as usize] = 0.02657633034071963;
        let largest_draw = 1.0 - f64::EPSILON / 2.0;
        assert!(w.iter().sum::<f64>() <= largest_draw, "the case this test is about");
        let cdf = op_cdf(&w);
        assert_eq!(pick_op(&cdf, largest_draw), Op::Del as usize);
        assert_eq!(pick_op(&cdf, 0.0), Op::Get as usize);
        assert_eq!(pick_op(&cdf, 0.95), Op::Set as usize);
    }
}
