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
//! present, must name this host (so a form on another site cannot post it).

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

/// `POST /api/policy?policy=static|reactive|predictive`.
pub fn api_policy(control: Option<&Control>, req: &Request) -> Response {
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
        let r = api_policy(None, &post(&[]));
        assert_eq!(r.status, 403);
        let r = api_policy(
            None,
            &post(&[(DASHBOARD_HEADER, "1"), ("origin", "http://evil.example"), ("host", "h:1")]),
        );
        assert_eq!(r.status, 403);
        assert!(String::from_utf8_lossy(&r.body).contains("evil.example"));
        // From the page, but before telemetry runs.
        let r = api_policy(
            None,
            &post(&[(DASHBOARD_HEADER, "1"), ("origin", "http://h:1"), ("host", "h:1")]),
        );
        assert_eq!(r.status, 503);
    }
}
