//! A trial as a ladder diagram: the SUT and the peer side by side, one arrow per segment,
//! the SUT's calls, states and timers on its lane, the failing step marked.
//!
//! One model, [`Ladder`], built from one source: a trial's capture, in memory
//! ([`Ladder::from_capture`]) or read back from its pcapng ([`Ladder::from_pcapng`]), so
//! `halfclose show CAPTURE.pcapng` needs nothing but the file. The frames give the arrows
//! (flags, relative seq/ack/len, kernel timestamps); their comments say which step sent or
//! matched each one and what became of it; the comments on the whole capture
//! ([`events`]) give the SUT's side: calls, returns, state changes, timer readings and the
//! failure. [`text`] draws it for a terminal, [`svg`] for the HTML report and docs.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::capture::{Capture, Direction};
use crate::wire::{self, Frame, TcpFlags};

pub mod events;
mod read;
pub mod svg;
pub mod text;

pub use events::{Event, Kind, StepRef};
pub use read::{read_pcapng_file, MAX_CAPTURE_BYTES};

/// One frame of a capture, as the ladder needs it.
#[derive(Clone, Debug)]
pub struct RawFrame {
    pub at: SystemTime,
    pub dir: Direction,
    pub data: Vec<u8>,
    pub comment: String,
}

/// A capture's content: frames in file order and the comments on the whole file.
#[derive(Clone, Debug, Default)]
pub struct RawCapture {
    /// The interface's description (`halfclose peer, trial ipv4::close::active-close`).
    pub description: String,
    pub notes: Vec<String>,
    pub frames: Vec<RawFrame>,
}

/// How the trial ended, as its capture says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Inconclusive,
    /// The capture names no verdict (not written by halfclose, or cut short).
    Unknown,
}

/// What became of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Sent by the peer (or matched by an `expect`, or taken in by a transfer).
    Delivered,
    /// Dropped by the script: the peer never sent it, or ignored what the SUT sent.
    Lost,
    /// A SUT segment no step expected, or one that came outside its window.
    Unexpected,
    /// Nothing the harness said about it (a frame of another capture, a neighbour reply).
    Unclaimed,
}

/// One arrow.
#[derive(Clone, Debug)]
pub struct Segment {
    /// 1-based frame number in the pcapng, as Wireshark counts.
    pub frame: usize,
    pub from_sut: bool,
    pub flags: TcpFlags,
    /// Relative to the sender's ISN (0 = ISN).
    pub seq: i64,
    /// Relative to the receiver's ISN, when the ACK flag is set.
    pub ack: Option<i64>,
    pub len: usize,
    pub win: u16,
    /// The peer's port, when the capture holds more than one connection (else `None`).
    pub peer_port: Option<u16>,
    pub fate: Fate,
    /// The frame's comment as written.
    pub comment: String,
}

impl Segment {
    /// `F. seq 1 ack 1 len 0`
    pub fn label(&self) -> String {
        let mut out = format!("{} seq {}", self.flags, self.seq);
        if let Some(a) = self.ack {
            out.push_str(&format!(" ack {a}"));
        }
        out.push_str(&format!(" len {}", self.len));
        if let Some(p) = self.peer_port {
            out.push_str(&format!(" (peer port {p})"));
        }
        out
    }
}

/// What a row of the ladder shows.
#[derive(Clone, Debug)]
pub enum RowKind {
    Segment(Segment),
    /// A frame that is not TCP (a neighbour solicitation, …): frame number and summary.
    Other {
        frame: usize,
        summary: String,
    },
    /// An event on the SUT's lane: a call, a return, a state change, a check, a timer
    /// reading, the moment the failing step gave up.
    Sut(Kind, String),
}

/// One row: something that happened at a moment.
#[derive(Clone, Debug)]
pub struct Row {
    /// Since the ladder's first moment.
    pub at: Duration,
    pub step: Option<StepRef>,
    pub kind: RowKind,
    /// The failing step's row.
    pub failing: bool,
}

/// A timer state (TIME_WAIT, FIN_WAIT_2) from its start to its end, as measured.
#[derive(Clone, Debug, PartialEq)]
pub struct TimerBar {
    pub state: String,
    pub from: Duration,
    /// When the connection left the state; `None`: still in it when the trial ended.
    pub to: Option<Duration>,
    /// Where the bar is drawn to: `to`, or the ladder's last moment.
    pub until: Duration,
    /// The timer readings taken meanwhile (`timewait timer 59.99s remaining`).
    pub readings: Vec<String>,
}

impl TimerBar {
    /// `TIME_WAIT 61.040s` or `TIME_WAIT ≥ 0.020s (still running at the end)`.
    pub fn label(&self) -> String {
        let d = self.until.saturating_sub(self.from);
        match self.to {
            Some(_) => format!("{} {}", self.state, show_span(d)),
            None => format!(
                "{} ≥ {} (still running when the trial ended)",
                self.state,
                show_span(d)
            ),
        }
    }
}

/// The failing step: where, and expected against actual.
#[derive(Clone, Debug, Default)]
pub struct FailureMark {
    pub step: Option<StepRef>,
    pub heading: String,
    pub expected: Option<String>,
    pub actual: Option<String>,
    /// Other detail lines (`error`, …).
    pub other: Vec<(String, String)>,
}

/// A trial as a ladder diagram.
#[derive(Clone, Debug)]
pub struct Ladder {
    /// The trial's name, from the capture's interface description.
    pub trial: String,
    pub outcome: Outcome,
    /// The verdict as the capture says it (`verdict: FAILED at …`), without the prefix.
    pub verdict: String,
    /// The script file, when the capture names it.
    pub script: Option<String>,
    /// The wall-clock moment `Row::at` counts from.
    pub origin: SystemTime,
    /// In time order.
    pub rows: Vec<Row>,
    pub timers: Vec<TimerBar>,
    pub failure: Option<FailureMark>,
    /// The other comments on the capture (states, measurements, allowances, reasons).
    pub notes: Vec<String>,
}

/// States whose timer the ladder draws as a bar.
const TIMER_STATES: [&str; 2] = ["TIME_WAIT", "FIN_WAIT_2"];

impl Ladder {
    /// The ladder of a capture held in memory, exactly as its pcapng would give it.
    pub fn from_capture(capture: &Capture) -> Result<Ladder, String> {
        let bytes = capture.to_pcapng().map_err(|e| e.to_string())?;
        Ladder::from_pcapng(&bytes)
    }

    /// The ladder of a pcapng file's bytes.
    pub fn from_pcapng(bytes: &[u8]) -> Result<Ladder, String> {
        Ok(Ladder::build(read::parse(bytes)?))
    }

    /// Builds the model from a capture's frames and comments.
    pub fn build(raw: RawCapture) -> Ladder {
        let trial = raw
            .description
            .strip_prefix("halfclose peer, trial ")
            .unwrap_or(&raw.description)
            .to_string();
        let mut timed: Vec<(SystemTime, Row)> = Vec::new();
        let mut failure = None;
        let mut notes = Vec::new();
        let mut script = None;
        let mut verdict = String::new();
        for note in &raw.notes {
            if let Some(e) = events::parse(note) {
                timed.push((e.at, sut_row(e)));
            } else if events::FailureNote::take(&mut failure, note) {
            } else if let Some(path) = note.strip_prefix("script: ") {
                script = Some(path.to_string());
            } else if let Some(v) = note.strip_prefix("verdict: ") {
                verdict = v.to_string();
            } else {
                notes.push(note.clone());
            }
        }
        timed.extend(segment_rows(&raw.frames));
        one_connection_unnamed(&mut timed);
        // Frames before events at the same moment: a call's return and the segment it sent
        // leave the socket together, and the segment is what the reader looks for.
        timed.sort_by_key(|(at, row)| (*at, !matches!(row.kind, RowKind::Segment(_))));
        let origin = timed
            .first()
            .map(|(at, _)| *at)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut rows: Vec<Row> = timed
            .into_iter()
            .map(|(at, mut row)| {
                row.at = at.duration_since(origin).unwrap_or_default();
                row
            })
            .collect();
        merge_returns(&mut rows);
        let failure = failure.map(|f: events::FailureNote| mark_failure(&mut rows, f));
        let timers = timer_bars(&rows);
        Ladder {
            trial,
            outcome: outcome_of(&verdict),
            verdict,
            script,
            origin,
            rows,
            timers,
            failure,
            notes,
        }
    }

    /// The ladder's last moment.
    pub fn end(&self) -> Duration {
        self.rows.last().map(|r| r.at).unwrap_or_default()
    }

    /// The arrows, in time order.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.rows.iter().filter_map(|r| match &r.kind {
            RowKind::Segment(s) => Some(s),
            _ => None,
        })
    }
}

/// A call whose return is the very next row reads as one: `close() → 0`. A call with
/// something between (the FIN it sent, a state change) keeps its return on a row of its own.
fn merge_returns(rows: &mut Vec<Row>) {
    let mut i = 0;
    while i + 1 < rows.len() {
        let same_step = rows[i].step == rows[i + 1].step;
        if let (RowKind::Sut(Kind::Call, call), RowKind::Sut(Kind::Return, ret), true) =
            (&rows[i].kind, &rows[i + 1].kind, same_step)
        {
            rows[i].kind = RowKind::Sut(Kind::Call, format!("{call} → {ret}"));
            rows.remove(i + 1);
        }
        i += 1;
    }
}

fn outcome_of(verdict: &str) -> Outcome {
    if verdict == "passed" {
        Outcome::Passed
    } else if verdict.starts_with("FAILED") {
        Outcome::Failed
    } else if verdict.starts_with("INCONCLUSIVE") {
        Outcome::Inconclusive
    } else {
        Outcome::Unknown
    }
}

fn sut_row(e: Event) -> Row {
    Row {
        at: Duration::ZERO,
        step: e.step,
        kind: RowKind::Sut(e.kind, e.text),
        failing: false,
    }
}

/// One row per frame, numbered as in the file (pcapng frames are in time order there), with
/// sequence numbers relative to each side's ISN: the SYN's sequence number when the capture
/// has it, else the first sequence number seen from that side.
fn segment_rows(frames: &[RawFrame]) -> Vec<(SystemTime, Row)> {
    // (SUT port, peer port, from the SUT) → that side's ISN, as known at this frame: a SYN
    // (re)sets it, so a connection reopened by a new SYN counts from its new ISN.
    let mut isn: HashMap<(u16, u16, bool), u32> = HashMap::new();
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let step = events::frame_step(&f.comment);
        let kind = match wire::parse_frame(&f.data) {
            Frame::Tcp { tcp, .. } => {
                let key = conn_key(f.dir, &tcp);
                if tcp.flags.contains(TcpFlags::SYN) || !isn.contains_key(&key) {
                    isn.insert(key, tcp.seq);
                }
                let other = (key.0, key.1, !key.2);
                let seq_base = isn.get(&key).copied().unwrap_or(tcp.seq);
                let ack = tcp.flags.contains(TcpFlags::ACK).then(|| {
                    let base = isn.get(&other).copied().unwrap_or(tcp.ack);
                    wire::seq::rel(tcp.ack, base)
                });
                RowKind::Segment(Segment {
                    frame: i + 1,
                    from_sut: f.dir == Direction::FromSut,
                    flags: tcp.flags,
                    seq: wire::seq::rel(tcp.seq, seq_base),
                    ack,
                    len: tcp.payload.len(),
                    win: tcp.window,
                    peer_port: Some(key.1),
                    fate: fate_of(&f.comment),
                    comment: f.comment.clone(),
                })
            }
            Frame::Other { summary } => RowKind::Other {
                frame: i + 1,
                summary,
            },
            other => RowKind::Other {
                frame: i + 1,
                summary: neighbour_summary(&other),
            },
        };
        out.push((
            f.at,
            Row {
                at: Duration::ZERO,
                step,
                kind,
                failing: false,
            },
        ));
    }
    out
}

/// Ports are worth a label only where connections must be told apart.
fn one_connection_unnamed(rows: &mut [(SystemTime, Row)]) {
    let ports: std::collections::BTreeSet<u16> = rows
        .iter()
        .filter_map(|(_, r)| match &r.kind {
            RowKind::Segment(s) => s.peer_port,
            _ => None,
        })
        .collect();
    if ports.len() > 1 {
        return;
    }
    for (_, r) in rows {
        if let RowKind::Segment(s) = &mut r.kind {
            s.peer_port = None;
        }
    }
}

fn conn_key(dir: Direction, tcp: &wire::TcpRepr) -> (u16, u16, bool) {
    match dir {
        Direction::FromSut => (tcp.src_port, tcp.dst_port, true),
        Direction::ToSut => (tcp.dst_port, tcp.src_port, false),
    }
}

fn neighbour_summary(f: &Frame) -> String {
    match f {
        Frame::ArpRequest { target_ip, .. } => format!("ARP who-has {target_ip}"),
        Frame::ArpReply { sender_ip, .. } => format!("ARP {sender_ip} is-at"),
        Frame::NeighborSolicit { target, .. } => format!("NDP solicit {target}"),
        Frame::NeighborAdvert { target, .. } => format!("NDP advert {target}"),
        _ => "frame".into(),
    }
}

/// What the runner's comment says became of a segment.
fn fate_of(comment: &str) -> Fate {
    if comment.starts_with("NOT SENT") || comment.contains("DROPPED by the harness") {
        Fate::Lost
    } else if comment.starts_with("UNEXPECTED")
        || comment.starts_with("LATE")
        || comment.starts_with("LATE/EARLY")
    {
        Fate::Unexpected
    } else if comment.starts_with("sent by")
        || comment.starts_with("matched")
        || comment.starts_with("ACK taken in")
    {
        Fate::Delivered
    } else {
        Fate::Unclaimed
    }
}

/// Marks the failing step's row: the segment its comment blames, else the moment the step
/// gave up, else any row of the step. A failure with no step (the harness's own) marks none.
fn mark_failure(rows: &mut [Row], f: events::FailureNote) -> FailureMark {
    let in_step = |r: &Row| f.step.is_some() && r.step.map(|s| s.step) == f.step.map(|s| s.step);
    let blamed = rows.iter().position(|r| {
        in_step(r) && matches!(&r.kind, RowKind::Segment(s) if s.fate == Fate::Unexpected)
    });
    let gave_up = || {
        rows.iter()
            .position(|r| in_step(r) && matches!(r.kind, RowKind::Sut(Kind::Failed, _)))
    };
    let any = || rows.iter().rposition(in_step);
    if let Some(i) = blamed.or_else(gave_up).or_else(any) {
        rows[i].failing = true;
    }
    let mut mark = FailureMark {
        step: f.step,
        heading: f.heading.clone(),
        ..FailureMark::default()
    };
    for (k, v) in f.details {
        match k.as_str() {
            "expected" => mark.expected = Some(v),
            "actual" => mark.actual = Some(v),
            _ => mark.other.push((k, v)),
        }
    }
    mark
}

/// A bar per stay in TIME_WAIT or FIN_WAIT_2, from the state changes on the SUT's lane.
fn timer_bars(rows: &[Row]) -> Vec<TimerBar> {
    let end = rows.last().map(|r| r.at).unwrap_or_default();
    let mut bars: Vec<TimerBar> = Vec::new();
    let mut open: Option<TimerBar> = None;
    for r in rows {
        match &r.kind {
            RowKind::Sut(Kind::State, state) => {
                if let Some(mut bar) = open.take() {
                    bar.to = Some(r.at);
                    bar.until = r.at;
                    bars.push(bar);
                }
                if TIMER_STATES.contains(&state.as_str()) {
                    open = Some(TimerBar {
                        state: state.clone(),
                        from: r.at,
                        to: None,
                        until: end,
                        readings: Vec::new(),
                    });
                }
            }
            RowKind::Sut(Kind::Timer, reading) => {
                if let Some(bar) = open.as_mut() {
                    bar.readings.push(reading.clone());
                }
            }
            _ => {}
        }
    }
    bars.extend(open);
    bars
}

/// `halfclose show CAPTURE.pcapng [--svg FILE]`: the ladder of a capture as text, and as SVG
/// in `svg_out` when asked. Err: what is wrong with the file (exit 2).
pub fn show(path: &std::path::Path, svg_out: Option<&std::path::Path>) -> Result<String, String> {
    let bytes = read_pcapng_file(path)?;
    let ladder = Ladder::from_pcapng(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(out) = svg_out {
        let svg = svg::render(&ladder, svg::Links::default());
        crate::report::write_file(out, &svg).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    Ok(text::render(&ladder))
}

/// `12.345ms`, `1.234567s`: a moment or span on the ladder.
pub fn show_span(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.3}s", d.as_secs_f64())
    } else {
        format!("{:.3}ms", d.as_secs_f64() * 1e3)
    }
}

#[cfg(test)]
pub(crate) mod tests;
