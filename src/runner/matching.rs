//! Does a SUT segment match an `expect` step, and did it come in its time window?

use std::time::{Duration, SystemTime};

use crate::peer::{Arrival, PeerConn};
use crate::script::values::show_duration;
use std::collections::HashMap;

use crate::script::values::fast_open_cookie;
use crate::script::{ExpectSpec, FoSpec, OptSpec, TsRef, Window};
use crate::wire::{self, TcpFlags, TcpOption};

/// The expectation as one line, in the same notation as actual segments.
pub fn describe_expect(spec: &ExpectSpec) -> String {
    let mut s = show_flags(spec);
    if let Some(seq) = spec.seq {
        s += &format!(" seq {seq}");
    }
    if let Some(ack) = spec.ack {
        s += &format!(" ack {ack}");
    }
    if let Some(win) = spec.win {
        s += &format!(" win {win}");
    }
    if let Some(len) = spec.len {
        s += &format!(" len {len}");
    }
    if let Some(opts) = &spec.options {
        let list: Vec<String> = opts.iter().map(|o| o.to_string()).collect();
        s += &format!(" <{}>", list.join(","));
    }
    s
}

/// `F.` or, with optional flags, `F. P?`.
fn show_flags(spec: &ExpectSpec) -> String {
    let mut s = spec.flags.to_string();
    if !spec.maybe_flags.is_empty() {
        let maybe = spec.maybe_flags.to_string().replace('.', "A");
        s += &format!(
            " {}?",
            maybe
                .chars()
                .map(String::from)
                .collect::<Vec<_>>()
                .join("? ")
                .trim_end_matches('?')
        );
    }
    s
}

pub fn show_window(w: &Window) -> String {
    let base = match w.after {
        Some(a) => format!(
            "between {} and {}",
            show_duration(a),
            show_duration(w.within)
        ),
        None => format!("within {}", show_duration(w.within)),
    };
    let base = match (w.retransmission, w.timer) {
        (Some(n), _) => format!("{base} (retransmission {n}, from the timer profile)"),
        (None, Some(t)) => format!("{base} (a {t} timer, from the timer profile)"),
        (None, None) => base,
    };
    match &w.since {
        Some(n) => format!("{base} of `{n}`"),
        None => base,
    }
}

/// What options that name other segments (`ts ecr @fin`, `ts val @syn`, `fo @synack`)
/// compare with: the options of the named steps' segments and when they were seen, and the
/// tick of the stack's timestamp clock.
pub struct Named<'a> {
    pub segments: &'a HashMap<String, NamedSegment>,
    pub ts_tick: Duration,
}

/// A named step's segment, as sent or matched.
#[derive(Clone, Debug)]
pub struct NamedSegment {
    pub options: Vec<TcpOption>,
    pub at: SystemTime,
}

impl NamedSegment {
    pub fn tsval(&self) -> Option<u32> {
        self.options.iter().find_map(|o| match o {
            TcpOption::Timestamps { val, .. } => Some(*val),
            _ => None,
        })
    }

    /// The Fast Open cookie the segment carried, in either option.
    pub fn cookie(&self) -> Option<&[u8]> {
        self.options
            .iter()
            .find_map(|o| fast_open_cookie(o).map(|(_, c)| c))
    }
}

impl Named<'_> {
    fn get(&self, name: &str) -> Result<&NamedSegment, String> {
        self.segments
            .get(name)
            .ok_or_else(|| format!("no segment of step `{name}` was seen"))
    }

    /// The TSvals a segment seen at `at` may carry when it counts on from `name`'s: whole
    /// ticks of the time between them, rounded either way, and one tick more either way for
    /// the two segments' transmit-to-receive delays, which differ by far less than a tick.
    fn tsval_range(&self, name: &str, at: SystemTime) -> Result<(u32, u32, u32), String> {
        let base = self.get(name)?;
        let v = base
            .tsval()
            .ok_or_else(|| format!("the segment of `{name}` carried no timestamp"))?;
        let elapsed = at.duration_since(base.at).unwrap_or_default();
        let tick = self.ts_tick.as_nanos().max(1);
        let ticks = elapsed.as_nanos() / tick;
        let lo = (ticks as u32).saturating_sub(1);
        let hi = (ticks as u32).saturating_add(2);
        Ok((v, v.wrapping_add(lo), v.wrapping_add(hi)))
    }
}

/// Field by field; the error names every field that differs.
pub fn check_segment(
    spec: &ExpectSpec,
    got: &Arrival,
    conn: &PeerConn,
    named: &Named,
) -> Result<(), String> {
    let tcp = &got.tcp;
    let mut diffs = Vec::new();
    if !got.checksum_ok {
        diffs.push("bad TCP checksum".to_string());
    }
    let unmasked = TcpFlags(tcp.flags.0 & !spec.maybe_flags.0);
    if unmasked != TcpFlags(spec.flags.0 & !spec.maybe_flags.0) {
        diffs.push(format!("flags {} ≠ {}", tcp.flags, show_flags(spec)));
    }
    if let Some(seq) = spec.seq {
        // The SUT's ISN is whatever its SYN carries; until then only a SYN can be matched.
        let base = if tcp.flags.contains(TcpFlags::SYN) && conn.sut_isn.is_none() {
            Some(tcp.seq)
        } else {
            conn.sut_isn
        };
        match base {
            Some(base) if seq.resolve(base) != tcp.seq => {
                diffs.push(format!("seq {} ≠ {seq}", wire::seq::rel(tcp.seq, base)))
            }
            Some(_) => {}
            None => diffs.push("no SUT ISN known yet (expect the SUT's SYN first)".into()),
        }
    }
    if let Some(ack) = spec.ack {
        if tcp.flags.contains(TcpFlags::ACK) && ack.resolve(conn.isn) != tcp.ack {
            diffs.push(format!("ack {} ≠ {ack}", wire::seq::rel(tcp.ack, conn.isn)));
        }
    }
    if let Some(win) = spec.win.filter(|w| *w != tcp.window) {
        diffs.push(format!("win {} ≠ {win}", tcp.window));
    }
    if let Some(len) = spec.len.filter(|l| *l as usize != tcp.payload.len()) {
        diffs.push(format!("len {} ≠ {len}", tcp.payload.len()));
    }
    if let Some(data) = spec.data.as_ref().filter(|d| **d != tcp.payload) {
        diffs.push(payload_diff(data, &tcp.payload));
    }
    if let Some(opts) = &spec.options {
        if let Err(why) = options_match(opts, &tcp.options, got.at, named) {
            let got: Vec<String> = tcp.options.iter().map(|o| o.to_string()).collect();
            diffs.push(format!("options <{}> differ{why}", got.join(",")));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

fn payload_diff(want: &[u8], got: &[u8]) -> String {
    match want.iter().zip(got).position(|(a, b)| a != b) {
        Some(i) => format!("payload differs at byte {i}"),
        None => format!("payload is {} bytes, expected {}", got.len(), want.len()),
    }
}

/// Options in order, NOP and EOL (padding) not counted. The error says why, after `: `
/// (empty when the lists differ in length or kind).
fn options_match(
    want: &[OptSpec],
    got: &[TcpOption],
    at: SystemTime,
    named: &Named,
) -> Result<(), String> {
    let real = |o: &&TcpOption| !matches!(o, TcpOption::Nop | TcpOption::Eol);
    let want: Vec<&OptSpec> = want
        .iter()
        .filter(|o| !matches!(o, OptSpec::Exact(TcpOption::Nop | TcpOption::Eol)))
        .collect();
    let got: Vec<&TcpOption> = got.iter().filter(real).collect();
    if want.len() != got.len() {
        return Err(String::new());
    }
    for (w, g) in want.iter().zip(got) {
        option_matches(w, g, at, named).map_err(|why| match why.is_empty() {
            true => why,
            false => format!(": {why}"),
        })?;
    }
    Ok(())
}

fn option_matches(
    want: &OptSpec,
    got: &TcpOption,
    at: SystemTime,
    named: &Named,
) -> Result<(), String> {
    match (want, got) {
        (OptSpec::Exact(o), g) if o == g => Ok(()),
        (OptSpec::AnyTimestamp, TcpOption::Timestamps { .. }) => Ok(()),
        (OptSpec::Ts { val, ecr }, TcpOption::Timestamps { val: v, ecr: e }) => {
            match val {
                TsRef::Any => {}
                TsRef::Abs(n) if n == v => {}
                TsRef::Abs(n) => return Err(format!("TSval {v} ≠ {n}")),
                TsRef::Of(name) => {
                    let (base, lo, hi) = named.tsval_range(name, at)?;
                    let ok = wire::seq::ge(*v, lo) && wire::seq::le(*v, hi);
                    if !ok {
                        return Err(format!("TSval {v} is {} ticks on from `{name}`'s {base}; the time between them allows {}..{}", v.wrapping_sub(base) as i32, lo.wrapping_sub(base), hi.wrapping_sub(base)));
                    }
                }
            }
            match ecr {
                TsRef::Any => Ok(()),
                TsRef::Abs(n) if n == e => Ok(()),
                TsRef::Abs(n) => Err(format!("TSecr {e} ≠ {n}")),
                TsRef::Of(name) => {
                    let want = named
                        .get(name)?
                        .tsval()
                        .ok_or_else(|| format!("the segment of `{name}` carried no timestamp"))?;
                    if want == *e {
                        Ok(())
                    } else {
                        Err(format!("TSecr {e} ≠ {want}, the TSval of `{name}`"))
                    }
                }
            }
        }
        (OptSpec::FastOpen(f, kind), g) => match fast_open_cookie(g) {
            Some((k, data)) if k == *kind => fast_open_matches(f, data, named),
            _ => Err(String::new()),
        },
        _ => Err(String::new()),
    }
}

fn fast_open_matches(f: &FoSpec, data: &[u8], named: &Named) -> Result<(), String> {
    match f {
        FoSpec::AnyCookie if (4..=16).contains(&data.len()) => Ok(()),
        FoSpec::AnyCookie => Err(format!(
            "a Fast Open cookie of {} bytes (4 to 16 expected)",
            data.len()
        )),
        FoSpec::Cookie(c) if c == data => Ok(()),
        FoSpec::Cookie(_) => Err("another Fast Open cookie".into()),
        FoSpec::Of(name) => match named.get(name)?.cookie() {
            Some(c) if c == data => Ok(()),
            Some(_) => Err(format!("not the cookie `{name}` carried")),
            None => Err(format!(
                "the segment of `{name}` carried no Fast Open cookie"
            )),
        },
    }
}

/// How far a window's edges may move: CPU time the host took from this machine (steal) near
/// each edge, which delays (late edge) or, through a lagging tick, advances (early edge) the
/// SUT's timers. Nothing the harness itself did moves an edge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allow {
    pub early: Duration,
    pub late: Duration,
}

impl Allow {
    pub fn is_zero(&self) -> bool {
        self.early.is_zero() && self.late.is_zero()
    }
}

/// The event must not precede its anchor (scripts list events in the order they happen), must
/// not come before `after`, and must come by `within`, each edge moved by its allowance.
pub fn check_time(
    w: &Window,
    at: SystemTime,
    from: SystemTime,
    allow: Allow,
) -> Result<(), String> {
    let noted = |text: String, by: Duration| {
        if by.is_zero() {
            text
        } else {
            format!(
                "{text} (allowing {} of CPU steal measured at that edge)",
                show_precise(by)
            )
        }
    };
    let offset = match at.duration_since(from) {
        Ok(d) => d,
        Err(e) => {
            return Err(format!(
                "it came {} BEFORE the step it is measured from; list it earlier in the script",
                show_duration(e.duration())
            ))
        }
    };
    if let Some(after) = w.after.filter(|a| offset + allow.early < *a) {
        return Err(noted(
            format!(
                "too early: {} is before the window opens at {}",
                show_precise(offset),
                show_duration(after)
            ),
            allow.early,
        ));
    }
    if offset > w.within + allow.late {
        return Err(noted(
            format!(
                "too late: {} is after the window closed at {}",
                show_precise(offset),
                show_duration(w.within)
            ),
            allow.late,
        ));
    }
    Ok(())
}

/// How a moment known only within `[lo, hi]` (a state the harness saw at `lo` and found
/// gone at `hi`) stands against a window.
#[derive(Debug, PartialEq, Eq)]
pub enum Span {
    /// Wholly inside: whatever the true moment, it was in time.
    Inside,
    /// Wholly outside: whatever the true moment, it was not; the reason, for `hi` or `lo`.
    Outside(String),
    /// Across an edge: the harness looked too coarsely to say.
    Across,
}

pub fn check_span(
    w: &Window,
    (lo, hi): (SystemTime, SystemTime),
    from: SystemTime,
    allow: Allow,
) -> Span {
    let opens = from + w.after.unwrap_or_default();
    let closes = from + w.within;
    match (
        check_time(w, lo, from, allow),
        check_time(w, hi, from, allow),
    ) {
        (Ok(()), Ok(())) => Span::Inside,
        (_, Err(why)) if hi + allow.early < opens || hi < from => Span::Outside(why),
        (Err(why), _) if lo > closes + allow.late => Span::Outside(why),
        _ => Span::Across,
    }
}

fn show_precise(d: Duration) -> String {
    format!("{:.3}ms", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn window(after: u64, within: u64) -> Window {
        Window {
            after: Some(MS(after)),
            within: MS(within),
            since: None,
            retransmission: None,
            timer: None,
        }
    }

    #[test]
    fn a_moment_is_judged_against_both_edges_and_only_steal_moves_them() {
        let t = SystemTime::now();
        let w = window(100, 150);
        let none = Allow::default();
        assert!(check_time(&w, t + MS(120), t, none).is_ok());
        let early = check_time(&w, t + MS(95), t, none).unwrap_err();
        assert!(early.contains("too early"), "{early}");
        let late = check_time(&w, t + MS(160), t, none).unwrap_err();
        assert!(late.contains("too late"), "{late}");
        // 10 ms stolen from the machine at the late edge: the SUT may be that late there,
        // and no earlier.
        let at_late_edge = Allow {
            early: Duration::ZERO,
            late: MS(10),
        };
        assert!(check_time(&w, t + MS(158), t, at_late_edge).is_ok());
        assert!(check_time(&w, t + MS(95), t, at_late_edge).is_err());
        let named = check_time(&w, t + MS(170), t, at_late_edge).unwrap_err();
        assert!(named.contains("CPU steal"), "{named}");
        let before = check_time(&w, t - MS(1), t, none).unwrap_err();
        assert!(before.contains("BEFORE"), "{before}");
    }

    #[test]
    fn a_span_passes_inside_fails_outside_and_is_unsure_across_an_edge() {
        let t = SystemTime::now();
        let w = window(100, 150);
        let span = |lo, hi| check_span(&w, (t + MS(lo), t + MS(hi)), t, Allow::default());
        assert_eq!(span(110, 115), Span::Inside);
        assert!(matches!(span(40, 45), Span::Outside(why) if why.contains("too early")));
        assert!(matches!(span(160, 170), Span::Outside(why) if why.contains("too late")));
        // Looked at 95 ms and again at 105 ms: the end may have been before the window.
        assert_eq!(span(95, 105), Span::Across);
        assert_eq!(span(145, 155), Span::Across);
        // A look before the anchor and one far past the window: nothing can be said.
        assert_eq!(
            check_span(&w, (t - MS(5), t + MS(400)), t, Allow::default()),
            Span::Across
        );
    }
}
