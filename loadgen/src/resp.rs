//! RESP encoding into a reusable buffer and reply parsing in place (no allocation).

/// The longest bulk reply accepted (Redis's default `proto-max-bulk-len`).
pub const BULK_BYTES_MAX: usize = 512 * 1024 * 1024;
/// The most elements accepted in one array reply.
pub const ARRAY_LEN_MAX: usize = 1 << 20;
/// The deepest nesting of arrays accepted.
pub const DEPTH_MAX: usize = 8;
/// The longest header line (`*123\r\n`, `+OK\r\n`, `-ERR ...\r\n`) accepted.
pub const LINE_BYTES_MAX: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "protocol error: {}", self.0)
    }
}

/// One parsed element. `Array(n)`'s elements follow it in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Int(i64),
    Bulk(&'a [u8]),
    Nil,
    /// Element count (a RESP3 map counts its keys and values).
    Array(usize),
    /// A RESP3 scalar this client does not interpret (double, boolean, big number).
    Other(&'a [u8]),
}

fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    // buf[0] is the type byte; the line runs to the first \r\n.
    let limit = buf.len().min(LINE_BYTES_MAX);
    let mut i = 1;
    while i + 1 < limit {
        if buf[i] == b'\r' && buf[i + 1] == b'\n' {
            return Ok(Some((&buf[1..i], i + 2)));
        }
        i += 1;
    }
    if buf.len() >= LINE_BYTES_MAX {
        return Err(ProtocolError(format!("reply line longer than {LINE_BYTES_MAX} bytes")));
    }
    Ok(None)
}

fn int(s: &[u8]) -> Result<i64, ProtocolError> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Err(ProtocolError(format!("bad integer {:?}", String::from_utf8_lossy(s))));
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(ProtocolError(format!("bad integer {:?}", String::from_utf8_lossy(s))));
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((d - b'0') as i64))
            .ok_or_else(|| ProtocolError("integer overflow".into()))?;
    }
    Ok(if neg { -v } else { v })
}

/// Parses one element at the start of `buf`: `Ok(None)` if incomplete.
#[inline]
pub fn parse(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ProtocolError> {
    let Some(&t) = buf.first() else { return Ok(None) };
    let Some((l, used)) = line(buf)? else { return Ok(None) };
    let r = match t {
        b'+' => Reply::Simple(l),
        b'-' => Reply::Error(l),
        b':' => Reply::Int(int(l)?),
        b'$' | b'=' | b'!' => {
            let n = int(l)?;
            if n < 0 {
                return Ok(Some((Reply::Nil, used)));
            }
            let n = n as usize;
            if n > BULK_BYTES_MAX {
                return Err(ProtocolError(format!("bulk of {n} bytes exceeds {BULK_BYTES_MAX}")));
            }
            if buf.len() < used + n + 2 {
                return Ok(None);
            }
            if &buf[used + n..used + n + 2] != b"\r\n" {
                return Err(ProtocolError("bulk not terminated by CRLF".into()));
            }
            let data = &buf[used..used + n];
            return Ok(Some((
                if t == b'!' { Reply::Error(data) } else { Reply::Bulk(data) },
                used + n + 2,
            )));
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = int(l)?;
            if n < 0 {
                return Ok(Some((Reply::Nil, used)));
            }
            let n = n as usize * if t == b'%' || t == b'|' { 2 } else { 1 };
            if n > ARRAY_LEN_MAX {
                return Err(ProtocolError(format!("array of {n} exceeds {ARRAY_LEN_MAX}")));
            }
            Reply::Array(n)
        }
        b'_' => Reply::Nil,
        b',' | b'#' | b'(' => Reply::Other(l),
        other => return Err(ProtocolError(format!("unexpected type byte {:?}", other as char))),
    };
    Ok(Some((r, used)))
}

/// The length of the complete reply at the start of `buf`, or `None` if incomplete.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    // An explicit stack of remaining element counts keeps deep replies off the call stack.
    let mut pending = [0usize; DEPTH_MAX + 1];
    let mut depth = 0usize;
    let mut pos = 0usize;
    loop {
        let Some((r, used)) = parse(&buf[pos..])? else { return Ok(None) };
        pos += used;
        if let Reply::Array(n) = r {
            if n > 0 {
                if depth == DEPTH_MAX {
                    return Err(ProtocolError(format!("reply nested deeper than {DEPTH_MAX}")));
                }
                depth += 1;
                pending[depth] = n;
                continue;
            }
        }
        // One element finished: pop finished arrays.
        loop {
            if depth == 0 {
                return Ok(Some(pos));
            }
            pending[depth] -= 1;
            if pending[depth] > 0 {
                break;
            }
            depth -= 1;
        }
    }
}

/// Decimal digits of `v` into `buf`, returning the used tail.
#[inline]
pub fn itoa(v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = 20;
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

#[inline]
pub fn put_array(out: &mut Vec<u8>, n: usize) {
    let mut b = [0u8; 20];
    out.push(b'*');
    out.extend_from_slice(itoa(n as u64, &mut b));
    out.extend_from_slice(b"\r\n");
}

#[inline]
pub fn put_len(out: &mut Vec<u8>, n: usize) {
    let mut b = [0u8; 20];
    out.push(b'$');
    out.extend_from_slice(itoa(n as u64, &mut b));
    out.extend_from_slice(b"\r\n");
}

#[inline]
pub fn put_bulk(out: &mut Vec<u8>, data: &[u8]) {
    put_len(out, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// A key `prefix` + `infix` + decimal `id` as one bulk string.
#[inline]
pub fn put_key(out: &mut Vec<u8>, prefix: &[u8], infix: &[u8], id: u64) {
    let mut b = [0u8; 20];
    let digits = itoa(id, &mut b);
    put_len(out, prefix.len() + infix.len() + digits.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(infix);
    out.extend_from_slice(digits);
    out.extend_from_slice(b"\r\n");
}

/// A command from its arguments.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    put_array(&mut out, args.len());
    for a in args {
        put_bulk(&mut out, a);
    }
    out
}
