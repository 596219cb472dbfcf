//! Ladders of made-up captures, written the way the runner writes them: a passing active
//! close and a trial failing at its FIN (an RST came instead), read back through pcapng.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::events::{failure_notes, Event, Kind, StepRef};
use super::*;
use crate::capture::{Capture, Direction};
use crate::topology::{PEER_MAC, SUT_MAC};
use crate::wire::{emit_tcp, Endpoints, TcpRepr};

const PEER_ISN: u32 = 1000;
const SUT_ISN: u32 = 5_000_000;

fn t(us: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_764_691_200) + Duration::from_micros(us)
}

fn segment(from_sut: bool, flags: &str, seq: u32, ack: u32) -> Vec<u8> {
    let peer = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    let sut = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let (seq_isn, ack_isn) = if from_sut {
        (SUT_ISN, PEER_ISN)
    } else {
        (PEER_ISN, SUT_ISN)
    };
    let tcp = TcpRepr {
        src_port: if from_sut { 8080 } else { 40000 },
        dst_port: if from_sut { 40000 } else { 8080 },
        seq: seq_isn.wrapping_add(seq),
        ack: ack_isn.wrapping_add(ack),
        flags: flags.parse().unwrap(),
        window: 512,
        ..TcpRepr::default()
    };
    let (src_mac, dst_mac, ep) = if from_sut {
        (
            SUT_MAC,
            PEER_MAC,
            Endpoints {
                src: sut,
                dst: peer,
            },
        )
    } else {
        (
            PEER_MAC,
            SUT_MAC,
            Endpoints {
                src: peer,
                dst: sut,
            },
        )
    };
    emit_tcp(src_mac, dst_mac, ep, &tcp)
}

fn ev(us: u64, kind: Kind, step: usize, line: u32, text: &str) -> String {
    Event {
        at: t(us),
        kind,
        step: Some(StepRef { step, line }),
        text: text.into(),
    }
    .note()
}

fn state(us: u64, name: &str) -> String {
    Event {
        at: t(us),
        kind: Kind::State,
        step: None,
        text: name.into(),
    }
    .note()
}

/// The handshake, close(), the SUT's FIN; then either the rest of an active close (pass) or
/// an RST where the FIN's ACK should be acknowledged (fail).
pub(crate) fn sample(failing: bool) -> Capture {
    let mut c = Capture::new("hc-peer", "halfclose peer, trial ipv4::close::active-close");
    let push = |c: &mut Capture, us, from_sut, flags, seq, ack, comment: &str| {
        let dir = if from_sut {
            Direction::FromSut
        } else {
            Direction::ToSut
        };
        c.push(
            t(us),
            dir,
            segment(from_sut, flags, seq, ack),
            comment.into(),
        );
    };
    push(
        &mut c,
        0,
        false,
        "S",
        0,
        0,
        "sent by open: handshake (active-close.yaml:5): S seq 0",
    );
    push(
        &mut c,
        40,
        true,
        "S.",
        0,
        1,
        "matched open: handshake (active-close.yaml:5): S. seq 0 ack 1",
    );
    push(
        &mut c,
        90,
        false,
        ".",
        1,
        1,
        "sent by open: handshake (active-close.yaml:5): . seq 1 ack 1",
    );
    push(
        &mut c,
        1200,
        true,
        "F.",
        1,
        1,
        "matched step 2 (active-close.yaml:10): F. seq 1 ack 1 at +0.1ms",
    );
    c.add_note("verdict: passed".into());
    c.add_note(events::script_note("suites/close/active-close.yaml"));
    c.add_note(ev(1000, Kind::Call, 1, 9, "close()"));
    c.add_note(ev(1100, Kind::Return, 1, 9, "0"));
    c.add_note(state(45, "SYN_RECV"));
    c.add_note(state(95, "ESTABLISHED"));
    c.add_note(state(1150, "FIN_WAIT_1"));
    if failing {
        push(
            &mut c,
            1500,
            false,
            ".",
            1,
            2,
            "NOT SENT: dropped by step 3 (active-close.yaml:11): . seq 1 ack 2",
        );
        push(
            &mut c,
            2400,
            false,
            "F.",
            1,
            2,
            "sent by step 4 (active-close.yaml:12): F. seq 1 ack 2",
        );
        push(
            &mut c,
            2450,
            true,
            "R",
            2,
            0,
            "UNEXPECTED: step 5 (active-close.yaml:13) expected . seq 2 ack 2: flags R ≠ .",
        );
        c.add_note(ev(2500, Kind::Failed, 5, 13, ""));
        c.add_note(state(2450, "CLOSED"));
        for n in failure_notes(
            Some(StepRef { step: 5, line: 13 }),
            "step 5 (suites/close/active-close.yaml:13:5): expect . seq 2 ack 2",
            &[
                ("expected:".into(), ". seq 2 ack 2 len 0".into()),
                (
                    "actual:".into(),
                    "R seq 2 win 0 len 0  (flags R ≠ .)".into(),
                ),
            ],
        ) {
            c.add_note(n);
        }
        c.add_note(
            "verdict: FAILED at step 5 (suites/close/active-close.yaml:13:5): expect . seq 2 ack 2"
                .into(),
        );
    } else {
        push(
            &mut c,
            1500,
            false,
            ".",
            1,
            2,
            "sent by step 3 (active-close.yaml:11): . seq 1 ack 2",
        );
        push(
            &mut c,
            2400,
            false,
            "F.",
            1,
            2,
            "sent by step 5 (active-close.yaml:13): F. seq 1 ack 2",
        );
        push(
            &mut c,
            2450,
            true,
            ".",
            2,
            2,
            "matched step 6 (active-close.yaml:14): . seq 2 ack 2",
        );
        c.add_note(state(1550, "FIN_WAIT_2"));
        c.add_note(state(2440, "TIME_WAIT"));
        c.add_note(ev(3000, Kind::Check, 7, 15, "state TIME_WAIT"));
        c.add_note(ev(
            3100,
            Kind::Timer,
            7,
            15,
            "timewait timer 59.99s remaining",
        ));
    }
    c
}

#[test]
fn a_passing_ladder_has_every_frame_state_and_call_in_time_order() {
    let l = Ladder::from_capture(&sample(false)).unwrap();
    assert_eq!(l.trial, "ipv4::close::active-close");
    assert_eq!(l.outcome, Outcome::Passed);
    assert_eq!(l.script.as_deref(), Some("suites/close/active-close.yaml"));
    let labels: Vec<String> = l.segments().map(|s| s.label()).collect();
    assert_eq!(
        labels,
        [
            "S seq 0 len 0",
            "S. seq 0 ack 1 len 0",
            ". seq 1 ack 1 len 0",
            "F. seq 1 ack 1 len 0",
            ". seq 1 ack 2 len 0",
            "F. seq 1 ack 2 len 0",
            ". seq 2 ack 2 len 0"
        ]
    );
    let frames: Vec<usize> = l.segments().map(|s| s.frame).collect();
    assert_eq!(frames, [1, 2, 3, 4, 5, 6, 7]);
    assert!(l.rows.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(l.rows[0].at, Duration::ZERO);
    let fin = l.segments().nth(3).unwrap();
    assert!(fin.from_sut && fin.fate == Fate::Delivered);
    let steps: Vec<Option<(usize, u32)>> = l
        .rows
        .iter()
        .filter(|r| matches!(r.kind, RowKind::Segment(_)))
        .map(|r| r.step.map(|s| (s.step, s.line)))
        .collect();
    assert_eq!(steps[0], Some((0, 5)));
    assert_eq!(steps[3], Some((2, 10)));
    assert!(l.failure.is_none() && !l.rows.iter().any(|r| r.failing));
    // TIME_WAIT is still running when the capture ends, with the timer reading taken in it.
    assert_eq!(l.timers.len(), 2);
    let fw2 = &l.timers[0];
    assert_eq!(fw2.state, "FIN_WAIT_2");
    assert_eq!(fw2.to, Some(Duration::from_micros(2440)));
    let tw = &l.timers[1];
    assert_eq!((tw.state.as_str(), tw.to), ("TIME_WAIT", None));
    assert_eq!(tw.readings, ["timewait timer 59.99s remaining"]);
    assert!(tw.label().contains("still running"), "{}", tw.label());
}

#[test]
fn a_failing_ladder_marks_the_blamed_segment_and_the_lost_one() {
    let l = Ladder::from_capture(&sample(true)).unwrap();
    assert_eq!(l.outcome, Outcome::Failed);
    let failing: Vec<&Row> = l.rows.iter().filter(|r| r.failing).collect();
    assert_eq!(failing.len(), 1);
    let RowKind::Segment(rst) = &failing[0].kind else {
        panic!("the RST is the failing row: {:?}", failing[0]);
    };
    assert_eq!(rst.label(), "R seq 2 len 0");
    assert_eq!(rst.fate, Fate::Unexpected);
    let lost: Vec<String> = l
        .segments()
        .filter(|s| s.fate == Fate::Lost)
        .map(|s| s.label())
        .collect();
    assert_eq!(lost, [". seq 1 ack 2 len 0"]);
    let f = l.failure.as_ref().unwrap();
    assert_eq!(f.step, Some(StepRef { step: 5, line: 13 }));
    assert_eq!(f.expected.as_deref(), Some(". seq 2 ack 2 len 0"));
    assert!(f.actual.as_deref().unwrap().starts_with("R seq 2"));
}

#[test]
fn a_failure_without_a_frame_marks_the_moment_the_step_gave_up() {
    let mut c = sample(false);
    c.add_note(ev(9000, Kind::Failed, 8, 16, ""));
    for n in failure_notes(
        Some(StepRef { step: 8, line: 16 }),
        "step 8 (x.yaml:16:5): expect F.",
        &[
            ("expected:".into(), "F. within 1s".into()),
            ("actual:".into(), "nothing arrived".into()),
        ],
    ) {
        c.add_note(n);
    }
    let l = Ladder::from_capture(&c).unwrap();
    let failing: Vec<&Row> = l.rows.iter().filter(|r| r.failing).collect();
    assert!(matches!(
        failing[..],
        [Row {
            kind: RowKind::Sut(Kind::Failed, _),
            ..
        }]
    ));
}

#[test]
fn text_shows_arrows_states_calls_and_the_failure() {
    let pass = text::render(&Ladder::from_capture(&sample(false)).unwrap());
    assert!(
        pass.starts_with("ipv4::close::active-close: passed\n"),
        "{pass}"
    );
    assert!(pass.contains("F. seq 1 ack 1 len 0 ───"), "{pass}");
    assert!(pass.contains("│ close()"), "{pass}");
    assert!(pass.contains("→ 0"), "{pass}");
    assert!(pass.contains("TIME_WAIT ≥"), "{pass}");
    assert!(pass.contains("FIN_WAIT_2 0.890ms measured"), "{pass}");
    assert!(!pass.contains(">>"), "{pass}");
    let fail = text::render(&Ladder::from_capture(&sample(true)).unwrap());
    let marked: Vec<&str> = fail.lines().filter(|l| l.starts_with(">>")).collect();
    assert_eq!(marked.len(), 1, "{fail}");
    assert!(
        marked[0].contains("R seq 2 len 0") && marked[0].contains("#7"),
        "{fail}"
    );
    assert!(fail.contains("expected: . seq 2 ack 2 len 0"), "{fail}");
    assert!(fail.contains("✗"), "a lost segment: {fail}");
}

/// The SVG's elements: one arrow group per segment, with its frame and classes.
#[test]
fn svg_draws_an_arrow_per_segment_and_highlights_the_failing_step() {
    let links = svg::Links { anchors: true };
    let pass = svg::render(&Ladder::from_capture(&sample(false)).unwrap(), links);
    assert_eq!(pass.matches(r#"<g class="arrow"#).count(), 7, "{pass}");
    for n in 1..=7 {
        assert!(
            pass.contains(&format!(r##"<a href="#frame-{n}">"##)),
            "frame {n}"
        );
    }
    assert!(pass.contains(r##"<a href="#L10">"##));
    assert!(pass.contains(">F. seq 1 ack 1 len 0</text>"));
    assert!(
        pass.contains(">close() → 0<title>"),
        "a call and its return on one row"
    );
    assert!(pass.contains(r#"class="timer-bar open""#));
    assert!(
        !pass.contains(r#"class="failing-row""#) && !pass.contains(" failing\""),
        "nothing failed"
    );
    assert!(pass.contains("verdict-passed"));

    let fail = svg::render(&Ladder::from_capture(&sample(true)).unwrap(), links);
    assert_eq!(fail.matches(r#"class="failing-row""#).count(), 1);
    assert!(
        fail.contains(r#"<g class="arrow from-sut unexpected failing" data-frame="7">"#),
        "{fail}"
    );
    assert!(
        fail.contains(r#"<g class="arrow from-peer lost" data-frame="5">"#),
        "{fail}"
    );
    assert!(
        fail.contains(">expected: . seq 2 ack 2 len 0<title>"),
        "{fail}"
    );
    assert!(
        fail.contains(">actual:   R seq 2 win 0 len 0  (flags R ≠ .)<title>"),
        "{fail}"
    );
    assert!(fail.contains("verdict-failed"));
    // Well-formed enough for a browser: every opened element is closed.
    assert_eq!(fail.matches("<g ").count(), fail.matches("</g>").count());
    assert_eq!(
        fail.matches("<text ").count(),
        fail.matches("</text>").count()
    );
}

#[test]
fn a_capture_not_from_halfclose_still_reads() {
    let mut c = Capture::new("eth0", "");
    c.push(
        t(0),
        Direction::ToSut,
        segment(false, "S", 0, 0),
        String::new(),
    );
    c.push(t(5), Direction::FromSut, vec![1, 2, 3], String::new());
    let l = Ladder::from_capture(&c).unwrap();
    assert_eq!(l.outcome, Outcome::Unknown);
    assert_eq!(l.rows.len(), 2);
    assert!(matches!(l.rows[1].kind, RowKind::Other { frame: 2, .. }));
    assert!(text::render(&l).contains("(no verdict in this capture)"));
    assert!(Ladder::from_pcapng(b"not a capture").is_err());
    assert!(Ladder::from_pcapng(&[]).is_err());
}

#[test]
fn ports_tell_two_connections_apart() {
    let one = Ladder::from_capture(&sample(false)).unwrap();
    assert!(one.segments().all(|s| s.peer_port.is_none()));
    let mut c = sample(false);
    let mut frame = segment(false, "S", 0, 0);
    // The peer's source port (bytes 34-35 of an IPv4 frame): a second connection.
    frame[34..36].copy_from_slice(&40001u16.to_be_bytes());
    c.push(
        t(5000),
        Direction::ToSut,
        frame,
        "sent by step 9 (x.yaml:20): S seq 0".into(),
    );
    let two = Ladder::from_capture(&c).unwrap();
    let labels: Vec<String> = two.segments().map(|s| s.label()).collect();
    assert_eq!(labels[0], "S seq 0 len 0 (peer port 40000)");
    assert_eq!(labels.last().unwrap(), "S seq 0 len 0 (peer port 40001)");
}

/// `show` reads files a user names: a damaged capture gives an error or a ladder, never a
/// panic. Bytes of a real capture are overwritten, cut and grown at places a simple
/// generator picks (the same every run).
#[test]
fn damaged_captures_never_panic() {
    let good = sample(true).to_pcapng().unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..3000 {
        let mut bytes = good.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % bytes.len();
            bytes[at] = next() as u8;
        }
        match next() % 3 {
            0 => bytes.truncate((next() as usize) % bytes.len()),
            1 => bytes.extend((0..next() % 64).map(|_| next() as u8)),
            _ => {}
        }
        if let Ok(l) = Ladder::from_pcapng(&bytes) {
            let _ = (text::render(&l), svg::render(&l, svg::Links::default()));
        }
    }
}
