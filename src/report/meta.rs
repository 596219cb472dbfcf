//! What a report says about the run itself: when, where, against what, how it was asked for.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::runner::Stack;

/// One run of the suite (a shard of one, when `--shard` split it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// halfclose's version.
    pub halfclose: String,
    /// When the run started, RFC 3339 (UTC).
    pub started: String,
    /// Wall time of the whole run.
    pub seconds: f64,
    pub hostname: String,
    /// `uname -srvm`.
    pub kernel: String,
    /// `linux`, or the first word of the agent's stack.
    pub stack: String,
    /// The agent and what its hello said, for an agent SUT.
    pub agent: Option<AgentMeta>,
    /// `root` (the initial user namespace), or `user namespace` (an unprivileged run, or a
    /// container's root).
    pub privilege: String,
    /// Host sysctls that shape what a run can observe (the trials' own namespaces get the
    /// kernel's defaults plus what each script sets).
    pub sysctls: BTreeMap<String, String>,
    /// The command line.
    pub args: Vec<String>,
    /// `k/n` when this run is one shard of a split suite.
    pub shard: Option<String>,
    /// How many of the report's trials are this run's (a merged report lists each run's
    /// trials in the order of `runs`).
    pub trials: usize,
}

/// An agent SUT: the command halfclose started and the capabilities of its hello.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentMeta {
    pub command: Vec<String>,
    pub agent: String,
    pub stack: String,
    pub calls: Vec<String>,
    pub shutdown: Vec<String>,
    pub sockopts: Vec<String>,
    pub timers: bool,
}

/// Host sysctls a report records.
const SYSCTLS: &[&str] = &[
    "kernel.perf_event_paranoid",
    "user.max_user_namespaces",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_fin_timeout",
];

impl RunMeta {
    /// The run starting now against `stack`.
    pub fn start(stack: &Stack, shard: Option<String>) -> (RunMeta, SystemTime) {
        let now = SystemTime::now();
        let agent = stack.agent.as_ref().map(|(cmd, hello)| AgentMeta {
            command: cmd.clone(),
            agent: hello.agent.clone(),
            stack: hello.stack.clone(),
            calls: hello.calls.clone(),
            shutdown: hello.shutdown.clone(),
            sockopts: hello.sockopts.clone(),
            timers: hello.timers,
        });
        let meta = RunMeta {
            halfclose: env!("CARGO_PKG_VERSION").to_string(),
            started: rfc3339(now),
            seconds: 0.0,
            hostname: hostname(),
            kernel: kernel(),
            stack: stack.short_name().to_string(),
            agent,
            privilege: if crate::privilege::in_initial_user_namespace() {
                "root"
            } else {
                "user namespace"
            }
            .to_string(),
            sysctls: SYSCTLS
                .iter()
                .filter_map(|k| Some((k.to_string(), crate::topology::read_sysctl(k).ok()?)))
                .collect(),
            args: std::env::args().collect(),
            shard,
            trials: 0,
        };
        (meta, now)
    }

    /// The run as finished now.
    pub fn finish(mut self, started: SystemTime) -> RunMeta {
        self.seconds = started.elapsed().map_or(0.0, |d| d.as_secs_f64());
        self
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn uname() -> Option<libc::utsname> {
    // SAFETY: utsname is plain data that uname fills in.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname.
    (unsafe { libc::uname(&mut u) } == 0).then_some(u)
}

fn field(f: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = f
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn hostname() -> String {
    uname().map_or_else(|| "unknown".into(), |u| field(&u.nodename))
}

fn kernel() -> String {
    uname().map_or_else(
        || "unknown".into(),
        |u| {
            [&u.sysname[..], &u.release, &u.version, &u.machine]
                .map(field)
                .join(" ")
        },
    )
}
