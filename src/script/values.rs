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

/// An option in a `send` or `expect`: exact, or a timestamp whose values the peer fills in
/// (send) or does not check (expect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptSpec {
    Exact(TcpOption),
    AnyTimestamp,
}

impl fmt::Display for OptSpec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            OptSpec::Exact(o) => write!(f, "{o}"),
            OptSpec::AnyTimestamp => f.write_str("TS"),
        }
    }
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
        ("ts", 5) if words[1] == "val" && words[3] == "ecr" => TcpOption::Timestamps {
            val: bounded(num(2)?, u32::MAX as u64, text)? as u32,
            ecr: bounded(num(4)?, u32::MAX as u64, text)? as u32,
        },
        ("sack", n) if n > 1 => TcpOption::Sack(parse_sack_blocks(&words[1..], text)?),
        _ => {
            return Err(format!(
                "unknown option `{text}`; expected mss N, wscale N, sackOK, nop, eol, ts, ts val N ecr N or sack L:R"
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
        assert!(parse_option("wscale 20").is_err());
        assert!(parse_option("mss").is_err());
        assert!(parse_option("bogus")
            .unwrap_err()
            .contains("unknown option"));
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
    fn seq_resolves_with_wraparound() {
        assert_eq!(SeqSpec::Rel(-1).resolve(0), u32::MAX);
        assert_eq!(SeqSpec::Rel(2).resolve(u32::MAX), 1);
        assert_eq!(SeqSpec::Abs(7).resolve(100), 7);
    }
}
