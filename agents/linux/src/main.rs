//! halfclose-linux-agent: the agent for a Linux kernel (docs/agent-protocol.md). It makes the
//! scenario's socket calls with real system calls, through the very code halfclose's kernel
//! driver uses (`halfclose::sut::kernel::execute`), and reads states and timers from
//! sock_diag (`halfclose::observe::Observer`), so a kernel it runs on — another host's,
//! user-mode Linux's — is tested exactly as the local one is.
//!
//! Its hello says `"link": "netns"`: its stack is the kernel of the network namespace it runs
//! in. Started by halfclose for a local trial, that is the trial's SUT namespace. With
//! `--iface IF` (another host, reached with `--peer-iface`) it makes a namespace of its own
//! first, with a macvlan on IF as the SUT's interface: see [`netns`].

mod netns;
mod session;

use std::io::{BufReader, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use halfclose::sut::agent::{CALLS, GETSOCKOPTS, IOCTLS, SHUTDOWN, SOCKOPTS};
use serde_json::{json, Value};

const USAGE: &str = "usage: halfclose-linux-agent [--netns PATH] [--iface IF]
  --netns PATH   enter the network namespace at PATH first (e.g. /proc/PID/ns/net)
  --iface IF     run in a network namespace of its own whose interface is a macvlan on IF
                 (for a host reached with halfclose's --peer-iface; needs CAP_NET_ADMIN)
Speaks docs/agent-protocol.md on stdin/stdout.";

/// What the command line asks for.
#[derive(Default)]
struct Opts {
    netns: Option<String>,
    iface: Option<String>,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--netns" => o.netns = Some(value()?),
            "--iface" => o.iface = Some(value()?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("halfclose-linux-agent: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Namespaces first, while this is the only thread (a thread made later stays behind).
    let sut = match netns::enter(opts.netns.as_deref(), opts.iface.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("halfclose-linux-agent: {e}");
            return ExitCode::from(1);
        }
    };
    let out = Output::default();
    out.line(&hello());
    let mut session = match session::Session::new(out.clone(), sut) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("halfclose-linux-agent: sock_diag: {e}");
            return ExitCode::from(1);
        }
    };
    let mut stdin = BufReader::new(std::io::stdin().lock());
    loop {
        let line = match halfclose::sut::agent::read_line(&mut stdin) {
            Ok(Some(line)) => line,
            Ok(None) => break,
            // A line past the protocol's limit is answered, as every agent answers it, and
            // the rest of it skipped: bad input never stops an agent.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                if skip_line(&mut stdin).is_err() {
                    return ExitCode::from(1);
                }
                out.line(&json!({"id": null, "error": "EPROTO", "message": e.to_string()}));
                continue;
            }
            Err(e) => {
                eprintln!("halfclose-linux-agent: stdin: {e}");
                return ExitCode::from(1);
            }
        };
        if !session.handle(&line) {
            break;
        }
    }
    ExitCode::SUCCESS
}

/// Reads past the end of the current line (or to EOF).
fn skip_line(r: &mut impl std::io::BufRead) -> std::io::Result<()> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    }
}

/// The capabilities: every call and option the kernel driver has, timers, sysctls.
fn hello() -> Value {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".into());
    json!({"hello": {
        "protocol": 1,
        "agent": "halfclose-linux-agent",
        "stack": format!("linux {release}"),
        // Every call, shutdown mode, option, ioctl and getsockopt protocol 1 has: the kernel
        // driver makes them all.
        "calls": CALLS,
        "shutdown": SHUTDOWN,
        "sockopts": SOCKOPTS,
        "ioctls": IOCTLS,
        "getsockopts": GETSOCKOPTS,
        "timers": true,
        "time_wait_ms": 60000,
        "link": "netns",
        "sysctls": true,
        "ipv4_mapped": true,
    }})
}

/// stdout, shared by the threads that answer blocking calls: one whole line at a time.
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<()>>);

impl Output {
    pub fn line(&self, v: &Value) {
        let _guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{v}").and_then(|_| out.flush());
    }
}
