//! redis-py, the most used Python client, against the real binary: its handshake, default
//! pipeline (MULTI/EXEC), `transaction` helper with WATCH, WatchError, and a rate limiter
//! written the common way (`fixtures/redis_py_client.py`). Debian's `python3-redis` is
//! installed by `.ci/run`.

mod common;

use common::{core_of_partition, shards, Server};
use std::process::Command;

#[test]
fn redis_py_pipelines_and_transactions_work() {
    let server = Server::start("python-client", &["--cores", "2"]);
    let rows = shards(&mut server.client());
    let names: Vec<String> = (0..64).map(|i| format!("p{i}")).collect();
    let on = |core| names.iter().find(|p| core_of_partition(&rows, p) == core).unwrap().clone();
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
        .arg(format!("{}:balance", on(0)))
        .arg(format!("{}:balance", on(1)))
        .output()
        .expect("python3 (with python3-redis; .ci/run installs it)");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "redis-py failed:\n{stdout}\n{stderr}\n{}", server.log());
    assert!(stdout.contains("redis-py ok"), "{stdout}");
}
