//! The lwIP agent's protocol conformance without a TAP device: its hello, errors for bad
//! input, and a clean exit. Built without lwIP (no liblwip-dev or no C compiler, see
//! build.rs), the agent only says why, and that is what is tested; the rest is skipped with
//! that reason.

#[allow(dead_code)]
#[path = "../../smoltcp/tests/common/mod.rs"]
mod common;

const AGENT_BIN: &str = env!("CARGO_BIN_EXE_halfclose-lwip-agent");

use common::Agent;
use serde_json::json;

/// Why the agent has no lwIP, if it has none (and says so on the test's output).
fn without_lwip(test: &str) -> bool {
    match option_env!("HALFCLOSE_LWIP_MISSING") {
        Some(why) => {
            eprintln!("{test}: skipped: halfclose-lwip-agent is built without lwIP: {why}");
            true
        }
        None => false,
    }
}

#[test]
fn built_without_lwip_the_agent_says_why_and_exits_2() {
    let Some(why) = option_env!("HALFCLOSE_LWIP_MISSING") else {
        return; // built with lwIP: the other tests run
    };
    let out = Agent::bin()
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("built without lwIP") && err.contains(why),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "no hello from an agent without a stack"
    );
}

#[test]
fn the_hello_names_lwip_and_what_it_can_do() {
    if without_lwip("the_hello_names_lwip_and_what_it_can_do") {
        return;
    }
    let (agent, hello) = Agent::spawn(Agent::bin());
    let h = &hello["hello"];
    assert_eq!(h["protocol"], 1);
    assert_eq!(h["agent"], "halfclose-lwip-agent");
    assert!(
        h["stack"].as_str().unwrap().starts_with("lwip 2."),
        "{hello}"
    );
    // tcp_shutdown() takes either half; SO_LINGER 0 is tcp_abort(), a lingering close is not
    // offered; TIME_WAIT is 2 × TCP_MSL.
    assert_eq!(h["shutdown"], json!(["rd", "wr", "rdwr"]));
    assert_eq!(h["sockopts"], json!(["linger", "nodelay", "keepalive"]));
    assert_eq!(h["time_wait_ms"], 120_000);
    assert_eq!(h["timers"], false);
    assert!(agent.quit().success());
}

#[test]
fn bad_input_gets_errors_and_the_agent_keeps_answering() {
    if without_lwip("bad_input_gets_errors_and_the_agent_keeps_answering") {
        return;
    }
    let (mut agent, _) = Agent::spawn(Agent::bin());
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
        agent.err(json!({"cmd": "bind", "fd": 3, "addr": "192.0.2.1:8081"})),
        "EINVAL"
    );
    assert_eq!(
        agent.err(json!({"cmd": "write", "fd": 3, "data": "00"})),
        "ENOTCONN"
    );
    assert_eq!(
        agent.err(json!({"cmd": "shutdown", "fd": 3, "how": "wr"})),
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
    // A second socket cannot listen on the port the first is bound to (tcp_bind: ERR_USE).
    let fd2 = agent.ok(json!({"cmd": "socket", "family": "ipv4"}));
    assert_eq!(
        agent.err(json!({"cmd": "bind", "fd": fd2, "addr": "192.0.2.1:8080"})),
        "EADDRINUSE"
    );
    assert_eq!(agent.ok(json!({"cmd": "listen", "fd": 3, "backlog": 4})), 0);
    assert_eq!(agent.err(json!({"cmd": "accept", "fd": fd2})), "EINVAL");
    // accept blocks; closing the listener answers it with EBADF.
    let accept = agent.send(json!({"cmd": "accept", "fd": 3}));
    assert_eq!(agent.ok(json!({"cmd": "close", "fd": 3})), 0);
    assert_eq!(agent.reply(accept)["error"], "EBADF");
    assert_eq!(
        agent.ok(json!({"cmd": "state", "local": "192.0.2.1:1", "remote": "192.0.2.2:2"})),
        json!({"state": "CLOSED"})
    );
    assert_eq!(agent.err(json!({"cmd": "close", "fd": 3})), "EBADF");
    assert!(agent.quit().success());
}

#[test]
fn eof_on_stdin_exits_cleanly() {
    if without_lwip("eof_on_stdin_exits_cleanly") {
        return;
    }
    let out = Agent::bin()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "only the hello: {text}");
}

#[test]
fn a_tap_fd_that_is_no_tap_is_a_clear_error() {
    if without_lwip("a_tap_fd_that_is_no_tap_is_a_clear_error") {
        return;
    }
    common::a_tap_fd_that_is_no_tap_is_a_clear_error(AGENT_BIN);
}

#[test]
fn an_overlong_line_is_refused_in_linear_time() {
    if without_lwip("an_overlong_line_is_refused_in_linear_time") {
        return;
    }
    common::an_overlong_line_is_refused_in_linear_time();
}
