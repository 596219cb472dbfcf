//! The TAP fd halfclose hands an agent (HALFCLOSE_TAP_FD), checked before any stack uses it.
//! Shared by the agents in this repository (agents/lwip includes this file).

use std::os::unix::io::RawFd;

/// The fd named by HALFCLOSE_TAP_FD, if set; an error if it is not a number. Without it the
/// agent still speaks the protocol, and `configure` fails.
pub fn from_env() -> Result<Option<RawFd>, String> {
    match std::env::var("HALFCLOSE_TAP_FD") {
        Ok(s) => s
            .trim()
            .parse::<RawFd>()
            .map(Some)
            .map_err(|_| format!("HALFCLOSE_TAP_FD={s:?} is not a file descriptor number")),
        Err(_) => Ok(None),
    }
}

/// Checks that `fd` is a TAP device (Ethernet frames, not TUN's IP packets) without
/// packet-info headers, attached to an interface, and makes it non-blocking, since frames
/// are read until EAGAIN.
pub fn open(fd: RawFd) -> Result<(), String> {
    let name = match fd {
        0 => Some("standard input"),
        1 => Some("standard output"),
        2 => Some("standard error"),
        _ => None,
    };
    if let Some(name) = name {
        return Err(format!("HALFCLOSE_TAP_FD={fd} is {name}, not a TAP device"));
    }
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!(
            "HALFCLOSE_TAP_FD={fd}: no such open file descriptor"
        ));
    }
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(fd, libc::TUNGETIFF as _, &mut req) } < 0 {
        return Err(format!(
            "HALFCLOSE_TAP_FD={fd} is not a TAP device (TUNGETIFF: {})",
            std::io::Error::last_os_error()
        ));
    }
    let flags = unsafe { req.ifr_ifru.ifru_flags } as libc::c_int;
    if flags & libc::IFF_TAP == 0 {
        return Err(format!(
            "HALFCLOSE_TAP_FD={fd} is a TUN device (IP packets); the agent needs a TAP"
        ));
    }
    if flags & libc::IFF_NO_PI == 0 {
        return Err(format!(
            "HALFCLOSE_TAP_FD={fd}: the TAP device has packet-info headers (IFF_NO_PI unset)"
        ));
    }
    set_nonblocking(fd).map_err(|e| format!("HALFCLOSE_TAP_FD={fd}: {e}"))
}

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// CLOCK_REALTIME in nanoseconds, as state events carry it.
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
