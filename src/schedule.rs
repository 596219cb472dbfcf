//! Running many trials at once: most of a teardown trial is waiting (quiet periods, timers,
//! the 60 s TIME_WAIT), so trials run concurrently, longest first, and the suite takes about as
//! long as its longest trial. While long trials wait, a terminal shows which and how long.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Conclusion, Trial};

use crate::runner::timing::TimerProfile;
use crate::script::{Action, Scenario};

/// Trials at once when the user does not say (`--test-threads`). A trial's CPU time is a few
/// milliseconds of setup, the rest is sleeping; 32 keeps the suite's wall time near its longest
/// trial on two cores while the machine stays mostly idle (see `halfclose bench`).
pub const DEFAULT_CONCURRENCY: usize = 32;

/// Trials expected to run at least this long show up in the progress line.
const LONG: Duration = Duration::from_secs(5);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// At most this many trials build their namespaces and wait for the link at once. The
/// kernel's link-watch work runs at most once a second when link events come faster, and each
/// trial waits for it: a burst of 32 setups on a loaded machine starves it for seconds.
const SETUPS_AT_ONCE: usize = 4;

/// Held while a trial sets up its topology; see [`SETUPS_AT_ONCE`].
pub struct SetupPermit;

pub fn setup_permit() -> SetupPermit {
    let (lock, cv) = setups();
    let mut n = lock.lock().unwrap_or_else(|e| e.into_inner());
    while *n >= SETUPS_AT_ONCE {
        n = cv.wait(n).unwrap_or_else(|e| e.into_inner());
    }
    *n += 1;
    SetupPermit
}

impl Drop for SetupPermit {
    fn drop(&mut self) {
        let (lock, cv) = setups();
        *lock.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        cv.notify_one();
    }
}

fn setups() -> &'static (Mutex<usize>, std::sync::Condvar) {
    static SETUPS: OnceLock<(Mutex<usize>, std::sync::Condvar)> = OnceLock::new();
    SETUPS.get_or_init(Default::default)
}

/// A trial and how long its script says it will take.
pub struct Planned {
    pub trial: Trial,
    pub estimate: Duration,
}

/// How long a scenario takes at least: its waits, quiet periods, delays and derived timer
/// windows. Used to start the longest trials first, and for the progress line.
pub fn estimate(sc: &Scenario, profile: &TimerProfile) -> Duration {
    let mut total = sc.setup.final_quiet;
    for step in &sc.steps {
        total += match &step.action {
            Action::Wait(d) | Action::Quiet(d) => *d,
            Action::Send(s) => s.delay,
            Action::Expect(e) => match e.window.retransmission {
                Some(n) => retransmission_due(profile, n),
                None => e.window.after.unwrap_or_default(),
            },
            Action::Leave { window, .. } => match (window.timer, window.retransmission) {
                (Some(t), _) => profile.armed(t),
                (None, Some(n)) => retransmission_due(profile, n),
                (None, None) => window.after.unwrap_or(window.within),
            },
            _ => Duration::ZERO,
        };
    }
    total
}

/// When retransmission `n` is due at the earliest, as the runner's window will say.
fn retransmission_due(profile: &TimerProfile, n: u32) -> Duration {
    profile.retransmission_window(n, Default::default()).0
}

/// Runs the trials through libtest-mimic: longest first, `DEFAULT_CONCURRENCY` at once unless
/// `--test-threads` says otherwise. `--list` keeps the suite's own order.
pub fn run(args: &Arguments, mut planned: Vec<Planned>) -> Conclusion {
    let mut args = args.clone();
    if !args.list {
        // Stable: equal estimates keep the suite's order.
        planned.sort_by_key(|p| std::cmp::Reverse(p.estimate));
        args.test_threads.get_or_insert(DEFAULT_CONCURRENCY);
        if std::io::stderr().is_terminal() {
            start_progress();
        }
    }
    let trials = planned.into_iter().map(|p| p.trial).collect();
    libtest_mimic::run(&args, trials)
}

/// Trials running now that are expected to take long: name → (started, estimate).
fn running() -> &'static Mutex<BTreeMap<String, (Instant, Duration)>> {
    static RUNNING: OnceLock<Mutex<BTreeMap<String, (Instant, Duration)>>> = OnceLock::new();
    RUNNING.get_or_init(Default::default)
}

/// Marks a trial as running until the guard drops; only long ones are tracked.
pub struct Running(Option<String>);

pub fn started(name: &str, estimate: Duration) -> Running {
    if estimate < LONG {
        return Running(None);
    }
    let mut r = running().lock().unwrap_or_else(|e| e.into_inner());
    r.insert(name.to_string(), (Instant::now(), estimate));
    Running(Some(name.to_string()))
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(name) = self.0.take() {
            let mut r = running().lock().unwrap_or_else(|e| e.into_inner());
            r.remove(&name);
        }
    }
}

fn start_progress() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("halfclose-progress".into())
        .spawn(|| loop {
            std::thread::sleep(PROGRESS_EVERY);
            if let Some(line) = progress_line() {
                eprintln!("{line}");
            }
        });
}

/// "waiting on 2 long trials: ipv4::timers::time-wait-expiry (41 s left), …"
fn progress_line() -> Option<String> {
    let r = running().lock().unwrap_or_else(|e| e.into_inner());
    if r.is_empty() {
        return None;
    }
    let items: Vec<String> = r
        .iter()
        .map(|(name, (t0, est))| {
            let left = est.saturating_sub(t0.elapsed()).as_secs();
            format!("{name} (~{left} s left)")
        })
        .collect();
    Some(format!(
        "halfclose: waiting on {} long trial(s): {}",
        items.len(),
        items.join(", ")
    ))
}
