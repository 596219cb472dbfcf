//! TCP options (RFC 9293 3.1, RFC 7323, RFC 2018), decoded from the raw option bytes.

use std::fmt;

use super::seq;

/// The data offset field counts 32-bit words in 4 bits: at most 60 header bytes.
pub(super) const TCP_MAX_OPTIONS_LEN: usize = 40;

/// Option kinds this module decodes (RFC 9293, RFC 7323, RFC 2018).
pub(super) mod kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// One TCP option. A known kind whose length does not match its definition (an MSS of 3
/// bytes, say) parses as `Unknown` with its bytes intact, so re-emitting it is exact.
/// `Unknown` is for kinds 2 and up; EOL and NOP have no length byte.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TcpOption {
    Nop,
    Eol,
    Mss(u16),
    WindowScale(u8),
    SackPermitted,
    Sack(Vec<(u32, u32)>),
    Timestamps { val: u32, ecr: u32 },
    Unknown { kind: u8, data: Vec<u8> },
}

impl TcpOption {
    /// Bytes the option takes on the wire.
    pub fn wire_len(&self) -> usize {
        match self {
            TcpOption::Nop | TcpOption::Eol => 1,
            TcpOption::Mss(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::Sack(blocks) => 2 + 8 * blocks.len(),
            TcpOption::Timestamps { .. } => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    pub(super) fn emit(&self, out: &mut Vec<u8>) {
        // Lengths fit a byte: `TcpRepr::check` caps the whole option list at 40 bytes.
        let len = self.wire_len() as u8;
        match self {
            TcpOption::Eol => out.push(kind::EOL),
            TcpOption::Nop => out.push(kind::NOP),
            TcpOption::Mss(mss) => {
                out.extend([kind::MSS, len]);
                out.extend(mss.to_be_bytes());
            }
            TcpOption::WindowScale(shift) => out.extend([kind::WINDOW_SCALE, len, *shift]),
            TcpOption::SackPermitted => out.extend([kind::SACK_PERMITTED, len]),
            TcpOption::Sack(blocks) => {
                out.extend([kind::SACK, len]);
                for (left, right) in blocks {
                    out.extend(left.to_be_bytes());
                    out.extend(right.to_be_bytes());
                }
            }
            TcpOption::Timestamps { val, ecr } => {
                out.extend([kind::TIMESTAMPS, len]);
                out.extend(val.to_be_bytes());
                out.extend(ecr.to_be_bytes());
            }
            TcpOption::Unknown { kind, data } => {
                out.extend([*kind, len]);
                out.extend(data);
            }
        }
    }

    /// Decodes the body (the bytes after kind and length) of a well-framed option.
    pub(super) fn decode(kind: u8, body: &[u8]) -> TcpOption {
        let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        match (kind, body.len()) {
            (kind::MSS, 2) => TcpOption::Mss(u16::from_be_bytes([body[0], body[1]])),
            (kind::WINDOW_SCALE, 1) => TcpOption::WindowScale(body[0]),
            (kind::SACK_PERMITTED, 0) => TcpOption::SackPermitted,
            (kind::SACK, n) if n % 8 == 0 => TcpOption::Sack(
                body.chunks_exact(8)
                    .map(|b| (be32(&b[..4]), be32(&b[4..])))
                    .collect(),
            ),
            (kind::TIMESTAMPS, 8) => TcpOption::Timestamps {
                val: be32(&body[..4]),
                ecr: be32(&body[4..]),
            },
            _ => TcpOption::Unknown {
                kind,
                data: body.to_vec(),
            },
        }
    }

    /// Like Display, but with SACK edges relative to `ack_base` (they name sequence numbers
    /// of the data this segment acknowledges).
    pub(super) fn describe(&self, ack_base: u32) -> String {
        match self {
            TcpOption::Sack(blocks) => {
                let edges: Vec<String> = blocks
                    .iter()
                    .map(|&(l, r)| format!("{}:{}", seq::rel(l, ack_base), seq::rel(r, ack_base)))
                    .collect();
                format!("sack {}", edges.join(" ")).trim_end().to_string()
            }
            other => other.to_string(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// tcpdump's spelling: `mss 1460`, `nop`, `eol`, `wscale 7`, `sackOK`, `sack 1:2 5:9`,
/// `TS val 1 ecr 0`, and `unknown-253 0x0102` for anything else.
impl fmt::Display for TcpOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpOption::Nop => f.write_str("nop"),
            TcpOption::Eol => f.write_str("eol"),
            TcpOption::Mss(mss) => write!(f, "mss {mss}"),
            TcpOption::WindowScale(shift) => write!(f, "wscale {shift}"),
            TcpOption::SackPermitted => f.write_str("sackOK"),
            TcpOption::Sack(blocks) => {
                f.write_str("sack")?;
                for (left, right) in blocks {
                    write!(f, " {left}:{right}")?;
                }
                Ok(())
            }
            TcpOption::Timestamps { val, ecr } => write!(f, "TS val {val} ecr {ecr}"),
            // Fast Open (RFC 7413), and its experimental form (kind 254, magic 0xF989), as
            // tcpdump names them: the script's `fo` and `foexp`.
            TcpOption::Unknown { kind: 34, data } if data.is_empty() => {
                f.write_str("tfo cookiereq")
            }
            TcpOption::Unknown { kind: 34, data } => write!(f, "tfo cookie {}", hex(data)),
            TcpOption::Unknown { kind: 254, data } if data.starts_with(&[0xf9, 0x89]) => {
                match &data[2..] {
                    [] => f.write_str("exp-tfo cookiereq"),
                    cookie => write!(f, "exp-tfo cookie {}", hex(cookie)),
                }
            }
            TcpOption::Unknown { kind, data } => {
                write!(f, "unknown-{kind}")?;
                if !data.is_empty() {
                    f.write_str(" 0x")?;
                    for byte in data {
                        write!(f, "{byte:02x}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// A structurally broken option list: a length byte missing, below 2, or running past the
/// end of the option space. `offset` counts from the first option byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionError {
    pub offset: usize,
    pub kind: u8,
    pub problem: String,
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed option kind {} at option byte {}: {}",
            self.kind, self.offset, self.problem
        )
    }
}

impl std::error::Error for OptionError {}

/// Encodes options and pads them to a multiple of 4 bytes with EOL (zero) bytes, which is
/// what RFC 9293 prescribes for padding. Linux itself aligns with leading NOPs instead; a
/// script that wants that writes the NOPs.
pub fn emit_options(options: &[TcpOption]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TCP_MAX_OPTIONS_LEN);
    for option in options {
        option.emit(&mut out);
    }
    out.resize(out.len().next_multiple_of(4), kind::EOL);
    out
}

/// Decodes the option bytes of a TCP header (bounded, never panics).
///
/// An EOL followed only by zero bytes ends the list and is not reported: on the wire it is
/// indistinguishable from [`emit_options`]' padding, so a trailing `Eol` is normalised away.
/// An EOL followed by anything else is reported and parsing goes on, so a segment that hides
/// options behind an EOL shows them.
pub fn parse_options(raw: &[u8]) -> Result<Vec<TcpOption>, OptionError> {
    let mut options = Vec::new();
    let mut at = 0;
    while let Some(&kind) = raw.get(at) {
        match kind {
            kind::EOL if raw[at..].iter().all(|&b| b == 0) => break,
            kind::EOL => {
                options.push(TcpOption::Eol);
                at += 1;
            }
            kind::NOP => {
                options.push(TcpOption::Nop);
                at += 1;
            }
            _ => {
                let (option, len) = parse_one_option(raw, at, kind)?;
                options.push(option);
                at += len;
            }
        }
    }
    Ok(options)
}

/// Decodes the kind-length-value option at `at`; returns it and its length.
pub(super) fn parse_one_option(
    raw: &[u8],
    at: usize,
    kind: u8,
) -> Result<(TcpOption, usize), OptionError> {
    let error = |problem: String| OptionError {
        offset: at,
        kind,
        problem,
    };
    let Some(&len) = raw.get(at + 1) else {
        return Err(error("no length byte".into()));
    };
    let len = usize::from(len);
    if len < 2 {
        return Err(error(format!("length {len} is less than 2")));
    }
    let Some(body) = raw.get(at + 2..at + len) else {
        let left = raw.len() - at;
        return Err(error(format!(
            "length {len} but only {left} option bytes left"
        )));
    };
    Ok((TcpOption::decode(kind, body), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_display() {
        let cases = [
            (TcpOption::Mss(1460), "mss 1460"),
            (TcpOption::Nop, "nop"),
            (TcpOption::Eol, "eol"),
            (TcpOption::WindowScale(7), "wscale 7"),
            (TcpOption::SackPermitted, "sackOK"),
            (TcpOption::Sack(vec![(1, 2)]), "sack 1:2"),
            (TcpOption::Sack(vec![(1, 2), (5, 9)]), "sack 1:2 5:9"),
            (TcpOption::Timestamps { val: 1, ecr: 0 }, "TS val 1 ecr 0"),
            (
                TcpOption::Unknown {
                    kind: 253,
                    data: vec![1, 0xab],
                },
                "unknown-253 0x01ab",
            ),
            (
                TcpOption::Unknown {
                    kind: 34,
                    data: vec![],
                },
                "tfo cookiereq",
            ),
            (
                TcpOption::Unknown {
                    kind: 254,
                    data: vec![0xf9, 0x89, 1, 0xab],
                },
                "exp-tfo cookie 01ab",
            ),
            (
                TcpOption::Unknown {
                    kind: 30,
                    data: vec![],
                },
                "unknown-30",
            ),
        ];
        for (option, text) in cases {
            assert_eq!(option.to_string(), text);
        }
    }
}
