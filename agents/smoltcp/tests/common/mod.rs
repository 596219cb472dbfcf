//! Drives the agent binary over its stdin/stdout protocol.

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

    pub fn bin() -> Command {
        Command::new(env!("CARGO_BIN_EXE_halfclose-smoltcp-agent"))
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
