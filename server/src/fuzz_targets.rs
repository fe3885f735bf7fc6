//! The bodies of the server's fuzz targets, one function per parser, shared by the two
//! runners: libFuzzer on nightly (`fuzz/fuzz_targets/*.rs`) and the stable test over the
//! corpus plus seeded mutations (`tests/fuzz_parsers.rs`, with the engine's
//! `fuzz_targets::run_corpus_and_mutations`). Also owns these targets' seed inputs.
//! docs/testing.md says how to run them.
//!
//! A body takes any bytes, panics when a property breaks, and returns whether the input parsed
//! as something valid. Beyond "no panic", the properties are: the parser never claims more
//! bytes than it was given; its answer depends only on the bytes it consumed; a complete
//! command cut short is only "incomplete", and an error stays an error whatever follows; what
//! it parsed, written out again canonically, parses to the same value.
//!
//! Not part of the server's API: hidden from the docs, used only by the fuzz runners.

use crate::http::{basic_auth_password, parse_head, sniff, Request, Sniff};
use crate::resp::{parse, split_args, Limits, Parsed, ARGS_MAX, INLINE_LEN_MAX};
use shardcast_engine::fuzz_targets::Seed;

/// The error texts the RESP parser may give (after `ERR Protocol error: `), as Redis's.
const RESP_ERRORS: [&str; 5] = [
    "invalid multibulk length",
    "invalid bulk length",
    "invalid bulk format",
    "too big inline request",
    "unbalanced quotes in request",
];

/// A command as a client writes it: an array of bulk strings.
pub fn encode_command(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// An inline command line for `args`: every argument double-quoted, every byte but letters
/// and digits as `\xHH`.
fn encode_inline(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.push(b'"');
        for &b in a {
            if b.is_ascii_alphanumeric() {
                out.push(b);
            } else {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
        }
        out.push(b'"');
    }
    out
}

/// `resp::parse` on the input as a pipeline (as a connection feeds it), and `split_args` on
/// its first line. Mode bits 0-1 give `bulk_len_max`: 512 MiB, 16, 0 or 1024.
pub fn resp(data: &[u8]) -> bool {
    let Some((&mode, buf)) = data.split_first() else { return false };
    let limits = Limits { bulk_len_max: [512 * 1024 * 1024, 16, 0, 1024][(mode & 3) as usize] };
    let mut at = 0;
    let mut commands = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        let parsed = parse(rest, limits);
        let consumed = match &parsed {
            Parsed::Command { args, consumed } => {
                assert!(!args.is_empty() && args.len() <= ARGS_MAX);
                if rest[0] == b'*' {
                    assert!(args.iter().all(|a| a.len() <= limits.bulk_len_max));
                } else {
                    assert!(*consumed <= INLINE_LEN_MAX + 1);
                }
                // Written canonically, the arguments parse back (if the limit lets them).
                if args.iter().all(|a| a.len() <= limits.bulk_len_max) {
                    let again = encode_command(args);
                    let len = again.len();
                    assert_eq!(
                        parse(&again, limits),
                        Parsed::Command { args: args.clone(), consumed: len }
                    );
                }
                commands += 1;
                *consumed
            }
            Parsed::Skip { consumed } => *consumed,
            Parsed::Incomplete => {
                if rest[0] != b'*' {
                    // An inline command waits only for its line's end, and not past the limit.
                    assert!(!rest.contains(&b'\n') && rest.len() <= INLINE_LEN_MAX);
                }
                break;
            }
            Parsed::Error(text) => {
                assert!(
                    RESP_ERRORS.contains(&text.as_str()) || text.starts_with("expected '$', got '"),
                    "an error text Redis does not give: {text}"
                );
                // An error is final: more bytes do not make it a command.
                let mut more = rest.to_vec();
                more.extend_from_slice(b"\r\n$1\r\nx\r\n");
                assert_eq!(parse(&more, limits), parsed, "an error undone by more bytes");
                break;
            }
        };
        assert!(consumed > 0 && consumed <= rest.len(), "consumed {consumed} of {}", rest.len());
        // The answer depends only on the bytes consumed, and any shorter cut is incomplete.
        assert_eq!(parse(&rest[..consumed], limits), parsed);
        for cut in [consumed - 1, consumed / 2, 1.min(consumed - 1)] {
            assert_eq!(
                parse(&rest[..cut], limits),
                Parsed::Incomplete,
                "cut to {cut} of {consumed}"
            );
        }
        at += consumed;
    }

    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = &buf[..line_end.min(INLINE_LEN_MAX)];
    if let Some(args) = split_args(line) {
        assert_eq!(split_args(&encode_inline(&args)), Some(args), "inline re-quoting differs");
    }
    commands > 0
}

fn percent_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
}

/// A request head written canonically from what `parse_head` made of one.
fn encode_head(req: &Request) -> Vec<u8> {
    let mut out = format!("{} {}", req.method, percent_encode(req.path.as_bytes(), true));
    for (i, (k, v)) in req.query.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(&percent_encode(k.as_bytes(), false));
        out.push('=');
        out.push_str(&percent_encode(v, false));
    }
    out.push_str(" HTTP/1.1");
    for (name, value) in &req.headers {
        out.push_str(&format!("\r\n{name}: {value}"));
    }
    out.into_bytes()
}

/// `http::sniff` on the input and `http::parse_head` on its head (up to the blank line), with
/// `basic_auth_password` on its authorization.
pub fn http_head(data: &[u8]) -> bool {
    let sniffed = sniff(data);
    if data.first() == Some(&b'*') {
        assert_eq!(sniffed, Sniff::NotHttp, "a RESP array taken for HTTP");
    }
    if sniffed == Sniff::Http {
        // Decided by the first line: more bytes do not change it.
        let mut more = data.to_vec();
        more.extend_from_slice(b"\r\nX: y\r\n\r\n");
        assert_eq!(sniff(&more), Sniff::Http);
    }
    let head_end = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(data.len());
    let Ok(req) = parse_head(&data[..head_end]) else { return false };
    assert!(req.path.starts_with('/'), "path {:?}", req.path);
    for (name, value) in &req.headers {
        assert_eq!(name, &name.to_ascii_lowercase());
        assert_eq!(name.trim(), name);
        assert_eq!(value.trim(), value);
        assert!(!name.contains(':'));
    }
    if let Some(auth) = &req.authorization {
        assert!(
            req.headers.iter().any(|(n, v)| n == "authorization" && v == auth),
            "authorization {auth:?} not among the headers"
        );
        if let Some(password) = basic_auth_password(auth) {
            let mut pair = b"user:".to_vec();
            pair.extend_from_slice(&password);
            let header = format!("Basic {}", base64(&pair));
            assert_eq!(basic_auth_password(&header), Some(password), "base64 round trip");
        }
    }
    // Written canonically, the head parses to the same request.
    let again = parse_head(&encode_head(&req))
        .unwrap_or_else(|e| panic!("the canonical head of {req:?} refused: {e}"));
    assert_eq!(
        (&again.method, &again.path, &again.query, &again.headers),
        (&req.method, &req.path, &req.query, &req.headers)
    );
    true
}

fn seed(name: &str, bytes: Vec<u8>) -> Seed {
    Seed { name: format!("seed-{name}"), bytes }
}

fn args(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|a| a.to_vec()).collect()
}

/// Seeds of the `resp` target: the mode byte, then commands as clients send them.
pub fn resp_seeds() -> Vec<Seed> {
    let with_mode = |mode: u8, parts: &[Vec<u8>]| {
        let mut out = vec![mode];
        for p in parts {
            out.extend_from_slice(p);
        }
        out
    };
    let set = encode_command(&args(&[b"SET", b"user:1", b"alice", b"EX", b"100"]));
    let get = encode_command(&args(&[b"GET", b"user:1"]));
    let binary = encode_command(&args(&[b"SET", b"k\r\n\x00", &[0xff; 40]]));
    let mset = encode_command(&args(&[b"MSET", b"a", b"1", b"b", b"2", b"c", b""]));
    let hello = encode_command(&args(&[b"HELLO", b"3", b"AUTH", b"default", b"pw"]));
    vec![
        seed(
            "pipeline",
            with_mode(0, &[set.clone(), get.clone(), b"*1\r\n$4\r\nPING\r\n".to_vec()]),
        ),
        seed("binary-bulk", with_mode(0, &[binary])),
        seed("mset-small-limit", with_mode(1, &[mset])),
        seed("hello-limit-1024", with_mode(3, &[hello])),
        seed("inline", with_mode(0, &[b"SET k \"a b\\n\\x41\" 'it\\'s'\r\nGET k\n".to_vec()])),
        seed("inline-empty-lines", with_mode(0, &[b"\r\n\n  \r\nPING\r\n".to_vec()])),
        seed("empty-and-negative-arrays", with_mode(0, &[b"*0\r\n*-1\r\n".to_vec(), get.clone()])),
        seed("incomplete", with_mode(0, &[set[..set.len() - 3].to_vec()])),
        seed("leading-zeros", with_mode(0, &[b"*002\r\n$03\r\nGET\r\n$-0\r\n\r\n".to_vec()])),
        seed("bad-bulk-length", with_mode(2, &[b"*1\r\n$1\r\nx\r\n".to_vec()])),
        seed("unbalanced-quotes", with_mode(0, &[b"SET \"k v\r\n".to_vec()])),
    ]
}

/// Seeds of the `http_head` target: requests as curl, Prometheus and the dashboard send them.
pub fn http_head_seeds() -> Vec<Seed> {
    let s = |name: &str, text: &str| seed(name, text.as_bytes().to_vec());
    vec![
        s("metrics", "GET /metrics HTTP/1.1\r\nHost: localhost:6379\r\nUser-Agent: Prometheus/2.53.0\r\nAccept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\nAccept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"),
        s("history-query", "GET /history.csv?partition=user%3Aa+b&since_ms=0&x HTTP/1.1\r\nHost: h\r\n\r\n"),
        s("basic-auth", "GET /api/state HTTP/1.1\r\nAuthorization: Basic dTpzZWNyZXQ=\r\nHost: h\r\n\r\n"),
        s("policy-post", "POST /api/policy?policy=allkeys-lru HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nOrigin: http://h\r\n\r\n"),
        s("head-http10", "HEAD / HTTP/1.0\r\n\r\n"),
        s("dashboard-browser", "GET / HTTP/1.1\r\nHost: 127.0.0.1:6379\r\nConnection: keep-alive\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.9\r\n\r\n"),
        s("inline-get", "GET key\r\n"),
        s("bad-escape", "GET /%zz HTTP/1.1\r\n\r\n"),
    ]
}
