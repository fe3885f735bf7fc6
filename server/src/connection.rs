//! One client connection: read, parse a pipeline, execute it in order, write the replies.
//!
//! Invariant: replies leave in the order the commands arrived, whatever cores executed them.
//! Invariant: the input buffer never exceeds `client-query-buffer-limit`; a protocol error gets
//! `-ERR Protocol error: ...` and closes this connection only.

use crate::admin;
use crate::commands::{plan, render, Plan};
use crate::resp::{parse, Limits, Parsed, Writer};
use crate::shared::{ClientInfo, Shared};
use crate::table::lookup;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use shardcast_engine::ops::Op;
use shardcast_engine::Core;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Bytes read per read call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Most commands executed as one batch before replies are written.
pub const PIPELINE_BATCH_MAX: usize = 1024;

/// What a connection knows about itself.
pub struct Session {
    pub client: Arc<ClientInfo>,
    pub authenticated: bool,
    pub w: Writer,
    /// Close after writing the pending replies.
    pub close: bool,
}

/// Serves one connection until it closes, errs, or the server stops.
pub async fn serve(core: &Core, shared: &Shared, mut stream: TcpStream, client: Arc<ClientInfo>) {
    let mut s = Session {
        authenticated: shared.password().is_none(),
        client,
        w: Writer::default(),
        close: false,
    };
    // input[start..end] holds unparsed bytes; input[end..] is spare room to read into. The
    // buffer is zeroed once when it grows, never per read.
    let mut input: Vec<u8> = vec![0; READ_CHUNK_BYTES];
    let (mut start, mut end) = (0, 0);
    loop {
        let limits =
            Limits { bulk_len_max: shared.proto_max_bulk_len.load(Ordering::Relaxed) as usize };
        let mut commands = Vec::new();
        let mut protocol_error = None;
        while commands.len() < PIPELINE_BATCH_MAX {
            match parse(&input[start..end], limits) {
                Parsed::Command { args, consumed } => {
                    start += consumed;
                    commands.push(args);
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
            execute(core, shared, &mut s, commands).await;
        }
        if let Some(e) = protocol_error {
            s.w.error(&format!("ERR Protocol error: {e}"));
            s.close = true;
        }
        if !s.w.buf.is_empty() {
            if stream.write_all(&s.w.buf).await.is_err() {
                return;
            }
            s.w.buf.clear();
        }
        if s.close || core.stop_requested() {
            let _ = stream.flush().await;
            return;
        }
        if start == end {
            (start, end) = (0, 0);
        }
        if more_ready {
            continue;
        }
        if (end - start) as u64 >= shared.config.query_buffer_max_bytes {
            tracing::warn!(
                client = s.client.id,
                "closing client that reached max query buffer length"
            );
            return;
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
            Ok(0) | Err(_) => return,
            Ok(n) => end += n,
        }
    }
}

/// Executes a pipeline in order: runs of plannable commands go to the engine as one batch.
async fn execute(core: &Core, shared: &Shared, s: &mut Session, commands: Vec<Vec<Vec<u8>>>) {
    let mut ops: Vec<Op> = Vec::new();
    let mut plans: Vec<Plan> = Vec::new();
    let n = commands.len() as u64;
    for mut args in commands {
        let Some((index, spec)) = lookup(&args[0]) else {
            plans.push(Plan::Reply(error_reply(s, &unknown_command(&args))));
            continue;
        };
        s.client.last_command.store(index as u64, Ordering::Relaxed);
        if !spec.arity_ok(args.len()) {
            let e = format!("ERR wrong number of arguments for '{}' command", spec.name);
            plans.push(Plan::Reply(error_reply(s, &e)));
            continue;
        }
        if !s.authenticated && !spec.has("noauth") {
            plans.push(Plan::Reply(error_reply(s, "NOAUTH Authentication required.")));
            continue;
        }
        if spec.has("denyoom") {
            let max = shared.maxmemory_bytes.load(Ordering::Relaxed);
            if max > 0 && core.used_memory() > max {
                let e = "OOM command not allowed when used memory > 'maxmemory'.";
                plans.push(Plan::Reply(error_reply(s, e)));
                continue;
            }
        }
        match plan(spec, &mut args, s.w.resp3, &mut ops) {
            Some(p) => plans.push(p),
            None => {
                flush_batch(core, shared, s, &mut ops, &mut plans).await;
                admin::run(core, shared, s, spec, args).await;
                if s.close {
                    break;
                }
            }
        }
    }
    flush_batch(core, shared, s, &mut ops, &mut plans).await;
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
) {
    let results = if ops.is_empty() { Vec::new() } else { core.execute(std::mem::take(ops)).await };
    let mut results = results.into_iter();
    let (mut hits, mut misses) = (0, 0);
    for p in plans.drain(..) {
        match p {
            Plan::Reply(bytes) => s.w.buf.extend_from_slice(&bytes),
            Plan::Ops { count, render: r } => {
                let (h, m) = render(&mut s.w, r, &mut results, count);
                hits += h;
                misses += m;
            }
        }
    }
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
