//! The command table: names, arities and flags as Redis 7 defines them, and the short docs
//! that COMMAND DOCS returns (redis-cli reads them for its hints).

/// One command's static description.
pub struct Spec {
    pub name: &'static str,
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

macro_rules! spec {
    ($name:expr, $arity:expr, $flags:expr, $fk:expr, $lk:expr, $st:expr, $group:expr, $since:expr, $summary:expr) => {
        Spec {
            name: $name,
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

pub static COMMANDS: &[Spec] = &[
    spec!("get", 2, R, 1, 1, 1, "string", "1.0.0", "Returns the string value of a key."),
    spec!("set", -3, WS, 1, 1, 1, "string", "1.0.0", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist."),
    spec!("setnx", 3, W, 1, 1, 1, "string", "1.0.0", "Set the string value of a key only when the key doesn't exist."),
    spec!("setex", 4, WS, 1, 1, 1, "string", "2.0.0", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist."),
    spec!("psetex", 4, WS, 1, 1, 1, "string", "2.6.0", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist."),
    spec!("getset", 3, W, 1, 1, 1, "string", "1.0.0", "Returns the previous string value of a key after setting it to a new value."),
    spec!("getdel", 2, WF, 1, 1, 1, "string", "6.2.0", "Returns the string value of a key after deleting the key."),
    spec!("getex", -2, WF, 1, 1, 1, "string", "6.2.0", "Returns the string value of a key after setting its expiration time."),
    spec!("mget", -2, R, 1, -1, 1, "string", "1.0.0", "Atomically returns the string values of one or more keys."),
    spec!("mset", -3, WS, 1, -1, 2, "string", "1.0.1", "Atomically creates or modifies the string values of one or more keys."),
    spec!("msetnx", -3, WS, 1, -1, 2, "string", "1.0.1", "Atomically modifies the string values of one or more keys only when all keys don't exist."),
    spec!("del", -2, &["write"], 1, -1, 1, "generic", "1.0.0", "Deletes one or more keys."),
    spec!("unlink", -2, WF, 1, -1, 1, "generic", "4.0.0", "Asynchronously deletes one or more keys."),
    spec!("exists", -2, R, 1, -1, 1, "generic", "1.0.0", "Determines whether one or more keys exist."),
    spec!("incr", 2, W, 1, 1, 1, "string", "1.0.0", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec!("decr", 2, W, 1, 1, 1, "string", "1.0.0", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec!("incrby", 3, W, 1, 1, 1, "string", "1.0.0", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    spec!("decrby", 3, W, 1, 1, 1, "string", "1.0.0", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist."),
    spec!("incrbyfloat", 3, W, 1, 1, 1, "string", "2.6.0", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    spec!("append", 3, W, 1, 1, 1, "string", "2.0.0", "Appends a string to the value of a key. Creates the key if it doesn't exist."),
    spec!("strlen", 2, R, 1, 1, 1, "string", "2.2.0", "Returns the length of a string value."),
    spec!("getrange", 4, RS, 1, 1, 1, "string", "2.4.0", "Returns a substring of the string stored at a key."),
    spec!("setrange", 4, WS, 1, 1, 1, "string", "2.2.0", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist."),
    spec!("expire", -3, WF, 1, 1, 1, "generic", "1.0.0", "Sets the expiration time of a key in seconds."),
    spec!("pexpire", -3, WF, 1, 1, 1, "generic", "2.6.0", "Sets the expiration time of a key in milliseconds."),
    spec!("expireat", -3, WF, 1, 1, 1, "generic", "1.2.0", "Sets the expiration time of a key to a Unix timestamp."),
    spec!("pexpireat", -3, WF, 1, 1, 1, "generic", "2.6.0", "Sets the expiration time of a key to a Unix milliseconds timestamp."),
    spec!("ttl", 2, R, 1, 1, 1, "generic", "1.0.0", "Returns the expiration time in seconds of a key."),
    spec!("pttl", 2, R, 1, 1, 1, "generic", "2.6.0", "Returns the expiration time in milliseconds of a key."),
    spec!("persist", 2, WF, 1, 1, 1, "generic", "2.2.0", "Removes the expiration time of a key."),
    spec!("type", 2, R, 1, 1, 1, "generic", "1.0.0", "Determines the type of value stored at a key."),
    spec!("object", -2, RS, 2, 2, 1, "generic", "2.2.3", "A container for object introspection commands."),
    spec!("keys", 2, RS, 0, 0, 0, "generic", "1.0.0", "Returns all key names that match a pattern."),
    spec!("scan", -2, RS, 0, 0, 0, "generic", "2.8.0", "Iterates over the key names in the database."),
    spec!("randomkey", 1, RS, 0, 0, 0, "generic", "1.0.0", "Returns a random key name from the database."),
    spec!("dbsize", 1, R, 0, 0, 0, "server", "1.0.0", "Returns the number of keys in the database."),
    spec!("flushall", -1, &["write"], 0, 0, 0, "server", "1.0.0", "Removes all keys from all databases."),
    spec!("flushdb", -1, &["write"], 0, 0, 0, "server", "1.0.0", "Remove all keys from the current database."),
    spec!("ping", -1, F, 0, 0, 0, "connection", "1.0.0", "Returns the server's liveliness response."),
    spec!("echo", 2, F, 0, 0, 0, "connection", "1.0.0", "Returns the given string."),
    spec!("quit", -1, NA, 0, 0, 0, "connection", "1.0.0", "Closes the connection."),
    spec!("hello", -1, NA, 0, 0, 0, "connection", "6.0.0", "Handshakes with the Redis server."),
    spec!("auth", -2, NA, 0, 0, 0, "connection", "1.0.0", "Authenticates the connection."),
    spec!("select", 2, F, 0, 0, 0, "connection", "2.0.0", "Changes the selected database."),
    spec!("client", -2, &[], 0, 0, 0, "connection", "2.4.0", "A container for client connection commands."),
    spec!("command", -1, &[], 0, 0, 0, "server", "2.8.13", "Returns detailed information about all commands."),
    spec!("config", -2, A, 0, 0, 0, "server", "2.0.0", "A container for server configuration commands."),
    spec!("info", -1, &[], 0, 0, 0, "server", "1.0.0", "Returns information and statistics about the server."),
    spec!("time", 1, F, 0, 0, 0, "server", "2.6.0", "Returns the server time."),
    spec!("shutdown", -1, A, 0, 0, 0, "server", "1.0.0", "Synchronously saves the database(s) to disk and shuts down the Redis server."),
    spec!("shardcast", -2, A, 0, 0, 0, "server", "7.0.0", "Shardcast administration: SHARDCAST SHARDS | PARTITIONS [COUNT n] | HISTORY <partition> [COUNT n] | SPLIT <partition> | MERGE <partition> | HELP."),
    spec!("debug", -2, A, 0, 0, 0, "server", "1.0.0", "A container for debugging commands."),
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
