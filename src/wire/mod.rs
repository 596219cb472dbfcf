//! Frames the raw-socket peer sends and receives.
//!
//! The layout follows smoltcp's `wire` module: typed views over bytes on one side, plain
//! `Repr` values on the other, and small `emit`/`parse` functions in between. pnet_packet
//! supplies the typed views and the checksum routines; this module supplies the plain values
//! ([`TcpRepr`], [`TcpOption`], [`TcpFlags`], [`Endpoints`], [`Frame`]) and the glue, one file
//! per protocol: [`ethernet`], [`arp`], [`ipv4`], [`ipv6`], [`icmpv6`] (neighbor discovery),
//! [`tcp`], its [`options`], and [`seq`] for sequence-space arithmetic.
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

mod arp;
mod ethernet;
mod icmpv6;
mod ipv4;
mod ipv6;
mod options;
pub mod seq;
mod tcp;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Family;

pub use arp::{emit_arp_reply, emit_arp_request};
pub use icmpv6::{emit_neighbor_advert, emit_neighbor_solicit};
pub use options::{emit_options, parse_options, OptionError, TcpOption};
pub use tcp::{describe, FlagsError, FlagsErrorKind, TcpFlags, TcpRepr};

/// The IPv4 TTL and IPv6 hop limit of every TCP segment the peer sends.
const TTL: u8 = 64;

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
    let segment = tcp::emit_segment(tcp);
    match (ep.src, ep.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => ipv4::emit_tcp(src_mac, dst_mac, src, dst, segment),
        (IpAddr::V6(src), IpAddr::V6(dst)) => ipv6::emit_tcp(src_mac, dst_mac, src, dst, segment),
        _ => panic!("emit_tcp: endpoints of different families: {ep:?}"),
    }
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
    ethernet::parse(data).unwrap_or_else(|summary| Frame::Other { summary })
}

/// `Err` carries the summary of a [`Frame::Other`].
type Parsed = Result<Frame, String>;

/// Ones'-complement arithmetic has two zeros; a sender may write either when the computed
/// checksum is 0 (the whole-packet sum folds to 0xffff both ways).
pub(super) fn checksum_matches(field: u16, computed: u16) -> bool {
    field == computed || (computed == 0 && field == 0xffff)
}

pub(super) fn protocol_name(protocol: u8) -> String {
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
