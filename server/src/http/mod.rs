//! HTTP on the main port, as Dragonfly serves it: a connection whose first line is an HTTP/1.x
//! request line gets one HTTP response and is closed. `GET /metrics` (Prometheus text),
//! `GET /history.csv` (the load history in the trace format), and the dashboard (`GET /`,
//! `GET /api/state`, `POST /api/policy`; `dashboard`). With `requirepass` set, every request
//! needs HTTP basic auth with that password (any user name).
//!
//! Bad requests get a 4xx and a closed connection: 400 for a malformed head, 401 without the
//! password, 404 for an unknown path, 405 for a method the path does not take (GET and HEAD
//! everywhere, POST only for `/api/policy`), 431 for a head longer than
//! `HTTP_HEAD_BYTES_MAX`. A request body is never read (the policy switch takes its argument
//! in the query); what a client sends of one is drained and dropped.

pub mod dashboard;
mod history;
mod metrics;

use crate::shared::Shared;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use shardcast_engine::Core;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// The longest request head (request line and headers) read.
pub const HTTP_HEAD_BYTES_MAX: usize = 16 * 1024;
/// How long a client may take to send its request head.
pub const HTTP_HEAD_TIMEOUT_MS: u64 = 10_000;
/// After the response, unread input drained before closing (see `linger`), at most.
pub const HTTP_LINGER_BYTES_MAX: usize = 1024 * 1024;
pub const HTTP_LINGER_MS: u64 = 1_000;

const METHODS: [&str; 9] =
    ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"];

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniff {
    Http,
    /// RESP (or an inline command).
    NotHttp,
    /// Could still be either: read more.
    NeedMore,
}

/// Whether a connection's first bytes are an HTTP request line (`METHOD SP target SP
/// HTTP/1.x`); an inline Redis command never ends its first line with `HTTP/1.x`.
pub fn sniff(bytes: &[u8]) -> Sniff {
    let method_ok = METHODS.iter().any(|m| {
        let m = m.as_bytes();
        let n = m.len().min(bytes.len());
        bytes[..n] == m[..n] && (bytes.len() <= m.len() || bytes[m.len()] == b' ')
    });
    if !method_ok {
        return Sniff::NotHttp;
    }
    match bytes.iter().position(|&b| b == b'\n') {
        None if bytes.len() < HTTP_HEAD_BYTES_MAX => Sniff::NeedMore,
        None => Sniff::NotHttp,
        Some(end) => {
            let line = bytes[..end].strip_suffix(b"\r").unwrap_or(&bytes[..end]);
            if line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0") {
                Sniff::Http
            } else {
                Sniff::NotHttp
            }
        }
    }
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Query parameters, percent-decoded.
    pub query: Vec<(String, Vec<u8>)>,
    pub authorization: Option<String>,
    /// Every header, its name in lower case, its value trimmed.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A response to send.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub extra_headers: Vec<String>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        let mut body = body.into().into_bytes();
        body.push(b'\n');
        Response { status, content_type: "text/plain; charset=utf-8", body, extra_headers: vec![] }
    }

    fn encode(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        for h in &self.extra_headers {
            out.push_str(h);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// Parses a request head (everything before the blank line).
pub fn parse_head(head: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(head).map_err(|_| "the request head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("malformed request line '{line}'"));
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(format!("malformed request line '{line}'"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut params = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = String::from_utf8(percent_decode(k)?).map_err(|_| "query name not UTF-8")?;
        params.push((key, percent_decode(v)?));
    }
    let mut authorization = None;
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (name, value) = l.split_once(':').ok_or_else(|| format!("malformed header '{l}'"))?;
        if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.trim().to_owned());
        }
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Request {
        method: method.to_owned(),
        path: percent_decode(path)
            .ok()
            .and_then(|p| String::from_utf8(p).ok())
            .ok_or("malformed path")?,
        query: params,
        authorization,
        headers,
    })
}

fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let v = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(v.ok_or_else(|| format!("bad percent escape in '{s}'"))?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// The password of a `Basic` authorization header (`user:password`, base64).
pub fn basic_auth_password(header: &str) -> Option<Vec<u8>> {
    let (scheme, token) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(token.trim())?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[colon + 1..].to_vec())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Serves one HTTP request on a connection whose first bytes (`read`) sniffed as HTTP.
pub async fn serve(core: &Rc<Core>, shared: &Arc<Shared>, mut stream: TcpStream, read: Vec<u8>) {
    let mut buf = read;
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break (i + 4 <= HTTP_HEAD_BYTES_MAX).then_some(i);
        }
        if buf.len() >= HTTP_HEAD_BYTES_MAX {
            break None;
        }
        let mut chunk = vec![0u8; HTTP_HEAD_BYTES_MAX - buf.len()];
        let read = futures_lite::future::or(async { Some(stream.read(&mut chunk).await) }, async {
            glommio::timer::sleep(Duration::from_millis(HTTP_HEAD_TIMEOUT_MS)).await;
            None
        })
        .await;
        match read {
            Some(Ok(0)) | Some(Err(_)) => return,
            Some(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            None => {
                let r = Response::text(408, "request head not received in time");
                let _ = stream.write_all(&r.encode(false)).await;
                return;
            }
        }
    };
    let response = match head_end {
        None => Response::text(431, format!("request head over {HTTP_HEAD_BYTES_MAX} bytes")),
        Some(end) => match parse_head(&buf[..end]) {
            Err(e) => Response::text(400, e),
            Ok(req) => respond(core, shared, &req).await,
        },
    };
    let head_only = buf.starts_with(b"HEAD ");
    let _ = stream.write_all(&response.encode(head_only)).await;
    let _ = stream.flush().await;
    linger(&mut stream).await;
}

/// Closes after the response without resetting it: a client still sending (a head over the
/// limit, a body) would get a TCP reset, which may destroy the response in flight, if the
/// socket closed with unread input. So shut the write side and read what is left, up to
/// `HTTP_LINGER_BYTES_MAX` or `HTTP_LINGER_MS`.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    let mut sink = vec![0u8; 16 * 1024];
    let mut left = HTTP_LINGER_BYTES_MAX;
    let drain = async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    futures_lite::future::or(drain, async {
        glommio::timer::sleep(Duration::from_millis(HTTP_LINGER_MS)).await;
    })
    .await;
}

async fn respond(core: &Rc<Core>, shared: &Arc<Shared>, req: &Request) -> Response {
    if let Some(password) = shared.password() {
        let given = req.authorization.as_deref().and_then(basic_auth_password);
        if given.as_deref() != Some(password.as_bytes()) {
            let mut r = Response::text(401, "authentication required");
            r.extra_headers.push("WWW-Authenticate: Basic realm=\"shardcast\"".into());
            return r;
        }
    }
    let control = shared.control.get().map(|c| &**c);
    let post = req.method == "POST";
    if req.method != "GET" && req.method != "HEAD" && !(post && req.path == "/api/policy") {
        let allow = if req.path == "/api/policy" { "POST" } else { "GET, HEAD" };
        let mut r = Response::text(405, format!("method {} not allowed", req.method));
        r.extra_headers.push(format!("Allow: {allow}"));
        return r;
    }
    if let Some(page) = dashboard::asset(&req.path) {
        return page;
    }
    match req.path.as_str() {
        "/api/state" => return dashboard::api_state(core, shared, control, req),
        "/api/policy" if post => {
            return dashboard::api_policy(control, req, shared.auth_required())
        }
        "/api/policy" => {
            let mut r = Response::text(405, format!("method {} not allowed", req.method));
            r.extra_headers.push("Allow: POST".into());
            return r;
        }
        _ => {}
    }
    let Some(control) = control else {
        return Response::text(503, "telemetry is not running");
    };
    match req.path.as_str() {
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics::render(core, shared, control).into_bytes(),
            extra_headers: vec![],
        },
        "/history.csv" => history::respond(control, &req.query),
        other => Response::text(
            404,
            format!("no such path '{other}': try /, /api/state, /metrics or /history.csv"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_told_from_resp_and_inline_commands() {
        assert_eq!(sniff(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), Sniff::Http);
        assert_eq!(sniff(b"GET /metr"), Sniff::NeedMore);
        assert_eq!(sniff(b"GE"), Sniff::NeedMore);
        assert_eq!(sniff(b"GET key\r\n"), Sniff::NotHttp, "an inline GET");
        assert_eq!(sniff(b"*1\r\n$4\r\nPING\r\n"), Sniff::NotHttp);
        assert_eq!(sniff(b"GETX /"), Sniff::NotHttp);
        assert_eq!(sniff(b"PING\r\n"), Sniff::NotHttp);
    }

    #[test]
    fn heads_parse_with_query_and_auth() {
        let r = parse_head(b"GET /history.csv?partition=user%3Aa+b&x HTTP/1.1\r\nAuthorization: Basic dTpzZWNyZXQ=\r\nHost: h").unwrap();
        assert_eq!(r.path, "/history.csv");
        assert_eq!(r.query, vec![("partition".into(), b"user:a b".to_vec()), ("x".into(), vec![])]);
        assert_eq!(
            basic_auth_password(r.authorization.as_deref().unwrap()),
            Some(b"secret".to_vec())
        );
        assert!(parse_head(b"GET /x\r\n").is_err());
        assert!(parse_head(b"GET /%zz HTTP/1.1").is_err());
        assert!(parse_head(b"GET / HTTP/1.1\r\nno-colon").is_err());
        assert_eq!(base64_decode("YQ"), Some(b"a".to_vec()));
        assert_eq!(base64_decode("!!!!"), None);
    }
}
