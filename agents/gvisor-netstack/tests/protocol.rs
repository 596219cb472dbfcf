//! The gVisor agent's protocol without a TAP device: its hello says what it really does,
//! bad lines get error replies and the agent keeps answering, an overlong line is refused,
//! and a HALFCLOSE_TAP_FD that is no TAP is a clear error.
#![cfg(not(no_gvisor_agent))]

#[allow(dead_code)]
#[path = "../../smoltcp/tests/common/mod.rs"]
mod common;

use common::Agent;
use serde_json::json;

#[test]
fn the_hello_lists_what_gvisor_does() {
    let (agent, hello) = Agent::spawn(Agent::bin());
    let h = &hello["hello"];
    assert_eq!(h["protocol"], 1);
    assert_eq!(h["agent"], "halfclose-gvisor-agent");
    assert!(
        h["stack"].as_str().unwrap().starts_with("gvisor "),
        "{hello}"
    );
    assert_eq!(h["shutdown"], json!(["rd", "wr", "rdwr"]));
    assert_eq!(
        h["sockopts"],
        json!(["linger", "linger-timeout", "nodelay", "keepalive"])
    );
    // gVisor's DefaultTCPTimeWaitTimeout; protocol 1 has no way to read timers.
    assert_eq!(
        (h["time_wait_ms"].clone(), h["timers"].clone()),
        (json!(60000), json!(false))
    );
    assert!(agent.quit().success());
}

#[test]
fn bad_input_gets_errors_and_the_agent_keeps_answering() {
    let (mut agent, _) = Agent::spawn(Agent::bin());
    common::bad_lines_are_answered(&mut agent);
    // A command without an id, and a MAC that is none.
    agent.send_raw(r#"{"cmd":"quit"}"#);
    assert_eq!(agent.any_reply()["error"], "EINVAL");
    let e = agent.err(json!({"cmd": "configure", "mac": "zz", "addrs": []}));
    assert_eq!(e, "EINVAL");
    assert_eq!(
        agent.err(json!({"cmd": "socket", "family": "ipx"})),
        "EINVAL"
    );
    assert_eq!(agent.err(json!({"cmd": "bind", "fd": 3})), "EINVAL");
    assert_eq!(
        agent.err(json!({"cmd": "bind", "fd": 3, "addr": "[2001:db8::1]:80"})),
        "EAFNOSUPPORT"
    );
    // No NIC has that address yet: gVisor refuses the bind, as Linux would.
    assert_eq!(
        agent.err(json!({"cmd": "bind", "fd": 3, "addr": "192.0.2.1:8080"})),
        "EADDRNOTAVAIL"
    );
    assert_eq!(
        agent.ok(json!({"cmd": "bind", "fd": 3, "addr": "0.0.0.0:8080"})),
        0
    );
    // The errno is gVisor's, through the sentry's table (ErrClosedForSend): EPIPE.
    assert_eq!(
        agent.err(json!({"cmd": "write", "fd": 3, "data": "00"})),
        "EPIPE"
    );
    assert_eq!(
        agent.err(json!({"cmd": "write", "fd": 3, "data": "0"})),
        "EINVAL"
    );
    assert_eq!(agent.err(json!({"cmd": "read", "fd": 99})), "EBADF");
    assert_eq!(agent.err(json!({"cmd": "accept", "fd": 3})), "EINVAL");
    assert_eq!(
        agent.err(json!({"cmd": "shutdown", "fd": 3, "how": "both"})),
        "EINVAL"
    );
    assert_eq!(
        agent.err(json!({"cmd": "setsockopt", "fd": 3, "opt": "rcvbuf", "value": 1})),
        "ENOSYS"
    );
    for opt in [
        json!({"cmd": "setsockopt", "fd": 3, "opt": "linger", "on": true, "secs": 5}),
        json!({"cmd": "setsockopt", "fd": 3, "opt": "nodelay", "value": true}),
        json!({"cmd": "setsockopt", "fd": 3, "opt": "keepalive", "value": true, "secs": 30}),
    ] {
        assert_eq!(agent.ok(opt), 0);
    }
    assert_eq!(
        agent.err(json!({"cmd": "connect", "fd": 3, "addr": "192.0.2.2:1"})),
        "ENETDOWN"
    );
    assert_eq!(
        agent.ok(json!({"cmd": "state", "local": "192.0.2.1:1", "remote": "192.0.2.2:2"})),
        json!({"state": "CLOSED"})
    );
    assert_eq!(agent.ok(json!({"cmd": "listen", "fd": 3, "backlog": 4})), 0);
    // Closing a listener with a parked accept answers the accept with EBADF.
    let accept = agent.send(json!({"cmd": "accept", "fd": 3}));
    assert_eq!(agent.ok(json!({"cmd": "close", "fd": 3})), 0);
    assert_eq!(agent.reply(accept)["error"], "EBADF");
    assert_eq!(agent.err(json!({"cmd": "close", "fd": 3})), "EBADF");
    assert!(agent.quit().success());
}

#[test]
fn eof_on_stdin_exits_cleanly() {
    let out = Agent::bin()
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "only the hello: {text}");
}

#[test]
fn an_overlong_line_is_refused_in_linear_time() {
    common::an_overlong_line_is_refused_in_linear_time();
}

#[test]
fn a_tap_fd_that_is_no_tap_is_a_clear_error() {
    common::a_tap_fd_that_is_no_tap_is_a_clear_error(env!("CARGO_BIN_EXE_halfclose-gvisor-agent"));
}
