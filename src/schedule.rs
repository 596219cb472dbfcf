//! Running many trials at once: most of a teardown trial is waiting (quiet periods, timers,
//! the 60 s TIME_WAIT), so trials run concurrently, longest first, and the suite takes about as
//! long as its longest trial. While long trials wait, a terminal shows which and how long.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Conclusion, Trial};

use crate::script::{Action, Scenario};
use crate::timers::TimerProfile;

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

/// Who runs now: first runs share the machine; a rerun (its first run was inconclusive, the
/// harness was late) runs alone. A rerun beside the 31 other trials that made the first run
/// late would meet the same load; alone it meets only the machine's own noise. While a rerun
/// waits for the running trials to finish, no new trial starts, so it cannot starve.
pub struct Gate {
    state: Mutex<Occupancy>,
    changed: Condvar,
}

#[derive(Default)]
struct Occupancy {
    /// Trials running their first run.
    sharing: usize,
    /// Reruns waiting for the machine to empty.
    waiting_alone: usize,
    /// A rerun is running.
    alone: bool,
}

/// The process's gate, which every trial goes through.
pub static GATE: Gate = Gate::new();

/// Held while a trial runs; see [`Gate`].
pub struct Turn<'a> {
    gate: &'a Gate,
    alone: bool,
}

impl Gate {
    pub const fn new() -> Gate {
        Gate {
            state: Mutex::new(Occupancy {
                sharing: 0,
                waiting_alone: 0,
                alone: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn wait_while(
        &self,
        busy: impl Fn(&Occupancy) -> bool,
    ) -> std::sync::MutexGuard<'_, Occupancy> {
        let o = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.changed
            .wait_while(o, |o| busy(o))
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A turn beside other first runs: waits while a rerun runs or waits.
    pub fn shared(&self) -> Turn<'_> {
        self.wait_while(|o| o.alone || o.waiting_alone > 0).sharing += 1;
        Turn {
            gate: self,
            alone: false,
        }
    }

    /// A turn with the machine to itself: waits until every running trial has finished. The
    /// caller must not hold a turn already.
    pub fn alone(&self) -> Turn<'_> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting_alone += 1;
        self.changed.notify_all();
        let mut o = self.wait_while(|o| o.alone || o.sharing > 0);
        o.waiting_alone -= 1;
        o.alone = true;
        Turn {
            gate: self,
            alone: true,
        }
    }
}

impl Default for Gate {
    fn default() -> Gate {
        Gate::new()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut o = self.gate.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.alone {
            o.alone = false;
        } else {
            o.sharing -= 1;
        }
        drop(o);
        self.gate.changed.notify_all();
    }
}

/// A trial and how long its script says it will take.
pub struct Planned {
    pub trial: Trial,
    pub estimate: Duration,
}

/// How long a scenario takes at least: its waits, quiet periods, delays and derived timer
/// windows. Used to start the longest trials first, and for the progress line.
pub fn estimate(sc: &Scenario, profile: &TimerProfile) -> Duration {
    // A trial with alternatives may run each of them: it lasts as long as all together.
    if !sc.alternatives.is_empty() {
        return (0..sc.alternatives.len())
            .map(|i| estimate(&sc.with_alternative(i), profile))
            .sum();
    }
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
        // No more threads than trials: libtest-mimic starts the whole pool at once, and a
        // one-trial process (nextest's, or `run FILE --exact`) would spend ms making 32.
        let wanted = planned
            .iter()
            .filter(|p| !args.is_filtered_out(&p.trial) && !args.is_ignored(&p.trial))
            .count();
        args.test_threads
            .get_or_insert(DEFAULT_CONCURRENCY.min(wanted.max(1)));
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

#[cfg(test)]
mod gate_tests {
    use super::Gate;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// A rerun waits for the first runs beside it to end, and a first run asked for while the
    /// rerun waits starts only after it.
    #[test]
    fn a_rerun_runs_alone_and_first_runs_wait_for_it() {
        let gate = Arc::new(Gate::new());
        let order = Arc::new(AtomicUsize::new(0));
        let first = gate.shared();
        let (g, o) = (gate.clone(), order.clone());
        let rerun = std::thread::spawn(move || {
            let _t = g.alone();
            let at = o.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            at
        });
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            order.load(Ordering::SeqCst),
            0,
            "the rerun began beside a first run"
        );
        let (g, o) = (gate.clone(), order.clone());
        let later = std::thread::spawn(move || {
            let _t = g.shared();
            o.fetch_add(1, Ordering::SeqCst)
        });
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            order.load(Ordering::SeqCst),
            0,
            "a first run overtook the waiting rerun"
        );
        drop(first);
        assert_eq!(rerun.join().unwrap(), 0);
        assert_eq!(later.join().unwrap(), 1);
    }

    /// First runs share: two turns at once.
    #[test]
    fn first_runs_share() {
        let gate = Gate::new();
        let a = gate.shared();
        let b = gate.shared();
        drop((a, b));
        let _alone = gate.alone();
    }
}
