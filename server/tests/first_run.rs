//! The README's start command, run as a newcomer runs it: the current directory a fresh folder,
//! no flag but `--port`, so the data goes to the default `./shardcast-data`, a relative path.
//! Every write once failed there (glommio's `Directory::open` and relative paths) while every
//! other test passed an absolute `--data-dir`. Also a relative `--data-dir` of one's own.

mod common;

use common::Server;
use redis::Commands;

/// Keys of several partitions: the default one, `prefix:` ones and a hash tag.
const KEYS: [&str; 6] = ["plain", "user:1", "user:2", "order:9", "{cart}:items", "{cart}:total"];

fn write_read_restart_read(server: &mut Server) {
    let mut c = server.client();
    for k in KEYS {
        let () = c.set(k, format!("value of {k}")).unwrap();
    }
    let n: i64 = c.incr("counter", 5).unwrap();
    assert_eq!(n, 5);
    for k in KEYS {
        let v: String = c.get(k).unwrap();
        assert_eq!(v, format!("value of {k}"));
    }
    drop(c);
    server.terminate();
    assert!(server.dir.is_dir(), "no data directory at {}", server.dir.display());
    server.restart();
    let mut c = server.client();
    for k in KEYS {
        let v: String = c.get(k).unwrap();
        assert_eq!(v, format!("value of {k}"), "{k} after restart");
    }
    let n: i64 = c.get("counter").unwrap();
    assert_eq!(n, 5);
    let dir: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("dir").query(&mut c).unwrap();
    assert_eq!(dir[1], server.dir.display().to_string(), "CONFIG GET dir is absolute");
}

#[test]
fn the_readme_start_command_keeps_writes_in_the_default_data_dir() {
    let mut server = Server::start_in("readme", "shardcast-data", &[]);
    write_read_restart_read(&mut server);
}

#[test]
fn a_relative_data_dir_works() {
    let mut server = Server::start_in("relative", "rel/data", &["--data-dir", "./rel/data"]);
    write_read_restart_read(&mut server);
}
