//! The smoltcp side: the interface on the inherited TAP fd, the socket set,
//! and the clocks. Everything here is a thin layer over smoltcp's own API.

use crate::protocol::{Error, Route};
use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint};
use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::io::RawFd;

/// Ethernet frame size smoltcp may send: IP MTU 1500 plus the 14-byte Ethernet header
/// (smoltcp counts the whole frame in `max_transmission_unit`).
const FRAME_MTU: usize = 1514;
/// 64 KiB each way, as the protocol promises.
const BUFFER_SIZE: usize = 65536;
/// smoltcp's TIME-WAIT length (`CLOSE_DELAY` in socket/tcp.rs, not exported).
pub const TIME_WAIT_MS: u64 = 10_000;

/// The TAP device as smoltcp sees it: frames read and written on the inherited fd. A read
/// or write error other than EAGAIN is kept for the main loop to report (smoltcp's own
/// TunTapInterface panics on one).
pub struct Tap {
    fd: RawFd,
    failed: RefCell<Option<std::io::Error>>,
    /// The TCP segments sent since the agent last looked (crate::segs).
    sent: RefCell<Vec<crate::segs::Sent>>,
}

impl Tap {
    /// The TAP device behind `fd`, checked to be one: a TAP (Ethernet frames, not TUN's IP
    /// packets) without packet-info headers, attached to an interface. Made non-blocking,
    /// since frames are read on every poll until EAGAIN.
    pub fn open(fd: RawFd) -> Result<Tap, String> {
        crate::tapfd::open(fd)?;
        Ok(Tap {
            fd,
            failed: RefCell::new(None),
            sent: RefCell::new(Vec::new()),
        })
    }

    fn fail(&self, e: std::io::Error) {
        self.failed.borrow_mut().get_or_insert(e);
    }
}

impl phy::Device for Tap {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.max_transmission_unit = FRAME_MTU;
        caps.medium = Medium::Ethernet;
        caps
    }

    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let mut frame = vec![0; FRAME_MTU];
        let n = unsafe { libc::read(self.fd, frame.as_mut_ptr().cast(), frame.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::WouldBlock {
                self.fail(e);
            }
            return None;
        }
        frame.truncate(n as usize);
        Some((RxToken(frame), TxToken(self)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(self))
    }
}

pub struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

pub struct TxToken<'a>(&'a Tap);

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        if let Some(seg) = crate::segs::parse(&frame) {
            self.0.sent.borrow_mut().push(seg);
        }
        let n = unsafe { libc::write(self.0.fd, frame.as_ptr().cast(), frame.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            // A full queue drops the frame, as a wire would.
            if e.kind() != std::io::ErrorKind::WouldBlock {
                self.0.fail(e);
            }
        }
        result
    }
}

pub struct Stack {
    /// The TAP device, taken from HALFCLOSE_TAP_FD; `None` when run without one.
    device: Option<Tap>,
    tap_fd: Option<RawFd>,
    /// Created by the first `configure`: smoltcp needs the MAC to build an interface.
    iface: Option<Interface>,
    pub sockets: SocketSet<'static>,
    epoch: std::time::Instant,
}

impl Stack {
    /// Wraps the inherited TAP fd, once checked to be one.
    pub fn new(tap_fd: Option<RawFd>) -> Result<Stack, String> {
        let device = tap_fd.map(Tap::open).transpose()?;
        Ok(Stack {
            device,
            tap_fd,
            iface: None,
            sockets: SocketSet::new(Vec::new()),
            epoch: std::time::Instant::now(),
        })
    }

    /// smoltcp time: monotonic, so wall-clock steps cannot disturb its timers.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// The fd to wait on, once frames are being processed (i.e. after configure).
    pub fn poll_fd(&self) -> Option<RawFd> {
        self.iface.as_ref().and(self.tap_fd)
    }

    /// The TCP segments sent since the last call.
    pub fn take_sent(&mut self) -> Vec<crate::segs::Sent> {
        self.device
            .as_ref()
            .map(|d| std::mem::take(&mut *d.sent.borrow_mut()))
            .unwrap_or_default()
    }

    /// The TAP device's first read or write error, if it had one.
    pub fn device_error(&self) -> Option<std::io::Error> {
        self.device.as_ref()?.failed.borrow_mut().take()
    }

    pub fn configure(
        &mut self,
        mac: [u8; 6],
        addrs: &[(IpAddr, u8)],
        routes: &[Route],
    ) -> Result<(), Error> {
        let now = self.now();
        let device = self
            .device
            .as_mut()
            .ok_or_else(|| Error::new("ENODEV", "no TAP device: HALFCLOSE_TAP_FD is not set"))?;
        let mac = EthernetAddress(mac);
        // smoltcp panics on non-unicast addresses; refuse them here instead.
        if !mac.is_unicast() {
            return Err(Error::new(
                "EINVAL",
                "field `mac` must be a unicast address",
            ));
        }
        let cidrs = addrs
            .iter()
            .map(|&(a, len)| to_cidr(a, len))
            .collect::<Result<Vec<_>, _>>()?;
        let iface = self.iface.get_or_insert_with(|| {
            let mut config = Config::new(HardwareAddress::Ethernet(mac));
            config.random_seed = random_seed();
            Interface::new(config, device, now)
        });
        iface.set_hardware_addr(HardwareAddress::Ethernet(mac));
        let mut full = false;
        iface.update_ip_addrs(|list| {
            list.clear();
            full = cidrs.iter().any(|c| list.push(*c).is_err());
        });
        if full {
            return Err(Error::new(
                "EINVAL",
                "field `addrs`: more addresses than smoltcp was built for (4)",
            ));
        }
        set_routes(iface, routes)
    }

    /// A fresh TCP socket with 64 KiB buffers each way.
    pub fn new_tcp_socket(&mut self) -> SocketHandle {
        let rx = tcp::SocketBuffer::new(vec![0; BUFFER_SIZE]);
        let tx = tcp::SocketBuffer::new(vec![0; BUFFER_SIZE]);
        self.sockets.add(tcp::Socket::new(rx, tx))
    }

    pub fn tcp(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }

    pub fn remove(&mut self, handle: SocketHandle) {
        self.sockets.remove(handle);
    }

    /// Starts an active open; needs the interface for source-address selection.
    pub fn connect(
        &mut self,
        handle: SocketHandle,
        remote: IpEndpoint,
        local: smoltcp::wire::IpListenEndpoint,
    ) -> Result<(), Error> {
        let iface = self
            .iface
            .as_mut()
            .ok_or_else(|| Error::new("ENETDOWN", "not configured yet"))?;
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        socket
            .connect(iface.context(), remote, local)
            .map_err(|e| match e {
                tcp::ConnectError::InvalidState => {
                    Error::new("EISCONN", "socket is already connected")
                }
                tcp::ConnectError::Unaddressable => Error::new(
                    "EADDRNOTAVAIL",
                    "no usable local address for that destination",
                ),
            })
    }

    pub fn maintain(&mut self) {
        let now = self.now();
        if let Some(iface) = self.iface.as_mut() {
            iface.poll_maintenance(now);
        }
    }

    /// Processes one received frame; false when none was waiting.
    /// One frame at a time so the caller sees every intermediate socket state.
    pub fn ingress_one(&mut self) -> bool {
        let now = self.now();
        match (self.iface.as_mut(), self.device.as_mut()) {
            (Some(iface), Some(dev)) => {
                iface.poll_ingress_single(now, dev, &mut self.sockets)
                    != PollIngressSingleResult::None
            }
            _ => false,
        }
    }

    /// One round of transmissions over all sockets; false when nothing was sent.
    pub fn egress_once(&mut self) -> bool {
        let now = self.now();
        match (self.iface.as_mut(), self.device.as_mut()) {
            (Some(iface), Some(dev)) => {
                iface.poll_egress(now, dev, &mut self.sockets) == PollResult::SocketStateChanged
            }
            _ => false,
        }
    }

    /// How long smoltcp may sleep before its next timer; `None` = until a frame arrives.
    pub fn poll_delay(&mut self) -> Option<Duration> {
        let now = self.now();
        self.iface.as_mut()?.poll_delay(now, &self.sockets)
    }
}

/// Wall-clock nanoseconds since the Unix epoch, for event timestamps that halfclose
/// compares with its packet capture timestamps.
pub use crate::tapfd::realtime_ns;

/// Linux's names for smoltcp's states; `None` for LISTEN, which is not a connection state.
pub fn state_name(state: tcp::State) -> Option<&'static str> {
    use tcp::State::*;
    Some(match state {
        Listen => return None,
        Closed => "CLOSED",
        SynSent => "SYN_SENT",
        SynReceived => "SYN_RECV",
        Established => "ESTABLISHED",
        FinWait1 => "FIN_WAIT_1",
        FinWait2 => "FIN_WAIT_2",
        CloseWait => "CLOSE_WAIT",
        Closing => "CLOSING",
        LastAck => "LAST_ACK",
        TimeWait => "TIME_WAIT",
    })
}

pub fn to_sockaddr(ep: IpEndpoint) -> SocketAddr {
    SocketAddr::new(ep.addr.into(), ep.port)
}

fn to_cidr(addr: IpAddr, len: u8) -> Result<IpCidr, Error> {
    let addr = IpAddress::from(addr);
    if !addr.is_unicast() {
        return Err(Error::new(
            "EINVAL",
            format!("field `addrs`: {addr} is not a unicast address"),
        ));
    }
    Ok(IpCidr::new(addr, len))
}

fn set_routes(iface: &mut Interface, routes: &[Route]) -> Result<(), Error> {
    let mut full = false;
    iface.routes_mut().update(|table| {
        table.clear();
        for r in routes {
            let (addr, len) = r.dst.unwrap_or(match r.via {
                IpAddr::V4(_) => (IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
                IpAddr::V6(_) => (IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
            });
            let route = smoltcp::iface::Route {
                cidr: IpCidr::new(addr.into(), len),
                via_router: r.via.into(),
                preferred_until: None,
                expires_at: None,
            };
            full |= table.push(route).is_err();
        }
    });
    if full {
        return Err(Error::new(
            "EINVAL",
            "field `routes`: more routes than smoltcp was built for (2)",
        ));
    }
    Ok(())
}

fn random_seed() -> u64 {
    let mut seed = 0u64;
    // getrandom(2) cannot fail for 8 bytes short of a very old kernel; fall back to time.
    let n = unsafe { libc::getrandom(&mut seed as *mut u64 as *mut libc::c_void, 8, 0) };
    if n != 8 {
        seed = realtime_ns() ^ u64::from(std::process::id());
    }
    seed
}
