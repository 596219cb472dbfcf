//! `halfclose bench`: what a trial costs on this machine, as medians and tails.
//!
//! Figures are wall-clock times of whole operations, repeated; the machine's noise (other
//! processes, the kernel's deferred namespace cleanup) shows in the p99, so both are printed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::exit;
use crate::runner::{self, TrialConfig};
use crate::script;
use crate::topology::Topology;
use crate::Family;

/// The benchmarked scenario travels with the binary, so `bench` works from any directory.
const ACTIVE_CLOSE: &str = include_str!("../../suites/close/active-close.yaml");

/// Median, 99th percentile and extremes of a sample, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub p50: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(samples: &mut [Duration]) -> Stats {
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
        Stats {
            p50: at(0.5),
            p99: at(0.99),
            min: ms(samples[0]),
            max: ms(samples[samples.len() - 1]),
        }
    }
}

/// What `bench` measures, each optional so a quick run can skip the suite.
struct Figures {
    runs: usize,
    overhead: Stats,
    /// `halfclose run` of the one active-close trial, as a whole process.
    process: Stats,
    trial: Stats,
    /// Microseconds, so the Stats fields here are µs, not ms.
    inject: Stats,
    suite: Option<SuiteRun>,
    fast_suite: Option<SuiteRun>,
    loaded: Option<LoadedRun>,
}

/// The `--fast` suite at nice 19 while every CPU runs a busy loop: how often the harness's
/// lateness made a run inconclusive, and the allowances (CPU steal) windows took.
#[derive(Clone, Debug)]
struct LoadedRun {
    trials: usize,
    /// Trials with at least one inconclusive run, over all trials run.
    inconclusive_rate: f64,
    /// Trials still inconclusive after their retries.
    inconclusive_after: usize,
    failed: usize,
    /// Per trial, the largest allowance its windows took (ms).
    allowance: Stats,
}

/// One whole `halfclose run` of the suite, as a child process.
#[derive(Clone, Copy, Debug)]
struct SuiteRun {
    wall_s: f64,
    cpu_s: f64,
    peak_rss_mb: f64,
    passed: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Runs of each timed operation.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub runs: u64,
    /// One JSON line, for CI.
    #[arg(long)]
    pub json: bool,
    /// Leave out the whole-suite runs (full, --fast, and --fast under load).
    #[arg(long)]
    pub no_suite: bool,
}

pub fn run(a: Args) -> i32 {
    match measure(a.runs as usize, !a.no_suite) {
        Ok(f) => {
            print_figures(&f, a.json);
            exit::OK
        }
        Err(e) => {
            eprintln!("halfclose bench: {e}");
            exit::FAILED
        }
    }
}

fn measure(runs: usize, suite: bool) -> Result<Figures, String> {
    let overhead = topology_overhead(runs)?;
    let process = one_scenario_process(runs)?;
    let trial = active_close_trial(runs)?;
    let inject = injection_error(runs.max(200))?;
    let (suite, fast_suite, loaded) = if suite && Path::new("suites").is_dir() {
        (
            Some(suite_run(false)?),
            Some(suite_run(true)?),
            Some(loaded_run()?),
        )
    } else {
        (None, None, None)
    };
    Ok(Figures {
        runs,
        overhead,
        process,
        trial,
        inject,
        suite,
        fast_suite,
        loaded,
    })
}

/// How far from its scheduled time a peer frame reaches the SUT's interface: the runner's
/// sleep-then-spin, the send, the veth, against the kernel's receive timestamp on the SUT
/// side. In microseconds, absolute.
fn injection_error(runs: usize) -> Result<Stats, String> {
    use std::sync::{Arc, Mutex};
    let topo = Topology::create(&[]).map_err(|e| e.to_string())?;
    let capture = Arc::new(Mutex::new(crate::capture::Capture::new("bench", "bench")));
    let link = crate::peer::Link::start(&topo, capture).map_err(|e| e.to_string())?;
    let ifindex = topo.sut_ifindex();
    let sut_sock = topo
        .run_in_sut(move || crate::peer::open_packet_socket(ifindex))
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    // A frame of a local experimental EtherType: the SUT's kernel lets it be.
    let mut frame = vec![0u8; 60];
    frame[..6].copy_from_slice(&crate::topology::SUT_MAC);
    frame[6..12].copy_from_slice(&crate::topology::PEER_MAC);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    let mut samples = Vec::with_capacity(runs);
    let mut buf = vec![0u8; 2048];
    for i in 0..runs {
        // Varied lead times, as scripts use them (a delay from the previous event).
        let target = SystemTime::now() + Duration::from_micros(2000 + (i as u64 % 7) * 1000);
        runner::sleep_until(target);
        link.send(frame.clone(), String::new())
            .map_err(|e| e.to_string())?;
        let got = loop {
            let (at, n) = recv_with_timeout(&sut_sock, &mut buf)?;
            if n >= 14 && buf[12..14] == [0x88, 0xb5] {
                break at;
            }
        };
        let err = match got.duration_since(target) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        samples.push(err);
    }
    let ms = Stats::of(&mut samples);
    // Stats are in ms; report µs.
    Ok(Stats {
        p50: ms.p50 * 1e3,
        p99: ms.p99 * 1e3,
        min: ms.min * 1e3,
        max: ms.max * 1e3,
    })
}

fn recv_with_timeout(
    sock: &std::os::fd::OwnedFd,
    buf: &mut [u8],
) -> Result<(SystemTime, usize), String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::{AsFd, AsRawFd};
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(1000u16)) {
        Ok(n) if n > 0 => crate::peer::recv_timestamped(
            sock.as_raw_fd(),
            buf,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        )
        .ok_or_else(|| "recvmsg failed".to_string()),
        _ => Err("the injected frame never reached the SUT interface".into()),
    }
}

/// The suite under suites/, run by this binary as a child (`run`, `--fast` or not), with the
/// child's CPU time and peak RSS from wait4's rusage.
fn suite_run(fast: bool) -> Result<SuiteRun, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = scratch_dir();
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["run", "--format", "terse", "--pcap-dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if fast {
        cmd.arg("--fast");
    }
    let t = Instant::now();
    let child = cmd.spawn().map_err(|e| e.to_string())?;
    let mut status = 0;
    // SAFETY: rusage is plain data written by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child; pointers are valid.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall_s = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    if rc < 0 {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    Ok(SuiteRun {
        wall_s,
        cpu_s: secs(usage.ru_utime) + secs(usage.ru_stime),
        peak_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        passed: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    })
}

/// The `--fast` suite as a child at nice 19, with a busy loop per CPU in this process.
fn loaded_run() -> Result<LoadedRun, String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = scratch_dir();
    let json = dir.join("loaded.json");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hogs: Vec<_> = (0..cpus)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let status = std::process::Command::new("nice")
        .args(["-n", "19"])
        .arg(exe)
        .args(["run", "--fast", "--format", "terse", "--pcap-dir"])
        .arg(&dir)
        .arg("--json")
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        let _ = h.join();
    }
    status.map_err(|e| format!("nice: {e}"))?;
    let report = crate::report::Report::read(&json).map_err(|e| format!("the loaded run: {e}"))?;
    let _ = std::fs::remove_dir_all(&dir);
    let mut allowances: Vec<Duration> = report
        .trials
        .iter()
        .map(|t| Duration::from_secs_f64(t.allowance_ms / 1e3))
        .collect();
    if allowances.is_empty() {
        allowances.push(Duration::ZERO);
    }
    let s = &report.summary;
    Ok(LoadedRun {
        trials: s.trials,
        inconclusive_rate: s.trials_with_inconclusive_runs as f64 / s.trials.max(1) as f64,
        inconclusive_after: s.inconclusive,
        failed: s.failures(),
        allowance: Stats::of(&mut allowances),
    })
}

/// `halfclose run close/active-close.yaml --filter ipv4::close::active-close --exact`, as a
/// user runs it: the whole process, from spawn to exit status (the wall time a shell, a CI
/// step or a nextest slot waits). The scenario is written to a scratch directory, so this
/// works from anywhere.
fn one_scenario_process(runs: usize) -> Result<Stats, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = scratch_dir().join("process");
    let file = dir.join("close").join("active-close.yaml");
    crate::report::write_file(&file, ACTIVE_CLOSE).map_err(|e| e.to_string())?;
    let mut samples = Vec::with_capacity(runs);
    let mut result = Ok(());
    for _ in 0..runs {
        let t = Instant::now();
        let status = std::process::Command::new(&exe)
            .arg("run")
            .arg(&file)
            .args([
                "--filter",
                "ipv4::close::active-close",
                "--exact",
                "--format",
                "terse",
            ])
            .arg("--pcap-dir")
            .arg(dir.join("pcaps"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        samples.push(t.elapsed());
        // 3: inconclusive (the machine was busy); still a process run, still timed.
        if !matches!(status.code(), Some(exit::OK | exit::INCONCLUSIVE)) {
            result = Err(format!("the one-scenario run exited with {status}"));
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|()| Stats::of(&mut samples))
}

/// Namespaces and veth up and down, no script.
fn topology_overhead(runs: usize) -> Result<Stats, String> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let topo = Topology::create(&[]).map_err(|e| e.to_string())?;
        drop(topo);
        samples.push(t.elapsed());
    }
    Ok(Stats::of(&mut samples))
}

/// The whole active-close trial (A1, IPv4), capture written, as `halfclose run` does it.
fn active_close_trial(runs: usize) -> Result<Stats, String> {
    let file = Path::new("suites/close/active-close.yaml");
    let sc = script::parse(ACTIVE_CLOSE, file, "close").map_err(|e| e.to_string())?;
    let dir = scratch_dir();
    let cfg = TrialConfig::new(dir.clone(), Default::default());
    let mut samples = Vec::with_capacity(runs);
    let mut result = Ok(());
    for _ in 0..runs {
        let t = Instant::now();
        let v = runner::run_trial(&sc, Family::V4, &cfg);
        samples.push(t.elapsed());
        if let Some(f) = v.failure_text() {
            result = Err(format!("the benchmark trial failed:\n{f}"));
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|()| Stats::of(&mut samples))
}

fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("halfclose-bench-{}", std::process::id()))
}

fn print_figures(f: &Figures, json: bool) {
    if json {
        let suite = |r: Option<SuiteRun>, key: fn(&SuiteRun) -> f64| r.as_ref().map(key);
        let v = serde_json::json!({
            "runs": f.runs,
            "trial_overhead_ms": { "p50": f.overhead.p50, "p99": f.overhead.p99 },
            "one_scenario_process_ms": { "p50": f.process.p50, "p99": f.process.p99 },
            "active_close_trial_ms": { "p50": f.trial.p50, "p99": f.trial.p99 },
            "inject_error_us": { "p50": f.inject.p50, "p99": f.inject.p99 },
            "suite_wall_s": suite(f.suite, |r| r.wall_s),
            "suite_cpu_s": suite(f.suite, |r| r.cpu_s),
            "peak_rss_mb": suite(f.suite, |r| r.peak_rss_mb),
            "suite_passed": f.suite.map(|r| r.passed),
            "fast_suite_wall_s": suite(f.fast_suite, |r| r.wall_s),
            "fast_suite_cpu_s": suite(f.fast_suite, |r| r.cpu_s),
            "allowance_ms": f.loaded.as_ref().map(|l| serde_json::json!({
                "p50": l.allowance.p50, "p99": l.allowance.p99, "max": l.allowance.max,
            })),
            "inconclusive_rate": f.loaded.as_ref().map(|l| l.inconclusive_rate),
            "loaded_inconclusive_after_retries": f.loaded.as_ref().map(|l| l.inconclusive_after),
            "loaded_failed": f.loaded.as_ref().map(|l| l.failed),
        });
        println!("{v}");
        return;
    }
    println!("halfclose bench: {} runs each, wall-clock time", f.runs);
    for (what, s, unit) in [
        ("trial overhead (netns + veth up/down)", &f.overhead, "ms"),
        ("one-scenario process (run A1, ipv4)", &f.process, "ms"),
        ("active-close trial (A1, ipv4)", &f.trial, "ms"),
        ("injection error (vs SUT rx timestamp)", &f.inject, "µs"),
    ] {
        println!(
            "  {what:<40} median {:>7.2} {unit}  p99 {:>7.2} {unit}  (min {:.2}, max {:.2})",
            s.p50, s.p99, s.min, s.max
        );
    }
    for (what, r) in [("suite", f.suite), ("suite --fast", f.fast_suite)] {
        match r {
            Some(r) => println!(
                "  {what:<40} wall {:>6.1} s   cpu {:>5.1} s   peak RSS {:.0} MB   {}",
                r.wall_s,
                r.cpu_s,
                r.peak_rss_mb,
                if r.passed { "all passed" } else { "FAILURES" }
            ),
            None => println!("  {what:<40} not run (--no-suite, or no suites/ here)"),
        }
    }
    if let Some(l) = &f.loaded {
        println!(
            "  {:<40} {} trials: {:.1} % had an inconclusive run, {} still inconclusive after retries, {} failed",
            "suite --fast, nice 19, CPUs busy",
            l.trials,
            l.inconclusive_rate * 100.0,
            l.inconclusive_after,
            l.failed
        );
        println!(
            "  {:<40} per trial: median {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            "  allowance (CPU steal in windows)", l.allowance.p50, l.allowance.p99, l.allowance.max
        );
    }
}
