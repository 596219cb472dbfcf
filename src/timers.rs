//! When the SUT's timers fire, from a per-stack timer profile rather than from numbers typed
//! into scripts: retransmissions (the RTO and its backoff), TIME_WAIT, and any timer a script
//! arms by length (tcp_fin_timeout, TCP_LINGER2). docs/timing.md derives every window.
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

pub use crate::script::ArmedTimer;

mod ticks;
pub use ticks::TickTimers;

/// How late the harness may be with an agent stack (see [`TimerProfile::harness_slack`]).
pub const AGENT_SLACK: Duration = Duration::from_millis(10);

/// The timer constants of one stack, and how its timers round.
#[derive(Clone, Copy, Debug)]
pub struct TimerProfile {
    /// The stack's name, as in `--stack` and in messages.
    pub name: &'static str,
    /// The clock the timers count in: a jiffy for Linux, the agent's poll resolution else.
    pub jiffy: Duration,
    pub rto_min: Duration,
    /// The RTO before any RTT sample (the SYN's).
    pub rto_initial: Duration,
    pub rto_max: Duration,
    /// How long a connection stays in TIME_WAIT.
    pub time_wait: Duration,
    /// Linux adds the RTO floor to SRTT (RTO = SRTT + max(RTTVAR term, rto_min)); others,
    /// as RFC 6298 says, only clamp (RTO = max(SRTT + 4·RTTVAR, rto_min)).
    pub rto_adds_srtt: bool,
    /// Timers sit on a hierarchical wheel that rounds them up into coarser buckets the further
    /// out they are (Linux); false: they fire when due, give or take a tick.
    pub wheel: bool,
    /// Machine noise allowed each way, in ticks (see the module comment).
    pub noise_jiffies: u32,
    /// How late the harness may be (see [`TimerProfile::harness_slack`]).
    pub harness_slack: Duration,
    /// The stack's TCP timers count the ticks of one periodic timer (lwIP): windows come from
    /// the tick ([`TickTimers`]) instead of from `rto_min`, `rto_adds_srtt` and `wheel`.
    pub ticks: Option<TickTimers>,
}

impl TimerProfile {
    /// The tick of the stack's TCP timestamp clock: what TSval counts (RFC 7323 §5.4). Linux
    /// counts milliseconds (tcp_time_stamp_ms(), since 4.13; microseconds only with the
    /// usec-timestamp route option, which halfclose does not set); agents are taken to do
    /// the same until their protocol says otherwise.
    pub fn ts_tick(&self) -> Duration {
        Duration::from_millis(1)
    }

    /// Linux 6.x at HZ=250: TCP_RTO_MIN, TCP_TIMEOUT_INIT, TCP_RTO_MAX, TCP_TIMEWAIT_LEN.
    pub const LINUX: TimerProfile = TimerProfile {
        name: "linux",
        jiffy: Duration::from_millis(4),
        rto_min: Duration::from_millis(200),
        rto_initial: Duration::from_secs(1),
        rto_max: Duration::from_secs(120),
        time_wait: Duration::from_secs(60),
        rto_adds_srtt: true,
        wheel: true,
        noise_jiffies: 2,
        harness_slack: Duration::from_millis(8),
        ticks: None,
    };

    /// smoltcp 0.14: its RTT estimator's minimum and initial RTO, and its fixed TIME_WAIT
    /// (`CLOSE_DELAY`); its timers fire when the agent polls, which it does when due (1 ms).
    pub const SMOLTCP: TimerProfile = TimerProfile {
        name: "smoltcp",
        jiffy: Duration::from_millis(1),
        rto_min: Duration::from_millis(1000),
        rto_initial: Duration::from_millis(1000),
        rto_max: Duration::from_secs(60),
        time_wait: Duration::from_secs(10),
        rto_adds_srtt: false,
        wheel: false,
        noise_jiffies: 2,
        harness_slack: AGENT_SLACK,
        ticks: None,
    };

    /// lwIP 2.1 (Debian's liblwip). `jiffy` is sys_now()'s millisecond; every TCP timer
    /// counts ticks of tcp_slowtmr, TCP_SLOW_INTERVAL = 2 × TCP_TMR_INTERVAL = 500 ms
    /// (lwip/priv/tcp_priv.h), see [`TickTimers`]. TIME_WAIT is 2 × TCP_MSL (60000 ms,
    /// tcp_priv.h) = 240 ticks (tcp.c, tcp_slowtmr). RTO: 3000 ms / TCP_SLOW_INTERVAL = 6
    /// ticks before any sample (tcp.c, tcp_alloc: `rto`, `sv`), shifted by tcp_backoff[]
    /// (at most 7, tcp.c) and kept in an s16_t (0x7FFF ticks). `rto_min` and `rto_initial`
    /// are the estimator's floor for sub-tick RTTs (3 ticks) and its start, for estimates.
    pub const LWIP: TimerProfile = TimerProfile {
        name: "lwip",
        jiffy: Duration::from_millis(1),
        rto_min: Duration::from_millis(1500),
        rto_initial: Duration::from_millis(3000),
        rto_max: Duration::from_millis(0x7FFF * 500),
        time_wait: Duration::from_secs(120),
        rto_adds_srtt: false,
        wheel: false,
        noise_jiffies: 2,
        harness_slack: AGENT_SLACK,
        ticks: Some(TickTimers {
            tick: Duration::from_millis(500),
            rto_initial: 6,
            max_shift: 7,
            rto_max: 0x7FFF,
        }),
    };

    /// gVisor's netstack (Debian's 20221219 snapshot, through agents/gvisor-netstack), read
    /// from pkg/tcpip/transport/tcp: `MinRTO` 200 ms and `MaxRTO` 120 s (snd.go),
    /// `InitialRTO` 1 s for SYN and SYN-ACK (connect.go), `DefaultTCPTimeWaitTimeout` 60 s
    /// (protocol.go). snd.go `updateRTO` is RFC 6298's SRTT + 4·RTTVAR clamped to MinRTO,
    /// not added to SRTT. Every TCP timer is a Go runtime timer (`time.AfterFunc` on the
    /// stack's clock, timer.go and tcpip/stdclock.go): it fires when due, no wheel rounds it,
    /// so the tick is the 1 ms the timer's goroutine may take to run.
    pub const GVISOR: TimerProfile = TimerProfile {
        name: "gvisor",
        jiffy: Duration::from_millis(1),
        rto_min: Duration::from_millis(200),
        rto_initial: Duration::from_secs(1),
        rto_max: Duration::from_secs(120),
        time_wait: Duration::from_secs(60),
        rto_adds_srtt: false,
        wheel: false,
        noise_jiffies: 2,
        harness_slack: AGENT_SLACK,
        ticks: None,
    };

    /// How late the harness may be (a send, a call, a wait, a look at the SUT) before the
    /// run proves nothing; beyond it the trial is inconclusive and rerun. For the kernel: the
    /// machine noise the model already allows the SUT's own clock (2 jiffies, 8 ms), which
    /// no window the model derives can tell from the SUT's own. For an agent stack: every
    /// call and every look is a round trip to another process, a few milliseconds on a busy
    /// machine, and no agent stack's timer the suite relies on is finer than 10 ms
    /// (smoltcp's delayed ACK; its RTO floor is 1 s).
    pub fn harness_slack(&self) -> Duration {
        self.harness_slack
    }

    /// The length of a timer a script names.
    pub fn armed(&self, t: ArmedTimer) -> Duration {
        match t {
            ArmedTimer::TimeWait => self.time_wait,
            ArmedTimer::Fixed(d) => d,
        }
    }

    /// The window, from the event that armed it, in which a timer set `d` ahead fires: never
    /// before `d` less the noise of the clock it was armed on, and by `d` plus the rounding of
    /// its bucket, the tick that notices it and the noise.
    pub fn expiry_window(&self, d: Duration) -> (Duration, Duration) {
        if let Some(t) = self.ticks {
            // Fires on the first tick more than d/tick ticks after the event's tick.
            return (
                d.saturating_sub(self.jiffy * self.noise_jiffies),
                d + t.tick + self.jiffy * (1 + self.noise_jiffies),
            );
        }
        (
            d.saturating_sub(self.jiffy * self.noise_jiffies),
            d + self.wheel_slack(d),
        )
    }

    /// What the SUT reports as the remaining time of a timer armed `d` ahead, read between
    /// `elapsed_lo` and `elapsed_hi` after the event that armed it: `d` less the elapsed time
    /// (Linux keeps the requested expiry; the wheel's bucket only decides when it runs), give
    /// or take a tick of rounding and the noise of the clock, and never above `d`.
    pub fn reading_range(
        &self,
        d: Duration,
        elapsed_lo: Duration,
        elapsed_hi: Duration,
    ) -> (Duration, Duration) {
        let slop = self.jiffy * (1 + self.noise_jiffies);
        (
            d.saturating_sub(elapsed_hi + slop),
            d.min(d.saturating_sub(elapsed_lo) + slop),
        )
    }

    fn ceil_jiffy(&self, d: Duration) -> Duration {
        let j = self.jiffy.as_nanos();
        let n = d.as_nanos().div_ceil(j);
        Duration::from_nanos((n * j) as u64)
    }

    /// How late the timer wheel may fire a timer set `d` ahead.
    fn wheel_slack(&self, d: Duration) -> Duration {
        if !self.wheel {
            return self.jiffy * (1 + self.noise_jiffies);
        }
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
        let rto = |srtt: Duration| {
            if self.rto_adds_srtt {
                srtt + self.rto_min.max(srtt * 2)
            } else {
                self.rto_min.max(srtt * 3)
            }
        };
        (self.ceil_jiffy(rto(rtt.lo)), self.ceil_jiffy(rto(rtt.hi)))
    }

    /// The window, measured from the previous transmission, in which retransmission `n`
    /// (1 = the first) of a segment must leave: never before RTO less the machine noise, and
    /// by RTO plus the wheel's slack.
    pub fn retransmission_window(&self, n: u32, rtt: RttRange) -> (Duration, Duration) {
        if let Some(t) = self.ticks {
            let (rto_lo, rto_hi) = t.rto_range_for(rtt.lo, rtt.hi);
            let (lo, hi) = t.retransmission_ticks(n, rto_lo, rto_hi);
            return (
                (t.tick * lo).saturating_sub(self.jiffy * self.noise_jiffies),
                t.tick * hi + self.jiffy * (1 + self.noise_jiffies),
            );
        }
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
        let m = TimerProfile::LINUX;
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
        let (lo, hi) = TimerProfile::LINUX.retransmission_window(2, rtt);
        assert_eq!((lo, hi), (MS(400), MS(416) + MS(44)));
    }

    #[test]
    fn time_wait_expires_within_its_wheel_bucket() {
        // 60 s = 15000 jiffies: level 3, buckets of 512 jiffies; +1 tick, +2 noise.
        let (lo, hi) = TimerProfile::LINUX.expiry_window(TimerProfile::LINUX.time_wait);
        assert_eq!(lo, Duration::from_secs(60) - MS(8));
        assert_eq!(hi, Duration::from_secs(60) + MS(4 * 515));
        // 3 s = 750 jiffies: level 2, buckets of 64.
        assert_eq!(
            TimerProfile::LINUX.expiry_window(Duration::from_secs(3)).1,
            Duration::from_secs(3) + MS(4 * 67)
        );
    }

    #[test]
    fn an_rfc_6298_stack_clamps_rather_than_adds() {
        let rtt = RttRange {
            lo: Duration::from_micros(100),
            hi: MS(6),
        };
        // smoltcp: max(1 s, 3·SRTT) = 1 s; the 3rd retransmission 4 s after the 2nd.
        assert_eq!(
            TimerProfile::SMOLTCP.retransmission_window(1, rtt),
            (MS(998), MS(1003))
        );
        assert_eq!(
            TimerProfile::SMOLTCP.retransmission_window(3, rtt),
            (MS(3998), MS(4003))
        );
    }

    #[test]
    fn a_stack_without_a_wheel_fires_within_a_few_ticks() {
        let (lo, hi) = TimerProfile::SMOLTCP.expiry_window(Duration::from_secs(10));
        assert_eq!((lo, hi), (MS(9998), MS(10003)));
    }

    #[test]
    fn a_reading_allows_the_time_since_arming() {
        let (lo, hi) = TimerProfile::LINUX.reading_range(Duration::from_secs(60), MS(1), MS(30));
        assert_eq!((lo, hi), (MS(60_000 - 30 - 12), MS(60_000)));
        // A second later the reading must have gone down: a restarted timer is caught.
        let (lo, hi) =
            TimerProfile::LINUX.reading_range(Duration::from_secs(60), MS(1000), MS(1003));
        assert_eq!((lo, hi), (MS(60_000 - 1003 - 12), MS(60_000 - 1000 + 12)));
    }

    #[test]
    fn lwip_timers_fire_on_500_ms_ticks() {
        let p = TimerProfile::LWIP;
        // TIME_WAIT: 240 ticks after the tick before the event, so 120.0 s to 120.5 s after
        // it; the ms clock's noise either way.
        assert_eq!(
            p.expiry_window(p.time_wait),
            (MS(120_000 - 2), MS(120_500 + 3))
        );
        // A sub-ms RTT: samples of 0 or 1 tick; the first retransmission between rto_lo − 1
        // ticks and rto_hi ticks, the second a shifted RTO after it, on a tick.
        let rtt = RttRange {
            lo: Duration::from_micros(100),
            hi: Duration::from_micros(300),
        };
        let (rto_lo, rto_hi) = p.ticks.unwrap().rto_range(0, 1);
        assert_eq!(
            p.retransmission_window(1, rtt),
            (
                MS(500 * (rto_lo as u64 - 1) - 2),
                MS(500 * rto_hi as u64 + 3)
            )
        );
        assert_eq!(
            p.retransmission_window(2, rtt),
            (MS(1000 * rto_lo as u64 - 2), MS(1000 * rto_hi as u64 + 3))
        );
    }

    #[test]
    fn backoff_stops_at_rto_max() {
        let (lo, _) = TimerProfile::LINUX.retransmission_window(16, RttRange::default());
        assert_eq!(lo, Duration::from_secs(120) - MS(8));
    }
}
