//! The ladder as text, for a terminal or a CI log (`halfclose show CAPTURE.pcapng`).
//!
//! ```text
//!        time  SUT                                                        peer  frame  step
//!    +0.000ms  │<─────────────── S seq 0 win 64240 len 0 ───────────────│  #1     open L7
//!    +0.041ms  │──────────────── S. seq 0 ack 1 len 0 ─────────────────>│  #2     open L7
//!    +0.052ms  │ ESTABLISHED
//! ```
//!
//! The SUT's lane is on the left, the peer's on the right; events on the SUT's side (calls,
//! returns, states, checks) are written beside its lane. While a timer state lasts, the lane
//! is drawn `┃`. The failing row starts with `>>`, followed by expected and actual.

use std::fmt::Write as _;

use super::{show_span, Fate, Kind, Ladder, Outcome, Row, RowKind, Segment};

/// Characters between the two lanes.
const WIDTH: usize = 56;

pub fn render(l: &Ladder) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: {}", l.trial, verdict_line(l));
    if let Some(s) = &l.script {
        let _ = writeln!(out, "script: {s}");
    }
    let _ = writeln!(
        out,
        "\n{:>12}  {:<w$}peer  frame  step",
        "time",
        "SUT",
        w = WIDTH + 2
    );
    for (i, row) in l.rows.iter().enumerate() {
        let lane = if in_timer(l, row) { '┃' } else { '│' };
        let mark = if row.failing { ">>" } else { "  " };
        let body = body(row, lane);
        let _ = writeln!(
            out,
            "{mark}{:>10}  {body}",
            format!("+{}", show_span(row.at))
        );
        if row.failing {
            failure_lines(l, &mut out);
        }
        if let Some(bar) = l
            .timers
            .iter()
            .find(|b| b.to.is_some() && next_is_end(l, i, b))
        {
            let _ = writeln!(out, "{:>14}└ {} measured", "", bar.label());
        }
    }
    for bar in l.timers.iter().filter(|b| b.to.is_none()) {
        let _ = writeln!(out, "{:>14}┗ {}", "", bar.label());
        for r in &bar.readings {
            let _ = writeln!(out, "{:>16}{r}", "");
        }
    }
    if !l.rows.iter().any(|r| r.failing) && l.failure.is_some() {
        failure_lines(l, &mut out);
    }
    out
}

fn verdict_line(l: &Ladder) -> String {
    match l.outcome {
        Outcome::Unknown if l.verdict.is_empty() => "(no verdict in this capture)".into(),
        _ => l.verdict.clone(),
    }
}

/// Whether the row lies inside a timer state (after its start, up to its end).
fn in_timer(l: &Ladder, row: &Row) -> bool {
    l.timers
        .iter()
        .any(|b| row.at > b.from && b.to.is_none_or(|to| row.at <= to))
}

/// Whether row `i` is where a finished timer bar ends (the last row at its end moment).
fn next_is_end(l: &Ladder, i: usize, bar: &super::TimerBar) -> bool {
    let Some(to) = bar.to else { return false };
    l.rows[i].at == to && l.rows.get(i + 1).is_none_or(|n| n.at != to)
}

fn body(row: &Row, lane: char) -> String {
    let step = step_text(row);
    match &row.kind {
        RowKind::Segment(s) => {
            format!("{lane}{}{lane}  #{:<5} {step}", arrow(s), s.frame)
        }
        RowKind::Other { frame, summary } => format!(
            "{lane}{:^w$}{lane}  #{frame:<5}",
            format!("({summary})"),
            w = WIDTH
        ),
        RowKind::Sut(kind, text) => {
            let what = match kind {
                Kind::Call => text.clone(),
                Kind::Background => format!("{text} (in the background)"),
                Kind::Return => format!("→ {text}"),
                Kind::State => text.clone(),
                Kind::Check => format!("({text})"),
                Kind::Timer => format!("({text})"),
                Kind::Failed => "✗ the step gave up here".into(),
                Kind::End => format!("({text})"),
            };
            format!(
                "{lane} {:<w$}{lane}         {step}",
                clip(&what, WIDTH - 1),
                w = WIDTH - 1
            )
        }
    }
}

/// `open L7`, `3 L10`, or nothing.
fn step_text(row: &Row) -> String {
    match row.step {
        Some(s) if s.step == 0 => format!("open L{}", s.line),
        Some(s) => format!("{} L{}", s.step, s.line),
        None => String::new(),
    }
}

/// `──── F. seq 1 ack 1 len 0 ────>` or `<──── … ────`; a lost segment stops short at `✗`.
fn arrow(s: &Segment) -> String {
    let label = format!(" {} ", clip(&s.label(), WIDTH - 8));
    let n = label.chars().count();
    let left = (WIDTH - 1 - n) / 2;
    let right = WIDTH - 1 - n - left;
    let dash = |k: usize| "─".repeat(k);
    let lost = s.fate == Fate::Lost;
    let odd = if s.fate == Fate::Unexpected {
        "!"
    } else {
        "─"
    };
    if s.from_sut {
        let tail = if lost {
            format!("{}✗ ", dash(right.saturating_sub(2)))
        } else {
            format!("{}{odd}>", dash(right.saturating_sub(1)))
        };
        format!("{}{label}{tail}", dash(left))
    } else {
        let head = if lost {
            format!(" ✗{}", dash(left.saturating_sub(1)))
        } else {
            format!("<{odd}{}", dash(left.saturating_sub(1)))
        };
        format!("{head}{label}{}", dash(right))
    }
}

fn failure_lines(l: &Ladder, out: &mut String) {
    let Some(f) = &l.failure else { return };
    let pad = format!("{:>14}", "");
    let _ = writeln!(out, "{pad}FAILED: {}", f.heading);
    if let Some(e) = &f.expected {
        let _ = writeln!(out, "{pad}  expected: {e}");
    }
    if let Some(a) = &f.actual {
        let _ = writeln!(out, "{pad}  actual:   {a}");
    }
    for (k, v) in &f.other {
        let _ = writeln!(out, "{pad}  {k}: {v}");
    }
}

/// At most `n` characters, ending in `…` when cut.
pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}
