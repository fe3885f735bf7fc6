//! Reads back a RESP2 reply the server wrote for a command a script called (`redis.call`), so
//! it can become a Lua value. Pure code; the bytes come from `resp::Writer`, but nothing here
//! trusts them: a malformed reply is `None`, never a panic.

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyValue {
    Status(Vec<u8>),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<ReplyValue>),
}

/// Deepest array nesting read.
const DEPTH_MAX: usize = 64;

/// The reply at the start of `buf` and the bytes it took.
pub fn parse_reply(buf: &[u8]) -> Option<(ReplyValue, usize)> {
    parse_at(buf, 0)
}

fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    Some((&buf[..end], end + 2))
}

fn number(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn parse_at(buf: &[u8], depth: usize) -> Option<(ReplyValue, usize)> {
    if depth > DEPTH_MAX {
        return None;
    }
    let (&kind, rest) = buf.split_first()?;
    let (head, used) = line(rest)?;
    let used = used + 1;
    match kind {
        b'+' => Some((ReplyValue::Status(head.to_vec()), used)),
        b'-' => Some((ReplyValue::Error(String::from_utf8_lossy(head).into_owned()), used)),
        b':' => Some((ReplyValue::Int(number(head)?), used)),
        b'$' => {
            let n = number(head)?;
            if n < 0 {
                return Some((ReplyValue::Nil, used));
            }
            let n = n as usize;
            let body = buf.get(used..used.checked_add(n)?)?;
            if buf.get(used + n..used + n + 2)? != b"\r\n" {
                return None;
            }
            Some((ReplyValue::Bulk(body.to_vec()), used + n + 2))
        }
        b'*' => {
            let n = number(head)?;
            if n < 0 {
                return Some((ReplyValue::Nil, used));
            }
            let mut items = Vec::with_capacity((n as usize).min(1024));
            let mut at = used;
            for _ in 0..n {
                let (item, took) = parse_at(buf.get(at..)?, depth + 1)?;
                items.push(item);
                at += took;
            }
            Some((ReplyValue::Array(items), at))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back() {
        let buf = b"*5\r\n+OK\r\n-ERR no\r\n:42\r\n$3\r\nabc\r\n$-1\r\n";
        let (v, used) = parse_reply(buf).unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(
            v,
            ReplyValue::Array(vec![
                ReplyValue::Status(b"OK".to_vec()),
                ReplyValue::Error("ERR no".into()),
                ReplyValue::Int(42),
                ReplyValue::Bulk(b"abc".to_vec()),
                ReplyValue::Nil,
            ])
        );
    }

    #[test]
    fn truncated_or_malformed_is_none() {
        for bad in [&b"$5\r\nab\r\n"[..], b"*2\r\n:1\r\n", b":x\r\n", b"?\r\n", b"$3\r\nabcd"] {
            assert_eq!(parse_reply(bad), None, "{bad:?}");
        }
    }
}
