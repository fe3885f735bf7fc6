//! The dashboard, served from the binary on the main port: `GET /` (the page), its script and
//! style (`/dashboard.js`, `/dashboard.css`, compiled in with `include_str!`, nothing fetched
//! from elsewhere), `GET /api/state` (the JSON it draws, `state`), and `POST /api/policy`
//! (switches the allocator's policy, as `SHARDCAST POLICY` does).
//!
//! Who may switch the policy: whoever may run `SHARDCAST POLICY`. With `requirepass`, every
//! HTTP request already needs the password (basic auth, checked in `http::respond`); without
//! it the server is as open as Redis without a password. A switch must also come from the
//! page itself: it carries the `X-Shardcast-Dashboard` header, which a page of another origin
//! cannot send without a CORS preflight this server never grants, and an `Origin` header, when
//! present, must name this host (so a form on another site cannot post it). Without a password
//! the `Host` must also be an IP address or `localhost`: a page of another site that makes
//! its own name resolve to this server (DNS rebinding) is same-origin to the browser, but its
//! `Host` is that name.

pub mod state;

use super::{Request, Response};
use crate::control::Control;
use crate::shared::Shared;
use shardcast_engine::Core;
use shardcast_predictor::allocator::Policy;

/// The header a policy switch must carry (any value).
pub const DASHBOARD_HEADER: &str = "x-shardcast-dashboard";

const INDEX_HTML: &str = include_str!("assets/index.html");
const SCRIPT_JS: &str = include_str!("assets/dashboard.js");
const STYLE_CSS: &str = include_str!("assets/dashboard.css");

/// The page and its assets, which need no telemetry (the page says when it is missing).
pub fn asset(path: &str) -> Option<Response> {
    let (content_type, body) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX_HTML),
        "/dashboard.js" => ("text/javascript; charset=utf-8", SCRIPT_JS),
        "/dashboard.css" => ("text/css; charset=utf-8", STYLE_CSS),
        _ => return None,
    };
    Some(Response {
        status: 200,
        content_type,
        body: body.as_bytes().to_vec(),
        extra_headers: vec!["Cache-Control: no-cache".into()],
    })
}

fn json(status: u16, body: Vec<u8>) -> Response {
    Response {
        status,
        content_type: "application/json",
        body,
        extra_headers: vec!["Cache-Control: no-store".into()],
    }
}

fn json_error(status: u16, status_word: &str, message: &str) -> Response {
    let v = serde_json::json!({ "status": status_word, "messages": [message] });
    json(status, v.to_string().into_bytes())
}

/// `GET /api/state`.
pub fn api_state(
    core: &Core,
    shared: &Shared,
    control: Option<&Control>,
    req: &Request,
) -> Response {
    let Some(control) = control else {
        return json_error(503, "starting", "telemetry is not running yet");
    };
    let query = match state::Query::parse(&req.query) {
        Ok(q) => q,
        Err(e) => return json_error(400, "error", &e),
    };
    let doc = state::build(core, shared, control, &query, true);
    match serde_json::to_vec(&doc) {
        Ok(body) => json(200, body),
        Err(e) => json_error(500, "error", &format!("could not encode the state: {e}")),
    }
}

/// Whether `host` (a `Host` header: name or address, maybe a port) is an IP address or
/// `localhost`.
fn is_address_or_localhost(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    if let Some(rest) = host.strip_prefix('[') {
        // [v6] or [v6]:port
        let v6 = rest.split(']').next().unwrap_or_default();
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// `POST /api/policy?policy=static|reactive|predictive`; `password_set` says whether the
/// server has one (then the request carried it: `http::respond` checked).
pub fn api_policy(control: Option<&Control>, req: &Request, password_set: bool) -> Response {
    if !req.headers.iter().any(|(k, _)| k == DASHBOARD_HEADER) {
        return json_error(
            403,
            "error",
            "a policy switch must come from the dashboard (X-Shardcast-Dashboard header)",
        );
    }
    if let Some(origin) = req.header("origin") {
        let host = req.header("host").unwrap_or_default();
        let same = origin.strip_prefix("http://").is_some_and(|o| o == host);
        if !same {
            return json_error(403, "error", &format!("origin '{origin}' is not this server"));
        }
    }
    let host = req.header("host").unwrap_or_default();
    if !password_set && !is_address_or_localhost(host) {
        return json_error(
            403,
            "error",
            &format!(
                "without requirepass the policy is switched only from a page opened by IP \
                 address or localhost, not '{host}' (a guard against DNS rebinding)"
            ),
        );
    }
    let Some(control) = control else {
        return json_error(503, "starting", "telemetry is not running yet");
    };
    let name = req.query.iter().find(|(k, _)| k == "policy").map(|(_, v)| v.as_slice());
    let Some(policy) = name.and_then(|n| Policy::parse(&String::from_utf8_lossy(n))) else {
        return json_error(400, "error", "policy must be static, reactive or predictive");
    };
    control.with_allocator(|a| a.set_policy(policy));
    tracing::info!(policy = policy.as_str(), "allocator policy set from the dashboard");
    let v = serde_json::json!({ "status": "ok", "policy": policy.as_str() });
    json(200, v.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_assets_are_served_and_reference_nothing_outside() {
        for path in ["/", "/dashboard.js", "/dashboard.css"] {
            let r = asset(path).expect(path);
            assert_eq!(r.status, 200);
            let text = String::from_utf8(r.body).unwrap();
            for outside in ["http://", "https://", "//cdn"] {
                assert!(!text.contains(outside), "{path} refers to {outside}");
            }
        }
        assert!(asset("/nope").is_none());
    }

    fn post(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "POST".into(),
            path: "/api/policy".into(),
            query: vec![("policy".into(), b"static".to_vec())],
            authorization: None,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn a_policy_switch_from_elsewhere_is_refused() {
        let r = api_policy(None, &post(&[]), false);
        assert_eq!(r.status, 403);
        let r = api_policy(
            None,
            &post(&[(DASHBOARD_HEADER, "1"), ("origin", "http://evil.example"), ("host", "h:1")]),
            true,
        );
        assert_eq!(r.status, 403);
        assert!(String::from_utf8_lossy(&r.body).contains("evil.example"));
        // Same origin by DNS rebinding: without a password, a name is refused.
        let rebound = [
            (DASHBOARD_HEADER, "1"),
            ("origin", "http://evil.example:6379"),
            ("host", "evil.example:6379"),
        ];
        let r = api_policy(None, &post(&rebound), false);
        assert_eq!(r.status, 403);
        assert!(String::from_utf8_lossy(&r.body).contains("DNS rebinding"));
        // From the page, by address, but before telemetry runs.
        for host in ["127.0.0.1:6379", "localhost:1", "[::1]:6379", "10.0.0.1"] {
            let origin = format!("http://{host}");
            let r = api_policy(
                None,
                &post(&[(DASHBOARD_HEADER, "1"), ("origin", &origin), ("host", host)]),
                false,
            );
            assert_eq!(r.status, 503, "{host}");
        }
        // With a password (checked before), a name is fine.
        let r = api_policy(None, &post(&rebound), true);
        assert_eq!(r.status, 503);
    }

    #[test]
    fn hosts_are_told_from_addresses() {
        for yes in ["127.0.0.1", "127.0.0.1:6379", "localhost", "LOCALHOST:80", "[::1]:6379", "::1"]
        {
            assert!(is_address_or_localhost(yes), "{yes}");
        }
        for no in ["evil.example", "evil.example:6379", "", "[nope]:1", "localhost.evil:1"] {
            assert!(!is_address_or_localhost(no), "{no}");
        }
    }
}
