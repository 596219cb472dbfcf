//! SUT segments between the receive thread and the runner, judged by their kernel timestamps.
//!
//! "Nothing arrived by T" is a statement about frames the kernel stamped before T, not about
//! when the harness got round to reading them. The receive thread therefore records, each
//! time it finds the socket empty, the moment it looked (`drained_at`): every frame queued
//! before that moment has been handed over. The runner decides "nothing by T" only once
//! `drained_at` has passed T, asking the receive thread to look again if it must.
//!
//! One gap remains: the kernel stamps a frame when it enters the receive backlog, and a
//! deferred softirq can put it on the socket later. Such a frame, stamped before a moment the
//! runner already judged empty, is kept as a *late delivery*: the decision was made without
//! it, so the trial cannot be trusted either way (the runner makes it inconclusive).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime};

use super::Arrival;

/// How often the runner re-asks for a look while the receive thread has not answered.
const ASK_EVERY: Duration = Duration::from_millis(20);

#[derive(Default)]
struct State {
    queue: VecDeque<Arrival>,
    /// When the receive thread last found the socket empty.
    drained_at: Option<SystemTime>,
    /// The latest moment the runner judged "nothing arrived by then".
    judged_empty: Option<SystemTime>,
    /// Frames stamped before `judged_empty` that came after the judgement: (frame, stamp,
    /// the moment judged).
    late: Vec<(usize, SystemTime, SystemTime)>,
    closed: bool,
}

/// The queue of SUT segments, shared by the receive thread and the runner.
#[derive(Default)]
pub struct Inbox {
    state: Mutex<State>,
    changed: Condvar,
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The receive thread hands over a segment.
    pub fn push(&self, a: Arrival) {
        let mut s = self.lock();
        if let Some(j) = s.judged_empty.filter(|j| a.at <= *j) {
            s.late.push((a.frame, a.at, j));
        }
        s.queue.push_back(a);
        self.changed.notify_all();
    }

    /// The receive thread found the socket empty when it looked at `at`.
    pub fn drained(&self, at: SystemTime) {
        let mut s = self.lock();
        s.drained_at = Some(s.drained_at.map_or(at, |d| d.max(at)));
        self.changed.notify_all();
    }

    /// The receive thread has stopped: nothing more will come.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The first segment stamped at or before `until`; None once it is certain (by the
    /// timestamps) that none was. `ask` requests a fresh look from the receive thread.
    pub fn first_by(&self, until: SystemTime, ask: impl Fn()) -> Option<Arrival> {
        let mut s = self.lock();
        loop {
            if let Some(front) = s.queue.front() {
                if front.at <= until {
                    return s.queue.pop_front();
                }
                // Frames come in stamp order: one stamped later means none earlier is due.
                return judged(&mut s, until);
            }
            if s.closed || s.drained_at.is_some_and(|d| d >= until) {
                return judged(&mut s, until);
            }
            let wait = match until.duration_since(SystemTime::now()) {
                Ok(left) => left.min(ASK_EVERY * 50),
                Err(_) => {
                    ask();
                    ASK_EVERY
                }
            };
            s = self
                .changed
                .wait_timeout(s, wait.max(Duration::from_micros(50)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Puts a segment taken with `first_by` back at the front, for the next step.
    pub fn put_back(&self, a: Arrival) {
        self.lock().queue.push_front(a);
        self.changed.notify_all();
    }

    /// Everything still queued (the trial is over).
    pub fn take_all(&self) -> Vec<Arrival> {
        self.lock().queue.drain(..).collect()
    }

    /// Segments that came after the runner had judged their moment empty.
    pub fn late_deliveries(&self) -> Vec<(usize, SystemTime, SystemTime)> {
        self.lock().late.clone()
    }
}

fn judged(s: &mut State, until: SystemTime) -> Option<Arrival> {
    s.judged_empty = Some(s.judged_empty.map_or(until, |j| j.max(until)));
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Endpoints, TcpRepr};

    fn arrival(at: SystemTime, frame: usize) -> Arrival {
        Arrival {
            at,
            frame,
            ep: Endpoints {
                src: "192.0.2.1".parse().unwrap(),
                dst: "192.0.2.2".parse().unwrap(),
            },
            tcp: TcpRepr::default(),
            checksum_ok: true,
        }
    }

    #[test]
    fn nothing_is_judged_before_the_socket_was_seen_empty_past_the_moment() {
        let inbox = Inbox::default();
        let t = SystemTime::now() - Duration::from_secs(1);
        // The receive thread last looked before `t`: the runner must ask and wait.
        inbox.drained(t - Duration::from_millis(5));
        std::thread::scope(|sc| {
            sc.spawn(|| {
                std::thread::sleep(Duration::from_millis(30));
                // Read late, but stamped inside the window: it must still count.
                inbox.push(arrival(t - Duration::from_millis(1), 7));
            });
            let got = inbox.first_by(t, || {});
            assert_eq!(got.map(|a| a.frame), Some(7));
        });
        assert!(inbox.late_deliveries().is_empty());
    }

    #[test]
    fn a_frame_stamped_before_a_judged_moment_is_a_late_delivery() {
        let inbox = Inbox::default();
        let t = SystemTime::now();
        inbox.drained(t + Duration::from_millis(1));
        assert!(inbox.first_by(t, || {}).is_none());
        inbox.push(arrival(t - Duration::from_millis(2), 3));
        assert_eq!(inbox.late_deliveries().len(), 1);
        // One stamped after the judged moment is an ordinary arrival.
        inbox.push(arrival(t + Duration::from_millis(2), 4));
        assert_eq!(inbox.late_deliveries().len(), 1);
    }

    #[test]
    fn a_later_stamp_at_the_front_proves_nothing_earlier_is_due() {
        let inbox = Inbox::default();
        let t = SystemTime::now() - Duration::from_secs(1);
        inbox.push(arrival(t + Duration::from_millis(3), 1));
        assert!(inbox.first_by(t, || {}).is_none());
        assert_eq!(
            inbox
                .first_by(t + Duration::from_millis(3), || {})
                .unwrap()
                .frame,
            1
        );
    }
}
