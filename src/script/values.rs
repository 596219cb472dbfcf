//! Scalar values of the script language: durations, sequence numbers, TCP options, and the
//! serde glue that turns them into typed values with a clear "expected …" message.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::wire::{TcpFlags, TcpOption};

/// A duration written with a unit: `200ms`, `2s`, `1.5s`, `500us`, `0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{t}` has no unit; expected a duration like 200ms, 2s or 500us"))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        format!("`{t}` is not a duration; expected a number then a unit, like 1.5s")
    })?;
    let scale = match unit.trim() {
        "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "min" | "m" => 60.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{t}`; expected s, ms, us or ns"
            ))
        }
    };
    if !value.is_finite() || value < 0.0 || value * scale > 86_400.0 {
        return Err(format!("`{t}` is out of range; expected 0 to 24h"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// Prints a duration the way scripts write it.
pub fn show_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us == 0 {
        "0".into()
    } else if us % 1_000_000 == 0 {
        format!("{}s", us / 1_000_000)
    } else if us >= 1_000_000 {
        format!("{:.3}s", d.as_secs_f64())
    } else if us % 1000 == 0 {
        format!("{}ms", us / 1000)
    } else {
        format!("{:.3}ms", d.as_secs_f64() * 1e3)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration with a unit, like 200ms or 2s")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                if v == 0 {
                    return Ok(Dur(Duration::ZERO));
                }
                Err(E::custom(format!(
                    "`{v}` has no unit; expected a duration like {v}ms or {v}s"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "`{v}` is not a duration; expected e.g. 200ms"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "`{v}` has no unit; expected a duration like {v}s"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// TCP flags as written in scripts: tcpdump letters, `.` for ACK (`F.`, `S.`, `R`, `.`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagsSpec(pub TcpFlags, pub TcpFlags);

impl<'de> Deserialize<'de> for FlagsSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FlagsSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "TCP flags as letters S F R P U E W and `.` or A for ACK, like F. or S.",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FlagsSpec, E> {
                // `P?`: PSH may or may not be set (`expect` only); where a stack sets PSH
                // depends on how it cut the data into segments, which is no teardown property.
                let bad = |e: String| {
                    E::custom(format!(
                        "bad flags `{v}`: {e}; for example F. is FIN|ACK, and P? means PSH or not"
                    ))
                };
                let (required, optional) = split_optional_flags(v).map_err(bad)?;
                let maybe = if optional.is_empty() {
                    TcpFlags::default()
                } else {
                    optional
                        .parse::<TcpFlags>()
                        .map_err(|e| bad(e.to_string()))?
                };
                let must = if required.is_empty() {
                    TcpFlags::default()
                } else {
                    required
                        .parse::<TcpFlags>()
                        .map_err(|e| bad(e.to_string()))?
                };
                if (must & maybe) != TcpFlags::NONE {
                    return Err(bad(format!(
                        "{} is both required and optional",
                        must & maybe
                    )));
                }
                Ok(FlagsSpec(must, maybe))
            }
        }
        d.deserialize_any(V)
    }
}

/// Splits flags text into the letters that must be set and those followed by `?` (may be
/// set). Works on characters, so any text is safe to split; the letters are checked by the
/// caller. A `?` that follows no letter is an error.
fn split_optional_flags(v: &str) -> Result<(String, String), String> {
    let (mut required, mut optional) = (String::new(), String::new());
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' {
            return Err("`?` follows a flag letter, like P?".into());
        }
        if chars.next_if_eq(&'?').is_some() {
            optional.push(c);
        } else {
            required.push(c);
        }
    }
    if required.is_empty() && optional.is_empty() {
        return Err("no flags given (write `none` for a segment without flags)".into());
    }
    Ok((required, optional))
}

/// A sequence or acknowledgment number: relative to the sender's ISN (an integer, may be
/// negative), or absolute (`abs 12345`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqSpec {
    Rel(i64),
    Abs(u32),
}

impl SeqSpec {
    /// The absolute value given the ISN it is relative to.
    pub fn resolve(self, isn: u32) -> u32 {
        match self {
            SeqSpec::Rel(r) => isn.wrapping_add(r as u32),
            SeqSpec::Abs(a) => a,
        }
    }
}

impl fmt::Display for SeqSpec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            SeqSpec::Rel(r) => write!(f, "{r}"),
            SeqSpec::Abs(a) => write!(f, "abs {a}"),
        }
    }
}

impl<'de> Deserialize<'de> for SeqSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SeqSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a relative number (0 = ISN) or `abs N`")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SeqSpec, E> {
                if v.unsigned_abs() > u32::MAX as u64 {
                    return Err(E::custom(format!(
                        "{v} is outside the 32-bit sequence space"
                    )));
                }
                Ok(SeqSpec::Rel(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SeqSpec, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SeqSpec, E> {
                // A matrix variable in quotes arrives as text.
                if let Ok(n) = v.trim().parse::<i64>() {
                    return self.visit_i64(n);
                }
                let abs = v.trim().strip_prefix("abs").map(str::trim);
                match abs.map(str::parse::<u32>) {
                    Some(Ok(n)) => Ok(SeqSpec::Abs(n)),
                    _ => Err(E::custom(format!(
                        "bad sequence number `{v}`; expected a relative integer like 1 or -1, or `abs 12345`"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A number field that is captured or computed at run time: `=w` in an `expect` binds the
/// field's value to `w`; `${w - 1}` (written as `"$w-1"` once the text is expanded) uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NumRef {
    Bind(String),
    Use(String, i64),
}

impl NumRef {
    /// `=name`, or `$name`, `$name+N`, `$name-N`.
    pub fn parse(text: &str) -> Option<Result<NumRef, String>> {
        let t = text.trim();
        let ident = |n: &str| {
            !n.is_empty()
                && n.starts_with(|c: char| c.is_ascii_lowercase())
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if let Some(n) = t.strip_prefix('=') {
            let n = n.trim();
            return Some(if ident(n) {
                Ok(NumRef::Bind(n.to_string()))
            } else {
                Err(format!(
                    "`={n}`: a variable name (lowercase, digits, _) to capture the value in"
                ))
            });
        }
        let body = t.strip_prefix('$')?;
        Some(match split_offset(body) {
            Some((n, off)) if ident(n) => Ok(NumRef::Use(n.to_string(), off)),
            _ => Err(format!(
                "`{t}`: expected a captured variable and an offset, like ${{w - 1}}"
            )),
        })
    }
}

/// `name`, `name + N` or `name - N` (spaces optional): the name and the signed offset.
pub fn split_offset(text: &str) -> Option<(&str, i64)> {
    let t = text.trim();
    match t.find(['+', '-']) {
        None => Some((t, 0)),
        Some(i) => {
            // An offset within the sequence space: no sum with it can overflow.
            let n: i64 = t[i + 1..]
                .trim()
                .parse()
                .ok()
                .filter(|n| *n <= i64::from(u32::MAX))?;
            Some((t[..i].trim(), if &t[i..i + 1] == "-" { -n } else { n }))
        }
    }
}

/// A number field: its value, or a reference to a captured value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field<T> {
    Val(T),
    Ref(NumRef),
}

/// A `seq`/`ack` field.
pub type SeqField = Field<SeqSpec>;
/// A `win` field: the raw 16-bit window.
pub type WinField = Field<u16>;

impl<'de> Deserialize<'de> for SeqField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SeqField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a relative number (0 = ISN), `abs N`, `=name` or ${name + N}")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SeqField, E> {
                SeqSpec::deserialize(de::value::I64Deserializer::<E>::new(v)).map(SeqField::Val)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SeqField, E> {
                SeqSpec::deserialize(de::value::U64Deserializer::<E>::new(v)).map(SeqField::Val)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SeqField, E> {
                match NumRef::parse(v) {
                    Some(r) => r.map(SeqField::Ref).map_err(E::custom),
                    None => SeqSpec::deserialize(de::value::StrDeserializer::<E>::new(v))
                        .map(SeqField::Val),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for WinField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = WinField;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a window 0 to 65535, `=name` or ${name + N}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<WinField, E> {
                u16::try_from(v).map(WinField::Val).map_err(|_| {
                    E::custom(format!(
                        "window {v} is above 65535 (the raw field; scaling is the peer's)"
                    ))
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<WinField, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("window {v} is below 0")))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<WinField, E> {
                match NumRef::parse(v) {
                    Some(r) => r.map(WinField::Ref).map_err(E::custom),
                    None => match v.trim().parse::<u64>() {
                        Ok(n) => self.visit_u64(n),
                        Err(_) => Err(E::custom(format!(
                            "bad window `{v}`; expected a number, `=name` or ${{name + N}}"
                        ))),
                    },
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// An option in a `send` or `expect`: exact, or a timestamp whose values the peer fills in
/// (send) or does not check (expect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptSpec {
    Exact(TcpOption),
    AnyTimestamp,
    /// A timestamp option whose values refer to named steps' segments: `ts val @syn ecr @fin`.
    Ts {
        val: TsRef,
        ecr: TsRef,
    },
    /// The TCP Fast Open option (kind 34, RFC 7413, or the experimental kind 254 that came
    /// before it): any cookie (expect), a cookie given or taken from a named segment, or a
    /// request (an empty cookie).
    FastOpen(FoSpec, FoKind),
}

/// One value of a timestamp option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TsRef {
    Any,
    Abs(u32),
    /// `@name`. In an `expect`, `ecr @name` is the TSval the peer's segment `name` carried,
    /// and `val @name` the TSval of the SUT's segment `name` advanced by the time between the
    /// two segments, in the stack's timestamp ticks. In a `send`, `val @name` repeats the
    /// TSval of the peer's segment `name` and `ecr @name` echoes the SUT's segment `name`.
    Of(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FoSpec {
    /// Any cookie of 4 to 16 bytes (expect only).
    AnyCookie,
    /// These bytes; empty is a cookie request.
    Cookie(Vec<u8>),
    /// The cookie the named SUT segment carried.
    Of(String),
}

/// The Fast Open option's kind (RFC 7413 §4.1.1).
pub const FAST_OPEN: u8 = 34;
/// The experimental option's kind (RFC 6994) and the magic number that says it is Fast Open,
/// which Linux still accepts and answers in kind (packetdrill's `FOEXP`).
pub const EXPERIMENTAL: u8 = 254;
pub const FAST_OPEN_MAGIC: [u8; 2] = [0xf9, 0x89];

/// Which of the two Fast Open options: `fo` (kind 34) or `foexp` (kind 254, magic 0xF989).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoKind {
    Rfc7413,
    Experimental,
}

impl FoKind {
    pub fn keyword(self) -> &'static str {
        match self {
            FoKind::Rfc7413 => "fo",
            FoKind::Experimental => "foexp",
        }
    }

    /// The option on the wire with this cookie (empty: a request).
    pub fn option(self, cookie: &[u8]) -> TcpOption {
        match self {
            FoKind::Rfc7413 => TcpOption::Unknown {
                kind: FAST_OPEN,
                data: cookie.to_vec(),
            },
            FoKind::Experimental => TcpOption::Unknown {
                kind: EXPERIMENTAL,
                data: [&FAST_OPEN_MAGIC[..], cookie].concat(),
            },
        }
    }
}

/// The Fast Open cookie an option carries, and in which option; None: not a Fast Open option
/// (an experimental option with another magic number is not).
pub fn fast_open_cookie(o: &TcpOption) -> Option<(FoKind, &[u8])> {
    match o {
        TcpOption::Unknown {
            kind: FAST_OPEN,
            data,
        } => Some((FoKind::Rfc7413, data)),
        TcpOption::Unknown {
            kind: EXPERIMENTAL,
            data,
        } => data
            .strip_prefix(&FAST_OPEN_MAGIC[..])
            .map(|c| (FoKind::Experimental, c)),
        _ => None,
    }
}

impl fmt::Display for TsRef {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            TsRef::Any => f.write_str("any"),
            TsRef::Abs(n) => write!(f, "{n}"),
            TsRef::Of(n) => write!(f, "@{n}"),
        }
    }
}

impl fmt::Display for OptSpec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            OptSpec::Exact(o) => write!(f, "{o}"),
            OptSpec::AnyTimestamp => f.write_str("TS"),
            OptSpec::Ts { val, ecr } => write!(f, "TS val {val} ecr {ecr}"),
            OptSpec::FastOpen(spec, kind) => {
                let k = kind.keyword();
                match spec {
                    FoSpec::AnyCookie => write!(f, "{k} (any cookie)"),
                    FoSpec::Cookie(c) if c.is_empty() => write!(f, "{k} request"),
                    FoSpec::Cookie(c) => {
                        let hex: String = c.iter().map(|b| format!("{b:02x}")).collect();
                        write!(f, "{k} {hex}")
                    }
                    FoSpec::Of(n) => write!(f, "{k} @{n}"),
                }
            }
        }
    }
}

impl OptSpec {
    /// The option as it takes room in a header (values are placeholders).
    pub fn shape(&self) -> TcpOption {
        match self {
            OptSpec::Exact(o) => o.clone(),
            OptSpec::AnyTimestamp | OptSpec::Ts { .. } => TcpOption::Timestamps { val: 0, ecr: 0 },
            OptSpec::FastOpen(FoSpec::Cookie(c), kind) => kind.option(c),
            // A cookie not yet known: the largest one (16 bytes).
            OptSpec::FastOpen(_, kind) => kind.option(&[0; 16]),
        }
    }
}

/// `ts val V ecr E` with `@name`, `any` or numbers; `ts ecr @fin` (val any) and `ts val @syn`.
fn parse_ts(words: &[&str], text: &str) -> Result<OptSpec, String> {
    let value = |w: &str| -> Result<TsRef, String> {
        if w == "any" {
            return Ok(TsRef::Any);
        }
        if let Some(n) = w.strip_prefix('@') {
            if n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(format!(
                    "`{w}` in `{text}`: a step name after @ (lowercase, digits, dashes)"
                ));
            }
            return Ok(TsRef::Of(n.to_string()));
        }
        w.parse::<u32>()
            .map(TsRef::Abs)
            .map_err(|_| format!("`{w}` in `{text}`: expected a number, any, or @name"))
    };
    let (mut val, mut ecr) = (None, None);
    let mut rest = &words[1..];
    while let [key, v, tail @ ..] = rest {
        let slot = match *key {
            "val" => &mut val,
            "ecr" => &mut ecr,
            _ => return Err(format!("`{key}` in `{text}`: expected val or ecr")),
        };
        if slot.is_some() {
            return Err(format!("`{key}` is given twice in `{text}`"));
        }
        *slot = Some(value(v)?);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(format!("`{text}`: `{}` needs a value", rest[0]));
    }
    let (val, ecr) = (val.unwrap_or(TsRef::Any), ecr.unwrap_or(TsRef::Any));
    Ok(match (&val, &ecr) {
        (TsRef::Abs(v), TsRef::Abs(e)) => {
            OptSpec::Exact(TcpOption::Timestamps { val: *v, ecr: *e })
        }
        (TsRef::Any, TsRef::Any) => OptSpec::AnyTimestamp,
        _ => OptSpec::Ts { val, ecr },
    })
}

/// `fo`, `fo request`, `fo 0a1b2c3d…` (hex) or `fo @name`; `foexp` likewise.
fn parse_fast_open(words: &[&str], text: &str, kind: FoKind) -> Result<OptSpec, String> {
    let spec = match words.get(1) {
        None => FoSpec::AnyCookie,
        Some(&"request") => FoSpec::Cookie(Vec::new()),
        Some(w) if w.starts_with('@') && w.len() > 1 => FoSpec::Of(w[1..].to_string()),
        Some(w) => {
            let hex = w.strip_prefix("0x").unwrap_or(w);
            let ok = hex.len() % 2 == 0
                && (8..=32).contains(&hex.len())
                && hex.chars().all(|c| c.is_ascii_hexdigit());
            if !ok {
                let k = kind.keyword();
                return Err(format!("`{text}`: a Fast Open cookie is 4 to 16 bytes in hex ({k} 0a1b2c3d), `request`, or @name"));
            }
            FoSpec::Cookie(
                (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
                    .collect(),
            )
        }
    };
    if words.len() > 2 {
        return Err(format!("`{text}`: {} takes one value", kind.keyword()));
    }
    Ok(OptSpec::FastOpen(spec, kind))
}

/// Parses one option: `mss 1460`, `wscale 7`, `sackOK`, `nop`, `eol`, `ts`,
/// `ts val 1 ecr 2`, `sack 1:100 200:300`.
pub fn parse_option(text: &str) -> Result<OptSpec, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let num = |i: usize| -> Result<u64, String> {
        words
            .get(i)
            .and_then(|w| w.parse::<u64>().ok())
            .ok_or_else(|| format!("option `{text}` needs a number after `{}`", words[i - 1]))
    };
    let lower = words
        .first()
        .map(|w| w.to_ascii_lowercase())
        .unwrap_or_default();
    let opt = match (lower.as_str(), words.len()) {
        ("nop", 1) => TcpOption::Nop,
        ("eol", 1) => TcpOption::Eol,
        ("sackok", 1) | ("sack_perm", 1) => TcpOption::SackPermitted,
        ("mss", 2) => TcpOption::Mss(bounded(num(1)?, u16::MAX as u64, text)? as u16),
        ("wscale", 2) => TcpOption::WindowScale(bounded(num(1)?, 14, text)? as u8),
        ("ts", 1) => return Ok(OptSpec::AnyTimestamp),
        ("ts", _) => return parse_ts(&words, text),
        ("fo", _) => return parse_fast_open(&words, text, FoKind::Rfc7413),
        ("foexp", _) => return parse_fast_open(&words, text, FoKind::Experimental),
        ("sack", n) if n > 1 => TcpOption::Sack(parse_sack_blocks(&words[1..], text)?),
        _ => {
            return Err(format!(
                "unknown option `{text}`; expected mss N, wscale N, sackOK, nop, eol, ts, ts val N ecr N (or @name), sack L:R, fo, fo request, fo COOKIE, fo @name, or foexp in the same forms"
            ))
        }
    };
    Ok(OptSpec::Exact(opt))
}

fn bounded(v: u64, max: u64, text: &str) -> Result<u64, String> {
    if v > max {
        return Err(format!("value in option `{text}` is above {max}"));
    }
    Ok(v)
}

fn parse_sack_blocks(words: &[&str], text: &str) -> Result<Vec<(u32, u32)>, String> {
    words
        .iter()
        .map(|w| {
            let (l, r) = w
                .split_once(':')
                .ok_or_else(|| format!("sack block `{w}` in `{text}` is not L:R"))?;
            match (l.parse(), r.parse()) {
                (Ok(l), Ok(r)) => Ok((l, r)),
                _ => Err(format!(
                    "sack block `{w}` in `{text}` is not two numbers L:R"
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("200").unwrap_err().contains("no unit"));
        assert!(parse_duration("2 hours")
            .unwrap_err()
            .contains("unknown unit"));
        assert_eq!(show_duration(Duration::from_millis(1500)), "1.500s");
        assert_eq!(show_duration(Duration::from_millis(200)), "200ms");
    }

    #[test]
    fn options() {
        assert_eq!(
            parse_option("mss 1460"),
            Ok(OptSpec::Exact(TcpOption::Mss(1460)))
        );
        assert_eq!(parse_option("ts"), Ok(OptSpec::AnyTimestamp));
        assert_eq!(
            parse_option("ts val 5 ecr 6"),
            Ok(OptSpec::Exact(TcpOption::Timestamps { val: 5, ecr: 6 }))
        );
        assert_eq!(
            parse_option("sack 1:5"),
            Ok(OptSpec::Exact(TcpOption::Sack(vec![(1, 5)])))
        );
        assert_eq!(
            parse_option("ts ecr @fin"),
            Ok(OptSpec::Ts {
                val: TsRef::Any,
                ecr: TsRef::Of("fin".into())
            })
        );
        assert_eq!(
            parse_option("ts val @syn ecr 7"),
            Ok(OptSpec::Ts {
                val: TsRef::Of("syn".into()),
                ecr: TsRef::Abs(7)
            })
        );
        assert!(parse_option("ts val @Bad").is_err());
        assert!(parse_option("ts val 1 val 2").is_err());
        assert!(parse_option("ts val").is_err());
        assert_eq!(
            parse_option("fo"),
            Ok(OptSpec::FastOpen(FoSpec::AnyCookie, FoKind::Rfc7413))
        );
        assert_eq!(
            parse_option("fo request"),
            Ok(OptSpec::FastOpen(FoSpec::Cookie(vec![]), FoKind::Rfc7413))
        );
        assert_eq!(
            parse_option("fo 0a0b0c0d"),
            Ok(OptSpec::FastOpen(
                FoSpec::Cookie(vec![10, 11, 12, 13]),
                FoKind::Rfc7413
            ))
        );
        assert!(parse_option("fo 0a0b").is_err(), "too short");
        assert_eq!(
            parse_option("fo @synack"),
            Ok(OptSpec::FastOpen(
                FoSpec::Of("synack".into()),
                FoKind::Rfc7413
            ))
        );
        assert_eq!(
            parse_option("foexp 0a0b0c0d"),
            Ok(OptSpec::FastOpen(
                FoSpec::Cookie(vec![10, 11, 12, 13]),
                FoKind::Experimental
            ))
        );
        assert!(parse_option("foexp 0a0b")
            .unwrap_err()
            .contains("(foexp 0a1b2c3d)"));
        assert!(parse_option("wscale 20").is_err());
        assert!(parse_option("mss").is_err());
        assert!(parse_option("bogus")
            .unwrap_err()
            .contains("unknown option"));
    }

    /// The experimental option carries the magic number before the cookie, and only an
    /// experimental option with that magic number is read as Fast Open.
    #[test]
    fn experimental_fast_open_on_the_wire() {
        let o = FoKind::Experimental.option(&[1, 2, 3, 4]);
        assert_eq!(
            o,
            TcpOption::Unknown {
                kind: 254,
                data: vec![0xf9, 0x89, 1, 2, 3, 4]
            }
        );
        assert_eq!(
            fast_open_cookie(&o),
            Some((FoKind::Experimental, &[1, 2, 3, 4][..]))
        );
        let other = TcpOption::Unknown {
            kind: 254,
            data: vec![0x12, 0x34, 1, 2],
        };
        assert_eq!(fast_open_cookie(&other), None);
        assert_eq!(
            fast_open_cookie(&FoKind::Rfc7413.option(&[])),
            Some((FoKind::Rfc7413, &[][..]))
        );
    }

    fn flags(text: &str) -> Result<FlagsSpec, String> {
        let yaml = format!("{}\n", serde_json::to_string(text).unwrap());
        serde_saphyr::from_str::<FlagsSpec>(&yaml).map_err(|e| e.to_string())
    }

    /// Regression (issue 9): a non-ASCII character in `flags` made the `?` look-ahead slice
    /// inside the character and panic.
    #[test]
    fn flags_with_any_text_are_checked_not_sliced() {
        for bad in ["F\u{2014}", "\u{2014}?", "\u{e9}.", "F?\u{1f600}"] {
            let e = flags(bad).unwrap_err();
            assert!(e.contains("bad flags"), "{bad}: {e}");
        }
        assert_eq!(
            flags(".P?").unwrap(),
            FlagsSpec(TcpFlags::ACK, TcpFlags::PSH)
        );
        assert_eq!(
            flags("F.").unwrap(),
            FlagsSpec(TcpFlags::FIN | TcpFlags::ACK, TcpFlags::NONE)
        );
        for bad in ["?", "P??", "", "PP?"] {
            assert!(flags(bad).unwrap_err().contains("bad flags"), "{bad:?}");
        }
    }

    #[test]
    fn captured_values_and_offsets() {
        assert_eq!(NumRef::parse("=w"), Some(Ok(NumRef::Bind("w".into()))));
        assert_eq!(NumRef::parse("$w-1"), Some(Ok(NumRef::Use("w".into(), -1))));
        assert_eq!(
            NumRef::parse("$w + 20"),
            Some(Ok(NumRef::Use("w".into(), 20)))
        );
        assert_eq!(NumRef::parse("$w"), Some(Ok(NumRef::Use("w".into(), 0))));
        assert!(matches!(
            NumRef::parse("$w+9223372036854775807"),
            Some(Err(_))
        ));
        assert!(matches!(NumRef::parse("=W"), Some(Err(_))));
        assert!(matches!(NumRef::parse("$w*2"), Some(Err(_))));
        assert_eq!(NumRef::parse("abs 5"), None);
        assert_eq!(split_offset("n - 3"), Some(("n", -3)));
    }

    #[test]
    fn seq_resolves_with_wraparound() {
        assert_eq!(SeqSpec::Rel(-1).resolve(0), u32::MAX);
        assert_eq!(SeqSpec::Rel(2).resolve(u32::MAX), 1);
        assert_eq!(SeqSpec::Abs(7).resolve(100), 7);
    }
}
