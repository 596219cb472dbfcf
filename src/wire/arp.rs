//! ARP for Ethernet/IPv4 (RFC 826): the peer answers the SUT's requests and asks for its MAC.

use std::net::Ipv4Addr;

use pnet_base::MacAddr;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket, MutableArpPacket};
use pnet_packet::ethernet::EtherTypes;

use super::ethernet::{ethernet_frame, ETHERNET_HEADER_LEN};
use super::{Frame, Parsed};

pub(super) const ARP_LEN: usize = 28;

pub(super) fn parse(bytes: &[u8]) -> Parsed {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::wire::tests::*;
    use crate::wire::*;

    pub(in crate::wire) fn arp_request() -> Vec<u8> {
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
}
