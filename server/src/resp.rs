//! RESP wire format: parsing client commands (arrays of bulk strings, or inline commands) and
//! writing replies in RESP2 or RESP3. Pure code over byte buffers, no I/O.
//!
//! Invariant: the parser never reads past the buffer, never allocates more than the lengths it
//! has validated against `Limits`, and reports every malformed input as a protocol error with
//! Redis's text (the connection is then closed, as Redis does).

/// Largest inline (non-RESP) command line, as Redis's PROTO_INLINE_MAX_SIZE.
pub const INLINE_LEN_MAX: usize = 64 * 1024;
/// Most arguments in one command (Redis accepts up to INT_MAX; we bound memory instead).
pub const ARGS_MAX: usize = 1024 * 1024;
/// Largest bulk-length header line (`$<digits>\r\n`).
const HEADER_LINE_LEN_MAX: usize = 32;

/// Per-connection parsing limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest bulk string (`proto-max-bulk-len`).
    pub bulk_len_max: usize,
}

/// The outcome of parsing the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A command and how many bytes it took.
    Command { args: Vec<Vec<u8>>, consumed: usize },
    /// Bytes that hold no command (an empty inline line); skip them.
    Skip { consumed: usize },
    /// More bytes are needed.
    Incomplete,
    /// The input is malformed; the text follows `ERR Protocol error: `.
    Error(String),
}

/// Parses one command from the front of `buf`.
pub fn parse(buf: &[u8], limits: Limits) -> Parsed {
    match buf.first() {
        None => Parsed::Incomplete,
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf),
    }
}

/// Finds `\r\n` from `from` in a line of at most `max` bytes; Ok(None) if not there yet,
/// Err if the line is longer than `max`.
fn line_end(buf: &[u8], from: usize, max: usize) -> Result<Option<usize>, ()> {
    let window = &buf[from..buf.len().min(from + max + 2)];
    match window.iter().position(|&b| b == b'\r') {
        Some(i) if i > max => Err(()),
        Some(i) if i + 1 < window.len() => Ok(Some(from + i)),
        Some(_) => Ok(None),
        None if window.len() >= max + 2 => Err(()),
        None => Ok(None),
    }
}

fn parse_int(bytes: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(bytes).ok()?;
    if s.is_empty() || s.starts_with('+') {
        return None;
    }
    s.parse().ok()
}

/// Walks the `count` bulk strings starting at `at`, calling `each` with each one's bytes.
/// Returns where the command ends, or what to answer instead (incomplete or error). It reads
/// only headers until the whole command is present, so a command arriving in many pieces is
/// not copied again on every attempt.
fn walk_bulks(
    buf: &[u8],
    mut at: usize,
    count: i64,
    limits: Limits,
    mut each: impl FnMut(&[u8]),
) -> Result<usize, Parsed> {
    for _ in 0..count {
        if at >= buf.len() {
            return Err(Parsed::Incomplete);
        }
        if buf[at] != b'$' {
            return Err(Parsed::Error(format!("expected '$', got '{}'", buf[at] as char)));
        }
        let end = match line_end(buf, at + 1, HEADER_LINE_LEN_MAX) {
            Ok(Some(e)) => e,
            Ok(None) => return Err(Parsed::Incomplete),
            Err(()) => return Err(Parsed::Error("invalid bulk length".into())),
        };
        if buf[end + 1] != b'\n' {
            return Err(Parsed::Error("invalid bulk length".into()));
        }
        let len = match parse_int(&buf[at + 1..end]) {
            Some(n) if n >= 0 && n as u64 <= limits.bulk_len_max as u64 => n as usize,
            _ => return Err(Parsed::Error("invalid bulk length".into())),
        };
        let data = end + 2;
        if buf.len() < data + len + 2 {
            return Err(Parsed::Incomplete);
        }
        if &buf[data + len..data + len + 2] != b"\r\n" {
            return Err(Parsed::Error("invalid bulk format".into()));
        }
        each(&buf[data..data + len]);
        at = data + len + 2;
    }
    Ok(at)
}

fn parse_multibulk(buf: &[u8], limits: Limits) -> Parsed {
    let end = match line_end(buf, 1, HEADER_LINE_LEN_MAX) {
        Ok(Some(e)) => e,
        Ok(None) => return Parsed::Incomplete,
        Err(()) => return Parsed::Error("invalid multibulk length".into()),
    };
    if buf[end + 1] != b'\n' {
        return Parsed::Error("invalid multibulk length".into());
    }
    let count = match parse_int(&buf[1..end]) {
        Some(n) if n <= ARGS_MAX as i64 => n,
        _ => return Parsed::Error("invalid multibulk length".into()),
    };
    let start = end + 2;
    if count <= 0 {
        return Parsed::Skip { consumed: start };
    }
    // First check that the whole command is here, then copy its arguments once.
    if let Err(p) = walk_bulks(buf, start, count, limits, |_| {}) {
        return p;
    }
    let mut args = Vec::with_capacity(count as usize);
    match walk_bulks(buf, start, count, limits, |a| args.push(a.to_vec())) {
        Ok(consumed) => Parsed::Command { args, consumed },
        Err(p) => p,
    }
}

fn parse_inline(buf: &[u8]) -> Parsed {
    let Some(nl) = buf.iter().take(INLINE_LEN_MAX + 1).position(|&b| b == b'\n') else {
        if buf.len() > INLINE_LEN_MAX {
            return Parsed::Error("too big inline request".into());
        }
        return Parsed::Incomplete;
    };
    let line = &buf[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match split_args(line) {
        Some(args) if args.is_empty() => Parsed::Skip { consumed: nl + 1 },
        Some(args) => Parsed::Command { args, consumed: nl + 1 },
        None => Parsed::Error("unbalanced quotes in request".into()),
    }
}

/// Splits an inline command line as Redis's `sdssplitargs`: spaces separate, "double quotes"
/// with \\n \\r \\t \\b \\a \\xHH escapes, 'single quotes' with \\' only. `None` if unbalanced.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let (mut in_dq, mut in_sq) = (false, false);
        loop {
            if in_dq {
                let c = *line.get(i)?;
                if c == b'\\'
                    && i + 3 < line.len()
                    && line[i + 1] == b'x'
                    && line[i + 2].is_ascii_hexdigit()
                    && line[i + 3].is_ascii_hexdigit()
                {
                    let hex = std::str::from_utf8(&line[i + 2..i + 4]).ok()?;
                    cur.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 3;
                } else if c == b'\\' && i + 1 < line.len() {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    // A closing quote must be followed by a space or the end.
                    if i + 1 < line.len() && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    in_dq = false;
                } else {
                    cur.push(c);
                }
            } else if in_sq {
                let c = *line.get(i)?;
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < line.len() && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    in_sq = false;
                } else {
                    cur.push(c);
                }
            } else {
                match line.get(i) {
                    None => break,
                    Some(c) if c.is_ascii_whitespace() => break,
                    Some(b'"') => in_dq = true,
                    Some(b'\'') => in_sq = true,
                    Some(&c) => cur.push(c),
                }
            }
            i += 1;
        }
        args.push(cur);
    }
}

/// Reply encoder for one connection.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
    /// RESP3 after `HELLO 3`.
    pub resp3: bool,
}

impl Writer {
    pub fn simple(&mut self, s: &str) {
        self.buf.push(b'+');
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    /// An array of simple strings (the HELP replies).
    pub fn lines(&mut self, lines: &[&str]) {
        self.array(lines.len());
        for l in lines {
            self.simple(l);
        }
    }

    pub fn ok(&mut self) {
        self.buf.extend_from_slice(b"+OK\r\n");
    }

    /// An error reply; `msg` starts with its code (`ERR ...`, `WRONGTYPE ...`). Newlines in it
    /// are replaced, as a RESP error is one line.
    pub fn error(&mut self, msg: &str) {
        self.buf.push(b'-');
        self.buf.extend(msg.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
        self.buf.extend_from_slice(b"\r\n");
    }

    pub fn int(&mut self, v: i64) {
        self.buf.push(b':');
        push_int(&mut self.buf, v);
        self.buf.extend_from_slice(b"\r\n");
    }

    pub fn bulk(&mut self, data: &[u8]) {
        self.buf.push(b'$');
        push_int(&mut self.buf, data.len() as i64);
        self.buf.extend_from_slice(b"\r\n");
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    pub fn null(&mut self) {
        if self.resp3 {
            self.buf.extend_from_slice(b"_\r\n");
        } else {
            self.buf.extend_from_slice(b"$-1\r\n");
        }
    }

    /// A missing array: `*-1` in RESP2, `_` in RESP3.
    pub fn null_array(&mut self) {
        if self.resp3 {
            self.buf.extend_from_slice(b"_\r\n");
        } else {
            self.buf.extend_from_slice(b"*-1\r\n");
        }
    }

    pub fn array(&mut self, len: usize) {
        self.buf.push(b'*');
        push_int(&mut self.buf, len as i64);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// A map of `len` pairs: `%` in RESP3, a flat array of 2*len in RESP2.
    pub fn map(&mut self, len: usize) {
        if self.resp3 {
            self.buf.push(b'%');
            push_int(&mut self.buf, len as i64);
            self.buf.extend_from_slice(b"\r\n");
        } else {
            self.array(len * 2);
        }
    }

    /// A set: `~` in RESP3, an array in RESP2.
    pub fn set(&mut self, len: usize) {
        if self.resp3 {
            self.buf.push(b'~');
            push_int(&mut self.buf, len as i64);
            self.buf.extend_from_slice(b"\r\n");
        } else {
            self.array(len);
        }
    }
}

/// Appends the decimal form of `v`.
pub fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut tmp = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits { bulk_len_max: 512 * 1024 * 1024 };

    fn cmd(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk_and_pipelines() {
        let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n";
        let Parsed::Command { args, consumed } = parse(buf, L) else { panic!() };
        assert_eq!(args, cmd(&["GET", "k"]));
        assert_eq!(
            parse(&buf[consumed..], L),
            Parsed::Command { args: cmd(&["PING"]), consumed: 14 }
        );
        for cut in 0..consumed {
            assert_eq!(parse(&buf[..cut], L), Parsed::Incomplete, "cut {cut}");
        }
    }

    #[test]
    fn binary_safe_bulk() {
        let buf = b"*1\r\n$4\r\na\r\nb\r\n";
        assert_eq!(
            parse(buf, L),
            Parsed::Command { args: vec![b"a\r\nb".to_vec()], consumed: buf.len() }
        );
    }

    #[test]
    fn protocol_errors_have_redis_texts() {
        let cases: [(&[u8], &str); 6] = [
            (b"*x\r\n", "invalid multibulk length"),
            (b"*2\r\n+GET\r\n", "expected '$', got '+'"),
            (b"*1\r\n$-5\r\n", "invalid bulk length"),
            (b"*1\r\n$3\r\nabcd\r\n", "invalid bulk format"),
            (b"*99999999999\r\n", "invalid multibulk length"),
            (b"\"unbalanced\n", "unbalanced quotes in request"),
        ];
        for (input, text) in cases {
            assert_eq!(
                parse(input, L),
                Parsed::Error(text.into()),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let small = Limits { bulk_len_max: 10 };
        assert_eq!(parse(b"*1\r\n$11\r\n", small), Parsed::Error("invalid bulk length".into()));
        assert_eq!(
            parse(&vec![b'a'; INLINE_LEN_MAX + 10], L),
            Parsed::Error("too big inline request".into())
        );
        assert_eq!(parse(&[b'*'; 64], L), Parsed::Error("invalid multibulk length".into()));
        // A header whose CR is the last byte of the longest allowed line: an error, not a wait.
        let long = format!("*{}\r\n", "1".repeat(33));
        assert_eq!(parse(long.as_bytes(), L), Parsed::Error("invalid multibulk length".into()));
        let long = format!("*1\r\n${}\r\n", "1".repeat(33));
        assert_eq!(parse(long.as_bytes(), L), Parsed::Error("invalid bulk length".into()));
    }

    #[test]
    fn inline_commands() {
        assert_eq!(parse(b"PING\r\n", L), Parsed::Command { args: cmd(&["PING"]), consumed: 6 });
        assert_eq!(
            parse(b"set k \"a b\\n\" 'c'\n", L),
            Parsed::Command {
                args: vec![b"set".to_vec(), b"k".to_vec(), b"a b\n".to_vec(), b"c".to_vec()],
                consumed: 18
            }
        );
        assert_eq!(parse(b"\r\n", L), Parsed::Skip { consumed: 2 });
        assert_eq!(parse(b"GET k", L), Parsed::Incomplete);
        assert_eq!(split_args(b"\"\\x41\\x42\""), Some(vec![b"AB".to_vec()]));
        assert_eq!(split_args(b"\"a\"b"), None);
    }

    #[test]
    fn writer_encodings() {
        let mut w = Writer::default();
        w.int(-42);
        w.bulk(b"hi");
        w.null();
        w.array(2);
        w.map(1);
        assert_eq!(w.buf, b":-42\r\n$2\r\nhi\r\n$-1\r\n*2\r\n*2\r\n");
        let mut w = Writer { resp3: true, ..Writer::default() };
        w.null();
        w.map(1);
        assert_eq!(w.buf, b"_\r\n%1\r\n");
        let mut v = Vec::new();
        push_int(&mut v, i64::MIN);
        assert_eq!(v, i64::MIN.to_string().as_bytes());
    }
}
