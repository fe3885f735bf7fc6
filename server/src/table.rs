//! The command table: names, arities and flags as Redis 7 defines them, and the short docs
//! that COMMAND DOCS returns (redis-cli reads them for its hints).

/// Who runs a command. Dispatch is an exhaustive `match` on this, so a table entry without a
/// handler, or a handler without its code, does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// Planned into engine ops, batched with its neighbours (`commands::plan`).
    Key(KeyCmd),
    /// Ends the batch and runs on its own (`admin::run`).
    Admin(AdminCmd),
}

/// The plannable commands. Each variant's name, lower-cased, is its command's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCmd {
    Get,
    Set,
    SetNx,
    SetEx,
    PSetEx,
    GetSet,
    GetDel,
    GetEx,
    MGet,
    MSet,
    Del,
    Unlink,
    Exists,
    Incr,
    Decr,
    IncrBy,
    DecrBy,
    IncrByFloat,
    Append,
    StrLen,
    GetRange,
    SetRange,
    Expire,
    PExpire,
    ExpireAt,
    PExpireAt,
    Ttl,
    PTtl,
    ExpireTime,
    PExpireTime,
    Touch,
    Persist,
    Type,
    Object,
}

/// The commands that end a batch (`admin.rs`). Each variant's name, lower-cased, is its
/// command's name without underscores (`EvalRo` is `eval_ro`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminCmd {
    MSetNx,
    Keys,
    Scan,
    RandomKey,
    DbSize,
    FlushAll,
    FlushDb,
    Ping,
    Echo,
    Quit,
    Hello,
    Auth,
    Select,
    Client,
    Command,
    Config,
    Info,
    Time,
    Shutdown,
    BgSave,
    Save,
    LastSave,
    Shardcast,
    Debug,
    SlowLog,
    Latency,
    Memory,
    Monitor,
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    Rename,
    RenameNx,
    Copy,
    Eval,
    EvalRo,
    EvalSha,
    EvalShaRo,
    Script,
}

/// One command's static description.
pub struct Spec {
    pub name: &'static str,
    pub handler: Handler,
    /// Redis convention: `n` exactly n arguments (name included), `-n` at least n.
    pub arity: i32,
    pub flags: &'static [&'static str],
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub group: &'static str,
    pub since: &'static str,
    pub summary: &'static str,
}

const W: &[&str] = &["write", "denyoom", "fast"];
const WS: &[&str] = &["write", "denyoom"];
const WF: &[&str] = &["write", "fast"];
const R: &[&str] = &["readonly", "fast"];
const RS: &[&str] = &["readonly"];
const F: &[&str] = &["fast"];
const NA: &[&str] = &["noauth", "fast"];
const A: &[&str] = &["admin"];
const TX: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];

macro_rules! spec {
    ($name:expr, $handler:expr, $arity:expr, $flags:expr, $fk:expr, $lk:expr, $st:expr, $group:expr, $since:expr, $summary:expr) => {
        Spec {
            name: $name,
            handler: $handler,
            arity: $arity,
            flags: $flags,
            first_key: $fk,
            last_key: $lk,
            step: $st,
            group: $group,
            since: $since,
            summary: $summary,
        }
    };
}

use AdminCmd::*;
use Handler::{Admin, Key};
use KeyCmd::*;

pub static COMMANDS: &[Spec] = &[
    spec!("get", Key(Get), 2, R, 1, 1, 1, "string", "1.0.0", "Returns the string value of a key."),
    spec!("set", Key(Set), -3, WS, 1, 1, 1, "string", "1.0.0", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist."),
    spec!("setnx", Key(SetNx), 3, W, 1, 1, 1, "string", "1.0.0", "Set the string value of a key only when the key doesn't exist."),
    spec!("setex", Key(SetEx), 4, WS, 1, 1, 1, "string", "2.0.0", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist."),
    spec!("psetex", Key(PSetEx), 4, WS, 1, 1, 1, "string", "2.6.0", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist."),
    spec!("getset", Key(GetSet), 3, W, 1, 1, 1, "string", "1.0.0", "Returns the previous string value of a key after setting it to a new value."),
    spec!("getdel", Key(GetDel), 2, WF, 1, 1, 1, "string", "6.2.0", "Returns the string value of a key after deleting the key."),
    spec!("getex", Key(GetEx), -2, WF, 1, 1, 1, "string", "6.2.0", "Returns the string value of a key after setting its expiration time."),
    spec!("mget", Key(MGet), -2, R, 1, -1, 1, "string", "1.0.0", "Atomically returns the string values of one or more keys."),
    spec!("mset", Key(MSet), -3, WS, 1, -1, 2, "string", "1.0.1", "Atomically creates or modifies the string values of one or more keys."),
    spec!("msetnx", Admin(MSetNx), -3, WS, 1, -1, 2, "string", "1.0.1", "Atomically modifies the string values of one or more keys only when all keys don't exist."),
    spec!("del", Key(Del), -2, &["write"], 1, -1, 1, "generic", "1.0.0", "Deletes one or more keys."),
    spec!("unlink", Key(Unlink), -2, WF, 1, -1, 1, "generic", "4.0.0", "Asynchronously deletes one or more keys."),
    spec!("exists", Key(Exists), -2, R, 1, -1, 1, "generic", "1.0.0", "Determines whether one or more keys exist."),
    spec!("incr", Key(Incr), 2, W, 1, 1, 1, "string", "1.0.0", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec!("decr", Key(Decr), 2, W, 1, 1, 1, "string", "1.0.0", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec!("incrby", Key(IncrBy), 3, W, 1, 1, 1, "string", "1.0.0", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    spec!("decrby", Key(DecrBy), 3, W, 1, 1, 1, "string", "1.0.0", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist."),
    spec!("incrbyfloat", Key(IncrByFloat), 3, W, 1, 1, 1, "string", "2.6.0", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    spec!("append", Key(Append), 3, W, 1, 1, 1, "string", "2.0.0", "Appends a string to the value of a key. Creates the key if it doesn't exist."),
    spec!("strlen", Key(StrLen), 2, R, 1, 1, 1, "string", "2.2.0", "Returns the length of a string value."),
    spec!("getrange", Key(GetRange), 4, RS, 1, 1, 1, "string", "2.4.0", "Returns a substring of the string stored at a key."),
    spec!("setrange", Key(SetRange), 4, WS, 1, 1, 1, "string", "2.2.0", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist."),
    spec!("expire", Key(Expire), -3, WF, 1, 1, 1, "generic", "1.0.0", "Sets the expiration time of a key in seconds."),
    spec!("pexpire", Key(PExpire), -3, WF, 1, 1, 1, "generic", "2.6.0", "Sets the expiration time of a key in milliseconds."),
    spec!("expireat", Key(ExpireAt), -3, WF, 1, 1, 1, "generic", "1.2.0", "Sets the expiration time of a key to a Unix timestamp."),
    spec!("pexpireat", Key(PExpireAt), -3, WF, 1, 1, 1, "generic", "2.6.0", "Sets the expiration time of a key to a Unix milliseconds timestamp."),
    spec!("ttl", Key(Ttl), 2, R, 1, 1, 1, "generic", "1.0.0", "Returns the expiration time in seconds of a key."),
    spec!("pttl", Key(PTtl), 2, R, 1, 1, 1, "generic", "2.6.0", "Returns the expiration time in milliseconds of a key."),
    spec!("expiretime", Key(ExpireTime), 2, R, 1, 1, 1, "generic", "7.0.0", "Returns the expiration time of a key as a Unix timestamp."),
    spec!("pexpiretime", Key(PExpireTime), 2, R, 1, 1, 1, "generic", "7.0.0", "Returns the expiration time of a key as a Unix milliseconds timestamp."),
    spec!("touch", Key(Touch), -2, R, 1, -1, 1, "generic", "3.2.1", "Returns the number of existing keys out of those specified after updating the time they were last accessed."),
    spec!("persist", Key(Persist), 2, WF, 1, 1, 1, "generic", "2.2.0", "Removes the expiration time of a key."),
    spec!("type", Key(Type), 2, R, 1, 1, 1, "generic", "1.0.0", "Determines the type of value stored at a key."),
    spec!("object", Key(Object), -2, RS, 2, 2, 1, "generic", "2.2.3", "A container for object introspection commands."),
    spec!("rename", Admin(Rename), 3, &["write"], 1, 2, 1, "generic", "1.0.0", "Renames a key and overwrites the destination."),
    spec!("renamenx", Admin(RenameNx), 3, WF, 1, 2, 1, "generic", "1.0.0", "Renames a key only when the target key name doesn't exist."),
    spec!("copy", Admin(Copy), -3, WS, 1, 2, 1, "generic", "6.2.0", "Copies the value of a key to a new key."),
    spec!("keys", Admin(Keys), 2, RS, 0, 0, 0, "generic", "1.0.0", "Returns all key names that match a pattern."),
    spec!("scan", Admin(Scan), -2, RS, 0, 0, 0, "generic", "2.8.0", "Iterates over the key names in the database."),
    spec!("randomkey", Admin(RandomKey), 1, RS, 0, 0, 0, "generic", "1.0.0", "Returns a random key name from the database."),
    spec!("dbsize", Admin(DbSize), 1, R, 0, 0, 0, "server", "1.0.0", "Returns the number of keys in the database."),
    spec!("flushall", Admin(FlushAll), -1, &["write"], 0, 0, 0, "server", "1.0.0", "Removes all keys from all databases."),
    spec!("flushdb", Admin(FlushDb), -1, &["write"], 0, 0, 0, "server", "1.0.0", "Remove all keys from the current database."),
    spec!("ping", Admin(Ping), -1, F, 0, 0, 0, "connection", "1.0.0", "Returns the server's liveliness response."),
    spec!("echo", Admin(Echo), 2, F, 0, 0, 0, "connection", "1.0.0", "Returns the given string."),
    spec!("quit", Admin(Quit), -1, NA, 0, 0, 0, "connection", "1.0.0", "Closes the connection."),
    spec!("hello", Admin(Hello), -1, NA, 0, 0, 0, "connection", "6.0.0", "Handshakes with the Redis server."),
    spec!("auth", Admin(Auth), -2, NA, 0, 0, 0, "connection", "1.0.0", "Authenticates the connection."),
    spec!("select", Admin(Select), 2, F, 0, 0, 0, "connection", "2.0.0", "Changes the selected database."),
    spec!("client", Admin(Client), -2, &[], 0, 0, 0, "connection", "2.4.0", "A container for client connection commands."),
    spec!("command", Admin(Command), -1, &[], 0, 0, 0, "server", "2.8.13", "Returns detailed information about all commands."),
    spec!("config", Admin(Config), -2, A, 0, 0, 0, "server", "2.0.0", "A container for server configuration commands."),
    spec!("info", Admin(Info), -1, &[], 0, 0, 0, "server", "1.0.0", "Returns information and statistics about the server."),
    spec!("time", Admin(Time), 1, F, 0, 0, 0, "server", "2.6.0", "Returns the server time."),
    spec!("shutdown", Admin(Shutdown), -1, A, 0, 0, 0, "server", "1.0.0", "Synchronously saves the database(s) to disk and shuts down the Redis server."),
    spec!("bgsave", Admin(BgSave), -1, A, 0, 0, 0, "server", "1.0.0", "Asynchronously saves the database(s) to disk."),
    spec!("save", Admin(Save), 1, A, 0, 0, 0, "server", "1.0.0", "Synchronously saves the database(s) to disk."),
    spec!("lastsave", Admin(LastSave), 1, F, 0, 0, 0, "server", "1.0.0", "Returns the Unix timestamp of the last successful save to disk."),
    spec!("shardcast", Admin(Shardcast), -2, A, 0, 0, 0, "server", "7.0.0", "Shardcast administration: SHARDCAST SHARDS | PARTITIONS [COUNT n] | HISTORY <partition> [COUNT n] | SPLIT <partition> | MERGE <partition> | HELP."),
    spec!("debug", Admin(Debug), -2, A, 0, 0, 0, "server", "1.0.0", "A container for debugging commands."),
    spec!("slowlog", Admin(SlowLog), -2, A, 0, 0, 0, "server", "2.2.12", "A container for slow log commands."),
    spec!("latency", Admin(Latency), -2, A, 0, 0, 0, "server", "2.8.13", "A container for latency diagnostics commands."),
    spec!("memory", Admin(Memory), -2, RS, 0, 0, 0, "server", "4.0.0", "A container for memory diagnostics commands."),
    spec!("multi", Admin(Multi), 1, TX, 0, 0, 0, "transactions", "1.2.0", "Starts a transaction."),
    spec!("exec", Admin(Exec), 1, &["noscript", "loading", "stale", "skip_slowlog"], 0, 0, 0, "transactions", "1.2.0", "Executes all commands in a transaction."),
    spec!("discard", Admin(Discard), 1, TX, 0, 0, 0, "transactions", "2.0.0", "Discards a transaction."),
    spec!("watch", Admin(Watch), -2, TX, 1, -1, 1, "transactions", "2.2.0", "Monitors changes to keys to determine the execution of a transaction."),
    spec!("unwatch", Admin(Unwatch), 1, TX, 0, 0, 0, "transactions", "2.2.0", "Forgets about watched keys of a transaction."),
    spec!("eval", Admin(Eval), -3, &["noscript", "stale", "skip_monitor", "may_replicate", "no_mandatory_keys"], 3, -3, 1, "scripting", "2.6.0", "Executes a server-side Lua script."),
    spec!("eval_ro", Admin(EvalRo), -3, &["readonly", "noscript", "stale", "skip_monitor", "no_mandatory_keys"], 3, -3, 1, "scripting", "7.0.0", "Executes a read-only server-side Lua script."),
    spec!("evalsha", Admin(EvalSha), -3, &["noscript", "stale", "skip_monitor", "may_replicate", "no_mandatory_keys"], 3, -3, 1, "scripting", "2.6.0", "Executes a server-side Lua script by SHA1 digest."),
    spec!("evalsha_ro", Admin(EvalShaRo), -3, &["readonly", "noscript", "stale", "skip_monitor", "no_mandatory_keys"], 3, -3, 1, "scripting", "7.0.0", "Executes a read-only server-side Lua script by SHA1 digest."),
    spec!("script", Admin(Script), -2, &["noscript"], 0, 0, 0, "scripting", "2.6.0", "A container for Lua scripts management commands."),
    spec!("monitor", Admin(Monitor), 1, A, 0, 0, 0, "server", "1.0.0", "Listens for all requests received by the server in real-time."),
];

/// Finds a command by name, case-insensitively; returns its index and spec.
pub fn lookup(name: &[u8]) -> Option<(usize, &'static Spec)> {
    COMMANDS.iter().enumerate().find(|(_, s)| s.name.as_bytes().eq_ignore_ascii_case(name))
}

impl Spec {
    pub fn arity_ok(&self, argc: usize) -> bool {
        if self.arity >= 0 {
            argc == self.arity as usize
        } else {
            argc >= (-self.arity) as usize
        }
    }

    pub fn has(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each entry names its own handler (the variant's name is the command's, without its
    /// underscores: `EvalRo` is `eval_ro`) and no two entries share one.
    #[test]
    fn every_entry_names_its_own_handler() {
        for (i, spec) in COMMANDS.iter().enumerate() {
            let variant = match spec.handler {
                Handler::Key(k) => format!("{k:?}"),
                Handler::Admin(a) => format!("{a:?}"),
            };
            assert_eq!(variant.to_ascii_lowercase(), spec.name.replace('_', ""), "entry {i}");
            assert!(
                COMMANDS[..i].iter().all(|s| s.handler != spec.handler && s.name != spec.name),
                "{} is in the table twice",
                spec.name
            );
        }
    }
}
