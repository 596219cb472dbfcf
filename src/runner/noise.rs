//! How late this machine runs things right now, measured rather than assumed.
//!
//! On a VM the guest's CPUs can stop for milliseconds (the host runs something else), and a
//! deferred softirq waits for a CPU; both delay the kernel's timers and the timestamps the
//! peer takes. One thread per CPU (pinned, so a stall of either CPU shows) sleeps 1 ms at a
//! time and records how late it wakes. A time window is widened by the worst lateness recorded
//! during the interval it covers: the allowance is the noise that actually happened, not a
//! tolerance chosen in advance.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

const TICK: Duration = Duration::from_millis(1);
/// Lateness below this is the sleep's own slack, not a stall worth keeping.
const RECORD_ABOVE: Duration = Duration::from_micros(500);
/// Longest window a trial measures (TIME_WAIT and its slack), with room to spare.
const KEEP: Duration = Duration::from_secs(180);
/// How long a window's end is waited for beyond its nominal close, so noise can be measured.
pub const WAIT_BEYOND: Duration = Duration::from_millis(100);

/// Wake-ups that came late: when the thread woke, and how late.
static STALLS: OnceLock<Mutex<VecDeque<(SystemTime, Duration)>>> = OnceLock::new();

/// Starts the monitor threads once per process.
pub fn start() {
    STALLS.get_or_init(|| {
        let cpus = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        for cpu in 0..cpus {
            let _ = std::thread::Builder::new()
                .name(format!("halfclose-noise{cpu}"))
                .spawn(move || watch(cpu));
        }
        Mutex::new(VecDeque::new())
    });
}

fn watch(cpu: usize) {
    pin_to(cpu);
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
    let Some(stalls) = STALLS.get() else { return };
    let mut s = stalls.lock().unwrap_or_else(|e| e.into_inner());
    s.push_back((at, late));
    while s
        .front()
        .is_some_and(|(t, _)| at.duration_since(*t).unwrap_or_default() > KEEP)
    {
        s.pop_front();
    }
}

/// The worst stall that overlapped `[from, to]`: a wake-up at `w`, `late` late, means the CPU
/// did not run this thread from `w − late − 1 ms` to `w`.
pub fn worst(from: SystemTime, to: SystemTime) -> Duration {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_count_where_they_overlap() {
        start();
        let t = SystemTime::now() + Duration::from_secs(1000);
        record(t, Duration::from_millis(7));
        assert_eq!(
            worst(t - Duration::from_millis(5), t - Duration::from_millis(4)),
            Duration::from_millis(7)
        );
        assert_eq!(
            worst(t + Duration::from_millis(1), t + Duration::from_millis(2)),
            Duration::ZERO
        );
        assert_eq!(
            worst(t - Duration::from_millis(20), t - Duration::from_millis(9)),
            Duration::ZERO
        );
    }
}
