//! Drives an agent binary over its stdin/stdout protocol.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(5);

pub struct Agent {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Value>,
    /// Asynchronous event lines seen so far, in order.
    pub events: Vec<Value>,
    /// Replies that arrived while waiting for another id.
    replies: Vec<Value>,
    next_id: u64,
}

impl Agent {
    /// Starts the agent and returns it together with its hello.
    pub fn spawn(mut cmd: Command) -> (Agent, Value) {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn agent");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        // A reader thread so that waits can time out instead of hanging the test.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("agent wrote non-JSON {line:?}: {e}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let mut agent = Agent {
            child,
            stdin,
            lines,
            events: Vec::new(),
            replies: Vec::new(),
            next_id: 1,
        };
        let hello = agent.next_line().expect("hello");
        (agent, hello)
    }

    /// The agent binary of the package whose tests these are (the gVisor agent's tests
    /// share this file; each package's binary is named after it).
    pub fn bin() -> Command {
        Command::new(env!(concat!("CARGO_BIN_EXE_", env!("CARGO_PKG_NAME"))))
    }

    fn next_line(&mut self) -> Option<Value> {
        self.lines.recv_timeout(TIMEOUT).ok()
    }

    pub fn send_raw(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Sends a command with a fresh id, without waiting; returns the id.
    pub fn send(&mut self, mut cmd: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        cmd["id"] = json!(id);
        self.send_raw(&cmd.to_string());
        id
    }

    /// The reply line for `id` (as a JSON Value with `id` and `ok` or `error`).
    pub fn reply(&mut self, id: u64) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(i) = self.replies.iter().position(|r| r["id"] == json!(id)) {
                return self.replies.remove(i);
            }
            assert!(Instant::now() < deadline, "no reply to id {id}");
            self.pump();
        }
    }

    /// The next reply line, whatever its id (malformed input gets `"id":null`).
    pub fn any_reply(&mut self) -> Value {
        loop {
            if !self.replies.is_empty() {
                return self.replies.remove(0);
            }
            self.pump();
        }
    }

    fn pump(&mut self) {
        let line = self.next_line().expect("agent went silent");
        if line.get("event").is_some() {
            self.events.push(line);
        } else {
            self.replies.push(line);
        }
    }

    /// Sends a command and expects `ok`; returns the ok value.
    pub fn ok(&mut self, cmd: Value) -> Value {
        let id = self.send(cmd.clone());
        let r = self.reply(id);
        assert!(r.get("ok").is_some(), "{cmd} failed: {r}");
        r["ok"].clone()
    }

    /// Sends a command and expects an error; returns the errno name.
    pub fn err(&mut self, cmd: Value) -> String {
        let id = self.send(cmd.clone());
        let r = self.reply(id);
        r["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{cmd} did not fail: {r}"))
            .to_string()
    }

    /// Sends quit and waits for the agent to exit.
    pub fn quit(mut self) -> ExitStatus {
        assert_eq!(self.ok(json!({"cmd": "quit"})), Value::Null);
        self.child.wait().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What every agent answers to bad lines before any TAP: not JSON is EPROTO with no id, an
/// unknown command ENOSYS, `configure` without HALFCLOSE_TAP_FD ENODEV; then the agent still
/// hands out its first descriptor, 3.
pub fn bad_lines_are_answered(agent: &mut Agent) {
    agent.send_raw("this is not json");
    let r = agent.any_reply();
    assert_eq!(
        (r["id"].clone(), r["error"].clone()),
        (json!(null), json!("EPROTO")),
        "{r}"
    );
    agent.send_raw(r#"{"id":41,"cmd":"frobnicate"}"#);
    let r = agent.reply(41);
    assert_eq!(r["error"], "ENOSYS");
    assert_eq!(r["message"], "unknown command `frobnicate`");
    let e = agent
        .err(json!({"cmd": "configure", "mac": "02:00:00:00:00:01", "addrs": ["192.0.2.1/24"]}));
    assert_eq!(e, "ENODEV");
    assert_eq!(agent.ok(json!({"cmd": "socket", "family": "ipv4"})), 3);
}

/// A line past the protocol's 1 MiB is answered with EPROTO as soon as it passes the limit,
/// dropped to its end, and costs linear time; the next line is served as usual, and a line
/// of exactly 1 MiB is still a command (an unknown one).
pub fn an_overlong_line_is_refused_in_linear_time() {
    let (mut agent, _) = Agent::spawn(Agent::bin());
    let started = Instant::now();
    let mut long = String::from(r#"{"id":1,"cmd":""#);
    long.push_str(&"x".repeat(80 << 20));
    long.push_str(r#""}"#);
    agent.send_raw(&long);
    let r = agent.any_reply();
    assert_eq!(
        (r["id"].clone(), r["error"].clone()),
        (json!(null), json!("EPROTO")),
        "{r}"
    );
    assert!(
        r["message"].as_str().unwrap().contains("longer than 1 MiB"),
        "{r}"
    );
    assert_eq!(agent.ok(json!({"cmd": "socket", "family": "ipv4"})), 3);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "80 MiB took {took:?}");
    let mut big = String::from(r#"{"id":7,"cmd":"x"#);
    big.push_str(&"y".repeat((1 << 20) - big.len() - 2));
    big.push_str(r#""}"#);
    assert_eq!(big.len(), 1 << 20);
    agent.send_raw(&big);
    assert_eq!(agent.reply(7)["error"], "ENOSYS");
    assert!(agent.quit().success());
}

/// HALFCLOSE_TAP_FD naming something that is not a TAP device: a clear error and exit 2
/// at once, no panic, no hello.
pub fn a_tap_fd_that_is_no_tap_is_a_clear_error(bin: &str) {
    let not_a_tap =
        std::env::temp_dir().join(format!("halfclose-agent-not-a-tap-{}", std::process::id()));
    for (fd, redirect, says) in [
        (
            "1",
            String::new(),
            "HALFCLOSE_TAP_FD=1 is standard output, not a TAP device",
        ),
        ("0", String::new(), "HALFCLOSE_TAP_FD=0 is standard input"),
        (
            "5",
            "5</dev/zero".to_string(),
            "HALFCLOSE_TAP_FD=5 is not a TAP device",
        ),
        (
            "5",
            format!("5>{}", not_a_tap.display()),
            "HALFCLOSE_TAP_FD=5 is not a TAP device",
        ),
        (
            "9",
            String::new(),
            "HALFCLOSE_TAP_FD=9: no such open file descriptor",
        ),
        ("x", String::new(), "is not a file descriptor number"),
    ] {
        let started = Instant::now();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("exec \"$0\" {redirect} </dev/null"))
            .arg(bin)
            .env("HALFCLOSE_TAP_FD", fd)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&not_a_tap);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{fd} {redirect}: {err}");
        assert!(err.contains(says), "{fd} {redirect}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty(), "no hello before the error");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
