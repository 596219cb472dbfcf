//! Frames the raw-socket peer sends and receives.
//!
//! The layout follows smoltcp's `wire` module: typed views over bytes on one side, plain
//! `Repr` values on the other, and small `emit`/`parse` functions in between. pnet_packet
//! supplies the typed views and the checksum routines; this module supplies the plain values
//! ([`TcpRepr`], [`TcpOption`], [`TcpFlags`], [`Endpoints`], [`Frame`]) and the glue.
//!
//! Parsing never panics: frames come from a kernel under test, and a malformed one becomes
//! [`Frame::Other`] with a one-line summary saying what was wrong. Emitting takes values
//! written by the harness itself; [`TcpRepr::check`] says up front whether a segment can be
//! encoded, and [`emit_tcp`] panics only on what `check` rejects.
//!
//! TCP options are parsed here from the raw option bytes rather than with pnet's
//! `TcpOptionPacket`, because pnet reads a length byte of 0 or 1 as "two bytes long" and
//! carries on, which hides exactly the kind of malformation a conformance test wants to see.
//! For the same reason neighbor solicitations are read without pnet's NDP option iterator,
//! whose length arithmetic (`length * 8` in a `u8`) overflows on option lengths of 32 and up.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::{BitAnd, BitOr, BitOrAssign};
use std::str::FromStr;

use pnet_base::MacAddr;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::icmpv6::ndp::{MutableNeighborAdvertPacket, NeighborAdvertFlags};
use pnet_packet::icmpv6::{self, Icmpv6Code, Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, Ipv4Flags, Ipv4Packet, MutableIpv4Packet};
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
use pnet_packet::tcp::{self, MutableTcpPacket, TcpPacket};
use pnet_packet::Packet;

use crate::Family;

const ETHERNET_HEADER_LEN: usize = 14;
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const TCP_HEADER_LEN: usize = 20;
/// The data offset field counts 32-bit words in 4 bits: at most 60 header bytes.
const TCP_MAX_OPTIONS_LEN: usize = 40;
/// An IPv4 total length is 16 bits and includes the 20-byte IP header; IPv6 allows 20 bytes
/// more, but one limit for both keeps [`TcpRepr::check`] independent of the family.
const TCP_MAX_SEGMENT_LEN: usize = 65535 - IPV4_HEADER_LEN;
const TTL: u8 = 64;
/// RFC 4861 requires 255 on every neighbor discovery message, sent and received.
const ND_HOP_LIMIT: u8 = 255;
const ARP_LEN: usize = 28;
/// Neighbor solicitation and advertisement: ICMPv6 header, flags/reserved, target.
const ND_MESSAGE_LEN: usize = 24;
const ND_OPTION_SOURCE_LL_ADDR: u8 = 1;
const ND_OPTION_TARGET_LL_ADDR: u8 = 2;

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

/// Option kinds this module decodes (RFC 9293, RFC 7323, RFC 2018).
mod kind {
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

    fn emit(&self, out: &mut Vec<u8>) {
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
    fn decode(kind: u8, body: &[u8]) -> TcpOption {
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
    fn describe(&self, ack_base: u32) -> String {
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
fn parse_one_option(raw: &[u8], at: usize, kind: u8) -> Result<(TcpOption, usize), OptionError> {
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

/// The IP addresses of a segment, both of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoints {
    pub src: IpAddr,
    pub dst: IpAddr,
}

impl Endpoints {
    /// The family of both addresses, or `None` if they differ.
    pub fn family(&self) -> Option<Family> {
        match (self.src, self.dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => Some(Family::V4),
            (IpAddr::V6(_), IpAddr::V6(_)) => Some(Family::V6),
            _ => None,
        }
    }

    /// The same pair seen from the other end.
    pub fn reversed(self) -> Endpoints {
        Endpoints {
            src: self.dst,
            dst: self.src,
        }
    }
}

/// Builds Ethernet + IPv4/IPv6 + TCP with correct IP and TCP checksums.
///
/// IPv4: TTL 64, DF set, identification 0 (RFC 6864 allows any value on an unfragmentable
/// datagram, and a fixed one keeps emitted bytes a function of the repr alone), DSCP/ECN 0.
/// IPv6: hop limit 64, traffic class and flow label 0. Options are padded as in
/// [`emit_options`].
///
/// # Panics
/// If the addresses are of different families or [`TcpRepr::check`] fails: both are
/// mistakes in the harness, not in the system under test.
pub fn emit_tcp(src_mac: [u8; 6], dst_mac: [u8; 6], ep: Endpoints, tcp: &TcpRepr) -> Vec<u8> {
    if let Err(problem) = tcp.check() {
        panic!("emit_tcp: {problem}");
    }
    let segment = emit_segment(tcp);
    match (ep.src, ep.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => emit_tcp_v4(src_mac, dst_mac, src, dst, segment),
        (IpAddr::V6(src), IpAddr::V6(dst)) => emit_tcp_v6(src_mac, dst_mac, src, dst, segment),
        _ => panic!("emit_tcp: endpoints of different families: {ep:?}"),
    }
}

/// The TCP header and payload, checksum still zero.
fn emit_segment(tcp: &TcpRepr) -> Vec<u8> {
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

/// An Ethernet header with room for `payload_len` bytes after it.
fn ethernet_frame(src: [u8; 6], dst: [u8; 6], ethertype: u16, payload_len: usize) -> Vec<u8> {
    let mut frame = vec![0; ETHERNET_HEADER_LEN + payload_len];
    let mut eth = MutableEthernetPacket::new(&mut frame).expect("buffer holds an Ethernet header");
    eth.set_destination(MacAddr::from(dst));
    eth.set_source(MacAddr::from(src));
    eth.set_ethertype(pnet_packet::ethernet::EtherType(ethertype));
    frame
}

fn emit_tcp_v4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    segment: Vec<u8>,
) -> Vec<u8> {
    let total_len = IPV4_HEADER_LEN + segment.len();
    let mut frame = ethernet_frame(src_mac, dst_mac, EtherTypes::Ipv4.0, total_len);
    let ip_bytes = &mut frame[ETHERNET_HEADER_LEN..];
    ip_bytes[IPV4_HEADER_LEN..].copy_from_slice(&segment);
    {
        let mut tcp = MutableTcpPacket::new(&mut ip_bytes[IPV4_HEADER_LEN..]).expect("TCP header");
        let sum = tcp::ipv4_checksum(&tcp.to_immutable(), &src, &dst);
        tcp.set_checksum(sum);
    }
    let mut ip = MutableIpv4Packet::new(ip_bytes).expect("buffer holds an IPv4 header");
    ip.set_version(4);
    ip.set_header_length((IPV4_HEADER_LEN / 4) as u8);
    ip.set_total_length(total_len as u16);
    ip.set_identification(0);
    ip.set_flags(Ipv4Flags::DontFragment);
    ip.set_ttl(TTL);
    ip.set_next_level_protocol(IpNextHeaderProtocols::Tcp);
    ip.set_source(src);
    ip.set_destination(dst);
    let sum = ipv4::checksum(&ip.to_immutable());
    ip.set_checksum(sum);
    frame
}

fn emit_tcp_v6(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    segment: Vec<u8>,
) -> Vec<u8> {
    let mut frame = ethernet_frame(
        src_mac,
        dst_mac,
        EtherTypes::Ipv6.0,
        IPV6_HEADER_LEN + segment.len(),
    );
    let ip_bytes = &mut frame[ETHERNET_HEADER_LEN..];
    ip_bytes[IPV6_HEADER_LEN..].copy_from_slice(&segment);
    {
        let mut tcp = MutableTcpPacket::new(&mut ip_bytes[IPV6_HEADER_LEN..]).expect("TCP header");
        let sum = tcp::ipv6_checksum(&tcp.to_immutable(), &src, &dst);
        tcp.set_checksum(sum);
    }
    let mut ip = MutableIpv6Packet::new(ip_bytes).expect("buffer holds an IPv6 header");
    fill_ipv6_header(&mut ip, segment.len(), 6, TTL, src, dst);
    frame
}

fn fill_ipv6_header(
    ip: &mut MutableIpv6Packet,
    payload_len: usize,
    next_header: u8,
    hop_limit: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) {
    ip.set_version(6);
    ip.set_payload_length(payload_len as u16);
    ip.set_next_header(pnet_packet::ip::IpNextHeaderProtocol(next_header));
    ip.set_hop_limit(hop_limit);
    ip.set_source(src);
    ip.set_destination(dst);
}

/// What [`parse_frame`] makes of one Ethernet frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A TCP segment over IPv4 or IPv6. `checksum_ok` covers the TCP checksum and, for
    /// IPv4, the header checksum. Both the value computed here and its ones'-complement
    /// twin 0xffff are accepted where the computed value is 0, as RFC 1624 allows.
    Tcp {
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        ep: Endpoints,
        tcp: TcpRepr,
        checksum_ok: bool,
    },
    /// An ARP request for Ethernet/IPv4 (gratuitous ones included).
    ArpRequest {
        sender_mac: [u8; 6],
        sender_ip: Ipv4Addr,
        target_ip: Ipv4Addr,
    },
    /// A valid neighbor solicitation (hop limit 255, code 0, good checksum). `src_ip` is the
    /// unspecified address when the sender is doing duplicate address detection.
    NeighborSolicit {
        src_mac: [u8; 6],
        src_ip: Ipv6Addr,
        target: Ipv6Addr,
    },
    /// An ARP reply: `sender_ip` is at `sender_mac`.
    ArpReply {
        sender_mac: [u8; 6],
        sender_ip: Ipv4Addr,
    },
    /// A neighbor advertisement for `target` (hop limit 255, code 0, good checksum).
    NeighborAdvert { src_mac: [u8; 6], target: Ipv6Addr },
    /// Anything else, or something malformed, in a line for humans.
    Other { summary: String },
}

/// Classifies and decodes one Ethernet frame. Never panics; bytes past the IP datagram's own
/// length (Ethernet padding) are ignored.
pub fn parse_frame(data: &[u8]) -> Frame {
    parse_ethernet(data).unwrap_or_else(|summary| Frame::Other { summary })
}

/// `Err` carries the summary of a [`Frame::Other`].
type Parsed = Result<Frame, String>;

fn parse_ethernet(data: &[u8]) -> Parsed {
    let eth = EthernetPacket::new(data)
        .ok_or_else(|| format!("truncated Ethernet header ({} bytes)", data.len()))?;
    let macs = Macs {
        src: eth.get_source().octets(),
        dst: eth.get_destination().octets(),
    };
    let payload = &data[ETHERNET_HEADER_LEN..];
    match eth.get_ethertype() {
        EtherTypes::Ipv4 => parse_ipv4(macs, payload),
        EtherTypes::Ipv6 => parse_ipv6(macs, payload),
        EtherTypes::Arp => parse_arp(payload),
        EtherTypes::Vlan | EtherTypes::QinQ => Err("VLAN-tagged frame".into()),
        other => Err(format!("ethertype {:#06x}", other.0)),
    }
}

#[derive(Clone, Copy)]
struct Macs {
    src: [u8; 6],
    dst: [u8; 6],
}

fn parse_ipv4(macs: Macs, bytes: &[u8]) -> Parsed {
    let ip = Ipv4Packet::new(bytes)
        .ok_or_else(|| format!("truncated IPv4 header ({} bytes)", bytes.len()))?;
    if ip.get_version() != 4 {
        return Err(format!(
            "IPv4 ethertype with IP version {}",
            ip.get_version()
        ));
    }
    let header_len = usize::from(ip.get_header_length()) * 4;
    let total_len = usize::from(ip.get_total_length());
    if header_len < IPV4_HEADER_LEN || header_len > total_len || total_len > bytes.len() {
        return Err(format!(
            "bad IPv4 lengths: header {header_len}, total {total_len}, {} bytes present",
            bytes.len()
        ));
    }
    let (src, dst) = (ip.get_source(), ip.get_destination());
    let protocol = ip.get_next_level_protocol().0;
    if ip.get_flags() & Ipv4Flags::MoreFragments != 0 || ip.get_fragment_offset() != 0 {
        return Err(format!(
            "IPv4 fragment {src} > {dst} ({})",
            protocol_name(protocol)
        ));
    }
    if protocol != IpNextHeaderProtocols::Tcp.0 {
        return Err(format!("IPv4 {} {src} > {dst}", protocol_name(protocol)));
    }
    let header_ok = checksum_matches(ip.get_checksum(), ipv4::checksum(&ip));
    let segment = &bytes[header_len..total_len];
    let (tcp, tcp_ok) = parse_tcp(segment, |view| tcp::ipv4_checksum(view, &src, &dst))?;
    Ok(Frame::Tcp {
        src_mac: macs.src,
        dst_mac: macs.dst,
        ep: Endpoints {
            src: src.into(),
            dst: dst.into(),
        },
        tcp,
        checksum_ok: header_ok && tcp_ok,
    })
}

fn parse_ipv6(macs: Macs, bytes: &[u8]) -> Parsed {
    let ip = Ipv6Packet::new(bytes)
        .ok_or_else(|| format!("truncated IPv6 header ({} bytes)", bytes.len()))?;
    if ip.get_version() != 6 {
        return Err(format!(
            "IPv6 ethertype with IP version {}",
            ip.get_version()
        ));
    }
    let payload_len = usize::from(ip.get_payload_length());
    let present = bytes.len() - IPV6_HEADER_LEN;
    if payload_len > present {
        return Err(format!(
            "IPv6 payload length {payload_len} but {present} bytes present"
        ));
    }
    let payload = &bytes[IPV6_HEADER_LEN..IPV6_HEADER_LEN + payload_len];
    let (src, dst) = (ip.get_source(), ip.get_destination());
    match ip.get_next_header().0 {
        6 => {
            let (tcp, ok) = parse_tcp(payload, |view| tcp::ipv6_checksum(view, &src, &dst))?;
            Ok(Frame::Tcp {
                src_mac: macs.src,
                dst_mac: macs.dst,
                ep: Endpoints {
                    src: src.into(),
                    dst: dst.into(),
                },
                tcp,
                checksum_ok: ok,
            })
        }
        58 => parse_icmpv6(macs, &ip, payload),
        next => Err(format!(
            "IPv6 {} {src} > {dst}",
            ipv6_upper_layer(next, payload)
        )),
    }
}

/// Names what sits behind IPv6 extension headers, for the summary of an ignored frame
/// (MLD reports, for one, come behind a hop-by-hop header). Bounded walk.
fn ipv6_upper_layer(mut next: u8, mut rest: &[u8]) -> String {
    let mut chain = Vec::new();
    for _ in 0..8 {
        let len = match next {
            0 | 43 | 60 => rest.get(1).map(|&n| (usize::from(n) + 1) * 8),
            44 => Some(8),
            _ => break,
        };
        chain.push(ipv6_extension_name(next));
        let Some(len) = len.filter(|&len| len <= rest.len()) else {
            return format!("{}, truncated", chain.join(", "));
        };
        next = rest[0];
        rest = &rest[len..];
    }
    let upper = match next {
        6 => "TCP (behind extension headers, not supported)".to_string(),
        58 => match rest.first() {
            Some(&t) => format!("ICMPv6 type {t} ({})", icmpv6_type_name(t)),
            None => "ICMPv6, truncated".to_string(),
        },
        other => protocol_name(other),
    };
    chain.push(&upper);
    chain.join(", ")
}

fn ipv6_extension_name(next: u8) -> &'static str {
    match next {
        0 => "hop-by-hop options",
        43 => "routing header",
        44 => "fragment header",
        _ => "destination options",
    }
}

fn parse_icmpv6(macs: Macs, ip: &Ipv6Packet, payload: &[u8]) -> Parsed {
    let (src, dst) = (ip.get_source(), ip.get_destination());
    let icmp =
        Icmpv6Packet::new(payload).ok_or_else(|| format!("IPv6 truncated ICMPv6 {src} > {dst}"))?;
    let kind = icmp.get_icmpv6_type().0;
    let summary = |why: &str| {
        format!(
            "IPv6 ICMPv6 type {kind} ({}){why} {src} > {dst}",
            icmpv6_type_name(kind)
        )
    };
    let advert = icmp.get_icmpv6_type() == Icmpv6Types::NeighborAdvert;
    if icmp.get_icmpv6_type() != Icmpv6Types::NeighborSolicit && !advert {
        return Err(summary(""));
    }
    // RFC 4861 7.1.1: a solicitation that fails any of these is to be silently discarded.
    if ip.get_hop_limit() != ND_HOP_LIMIT || icmp.get_icmpv6_code() != Icmpv6Code(0) {
        return Err(summary(", invalid hop limit or code,"));
    }
    if payload.len() < ND_MESSAGE_LEN {
        return Err(summary(", truncated,"));
    }
    if !checksum_matches(icmp.get_checksum(), icmpv6::checksum(&icmp, &src, &dst)) {
        return Err(summary(", bad checksum,"));
    }
    let mut target = [0; 16];
    target.copy_from_slice(&payload[8..24]);
    if advert {
        return Ok(Frame::NeighborAdvert {
            src_mac: macs.src,
            target: target.into(),
        });
    }
    Ok(Frame::NeighborSolicit {
        src_mac: macs.src,
        src_ip: src,
        target: target.into(),
    })
}

fn parse_arp(bytes: &[u8]) -> Parsed {
    let arp =
        ArpPacket::new(bytes).ok_or_else(|| format!("truncated ARP ({} bytes)", bytes.len()))?;
    let ethernet_ipv4 = arp.get_hardware_type() == ArpHardwareTypes::Ethernet
        && arp.get_protocol_type() == EtherTypes::Ipv4
        && arp.get_hw_addr_len() == 6
        && arp.get_proto_addr_len() == 4;
    if !ethernet_ipv4 {
        return Err("ARP for something other than Ethernet/IPv4".into());
    }
    let (sender_ip, target_ip) = (arp.get_sender_proto_addr(), arp.get_target_proto_addr());
    match arp.get_operation() {
        ArpOperations::Request => Ok(Frame::ArpRequest {
            sender_mac: arp.get_sender_hw_addr().octets(),
            sender_ip,
            target_ip,
        }),
        ArpOperations::Reply => Ok(Frame::ArpReply {
            sender_mac: arp.get_sender_hw_addr().octets(),
            sender_ip,
        }),
        op => Err(format!("ARP operation {}", op.0)),
    }
}

/// Decodes a TCP segment (exactly the IP payload) and checks its checksum with `checksum`.
fn parse_tcp(
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

/// Ones'-complement arithmetic has two zeros; a sender may write either when the computed
/// checksum is 0 (the whole-packet sum folds to 0xffff both ways).
fn checksum_matches(field: u16, computed: u16) -> bool {
    field == computed || (computed == 0 && field == 0xffff)
}

fn protocol_name(protocol: u8) -> String {
    match protocol {
        1 => "ICMP".into(),
        2 => "IGMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        132 => "SCTP".into(),
        other => format!("protocol {other}"),
    }
}

fn icmpv6_type_name(kind: u8) -> &'static str {
    match kind {
        1 => "destination unreachable",
        2 => "packet too big",
        3 => "time exceeded",
        4 => "parameter problem",
        128 => "echo request",
        129 => "echo reply",
        130 => "MLD query",
        131 => "MLDv1 report",
        132 => "MLD done",
        133 => "router solicitation",
        134 => "router advertisement",
        135 => "neighbor solicitation",
        136 => "neighbor advertisement",
        137 => "redirect",
        143 => "MLDv2 report",
        _ => "unknown",
    }
}

/// An ARP reply telling `to_ip` at `to_mac` that `our_ip` is at `our_mac`, unicast back to
/// the asker. 42 bytes: Linux accepts unpadded frames, and veth carries them as they are.
pub fn emit_arp_reply(
    our_mac: [u8; 6],
    our_ip: Ipv4Addr,
    to_mac: [u8; 6],
    to_ip: Ipv4Addr,
) -> Vec<u8> {
    let mut frame = ethernet_frame(our_mac, to_mac, EtherTypes::Arp.0, ARP_LEN);
    let mut arp =
        MutableArpPacket::new(&mut frame[ETHERNET_HEADER_LEN..]).expect("buffer holds ARP");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(ArpOperations::Reply);
    arp.set_sender_hw_addr(MacAddr::from(our_mac));
    arp.set_sender_proto_addr(our_ip);
    arp.set_target_hw_addr(MacAddr::from(to_mac));
    arp.set_target_proto_addr(to_ip);
    frame
}

/// A broadcast ARP request: who has `target_ip`? Tell `our_ip` at `our_mac`.
pub fn emit_arp_request(our_mac: [u8; 6], our_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut frame = emit_arp_reply(our_mac, our_ip, [0; 6], target_ip);
    frame[..6].copy_from_slice(&[0xff; 6]);
    let mut arp =
        MutableArpPacket::new(&mut frame[ETHERNET_HEADER_LEN..]).expect("buffer holds ARP");
    arp.set_operation(ArpOperations::Request);
    frame
}

/// A neighbor solicitation for `target`, sent to its solicited-node multicast group, with our
/// link-layer address as the source option (so the solicited node can answer at once).
pub fn emit_neighbor_solicit(our_mac: [u8; 6], our_ip: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | t[13] as u16,
        u16::from_be_bytes([t[14], t[15]]),
    );
    let group_mac = [0x33, 0x33, 0xff, t[13], t[14], t[15]];
    // Same layout as an advert (header, target, one link-layer option): build one, then
    // turn it into a solicitation and fix the checksum.
    let mut frame = emit_neighbor_advert(our_mac, our_ip, group_mac, group);
    let icmp = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN;
    frame[icmp] = Icmpv6Types::NeighborSolicit.0;
    frame[icmp + 4..icmp + 8].fill(0);
    frame[icmp + 8..icmp + 24].copy_from_slice(&t);
    frame[icmp + ND_MESSAGE_LEN] = ND_OPTION_SOURCE_LL_ADDR;
    frame[icmp + 2..icmp + 4].fill(0);
    let sum = icmpv6::checksum(
        &Icmpv6Packet::new(&frame[icmp..]).expect("ICMPv6"),
        &our_ip,
        &group,
    );
    frame[icmp + 2..icmp + 4].copy_from_slice(&sum.to_be_bytes());
    frame
}

/// A neighbor advertisement for `our_ip` with a target link-layer address option, hop
/// limit 255 and the Solicited and Override flags.
///
/// A solicitation from the unspecified address (duplicate address detection) cannot be
/// answered by unicast, so, as RFC 4861 7.2.4 says, the advert then goes to all-nodes
/// (ff02::1, 33:33:00:00:00:01) without the Solicited flag.
pub fn emit_neighbor_advert(
    our_mac: [u8; 6],
    our_ip: Ipv6Addr,
    to_mac: [u8; 6],
    to_ip: Ipv6Addr,
) -> Vec<u8> {
    let dad = to_ip.is_unspecified();
    let (dst_mac, dst_ip) = if dad {
        (
            [0x33, 0x33, 0, 0, 0, 1],
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
        )
    } else {
        (to_mac, to_ip)
    };
    let icmp_len = ND_MESSAGE_LEN + 8;
    let mut frame = ethernet_frame(
        our_mac,
        dst_mac,
        EtherTypes::Ipv6.0,
        IPV6_HEADER_LEN + icmp_len,
    );
    let ip_bytes = &mut frame[ETHERNET_HEADER_LEN..];
    let mut ip = MutableIpv6Packet::new(ip_bytes).expect("buffer holds an IPv6 header");
    fill_ipv6_header(&mut ip, icmp_len, 58, ND_HOP_LIMIT, our_ip, dst_ip);
    let icmp_bytes = &mut ip_bytes[IPV6_HEADER_LEN..];
    // The option is written by hand: one 8-byte unit, type 2, then the address.
    icmp_bytes[ND_MESSAGE_LEN..ND_MESSAGE_LEN + 2].copy_from_slice(&[ND_OPTION_TARGET_LL_ADDR, 1]);
    icmp_bytes[ND_MESSAGE_LEN + 2..].copy_from_slice(&our_mac);
    let mut na = MutableNeighborAdvertPacket::new(icmp_bytes).expect("buffer holds an advert");
    na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
    na.set_icmpv6_code(Icmpv6Code(0));
    let solicited = if dad {
        0
    } else {
        NeighborAdvertFlags::Solicited
    };
    na.set_flags(solicited | NeighborAdvertFlags::Override);
    na.set_target_addr(our_ip);
    let sum = icmpv6::checksum(
        &Icmpv6Packet::new(na.packet()).expect("ICMPv6"),
        &our_ip,
        &dst_ip,
    );
    na.set_checksum(sum);
    frame
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

/// Sequence-space arithmetic modulo 2^32 (RFC 9293 section 3.4).
///
/// `a` is before `b` when `b - a`, taken modulo 2^32, is in 1..2^31, exactly Linux's
/// `before()`. Two numbers exactly 2^31 apart are each "before" the other; nothing in a real
/// connection is that far apart, since windows are at most 2^30.
pub mod seq {
    /// `a` comes strictly before `b`.
    pub fn lt(a: u32, b: u32) -> bool {
        (a.wrapping_sub(b) as i32) < 0
    }

    /// `a` comes before `b` or equals it.
    pub fn le(a: u32, b: u32) -> bool {
        a == b || lt(a, b)
    }

    /// `a` comes strictly after `b`.
    pub fn gt(a: u32, b: u32) -> bool {
        lt(b, a)
    }

    /// `a` comes after `b` or equals it.
    pub fn ge(a: u32, b: u32) -> bool {
        a == b || gt(a, b)
    }

    /// `abs - base` as a signed distance in -2^31..2^31, so a number just before the base
    /// shows as negative (`-1`) rather than as 4294967295. The halfway point 2^31 shows as
    /// -2^31, agreeing with [`lt`].
    pub fn rel(abs: u32, base: u32) -> i64 {
        i64::from(abs.wrapping_sub(base) as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

    fn v4() -> Endpoints {
        Endpoints {
            src: "10.9.0.1".parse().unwrap(),
            dst: "10.9.0.2".parse().unwrap(),
        }
    }

    fn v6() -> Endpoints {
        Endpoints {
            src: "fd00:9::1".parse().unwrap(),
            dst: "fd00:9::2".parse().unwrap(),
        }
    }

    fn every_option() -> Vec<TcpOption> {
        vec![
            TcpOption::Mss(1460),
            TcpOption::SackPermitted,
            TcpOption::Timestamps {
                val: 0xdead_beef,
                ecr: 7,
            },
            TcpOption::Nop,
            TcpOption::WindowScale(7),
            TcpOption::Sack(vec![(100, 200)]),
            TcpOption::Unknown {
                kind: 253,
                data: vec![0xab],
            },
            TcpOption::Eol,
            TcpOption::Nop,
        ]
    }

    fn segment(options: Vec<TcpOption>, payload: &[u8]) -> TcpRepr {
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: 0xffff_fff0,
            ack: 12345,
            flags: TcpFlags::ACK | TcpFlags::PSH,
            window: 502,
            urgent: 0,
            options,
            payload: payload.to_vec(),
        }
    }

    /// Every option kind, spread over lists that each fit 40 bytes.
    fn option_sets() -> Vec<Vec<TcpOption>> {
        vec![
            vec![],
            every_option(),
            vec![TcpOption::Sack(vec![
                (1, 2),
                (3, 4),
                (5, 6),
                (0xffff_ffff, 0),
            ])],
            vec![TcpOption::Eol, TcpOption::Mss(536)],
            vec![
                TcpOption::Sack(vec![]),
                TcpOption::Unknown {
                    kind: 30,
                    data: vec![],
                },
            ],
        ]
    }

    fn expect_tcp(frame: Frame) -> ([u8; 6], [u8; 6], Endpoints, TcpRepr, bool) {
        match frame {
            Frame::Tcp {
                src_mac,
                dst_mac,
                ep,
                tcp,
                checksum_ok,
            } => (src_mac, dst_mac, ep, tcp, checksum_ok),
            other => panic!("expected TCP, got {other:?}"),
        }
    }

    // -- An independent ones'-complement sum, so checksums are not checked against pnet
    // with pnet.

    fn ones_sum(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.concat();
        let mut sum: u64 = 0;
        for pair in bytes.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |&b| u64::from(b));
            sum += hi | lo;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    fn pseudo_header(ep: Endpoints, protocol: u8, len: usize) -> Vec<u8> {
        match (ep.src, ep.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut p = [s.octets(), d.octets()].concat();
                p.extend([0, protocol]);
                p.extend((len as u16).to_be_bytes());
                p
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut p = [s.octets(), d.octets()].concat();
                p.extend((len as u32).to_be_bytes());
                p.extend([0, 0, 0, protocol]);
                p
            }
            _ => unreachable!(),
        }
    }

    fn ip_header_len(frame: &[u8]) -> usize {
        match frame[12..14] {
            [0x08, 0x00] => usize::from(frame[14] & 0xf) * 4,
            _ => IPV6_HEADER_LEN,
        }
    }

    #[test]
    fn round_trip_v4_and_v6_with_every_option_and_payload() {
        for ep in [v4(), v6()] {
            for options in option_sets() {
                for payload in [&b""[..], b"hello, world", b"odd"] {
                    let repr = segment(options.clone(), payload);
                    let frame = emit_tcp(MAC_A, MAC_B, ep, &repr);
                    let (src_mac, dst_mac, got_ep, got, ok) = expect_tcp(parse_frame(&frame));
                    assert_eq!((src_mac, dst_mac, got_ep), (MAC_A, MAC_B, ep));
                    assert!(ok, "checksum of {repr:?}");
                    // A trailing EOL is padding on the wire; everything else survives.
                    let mut want = repr.clone();
                    if want.options.last() == Some(&TcpOption::Eol) {
                        want.options.pop();
                    }
                    assert_eq!(got, want);
                }
            }
        }
    }

    #[test]
    fn round_trip_keeps_all_twelve_flag_bits() {
        for bits in [0u16, 0x001, 0x0ff, 0x100, 0xe00, 0xfff] {
            let repr = TcpRepr {
                flags: TcpFlags(bits),
                ..segment(vec![], b"")
            };
            let (.., got, ok) = expect_tcp(parse_frame(&emit_tcp(MAC_A, MAC_B, v4(), &repr)));
            assert!(ok);
            assert_eq!(got.flags, TcpFlags(bits));
        }
    }

    #[test]
    fn emitted_ip_headers_are_as_documented() {
        let frame = emit_tcp(MAC_A, MAC_B, v4(), &segment(vec![], b"x"));
        assert_eq!(&frame[12..14], &[0x08, 0x00]);
        assert_eq!(frame[14], 0x45);
        assert_eq!(u16::from_be_bytes([frame[16], frame[17]]), 20 + 20 + 1);
        assert_eq!(&frame[18..22], &[0, 0, 0x40, 0], "id 0, DF, offset 0");
        assert_eq!((frame[22], frame[23]), (64, 6));
        assert_eq!(ones_sum(&[&frame[14..34]]), 0xffff, "IPv4 header checksum");

        let frame = emit_tcp(MAC_A, MAC_B, v6(), &segment(vec![], b"x"));
        assert_eq!(&frame[12..14], &[0x86, 0xdd]);
        assert_eq!(frame[14] >> 4, 6);
        assert_eq!(u16::from_be_bytes([frame[18], frame[19]]), 21);
        assert_eq!((frame[20], frame[21]), (6, 64));
    }

    #[test]
    fn tcp_checksums_verify_independently() {
        for ep in [v4(), v6()] {
            for options in option_sets() {
                for payload in [&b""[..], b"odd", b"even"] {
                    let frame = emit_tcp(MAC_A, MAC_B, ep, &segment(options.clone(), payload));
                    let seg = &frame[ETHERNET_HEADER_LEN + ip_header_len(&frame)..];
                    let pseudo = pseudo_header(ep, 6, seg.len());
                    assert_eq!(ones_sum(&[&pseudo, seg]), 0xffff, "{ep:?} {options:?}");
                }
            }
        }
    }

    #[test]
    fn options_are_padded_with_eol_to_four_bytes() {
        let repr = segment(vec![TcpOption::WindowScale(7)], b"");
        let frame = emit_tcp(MAC_A, MAC_B, v4(), &repr);
        let tcp = &frame[34..];
        assert_eq!(tcp[12] >> 4, 6, "data offset: 24 bytes");
        assert_eq!(&tcp[20..24], &[3, 3, 7, 0]);
    }

    #[test]
    fn corrupted_checksums_are_reported() {
        for ep in [v4(), v6()] {
            let mut frame = emit_tcp(MAC_A, MAC_B, ep, &segment(every_option(), b"data"));
            let at = ETHERNET_HEADER_LEN + ip_header_len(&frame) + 16;
            frame[at] ^= 0x01;
            let (.., tcp, ok) = expect_tcp(parse_frame(&frame));
            assert!(!ok);
            assert_eq!(tcp.payload, b"data");
        }
        // A corrupted IPv4 header checksum counts too.
        let mut frame = emit_tcp(MAC_A, MAC_B, v4(), &segment(vec![], b""));
        frame[24] ^= 0x80;
        assert!(!expect_tcp(parse_frame(&frame)).4);
        // Corrupted payload, checksum field untouched.
        let mut frame = emit_tcp(MAC_A, MAC_B, v6(), &segment(vec![], b"data"));
        *frame.last_mut().unwrap() ^= 0x20;
        assert!(!expect_tcp(parse_frame(&frame)).4);
    }

    #[test]
    fn negative_zero_checksum_is_accepted() {
        // Find a segment whose checksum computes to 0, then write it as 0xffff instead.
        for window in 0..=u16::MAX {
            let repr = TcpRepr {
                window,
                ..segment(vec![], b"")
            };
            let mut frame = emit_tcp(MAC_A, MAC_B, v4(), &repr);
            if frame[50..52] == [0, 0] {
                frame[50..52].copy_from_slice(&[0xff, 0xff]);
                assert!(expect_tcp(parse_frame(&frame)).4);
                return;
            }
        }
        panic!("no window gave a zero checksum");
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        let repr = segment(vec![], b"");
        let mut frame = emit_tcp(MAC_A, MAC_B, v4(), &repr);
        assert_eq!(frame.len(), 54);
        frame.resize(60, 0);
        let (.., got, ok) = expect_tcp(parse_frame(&frame));
        assert!(ok);
        assert_eq!(got, repr);
    }

    /// A tiny deterministic generator; tests need no `rand`.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn byte(&mut self) -> u8 {
            self.next() as u8
        }
    }

    fn sample_frames() -> Vec<Vec<u8>> {
        vec![
            emit_tcp(MAC_A, MAC_B, v4(), &segment(every_option(), b"payload")),
            emit_tcp(MAC_A, MAC_B, v6(), &segment(every_option(), b"payload")),
            emit_arp_reply(
                MAC_A,
                "10.9.0.1".parse().unwrap(),
                MAC_B,
                "10.9.0.2".parse().unwrap(),
            ),
            arp_request(),
            neighbor_solicit(255, false),
            emit_neighbor_advert(
                MAC_A,
                "fd00:9::1".parse().unwrap(),
                MAC_B,
                "fd00:9::2".parse().unwrap(),
            ),
        ]
    }

    #[test]
    fn every_prefix_parses_without_panic() {
        for frame in sample_frames() {
            for len in 0..frame.len() {
                if let Frame::Tcp { .. } = parse_frame(&frame[..len]) {
                    panic!("a truncated frame of {len} bytes parsed as TCP");
                }
            }
        }
    }

    #[test]
    fn random_and_mutated_bytes_parse_without_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let len = (rng.next() % 128) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            parse_frame(&bytes);
        }
        // Random bytes rarely get past the ethertype, so also damage valid frames.
        for frame in sample_frames() {
            for _ in 0..5000 {
                let mut bytes = frame.clone();
                for _ in 0..1 + rng.next() % 4 {
                    let at = (rng.next() as usize) % bytes.len();
                    bytes[at] = rng.byte();
                }
                parse_frame(&bytes);
            }
        }
    }

    /// A frame whose TCP option bytes are `raw` (a multiple of 4 long).
    fn frame_with_raw_options(raw: &[u8]) -> Vec<u8> {
        let mut frame = emit_tcp(MAC_A, MAC_B, v4(), &segment(vec![], b"xyz"));
        let tcp = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN;
        frame.splice(tcp + 20..tcp + 20, raw.iter().copied());
        frame[tcp + 12] = (((20 + raw.len()) / 4) as u8) << 4;
        let total = (frame.len() - ETHERNET_HEADER_LEN) as u16;
        frame[16..18].copy_from_slice(&total.to_be_bytes());
        frame
    }

    #[test]
    fn malformed_option_lengths_become_other() {
        let cases: [(&[u8], &str); 5] = [
            (
                &[2, 0, 1, 1],
                "kind 2 at option byte 0: length 0 is less than 2",
            ),
            (
                &[1, 8, 1, 1],
                "kind 8 at option byte 1: length 1 is less than 2",
            ),
            (
                &[2, 8, 5, 0xb4],
                "kind 2 at option byte 0: length 8 but only 4",
            ),
            (&[1, 1, 1, 2], "kind 2 at option byte 3: no length byte"),
            (
                &[1, 1, 5, 255],
                "kind 5 at option byte 2: length 255 but only 2",
            ),
        ];
        for (raw, want) in cases {
            match parse_frame(&frame_with_raw_options(raw)) {
                Frame::Other { summary } => {
                    assert!(summary.contains(want), "{summary:?} lacks {want:?}");
                    assert!(summary.starts_with("TCP 40000 > 80: malformed option"));
                }
                other => panic!("{raw:?} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn option_bytes_of_every_shape_never_panic() {
        let mut rng = XorShift(42);
        for _ in 0..20000 {
            let len = (rng.next() % 41) as usize;
            let raw: Vec<u8> = (0..len).map(|_| rng.byte() % 12).collect();
            if let Ok(options) = parse_options(&raw) {
                // Whatever parses re-emits to the same bytes, up to trailing zero padding.
                let mut again = emit_options(&options);
                let mut orig = raw.clone();
                while again.last() == Some(&0) {
                    again.pop();
                }
                while orig.last() == Some(&0) {
                    orig.pop();
                }
                assert_eq!(again, orig, "{options:?}");
            }
        }
    }

    #[test]
    fn known_kinds_with_odd_lengths_stay_unknown_and_exact() {
        let raw = [2, 3, 9, 8, 6, 0, 0, 0, 0, 3, 2, 1];
        let options = parse_options(&raw).unwrap();
        assert_eq!(
            options,
            vec![
                TcpOption::Unknown {
                    kind: 2,
                    data: vec![9]
                },
                TcpOption::Unknown {
                    kind: 8,
                    data: vec![0, 0, 0, 0]
                },
                TcpOption::Unknown {
                    kind: 3,
                    data: vec![]
                },
                TcpOption::Nop,
            ]
        );
        assert_eq!(emit_options(&options), raw);
    }

    #[test]
    fn eol_ends_the_list_only_when_zeros_follow() {
        assert_eq!(parse_options(&[1, 0, 0, 0]).unwrap(), vec![TcpOption::Nop]);
        assert_eq!(
            parse_options(&[0, 1, 3, 3, 7, 0, 0, 0]).unwrap(),
            vec![TcpOption::Eol, TcpOption::Nop, TcpOption::WindowScale(7)]
        );
    }

    #[test]
    fn check_rejects_what_cannot_be_encoded() {
        let mut options = vec![TcpOption::Timestamps { val: 0, ecr: 0 }; 4];
        assert!(
            segment(options.clone(), b"").check().is_ok(),
            "exactly 40 bytes"
        );
        options.push(TcpOption::Nop);
        let big = segment(options, b"");
        assert!(big
            .check()
            .unwrap_err()
            .contains("44 bytes, more than the 40"));
        let nop = segment(
            vec![TcpOption::Unknown {
                kind: 1,
                data: vec![],
            }],
            b"",
        );
        assert!(nop.check().is_err());
        let huge = segment(vec![], &vec![0; 65535]);
        assert!(huge.check().is_err());
        assert!(segment(vec![], &vec![0; 65495]).check().is_ok());
        assert!(segment(every_option(), b"").check().is_ok());
    }

    #[test]
    #[should_panic(expected = "different families")]
    fn mixed_families_panic_on_emit() {
        let ep = Endpoints {
            src: v4().src,
            dst: v6().dst,
        };
        emit_tcp(MAC_A, MAC_B, ep, &segment(vec![], b""));
    }

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

    #[test]
    fn seq_arithmetic_across_wraparound() {
        assert!(seq::lt(0xffff_fff0, 0x10));
        assert!(seq::gt(0x10, 0xffff_fff0));
        assert!(!seq::lt(0x10, 0xffff_fff0));
        assert!(seq::le(5, 5) && seq::ge(5, 5) && !seq::lt(5, 5) && !seq::gt(5, 5));
        assert!(seq::le(u32::MAX, 0) && seq::ge(0, u32::MAX));
        assert!(seq::lt(1, 0x8000_0000) && !seq::lt(1, 0x8000_0002));
        assert_eq!(seq::rel(0, u32::MAX), 1);
        assert_eq!(seq::rel(u32::MAX, 0), -1);
        assert_eq!(seq::rel(1000, 1000), 0);
        assert_eq!(seq::rel(5, 0xffff_fffb), 10);
        assert_eq!(seq::rel(0x7fff_ffff, 0), 0x7fff_ffff);
        assert_eq!(seq::rel(0x8000_0000, 0), -0x8000_0000);
        assert_eq!(seq::rel(0x8000_0001, 0), -0x7fff_ffff);
    }

    #[test]
    fn describe_text() {
        let isn_a: u32 = 0xffff_fff0;
        let isn_b = 1_000_000;
        let fin = TcpRepr {
            seq: isn_a.wrapping_add(1),
            ack: isn_b + 1,
            flags: TcpFlags::FIN | TcpFlags::ACK,
            options: vec![
                TcpOption::Nop,
                TcpOption::Nop,
                TcpOption::Timestamps { val: 1, ecr: 2 },
            ],
            ..segment(vec![], b"")
        };
        assert_eq!(
            describe(&fin, isn_a, isn_b),
            "F. seq 1 ack 1 win 502 len 0 <nop,nop,TS val 1 ecr 2>"
        );

        let syn = TcpRepr {
            seq: isn_a,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 64240,
            options: vec![
                TcpOption::Mss(1460),
                TcpOption::SackPermitted,
                TcpOption::WindowScale(7),
            ],
            ..segment(vec![], b"")
        };
        assert_eq!(
            describe(&syn, isn_a, isn_b),
            "S seq 0 win 64240 len 0 <mss 1460,sackOK,wscale 7>"
        );

        let rst = TcpRepr {
            seq: isn_a.wrapping_sub(1),
            flags: TcpFlags::RST,
            ..segment(vec![], b"")
        };
        assert_eq!(describe(&rst, isn_a, isn_b), "R seq -1 win 502 len 0");

        let data = TcpRepr {
            seq: isn_a.wrapping_add(1),
            ack: isn_b + 101,
            flags: TcpFlags::PSH | TcpFlags::ACK | TcpFlags::URG,
            urgent: 3,
            options: vec![TcpOption::Sack(vec![(isn_b + 201, isn_b + 301)])],
            ..segment(vec![], b"hello")
        };
        assert_eq!(
            describe(&data, isn_a, isn_b),
            "PU. seq 1 ack 101 win 502 urg 3 len 5 <sack 201:301>"
        );
    }

    fn arp_request() -> Vec<u8> {
        let mut frame = vec![0xff; 6];
        frame.extend(MAC_B);
        frame.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        frame.extend(MAC_B);
        frame.extend([10, 9, 0, 2]);
        frame.extend([0; 6]);
        frame.extend([10, 9, 0, 1]);
        frame
    }

    #[test]
    fn arp_request_and_reply() {
        let (ours, theirs): (Ipv4Addr, Ipv4Addr) =
            ("10.9.0.1".parse().unwrap(), "10.9.0.2".parse().unwrap());
        assert_eq!(
            parse_frame(&arp_request()),
            Frame::ArpRequest {
                sender_mac: MAC_B,
                sender_ip: theirs,
                target_ip: ours
            }
        );
        let reply = emit_arp_reply(MAC_A, ours, MAC_B, theirs);
        let mut want = MAC_B.to_vec();
        want.extend(MAC_A);
        want.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
        want.extend(MAC_A);
        want.extend(ours.octets());
        want.extend(MAC_B);
        want.extend(theirs.octets());
        assert_eq!(reply, want);
        assert_eq!(
            parse_frame(&reply),
            Frame::ArpReply {
                sender_mac: MAC_A,
                sender_ip: ours
            }
        );
        // The readiness probe: the same bytes as the hand-built request.
        assert_eq!(emit_arp_request(MAC_B, theirs, ours), arp_request());
    }

    #[test]
    fn readiness_solicitation_matches_a_hand_built_one() {
        let (ours, target): (Ipv6Addr, Ipv6Addr) =
            ("fd00:9::2".parse().unwrap(), "fd00:9::1".parse().unwrap());
        assert_eq!(
            emit_neighbor_solicit(MAC_B, ours, target),
            neighbor_solicit(255, false)
        );
    }

    /// A solicitation from fd00:9::2 (or from :: when `dad`) for fd00:9::1, checksummed
    /// with the test's own sum.
    fn neighbor_solicit(hop_limit: u8, dad: bool) -> Vec<u8> {
        let src: Ipv6Addr = if dad {
            Ipv6Addr::UNSPECIFIED
        } else {
            "fd00:9::2".parse().unwrap()
        };
        let target: Ipv6Addr = "fd00:9::1".parse().unwrap();
        let dst: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
        let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend(target.octets());
        icmp.extend([1, 1]);
        icmp.extend(MAC_B);
        let ep = Endpoints {
            src: src.into(),
            dst: dst.into(),
        };
        let sum = !ones_sum(&[&pseudo_header(ep, 58, icmp.len()), &icmp]);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut frame = vec![0x33, 0x33, 0xff, 0, 0, 1];
        frame.extend(MAC_B);
        frame.extend([
            0x86,
            0xdd,
            0x60,
            0,
            0,
            0,
            0,
            icmp.len() as u8,
            58,
            hop_limit,
        ]);
        frame.extend(src.octets());
        frame.extend(dst.octets());
        frame.extend(icmp);
        frame
    }

    #[test]
    fn neighbor_solicitations_are_validated() {
        let target: Ipv6Addr = "fd00:9::1".parse().unwrap();
        assert_eq!(
            parse_frame(&neighbor_solicit(255, false)),
            Frame::NeighborSolicit {
                src_mac: MAC_B,
                src_ip: "fd00:9::2".parse().unwrap(),
                target
            }
        );
        assert_eq!(
            parse_frame(&neighbor_solicit(255, true)),
            Frame::NeighborSolicit {
                src_mac: MAC_B,
                src_ip: Ipv6Addr::UNSPECIFIED,
                target
            }
        );
        assert!(matches!(
            parse_frame(&neighbor_solicit(64, false)),
            Frame::Other { .. }
        ));
        let mut bad = neighbor_solicit(255, false);
        bad[70] ^= 1;
        match parse_frame(&bad) {
            Frame::Other { summary } => assert!(summary.contains("bad checksum"), "{summary}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn neighbor_advert_layout_and_checksum() {
        let ours: Ipv6Addr = "fd00:9::1".parse().unwrap();
        let theirs: Ipv6Addr = "fd00:9::2".parse().unwrap();
        let frame = emit_neighbor_advert(MAC_A, ours, MAC_B, theirs);
        assert_eq!(frame.len(), 14 + 40 + 32);
        assert_eq!(&frame[0..6], &MAC_B);
        assert_eq!(&frame[6..12], &MAC_A);
        assert_eq!(&frame[12..14], &[0x86, 0xdd]);
        assert_eq!(
            (frame[18], frame[19], frame[20], frame[21]),
            (0, 32, 58, 255)
        );
        assert_eq!(&frame[22..38], &ours.octets());
        assert_eq!(&frame[38..54], &theirs.octets());
        let icmp = &frame[54..];
        assert_eq!(
            (icmp[0], icmp[1], icmp[4]),
            (136, 0, 0x60),
            "type, code, S|O flags"
        );
        assert_eq!(&icmp[8..24], &ours.octets());
        assert_eq!(&icmp[24..26], &[2, 1]);
        assert_eq!(&icmp[26..32], &MAC_A);
        let ep = Endpoints {
            src: ours.into(),
            dst: theirs.into(),
        };
        assert_eq!(
            ones_sum(&[&pseudo_header(ep, 58, icmp.len()), icmp]),
            0xffff
        );
        assert_eq!(
            parse_frame(&frame),
            Frame::NeighborAdvert {
                src_mac: MAC_A,
                target: "fd00:9::1".parse().unwrap()
            }
        );
    }

    #[test]
    fn neighbor_advert_for_dad_goes_to_all_nodes() {
        let ours: Ipv6Addr = "fd00:9::1".parse().unwrap();
        let frame = emit_neighbor_advert(MAC_A, ours, MAC_B, Ipv6Addr::UNSPECIFIED);
        let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
        assert_eq!(&frame[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&frame[38..54], &all_nodes.octets());
        assert_eq!(frame[54 + 4], 0x20, "Override only");
        let ep = Endpoints {
            src: ours.into(),
            dst: all_nodes.into(),
        };
        assert_eq!(
            ones_sum(&[&pseudo_header(ep, 58, 32), &frame[54..]]),
            0xffff
        );
    }

    #[test]
    fn other_frames_are_summarised() {
        let mut mld = vec![0x33, 0x33, 0, 0, 0, 0x16];
        mld.extend(MAC_B);
        mld.extend([0x86, 0xdd, 0x60, 0, 0, 0, 0, 36, 0, 1]);
        mld.extend(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2).octets());
        mld.extend(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16).octets());
        mld.extend([58, 0, 5, 2, 0, 0, 1, 0]); // hop-by-hop: router alert
        mld.extend([143, 0, 0, 0, 0, 0, 0, 1]);
        mld.extend([4, 0, 0, 0]);
        mld.extend(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 2).octets());
        let summary = |frame: &[u8]| match parse_frame(frame) {
            Frame::Other { summary } => summary,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            summary(&mld),
            "IPv6 hop-by-hop options, ICMPv6 type 143 (MLDv2 report) fe80::2 > ff02::16"
        );
        let mut udp = emit_tcp(MAC_A, MAC_B, v4(), &segment(vec![], b""));
        udp[23] = 17;
        assert_eq!(summary(&udp), "IPv4 UDP 10.9.0.1 > 10.9.0.2");
        let mut frag = emit_tcp(MAC_A, MAC_B, v4(), &segment(vec![], b""));
        frag[20] |= 0x20;
        assert!(summary(&frag).starts_with("IPv4 fragment"));
        assert_eq!(summary(&[0u8; 10]), "truncated Ethernet header (10 bytes)");
        let mut lldp = vec![0u8; 60];
        lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
        assert_eq!(summary(&lldp), "ethertype 0x88cc");
        let frame = emit_tcp(MAC_A, MAC_B, v6(), &segment(vec![], b""));
        assert!(summary(&frame[..70]).starts_with("IPv6 payload length 20 but 16 bytes"));
    }
}
