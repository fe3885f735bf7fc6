//! A connection whose keys all belong to another core moves to that core between commands,
//! keeping its session (name, AUTH) and the pipelined input it had read but not yet parsed.

mod common;
use common::{core_of_partition, shards, Server};

fn client_core(c: &mut redis::Connection) -> usize {
    let info: String = redis::cmd("CLIENT").arg("INFO").query(c).unwrap();
    let core = info.split_whitespace().find_map(|f| f.strip_prefix("core=")).expect("core= field");
    core.parse().unwrap()
}

#[test]
fn connection_moves_to_the_core_owning_its_keys() {
    let server = Server::start("migration", &["--cores", "2", "--requirepass", "pw"]);
    let url = format!("redis://:pw@127.0.0.1:{}/", server.port);
    let mut setup = redis::Client::open(url.clone()).unwrap().get_connection().unwrap();
    for p in 0..10 {
        let _: () =
            redis::cmd("SET").arg(format!("part{p}:seed")).arg("x").query(&mut setup).unwrap();
    }
    let rows = shards(&mut setup);
    let owners: Vec<(String, i64)> = (0..10)
        .map(|p| format!("part{p}"))
        .map(|p| (p.clone(), core_of_partition(&rows, &p)))
        .collect();

    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: () = redis::cmd("CLIENT").arg("SETNAME").arg("mover").query(&mut c).unwrap();
    let here = client_core(&mut c);
    let (remote, _) = owners
        .iter()
        .find(|(_, core)| *core != here as i64)
        .expect("a partition on the other core");
    // One pipeline larger than a batch: the move happens with unparsed commands in hand.
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("SET").arg(format!("{remote}:k{i}")).arg(i).ignore();
    }
    pipe.cmd("GET").arg(format!("{remote}:k4999"));
    let (last,): (String,) = pipe.query(&mut c).unwrap();
    assert_eq!(last, "4999");
    assert_ne!(client_core(&mut c), here, "the connection did not move");
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut c).unwrap();
    assert_eq!(name, "mover");
    for i in (0..5000).step_by(499) {
        let v: i64 = redis::cmd("GET").arg(format!("{remote}:k{i}")).query(&mut c).unwrap();
        assert_eq!(v, i);
    }
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 5010);
}
