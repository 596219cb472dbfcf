//! ICMPv6 neighbor discovery (RFC 4861): solicitations and advertisements, so the peer
//! resolves and answers for its address like any IPv6 node; other ICMPv6 is only named.

use std::net::Ipv6Addr;

use pnet_packet::ethernet::EtherTypes;
use pnet_packet::icmpv6::ndp::{MutableNeighborAdvertPacket, NeighborAdvertFlags};
use pnet_packet::icmpv6::{self, Icmpv6Code, Icmpv6Packet, Icmpv6Types};
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
use pnet_packet::Packet;

use super::ethernet::{ethernet_frame, Macs, ETHERNET_HEADER_LEN};
use super::ipv6::{fill_ipv6_header, IPV6_HEADER_LEN};
use super::{checksum_matches, Frame, Parsed};

/// RFC 4861 requires 255 on every neighbor discovery message, sent and received.
pub(super) const ND_HOP_LIMIT: u8 = 255;
/// Neighbor solicitation and advertisement: ICMPv6 header, flags/reserved, target.
pub(super) const ND_MESSAGE_LEN: usize = 24;
pub(super) const ND_OPTION_SOURCE_LL_ADDR: u8 = 1;
pub(super) const ND_OPTION_TARGET_LL_ADDR: u8 = 2;

pub(super) fn parse_icmpv6(macs: Macs, ip: &Ipv6Packet, payload: &[u8]) -> Parsed {
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

pub(super) fn icmpv6_type_name(kind: u8) -> &'static str {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::wire::tests::*;
    use crate::wire::*;

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
    pub(in crate::wire) fn neighbor_solicit(hop_limit: u8, dad: bool) -> Vec<u8> {
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
}
