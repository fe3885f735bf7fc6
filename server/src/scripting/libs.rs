//! The libraries Redis gives scripts beyond Lua's own: `cjson` (JSON both ways, lua-cjson's
//! behaviour and texts) and `bit` (LuaBitOp's 32-bit operations), written here in Rust
//! rather than linked from C.
//!
//! Invariant: nothing here panics on any Lua value or input string; every failure is a Lua
//! error the script can catch with `pcall`.

use mlua::{Lua, MultiValue, Table, Value};

/// The deepest nesting cjson encodes or decodes: lua-cjson allows 1000, but a core's thread
/// has a 2 MiB stack, which 1000 levels of encoding overflow in a debug build.
pub const JSON_NESTING_MAX: usize = 100;
/// lua-cjson's `encode_sparse_array` defaults: an array whose largest index is above
/// `SPARSE_SAFE` and above `SPARSE_RATIO` times its element count is refused.
const SPARSE_RATIO: usize = 2;
const SPARSE_SAFE: usize = 10;
/// The longest text `cjson.encode` makes: a table that holds another several times is
/// encoded that many times, so a few lines of Lua could otherwise ask for exabytes.
pub const JSON_OUTPUT_MAX: usize = 64 * 1024 * 1024;

/// Adds `cjson` and `bit` to `globals`.
pub fn install(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    globals.set("cjson", cjson(lua)?)?;
    globals.set("bit", bit(lua)?)?;
    Ok(())
}

fn cjson(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "encode",
        lua.create_function(|_, v: Value| {
            let mut out = Vec::new();
            encode(&v, 0, &mut out)?;
            // Lua strings are bytes: the text is returned as built.
            Ok(mlua::BString::from(out))
        })?,
    )?;
    t.set(
        "decode",
        lua.create_function(|lua, text: mlua::String| {
            let parsed: serde_json::Value = serde_json::from_slice(&text.as_bytes())
                .map_err(|e| mlua::Error::runtime(format!("cjson.decode: {e}")))?;
            decode(lua, &parsed, 0)
        })?,
    )?;
    t.set("null", Value::NULL)?;
    Ok(t)
}

fn encode(v: &Value, depth: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    if out.len() > JSON_OUTPUT_MAX {
        return Err(mlua::Error::runtime(format!(
            "Cannot serialise: the text would be longer than {JSON_OUTPUT_MAX} bytes"
        )));
    }
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        // Lua 5.1 numbers are doubles (mlua hands integral ones over as integers).
        Value::Integer(i) => out.extend_from_slice(number_text(*i as f64)?.as_bytes()),
        Value::Number(n) => out.extend_from_slice(number_text(*n)?.as_bytes()),
        Value::String(s) => quote(&s.as_bytes(), out),
        Value::Table(t) => {
            if depth >= JSON_NESTING_MAX {
                return Err(mlua::Error::runtime(format!(
                    "Cannot serialise, excessive nesting ({})",
                    depth + 1
                )));
            }
            match array_length(t)? {
                Some(n) => {
                    out.push(b'[');
                    for i in 1..=n {
                        if i > 1 {
                            out.push(b',');
                        }
                        encode(&t.raw_get::<Value>(i)?, depth + 1, out)?;
                    }
                    out.push(b']');
                }
                None => {
                    out.push(b'{');
                    let mut first = true;
                    for pair in t.clone().pairs::<Value, Value>() {
                        let (k, v) = pair?;
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        match &k {
                            Value::String(s) => quote(&s.as_bytes(), out),
                            Value::Integer(i) => quote(number_text(*i as f64)?.as_bytes(), out),
                            Value::Number(n) => quote(number_text(*n)?.as_bytes(), out),
                            _ => {
                                return Err(mlua::Error::runtime(
                                    "Cannot serialise table: table key must be a number or string",
                                ))
                            }
                        }
                        out.push(b':');
                        encode(&v, depth + 1, out)?;
                    }
                    out.push(b'}');
                }
            }
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            )))
        }
    }
    Ok(())
}

/// The length of `t` as a JSON array, or `None` if it is an object (an empty table is an
/// object, as in lua-cjson). Errors on an excessively sparse array.
fn array_length(t: &Table) -> mlua::Result<Option<usize>> {
    let (mut max, mut count) = (0usize, 0usize);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, _) = pair?;
        let index = match k {
            Value::Integer(i) if i >= 1 => i as f64,
            Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => n,
            _ => return Ok(None),
        };
        if index > u32::MAX as f64 {
            return Err(mlua::Error::runtime("Cannot serialise table: excessively sparse array"));
        }
        max = max.max(index as usize);
        count += 1;
    }
    if count == 0 {
        return Ok(None);
    }
    if max > SPARSE_SAFE && max > count * SPARSE_RATIO {
        return Err(mlua::Error::runtime("Cannot serialise table: excessively sparse array"));
    }
    Ok(Some(max))
}

/// A number as lua-cjson writes it (`%.14g`); NaN and infinities are refused.
fn number_text(n: f64) -> mlua::Result<String> {
    if !n.is_finite() {
        return Err(mlua::Error::runtime("Cannot serialise number: must not be NaN or Inf"));
    }
    Ok(format_g14(n))
}

/// C's `printf("%.14g", n)` for a finite `n`: 14 significant digits, trailing zeros
/// dropped, exponent form below 1e-4 and from 1e14.
pub fn format_g14(n: f64) -> String {
    if n == 0.0 {
        return if n.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = format!("{n:.13e}"); // d.ddddddddddddde<exp>, correctly rounded
    let (mantissa, exp) = sci.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("an integer exponent");
    if !(-4..14).contains(&exp) {
        let m = mantissa.trim_end_matches('0').trim_end_matches('.');
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.abs());
    }
    let decimals = (13 - exp).max(0) as usize;
    let fixed = format!("{n:.decimals$}");
    if fixed.contains('.') {
        fixed.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        fixed
    }
}

/// A JSON string of `bytes`, escaped as lua-cjson escapes (`/` included).
fn quote(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

fn decode(lua: &Lua, v: &serde_json::Value, depth: usize) -> mlua::Result<Value> {
    use serde_json::Value as J;
    if depth > JSON_NESTING_MAX {
        return Err(mlua::Error::runtime("cjson.decode: too many nested arrays or objects"));
    }
    Ok(match v {
        J::Null => Value::NULL,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        J::String(s) => Value::String(lua.create_string(s)?),
        J::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, decode(lua, item, depth + 1)?)?;
            }
            Value::Table(t)
        }
        J::Object(fields) => {
            let t = lua.create_table_with_capacity(0, fields.len())?;
            for (k, item) in fields {
                t.raw_set(k.as_str(), decode(lua, item, depth + 1)?)?;
            }
            Value::Table(t)
        }
    })
}

/// A Lua number as LuaBitOp's 32-bit integer: rounded, then taken modulo 2^32 as signed.
fn tobit(v: &Value) -> mlua::Result<i32> {
    let n = match v {
        Value::Integer(i) => *i as f64,
        Value::Number(n) => *n,
        Value::String(s) => {
            s.to_str().ok().and_then(|t| t.trim().parse::<f64>().ok()).ok_or_else(|| {
                mlua::Error::runtime("bad argument to bit operation (number expected)")
            })?
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "bad argument to bit operation (number expected, got {})",
                other.type_name()
            )))
        }
    };
    if !n.is_finite() {
        return Ok(0);
    }
    Ok(n.round_ties_even().rem_euclid(4_294_967_296.0) as u32 as i32)
}

fn bit(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let unary =
        |f: fn(i32) -> i32| lua.create_function(move |_, v: Value| Ok(f(tobit(&v)?) as i64));
    t.set("tobit", unary(|x| x)?)?;
    t.set("bnot", unary(|x| !x)?)?;
    t.set("bswap", unary(i32::swap_bytes)?)?;
    let fold = |f: fn(i32, i32) -> i32| {
        lua.create_function(move |_, args: MultiValue| {
            let mut it = args.iter();
            let first = it.next().ok_or_else(|| {
                mlua::Error::runtime("bad argument #1 to bit operation (number expected)")
            })?;
            let mut acc = tobit(first)?;
            for v in it {
                acc = f(acc, tobit(v)?);
            }
            Ok(acc as i64)
        })
    };
    t.set("band", fold(|a, b| a & b)?)?;
    t.set("bor", fold(|a, b| a | b)?)?;
    t.set("bxor", fold(|a, b| a ^ b)?)?;
    let shift = |f: fn(i32, u32) -> i32| {
        lua.create_function(move |_, (x, n): (Value, Value)| {
            Ok(f(tobit(&x)?, (tobit(&n)? & 31) as u32) as i64)
        })
    };
    t.set("lshift", shift(|x, n| ((x as u32) << n) as i32)?)?;
    t.set("rshift", shift(|x, n| ((x as u32) >> n) as i32)?)?;
    t.set("arshift", shift(|x, n| x >> n)?)?;
    t.set("rol", shift(|x, n| (x as u32).rotate_left(n) as i32)?)?;
    t.set("ror", shift(|x, n| (x as u32).rotate_right(n) as i32)?)?;
    t.set(
        "tohex",
        lua.create_function(|_, (x, n): (Value, Option<Value>)| {
            let x = tobit(&x)? as u32;
            let n = match n {
                Some(v) => tobit(&v)?,
                None => 8,
            };
            let (digits, upper) = (n.unsigned_abs().min(8) as usize, n < 0);
            if digits == 0 {
                return Ok(String::new());
            }
            let masked = if digits == 8 { x } else { x & ((1u32 << (4 * digits)) - 1) };
            Ok(if upper { format!("{masked:0digits$X}") } else { format!("{masked:0digits$x}") })
        })?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_c_does_with_14_digits() {
        for (n, want) in [
            (3.0, "3"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e20, "1e+20"),
            (123456789012345.0, "1.2345678901234e+14"),
            (12345678901234.0, "12345678901234"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.0 / 3.0, "0.33333333333333"),
            (2.0f64.powi(53), "9.007199254741e+15"),
        ] {
            assert_eq!(format_g14(n), want, "{n}");
        }
    }

    fn eval(lua: &Lua, code: &str) -> String {
        let g = lua.globals();
        install(lua, &g).unwrap();
        match lua.load(code).eval::<Value>() {
            Ok(v) => v.to_string().unwrap(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn cjson_round_trips_and_refuses_what_lua_cjson_refuses() {
        let lua = Lua::new();
        for (code, want) in [
            (r#"return cjson.encode({1, 2, "a/b"})"#, r#"[1,2,"a\/b"]"#),
            (r#"return cjson.encode({})"#, "{}"),
            (r#"return cjson.encode({x = {y = true}})"#, r#"{"x":{"y":true}}"#),
            (r#"return cjson.encode({[1] = 1, [3] = 3})"#, "[1,null,3]"),
            (r#"return cjson.encode(0.5)"#, "0.5"),
            (r#"return cjson.encode({1e15, 3})"#, "[1e+15,3]"),
            (r#"return cjson.encode(cjson.null)"#, "null"),
            (r#"return cjson.encode("\n\1")"#, r#""\n\u0001""#),
            (r#"local t = cjson.decode('{"a":[1,2,{"b":null}]}') return t.a[2] + #t.a"#, "5"),
            (r#"return cjson.decode('[null]')[1] == cjson.null"#, "true"),
            (r#"return cjson.decode('"x"')"#, "x"),
        ] {
            assert_eq!(eval(&lua, code), want, "{code}");
        }
        for (code, want) in [
            ("return cjson.encode({[1] = 1, [100] = 2})", "excessively sparse array"),
            ("return cjson.encode(function() end)", "Cannot serialise function"),
            ("return cjson.encode({[true] = 1})", "table key must be a number or string"),
            ("return cjson.encode(0/0)", "must not be NaN or Inf"),
            ("local t = {} t[1] = t return cjson.encode(t)", "excessive nesting"),
            // A table holding one 1 MB string 70 times: 70 MB of text, refused (the doubling
            // `t = {t, t}` of a few lines is refused the same way, only slower to reach).
            (
                "local s, t = string.rep('x', 1e6), {} for i = 1, 70 do t[i] = s end \
                 return cjson.encode(t)",
                "longer than",
            ),
            ("return cjson.decode('{')", "cjson.decode"),
        ] {
            let got = eval(&lua, code);
            assert!(got.starts_with("error") && got.contains(want), "{code}: {got}");
        }
    }

    #[test]
    fn bit_matches_luabitop() {
        let lua = Lua::new();
        for (code, want) in [
            ("return bit.tobit(0xffffffff)", "-1"),
            ("return bit.tobit(2^32 + 5)", "5"),
            ("return bit.band(0xff, 0x0f, 0x3)", "3"),
            ("return bit.bor(1, 2, 4)", "7"),
            ("return bit.bxor(5, 1)", "4"),
            ("return bit.bnot(0)", "-1"),
            ("return bit.lshift(1, 31)", "-2147483648"),
            ("return bit.rshift(-1, 28)", "15"),
            ("return bit.arshift(-256, 4)", "-16"),
            ("return bit.rol(0x80000001, 1)", "3"),
            ("return bit.ror(3, 1)", "-2147483647"),
            ("return bit.tohex(255)", "000000ff"),
            ("return bit.tohex(-1, -4)", "FFFF"),
            ("return bit.tohex(255, 0)", ""),
            ("return bit.bswap(0x01020304)", "67305985"),
        ] {
            assert_eq!(eval(&lua, code), want, "{code}");
        }
    }
}
