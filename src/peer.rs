//! The raw-socket peer: plays the remote end of the SUT's connections.
//!
//! [`Link`] owns one AF_PACKET socket on the peer end of the veth. A receive thread reads every
//! frame with its kernel timestamp (SO_TIMESTAMPNS; PACKET_IGNORE_OUTGOING keeps our own frames
//! out), records it in the trial's [`Capture`], answers ARP and IPv6 neighbour solicitations for
//! the peer's address, and hands TCP segments to the runner. [`PeerConn`] keeps the peer's side
//! of one connection: ISNs, SND.NXT/RCV.NXT for relative numbers, and the timestamp echo.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::capture::{Capture, Direction};
use crate::script::{FoSpec, OptSpec, PeerConfig, SendSpec, TsRef};
use crate::timers::RttRange;
use crate::topology::{self, Topology};
use crate::wire::{self, Endpoints, Frame, TcpFlags, TcpOption, TcpRepr};
use crate::Family;

mod inbox;
mod transmit;

pub use inbox::Inbox;
pub use transmit::Sent;
use transmit::Transmitter;

/// A TCP segment from the SUT, as the receive thread saw it.
#[derive(Clone, Debug)]
pub struct Arrival {
    /// Kernel receive timestamp (CLOCK_REALTIME).
    pub at: SystemTime,
    /// Index of the frame in the capture, for its comment.
    pub frame: usize,
    pub ep: Endpoints,
    pub tcp: TcpRepr,
    pub checksum_ok: bool,
}

/// The peer's packet socket, its receive thread and the trial's capture.
pub struct Link {
    /// Taken by `drop`, which closes it off the trial's path.
    sock: Option<Arc<OwnedFd>>,
    /// Sends the peer's frames and reads back when they left.
    tx: Mutex<Option<Transmitter>>,
    stop: Arc<EventFd>,
    /// Asks the receive thread to look at the socket now.
    look: Arc<EventFd>,
    rx: Option<JoinHandle<()>>,
    inbox: Arc<Inbox>,
    ready: Receiver<()>,
    capture: Arc<Mutex<Capture>>,
    /// The addresses the peer plays in this trial.
    peer_v4: Ipv4Addr,
    peer_v6: Ipv6Addr,
}

/// The trial's peer addresses, both families.
fn peer_addrs(topo: &Topology) -> (Ipv4Addr, Ipv6Addr) {
    match (topo.peer_ip(Family::V4), topo.peer_ip(Family::V6)) {
        (IpAddr::V4(a), IpAddr::V6(b)) => (a, b),
        _ => unreachable!("peer_ip gives the family asked for"),
    }
}

impl Link {
    /// Opens the packet socket inside the peer netns and starts the receive thread.
    pub fn start(topo: &Topology, capture: Arc<Mutex<Capture>>) -> io::Result<Link> {
        let ifindex = topo.peer_ifindex();
        let promisc = topo.is_real_iface();
        let (sock, tx) = topo
            .run_in_peer(move || -> io::Result<_> {
                let sock = open_packet_socket(ifindex)?;
                if promisc {
                    receive_all(sock.as_raw_fd(), ifindex)?;
                }
                Ok((sock, Transmitter::open(ifindex)?))
            })
            .map_err(|e| io::Error::other(e.to_string()))??;
        let sock = Arc::new(sock);
        let stop = Arc::new(EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)?);
        let look = Arc::new(EventFd::from_value_and_flags(
            0,
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        let inbox = Arc::new(Inbox::default());
        let (ready_tx, ready) = mpsc::channel();
        let (peer_v4, peer_v6) = peer_addrs(topo);
        let responder = Responder {
            sock: sock.clone(),
            capture: capture.clone(),
            inbox: inbox.clone(),
            ready: ready_tx,
            peer_v4,
            peer_v6,
        };
        let (stop2, look2) = (stop.clone(), look.clone());
        let rx = std::thread::Builder::new()
            .name("halfclose-rx".into())
            .spawn(move || responder.run(&stop2, &look2))?;
        Ok(Link {
            sock: Some(sock),
            tx: Mutex::new(Some(tx)),
            stop,
            look,
            rx: Some(rx),
            inbox,
            ready,
            capture,
            peer_v4,
            peer_v6,
        })
    }

    /// Waits until the SUT answers an ARP request (IPv4) or a neighbour solicitation (IPv6)
    /// for its address. A link reported up can still drop the first frames for a moment (the
    /// kernel finishes bringing a device up asynchronously), and a SYN lost that way would
    /// fail the trial for no fault of the SUT; a reply proves both directions and the SUT's
    /// address work. It also leaves the SUT knowing the peer's MAC address.
    pub fn wait_ready(&self, family: Family) -> io::Result<()> {
        const TRY_EVERY: Duration = Duration::from_millis(10);
        // Generous: this only waits for the machine; no verdict depends on it. The SUT's IPv6
        // address stays tentative until the kernel's addrconf worker runs, and that worker
        // needs the RTNL lock, which namespace teardown holds for long stretches when CPU hogs
        // starve it (seen: over 10 s with four hogs on two cores).
        const GIVE_UP: Duration = Duration::from_secs(30);
        let probe = match family {
            Family::V4 | Family::V4Mapped => {
                wire::emit_arp_request(topology::PEER_MAC, self.peer_v4, topology::SUT_V4)
            }
            Family::V6 => {
                wire::emit_neighbor_solicit(topology::PEER_MAC, self.peer_v6, topology::SUT_V6)
            }
        };
        let until = Instant::now() + GIVE_UP;
        while Instant::now() < until {
            self.send(
                probe.clone(),
                "readiness probe from the harness (before the script)".into(),
            )?;
            if self.ready.recv_timeout(TRY_EVERY).is_ok() {
                return Ok(());
            }
        }
        Err(io::Error::other(format!(
            "the SUT did not answer {} probes in {GIVE_UP:?}",
            family.name()
        )))
    }

    /// Sends a frame and records it at the kernel's transmit timestamp. Returns when it left
    /// (see [`Sent`]) and the capture index.
    pub fn send(&self, frame: Vec<u8>, comment: String) -> io::Result<(Sent, usize)> {
        let result = {
            let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            match tx.as_mut() {
                Some(tx) => tx.send(&frame),
                None => Err(io::Error::other("the link is stopped")),
            }
        };
        let (at, comment) = match &result {
            Ok(sent) if sent.stamped => (sent.at, comment),
            Ok(sent) => (
                sent.at,
                format!("{comment} (no kernel transmit timestamp: time taken before the send)"),
            ),
            Err(e) => (SystemTime::now(), format!("SEND FAILED ({e}): {comment}")),
        };
        let idx =
            self.capture
                .lock()
                .expect("capture lock")
                .push(at, Direction::ToSut, frame, comment);
        result.map(|sent| (sent, idx))
    }

    /// Records a frame the script dropped, at the moment it would have left: in the capture,
    /// marked, but never on the wire.
    pub fn record_dropped(
        &self,
        at: SystemTime,
        frame: Vec<u8>,
        comment: String,
    ) -> (SystemTime, usize) {
        (
            at,
            self.capture
                .lock()
                .expect("capture lock")
                .push(at, Direction::ToSut, frame, comment),
        )
    }

    /// The next SUT segment the kernel stamped at or before `until`; None once the
    /// timestamps prove there was none (see [`Inbox`]), however late the harness looks.
    pub fn arrival_by(&self, until: SystemTime) -> Option<Arrival> {
        self.inbox.first_by(until, || {
            let _ = self.look.write(1);
        })
    }

    /// Leaves a segment taken with `arrival_by` for the next step (a `receive` step that
    /// meets a FIN or RST leaves it to the `expect` that follows).
    pub fn put_back(&self, a: Arrival) {
        self.inbox.put_back(a);
    }

    /// Segments that reached the harness after it had judged their moment empty: (capture
    /// index, kernel timestamp, the moment judged).
    pub fn late_deliveries(&self) -> Vec<(usize, SystemTime, SystemTime)> {
        self.inbox.late_deliveries()
    }

    pub fn comment(&self, frame: usize, text: String) {
        self.capture
            .lock()
            .expect("capture lock")
            .set_comment(frame, text);
    }

    /// Stops the receive thread. Frames still queued for the runner are returned.
    pub fn stop(&mut self) -> Vec<Arrival> {
        let _ = self.stop.write(1);
        if let Some(h) = self.rx.take() {
            let _ = h.join();
        }
        self.inbox.take_all()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop();
        // Closing a packet socket waits for an RCU grace period (synchronize_net in
        // packet_release), 6–15 ms here: `closer` waits instead of the trial, and the
        // process's exit (see there).
        let mut fds = Vec::new();
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            fds.push(tx.into_fd());
        }
        if let Some(sock) = self.sock.take() {
            match Arc::try_unwrap(sock) {
                Ok(fd) => fds.push(fd),
                // Still shared (the receive thread did not end): closed with its last user.
                Err(shared) => drop(shared),
            }
        }
        crate::closer::later(fds);
    }
}

/// AF_PACKET/SOCK_RAW bound to the peer interface; must run inside the peer netns.
pub fn open_packet_socket(ifindex: u32) -> io::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // Protocol 0 at socket() and ETH_P_ALL at bind(): a socket made with a protocol is hooked
    // to every interface at once, and moving the hook at bind() waits for an RCU grace period
    // (10–25 ms); this way it is hooked once, to our interface only.
    // SAFETY: plain socket(2); the result is checked and owned right away.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
    set_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    // Room for bursts (B7 bulk data) while the runner is busy.
    set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20)?;
    bind_packet(fd, ifindex, proto)?;
    Ok(sock)
}

/// Puts a real interface in promiscuous mode for as long as the socket lives: the SUT's frames
/// are addressed to the MAC the peer plays, not the interface's own, and a NIC drops them
/// otherwise. The kernel undoes it when the socket closes, however halfclose ends.
fn receive_all(fd: RawFd, ifindex: u32) -> io::Result<()> {
    let mreq = libc::packet_mreq {
        mr_ifindex: ifindex as i32,
        mr_type: libc::PACKET_MR_PROMISC as u16,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    // SAFETY: the pointer and length describe `mreq`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            &mreq as *const _ as *const libc::c_void,
            std::mem::size_of_val(&mreq) as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Binds a packet socket to one interface; `proto` 0 hooks it to no receive path.
fn bind_packet(fd: RawFd, ifindex: u32, proto: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: the pointer and length describe `sll`.
    let rc = unsafe {
        libc::bind(
            fd,
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One frame from a packet socket made by [`open_packet_socket`], with the kernel's receive
/// timestamp (the time now if the kernel gave none).
pub fn recv_timestamped(fd: RawFd, buf: &mut [u8], flags: MsgFlags) -> Option<(SystemTime, usize)> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let msg = recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), flags).ok()?;
    let mut at = SystemTime::now();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                at =
                    SystemTime::UNIX_EPOCH + Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32);
            }
        }
    }
    Some((at, msg.bytes))
}

fn set_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the pointer and length describe `value`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn send_frame(fd: RawFd, frame: &[u8]) -> io::Result<()> {
    // SAFETY: the socket is bound to one interface, so send(2) needs no address.
    let n = unsafe { libc::send(fd, frame.as_ptr() as *const libc::c_void, frame.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The receive thread's state.
struct Responder {
    sock: Arc<OwnedFd>,
    capture: Arc<Mutex<Capture>>,
    inbox: Arc<Inbox>,
    /// Told when the SUT answers a readiness probe.
    ready: mpsc::Sender<()>,
    peer_v4: Ipv4Addr,
    peer_v6: Ipv6Addr,
}

impl Responder {
    fn run(self, stop: &EventFd, look: &EventFd) {
        // The runner's verdicts wait on this thread's looks: keep it ahead of the load.
        let _rt = crate::realtime::Realtime::enter();
        let mut buf = vec![0u8; 65536 + 64];
        loop {
            let mut fds = [
                PollFd::new(self.sock.as_fd_ref(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd_ref(), PollFlags::POLLIN),
                PollFd::new(look.as_fd_ref(), PollFlags::POLLIN),
            ];
            if poll(&mut fds, PollTimeout::NONE).is_err() {
                continue;
            }
            let stopping = fds[1].any().unwrap_or(false);
            if fds[2].any().unwrap_or(false) {
                let _ = look.read();
            }
            // Drain what already arrived (so nothing the SUT sent escapes the verdict), then
            // say when the socket was last seen empty.
            self.drain(&mut buf);
            if stopping {
                self.inbox.close();
                return;
            }
        }
    }

    fn drain(&self, buf: &mut [u8]) {
        loop {
            let looked = SystemTime::now();
            match self.recv(buf, MsgFlags::MSG_DONTWAIT) {
                Some((at, len)) => self.handle(at, &buf[..len]),
                None => {
                    self.inbox.drained(looked);
                    return;
                }
            }
        }
    }

    fn recv(&self, buf: &mut [u8], flags: MsgFlags) -> Option<(SystemTime, usize)> {
        recv_timestamped(self.sock.as_raw_fd(), buf, flags)
    }

    fn handle(&self, at: SystemTime, data: &[u8]) {
        let frame = wire::parse_frame(data);
        let (comment, reply, arrival) = self.classify(&frame);
        let idx = self.capture.lock().expect("capture lock").push(
            at,
            Direction::FromSut,
            data.to_vec(),
            comment,
        );
        if let Some(reply) = reply {
            let _ = send_frame(self.sock.as_raw_fd(), &reply);
            let now = SystemTime::now();
            let c = "neighbour reply from the harness's responder".to_string();
            self.capture
                .lock()
                .expect("capture lock")
                .push(now, Direction::ToSut, reply, c);
        }
        if let Some((ep, tcp, checksum_ok)) = arrival {
            self.inbox.push(Arrival {
                at,
                frame: idx,
                ep,
                tcp,
                checksum_ok,
            });
        }
    }

    /// What a frame is: its first comment, a reply to send, and whether the runner sees it.
    fn classify(
        &self,
        frame: &Frame,
    ) -> (String, Option<Vec<u8>>, Option<(Endpoints, TcpRepr, bool)>) {
        let (peer_v4, peer_v6) = (self.peer_v4, self.peer_v6);
        match frame {
            Frame::Tcp {
                ep,
                tcp,
                checksum_ok,
                ..
            } if ep.dst == peer_v4 || ep.dst == peer_v6 => (
                "SUT segment (not yet matched)".into(),
                None,
                Some((*ep, tcp.clone(), *checksum_ok)),
            ),
            Frame::ArpRequest {
                sender_mac,
                sender_ip,
                target_ip,
            } if *target_ip == peer_v4 => {
                let reply =
                    wire::emit_arp_reply(topology::PEER_MAC, peer_v4, *sender_mac, *sender_ip);
                (
                    "ARP request for the peer (answered)".into(),
                    Some(reply),
                    None,
                )
            }
            Frame::NeighborSolicit {
                src_mac,
                src_ip,
                target,
            } if *target == peer_v6 => {
                let reply =
                    wire::emit_neighbor_advert(topology::PEER_MAC, peer_v6, *src_mac, *src_ip);
                (
                    "neighbour solicitation for the peer (answered)".into(),
                    Some(reply),
                    None,
                )
            }
            Frame::ArpReply { sender_ip, .. } if *sender_ip == topology::SUT_V4 => {
                let _ = self.ready.send(());
                (
                    "ARP reply from the SUT (the link is ready)".into(),
                    None,
                    None,
                )
            }
            Frame::NeighborAdvert { target, .. } if *target == topology::SUT_V6 => {
                let _ = self.ready.send(());
                (
                    "neighbour advertisement from the SUT (the link is ready)".into(),
                    None,
                    None,
                )
            }
            Frame::ArpReply { sender_ip, .. } => {
                (format!("ignored: ARP reply from {sender_ip}"), None, None)
            }
            Frame::NeighborAdvert { target, .. } => {
                (format!("ignored: NA for {target}"), None, None)
            }
            Frame::Tcp { ep, .. } => (
                format!("ignored: TCP to {}, not the peer", ep.dst),
                None,
                None,
            ),
            Frame::ArpRequest { target_ip, .. } => {
                (format!("ignored: ARP for {target_ip}"), None, None)
            }
            Frame::NeighborSolicit { target, .. } => {
                (format!("ignored: NS for {target}"), None, None)
            }
            Frame::Other { summary } => (format!("ignored: {summary}"), None, None),
        }
    }
}

/// Borrowing helpers so poll() can take both kinds of descriptor.
trait AsFdRef {
    fn as_fd_ref(&self) -> std::os::fd::BorrowedFd<'_>;
}
impl AsFdRef for Arc<OwnedFd> {
    fn as_fd_ref(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.as_ref().as_fd()
    }
}
impl AsFdRef for EventFd {
    fn as_fd_ref(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.as_fd()
    }
}

/// The peer's view of one connection: what it sent, what it saw, and the ISNs that relative
/// numbers in scripts count from.
#[derive(Clone, Debug)]
pub struct PeerConn {
    pub cfg: PeerConfig,
    pub ep: Endpoints,
    pub peer_port: u16,
    pub sut_port: u16,
    pub isn: u32,
    pub sut_isn: Option<u32>,
    /// Next sequence number the peer sends (absolute).
    pub snd_nxt: u32,
    /// Next sequence number the peer expects from the SUT (absolute), once the SUT's SYN is seen.
    pub rcv_nxt: Option<u32>,
    /// Options of the SUT's SYN, which decide what a SYN-ACK from the peer may carry.
    sut_syn_options: Vec<TcpOption>,
    /// Timestamps negotiated on this connection.
    pub ts_on: bool,
    ts_recent: u32,
    /// SUT segments seen, by end sequence number: first arrival and how often it came.
    sut_sent: Vec<(u32, SystemTime, u32)>,
    /// Highest sequence number the peer has acknowledged.
    acked: Option<u32>,
    /// RTT samples the SUT can have taken from the peer's ACKs (Karn: never of a
    /// retransmitted segment).
    pub rtt: RttRange,
    rtt_samples: u32,
    /// The SUT's window scale (0 unless both SYNs carried the option) and its latest window.
    sut_wscale: u8,
    sut_window: u16,
    /// What the peer has sent, by stream offset (None where it sent nothing), so the SUT
    /// application's reads can be checked byte for byte.
    stream: Vec<Option<u8>>,
}

impl PeerConn {
    /// The stream bytes `transfer` sends: a pattern that depends on the offset, so a byte
    /// delivered in the wrong place shows.
    pub fn pattern(offset: usize, len: usize) -> Vec<u8> {
        (offset..offset + len)
            .map(|i| b'A' + (i % 53 % 26) as u8)
            .collect()
    }

    /// Whether a segment belongs to this connection's 4-tuple (from the SUT).
    pub fn owns(&self, tcp: &TcpRepr) -> bool {
        tcp.src_port == self.sut_port && tcp.dst_port == self.peer_port
    }

    pub fn new(
        cfg: PeerConfig,
        family: Family,
        peer_ip: IpAddr,
        (peer_port, sut_port): (u16, u16),
    ) -> PeerConn {
        let ep = Endpoints {
            src: peer_ip,
            dst: topology::sut_ip(family),
        };
        PeerConn {
            isn: cfg.isn,
            snd_nxt: cfg.isn,
            cfg,
            ep,
            peer_port,
            sut_port,
            sut_isn: None,
            rcv_nxt: None,
            sut_syn_options: Vec::new(),
            ts_on: false,
            ts_recent: 0,
            sut_sent: Vec::new(),
            acked: None,
            rtt: RttRange::default(),
            rtt_samples: 0,
            sut_wscale: 0,
            sut_window: 0,
            stream: Vec::new(),
        }
    }

    /// Builds the segment a `send` step describes, filling in what the script leaves out.
    pub fn build(&self, spec: &SendSpec) -> TcpRepr {
        let seq = spec.seq.map_or(self.snd_nxt, |s| s.resolve(self.isn));
        let ack_default = if spec.flags.contains(TcpFlags::ACK) {
            self.rcv_nxt.unwrap_or(0)
        } else {
            0
        };
        let ack = spec
            .ack
            .map_or(ack_default, |a| a.resolve(self.sut_isn.unwrap_or(0)));
        let options = match &spec.options {
            Some(list) => list.iter().map(|o| self.fill_option(o)).collect(),
            None => self.default_options(spec.flags),
        };
        TcpRepr {
            src_port: self.peer_port,
            dst_port: self.sut_port,
            seq,
            ack,
            flags: spec.flags,
            window: spec.win.unwrap_or(self.cfg.win),
            urgent: 0,
            options,
            payload: spec.payload.clone(),
        }
    }

    /// Counts a SUT segment the peer saw (dropped or not), for RTT samples.
    pub fn note_transmission(&mut self, tcp: &TcpRepr, at: SystemTime) {
        if tcp.seq_len() == 0 {
            return;
        }
        let end = tcp.seq.wrapping_add(tcp.seq_len());
        match self.sut_sent.iter_mut().find(|(e, _, _)| *e == end) {
            Some(entry) => entry.2 += 1,
            None => self.sut_sent.push((end, at, 1)),
        }
    }

    /// An ACK that covers a new SUT segment gives the SUT an RTT sample: from the segment's
    /// arrival here to this ACK.
    fn sample_rtt(&mut self, tcp: &TcpRepr, at: SystemTime) {
        if !tcp.flags.contains(TcpFlags::ACK)
            || self.acked.is_some_and(|a| !wire::seq::gt(tcp.ack, a))
        {
            return;
        }
        let newest = self
            .sut_sent
            .iter()
            .filter(|(end, _, _)| {
                wire::seq::le(*end, tcp.ack) && self.acked.is_none_or(|a| wire::seq::gt(*end, a))
            })
            .max_by(|x, y| {
                if wire::seq::lt(x.0, y.0) {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            })
            .copied();
        self.acked = Some(tcp.ack);
        if let Some((_, arrived, 1)) = newest {
            if let Ok(sample) = at.duration_since(arrived) {
                self.rtt.add(sample, self.rtt_samples == 0);
                self.rtt_samples += 1;
            }
        }
    }

    /// Updates SND.NXT after a send (also a dropped one: the peer sent it, the network lost it).
    pub fn on_sent(&mut self, tcp: &TcpRepr, at: SystemTime, dropped: bool) {
        if !dropped {
            self.sample_rtt(tcp, at);
        }
        // A SYN on a synchronized connection is a probe (RFC 5961 §4), not a new start: it
        // moves neither the ISN that relative numbers count from nor SND.NXT.
        let syn = tcp.flags.contains(TcpFlags::SYN);
        let synchronized = self.sut_isn.is_some() && self.snd_nxt != self.isn;
        if syn && synchronized {
            return;
        }
        if syn && !tcp.flags.contains(TcpFlags::ACK) {
            self.isn = tcp.seq;
        }
        self.record_stream(tcp);
        let end = tcp.seq.wrapping_add(tcp.seq_len());
        if wire::seq::gt(end, self.snd_nxt) {
            self.snd_nxt = end;
        }
    }

    /// Most data a trial keeps for checking reads.
    const STREAM_MAX: usize = 16 << 20;

    fn record_stream(&mut self, tcp: &TcpRepr) {
        if tcp.payload.is_empty() {
            return;
        }
        // Data on a SYN (or SYN-ACK) comes after the SYN's own sequence number: stream byte 0.
        let first = tcp
            .seq
            .wrapping_add(tcp.flags.contains(TcpFlags::SYN) as u32);
        let offset = first.wrapping_sub(self.isn.wrapping_add(1)) as usize;
        let end = offset + tcp.payload.len();
        if end > Self::STREAM_MAX {
            return;
        }
        if self.stream.len() < end {
            self.stream.resize(end, None);
        }
        for (slot, b) in self.stream[offset..end].iter_mut().zip(&tcp.payload) {
            *slot = Some(*b);
        }
    }

    /// Whether `data`, read by the SUT application at stream `offset`, is what the peer sent;
    /// the error names the first byte that differs.
    pub fn check_read(&self, offset: usize, data: &[u8]) -> Result<(), String> {
        for (i, b) in data.iter().enumerate() {
            match self.stream.get(offset + i).copied().flatten() {
                Some(sent) if sent == *b => {}
                Some(sent) => {
                    return Err(format!(
                        "byte {} of the stream is {:?}, the peer sent {:?}",
                        offset + i,
                        *b as char,
                        sent as char
                    ))
                }
                None => {
                    return Err(format!(
                        "byte {} of the stream was never sent by the peer",
                        offset + i
                    ))
                }
            }
        }
        Ok(())
    }

    /// The SUT's receive window in bytes, as last advertised.
    pub fn sut_window(&self) -> u32 {
        (self.sut_window as u32) << self.sut_wscale
    }

    /// The largest segment the SUT accepts (its MSS option, else the RFC default 536).
    pub fn sut_mss(&self) -> u16 {
        let mss = self.sut_syn_options.iter().find_map(|o| match o {
            TcpOption::Mss(m) => Some(*m),
            _ => None,
        });
        mss.unwrap_or(536).min(self.cfg.mss)
    }

    /// The shift the peer's own window field is scaled by: its SYN's window scale, once the
    /// SUT's SYN carried the option too (RFC 7323 §2.2), else 0.
    pub fn peer_window_shift(&self) -> u8 {
        let sut_offered = self
            .sut_syn_options
            .iter()
            .any(|o| matches!(o, TcpOption::WindowScale(_)));
        match self.cfg.wscale {
            Some(w) if sut_offered => w.min(14),
            _ => 0,
        }
    }

    /// Learns from a SUT segment the peer accepted (matched and not dropped).
    pub fn on_received(&mut self, tcp: &TcpRepr) {
        self.sut_window = tcp.window;
        if tcp.flags.contains(TcpFlags::SYN) {
            self.sut_wscale = match (
                self.cfg.wscale,
                tcp.options.iter().find_map(|o| match o {
                    TcpOption::WindowScale(w) => Some(*w),
                    _ => None,
                }),
            ) {
                (Some(_), Some(w)) => w,
                _ => 0,
            };
            self.sut_isn = Some(tcp.seq);
            self.sut_syn_options = tcp.options.clone();
            self.ts_on = self.cfg.timestamps && has_timestamps(&tcp.options);
            self.rcv_nxt = Some(tcp.seq);
        }
        if let Some(TcpOption::Timestamps { val, .. }) = tcp
            .options
            .iter()
            .find(|o| matches!(o, TcpOption::Timestamps { .. }))
        {
            self.ts_recent = *val;
        }
        if let Some(rcv) = self.rcv_nxt {
            let end = tcp.seq.wrapping_add(tcp.seq_len());
            if wire::seq::gt(end, rcv) {
                self.rcv_nxt = Some(end);
            }
        }
    }

    /// The peer's timestamp clock: milliseconds on one clock for every connection of the
    /// process. A clock per connection, started as each was made, let a connection made
    /// later (after a stall between the two) send a reopening SYN with an older timestamp
    /// than the TIME_WAIT connection it reopens had seen: PAWS then rightly refused it, and
    /// the trial failed for the harness's own doing.
    fn ts_now(&self) -> TcpOption {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let since = EPOCH.get_or_init(Instant::now).elapsed();
        let val = (since.as_millis() as u32).wrapping_add(1);
        TcpOption::Timestamps {
            val,
            ecr: self.ts_recent,
        }
    }

    /// The option to send. References to named segments (`@name`) were resolved by the
    /// runner before; one left over takes the peer's own value.
    fn fill_option(&self, o: &OptSpec) -> TcpOption {
        let now = || match self.ts_now() {
            TcpOption::Timestamps { val, ecr } => (val, ecr),
            _ => (0, 0),
        };
        match o {
            OptSpec::Exact(o) => o.clone(),
            OptSpec::AnyTimestamp => self.ts_now(),
            OptSpec::Ts { val, ecr } => {
                let (v, e) = now();
                let pick = |r: &TsRef, own: u32| match r {
                    TsRef::Abs(n) => *n,
                    _ => own,
                };
                TcpOption::Timestamps {
                    val: pick(val, v),
                    ecr: pick(ecr, e),
                }
            }
            OptSpec::FastOpen(FoSpec::Cookie(c), kind) => kind.option(c),
            OptSpec::FastOpen(_, kind) => kind.option(&[]),
        }
    }

    fn default_options(&self, flags: TcpFlags) -> Vec<TcpOption> {
        if !flags.contains(TcpFlags::SYN) {
            return if self.ts_on {
                vec![TcpOption::Nop, TcpOption::Nop, self.ts_now()]
            } else {
                Vec::new()
            };
        }
        // A SYN-ACK may only carry what the SUT's SYN offered.
        let answer = flags.contains(TcpFlags::ACK);
        let offered =
            |pred: fn(&TcpOption) -> bool| !answer || self.sut_syn_options.iter().any(pred);
        let mut out = vec![TcpOption::Mss(self.cfg.mss)];
        if self.cfg.sack && offered(|o| matches!(o, TcpOption::SackPermitted)) {
            out.push(TcpOption::SackPermitted);
        }
        if self.cfg.timestamps && offered(|o| matches!(o, TcpOption::Timestamps { .. })) {
            out.push(self.ts_now());
        }
        if let Some(ws) = self
            .cfg
            .wscale
            .filter(|_| offered(|o| matches!(o, TcpOption::WindowScale(_))))
        {
            out.push(TcpOption::Nop);
            out.push(TcpOption::WindowScale(ws));
        }
        out
    }

    /// One-line summary of a peer segment in relative numbers.
    pub fn describe_sent(&self, tcp: &TcpRepr) -> String {
        wire::describe(tcp, self.isn, self.sut_isn.unwrap_or(0))
    }

    /// One-line summary of a SUT segment in relative numbers.
    pub fn describe_received(&self, tcp: &TcpRepr) -> String {
        let base = if tcp.flags.contains(TcpFlags::SYN) {
            tcp.seq
        } else {
            self.sut_isn.unwrap_or(tcp.seq)
        };
        wire::describe(tcp, base, self.isn)
    }
}

fn has_timestamps(opts: &[TcpOption]) -> bool {
    opts.iter()
        .any(|o| matches!(o, TcpOption::Timestamps { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(seq: u32, flags: TcpFlags, payload: &[u8]) -> TcpRepr {
        TcpRepr {
            src_port: 40000,
            dst_port: 8080,
            seq,
            ack: 0,
            flags,
            window: 65535,
            urgent: 0,
            options: Vec::new(),
            payload: payload.to_vec(),
        }
    }

    /// Data the peer put on its SYN is stream bytes 0.., and what follows continues it.
    #[test]
    fn syn_data_is_part_of_the_stream() {
        let cfg = PeerConfig::default();
        let isn = cfg.isn;
        let ip = topology::peer_ip(Family::V4, 2);
        let mut c = PeerConn::new(cfg, Family::V4, ip, (40000, 8080));
        let now = SystemTime::now();
        c.on_sent(&segment(isn, TcpFlags::SYN, b"0123456789"), now, false);
        assert_eq!(c.snd_nxt, isn + 11);
        c.on_sent(&segment(isn + 11, TcpFlags::ACK, b"abc"), now, false);
        assert_eq!(c.check_read(0, b"0123456789abc"), Ok(()));
        assert!(c.check_read(0, b"x").unwrap_err().contains("byte 0"));
        assert!(c.check_read(13, b"!").unwrap_err().contains("never sent"));
        // The same on a SYN-ACK (the SUT connected), counted from the peer's ISN.
        let cfg = PeerConfig::default();
        let mut c = PeerConn::new(cfg, Family::V4, ip, (40000, 8080));
        c.on_sent(
            &segment(isn, TcpFlags::SYN | TcpFlags::ACK, b"hi"),
            now,
            false,
        );
        assert_eq!(c.check_read(0, b"hi"), Ok(()));
    }
}
