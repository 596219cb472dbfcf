//! Protocol robustness without a TAP device: bad lines get error replies and
//! the agent keeps answering.

#[allow(dead_code)]
mod common;

use common::Agent;
use serde_json::json;

#[test]
fn bad_input_gets_errors_and_the_agent_keeps_answering() {
    let (mut agent, hello) = Agent::spawn(Agent::bin());
    assert_eq!(hello["hello"]["protocol"], 1);
    assert_eq!(hello["hello"]["agent"], "halfclose-smoltcp-agent");
    assert_eq!(hello["hello"]["shutdown"], json!(["wr"]));

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

    // Without HALFCLOSE_TAP_FD, configure fails but the agent carries on.
    let e = agent
        .err(json!({"cmd": "configure", "mac": "02:00:00:00:00:01", "addrs": ["192.0.2.1/24"]}));
    assert_eq!(e, "ENODEV");

    let fd = agent.ok(json!({"cmd": "socket", "family": "ipv4"}));
    assert_eq!(fd, 3);
    assert_eq!(agent.err(json!({"cmd": "bind", "fd": 3})), "EINVAL");
    assert_eq!(
        agent.err(json!({"cmd": "bind", "fd": 3, "addr": "[2001:db8::1]:80"})),
        "EAFNOSUPPORT"
    );
    assert_eq!(
        agent.ok(json!({"cmd": "bind", "fd": 3, "addr": "192.0.2.1:8080"})),
        0
    );
    assert_eq!(
        agent.err(json!({"cmd": "write", "fd": 3, "data": "00"})),
        "ENOTCONN"
    );
    assert_eq!(agent.err(json!({"cmd": "read", "fd": 99})), "EBADF");
    assert_eq!(
        agent.err(json!({"cmd": "setsockopt", "fd": 3, "opt": "linger", "on": true, "secs": 5})),
        "ENOSYS"
    );
    assert_eq!(
        agent.ok(json!({"cmd": "setsockopt", "fd": 3, "opt": "nodelay", "value": true})),
        0
    );
    assert_eq!(
        agent.err(json!({"cmd": "connect", "fd": 3, "addr": "192.0.2.2:1"})),
        "ENETDOWN"
    );
    assert_eq!(
        agent.ok(json!({"cmd": "state", "local": "192.0.2.1:1", "remote": "192.0.2.2:2"})),
        json!({"state": "CLOSED"})
    );
    assert_eq!(agent.ok(json!({"cmd": "close", "fd": 3})), 0);
    assert_eq!(agent.err(json!({"cmd": "close", "fd": 3})), "EBADF");

    assert!(agent.quit().success());
}

#[test]
fn eof_on_stdin_exits_cleanly() {
    let mut cmd = Agent::bin();
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "only the hello: {text}");
}

/// A line past the protocol's 1 MiB is answered with EPROTO as soon as it passes the limit,
/// dropped to its end, and costs linear time; the next line is served as usual.
#[test]
fn an_overlong_line_is_refused_in_linear_time() {
    let (mut agent, _) = Agent::spawn(Agent::bin());
    let started = std::time::Instant::now();
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
    assert!(
        took < std::time::Duration::from_secs(10),
        "80 MiB took {took:?}"
    );
    // Just under the limit is still a command (an unknown one).
    let mut big = String::from(r#"{"id":7,"cmd":"x"#);
    big.push_str(&"y".repeat((1 << 20) - big.len() - 2));
    big.push_str(r#""}"#);
    assert_eq!(big.len(), 1 << 20);
    agent.send_raw(&big);
    assert_eq!(agent.reply(7)["error"], "ENOSYS");
    assert!(agent.quit().success());
}

/// HALFCLOSE_TAP_FD naming something that is not a TAP device: a clear error and exit 2
/// at once, no panic, no spinning.
#[test]
fn a_tap_fd_that_is_no_tap_is_a_clear_error() {
    for (fd, redirect, says) in [
        (
            "1",
            "",
            "HALFCLOSE_TAP_FD=1 is standard output, not a TAP device",
        ),
        ("0", "", "HALFCLOSE_TAP_FD=0 is standard input"),
        ("5", "5</dev/zero", "HALFCLOSE_TAP_FD=5 is not a TAP device"),
        (
            "5",
            "5>/tmp/halfclose-agent-not-a-tap",
            "HALFCLOSE_TAP_FD=5 is not a TAP device",
        ),
        ("9", "", "HALFCLOSE_TAP_FD=9: no such open file descriptor"),
        ("x", "", "is not a file descriptor number"),
    ] {
        let started = std::time::Instant::now();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec \"$0\" {redirect} </dev/null",))
            .arg(env!("CARGO_BIN_EXE_halfclose-smoltcp-agent"))
            .env("HALFCLOSE_TAP_FD", fd)
            .output()
            .unwrap();
        let _ = std::fs::remove_file("/tmp/halfclose-agent-not-a-tap");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{fd} {redirect}: {err}");
        assert!(err.contains(says), "{fd} {redirect}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty(), "no hello before the error");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
