//! Getting the privileges trials need, without asking for more than necessary.
//!
//! A trial creates network namespaces, configures links over netlink, writes /proc/sys/net and
//! opens AF_PACKET sockets: CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_NET_RAW. Root has them. Anyone
//! else can get them over private namespaces by entering a user namespace of their own, in which
//! they are root: every network namespace created later then belongs to that user namespace.
//! The kernel only lets a single-threaded process do that, hence [`ensure`] must run first
//! thing in `main()`.
//!
//! Such network namespaces are not quite those root makes: the kernel hides a few sysctls in
//! them (most of `net.ipv6.route.*`, `net.core.xfrm_*`). Scripts are still checked against the
//! host's view (so `check` and `run` agree), and a trial whose sysctl its namespace would lack
//! is skipped with that reason: see `topology::sysctl_unavailable`.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};

use nix::errno::Errno;
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{getgid, getuid};

/// Capability numbers from linux/capability.h.
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const NEEDED_CAPS: [u32; 3] = [CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN];

const ADVICE: &str = "run as root, or allow unprivileged user namespaces \
    (kernel.unprivileged_userns_clone=1 where that sysctl exists, a non-zero \
    user.max_user_namespaces, and kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu)";

/// How the process got its privileges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Already had CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN (root, or root of a container).
    Root,
    /// Entered a private user namespace as its root (the process stays in the host's network
    /// namespace, with no power over it; trials make their own).
    UserNamespace,
}

/// Why the process cannot get the privileges it needs.
#[derive(Debug)]
pub enum PrivilegeError {
    /// /proc/self/status or /proc/self/task could not be read.
    Proc {
        path: &'static str,
        source: io::Error,
    },
    /// The process already runs several threads, which rules out a new user namespace.
    Multithreaded { threads: usize },
    /// The kernel refused the new user namespace.
    Unshare { errno: Errno },
    /// The user namespace exists but its id maps could not be written.
    IdMap {
        path: &'static str,
        source: io::Error,
    },
}

impl fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivilegeError::Proc { path, source } => {
                write!(
                    f,
                    "cannot check privileges: reading {path} failed: {source}"
                )
            }
            PrivilegeError::Multithreaded { threads } => write!(
                f,
                "lacking CAP_NET_ADMIN, CAP_SYS_ADMIN or CAP_NET_RAW, and cannot enter a user \
                 namespace because the process already has {threads} threads: call \
                 privilege::ensure() first thing in main(), or run as root"
            ),
            PrivilegeError::Unshare { errno } => write!(
                f,
                "lacking CAP_NET_ADMIN, CAP_SYS_ADMIN or CAP_NET_RAW, and the kernel refused a \
                 user namespace (unshare(CLONE_NEWUSER) failed with {errno}): {ADVICE}"
            ),
            PrivilegeError::IdMap { path, source } => write!(
                f,
                "entered a user namespace but writing {path} failed ({source}): {ADVICE}"
            ),
        }
    }
}

impl std::error::Error for PrivilegeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PrivilegeError::Proc { source, .. } | PrivilegeError::IdMap { source, .. } => {
                Some(source)
            }
            PrivilegeError::Unshare { errno } => Some(errno),
            PrivilegeError::Multithreaded { .. } => None,
        }
    }
}

/// Call first thing in `main()`, while the process is still single-threaded.
///
/// With CAP_NET_ADMIN, CAP_SYS_ADMIN and CAP_NET_RAW in the current user namespace (root):
/// `Ok(Mode::Root)`, changing nothing. Otherwise the process enters a new user namespace,
/// mapping its own uid and gid to 0 there: `Ok(Mode::UserNamespace)`. It stays in the host's
/// network namespace, so /proc/sys/net still shows what the kernel has (script checks see the
/// same sysctls as `halfclose check`); trial namespaces created from now on belong to the new
/// user namespace, in which the process has every capability.
pub fn ensure() -> Result<Mode, PrivilegeError> {
    if has_needed_caps(effective_caps()?) {
        return Ok(Mode::Root);
    }
    let threads = thread_count()?;
    if threads != 1 {
        return Err(PrivilegeError::Multithreaded { threads });
    }
    // Read before unsharing: until the maps exist the ids read as the overflow id (65534).
    let (uid, gid) = (getuid(), getgid());
    // The kernel checks the single-thread rule itself too; we only checked to explain it.
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|errno| PrivilegeError::Unshare { errno })?;
    // An unprivileged process may map only its own ids, and may write gid_map only after
    // giving up setgroups (otherwise it could drop supplementary groups used to deny access).
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", &format!("0 {uid} 1"))?;
    write_proc("/proc/self/gid_map", &format!("0 {gid} 1"))?;
    Ok(Mode::UserNamespace)
}

/// Whether the process is in the initial user namespace (the host's root or an ordinary
/// user), rather than one it or a container entered: its uid map is the identity.
pub fn in_initial_user_namespace() -> bool {
    fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
}

/// The effective capability set, relative to the current user namespace.
fn effective_caps() -> Result<u64, PrivilegeError> {
    const PATH: &str = "/proc/self/status";
    let status =
        fs::read_to_string(PATH).map_err(|source| PrivilegeError::Proc { path: PATH, source })?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| PrivilegeError::Proc {
            path: PATH,
            source: io::Error::new(io::ErrorKind::InvalidData, "no readable CapEff line"),
        })
}

fn has_needed_caps(caps: u64) -> bool {
    NEEDED_CAPS.iter().all(|cap| caps & (1 << cap) != 0)
}

fn thread_count() -> Result<usize, PrivilegeError> {
    const PATH: &str = "/proc/self/task";
    let proc_error = |source| PrivilegeError::Proc { path: PATH, source };
    fs::read_dir(PATH)
        .map_err(proc_error)?
        .try_fold(0, |n, entry| entry.map(|_| n + 1))
        .map_err(proc_error)
}

/// Writes a /proc/self file in one write(), as the id-map files require.
fn write_proc(path: &'static str, content: &str) -> Result<(), PrivilegeError> {
    let map_error = |source| PrivilegeError::IdMap { path, source };
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(map_error)?;
    file.write_all(content.as_bytes()).map_err(map_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{read_sysctl, Topology};
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, geteuid, setgroups, setresgid, setresuid, ForkResult, Gid, Uid};

    const NOBODY: u32 = 65534;

    #[test]
    fn capability_bits() {
        assert!(has_needed_caps(0x3f_ffff_ffff));
        assert!(!has_needed_caps(1 << CAP_NET_ADMIN | 1 << CAP_NET_RAW));
        assert!(!has_needed_caps(0));
    }

    #[test]
    fn root_needs_nothing_more() {
        if !geteuid().is_root() {
            eprintln!("skipped: not running as root");
            return;
        }
        assert_eq!(ensure().unwrap(), Mode::Root);
    }

    #[test]
    fn errors_say_what_to_do() {
        let err = PrivilegeError::Unshare {
            errno: Errno::EPERM,
        }
        .to_string();
        assert!(
            err.contains("EPERM") && err.contains("run as root"),
            "{err}"
        );
        let err = PrivilegeError::Multithreaded { threads: 3 }.to_string();
        assert!(
            err.contains("3 threads") && err.contains("first thing in main"),
            "{err}"
        );
    }

    /// The real unprivileged path: a forked child (single-threaded, as `main` would be) drops
    /// to nobody, then must get a user namespace and build a working topology in it.
    #[test]
    fn unprivileged_user_gets_a_working_topology() {
        // Root inside a user namespace (an unprivileged `cargo test`) cannot become nobody.
        if !geteuid().is_root() || !in_initial_user_namespace() {
            eprintln!("skipped: needs the host's root to become another user");
            return;
        }
        // SAFETY: the child only runs `unprivileged_child` and leaves with _exit; glibc keeps
        // malloc usable after fork, and an alarm kills the child should it ever deadlock.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                // SAFETY: alarm and _exit are async-signal-safe.
                unsafe { libc::alarm(30) };
                let code = match unprivileged_child() {
                    Ok(()) => 0,
                    Err(message) => {
                        let line = format!("unprivileged child: {message}\n");
                        // SAFETY: raw write to stderr, bypassing the harness's output capture.
                        unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
                        1
                    }
                };
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                let status = waitpid(child, None).expect("waitpid");
                assert_eq!(
                    status,
                    WaitStatus::Exited(child, 0),
                    "see the child's stderr"
                );
            }
        }
    }

    fn unprivileged_child() -> Result<(), String> {
        let nobody = (Uid::from_raw(NOBODY), Gid::from_raw(NOBODY));
        setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
        setresgid(nobody.1, nobody.1, nobody.1).map_err(|e| format!("setresgid: {e}"))?;
        setresuid(nobody.0, nobody.0, nobody.0).map_err(|e| format!("setresuid: {e}"))?;
        // Changing uid made the process non-dumpable, which makes /proc/self/uid_map owned by
        // the real root; a normally exec'd unprivileged program is dumpable, so restore that.
        nix::sys::prctl::set_dumpable(true).map_err(|e| format!("set_dumpable: {e}"))?;

        let mode = ensure().map_err(|e| e.to_string())?;
        if mode != Mode::UserNamespace {
            return Err(format!("expected a user namespace, got {mode:?}"));
        }
        let script = [("net.ipv4.tcp_fin_timeout".to_owned(), "3".to_owned())];
        let topo = Topology::create(&script).map_err(|e| e.to_string())?;
        let fin = topo
            .run_in_sut(|| read_sysctl("net.ipv4.tcp_fin_timeout"))
            .and_then(|r| r)
            .map_err(|e| e.to_string())?;
        if fin != "3" {
            return Err(format!("tcp_fin_timeout reads {fin} in the SUT namespace"));
        }
        // Scripts are checked against the host's sysctls, as `halfclose check` sees them; one
        // the kernel hides in a user namespace's network namespaces is named as unavailable.
        // (A key no other test probes: the answers are cached per process, and forked.)
        let hidden = "net.ipv6.route.gc_timeout";
        if !crate::topology::sysctl_exists(hidden) {
            return Err(format!(
                "{hidden} is not visible in the host's view any more"
            ));
        }
        match crate::topology::sysctl_unavailable(hidden) {
            Some(why) if why.contains("unprivileged") => {}
            other => return Err(format!("{hidden}: unavailable {other:?}")),
        }
        if let Some(why) = crate::topology::sysctl_unavailable("net.ipv4.tcp_fin_timeout") {
            return Err(format!("tcp_fin_timeout unavailable: {why}"));
        }
        Ok(())
    }
}
