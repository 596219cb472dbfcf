//! `halfclose bench`: what a trial costs on this machine, as medians and tails.
//!
//! Figures are wall-clock times of whole operations, repeated; the machine's noise (other
//! processes, the kernel's deferred namespace cleanup) shows in the p99, so both are printed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cli::{usage_error, EXIT_FAILED, EXIT_OK};
use crate::runner::{self, TrialConfig};
use crate::script;
use crate::topology::Topology;
use crate::Family;

/// The benchmarked scenario travels with the binary, so `bench` works from any directory.
const ACTIVE_CLOSE: &str = include_str!("../suites/close/active-close.yaml");

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

pub fn cmd(args: &[String]) -> i32 {
    let mut runs = 100usize;
    let mut json = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--runs" => match it.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0) {
                Some(n) => runs = n,
                None => return usage_error("--runs needs a positive number"),
            },
            other => return usage_error(&format!("bench: unknown option `{other}`")),
        }
    }
    match measure(runs) {
        Ok((overhead, trial)) => {
            print_figures(runs, &overhead, &trial, json);
            EXIT_OK
        }
        Err(e) => {
            eprintln!("halfclose bench: {e}");
            EXIT_FAILED
        }
    }
}

fn measure(runs: usize) -> Result<(Stats, Stats), String> {
    let overhead = topology_overhead(runs)?;
    let trial = active_close_trial(runs)?;
    Ok((overhead, trial))
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
    let cfg = TrialConfig {
        pcap_dir: dir.clone(),
    };
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

fn print_figures(runs: usize, overhead: &Stats, trial: &Stats, json: bool) {
    if json {
        let v = serde_json::json!({
            "runs": runs,
            "trial_overhead_ms": { "p50": overhead.p50, "p99": overhead.p99 },
            "active_close_trial_ms": { "p50": trial.p50, "p99": trial.p99 },
        });
        println!("{v}");
        return;
    }
    println!("halfclose bench: {runs} runs each, wall-clock time");
    for (what, s) in [
        ("trial overhead (netns + veth up/down)", overhead),
        ("active-close trial (A1, ipv4)", trial),
    ] {
        println!(
            "  {what:<40} median {:>7.2} ms  p99 {:>7.2} ms  (min {:.2}, max {:.2})",
            s.p50, s.p99, s.min, s.max
        );
    }
}
