//! Where the agent's kernel meets the peer.
//!
//! Started by halfclose for a local trial, the agent is already in the trial's SUT namespace,
//! whose interface has the SUT's MAC and addresses: nothing to do. On another host
//! (`--iface IF`, for halfclose's `--peer-iface`) it must not touch the host's own
//! configuration, and each trial needs a kernel state of its own (a TIME_WAIT socket of the
//! last trial would hold the port the next one binds). So it makes a network namespace of its
//! own with one interface, `hc-sut`: a macvlan on IF with the SUT's MAC, and
//! the addresses `configure` names. The namespace, and the macvlan in it, end with the agent
//! process, however it ends; only while the macvlan is made and moved (two `ip` commands) is
//! there anything in the host's namespace to leave behind.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::{setns, unshare, CloneFlags};

/// The SUT interface's name in the agent's own namespace (as in halfclose's topology).
const SUT_IFNAME: &str = "hc-sut";

/// What `configure` must still do.
pub enum Sut {
    /// The namespace halfclose made: interface and addresses are there.
    Ready,
    /// Our own namespace: `configure` adds the addresses to `hc-sut`.
    Own,
}

/// Enters `netns` (a path such as /proc/PID/ns/net) if given, then with `iface` makes and
/// enters a namespace of its own (see the module comment). Must run while the process has
/// one thread: a namespace is the thread's.
pub fn enter(netns: Option<&str>, iface: Option<&str>) -> Result<Sut, String> {
    if let Some(path) = netns {
        let ns = File::open(path).map_err(|e| format!("--netns {path}: {e}"))?;
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| format!("--netns {path}: {e}"))?;
    }
    match iface {
        None => Ok(Sut::Ready),
        Some(iface) => own(iface).map(|()| Sut::Own),
    }
}

fn own(iface: &str) -> Result<(), String> {
    let here = File::open("/proc/thread-self/ns/net").map_err(|e| format!("own netns: {e}"))?;
    // A name of this process, so agents of two halfclose runs on one host do not collide.
    let temp = format!("hc{}", std::process::id());
    let mac = halfclose::topology::SUT_MAC
        .map(|b| format!("{b:02x}"))
        .join(":");
    ip(&[
        "link", "add", &temp, "link", iface, "address", &mac, "type", "macvlan", "mode", "bridge",
    ])?;
    let moved = unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("a network namespace of its own: {e}"))
        .and_then(|()| {
            // From the host's namespace into ours: `ip` runs there, names this process.
            let pid = std::process::id().to_string();
            let mut cmd = Command::new("ip");
            cmd.args(["link", "set", &temp, "netns", &pid]);
            let fd = here.as_raw_fd();
            // SAFETY: setns(2) only, between fork and exec.
            unsafe {
                cmd.pre_exec(move || match libc::setns(fd, libc::CLONE_NEWNET) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
            run(cmd)
        });
    if let Err(e) = moved {
        // Still in the host's namespace, or back there: take the macvlan away again.
        let mut del = Command::new("ip");
        del.args(["link", "del", &temp]);
        let fd = here.as_raw_fd();
        // SAFETY: as above.
        unsafe {
            del.pre_exec(move || match libc::setns(fd, libc::CLONE_NEWNET) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            });
        }
        let _ = del.status();
        return Err(e);
    }
    // No DAD probes or router solicitations in the captures, as in halfclose's topology.
    for key in ["accept_dad", "router_solicitations"] {
        for scope in ["all", "default", temp.as_str()] {
            let _ = halfclose::topology::write_sysctl(&format!("net.ipv6.conf.{scope}.{key}"), "0");
        }
    }
    // Offloads are the lower device's business: a macvlan hands its segments to IF, which
    // segments and checksums them unless it does so in hardware (a NIC does; a veth standing
    // in for the link needs TSO, GSO and tx checksum offload off, as halfclose's own has).
    ip(&["link", "set", &temp, "name", SUT_IFNAME])?;
    ip(&["link", "set", "lo", "up"])?;
    ip(&["link", "set", SUT_IFNAME, "up"])
}

/// Adds the SUT's addresses (`192.0.2.1/24`, …) to its interface; IPv6 ones only while IPv6
/// is on (an IPv4 trial's sysctls turn it off).
pub fn add_addrs(addrs: &[String]) -> Result<(), String> {
    let v6_off = std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6")
        .map_or(true, |v| v.trim() != "0");
    for a in addrs {
        if a.contains(':') && v6_off {
            continue;
        }
        let mut args = vec!["addr", "add", a.as_str(), "dev", SUT_IFNAME];
        if a.contains(':') {
            args.push("nodad");
        }
        ip(&args)?;
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    run(cmd)
}

fn run(mut cmd: Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("{shown}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{shown}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}
