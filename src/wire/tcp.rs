//! TCP segments (RFC 9293): the flags, the plain [`TcpRepr`], and its encoding over pnet's
//! `TcpPacket` view; the options are in [`super::options`].

use std::fmt::{self, Write as _};
use std::ops::{BitAnd, BitOr, BitOrAssign};
use std::str::FromStr;

use pnet_packet::tcp::{MutableTcpPacket, TcpPacket};

use super::ipv4::IPV4_HEADER_LEN;
use super::options::{emit_options, parse_options, TcpOption, TCP_MAX_OPTIONS_LEN};
use super::{checksum_matches, seq};

pub(super) const TCP_HEADER_LEN: usize = 20;
/// An IPv4 total length is 16 bits and includes the 20-byte IP header; IPv6 allows 20 bytes
/// more, but one limit for both keeps [`TcpRepr::check`] independent of the family.
pub(super) const TCP_MAX_SEGMENT_LEN: usize = 65535 - IPV4_HEADER_LEN;

/// TCP header flags: the eight classic bits, AE (the former NS bit, RFC 3540/accurate ECN)
/// and the three still-reserved bits, laid out as in the header's 12 flag bits
/// (`0x001` = FIN ... `0x080` = CWR, `0x100` = AE, `0xe00` = reserved).
///
/// Display is tcpdump's letters in one fixed order, `S F R P U E W e` and then `.` for ACK
/// (tcpdump itself puts `.` right after `P`, so it prints `S.E` where this prints `SE.`;
/// keeping `.` last makes the common cases read the same either way: `S.`, `F.`, `FP.`, `R.`).
/// No flags at all display as `none`. Reserved bits, which only a broken peer sets, are
/// appended in hex (`S+0x800`) and cannot be parsed back.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    pub const NONE: TcpFlags = TcpFlags(0);
    pub const FIN: TcpFlags = TcpFlags(0x001);
    pub const SYN: TcpFlags = TcpFlags(0x002);
    pub const RST: TcpFlags = TcpFlags(0x004);
    pub const PSH: TcpFlags = TcpFlags(0x008);
    pub const ACK: TcpFlags = TcpFlags(0x010);
    pub const URG: TcpFlags = TcpFlags(0x020);
    pub const ECE: TcpFlags = TcpFlags(0x040);
    pub const CWR: TcpFlags = TcpFlags(0x080);
    pub const AE: TcpFlags = TcpFlags(0x100);
    pub const RESERVED: TcpFlags = TcpFlags(0xe00);

    /// Letters in display order; parsing accepts them in any order, plus `A` for ACK.
    const LETTERS: [(TcpFlags, char); 9] = [
        (TcpFlags::SYN, 'S'),
        (TcpFlags::FIN, 'F'),
        (TcpFlags::RST, 'R'),
        (TcpFlags::PSH, 'P'),
        (TcpFlags::URG, 'U'),
        (TcpFlags::ECE, 'E'),
        (TcpFlags::CWR, 'W'),
        (TcpFlags::AE, 'e'),
        (TcpFlags::ACK, '.'),
    ];

    /// True if every bit of `other` is set in `self`.
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if any bit of `other` is set in `self`.
    pub fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn from_letter(letter: char) -> Option<TcpFlags> {
        if letter == 'A' {
            return Some(TcpFlags::ACK);
        }
        Self::LETTERS
            .iter()
            .find(|&&(_, l)| l == letter)
            .map(|&(flag, _)| flag)
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named = self.0 & !TcpFlags::RESERVED.0;
        if named == 0 {
            f.write_str("none")?;
        }
        for (flag, letter) in Self::LETTERS {
            if self.contains(flag) {
                f.write_char(letter)?;
            }
        }
        let reserved = self.0 & TcpFlags::RESERVED.0;
        if reserved != 0 {
            write!(f, "+{reserved:#x}")?;
        }
        Ok(())
    }
}

/// Why a flags string did not parse. `index` is the 0-based position of the offending
/// character; everything before it is ASCII, so it is both a byte and a character index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagsError {
    pub index: usize,
    pub kind: FlagsErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlagsErrorKind {
    /// An empty string: an easy accident in a script, so "no flags" must be spelled `none`.
    Empty,
    /// A character that names no flag.
    Unknown(char),
    /// A flag given twice (`A.` counts: both mean ACK), most likely a typo.
    Repeated(char),
}

impl fmt::Display for FlagsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = self.index;
        match self.kind {
            FlagsErrorKind::Empty => {
                write!(
                    f,
                    "empty TCP flags; write `none` for a segment without flags"
                )
            }
            FlagsErrorKind::Unknown(c) => write!(
                f,
                "unexpected {c:?} at index {i} in TCP flags \
                 (expected letters from \"SFRPUEWeA.\" or `none`)"
            ),
            FlagsErrorKind::Repeated(c) => {
                write!(f, "TCP flag {c:?} at index {i} repeats an earlier flag")
            }
        }
    }
}

impl std::error::Error for FlagsError {}

/// Parses `S F R P U E W e` (case matters: `e` is AE, `E` is ECE), `A` or `.` for ACK, in
/// any order, e.g. `F.`, `FA`, `SA`, `R`, `.`; `none` means no flags. Each flag at most once.
impl FromStr for TcpFlags {
    type Err = FlagsError;

    fn from_str(s: &str) -> Result<TcpFlags, FlagsError> {
        if s == "none" {
            return Ok(TcpFlags::NONE);
        }
        if s.is_empty() {
            return Err(FlagsError {
                index: 0,
                kind: FlagsErrorKind::Empty,
            });
        }
        let mut flags = TcpFlags::NONE;
        for (index, letter) in s.chars().enumerate() {
            let Some(flag) = TcpFlags::from_letter(letter) else {
                return Err(FlagsError {
                    index,
                    kind: FlagsErrorKind::Unknown(letter),
                });
            };
            if flags.contains(flag) {
                return Err(FlagsError {
                    index,
                    kind: FlagsErrorKind::Repeated(letter),
                });
            }
            flags |= flag;
        }
        Ok(flags)
    }
}

/// A TCP segment as plain values. `flags` carries all 12 flag bits, so a parsed segment
/// re-emits bit for bit (bits above the 12 are not representable and are dropped on emit).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    pub urgent: u16,
    pub options: Vec<TcpOption>,
    pub payload: Vec<u8>,
}

impl TcpRepr {
    /// Sequence space the segment occupies: payload bytes plus one each for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        let syn = u32::from(self.flags.contains(TcpFlags::SYN));
        let fin = u32::from(self.flags.contains(TcpFlags::FIN));
        // Payloads are bounded far below 2^32; wrapping only guards against a caller's
        // oversized Vec, which `check` rejects anyway.
        (self.payload.len() as u32).wrapping_add(syn + fin)
    }

    /// Encoded option bytes, padding included.
    pub fn options_len(&self) -> usize {
        let raw: usize = self.options.iter().map(TcpOption::wire_len).sum();
        raw.next_multiple_of(4)
    }

    /// Header length: 20 bytes plus padded options.
    pub fn header_len(&self) -> usize {
        TCP_HEADER_LEN + self.options_len()
    }

    /// Whether [`emit_tcp`] can encode this segment: options within 40 bytes, `Unknown`
    /// options of kind 2 or more, and the whole segment within an IP datagram.
    pub fn check(&self) -> Result<(), String> {
        for option in &self.options {
            if let TcpOption::Unknown { kind, .. } = option {
                if *kind < 2 {
                    return Err(format!(
                        "unknown option of kind {kind}: kinds 0 and 1 have no length byte; \
                         use Eol or Nop"
                    ));
                }
            }
        }
        let options = self.options_len();
        if options > TCP_MAX_OPTIONS_LEN {
            return Err(format!(
                "options take {options} bytes, more than the 40 TCP allows"
            ));
        }
        let segment = self.header_len() + self.payload.len();
        if segment > TCP_MAX_SEGMENT_LEN {
            return Err(format!(
                "segment of {segment} bytes does not fit an IP datagram"
            ));
        }
        Ok(())
    }
}

/// The TCP header and payload, checksum still zero.
pub(super) fn emit_segment(tcp: &TcpRepr) -> Vec<u8> {
    let options = emit_options(&tcp.options);
    let header_len = TCP_HEADER_LEN + options.len();
    let mut segment = vec![0; header_len];
    segment.extend(&tcp.payload);
    let mut view = MutableTcpPacket::new(&mut segment).expect("buffer holds a TCP header");
    view.set_source(tcp.src_port);
    view.set_destination(tcp.dst_port);
    view.set_sequence(tcp.seq);
    view.set_acknowledgement(tcp.ack);
    view.set_data_offset((header_len / 4) as u8);
    // pnet splits the 12 flag bits into a 4-bit "reserved" field and the 8 classic flags.
    view.set_reserved(((tcp.flags.0 >> 8) & 0xf) as u8);
    view.set_flags(tcp.flags.0 as u8);
    view.set_window(tcp.window);
    view.set_urgent_ptr(tcp.urgent);
    segment[TCP_HEADER_LEN..header_len].copy_from_slice(&options);
    segment
}

/// Decodes a TCP segment (exactly the IP payload) and checks its checksum with `checksum`.
pub(super) fn parse_segment(
    segment: &[u8],
    checksum: impl Fn(&TcpPacket) -> u16,
) -> Result<(TcpRepr, bool), String> {
    let view = TcpPacket::new(segment)
        .ok_or_else(|| format!("truncated TCP header ({} bytes)", segment.len()))?;
    let (src_port, dst_port) = (view.get_source(), view.get_destination());
    let header_len = usize::from(view.get_data_offset()) * 4;
    if header_len < TCP_HEADER_LEN || header_len > segment.len() {
        return Err(format!(
            "TCP {src_port} > {dst_port}: data offset {header_len} bytes in a {}-byte segment",
            segment.len()
        ));
    }
    let options = parse_options(&segment[TCP_HEADER_LEN..header_len])
        .map_err(|e| format!("TCP {src_port} > {dst_port}: {e}"))?;
    let flags = (u16::from(view.get_reserved()) << 8) | u16::from(view.get_flags());
    let tcp = TcpRepr {
        src_port,
        dst_port,
        seq: view.get_sequence(),
        ack: view.get_acknowledgement(),
        flags: TcpFlags(flags),
        window: view.get_window(),
        urgent: view.get_urgent_ptr(),
        options,
        payload: segment[header_len..].to_vec(),
    };
    Ok((tcp, checksum_matches(view.get_checksum(), checksum(&view))))
}

/// One line for failure messages and capture comments, tcpdump-like, with `seq` relative to
/// `seq_base` and `ack` (and SACK edges) relative to `ack_base`:
/// `F. seq 1 ack 1 win 502 len 0 <nop,nop,TS val 1 ecr 2>`.
/// `ack` appears only with the ACK flag and `urg` only with URG, as in tcpdump; the window
/// is the raw header field, unscaled.
pub fn describe(tcp: &TcpRepr, seq_base: u32, ack_base: u32) -> String {
    let mut line = format!("{} seq {}", tcp.flags, seq::rel(tcp.seq, seq_base));
    if tcp.flags.contains(TcpFlags::ACK) {
        let _ = write!(line, " ack {}", seq::rel(tcp.ack, ack_base));
    }
    let _ = write!(line, " win {}", tcp.window);
    if tcp.flags.contains(TcpFlags::URG) {
        let _ = write!(line, " urg {}", tcp.urgent);
    }
    let _ = write!(line, " len {}", tcp.payload.len());
    if !tcp.options.is_empty() {
        let options: Vec<String> = tcp.options.iter().map(|o| o.describe(ack_base)).collect();
        let _ = write!(line, " <{}>", options.join(","));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::*;

    #[test]
    fn seq_len_counts_syn_fin_and_payload() {
        let mut repr = segment(vec![], b"abc");
        assert_eq!(repr.seq_len(), 3);
        repr.flags = TcpFlags::SYN | TcpFlags::FIN;
        assert_eq!(repr.seq_len(), 5);
    }

    #[test]
    fn flags_display() {
        let cases = [
            (TcpFlags::SYN, "S"),
            (TcpFlags::SYN | TcpFlags::ACK, "S."),
            (TcpFlags::FIN | TcpFlags::ACK, "F."),
            (TcpFlags::RST, "R"),
            (TcpFlags::RST | TcpFlags::ACK, "R."),
            (TcpFlags::PSH | TcpFlags::ACK, "P."),
            (TcpFlags::FIN | TcpFlags::PSH | TcpFlags::ACK, "FP."),
            (TcpFlags::ACK, "."),
            (TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR, "SEW"),
            (TcpFlags::NONE, "none"),
            (TcpFlags(0x802), "S+0x800"),
            (TcpFlags(0x0ff) | TcpFlags::AE, "SFRPUEWe."),
        ];
        for (flags, text) in cases {
            assert_eq!(flags.to_string(), text);
        }
    }

    #[test]
    fn flags_parse_and_round_trip() {
        assert_eq!("FA".parse(), Ok(TcpFlags::FIN | TcpFlags::ACK));
        assert_eq!("SA".parse(), Ok(TcpFlags::SYN | TcpFlags::ACK));
        assert_eq!(".F".parse(), Ok(TcpFlags::FIN | TcpFlags::ACK));
        assert_eq!("none".parse(), Ok(TcpFlags::NONE));
        for bits in 0..0x200u16 {
            let flags = TcpFlags(bits);
            assert_eq!(flags.to_string().parse(), Ok(flags));
        }
        assert!(TcpFlags(0x13).contains(TcpFlags::SYN | TcpFlags::ACK));
        assert!(!TcpFlags::SYN.contains(TcpFlags::SYN | TcpFlags::ACK));
    }

    #[test]
    fn flags_errors_name_character_and_index() {
        let err = "S.x".parse::<TcpFlags>().unwrap_err();
        assert_eq!(
            err,
            FlagsError {
                index: 2,
                kind: FlagsErrorKind::Unknown('x')
            }
        );
        assert!(err.to_string().contains("'x' at index 2"), "{err}");
        let err = "FA.".parse::<TcpFlags>().unwrap_err();
        assert_eq!(
            err,
            FlagsError {
                index: 2,
                kind: FlagsErrorKind::Repeated('.')
            }
        );
        let err = "".parse::<TcpFlags>().unwrap_err();
        assert_eq!(err.kind, FlagsErrorKind::Empty);
        assert_eq!(" S".parse::<TcpFlags>().unwrap_err().index, 0);
        assert_eq!("Sé".parse::<TcpFlags>().unwrap_err().index, 1);
        assert_eq!(
            "s".parse::<TcpFlags>().unwrap_err().kind,
            FlagsErrorKind::Unknown('s')
        );
    }
}
