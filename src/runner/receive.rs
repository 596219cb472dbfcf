//! The `receive` step: the peer takes in bulk data from the SUT as a receiver would. It ACKs
//! every in-order segment at once, offers a window whose right edge it controls (fixed, or
//! closing to zero at `zero_at` as a full buffer would, then reopened `reopen_after` later),
//! answers zero-window probes, and checks every byte against what the SUT application
//! wrote. A FIN or RST that comes meanwhile is left for the next `expect`.

use std::time::{Duration, SystemTime};

use super::{Failure, Run};
use crate::peer::Arrival;
use crate::script::values::show_duration;
use crate::script::{ReceiveSpec, SendSpec, SeqSpec, Step};
use crate::wire::{self, TcpFlags};

/// A receive that gets no new byte for this long has stalled (as `transfer`).
const RECEIVE_STALL: Duration = Duration::from_secs(3);

/// The receiver's bookkeeping, in absolute sequence numbers.
struct Receiver {
    /// The first byte of the application's stream (SUT ISN + 1).
    base: u32,
    /// The first byte of this step, and the byte after its last.
    start: u32,
    end: u32,
    rcv_nxt: u32,
    /// Each larger right edge offered, with when the ACK offering it left (its kernel
    /// transmit timestamp): a segment may reach the largest edge offered before it arrived,
    /// never beyond, even once the window shrinks by filling. One judged against an edge
    /// offered only after it arrived would pass although the SUT overran the window it had.
    offered: Vec<(SystemTime, u32)>,
    /// Where the window closes (`zero_at`), until it reopens.
    zero_edge: Option<u32>,
    /// When the window was closed, once it is.
    closed_at: Option<SystemTime>,
    window: u32,
    shift: u8,
    last_progress: SystemTime,
}

impl Receiver {
    /// The right edge to offer now: the window beyond RCV.NXT, stopping at the closing edge.
    fn offer(&self) -> u32 {
        let open = self.rcv_nxt.wrapping_add(self.window);
        match self.zero_edge {
            Some(z) if wire::seq::lt(z, open) => z,
            _ => open,
        }
    }

    /// The largest edge offered by an ACK that left before `at` (None: none had).
    fn edge_before(&self, at: SystemTime) -> Option<u32> {
        let n = self.offered.partition_point(|(sent, _)| *sent <= at);
        n.checked_sub(1).map(|i| self.offered[i].1)
    }

    /// The raw window field for an ACK of RCV.NXT offering `edge` (rounded down to the
    /// scale), and the edge it really offers.
    fn field(&self, edge: u32) -> (u16, u32) {
        let bytes = edge.wrapping_sub(self.rcv_nxt);
        let raw = (bytes >> self.shift).min(u32::from(u16::MAX));
        (raw as u16, self.rcv_nxt.wrapping_add(raw << self.shift))
    }
}

impl Run<'_> {
    pub(super) fn receive(&mut self, step: &Step, spec: &ReceiveSpec) -> Result<(), Failure> {
        let what = format!("receive {} bytes", spec.bytes);
        let c = self.conn(&spec.conn);
        let (Some(isn), Some(rcv_nxt)) = (c.sut_isn, c.rcv_nxt) else {
            return Err(self.fail(
                step,
                what,
                vec![(
                    "error:".into(),
                    "the connection has no handshake yet: nothing to receive".into(),
                )],
            ));
        };
        let shift = c.peer_window_shift();
        let window = spec.window.unwrap_or(u32::from(c.cfg.win) << shift);
        let mut r = Receiver {
            base: isn.wrapping_add(1),
            start: rcv_nxt,
            end: rcv_nxt.wrapping_add(spec.bytes as u32),
            rcv_nxt,
            offered: Vec::new(),
            zero_edge: spec.zero_at.map(|z| rcv_nxt.wrapping_add(z as u32)),
            closed_at: None,
            window,
            shift,
            last_progress: SystemTime::now(),
        };
        let mut last_at = self.clock;
        while wire::seq::lt(r.rcv_nxt, r.end) {
            let reopen = r.closed_at.map(|t| t + spec.reopen_after);
            let until = match reopen {
                Some(t) => t.min(r.last_progress + RECEIVE_STALL),
                None => r.last_progress + RECEIVE_STALL,
            };
            let Some(got) = self.link.arrival_by(until) else {
                if let Some(t) = reopen.filter(|t| *t <= SystemTime::now()) {
                    // The application has read: a window update reopens the window.
                    r.zero_edge = None;
                    r.closed_at = None;
                    r.last_progress = t;
                    self.receive_ack(step, spec, &mut r)?;
                    continue;
                }
                let done = r.rcv_nxt.wrapping_sub(r.start);
                return Err(self.mismatch(
                    step,
                    what,
                    format!("all {} bytes", spec.bytes),
                    format!(
                        "{done} received, then nothing for {}",
                        show_duration(RECEIVE_STALL)
                    ),
                ));
            };
            last_at = got.at;
            if self.receive_segment(step, spec, &mut r, got)? {
                break;
            }
        }
        self.mark(
            step,
            last_at,
            format!("the last segment of the receive at line {}", step.loc.line),
        );
        Ok(())
    }

    /// Takes one SUT segment; true: the receive is over (a FIN or RST left for the next step
    /// completes it).
    fn receive_segment(
        &mut self,
        step: &Step,
        spec: &ReceiveSpec,
        r: &mut Receiver,
        got: Arrival,
    ) -> Result<bool, Failure> {
        let what = format!("receive {} bytes", spec.bytes);
        let tcp = &got.tcp;
        let c = self.conn(&spec.conn);
        if !c.owns(tcp)
            || !got.checksum_ok
            || tcp.flags.contains(TcpFlags::SYN)
            || !tcp.flags.contains(TcpFlags::ACK)
        {
            return Err(self.unexpected(step, got, "a receive".into()));
        }
        let len = tcp.payload.len() as u32;
        let seg_end = tcp.seq.wrapping_add(len);
        if tcp.flags.intersects(TcpFlags::FIN | TcpFlags::RST) {
            // Left for the next `expect`; it must bring the last bytes, or come after them.
            let complete = if tcp.flags.contains(TcpFlags::RST) || len == 0 {
                r.rcv_nxt == r.end
            } else {
                tcp.seq == r.rcv_nxt && seg_end == r.end
            };
            if !complete {
                let got_bytes = r.rcv_nxt.wrapping_sub(r.start);
                let text = c.describe_received(tcp);
                return Err(self.mismatch(
                    step,
                    what,
                    format!("all {} bytes before a FIN or RST", spec.bytes),
                    format!("{text} after {got_bytes} bytes"),
                ));
            }
            if len > 0 {
                self.check_received_bytes(step, spec, r, tcp.seq, &tcp.payload)?;
            }
            self.link.comment(
                got.frame,
                format!(
                    "left by the receive of {} for the next step",
                    self.short_place(step)
                ),
            );
            self.link.put_back(got);
            return Ok(true);
        }
        if len == 0 {
            // A zero-window probe (Linux sends SND.UNA - 1, no data) is answered like any;
            // a bare ACK otherwise needs no answer.
            let place = self.short_place(step);
            let text = c.describe_received(tcp);
            self.link.comment(
                got.frame,
                format!("taken in by the receive of {place}: {text}"),
            );
            if r.closed_at.is_some() {
                self.receive_ack(step, spec, r)?;
            }
            return Ok(false);
        }
        if let Some(edge) = r.edge_before(got.at).filter(|e| wire::seq::gt(seg_end, *e)) {
            let text = c.describe_received(tcp);
            let beyond = seg_end.wrapping_sub(edge);
            self.link.comment(
                got.frame,
                format!(
                    "UNEXPECTED: beyond the window the peer offered, in {}",
                    self.short_place(step)
                ),
            );
            return Err(self.mismatch(
                step,
                what,
                format!(
                    "data up to the right edge the peer offered ({})",
                    wire::seq::rel(edge, r.base.wrapping_sub(1))
                ),
                format!("{text}: {beyond} bytes beyond it"),
            ));
        }
        self.check_received_bytes(step, spec, r, tcp.seq, &tcp.payload)?;
        let place = self.short_place(step);
        let text = c.describe_received(tcp);
        self.link.comment(
            got.frame,
            format!("data taken in by the receive of {place}: {text}"),
        );
        let c = self.conn_mut(&spec.conn);
        c.note_transmission(tcp, got.at);
        let in_order = wire::seq::le(tcp.seq, r.rcv_nxt) && wire::seq::gt(seg_end, r.rcv_nxt);
        if in_order {
            c.on_received(tcp);
            r.rcv_nxt = seg_end;
            r.last_progress = got.at;
        }
        let closes = self.receive_ack(step, spec, r)?;
        if closes && r.closed_at.is_none() {
            r.closed_at = Some(got.at);
        }
        Ok(false)
    }

    /// The bytes at `seq` must be those the application wrote there.
    fn check_received_bytes(
        &self,
        step: &Step,
        spec: &ReceiveSpec,
        r: &Receiver,
        seq: u32,
        payload: &[u8],
    ) -> Result<(), Failure> {
        let what = format!("receive {} bytes", spec.bytes);
        let offset = seq.wrapping_sub(r.base) as usize;
        let written = self.written.get(&spec.conn).map_or(&[][..], Vec::as_slice);
        let Some(want) = written.get(offset..offset + payload.len()) else {
            return Err(self.mismatch(
                step,
                what,
                format!("at most the {} bytes the application wrote", written.len()),
                format!("bytes {offset}..{} of the stream", offset + payload.len()),
            ));
        };
        match want.iter().zip(payload).position(|(a, b)| a != b) {
            None => Ok(()),
            Some(i) => Err(self.mismatch(
                step,
                what,
                format!("byte {} of the stream = {:?}", offset + i, want[i] as char),
                format!("{:?}", payload[i] as char),
            )),
        }
    }

    /// An ACK of RCV.NXT offering the receiver's current right edge; true when it offers a
    /// zero window at the closing edge (the window is closed from now on: the data reached
    /// the edge as far as the window scale can tell it).
    fn receive_ack(
        &mut self,
        step: &Step,
        spec: &ReceiveSpec,
        r: &mut Receiver,
    ) -> Result<bool, Failure> {
        let (raw, edge) = r.field(r.offer());
        let ack = SendSpec {
            refs: Vec::new(),
            conn: spec.conn.clone(),
            flags: TcpFlags::ACK,
            seq: None,
            ack: Some(SeqSpec::Abs(r.rcv_nxt)),
            win: Some(raw),
            payload: Vec::new(),
            options: None,
            delay: Duration::ZERO,
            since: None,
            drop: false,
        };
        let sent = self.transmit(step, &ack, &spec.conn, SystemTime::now())?;
        if r.offered
            .last()
            .is_none_or(|(_, e)| wire::seq::gt(edge, *e))
        {
            r.offered.push((sent, edge));
        }
        Ok(raw == 0 && r.zero_edge.is_some())
    }
}
