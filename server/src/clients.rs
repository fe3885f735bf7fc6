//! CLIENT: naming and listing connections, and the operator's levers over them: KILL
//! (closes other connections from any core), PAUSE/UNPAUSE (holds every client's commands, or
//! its writes, for a while: a failover's quiet moment), NO-EVICT.
//!
//! A connection killed from another core is woken by shutting its socket down
//! (`ClientInfo::kill`): its pending read ends, and it closes. A paused command waits where
//! it is in its pipeline, so the commands before it have run and none after it runs first.

use crate::admin::{lower, unknown_subcommand};
use crate::commands::{int_arg, now_ms, ERR_SYNTAX};
use crate::connection::Session;
use crate::shared::{ClientInfo, Shared};
use crate::table::{Spec, COMMANDS};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often a paused command looks whether the pause has ended (UNPAUSE is seen this late
/// at most).
pub const PAUSE_POLL_MS: u64 = 10;

/// CLIENT PAUSE's state: until when (Unix ms, 0 for none) and whether only writes wait.
#[derive(Default)]
pub struct ClientPause {
    until_ms: AtomicU64,
    writes_only: AtomicBool,
}

impl ClientPause {
    /// Whether `spec` must wait now. The fast path (no pause) is one atomic load.
    pub fn blocks(&self, spec: &Spec) -> bool {
        let until = self.until_ms.load(Ordering::Relaxed);
        until != 0
            && now_ms() < until
            && (!self.writes_only.load(Ordering::Relaxed) || spec.has("write"))
    }

    /// Waits until `spec` may run (the pause ends, is lifted, or no longer covers it), the
    /// server stops or `client` is killed.
    pub async fn wait_for(&self, spec: &Spec, core: &shardcast_engine::Core, client: &ClientInfo) {
        while self.blocks(spec) && !core.stop_requested() && !client.is_killed() {
            glommio::timer::sleep(Duration::from_millis(PAUSE_POLL_MS)).await;
        }
    }

    /// Pauses until `until_ms`. As in Redis, a pause never shortens one in force, and ALL
    /// wins over WRITE while both last.
    pub fn start(&self, until_ms: u64, writes_only: bool) {
        let current = self.until_ms.load(Ordering::Relaxed);
        let active = current > now_ms();
        let was_writes_only = self.writes_only.load(Ordering::Relaxed);
        let writes_only = if active { writes_only && was_writes_only } else { writes_only };
        self.writes_only.store(writes_only, Ordering::Relaxed);
        let until = if active { current.max(until_ms) } else { until_ms };
        // 0 means no pause: a zero timeout at the epoch still pauses for 1 ms.
        self.until_ms.store(until.max(1), Ordering::Relaxed);
    }

    pub fn end(&self) {
        self.until_ms.store(0, Ordering::Relaxed);
    }

    /// `(pause until Unix ms, writes only)` while a pause lasts.
    pub fn current(&self) -> Option<(u64, bool)> {
        let until = self.until_ms.load(Ordering::Relaxed);
        (until > now_ms()).then(|| (until, self.writes_only.load(Ordering::Relaxed)))
    }
}

/// CLIENT PAUSE timeout [WRITE|ALL]
fn pause(shared: &Shared, s: &mut Session, args: &[Vec<u8>]) {
    let timeout = match int_arg(&args[0]) {
        Ok(t) if t < 0 => return s.w.error("ERR timeout is negative"),
        Ok(t) => t as u64,
        Err(_) => return s.w.error("ERR timeout is not an integer or out of range"),
    };
    let writes_only = match args.get(1).map(|a| lower(a)) {
        None => false,
        Some(m) if m == "all" => false,
        Some(m) if m == "write" => true,
        Some(_) => return s.w.error("ERR CLIENT PAUSE mode must be WRITE or ALL"),
    };
    shared.pause.start(now_ms().saturating_add(timeout), writes_only);
    s.w.ok();
}

/// Which connections CLIENT KILL's filters select.
#[derive(Default)]
struct KillFilter {
    id: Option<u64>,
    addr: Option<Vec<u8>>,
    laddr: Option<Vec<u8>>,
    /// TYPE other than normal: matches none (there are no replicas or subscribers).
    no_type_matches: bool,
    skip_me: bool,
}

/// CLIENT KILL ip:port | CLIENT KILL <filter> <value> ...
fn kill(shared: &Shared, s: &mut Session, args: &[Vec<u8>]) {
    if args.len() == 1 {
        // The old form: one address, OK or an error.
        let killed = kill_matching(
            shared,
            s,
            &KillFilter { addr: Some(args[0].clone()), ..Default::default() },
        );
        return if killed == 0 { s.w.error("ERR No such client") } else { s.w.ok() };
    }
    if !args.len().is_multiple_of(2) {
        return s.w.error(ERR_SYNTAX);
    }
    let mut f = KillFilter { skip_me: true, ..Default::default() };
    for pair in args.chunks(2) {
        let value = &pair[1];
        match lower(&pair[0]).as_str() {
            "id" => match int_arg(value) {
                Ok(id) if id > 0 => f.id = Some(id as u64),
                _ => return s.w.error("ERR client-id should be greater than 0"),
            },
            "addr" => f.addr = Some(value.clone()),
            "laddr" => f.laddr = Some(value.clone()),
            "type" => match lower(value).as_str() {
                "normal" => {}
                "master" | "replica" | "slave" | "pubsub" => f.no_type_matches = true,
                _ => {
                    return s.w.error(&format!(
                        "ERR Unknown client type '{}'",
                        String::from_utf8_lossy(value)
                    ))
                }
            },
            "user" => {
                if value.as_slice() != b"default" {
                    return s
                        .w
                        .error(&format!("ERR No such user '{}'", String::from_utf8_lossy(value)));
                }
            }
            "skipme" => match lower(value).as_str() {
                "yes" => f.skip_me = true,
                "no" => f.skip_me = false,
                _ => return s.w.error(ERR_SYNTAX),
            },
            _ => return s.w.error(ERR_SYNTAX),
        }
    }
    let killed = kill_matching(shared, s, &f);
    s.w.int(killed as i64);
}

/// Kills the connections `f` selects; this one closes after its reply.
fn kill_matching(shared: &Shared, s: &mut Session, f: &KillFilter) -> usize {
    if f.no_type_matches {
        return 0;
    }
    let clients: Vec<_> =
        shared.clients.lock().expect("client registry poisoned").values().cloned().collect();
    let mut killed = 0;
    for c in clients {
        let me = c.id == s.client.id;
        let selected = f.id.is_none_or(|id| id == c.id)
            && f.addr.as_ref().is_none_or(|a| a == c.addr.as_bytes())
            && f.laddr.as_ref().is_none_or(|a| a == c.laddr.as_bytes())
            && !(me && f.skip_me);
        if !selected {
            continue;
        }
        killed += 1;
        if me {
            s.close = true;
        } else {
            c.kill();
        }
    }
    killed
}

/// CLIENT LIST's flags: O a MONITOR, e no-evict, N none.
fn flags(c: &ClientInfo) -> String {
    let mut f = String::new();
    if c.monitor.load(Ordering::Relaxed) {
        f.push('O');
    }
    if c.no_evict.load(Ordering::Relaxed) {
        f.push('e');
    }
    if f.is_empty() {
        f.push('N');
    }
    f
}

/// Names the client (CLIENT SETNAME, HELLO SETNAME); its ops count for that application.
pub(crate) fn set_client_name(s: &Session, name: Vec<u8>) {
    let app = shardcast_engine::telemetry::AppId::of(&name);
    s.client.app.store(app.0, std::sync::atomic::Ordering::Relaxed);
    *s.client.name.lock().expect("client name poisoned") = name;
}

pub(crate) fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

fn client_line(shared: &Shared, c: &crate::shared::ClientInfo) -> String {
    let age = c.created.elapsed();
    let idle_ms =
        (age.as_millis() as u64).saturating_sub(c.last_command_ms.load(Ordering::Relaxed));
    let cmd_idx = c.last_command.load(Ordering::Relaxed) as usize;
    let cmd = COMMANDS.get(cmd_idx).map_or("NULL", |s| s.name);
    let _ = shared;
    format!(
        "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags={} db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={} core={}\n",
        c.id,
        c.addr,
        c.laddr,
        String::from_utf8_lossy(&c.name.lock().expect("client name poisoned")),
        age.as_secs(),
        idle_ms / 1000,
        flags(c),
        cmd,
        if c.resp3.load(Ordering::Relaxed) { 3 } else { 2 },
        c.lib_name.lock().expect("lib name poisoned"),
        c.lib_ver.lock().expect("lib ver poisoned"),
        c.core.load(Ordering::Relaxed),
    )
}

pub fn client(shared: &Shared, s: &mut Session, args: &[Vec<u8>]) {
    let sub = lower(&args[1]);
    match (sub.as_str(), args.len()) {
        ("id", 2) => s.w.int(s.client.id as i64),
        ("setname", 3) => {
            if !valid_client_name(&args[2]) {
                return s.w.error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            set_client_name(s, args[2].clone());
            s.w.ok();
        }
        ("getname", 2) => {
            let name = s.client.name.lock().expect("client name poisoned").clone();
            if name.is_empty() {
                s.w.null()
            } else {
                s.w.bulk(&name)
            }
        }
        ("setinfo", 4) => {
            let value = String::from_utf8_lossy(&args[3]).into_owned();
            if value.contains(|c: char| c == ' ' || c.is_control()) {
                return s.w.error("ERR lib-name and lib-ver cannot contain spaces, newlines or special characters.");
            }
            match lower(&args[2]).as_str() {
                "lib-name" => *s.client.lib_name.lock().expect("lib name poisoned") = value,
                "lib-ver" => *s.client.lib_ver.lock().expect("lib ver poisoned") = value,
                _ => {
                    return s.w.error(&format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(&args[2])
                    ))
                }
            }
            s.w.ok();
        }
        ("info", 2) => s.w.bulk(client_line(shared, &s.client).as_bytes()),
        ("kill", 3..) => kill(shared, s, &args[2..]),
        ("pause", 3 | 4) => pause(shared, s, &args[2..]),
        ("unpause", 2) => {
            shared.pause.end();
            s.w.ok();
        }
        ("no-evict", 3) => match lower(&args[2]).as_str() {
            "on" => {
                s.client.no_evict.store(true, Ordering::Relaxed);
                s.w.ok();
            }
            "off" => {
                s.client.no_evict.store(false, Ordering::Relaxed);
                s.w.ok();
            }
            _ => s.w.error(ERR_SYNTAX),
        },
        ("list", _) => {
            let mut ids: Option<Vec<u64>> = None;
            let mut i = 2;
            while i < args.len() {
                match lower(&args[i]).as_str() {
                    "type" if i + 1 < args.len() => i += 2,
                    "id" => {
                        let mut v = Vec::new();
                        for a in &args[i + 1..] {
                            match int_arg(a) {
                                Ok(n) if n > 0 => v.push(n as u64),
                                _ => return s.w.error("ERR Invalid client ID"),
                            }
                        }
                        ids = Some(v);
                        i = args.len();
                    }
                    _ => return s.w.error(ERR_SYNTAX),
                }
            }
            let clients: Vec<_> = shared
                .clients
                .lock()
                .expect("client registry poisoned")
                .values()
                .cloned()
                .collect();
            let mut out = String::new();
            for c in clients.iter().filter(|c| ids.as_ref().is_none_or(|ids| ids.contains(&c.id))) {
                out.push_str(&client_line(shared, c));
            }
            s.w.bulk(out.as_bytes());
        }
        ("help", _) => {
            let lines = [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GETNAME",
                "    Return the name of the current connection.",
                "ID",
                "    Return the ID of the current connection.",
                "INFO",
                "    Return information about the current client connection.",
                "KILL <ip:port>",
                "    Kill connection made from <ip:port>.",
                "KILL <option> <value> [<option> <value> [...]]",
                "    Kill connections. Options are:",
                "    * ADDR (<ip:port>|<unixsocket>:0)",
                "      Kill connections made from the specified address",
                "    * LADDR (<ip:port>|<unixsocket>:0)",
                "      Kill connections made to specified local address",
                "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
                "      Kill connections by type.",
                "    * USER <username>",
                "      Kill connections authenticated by <username>.",
                "    * SKIPME (YES|NO)",
                "      Skip killing current connection (default: yes).",
                "    * ID <client-id>",
                "      Kill connections by client id.",
                "LIST [TYPE normal] [ID <id> [<id> ...]]",
                "    Return information about client connections.",
                "NO-EVICT (ON|OFF)",
                "    Protect current client connection from eviction (this server evicts no",
                "    client connections, so the flag is only recorded).",
                "PAUSE <timeout> [WRITE|ALL]",
                "    Suspend all, or just write, clients for <timeout> milliseconds.",
                "SETINFO <option> <value>",
                "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "UNPAUSE",
                "    Stop the current client pause, resuming traffic.",
            ];
            s.w.lines(&lines);
        }
        (
            "id" | "setname" | "getname" | "setinfo" | "info" | "kill" | "pause" | "unpause"
            | "no-evict",
            _,
        ) => s.w.error(&format!("ERR wrong number of arguments for 'client|{sub}' command")),
        _ => unknown_subcommand(&mut s.w, &args[1], "client"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &[u8]) -> &'static Spec {
        crate::table::lookup(name).unwrap().1
    }

    #[test]
    fn a_pause_holds_what_its_mode_says_and_never_shortens() {
        let p = ClientPause::default();
        assert!(!p.blocks(spec(b"set")) && p.current().is_none());
        let now = now_ms();
        p.start(now + 60_000, true);
        assert!(p.blocks(spec(b"set")) && !p.blocks(spec(b"get")));
        // ALL wins over WRITE; the later end stays.
        p.start(now + 1_000, false);
        assert!(p.blocks(spec(b"get")));
        assert_eq!(p.current(), Some((now + 60_000, false)));
        // WRITE does not weaken ALL while it lasts.
        p.start(now + 120_000, true);
        assert_eq!(p.current(), Some((now + 120_000, false)));
        p.end();
        assert!(!p.blocks(spec(b"set")) && p.current().is_none());
        // An ended pause leaves nothing behind: a new WRITE pause is WRITE.
        p.start(now + 60_000, true);
        assert!(!p.blocks(spec(b"get")));
        p.end();
        p.start(0, false);
        assert!(!p.blocks(spec(b"get")), "a pause already over holds nothing");
    }
}
