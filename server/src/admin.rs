//! Commands that are not a slice of an engine batch: they change the session (AUTH, HELLO,
//! SELECT, CLIENT), need every core (DBSIZE, FLUSHALL, SCAN, KEYS, RANDOMKEY, INFO, MSETNX,
//! SHARDCAST), or describe the server (COMMAND, CONFIG, TIME, SHUTDOWN).

use crate::clients::{set_client_name, valid_client_name};
use crate::commands::{error_text, int_arg, now_ms, ERR_NOT_INTEGER, ERR_SYNTAX};
use crate::connection::Session;
use crate::resp::Writer;
use crate::shared::Shared;
use crate::table::{AdminCmd, Spec, COMMANDS};
use shardcast_engine::glob::glob_match;
use shardcast_engine::{Core, CoreResult, CoreWork, EngineError, EvictionPolicy, ShardSummary};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// The version clients see (Redis commands and replies of this version).
pub const REDIS_COMPAT_VERSION: &str = "7.0.0";
/// Most keys KEYS returns before it refuses (it would otherwise build an unbounded reply).
pub const KEYS_REPLY_MAX: usize = 10_000_000;
/// COUNT above this is clamped (a single SCAN step stays bounded).
pub const SCAN_COUNT_MAX: usize = 100_000;

pub(crate) fn lower(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_lowercase()
}

pub(crate) fn unknown_subcommand(w: &mut Writer, sub: &[u8], cmd: &str) {
    w.error(&format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        String::from_utf8_lossy(sub),
        cmd.to_ascii_uppercase()
    ));
}

/// Runs one command that ends a batch (its arity already checked), writing its reply into
/// `s.w`. The match is exhaustive: a new `AdminCmd` does not compile until it is handled here.
pub async fn run(core: &Core, shared: &Shared, s: &mut Session, cmd: AdminCmd, args: Vec<Vec<u8>>) {
    use AdminCmd::*;
    match cmd {
        Ping => match args.get(1) {
            Some(msg) if args.len() == 2 => s.w.bulk(msg),
            None => s.w.simple("PONG"),
            _ => s.w.error("ERR wrong number of arguments for 'ping' command"),
        },
        Echo => s.w.bulk(&args[1]),
        Quit => {
            s.w.ok();
            s.close = true;
        }
        Time => {
            let us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            s.w.array(2);
            s.w.bulk((us / 1_000_000).to_string().as_bytes());
            s.w.bulk((us % 1_000_000).to_string().as_bytes());
        }
        Select => match int_arg(&args[1]) {
            Ok(0) => s.w.ok(),
            Ok(_) => s.w.error("ERR DB index is out of range"),
            Err(e) => s.w.error(&e),
        },
        Auth => auth(shared, s, &args),
        Hello => hello(shared, s, &args),
        Client => crate::clients::client(shared, s, &args),
        Command => command(s, &args),
        Config => config(core, shared, s, &args),
        Info => info(core, shared, s, &args).await,
        DbSize => match core.dbsize().await {
            Ok(n) => s.w.int(n as i64),
            Err(e) => s.w.error(&error_text(&e)),
        },
        FlushAll | FlushDb => {
            if args.len() > 2
                || args.get(1).is_some_and(|a| !matches!(lower(a).as_str(), "async" | "sync"))
            {
                return s.w.error(ERR_SYNTAX);
            }
            match core.flush_all_data().await {
                Err(e) => s.w.error(&error_text(&e)),
                Ok(()) => s.w.ok(),
            }
        }
        Scan => scan(core, s, &args).await,
        Keys => keys(core, s, &args[1]).await,
        RandomKey => randomkey(core, s).await,
        MSetNx => msetnx(core, s, args).await,
        Shutdown => {
            for a in &args[1..] {
                if !matches!(lower(a).as_str(), "nosave" | "save" | "now" | "force") {
                    return s.w.error(ERR_SYNTAX);
                }
            }
            tracing::info!("SHUTDOWN requested by client {}", s.client.id);
            core.request_stop();
            s.close = true;
        }
        BgSave => crate::backup::bgsave(core, &shared.backups, &shared.config.backup_dir, s, &args),
        Save => crate::backup::save(core, &shared.backups, &shared.config.backup_dir, s).await,
        LastSave => s.w.int(shared.backups.last_save_unix_s() as i64),
        Shardcast => crate::shardcast::run(core, shared, s, &args).await,
        Debug => debug(s, &args),
        SlowLog => crate::observe::slowlog(shared, s, &args),
        Latency => crate::observe::latency(shared, s, &args),
        Memory => crate::observe::memory(core, shared, s, &args).await,
        Monitor => crate::observe::monitor(s),
        Multi => crate::transaction::multi(s),
        Exec => crate::transaction::exec(core, shared, s).await,
        Discard => crate::transaction::discard(core, s).await,
        Watch => crate::transaction::watch(core, s, &args).await,
        Unwatch => crate::transaction::unwatch(core, s).await,
        Rename => crate::rename::rename(core, s, &args, false).await,
        RenameNx => crate::rename::rename(core, s, &args, true).await,
        Copy => crate::rename::copy(core, s, &args).await,
        Eval => crate::scripting::eval(core, shared, s, &args, false, false).await,
        EvalRo => crate::scripting::eval(core, shared, s, &args, false, true).await,
        EvalSha => crate::scripting::eval(core, shared, s, &args, true, false).await,
        EvalShaRo => crate::scripting::eval(core, shared, s, &args, true, true).await,
        Script => crate::scripting::script(shared, s, &args),
    }
}

/// The longest DEBUG SLEEP.
pub const DEBUG_SLEEP_SECONDS_MAX: f64 = 60.0;

/// DEBUG SLEEP <seconds>: blocks this connection's core, as Redis's blocks its one thread
/// (to test what a stalled core looks like: its health, its clients' latency).
fn debug(s: &mut Session, args: &[Vec<u8>]) {
    match (lower(&args[1]).as_str(), args.len()) {
        ("sleep", 3) => {
            let secs = std::str::from_utf8(&args[2]).ok().and_then(|t| t.parse::<f64>().ok());
            match secs {
                Some(v) if (0.0..=DEBUG_SLEEP_SECONDS_MAX).contains(&v) => {
                    std::thread::sleep(std::time::Duration::from_secs_f64(v));
                    s.w.ok();
                }
                Some(_) => s.w.error(&format!(
                    "ERR DEBUG SLEEP takes 0 to {DEBUG_SLEEP_SECONDS_MAX} seconds"
                )),
                None => s.w.error("ERR value is not a valid float"),
            }
        }
        ("help", 2) => {
            s.w.array(2);
            s.w.simple("DEBUG SLEEP <seconds>");
            s.w.simple("    Stop the server's core serving this connection for <seconds>.");
        }
        _ => s.w.error(
            "ERR unknown subcommand or wrong number of arguments for 'debug'. Try DEBUG HELP.",
        ),
    }
}

/// Whether `user`/`given` authenticate: the default user with the password, or with any
/// password when none is set (Redis 7's `nopass` default user).
fn credentials_ok(shared: &Shared, user: &[u8], given: &[u8]) -> bool {
    user == b"default" && shared.password().is_none_or(|p| given == p.as_bytes())
}

fn auth(shared: &Shared, s: &mut Session, args: &[Vec<u8>]) {
    let (user, given) = match args.len() {
        2 if shared.password().is_none() => {
            return s.w.error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
        }
        2 => (&b"default"[..], &args[1]),
        3 => (&args[1][..], &args[2]),
        _ => return s.w.error(ERR_SYNTAX),
    };
    if credentials_ok(shared, user, given) {
        s.authenticated = true;
        s.w.ok();
    } else {
        s.w.error("WRONGPASS invalid username-password pair or user is disabled.");
    }
}

fn hello(shared: &Shared, s: &mut Session, args: &[Vec<u8>]) {
    let mut proto = if s.w.resp3 { 3 } else { 2 };
    let mut i = 1;
    if let Some(v) = args.get(1) {
        match int_arg(v) {
            Ok(p @ (2 | 3)) => proto = p,
            Ok(_) => return s.w.error("NOPROTO unsupported protocol version"),
            Err(_) => return s.w.error("ERR Protocol version is not an integer or out of range"),
        }
        i = 2;
    }
    let mut new_name = None;
    let mut credentials = None;
    while i < args.len() {
        match lower(&args[i]).as_str() {
            "auth" if i + 2 < args.len() => {
                credentials = Some((&args[i + 1], &args[i + 2]));
                i += 3;
            }
            "setname" if i + 1 < args.len() => {
                if !valid_client_name(&args[i + 1]) {
                    return s.w.error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                }
                new_name = Some(args[i + 1].clone());
                i += 2;
            }
            _ => {
                return s.w.error(&format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&args[i])
                ))
            }
        }
    }
    if let Some((user, given)) = credentials {
        if !credentials_ok(shared, user, given) {
            return s.w.error("WRONGPASS invalid username-password pair or user is disabled.");
        }
        s.authenticated = true;
    }
    if shared.auth_required() && !s.authenticated {
        return s.w.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(name) = new_name {
        set_client_name(s, name);
    }
    s.w.resp3 = proto == 3;
    s.client.resp3.store(s.w.resp3, Ordering::Relaxed);
    s.w.map(7);
    s.w.bulk(b"server");
    s.w.bulk(b"redis");
    s.w.bulk(b"version");
    s.w.bulk(REDIS_COMPAT_VERSION.as_bytes());
    s.w.bulk(b"proto");
    s.w.int(proto);
    s.w.bulk(b"id");
    s.w.int(s.client.id as i64);
    s.w.bulk(b"mode");
    s.w.bulk(b"standalone");
    s.w.bulk(b"role");
    s.w.bulk(b"master");
    s.w.bulk(b"modules");
    s.w.array(0);
}

fn command_info(w: &mut Writer, spec: &Spec) {
    w.array(10);
    w.bulk(spec.name.as_bytes());
    w.int(spec.arity as i64);
    w.set(spec.flags.len());
    for f in spec.flags {
        w.simple(f);
    }
    w.int(spec.first_key as i64);
    w.int(spec.last_key as i64);
    w.int(spec.step as i64);
    w.set(0);
    w.set(0);
    w.array(0);
    w.array(0);
}

fn command_docs(w: &mut Writer, spec: &Spec) {
    w.bulk(spec.name.as_bytes());
    w.map(3);
    w.bulk(b"summary");
    w.bulk(spec.summary.as_bytes());
    w.bulk(b"since");
    w.bulk(spec.since.as_bytes());
    w.bulk(b"group");
    w.bulk(spec.group.as_bytes());
}

fn command(s: &mut Session, args: &[Vec<u8>]) {
    let Some(sub) = args.get(1).map(|a| lower(a)) else {
        s.w.array(COMMANDS.len());
        for spec in COMMANDS {
            command_info(&mut s.w, spec);
        }
        return;
    };
    let named = |args: &[Vec<u8>]| -> Vec<Option<&'static Spec>> {
        args.iter().map(|a| crate::table::lookup(a).map(|(_, s)| s)).collect()
    };
    match sub.as_str() {
        "count" if args.len() == 2 => s.w.int(COMMANDS.len() as i64),
        "info" => {
            let specs: Vec<_> = if args.len() == 2 {
                COMMANDS.iter().map(Some).collect()
            } else {
                named(&args[2..])
            };
            s.w.array(specs.len());
            for spec in specs {
                match spec {
                    Some(spec) => command_info(&mut s.w, spec),
                    None => s.w.null_array(),
                }
            }
        }
        "docs" => {
            let specs: Vec<_> = if args.len() == 2 {
                COMMANDS.iter().collect()
            } else {
                named(&args[2..]).into_iter().flatten().collect()
            };
            s.w.map(specs.len());
            for spec in specs {
                command_docs(&mut s.w, spec);
            }
        }
        "list" => {
            s.w.array(COMMANDS.len());
            for spec in COMMANDS {
                s.w.bulk(spec.name.as_bytes());
            }
        }
        _ => unknown_subcommand(&mut s.w, &args[1], "command"),
    }
}

/// The largest `maxclients` CONFIG SET takes (what a TOML integer holds).
const MAXCLIENTS_MAX: u64 = i64::MAX as u64;

/// The parameters CONFIG GET knows, with their current values.
fn config_params(shared: &Shared) -> Vec<(&'static str, String)> {
    let c = &shared.config;
    vec![
        ("maxmemory", shared.eviction().maxmemory_bytes().to_string()),
        ("maxmemory-policy", shared.eviction().policy().name().into()),
        ("maxmemory-samples", shared.eviction().samples().to_string()),
        ("maxclients", shared.maxclients.load(Ordering::Relaxed).to_string()),
        ("busy-reply-threshold", shared.scripts.time_limit_ms().to_string()),
        ("lua-time-limit", shared.scripts.time_limit_ms().to_string()),
        ("proto-max-bulk-len", shared.proto_max_bulk_len.load(Ordering::Relaxed).to_string()),
        ("client-query-buffer-limit", c.query_buffer_max_bytes.to_string()),
        ("requirepass", shared.password().unwrap_or_default()),
        ("port", c.port.to_string()),
        ("bind", c.bind.clone()),
        ("dir", c.engine.data_dir.display().to_string()),
        ("appendonly", "yes".into()),
        ("appendfsync", c.engine.fsync.to_string()),
        ("save", String::new()),
        ("databases", "1".into()),
        ("timeout", "0".into()),
        ("telemetry", if c.engine.telemetry.is_on() { "yes" } else { "no" }.into()),
        ("tick-ms", c.engine.tick_ms.to_string()),
        ("slowlog-log-slower-than", shared.observe.slowlog.slower_than_us().to_string()),
        ("slowlog-max-len", shared.observe.slowlog.max_len().to_string()),
        ("latency-monitor-threshold", shared.observe.events.threshold_ms().to_string()),
        ("latency-tracking", if shared.observe.tracking() { "yes" } else { "no" }.into()),
        (
            "latency-tracking-info-percentiles",
            shared
                .observe
                .percentiles()
                .iter()
                .map(|p| crate::stats::percentile_text(*p))
                .collect::<Vec<_>>()
                .join(" "),
        ),
    ]
}

fn config(core: &Core, shared: &Shared, s: &mut Session, args: &[Vec<u8>]) {
    match lower(&args[1]).as_str() {
        "get" if args.len() >= 3 => {
            let params = config_params(shared);
            let mut out: Vec<&(&str, String)> = Vec::new();
            for pattern in &args[2..] {
                let pattern = pattern.to_ascii_lowercase();
                for p in &params {
                    if glob_match(&pattern, p.0.as_bytes()) && !out.iter().any(|o| o.0 == p.0) {
                        out.push(p);
                    }
                }
            }
            s.w.map(out.len());
            for (k, v) in out {
                s.w.bulk(k.as_bytes());
                s.w.bulk(v.as_bytes());
            }
        }
        "set" if args.len() >= 4 && args.len().is_multiple_of(2) => {
            let mut updates = Vec::new();
            for pair in args[2..].chunks(2) {
                let name = lower(&pair[0]);
                let value = String::from_utf8_lossy(&pair[1]).into_owned();
                let parsed = match name.as_str() {
                    "maxclients" => match value.parse::<u64>() {
                        Ok(0) => Err("argument must be at least 1".into()),
                        Ok(v) if v > MAXCLIENTS_MAX => {
                            Err(format!("argument must be at most {MAXCLIENTS_MAX}"))
                        }
                        Ok(v) => Ok(v),
                        Err(_) => Err("argument couldn't be parsed into an integer".into()),
                    },
                    "maxmemory" | "proto-max-bulk-len" => crate::config::parse_memory(&value)
                        .and_then(|v| match name.as_str() {
                            "proto-max-bulk-len"
                                if !(1024..=crate::config::PROTO_MAX_BULK_LEN_DEFAULT)
                                    .contains(&v) =>
                            {
                                Err("argument must be between 1kb and 512mb".into())
                            }
                            // The start refuses a file where the bulk limit is above the
                            // query buffer's (CONFIG REWRITE would write one).
                            "proto-max-bulk-len" if v > shared.config.query_buffer_max_bytes => {
                                Err("argument must not be above client-query-buffer-limit".into())
                            }
                            "maxclients" if v == 0 => Err("argument must be at least 1".into()),
                            _ => Ok(v),
                        }),
                    "maxmemory-policy" => {
                        crate::config::parse_policy(&value).map(|p| p as u64).map_err(|_| {
                            "argument(s) must be one of the following: volatile-lru, \
                             volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, \
                             allkeys-lfu, allkeys-random, noeviction"
                                .to_string()
                        })
                    }
                    "maxmemory-samples" => match value.parse::<i64>() {
                        Ok(n) => crate::config::check_samples(usize::try_from(n).unwrap_or(0))
                            .map(|n| n as u64),
                        Err(_) => Err("argument couldn't be parsed into an integer".into()),
                    },
                    "busy-reply-threshold" | "lua-time-limit" => match value.parse::<i64>() {
                        Ok(v) if v >= 0 => Ok(v as u64),
                        Ok(_) => {
                            Err("argument must be between 0 and 9223372036854775807 inclusive"
                                .into())
                        }
                        Err(_) => Err("argument couldn't be parsed into an integer".into()),
                    },
                    "requirepass" => Ok(0),
                    "telemetry" | "latency-tracking" => {
                        crate::config::parse_yes_no(&value).map(u64::from)
                    }
                    "slowlog-log-slower-than" => match value.parse::<i64>() {
                        Ok(v) if v >= -1 => Ok(v as u64),
                        Ok(_) => {
                            Err("argument must be between -1 and 9223372036854775807 inclusive"
                                .into())
                        }
                        Err(_) => Err("argument couldn't be parsed into an integer".into()),
                    },
                    "slowlog-max-len" => match value.parse::<u64>() {
                        Ok(v) if v <= crate::stats::slowlog::SLOWLOG_LEN_MAX => Ok(v),
                        Ok(_) => Err(format!(
                            "argument must be between 0 and {} inclusive",
                            crate::stats::slowlog::SLOWLOG_LEN_MAX
                        )),
                        Err(_) => Err("argument couldn't be parsed into an integer".into()),
                    },
                    "latency-monitor-threshold" => match value.parse::<u64>() {
                        Ok(v) if v <= i64::MAX as u64 => Ok(v),
                        _ => Err("argument couldn't be parsed into an integer".into()),
                    },
                    "latency-tracking-info-percentiles" => {
                        crate::stats::parse_percentiles(&value).map(|_| 0)
                    }
                    _ => {
                        return s.w.error(&format!(
                            "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                        ))
                    }
                };
                match parsed {
                    Ok(v) => updates.push((name, value, v)),
                    Err(e) => {
                        return s.w.error(&format!(
                            "ERR CONFIG SET failed (possibly related to argument '{name}') - {e}"
                        ))
                    }
                }
            }
            for (name, value, v) in updates {
                match name.as_str() {
                    "maxmemory" => shared.eviction().set_maxmemory_bytes(v),
                    "maxmemory-policy" => {
                        shared.eviction().set_policy(EvictionPolicy::ALL[v as usize])
                    }
                    "maxmemory-samples" => shared.eviction().set_samples(v as usize),
                    "maxclients" => shared.maxclients.store(v, Ordering::Relaxed),
                    "busy-reply-threshold" | "lua-time-limit" => {
                        shared.scripts.set_time_limit_ms(v)
                    }
                    "proto-max-bulk-len" => shared.proto_max_bulk_len.store(v, Ordering::Relaxed),
                    "telemetry" => shared.config.engine.telemetry.set(v == 1),
                    "latency-tracking" => shared.observe.tracking.store(v == 1, Ordering::Relaxed),
                    // -1 travels as u64::MAX.
                    "slowlog-log-slower-than" => {
                        shared.observe.slowlog.set_slower_than_us(v as i64)
                    }
                    "slowlog-max-len" => shared.observe.slowlog.set_max_len(v),
                    "latency-monitor-threshold" => shared.observe.events.set_threshold_ms(v),
                    "latency-tracking-info-percentiles" => {
                        let parsed = crate::stats::parse_percentiles(&value).unwrap_or_default();
                        *shared.observe.percentiles.write().expect("percentiles poisoned") = parsed;
                    }
                    _ => shared.set_password(Some(value).filter(|p| !p.is_empty())),
                }
            }
            s.w.ok();
        }
        "rewrite" if args.len() == 2 => match crate::config_rewrite::rewrite(shared) {
            Ok(()) => s.w.ok(),
            Err(e) => s.w.error(&e),
        },
        "resetstat" if args.len() == 2 => {
            shared.stats.commands.reset();
            shared.stats.keyspace_hits.reset();
            shared.stats.keyspace_misses.reset();
            shared.observe.reset();
            core.memory().reset_counters();
            s.w.ok();
        }
        "get" | "set" | "resetstat" | "rewrite" => s.w.error(&format!(
            "ERR wrong number of arguments for 'config|{}' command",
            lower(&args[1])
        )),
        _ => unknown_subcommand(&mut s.w, &args[1], "config"),
    }
}

/// Every core's shards, or the first core's failure to answer: a silent core must not look
/// like an empty one.
pub(crate) async fn shard_summaries(core: &Core) -> Result<Vec<ShardSummary>, EngineError> {
    let mut all = Vec::new();
    for r in core.on_every_core(CoreWork::ShardInfo, "shard info").await {
        match r {
            CoreResult::Shards(v) => all.extend(v),
            CoreResult::Done(Err(e)) => return Err(e),
            other => {
                return Err(EngineError::Unavailable {
                    reason: format!("shard info answered with {other:?}"),
                })
            }
        }
    }
    all.sort_by_key(|s| s.number);
    Ok(all)
}

async fn info(core: &Core, shared: &Shared, s: &mut Session, args: &[Vec<u8>]) {
    let wanted: Vec<String> = args[1..].iter().map(|a| lower(a)).collect();
    let all = wanted.is_empty()
        || wanted.iter().any(|w| w == "all" || w == "everything" || w == "default");
    let want = |name: &str| all || wanted.iter().any(|w| w == name);
    // Not in the default INFO, as in Redis: only asked for, or with `all`/`everything`.
    let want_extra =
        |name: &str| wanted.iter().any(|w| w == name || w == "all" || w == "everything");
    let mut out = String::new();
    let c = &shared.config;
    if want("server") {
        let uptime = shared.started.elapsed().as_secs();
        let _ = write!(
            out,
            "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\nshardcast_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nmultiplexing_api:io_uring\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nexecutable:{}\r\nconfig_file:{}\r\ncores:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            shared.run_id,
            c.port,
            now_ms() * 1000,
            uptime / 86400,
            std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
            c.config_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            core.cores(),
        );
    }
    if want("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n\r\n",
            shared.connected_clients(),
            shared.maxclients.load(Ordering::Relaxed)
        );
    }
    if want("memory") {
        let used = core.used_memory();
        let _ = write!(
            out,
            "# Memory\r\nused_memory:{used}\r\nused_memory_human:{:.2}M\r\nused_memory_rss:{}\r\nmaxmemory:{}\r\nmaxmemory_policy:{}\r\nmaxmemory_samples:{}\r\n\r\n",
            used as f64 / 1048576.0,
            rss_bytes(),
            shared.eviction().maxmemory_bytes(),
            shared.eviction().policy().name(),
            shared.eviction().samples(),
        );
    }
    let (shards, shards_missing) = match want("keyspace") || want("shards") || want("persistence") {
        false => (Vec::new(), None),
        true => match shard_summaries(core).await {
            Ok(v) => (v, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        },
    };
    if want("persistence") {
        // Redis's aof_last_write_status: err while any shard refuses writes (a failed log, or
        // a full disk until space returns), with the first reason.
        let refusing: Vec<&str> =
            shards.iter().filter_map(|s| s.refuses_writes.as_deref()).collect();
        let _ = write!(
            out,
            "# Persistence\r\nloading:0\r\naof_enabled:1\r\nappendfsync:{}\r\naof_last_write_status:{}\r\nshards_refusing_writes:{}\r\nshards_refusing_writes_reason:{}\r\ndata_dir:{}\r\n",
            c.engine.fsync,
            if refusing.is_empty() && shards_missing.is_none() { "ok" } else { "err" },
            refusing.len(),
            refusing.first().copied().or(shards_missing.as_deref()).unwrap_or(""),
            c.engine.data_dir.display()
        );
        shared.backups.info(&mut out, &shared.config.backup_dir);
        out.push_str("\r\n");
    }
    if want("stats") {
        let st = &shared.stats;
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\ntotal_error_replies:{}\r\n\r\n",
            st.connections_received.load(Ordering::Relaxed),
            st.commands.total(),
            st.rejected_connections.load(Ordering::Relaxed),
            core.memory().expired_total(),
            core.memory().evicted_total(),
            st.keyspace_hits.total(),
            st.keyspace_misses.total(),
            shared.observe.errors.total(),
        );
    }
    if want("keyspace") {
        let keys: u64 = shards.iter().map(|s| s.keys).sum();
        let expires: u64 = shards.iter().map(|s| s.expiring_keys).sum();
        out.push_str("# Keyspace\r\n");
        if let Some(why) = &shards_missing {
            // INFO answers whatever a core does; the gap is said, not hidden.
            let _ = write!(out, "keyspace_unavailable:{why}\r\n");
        }
        if keys > 0 {
            let _ = write!(out, "db0:keys={keys},expires={expires},avg_ttl=0\r\n");
        }
        out.push_str("\r\n");
    }
    crate::observe::info_sections(shared, &mut out, &|name| match name {
        "errorstats" => want(name),
        _ => want_extra(name),
    });
    if want("predictor") {
        crate::shardcast::info_predictor(shared, &mut out);
    }
    if want("shards") {
        let m = core.migration_counters();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let (last_bytes, last_us) = (load(&m.last_bytes), load(&m.last_micros));
        let _ = write!(
            out,
            "# Shards\r\nshard_map_epoch:{}\r\nmigrations_completed:{}\r\nmigrations_aborted:{}\r\nmigration_bytes_total:{}\r\nmigration_keys_total:{}\r\nmigration_last_bytes:{last_bytes}\r\nmigration_last_keys:{}\r\nmigration_last_ms:{:.3}\r\nmigration_last_mb_per_sec:{:.1}\r\nmigration_last_pause_ms:{:.3}\r\nshards:{}\r\nshared_shards:{}\r\npartitions_with_own_shards:{}\r\n",
            core.map_epoch(),
            load(&m.completed),
            load(&m.aborted),
            load(&m.bytes_total),
            load(&m.keys_total),
            load(&m.last_keys),
            last_us as f64 / 1000.0,
            if last_us > 0 { last_bytes as f64 / last_us as f64 } else { 0.0 },
            load(&m.last_pause_micros) as f64 / 1000.0,
            shards.len(),
            shards.iter().filter(|s| s.partition.is_none()).count(),
            core.shard_map().partitions_with_shards().len(),
        );
        if let Some(why) = &shards_missing {
            let _ = write!(out, "shards_unavailable:{why}\r\n");
        }
        for (i, sh) in shards.iter().enumerate() {
            let _ = write!(
                out,
                "shard{i}:partition={},number={},core={},ranges={},keys={},bytes={},reads={},writes={},deletes={},others={},snapshots={},ops_per_sec={:.0},state={},health={}\r\n",
                crate::shardcast::shard_partition(sh),
                sh.number,
                sh.core,
                sh.ranges.len(),
                sh.keys,
                sh.used_bytes,
                sh.reads,
                sh.writes,
                sh.deletes,
                sh.others,
                sh.snapshots,
                sh.ops_per_sec,
                if sh.failure.is_some() { "failed" } else { "serving" },
                crate::shardcast::shard_health(shared, sh.number).0,
            );
        }
        crate::shardcast::info_health(shared, &mut out);
        out.push_str("\r\n");
    }
    s.w.bulk(out.as_bytes());
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|t| t.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

async fn scan(core: &Core, s: &mut Session, args: &[Vec<u8>]) {
    let Some(cursor) = std::str::from_utf8(&args[1]).ok().and_then(|c| c.parse::<u64>().ok())
    else {
        return s.w.error("ERR invalid cursor");
    };
    let (mut pattern, mut count, mut type_ok) = (None, 10usize, true);
    let mut i = 2;
    while i < args.len() {
        if i + 1 >= args.len() {
            return s.w.error(ERR_SYNTAX);
        }
        match lower(&args[i]).as_str() {
            "match" => pattern = Some(args[i + 1].clone()).filter(|p| p != b"*"),
            "count" => match int_arg(&args[i + 1]) {
                Ok(n) if n >= 1 => count = (n as usize).min(SCAN_COUNT_MAX),
                Ok(_) => return s.w.error(ERR_SYNTAX),
                Err(_) => return s.w.error(ERR_NOT_INTEGER),
            },
            "type" => type_ok = args[i + 1].eq_ignore_ascii_case(b"string"),
            _ => return s.w.error(ERR_SYNTAX),
        }
        i += 2;
    }
    match core.scan(cursor, count, pattern).await {
        Ok((next, keys)) => {
            s.w.array(2);
            s.w.bulk(next.to_string().as_bytes());
            let keys = if type_ok { keys } else { Vec::new() };
            s.w.array(keys.len());
            for k in keys {
                s.w.bulk(&k);
            }
        }
        Err(e) => s.w.error(&error_text(&e)),
    }
}

async fn keys(core: &Core, s: &mut Session, pattern: &[u8]) {
    let pattern = if pattern == b"*" { None } else { Some(pattern.to_vec()) };
    let mut all = Vec::new();
    // Every core held: no transaction is seen on one core and not yet on another.
    let read = core.on_every_core_settled(CoreWork::Keys { pattern, max: KEYS_REPLY_MAX });
    let answers = match core.with_every_core_held("KEYS", read).await.and_then(|r| r) {
        Ok(a) => a,
        Err(e) => return s.w.error(&error_text(&e)),
    };
    for r in answers {
        match r {
            CoreResult::Keys { truncated: true, .. } => {
                return s.w.error("ERR KEYS would return too many keys; use SCAN");
            }
            CoreResult::Keys { keys, .. } => all.extend(keys),
            CoreResult::Done(Err(e)) => return s.w.error(&error_text(&e)),
            other => return unexpected_answer(s, "KEYS", &other),
        }
    }
    if all.len() > KEYS_REPLY_MAX {
        return s.w.error("ERR KEYS would return too many keys; use SCAN");
    }
    s.w.array(all.len());
    for k in all {
        s.w.bulk(&k);
    }
}

/// A core's answer that does not fit the work it was sent: a server bug, answered as an error
/// on this command rather than a panic that would take the core down.
fn unexpected_answer(s: &mut Session, cmd: &str, answer: &CoreResult) {
    tracing::error!("{cmd}: unexpected answer from a core: {answer:?}");
    s.w.error(&format!("ERR internal error: unexpected answer from a core to {cmd}"));
}

async fn randomkey(core: &Core, s: &mut Session) {
    let seed = now_ms() ^ s.client.id.rotate_left(32);
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for r in core.on_every_core(CoreWork::RandomKey { seed }, "RANDOMKEY").await {
        match r {
            CoreResult::Key(Some(k)) => keys.push(k),
            CoreResult::Key(None) => {}
            CoreResult::Done(Err(e)) => return s.w.error(&error_text(&e)),
            other => return unexpected_answer(s, "RANDOMKEY", &other),
        }
    }
    // One candidate per core that has keys; pick among them.
    match keys.len() {
        0 => s.w.null(),
        n => s.w.bulk(&keys[(seed % n as u64) as usize]),
    }
}

/// MSETNX over keys that live on several cores or shards: all held (`Core::hold_keys`),
/// checked, then set, as one transaction.
async fn msetnx_held(
    core: &Core,
    s: &Session,
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
) -> shardcast_engine::Result<i64> {
    let keys: Vec<Vec<u8>> = pairs.iter().map(|(k, _)| k.clone()).collect();
    let held = core.hold_keys(&keys).await?;
    let outcome = msetnx_on(&held, s, pairs).await;
    held.release().await;
    outcome
}

/// MSETNX's check and sets on keys the caller holds (alone, or in an EXEC that holds them).
async fn msetnx_on(
    held: &shardcast_engine::runtime::txn::HeldKeys,
    s: &Session,
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
) -> shardcast_engine::Result<i64> {
    use shardcast_engine::keyspace::{SetCondition, SetExpiry};
    use shardcast_engine::ops::{Op, Reply};
    let app = s.client.app();
    let keys: Vec<Vec<u8>> = pairs.iter().map(|(k, _)| k.clone()).collect();
    let exists = held.run(keys.into_iter().map(|key| Op::Exists { key }).collect(), app).await;
    if let Some(e) = exists.iter().find_map(|r| r.as_ref().err()) {
        return Err(e.clone());
    }
    if exists.iter().any(|r| matches!(r, Ok(Reply::Bool(true)))) {
        return Ok(0);
    }
    let sets = pairs
        .into_iter()
        .map(|(key, value)| Op::Set {
            key,
            value,
            condition: SetCondition::Always,
            expiry: SetExpiry::Clear,
            return_old: false,
        })
        .collect();
    match held.run(sets, app).await.into_iter().find_map(Result::err) {
        Some(e) => Err(e),
        None => Ok(1),
    }
}

/// The keys of an MSETNX.
pub fn msetnx_keys(args: &[Vec<u8>]) -> Vec<Vec<u8>> {
    args.iter().skip(1).step_by(2).cloned().collect()
}

/// MSETNX's key-value pairs, taken out of `args`; `None` (after the error reply) if a value
/// is missing.
fn msetnx_pairs(s: &mut Session, mut args: Vec<Vec<u8>>) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if args.len().is_multiple_of(2) {
        s.w.error("ERR wrong number of arguments for 'msetnx' command");
        return None;
    }
    Some(
        (1..args.len())
            .step_by(2)
            .map(|i| (std::mem::take(&mut args[i]), std::mem::take(&mut args[i + 1])))
            .collect(),
    )
}

/// MSETNX inside an EXEC that holds its keys.
pub async fn msetnx_in_exec(
    held: &shardcast_engine::runtime::txn::HeldKeys,
    s: &mut Session,
    args: Vec<Vec<u8>>,
) {
    let Some(pairs) = msetnx_pairs(s, args) else { return };
    match msetnx_on(held, s, pairs).await {
        Ok(n) => s.w.int(n),
        Err(e) => s.w.error(&error_text(&e)),
    }
}

async fn msetnx(core: &Core, s: &mut Session, args: Vec<Vec<u8>>) {
    let Some(pairs) = msetnx_pairs(s, args) else { return };
    // One core: checked and set in one step there (framed in its shard's log). Keys on
    // several cores or shards: held with the engine's key locks, checked, then set.
    let owner = core.owner_of(&pairs[0].0);
    let one_core = pairs.iter().all(|(k, _)| core.owner_of(k) == owner);
    let several = shardcast_engine::SET_IF_NONE_EXIST_SEVERAL_SHARDS as i64;
    let result = match one_core {
        true if owner == core.id() => {
            core.set_if_none_exist(pairs.clone()).await.map(|b| match b {
                Some(set) => set as i64,
                None => several,
            })
        }
        true => match core.on_core(owner, CoreWork::SetIfNoneExist(pairs.clone())).await {
            CoreResult::Count(n) => Ok(n as i64),
            CoreResult::Done(Err(e)) => Err(e),
            other => return unexpected_answer(s, "MSETNX", &other),
        },
        false => Ok(several),
    };
    let result = match result {
        Ok(n) if n == several => msetnx_held(core, s, pairs).await,
        other => other,
    };
    match result {
        Ok(n) => s.w.int(n),
        Err(e) => s.w.error(&error_text(&e)),
    }
}
