//! Steps on the wire: `send`, `expect`, `quiet` and `transfer`.

use std::time::{Duration, SystemTime};

use super::matching::NamedSegment;
use super::{matching, offset_text, sleep_until, Failure, Run, WAIT_BEYOND};
use crate::peer::{Arrival, PeerConn};
use crate::script::values::show_duration;
use crate::script::{
    Action, ExpectSpec, FoSpec, NumField, NumRef, OptSpec, SendSpec, SeqSpec, Step, TsRef, Window,
};
use crate::topology;
use crate::wire::{self, TcpFlags};

/// A transfer that makes no progress for this long has stalled.
const TRANSFER_STALL: Duration = Duration::from_secs(3);

impl Run<'_> {
    /// Sends at its moment: right after the previous step, or `delay` after its anchor. The
    /// segment's kernel transmit timestamp is what later windows count from; one that left
    /// later than the harness's slack makes the trial inconclusive (the SUT saw another
    /// script than the one written).
    pub(super) fn send(&mut self, step: &Step, spec: &SendSpec) -> Result<(), Failure> {
        let filled = self.fill_send(step, spec)?;
        let spec = filled.as_ref().unwrap_or(spec);
        let mut due = self.clock;
        if spec.delay > Duration::ZERO {
            let (from, _) = self.anchor_of(step, spec.since.as_deref())?;
            due = due.max(from + spec.delay);
            sleep_until(due);
        }
        let at = self.transmit(step, spec, &spec.conn, due)?;
        let what = if spec.drop {
            "the dropped segment"
        } else {
            "the peer's segment"
        };
        self.check_late(step, what, due, at);
        self.mark(step, at, format!("the send at line {}", step.loc.line));
        Ok(())
    }

    /// Builds, sends (or drops) and records one peer segment; returns when it left (a dropped
    /// one "leaves" at `due` or now, whichever is later).
    pub(super) fn transmit(
        &mut self,
        step: &Step,
        spec: &SendSpec,
        conn: &str,
        due: SystemTime,
    ) -> Result<SystemTime, Failure> {
        let resolved = self.resolve_options(step, spec)?;
        let c = self.conn(conn);
        let tcp = c.build(resolved.as_ref().unwrap_or(spec));
        if let Err(why) = tcp.check() {
            let detail = format!("cannot build this segment: {why}");
            return Err(self.fail(step, "send".into(), vec![("error:".into(), detail)]));
        }
        let frame = wire::emit_tcp(topology::PEER_MAC, topology::SUT_MAC, c.ep, &tcp);
        let text = c.describe_sent(&tcp);
        let at = if spec.drop {
            let note = format!("NOT SENT: dropped by {}: {text}", self.short_place(step));
            self.link
                .record_dropped(due.max(SystemTime::now()), frame, note)
                .0
        } else {
            let note = format!("sent by {}: {text}", self.short_place(step));
            let (sent, _) = self.link.send(frame, note).map_err(|e| {
                self.fail(
                    step,
                    format!("send {text}"),
                    vec![("error:".into(), e.to_string())],
                )
            })?;
            if !sent.stamped {
                let place = self.short_place(step);
                self.excuse(format!(
                    "{place}: the kernel gave no transmit timestamp for {text}"
                ));
            }
            sent.at
        };
        self.conn_mut(conn).on_sent(&tcp, at, spec.drop);
        if let (Some(name), Action::Send(_)) = (&step.name, &step.action) {
            let seen = NamedSegment {
                options: tcp.options.clone(),
                at,
            };
            self.named_segments.insert(name.clone(), seen);
        }
        Ok(at)
    }

    /// The value of `${name + N}` for a field.
    fn captured_value(
        &self,
        step: &Step,
        field: NumField,
        name: &str,
        off: i64,
    ) -> Result<i64, Failure> {
        let v = self.captured.get(name).copied().ok_or_else(|| {
            self.fail(
                step,
                format!("{}: ${{{name}}}", field.name()),
                vec![(
                    "error:".into(),
                    format!("`{name}` was never captured (its `expect` did not run)"),
                )],
            )
        })?;
        v.checked_add(off).ok_or_else(|| {
            self.fail(
                step,
                format!("{}: ${{{name}}}", field.name()),
                vec![("error:".into(), format!("{v} + {off} is out of range"))],
            )
        })
    }

    /// The fields a send takes from captured values, filled in; None: it takes none.
    fn fill_send(&self, step: &Step, spec: &SendSpec) -> Result<Option<SendSpec>, Failure> {
        if spec.refs.is_empty() {
            return Ok(None);
        }
        let mut out = spec.clone();
        self.apply_refs(step, &spec.refs, &mut out.seq, &mut out.ack, &mut out.win)?;
        Ok(Some(out))
    }

    /// An expectation with the captured values it compares with filled in.
    fn fill_expect(&self, step: &Step, spec: &ExpectSpec) -> Result<Option<ExpectSpec>, Failure> {
        if !spec.refs.iter().any(|(_, r)| matches!(r, NumRef::Use(..))) {
            return Ok(None);
        }
        let mut out = spec.clone();
        self.apply_refs(step, &spec.refs, &mut out.seq, &mut out.ack, &mut out.win)?;
        Ok(Some(out))
    }

    fn apply_refs(
        &self,
        step: &Step,
        refs: &[(NumField, NumRef)],
        seq: &mut Option<SeqSpec>,
        ack: &mut Option<SeqSpec>,
        win: &mut Option<u16>,
    ) -> Result<(), Failure> {
        for (field, r) in refs {
            if let NumRef::Use(n, off) = r {
                let v = self.captured_value(step, *field, n, *off)?;
                self.set_field(step, field, v, seq, ack, win)?;
            }
        }
        Ok(())
    }

    fn set_field(
        &self,
        step: &Step,
        field: &NumField,
        v: i64,
        seq: &mut Option<SeqSpec>,
        ack: &mut Option<SeqSpec>,
        win: &mut Option<u16>,
    ) -> Result<(), Failure> {
        match field {
            NumField::Seq => *seq = Some(SeqSpec::Rel(v)),
            NumField::Ack => *ack = Some(SeqSpec::Rel(v)),
            NumField::Win => {
                let w = u16::try_from(v).map_err(|_| {
                    self.fail(
                        step,
                        "win".into(),
                        vec![(
                            "error:".into(),
                            format!("the computed window {v} is outside 0..65535"),
                        )],
                    )
                })?;
                *win = Some(w);
            }
        }
        Ok(())
    }

    /// Keeps the fields a matched segment's `=name` captures, as the script writes them:
    /// `seq` relative to the SUT's ISN, `ack` to the peer's, `win` the raw field.
    fn capture_values(&mut self, spec: &ExpectSpec, tcp: &crate::wire::TcpRepr) {
        let c = self.conn(&spec.conn);
        let (sut_isn, isn) = (c.sut_isn.unwrap_or(tcp.seq), c.isn);
        for (field, r) in &spec.refs {
            if let NumRef::Bind(n) = r {
                let v = match field {
                    NumField::Seq => wire::seq::rel(tcp.seq, sut_isn),
                    NumField::Ack => wire::seq::rel(tcp.ack, isn),
                    NumField::Win => i64::from(tcp.window),
                };
                self.captured.insert(n.clone(), v);
            }
        }
    }

    /// A send's options with their references to named segments (`ts ecr @synack`, `fo
    /// @synack`) replaced by the values those segments carried; None: it has none.
    fn resolve_options(&self, step: &Step, spec: &SendSpec) -> Result<Option<SendSpec>, Failure> {
        let Some(list) = &spec.options else {
            return Ok(None);
        };
        if !list
            .iter()
            .any(|o| matches!(o, OptSpec::Ts { .. } | OptSpec::FastOpen(FoSpec::Of(_), _)))
        {
            return Ok(None);
        }
        let fail = |why: String| self.fail(step, "send".into(), vec![("error:".into(), why)]);
        let seg = |n: &str| {
            self.named_segments
                .get(n)
                .ok_or_else(|| fail(format!("no segment of step `{n}` was seen")))
        };
        let tsval = |n: &str| {
            seg(n)?
                .tsval()
                .ok_or_else(|| fail(format!("the segment of `{n}` carried no timestamp")))
        };
        let ts = |r: &TsRef| -> Result<TsRef, Failure> {
            Ok(match r {
                TsRef::Of(n) => TsRef::Abs(tsval(n)?),
                other => other.clone(),
            })
        };
        let mut out = Vec::new();
        for o in list {
            out.push(match o {
                OptSpec::Ts { val, ecr } => OptSpec::Ts {
                    val: ts(val)?,
                    ecr: ts(ecr)?,
                },
                OptSpec::FastOpen(FoSpec::Of(n), kind) => {
                    let cookie = seg(n)?.cookie().ok_or_else(|| {
                        fail(format!("the segment of `{n}` carried no Fast Open cookie"))
                    })?;
                    OptSpec::FastOpen(FoSpec::Cookie(cookie.to_vec()), *kind)
                }
                other => other.clone(),
            });
        }
        Ok(Some(SendSpec {
            options: Some(out),
            ..spec.clone()
        }))
    }

    pub(super) fn expect(&mut self, step: &Step, spec: &ExpectSpec) -> Result<(), Failure> {
        let filled = self.fill_expect(step, spec)?;
        let spec = filled.as_ref().unwrap_or(spec);
        let window = self.resolve_window(&spec.window, &spec.conn);
        let (from, from_what) = self.window_start(step, &window)?;
        let want = matching::describe_expect(spec);
        let Some(got) = self.link.arrival_by(from + window.within + WAIT_BEYOND) else {
            return Err(self.nothing_arrived(step, &window, &want, from, &from_what));
        };
        let conn = self.conn(&spec.conn);
        let actual = conn.describe_received(&got.tcp);
        let offset = offset_text(got.at, from);
        let named = matching::Named {
            segments: &self.named_segments,
            ts_tick: self.profile.ts_tick(),
        };
        let checked = matching::check_segment(spec, &got, conn, &named).and_then(|()| {
            if conn.owns(&got.tcp) {
                Ok(())
            } else {
                Err(format!(
                    "ports {} > {} belong to another connection than `{}`",
                    got.tcp.src_port, got.tcp.dst_port, spec.conn
                ))
            }
        });
        if let Err(why) = checked {
            self.link.comment(
                got.frame,
                format!(
                    "UNEXPECTED: {} expected {want}: {why}",
                    self.short_place(step)
                ),
            );
            return Err(self.mismatch(
                step,
                format!("expect {want}"),
                want.clone(),
                format!("{actual}  ({why}), at {offset} after {from_what}"),
            ));
        }
        if let Err(why) = self.judge_time(step, &window, got.at, from) {
            self.link.comment(
                got.frame,
                format!("LATE/EARLY: matched {} but {why}", self.short_place(step)),
            );
            return Err(self.mismatch(
                step,
                format!("expect {want}"),
                format!("{want} {}", matching::show_window(&window)),
                format!("{actual} at {offset} after {from_what}: {why}"),
            ));
        }
        self.accept(step, spec, &got, &actual, &offset);
        self.mark(
            step,
            got.at,
            format!("the segment matched at line {}", step.loc.line),
        );
        Ok(())
    }

    /// A matched segment: comment it, and let the peer learn from it unless it is "dropped".
    fn accept(
        &mut self,
        step: &Step,
        spec: &ExpectSpec,
        got: &Arrival,
        actual: &str,
        offset: &str,
    ) {
        let place = self.short_place(step);
        if let Some(name) = &step.name {
            let seen = NamedSegment {
                options: got.tcp.options.clone(),
                at: got.at,
            };
            self.named_segments.insert(name.clone(), seen);
        }
        self.capture_values(spec, &got.tcp);
        let c = self.conn_mut(&spec.conn);
        c.note_transmission(&got.tcp, got.at);
        let note = if spec.drop {
            format!("matched {place}, DROPPED by the harness (the peer ignores it): {actual}")
        } else {
            c.on_received(&got.tcp);
            format!("matched {place}: {actual} at {offset}")
        };
        self.link.comment(got.frame, note);
    }

    /// The window closed empty. Waiting a little longer tells "late, at +X" from "never", so
    /// a wrong window fails with the time actually measured.
    fn nothing_arrived(
        &self,
        step: &Step,
        window: &Window,
        want: &str,
        from: SystemTime,
        from_what: &str,
    ) -> Failure {
        let w = matching::show_window(window);
        let grace = window
            .within
            .clamp(Duration::from_millis(200), Duration::from_secs(2));
        let actual = match self.link.arrival_by(from + window.within + grace) {
            Some(late) => {
                let text = self.conn_of(&late.tcp).describe_received(&late.tcp);
                let at = offset_text(late.at, from);
                self.link.comment(
                    late.frame,
                    format!("LATE for {}: {text} at {at}", self.short_place(step)),
                );
                format!("nothing {w} of {from_what}; then {text} came at {at}")
            }
            None => format!(
                "nothing arrived {w} of {from_what} (nor {} after)",
                show_duration(grace)
            ),
        };
        self.mismatch(
            step,
            format!("expect {want}"),
            format!("{want} {w}"),
            actual,
        )
    }

    /// Nothing the kernel stamped from the end of the previous step to `d` after it, however
    /// late the harness looks.
    pub(super) fn quiet(&mut self, step: &Step, d: Duration) -> Result<(), Failure> {
        let until = self.clock + d;
        if let Some(got) = self.link.arrival_by(until) {
            return Err(self.unexpected(step, got, format!("quiet {}", show_duration(d))));
        }
        self.clock = until;
        Ok(())
    }

    pub(super) fn unexpected(&self, step: &Step, got: Arrival, during: String) -> Failure {
        let actual = self.conn_of(&got.tcp).describe_received(&got.tcp);
        let place = self.short_place(step);
        self.link.comment(
            got.frame,
            format!("UNEXPECTED during {during} of {place}: {actual}"),
        );
        let offset = offset_text(got.at, self.anchor);
        self.mismatch(
            step,
            format!("{during}: the SUT sent a segment no step expects"),
            "nothing",
            format!("{actual} at {offset} after {}", self.anchor_what),
        )
    }

    /// Sends `bytes` within the SUT's window, MSS-sized, and takes in its ACKs (which need no
    /// `expect`); anything else the SUT sends meanwhile fails the trial.
    pub(super) fn transfer(
        &mut self,
        step: &Step,
        bytes: usize,
        segment: Option<u16>,
        conn: &str,
    ) -> Result<(), Failure> {
        let c = self.conn(conn);
        let mss = segment.unwrap_or(c.sut_mss()).max(1) as usize;
        let start = c.snd_nxt;
        let end = start.wrapping_add(bytes as u32);
        let (mut next, mut acked) = (start, start);
        let mut window = c.sut_window().max(1) as usize;
        let mut last_progress = SystemTime::now();
        let mut last_ack = last_progress;
        while wire::seq::lt(acked, end) {
            while wire::seq::lt(next, end) && (next.wrapping_sub(acked) as usize) < window {
                let room = window - next.wrapping_sub(acked) as usize;
                let len = mss.min(end.wrapping_sub(next) as usize).min(room);
                next =
                    self.send_chunk(step, conn, next, len, next.wrapping_add(len as u32) == end)?;
            }
            let Some(got) = self.link.arrival_by(last_progress + TRANSFER_STALL) else {
                let done = acked.wrapping_sub(start);
                return Err(self.mismatch(
                    step,
                    format!("transfer {bytes} bytes"),
                    format!("all {bytes} bytes ACKed"),
                    format!(
                        "{done} ACKed, then nothing for {}",
                        show_duration(TRANSFER_STALL)
                    ),
                ));
            };
            let got_at = got.at;
            let ack = self.take_transfer_ack(step, conn, got, (acked, next))?;
            if wire::seq::gt(ack.0, acked) {
                acked = ack.0;
                last_progress = got_at;
                last_ack = got_at;
            }
            window = ack.1.max(1) as usize;
        }
        self.mark(
            step,
            last_ack,
            format!("the last ACK of the transfer at line {}", step.loc.line),
        );
        Ok(())
    }

    /// One data segment of a transfer; returns the next sequence number.
    fn send_chunk(
        &mut self,
        step: &Step,
        conn: &str,
        seq: u32,
        len: usize,
        last: bool,
    ) -> Result<u32, Failure> {
        let c = self.conn(conn);
        let offset = seq.wrapping_sub(c.isn.wrapping_add(1)) as usize;
        let flags = if last {
            TcpFlags::ACK | TcpFlags::PSH
        } else {
            TcpFlags::ACK
        };
        let spec = SendSpec {
            refs: Vec::new(),
            conn: conn.to_string(),
            flags,
            seq: Some(SeqSpec::Abs(seq)),
            ack: None,
            win: None,
            payload: PeerConn::pattern(offset, len),
            options: None,
            delay: Duration::ZERO,
            since: None,
            drop: false,
        };
        self.transmit(step, &spec, conn, SystemTime::now())?;
        Ok(seq.wrapping_add(len as u32))
    }

    /// A SUT segment during a transfer must be a pure ACK of this connection: returns its ack
    /// and the window it advertises.
    /// `sent` is the range of sequence numbers the SUT may acknowledge now: from what it
    /// acknowledged before (ACKs never go back) to what the peer has sent (nor beyond).
    fn take_transfer_ack(
        &mut self,
        step: &Step,
        conn: &str,
        got: Arrival,
        (acked, next): (u32, u32),
    ) -> Result<(u32, u32), Failure> {
        let c = self.conn(conn);
        let pure_ack = got.tcp.flags == TcpFlags::ACK
            && got.tcp.payload.is_empty()
            && c.owns(&got.tcp)
            && got.checksum_ok;
        if !pure_ack {
            return Err(self.unexpected(step, got, "a transfer (only ACKs may come)".into()));
        }
        let in_order = c.rcv_nxt.is_none_or(|r| r == got.tcp.seq)
            && wire::seq::ge(got.tcp.ack, acked)
            && wire::seq::le(got.tcp.ack, next);
        if !in_order {
            let text = c.describe_received(&got.tcp);
            let want = format!(
                ". seq {} with ack from {} to {}",
                c.rcv_nxt
                    .map_or(0, |r| wire::seq::rel(r, c.sut_isn.unwrap_or(0))),
                wire::seq::rel(acked, c.isn),
                wire::seq::rel(next, c.isn)
            );
            self.link.comment(
                got.frame,
                format!(
                    "UNEXPECTED during the transfer of {}: {text}",
                    self.short_place(step)
                ),
            );
            return Err(self.fail(
                step,
                "transfer: an ACK out of order".into(),
                vec![("expected:".into(), want), ("actual:".into(), text)],
            ));
        }
        let text = c.describe_received(&got.tcp);
        self.link.comment(
            got.frame,
            format!(
                "ACK taken in by the transfer of {}: {text}",
                self.short_place(step)
            ),
        );
        let c = self.conn_mut(conn);
        c.note_transmission(&got.tcp, got.at);
        c.on_received(&got.tcp);
        Ok((got.tcp.ack, c.sut_window()))
    }
}
