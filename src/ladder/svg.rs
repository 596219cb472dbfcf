//! The ladder as SVG, written by hand: a few element kinds, no script, styles inline, so the
//! file opens anywhere (a browser from the file system, an image in the README).
//!
//! Time runs down. The SUT's lane is on the left, the peer's on the right. Each arrow's
//! middle sits at its frame's kernel timestamp, and it slopes down in the direction it
//! travelled; the gap between rows grows with the time between them (logarithmically, so a
//! 60 s TIME_WAIT and a 40 µs ACK both fit), and a gap over a second is marked with its
//! length. Calls, returns and state changes are written beside the SUT's lane, TIME_WAIT and
//! FIN_WAIT_2 as bars along it with their measured length. The failing step's row is shaded
//! red, with expected and actual beneath it. Each arrow links to its frame (`#frame-N`) and
//! each step to its script line (`#L12`), anchors the HTML report's trial page has.

use std::fmt::Write as _;
use std::time::Duration;

use super::text::clip;
use super::{show_span, Fate, Kind, Ladder, Outcome, Row, RowKind, Segment};

const WIDTH: f64 = 1010.0;
/// The SUT's and the peer's lanes.
const SUT_X: f64 = 400.0;
const PEER_X: f64 = 860.0;
/// Right edge of the text written beside the SUT's lane.
const SUT_TEXT_X: f64 = 372.0;
const TIMER_X: f64 = 380.0;
const TOP: f64 = 78.0;
const ROW: f64 = 30.0;
/// Half the vertical drop of an arrow.
const SLOPE: f64 = 6.0;
/// Room for expected/actual under the failing row.
const FAILURE_ROOM: f64 = 44.0;
/// Room for a timer's label under the row where it starts.
const TIMER_ROOM: f64 = 14.0;

/// How the links in the diagram are made.
#[derive(Clone, Copy, Debug, Default)]
pub struct Links {
    /// Arrows link to `#frame-N` and steps to `#L12` (anchors on the report's trial page).
    pub anchors: bool,
}

/// Extra height for the time between two rows: none under a millisecond, then growing with
/// its logarithm (1 ms → 0, 1 s → 36 px, 60 s → 57 px).
fn gap_height(dt: Duration) -> f64 {
    let ms = dt.as_secs_f64() * 1e3;
    if ms <= 1.0 {
        0.0
    } else {
        (12.0 * ms.log10()).min(72.0)
    }
}

/// Each row's y, and the total height.
fn layout(l: &Ladder) -> (Vec<f64>, f64) {
    let mut ys = Vec::with_capacity(l.rows.len());
    let mut y = TOP;
    let mut prev: Option<&Row> = None;
    for row in &l.rows {
        if let Some(p) = prev {
            y += ROW + gap_height(row.at.saturating_sub(p.at));
            if p.failing {
                y += FAILURE_ROOM;
            }
            if starts_timer(l, p) {
                y += TIMER_ROOM;
            }
        }
        ys.push(y);
        prev = Some(row);
    }
    let mut bottom = y + ROW;
    if prev.is_some_and(|p| p.failing) || (l.failure.is_some() && !l.rows.iter().any(|r| r.failing))
    {
        bottom += FAILURE_ROOM + 10.0;
    }
    (ys, bottom + 20.0)
}

fn starts_timer(l: &Ladder, row: &Row) -> bool {
    matches!(&row.kind, RowKind::Sut(Kind::State, _)) && l.timers.iter().any(|b| b.from == row.at)
}

pub fn render(l: &Ladder, links: Links) -> String {
    let (ys, height) = layout(l);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="ladder" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" role="img" aria-label="ladder diagram of {}">"#,
        esc(&l.trial)
    );
    s.push_str(STYLE);
    let _ = write!(
        s,
        r#"<rect class="bg" x="0" y="0" width="{WIDTH}" height="{height:.0}"/>"#
    );
    // Under the lanes, so they run through it.
    for (_, y) in l.rows.iter().zip(&ys).filter(|(r, _)| r.failing) {
        let _ = write!(
            s,
            r#"<rect class="failing-row" x="4" y="{:.1}" width="{:.0}" height="{:.0}"/>"#,
            y - ROW / 2.0,
            WIDTH - 8.0,
            ROW + FAILURE_ROOM - 4.0
        );
    }
    header(&mut s, l, height);
    breaks(&mut s, l, &ys);
    timers(&mut s, l, &ys);
    for (row, y) in l.rows.iter().zip(&ys) {
        let _ = write!(
            s,
            r#"<text class="time" x="84" y="{:.1}" text-anchor="end">+{}</text>"#,
            y + 4.0,
            show_span(row.at)
        );
        match &row.kind {
            RowKind::Segment(seg) => arrow(&mut s, seg, row, *y, links),
            RowKind::Other { frame, summary } => {
                let _ = write!(
                    s,
                    r#"<text class="other" x="{:.0}" y="{:.1}" text-anchor="middle">#{frame} {}</text>"#,
                    (SUT_X + PEER_X) / 2.0,
                    y + 4.0,
                    esc(summary)
                );
            }
            RowKind::Sut(kind, text) => sut_event(&mut s, kind, text, *y),
        }
        step_link(&mut s, row, *y, links);
        if row.failing {
            failure_text(&mut s, l, y + ROW / 2.0 + 8.0);
        }
    }
    if l.failure.is_some() && !l.rows.iter().any(|r| r.failing) {
        failure_text(&mut s, l, height - FAILURE_ROOM - 20.0);
    }
    s.push_str("</svg>\n");
    s
}

const STYLE: &str = r#"<style>
.ladder text{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12px;fill:#1f2328}
.ladder .bg{fill:#ffffff}
.ladder .title{font-size:14px;font-weight:bold}
.ladder .verdict-passed{fill:#1a7f37;font-weight:bold}
.ladder .verdict-failed{fill:#cf222e;font-weight:bold}
.ladder .verdict-other{fill:#9a6700;font-weight:bold}
.ladder .lane{stroke:#57606a;stroke-width:2}
.ladder .lane-name{font-weight:bold;font-size:13px}
.ladder .time{fill:#57606a;font-size:11px}
.ladder .arrow line{stroke:#0969da;stroke-width:1.6}
.ladder .arrow.from-sut line{stroke:#8250df}
.ladder .arrow .head{fill:#0969da}
.ladder .arrow.from-sut .head{fill:#8250df}
.ladder .arrow.lost line{stroke-dasharray:6 4}
.ladder .arrow .cross{stroke:#cf222e;stroke-width:2.4}
.ladder .arrow.unexpected line{stroke:#cf222e}
.ladder .arrow.unexpected .head{fill:#cf222e}
.ladder .arrow.failing line{stroke:#cf222e;stroke-width:2.6}
.ladder .arrow.failing .head{fill:#cf222e}
.ladder .arrow:hover line{stroke-width:3}
.ladder .seg-label{font-size:12px}
.ladder .frame-no,.ladder .step-link{fill:#0969da;font-size:11px}
.ladder .call{font-weight:bold}
.ladder .return{fill:#57606a}
.ladder .state{fill:#0550ae;font-weight:bold}
.ladder .state-tick{stroke:#0550ae;stroke-width:2}
.ladder .check,.ladder .other{fill:#6e7781;font-size:11px}
.ladder .gave-up{fill:#cf222e;font-weight:bold}
.ladder .timer-bar{fill:#fb8f44;opacity:.85}
.ladder .timer-bar.open{fill:url(#open-timer)}
.ladder .timer-label{fill:#bc4c00;font-size:11px}
.ladder .break{stroke:#afb8c1;stroke-dasharray:2 3}
.ladder .break-label{fill:#6e7781;font-size:11px;font-style:italic}
.ladder .failing-row{fill:#ffebe9}
.ladder .expected{fill:#1a7f37;font-size:11.5px}
.ladder .actual{fill:#cf222e;font-size:11.5px}
.ladder .failure-heading{fill:#cf222e;font-size:11.5px;font-weight:bold}
.ladder .expected,.ladder .actual,.ladder .failure-heading{paint-order:stroke;stroke:#ffebe9;stroke-width:4px}
</style>"#;

fn header(s: &mut String, l: &Ladder, height: f64) {
    let (class, word) = match l.outcome {
        Outcome::Passed => ("verdict-passed", "passed".to_string()),
        Outcome::Failed => ("verdict-failed", "FAILED".to_string()),
        Outcome::Inconclusive => ("verdict-other", "INCONCLUSIVE".to_string()),
        Outcome::Unknown => ("verdict-other", "no verdict".to_string()),
    };
    s.push_str(r##"<defs><linearGradient id="open-timer" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#fb8f44"/><stop offset="1" stop-color="#fb8f44" stop-opacity="0.15"/></linearGradient></defs>"##);
    let _ = write!(
        s,
        r#"<text class="title" x="12" y="22">{}</text><text class="{class}" x="{:.0}" y="22" text-anchor="end">{word}</text>"#,
        esc(&clip(&l.trial, 110)),
        WIDTH - 12.0
    );
    for (x, name) in [(SUT_X, "SUT"), (PEER_X, "peer")] {
        let _ = write!(
            s,
            r#"<text class="lane-name" x="{x:.0}" y="50" text-anchor="middle">{name}</text><line class="lane" x1="{x:.0}" y1="58" x2="{x:.0}" y2="{:.0}"/>"#,
            height - 16.0
        );
    }
}

/// A dashed line and the gap's length where more than a second passed between two rows.
fn breaks(s: &mut String, l: &Ladder, ys: &[f64]) {
    for (pair, y) in l.rows.windows(2).zip(&ys[1..]) {
        let dt = pair[1].at.saturating_sub(pair[0].at);
        if dt < Duration::from_secs(1) {
            continue;
        }
        let y = y - ROW / 2.0 - 2.0;
        let _ = write!(
            s,
            r#"<line class="break" x1="90" y1="{y:.1}" x2="{:.0}" y2="{y:.1}"/><text class="break-label" x="{:.0}" y="{:.1}" text-anchor="middle">{} later</text>"#,
            WIDTH - 10.0,
            (SUT_X + PEER_X) / 2.0,
            y - 3.0,
            show_span(dt)
        );
    }
}

/// The y of a moment: that of the first row at or after it.
fn y_at(l: &Ladder, ys: &[f64], at: Duration) -> f64 {
    l.rows
        .iter()
        .position(|r| r.at >= at)
        .map(|i| ys[i])
        .or_else(|| ys.last().copied())
        .unwrap_or(TOP)
}

fn timers(s: &mut String, l: &Ladder, ys: &[f64]) {
    for bar in &l.timers {
        let top = y_at(l, ys, bar.from);
        let bottom = match bar.to {
            Some(to) => y_at(l, ys, to),
            None => ys.last().copied().unwrap_or(top) + ROW,
        };
        let open = if bar.to.is_none() { " open" } else { "" };
        let _ = write!(
            s,
            r#"<g class="timer"><rect class="timer-bar{open}" x="{TIMER_X}" y="{top:.1}" width="9" height="{:.1}" rx="2"><title>{}</title></rect>"#,
            (bottom - top).max(4.0),
            esc(&bar.label())
        );
        let text = match bar.to {
            Some(_) => format!("{} measured", show_span(bar.until.saturating_sub(bar.from))),
            None => format!(
                "≥ {}, still running at the end",
                show_span(bar.until.saturating_sub(bar.from))
            ),
        };
        let _ = write!(
            s,
            r#"<text class="timer-label" x="{SUT_TEXT_X}" y="{:.1}" text-anchor="end">{} {}</text></g>"#,
            top + 18.0,
            esc(&bar.state),
            esc(&text)
        );
    }
}

fn arrow(s: &mut String, seg: &Segment, row: &Row, y: f64, links: Links) {
    let (x1, x2) = if seg.from_sut {
        (SUT_X, PEER_X)
    } else {
        (PEER_X, SUT_X)
    };
    let (y1, y2) = (y - SLOPE, y + SLOPE);
    let lost = seg.fate == Fate::Lost;
    let mut class = String::from("arrow");
    class.push_str(if seg.from_sut {
        " from-sut"
    } else {
        " from-peer"
    });
    if lost {
        class.push_str(" lost");
    }
    if seg.fate == Fate::Unexpected {
        class.push_str(" unexpected");
    }
    if row.failing {
        class.push_str(" failing");
    }
    if links.anchors {
        let _ = write!(s, r##"<a href="#frame-{}">"##, seg.frame);
    }
    let _ = write!(
        s,
        r#"<g class="{class}" data-frame="{}"><title>frame {}: {}</title>"#,
        seg.frame,
        seg.frame,
        esc(&seg.comment)
    );
    // A lost segment stops two thirds of the way, at a cross.
    let t = if lost { 0.66 } else { 1.0 };
    let (ex, ey) = (x1 + (x2 - x1) * t, y1 + (y2 - y1) * t);
    let _ = write!(
        s,
        r#"<line x1="{x1:.0}" y1="{y1:.1}" x2="{ex:.1}" y2="{ey:.1}"/>"#
    );
    if lost {
        let _ = write!(
            s,
            r#"<path class="cross" d="M{:.1} {:.1}l10 10m0 -10l-10 10"/>"#,
            ex - 5.0,
            ey - 5.0
        );
    } else {
        let dir = if x2 > x1 { -1.0 } else { 1.0 };
        let _ = write!(
            s,
            r#"<path class="head" d="M{x2:.0} {y2:.1}l{:.0} -5l0 10z"/>"#,
            dir * 11.0
        );
    }
    // Over the middle of what is drawn: a lost segment's label stays clear of its cross.
    let _ = write!(
        s,
        r#"<text class="seg-label" x="{:.0}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (x1 + ex) / 2.0,
        y - 6.0,
        esc(&seg.label())
    );
    let _ = write!(
        s,
        r#"<text class="frame-no" x="{:.0}" y="{:.1}">#{}</text></g>"#,
        PEER_X + 12.0,
        y + 4.0,
        seg.frame
    );
    if links.anchors {
        s.push_str("</a>");
    }
}

fn sut_event(s: &mut String, kind: &Kind, text: &str, y: f64) {
    let (class, shown) = match kind {
        Kind::Call => ("call", text.to_string()),
        Kind::Background => ("call", format!("{text} (background)")),
        Kind::Return => ("return", format!("→ {text}")),
        Kind::State => ("state", text.to_string()),
        Kind::Check | Kind::Timer => ("check", text.to_string()),
        Kind::Failed => ("gave-up", "✗ the step gave up".to_string()),
        Kind::End => ("check", text.to_string()),
    };
    if *kind == Kind::State {
        let _ = write!(
            s,
            r#"<line class="state-tick" x1="{:.0}" y1="{y:.1}" x2="{:.0}" y2="{y:.1}"/>"#,
            SUT_X - 6.0,
            SUT_X + 6.0
        );
    }
    if *kind == Kind::Failed {
        let _ = write!(
            s,
            r#"<path class="cross" style="stroke:#cf222e;stroke-width:2.4" d="M{:.0} {:.1}l10 10m0 -10l-10 10"/>"#,
            SUT_X - 5.0,
            y - 5.0
        );
    }
    let _ = write!(
        s,
        r#"<text class="{class}" x="{SUT_TEXT_X}" y="{:.1}" text-anchor="end">{}<title>{}</title></text>"#,
        y + 4.0,
        esc(&clip(&shown, 44)),
        esc(&shown)
    );
}

/// `step 3 · L10` at the right, linking to the script line.
fn step_link(s: &mut String, row: &Row, y: f64, links: Links) {
    let Some(step) = row.step else { return };
    let name = if step.step == 0 {
        format!("open · L{}", step.line)
    } else {
        format!("step {} · L{}", step.step, step.line)
    };
    let text = format!(
        r#"<text class="step-link" x="{:.0}" y="{:.1}">{name}</text>"#,
        PEER_X + 52.0,
        y + 4.0
    );
    if links.anchors {
        let _ = write!(s, r##"<a href="#L{}">{text}</a>"##, step.line);
    } else {
        s.push_str(&text);
    }
}

fn failure_text(s: &mut String, l: &Ladder, y: f64) {
    let Some(f) = &l.failure else { return };
    // From the left margin: the lines are long (windows, offsets, the reason).
    let x = 96.0;
    let mut lines = Vec::new();
    if let Some(e) = &f.expected {
        lines.push(("expected", format!("expected: {e}")));
    }
    if let Some(a) = &f.actual {
        lines.push(("actual", format!("actual:   {a}")));
    }
    if lines.is_empty() {
        lines.push(("failure-heading", f.heading.clone()));
        for (k, v) in &f.other {
            lines.push(("actual", format!("{k}: {v}")));
        }
    }
    for (i, (class, text)) in lines.iter().take(3).enumerate() {
        let _ = write!(
            s,
            r#"<text class="{class}" x="{x:.0}" y="{:.1}">{}<title>{}</title></text>"#,
            y + 14.0 * i as f64,
            esc(&clip(text, 128)),
            esc(text)
        );
    }
}

/// Text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // XML 1.0 forbids most control characters even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}
