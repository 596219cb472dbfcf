//! The SUT driver for the Linux kernel: the application's socket calls made with real
//! system calls.
//!
//! The call threads joined the SUT netns while the trial set up (a socket belongs to the netns
//! it was made in; after that any thread may use it). [`execute`] makes one call on the calling
//! thread, so the Linux agent (agents/linux) makes the very same calls inside another kernel.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::time::Duration;

use nix::errno::Errno;

use super::{app, Addrs, CallPool, CallResult, CallTable, Completed, SutDriver};
use crate::observe::{Observer, SockInfo};
use crate::script::call::{How, SockOpt};
use crate::script::{Call, Func};
use crate::topology::Topology;
use std::sync::mpsc::Receiver;

/// Kernel-side blocking calls give up after this, so no thread outlives a trial for long even
/// when a script's call never completes.
const SOCKET_IO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct KernelSut {
    table: CallTable,
    epolls: app::Epolls,
    observer: Observer,
    pool: CallPool,
}

impl KernelSut {
    /// `observer` must have been made in the SUT namespace.
    pub fn new(observer: Observer, topo: &Topology) -> Result<KernelSut, String> {
        Ok(KernelSut {
            table: CallTable::default(),
            epolls: app::Epolls::default(),
            observer,
            pool: CallPool::new(Some(topo))?,
        })
    }
}

impl SutDriver for KernelSut {
    fn start(
        &mut self,
        topo: &Topology,
        call: &Call,
        (sut, peer): Addrs,
    ) -> Result<Receiver<Completed>, String> {
        let fd = self.table.fd(call) as RawFd;
        let func = call.func.clone();
        // The pool's threads are in the SUT netns, where socket() must run.
        if func == Func::Socket {
            return self.pool.call(Some(topo), move || new_socket(sut.ip()));
        }
        let epolls = self.epolls.clone();
        self.pool.call(Some(topo), move || {
            app::execute(&func, fd, &epolls).unwrap_or_else(|| execute(&func, fd, sut, peer))
        })
    }

    fn table(&mut self) -> &mut CallTable {
        &mut self.table
    }

    /// Closes every descriptor the script left open. The namespace goes away right after, so
    /// what the kernel sends now is not part of the trial.
    fn close_all(&mut self) {
        self.epolls.close_all();
        for fd in self.table.take_open() {
            // SAFETY: the descriptor came from socket/accept/dup and was not closed since.
            unsafe { libc::close(fd as RawFd) };
        }
    }

    fn connection(&self, local: SocketAddr, remote: SocketAddr) -> io::Result<Option<SockInfo>> {
        self.observer.connection(local, remote)
    }
}

impl Drop for KernelSut {
    fn drop(&mut self) {
        self.close_all();
    }
}

fn ret(rc: isize) -> CallResult {
    if rc < 0 {
        CallResult::Err(Errno::last())
    } else {
        CallResult::Ret(rc as i64)
    }
}

/// A TCP socket of `ip`'s family, with the blocking-call timeouts every SUT socket has.
pub fn new_socket(ip: IpAddr) -> CallResult {
    let domain = if ip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return CallResult::Err(Errno::last());
    }
    let tv = libc::timeval {
        tv_sec: SOCKET_IO_TIMEOUT.as_secs() as i64,
        tv_usec: 0,
    };
    for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        setsockopt_raw(fd, libc::SOL_SOCKET, opt, &tv);
    }
    CallResult::Ret(fd as i64)
}

fn setsockopt_raw<T>(fd: RawFd, level: i32, name: i32, value: &T) -> isize {
    // SAFETY: the pointer and length describe `value`.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as u32,
        ) as isize
    }
}

/// Runs one socket call on the calling thread: `bind` to `sut`, `connect` to `peer`.
pub fn execute(func: &Func, fd: RawFd, sut: SocketAddr, peer: SocketAddr) -> CallResult {
    // SAFETY (all blocks below): plain system calls on a descriptor number; a stale or -1
    // descriptor makes the kernel answer EBADF, which is a result the script may expect.
    match func {
        Func::Socket => new_socket(sut.ip()),
        Func::Bind => with_sockaddr(sut, |sa, len| {
            ret(unsafe { libc::bind(fd, sa, len) } as isize)
        }),
        Func::Connect => with_sockaddr(peer, |sa, len| {
            ret(unsafe { libc::connect(fd, sa, len) } as isize)
        }),
        Func::Listen { backlog } => ret(unsafe { libc::listen(fd, *backlog) } as isize),
        Func::Accept => ret(unsafe {
            libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        } as isize),
        Func::Write(p) => {
            let bytes = p.bytes();
            ret(unsafe {
                libc::send(
                    fd,
                    bytes.as_ptr() as *const _,
                    bytes.len(),
                    libc::MSG_NOSIGNAL,
                )
            })
        }
        Func::Read { max } => {
            let mut buf = vec![0u8; *max];
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut _, buf.len(), 0) };
            if n < 0 {
                return CallResult::Err(Errno::last());
            }
            buf.truncate(n as usize);
            CallResult::Data(buf)
        }
        Func::ReadAll { n } => read_all(fd, *n),
        Func::Shutdown(how) => {
            let how = match how {
                How::Rd => libc::SHUT_RD,
                How::Wr => libc::SHUT_WR,
                How::RdWr => libc::SHUT_RDWR,
            };
            ret(unsafe { libc::shutdown(fd, how) } as isize)
        }
        Func::Close => ret(unsafe { libc::close(fd) } as isize),
        Func::Dup => ret(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) } as isize),
        Func::SetSockOpt(opt) => ret(set_option(fd, opt)),
        // The application's view: sut::app (tried first).
        _ => CallResult::Err(Errno::ENOSYS),
    }
}

/// recv() until `n` bytes or EOF; an error after some data still returns the data.
fn read_all(fd: RawFd, n: usize) -> CallResult {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let r = unsafe { libc::recv(fd, buf[got..].as_mut_ptr() as *mut _, n - got, 0) };
        match r {
            0 => break,
            r if r < 0 && got == 0 => return CallResult::Err(Errno::last()),
            r if r < 0 => break,
            r => got += r as usize,
        }
    }
    buf.truncate(got);
    CallResult::Data(buf)
}

fn set_option(fd: RawFd, opt: &SockOpt) -> isize {
    let int = |level, name, v: i32| setsockopt_raw(fd, level, name, &v);
    match *opt {
        SockOpt::Linger { on, secs } => {
            let l = libc::linger {
                l_onoff: on as i32,
                l_linger: secs,
            };
            setsockopt_raw(fd, libc::SOL_SOCKET, libc::SO_LINGER, &l)
        }
        SockOpt::Linger2(v) => int(libc::IPPROTO_TCP, libc::TCP_LINGER2, v),
        SockOpt::RcvBuf(v) => int(libc::SOL_SOCKET, libc::SO_RCVBUF, v),
        SockOpt::SndBuf(v) => int(libc::SOL_SOCKET, libc::SO_SNDBUF, v),
        SockOpt::NoDelay(v) => int(libc::IPPROTO_TCP, libc::TCP_NODELAY, v as i32),
        SockOpt::KeepAlive(v) => int(libc::SOL_SOCKET, libc::SO_KEEPALIVE, v as i32),
        SockOpt::ReuseAddr(v) => int(libc::SOL_SOCKET, libc::SO_REUSEADDR, v as i32),
        SockOpt::UserTimeout(ms) => int(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms as i32),
        SockOpt::FastOpen(qlen) => int(libc::IPPROTO_TCP, libc::TCP_FASTOPEN, qlen),
        SockOpt::FastOpenKey(key) => {
            setsockopt_raw(fd, libc::IPPROTO_TCP, libc::TCP_FASTOPEN_KEY, &key)
        }
        SockOpt::SndTimeo(ms) | SockOpt::RcvTimeo(ms) => {
            let name = match *opt {
                SockOpt::SndTimeo(_) => libc::SO_SNDTIMEO,
                _ => libc::SO_RCVTIMEO,
            };
            let tv = libc::timeval {
                tv_sec: i64::from(ms / 1000),
                tv_usec: i64::from(ms % 1000) * 1000,
            };
            setsockopt_raw(fd, libc::SOL_SOCKET, name, &tv)
        }
    }
}

fn with_sockaddr<R>(
    addr: SocketAddr,
    f: impl FnOnce(*const libc::sockaddr, libc::socklen_t) -> R,
) -> R {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            f(
                &sin as *const _ as *const libc::sockaddr,
                std::mem::size_of_val(&sin) as u32,
            )
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            f(
                &sin6 as *const _ as *const libc::sockaddr,
                std::mem::size_of_val(&sin6) as u32,
            )
        }
    }
}
