//! Verdicts under disturbance: the halfclose process stopped (SIGSTOP) for 0.5–1 s at random
//! moments — before a send, inside a window — while both CPUs are busy.
//!
//! - Every fixture in fixtures/fail/ (each a scenario with one wrong expectation) must never
//!   pass: it fails, or, when the stops make every run unreliable, ends inconclusive (exit 3).
//! - A correct part of the suite must never fail: stopped runs are inconclusive and rerun.
//!
//! `HALFCLOSE_DISTURB_RUNS=N` runs each fixture N times (default 1) and prints the tally.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A small xorshift generator: enough randomness to place stops, no dependency.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(seed | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_halfclose"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the halfclose binary runs")
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Runs halfclose, stopping it for 0.5–1 s after a random `lo`–`hi` ms, again and again,
/// until it exits. Returns the exit code, the output and how many stops it took.
fn run_stopped(args: &[&str], rng: &mut Rng, (lo, hi): (u64, u64)) -> (i32, String, u32) {
    let mut child = spawn(args);
    let mut stops = 0;
    loop {
        std::thread::sleep(rng.millis(lo, hi));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        signal(&child, libc::SIGSTOP);
        stops += 1;
        std::thread::sleep(rng.millis(500, 1000));
        signal(&child, libc::SIGCONT);
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text, stops)
}

/// Both CPUs busy while it lives.
struct Load(Arc<AtomicBool>);

impl Load {
    fn start() -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        for _ in 0..cpus {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            });
        }
        Load(stop)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/fail");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("halfclose-disturb-{name}-{}", std::process::id()))
}

#[test]
fn wrong_expectations_never_pass_when_the_harness_is_stopped_or_starved() {
    let runs: u32 = std::env::var("HALFCLOSE_DISTURB_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let pcap = scratch("fail");
    let _load = Load::start();
    let mut rng = Rng::new();
    let (mut failed, mut inconclusive, mut stops) = (0, 0, 0);
    let t0 = Instant::now();
    for _ in 0..runs {
        for f in fixtures() {
            let file = f.to_str().unwrap();
            let args = ["run", file, "--pcap-dir", pcap.to_str().unwrap()];
            let (code, text, n) = run_stopped(&args, &mut rng, (0, 150));
            stops += n;
            match code {
                1 => failed += 1,
                3 => inconclusive += 1,
                _ => panic!("{file} must never pass (exit {code}):\n{text}"),
            }
        }
    }
    eprintln!(
        "disturbed fixture runs: {} ({} stops of 0.5–1 s, both CPUs loaded): {failed} failed, {inconclusive} inconclusive, 0 passed, in {:.0?}",
        failed + inconclusive,
        stops,
        t0.elapsed()
    );
    let _ = std::fs::remove_dir_all(&pcap);
}

/// A stop through a wait is noticed: with no retries the trial ends inconclusive, exit 3,
/// and the reason names the step that came late.
#[test]
fn a_run_the_harness_was_late_for_is_inconclusive() {
    let pcap = scratch("late");
    let json = pcap.join("report.json");
    let mut child = spawn(&[
        "run",
        "fixtures/stopped/long-wait.yaml",
        "--retries",
        "0",
        "--pcap-dir",
        pcap.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    std::thread::sleep(Duration::from_millis(1000));
    signal(&child, libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(3500));
    signal(&child, libc::SIGCONT);
    let out = child.wait().unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(out.code(), Some(3), "{report}");
    let why = report["trials"][0]["inconclusive"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("late"), "{why}");
    assert_eq!(report["summary"]["inconclusive"], 1);
    let _ = std::fs::remove_dir_all(&pcap);
}

#[test]
fn a_correct_suite_never_fails_when_the_harness_is_stopped() {
    let pcap = scratch("suite");
    let json = pcap.join("report.json");
    let mut rng = Rng::new();
    let args = [
        "run",
        "suites/close",
        "suites/half-close",
        "suites/loss",
        "--format",
        "terse",
        "--retries",
        "6",
        "--pcap-dir",
        pcap.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ];
    let (code, text, stops) = run_stopped(&args, &mut rng, (300, 1500));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        report["summary"]["failed"], 0,
        "after {stops} stops:\n{text}"
    );
    assert!(
        code == 0 || code == 3,
        "exit {code} after {stops} stops:\n{text}"
    );
    eprintln!(
        "correct suite, {stops} stops: {} passed, {} inconclusive, {} reruns",
        report["summary"]["passed"], report["summary"]["inconclusive"], report["summary"]["reruns"]
    );
    let _ = std::fs::remove_dir_all(&pcap);
}
