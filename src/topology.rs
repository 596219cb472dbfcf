//! Per-trial network topology: two anonymous network namespaces joined by a veth pair.
//!
//! ```text
//!   SUT netns                                        peer netns
//!   hc-sut  02:68:63:00:00:01  <====== veth ======>  hc-peer  02:68:63:00:00:02
//!   192.0.2.1/24, 2001:db8::1/64 (no DAD)            no address at all, IPv6 disabled
//!   tx checksum, SG, TSO, GSO off                    played by the harness's AF_PACKET socket
//! ```
//!
//! The namespaces are anonymous: each is created by `unshare(CLONE_NEWNET)` on a short-lived
//! thread and held only by a file descriptor opened from `/proc/thread-self/ns/net`. Nothing is
//! ever bind-mounted under /run/netns, so once the [`Topology`] is dropped (or the process dies,
//! even by SIGKILL) the kernel frees both namespaces and the veth dies with them.
//!
//! Namespace membership is per thread, so nothing here ever moves the caller's thread: all
//! namespace work runs on fresh threads ([`Topology::run_in_sut`], [`Topology::spawn_in_peer`]...).
//! Anything that lives in a namespace keeps it alive: a thread spawned into it, or a socket
//! created there. Close those too if the namespace must really be gone.
//!
//! The link is quiet but not silent: DAD and router solicitations are off and the peer kernel
//! never speaks, yet the SUT kernel still sends a few MLDv2 reports (to ff02::16, from its
//! link-local address) during the first second or so after [`Topology::create`] returns.
//! Captures and the peer must tolerate them.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::pin::pin;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{StreamExt, TryStreamExt};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use rtnetlink::packet_core::NetlinkMessage;
use rtnetlink::packet_route::address::AddressHeaderFlags;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage, State};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::SocketAddr;
use rtnetlink::{Handle, LinkUnspec, LinkVeth, MulticastGroup};
use tokio::runtime::Runtime;

use crate::Family;

/// Name of the veth end in the SUT namespace.
pub const SUT_IFNAME: &str = "hc-sut";
/// Name of the veth end in the peer namespace.
pub const PEER_IFNAME: &str = "hc-peer";
/// Locally administered MAC of the SUT end.
pub const SUT_MAC: [u8; 6] = [0x02, 0x68, 0x63, 0, 0, 0x01];
/// Locally administered MAC of the peer end (the source MAC the harness's frames carry).
pub const PEER_MAC: [u8; 6] = [0x02, 0x68, 0x63, 0, 0, 0x02];
/// SUT address, TEST-NET-1 (RFC 5737).
pub const SUT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Address the harness plays; never configured on any interface.
pub const PEER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Prefix length of the IPv4 subnet.
pub const PREFIX_V4: u8 = 24;
/// SUT address, documentation prefix (RFC 3849).
pub const SUT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// Address the harness plays; never configured on any interface.
pub const PEER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// Prefix length of the IPv6 subnet.
pub const PREFIX_V6: u8 = 64;

/// Interface indexes are chosen, not allocated, so both are known without asking the kernel,
/// and distinct, so a log line naming an index names one end. They are well above the few
/// fallback tunnel devices (sit0, gre0...) a new namespace may be born with.
const SUT_IFINDEX: u32 = 100;
const PEER_IFINDEX: u32 = 101;

/// Upper bound for the kernel's asynchronous link-watch work; it normally takes microseconds.
/// Only waits for the kernel's link-watch work, which a loaded machine can starve for seconds.
const LINK_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// Written in the SUT namespace before the link exists, so the device inherits them from
/// `default`: no DAD probes and no router solicitations in IPv6 captures.
const SUT_BASE_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv6.conf.all.accept_dad", "0"),
    ("net.ipv6.conf.default.accept_dad", "0"),
    ("net.ipv6.conf.all.router_solicitations", "0"),
    ("net.ipv6.conf.default.router_solicitations", "0"),
];

/// Written in the peer namespace before the veth end enters it: with no IPv6 and no IPv4
/// address, the peer kernel never answers the SUT (a stray kernel RST would corrupt verdicts).
const PEER_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
];

/// Legacy ethtool commands (linux/ethtool.h), each taking a `struct ethtool_value`.
#[cfg(test)]
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
#[cfg(test)]
const ETHTOOL_GSG: u32 = 0x18;
const ETHTOOL_SSG: u32 = 0x19;
#[cfg(test)]
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
#[cfg(test)]
const ETHTOOL_GGSO: u32 = 0x23;
const ETHTOOL_SGSO: u32 = 0x24;
#[cfg(test)]
const ETHTOOL_GGRO: u32 = 0x2b;

/// The SUT's address for a family.
pub fn sut_ip(family: Family) -> IpAddr {
    match family {
        Family::V4 | Family::V4Mapped => SUT_V4.into(),
        Family::V6 => SUT_V6.into(),
    }
}

/// The address the harness plays for a family: 192.0.2.`host` / 2001:db8::`host`. Each trial
/// has its own `host` (see [`Topology::peer_host`]), because system-wide observers such as the
/// state tracepoint cannot tell namespaces apart; `PEER_V4`/`PEER_V6` are host 2.
pub fn peer_ip(family: Family, host: u8) -> IpAddr {
    match family {
        Family::V4 | Family::V4Mapped => Ipv4Addr::new(192, 0, 2, host).into(),
        Family::V6 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, host as u16).into(),
    }
}

/// A peer host number held for one trial, 2..=254, unique among the trials of every
/// halfclose process on this machine at the time (nextest runs one process per trial): the
/// claim is an abstract unix socket named for the host in the host's network namespace, which
/// the kernel frees when the socket closes, also when the process dies, so a crash leaks
/// nothing and no file is left behind.
#[derive(Debug)]
pub struct HostClaim {
    host: u8,
    _socket: Option<std::os::unix::net::UnixDatagram>,
}

impl HostClaim {
    /// The first free host from a rotating start (so consecutive trials differ). When all
    /// 253 are held, waits for one; after [`CLAIM_WAIT`] it takes one unclaimed, and the
    /// state tracepoint's filter may then see another trial's events, as it could before
    /// hosts were claimed.
    pub fn take() -> HostClaim {
        use std::os::linux::net::SocketAddrExt;
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let start = NEXT.fetch_add(1, Ordering::Relaxed) + std::process::id().wrapping_mul(37);
        let deadline = Instant::now() + CLAIM_WAIT;
        loop {
            for i in 0..253 {
                let host = (2 + (start + i) % 253) as u8;
                let name = format!("halfclose/peer-host/{host}");
                let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name) else {
                    continue;
                };
                if let Ok(sock) = std::os::unix::net::UnixDatagram::bind_addr(&addr) {
                    return HostClaim {
                        host,
                        _socket: Some(sock),
                    };
                }
            }
            if Instant::now() > deadline {
                tracing::warn!("every peer host is held by another trial; sharing one");
                return HostClaim {
                    host: (2 + start % 253) as u8,
                    _socket: None,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// How long a trial waits for a free peer host before sharing one.
const CLAIM_WAIT: Duration = Duration::from_secs(30);

/// The prefix length of the trial subnet for a family.
pub fn prefix_len(family: Family) -> u8 {
    match family {
        Family::V4 | Family::V4Mapped => PREFIX_V4,
        Family::V6 => PREFIX_V6,
    }
}

/// Why a topology could not be built or entered.
#[derive(Debug)]
pub enum TopologyError {
    /// A system call or a /proc access failed; `what` names the step.
    Os { what: String, source: io::Error },
    /// The kernel refused a netlink request, or the netlink connection broke.
    Netlink {
        what: &'static str,
        source: rtnetlink::Error,
    },
    /// The sysctl does not exist in the SUT namespace.
    UnknownSysctl { key: String },
    /// The sysctl key is malformed or is not per network namespace.
    InvalidSysctl { key: String, reason: &'static str },
    /// The sysctl exists but the kernel refused the value.
    SysctlWrite {
        key: String,
        value: String,
        source: io::Error,
    },
    /// The kernel refused the value for a reason halfclose knows (root could not change it
    /// either, so no "run as root" hint).
    SysctlRefused {
        key: String,
        value: String,
        reason: String,
    },
    /// The kernel did not finish bringing the link up in time.
    Timeout { what: &'static str },
}

impl TopologyError {
    fn os(what: impl Into<String>, source: impl Into<io::Error>) -> Self {
        TopologyError::Os {
            what: what.into(),
            source: source.into(),
        }
    }

    fn netlink(what: &'static str) -> impl FnOnce(rtnetlink::Error) -> Self {
        move |source| TopologyError::Netlink { what, source }
    }

    /// The errno behind the error, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            TopologyError::Os { source, .. } | TopologyError::SysctlWrite { source, .. } => {
                source.raw_os_error()
            }
            TopologyError::Netlink {
                source: rtnetlink::Error::NetlinkError(msg),
                ..
            } => msg.code.map(|code| -code.get()),
            _ => None,
        }
    }
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologyError::Os { what, source } => write!(f, "{what}: {source}")?,
            TopologyError::Netlink { what, source } => match source {
                // to_io() gives "Operation not permitted (os error 1)" rather than a debug dump.
                rtnetlink::Error::NetlinkError(msg) => write!(f, "{what}: {}", msg.to_io())?,
                other => write!(f, "{what}: {other}")?,
            },
            TopologyError::UnknownSysctl { key } => write!(
                f,
                "unknown sysctl `{key}`: no such entry under /proc/sys \
                 in the trial's network namespace"
            )?,
            TopologyError::InvalidSysctl { key, reason } => {
                write!(f, "invalid sysctl `{key}`: {reason}")?
            }
            TopologyError::SysctlWrite { key, value, source } => {
                write!(f, "cannot set sysctl `{key}` to `{value}`: {source}")?
            }
            TopologyError::SysctlRefused { key, value, reason } => {
                write!(f, "cannot set sysctl `{key}` to `{value}`: {reason}")?
            }
            TopologyError::Timeout { what } => write!(
                f,
                "{what}: no answer from the kernel after {LINK_UP_TIMEOUT:?}"
            )?,
        }
        if matches!(self.errno(), Some(libc::EPERM | libc::EACCES)) {
            f.write_str(
                " (needs CAP_NET_ADMIN: run as root, or as a user allowed to create user namespaces)",
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for TopologyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TopologyError::Os { source, .. } | TopologyError::SysctlWrite { source, .. } => {
                Some(source)
            }
            TopologyError::Netlink { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// One trial's pair of namespaces and the veth between them. Dropping it closes the two
/// namespace fds, which is all the teardown there is.
#[derive(Debug)]
pub struct Topology {
    sut_ns: OwnedFd,
    peer_ns: OwnedFd,
    /// The last byte of the peer's address in this trial, held while the topology lives.
    peer_host: HostClaim,
    /// The interface the peer's packet socket binds to: `hc-peer`, or the TAP device.
    peer_ifindex: u32,
    /// For an agent SUT: the TAP device's fd, which the agent process inherits.
    tap: Option<OwnedFd>,
    /// The peer plays on a real interface of the caller's namespace (`--peer-iface`).
    real_iface: bool,
}

/// The TAP device an agent's stack runs on (in the SUT namespace; the peer shares it).
pub const TAP_IFNAME: &str = "hc-tap";

impl Topology {
    /// Builds both namespaces and the link, and returns once both ends are operationally up.
    ///
    /// `sut_sysctls` are extra (key, value) pairs such as `("net.ipv4.tcp_fin_timeout", "3")`,
    /// written under /proc/sys in the SUT namespace before the link exists. Only `net.*` keys
    /// are accepted, because only those can be per namespace (a few `net.core.*` keys such as
    /// `rmem_max` are still global: setting one changes the host).
    pub fn create(sut_sysctls: &[(String, String)]) -> Result<Topology, TopologyError> {
        Topology::create_with_mtu(sut_sysctls, None)
    }

    /// [`Topology::create`] with both veth ends at `mtu` bytes (None: the default 1500).
    pub fn create_with_mtu(
        sut_sysctls: &[(String, String)],
        mtu: Option<u32>,
    ) -> Result<Topology, TopologyError> {
        // Reject malformed keys before paying for any namespace.
        for (key, _) in sut_sysctls {
            sysctl_path(key)?;
        }
        let started = Instant::now();
        // Claimed here, in the process's own network namespace: the setup thread enters the
        // trial's, where the claim would be private.
        let claim = HostClaim::take();
        let topology = on_thread("hc-setup", None, || build(sut_sysctls, mtu, claim))??;
        tracing::debug!(elapsed = ?started.elapsed(), "topology created");
        Ok(topology)
    }

    /// The last byte of the address the peer plays in this trial.
    pub fn peer_host(&self) -> u8 {
        self.peer_host.host
    }

    /// The address the peer plays in this trial.
    pub fn peer_ip(&self, family: Family) -> IpAddr {
        peer_ip(family, self.peer_host.host)
    }

    /// The ifindex of `hc-sut` inside the SUT namespace.
    pub fn sut_ifindex(&self) -> u32 {
        SUT_IFINDEX
    }

    /// The ifindex of `hc-peer` inside the peer namespace (for binding the AF_PACKET socket).
    pub fn peer_ifindex(&self) -> u32 {
        self.peer_ifindex
    }

    /// One namespace holding a TAP device, for a SUT that is a user-space stack behind an
    /// agent: the agent's stack reads and writes the device's fd, and the peer's packet socket
    /// binds to the same interface (the peer "namespace" is the SUT's). The interface has no
    /// address and IPv6 is off, so the namespace's own kernel stays silent.
    pub fn create_tap() -> Result<Topology, TopologyError> {
        let claim = HostClaim::take();
        on_thread("hc-setup", None, || build_tap(claim))?
    }

    /// No namespaces at all: the peer plays on the real interface `iface` of the caller's
    /// network namespace, and the SUT is on the far side of it (`--peer-iface`; its agent
    /// runs wherever its command puts it). Nothing is created, so nothing is torn down; the
    /// interface should carry no address of the trial subnet, or the local kernel would
    /// answer the SUT.
    pub fn on_iface(iface: &str) -> Result<Topology, TopologyError> {
        let here = std::fs::File::open("/proc/thread-self/ns/net")
            .map_err(|e| TopologyError::os("opening this thread's network namespace", e))?;
        let name = std::ffi::CString::new(iface).map_err(|_| {
            TopologyError::os(
                "naming the interface",
                io::Error::from(io::ErrorKind::InvalidInput),
            )
        })?;
        // SAFETY: a NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            let e = io::Error::last_os_error();
            return Err(TopologyError::os(
                format!("finding the interface {iface}"),
                e,
            ));
        }
        let mut topo = one_namespace(OwnedFd::from(here), index, None, HostClaim::take())?;
        topo.real_iface = true;
        Ok(topo)
    }

    /// Whether the peer plays on a real interface ([`Topology::on_iface`]).
    pub fn is_real_iface(&self) -> bool {
        self.real_iface
    }

    /// The TAP device's fd (agent topologies only).
    pub fn tap_fd(&self) -> Option<BorrowedFd<'_>> {
        self.tap.as_ref().map(|t| t.as_fd())
    }

    /// The fd holding the SUT namespace, e.g. for `setns` or `IFLA_NET_NS_FD`.
    pub fn sut_ns(&self) -> BorrowedFd<'_> {
        self.sut_ns.as_fd()
    }

    /// The fd holding the peer namespace.
    pub fn peer_ns(&self) -> BorrowedFd<'_> {
        self.peer_ns.as_fd()
    }

    /// Runs `f` on a fresh thread that has joined the SUT namespace, and returns its result.
    /// A panic in `f` is resumed on the caller's thread.
    pub fn run_in_sut<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, TopologyError> {
        on_thread("hc-in-sut", Some(self.sut_ns.as_fd()), f)
    }

    /// Runs `f` on a fresh thread that has joined the peer namespace, and returns its result.
    pub fn run_in_peer<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, TopologyError> {
        on_thread("hc-in-peer", Some(self.peer_ns.as_fd()), f)
    }

    /// Spawns a long-lived thread named `name` inside the SUT namespace. The thread keeps the
    /// namespace alive until it ends, even after the `Topology` is dropped.
    pub fn spawn_in_sut<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JoinHandle<T>, TopologyError> {
        spawn_in(self.sut_ns.as_fd(), name, f)
    }

    /// Spawns a long-lived thread named `name` inside the peer namespace (e.g. the packet
    /// receive loop). The thread keeps the namespace alive until it ends.
    pub fn spawn_in_peer<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JoinHandle<T>, TopologyError> {
        spawn_in(self.peer_ns.as_fd(), name, f)
    }
}

/// Whether `key` (dotted, like `net.ipv4.tcp_fin_timeout`) names a per-namespace sysctl that
/// exists in the caller's network namespace. For validating scripts before any trial runs.
pub fn sysctl_exists(key: &str) -> bool {
    sysctl_path(key).is_ok_and(|path| path.exists())
}

/// Why a trial cannot set `key` although the kernel has it, if it cannot: the sysctl is missing
/// from a network namespace made the way trials make theirs. The kernel hides some sysctls in
/// namespaces owned by a user namespace (most of `net.ipv6.route.*` when halfclose runs
/// unprivileged), and a few exist only in the host's namespace. Each key is probed once, in a
/// short-lived namespace of its own; None also when no namespace can be made here (nothing
/// would run anyway, and the trial then says why).
pub fn sysctl_unavailable(key: &str) -> Option<String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static KNOWN: OnceLock<Mutex<HashMap<String, Option<String>>>> = OnceLock::new();
    let known = KNOWN.get_or_init(Default::default);
    if let Some(answer) = known.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
        return answer.clone();
    }
    let path = sysctl_path(key).ok()?;
    let in_trial_netns = on_thread("hc-sysctl-probe", None, || {
        enter_new_netns().map(|_ns| path.exists())
    });
    let answer = match in_trial_netns {
        Ok(Ok(false)) if crate::privilege::in_initial_user_namespace() => Some(format!(
            "the sysctl {key}, which exists only in the host's network namespace, not in a \
             trial's"
        )),
        Ok(Ok(false)) => Some(format!(
            "the sysctl {key}, which the kernel hides from an unprivileged run's network \
             namespaces (run as root to test this)"
        )),
        _ => None,
    };
    known
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.to_owned(), answer.clone());
    answer
}

/// Why no trial can have a TAP device here, if none can: probed once, by creating one in a
/// short-lived namespace of its own (an unprivileged user may not open /dev/net/tun, or the
/// kernel may lack the tun module).
pub fn tap_unavailable() -> Option<String> {
    use std::sync::OnceLock;
    static ANSWER: OnceLock<Option<String>> = OnceLock::new();
    ANSWER
        .get_or_init(|| {
            let made = on_thread("hc-tap-probe", None, || {
                enter_new_netns().and_then(|_ns| open_tap(TAP_IFNAME))
            });
            let e = match made {
                Ok(Ok(_tap)) => return None,
                Ok(Err(e)) | Err(e) => e,
            };
            Some(match e.errno() {
                Some(libc::EACCES | libc::EPERM)
                    if !crate::privilege::in_initial_user_namespace() =>
                {
                    "a TAP device (this user may not open /dev/net/tun: run as root, or let it)"
                        .to_string()
                }
                _ => format!("a TAP device ({e})"),
            })
        })
        .clone()
}

/// Reads a sysctl in the caller's network namespace (call it inside `run_in_sut`), trimmed.
pub fn read_sysctl(key: &str) -> Result<String, TopologyError> {
    let path = sysctl_path(key)?;
    match fs::read_to_string(&path) {
        Ok(value) => Ok(value.trim().to_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(TopologyError::UnknownSysctl {
            key: key.to_owned(),
        }),
        Err(e) => Err(TopologyError::os(format!("reading {}", path.display()), e)),
    }
}

/// Maps a dotted key to its /proc/sys path. /proc/sys/net resolves against the network
/// namespace of the task that opens it, which is what makes per-namespace writes work.
fn sysctl_path(key: &str) -> Result<PathBuf, TopologyError> {
    let invalid = |reason| TopologyError::InvalidSysctl {
        key: key.to_owned(),
        reason,
    };
    if !key.starts_with("net.") {
        return Err(invalid(
            "only net.* sysctls belong to a network namespace; others would change the host",
        ));
    }
    // Empty parts would also let `..` through once dots become slashes.
    if key
        .split('.')
        .any(|part| part.is_empty() || part.contains(['/', '\0']))
    {
        return Err(invalid(
            "expected dot-separated names such as net.ipv4.tcp_fin_timeout",
        ));
    }
    Ok(PathBuf::from("/proc/sys").join(key.replace('.', "/")))
}

/// Writes one sysctl in the caller's network namespace.
/// Writes one `net.*` sysctl of the calling thread's network namespace.
pub fn write_sysctl(key: &str, value: &str) -> Result<(), TopologyError> {
    let path = sysctl_path(key)?;
    let write_error = |source| TopologyError::SysctlWrite {
        key: key.to_owned(),
        value: value.to_owned(),
        source,
    };
    let mut file = match OpenOptions::new().write(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(TopologyError::UnknownSysctl {
                key: key.to_owned(),
            })
        }
        Err(e) => return Err(write_error(e)),
    };
    // The kernel parses one write() as the whole value, so the value goes out in one call.
    file.write_all(value.as_bytes())
        .map_err(|e| refused(key, value, &e).unwrap_or_else(|| write_error(e)))
}

/// Why the kernel refused a sysctl value, when that is known and no privilege would help.
fn refused(key: &str, value: &str, e: &io::Error) -> Option<TopologyError> {
    let reason = match (key, e.raw_os_error()?) {
        // Outside the host's namespace the kernel takes only the algorithms the host's root
        // listed as allowed (tcp_set_default_congestion_control), however privileged we are.
        ("net.ipv4.tcp_congestion_control", libc::EPERM) => {
            let allowed = read_sysctl("net.ipv4.tcp_allowed_congestion_control")
                .unwrap_or_else(|_| "?".into());
            format!(
                "a trial's network namespace may use only the algorithms in \
                 net.ipv4.tcp_allowed_congestion_control, here `{allowed}` (the host's root \
                 can add `{value}` there)"
            )
        }
        ("net.ipv4.tcp_congestion_control", libc::ENOENT) => {
            let available = read_sysctl("net.ipv4.tcp_available_congestion_control")
                .unwrap_or_else(|_| "?".into());
            format!("no such algorithm on this kernel (available: `{available}`)")
        }
        // We opened the file for writing, so we may write it: the value itself was refused.
        (_, libc::EPERM) if crate::privilege::in_initial_user_namespace() => {
            format!("the kernel refused the value in the trial's network namespace ({e})")
        }
        _ => return None,
    };
    Some(TopologyError::SysctlRefused {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    })
}

fn write_sysctls<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), TopologyError> {
    pairs
        .into_iter()
        .try_for_each(|(key, value)| write_sysctl(key, value))
}

/// Moves the calling thread into a brand-new network namespace and returns the fd that keeps
/// it alive after the thread leaves or ends.
fn enter_new_netns() -> Result<OwnedFd, TopologyError> {
    unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| TopologyError::os("creating a network namespace (unshare CLONE_NEWNET)", e))?;
    let file = File::open("/proc/thread-self/ns/net")
        .map_err(|e| TopologyError::os("opening /proc/thread-self/ns/net", e))?;
    Ok(file.into())
}

/// Runs `f` on a fresh scoped thread, first joining `netns` if given, so the caller's own
/// namespace never changes. A panic in `f` is resumed on the caller.
fn on_thread<T: Send>(
    name: &str,
    netns: Option<BorrowedFd<'_>>,
    f: impl FnOnce() -> T + Send,
) -> Result<T, TopologyError> {
    thread::scope(|scope| {
        let body = move || {
            if let Some(ns) = netns {
                setns(ns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| TopologyError::os("joining a network namespace (setns)", e))?;
            }
            Ok(f())
        };
        let handle = thread::Builder::new()
            .name(name.to_owned())
            .spawn_scoped(scope, body)
            .map_err(|e| TopologyError::os(format!("spawning thread {name}"), e))?;
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Spawns a long-lived thread inside `netns`. A new thread inherits its creator's
/// namespaces, so it is spawned from a short-lived thread that has already joined `netns`:
/// a failing `setns` is then reported here rather than inside the long-lived thread.
fn spawn_in<T: Send + 'static>(
    netns: BorrowedFd<'_>,
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, TopologyError> {
    let builder = thread::Builder::new().name(name.to_owned());
    on_thread("hc-spawner", Some(netns), move || builder.spawn(f))?
        .map_err(|e| TopologyError::os(format!("spawning thread {name}"), e))
}

/// A single-threaded runtime for this setup thread's netlink requests.
fn netlink_runtime() -> Result<Runtime, TopologyError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| TopologyError::os("starting the netlink runtime", e))
}

/// The body of the setup thread: builds both namespaces, leaving this thread in the SUT one.
fn build(
    sut_sysctls: &[(String, String)],
    mtu: Option<u32>,
    claim: HostClaim,
) -> Result<Topology, TopologyError> {
    let rt = netlink_runtime()?;

    // Peer first, so its veth end can be created directly inside it with IPv6 already off.
    let peer_ns = enter_new_netns()?;
    write_sysctls(PEER_SYSCTLS.iter().copied())?;
    // The SUT netns is created from this thread while it sits in the peer netns, so it gets a
    // private socket hash table of this size instead of sharing the host's (often 256 K
    // buckets): sock_diag walks the whole table on every sample, ~0.5 ms against ~40 µs.
    // Best effort: an older kernel or a restricted user namespace just keeps the shared table.
    let _ = write_sysctl("net.ipv4.tcp_child_ehash_entries", "1024");
    // A netlink socket stays in the namespace it was opened in, whatever this thread does next.
    let mut peer_rtnl = Rtnl::open(&rt)?;

    let sut_ns = enter_new_netns()?;
    write_sysctls(SUT_BASE_SYSCTLS.iter().copied())?;
    write_sysctls(sut_sysctls.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    // Sysctls may have turned IPv6 off (an IPv4-only trial keeps its capture free of MLD).
    let ipv6 = read_sysctl("net.ipv6.conf.default.disable_ipv6").map_or(true, |v| v.trim() == "0");
    let mut sut_rtnl = Rtnl::open(&rt)?;
    let ethtool_socket = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| TopologyError::os("opening an ethtool socket", e))?;

    rt.block_on(async {
        let handle = sut_rtnl.handle.clone();
        create_veth(&handle, peer_ns.as_fd()).await?;
        if let Some(mtu) = mtu {
            set_mtu(&handle, SUT_IFINDEX, mtu, "setting hc-sut's MTU").await?;
            set_mtu(
                &peer_rtnl.handle,
                PEER_IFINDEX,
                mtu,
                "setting hc-peer's MTU",
            )
            .await?;
        }
        // Before the link is up, so not even the first frame leaves with a partial checksum.
        disable_offloads(ethtool_socket.as_fd(), SUT_IFNAME)?;
        add_sut_addresses(&handle, ipv6).await?;
        // Peer first: whichever end opens first waits for the kernel's link-watch work to
        // start its queue, and the wait below covers exactly that.
        set_up(&peer_rtnl.handle, PEER_IFINDEX, "setting hc-peer up").await?;
        set_up(&handle, SUT_IFINDEX, "setting hc-sut up").await?;
        let both_up = futures::future::try_join(
            sut_rtnl.wait_oper_up(SUT_IFINDEX),
            peer_rtnl.wait_oper_up(PEER_IFINDEX),
        );
        tokio::time::timeout(LINK_UP_TIMEOUT, both_up)
            .await
            .map_err(|_| TopologyError::Timeout {
                what: "waiting for hc-sut and hc-peer to be up",
            })?
            .map(|_| ())
    })?;
    Ok(Topology {
        sut_ns,
        peer_ns,
        peer_host: claim,
        peer_ifindex: PEER_IFINDEX,
        tap: None,
        real_iface: false,
    })
}

/// The body of the setup thread for an agent SUT: a namespace with one TAP device, up.
fn build_tap(claim: HostClaim) -> Result<Topology, TopologyError> {
    let rt = netlink_runtime()?;
    let ns = enter_new_netns()?;
    write_sysctls(PEER_SYSCTLS.iter().copied())?;
    let tap = open_tap(TAP_IFNAME)?;
    let name = std::ffi::CString::new(TAP_IFNAME).expect("no NUL");
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(TopologyError::os(
            "finding hc-tap",
            io::Error::last_os_error(),
        ));
    }
    let rtnl = Rtnl::open(&rt)?;
    rt.block_on(set_up(&rtnl.handle, index, "setting hc-tap up"))?;
    one_namespace(ns, index, Some(tap), claim)
}

/// A topology whose SUT and peer share one namespace, the peer playing on `ifindex`.
fn one_namespace(
    ns: OwnedFd,
    ifindex: u32,
    tap: Option<OwnedFd>,
    claim: HostClaim,
) -> Result<Topology, TopologyError> {
    let peer_ns = ns
        .try_clone()
        .map_err(|e| TopologyError::os("duplicating the namespace fd", e))?;
    Ok(Topology {
        sut_ns: ns,
        peer_ns,
        peer_host: claim,
        peer_ifindex: ifindex,
        tap,
        real_iface: false,
    })
}

/// Creates a TAP device (Ethernet frames, no packet-info header) in this thread's namespace.
fn open_tap(name: &str) -> Result<OwnedFd, TopologyError> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const IFF_TAP: libc::c_short = 0x0002;
    const IFF_NO_PI: libc::c_short = 0x1000;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| TopologyError::os("opening /dev/net/tun", e))?;
    // SAFETY: ifreq is plain data; zeroed is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI;
    // SAFETY: TUNSETIFF takes a struct ifreq.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
        return Err(TopologyError::os(
            "creating the TAP device (TUNSETIFF)",
            io::Error::last_os_error(),
        ));
    }
    Ok(OwnedFd::from(file))
}

/// A route netlink connection in the namespace of the thread that opened it, subscribed to
/// link notifications so that waiting for the link needs no polling.
struct Rtnl {
    handle: Handle,
    events: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
}

impl Rtnl {
    fn open(rt: &Runtime) -> Result<Rtnl, TopologyError> {
        // The socket registers with the runtime's reactor, which needs the runtime context.
        let _context = rt.enter();
        let (connection, handle, events) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map_err(|e| TopologyError::os("opening a route netlink socket", e))?;
        rt.spawn(connection);
        Ok(Rtnl { handle, events })
    }

    /// Waits until the link's operstate is UP. The kernel sets it from its deferred link-watch
    /// work, which also starts the transmit queue of whichever end came up first; until then,
    /// frames sent through that end are dropped. A single-link RTM_GETLINK makes the kernel run
    /// that link's pending link-watch work first, so the first check normally succeeds.
    async fn wait_oper_up(&mut self, index: u32) -> Result<(), TopologyError> {
        loop {
            // Subscribed before this check, so a later change is queued in `events`.
            if oper_state(&self.handle, index).await? == Some(State::Up) {
                return Ok(());
            }
            if self.events.next().await.is_none() {
                return Err(TopologyError::Netlink {
                    what: "waiting for link notifications",
                    source: rtnetlink::Error::RequestFailed,
                });
            }
        }
    }
}

/// The veth request: `hc-sut` here, `hc-peer` created straight in the peer namespace, so it
/// never exists anywhere it could pick up an address. Neither end can be created up: the kernel
/// opens the peer before the pair is linked, and refuses with ENOTCONN.
fn veth_message(peer_ns: BorrowedFd<'_>) -> LinkMessage {
    let peer = LinkUnspec::new_with_name(PEER_IFNAME)
        .index(PEER_IFINDEX)
        .address(PEER_MAC.to_vec())
        .setns_by_fd(peer_ns.as_raw_fd())
        .build();
    LinkVeth::new(SUT_IFNAME, PEER_IFNAME)
        .index(SUT_IFINDEX)
        .address(SUT_MAC.to_vec())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build()
}

async fn create_veth(handle: &Handle, peer_ns: BorrowedFd<'_>) -> Result<(), TopologyError> {
    handle
        .link()
        .add(veth_message(peer_ns))
        .execute()
        .await
        .map_err(TopologyError::netlink("creating veth hc-sut/hc-peer"))
}

async fn add_sut_addresses(handle: &Handle, ipv6: bool) -> Result<(), TopologyError> {
    handle
        .address()
        .add(SUT_IFINDEX, SUT_V4.into(), PREFIX_V4)
        .execute()
        .await
        .map_err(TopologyError::netlink("adding 192.0.2.1/24 to hc-sut"))?;
    if !ipv6 {
        return Ok(());
    }
    let mut v6 = handle.address().add(SUT_IFINDEX, SUT_V6.into(), PREFIX_V6);
    // NODAD: the address is usable at once instead of tentative, and no DAD probe is sent.
    v6.message_mut().header.flags |= AddressHeaderFlags::Nodad;
    v6.execute()
        .await
        .map_err(TopologyError::netlink("adding 2001:db8::1/64 to hc-sut"))
}

async fn set_mtu(
    handle: &Handle,
    index: u32,
    mtu: u32,
    what: &'static str,
) -> Result<(), TopologyError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
        .execute()
        .await
        .map_err(TopologyError::netlink(what))
}

async fn set_up(handle: &Handle, index: u32, what: &'static str) -> Result<(), TopologyError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(TopologyError::netlink(what))
}

async fn oper_state(handle: &Handle, index: u32) -> Result<Option<State>, TopologyError> {
    let mut links = pin!(handle.link().get().match_index(index).execute());
    let mut state = None;
    while let Some(link) = links
        .try_next()
        .await
        .map_err(TopologyError::netlink("reading link state"))?
    {
        state = link.attributes.into_iter().find_map(|attr| match attr {
            LinkAttribute::OperState(s) => Some(s),
            _ => None,
        });
    }
    Ok(state)
}

/// `struct ethtool_value` from linux/ethtool.h.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Issues one legacy SIOCETHTOOL command and returns the `data` the kernel left in the value.
fn ethtool(socket: BorrowedFd<'_>, ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let mut value = EthtoolValue { cmd, data };
    // SAFETY: ifreq is plain old data, for which all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if ifname.len() >= request.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (dst, src) in request.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    request.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: the kernel reads the NUL-terminated name and reads/writes the ethtool_value the
    // request points to; both outlive the call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL as _, &mut request) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data)
}

/// Turns off TSO, GSO, scatter-gather and tx checksum offload, so that what the peer sees is
/// what a wire would carry: MSS-sized segments with complete checksums.
fn disable_offloads(socket: BorrowedFd<'_>, ifname: &str) -> Result<(), TopologyError> {
    let steps = [
        (ETHTOOL_STSO, "TSO"),
        (ETHTOOL_SGSO, "GSO"),
        (ETHTOOL_SSG, "scatter-gather"),
        (ETHTOOL_STXCSUM, "tx checksum offload"),
    ];
    for (cmd, feature) in steps {
        ethtool(socket, ifname, cmd, 0)
            .map_err(|e| TopologyError::os(format!("turning off {feature} on {ifname}"), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;
    use rtnetlink::packet_core::{NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
    use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
    use rtnetlink::packet_route::link::LinkFlags;
    use rtnetlink::packet_route::nsid::{NsidAttribute, NsidMessage};
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;

    /// Hosts held at once are distinct (in this process, and through the abstract socket in
    /// any other), and a dropped claim frees its host.
    #[test]
    fn peer_hosts_held_at_once_differ() {
        let held: Vec<HostClaim> = (0..40).map(|_| HostClaim::take()).collect();
        let hosts: HashSet<u8> = held.iter().map(|c| c.host).collect();
        assert_eq!(hosts.len(), held.len(), "{hosts:?}");
        assert!(held.iter().all(|c| c._socket.is_some()));
        let first = held[0].host;
        drop(held);
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(format!(
            "halfclose/peer-host/{first}"
        ))
        .unwrap();
        assert!(std::os::unix::net::UnixDatagram::bind_addr(&addr).is_ok());
    }

    fn runtime() -> Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .expect("tokio runtime")
    }

    /// Dumps the links and addresses of the caller's namespace.
    fn dump() -> (Vec<LinkMessage>, Vec<AddressMessage>) {
        let rt = runtime();
        let handle = {
            let _context = rt.enter();
            let (connection, handle, _) = rtnetlink::new_connection().expect("netlink socket");
            rt.spawn(connection);
            handle
        };
        rt.block_on(async {
            let links = handle
                .link()
                .get()
                .execute()
                .try_collect()
                .await
                .expect("link dump");
            let addrs = handle
                .address()
                .get()
                .execute()
                .try_collect()
                .await
                .expect("addr dump");
            (links, addrs)
        })
    }

    fn find_link<'a>(links: &'a [LinkMessage], name: &str) -> &'a LinkMessage {
        links
            .iter()
            .find(|l| {
                l.attributes
                    .contains(&LinkAttribute::IfName(name.to_owned()))
            })
            .unwrap_or_else(|| panic!("no link {name} in {links:#?}"))
    }

    fn assert_link(link: &LinkMessage, index: u32, mac: [u8; 6]) {
        assert_eq!(link.header.index, index);
        assert!(link.header.flags.contains(LinkFlags::Up), "{link:?} not up");
        assert!(
            link.attributes
                .contains(&LinkAttribute::Address(mac.to_vec())),
            "{link:?}"
        );
        assert!(
            link.attributes
                .contains(&LinkAttribute::OperState(State::Up)),
            "{link:?}"
        );
    }

    /// (address, prefix) pairs configured on `index`.
    fn addresses_on(addrs: &[AddressMessage], index: u32) -> Vec<(IpAddr, u8)> {
        addrs
            .iter()
            .filter(|a| a.header.index == index)
            .filter_map(|a| {
                a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Address(ip) => Some((*ip, a.header.prefix_len)),
                    _ => None,
                })
            })
            .collect()
    }

    fn netns_inode_of_thread() -> u64 {
        fs::metadata("/proc/thread-self/ns/net")
            .expect("own netns")
            .ino()
    }

    fn netns_inode(fd: BorrowedFd<'_>) -> u64 {
        nix::sys::stat::fstat(fd).expect("fstat netns fd").st_ino
    }

    #[test]
    fn link_has_names_macs_addresses_and_is_up() {
        let own_ns = netns_inode_of_thread();
        let topo = Topology::create(&[]).expect("topology");
        assert_eq!(netns_inode_of_thread(), own_ns, "caller's thread moved");

        let (links, addrs) = topo.run_in_sut(dump).unwrap();
        assert_link(find_link(&links, SUT_IFNAME), topo.sut_ifindex(), SUT_MAC);
        let on_sut = addresses_on(&addrs, topo.sut_ifindex());
        assert!(on_sut.contains(&(SUT_V4.into(), 24)), "{on_sut:?}");
        assert!(on_sut.contains(&(SUT_V6.into(), 64)), "{on_sut:?}");
        let v6 = addrs
            .iter()
            .find(|a| {
                a.attributes
                    .contains(&AddressAttribute::Address(SUT_V6.into()))
            })
            .unwrap();
        assert!(
            !v6.header.flags.contains(AddressHeaderFlags::Tentative),
            "{v6:?}"
        );

        let (links, addrs) = topo.run_in_peer(dump).unwrap();
        assert_link(
            find_link(&links, PEER_IFNAME),
            topo.peer_ifindex(),
            PEER_MAC,
        );
        assert!(
            addrs.is_empty(),
            "peer namespace must have no address at all: {addrs:?}"
        );
    }

    #[test]
    fn offloads_are_off_on_the_sut_end() {
        let topo = Topology::create(&[]).unwrap();
        let query = |ifname: &'static str, cmds: &'static [u32]| {
            move || {
                let sock = socket(
                    AddressFamily::Inet,
                    SockType::Datagram,
                    SockFlag::SOCK_CLOEXEC,
                    None,
                )
                .unwrap();
                cmds.iter()
                    .map(|&cmd| ethtool(sock.as_fd(), ifname, cmd, 0).unwrap())
                    .collect()
            }
        };
        let sut: Vec<u32> = topo
            .run_in_sut(query(
                SUT_IFNAME,
                &[ETHTOOL_GTXCSUM, ETHTOOL_GSG, ETHTOOL_GTSO, ETHTOOL_GGSO],
            ))
            .unwrap();
        assert_eq!(sut, [0, 0, 0, 0], "tx-csum, sg, tso, gso on hc-sut");
        // GRO on the receiving end would merge segments before the capture socket sees them.
        let gro: Vec<u32> = topo
            .run_in_peer(query(PEER_IFNAME, &[ETHTOOL_GGRO]))
            .unwrap();
        assert_eq!(gro, [0], "gro on hc-peer");
    }

    #[test]
    fn script_sysctls_apply_to_the_sut_only() {
        let script = [("net.ipv4.tcp_fin_timeout".to_owned(), "3".to_owned())];
        let topo = Topology::create(&script).unwrap();
        let read = |key: &'static str| move || read_sysctl(key).unwrap();
        assert_eq!(
            topo.run_in_sut(read("net.ipv4.tcp_fin_timeout")).unwrap(),
            "3"
        );
        assert_eq!(
            topo.run_in_peer(read("net.ipv4.tcp_fin_timeout")).unwrap(),
            "60"
        );
        assert_eq!(
            topo.run_in_sut(read("net.ipv6.conf.hc-sut.accept_dad"))
                .unwrap(),
            "0"
        );
        assert_eq!(
            topo.run_in_sut(read("net.ipv6.conf.hc-sut.router_solicitations"))
                .unwrap(),
            "0"
        );
        assert_eq!(
            topo.run_in_peer(read("net.ipv6.conf.hc-peer.disable_ipv6"))
                .unwrap(),
            "1"
        );
    }

    #[test]
    fn bad_sysctls_are_named() {
        let unknown = [("net.ipv4.tcp_no_such_knob".to_owned(), "1".to_owned())];
        let err = Topology::create(&unknown).unwrap_err();
        assert!(
            matches!(err, TopologyError::UnknownSysctl { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("net.ipv4.tcp_no_such_knob"),
            "{err}"
        );

        let refused = [("net.ipv4.tcp_fin_timeout".to_owned(), "banana".to_owned())];
        let err = Topology::create(&refused).unwrap_err().to_string();
        assert!(
            err.contains("net.ipv4.tcp_fin_timeout") && err.contains("banana"),
            "{err}"
        );

        for key in ["kernel.hostname", "net..ipv4", "net.ipv4/../x"] {
            let err = Topology::create(&[(key.to_owned(), "1".to_owned())]).unwrap_err();
            assert!(
                matches!(err, TopologyError::InvalidSysctl { .. }),
                "{key}: {err:?}"
            );
        }
        assert!(sysctl_exists("net.ipv4.tcp_fin_timeout"));
        assert!(!sysctl_exists("net.ipv4.tcp_no_such_knob"));
        assert!(!sysctl_exists("kernel.hostname"));
    }

    #[test]
    fn a_refused_congestion_control_says_why() {
        let allowed = read_sysctl("net.ipv4.tcp_allowed_congestion_control").unwrap();
        let available = read_sysctl("net.ipv4.tcp_available_congestion_control").unwrap();
        let Some(restricted) = available
            .split_whitespace()
            .find(|a| !allowed.split_whitespace().any(|x| x == *a))
        else {
            eprintln!("skipped: every available algorithm is allowed ({available})");
            return;
        };
        let script = [(
            "net.ipv4.tcp_congestion_control".to_owned(),
            restricted.to_owned(),
        )];
        let err = Topology::create(&script).unwrap_err().to_string();
        assert!(
            err.contains("tcp_allowed_congestion_control") && err.contains(&allowed),
            "{err}"
        );
        assert!(!err.contains("run as root"), "{err}");
        let script = [(
            "net.ipv4.tcp_congestion_control".to_owned(),
            "no-such-cc".to_owned(),
        )];
        let err = Topology::create(&script).unwrap_err().to_string();
        assert!(err.contains("no such algorithm"), "{err}");
        // An allowed one is simply set.
        let first = allowed.split_whitespace().next().unwrap().to_owned();
        let script = [("net.ipv4.tcp_congestion_control".to_owned(), first.clone())];
        let topo = Topology::create(&script).unwrap();
        let now = topo
            .run_in_sut(|| read_sysctl("net.ipv4.tcp_congestion_control").unwrap())
            .unwrap();
        assert_eq!(now, first);
    }

    #[test]
    fn permission_errors_say_what_to_do() {
        let err = TopologyError::os("creating a network namespace", Errno::EPERM).to_string();
        assert!(err.contains("needs CAP_NET_ADMIN: run as root"), "{err}");
        let err = TopologyError::os("creating a network namespace", Errno::ENOMEM).to_string();
        assert!(!err.contains("CAP_NET_ADMIN"), "{err}");
    }

    #[test]
    fn threads_run_in_the_right_namespace() {
        let topo = Topology::create(&[]).unwrap();
        let (sut, peer) = (netns_inode(topo.sut_ns()), netns_inode(topo.peer_ns()));
        assert_ne!(sut, peer);
        assert_eq!(topo.run_in_sut(netns_inode_of_thread).unwrap(), sut);
        assert_eq!(topo.run_in_peer(netns_inode_of_thread).unwrap(), peer);
        let spawned = topo
            .spawn_in_peer("hc-test-rx", netns_inode_of_thread)
            .unwrap();
        assert_eq!(spawned.join().unwrap(), peer);
        let spawned = topo
            .spawn_in_sut("hc-test-sut", netns_inode_of_thread)
            .unwrap();
        assert_eq!(spawned.join().unwrap(), sut);
    }

    /// Asks the observer's namespace to give `netns` the id `id`. Ids hold no reference, and
    /// the kernel deletes them (notifying RTM_DELNSID) only when it destroys the namespace.
    async fn assign_nsid(handle: &Handle, netns: BorrowedFd<'_>, id: i32) {
        let mut msg = NsidMessage::default();
        msg.attributes = vec![
            NsidAttribute::Fd(netns.as_raw_fd() as u32),
            NsidAttribute::Id(id),
        ];
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewNsId(msg));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        let mut replies = handle.clone().request(req).expect("RTM_NEWNSID");
        while let Some(reply) = replies.next().await {
            if let NetlinkPayload::Error(e) = reply.payload {
                assert!(e.code.is_none(), "RTM_NEWNSID failed: {e}");
            }
        }
    }

    /// Sound check that dropping frees the namespaces in the kernel, not just our fds: an
    /// observer namespace assigns ids to both, and the kernel withdraws those ids (RTM_DELNSID)
    /// from `cleanup_net`, which only runs once the last reference of any kind is gone.
    #[test]
    fn namespaces_are_destroyed_after_drop() {
        let observed = on_thread("hc-observer", None, || {
            unshare(CloneFlags::CLONE_NEWNET).unwrap(); // keep ids out of the host namespace
            let rt = runtime();
            let (handle, mut events) = {
                let _context = rt.enter();
                let (connection, handle, events) =
                    rtnetlink::new_multicast_connection(&[MulticastGroup::Nsid]).unwrap();
                rt.spawn(connection);
                (handle, events)
            };
            let topo = Topology::create(&[]).unwrap();
            rt.block_on(async {
                assign_nsid(&handle, topo.sut_ns(), 1).await;
                assign_nsid(&handle, topo.peer_ns(), 2).await;
                drop(topo);
                let mut alive: HashSet<i32> = HashSet::from([1, 2]);
                let deleted = async {
                    while let Some((msg, _)) = events.next().await {
                        if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelNsId(m)) =
                            msg.payload
                        {
                            for attr in m.attributes {
                                if let NsidAttribute::Id(id) = attr {
                                    alive.remove(&id);
                                }
                            }
                        }
                        if alive.is_empty() {
                            break;
                        }
                    }
                };
                let started = Instant::now();
                let outcome = tokio::time::timeout(Duration::from_secs(20), deleted).await;
                (outcome.is_ok(), started.elapsed())
            })
        })
        .unwrap();
        eprintln!("both namespaces destroyed {:?} after drop", observed.1);
        assert!(observed.0, "namespaces still alive 20 s after drop");
    }

    #[test]
    fn create_and_drop_timing() {
        const RUNS: usize = 200;
        let mut samples: Vec<Duration> = (0..RUNS)
            .map(|_| {
                let started = Instant::now();
                drop(Topology::create(&[]).unwrap());
                started.elapsed()
            })
            .collect();
        samples.sort();
        eprintln!(
            "create+drop over {RUNS} runs: median {:?}, p99 {:?}, max {:?}",
            samples[RUNS / 2],
            samples[RUNS * 99 / 100],
            samples[RUNS - 1]
        );
    }
}
