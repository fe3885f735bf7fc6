//! Pipelines of 10,000 commands keep their order across cores; 200 concurrent connections
//! each write and read back their own keys.

mod common;
use common::Server;

#[test]
fn pipeline_of_10000_commands_keeps_order() {
    let server = Server::start("pipeline", &["--cores", "2"]);
    let mut c = server.client();
    let mut pipe = redis::pipe();
    for i in 0..2500 {
        let key = format!("p{}:k{i}", i % 7);
        pipe.cmd("SET").arg(&key).arg(i).ignore();
        pipe.cmd("INCR").arg(&key);
        pipe.cmd("GET").arg(&key);
        pipe.cmd("EXISTS").arg(&key).arg("nokey");
    }
    let replies: Vec<redis::Value> = pipe.query(&mut c).unwrap();
    assert_eq!(replies.len(), 7500);
    for (i, chunk) in replies.chunks(3).enumerate() {
        assert_eq!(chunk[0], redis::Value::Int(i as i64 + 1), "INCR reply {i}");
        assert_eq!(
            chunk[1],
            redis::Value::BulkString((i + 1).to_string().into_bytes()),
            "GET reply {i}"
        );
        assert_eq!(chunk[2], redis::Value::Int(1), "EXISTS reply {i}");
    }
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 2500);
}

#[test]
fn two_hundred_concurrent_connections() {
    let server = Server::start("concurrent", &["--cores", "2"]);
    let url = server.url();
    let threads: Vec<_> = (0..200)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                redis::cmd("CLIENT")
                    .arg("SETNAME")
                    .arg(format!("worker-{t}"))
                    .query::<()>(&mut c)
                    .unwrap();
                for i in 0..50 {
                    let key = format!("app{}:t{t}:k{i}", t % 9);
                    let value = format!("v{t}-{i}");
                    let _: () = redis::cmd("SET").arg(&key).arg(&value).query(&mut c).unwrap();
                    let got: String = redis::cmd("GET").arg(&key).query(&mut c).unwrap();
                    assert_eq!(got, value);
                }
                c
            })
        })
        .collect();
    let conns: Vec<_> = threads.into_iter().map(|t| t.join().expect("worker")).collect();
    let mut c = server.client();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    assert!(list.lines().count() >= 201, "CLIENT LIST shows {} clients", list.lines().count());
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 200 * 50);
    drop(conns);
}
