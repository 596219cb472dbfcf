//! Ethernet II framing: the header every frame the peer sends or reads starts with.

use pnet_base::MacAddr;
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};

use super::Parsed;

pub(super) const ETHERNET_HEADER_LEN: usize = 14;

/// An Ethernet header with room for `payload_len` bytes after it.
pub(super) fn ethernet_frame(
    src: [u8; 6],
    dst: [u8; 6],
    ethertype: u16,
    payload_len: usize,
) -> Vec<u8> {
    let mut frame = vec![0; ETHERNET_HEADER_LEN + payload_len];
    let mut eth = MutableEthernetPacket::new(&mut frame).expect("buffer holds an Ethernet header");
    eth.set_destination(MacAddr::from(dst));
    eth.set_source(MacAddr::from(src));
    eth.set_ethertype(pnet_packet::ethernet::EtherType(ethertype));
    frame
}

/// Dispatches on the ethertype.
pub(super) fn parse(data: &[u8]) -> Parsed {
    let eth = EthernetPacket::new(data)
        .ok_or_else(|| format!("truncated Ethernet header ({} bytes)", data.len()))?;
    let macs = Macs {
        src: eth.get_source().octets(),
        dst: eth.get_destination().octets(),
    };
    let payload = &data[ETHERNET_HEADER_LEN..];
    match eth.get_ethertype() {
        EtherTypes::Ipv4 => super::ipv4::parse(macs, payload),
        EtherTypes::Ipv6 => super::ipv6::parse(macs, payload),
        EtherTypes::Arp => super::arp::parse(payload),
        EtherTypes::Vlan | EtherTypes::QinQ => Err("VLAN-tagged frame".into()),
        other => Err(format!("ethertype {:#06x}", other.0)),
    }
}

/// The addresses of an Ethernet header, for what the layers above make of the frame.
#[derive(Clone, Copy)]
pub(super) struct Macs {
    pub src: [u8; 6],
    pub dst: [u8; 6],
}
