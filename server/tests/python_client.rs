//! redis-py, the most used Python client, against the real binary: its handshake, default
//! pipeline (MULTI/EXEC), `transaction` helper with WATCH, WatchError, and a rate limiter
//! written the common way (`fixtures/redis_py_client.py`). Debian's `python3-redis` is
//! installed by `.ci/run`.

mod common;

use common::{partitions_on_both_cores, Server};
use std::process::Command;

#[test]
fn redis_py_pipelines_and_transactions_work() {
    let server = Server::start("python-client", &["--cores", "2"]);
    let (a, b) = partitions_on_both_cores(&mut server.client());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/redis_py_client.py");
    // Debian's interpreter, which python3-redis is installed for (a pyenv `python3` earlier
    // on the PATH would not see it).
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("python3");
    let out = Command::new(python)
        .arg(script)
        .arg(server.port.to_string())
        .arg(format!("{a}:balance"))
        .arg(format!("{b}:balance"))
        .output()
        .expect("python3 (with python3-redis; .ci/run installs it)");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "redis-py failed:\n{stdout}\n{stderr}\n{}", server.log());
    assert!(stdout.contains("redis-py ok"), "{stdout}");
}
