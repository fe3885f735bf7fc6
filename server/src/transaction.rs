//! MULTI, EXEC, DISCARD, WATCH and UNWATCH (docs/transactions.md).
//!
//! Between MULTI and EXEC a connection's commands are checked (unknown command, arity, NOAUTH,
//! OOM, commands a transaction cannot hold) and queued; a failed check answers its error and
//! makes EXEC answer EXECABORT, as Redis does. EXEC plans every queued key command into one
//! list of ops and hands it to the engine's `execute_atomic`: one step when the keys live on
//! one core (as cheap as a pipeline), strict two-phase locking across cores otherwise, so no
//! other client sees part of it. The few admin commands a transaction may hold (PING, ECHO,
//! TIME, CLIENT, CONFIG, INFO, ...) touch no key; they run after the ops, their replies in
//! their places.
//!
//! Invariant: a connection in MULTI queues at most `MULTI_COMMANDS_MAX` commands and
//! `client-query-buffer-limit` bytes; one watching holds at most `WATCH_KEYS_MAX` keys.

use crate::admin;
use crate::commands::{error_text, plan, render, Plan};
use crate::connection::Session;
use crate::shared::Shared;
use crate::table::{lookup, AdminCmd, Handler, Spec};
use shardcast_engine::runtime::txn::watch::WatchFlag;
use shardcast_engine::runtime::txn::WatchSet;
use shardcast_engine::Core;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Commands one MULTI may queue.
pub const MULTI_COMMANDS_MAX: usize = 100_000;
/// Keys one connection may watch at once.
pub const WATCH_KEYS_MAX: usize = 100_000;

/// Watch ids, unique in the process.
static NEXT_WATCH_ID: AtomicU64 = AtomicU64::new(1);

/// A connection's MULTI in progress.
#[derive(Default)]
pub struct Multi {
    queued: Vec<Vec<Vec<u8>>>,
    bytes: u64,
    /// A command failed its checks: EXEC answers EXECABORT.
    failed: bool,
}

/// The keys a connection watches. Dropped with its connection: the cores forget them.
pub struct Watching(WatchSet);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.flag.abandon();
    }
}

/// Whether `spec` runs at once even inside MULTI (Redis's list; UNWATCH is queued).
pub fn runs_in_multi(spec: &Spec) -> bool {
    matches!(
        spec.handler,
        Handler::Admin(
            AdminCmd::Exec | AdminCmd::Discard | AdminCmd::Multi | AdminCmd::Watch | AdminCmd::Quit
        )
    )
}

/// Why a transaction cannot hold `spec`, if it cannot: commands that read or change the
/// whole keyspace, or the connection's protocol, are not run inside EXEC here.
fn refused_in_multi(spec: &Spec) -> Option<String> {
    use AdminCmd::*;
    let allowed = match spec.handler {
        Handler::Key(_) => true,
        Handler::Admin(cmd) => matches!(
            cmd,
            Ping | Echo
                | Eval
                | EvalRo
                | EvalSha
                | EvalShaRo
                | Script
                | Rename
                | RenameNx
                | Copy
                | MSetNx
                | Time
                | Select
                | Client
                | Command
                | Config
                | Info
                | LastSave
                | SlowLog
                | Latency
                | Memory
                | Unwatch
        ),
    };
    (!allowed).then(|| {
        format!(
            "ERR '{}' is not supported inside MULTI by Shardcast; send it outside the transaction",
            spec.name
        )
    })
}

/// A command that failed its checks while the connection is in MULTI: EXEC will abort.
pub fn flag_failed(s: &mut Session) {
    if let Some(m) = s.multi.as_mut() {
        m.failed = true;
    }
}

/// Queues a command of a connection in MULTI; answers QUEUED or the error that aborts EXEC.
pub fn queue(shared: &Shared, s: &mut Session, spec: &Spec, args: Vec<Vec<u8>>) -> Vec<u8> {
    let mut w = crate::resp::Writer { buf: Vec::new(), resp3: s.w.resp3 };
    let Some(m) = s.multi.as_mut() else {
        w.error("ERR internal error: queued outside MULTI");
        return w.buf;
    };
    let bytes: u64 = args.iter().map(|a| a.len() as u64 + 16).sum();
    if let Some(e) = refused_in_multi(spec) {
        m.failed = true;
        w.error(&e);
    } else if m.queued.len() >= MULTI_COMMANDS_MAX
        || m.bytes + bytes > shared.config.query_buffer_max_bytes
    {
        m.failed = true;
        w.error(&format!(
            "ERR a transaction holds at most {MULTI_COMMANDS_MAX} commands and \
             client-query-buffer-limit bytes"
        ));
    } else {
        m.bytes += bytes;
        m.queued.push(args);
        w.simple("QUEUED");
    }
    w.buf
}

pub fn multi(s: &mut Session) {
    if s.multi.is_some() {
        return s.w.error("ERR MULTI calls can not be nested");
    }
    s.multi = Some(Multi::default());
    s.w.ok();
}

pub async fn discard(core: &Core, s: &mut Session) {
    if s.multi.take().is_none() {
        return s.w.error("ERR DISCARD without MULTI");
    }
    unwatch_all(core, s).await;
    s.w.ok();
}

pub async fn unwatch(core: &Core, s: &mut Session) {
    unwatch_all(core, s).await;
    s.w.ok();
}

pub async fn watch(core: &Core, s: &mut Session, args: &[Vec<u8>]) {
    if s.multi.is_some() {
        return s.w.error("ERR WATCH inside MULTI is not allowed");
    }
    let watching = s.watching.get_or_insert_with(|| {
        Watching(WatchSet {
            id: NEXT_WATCH_ID.fetch_add(1, Ordering::Relaxed),
            flag: Arc::new(WatchFlag::default()),
            keys: Vec::new(),
        })
    });
    let mut seen: std::collections::HashSet<&[u8]> =
        watching.0.keys.iter().map(Vec::as_slice).collect();
    let mut new: Vec<Vec<u8>> = Vec::new();
    for k in &args[1..] {
        if seen.insert(k.as_slice()) {
            new.push(k.clone());
        }
    }
    if watching.0.keys.len() + new.len() > WATCH_KEYS_MAX {
        return s.w.error(&format!("ERR a connection watches at most {WATCH_KEYS_MAX} keys"));
    }
    let set = &watching.0;
    if let Err(e) = core.watch(set.id, &set.flag, &new).await {
        // Some cores may hold some of them: the watch stays, marked failed, so EXEC aborts.
        set.flag.mark_dirty();
        if let Some(w) = s.watching.as_mut() {
            w.0.keys.extend(new);
        }
        return s.w.error(&error_text(&e));
    }
    if let Some(w) = s.watching.as_mut() {
        w.0.keys.extend(new);
    }
    s.w.ok();
}

async fn unwatch_all(core: &Core, s: &mut Session) {
    if let Some(w) = s.watching.take() {
        core.unwatch(w.0.id, &w.0.keys).await;
    }
}

/// A queued command, planned.
enum Step {
    Planned(Plan),
    Admin(AdminCmd, Vec<Vec<u8>>),
}

pub async fn exec(core: &Core, shared: &Shared, s: &mut Session) {
    let Some(m) = s.multi.take() else {
        return s.w.error("ERR EXEC without MULTI");
    };
    if m.failed {
        unwatch_all(core, s).await;
        return s.w.error("EXECABORT Transaction discarded because of previous errors.");
    }
    // CLIENT PAUSE WRITE holds a transaction that writes, as it holds each write.
    if let Some(spec) = m
        .queued
        .iter()
        .filter_map(|a| lookup(&a[0]))
        .map(|(_, sp)| sp)
        .find(|sp| shared.pause.blocks(sp))
    {
        shared.pause.wait_for(spec, core, &s.client).await;
    }
    if m.queued.iter().filter_map(|a| lookup(&a[0])).any(|(_, sp)| needs_hold(sp)) {
        return exec_held(core, shared, s, m.queued).await;
    }
    let mut ops = Vec::new();
    let mut steps = Vec::with_capacity(m.queued.len());
    for mut args in m.queued {
        let Some((_, spec)) = lookup(&args[0]) else { continue };
        steps.push(match spec.handler {
            Handler::Key(cmd) => {
                Step::Planned(plan(cmd, spec.name, &mut args, s.w.resp3, &mut ops))
            }
            Handler::Admin(cmd) => Step::Admin(cmd, args),
        });
    }
    let watch = s.watching.as_ref().map(|w| &w.0);
    let outcome = core.execute_atomic(ops, watch, s.client.app()).await;
    unwatch_all(core, s).await;
    let results = match outcome {
        Ok(Some(results)) => results,
        Ok(None) => return s.w.null_array(),
        Err(e) => return s.w.error(&error_text(&e)),
    };
    let mut results = results.into_iter();
    let (mut hits, mut misses) = (0, 0);
    s.w.array(steps.len());
    for step in steps {
        match step {
            Step::Planned(Plan::Reply(bytes)) => s.w.buf.extend_from_slice(&bytes),
            Step::Planned(Plan::Ops { count, render: r }) => {
                let (h, m) = render(&mut s.w, r, &mut results, count);
                hits += h;
                misses += m;
            }
            Step::Admin(cmd, args) => Box::pin(admin::run(core, shared, s, cmd, args)).await,
        }
    }
    if hits > 0 {
        shared.stats.keyspace_hits.add(core.id(), hits);
    }
    if misses > 0 {
        shared.stats.keyspace_misses.add(core.id(), misses);
    }
}

/// Whether a queued command takes several steps over its keys (a script's calls, RENAME's
/// read then write): the EXEC then holds every key of every command (`exec_held`).
fn needs_hold(spec: &Spec) -> bool {
    matches!(spec.handler, Handler::Admin(cmd) if needs_hold_cmd(cmd))
}

fn needs_hold_cmd(cmd: AdminCmd) -> bool {
    use AdminCmd::*;
    matches!(cmd, Eval | EvalRo | EvalSha | EvalShaRo | Rename | RenameNx | Copy | MSetNx)
}

/// A queued command of a held EXEC, with its ops if it plans into ops.
enum HeldStep {
    Planned(Plan, Vec<shardcast_engine::ops::Op>),
    Admin(AdminCmd, Vec<Vec<u8>>),
}

/// EXEC of a transaction with a script, RENAME, COPY or MSETNX: every key of every command
/// (and every watched key) is locked first, wherever it lives (`Core::hold_keys_watched`),
/// then the commands run one after another on the hold, and the hold commits as one
/// transaction (docs/transactions.md). Costs a round of messages per command, where the
/// plain EXEC costs one for all.
async fn exec_held(core: &Core, shared: &Shared, s: &mut Session, queued: Vec<Vec<Vec<u8>>>) {
    use crate::scripting::{eval_in_exec, keys_of as script_keys};
    use AdminCmd::*;
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut steps = Vec::with_capacity(queued.len());
    for mut args in queued {
        let Some((_, spec)) = lookup(&args[0]) else { continue };
        steps.push(match spec.handler {
            Handler::Key(cmd) => {
                let mut ops = Vec::new();
                let planned = plan(cmd, spec.name, &mut args, s.w.resp3, &mut ops);
                keys.extend(ops.iter().map(|op| op.key().to_vec()));
                HeldStep::Planned(planned, ops)
            }
            Handler::Admin(cmd) => {
                match cmd {
                    Eval | EvalRo | EvalSha | EvalShaRo => keys.extend(script_keys(&args)),
                    Rename | RenameNx | Copy => keys.extend(crate::rename::keys_of(&args)),
                    MSetNx => keys.extend(admin::msetnx_keys(&args)),
                    _ => {}
                }
                HeldStep::Admin(cmd, args)
            }
        });
    }
    keys.sort_unstable();
    keys.dedup();
    // Only a transaction that may write is refused for memory when it takes its locks.
    let writes = steps.iter().any(|step| match step {
        HeldStep::Planned(_, ops) => ops.iter().any(|op| op.mutates()),
        HeldStep::Admin(cmd, _) => !matches!(cmd, EvalRo | EvalShaRo) && needs_hold_cmd(*cmd),
    });
    let watch = s.watching.as_ref().map(|w| &w.0);
    let held = core.hold_keys_watched(&keys, watch, writes).await;
    unwatch_all(core, s).await;
    let held = match held {
        Ok(Some(held)) => std::rc::Rc::new(held),
        Ok(None) => return s.w.null_array(),
        Err(e) => return s.w.error(&error_text(&e)),
    };
    let app = s.client.app();
    let (mut hits, mut misses) = (0, 0);
    // Each step's reply, in order. Commands that touch no held key (PING, INFO, MEMORY
    // USAGE, ...) run after the hold is released, as in a plain EXEC: one that reads a key
    // the hold covers would otherwise wait for the hold, held by this very EXEC.
    let mut replies: Vec<Vec<u8>> = Vec::with_capacity(steps.len());
    let mut after: Vec<(usize, AdminCmd, Vec<Vec<u8>>)> = Vec::new();
    let outer = std::mem::take(&mut s.w.buf);
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            HeldStep::Planned(Plan::Reply(bytes), _) => s.w.buf.extend_from_slice(&bytes),
            HeldStep::Planned(Plan::Ops { count, render: r }, ops) => {
                let results = held.run(ops, app).await;
                let (h, m) = render(&mut s.w, r, &mut results.into_iter(), count);
                hits += h;
                misses += m;
            }
            HeldStep::Admin(cmd, args) => match cmd {
                Eval => eval_in_exec(core, shared, s, &args, held.clone(), false, false).await,
                EvalRo => eval_in_exec(core, shared, s, &args, held.clone(), false, true).await,
                EvalSha => eval_in_exec(core, shared, s, &args, held.clone(), true, false).await,
                EvalShaRo => eval_in_exec(core, shared, s, &args, held.clone(), true, true).await,
                Rename => crate::rename::rename_held(&held, s, &args, false).await,
                RenameNx => crate::rename::rename_held(&held, s, &args, true).await,
                Copy => crate::rename::copy_held(&held, s, &args).await,
                MSetNx => admin::msetnx_in_exec(&held, s, args).await,
                _ => after.push((i, cmd, args)),
            },
        }
        replies.push(std::mem::take(&mut s.w.buf));
    }
    // Commits what the commands wrote, as one transaction, and lets the keys go.
    match std::rc::Rc::try_unwrap(held) {
        Ok(held) => held.release().await,
        Err(_) => tracing::error!("an EXEC's hold outlived it; released when dropped"),
    }
    for (i, cmd, args) in after {
        Box::pin(admin::run(core, shared, s, cmd, args)).await;
        replies[i] = std::mem::take(&mut s.w.buf);
    }
    s.w.buf = outer;
    s.w.array(replies.len());
    for reply in replies {
        s.w.buf.extend_from_slice(&reply);
    }
    if hits > 0 {
        shared.stats.keyspace_hits.add(core.id(), hits);
    }
    if misses > 0 {
        shared.stats.keyspace_misses.add(core.id(), misses);
    }
}
