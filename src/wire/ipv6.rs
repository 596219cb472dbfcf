//! IPv6 (RFC 8200): TCP directly behind the fixed header; extension headers are named, not
//! followed.

use std::net::Ipv6Addr;

use pnet_packet::ethernet::EtherTypes;
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
use pnet_packet::tcp::{self, MutableTcpPacket};

use super::ethernet::{ethernet_frame, Macs, ETHERNET_HEADER_LEN};
use super::icmpv6::{icmpv6_type_name, parse_icmpv6};
use super::{protocol_name, tcp::parse_segment, Endpoints, Frame, Parsed, TTL};

pub(super) const IPV6_HEADER_LEN: usize = 40;

/// Ethernet + IPv6 around a TCP segment whose checksum is still zero.
pub(super) fn emit_tcp(
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

pub(super) fn fill_ipv6_header(
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

pub(super) fn parse(macs: Macs, bytes: &[u8]) -> Parsed {
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
            let (tcp, ok) = parse_segment(payload, |view| tcp::ipv6_checksum(view, &src, &dst))?;
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
pub(super) fn ipv6_upper_layer(mut next: u8, mut rest: &[u8]) -> String {
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

pub(super) fn ipv6_extension_name(next: u8) -> &'static str {
    match next {
        0 => "hop-by-hop options",
        43 => "routing header",
        44 => "fragment header",
        _ => "destination options",
    }
}
