//! CONFIG REWRITE: the settings CONFIG SET can change, written back into the TOML file the
//! server started from (`--config`), as Redis rewrites its redis.conf. The file is edited in
//! place (`toml_edit`): the operator's comments, order and other keys stay; only the keys
//! below change. Written as a new file, synced, renamed over the old one, directory synced.

use crate::shared::Shared;
use std::io::Write as _;
use std::path::Path;

/// Redis's text when the server started without a config file.
pub const ERR_NO_CONFIG_FILE: &str = "ERR The server is running without a config file";

/// Rewrites the config file with the running values of the settings CONFIG SET changes.
pub fn rewrite(shared: &Shared) -> Result<(), String> {
    let path = shared.config.config_file.as_deref().ok_or(ERR_NO_CONFIG_FILE)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("ERR Rewriting config file: {}: {e}", path.display()))?;
    let mut doc: toml_edit::DocumentMut =
        text.parse().map_err(|e| format!("ERR Rewriting config file: {}: {e}", path.display()))?;
    let ev = shared.eviction();
    let set = |doc: &mut toml_edit::DocumentMut, key: &str, v: toml_edit::Item| doc[key] = v;
    set(&mut doc, "maxmemory", toml_edit::value(ev.maxmemory_bytes().to_string()));
    set(&mut doc, "maxmemory-policy", toml_edit::value(ev.policy().name()));
    set(&mut doc, "maxmemory-samples", toml_edit::value(ev.samples() as i64));
    let maxclients = shared.maxclients.load(std::sync::atomic::Ordering::Relaxed);
    let maxclients = i64::try_from(maxclients)
        .map_err(|_| format!("ERR Rewriting config file: maxclients {maxclients} is too large"))?;
    set(&mut doc, "maxclients", toml_edit::value(maxclients));
    let bulk = shared.proto_max_bulk_len.load(std::sync::atomic::Ordering::Relaxed);
    set(&mut doc, "proto-max-bulk-len", toml_edit::value(bulk.to_string()));
    set(&mut doc, "telemetry", toml_edit::value(shared.config.engine.telemetry.is_on()));
    let obs = &shared.observe;
    set(&mut doc, "slowlog-log-slower-than", toml_edit::value(obs.slowlog.slower_than_us()));
    let slowlog_len = obs.slowlog.max_len() as i64; // at most SLOWLOG_LEN_MAX
    set(&mut doc, "slowlog-max-len", toml_edit::value(slowlog_len));
    let threshold = i64::try_from(obs.events.threshold_ms()).unwrap_or(i64::MAX);
    set(&mut doc, "latency-monitor-threshold", toml_edit::value(threshold));
    set(&mut doc, "latency-tracking", toml_edit::value(obs.tracking()));
    let script_limit = i64::try_from(shared.scripts.time_limit_ms()).unwrap_or(i64::MAX);
    doc.remove("lua-time-limit");
    set(&mut doc, "busy-reply-threshold", toml_edit::value(script_limit));
    let percentiles: Vec<String> =
        obs.percentiles().iter().map(|p| crate::stats::percentile_text(*p)).collect();
    set(&mut doc, "latency-tracking-info-percentiles", toml_edit::value(percentiles.join(" ")));
    match shared.password() {
        Some(p) => set(&mut doc, "requirepass", toml_edit::value(p)),
        None => {
            doc.remove("requirepass");
        }
    }
    write_replacing(path, doc.to_string().as_bytes())
        .map_err(|e| format!("ERR Rewriting config file: {}: {e}", path.display()))
}

/// Replaces the file `path` leads to (a symlink is followed, not replaced) with `bytes`,
/// keeping its permissions (it may hold `requirepass`).
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static REWRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = &std::fs::canonicalize(path)?;
    let permissions = std::fs::metadata(path)?.permissions();
    // Unique per rewrite: two cores may rewrite at once.
    let n = REWRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".rewrite-{}-{n}.tmp", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.set_permissions(permissions)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}
