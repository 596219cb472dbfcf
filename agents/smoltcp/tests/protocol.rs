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

    common::bad_lines_are_answered(&mut agent);
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

#[test]
fn an_overlong_line_is_refused_in_linear_time() {
    common::an_overlong_line_is_refused_in_linear_time();
}

#[test]
fn a_tap_fd_that_is_no_tap_is_a_clear_error() {
    common::a_tap_fd_that_is_no_tap_is_a_clear_error(env!("CARGO_BIN_EXE_halfclose-smoltcp-agent"));
}
