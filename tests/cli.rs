//! The `halfclose` binary as a user runs it: exit codes, failure messages that name the step,
//! one pcapng per trial, and nothing left behind.
//!
//! These tests drive the binary as a subprocess, so each run is a fresh single-threaded
//! process that can enter a user namespace when not root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn halfclose(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_halfclose"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the halfclose binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("halfclose-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
    files.sort();
    files
}

fn pcaps_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "pcapng") {
                out.push(p);
            }
        }
    }
    out
}

/// Each fixture in fixtures/fail/ is a scenario with one wrong expectation, of a different
/// assertion kind each; its header says which step must fail and with what. Both families
/// must fail there, with the step, the file:line, expected vs actual, states and capture.
#[test]
fn every_assertion_kind_can_fail() {
    let files = yaml_files("fixtures/fail");
    assert!(files.len() >= 6, "one fixture per assertion kind");
    for file in files {
        let rel = format!(
            "fixtures/fail/{}",
            file.file_name().unwrap().to_string_lossy()
        );
        let header = std::fs::read_to_string(&file).unwrap();
        let header = header
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# fails: ")
            .expect("a `# fails:` header");
        let (step, needle) = header.split_once(": ").expect("step N: text");
        let pcap_dir = scratch("fail");
        let out = halfclose(&["run", &rel, "--pcap-dir", pcap_dir.to_str().unwrap()]);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{rel} must fail:\n{shown}");
        let line = shown
            .lines()
            .find(|l| l.starts_with(&format!("{step} ({rel}:")))
            .unwrap_or_else(|| panic!("{rel}: no failure at `{step} ({rel}:…`:\n{shown}"));
        assert_eq!(
            shown.matches(&format!("{step} ({rel}:")).count(),
            2,
            "ipv4 and ipv6 fail there:\n{shown}"
        );
        assert!(
            shown.contains(needle),
            "{rel}: `{needle}` missing:\n{shown}"
        );
        for part in ["expected:", "actual:", "states:", "capture:"] {
            assert!(
                shown.contains(part),
                "{rel}: `{part}` missing after `{line}`:\n{shown}"
            );
        }
        assert_eq!(
            pcaps_under(&pcap_dir).len(),
            2,
            "{rel}: a capture per trial, failed ones too"
        );
        let _ = std::fs::remove_dir_all(&pcap_dir);
    }
}

#[test]
fn check_rejects_every_bad_fixture_with_its_position() {
    for file in yaml_files("fixtures/bad") {
        let rel = format!(
            "fixtures/bad/{}",
            file.file_name().unwrap().to_string_lossy()
        );
        let out = halfclose(&["check", &rel]);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{rel}:\n{shown}");
        let header = std::fs::read_to_string(&file).unwrap();
        let pos = header
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# error: ")
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        assert!(
            shown.contains(&format!("{rel}:{pos}: ")),
            "{rel} must name {pos}:\n{shown}"
        );
    }
}

#[test]
fn run_refuses_bad_scripts_before_sending_anything() {
    let out = halfclose(&["run", "fixtures/bad/bad-call.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("nothing was run"));
}

#[test]
fn check_accepts_the_suite() {
    let out = halfclose(&["check", "suites"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(halfclose(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(halfclose(&["run", "--pcap-dir"]).status.code(), Some(2));
    assert_eq!(halfclose(&["run", "no/such/dir"]).status.code(), Some(2));
}

#[test]
fn list_shows_both_families_of_every_scenario() {
    let out = halfclose(&["list"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    for name in [
        "ipv4::close::active-close: test",
        "ipv6::close::active-close: test",
        "ipv4::loss::fin-lost-fin-wait-1: test",
    ] {
        assert!(shown.contains(name), "{name} missing:\n{shown}");
    }
}

/// One pcapng per trial, readable by tshark, every frame commented, nanosecond timestamps.
#[test]
fn run_leaves_a_commented_capture_per_trial() {
    let dir = scratch("pcap");
    let json = dir.join("report.json");
    let junit = dir.join("junit.xml");
    let out = halfclose(&[
        "run",
        "suites/close",
        "--pcap-dir",
        dir.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let pcaps = pcaps_under(&dir);
    let scenarios = yaml_files("suites/close").len();
    assert_eq!(pcaps.len(), 2 * scenarios, "{pcaps:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["passed"], 2 * scenarios);
    assert!(std::fs::read_to_string(&junit)
        .unwrap()
        .contains("<testcase classname=\"ipv4::close\" name=\"active-close\""));
    if Command::new("tshark").arg("--version").output().is_err() {
        eprintln!("tshark not installed: captures checked by size only");
        return;
    }
    for p in pcaps {
        let out = Command::new("tshark")
            .args([
                "-r",
                p.to_str().unwrap(),
                "-T",
                "fields",
                "-e",
                "frame.time_epoch",
                "-e",
                "frame.comment",
            ])
            .output()
            .unwrap();
        let lines = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "tshark on {}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(lines.lines().count() >= 4, "{}: {lines}", p.display());
        assert!(
            lines
                .lines()
                .all(|l| l.split('\t').nth(1).is_some_and(|c| !c.is_empty())),
            "every frame commented:\n{lines}"
        );
        assert!(
            lines.contains("matched step") && lines.contains("sent by"),
            "{lines}"
        );
        // Epoch seconds from this decade: a missing if_tsresol would put them 1000× off.
        let first: f64 = lines.split('\t').next().unwrap().parse().unwrap();
        assert!((1.6e9..2.5e9).contains(&first), "timestamp {first}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The network namespaces a process refers to, by nsfs inode ("net:[4026532…]"), through its
/// descriptors and its threads.
fn netns_held_by(pid: &str) -> Vec<String> {
    let mut out = Vec::new();
    let links = |dir: String| -> Vec<String> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|l| l.to_string_lossy().into_owned())
            .filter(|l| l.starts_with("net:["))
            .collect()
    };
    out.extend(links(format!("/proc/{pid}/fd")));
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(l) = std::fs::read_link(task.path().join("ns/net")) {
            out.push(l.to_string_lossy().into_owned());
        }
    }
    out.sort();
    out.dedup();
    out
}

fn all_pids() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        .collect()
}

fn links() -> String {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.join(",")
}

/// Namespaces are anonymous and held by descriptors only: once the process is killed, no
/// process, descriptor or mount refers to them any more, so the kernel frees them.
#[test]
fn sigkill_leaves_no_namespace_interface_or_process() {
    let links_before = links();
    let host_ns = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let dir = scratch("kill");
    let mut child = Command::new(env!("CARGO_BIN_EXE_halfclose"))
        .args([
            "run",
            "suites/timers/close-wait-leak.yaml",
            "--pcap-dir",
            dir.to_str().unwrap(),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Both trials sit in a 2 s quiet step: their namespaces exist now.
    std::thread::sleep(std::time::Duration::from_millis(700));
    let pid = child.id().to_string();
    let held: Vec<String> = netns_held_by(&pid)
        .into_iter()
        .filter(|n| *n != host_ns)
        .collect();
    assert!(
        held.len() >= 2,
        "the run holds its trial namespaces: {held:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the process and its threads are gone"
    );
    for p in all_pids() {
        let still = netns_held_by(&p);
        assert!(
            !held.iter().any(|n| still.contains(n)),
            "process {p} still refers to {still:?}"
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !held.iter().any(|n| mounts.contains(n.as_str())),
        "a namespace is bind-mounted"
    );
    assert!(
        !Path::new("/run/netns")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "no named namespaces"
    );
    assert_eq!(
        links(),
        links_before,
        "interfaces left behind in this namespace"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// As an unprivileged user, `halfclose run` enters a user namespace by itself.
#[test]
fn runs_unprivileged_in_a_user_namespace() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || Command::new("setpriv").arg("--version").output().is_err()
    {
        eprintln!("needs root (to switch to nobody) and setpriv: skipped");
        return;
    }
    let dir = scratch("nobody");
    std::fs::create_dir_all(&dir).unwrap();
    let _ = Command::new("chmod")
        .args(["777", dir.to_str().unwrap()])
        .status();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_halfclose"),
        ])
        .args([
            "run",
            "suites/close/active-close.yaml",
            "suites/abort/linger-zero.yaml",
            "--pcap-dir",
            dir.to_str().unwrap(),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(pcaps_under(&dir).len(), 4);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A trial listed in the stack's expectations passes when it fails as listed…
#[test]
fn listed_deviation_that_fails_passes() {
    let out = halfclose(&[
        "run",
        "fixtures/fail/wrong-flags.yaml",
        "--expectations",
        "fixtures/expectations/known.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// …and fails as stale when it passes, naming the entry to remove.
#[test]
fn listed_deviation_that_passes_is_stale() {
    let out = halfclose(&[
        "run",
        "suites/close/three-way-close.yaml",
        "--expectations",
        "fixtures/expectations/stale.yaml",
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("stale expectation") && shown.contains("fixtures/expectations/stale.yaml:4"),
        "{shown}"
    );
    assert!(
        shown.contains("test ipv6::close::three-way-close ... ok"),
        "only the listed family is stale:\n{shown}"
    );
}

/// docs/coverage.md is exactly what `halfclose coverage` prints for the suite.
#[test]
fn coverage_doc_is_current() {
    let out = halfclose(&["coverage"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/coverage.md"))
            .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        doc,
        "regenerate: halfclose coverage > docs/coverage.md"
    );
}

/// The smoltcp agent beside the halfclose binary under test; built here when a plain
/// `cargo test` (not `--workspace`) did not build it. None when not root: the agent's TAP
/// device needs CAP_NET_ADMIN (halfclose's own unprivileged run is tested above).
fn smoltcp_agent() -> Option<PathBuf> {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root for the TAP device: skipped");
        return None;
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_halfclose"));
    let agent = exe.with_file_name("halfclose-smoltcp-agent");
    if !agent.is_file() {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", "halfclose-smoltcp-agent"]);
        if exe.components().any(|c| c.as_os_str() == "release") {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success(), "building the agent");
    }
    Some(agent)
}

/// The second stack end to end: smoltcp through its agent on a TAP device, with its
/// expectations file; every trial passes, deviates as listed, or is skipped with a reason.
#[test]
fn smoltcp_runs_with_its_expectations() {
    let Some(agent) = smoltcp_agent() else {
        return;
    };
    let json = scratch("smoltcp").join("report.json");
    let out = halfclose(&[
        "run",
        "suites/close",
        "suites/abort",
        "--agent",
        agent.to_str().unwrap(),
        "--expectations",
        "suites/expectations/smoltcp.yaml",
        "--json",
        json.to_str().unwrap(),
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let trials = report["trials"].as_array().unwrap();
    let deviations = trials.iter().filter(|t| !t["deviation"].is_null()).count();
    let skipped = trials.iter().filter(|t| !t["skipped"].is_null()).count();
    assert!(deviations > 0 && skipped > 0, "{shown}");
    assert!(
        trials
            .iter()
            .any(|t| t["name"] == "ipv4::close::active-close"
                && t["passed"] == true
                && t["deviation"].is_null()),
        "the active close passes on smoltcp:\n{shown}"
    );
}

/// An expectations entry for a trial smoltcp passes is reported as stale.
#[test]
fn smoltcp_deviation_that_passes_is_stale() {
    let Some(agent) = smoltcp_agent() else {
        return;
    };
    let out = halfclose(&[
        "run",
        "suites/close/active-close.yaml",
        "suites/abort/close-unread-data.yaml",
        "--agent",
        agent.to_str().unwrap(),
        "--expectations",
        "fixtures/expectations/smoltcp-stale.yaml",
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("stale expectation"), "{shown}");
    let verdict = |trial: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(&format!("test {trial} ")))
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
    };
    assert_eq!(
        verdict("ipv4::close::active-close").as_deref(),
        Some("FAILED"),
        "{shown}"
    );
    assert_eq!(
        verdict("ipv6::close::active-close").as_deref(),
        Some("ok"),
        "{shown}"
    );
    assert_eq!(
        verdict("ipv4::abort::close-unread-data").as_deref(),
        Some("ok"),
        "{shown}"
    );
}

/// The binary, killed if it takes longer than `secs` (a read that never ends fails the test
/// instead of hanging it).
fn halfclose_within(args: &[&str], secs: u64) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_halfclose"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the halfclose binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("halfclose {args:?} still running after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Regression (issue 9): `run emptydir`, `run /dev/null`, `check /dev/zero` and
/// `coverage /nonexistent` all exited 0. Nothing to run is bad input, said with the path.
#[test]
fn nothing_to_run_is_bad_input() {
    let empty = scratch("empty");
    std::fs::create_dir_all(empty.join("sub")).unwrap();
    let empty = empty.to_str().unwrap();
    for (args, says) in [
        (vec!["run", empty], "no scenario files"),
        (vec!["list", empty], "no scenario files"),
        (vec!["check", empty], "no scenario files"),
        (
            vec!["run", "/dev/null"],
            "/dev/null: not a regular file (a device)",
        ),
        (
            vec!["check", "/dev/zero"],
            "/dev/zero: not a regular file (a device)",
        ),
        (
            vec!["coverage", "/nonexistent"],
            "/nonexistent: cannot read",
        ),
        (vec!["coverage", empty], "no scenario files"),
    ] {
        let out = halfclose_within(&args, 20);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}:\n{shown}");
        assert!(shown.contains(says), "{args:?}: `{says}` missing:\n{shown}");
    }
    let _ = std::fs::remove_dir_all(empty);
}

/// A script is read bounded: a file over 1 MiB, or a FIFO among the scripts, is an error
/// naming it, not an endless read.
#[test]
fn oversized_or_special_script_files_are_refused() {
    let dir = scratch("special");
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(2 << 20).unwrap();
    let fifo = dir.join("fifo.yaml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = halfclose_within(&["check", dir.to_str().unwrap()], 20);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains(&format!(
            "{}: 2097152 bytes is more than a script may have (1024 KiB)",
            big.display()
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("{}: not a regular file (a FIFO)", fifo.display())),
        "{shown}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression (issue 9): `stack:` was never checked. A file for another stack, or for one
/// halfclose does not know, is bad input naming the file, line and column.
#[test]
fn expectations_for_another_stack_are_bad_input() {
    let out = halfclose(&[
        "list",
        "suites/close",
        "--expectations",
        "fixtures/expectations/wrong-stack.yaml",
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("fixtures/expectations/wrong-stack.yaml:2:8: unknown stack `bsd`, but the run is against `linux`"),
        "{shown}"
    );
    let out = halfclose(&[
        "list",
        "suites/close",
        "--expectations",
        "suites/expectations/smoltcp.yaml",
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("suites/expectations/smoltcp.yaml:8:8: this file lists deviations of `smoltcp`, but the run is against `linux`"),
        "{shown}"
    );
    let Some(agent) = smoltcp_agent() else {
        return;
    };
    let out = halfclose(&[
        "list",
        "suites/close",
        "--agent",
        agent.to_str().unwrap(),
        "--expectations",
        "suites/expectations/linux.yaml",
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("suites/expectations/linux.yaml:7:8: this file lists deviations of `linux`, but the run is against `smoltcp`"),
        "{shown}"
    );
}

/// Regression (issue 9): an entry that matches no trial was never reported. It is bad input
/// naming file:line and the entry. Trials left out by --filter or --fast still exist.
#[test]
fn expectations_entry_that_matches_no_trial_is_bad_input() {
    let out = halfclose(&[
        "list",
        "suites/close",
        "--expectations",
        "fixtures/expectations/unused.yaml",
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("fixtures/expectations/unused.yaml:7:5: the entry `ipv4::close::active-close-renamed` matches no trial"),
        "{shown}"
    );
    assert!(
        !shown.contains("unused.yaml:5:"),
        "the used entry is fine:\n{shown}"
    );
    for args in [
        vec![
            "list",
            "suites/close",
            "--filter",
            "active-close",
            "--expectations",
            "fixtures/expectations/stale.yaml",
        ],
        vec![
            "list",
            "suites/timers",
            "--fast",
            "--expectations",
            "fixtures/expectations/slow.yaml",
        ],
        // A part of the suite with the suite's own file: its entries name trials beside it.
        vec![
            "list",
            "suites/close",
            "--expectations",
            "suites/expectations/linux.yaml",
        ],
    ] {
        let out = halfclose(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}:\n{}", text(&out));
    }
}
