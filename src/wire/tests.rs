//! Whole frames: round trips through every layer, checksums, and parsing that never panics on
//! what a SUT may send. Tests of one protocol's own encoding sit in its file.

use super::arp::tests::arp_request;
use super::ethernet::ETHERNET_HEADER_LEN;
use super::icmpv6::tests::neighbor_solicit;
use super::ipv4::IPV4_HEADER_LEN;
use super::ipv6::IPV6_HEADER_LEN;
use super::*;

pub(super) const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub(super) const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

pub(super) fn v4() -> Endpoints {
    Endpoints {
        src: "10.9.0.1".parse().unwrap(),
        dst: "10.9.0.2".parse().unwrap(),
    }
}

pub(super) fn v6() -> Endpoints {
    Endpoints {
        src: "fd00:9::1".parse().unwrap(),
        dst: "fd00:9::2".parse().unwrap(),
    }
}

pub(super) fn every_option() -> Vec<TcpOption> {
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

pub(super) fn segment(options: Vec<TcpOption>, payload: &[u8]) -> TcpRepr {
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
pub(super) fn option_sets() -> Vec<Vec<TcpOption>> {
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

pub(super) fn expect_tcp(frame: Frame) -> ([u8; 6], [u8; 6], Endpoints, TcpRepr, bool) {
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

pub(super) fn ones_sum(parts: &[&[u8]]) -> u16 {
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

pub(super) fn pseudo_header(ep: Endpoints, protocol: u8, len: usize) -> Vec<u8> {
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

pub(super) fn ip_header_len(frame: &[u8]) -> usize {
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

pub(super) fn sample_frames() -> Vec<Vec<u8>> {
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
pub(super) fn frame_with_raw_options(raw: &[u8]) -> Vec<u8> {
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
