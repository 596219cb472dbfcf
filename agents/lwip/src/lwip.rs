//! The C glue (glue.c) as Rust sees it: lwIP in one thread, no locks (see glue.c's header).
//! Every function here must be called from the agent's only thread.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::raw::{c_int, c_long};

/// An lwIP connection with what its callbacks delivered (glue.c's `struct hcl_conn`).
#[repr(C)]
pub struct RawConn {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct PcbInfo {
    id: usize,
    state: c_int,
    v6: c_int,
    local: [u8; 16],
    remote: [u8; 16],
    local_port: u16,
    remote_port: u16,
}

extern "C" {
    fn hcl_init(tap_fd: c_int);
    fn hcl_configure(mac: *const u8) -> c_int;
    fn hcl_add_v4(addr: *const u8, prefix: u8) -> c_int;
    fn hcl_set_gw4(addr: *const u8) -> c_int;
    fn hcl_add_v6(addr: *const u8) -> c_int;
    fn hcl_input_one() -> c_int;
    fn hcl_tap_error() -> c_int;
    fn hcl_check_timeouts();
    fn hcl_sleeptime() -> i64;
    fn hcl_new(v6: c_int) -> *mut RawConn;
    fn hcl_bind(c: *mut RawConn, addr: *const u8, v6: c_int, port: u16) -> c_int;
    fn hcl_listen(c: *mut RawConn, backlog: u8) -> c_int;
    fn hcl_accept(c: *mut RawConn) -> *mut RawConn;
    fn hcl_connect(c: *mut RawConn, addr: *const u8, v6: c_int, port: u16) -> c_int;
    fn hcl_state(c: *const RawConn) -> c_int;
    fn hcl_err(c: *const RawConn) -> c_int;
    fn hcl_connected(c: *const RawConn) -> c_int;
    fn hcl_fin(c: *const RawConn) -> c_int;
    fn hcl_rx_len(c: *const RawConn) -> usize;
    fn hcl_write(c: *mut RawConn, data: *const u8, len: usize) -> c_long;
    fn hcl_read(c: *mut RawConn, buf: *mut u8, max: usize) -> usize;
    fn hcl_shutdown(c: *mut RawConn, rx: c_int, tx: c_int) -> c_int;
    fn hcl_close(c: *mut RawConn, abort: c_int) -> c_int;
    fn hcl_set_nodelay(c: *mut RawConn, on: c_int);
    fn hcl_set_keepalive(c: *mut RawConn, on: c_int, idle_ms: u32);
    fn hcl_pcbs(out: *mut PcbInfo, max: usize) -> usize;
}

/// lwIP's err_t values (lwip/err.h) that the agent tells apart.
pub mod err {
    pub const OK: i32 = 0;
    pub const MEM: i32 = -1;
    pub const RTE: i32 = -4;
    pub const USE: i32 = -8;
    pub const ISCONN: i32 = -10;
    pub const CONN: i32 = -11;
    pub const ABRT: i32 = -13;
    pub const RST: i32 = -14;
    pub const CLSD: i32 = -15;
}

/// lwIP's `enum tcp_state` (lwip/tcpbase.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    Listen,
    SynSent,
    SynRcvd,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

impl State {
    fn from_c(s: c_int) -> State {
        use State::*;
        [
            Closed,
            Listen,
            SynSent,
            SynRcvd,
            Established,
            FinWait1,
            FinWait2,
            CloseWait,
            Closing,
            LastAck,
            TimeWait,
        ]
        .get(s as usize)
        .copied()
        .unwrap_or(Closed)
    }

    /// Linux's name; LISTEN is not a connection state and reads as CLOSED.
    pub fn name(self) -> &'static str {
        use State::*;
        match self {
            Closed | Listen => "CLOSED",
            SynSent => "SYN_SENT",
            SynRcvd => "SYN_RECV",
            Established => "ESTABLISHED",
            FinWait1 => "FIN_WAIT_1",
            FinWait2 => "FIN_WAIT_2",
            CloseWait => "CLOSE_WAIT",
            Closing => "CLOSING",
            LastAck => "LAST_ACK",
            TimeWait => "TIME_WAIT",
        }
    }
}

/// One connection lwIP has, as its pcb lists show it (`id`: the pcb's address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pcb {
    pub id: usize,
    pub state: State,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

fn addr_bytes(ip: IpAddr) -> ([u8; 16], c_int) {
    let mut b = [0u8; 16];
    match ip {
        IpAddr::V4(a) => {
            b[..4].copy_from_slice(&a.octets());
            (b, 0)
        }
        IpAddr::V6(a) => (a.octets(), 1),
    }
}

fn to_addr(bytes: &[u8; 16], v6: bool, port: u16) -> SocketAddr {
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    };
    SocketAddr::new(ip, port)
}

/// lwIP without its tcpip thread; frames are read from `tap_fd` (-1: none).
pub fn init(tap_fd: c_int) {
    unsafe { hcl_init(tap_fd) }
}

/// Brings the interface up on the TAP fd (a second call only changes the MAC).
pub fn configure(mac: [u8; 6]) -> bool {
    unsafe { hcl_configure(mac.as_ptr()) == 0 }
}

pub fn add_addr(ip: IpAddr, prefix: u8) -> bool {
    match ip {
        IpAddr::V4(a) => unsafe { hcl_add_v4(a.octets().as_ptr(), prefix) == 0 },
        IpAddr::V6(a) => unsafe { hcl_add_v6(a.octets().as_ptr()) == 0 },
    }
}

pub fn set_gateway4(gw: Ipv4Addr) {
    unsafe { hcl_set_gw4(gw.octets().as_ptr()) };
}

/// One frame from the TAP into the stack: Ok(true) if there was one.
pub fn input_one() -> Result<bool, std::io::Error> {
    match unsafe { hcl_input_one() } {
        n if n < 0 => Err(std::io::Error::from_raw_os_error(-n)),
        n => Ok(n > 0),
    }
}

/// A write to the TAP that failed (other than EAGAIN), if any.
pub fn tap_error() -> Option<std::io::Error> {
    match unsafe { hcl_tap_error() } {
        0 => None,
        e => Some(std::io::Error::from_raw_os_error(e)),
    }
}

/// Runs lwIP's due timers (sys_check_timeouts).
pub fn check_timeouts() {
    unsafe { hcl_check_timeouts() }
}

/// Milliseconds until lwIP's next timer, `None` for none.
pub fn sleeptime_ms() -> Option<u64> {
    u64::try_from(unsafe { hcl_sleeptime() }).ok()
}

/// Every connection in lwIP's active and TIME_WAIT lists.
pub fn pcbs() -> Vec<Pcb> {
    let mut buf = vec![
        PcbInfo {
            id: 0,
            state: 0,
            v6: 0,
            local: [0; 16],
            remote: [0; 16],
            local_port: 0,
            remote_port: 0
        };
        64
    ];
    loop {
        let n = unsafe { hcl_pcbs(buf.as_mut_ptr(), buf.len()) };
        if n <= buf.len() {
            buf.truncate(n);
            break;
        }
        buf.resize(n, buf[0]);
    }
    buf.iter()
        .map(|p| Pcb {
            id: p.id,
            state: State::from_c(p.state),
            local: to_addr(&p.local, p.v6 != 0, p.local_port),
            remote: to_addr(&p.remote, p.v6 != 0, p.remote_port),
        })
        .collect()
}

/// A connection the agent owns (an fd's); freed by `close`.
pub struct Conn(*mut RawConn);

impl Conn {
    pub fn new(v6: bool) -> Option<Conn> {
        let c = unsafe { hcl_new(v6 as c_int) };
        (!c.is_null()).then_some(Conn(c))
    }

    pub fn bind(&mut self, addr: SocketAddr) -> i32 {
        let (b, v6) = addr_bytes(addr.ip());
        unsafe { hcl_bind(self.0, b.as_ptr(), v6, addr.port()) }
    }

    pub fn listen(&mut self, backlog: u8) -> i32 {
        unsafe { hcl_listen(self.0, backlog) }
    }

    /// The next connection that completed its handshake on this listener.
    pub fn accept(&mut self) -> Option<Conn> {
        let c = unsafe { hcl_accept(self.0) };
        (!c.is_null()).then_some(Conn(c))
    }

    pub fn connect(&mut self, addr: SocketAddr) -> i32 {
        let (b, v6) = addr_bytes(addr.ip());
        unsafe { hcl_connect(self.0, b.as_ptr(), v6, addr.port()) }
    }

    /// The pcb's state; CLOSED once lwIP freed it or it was handed over.
    pub fn state(&self) -> State {
        State::from_c(unsafe { hcl_state(self.0) })
    }

    /// What lwIP reported when it freed the pcb (err::RST, err::ABRT, …), err::OK if not.
    pub fn error(&self) -> i32 {
        unsafe { hcl_err(self.0) }
    }

    pub fn connected(&self) -> bool {
        unsafe { hcl_connected(self.0) != 0 }
    }

    /// The peer's FIN has arrived.
    pub fn fin(&self) -> bool {
        unsafe { hcl_fin(self.0) != 0 }
    }

    pub fn rx_len(&self) -> usize {
        unsafe { hcl_rx_len(self.0) }
    }

    /// Bytes queued, or an err_t.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, i32> {
        let n = unsafe { hcl_write(self.0, data.as_ptr(), data.len()) };
        usize::try_from(n).map_err(|_| n as i32)
    }

    pub fn read(&mut self, max: usize) -> Vec<u8> {
        let mut buf = vec![0u8; max.min(self.rx_len())];
        let n = unsafe { hcl_read(self.0, buf.as_mut_ptr(), buf.len()) };
        buf.truncate(n);
        buf
    }

    pub fn shutdown(&mut self, rx: bool, tx: bool) -> i32 {
        unsafe { hcl_shutdown(self.0, rx as c_int, tx as c_int) }
    }

    pub fn set_nodelay(&mut self, on: bool) {
        unsafe { hcl_set_nodelay(self.0, on as c_int) }
    }

    pub fn set_keepalive(&mut self, on: bool, idle_ms: u32) {
        unsafe { hcl_set_keepalive(self.0, on as c_int, idle_ms) }
    }

    /// close(): the pcb goes on as an orphan (or is aborted); the Conn is gone.
    pub fn close(self, abort: bool) {
        unsafe { hcl_close(self.0, abort as c_int) };
    }
}
