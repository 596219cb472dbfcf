//! The agent's own outgoing TCP segments, as they go out on the TAP: what smoltcp does not
//! count for the socket API (segments in flight, retransmissions of the oldest one).

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpEndpoint, IpProtocol, Ipv4Packet, Ipv6Packet,
    TcpPacket,
};
use std::collections::BTreeMap;

/// One TCP segment the agent sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sent {
    pub local: IpEndpoint,
    pub remote: IpEndpoint,
    pub seq: u32,
    /// Sequence space: data, plus one each for SYN and FIN.
    pub len: u32,
}

/// The TCP segment in an Ethernet frame the agent sends; None for anything else.
pub fn parse(frame: &[u8]) -> Option<Sent> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (src, dst, tcp): (IpAddress, IpAddress, &[u8]) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            (ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            (ip.src_addr().into(), ip.dst_addr().into(), ip.payload())
        }
        _ => return None,
    };
    let seg = TcpPacket::new_checked(tcp).ok()?;
    let data = seg.payload().len() as u32;
    Some(Sent {
        local: IpEndpoint::new(src, seg.src_port()),
        remote: IpEndpoint::new(dst, seg.dst_port()),
        seq: seg.seq_number().0 as u32,
        len: data + u32::from(seg.syn()) + u32::from(seg.fin()),
    })
}

/// Per connection: each segment start sent, its length and how often it went out.
#[derive(Default)]
pub struct Log {
    conns: BTreeMap<(IpEndpoint, IpEndpoint), BTreeMap<u32, (u32, u32)>>,
}

/// `a` before `b` in sequence space.
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// At most this many segments are remembered per connection (the oldest go first).
const KEEP: usize = 4096;

impl Log {
    pub fn record(&mut self, s: Sent) {
        if s.len == 0 {
            return; // a bare ACK or an RST occupies no sequence space
        }
        let segs = self.conns.entry((s.local, s.remote)).or_default();
        let e = segs.entry(s.seq).or_insert((s.len, 0));
        e.0 = e.0.max(s.len);
        e.1 += 1;
        while segs.len() > KEEP {
            segs.pop_first();
        }
    }

    /// Forgets a connection (its 4-tuple may be used again).
    pub fn forget(&mut self, tuple: (IpEndpoint, IpEndpoint)) {
        self.conns.remove(&tuple);
    }

    /// Segments sent and not yet acknowledged by `una` (Linux's packets_out), and how often
    /// the oldest of them, at `una`, was retransmitted (icsk_retransmits: since it is acked
    /// the count starts again).
    pub fn in_flight(&mut self, tuple: (IpEndpoint, IpEndpoint), una: u32) -> (u32, u32) {
        let Some(segs) = self.conns.get_mut(&tuple) else {
            return (0, 0);
        };
        segs.retain(|&seq, &mut (len, _)| before(una, seq.wrapping_add(len)));
        let out = segs.len() as u32;
        let retrans = segs.get(&una).map_or(0, |&(_, n)| n.saturating_sub(1));
        (out, retrans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::Ipv4Address;

    fn sent(seq: u32, len: u32) -> Sent {
        let a = IpEndpoint::new(Ipv4Address::new(192, 0, 2, 1).into(), 8080);
        let b = IpEndpoint::new(Ipv4Address::new(192, 0, 2, 2).into(), 40000);
        Sent {
            local: a,
            remote: b,
            seq,
            len,
        }
    }

    #[test]
    fn counts_segments_in_flight_and_retransmissions_of_the_oldest() {
        let mut log = Log::default();
        let t = (sent(0, 0).local, sent(0, 0).remote);
        log.record(sent(u32::MAX - 99, 100)); // wraps around 0
        log.record(sent(0, 100));
        log.record(sent(100, 1)); // a FIN
        log.record(sent(101, 0)); // an ACK: no sequence space
        assert_eq!(log.in_flight(t, u32::MAX - 99), (3, 0));
        log.record(sent(u32::MAX - 99, 100));
        log.record(sent(u32::MAX - 99, 100));
        assert_eq!(log.in_flight(t, u32::MAX - 99), (3, 2));
        assert_eq!(log.in_flight(t, 0), (2, 0), "the first is acked");
        assert_eq!(log.in_flight(t, 100), (1, 0), "only the FIN");
        assert_eq!(log.in_flight(t, 101), (0, 0));
        log.forget(t);
        assert_eq!(log.in_flight(t, 0), (0, 0));
    }
}
