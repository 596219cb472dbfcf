//! The agent on a real TAP device (needs root): the test plays the remote TCP
//! peer with hand-built frames on an AF_PACKET socket, inside a private network
//! namespace that only the test thread (and the agent it starts) lives in.

#[allow(dead_code)]
mod common;

use common::{Agent, TIMEOUT};
use pnet_base::MacAddr;
use pnet_packet::arp::{ArpOperations, ArpPacket, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, Ipv4Packet, MutableIpv4Packet};
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags, TcpPacket};
use pnet_packet::{MutablePacket, Packet};
use serde_json::json;
use std::net::Ipv4Addr;
use std::os::unix::io::RawFd;
use std::os::unix::process::CommandExt;
use std::time::Instant;

const IFNAME: &str = "hctap0";
const AGENT_MAC: MacAddr = MacAddr(2, 0, 0, 0, 0, 1);
const PEER_MAC: MacAddr = MacAddr(2, 0, 0, 0, 0, 2);
const AGENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const AGENT_PORT: u16 = 8080;
const PEER_PORT: u16 = 40000;

fn check(ret: libc::c_int, what: &str) -> libc::c_int {
    assert!(ret >= 0, "{what}: {}", std::io::Error::last_os_error());
    ret
}

fn ifreq(flags: libc::c_short) -> libc::ifreq {
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(IFNAME.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = flags;
    req
}

/// Creates the TAP (IFF_TAP|IFF_NO_PI), silences the kernel's IPv6 on it and brings it up.
fn create_tap() -> RawFd {
    unsafe {
        let fd = check(
            libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC),
            "open tun",
        );
        let mut req = ifreq((libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short);
        check(libc::ioctl(fd, libc::TUNSETIFF as _, &mut req), "TUNSETIFF");
        std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{IFNAME}/disable_ipv6"),
            "1",
        )
        .unwrap();
        let sock = check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0), "socket");
        let mut req = ifreq(libc::IFF_UP as libc::c_short);
        check(
            libc::ioctl(sock, libc::SIOCSIFFLAGS as _, &mut req),
            "SIOCSIFFLAGS",
        );
        libc::close(sock);
        fd
    }
}

/// An AF_PACKET socket bound to the TAP interface: frames sent here reach the agent.
fn packet_socket() -> RawFd {
    unsafe {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        let fd = check(
            libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32),
            "AF_PACKET",
        );
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = libc::if_nametoindex(c"hctap0".as_ptr()) as i32;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        check(
            libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len),
            "bind AF_PACKET",
        );
        fd
    }
}

struct Peer {
    fd: RawFd,
    /// Our next sequence number and the next one we expect from the agent.
    snd_nxt: u32,
    rcv_nxt: u32,
}

impl Peer {
    fn send(&self, frame: &[u8]) {
        let n = unsafe { libc::send(self.fd, frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(n, frame.len() as isize, "send frame");
    }

    /// The next frame from the agent (by source MAC, which skips our own copies).
    fn recv(&self) -> Vec<u8> {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let mut pfd = libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            };
            if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
                continue;
            }
            let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            let frame = &buf[..n.max(0) as usize];
            if EthernetPacket::new(frame).is_some_and(|e| e.get_source() == AGENT_MAC) {
                return frame.to_vec();
            }
        }
        panic!("no frame from the agent");
    }

    /// The next TCP segment from the agent, answering ARP requests on the way.
    fn recv_tcp(&self) -> (u8, u32, u32, Vec<u8>) {
        loop {
            let frame = self.recv();
            let eth = EthernetPacket::new(&frame).unwrap();
            if eth.get_ethertype() == EtherTypes::Arp {
                self.answer_arp(&ArpPacket::new(eth.payload()).unwrap());
                continue;
            }
            let ip = Ipv4Packet::new(eth.payload()).unwrap();
            assert_eq!(ip.get_next_level_protocol(), IpNextHeaderProtocols::Tcp);
            let seg = TcpPacket::new(ip.payload()).unwrap();
            assert_eq!(
                (seg.get_source(), seg.get_destination()),
                (AGENT_PORT, PEER_PORT)
            );
            return (
                seg.get_flags(),
                seg.get_sequence(),
                seg.get_acknowledgement(),
                seg.payload().to_vec(),
            );
        }
    }

    fn answer_arp(&self, req: &ArpPacket) {
        assert_eq!(
            (req.get_operation(), req.get_target_proto_addr()),
            (ArpOperations::Request, PEER_IP)
        );
        let mut frame = [0u8; 42];
        let mut eth = MutableEthernetPacket::new(&mut frame).unwrap();
        eth.set_destination(AGENT_MAC);
        eth.set_source(PEER_MAC);
        eth.set_ethertype(EtherTypes::Arp);
        let mut arp = MutableArpPacket::new(eth.payload_mut()).unwrap();
        arp.set_hardware_type(pnet_packet::arp::ArpHardwareTypes::Ethernet);
        arp.set_protocol_type(EtherTypes::Ipv4);
        arp.set_hw_addr_len(6);
        arp.set_proto_addr_len(4);
        arp.set_operation(ArpOperations::Reply);
        arp.set_sender_hw_addr(PEER_MAC);
        arp.set_sender_proto_addr(PEER_IP);
        arp.set_target_hw_addr(AGENT_MAC);
        arp.set_target_proto_addr(AGENT_IP);
        self.send(&frame);
    }

    /// Sends one segment; the sequence number advances for SYN, FIN and data.
    fn send_tcp(&mut self, flags: u8) {
        self.send_data(flags, &[]);
    }

    fn send_data(&mut self, flags: u8, data: &[u8]) {
        let len = 14 + 20 + 20 + data.len();
        let mut frame = vec![0u8; len];
        let mut eth = MutableEthernetPacket::new(&mut frame).unwrap();
        eth.set_destination(AGENT_MAC);
        eth.set_source(PEER_MAC);
        eth.set_ethertype(EtherTypes::Ipv4);
        let mut ip = MutableIpv4Packet::new(eth.payload_mut()).unwrap();
        ip.set_version(4);
        ip.set_header_length(5);
        ip.set_total_length(40 + data.len() as u16);
        ip.set_ttl(64);
        ip.set_next_level_protocol(IpNextHeaderProtocols::Tcp);
        ip.set_source(PEER_IP);
        ip.set_destination(AGENT_IP);
        ip.set_checksum(ipv4::checksum(&ip.to_immutable()));
        let mut seg = MutableTcpPacket::new(ip.payload_mut()).unwrap();
        seg.set_source(PEER_PORT);
        seg.set_destination(AGENT_PORT);
        seg.set_sequence(self.snd_nxt);
        seg.set_acknowledgement(if flags & TcpFlags::ACK != 0 {
            self.rcv_nxt
        } else {
            0
        });
        seg.set_data_offset(5);
        seg.set_flags(flags);
        seg.set_window(65535);
        seg.set_payload(data);
        seg.set_checksum(tcp::ipv4_checksum(&seg.to_immutable(), &PEER_IP, &AGENT_IP));
        self.send(&frame);
        self.snd_nxt = self.snd_nxt.wrapping_add(data.len() as u32);
        if flags & (TcpFlags::SYN | TcpFlags::FIN) != 0 {
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
        }
    }
}

/// Asks the agent for the connection's state until it is `want` (frames are
/// processed asynchronously, so a just-sent segment may not have landed yet).
fn await_state(agent: &mut Agent, want: &str) {
    let deadline = Instant::now() + TIMEOUT;
    let query = json!({"cmd": "state", "local": "192.0.2.1:8080", "remote": "192.0.2.2:40000"});
    loop {
        let state = agent.ok(query.clone())["state"].clone();
        if state == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "state stuck at {state}, want {want}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn saw_transition(agent: &Agent, from: &str, to: &str) -> bool {
    agent.events.iter().any(|e| {
        e["event"] == "state" && e["from"] == from && e["to"] == to && e["t_ns"].as_u64().is_some()
    })
}

fn passive_open_then_active_close() {
    let tap = create_tap();
    let mut cmd = Agent::bin();
    cmd.env("HALFCLOSE_TAP_FD", tap.to_string())
        .env("HALFCLOSE_TAP_NAME", IFNAME);
    // The fd was opened close-on-exec so other tests' children don't get it; only the agent does.
    unsafe {
        cmd.pre_exec(move || match libc::fcntl(tap, libc::F_SETFD, 0) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    let (mut agent, _hello) = Agent::spawn(cmd);
    unsafe { libc::close(tap) };
    let mut peer = Peer {
        fd: packet_socket(),
        snd_nxt: 1_000_000,
        rcv_nxt: 0,
    };

    agent.ok(json!({"cmd": "configure", "mac": "02:00:00:00:00:01", "addrs": ["192.0.2.1/24"]}));
    let lfd = agent.ok(json!({"cmd": "socket", "family": "ipv4"}));
    agent.ok(json!({"cmd": "bind", "fd": lfd, "addr": "192.0.2.1:8080"}));
    agent.ok(json!({"cmd": "listen", "fd": lfd, "backlog": 1}));
    let accept = agent.send(json!({"cmd": "accept", "fd": lfd}));

    // Handshake: SYN, expect SYN-ACK acknowledging it, ACK it.
    peer.send_tcp(TcpFlags::SYN);
    let (flags, seq, ack, _) = peer.recv_tcp();
    assert_eq!(flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(ack, peer.snd_nxt);
    peer.rcv_nxt = seq.wrapping_add(1);
    peer.send_tcp(TcpFlags::ACK);

    let reply = agent.reply(accept);
    let cfd = reply["ok"].clone();
    assert!(cfd.as_u64().is_some() && cfd != lfd, "accept: {reply}");
    await_state(&mut agent, "ESTABLISHED");
    assert!(
        saw_transition(&agent, "CLOSED", "SYN_RECV"),
        "{:?}",
        agent.events
    );
    assert!(
        saw_transition(&agent, "SYN_RECV", "ESTABLISHED"),
        "{:?}",
        agent.events
    );

    // Active close: close() sends a FIN.
    agent.ok(json!({"cmd": "close", "fd": cfd}));
    let (flags, seq, _, data) = peer.recv_tcp();
    assert_eq!(flags & TcpFlags::FIN, TcpFlags::FIN, "flags {flags:#x}");
    assert!(data.is_empty());
    assert_eq!(seq, peer.rcv_nxt);
    peer.rcv_nxt = peer.rcv_nxt.wrapping_add(1);
    assert_eq!(agent.err(json!({"cmd": "read", "fd": cfd})), "EBADF");

    // The orphan goes on: ACK the FIN, then send ours; it must ACK and sit in TIME_WAIT.
    peer.send_tcp(TcpFlags::ACK);
    await_state(&mut agent, "FIN_WAIT_2");
    peer.send_tcp(TcpFlags::FIN | TcpFlags::ACK);
    let (flags, _, ack, _) = peer.recv_tcp();
    assert_eq!((flags, ack), (TcpFlags::ACK, peer.snd_nxt));
    await_state(&mut agent, "TIME_WAIT");
    assert!(saw_transition(&agent, "ESTABLISHED", "FIN_WAIT_1"));
    assert!(saw_transition(&agent, "FIN_WAIT_2", "TIME_WAIT"));

    assert!(agent.quit().success());
    unsafe { libc::close(peer.fd) };
}

#[test]
fn tcp_handshake_and_close_on_a_real_tap() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root for a network namespace and a TAP device");
        return;
    }
    // unshare(CLONE_NEWNET) affects only the calling thread, so do it on a fresh
    // one: the namespace (and the TAP in it) vanish when it and the agent are gone.
    std::thread::spawn(|| {
        check(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            "unshare(CLONE_NEWNET)",
        );
        passive_open_then_active_close();
    })
    .join()
    .expect("test thread panicked");
}

/// A TUN device (IP packets) is refused with the reason.
#[test]
fn a_tun_device_is_refused() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root for a network namespace and a TUN device");
        return;
    }
    std::thread::spawn(|| {
        check(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            "unshare(CLONE_NEWNET)",
        );
        let fd = unsafe {
            let fd = check(
                libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR),
                "open tun",
            );
            let mut req = ifreq((libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short);
            check(libc::ioctl(fd, libc::TUNSETIFF as _, &mut req), "TUNSETIFF");
            fd
        };
        let out = Agent::bin()
            .env("HALFCLOSE_TAP_FD", fd.to_string())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        unsafe { libc::close(fd) };
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("is a TUN device"), "{err}");
    })
    .join()
    .expect("test thread panicked");
}

/// Starts the agent on a fresh TAP in this thread's namespace and opens one connection
/// passively; returns the agent, the peer and the connection's fd.
fn connected() -> (Agent, Peer, serde_json::Value) {
    let tap = create_tap();
    let mut cmd = Agent::bin();
    cmd.env("HALFCLOSE_TAP_FD", tap.to_string())
        .env("HALFCLOSE_TAP_NAME", IFNAME);
    unsafe {
        cmd.pre_exec(move || match libc::fcntl(tap, libc::F_SETFD, 0) {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        });
    }
    let (mut agent, _hello) = Agent::spawn(cmd);
    unsafe { libc::close(tap) };
    let mut peer = Peer {
        fd: packet_socket(),
        snd_nxt: 1_000_000,
        rcv_nxt: 0,
    };
    agent.ok(json!({"cmd": "configure", "mac": "02:00:00:00:00:01", "addrs": ["192.0.2.1/24"]}));
    let lfd = agent.ok(json!({"cmd": "socket", "family": "ipv4"}));
    agent.ok(json!({"cmd": "bind", "fd": lfd, "addr": "192.0.2.1:8080"}));
    agent.ok(json!({"cmd": "listen", "fd": lfd, "backlog": 1}));
    let accept = agent.send(json!({"cmd": "accept", "fd": lfd}));
    peer.send_tcp(TcpFlags::SYN);
    let (_, seq, _, _) = peer.recv_tcp();
    peer.rcv_nxt = seq.wrapping_add(1);
    peer.send_tcp(TcpFlags::ACK);
    let cfd = agent.reply(accept)["ok"].clone();
    await_state(&mut agent, "ESTABLISHED");
    (agent, peer, cfd)
}

fn state_reply(agent: &mut Agent) -> serde_json::Value {
    agent.ok(json!({"cmd": "state", "local": "192.0.2.1:8080", "remote": "192.0.2.2:40000"}))
}

/// Runs `f` as root in a network namespace of its own (on a fresh thread). These tests are of
/// the smoltcp agent's socket layer: the gVisor agent's tests, which include this file, skip
/// them.
fn in_netns(f: fn()) {
    if env!("CARGO_PKG_NAME") != "halfclose-smoltcp-agent" {
        eprintln!("skipped: a test of the smoltcp agent's socket layer");
        return;
    }
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root for a network namespace and a TAP device");
        return;
    }
    std::thread::spawn(move || {
        check(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            "unshare(CLONE_NEWNET)",
        );
        f();
    })
    .join()
    .expect("test thread panicked");
}

/// dup(), a lingering close() that the FIN's ACK ends, and smoltcp's own timers in the
/// `state` replies: the retransmission of the FIN, then TIME_WAIT's 10 s.
#[test]
fn dup_linger_and_timers() {
    in_netns(|| {
        let (mut agent, mut peer, cfd) = connected();
        assert!(
            state_reply(&mut agent).get("timer").is_none(),
            "idle: no timer"
        );
        let d2 = agent.ok(json!({"cmd": "dup", "fd": cfd}));
        // Closing one of two fds does nothing to the connection.
        agent.ok(json!({"cmd": "close", "fd": cfd}));
        assert_eq!(state_reply(&mut agent)["state"], "ESTABLISHED");
        agent.ok(json!({"cmd": "setsockopt", "fd": d2, "opt": "linger", "on": true, "secs": 2}));
        let started = Instant::now();
        let close = agent.send(json!({"cmd": "close", "fd": d2}));
        let (flags, seq, _, _) = peer.recv_tcp();
        assert_eq!(flags & TcpFlags::FIN, TcpFlags::FIN, "flags {flags:#x}");
        peer.rcv_nxt = seq.wrapping_add(1);
        let st = state_reply(&mut agent);
        assert_eq!(st["state"], "FIN_WAIT_1", "{st}");
        assert_eq!(st["timer"], "retransmit", "{st}");
        let left = st["expires_ms"].as_u64().unwrap();
        assert!((500..=1000).contains(&left), "{st}");
        std::thread::sleep(std::time::Duration::from_millis(300));
        // The FIN's ACK ends the lingering close, well before its 2 s.
        peer.send_tcp(TcpFlags::ACK);
        assert_eq!(agent.reply(close)["ok"], 0);
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_millis(1500), "{took:?}");
        await_state(&mut agent, "FIN_WAIT_2");
        peer.send_tcp(TcpFlags::FIN | TcpFlags::ACK);
        let (flags, _, _, _) = peer.recv_tcp();
        assert_eq!(flags, TcpFlags::ACK);
        await_state(&mut agent, "TIME_WAIT");
        let st = state_reply(&mut agent);
        assert_eq!(st["timer"], "timewait", "{st}");
        let left = st["expires_ms"].as_u64().unwrap();
        assert!((9000..=10000).contains(&left), "{st}");
        assert!(agent.quit().success());
        unsafe { libc::close(peer.fd) };
    });
}

/// SO_RCVTIMEO, MSG_DONTWAIT and MSG_PEEK, shutdown(SHUT_RD), and a reset's error in
/// CLOSE_WAIT (EPIPE, as Linux's tcp_reset() sets it).
#[test]
fn reads_shutdown_rd_and_a_reset_in_close_wait() {
    in_netns(|| {
        let (mut agent, mut peer, cfd) = connected();
        agent.ok(json!({"cmd": "setsockopt", "fd": cfd, "opt": "rcvtimeo", "value": 200}));
        let started = Instant::now();
        assert_eq!(agent.err(json!({"cmd": "read", "fd": cfd})), "EAGAIN");
        let took = started.elapsed();
        assert!((190..400).contains(&(took.as_millis() as u64)), "{took:?}");
        assert_eq!(
            agent.err(json!({"cmd": "recv", "fd": cfd, "flags": ["MSG_DONTWAIT"]})),
            "EAGAIN"
        );
        peer.send_data(TcpFlags::PSH | TcpFlags::ACK, b"hello");
        let (flags, _, ack, _) = peer.recv_tcp();
        assert_eq!((flags, ack), (TcpFlags::ACK, peer.snd_nxt));
        let hello = json!({"data": "68656c6c6f"});
        assert_eq!(
            agent.ok(json!({"cmd": "recv", "fd": cfd, "flags": ["MSG_PEEK"]})),
            hello
        );
        assert_eq!(
            agent.ok(json!({"cmd": "ioctl", "fd": cfd, "req": "siocinq"})),
            5
        );
        assert_eq!(agent.ok(json!({"cmd": "recv", "fd": cfd})), hello);
        // SHUT_RD: EOF at once, nothing on the wire; data that still comes is read.
        agent.ok(json!({"cmd": "shutdown", "fd": cfd, "how": "rd"}));
        assert_eq!(
            agent.ok(json!({"cmd": "read", "fd": cfd})),
            json!({"data": ""})
        );
        assert_eq!(state_reply(&mut agent)["state"], "ESTABLISHED");
        peer.send_data(TcpFlags::PSH | TcpFlags::ACK, b"hi");
        peer.recv_tcp();
        assert_eq!(
            agent.ok(json!({"cmd": "read", "fd": cfd})),
            json!({"data": "6869"})
        );
        peer.send_tcp(TcpFlags::FIN | TcpFlags::ACK);
        peer.recv_tcp();
        await_state(&mut agent, "CLOSE_WAIT");
        peer.send_tcp(TcpFlags::RST | TcpFlags::ACK);
        await_state(&mut agent, "CLOSED");
        assert_eq!(
            agent.err(json!({"cmd": "write", "fd": cfd, "data": "00"})),
            "EPIPE"
        );
        assert_eq!(
            agent.ok(json!({"cmd": "getsockopt", "fd": cfd, "opt": "so_error"})),
            json!({"error": null}),
            "reported once"
        );
        assert!(agent.quit().success());
        unsafe { libc::close(peer.fd) };
    });
}

/// SO_SNDBUF beyond smoltcp's 64 KiB buffer, and a reset in ESTABLISHED: the pending
/// ECONNRESET comes first, also after shutdown(SHUT_WR), then EPIPE.
#[test]
fn sndbuf_and_a_reset_after_shutdown_wr() {
    in_netns(|| {
        let (mut agent, mut peer, cfd) = connected();
        let big = "00".repeat(100_000);
        assert_eq!(
            agent.ok(json!({"cmd": "write", "fd": cfd, "data": big.clone()})),
            65536,
            "smoltcp's own buffer"
        );
        agent.ok(json!({"cmd": "setsockopt", "fd": cfd, "opt": "sndbuf", "value": 1048576}));
        assert_eq!(
            agent.ok(json!({"cmd": "write", "fd": cfd, "data": big})),
            100_000
        );
        assert_eq!(
            agent.ok(json!({"cmd": "ioctl", "fd": cfd, "req": "siocoutq"})),
            165_536
        );
        agent.ok(json!({"cmd": "shutdown", "fd": cfd, "how": "wr"}));
        // The FIN waits behind the queued data: still ESTABLISHED.
        assert_eq!(state_reply(&mut agent)["state"], "ESTABLISHED");
        peer.send_tcp(TcpFlags::RST | TcpFlags::ACK);
        await_state(&mut agent, "CLOSED");
        assert_eq!(
            agent.err(json!({"cmd": "write", "fd": cfd, "data": "00"})),
            "ECONNRESET"
        );
        assert_eq!(
            agent.err(json!({"cmd": "write", "fd": cfd, "data": "00"})),
            "EPIPE"
        );
        assert_eq!(
            agent.ok(json!({"cmd": "read", "fd": cfd})),
            json!({"data": ""})
        );
        assert!(agent.quit().success());
        unsafe { libc::close(peer.fd) };
    });
}

/// epoll: edge-triggered events fire once, level-triggered ones while they hold, and a
/// change of the registered events re-arms them.
#[test]
fn epoll_edge_and_level() {
    in_netns(|| {
        let (mut agent, mut peer, cfd) = connected();
        let et = json!(["EPOLLIN", "EPOLLRDHUP", "EPOLLET"]);
        let lt = json!(["EPOLLIN", "EPOLLRDHUP"]);
        let epoll = |agent: &mut Agent, events: &serde_json::Value, ms: u64| {
            agent.ok(json!({"cmd": "epoll", "fd": cfd, "events": events, "timeout_ms": ms}))
                ["events"]
                .clone()
        };
        assert_eq!(epoll(&mut agent, &et, 0), json!([]));
        let waiting =
            agent.send(json!({"cmd": "epoll", "fd": cfd, "events": et, "timeout_ms": 2000}));
        peer.send_tcp(TcpFlags::FIN | TcpFlags::ACK);
        peer.recv_tcp();
        assert_eq!(
            agent.reply(waiting)["ok"]["events"],
            json!(["EPOLLIN", "EPOLLRDHUP"])
        );
        assert_eq!(epoll(&mut agent, &et, 0), json!([]), "delivered once");
        assert_eq!(epoll(&mut agent, &lt, 0), json!(["EPOLLIN", "EPOLLRDHUP"]));
        assert_eq!(epoll(&mut agent, &lt, 0), json!(["EPOLLIN", "EPOLLRDHUP"]));
        assert_eq!(
            agent.err(json!({"cmd": "epoll", "fd": cfd, "events": ["EPOLLWAT"]})),
            "EINVAL"
        );
        assert!(agent.quit().success());
        unsafe { libc::close(peer.fd) };
    });
}

/// SIOCOUTQ and SIOCOUTQNSD (the FIN counted as Linux counts it), and TCP_INFO's segments in
/// flight, counted from the agent's own frames, as the peer ACKs them.
#[test]
fn send_queue_ioctls_and_tcp_info() {
    in_netns(|| {
        let (mut agent, mut peer, cfd) = connected();
        let ioctl =
            |agent: &mut Agent, req: &str| agent.ok(json!({"cmd": "ioctl", "fd": cfd, "req": req}));
        let info = |agent: &mut Agent| {
            agent.ok(json!({"cmd": "getsockopt", "fd": cfd, "opt": "tcp_info"}))
        };
        let i = info(&mut agent);
        assert_eq!(
            (i["state"].clone(), i["unacked"].clone()),
            (json!(1), json!(0)),
            "{i}"
        );
        assert_eq!(i["snd_mss"], 536, "the test's SYN has no MSS option: {i}");
        agent.ok(json!({"cmd": "write", "fd": cfd, "data": "ab".repeat(100)}));
        let (_, seq, _, data) = peer.recv_tcp();
        assert_eq!(data.len(), 100);
        assert_eq!(
            (
                ioctl(&mut agent, "siocoutq"),
                ioctl(&mut agent, "siocoutqnsd")
            ),
            (json!(100), json!(0))
        );
        agent.ok(json!({"cmd": "shutdown", "fd": cfd, "how": "wr"}));
        let (flags, fin_seq, _, _) = peer.recv_tcp();
        assert_eq!(flags & TcpFlags::FIN, TcpFlags::FIN);
        assert_eq!(fin_seq, seq.wrapping_add(100));
        assert_eq!(
            (
                ioctl(&mut agent, "siocoutq"),
                ioctl(&mut agent, "siocoutqnsd")
            ),
            (json!(101), json!(0))
        );
        let i = info(&mut agent);
        assert_eq!(
            (i["state"].clone(), i["unacked"].clone()),
            (json!(4), json!(2)),
            "{i}"
        );
        // ACK the data only: the FIN is left in flight.
        peer.rcv_nxt = fin_seq;
        peer.send_tcp(TcpFlags::ACK);
        let deadline = Instant::now() + TIMEOUT;
        while ioctl(&mut agent, "siocoutq") != json!(1) {
            assert!(Instant::now() < deadline, "SIOCOUTQ stuck");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(info(&mut agent)["unacked"], 1);
        peer.rcv_nxt = fin_seq.wrapping_add(1);
        peer.send_tcp(TcpFlags::ACK);
        await_state(&mut agent, "FIN_WAIT_2");
        assert_eq!(ioctl(&mut agent, "siocoutq"), 0);
        let i = info(&mut agent);
        assert_eq!(
            (i["state"].clone(), i["unacked"].clone()),
            (json!(5), json!(0)),
            "{i}"
        );
        peer.send_tcp(TcpFlags::FIN | TcpFlags::ACK);
        peer.recv_tcp();
        await_state(&mut agent, "TIME_WAIT");
        assert_eq!(
            info(&mut agent)["state"],
            7,
            "a TIME_WAIT connection leaves its socket CLOSE"
        );
        assert!(agent.quit().success());
        unsafe { libc::close(peer.fd) };
    });
}

/// An RST in LAST_ACK is a reset (ECONNRESET, as Linux's tcp_reset() has it there), not the
/// FIN's ACK that also takes LAST_ACK to CLOSED.
#[test]
fn a_reset_in_last_ack() {
    in_netns(|| {
        let (mut agent, mut peer, cfd) = connected();
        peer.send_tcp(TcpFlags::FIN | TcpFlags::ACK);
        peer.recv_tcp();
        await_state(&mut agent, "CLOSE_WAIT");
        agent.ok(json!({"cmd": "shutdown", "fd": cfd, "how": "wr"}));
        let (flags, _, _, _) = peer.recv_tcp();
        assert_eq!(flags & TcpFlags::FIN, TcpFlags::FIN);
        assert_eq!(state_reply(&mut agent)["state"], "LAST_ACK");
        peer.send_tcp(TcpFlags::RST | TcpFlags::ACK);
        await_state(&mut agent, "CLOSED");
        assert_eq!(
            agent.err(json!({"cmd": "write", "fd": cfd, "data": "00"})),
            "ECONNRESET"
        );
        assert_eq!(
            agent.err(json!({"cmd": "write", "fd": cfd, "data": "00"})),
            "EPIPE"
        );
        assert!(
            agent.events.iter().any(|e| e["event"] == "reset"),
            "{:?}",
            agent.events
        );
        assert!(agent.quit().success());
        unsafe { libc::close(peer.fd) };
    });
}
