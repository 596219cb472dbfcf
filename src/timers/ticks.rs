//! Timers that count the ticks of one periodic timer instead of being armed for a moment:
//! lwIP's. Its TCP timers all live in tcp_slowtmr (tcp.c), run every TCP_SLOW_INTERVAL
//! (2 × TCP_TMR_INTERVAL = 500 ms, lwip/priv/tcp_priv.h). A connection remembers the tick
//! count of an event (`pcb->tmr = tcp_ticks`) and a timer of N ticks fires on the first tick
//! with `tcp_ticks - tmr > N`: between N and N + 1 ticks after the event, never before.
//! The retransmission timer counts ticks too (`++pcb->rtime` per tick, fire at
//! `rtime >= rto`, rtime started at 0 when the segment left, tcp_out.c), so a first
//! retransmission leaves between rto − 1 and rto ticks after its segment, and every later
//! one exactly on a tick, a whole number of ticks after the one before.
//!
//! The RTO itself is measured in ticks: Van Jacobson's estimator (tcp_in.c, tcp_receive) fed
//! with RTT samples of `tcp_ticks - rttest` — whole ticks, 0 or 1 for any RTT shorter than
//! a tick, depending on whether a tick fell between the segment and its ACK, which the peer
//! cannot see. So the window covers every RTO the estimator can reach from such samples
//! ([`TickTimers::rto_range`]), not one value.

use std::collections::BTreeSet;
use std::time::Duration;

/// The constants of a stack whose timers count ticks.
#[derive(Clone, Copy, Debug)]
pub struct TickTimers {
    /// The period of the timer every TCP timer counts.
    pub tick: Duration,
    /// The RTO and the RTT variance `sv` before any sample, in ticks.
    pub rto_initial: u32,
    /// The largest shift of the backoff (`RTO << tcp_backoff[nrtx]`).
    pub max_shift: u32,
    /// The largest RTO, in ticks (lwIP keeps it in an s16_t: 0x7FFF).
    pub rto_max: u32,
}

/// The estimator's state: `sa` (8 × SRTT) and `sv` (4 × RTTVAR), in ticks.
type Estimate = (i32, i32);

impl TickTimers {
    /// One RTT sample of `m` ticks, as tcp_receive() takes it.
    fn sample((sa, sv): Estimate, m: i32) -> Estimate {
        let mut m = m - (sa >> 3);
        let sa = sa + m;
        m = m.abs() - (sv >> 2);
        (sa, sv + m)
    }

    fn rto_of((sa, sv): Estimate) -> i32 {
        (sa >> 3) + sv
    }

    /// The smallest and largest RTO, in ticks, the estimator can hold after any number of
    /// samples of `m_lo..=m_hi` ticks each, no sample at all included. Every state reachable
    /// from the initial one is visited; the estimator's averaging keeps them few (for samples
    /// of 0 or 1 tick, a few dozen), and a bound stops a pathological range.
    pub fn rto_range(&self, m_lo: u32, m_hi: u32) -> (u32, u32) {
        let start: Estimate = (0, self.rto_initial as i32);
        let mut seen = BTreeSet::from([start]);
        let mut todo = vec![start];
        while let Some(state) = todo.pop() {
            if seen.len() > 100_000 {
                break;
            }
            for m in m_lo..=m_hi.min(m_lo + 64) {
                let next = Self::sample(state, m as i32);
                if seen.insert(next) {
                    todo.push(next);
                }
            }
        }
        let rtos = seen
            .iter()
            .map(|&s| Self::rto_of(s).clamp(1, self.rto_max as i32) as u32);
        let lo = rtos.clone().min().unwrap_or(self.rto_initial);
        (lo, rtos.max().unwrap_or(self.rto_initial))
    }

    /// The RTO range, in ticks, for RTT samples between `lo` and `hi`: a sample counts the
    /// ticks that fell between a segment and its ACK, the floor or the ceiling of RTT/tick.
    pub fn rto_range_for(&self, lo: Duration, hi: Duration) -> (u32, u32) {
        let t = self.tick.as_nanos();
        let m_lo = (lo.as_nanos() / t) as u32;
        let m_hi = hi.as_nanos().div_ceil(t) as u32;
        self.rto_range(m_lo, m_hi)
    }

    /// From the previous transmission, the earliest and latest number of ticks before
    /// retransmission `n` (1 = the first), for an RTO of `rto_lo..=rto_hi` ticks: the first
    /// counts from a segment sent between ticks (one tick is partial), later ones from a
    /// tick, each with the RTO shifted by one more.
    pub fn retransmission_ticks(&self, n: u32, rto_lo: u32, rto_hi: u32) -> (u32, u32) {
        if n <= 1 {
            return (rto_lo.saturating_sub(1), rto_hi);
        }
        let shift = (n - 1).min(self.max_shift);
        let backed = |rto: u32| (rto << shift).min(self.rto_max);
        (backed(rto_lo), backed(rto_hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LWIP: TickTimers = TickTimers {
        tick: Duration::from_millis(500),
        rto_initial: 6,
        max_shift: 7,
        rto_max: 0x7FFF,
    };

    #[test]
    fn samples_of_no_tick_bring_the_rto_from_6_down_to_3_ticks() {
        // sv: 6 → 5 → 4 → 3, then 3 - (3 >> 2) = 3 for good; sa stays 0.
        assert_eq!(LWIP.rto_range(0, 0), (3, 6));
        let mut s = (0, 6);
        let rtos: Vec<i32> = (0..5)
            .map(|_| {
                s = TickTimers::sample(s, 0);
                TickTimers::rto_of(s)
            })
            .collect();
        assert_eq!(rtos, [5, 4, 3, 3, 3]);
    }

    #[test]
    fn a_sample_that_caught_a_tick_can_raise_it() {
        // A first sample of 1 tick: sa = 1, sv = 6; more of them drive sa/8 to 1 while sv
        // stays 6 → 7 ticks at most.
        let (lo, hi) = LWIP.rto_range(0, 1);
        assert_eq!((lo, hi), (3, 7));
        // Any RTT under a tick: samples of 0 or 1 tick.
        assert_eq!(
            LWIP.rto_range_for(Duration::from_micros(50), Duration::from_micros(300)),
            (lo, hi)
        );
    }

    #[test]
    fn the_first_retransmission_has_one_partial_tick_and_later_ones_double() {
        assert_eq!(LWIP.retransmission_ticks(1, 3, 6), (2, 6));
        assert_eq!(LWIP.retransmission_ticks(2, 3, 6), (6, 12));
        assert_eq!(LWIP.retransmission_ticks(3, 3, 6), (12, 24));
        // tcp_backoff[] stops at a shift of 7.
        assert_eq!(LWIP.retransmission_ticks(12, 3, 6), (3 << 7, 6 << 7));
    }
}
