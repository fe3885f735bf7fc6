//! `GET /history.csv[?partition=NAME][&resolution=minute|tick]`: the load history in the
//! trace format (docs/trace-format.md). `minute` (the default) gives every kept minute row,
//! `tick` the recent full-resolution rows. NAME `(default)` is the default partition.

use super::Response;
use crate::control::Control;
use shardcast_predictor::trace::write_trace;

pub(super) fn respond(control: &Control, query: &[(String, Vec<u8>)]) -> Response {
    let mut partition: Option<Vec<u8>> = None;
    let mut ticks = false;
    for (k, v) in query {
        match (k.as_str(), v.as_slice()) {
            ("partition", b"(default)") => partition = Some(Vec::new()),
            ("partition", name) => partition = Some(name.to_vec()),
            ("resolution", b"minute") => ticks = false,
            ("resolution", b"tick") => ticks = true,
            ("resolution", other) => {
                let other = String::from_utf8_lossy(other);
                return Response::text(400, format!("resolution '{other}': use minute or tick"));
            }
            (other, _) => return Response::text(400, format!("unknown parameter '{other}'")),
        }
    }
    let rows = control.with_history(|h| {
        if ticks {
            h.ticks(partition.as_deref())
        } else {
            h.minutes(partition.as_deref())
        }
    });
    Response {
        status: 200,
        content_type: "text/csv; charset=utf-8",
        body: write_trace(&rows).into_bytes(),
        extra_headers: vec![],
    }
}
