//! IPv4 (RFC 791) as far as a TCP segment needs it: no options, no fragments.

use std::net::Ipv4Addr;

use pnet_packet::ethernet::EtherTypes;
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, Ipv4Flags, Ipv4Packet, MutableIpv4Packet};
use pnet_packet::tcp::{self, MutableTcpPacket};

use super::ethernet::{ethernet_frame, Macs, ETHERNET_HEADER_LEN};
use super::{checksum_matches, protocol_name, tcp::parse_segment, Endpoints, Frame, Parsed, TTL};

pub(super) const IPV4_HEADER_LEN: usize = 20;

/// Ethernet + IPv4 around a TCP segment whose checksum is still zero.
pub(super) fn emit_tcp(
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

pub(super) fn parse(macs: Macs, bytes: &[u8]) -> Parsed {
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
    let (tcp, tcp_ok) = parse_segment(segment, |view| tcp::ipv4_checksum(view, &src, &dst))?;
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
