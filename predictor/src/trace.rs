//! The trace format: one CSV text for a load history, shared by the server's `/history.csv`
//! export and `SHARDCAST HISTORY`, the load generator's `--trace-out` and the simulator's replay.
//!
//! Owns [`TraceRow`] (one partition's load during one interval), the writer ([`header`],
//! [`format_row`], [`write_trace`]), the parser ([`parse_trace`]) with its limits and errors,
//! and the timestamp rules of foreign two-column traces (including the civil-date arithmetic).
//! `docs/trace-format.md` is the reference of the format; it must match this module.
//!
//! The format, in short: a header `ts_ms,partition,reads,writes,deletes,other,bytes_in,
//! bytes_out,keys,distinct_keys,top_key_share` followed by zero or more `app:<name>` columns,
//! then one row per partition per interval. Byte strings (partition and app names) are escaped
//! to printable ASCII (`\\` and `\xHH`), then quoted as RFC 4180 when they contain `,` or `"`
//! or start or end with a space. The parser also reads a foreign trace of two columns
//! (a timestamp and one count per row).

use std::fmt;

/// The longest line the parser accepts, in bytes, without its line ending.
pub const TRACE_LINE_BYTES_MAX: usize = 64 * 1024;
/// The most `app:` columns a trace may have.
pub const TRACE_APPS_MAX: usize = 256;
/// The most rows a trace may have (a row is about 130 bytes in memory, apps not counted).
pub const TRACE_ROWS_MAX: usize = 10_000_000;
/// The largest integer timestamp of a two-column trace read as Unix seconds; a larger one is
/// Unix milliseconds (10^11 s is the year 5138, 10^11 ms is March 1973).
pub const TRACE_TS_SECONDS_MAX: u64 = 99_999_999_999;
/// The most decimals `top_key_share` is written with.
pub const TOP_KEY_SHARE_DECIMALS: usize = 4;
/// The standard columns, in the order the writer puts them.
pub const TRACE_COLUMNS: [&str; 11] = [
    "ts_ms",
    "partition",
    "reads",
    "writes",
    "deletes",
    "other",
    "bytes_in",
    "bytes_out",
    "keys",
    "distinct_keys",
    "top_key_share",
];
/// The prefix of an application column's name: `app:<escaped name>`.
pub const APP_COLUMN_PREFIX: &str = "app:";

/// The longest excerpt of a field quoted in an error, in bytes.
const ERROR_EXCERPT_BYTES_MAX: usize = 64;
const MS_PER_DAY: u64 = 86_400_000;

/// One partition's load during one interval.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceRow {
    /// Start of the interval, Unix ms.
    pub ts_ms: u64,
    /// The partition, raw bytes; empty is the default partition.
    pub partition: Vec<u8>,
    /// GET-like operations.
    pub reads: u64,
    /// SET-like operations.
    pub writes: u64,
    /// Deletions.
    pub deletes: u64,
    /// Any other operation, or operations of unknown kind.
    pub other: u64,
    /// Key and value bytes of the requests.
    pub bytes_in: u64,
    /// Value bytes of the replies.
    pub bytes_out: u64,
    /// Keys held at the end of the interval.
    pub keys: u64,
    /// Distinct keys touched during the interval (an estimate).
    pub distinct_keys: u64,
    /// Share (0 to 1) of the interval's operations that went to its hottest key.
    pub top_key_share: f64,
    /// Operations per client application, sorted by name, without zero counts. The empty
    /// name is the group of clients without a name.
    pub apps: Vec<(Vec<u8>, u64)>,
}

impl TraceRow {
    /// All operations of the row: reads + writes + deletes + other (saturating).
    pub fn ops(&self) -> u64 {
        self.reads
            .saturating_add(self.writes)
            .saturating_add(self.deletes)
            .saturating_add(self.other)
    }
}

/// Why a trace could not be read. Lines and columns count from 1; a column is a byte column
/// of the line (the start of the field, or the exact byte for an escape or a quote).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceError {
    /// A limit was exceeded: `limit` names the constant, `got` is the size reached.
    LimitExceeded { limit: &'static str, line: usize, max: usize, got: usize },
    /// The first line is neither the trace header nor a line of a two-column trace.
    NoHeader { line: usize, fields: usize },
    /// A header column is neither a standard column nor an `app:` column.
    UnknownColumn { line: usize, column: usize, name: String },
    /// A header column appears twice.
    DuplicateColumn { line: usize, column: usize, name: String },
    /// A standard column is missing from the header.
    MissingColumn { line: usize, name: &'static str },
    /// A row has not as many fields as the header (or not two in a two-column trace).
    FieldCount { line: usize, expected: usize, got: usize },
    /// A quote is misplaced or unterminated.
    BadQuoting { line: usize, column: usize, reason: &'static str },
    /// A backslash is followed by neither `\` nor `x` and two hex digits.
    BadEscape { line: usize, column: usize, got: String },
    /// A field does not hold the value its column needs.
    BadValue { line: usize, column: usize, field: String, expected: &'static str, got: String },
    /// A timestamp of a two-column trace could not be read.
    BadTimestamp { line: usize, column: usize, reason: &'static str, got: String },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::LimitExceeded { limit, line, max, got } => {
                write!(f, "line {line}: {limit} exceeded ({got} > {max})")
            }
            TraceError::NoHeader { line, fields } => write!(
                f,
                "line {line}: expected the trace header (ts_ms,partition,...) or two columns \
                 (timestamp,count), got {fields} field(s)"
            ),
            TraceError::UnknownColumn { line, column, name } => {
                write!(f, "line {line}, column {column}: unknown column {name:?}")
            }
            TraceError::DuplicateColumn { line, column, name } => {
                write!(f, "line {line}, column {column}: column {name:?} appears twice")
            }
            TraceError::MissingColumn { line, name } => {
                write!(f, "line {line}: the header has no column {name:?}")
            }
            TraceError::FieldCount { line, expected, got } => {
                write!(f, "line {line}: expected {expected} fields, got {got}")
            }
            TraceError::BadQuoting { line, column, reason } => {
                write!(f, "line {line}, column {column}: {reason}")
            }
            TraceError::BadEscape { line, column, got } => write!(
                f,
                "line {line}, column {column}: bad escape {got:?} (expected \\\\ or \\xHH)"
            ),
            TraceError::BadValue { line, column, field, expected, got } => write!(
                f,
                "line {line}, column {column} ({field}): expected {expected}, got {got:?}"
            ),
            TraceError::BadTimestamp { line, column, reason, got } => {
                write!(f, "line {line}, column {column}: bad timestamp {got:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for TraceError {}

// ---------------------------------------------------------------------------------------------
// Writer

/// The header line for a trace whose rows have the application columns `apps`, in that order
/// (ends with `\n`). `apps` should hold distinct names, at most `TRACE_APPS_MAX` of them, as
/// [`app_columns`] returns; otherwise `parse_trace` refuses the result.
pub fn header(apps: &[Vec<u8>]) -> String {
    let mut out = TRACE_COLUMNS.join(",");
    let mut column = String::new();
    for app in apps {
        column.clear();
        column.push_str(APP_COLUMN_PREFIX);
        escape_bytes(app, &mut column);
        out.push(',');
        push_field(&mut out, &column);
    }
    out.push('\n');
    out
}

/// One row as a line of a trace whose header was written with the same `apps` (ends with
/// `\n`). An application of the row that is not in `apps` is left out of the line (its ops
/// are lost from the app columns, not from `reads`..`other`); an app of `apps` that the row
/// lacks is written as 0. `top_key_share` is written with at most `TOP_KEY_SHARE_DECIMALS`
/// decimals, NaN and values below 0 as 0 and values above 1 as 1, so every line written reads
/// back.
pub fn format_row(row: &TraceRow, apps: &[Vec<u8>]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(96);
    let _ = write!(out, "{},", row.ts_ms);
    let mut name = String::new();
    escape_bytes(&row.partition, &mut name);
    push_field(&mut out, &name);
    for value in [
        row.reads,
        row.writes,
        row.deletes,
        row.other,
        row.bytes_in,
        row.bytes_out,
        row.keys,
        row.distinct_keys,
    ] {
        let _ = write!(out, ",{value}");
    }
    out.push(',');
    out.push_str(&format_share(row.top_key_share));
    for app in apps {
        let count = row.apps.iter().find(|(name, _)| name == app).map_or(0, |&(_, n)| n);
        let _ = write!(out, ",{count}");
    }
    out.push('\n');
    out
}

/// The union of the applications of `rows`, sorted and distinct: the app columns
/// [`write_trace`] writes.
pub fn app_columns(rows: &[TraceRow]) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> =
        rows.iter().flat_map(|row| row.apps.iter().map(|(name, _)| name.clone())).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// A whole trace: the header with the [`app_columns`] of `rows`, then every row.
pub fn write_trace(rows: &[TraceRow]) -> String {
    let apps = app_columns(rows);
    let mut out = header(&apps);
    for row in rows {
        out.push_str(&format_row(row, &apps));
    }
    out
}

/// `share` with at most `TOP_KEY_SHARE_DECIMALS` decimals, trailing zeros removed, clamped to
/// 0..=1 (NaN as 0).
fn format_share(share: f64) -> String {
    let share = if share > 0.0 { share.min(1.0) } else { 0.0 };
    let mut text = format!("{share:.prec$}", prec = TOP_KEY_SHARE_DECIMALS);
    if text.contains('.') {
        let kept = text.trim_end_matches('0').trim_end_matches('.').len();
        text.truncate(kept);
    }
    text
}

/// Appends `bytes` escaped: printable ASCII but `\` as is, `\` as `\\`, any other byte as
/// `\xHH` (lowercase hex).
fn escape_bytes(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                out.push_str("\\x");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
}

/// Appends an escaped field, quoted (RFC 4180, quotes doubled) if it contains `,` or `"` or
/// starts or ends with a space.
fn push_field(out: &mut String, text: &str) {
    let quote = text.contains([',', '"']) || text.starts_with(' ') || text.ends_with(' ');
    if quote {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

/// Reads a trace: the full format (header first, columns by name in any order, any number of
/// `app:` columns up to `TRACE_APPS_MAX`), or a foreign two-column trace (`timestamp,count`,
/// with or without a header line; each row becomes a row of the default partition with the
/// count in `other`). Blank lines and lines starting with `#` are skipped; `\r\n` line endings
/// and a leading byte-order mark are accepted. An empty text is an empty trace.
///
/// Integer timestamps of a two-column trace are Unix seconds up to `TRACE_TS_SECONDS_MAX`,
/// Unix milliseconds above; a date-time is `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS` or
/// `YYYY-MM-DD HH:MM:SS`, with optional fractional seconds (cut to ms) and an optional `Z`, and
/// is read as UTC (any other offset is refused).
pub fn parse_trace(text: &str) -> Result<Vec<TraceRow>, TraceError> {
    parse_trace_limited(text, TRACE_ROWS_MAX)
}

/// What the first significant line decided.
enum Form {
    Full(Layout),
    TwoColumns,
}

/// Where each column of a full-format trace is.
struct Layout {
    /// Field index of each of `TRACE_COLUMNS`, in that order.
    standard: [usize; 11],
    /// App name and field index, sorted by name.
    apps: Vec<(Vec<u8>, usize)>,
    fields: usize,
}

/// [`parse_trace`] with the row limit as a parameter (so tests can reach it).
fn parse_trace_limited(text: &str, rows_max: usize) -> Result<Vec<TraceRow>, TraceError> {
    let mut rows = Vec::new();
    let mut form: Option<Form> = None;
    for (index, raw) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let mut line = raw.strip_suffix('\r').unwrap_or(raw);
        if index == 0 {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.len() > TRACE_LINE_BYTES_MAX {
            return Err(TraceError::LimitExceeded {
                limit: "TRACE_LINE_BYTES_MAX",
                line: line_no,
                max: TRACE_LINE_BYTES_MAX,
                got: line.len(),
            });
        }
        if line.trim_matches([' ', '\t']).is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split_fields(line, line_no)?;
        if form.is_none() {
            if fields.len() == 2 {
                form = Some(Form::TwoColumns);
                if !looks_numeric(&fields[1].text) {
                    continue; // the header of a two-column trace
                }
            } else if fields.len() > 2 && !looks_numeric(&fields[0].text) {
                form = Some(Form::Full(read_header(&fields, line_no)?));
                continue;
            } else {
                return Err(TraceError::NoHeader { line: line_no, fields: fields.len() });
            }
        }
        if rows.len() >= rows_max {
            return Err(TraceError::LimitExceeded {
                limit: "TRACE_ROWS_MAX",
                line: line_no,
                max: rows_max,
                got: rows.len() + 1,
            });
        }
        let row = match &form {
            Some(Form::Full(layout)) => read_full_row(layout, &fields, line_no)?,
            Some(Form::TwoColumns) | None => read_two_column_row(&fields, line_no)?,
        };
        rows.push(row);
    }
    Ok(rows)
}

fn read_header(fields: &[Field<'_>], line: usize) -> Result<Layout, TraceError> {
    let mut standard = [usize::MAX; 11];
    let mut apps: Vec<(Vec<u8>, usize)> = Vec::new();
    for (index, field) in fields.iter().enumerate() {
        let name = field.text.as_str();
        if let Some(slot) = TRACE_COLUMNS.iter().position(|&c| c == name) {
            if standard[slot] != usize::MAX {
                return Err(TraceError::DuplicateColumn {
                    line,
                    column: field.column,
                    name: name.to_owned(),
                });
            }
            standard[slot] = index;
        } else if name.starts_with(APP_COLUMN_PREFIX) {
            if apps.len() == TRACE_APPS_MAX {
                return Err(TraceError::LimitExceeded {
                    limit: "TRACE_APPS_MAX",
                    line,
                    max: TRACE_APPS_MAX,
                    got: apps.len() + 1,
                });
            }
            apps.push((unescape(field, APP_COLUMN_PREFIX.len(), line)?, index));
        } else {
            return Err(TraceError::UnknownColumn {
                line,
                column: field.column,
                name: excerpt(name),
            });
        }
    }
    if let Some(slot) = standard.iter().position(|&i| i == usize::MAX) {
        return Err(TraceError::MissingColumn { line, name: TRACE_COLUMNS[slot] });
    }
    apps.sort();
    if let Some(pair) = apps.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        let field = &fields[pair[1].1];
        return Err(TraceError::DuplicateColumn {
            line,
            column: field.column,
            name: excerpt(&field.text),
        });
    }
    Ok(Layout { standard, apps, fields: fields.len() })
}

fn read_full_row(
    layout: &Layout,
    fields: &[Field<'_>],
    line: usize,
) -> Result<TraceRow, TraceError> {
    if fields.len() != layout.fields {
        return Err(TraceError::FieldCount { line, expected: layout.fields, got: fields.len() });
    }
    let count = |slot: usize| {
        let field = &fields[layout.standard[slot]];
        parse_count(field, TRACE_COLUMNS[slot], line)
    };
    let share_field = &fields[layout.standard[10]];
    let mut apps = Vec::new();
    for (name, index) in &layout.apps {
        let field = &fields[*index];
        let n = parse_count(field, "app", line)?;
        if n > 0 {
            apps.push((name.clone(), n));
        }
    }
    Ok(TraceRow {
        ts_ms: count(0)?,
        partition: unescape(&fields[layout.standard[1]], 0, line)?,
        reads: count(2)?,
        writes: count(3)?,
        deletes: count(4)?,
        other: count(5)?,
        bytes_in: count(6)?,
        bytes_out: count(7)?,
        keys: count(8)?,
        distinct_keys: count(9)?,
        top_key_share: parse_share(share_field, line)?,
        apps,
    })
}

fn read_two_column_row(fields: &[Field<'_>], line: usize) -> Result<TraceRow, TraceError> {
    if fields.len() != 2 {
        return Err(TraceError::FieldCount { line, expected: 2, got: fields.len() });
    }
    let ts_ms =
        parse_timestamp(trim(&fields[0].text)).map_err(|reason| TraceError::BadTimestamp {
            line,
            column: fields[0].column,
            reason,
            got: excerpt(&fields[0].text),
        })?;
    let other = parse_count(&fields[1], "count", line)?;
    Ok(TraceRow { ts_ms, other, ..TraceRow::default() })
}

/// One CSV field of a line.
struct Field<'a> {
    /// The field as it stands in the line, quotes included.
    raw: &'a str,
    /// The content: quotes removed and doubled quotes undoubled.
    text: String,
    /// 1-based byte column of the field's first byte.
    column: usize,
    quoted: bool,
}

impl Field<'_> {
    /// The line column of the content's byte `offset`.
    fn column_of(&self, offset: usize) -> usize {
        if !self.quoted {
            return self.column + offset;
        }
        let raw = self.raw.as_bytes();
        let mut at = 1; // past the opening quote
        for _ in 0..offset {
            at += if raw.get(at) == Some(&b'"') { 2 } else { 1 };
        }
        self.column + at
    }
}

/// Splits a line into RFC 4180 fields. A quoted field must start with the quote and its
/// closing quote must be followed by `,` or the end of the line; an unquoted field must not
/// contain a quote.
fn split_fields(line: &str, line_no: usize) -> Result<Vec<Field<'_>>, TraceError> {
    let bytes = line.as_bytes();
    let mut fields = Vec::new();
    let mut start = 0;
    loop {
        let end;
        if bytes.get(start) == Some(&b'"') {
            let mut text = String::new();
            let mut at = start + 1;
            loop {
                match line[at..].find('"') {
                    None => {
                        return Err(TraceError::BadQuoting {
                            line: line_no,
                            column: start + 1,
                            reason: "unterminated quoted field",
                        })
                    }
                    Some(offset) => {
                        text.push_str(&line[at..at + offset]);
                        at += offset;
                        if bytes.get(at + 1) == Some(&b'"') {
                            text.push('"');
                            at += 2;
                        } else {
                            at += 1;
                            break;
                        }
                    }
                }
            }
            if at < bytes.len() && bytes[at] != b',' {
                return Err(TraceError::BadQuoting {
                    line: line_no,
                    column: at + 1,
                    reason: "a closing quote must end its field",
                });
            }
            end = at;
            fields.push(Field { raw: &line[start..end], text, column: start + 1, quoted: true });
        } else {
            end = line[start..].find(',').map_or(line.len(), |offset| start + offset);
            let raw = &line[start..end];
            if let Some(offset) = raw.find('"') {
                return Err(TraceError::BadQuoting {
                    line: line_no,
                    column: start + offset + 1,
                    reason: "a quote inside an unquoted field",
                });
            }
            fields.push(Field { raw, text: raw.to_owned(), column: start + 1, quoted: false });
        }
        if end >= bytes.len() {
            return Ok(fields);
        }
        start = end + 1;
    }
}

/// The bytes of a field's content from `from` on, escapes undone. A character other than `\`
/// stands for its UTF-8 bytes.
fn unescape(field: &Field<'_>, from: usize, line: usize) -> Result<Vec<u8>, TraceError> {
    let text = field.text.as_bytes();
    let mut out = Vec::with_capacity(text.len() - from);
    let mut at = from;
    while at < text.len() {
        if text[at] != b'\\' {
            out.push(text[at]);
            at += 1;
            continue;
        }
        let decoded = match text.get(at + 1) {
            Some(b'\\') => Some((b'\\', 2)),
            Some(b'x') => match (text.get(at + 2).and_then(hex), text.get(at + 3).and_then(hex)) {
                (Some(high), Some(low)) => Some((high << 4 | low, 4)),
                _ => None,
            },
            _ => None,
        };
        let Some((byte, len)) = decoded else {
            let end = (at + 4).min(text.len());
            return Err(TraceError::BadEscape {
                line,
                column: field.column_of(at),
                got: String::from_utf8_lossy(&text[at..end]).into_owned(),
            });
        };
        out.push(byte);
        at += len;
    }
    Ok(out)
}

fn hex(digit: &u8) -> Option<u8> {
    char::from(*digit).to_digit(16).map(|d| d as u8)
}

fn trim(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

/// At most `ERROR_EXCERPT_BYTES_MAX` bytes of `text`, cut at a character boundary.
fn excerpt(text: &str) -> String {
    let mut end = text.len().min(ERROR_EXCERPT_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Whether a field reads as a number (used to tell a header line from a data line).
fn looks_numeric(text: &str) -> bool {
    let text = trim(text);
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
        && text.parse::<f64>().is_ok()
}

fn parse_count(field: &Field<'_>, name: &str, line: usize) -> Result<u64, TraceError> {
    let text = trim(&field.text);
    let digits = text.strip_prefix('+').unwrap_or(text);
    let expected = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        match digits.parse::<u64>() {
            Ok(n) => return Ok(n),
            Err(_) => "an integer at most 18446744073709551615",
        }
    } else if text.starts_with('-') {
        "a non-negative integer"
    } else {
        "an unsigned integer"
    };
    Err(TraceError::BadValue {
        line,
        column: field.column,
        field: name.to_owned(),
        expected,
        got: excerpt(&field.text),
    })
}

fn parse_share(field: &Field<'_>, line: usize) -> Result<f64, TraceError> {
    let text = trim(&field.text);
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share + 0.0), // -0 as 0
        _ => Err(TraceError::BadValue {
            line,
            column: field.column,
            field: "top_key_share".to_owned(),
            expected: "a share from 0 to 1",
            got: excerpt(&field.text),
        }),
    }
}

/// A two-column trace's timestamp as Unix ms, or why not.
fn parse_timestamp(text: &str) -> Result<u64, &'static str> {
    if text.is_empty() {
        return Err("empty");
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = text.parse().map_err(|_| "integer out of range")?;
        return Ok(if n <= TRACE_TS_SECONDS_MAX { n * 1000 } else { n });
    }
    if text.starts_with('-') {
        return Err("negative timestamp (before 1970)");
    }
    parse_date_time(text)
}

/// `YYYY-MM-DD`, or `YYYY-MM-DD` `T`|` ` `HH:MM:SS` `[.fraction]` `[Z]`, UTC, as Unix ms.
fn parse_date_time(text: &str) -> Result<u64, &'static str> {
    const FORM: &str = "expected Unix s or ms, YYYY-MM-DD, or YYYY-MM-DDTHH:MM:SS[.fff][Z] (UTC)";
    let b = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Result<u64, &'static str> {
        let digits = b.get(range).ok_or(FORM)?;
        if digits.iter().all(u8::is_ascii_digit) {
            Ok(digits.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
        } else {
            Err(FORM)
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(FORM);
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if year < 1970 {
        return Err("before 1970");
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such date");
    }
    let days = days_from_civil(year as i64, month as u32, day as u32) as u64;
    if b.len() == 10 {
        return Ok(days * MS_PER_DAY);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return Err(FORM);
    }
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if hour > 23 || minute > 59 || second > 59 {
        return Err("no such time of day");
    }
    let mut rest = &b[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if len == 0 {
            return Err(FORM);
        }
        for place in 0..3 {
            let digit = fraction[..len].get(place).map_or(0, |&d| u64::from(d - b'0'));
            millis = millis * 10 + digit;
        }
        rest = &fraction[len..];
    }
    match rest {
        [] | [b'Z' | b'z'] => {}
        [b'+' | b'-', ..] => return Err("only UTC is supported (no offset, or Z)"),
        _ => return Err(FORM),
    }
    Ok(days * MS_PER_DAY + hour * 3_600_000 + minute * 60_000 + second * 1000 + millis)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date `year-month-day` (Howard Hinnant's
/// `days_from_civil`); `month` is 1..=12, `day` 1..=31.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400; // 0..=399
    let month_from_march = (i64::from(month) + 9) % 12; // March = 0
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1; // 0..=365
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ts_ms: u64, partition: &[u8]) -> TraceRow {
        TraceRow { ts_ms, partition: partition.to_vec(), ..TraceRow::default() }
    }

    fn one(text: &str) -> TraceRow {
        let rows = parse_trace(text).unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        rows.into_iter().next().unwrap()
    }

    const HEADER: &str = "ts_ms,partition,reads,writes,deletes,other,bytes_in,bytes_out,keys,\
                          distinct_keys,top_key_share";

    #[test]
    fn ops_sums_the_four_kinds_saturating() {
        let r = TraceRow { reads: 1, writes: 20, deletes: 300, other: 4000, ..row(0, b"") };
        assert_eq!(r.ops(), 4321);
        let r = TraceRow { reads: u64::MAX, writes: 1, ..row(0, b"") };
        assert_eq!(r.ops(), u64::MAX);
    }

    #[test]
    fn a_written_trace_reads_back_equal() {
        let names: [&[u8]; 12] = [
            b"",
            b"plain",
            b"with,comma",
            b"with\"quote",
            b"back\\slash",
            b" leading",
            b"trailing ",
            b"in side",
            b"\x00\xff\x80\n\r\t",
            b"caf\xc3\xa9",
            b"#hash",
            b"\\x41",
        ];
        let mut rows = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let i = i as u64;
            rows.push(TraceRow {
                ts_ms: 1_700_000_000_000 + i * 1000,
                partition: name.to_vec(),
                reads: i,
                writes: 2 * i,
                deletes: 3,
                other: u64::MAX,
                bytes_in: 10 * i,
                bytes_out: 0,
                keys: 1_000_000 + i,
                distinct_keys: 17,
                top_key_share: [0.0, 1.0, 0.5, 0.125, 0.3333, 0.0001][i as usize % 6],
                apps: if i.is_multiple_of(3) {
                    vec![]
                } else {
                    let mut apps =
                        vec![(name.to_vec(), i), (b"".to_vec(), 1), (b"z,\"".to_vec(), 9)];
                    apps.sort();
                    apps.dedup_by(|a, b| a.0 == b.0);
                    apps
                },
            });
        }
        let text = write_trace(&rows);
        assert_eq!(parse_trace(&text).unwrap(), rows, "{text}");
    }

    #[test]
    fn names_are_escaped_then_quoted() {
        let cases: [(&[u8], &str); 8] = [
            (b"", ""),
            (b"abc", "abc"),
            (b"a\\b", "a\\\\b"),
            (b"a\x01\xff", "a\\x01\\xff"),
            (b"a,b", "\"a,b\""),
            (b"say \"hi\"", "\"say \"\"hi\"\"\""),
            (b" x", "\" x\""),
            (b"x y", "x y"),
        ];
        for (name, written) in cases {
            let line = format_row(&row(5, name), &[]);
            let expected = format!("5,{written},0,0,0,0,0,0,0,0,0\n");
            assert_eq!(line, expected, "{name:?}");
        }
        assert_eq!(
            header(&[b"web".to_vec(), b"".to_vec(), b"a b ".to_vec()]),
            format!("{HEADER},app:web,app:,\"app:a b \"\n")
        );
    }

    #[test]
    fn share_is_written_with_at_most_four_decimals_and_clamped() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (0.5, "0.5"),
            (0.123456, "0.1235"),
            (0.99999, "1"),
            (-0.0, "0"),
            (-2.0, "0"),
            (7.0, "1"),
            (f64::NAN, "0"),
        ];
        for (share, text) in cases {
            assert_eq!(format_share(share), text, "{share}");
        }
    }

    #[test]
    fn format_row_writes_only_the_listed_apps_in_their_order() {
        let r = TraceRow {
            apps: vec![(b"a".to_vec(), 1), (b"b".to_vec(), 2), (b"c".to_vec(), 3)],
            ..row(9, b"p")
        };
        let line = format_row(&r, &[b"c".to_vec(), b"x".to_vec(), b"a".to_vec()]);
        assert_eq!(line, "9,p,0,0,0,0,0,0,0,0,0,3,0,1\n");
    }

    #[test]
    fn columns_are_read_by_name_in_any_order() {
        let text = "app:b,top_key_share,distinct_keys,keys,bytes_out,bytes_in,other,deletes,\
                    writes,reads,partition,ts_ms,app:a\n\
                    7,0.25,9,8,7,6,5,4,3,2,p,1000,0\n";
        let r = one(text);
        let expected = TraceRow {
            ts_ms: 1000,
            partition: b"p".to_vec(),
            reads: 2,
            writes: 3,
            deletes: 4,
            other: 5,
            bytes_in: 6,
            bytes_out: 7,
            keys: 8,
            distinct_keys: 9,
            top_key_share: 0.25,
            apps: vec![(b"b".to_vec(), 7)],
        };
        assert_eq!(r, expected);
    }

    #[test]
    fn zero_app_counts_are_left_out_and_apps_sorted_by_name() {
        let text = format!("{HEADER},app:zz,app:,app:mm\n1,,0,0,0,0,0,0,0,0,0,4,0,6\n");
        assert_eq!(one(&text).apps, vec![(b"mm".to_vec(), 6), (b"zz".to_vec(), 4)]);
    }

    #[test]
    fn an_unknown_column_is_an_error_naming_it() {
        let text = format!("{HEADER},app:a,latency_ms\n");
        let err = parse_trace(&text).unwrap_err();
        let column = HEADER.len() + ",app:a,".len() + 1;
        assert_eq!(err, TraceError::UnknownColumn { line: 1, column, name: "latency_ms".into() });
        assert!(err.to_string().contains("latency_ms"));
    }

    #[test]
    fn a_missing_or_duplicate_column_is_an_error_naming_it() {
        let text = HEADER.replace(",bytes_out", "");
        assert_eq!(
            parse_trace(&text).unwrap_err(),
            TraceError::MissingColumn { line: 1, name: "bytes_out" }
        );
        let text = format!("{HEADER},keys\n");
        assert!(matches!(
            parse_trace(&text).unwrap_err(),
            TraceError::DuplicateColumn { line: 1, name, .. } if name == "keys"
        ));
        let text = format!("{HEADER},app:x,app:\\x78\n");
        assert!(matches!(
            parse_trace(&text).unwrap_err(),
            TraceError::DuplicateColumn { line: 1, .. }
        ));
    }

    #[test]
    fn a_bad_escape_is_an_error_with_line_and_column() {
        let text = format!("{HEADER}\n\n1,ab\\q,0,0,0,0,0,0,0,0,0\n");
        assert_eq!(
            parse_trace(&text).unwrap_err(),
            TraceError::BadEscape { line: 3, column: 5, got: "\\q".into() }
        );
        // In a quoted field the column counts the doubled quote.
        let text = format!("{HEADER}\n1,\"a\"\",\\x4g\",0,0,0,0,0,0,0,0,0\n");
        assert_eq!(
            parse_trace(&text).unwrap_err(),
            TraceError::BadEscape { line: 2, column: 8, got: "\\x4g".into() }
        );
        let text = format!("{HEADER},app:\\\n");
        assert!(matches!(parse_trace(&text).unwrap_err(), TraceError::BadEscape { line: 1, .. }));
    }

    #[test]
    fn misplaced_and_unterminated_quotes_are_errors() {
        let cases = [
            ("1,\"abc,0,0,0,0,0,0,0,0,0", 3, "unterminated quoted field"),
            ("1,\"a\"b,0,0,0,0,0,0,0,0,0", 6, "a closing quote must end its field"),
            ("1,a\"b,0,0,0,0,0,0,0,0,0", 4, "a quote inside an unquoted field"),
        ];
        for (line, column, reason) in cases {
            let text = format!("{HEADER}\n{line}\n");
            assert_eq!(
                parse_trace(&text).unwrap_err(),
                TraceError::BadQuoting { line: 2, column, reason },
                "{line}"
            );
        }
    }

    #[test]
    fn a_row_with_the_wrong_number_of_fields_is_an_error() {
        let text = format!("{HEADER}\n1,p,0,0,0,0,0,0,0,0\n");
        assert_eq!(
            parse_trace(&text).unwrap_err(),
            TraceError::FieldCount { line: 2, expected: 11, got: 10 }
        );
        assert_eq!(
            parse_trace("1,2\n3,4,5\n").unwrap_err(),
            TraceError::FieldCount { line: 2, expected: 2, got: 3 }
        );
    }

    #[test]
    fn negative_malformed_and_out_of_range_counts_are_errors() {
        let cases = [
            ("-1", "a non-negative integer"),
            ("18446744073709551616", "an integer at most 18446744073709551615"),
            ("1.5", "an unsigned integer"),
            ("", "an unsigned integer"),
            ("x", "an unsigned integer"),
        ];
        for (value, expected) in cases {
            let text = format!("{HEADER}\n1,p,0,0,{value},0,0,0,0,0,0\n");
            let err = parse_trace(&text).unwrap_err();
            assert_eq!(
                err,
                TraceError::BadValue {
                    line: 2,
                    column: 9,
                    field: "deletes".into(),
                    expected,
                    got: value.into()
                },
                "{value}"
            );
        }
        assert_eq!(
            one(&format!("{HEADER}\n1,p,0,0,18446744073709551615,0,0,0,0,0,0\n")).deletes,
            u64::MAX
        );
    }

    #[test]
    fn a_share_outside_0_to_1_or_nan_is_an_error() {
        for value in ["NaN", "-0.1", "1.0001", "inf", "", "half"] {
            let text = format!("{HEADER}\n1,p,0,0,0,0,0,0,0,0,{value}\n");
            assert!(
                matches!(parse_trace(&text).unwrap_err(),
                    TraceError::BadValue { line: 2, column: 21, ref field, .. } if field == "top_key_share"),
                "{value}"
            );
        }
        assert_eq!(one(&format!("{HEADER}\n1,p,0,0,0,0,0,0,0,0,1e-3\n")).top_key_share, 0.001);
    }

    #[test]
    fn a_two_column_trace_reads_as_other_ops() {
        let rows = parse_trace("1451606400,12\n1451606460,0\n").unwrap();
        let expected = vec![
            TraceRow { ts_ms: 1_451_606_400_000, other: 12, ..TraceRow::default() },
            TraceRow { ts_ms: 1_451_606_460_000, other: 0, ..TraceRow::default() },
        ];
        assert_eq!(rows, expected);
    }

    #[test]
    fn a_two_column_trace_may_have_a_header() {
        let rows = parse_trace("time,requests\r\n2016-01-01,5\r\n").unwrap();
        assert_eq!(
            rows,
            vec![TraceRow { ts_ms: 1_451_606_400_000, other: 5, ..TraceRow::default() }]
        );
        // A header is recognised by its second field only.
        let rows = parse_trace("1,count\n2,3\n").unwrap();
        assert_eq!(rows, vec![TraceRow { ts_ms: 2000, other: 3, ..TraceRow::default() }]);
    }

    #[test]
    fn integer_timestamps_up_to_1e11_are_seconds_else_ms() {
        assert_eq!(parse_timestamp("0"), Ok(0));
        assert_eq!(parse_timestamp("99999999999"), Ok(99_999_999_999_000));
        assert_eq!(parse_timestamp("100000000000"), Ok(100_000_000_000));
        assert_eq!(parse_timestamp("1451606400000"), Ok(1_451_606_400_000));
        assert_eq!(parse_timestamp("99999999999999999999"), Err("integer out of range"));
        assert_eq!(parse_timestamp("-5"), Err("negative timestamp (before 1970)"));
    }

    #[test]
    fn date_times_are_read_as_utc() {
        let cases = [
            ("2016-01-01", 1_451_606_400_000),
            ("2016-01-01T00:00:00Z", 1_451_606_400_000),
            ("2016-01-01 00:00:00", 1_451_606_400_000),
            ("2016-01-01t00:00:01z", 1_451_606_401_000),
            ("2016-01-01T00:00:00.5", 1_451_606_400_500),
            ("2016-01-01T00:00:00.123456789Z", 1_451_606_400_123),
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T23:59:59.999Z", 951_868_799_999),
            ("2038-01-19T03:14:07Z", 2_147_483_647_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_timestamp(text), Ok(ms), "{text}");
        }
        let rows = parse_trace("ts,n\n\"2016-01-01 00:01:00\", 3 \n").unwrap();
        assert_eq!(rows[0].ts_ms, 1_451_606_460_000);
        assert_eq!(rows[0].other, 3);
    }

    #[test]
    fn a_timestamp_with_an_offset_or_an_impossible_date_is_refused() {
        let only_utc = "only UTC is supported (no offset, or Z)";
        assert_eq!(parse_timestamp("2016-01-01T00:00:00+02:00"), Err(only_utc));
        assert_eq!(parse_timestamp("2016-01-01T00:00:00.25-0500"), Err(only_utc));
        assert_eq!(parse_timestamp("2015-02-29"), Err("no such date"));
        assert_eq!(parse_timestamp("2016-13-01"), Err("no such date"));
        assert_eq!(parse_timestamp("2016-01-01T24:00:00"), Err("no such time of day"));
        assert_eq!(parse_timestamp("1969-12-31T23:59:59Z"), Err("before 1970"));
        for bad in
            ["2016-01-01T00:00", "2016-01-01T00:00:00.", "2016/01/01", "yesterday", "2016-1-1"]
        {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
        let err = parse_trace("t,n\n2016-01-01T00:00:00+01:00,1\n").unwrap_err();
        assert_eq!(
            err,
            TraceError::BadTimestamp {
                line: 2,
                column: 1,
                reason: only_utc,
                got: "2016-01-01T00:00:00+01:00".into()
            }
        );
    }

    #[test]
    fn days_from_civil_matches_known_dates() {
        let cases = [
            ((1970, 1, 1), 0),
            ((1969, 12, 31), -1),
            ((1970, 3, 1), 59),
            ((2000, 2, 29), 11_016),
            ((2000, 3, 1), 11_017),
            ((2016, 1, 1), 16_801),
            ((2038, 1, 19), 24_855),
            ((1900, 3, 1), -25_508),
            ((1, 1, 1), -719_162),
            ((9999, 12, 31), 2_932_896),
        ];
        for ((y, m, d), days) in cases {
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(2016, 1, 1) as u64 * MS_PER_DAY, 1_451_606_400_000);
    }

    #[test]
    fn blank_lines_comments_crlf_and_a_bom_are_accepted() {
        let text = format!(
            "\u{feff}# exported by test\r\n\r\n{HEADER}\r\n  \r\n#1,x,0,0,0,0,0,0,0,0,0\r\n\
             1,p,1,0,0,0,0,0,0,0,0\r\n"
        );
        let r = one(&text);
        assert_eq!((r.ts_ms, r.partition.as_slice(), r.reads), (1, &b"p"[..], 1));
    }

    #[test]
    fn an_empty_text_or_a_lone_header_is_an_empty_trace() {
        assert_eq!(parse_trace(""), Ok(vec![]));
        assert_eq!(parse_trace("\n# nothing\n"), Ok(vec![]));
        assert_eq!(parse_trace(&header(&[b"a".to_vec()])), Ok(vec![]));
    }

    #[test]
    fn a_first_line_that_is_no_header_is_an_error() {
        assert_eq!(parse_trace("12\n").unwrap_err(), TraceError::NoHeader { line: 1, fields: 1 });
        assert_eq!(
            parse_trace("1,p,0,0,0,0,0,0,0,0,0\n").unwrap_err(),
            TraceError::NoHeader { line: 1, fields: 11 }
        );
    }

    #[test]
    fn a_line_over_the_limit_is_an_error_naming_it() {
        let long = "1,".to_owned() + &"9".repeat(TRACE_LINE_BYTES_MAX - 1);
        let err = parse_trace(&format!("t,n\n{long}\n")).unwrap_err();
        assert_eq!(
            err,
            TraceError::LimitExceeded {
                limit: "TRACE_LINE_BYTES_MAX",
                line: 2,
                max: TRACE_LINE_BYTES_MAX,
                got: TRACE_LINE_BYTES_MAX + 1
            }
        );
        assert!(err.to_string().contains("TRACE_LINE_BYTES_MAX"));
        // Exactly at the limit is a number out of range, not a limit error.
        let at_limit = "1,".to_owned() + &"9".repeat(TRACE_LINE_BYTES_MAX - 2);
        assert!(matches!(
            parse_trace(&format!("t,n\n{at_limit}\n")).unwrap_err(),
            TraceError::BadValue { .. }
        ));
    }

    #[test]
    fn too_many_app_columns_is_an_error_naming_the_limit() {
        let apps: Vec<Vec<u8>> =
            (0..TRACE_APPS_MAX).map(|i| format!("a{i}").into_bytes()).collect();
        assert_eq!(parse_trace(&header(&apps)), Ok(vec![]));
        let mut more = apps.clone();
        more.push(b"one more".to_vec());
        assert!(matches!(
            parse_trace(&header(&more)).unwrap_err(),
            TraceError::LimitExceeded { limit: "TRACE_APPS_MAX", line: 1, max: TRACE_APPS_MAX, .. }
        ));
    }

    #[test]
    fn rows_past_the_row_limit_are_an_error_naming_it() {
        let text = "1,1\n2,1\n3,1\n";
        assert_eq!(parse_trace_limited(text, 3).map(|rows| rows.len()), Ok(3));
        assert_eq!(
            parse_trace_limited(text, 2).unwrap_err(),
            TraceError::LimitExceeded { limit: "TRACE_ROWS_MAX", line: 3, max: 2, got: 3 }
        );
    }

    /// The first ```text block after `heading` in docs/trace-format.md.
    fn doc_block(heading: &str) -> &'static str {
        let doc = include_str!("../../docs/trace-format.md");
        let section = &doc[doc.find(heading).unwrap()..];
        let start = section.find("```text\n").unwrap() + "```text\n".len();
        &section[start..start + section[start..].find("```").unwrap()]
    }

    #[test]
    fn the_documented_examples_read_as_described() {
        let rows = parse_trace(doc_block("## 5. Example")).unwrap();
        let names: Vec<&[u8]> = rows.iter().map(|r| r.partition.as_slice()).collect();
        assert_eq!(names, [&b"users"[..], b"users", b"a,b", b""]);
        assert_eq!(rows[0].apps, vec![(b"".to_vec(), 10), (b"web".to_vec(), 900)]);
        assert_eq!(rows[1].top_key_share, 0.011);
        assert_eq!(rows[2].apps, vec![(b"".to_vec(), 5)]);
        let foreign = parse_trace(doc_block("## 4. Foreign")).unwrap();
        let expected = vec![
            TraceRow { ts_ms: 1_451_606_400_000, other: 1250, ..TraceRow::default() },
            TraceRow { ts_ms: 1_451_606_460_000, other: 1311, ..TraceRow::default() },
        ];
        assert_eq!(foreign, expected);
    }

    #[test]
    fn every_error_displays_its_line() {
        let texts = ["12\n", "t,n\n1,-1\n", "t,n\nx,1\n", &format!("{HEADER},bogus\n")];
        for text in texts {
            let err = parse_trace(text).unwrap_err();
            assert!(err.to_string().starts_with("line "), "{err}");
        }
    }
}
