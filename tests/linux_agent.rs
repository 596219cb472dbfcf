//! The Linux agent (agents/linux) end to end: against the local kernel in the trial's
//! namespace, where it must agree with the kernel driver (the same expectations), and over a
//! real interface (`--peer-iface`) with a namespace of this test standing in for the remote
//! host.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output};

use halfclose::topology::Topology;

/// The Linux agent beside the halfclose binary under test, built here when a plain `cargo
/// test` did not build it. None when not root: the test's own namespaces need CAP_SYS_ADMIN
/// (halfclose's unprivileged run is tested in cli.rs).
fn linux_agent() -> Option<PathBuf> {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root for the test's own namespaces: skipped");
        return None;
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_halfclose"));
    let agent = exe.with_file_name("halfclose-linux-agent");
    if !agent.is_file() {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", "halfclose-linux-agent"]);
        if exe.components().any(|c| c.as_os_str() == "release") {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success(), "building the agent");
    }
    Some(agent)
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The report's trials, by name: (passed, skipped reason, deviation reason).
fn trials(json: &std::path::Path) -> Vec<serde_json::Value> {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    report["trials"].as_array().unwrap().clone()
}

/// The run found nothing wrong: exit 0, or 3 when the loaded machine left some trials
/// inconclusive (the harness's own lateness, never a verdict); no trial failed or was skipped,
/// and most of them were judged.
fn assert_clean(out: &Output, trials: &[serde_json::Value], at_least: usize) {
    let shown = text(out);
    assert!(matches!(out.status.code(), Some(0 | 3)), "{shown}");
    assert!(trials.len() >= at_least, "{shown}");
    for t in trials {
        let judged = t["outcome"] == "passed";
        assert!(t["skipped"].is_null(), "{t}\n{shown}");
        assert!(judged || !t["inconclusive"].is_null(), "{t}\n{shown}");
    }
    let passed = trials.iter().filter(|t| t["outcome"] == "passed").count();
    assert!(
        passed * 2 >= trials.len(),
        "most trials inconclusive:\n{shown}"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "halfclose-linux-agent-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `halfclose run ARGS` with a JSON report and captures in `dir`.
fn run_in(dir: &std::path::Path, args: &[&str]) -> Command {
    // An agent's argv after `--` ends the command line: the outputs go before it.
    let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_halfclose"));
    cmd.arg("run")
        .args(&args[..split])
        .args(["--format", "terse", "--json"])
        .arg(dir.join("report.json"))
        .arg("--pcap-dir")
        .arg(dir)
        .args(&args[split..]);
    cmd
}

/// Through the agent the local kernel is the same kernel: every half-close trial passes with
/// Linux's expectations and none is skipped (dup and every shutdown mode are there); a call
/// the protocol got wrong, or a wrong state, fails a trial.
#[test]
fn the_local_kernel_through_the_agent_is_the_kernel() {
    let Some(agent) = linux_agent() else { return };
    let dir = scratch("local");
    let agent = agent.display().to_string();
    let args = [
        "suites",
        "--fast",
        "--filter",
        "half-close::",
        "--agent",
        &agent,
    ];
    let out = run_in(&dir, &args).output().unwrap();
    let trials = trials(&dir.join("report.json"));
    assert_clean(&out, &trials, 14);
    assert!(trials
        .iter()
        .any(|t| t["name"] == "ipv4::half-close::dup-close-shutdown"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Timer readings and sysctls reach the agent: TIME_WAIT's timer is read in `ack-unsent`, and
/// `time-wait::rst` runs with tcp_rfc1337 both ways, whose outcomes differ (with it off an
/// RST ends TIME_WAIT, with it on the socket stays): a sysctl the agent dropped fails one.
#[test]
fn timers_and_sysctls_reach_the_agent() {
    let Some(agent) = linux_agent() else { return };
    let dir = scratch("timers");
    let agent = agent.display().to_string();
    let scripts = [
        "suites/closing-states/ack-unsent.yaml",
        "suites/time-wait/rst.yaml",
    ];
    let out = run_in(&dir, &[scripts[0], scripts[1], "--agent", &agent])
        .output()
        .unwrap();
    let trials = trials(&dir.join("report.json"));
    assert_clean(&out, &trials, 10);
    let rfc1337 = |t: &&serde_json::Value| t["name"].as_str().unwrap().contains("rfc1337");
    assert!(trials.iter().filter(rfc1337).count() >= 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--peer-iface`: halfclose runs in one namespace of this test and plays the peer on its
/// interface `hc-peer`; the agent runs in the other ("the remote host", whose interface
/// `hc-sut` has neither the SUT's MAC nor its addresses) and makes its own namespace with a
/// macvlan there. The trials pass, and the remote host keeps nothing of them.
#[test]
fn peer_iface_reaches_an_agent_beyond_a_real_interface() {
    let Some(agent) = linux_agent() else { return };
    let topo = Topology::create(&[]).expect("the test's namespaces");
    let ip = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = topo
            .run_in_sut(move || Command::new("ip").args(&args).output().unwrap())
            .unwrap();
        assert!(out.status.success(), "ip: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A plain host interface: another MAC, no address of the trial subnet.
    ip(&["addr", "flush", "dev", "hc-sut"]);
    ip(&["link", "set", "hc-sut", "address", "02:00:00:00:00:99"]);
    // The agent's argv, after `--`.
    let remote = [
        agent.display().to_string(),
        "--netns".into(),
        format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            topo.sut_ns().as_raw_fd()
        ),
        "--iface".into(),
        "hc-sut".into(),
    ];
    let dir = scratch("iface");
    let mut cmd = run_in(
        &dir,
        &[
            "suites/close/active-close.yaml",
            "suites/close/passive-close.yaml",
            "suites/time-wait/rst.yaml",
            "--retries",
            "5",
            "--peer-iface",
            "hc-peer",
            "--",
            &remote[0],
            &remote[1],
            &remote[2],
            &remote[3],
            &remote[4],
        ],
    );
    // Forked from a thread in the peer namespace, halfclose runs there.
    let out = topo.run_in_peer(move || cmd.output().unwrap()).unwrap();
    let trials = trials(&dir.join("report.json"));
    assert_clean(&out, &trials, 6);
    // Every agent's namespace, and its macvlan, went with it.
    let links = ip(&["-o", "link", "show"]);
    assert_eq!(
        links.lines().count(),
        2,
        "only lo and hc-sut are left:\n{links}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A line past the protocol's 1 MiB limit is answered with EPROTO and skipped; the next
/// command is still answered, and the agent ends cleanly at EOF (it used to exit at once).
#[test]
fn an_overlong_line_is_answered_and_the_agent_goes_on() {
    use std::io::Write as _;
    let Some(agent) = linux_agent() else { return };
    let mut child = Command::new(agent)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let long = vec![b'x'; (1 << 20) + 10];
    stdin.write_all(&long).unwrap();
    stdin.write_all(b"\n{\"id\":1,\"cmd\":\"nope\"}\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.status.code(), Some(0), "{lines:?}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[1]["error"], "EPROTO", "{lines:?}");
    assert!(lines[1]["id"].is_null());
    assert_eq!(
        (lines[2]["id"].as_i64(), lines[2]["error"].as_str()),
        (Some(1), Some("ENOSYS"))
    );
}
