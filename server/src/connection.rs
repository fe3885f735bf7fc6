//! One client connection: read, parse a pipeline, execute it in order, write the replies.
//!
//! A connection whose keys (nearly) all belong to another core moves there, between commands,
//! so its ops stop crossing cores (Dragonfly's connection migration): its socket, session and
//! unparsed input travel in one mesh message.
//!
//! Invariant: replies leave in the order the commands arrived, whatever cores executed them.
//! Invariant: the input buffer never exceeds `client-query-buffer-limit`; a protocol error gets
//! `-ERR Protocol error: ...` and closes this connection only.

use crate::accounting::Ledger;
use crate::admin;
use crate::commands::{plan, render, Plan};
use crate::resp::{parse, Limits, Parsed, Writer};
use crate::shared::{ClientInfo, Shared};
use crate::stats::commands::slot_of;
use crate::table::{lookup, Handler};
use crate::transaction;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use shardcast_engine::ops::Op;
use shardcast_engine::{Core, EvictionPolicy};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Bytes read per read call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Reply buffer capacity kept between batches (a larger one is shrunk back to this).
const REPLY_BUFFER_KEEP_BYTES: usize = 1024 * 1024;
/// Most commands executed as one batch before replies are written.
pub const PIPELINE_BATCH_MAX: usize = 1024;

/// Ops observed before a connection may move, and the share of them one core must own.
const AFFINITY_OPS_MIN: u32 = 32;
const AFFINITY_SHARE_PERCENT: u32 = 90;
/// Counts are halved past this many ops, so the affinity follows recent traffic.
const AFFINITY_WINDOW_OPS: u32 = 256;

/// Which cores own the keys this connection used recently.
pub struct Affinity {
    ops_per_core: Vec<u32>,
    total: u32,
}

impl Affinity {
    fn new(cores: usize) -> Self {
        Affinity { ops_per_core: vec![0; cores], total: 0 }
    }

    pub fn note(&mut self, core: usize) {
        let Some(count) = self.ops_per_core.get_mut(core) else { return };
        *count += 1;
        self.total += 1;
        if self.total >= AFFINITY_WINDOW_OPS {
            self.ops_per_core.iter_mut().for_each(|c| *c /= 2);
            self.total = self.ops_per_core.iter().sum();
        }
    }

    /// The core this connection should move to, if any.
    fn target(&self, here: usize) -> Option<usize> {
        if self.total < AFFINITY_OPS_MIN || self.ops_per_core.is_empty() {
            return None;
        }
        let (best, &count) = self.ops_per_core.iter().enumerate().max_by_key(|(_, c)| **c)?;
        (best != here && count * 100 >= self.total * AFFINITY_SHARE_PERCENT).then_some(best)
    }
}

/// What a connection takes along when it moves to another core.
pub struct Carry {
    pub client: Arc<ClientInfo>,
    pub authenticated: bool,
    pub resp3: bool,
    /// Bytes read but not yet parsed.
    pub pending: Vec<u8>,
    /// Nothing was read yet: the connection may still turn out to be HTTP.
    pub fresh: bool,
}

impl Carry {
    pub fn new(client: Arc<ClientInfo>) -> Self {
        Carry { client, authenticated: false, resp3: false, pending: Vec::new(), fresh: true }
    }
}

/// What a connection knows about itself.
pub struct Session {
    pub client: Arc<ClientInfo>,
    pub authenticated: bool,
    pub w: Writer,
    /// Close after writing the pending replies.
    pub close: bool,
    pub affinity: Affinity,
    /// MONITOR ran: the connection streams commands from now on; the input from this offset
    /// (the commands pipelined after MONITOR) goes to `monitor::serve`.
    pub monitor_from: Option<usize>,
    /// The accounting's buffer, kept between pipelines.
    pub marks: Vec<crate::accounting::Mark>,
    /// MULTI ran and EXEC or DISCARD has not yet.
    pub multi: Option<crate::transaction::Multi>,
    /// The keys WATCH named since the last EXEC, DISCARD or UNWATCH.
    pub watching: Option<crate::transaction::Watching>,
}

/// While it lives, CLIENT KILL can reach the connection's socket (`ClientInfo::kill`); it
/// is dropped before the socket closes (locals drop before parameters).
struct SocketSlot {
    client: Arc<ClientInfo>,
    armed: bool,
}

impl SocketSlot {
    fn new(client: Arc<ClientInfo>, stream: &TcpStream) -> Self {
        client.attach_socket(std::os::fd::AsRawFd::as_raw_fd(stream));
        SocketSlot { client, armed: true }
    }

    /// Before the socket moves to another core, which attaches it there.
    fn release(&mut self) {
        self.client.detach_socket();
        self.armed = false;
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        if self.armed {
            self.client.detach_socket();
        }
    }
}

/// How `serve` ended.
enum Ended {
    Closed,
    /// Handed to another core, which serves it from now on.
    Moved,
}

/// Serves a client on this core (and, if it moves, on others) and unregisters it at the end.
pub async fn run_client(core: Rc<Core>, shared: Arc<Shared>, stream: TcpStream, carry: Carry) {
    let id = carry.client.id;
    if let Ended::Closed = serve(&core, &shared, stream, carry).await {
        shared.unregister(id);
    }
}

/// Serves one connection until it closes, errs, moves, or the server stops.
async fn serve(
    core: &Rc<Core>,
    shared: &Arc<Shared>,
    mut stream: TcpStream,
    carry: Carry,
) -> Ended {
    carry.client.core.store(core.id(), Ordering::Relaxed);
    let mut s = Session {
        authenticated: carry.authenticated,
        client: carry.client,
        w: Writer { buf: Vec::new(), resp3: carry.resp3 },
        close: false,
        affinity: Affinity::new(core.cores()),
        monitor_from: None,
        marks: Vec::new(),
        multi: None,
        watching: None,
    };
    let mut socket_slot = SocketSlot::new(s.client.clone(), &stream);
    // input[start..end] holds unparsed bytes; input[end..] is spare room to read into. The
    // buffer is zeroed once when it grows, never per read.
    let mut input: Vec<u8> = vec![0; READ_CHUNK_BYTES.max(carry.pending.len() * 2)];
    let (mut start, mut end) = (0, carry.pending.len());
    input[..end].copy_from_slice(&carry.pending);
    // Until the first command, the connection may turn out to be an HTTP request.
    let mut may_be_http = carry.fresh;
    loop {
        if s.client.is_killed() {
            return Ended::Closed;
        }
        if may_be_http && end > 0 {
            match crate::http::sniff(&input[..end]) {
                crate::http::Sniff::Http => {
                    // Not a Redis client: out of CLIENT LIST and KILL's reach.
                    socket_slot.release();
                    shared.unregister(s.client.id);
                    crate::http::serve(core, shared, stream, input[..end].to_vec()).await;
                    return Ended::Closed;
                }
                crate::http::Sniff::NotHttp => may_be_http = false,
                crate::http::Sniff::NeedMore => {}
            }
        }
        let limits =
            Limits { bulk_len_max: shared.proto_max_bulk_len.load(Ordering::Relaxed) as usize };
        let mut commands = Vec::new();
        let mut protocol_error = None;
        while commands.len() < PIPELINE_BATCH_MAX {
            match parse(&input[start..end], limits) {
                Parsed::Command { args, consumed } => {
                    commands.push(Received { args, raw: start..start + consumed });
                    start += consumed;
                }
                Parsed::Skip { consumed } => start += consumed,
                Parsed::Incomplete => break,
                Parsed::Error(e) => {
                    protocol_error = Some(e);
                    break;
                }
            }
        }
        let more_ready = commands.len() == PIPELINE_BATCH_MAX;
        if !commands.is_empty() {
            execute(core, shared, &mut s, commands, &input, &mut stream).await;
        }
        if let Some(e) = protocol_error {
            s.w.error(&format!("ERR Protocol error: {e}"));
            s.close = true;
        }
        if !s.w.buf.is_empty() {
            if stream.write_all(&s.w.buf).await.is_err() {
                return Ended::Closed;
            }
            s.w.buf.clear();
            if s.w.buf.capacity() > REPLY_BUFFER_KEEP_BYTES {
                s.w.buf.shrink_to(REPLY_BUFFER_KEEP_BYTES);
            }
        }
        if s.close || core.stop_requested() {
            let _ = stream.flush().await;
            return Ended::Closed;
        }
        if let Some(from) = s.monitor_from.take() {
            let rest = input.get(from..end).unwrap_or_default().to_vec();
            crate::monitor::serve(core, shared, &mut stream, &s.client, rest).await;
            return Ended::Closed;
        }
        // A transaction or a watch in progress stays on its core: its state is here.
        let stays = s.multi.is_some() || s.watching.is_some();
        if shared.config.migrate_connections && !stays {
            if let Some(target) = s.affinity.target(core.id()) {
                let carry = Carry {
                    client: s.client.clone(),
                    authenticated: s.authenticated,
                    resp3: s.w.resp3,
                    pending: input[start..end].to_vec(),
                    fresh: false,
                };
                match crate::sockets::duplicate(&stream) {
                    Ok(fd) => {
                        socket_slot.release();
                        drop(stream);
                        if let Err(e) = move_to(core, shared, fd, carry, target).await {
                            tracing::warn!(client = s.client.id, error = %e, "could not move connection");
                            return Ended::Closed;
                        }
                        return Ended::Moved;
                    }
                    // No fd to spare (EMFILE): stay here, and stop trying.
                    Err(_) => s.affinity = Affinity::new(0),
                }
            }
        }
        if start == end {
            (start, end) = (0, 0);
            if input.len() > READ_CHUNK_BYTES * 4 {
                // A large command has passed: give the memory back.
                input.truncate(READ_CHUNK_BYTES);
                input.shrink_to_fit();
            }
        }
        if more_ready {
            continue;
        }
        if (end - start) as u64 >= shared.config.query_buffer_max_bytes {
            tracing::warn!(
                client = s.client.id,
                "closing client that reached max query buffer length"
            );
            return Ended::Closed;
        }
        if input.len() - end < READ_CHUNK_BYTES / 4 {
            // Make room: move the unparsed tail to the front, and grow if it fills half.
            input.copy_within(start..end, 0);
            (start, end) = (0, end - start);
            if end > input.len() / 2 {
                input.resize(input.len() * 2, 0);
            }
        }
        match stream.read(&mut input[end..]).await {
            Ok(0) | Err(_) => return Ended::Closed,
            Ok(n) => end += n,
        }
    }
}

/// Hands the connection to core `target`: nothing is in flight on the socket (replies are
/// written, no read is pending), so its fd can change executors.
async fn move_to(
    core: &Rc<Core>,
    shared: &Arc<Shared>,
    fd: std::os::fd::OwnedFd,
    carry: Carry,
    target: usize,
) -> Result<(), shardcast_engine::EngineError> {
    let shared = shared.clone();
    let job: shardcast_engine::CoreJob = Box::new(move |core| {
        let stream = crate::sockets::attach(fd);
        glommio::spawn_local(run_client(core, shared, stream, carry)).detach();
    });
    core.run_on(target, job).await
}

/// A parsed command and where its bytes are in the connection's input buffer.
struct Received {
    args: Vec<Vec<u8>>,
    raw: std::ops::Range<usize>,
}

/// Executes a pipeline in order: runs of plannable commands go to the engine as one batch.
/// `raw` is the input buffer the commands were parsed from (the slow log reads it again);
/// `stream` takes the replies ready before a command CLIENT PAUSE holds.
async fn execute(
    core: &Core,
    shared: &Shared,
    s: &mut Session,
    commands: Vec<Received>,
    raw: &[u8],
    stream: &mut TcpStream,
) {
    let mut ops: Vec<Op> = Vec::new();
    let mut plans: Vec<Plan> = Vec::new();
    let mut ledger = Ledger::new(shared, core.id(), raw, std::mem::take(&mut s.marks));
    // The core every op of the current batch belongs to.
    let mut batch_core: Option<usize> = None;
    let n = commands.len() as u64;
    for Received { mut args, raw } in commands {
        if s.client.is_killed() {
            // CLIENT KILL from another connection: nothing more of this pipeline runs.
            s.close = true;
            break;
        }
        let Some((index, spec)) = lookup(&args[0]) else {
            plans.push(Plan::Reply(error_reply(s, &unknown_command(&args))));
            transaction::flag_failed(s);
            ledger.unknown(raw);
            continue;
        };
        let slot = slot_of(index, &args);
        s.client.last_command.store(index as u64, Ordering::Relaxed);
        if !spec.arity_ok(args.len()) {
            let e = format!("ERR wrong number of arguments for '{}' command", spec.name);
            plans.push(Plan::Reply(error_reply(s, &e)));
            transaction::flag_failed(s);
            ledger.rejected(slot, raw);
            continue;
        }
        if !s.authenticated && !spec.has("noauth") && shared.auth_required() {
            plans.push(Plan::Reply(error_reply(s, "NOAUTH Authentication required.")));
            transaction::flag_failed(s);
            ledger.rejected(slot, raw);
            continue;
        }
        // Under `noeviction` a whole command is refused before it starts; other policies
        // evict on the core that owns the key (the engine's `make_room`).
        if spec.has("denyoom") && shared.eviction().policy() == EvictionPolicy::NoEviction {
            let max = shared.eviction().maxmemory_bytes();
            if max > 0 && core.used_memory() > max {
                let e = "OOM command not allowed when used memory > 'maxmemory'.";
                plans.push(Plan::Reply(error_reply(s, e)));
                transaction::flag_failed(s);
                ledger.rejected(slot, raw);
                continue;
            }
        }
        if s.multi.is_some() && !transaction::runs_in_multi(spec) {
            // Queued for EXEC: answered QUEUED (or the error that aborts EXEC) in its place.
            plans.push(Plan::Reply(transaction::queue(shared, s, spec, args)));
            ledger.ran(slot, raw);
            continue;
        }
        if shared.pause.blocks(spec) {
            // Commands before it keep their place: they run first.
            flush_batch(core, shared, s, &mut ops, &mut plans, &mut ledger).await;
            // The replies before it leave now, as Redis writes a postponed client's replies.
            if !s.w.buf.is_empty() {
                if stream.write_all(&s.w.buf).await.is_err() {
                    s.close = true;
                    break;
                }
                s.w.buf.clear();
            }
            shared.pause.wait_for(spec, core, &s.client).await;
            if s.client.is_killed() {
                s.close = true;
                break;
            }
            // A command is timed from when it may run, as Redis times a postponed one.
            ledger.restart();
        }
        if shared.monitors.active() && !spec.has("admin") {
            shared.monitors.feed(spec.name, &args, &s.client.addr);
        }
        match spec.handler {
            Handler::Key(cmd) => {
                let before = ops.len();
                let p = plan(cmd, spec.name, &mut args, s.w.resp3, &mut ops);
                // Effects must happen in command order. The cores of one batch run in
                // parallel, so a batch holds commands for one core only.
                let new_ops = ops.split_off(before);
                let target = single_core(core, &mut s.affinity, &new_ops);
                if new_ops.len() > 1 {
                    // A command of several keys (MSET, MGET, DEL...) is atomic, as in Redis,
                    // wherever its keys live and even if they move while it runs: the engine
                    // runs it as one atomic batch (docs/transactions.md), after the commands
                    // before it.
                    flush_batch(core, shared, s, &mut ops, &mut plans, &mut ledger).await;
                    let mut own = new_ops;
                    plans.push(p);
                    ledger.ran(slot, raw);
                    flush_atomic(core, shared, s, &mut own, &mut plans, &mut ledger).await;
                    continue;
                }
                let fits = new_ops.is_empty()
                    || ops.is_empty()
                    || (target.is_some() && target == batch_core);
                if !fits {
                    flush_batch(core, shared, s, &mut ops, &mut plans, &mut ledger).await;
                }
                if !new_ops.is_empty() {
                    batch_core = target;
                }
                ops.extend(new_ops);
                plans.push(p);
                ledger.ran(slot, raw);
            }
            Handler::Admin(cmd) => {
                flush_batch(core, shared, s, &mut ops, &mut plans, &mut ledger).await;
                let before = s.w.buf.len();
                let raw_end = raw.end;
                ledger.ran(slot, raw);
                admin::run(core, shared, s, cmd, args).await;
                ledger.replied(0, s.w.buf.get(before..).unwrap_or_default());
                ledger.batch_done(&s.client);
                if s.monitor_from.is_some() {
                    s.monitor_from = Some(raw_end);
                }
                if s.close || s.monitor_from.is_some() {
                    break;
                }
            }
        }
    }
    flush_batch(core, shared, s, &mut ops, &mut plans, &mut ledger).await;
    s.marks = ledger.into_marks();
    shared.stats.commands.add(core.id(), n);
    s.client
        .last_command_ms
        .store(s.client.created.elapsed().as_millis() as u64, Ordering::Relaxed);
}

async fn flush_batch(
    core: &Core,
    shared: &Shared,
    s: &mut Session,
    ops: &mut Vec<Op>,
    plans: &mut Vec<Plan>,
    ledger: &mut Ledger<'_>,
) {
    if ops.is_empty() && plans.is_empty() {
        return;
    }
    let results = if ops.is_empty() {
        Vec::new()
    } else {
        core.execute_for(std::mem::take(ops), s.client.app()).await
    };
    write_replies(core, shared, s, results, plans, ledger);
}

/// `flush_batch` for ops that must apply atomically across cores.
async fn flush_atomic(
    core: &Core,
    shared: &Shared,
    s: &mut Session,
    ops: &mut Vec<Op>,
    plans: &mut Vec<Plan>,
    ledger: &mut Ledger<'_>,
) {
    let ops = std::mem::take(ops);
    let n = ops.len();
    let results = match core.execute_atomic(ops, None, s.client.app()).await {
        Ok(Some(results)) => results,
        Ok(None) => unreachable!("no watch, no abort"),
        Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
    };
    write_replies(core, shared, s, results, plans, ledger);
}

/// Renders the replies of `plans` from the engine's `results`, in order.
fn write_replies(
    core: &Core,
    shared: &Shared,
    s: &mut Session,
    results: Vec<shardcast_engine::Result<shardcast_engine::ops::Reply>>,
    plans: &mut Vec<Plan>,
    ledger: &mut Ledger<'_>,
) {
    let mut results = results.into_iter();
    let (mut hits, mut misses) = (0, 0);
    for (i, p) in plans.drain(..).enumerate() {
        let before = s.w.buf.len();
        match p {
            Plan::Reply(bytes) => s.w.buf.extend_from_slice(&bytes),
            Plan::Ops { count, render: r } => {
                let (h, m) = render(&mut s.w, r, &mut results, count);
                hits += h;
                misses += m;
            }
        }
        ledger.replied(i, &s.w.buf[before..]);
    }
    ledger.batch_done(&s.client);
    if hits > 0 {
        shared.stats.keyspace_hits.add(core.id(), hits);
    }
    if misses > 0 {
        shared.stats.keyspace_misses.add(core.id(), misses);
    }
}

fn error_reply(s: &Session, text: &str) -> Vec<u8> {
    let mut w = Writer { buf: Vec::new(), resp3: s.w.resp3 };
    w.error(text);
    w.buf
}

/// The core owning all of `ops`, if they share one; notes each op's core in `affinity` on the
/// way (one owner lookup per op serves both).
fn single_core(core: &Core, affinity: &mut Affinity, ops: &[Op]) -> Option<usize> {
    let mut shared = None;
    let mut same = true;
    for op in ops {
        let owner = core.owner_of(op.key());
        affinity.note(owner);
        same &= *shared.get_or_insert(owner) == owner;
    }
    shared.filter(|_| same)
}

/// Redis's text: `ERR unknown command 'x', with args beginning with: 'a' 'b' `.
fn unknown_command(args: &[Vec<u8>]) -> String {
    let name: String = String::from_utf8_lossy(&args[0]).chars().take(128).collect();
    let mut text = format!("ERR unknown command '{name}', with args beginning with: ");
    for a in args[1..].iter() {
        let a: String = String::from_utf8_lossy(a).chars().take(128).collect();
        text.push_str(&format!("'{a}' "));
        if text.len() > 512 {
            break;
        }
    }
    text
}
