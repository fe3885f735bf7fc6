//! Running scripts: each core's Lua 5.1 state (sealed: read-only libraries, Redis's `redis`
//! table), its compiled scripts, a run's environment (`KEYS`, `ARGV`), the conversions
//! between Lua values and RESP, and the limits.

use super::reply::{parse_reply, ReplyValue};
use crate::commands::{plan, render, Plan};
use crate::resp::Writer;
use crate::table::{lookup, Handler};
use mlua::{HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Value, VmState};
use shardcast_engine::runtime::txn::local::LocalRun;
use shardcast_engine::runtime::txn::HeldKeys;
use shardcast_engine::telemetry::AppId;
use shardcast_engine::{Core, EvictionPolicy, EvictionSettings};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most memory one script's Lua state may take.
pub const SCRIPT_MEMORY_MAX: usize = 64 * 1024 * 1024;
/// Lua instructions between two checks of the time limit and of SCRIPT KILL.
const HOOK_EVERY_INSTRUCTIONS: u32 = 10_000;
/// Deepest nesting of tables converted to a reply (and of replies converted to tables).
const NESTING_MAX: usize = 64;

/// How a run reaches its keys.
pub enum RunKeys {
    /// Locked wherever they live (`Core::hold_keys`); each `redis.call` awaits its ops.
    Held(Rc<HeldKeys>),
    /// All in one shard of this core, used synchronously (`Core::local_run`): the run never
    /// awaits. Emptied by the caller when the run ends, to commit it.
    Local(Rc<std::cell::RefCell<Option<LocalRun>>>),
}

/// What a running script may do, and what it holds.
pub struct Run {
    pub keys: RunKeys,
    /// When the run began (its time limit counts from it).
    pub started: Instant,
    /// How long it may run (`busy-reply-threshold`); past it, it is stopped with an error
    /// (what it wrote stays, and is committed). `None`: until SCRIPT KILL.
    pub time_limit: Option<Duration>,
    pub declared: HashSet<Vec<u8>>,
    pub read_only: bool,
    pub app: AppId,
    /// The core's memory and the eviction settings: under `noeviction` past `maxmemory`, a
    /// command that may grow memory is refused inside the script, as Redis refuses it.
    pub core: Rc<Core>,
    pub eviction: Arc<EvictionSettings>,
}

impl Run {
    fn refuses_growth(&self) -> bool {
        let max = self.eviction.maxmemory_bytes();
        self.eviction.policy() == EvictionPolicy::NoEviction
            && max > 0
            && self.core.used_memory() > max
    }
}

/// A run as `redis.call` finds it.
type RunContext = Rc<(Run, Arc<Running>)>;

/// Compiled scripts one core keeps (by SHA-1), and their source bytes; past either, the
/// core's cache starts over.
pub const COMPILED_PER_CORE_MAX: usize = 1000;
pub const COMPILED_BYTES_PER_CORE_MAX: usize = 8 * 1024 * 1024;
/// The largest reply a script may return (its RESP bytes): a table that holds itself many
/// times over would otherwise expand without bound.
pub const REPLY_BYTES_MAX: usize = 64 * 1024 * 1024;

/// A running script as SCRIPT KILL sees it.
#[derive(Default)]
pub struct Running {
    pub kill: AtomicBool,
    pub wrote: AtomicBool,
}

/// Checks that `source` compiles (SCRIPT LOAD).
pub fn compile_check(source: &[u8]) -> Result<(), String> {
    let state = core_state().map_err(|e| format!("ERR {e}"))?;
    compile(&state.lua, source).map(|_| ())
}

/// Compiles `source` as Redis does, into the body of a function (`function f_<sha>() ...
/// end` in Redis; here an anonymous one, returned by the chunk): each run calls the chunk
/// with its own environment set, so the function it gets back carries that environment, and
/// runs of the same script on one core, interleaved at their `redis.call`s, never share one.
/// A chunk is a valid function body exactly when it is a valid chunk (Lua's grammar has the
/// same `block` in both), but the errors differ, so the script is first compiled as it is,
/// for Redis 7's error text.
fn compile(lua: &Lua, source: &[u8]) -> Result<mlua::Function, String> {
    let compile_error = |e: mlua::Error| {
        let text = match e {
            mlua::Error::SyntaxError { message, .. } => message,
            other => other.to_string(),
        };
        format!("ERR Error compiling script (new function): {}", one_line(&text))
    };
    lua.load(source).set_name("@user_script").into_function().map_err(compile_error)?;
    let mut text = Vec::with_capacity(source.len() + 32);
    text.extend_from_slice(b"return function(...) ");
    text.extend_from_slice(source);
    text.extend_from_slice(b"\nend");
    lua.load(text).set_name("@user_script").into_function().map_err(compile_error)
}

/// This core's compiled chunk of the script `sha` (`compile`), compiled at its first run here.
fn compiled(lua: &Lua, sha: &str, source: &[u8]) -> Result<mlua::Function, String> {
    COMPILED.with(|cell| {
        if let Some(f) = cell.borrow().0.get(sha) {
            return Ok(f.clone());
        }
        let f = compile(lua, source)?;
        let mut cache = cell.borrow_mut();
        let (map, bytes) = &mut *cache;
        if map.len() >= COMPILED_PER_CORE_MAX || *bytes + source.len() > COMPILED_BYTES_PER_CORE_MAX
        {
            map.clear();
            *bytes = 0;
        }
        map.insert(sha.to_owned(), f.clone());
        *bytes += source.len();
        Ok(f)
    })
}

fn new_state() -> mlua::Result<CoreLua> {
    let lua = Lua::new_with(StdLib::STRING | StdLib::TABLE | StdLib::MATH, LuaOptions::default())?;
    lua.set_memory_limit(SCRIPT_MEMORY_MAX)?;
    super::libs::install(&lua, &lua.globals())?;
    lua.globals().set("redis", redis_table(&lua)?)?;
    // The state serves every script of its core, so no script may change what the next one
    // finds: scripts see a frozen copy of the globals, without what reads files, reaches the
    // real globals or outlives a run (dofile, loadfile, load, getfenv, setfenv, rawset,
    // print, coroutine), with every library behind a read-only proxy (and the table
    // functions that write raw refusing the proxies), collectgarbage limited to what changes
    // nothing for later runs, and the string metatable hidden. `loadstring` is made per run,
    // at its first use (`make_loadstring`): source text only, its chunk in that run's
    // environment.
    // The metatable of every run's environment reads through to that copy; reading a missing
    // global or creating one is an error, as in Redis.
    let guard: mlua::Table = lua
        .load(
            r#"local G = _G
            local readonly_tables = setmetatable({}, { __mode = "k" })
            local readonly = function() error("Attempt to modify a readonly table", 2) end
            local function proxy(lib)
              local p = setmetatable({}, { __index = lib, __newindex = readonly, __metatable = false })
              readonly_tables[p] = true
              return p
            end
            local banned = { dofile = true, loadfile = true, load = true, getfenv = true,
                             setfenv = true, rawset = true, print = true, _G = true,
                             newproxy = true, gcinfo = true, loadstring = true,
                             coroutine = true, module = true, require = true }
            local frozen = {}
            for k, v in pairs(G) do
              if not banned[k] then frozen[k] = v end
            end
            local tbl = {}
            for k, v in pairs(G.table) do tbl[k] = v end
            for _, name in ipairs({ "insert", "remove", "sort", "setn" }) do
              local f = G.table[name]
              if f then
                tbl[name] = function(t, ...)
                  if readonly_tables[t] then error("Attempt to modify a readonly table", 2) end
                  return f(t, ...)
                end
              end
            end
            frozen.table = tbl
            local collect = G.collectgarbage
            frozen.collectgarbage = function(opt, arg)
              opt = opt or "collect"
              if opt == "count" or opt == "collect" or opt == "step" then return collect(opt, arg) end
              error("collectgarbage('" .. tostring(opt) .. "') is not allowed: a core's scripts share the Lua state", 2)
            end
            for k, v in pairs(frozen) do
              if type(v) == "table" then frozen[k] = proxy(v) end
            end
            local loadstring, setfenv = G.loadstring, G.setfenv
            local function make_loadstring(env)
              return function(text, name)
                if type(text) ~= "string" or text:byte(1) == 27 then
                  return nil, "loadstring takes Lua source text"
                end
                local f, e = loadstring(text, name)
                if f then setfenv(f, env) end
                return f, e
              end
            end
            getmetatable("").__metatable = false
            local rawset = G.rawset
            return {
              __index = function(t, k)
                if k == "_G" then return proxy(t) end
                if k == "loadstring" then
                  -- Made at the run's first use, in its own environment `t`.
                  local f = make_loadstring(t)
                  rawset(t, k, f)
                  return f
                end
                local v = frozen[k]
                if v == nil then
                  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
                end
                return v
              end,
              __newindex = function(t, k)
                error("Script attempted to create global variable '" .. tostring(k) .. "'", 2)
              end,
              __metatable = false,
            }"#,
        )
        .eval()?;
    let empty_env = lua.create_table()?;
    Ok(CoreLua { lua, env_guard: guard, empty_env })
}

/// A core's Lua state and the tables every run uses.
#[derive(Clone)]
struct CoreLua {
    lua: Lua,
    /// The metatable of every run's environment (reads fall through to the frozen globals).
    env_guard: mlua::Table,
    /// The environment a cached chunk keeps between runs (none of a run's).
    empty_env: mlua::Table,
}

thread_local! {
    /// This core's Lua state, made at its first script and kept (each run has its own
    /// environment table in it; `new_state`).
    static STATE: std::cell::RefCell<Option<CoreLua>> = const { std::cell::RefCell::new(None) };
    /// This core's compiled scripts, by SHA-1 (`compiled`).
    static COMPILED: std::cell::RefCell<(HashMap<String, mlua::Function>, usize)> =
        std::cell::RefCell::new((HashMap::new(), 0));
    /// The runs in progress on this core, by their coroutine: how the one `redis.call` of
    /// the state finds its run. A run is removed when it ends, so the state never keeps
    /// held keys.
    static RUNS: std::cell::RefCell<HashMap<usize, RunContext>> =
        std::cell::RefCell::new(HashMap::new());
}

/// The `redis` table every script of a core shares (read-only, like the other libraries).
fn redis_table(lua: &Lua) -> mlua::Result<mlua::Table> {
    let redis = lua.create_table()?;
    for (name, protected) in [("call", false), ("pcall", true)] {
        let f = lua.create_async_function(move |lua, args: MultiValue| {
            let thread = lua.current_thread().to_pointer() as usize;
            let ctx = RUNS.with(|runs| runs.borrow().get(&thread).cloned());
            async move {
                let Some(ctx) = ctx else {
                    return Err(mlua::Error::runtime(
                        "ERR redis.call runs only in the script's own coroutine",
                    ));
                };
                call(&lua, &ctx.0, &ctx.1, args, protected).await
            }
        })?;
        redis.set(name, f)?;
    }
    // redis.error_reply(msg) is {err = msg}, redis.status_reply(msg) is {ok = msg}.
    for (name, field) in [("error_reply", "err"), ("status_reply", "ok")] {
        let f = lua.create_function(move |lua, msg: mlua::String| {
            let t = lua.create_table()?;
            t.set(field, msg)?;
            Ok(t)
        })?;
        redis.set(name, f)?;
    }
    redis.set(
        "sha1hex",
        lua.create_function(|_, s: mlua::String| Ok(super::sha1_hex(&s.as_bytes())))?,
    )?;
    redis.set("log", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
    for (i, name) in ["LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING"].iter().enumerate() {
        redis.set(*name, i as i64)?;
    }
    Ok(redis)
}

/// This core's Lua state.
fn core_state() -> mlua::Result<CoreLua> {
    STATE.with(|cell| {
        if let Some(state) = cell.borrow().as_ref() {
            return Ok(state.clone());
        }
        let state = new_state()?;
        *cell.borrow_mut() = Some(state.clone());
        Ok(state)
    })
}

fn one_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_owned()
}

/// Runs the script `sha` (`source`) with `KEYS` and `ARGV`; its reply as RESP, or an error
/// text.
pub async fn run(
    sha: &str,
    source: &[u8],
    keys: Vec<Vec<u8>>,
    argv: Vec<Vec<u8>>,
    run: Run,
    running: Arc<Running>,
) -> Result<Vec<u8>, String> {
    let state = core_state().map_err(|e| format!("ERR {e}"))?;
    let lua = &state.lua;
    let (started, limit) = (run.started, run.time_limit);
    let chunk = compiled(lua, sha, source)?;
    let setup = || -> mlua::Result<mlua::Thread> {
        // This run's globals: its own table over the shared libraries.
        let globals = lua.create_table()?;
        globals.set_metatable(Some(state.env_guard.clone()));
        globals.raw_set("KEYS", strings(lua, &keys)?)?;
        globals.raw_set("ARGV", strings(lua, &argv)?)?;
        chunk.set_environment(globals)?;
        let function: mlua::Function = chunk.call(())?;
        // The cached chunk must not keep this run's environment (its KEYS, ARGV) alive.
        chunk.set_environment(state.empty_env.clone())?;
        // The script runs in its own coroutine (redis.call awaits the engine there), which
        // the hook must be set on: Lua 5.1's hooks are per thread.
        lua.create_thread(function)
    };
    let thread = setup().map_err(|e| format!("ERR {e}"))?;
    let id = thread.to_pointer() as usize;
    RUNS.with(|runs| runs.borrow_mut().insert(id, Rc::new((run, running.clone()))));
    // The run leaves the registry however it ends (its future may also be dropped).
    struct Unregister(usize);
    impl Drop for Unregister {
        fn drop(&mut self) {
            RUNS.with(|runs| runs.borrow_mut().remove(&self.0));
        }
    }
    let _unregister = Unregister(id);
    arm_limits(&thread, started, limit, running);
    let value = thread.into_async::<Value>(()).await.map_err(|e| script_error(&e));
    let reply = value.and_then(|value| {
        let mut w = Writer { buf: Vec::new(), resp3: false };
        write_value(&mut w, &value, 0)?;
        Ok(w.buf)
    });
    // The state is shared by the core's runs: what this one left is collected before it
    // crowds out the next (Lua 5.1 has no emergency collection).
    if lua.used_memory() > SCRIPT_MEMORY_MAX / 2 {
        let _ = lua.gc_collect();
    }
    reply
}

/// Sets the time limit and SCRIPT KILL's check on `thread`, the coroutine of a run that began
/// at `started`. The state serves every script of this core and mlua keeps one hook per state
/// (for the thread set last), so a run re-arms it each time it resumes (`call`).
fn arm_limits(
    thread: &mlua::Thread,
    started: Instant,
    limit: Option<Duration>,
    running: Arc<Running>,
) {
    thread.set_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY_INSTRUCTIONS),
        move |_: &Lua, _: mlua::Debug| {
            if running.kill.load(Ordering::Relaxed) {
                return Err(mlua::Error::runtime("ERR Script killed by user with SCRIPT KILL..."));
            }
            if let Some(limit) = limit.filter(|&l| started.elapsed() > l) {
                return Err(mlua::Error::runtime(format!(
                    "ERR Script ran past busy-reply-threshold ({} ms) and was stopped",
                    limit.as_millis()
                )));
            }
            Ok(VmState::Continue)
        },
    );
}

/// A Lua error as the error reply of EVAL: a Redis error raised by `redis.call` keeps its
/// text (code first); anything else is reported as Redis reports a script's error.
fn script_error(e: &mlua::Error) -> String {
    let text = match e {
        mlua::Error::CallbackError { cause, .. } => return script_error(cause),
        mlua::Error::RuntimeError(t) => t.clone(),
        mlua::Error::MemoryError(_) => return "ERR script used more memory than allowed".into(),
        other => other.to_string(),
    };
    let line = one_line(&text);
    // `@user_script:3: ERR ...` from `error(...)` inside the script keeps its position.
    let code_first = line
        .split(' ')
        .next()
        .is_some_and(|w| w.len() > 1 && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
    if code_first {
        line
    } else {
        // Redis: "ERR user_script:1: boom script: <sha>, on @user_script:1."
        format!("ERR {line}")
    }
}

fn strings(lua: &Lua, items: &[Vec<u8>]) -> mlua::Result<mlua::Table> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        t.raw_set(i + 1, lua.create_string(item)?)?;
    }
    Ok(t)
}

/// `redis.call` (`protected` false: an error reply raises a Lua error) and `redis.pcall`
/// (the error comes back as a table `{err = ...}`).
async fn call(
    lua: &Lua,
    run: &Run,
    running: &Arc<Running>,
    args: MultiValue,
    protected: bool,
) -> mlua::Result<Value> {
    let done = call_inner(run, running, args).await;
    // Another script of this core may have run meanwhile and taken the state's hook.
    arm_limits(&lua.current_thread(), run.started, run.time_limit, running.clone());
    match done {
        Ok(bytes) => match parse_reply(&bytes) {
            Some((ReplyValue::Error(text), _)) if !protected => Err(mlua::Error::runtime(text)),
            Some((v, _)) => to_lua(lua, &v, 0),
            None => Err(mlua::Error::runtime("ERR internal error: an unreadable reply")),
        },
        Err(text) if protected => {
            let t = lua.create_table()?;
            t.set("err", text)?;
            Ok(Value::Table(t))
        }
        Err(text) => Err(mlua::Error::runtime(text)),
    }
}

/// Runs one command of a script; its reply as RESP bytes, or an error text that is not the
/// command's own reply (a command a script may not run, an undeclared key).
async fn call_inner(run: &Run, running: &Running, args: MultiValue) -> Result<Vec<u8>, String> {
    let mut argv: Vec<Vec<u8>> = Vec::with_capacity(args.len());
    for v in args.iter() {
        match v {
            Value::String(s) => argv.push(s.as_bytes().to_vec()),
            Value::Integer(i) => argv.push(i.to_string().into_bytes()),
            Value::Number(n) => argv.push(lua_number(*n).into_bytes()),
            _ => {
                return Err("ERR Lua redis lib command arguments must be strings or integers".into())
            }
        }
    }
    if argv.is_empty() {
        return Err("ERR Please specify at least one argument for this redis lib call".into());
    }
    let Some((_, spec)) = lookup(&argv[0]) else {
        return Err("ERR Unknown Redis command called from script".into());
    };
    if !spec.arity_ok(argv.len()) {
        return Err("ERR Wrong number of args calling Redis command from script".into());
    }
    let cmd = match spec.handler {
        Handler::Key(cmd) => cmd,
        // Commands that touch no key.
        Handler::Admin(crate::table::AdminCmd::Ping) if argv.len() <= 2 => {
            let mut w = Writer { buf: Vec::new(), resp3: false };
            match argv.get(1) {
                Some(msg) => w.bulk(msg),
                None => w.simple("PONG"),
            }
            return Ok(w.buf);
        }
        Handler::Admin(crate::table::AdminCmd::Echo) => {
            let mut w = Writer { buf: Vec::new(), resp3: false };
            w.bulk(&argv[1]);
            return Ok(w.buf);
        }
        Handler::Admin(crate::table::AdminCmd::Time) => {
            let us = crate::commands::now_us();
            let mut w = Writer { buf: Vec::new(), resp3: false };
            w.array(2);
            w.bulk((us / 1_000_000).to_string().as_bytes());
            w.bulk((us % 1_000_000).to_string().as_bytes());
            return Ok(w.buf);
        }
        _ => {
            return Err(format!(
                "ERR This Redis command is not allowed from script ('{}' runs outside a script's keys here)",
                spec.name
            ))
        }
    };
    if run.read_only && spec.has("write") {
        return Err("ERR Write commands are not allowed from read-only scripts.".into());
    }
    if spec.has("denyoom") && run.refuses_growth() {
        return Err("OOM command not allowed when used memory > 'maxmemory'.".into());
    }
    let mut ops = Vec::new();
    let planned = plan(cmd, spec.name, &mut argv, false, &mut ops);
    if let Some(op) = ops.iter().find(|op| !run.declared.contains(op.key())) {
        return Err(format!(
            "ERR Script attempted to access key '{}' that was not declared in KEYS",
            String::from_utf8_lossy(op.key())
        ));
    }
    if ops.iter().any(|op| op.mutates()) {
        running.wrote.store(true, Ordering::Relaxed);
    }
    let mut w = Writer { buf: Vec::new(), resp3: false };
    match planned {
        Plan::Reply(bytes) => w.buf = bytes,
        Plan::Ops { count, render: r } => {
            let results = match &run.keys {
                RunKeys::Held(held) => held.run(ops, run.app).await,
                RunKeys::Local(local) => match local.borrow_mut().as_mut() {
                    Some(local) => local.run(ops),
                    None => return Err("ERR the script's run has ended".into()),
                },
            };
            render(&mut w, r, &mut results.into_iter(), count);
        }
    }
    Ok(w.buf)
}

/// A Lua number as an argument: integral values without a fraction, as Lua prints them.
fn lua_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e17 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// RESP reply -> Lua, as Redis converts: integer -> number, bulk -> string, nil -> false,
/// array -> table, status -> {ok = ...}, error -> {err = ...}.
fn to_lua(lua: &Lua, v: &ReplyValue, depth: usize) -> mlua::Result<Value> {
    if depth > NESTING_MAX {
        return Err(mlua::Error::runtime("ERR reply nested too deeply"));
    }
    Ok(match v {
        ReplyValue::Int(i) => Value::Integer(*i),
        ReplyValue::Bulk(b) => Value::String(lua.create_string(b)?),
        ReplyValue::Nil => Value::Boolean(false),
        ReplyValue::Status(s) => {
            let t = lua.create_table()?;
            t.set("ok", lua.create_string(s)?)?;
            Value::Table(t)
        }
        ReplyValue::Error(s) => {
            let t = lua.create_table()?;
            t.set("err", lua.create_string(s)?)?;
            Value::Table(t)
        }
        ReplyValue::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item, depth + 1)?)?;
            }
            Value::Table(t)
        }
    })
}

/// Lua -> RESP, as Redis converts a script's return value: number -> integer (truncated),
/// string -> bulk, true -> 1, false and nil -> nil, {ok = s} -> status, {err = s} -> error,
/// other tables -> array up to the first nil.
fn write_value(w: &mut Writer, v: &Value, depth: usize) -> Result<(), String> {
    if w.buf.len() > REPLY_BYTES_MAX {
        return Err(format!("ERR the script's reply is larger than {REPLY_BYTES_MAX} bytes"));
    }
    match v {
        Value::Integer(i) => w.int(*i),
        Value::Number(n) => w.int(*n as i64),
        Value::String(s) => w.bulk(&s.as_bytes()),
        Value::Boolean(true) => w.int(1),
        Value::Table(t) if depth < NESTING_MAX => {
            if let Ok(Value::String(e)) = t.raw_get::<Value>("err") {
                w.error(&String::from_utf8_lossy(&e.as_bytes()));
                return Ok(());
            }
            if let Ok(Value::String(s)) = t.raw_get::<Value>("ok") {
                w.simple(&String::from_utf8_lossy(&s.as_bytes()));
                return Ok(());
            }
            let mut items = Vec::new();
            for i in 1.. {
                match t.raw_get::<Value>(i) {
                    Ok(Value::Nil) | Err(_) => break,
                    Ok(v) => items.push(v),
                }
            }
            w.array(items.len());
            for item in &items {
                write_value(w, item, depth + 1)?;
            }
        }
        Value::Table(_) => w.error("ERR reply nested too deeply"),
        _ => w.null(),
    }
    Ok(())
}
