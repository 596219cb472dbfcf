//! halfclose: a conformance harness for TCP connection teardown.
//!
//! A scenario (YAML, see `docs/script-format.md`) is parsed by [`script`] into a typed
//! [`script::Scenario`]; the [`runner`] plays it as one trial per address family: it builds a
//! private [`topology`] (two anonymous network namespaces joined by a veth pair), drives the
//! system under test through [`sut`], plays the remote end with the raw-socket [`peer`], watches
//! socket states with [`observe`], records every frame in [`capture`], and hands a verdict to
//! [`trials`], which turns scenarios into libtest-mimic trials whose records [`report`] writes
//! as JSON and JUnit; [`cli`] is the command line.

pub mod capture;
pub mod cli;
pub mod closer;
pub mod coverage;
pub mod exit;
pub mod expectations;
pub mod harness;
pub mod html;
pub mod interrupt;
pub mod keeper;
pub mod ktap;
pub mod ladder;
pub mod observe;
pub mod peer;
pub mod preflight;
pub mod privilege;
pub mod realtime;
pub mod report;
pub mod requirements;
pub mod runner;
pub mod schedule;
pub mod scorecard;
pub mod script;
pub mod stack;
pub mod suite;
pub mod sut;
pub mod timers;
pub mod topology;
pub mod tracepoint;
pub mod trials;
pub mod wire;

use std::fmt;

/// The address family a trial runs over. Every scenario runs once per default family
/// (IPv4, IPv6) unless it lists its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
    /// IPv4 on the wire, an AF_INET6 socket with `::ffff:a.b.c.d` addresses on the SUT (as
    /// packetdrill's ipv4-mapped-v6).
    V4Mapped,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::V4, Family::V6, Family::V4Mapped];
    /// The families a scenario runs in when it lists none: the mapped family only where
    /// asked, so it does not add a third of the suite's time to every run.
    pub const DEFAULT: [Family; 2] = [Family::V4, Family::V6];

    /// The prefix of trial names: `ipv4`, `ipv6` or `ipv4-mapped`.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
            Family::V4Mapped => "ipv4-mapped",
        }
    }

    /// The family by its trial-name prefix.
    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The family of the packets: the mapped family is IPv4 on the wire, in the topology and
    /// to the peer.
    pub fn wire(self) -> Family {
        match self {
            Family::V4Mapped => Family::V4,
            f => f,
        }
    }

    /// An address as the SUT's application sees it: IPv4 as `::ffff:a.b.c.d` in the mapped
    /// family, unchanged otherwise.
    pub fn sut_view(self, addr: std::net::SocketAddr) -> std::net::SocketAddr {
        match (self, addr) {
            (Family::V4Mapped, std::net::SocketAddr::V4(a)) => {
                std::net::SocketAddr::new(a.ip().to_ipv6_mapped().into(), a.port())
            }
            (_, a) => a,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod family_tests {
    use super::Family;
    use std::net::SocketAddr;

    /// The mapped family is IPv4 to the peer and `::ffff:` to the SUT's application, and the
    /// kernel driver makes an AF_INET6 socket for such an address (so the family cannot
    /// quietly be plain IPv4).
    #[test]
    fn mapped_is_ipv4_on_the_wire_and_inet6_to_the_application() {
        let a: SocketAddr = "192.0.2.1:8080".parse().unwrap();
        assert_eq!(Family::V4Mapped.wire(), Family::V4);
        assert_eq!(Family::V4.sut_view(a), a);
        let seen = Family::V4Mapped.sut_view(a);
        assert_eq!(
            seen,
            "[::ffff:192.0.2.1]:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(Family::from_name("ipv4-mapped"), Some(Family::V4Mapped));
        let crate::sut::CallResult::Ret(fd) = crate::sut::kernel::new_socket(seen.ip()) else {
            panic!("socket()");
        };
        let mut domain: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid descriptor and an int-sized buffer.
        let rc = unsafe {
            libc::getsockopt(
                fd as i32,
                libc::SOL_SOCKET,
                libc::SO_DOMAIN,
                &mut domain as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        unsafe { libc::close(fd as i32) };
        assert_eq!((rc, domain), (0, libc::AF_INET6));
    }
}

/// The library's own unit tests create namespaces too. libtest starts its worker threads
/// before any test runs, and a user namespace can only be entered while the process has one
/// thread, so an unprivileged `cargo test` enters it from an ELF constructor, before `main`.
#[cfg(test)]
mod test_privilege {
    extern "C" fn enter() {
        if let Err(e) = crate::privilege::ensure() {
            eprintln!("halfclose tests: {e}");
        }
    }

    #[used]
    #[link_section = ".init_array"]
    static ENTER: extern "C" fn() = enter;
}
