//! The peer's sending socket: every frame it sends comes back with the kernel's transmit
//! timestamp, so windows run from when a frame really left, not from when the harness meant
//! to send it.
//!
//! A second AF_PACKET socket, bound to the peer interface with protocol 0 (hooked to no
//! receive path: it never sees a frame), with SO_TIMESTAMPING asking for software transmit
//! timestamps. The veth (and the TAP) driver takes the timestamp in its transmit routine,
//! before the frame reaches the SUT, and queues it on this socket's error queue before
//! `send(2)` returns; OPT_ID numbers the timestamps so one is never taken for another's.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, SystemTime};

/// How long a transmit timestamp may take to show on the error queue. It is queued before
/// `send` returns; this only bounds a kernel that never gives one.
const STAMP_WAIT: Duration = Duration::from_millis(200);

/// A packet socket that sends and reads back when each frame left.
pub struct Transmitter {
    sock: OwnedFd,
    /// OPT_ID of the next frame: the kernel counts sends from 0.
    next_id: u32,
}

/// One frame sent: when it left (the kernel's timestamp), or the time taken just before the
/// send when the kernel gave none (`stamped: false`; the runner then cannot trust its timing).
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub at: SystemTime,
    pub stamped: bool,
}

impl Transmitter {
    /// The socket, to be closed elsewhere (see `closer`).
    pub fn into_fd(self) -> OwnedFd {
        self.sock
    }

    /// Must run inside the netns of the interface.
    pub fn open(ifindex: u32) -> io::Result<Transmitter> {
        // SAFETY: plain socket(2); the result is checked and owned right away.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let flags = libc::SOF_TIMESTAMPING_TX_SOFTWARE
            | libc::SOF_TIMESTAMPING_SOFTWARE
            | libc::SOF_TIMESTAMPING_OPT_ID
            | libc::SOF_TIMESTAMPING_OPT_TSONLY;
        super::set_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPING, flags as i32)?;
        super::bind_packet(fd, ifindex, 0)?;
        Ok(Transmitter { sock, next_id: 0 })
    }

    /// Sends one frame and returns when it left.
    pub fn send(&mut self, frame: &[u8]) -> io::Result<Sent> {
        let before = SystemTime::now();
        super::send_frame(self.sock.as_raw_fd(), frame)?;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let stamp = self.stamp_of(id);
        Ok(match stamp {
            Some(at) => Sent { at, stamped: true },
            None => Sent {
                at: before,
                stamped: false,
            },
        })
    }

    /// Reads the error queue until the timestamp of frame `id` (older ones are dropped).
    fn stamp_of(&self, id: u32) -> Option<SystemTime> {
        let fd = self.sock.as_raw_fd();
        let give_up = std::time::Instant::now() + STAMP_WAIT;
        loop {
            match read_stamp(fd) {
                Some((key, at)) if key == id => return Some(at),
                Some(_) => continue,
                None if std::time::Instant::now() >= give_up => return None,
                None => wait_err(fd, give_up),
            }
        }
    }
}

/// Blocks until the error queue has something or the moment has passed.
fn wait_err(fd: RawFd, until: std::time::Instant) {
    let left = until.saturating_duration_since(std::time::Instant::now());
    let mut p = libc::pollfd {
        fd,
        events: 0, // POLLERR is always reported
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, left.as_millis().max(1) as i32) };
}

/// One timestamp from the error queue: its OPT_ID key and the software transmit time.
fn read_stamp(fd: RawFd) -> Option<(u32, SystemTime)> {
    let mut control = [0u64; 64];
    // SAFETY: msghdr is plain data; zeroed is a valid start (no name, no data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg describes `control`, which outlives the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if n < 0 {
        return None;
    }
    let (mut key, mut at) = (None, None);
    // SAFETY: the CMSG macros walk the buffer the kernel filled, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_SOCKET, libc::SO_TIMESTAMPING) => {
                    // struct scm_timestamping: ts[0] is the software timestamp.
                    let ts = std::ptr::read_unaligned(data as *const libc::timespec);
                    at = Some(
                        SystemTime::UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
                    );
                }
                (libc::SOL_PACKET, libc::PACKET_TX_TIMESTAMP) => {
                    let err = std::ptr::read_unaligned(data as *const libc::sock_extended_err);
                    if err.ee_origin == libc::SO_EE_ORIGIN_TIMESTAMPING {
                        key = Some(err.ee_data);
                    }
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Some((key?, at?))
}
