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
    assert_eq!(hello["hello"]["shutdown"], json!(["rd", "wr", "rdwr"]));
    assert_eq!(hello["hello"]["timers"], true);
    assert_eq!(hello["hello"]["ipv4_mapped"], true);

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
        agent.ok(json!({"cmd": "setsockopt", "fd": 3, "opt": "linger", "on": true, "secs": 5})),
        0
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

/// The agent's own commands and options (protocol::Ext) without a TAP device: descriptors,
/// flags, options and their bad input.
#[test]
fn dup_fcntl_and_the_extra_options() {
    let (mut agent, hello) = Agent::spawn(Agent::bin());
    for call in ["dup", "fcntl", "send", "recv", "epoll"] {
        assert!(
            hello["hello"]["calls"]
                .as_array()
                .unwrap()
                .contains(&json!(call)),
            "{call}"
        );
    }
    let fd = agent.ok(json!({"cmd": "socket", "family": "ipv4"}));
    // dup: a second fd for the same socket; the socket lives until the last fd closes.
    let fd2 = agent.ok(json!({"cmd": "dup", "fd": fd}));
    assert_ne!(fd, fd2);
    assert_eq!(agent.err(json!({"cmd": "dup", "fd": 99})), "EBADF");
    assert_eq!(
        agent.ok(json!({"cmd": "fcntl", "fd": fd, "op": "getfl"})),
        json!({"nonblock": false})
    );
    assert_eq!(
        agent.ok(json!({"cmd": "fcntl", "fd": fd2, "op": "setfl", "nonblock": true})),
        0
    );
    // O_NONBLOCK belongs to the open file both fds share.
    assert_eq!(
        agent.ok(json!({"cmd": "fcntl", "fd": fd, "op": "getfl"})),
        json!({"nonblock": true})
    );
    assert_eq!(
        agent.err(json!({"cmd": "fcntl", "fd": fd, "op": "dupfd"})),
        "EINVAL"
    );
    assert_eq!(agent.ok(json!({"cmd": "close", "fd": fd})), 0);
    assert_eq!(
        agent.err(json!({"cmd": "fcntl", "fd": fd, "op": "getfl"})),
        "EBADF"
    );
    assert_eq!(
        agent.ok(json!({"cmd": "bind", "fd": fd2, "addr": "192.0.2.1:8080"})),
        0
    );
    for (opt, value) in [
        ("reuseaddr", json!(true)),
        ("sndbuf", json!(1048576)),
        ("rcvtimeo", json!(200)),
        ("user_timeout", json!(500)),
    ] {
        assert_eq!(
            agent.ok(json!({"cmd": "setsockopt", "fd": fd2, "opt": opt, "value": value})),
            0,
            "{opt}"
        );
    }
    for bad in [
        json!({"cmd": "setsockopt", "fd": fd2, "opt": "rcvtimeo", "value": 0}),
        json!({"cmd": "setsockopt", "fd": fd2, "opt": "rcvtimeo", "value": 10001}),
        json!({"cmd": "setsockopt", "fd": fd2, "opt": "sndbuf", "value": -1}),
        json!({"cmd": "setsockopt", "fd": fd2, "opt": "reuseaddr", "value": 1}),
        json!({"cmd": "recv", "fd": fd2, "flags": ["MSG_OOB"]}),
        json!({"cmd": "send", "fd": fd2, "data": "00", "flags": "MSG_PEEK"}),
        json!({"cmd": "send", "fd": fd2, "data": "0"}),
    ] {
        assert_eq!(agent.err(bad.clone()), "EINVAL", "{bad}");
    }
    assert_eq!(
        agent.err(json!({"cmd": "recv", "fd": fd2, "flags": ["MSG_DONTWAIT"]})),
        "ENOTCONN"
    );
    assert_eq!(
        agent.err(json!({"cmd": "send", "fd": fd2, "data": "00", "flags": ["MSG_NOSIGNAL"]})),
        "ENOTCONN"
    );
    assert_eq!(agent.ok(json!({"cmd": "close", "fd": fd2})), 0);
    assert!(agent.quit().success());
}

/// bind() follows Linux's conflict rules, and an IPv6 socket takes `::ffff:` addresses.
#[test]
fn bind_conflicts_and_mapped_addresses() {
    let (mut agent, _) = Agent::spawn(Agent::bin());
    let l = agent.ok(json!({"cmd": "socket", "family": "ipv4"}));
    agent.ok(json!({"cmd": "bind", "fd": l, "addr": "192.0.2.1:8080"}));
    agent.ok(json!({"cmd": "listen", "fd": l}));
    // A listener on the port conflicts, SO_REUSEADDR or not.
    for reuse in [false, true] {
        let s = agent.ok(json!({"cmd": "socket", "family": "ipv4"}));
        agent.ok(json!({"cmd": "setsockopt", "fd": s, "opt": "reuseaddr", "value": reuse}));
        assert_eq!(
            agent.err(json!({"cmd": "bind", "fd": s, "addr": "0.0.0.0:8080"})),
            "EADDRINUSE"
        );
        assert_eq!(
            agent.ok(json!({"cmd": "bind", "fd": s, "addr": "192.0.2.1:8081"})),
            0
        );
    }
    let v6 = agent.ok(json!({"cmd": "socket", "family": "ipv6"}));
    assert_eq!(
        agent.err(json!({"cmd": "bind", "fd": v6, "addr": "[::ffff:192.0.2.1]:8080"})),
        "EADDRINUSE",
        "a mapped address is the IPv4 one"
    );
    assert_eq!(
        agent.ok(json!({"cmd": "bind", "fd": v6, "addr": "[::ffff:192.0.2.1]:9000"})),
        0
    );
    let v4 = agent.ok(json!({"cmd": "socket", "family": "ipv4"}));
    assert_eq!(
        agent.err(json!({"cmd": "bind", "fd": v4, "addr": "[::ffff:192.0.2.1]:9001"})),
        "EAFNOSUPPORT"
    );
    assert!(agent.quit().success());
}
