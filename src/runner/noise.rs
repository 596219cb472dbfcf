//! How this machine disturbs a trial right now, measured rather than assumed, in two kinds
//! that are used in opposite ways:
//!
//! - **CPU steal** (`steal`): time the hypervisor ran something else instead of this VM's
//!   CPUs, as the kernel accounts it in /proc/stat. Stolen time delays the SUT's timers and
//!   softirqs as much as the harness's, so it is the one *allowance* a window may take: the
//!   steal measured while the window ran, printed with the verdict.
//! - **Softirq-thread waits** (`softirq_wait`): on a busy machine the kernel hands pending
//!   softirqs, timer expiries among them, to the per-CPU `ksoftirqd` thread, which then waits
//!   for its CPU like any task. Its run delay (schedstat) says how long: the SUT's own timer
//!   lateness, measured where it happens. It can only make a window's late edge *may*-late:
//!   a verdict it alone could change is inconclusive, never a pass.
//! - **Agent run delay** (`TaskWatch`): an agent stack's timers fire on the agent process's
//!   threads, which on a busy machine wait for a CPU like any task; their summed run delay
//!   (schedstat) is sampled for the life of the agent. Like softirq waits it only widens what a
//!   late edge *may* allow: a verdict it alone could change is inconclusive.
//! - **Harness stalls** (`harness_stall`): one thread per CPU (pinned, at real-time priority
//!   where allowed) sleeps 1 ms at a time and records how late it wakes. A late wake-up means
//!   the harness's own threads could not run (the process was stopped, or starved). That
//!   never widens a window; it marks the moments the harness measured itself (a call's
//!   return) as untrustworthy, which makes the trial inconclusive.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

const TICK: Duration = Duration::from_millis(1);
/// Lateness below this is the sleep's own slack, not a stall worth keeping.
const RECORD_ABOVE: Duration = Duration::from_micros(500);
/// Longest window a trial measures (TIME_WAIT and its slack), with room to spare.
const KEEP: Duration = Duration::from_secs(180);
/// How often /proc/stat is read for steal.
const STEAL_EVERY: Duration = Duration::from_millis(10);
/// /proc/stat counts in USER_HZ ticks.
const USER_HZ_TICK: Duration = Duration::from_millis(10);

/// Timed samples, oldest first.
type Samples<T> = Mutex<VecDeque<(SystemTime, T)>>;

/// Wake-ups that came late: when the thread woke, and how late.
static STALLS: OnceLock<Samples<Duration>> = OnceLock::new();
/// Steal samples: when read, and each CPU's steal so far (USER_HZ ticks).
static STEAL: OnceLock<Samples<Vec<u64>>> = OnceLock::new();
/// Softirq-thread samples: when read, and each CPU's ksoftirqd run delay so far (ns).
static SOFTIRQ: OnceLock<Samples<Vec<u64>>> = OnceLock::new();
/// The `ksoftirqd/N` threads, found once.
static KSOFTIRQD: OnceLock<Vec<u32>> = OnceLock::new();

/// Starts the monitor threads once per process.
pub fn start() {
    STALLS.get_or_init(|| {
        let cpus = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        for cpu in 0..cpus {
            let _ = std::thread::Builder::new()
                .name(format!("halfclose-stall{cpu}"))
                .spawn(move || watch(cpu));
        }
        Mutex::new(VecDeque::new())
    });
    SOFTIRQ.get_or_init(|| Mutex::new(VecDeque::new()));
    STEAL.get_or_init(|| {
        let _ = std::thread::Builder::new()
            .name("halfclose-steal".into())
            .spawn(sample_steal);
        Mutex::new(VecDeque::new())
    });
}

fn watch(cpu: usize) {
    pin_to(cpu);
    let _rt = crate::realtime::Realtime::enter();
    loop {
        let t0 = Instant::now();
        std::thread::sleep(TICK);
        let late = t0.elapsed().saturating_sub(TICK);
        if late > RECORD_ABOVE {
            record(SystemTime::now(), late);
        }
    }
}

fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn record(at: SystemTime, late: Duration) {
    if let Some(stalls) = STALLS.get() {
        keep_recent(stalls, at, late);
    }
}

/// Appends a timed sample and forgets those older than [`KEEP`]. Two threads take samples
/// (the sampler, and a judge that needs one after its moment): one read before the latest
/// kept is dropped, so the queue stays in time order.
fn keep_recent<T>(q: &Samples<T>, at: SystemTime, item: T) {
    let mut s = q.lock().unwrap_or_else(|e| e.into_inner());
    if s.back().is_some_and(|(t, _)| *t >= at) {
        return;
    }
    s.push_back((at, item));
    while s
        .front()
        .is_some_and(|(t, _)| at.duration_since(*t).unwrap_or_default() > KEEP)
    {
        s.pop_front();
    }
}

/// The worst harness stall that overlapped `[from, to]`: a wake-up at `w`, `late` late, means
/// the thread did not run from `w − late − 1 ms` to `w`.
pub fn harness_stall(from: SystemTime, to: SystemTime) -> Duration {
    let Some(stalls) = STALLS.get() else {
        return Duration::ZERO;
    };
    let s = stalls.lock().unwrap_or_else(|e| e.into_inner());
    s.iter()
        .filter(|(woke, late)| *woke >= from && *woke - (*late + TICK) <= to)
        .map(|(_, late)| *late)
        .max()
        .unwrap_or_default()
}

/// The sampler: real-time where allowed, as a normal thread starved under load left gaps of
/// tens of ms between samples. It reads two small /proc files every 10 ms.
fn sample_steal() {
    let _rt = crate::realtime::Realtime::enter();
    loop {
        sample_machine();
        std::thread::sleep(STEAL_EVERY);
    }
}

/// One steal and softirq-thread sample, now.
fn sample_machine() {
    let ksoftirqd = KSOFTIRQD.get_or_init(ksoftirqd_pids);
    let now = SystemTime::now();
    if let Some(ticks) = read_steal() {
        push_steal(now, ticks);
    }
    if let Some(q) = SOFTIRQ.get().filter(|_| !ksoftirqd.is_empty()) {
        keep_recent(q, now, ksoftirqd.iter().map(|p| run_delay(*p)).collect());
    }
}

/// A sample at or after `to` exists once this returns (when sampling works at all): a span's
/// noise is the growth up to the first sample after its end, and a judgment made right at the
/// end would otherwise read the growth only up to the last sample before it, up to 10 ms
/// (more when the sampler was held up) short: noise missed there read as none.
fn sampled_past(q: &Samples<Vec<u64>>, to: SystemTime, take: impl FnOnce()) {
    let behind = q
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .back()
        .is_none_or(|(t, _)| *t < to);
    if behind && SystemTime::now() >= to {
        take();
    }
}

/// The per-CPU softirq threads, `ksoftirqd/N`.
fn ksoftirqd_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("ksoftirqd/"))
        })
        .collect()
}

/// How long a task has waited to run, in total (ns): the second field of its schedstat.
fn run_delay(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// At most how long a softirq thread waited for its CPU around `[from, to]`: the most any
/// `ksoftirqd/N`'s run delay grew between the last sample before `from` and the first after
/// `to`. Softirqs the kernel defers to that thread (timer expiries among them, once the
/// machine is busy) are that late; the SUT's timers with them. Zero where the threads or
/// their schedstat cannot be read.
pub fn softirq_wait(from: SystemTime, to: SystemTime) -> Duration {
    let Some(q) = SOFTIRQ.get() else {
        return Duration::ZERO;
    };
    sampled_past(q, to, sample_machine);
    let s = q.lock().unwrap_or_else(|e| e.into_inner());
    Duration::from_nanos(most_growth(&s, from, to))
}

fn push_steal(at: SystemTime, ticks: Vec<u64>) {
    if let Some(steal) = STEAL.get() {
        keep_recent(steal, at, ticks);
    }
}

/// Each CPU's steal from /proc/stat (the 8th value of a `cpuN` line).
fn read_steal() -> Option<Vec<u64>> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    Some(parse_steal(&text))
}

fn parse_steal(text: &str) -> Vec<u64> {
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            l.split_whitespace()
                .nth(8)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
        .collect()
}

/// Bounds on the most CPU time the host took from any one CPU during `[from, to]`: between
/// the last sample before `from` and the first after `to`, any one CPU's steal counter moved
/// by Δ USER_HZ ticks. The counter shows whole ticks of a running total, so the time stolen was
/// more than (Δ − 1) ticks and less than (Δ + 1). Δ = 0 reads as none.
pub fn steal_bounds(from: SystemTime, to: SystemTime) -> (Duration, Duration) {
    tick_bounds(steal(from, to).as_millis() as u32 / USER_HZ_TICK.as_millis() as u32)
}

fn tick_bounds(ticks: u32) -> (Duration, Duration) {
    match ticks {
        0 => (Duration::ZERO, Duration::ZERO),
        n => (USER_HZ_TICK * (n - 1), USER_HZ_TICK * (n + 1)),
    }
}

/// The most any one CPU's steal counter moved during `[from, to]` (see [`steal_bounds`]).
pub fn steal(from: SystemTime, to: SystemTime) -> Duration {
    let Some(steal) = STEAL.get() else {
        return Duration::ZERO;
    };
    sampled_past(steal, to, sample_machine);
    let s = steal.lock().unwrap_or_else(|e| e.into_inner());
    steal_between(&s, from, to)
}

fn steal_between(
    s: &VecDeque<(SystemTime, Vec<u64>)>,
    from: SystemTime,
    to: SystemTime,
) -> Duration {
    USER_HZ_TICK * most_growth(s, from, to) as u32
}

/// The most any one counter grew between the last sample before `from` and the first after
/// `to` (or the latest).
fn most_growth(s: &VecDeque<(SystemTime, Vec<u64>)>, from: SystemTime, to: SystemTime) -> u64 {
    // Samples are in time order (one thread takes them): a binary search, not a walk over
    // up to 18,000 of them on every window a step judges.
    let first_after_from = s.partition_point(|(t, _)| *t <= from);
    let before = first_after_from.checked_sub(1).and_then(|i| s.get(i));
    let after = s.get(s.partition_point(|(t, _)| *t < to)).or(s.back());
    match (before, after) {
        (Some((_, a)), Some((_, b))) => a
            .iter()
            .zip(b)
            .map(|(x, y)| y.saturating_sub(*x))
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

/// The run delay of one process's threads, sampled every [`STEAL_EVERY`] on a thread of its
/// own until dropped.
pub struct TaskWatch {
    samples: std::sync::Arc<Samples<Vec<u64>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pid: u32,
}

impl TaskWatch {
    /// Starts watching `pid`; None when its schedstat cannot be read (no such process, or a
    /// kernel without schedstats), and the agent's lateness then goes unmeasured.
    pub fn start(pid: u32) -> Option<TaskWatch> {
        task_run_delay(pid)?;
        let samples = std::sync::Arc::new(Mutex::new(VecDeque::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (q, done) = (samples.clone(), stop.clone());
        std::thread::Builder::new()
            .name("halfclose-agent-delay".into())
            .spawn(move || {
                let _rt = crate::realtime::Realtime::enter();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    match task_run_delay(pid) {
                        Some(ns) => keep_recent(&q, SystemTime::now(), vec![ns]),
                        None => break,
                    }
                    std::thread::sleep(STEAL_EVERY);
                }
            })
            .ok()?;
        Some(TaskWatch { samples, stop, pid })
    }

    /// At most how long the process's threads, together, waited for a CPU around
    /// `[from, to]` (from the last sample before `from` to the first after `to`). Summed over
    /// threads, so it over-counts when several waited at once: it is a *may* bound only.
    pub fn wait(&self, from: SystemTime, to: SystemTime) -> Duration {
        sampled_past(&self.samples, to, || {
            if let Some(ns) = task_run_delay(self.pid) {
                keep_recent(&self.samples, SystemTime::now(), vec![ns]);
            }
        });
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        Duration::from_nanos(most_growth(&s, from, to))
    }
}

impl Drop for TaskWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The summed run delay (ns) of every thread of `pid`; None if the process is gone.
fn task_run_delay(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for t in tasks.flatten() {
        let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_run_delay_is_watched_and_grows_only_forward() {
        let w = TaskWatch::start(std::process::id()).expect("our own schedstat");
        let t0 = SystemTime::now();
        std::thread::sleep(Duration::from_millis(40));
        let d = w.wait(t0, SystemTime::now());
        // Our threads wait for a CPU a little at most on an idle machine; the bound is the
        // growth of a running total, never negative, and zero over an empty span long ago.
        assert!(d < Duration::from_secs(40), "{d:?}");
        assert_eq!(
            w.wait(t0 - Duration::from_secs(100), t0 - Duration::from_secs(99)),
            Duration::ZERO
        );
        assert!(TaskWatch::start(u32::MAX).is_none());
    }

    /// A span judged right at its end gets a sample after it, so the growth up to the end is
    /// read, not stopped at the last sample before it; one already past it, or an end still
    /// to come, takes none.
    #[test]
    fn a_span_is_read_to_a_sample_past_its_end() {
        let q: Samples<Vec<u64>> = Mutex::new(VecDeque::new());
        let now = SystemTime::now();
        keep_recent(&q, now - Duration::from_millis(30), vec![5]);
        let end = now - Duration::from_millis(1);
        sampled_past(&q, end, || keep_recent(&q, SystemTime::now(), vec![9]));
        let s = q.lock().unwrap();
        assert_eq!(most_growth(&s, now - Duration::from_millis(20), end), 4);
        drop(s);
        let took = std::cell::Cell::new(false);
        sampled_past(&q, end, || took.set(true));
        sampled_past(&q, now + Duration::from_secs(5), || took.set(true));
        assert!(!took.get());
        // Out of order: a sample read before the latest one kept is dropped.
        keep_recent(&q, now - Duration::from_millis(10), vec![0]);
        assert_eq!(q.lock().unwrap().len(), 2);
    }

    #[test]
    fn stalls_count_where_they_overlap() {
        start();
        let t = SystemTime::now() + Duration::from_secs(1000);
        record(t, Duration::from_millis(7));
        assert_eq!(
            harness_stall(t - Duration::from_millis(5), t - Duration::from_millis(4)),
            Duration::from_millis(7)
        );
        assert_eq!(
            harness_stall(t + Duration::from_millis(1), t + Duration::from_millis(2)),
            Duration::ZERO
        );
        assert_eq!(
            harness_stall(t - Duration::from_millis(20), t - Duration::from_millis(9)),
            Duration::ZERO
        );
    }

    #[test]
    fn a_counter_of_whole_ticks_bounds_the_steal_both_ways() {
        let ms = Duration::from_millis;
        assert_eq!(tick_bounds(0), (ms(0), ms(0)));
        // One tick more: anything from a hair to just under two ticks was stolen.
        assert_eq!(tick_bounds(1), (ms(0), ms(20)));
        assert_eq!(tick_bounds(3), (ms(20), ms(40)));
    }

    #[test]
    fn every_cpu_has_a_softirq_thread_whose_wait_is_read() {
        let pids = ksoftirqd_pids();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(pids.len(), cpus, "{pids:?}");
        // Each has waited for its CPU at some point since boot.
        assert!(pids.iter().any(|p| run_delay(*p) > 0));
    }

    #[test]
    fn steal_is_read_per_cpu() {
        let text = "cpu  16807 0 2462 9770 110 0 14 18 0 0\n\
                    cpu0 8310 0 1111 5139 20 0 3 8 0 0\n\
                    cpu1 8496 0 1350 4630 90 0 10 10 0 0\nintr 5 6\n";
        assert_eq!(parse_steal(text), vec![8, 10]);
    }

    #[test]
    fn steal_counts_the_worst_cpu_across_the_window() {
        let t = SystemTime::now();
        let ms = Duration::from_millis;
        let s: VecDeque<_> = [
            (t, vec![5, 5]),
            (t + ms(10), vec![5, 7]),
            (t + ms(20), vec![6, 7]),
            (t + ms(30), vec![6, 7]),
        ]
        .into();
        assert_eq!(steal_between(&s, t + ms(1), t + ms(15)), ms(20));
        assert_eq!(steal_between(&s, t + ms(21), t + ms(29)), Duration::ZERO);
    }
}
