//! EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT LOAD | EXISTS | FLUSH (docs/scripting.md).
//!
//! A script runs atomically over the keys it declares: the engine holds them
//! (`Core::hold_keys`, the locks of a transaction, wherever they live) for the whole run, and
//! `redis.call` executes each command on them through the engine, awaiting it inside a Lua
//! coroutine. A key the script did not declare gets an error, as in Redis Cluster. Each run
//! has its own Lua 5.1 state (string, table and math libraries, no I/O, no `os`, no `load`
//! of bytecode), bounded in time (`busy-reply-threshold`) and memory (`SCRIPT_MEMORY_MAX`).
//!
//! Invariant: a script never outlives its run's hold: the keys are released, and what the
//! script wrote committed, whether it returned, raised an error or was stopped.

mod libs;
mod lua;
mod reply;

use crate::commands::error_text;
use crate::connection::Session;
use crate::shared::Shared;
use shardcast_engine::runtime::txn::HeldKeys;
use shardcast_engine::Core;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Scripts kept for EVALSHA (SCRIPT LOAD and every EVAL add theirs); past it, SCRIPT LOAD and
/// EVAL still run, and the oldest script is forgotten.
pub const SCRIPTS_MAX: usize = 10_000;
/// `busy-reply-threshold`'s default, as Redis's: 5 s.
pub const SCRIPT_TIME_LIMIT_DEFAULT_MS: u64 = 5000;
/// The largest script source.
pub const SCRIPT_BYTES_MAX: usize = 1024 * 1024;

/// Sources by SHA-1, and the SHA-1s in the order they were added (the oldest goes first).
type Scripts = (HashMap<String, std::sync::Arc<Vec<u8>>>, std::collections::VecDeque<String>);

/// The scripts known by their SHA-1, shared by every core.
pub struct ScriptCache {
    scripts: Mutex<Scripts>,
    /// The scripts running now, on any core (SCRIPT KILL).
    running: Mutex<Vec<std::sync::Arc<lua::Running>>>,
    /// `busy-reply-threshold` in ms (0: no limit, only SCRIPT KILL stops a script).
    time_limit_ms: AtomicU64,
}

impl ScriptCache {
    pub fn with_time_limit_ms(ms: u64) -> Self {
        ScriptCache {
            scripts: Mutex::default(),
            running: Mutex::default(),
            time_limit_ms: AtomicU64::new(ms),
        }
    }

    /// `busy-reply-threshold` (Redis's name; `lua-time-limit` is its alias): how long a
    /// script may run before it is stopped.
    pub fn time_limit_ms(&self) -> u64 {
        self.time_limit_ms.load(Ordering::Relaxed)
    }

    pub fn set_time_limit_ms(&self, ms: u64) {
        self.time_limit_ms.store(ms, Ordering::Relaxed);
    }

    fn time_limit(&self) -> Option<std::time::Duration> {
        Some(self.time_limit_ms()).filter(|&ms| ms > 0).map(std::time::Duration::from_millis)
    }

    fn add(&self, source: &[u8]) -> String {
        let sha = sha1_hex(source);
        let mut guard = self.scripts.lock().expect("no panic holds it");
        let (map, order) = &mut *guard;
        if !map.contains_key(&sha) {
            if map.len() >= SCRIPTS_MAX {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
            map.insert(sha.clone(), std::sync::Arc::new(source.to_vec()));
            order.push_back(sha.clone());
        }
        sha
    }

    fn get(&self, sha: &str) -> Option<std::sync::Arc<Vec<u8>>> {
        self.scripts.lock().expect("no panic holds it").0.get(sha).cloned()
    }

    fn flush(&self) {
        let mut guard = self.scripts.lock().expect("no panic holds it");
        guard.0.clear();
        guard.1.clear();
    }
}

/// The SHA-1 of `source` in lower-case hex, as Redis names scripts.
pub fn sha1_hex(source: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = sha1_smol::Sha1::from(source).digest().bytes();
    let mut out = String::with_capacity(40);
    for b in digest {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// A script ready to run: its source and its KEYS and ARGV.
struct Call {
    sha: String,
    source: std::sync::Arc<Vec<u8>>,
    keys: Vec<Vec<u8>>,
    argv: Vec<Vec<u8>>,
}

/// Reads EVAL's arguments (`by_sha`: EVALSHA's); the error reply if they are wrong.
fn call_of(shared: &Shared, args: &[Vec<u8>], by_sha: bool) -> Result<Call, String> {
    let (sha, source) = if by_sha {
        let sha = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
        match shared.scripts.get(&sha) {
            Some(src) => (sha, src),
            None => return Err("NOSCRIPT No matching script. Please use EVAL.".into()),
        }
    } else {
        if args[1].len() > SCRIPT_BYTES_MAX {
            return Err(format!("ERR a script is at most {SCRIPT_BYTES_MAX} bytes"));
        }
        (shared.scripts.add(&args[1]), std::sync::Arc::new(args[1].clone()))
    };
    let numkeys = keys_declared(args)?;
    Ok(Call {
        sha,
        source,
        keys: args[3..3 + numkeys].to_vec(),
        argv: args[3 + numkeys..].to_vec(),
    })
}

/// EVAL's `numkeys`, checked against its arguments.
fn keys_declared(args: &[Vec<u8>]) -> Result<usize, String> {
    match std::str::from_utf8(&args[2]).ok().and_then(|t| t.parse::<i64>().ok()) {
        Some(n) if n < 0 => Err("ERR Number of keys can't be negative".into()),
        Some(n) if n as usize > args.len() - 3 => {
            Err("ERR Number of keys can't be greater than number of args".into())
        }
        Some(n) => Ok(n as usize),
        None => Err(crate::commands::ERR_NOT_INTEGER.into()),
    }
}

/// The keys an EVAL-family command declares (none if its `numkeys` is wrong: it then fails
/// before it runs).
pub fn keys_of(args: &[Vec<u8>]) -> Vec<Vec<u8>> {
    match keys_declared(args) {
        Ok(n) => args[3..3 + n].to_vec(),
        Err(_) => Vec::new(),
    }
}

/// EVAL / EVAL_RO (`by_sha` false) and EVALSHA / EVALSHA_RO (`by_sha` true).
pub async fn eval(
    core: &Core,
    shared: &Shared,
    s: &mut Session,
    args: &[Vec<u8>],
    by_sha: bool,
    read_only: bool,
) {
    let call = match call_of(shared, args, by_sha) {
        Ok(call) => call,
        Err(e) => return s.w.error(&e),
    };
    // A connection whose scripts' keys live on another core moves there, as for key
    // commands, where its scripts run locally.
    for key in &call.keys {
        s.affinity.note(core.owner_of(key));
    }
    // Keys all in one shard of this core: the script runs synchronously, without locks.
    // A read-only script is not refused for memory (a full memory does not refuse reads).
    let writes = !read_only;
    if let Some(local) = core.local_run(&call.keys, s.client.app(), writes) {
        let slot = std::rc::Rc::new(std::cell::RefCell::new(Some(local)));
        // One poll, which runs the whole script: its `redis.call`s never wait. Were one to
        // wait, other ops could interleave with its unlocked keys and its open frame, so the
        // run would be stopped rather than resumed later (`LocalRun`'s invariant).
        let run = run_on(core, shared, s, call, lua::RunKeys::Local(slot.clone()), read_only);
        let outcome = futures_lite::future::poll_once(run).await.unwrap_or_else(|| {
            tracing::error!("a script on local keys waited; stopped");
            Err("ERR internal error: a script on local keys waited and was stopped".into())
        });
        let taken = slot.borrow_mut().take();
        let finished = match taken {
            Some(local) => local.finish().await,
            None => Ok(()),
        };
        return match (outcome, finished) {
            (_, Err(e)) => s.w.error(&error_text(&e)),
            (Ok(bytes), Ok(())) => s.w.buf.extend_from_slice(&bytes),
            (Err(text), Ok(())) => s.w.error(&text),
        };
    }
    let held = match core.hold_keys_watched(&call.keys, None, writes).await {
        Ok(Some(h)) => std::rc::Rc::new(h),
        Ok(None) => unreachable!("no watch to fail"),
        Err(e) => return s.w.error(&error_text(&e)),
    };
    let outcome = run_on(core, shared, s, call, lua::RunKeys::Held(held.clone()), read_only).await;
    // The hold ends (and what the script wrote commits) however the script ended.
    match std::rc::Rc::try_unwrap(held) {
        Ok(held) => held.release().await,
        Err(_) => tracing::error!("a script's hold outlived its run; released when dropped"),
    }
    match outcome {
        Ok(bytes) => s.w.buf.extend_from_slice(&bytes),
        Err(text) => s.w.error(&text),
    }
}

/// An EVAL-family command inside an EXEC whose hold covers the keys the script declares.
pub async fn eval_in_exec(
    core: &Core,
    shared: &Shared,
    s: &mut Session,
    args: &[Vec<u8>],
    held: std::rc::Rc<HeldKeys>,
    by_sha: bool,
    read_only: bool,
) {
    let outcome = match call_of(shared, args, by_sha) {
        Ok(call) => run_on(core, shared, s, call, lua::RunKeys::Held(held), read_only).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(bytes) => s.w.buf.extend_from_slice(&bytes),
        Err(text) => s.w.error(&text),
    }
}

/// Runs `call` on its keys (`keys`); its reply as RESP, or an error text.
async fn run_on(
    core: &Core,
    shared: &Shared,
    s: &Session,
    call: Call,
    keys: lua::RunKeys,
    read_only: bool,
) -> Result<Vec<u8>, String> {
    let run = lua::Run {
        keys,
        started: std::time::Instant::now(),
        time_limit: shared.scripts.time_limit(),
        declared: call.keys.iter().cloned().collect(),
        read_only,
        app: s.client.app(),
        core: core.handle(),
        eviction: shared.config.engine.eviction.clone(),
    };
    let running = std::sync::Arc::new(lua::Running::default());
    shared.scripts.running.lock().expect("no panic holds it").push(running.clone());
    // Off SCRIPT KILL's list however the run ends, its future dropped included.
    struct Listed<'a>(&'a ScriptCache, std::sync::Arc<lua::Running>);
    impl Drop for Listed<'_> {
        fn drop(&mut self) {
            let mut running = self.0.running.lock().expect("no panic holds it");
            running.retain(|r| !std::sync::Arc::ptr_eq(r, &self.1));
        }
    }
    let _listed = Listed(&shared.scripts, running.clone());
    lua::run(&call.sha, &call.source, call.keys, call.argv, run, running).await
}

/// SCRIPT LOAD | EXISTS | FLUSH | HELP.
pub fn script(shared: &Shared, s: &mut Session, args: &[Vec<u8>]) {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    match (sub.as_str(), args.len()) {
        ("load", 3) => {
            if args[2].len() > SCRIPT_BYTES_MAX {
                return s.w.error(&format!("ERR a script is at most {SCRIPT_BYTES_MAX} bytes"));
            }
            if let Err(e) = lua::compile_check(&args[2]) {
                return s.w.error(&e);
            }
            let sha = shared.scripts.add(&args[2]);
            s.w.bulk(sha.as_bytes());
        }
        ("exists", n) if n >= 3 => {
            s.w.array(n - 2);
            for a in &args[2..] {
                let sha = String::from_utf8_lossy(a).to_ascii_lowercase();
                s.w.int(shared.scripts.get(&sha).is_some() as i64);
            }
        }
        ("flush", 2 | 3) => {
            if let Some(mode) = args.get(2) {
                let m = String::from_utf8_lossy(mode).to_ascii_lowercase();
                if m != "sync" && m != "async" {
                    return s.w.error(crate::commands::ERR_SYNTAX);
                }
            }
            shared.scripts.flush();
            s.w.ok();
        }
        ("kill", 2) => {
            let running = shared.scripts.running.lock().expect("no panic holds it");
            if running.is_empty() {
                return s.w.error("NOTBUSY No scripts in execution right now.");
            }
            let killable: Vec<_> =
                running.iter().filter(|r| !r.wrote.load(Ordering::Relaxed)).collect();
            if killable.is_empty() {
                return s.w.error("UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.");
            }
            killable.iter().for_each(|r| r.kill.store(true, Ordering::Relaxed));
            s.w.ok();
        }
        ("help", 2) => s.w.lines(&[
            "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "EXISTS <sha1> [<sha1> ...]",
            "    Return information about the existence of the scripts in the script cache.",
            "KILL",
            "    Kill the currently executing Lua script.",
            "FLUSH [ASYNC|SYNC]",
            "    Flush the Lua scripts cache. Very dangerous on replicas.",
            "LOAD <script>",
            "    Load a script into the scripts cache without executing it.",
            "HELP",
            "    Print this help.",
        ]),
        ("load" | "exists" | "flush" | "kill" | "help", _) => {
            s.w.error(&format!("ERR wrong number of arguments for 'script|{sub}' command"))
        }
        _ => s.w.error(&format!(
            "ERR unknown subcommand '{}'. Try SCRIPT HELP.",
            String::from_utf8_lossy(&args[1])
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha1_is_redis_s_name_for_a_script() {
        // redis-cli SCRIPT LOAD "return 1"
        assert_eq!(super::sha1_hex(b"return 1"), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}
