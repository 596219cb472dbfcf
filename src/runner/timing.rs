//! When the SUT's retransmission timer fires, from a model of the Linux timers rather than
//! from numbers typed into scripts.
//!
//! Linux (HZ=250, one jiffy = 4 ms) sets RTO = SRTT + max(4·RTTVAR-ish term, RTO_min), where the
//! variance term never drops below `tcp_rto_min` (200 ms): after a handshake over a veth,
//! RTO = SRTT + 200 ms, rounded up to a jiffy. Each retransmission doubles it (up to 120 s).
//! The timer wheel then fires a timer late by up to its level's granularity (1 jiffy for
//! timeouts under 63 jiffies, 8 under 504, 64 under 4032, …), never early, plus up to one
//! jiffy for the tick that notices it.
//!
//! What the peer measures adds machine noise, both ways: the timer softirq waiting for a CPU
//! (late); a jiffies counter that lags the wall clock when the timer is armed, because the
//! tick that advances it is due or delayed (early); and the peer's receive timestamp of the
//! segment the window counts from, taken in a softirq that can itself be deferred (either
//! way). The model allows 2 jiffies each way for a tick that is due; stalls beyond that — a
//! VM's CPU taken away by the host for milliseconds, a softirq deferred to its thread — are
//! measured while the window runs (`noise`) and added to it, so a window never grows by more
//! than the noise that actually happened. (Before that measurement, on this 2-core VM,
//! retransmissions came up to 17.5 ms past the wheel's bound and 8.3 ms before RTO.)
//!
//! SRTT is known only within the RTT samples the peer caused: the time between a SUT segment
//! reaching the peer and the peer's ACK of it (the veth adds microseconds). The runner keeps
//! the smallest and largest of them.

use std::time::Duration;

/// Timer constants of one stack.
#[derive(Clone, Copy, Debug)]
pub struct TimerModel {
    pub jiffy: Duration,
    pub rto_min: Duration,
    pub rto_max: Duration,
    /// Machine noise allowed each way, in jiffies (see the module comment).
    pub noise_jiffies: u32,
}

impl TimerModel {
    pub const LINUX: TimerModel = TimerModel {
        jiffy: Duration::from_millis(4),
        rto_min: Duration::from_millis(200),
        rto_max: Duration::from_secs(120),
        noise_jiffies: 2,
    };

    fn ceil_jiffy(&self, d: Duration) -> Duration {
        let j = self.jiffy.as_nanos();
        let n = d.as_nanos().div_ceil(j);
        Duration::from_nanos((n * j) as u64)
    }

    /// How late the timer wheel may fire a timer set `d` ahead.
    fn wheel_slack(&self, d: Duration) -> Duration {
        let jiffies = d.as_nanos() / self.jiffy.as_nanos();
        let mut granularity = 1u32;
        let mut level_end = 63u128;
        while jiffies >= level_end {
            granularity *= 8;
            level_end *= 8;
        }
        self.jiffy * (granularity + 1 + self.noise_jiffies)
    }

    /// The RTO after RTT samples between `rtt.lo` and `rtt.hi`.
    fn rto_bounds(&self, rtt: RttRange) -> (Duration, Duration) {
        let lo = rtt.lo + self.rto_min.max(rtt.lo * 2);
        let hi = rtt.hi + self.rto_min.max(rtt.hi * 2);
        (self.ceil_jiffy(lo), self.ceil_jiffy(hi))
    }

    /// The window, measured from the previous transmission, in which retransmission `n`
    /// (1 = the first) of a segment must leave: never before RTO less the machine noise, and
    /// by RTO plus the wheel's slack.
    pub fn retransmission_window(&self, n: u32, rtt: RttRange) -> (Duration, Duration) {
        let (lo, hi) = self.rto_bounds(rtt);
        let backoff = 1u32 << (n.clamp(1, 16) - 1);
        let (lo, hi) = (
            (lo * backoff).min(self.rto_max),
            (hi * backoff).min(self.rto_max),
        );
        (
            lo.saturating_sub(self.jiffy * self.noise_jiffies),
            hi + self.wheel_slack(hi),
        )
    }
}

/// The smallest and largest RTT sample the peer caused (zero before any).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RttRange {
    pub lo: Duration,
    pub hi: Duration,
}

impl RttRange {
    pub fn add(&mut self, sample: Duration, first: bool) {
        if first {
            *self = RttRange {
                lo: sample,
                hi: sample,
            };
        } else {
            self.lo = self.lo.min(sample);
            self.hi = self.hi.max(sample);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn first_retransmissions_after_a_fast_handshake() {
        let rtt = RttRange {
            lo: Duration::from_micros(100),
            hi: Duration::from_micros(300),
        };
        let m = TimerModel::LINUX;
        // 200.1..200.3 ms → 204 ms after rounding up to a jiffy; noise 2 jiffies early,
        // slack 1+1+2 jiffies late.
        assert_eq!(m.retransmission_window(1, rtt), (MS(196), MS(220)));
        // 408 ms = 102 jiffies: level 1, granularity 8 jiffies.
        assert_eq!(m.retransmission_window(2, rtt), (MS(400), MS(452)));
        assert_eq!(m.retransmission_window(3, rtt), (MS(808), MS(860)));
    }

    #[test]
    fn a_slow_peer_widens_the_window_by_its_own_delay() {
        let rtt = RttRange {
            lo: Duration::from_micros(100),
            hi: MS(6),
        };
        let (lo, hi) = TimerModel::LINUX.retransmission_window(2, rtt);
        assert_eq!((lo, hi), (MS(400), MS(416) + MS(44)));
    }

    #[test]
    fn backoff_stops_at_rto_max() {
        let (lo, _) = TimerModel::LINUX.retransmission_window(16, RttRange::default());
        assert_eq!(lo, Duration::from_secs(120) - MS(8));
    }
}
