//! Parsing and formatting of string values as Redis does them (integers, floats, ranges),
//! pure functions the keyspace and the server share.

use super::VALUE_LEN_MAX;
use crate::error::{EngineError, Result};

/// SETRANGE's new value, or `None` when nothing is to be written (absent key, empty value).
pub fn set_range_value(
    current: Option<&[u8]>,
    offset: usize,
    bytes: &[u8],
) -> Result<Option<Vec<u8>>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let end = offset.checked_add(bytes.len()).filter(|&e| e <= VALUE_LEN_MAX).ok_or(
        EngineError::ValueTooLarge {
            len: offset as u64 + bytes.len() as u64,
            max: VALUE_LEN_MAX as u64,
        },
    )?;
    let mut value = current.map(<[u8]>::to_vec).unwrap_or_default();
    if value.len() < end {
        value.resize(end, 0);
    }
    value[offset..end].copy_from_slice(bytes);
    Ok(Some(value))
}

/// Parses a float as Redis does for INCRBYFLOAT: no surrounding spaces, not NaN.
pub fn parse_f64(bytes: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(bytes).ok()?;
    if s.is_empty()
        || s.starts_with(|c: char| c.is_whitespace())
        || s.ends_with(|c: char| c.is_whitespace())
    {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

/// Significant digits INCRBYFLOAT keeps: what an f64 represents exactly (DBL_DIG).
pub const FLOAT_DIGITS: usize = 15;

/// Formats a float as Redis's INCRBYFLOAT reply: plain decimal, no trailing zeros. Redis sums
/// in `long double` and prints 17 decimals, so `0.1 + 0.2` shows as `0.3`; rounding the `f64`
/// sum to 15 significant digits gives the same for decimal inputs.
pub fn format_f64(v: f64) -> String {
    let rounded: f64 = format!("{v:.*e}", FLOAT_DIGITS - 1).parse().unwrap_or(v);
    if rounded == 0.0 {
        return "0".into();
    }
    let s = format!("{rounded}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

/// INCRBYFLOAT's new value.
pub fn incr_float_value(current: Option<&[u8]>, delta: f64) -> Result<Vec<u8>> {
    let base = match current {
        None => 0.0,
        Some(v) => parse_f64(v).ok_or(EngineError::NotAFloat)?,
    };
    let next = base + delta;
    if next.is_nan() || next.is_infinite() {
        return Err(EngineError::NanOrInfinity);
    }
    Ok(format_f64(next).into_bytes())
}

/// Parses a Redis integer string strictly (as Redis's `string2ll`): optional '-', no '+', no
/// leading zeros, no spaces, fits in i64.
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    if bytes == b"0" {
        return Some(0);
    }
    let (neg, digits) = match bytes[0] {
        b'-' => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    if digits.is_empty() || !(b'1'..=b'9').contains(&digits[0]) {
        return None;
    }
    let mut v: i128 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (b - b'0') as i128;
    }
    if neg {
        v = -v;
    }
    i64::try_from(v).ok()
}
