//! The dashboard in a real browser: Debian's `chromium`, headless, driven over WebDriver
//! (`chromium-driver`), loads the page of the real server, waits for its data, and what it
//! draws is checked against what the server reports over RESP (`SHARDCAST SHARDS`,
//! `SHARDCAST POLICY`). Every drawn element carries its figures in data-* attributes
//! (dashboard.js); the test reads those with a script in the page.
//!
//! Set `SHARDCAST_DASHBOARD_SCREENSHOT=FILE.png` to keep a screenshot of the page under load
//! (docs/dashboard.md's picture is made so).

mod common;

use common::{shards, Server};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// The forecaster steps every second with a 5 s horizon, so forecasts exist within seconds.
const FAST_FORECASTS: &str = "predict-step-s = 1\nday-s = 60\nforecast-horizon-s = 5\n\
                              predict-fit-interval-s = 10\n";

/// What the page shows, read from its DOM's data-* attributes by `READ_PAGE`.
#[derive(Debug, serde::Deserialize)]
struct Page {
    updates: u32,
    status: String,
    banner: String,
    policy: String,
    policy_disabled: bool,
    charts: Vec<HashMap<String, String>>,
    cores: Vec<CoreCard>,
    partitions: Vec<HashMap<String, String>>,
    migrations: usize,
}

#[derive(Debug, serde::Deserialize)]
struct CoreCard {
    core: String,
    health: String,
    shards_total: String,
    shards: Vec<HashMap<String, String>>,
}

const READ_PAGE: &str = r##"
const all = (sel, root) => [...(root || document).querySelectorAll(sel)];
const data = e => Object.assign({}, e.dataset);
return {
  updates: Number(document.body.dataset.updates),
  status: document.getElementById("status").dataset.status,
  banner: document.getElementById("status").textContent,
  policy: document.getElementById("policy").dataset.current || "",
  policy_disabled: document.getElementById("policy").disabled,
  charts: all("figure.chart").map(data),
  cores: all("div.core").map(c => ({ core: c.dataset.core, health: c.dataset.health,
    shards_total: c.dataset.shardsTotal, shards: all("div.shard", c).map(data) })),
  partitions: all("#partitions tbody tr").map(data),
  migrations: all("#migrations tbody tr").length,
};
"##;

/// A Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`), headless,
/// with its own profile (tests run in parallel). Dropped: the session ends, the driver stops.
struct Browser {
    driver: std::process::Child,
    port: u16,
    session: String,
    profile: PathBuf,
}

impl Browser {
    fn start(name: &str) -> Browser {
        let found = Command::new("chromedriver").arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "the dashboard tests need Debian's chromium and chromium-driver: \
             apt-get install -y chromium chromium-driver (.ci/run does)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile =
            std::env::temp_dir().join(format!("shardcast-chromium-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let mut b = Browser { driver, port, session: String::new(), profile };
        wait_for("chromedriver to listen", || match b.call("GET", "/status", None) {
            Ok(v) if v["value"]["ready"] == true => Ok(()),
            other => Err(format!("{other:?}")),
        });
        let caps = serde_json::json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--window-size=1400,1500",
                format!("--user-data-dir={}", b.profile.display()),
            ]},
        }}});
        let v = b.call("POST", "/session", Some(caps)).expect("a browser session");
        b.session = v["value"]["sessionId"].as_str().expect("a session id").to_owned();
        b
    }

    /// One WebDriver command: its JSON answer, or the error it reported.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes())
            .and_then(|_| s.write_all(body.as_bytes()))
            .map_err(|e| e.to_string())?;
        // The driver keeps the connection open: read the head, then Content-Length bytes.
        let mut out = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let (head_len, body_len) = loop {
            let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the driver closed the connection".into());
            }
            out.extend_from_slice(&chunk[..n]);
            if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| format!("no Content-Length in {head}"))?;
                break (end + 4, len);
            }
        };
        while out.len() < head_len + body_len {
            let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the driver closed the connection mid-answer".into());
            }
            out.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&out[head_len..head_len + body_len]).into_owned();
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if v["value"].get("error").is_some() {
            return Err(v["value"].to_string());
        }
        Ok(v)
    }

    fn session_call(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}/{what}", self.session);
        self.call(method, &path, body).unwrap_or_else(|e| panic!("WebDriver {what}: {e}"))
    }

    fn open(&self, url: &str) {
        self.session_call("POST", "url", Some(serde_json::json!({ "url": url })));
    }

    fn run(&self, script: &str) -> Value {
        let v = self.session_call(
            "POST",
            "execute/sync",
            Some(serde_json::json!({ "script": script, "args": [] })),
        );
        v["value"].clone()
    }

    fn page(&self) -> Page {
        serde_json::from_value(self.run(READ_PAGE)).expect("the page's figures")
    }

    /// Waits until the page shows what `ok` wants; returns that page.
    fn wait_page(&self, what: &str, ok: impl Fn(&Page) -> bool) -> Page {
        wait_for(what, || {
            let p = self.page();
            if ok(&p) {
                Ok(p)
            } else {
                Err(format!("{p:#?}"))
            }
        })
    }

    fn screenshot(&self, file: &Path) {
        let v = self.session_call("GET", "screenshot", None);
        let png = base64_decode(v["value"].as_str().expect("base64"));
        assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a real picture");
        std::fs::write(file, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            _ => 63,
        }
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// One HTTP request on a new connection: status and body.
fn http(port: u16, request: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match f() {
            Ok(v) => return v,
            Err(seen) => {
                assert!(Instant::now() < deadline, "timed out waiting for {what}; last:\n{seen}")
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn config(name: &str, text: &str) -> PathBuf {
    let file =
        std::env::temp_dir().join(format!("shardcast-dash-{name}-{}.toml", std::process::id()));
    std::fs::write(&file, text).unwrap();
    file
}

/// Reads and writes over `partitions` until stopped.
fn load(
    server: &Server,
    partitions: &'static [&'static str],
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let mut c = server.client();
    std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut pipe = redis::pipe();
            for p in partitions {
                for k in 0..20 {
                    pipe.cmd("SET").arg(format!("{p}:{}", (i * 20 + k) % 500)).arg(i).ignore();
                    pipe.cmd("GET").arg(format!("{p}:{}", k)).ignore();
                }
            }
            let _: () = pipe.query(&mut c).unwrap();
            i += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

#[test]
fn the_page_shows_the_partitions_shards_and_forecasts_the_server_reports() {
    let cfg = config(
        "main",
        &format!(
            "policy = \"static\"\ncore-capacity-ops = 1000\nmerge-delay-s = 5\n{FAST_FORECASTS}"
        ),
    );
    let server = Server::start(
        "dash-main",
        &["--cores", "2", "--tick-ms", "500", "--config", cfg.to_str().unwrap()],
    );
    let mut c = server.client();
    const PARTITIONS: &[&str] = &["user", "order", "cart"];
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(&server, PARTITIONS, stop.clone());
    // user: carved out, then split (two own shards); order: carved out (one); cart stays in
    // its shared shard. These are an operator's changes: the charts mark them as such.
    for p in ["user", "user", "order"] {
        let _: () = redis::cmd("SHARDCAST").arg("SPLIT").arg(p).query(&mut c).unwrap();
    }
    let browser = Browser::start("main");
    browser.open(&format!("http://127.0.0.1:{}/", server.port));
    // Waits for data: every partition charted with load and a forecast, and a few refreshes.
    let page = browser.wait_page("the page to chart every partition with a forecast", |p| {
        p.updates >= 3
            && p.status == "ok"
            && PARTITIONS.iter().all(|name| {
                p.charts.iter().any(|c| {
                    c["partition"] == *name
                        && c["loadPoints"].parse::<usize>().unwrap_or(0) >= 3
                        && c["forecastPoints"].parse::<usize>().unwrap_or(0) >= 1
                })
            })
    });
    assert_eq!((page.policy.as_str(), page.policy_disabled), ("static", false));

    // What the server reports over RESP (no change ran meanwhile: the policy is static and
    // the operator's splits were done before the page was read).
    let rows = shards(&mut c);
    let mut own: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_core: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for r in &rows {
        if r.partition != "(shared)" {
            *own.entry(r.partition.clone()).or_default() += 1;
        }
        let shard = (r.shard.to_string(), r.partition.clone());
        per_core.entry(r.core.to_string()).or_default().insert(shard);
    }
    assert_eq!((own.get("user"), own.get("order")), (Some(&2), Some(&1)));

    // Shards per core: the same shards, with their partitions, on the same cores.
    assert_eq!(page.cores.len(), 2, "one card per core");
    let mut drawn: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for card in &page.cores {
        // A busy CI machine may call a core slow or overloaded; never failed.
        assert_ne!(card.health, "failed", "{card:?}");
        assert_eq!(card.shards_total, card.shards.len().to_string());
        let set = drawn.entry(card.core.clone()).or_default();
        for s in &card.shards {
            set.insert((s["shard"].clone(), s["partition"].clone()));
            assert_ne!(s["health"], "failed", "{s:?}");
        }
    }
    assert_eq!(drawn, per_core, "the page's shards per core are the server's");

    // The partitions table: every loaded partition, with its own shard count.
    for name in PARTITIONS {
        let row = page.partitions.iter().find(|r| r["partition"] == *name);
        let row = row.unwrap_or_else(|| panic!("{name} in the table: {:?}", page.partitions));
        assert_eq!(row["shards"], own.get(*name).unwrap_or(&0).to_string(), "{name}: {row:?}");
    }

    // The charts: each with its shard count and the operator's changes marked.
    let chart = |name: &str| page.charts.iter().find(|c| c["partition"] == name).unwrap();
    for name in PARTITIONS {
        assert_eq!(chart(name)["shards"], own.get(*name).unwrap_or(&0).to_string());
    }
    assert_eq!(chart("user")["decisions"], "2", "the carve-out and the split of user");
    assert_eq!(chart("order")["decisions"], "1");
    assert_eq!(chart("cart")["decisions"], "0");
    let marks = browser.run(
        "return [...document.querySelectorAll('.mark')].map(m => m.dataset.by + ' ' + m.dataset.action).sort()",
    );
    assert_eq!(
        marks,
        serde_json::json!(["operator carve-out", "operator carve-out", "operator split"])
    );

    // The migrations the splits made are listed (three committed).
    assert_eq!(page.migrations, 3);
    let text = browser.run("return document.getElementById('migrations').textContent");
    assert!(text.as_str().unwrap().contains("committed"), "{text}");

    // Let the allocator judge (a core's capacity is pinned low, so the load is "hot", but
    // no core has room for a new shard): its explanations appear in the decision log, newest
    // first, the newest being the one SHARDCAST EXPLAIN gives first.
    let _: () = redis::cmd("SHARDCAST").arg("POLICY").arg("reactive").query(&mut c).unwrap();
    let read_times = || -> Vec<u64> {
        let v = browser.run(
            "return [...document.querySelectorAll('#decisions tbody tr')].map(r => Number(r.dataset.atMs))",
        );
        serde_json::from_value(v).unwrap()
    };
    let times = wait_for("the allocator's explanations on the page", || {
        let times = read_times();
        if times.len() >= 2 {
            Ok(times)
        } else {
            Err(format!("{times:?}"))
        }
    });
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    let newest: Vec<redis::Value> =
        redis::cmd("SHARDCAST").arg("EXPLAIN").arg("COUNT").arg(1).query(&mut c).unwrap();
    let fields: Vec<(String, String)> = redis::from_redis_value(&newest[0]).unwrap();
    let at: u64 = fields.iter().find(|(k, _)| k == "at_ms").unwrap().1.parse().unwrap();
    assert!(times[0] <= at, "the page's newest ({}) is at most the server's ({at})", times[0]);
    if let Ok(file) = std::env::var("SHARDCAST_DASHBOARD_SCREENSHOT") {
        browser.screenshot(Path::new(&file));
    }
    stop.store(true, Ordering::Relaxed);
    loader.join().unwrap();
}

#[test]
fn with_requirepass_the_page_needs_the_password_and_switches_the_policy() {
    let cfg = config("auth", &format!("policy = \"static\"\n{FAST_FORECASTS}"));
    let server = Server::start(
        "dash-auth",
        &[
            "--cores",
            "2",
            "--tick-ms",
            "200",
            "--requirepass",
            "s3cret",
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    let port = server.port;
    // "u:s3cret" in base64.
    let auth = "Authorization: Basic dTpzM2NyZXQ=\r\n";
    for path in ["/", "/api/state", "/dashboard.js"] {
        let (status, _) = http(port, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(status, 401, "{path} without the password");
    }
    let (status, body) = http(port, &format!("GET /api/state HTTP/1.1\r\nHost: x\r\n{auth}\r\n"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"auth_required\":true"), "{body}");

    // Switches that do not come from the page, or lack the password, are refused.
    let host = format!("127.0.0.1:{port}");
    let switch = |extra: &str| {
        http(port, &format!("POST /api/policy?policy=reactive HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\n\r\n"))
    };
    assert_eq!(switch("X-Shardcast-Dashboard: 1\r\n").0, 401, "no password");
    assert_eq!(switch(auth).0, 403, "not from the page");
    let (status, body) =
        switch(&format!("{auth}X-Shardcast-Dashboard: 1\r\nOrigin: http://evil.example\r\n"));
    assert_eq!((status, body.contains("not this server")), (403, true), "{body}");
    let (status, body) = http(
        port,
        &format!("POST /api/policy?policy=fastest HTTP/1.1\r\nHost: {host}\r\n{auth}X-Shardcast-Dashboard: 1\r\n\r\n"),
    );
    assert_eq!((status, body.contains("must be static, reactive or predictive")), (400, true));
    let (status, _) = http(port, &format!("POST /metrics HTTP/1.1\r\nHost: x\r\n{auth}\r\n"));
    assert_eq!(status, 405, "POST only for the policy switch");
    let mut c = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let policy = |c: &mut redis::Connection| -> String {
        redis::cmd("SHARDCAST").arg("POLICY").query(c).unwrap()
    };
    assert_eq!(policy(&mut c), "static", "refused switches changed nothing");

    // Without the password the browser is asked for it (401), and gets no page.
    let browser = Browser::start("auth");
    browser.open(&format!("http://127.0.0.1:{port}/"));
    let drawn = browser.run("return document.getElementById('status') !== null");
    assert_eq!(drawn, serde_json::json!(false), "no page without the password");

    // With it (in the URL, as an operator would type it), the page draws, shows the policy
    // switchable, and switching it from the page's control switches the server's.
    browser.open(&format!("http://u:s3cret@127.0.0.1:{port}/"));
    let page = browser.wait_page("the page drawn", |p| p.updates >= 1 && p.policy == "static");
    assert!(!page.policy_disabled, "switchable when authenticated");
    browser.run(
        "const s = document.getElementById('policy'); s.value = 'reactive'; \
         s.dispatchEvent(new Event('change')); return null;",
    );
    wait_for("the switch to reach the server", || match policy(&mut c).as_str() {
        "reactive" => Ok(()),
        other => Err(other.to_owned()),
    });
    browser.wait_page("the page to show the new policy", |p| p.policy == "reactive");
}

#[test]
fn the_page_says_when_the_server_is_starting_or_a_core_has_failed() {
    let browser = Browser::start("degraded");
    // A minute's tick: the first telemetry round is a minute away.
    let server = Server::start("dash-starting", &["--cores", "2", "--tick-ms", "60000"]);
    browser.open(&format!("http://127.0.0.1:{}/", server.port));
    let page = browser.wait_page("the starting message", |p| p.status == "starting");
    assert!(page.banner.contains("waiting for the first telemetry round"), "{}", page.banner);
    drop(server);

    // A core blocked (DEBUG SLEEP) misses its ticks and is failed; the page, whose requests
    // the other core answers (those the blocked core was given time out and are retried),
    // names it.
    let server = Server::start("dash-failed", &["--cores", "2", "--tick-ms", "100"]);
    browser.open(&format!("http://127.0.0.1:{}/", server.port));
    browser.wait_page("the page healthy first", |p| p.status == "ok" && p.updates >= 1);
    let url = server.url();
    let sleeper = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _: () = redis::cmd("DEBUG").arg("SLEEP").arg("20").query(&mut c).unwrap();
    });
    let page = browser.wait_page("a failed core on the page", |p| {
        p.status == "degraded" && p.cores.iter().any(|c| c.health == "failed")
    });
    let failed = page.cores.iter().find(|c| c.health == "failed").unwrap();
    assert!(
        page.banner.contains(&format!("core {} is failed", failed.core)),
        "the banner names the core: {}",
        page.banner
    );
    assert!(page.cores.iter().any(|c| c.health == "healthy"), "the other core is fine");
    sleeper.join().unwrap();
    browser.wait_page("healthy again", |p| p.status == "ok");
}
