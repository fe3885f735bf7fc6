//! Turning commands into engine ops and engine replies into RESP.
//!
//! A pipeline is cut into runs of *plannable* commands (single- and multi-key string commands,
//! and commands answered on the spot); a run's ops go to the engine as one batch, which sends
//! one message per owning core, and the replies are rendered in command order. Anything that
//! changes the session or needs every core (AUTH, HELLO, INFO, SCAN...) ends the run and is
//! run on its own (`admin.rs`).

use crate::resp::Writer;
use crate::table::KeyCmd;
use shardcast_engine::keyspace::{
    parse_f64, parse_i64, ExpireCondition, SetCondition, SetExpiry, Ttl,
};
use shardcast_engine::ops::{Op, Reply};
use shardcast_engine::EngineError;

/// How to turn a command's engine replies into its RESP reply.
#[derive(Debug, Clone, Copy)]
pub enum Render {
    /// A value or nil (GET, GETDEL, GETEX).
    Value,
    /// SET: OK / nil, or the old value with GET.
    Set {
        get: bool,
    },
    /// SETNX, MSETNX-like: 1 if applied, 0 if not.
    SetFlag,
    /// SET with GET semantics for GETSET: old value or nil.
    OldValue,
    /// An integer reply (INCR, APPEND, STRLEN, SETRANGE).
    Int,
    /// 1/0 per op, summed (DEL, EXISTS, UNLINK, EXPIRE, PERSIST).
    Count,
    Ttl {
        ms: bool,
    },
    /// An array of values or nils (MGET).
    Values,
    /// OK after every op (MSET, SETEX).
    Ok,
    /// A bulk string always (GETRANGE, INCRBYFLOAT).
    Bulk,
    Type,
    /// One of OBJECT's answers about a key.
    Object(ObjectField),
}

/// What OBJECT was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectField {
    Encoding,
    Freq,
    IdleTime,
    RefCount,
}

/// A planned command: either a finished reply or a slice of the batch's ops.
pub enum Plan {
    Reply(Vec<u8>),
    Ops { count: usize, render: Render },
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub const ERR_NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const ERR_SYNTAX: &str = "ERR syntax error";

pub fn int_arg(arg: &[u8]) -> Result<i64, String> {
    parse_i64(arg).ok_or_else(|| ERR_NOT_INTEGER.to_owned())
}

fn expire_error(cmd: &str) -> String {
    format!("ERR invalid expire time in '{cmd}' command")
}

/// `base_ms + amount * unit_ms`, or the command's invalid-expire error on overflow.
fn deadline(amount: i64, unit_ms: i64, base_ms: u64, cmd: &str) -> Result<i64, String> {
    amount
        .checked_mul(unit_ms)
        .and_then(|ms| ms.checked_add(base_ms as i64))
        .ok_or_else(|| expire_error(cmd))
}

/// OBJECT's help, as Redis 7 words it (for the subcommands served here).
const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Print this help.",
];

/// OBJECT ENCODING | FREQ | IDLETIME | REFCOUNT key, and OBJECT HELP. The counters are kept
/// whatever the policy, so FREQ and IDLETIME always answer (Redis answers only one of them,
/// depending on `maxmemory-policy`).
fn plan_object(args: &mut [Vec<u8>], ops: &mut Vec<Op>) -> Result<Render, PlanReply> {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let arity = if sub == "help" { 2 } else { 3 };
    let known = ["help", "encoding", "freq", "idletime", "refcount"].contains(&sub.as_str());
    if known && args.len() != arity {
        return Err(format!("ERR wrong number of arguments for 'object|{sub}' command").into());
    }
    let field = match (sub.as_str(), args.len()) {
        ("help", 2) => {
            let mut w = Writer { buf: Vec::new(), resp3: false };
            w.lines(OBJECT_HELP);
            return Err(PlanReply::Ready(w.buf));
        }
        ("encoding", 3) => ObjectField::Encoding,
        ("freq", 3) => ObjectField::Freq,
        ("idletime", 3) => ObjectField::IdleTime,
        ("refcount", 3) => ObjectField::RefCount,
        _ => {
            return Err(format!(
                "ERR unknown subcommand '{}'. Try OBJECT HELP.",
                String::from_utf8_lossy(&args[1])
            )
            .into())
        }
    };
    ops.push(Op::Object { key: take(args, 2) });
    Ok(Render::Object(field))
}

/// The text of an engine error as a RESP error line.
pub fn error_text(e: &EngineError) -> String {
    match e {
        EngineError::NotAnInteger => ERR_NOT_INTEGER.into(),
        EngineError::ValueTooLarge { .. } => {
            "ERR string exceeds maximum allowed size (proto-max-bulk-len)".into()
        }
        EngineError::TryAgain => format!("TRYAGAIN {e}"),
        EngineError::OutOfMemory => format!("OOM {e}"),
        // Redis's answer to writes after an AOF write error ("-MISCONF Errors writing to the
        // AOF file: No space left on device").
        EngineError::NoSpace { .. } => format!("MISCONF Errors writing to the log: {e}"),
        EngineError::NotDurable { .. } => format!("MISCONF {e}"),
        other => format!("ERR {other}"),
    }
}

/// Plans the plannable command `cmd` (named `name`, its arity already checked). Whether a
/// command is plannable is the command table's `Handler`, never an outcome of planning.
pub fn plan(cmd: KeyCmd, name: &str, args: &mut [Vec<u8>], resp3: bool, ops: &mut Vec<Op>) -> Plan {
    let before = ops.len();
    match plan_inner(cmd, name, args, ops) {
        Ok(render) => Plan::Ops { count: ops.len() - before, render },
        Err(PlanReply::Error(text)) => {
            ops.truncate(before);
            let mut w = Writer { buf: Vec::new(), resp3 };
            w.error(&text);
            Plan::Reply(w.buf)
        }
        Err(PlanReply::Ready(bytes)) => {
            ops.truncate(before);
            Plan::Reply(bytes)
        }
    }
}

/// A command answered while planning, without ops.
enum PlanReply {
    Error(String),
    /// A finished reply (OBJECT HELP); any bytes, empty included, are sent as they are.
    Ready(Vec<u8>),
}

impl From<String> for PlanReply {
    fn from(s: String) -> Self {
        PlanReply::Error(s)
    }
}

fn take(args: &mut [Vec<u8>], i: usize) -> Vec<u8> {
    std::mem::take(&mut args[i])
}

fn set_op(
    key: Vec<u8>,
    value: Vec<u8>,
    condition: SetCondition,
    expiry: SetExpiry,
    return_old: bool,
) -> Op {
    Op::Set { key, value, condition, expiry, return_old }
}

fn plan_inner(
    cmd: KeyCmd,
    name: &str,
    args: &mut [Vec<u8>],
    ops: &mut Vec<Op>,
) -> Result<Render, PlanReply> {
    use KeyCmd::*;
    match cmd {
        Get => {
            ops.push(Op::Get { key: take(args, 1) });
            Ok(Render::Value)
        }
        Set => plan_set(args, ops),
        SetNx => {
            let (k, v) = (take(args, 1), take(args, 2));
            ops.push(set_op(k, v, SetCondition::IfAbsent, SetExpiry::Clear, false));
            Ok(Render::SetFlag)
        }
        SetEx | PSetEx => {
            let amount = int_arg(&args[2])?;
            if amount <= 0 {
                return Err(expire_error(name).into());
            }
            let unit = if cmd == SetEx { 1000 } else { 1 };
            let at = deadline(amount, unit, now_ms(), name)?;
            let (k, v) = (take(args, 1), take(args, 3));
            ops.push(set_op(k, v, SetCondition::Always, SetExpiry::At(at as u64), false));
            Ok(Render::Ok)
        }
        GetSet => {
            let (k, v) = (take(args, 1), take(args, 2));
            ops.push(set_op(k, v, SetCondition::Always, SetExpiry::Clear, true));
            Ok(Render::OldValue)
        }
        GetDel => {
            ops.push(Op::GetDel { key: take(args, 1) });
            Ok(Render::Value)
        }
        GetEx => plan_getex(args, ops),
        MGet => {
            for i in 1..args.len() {
                ops.push(Op::Get { key: take(args, i) });
            }
            Ok(Render::Values)
        }
        MSet => {
            if args.len().is_multiple_of(2) {
                return Err(format!("ERR wrong number of arguments for '{name}' command").into());
            }
            for i in (1..args.len()).step_by(2) {
                let (k, v) = (take(args, i), take(args, i + 1));
                ops.push(set_op(k, v, SetCondition::Always, SetExpiry::Clear, false));
            }
            Ok(Render::Ok)
        }
        Del | Unlink => {
            for i in 1..args.len() {
                ops.push(Op::Del { key: take(args, i) });
            }
            Ok(Render::Count)
        }
        // TOUCH is EXISTS: every lookup of a live key updates its access time and frequency.
        Exists | Touch => {
            for i in 1..args.len() {
                ops.push(Op::Exists { key: take(args, i) });
            }
            Ok(Render::Count)
        }
        Incr | Decr => {
            let delta = if cmd == Incr { 1 } else { -1 };
            ops.push(Op::IncrBy { key: take(args, 1), delta });
            Ok(Render::Int)
        }
        IncrBy | DecrBy => {
            let n = int_arg(&args[2])?;
            let delta = if cmd == IncrBy {
                n
            } else {
                n.checked_neg().ok_or_else(|| "ERR decrement would overflow".to_owned())?
            };
            ops.push(Op::IncrBy { key: take(args, 1), delta });
            Ok(Render::Int)
        }
        IncrByFloat => {
            let delta =
                parse_f64(&args[2]).ok_or_else(|| "ERR value is not a valid float".to_owned())?;
            ops.push(Op::IncrByFloat { key: take(args, 1), delta });
            Ok(Render::Bulk)
        }
        Append => {
            let (k, v) = (take(args, 1), take(args, 2));
            ops.push(Op::Append { key: k, suffix: v });
            Ok(Render::Int)
        }
        StrLen => {
            ops.push(Op::StrLen { key: take(args, 1) });
            Ok(Render::Int)
        }
        GetRange => {
            let (start, end) = (int_arg(&args[2])?, int_arg(&args[3])?);
            ops.push(Op::GetRange { key: take(args, 1), start, end });
            Ok(Render::Bulk)
        }
        SetRange => {
            let offset = int_arg(&args[2])?;
            if offset < 0 {
                return Err("ERR offset is out of range".to_owned().into());
            }
            if !args[3].is_empty()
                && offset as u64 + args[3].len() as u64
                    > shardcast_engine::keyspace::VALUE_LEN_MAX as u64
            {
                return Err("ERR string exceeds maximum allowed size (proto-max-bulk-len)"
                    .to_owned()
                    .into());
            }
            let (k, v) = (take(args, 1), take(args, 3));
            ops.push(Op::SetRange { key: k, offset: offset as usize, value: v });
            Ok(Render::Int)
        }
        Expire | PExpire | ExpireAt | PExpireAt => plan_expire(cmd, name, args, ops),
        Ttl | PTtl => {
            ops.push(Op::Ttl { key: take(args, 1) });
            Ok(Render::Ttl { ms: cmd == PTtl })
        }
        // Rendered as TTL is: Redis rounds EXPIRETIME's seconds the same way.
        ExpireTime | PExpireTime => {
            ops.push(Op::ExpireTime { key: take(args, 1) });
            Ok(Render::Ttl { ms: cmd == PExpireTime })
        }
        Persist => {
            ops.push(Op::Persist { key: take(args, 1) });
            Ok(Render::Count)
        }
        Type => {
            ops.push(Op::Exists { key: take(args, 1) });
            Ok(Render::Type)
        }
        Object => plan_object(args, ops),
    }
}

/// The absolute expiry (ms) of an EX / PX / EXAT / PXAT option with argument `arg`.
fn expiry_option(opt: &[u8], arg: &[u8], cmd: &str) -> Result<u64, String> {
    let n = int_arg(arg)?;
    if n <= 0 {
        return Err(expire_error(cmd));
    }
    let at = match opt {
        b"EX" => deadline(n, 1000, now_ms(), cmd)?,
        b"PX" => deadline(n, 1, now_ms(), cmd)?,
        b"EXAT" => deadline(n, 1000, 0, cmd)?,
        _ => n,
    };
    Ok(at as u64)
}

fn plan_set(args: &mut [Vec<u8>], ops: &mut Vec<Op>) -> Result<Render, PlanReply> {
    let mut condition = SetCondition::Always;
    let mut expiry = SetExpiry::Clear;
    let mut get = false;
    // As Redis 7: an option may repeat (the last value wins); only conflicting ones are errors.
    let mut expiry_kind: Option<Vec<u8>> = None;
    let mut i = 3;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        let expiry_free = expiry_kind.as_ref().is_none_or(|k| *k == opt);
        match opt.as_slice() {
            b"NX" if condition != SetCondition::IfPresent => condition = SetCondition::IfAbsent,
            b"XX" if condition != SetCondition::IfAbsent => condition = SetCondition::IfPresent,
            b"GET" => get = true,
            b"KEEPTTL" if expiry_free => {
                expiry = SetExpiry::Keep;
                expiry_kind = Some(opt);
            }
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if expiry_free && i + 1 < args.len() => {
                expiry = SetExpiry::At(expiry_option(&opt, &args[i + 1], "set")?);
                expiry_kind = Some(opt);
                i += 1;
            }
            _ => return Err(ERR_SYNTAX.to_owned().into()),
        }
        i += 1;
    }
    let (k, v) = (take(args, 1), take(args, 2));
    ops.push(set_op(k, v, condition, expiry, get));
    Ok(Render::Set { get })
}

fn plan_getex(args: &mut [Vec<u8>], ops: &mut Vec<Op>) -> Result<Render, PlanReply> {
    let mut expiry = None;
    let mut i = 2;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        match opt.as_slice() {
            b"PERSIST" if expiry.is_none() => expiry = Some(SetExpiry::Clear),
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if expiry.is_none() && i + 1 < args.len() => {
                expiry = Some(SetExpiry::At(expiry_option(&opt, &args[i + 1], "getex")?));
                i += 1;
            }
            _ => return Err(ERR_SYNTAX.to_owned().into()),
        }
        i += 1;
    }
    ops.push(Op::GetEx { key: take(args, 1), expiry });
    Ok(Render::Value)
}

fn plan_expire(
    cmd: KeyCmd,
    name: &str,
    args: &mut [Vec<u8>],
    ops: &mut Vec<Op>,
) -> Result<Render, PlanReply> {
    let n = int_arg(&args[2])?;
    let at = match cmd {
        KeyCmd::Expire => deadline(n, 1000, now_ms(), name)?,
        KeyCmd::PExpire => deadline(n, 1, now_ms(), name)?,
        KeyCmd::ExpireAt => deadline(n, 1000, 0, name)?,
        // PEXPIREAT: already absolute milliseconds.
        _ => n,
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &args[3..] {
        match opt.to_ascii_uppercase().as_slice() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            _ => {
                return Err(
                    format!("ERR Unsupported option {}", String::from_utf8_lossy(opt)).into()
                )
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Err("ERR NX and XX, GT or LT options at the same time are not compatible"
            .to_owned()
            .into());
    }
    if gt && lt {
        return Err("ERR GT and LT options at the same time are not compatible".to_owned().into());
    }
    let condition = match (nx, xx, gt, lt) {
        (true, ..) => ExpireCondition::IfNone,
        (_, _, true, _) => ExpireCondition::IfGreater,
        (_, _, _, true) => ExpireCondition::IfLess,
        (_, true, ..) => ExpireCondition::IfSome,
        _ => ExpireCondition::Always,
    };
    // GT already requires an expiry (none counts as infinite); XX with LT needs both.
    let condition = if xx && lt { ExpireCondition::IfSomeAndLess } else { condition };
    ops.push(Op::Expire { key: take(args, 1), at_ms: at.max(0) as u64, condition });
    Ok(Render::Count)
}

/// The reply when the engine's replies do not fit the command: a server bug, answered as an
/// error on this command rather than a panic that would take the core down.
fn internal_error(w: &mut Writer, render: Render, what: &str) {
    tracing::error!("{render:?}: {what}");
    w.error(&format!("ERR internal error: {what}"));
}

/// Renders the replies of one planned command. Returns (hits, misses) for INFO stats.
pub fn render(
    w: &mut Writer,
    render: Render,
    results: &mut dyn Iterator<Item = Result<Reply, EngineError>>,
    count: usize,
) -> (u64, u64) {
    let (mut hits, mut misses) = (0, 0);
    let mut value = |w: &mut Writer, r: Reply| match r {
        Reply::Value(v) => {
            hits += 1;
            w.bulk(&v)
        }
        _ => {
            misses += 1;
            w.null()
        }
    };
    match render {
        Render::Values => {
            let rs: Vec<_> = results.take(count).collect();
            if rs.len() < count {
                internal_error(w, render, "fewer engine replies than ops");
                return (0, 0);
            }
            w.array(count);
            for r in rs {
                match r {
                    Ok(r) => value(w, r),
                    Err(_) => w.null(),
                }
            }
            return (hits, misses);
        }
        Render::Count | Render::Ok => {
            let (mut n, mut seen) = (0, 0);
            let mut first_err = None;
            for r in results.take(count) {
                seen += 1;
                match r {
                    Ok(Reply::Bool(true)) => n += 1,
                    Ok(_) => {}
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            match (first_err, render) {
                _ if seen < count => internal_error(w, render, "fewer engine replies than ops"),
                (Some(e), _) => w.error(&error_text(&e)),
                (None, Render::Ok) => w.ok(),
                (None, _) => w.int(n),
            }
            return (hits, misses);
        }
        _ => {}
    }
    let Some(r) = results.next() else {
        internal_error(w, render, "no engine reply for the op");
        return (hits, misses);
    };
    match (render, r) {
        (_, Err(e)) => w.error(&error_text(&e)),
        (Render::Value, Ok(r)) => value(w, r),
        (Render::Set { get: false }, Ok(Reply::Set { applied, .. })) => {
            if applied {
                w.ok()
            } else {
                w.null()
            }
        }
        (Render::Set { get: true } | Render::OldValue, Ok(Reply::Set { old, .. })) => match old {
            Some(v) => w.bulk(&v),
            None => w.null(),
        },
        (Render::SetFlag, Ok(Reply::Set { applied, .. })) => w.int(applied as i64),
        (Render::Int, Ok(Reply::Int(n))) => w.int(n),
        (Render::Bulk, Ok(Reply::Value(v))) => w.bulk(&v),
        (Render::Ttl { ms }, Ok(Reply::Ttl(t))) => w.int(match t {
            Ttl::Missing => -2,
            Ttl::Persistent => -1,
            Ttl::Ms(left) if ms => left as i64,
            Ttl::Ms(left) => ((left + 500) / 1000) as i64,
        }),
        (Render::Type, Ok(Reply::Bool(exists))) => w.simple(if exists { "string" } else { "none" }),
        (Render::Object(_), Ok(Reply::Nil)) => w.null(),
        (Render::Object(field), Ok(Reply::Object { idle_s, freq, encoding, .. })) => match field {
            ObjectField::Encoding => w.bulk(encoding.as_bytes()),
            ObjectField::Freq => w.int(freq as i64),
            ObjectField::IdleTime => w.int(idle_s as i64),
            ObjectField::RefCount => w.int(1),
        },
        (render, Ok(reply)) => {
            internal_error(w, render, &format!("unexpected engine reply {}", reply_kind(&reply)))
        }
    }
    (hits, misses)
}

/// The kind of an engine reply, for an internal error (never its data).
fn reply_kind(reply: &Reply) -> &'static str {
    match reply {
        Reply::Nil => "nil",
        Reply::Bool(_) => "bool",
        Reply::Int(_) => "int",
        Reply::Value(_) => "value",
        Reply::Ttl(_) => "ttl",
        Reply::Set { .. } => "set",
        Reply::Object { .. } => "object",
        Reply::Entry { .. } => "entry",
    }
}
