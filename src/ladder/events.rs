//! The trial's timeline as capture comments: what a ladder needs besides the frames.
//!
//! Frames carry their own comments (`sent by step 5 (x.yaml:12): …`). What happens on the
//! SUT's side without a frame — a call and its return, a state change, a timer reading, the
//! moment a step gave up — is written as comments on the whole capture, one event each, in a
//! fixed grammar both Wireshark readers and [`parse`] can read:
//!
//! ```text
//! event 1764691200.123456789 call step 3 line 9: close()
//! event 1764691200.123499000 return step 3 line 9: 0
//! event 1764691200.124000000 state: FIN_WAIT_1
//! event 1764691200.130000000 check step 5 line 12: state TIME_WAIT
//! event 1764691200.130100000 timer step 5 line 12: timewait timer 59.99s remaining
//! event 1764691200.140000000 failed step 6 line 14
//! failure step 6 line 14: step 6 (x.yaml:14:5): expect F. seq 1 ack 2
//! failure expected: F. seq 1 ack 2 len 0
//! failure actual: nothing arrived …
//! script: suites/close/active-close.yaml
//! ```
//!
//! Times are the wall clock (CLOCK_REALTIME, like the frames' timestamps) in seconds and
//! nanoseconds since 1970, so events and frames line up to the nanosecond. Step 0 is the
//! `open:` handshake.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::capture::Capture;
use crate::runner::{Failure, Trace};
use crate::script::values::show_duration;
use crate::script::{Action, Scenario};

/// What happened, on the SUT's side of the ladder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The SUT application made a call (its text as written).
    Call,
    /// The call returned (its result).
    Return,
    /// A background call started; its return comes with the `await` step.
    Background,
    /// A step without a frame of its own began: `state`, `leave`, `quiet`, `wait`, ….
    Check,
    /// A reading of the SUT's timer.
    Timer,
    /// The connection's state changed (text: the new state).
    State,
    /// The step gave up here: the failing step.
    Failed,
    /// The trial ended (after its closing quiet period): timers still running are drawn
    /// to here.
    End,
}

impl Kind {
    const WORDS: [(Kind, &'static str); 8] = [
        (Kind::Call, "call"),
        (Kind::Return, "return"),
        (Kind::Background, "background"),
        (Kind::Check, "check"),
        (Kind::Timer, "timer"),
        (Kind::State, "state"),
        (Kind::Failed, "failed"),
        (Kind::End, "end"),
    ];

    fn word(&self) -> &'static str {
        Self::WORDS
            .iter()
            .find(|(k, _)| k == self)
            .map(|(_, w)| *w)
            .unwrap_or("check")
    }

    fn of(word: &str) -> Option<Kind> {
        Self::WORDS
            .iter()
            .find(|(_, w)| *w == word)
            .map(|(k, _)| k.clone())
    }
}

/// The script step an event or frame belongs to: its number (0: the `open:` handshake) and
/// its line in the script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepRef {
    pub step: usize,
    pub line: u32,
}

/// One event of the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub at: SystemTime,
    pub kind: Kind,
    pub step: Option<StepRef>,
    pub text: String,
}

impl Event {
    /// The capture comment for this event.
    pub fn note(&self) -> String {
        let mut out = format!("event {} {}", stamp(self.at), self.kind.word());
        if let Some(s) = self.step {
            out.push_str(&format!(" step {} line {}", s.step, s.line));
        }
        out.push(':');
        if !self.text.is_empty() {
            out.push(' ');
            // One comment, one line: a newline would end the event for `parse`.
            out.push_str(&self.text.replace('\n', " "));
        }
        out
    }
}

/// The event a capture comment holds, if it holds one.
pub fn parse(note: &str) -> Option<Event> {
    let rest = note.strip_prefix("event ")?;
    let (stamp, rest) = rest.split_once(' ')?;
    let at = parse_stamp(stamp)?;
    let (head, text) = rest.split_once(':')?;
    let mut words = head.split(' ');
    let kind = Kind::of(words.next()?)?;
    let step = match (words.next(), words.next(), words.next(), words.next()) {
        (None, ..) => None,
        (Some("step"), Some(n), Some("line"), Some(l)) => Some(StepRef {
            step: n.parse().ok()?,
            line: l.parse().ok()?,
        }),
        _ => return None,
    };
    if words.next().is_some() {
        return None;
    }
    Some(Event {
        at,
        kind,
        step,
        text: text.strip_prefix(' ').unwrap_or(text).to_string(),
    })
}

/// The failure as capture comments: its step, heading and detail lines.
pub fn failure_notes(
    step: Option<StepRef>,
    heading: &str,
    details: &[(String, String)],
) -> Vec<String> {
    let place = match step {
        Some(s) => format!("failure step {} line {}", s.step, s.line),
        None => "failure".to_string(),
    };
    let mut out = vec![format!("{place}: {}", heading.replace('\n', " "))];
    for (k, v) in details {
        let key = k.trim_end_matches(':');
        out.push(format!("failure {key}: {}", v.replace('\n', " ")));
    }
    out
}

/// The failure the capture's comments describe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailureNote {
    pub step: Option<StepRef>,
    pub heading: String,
    /// (`expected`, …), (`actual`, …), (`error`, …) in the order written.
    pub details: Vec<(String, String)>,
}

impl FailureNote {
    /// Takes in one capture comment if it is part of the failure; false if it is not.
    pub fn take(failure: &mut Option<FailureNote>, note: &str) -> bool {
        let Some(rest) = note.strip_prefix("failure") else {
            return false;
        };
        let Some((head, text)) = rest.split_once(": ") else {
            return false;
        };
        let head = head.trim();
        let mut words = head.split(' ');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some(""), None, None, None) | (None, ..) => {
                *failure = Some(FailureNote {
                    heading: text.to_string(),
                    ..FailureNote::default()
                });
            }
            (Some("step"), Some(n), Some("line"), Some(l)) => {
                let (Ok(step), Ok(line)) = (n.parse(), l.parse()) else {
                    return false;
                };
                *failure = Some(FailureNote {
                    step: Some(StepRef { step, line }),
                    heading: text.to_string(),
                    details: Vec::new(),
                });
            }
            (Some(key), None, None, None) => match failure {
                Some(f) => f.details.push((key.to_string(), text.to_string())),
                None => return false,
            },
            _ => return false,
        }
        true
    }

    pub fn detail(&self, key: &str) -> Option<&str> {
        self.details
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The script file, as a capture comment.
pub fn script_note(path: &str) -> String {
    format!("script: {path}")
}

/// Writes the timeline onto a trial's capture: the script, the SUT-side events, every state
/// change of the trace, and the failure with its step.
pub fn annotate(
    capture: &Mutex<Capture>,
    sc: &Scenario,
    failure: Option<&Failure>,
    trace: &Trace,
    events: &[Event],
) {
    let mut c = capture.lock().unwrap_or_else(|e| e.into_inner());
    c.add_note(script_note(&sc.file.display().to_string()));
    for e in events {
        c.add_note(e.note());
    }
    for (at, state) in trace.states() {
        let state = Event {
            at: *at,
            kind: Kind::State,
            step: None,
            text: state.map_or("CLOSED", |s| s.name()).to_string(),
        };
        c.add_note(state.note());
    }
    let end = Event {
        at: SystemTime::now(),
        kind: Kind::End,
        step: None,
        text: "the trial ended".into(),
    };
    c.add_note(end.note());
    let Some(f) = failure else { return };
    // The step that gave up, as the runner recorded it (a harness failure has none).
    let step = events
        .iter()
        .rev()
        .find(|e| e.kind == Kind::Failed)
        .and_then(|e| e.step)
        .filter(|_| !f.harness);
    for note in failure_notes(step, &f.heading, &f.details) {
        c.add_note(note);
    }
}

/// What a step without frames of its own shows on the SUT's lane, for the steps that have
/// one (frames and calls speak for the others).
pub fn check_text(action: &Action) -> Option<String> {
    let name = |s: Option<crate::observe::TcpState>| s.map_or("CLOSED", |s| s.name());
    Some(match action {
        Action::State(c) => format!("state {}", name(c.want)),
        Action::Leave { state, .. } => format!("leave {}", state.name()),
        Action::Quiet(d) => format!("quiet {}", show_duration(*d)),
        Action::Wait(d) => format!("wait {}", show_duration(*d)),
        Action::Transitions(_) => "transitions".into(),
        Action::Await { name, .. } => format!("await {name}"),
        Action::Transfer { bytes, .. } => format!("transfer {bytes} bytes"),
        Action::Receive(r) => format!("receive {} bytes", r.bytes),
        Action::Send(_) | Action::Expect(_) | Action::Call { .. } => return None,
    })
}

/// `1764691200.123456789`
fn stamp(at: SystemTime) -> String {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

fn parse_stamp(s: &str) -> Option<SystemTime> {
    let (secs, nanos) = s.split_once('.')?;
    if nanos.len() != 9 || !nanos.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let nanos: u32 = nanos.parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// The step a frame's comment names, from the runner's wording: `… step 5 (x.yaml:12) …`,
/// or `open: handshake (x.yaml:7)` for step 0.
pub fn frame_step(comment: &str) -> Option<StepRef> {
    if let Some(i) = comment.find("open: handshake (") {
        let line = line_in_parens(&comment[i + "open: handshake ".len()..])?;
        return Some(StepRef { step: 0, line });
    }
    let mut rest = comment;
    while let Some(i) = rest.find("step ") {
        let after = &rest[i + 5..];
        let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
        let tail = &after[digits.len()..];
        if let (Ok(step), Some(paren)) = (digits.parse(), tail.strip_prefix(' ')) {
            if let Some(line) = line_in_parens(paren) {
                return Some(StepRef { step, line });
            }
        }
        rest = after;
    }
    None
}

/// `(file.yaml:12)` → 12.
fn line_in_parens(s: &str) -> Option<u32> {
    let inner = s.strip_prefix('(')?;
    let close = inner.find(')')?;
    let (_, line) = inner[..close].rsplit_once(':')?;
    line.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ns: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(ns)
    }

    #[test]
    fn events_read_back_as_written() {
        let events = [
            Event {
                at: at(1_764_691_200_123_456_789),
                kind: Kind::Call,
                step: Some(StepRef { step: 3, line: 9 }),
                text: "close()".into(),
            },
            Event {
                at: at(5),
                kind: Kind::State,
                step: None,
                text: "TIME_WAIT".into(),
            },
            Event {
                at: at(1_000_000_000),
                kind: Kind::Failed,
                step: Some(StepRef { step: 6, line: 14 }),
                text: String::new(),
            },
            Event {
                at: at(7),
                kind: Kind::Return,
                step: Some(StepRef { step: 1, line: 2 }),
                text: "-1 EPIPE (Broken pipe): a: b".into(),
            },
        ];
        for e in &events {
            assert_eq!(parse(&e.note()).as_ref(), Some(e), "{}", e.note());
        }
        assert_eq!(
            events[0].note(),
            "event 1764691200.123456789 call step 3 line 9: close()"
        );
        assert_eq!(events[2].note(), "event 1.000000000 failed step 6 line 14:");
    }

    #[test]
    fn other_comments_are_no_events() {
        for note in [
            "verdict: passed",
            "event",
            "event 12 call: x",
            "event 1.000000000 jump: x",
            "event 1.000000000 call step x line 2: x",
            "event 1.000000000 call step 1 line 2 more: x",
            "event 1.00000000a call: x",
        ] {
            assert_eq!(parse(note), None, "{note}");
        }
    }

    #[test]
    fn failure_notes_read_back() {
        let notes = failure_notes(
            Some(StepRef { step: 3, line: 10 }),
            "step 3 (a.yaml:10:5): expect F.",
            &[
                ("expected:".into(), "F. seq 1 ack 1 len 0".into()),
                ("actual:".into(), "R. seq 1: ack 1".into()),
            ],
        );
        let mut f = None;
        for n in &notes {
            assert!(FailureNote::take(&mut f, n), "{n}");
        }
        assert!(!FailureNote::take(&mut f, "verdict: passed"));
        let f = f.unwrap();
        assert_eq!(f.step, Some(StepRef { step: 3, line: 10 }));
        assert_eq!(f.heading, "step 3 (a.yaml:10:5): expect F.");
        assert_eq!(f.detail("expected"), Some("F. seq 1 ack 1 len 0"));
        assert_eq!(f.detail("actual"), Some("R. seq 1: ack 1"));
        let mut g = None;
        assert!(FailureNote::take(&mut g, "failure: the harness panicked"));
        assert_eq!(g.unwrap().step, None);
    }

    #[test]
    fn frame_comments_name_their_step() {
        let cases = [
            (
                "sent by step 5 (active-close.yaml:12): F. seq 1",
                Some((5, 12)),
            ),
            ("NOT SENT: dropped by step 2 (x.yaml:8): F.", Some((2, 8))),
            (
                "matched step 8 (a b.yaml:30): . seq 2 at +1ms",
                Some((8, 30)),
            ),
            (
                "UNEXPECTED: step 3 (x.yaml:10) expected F.: flags",
                Some((3, 10)),
            ),
            (
                "UNEXPECTED during quiet 2s of step 4 (x.yaml:11): R.",
                Some((4, 11)),
            ),
            ("sent by open: handshake (x.yaml:7): S seq 0", Some((0, 7))),
            ("UNEXPECTED (after the trial had failed or ended): R.", None),
            ("neighbour reply from the harness's responder", None),
        ];
        for (comment, want) in cases {
            let got = frame_step(comment).map(|s| (s.step, s.line));
            assert_eq!(got, want, "{comment}");
        }
    }
}
