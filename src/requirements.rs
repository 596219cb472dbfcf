//! The requirements the suite checks: every MUST, SHOULD and MAY of the teardown RFCs, by the
//! id scenarios give in `req:` (RFC 9293's MUST-n/SHLD-n/MAY-n, a section and letter for RFCs
//! without ids), with its level. Assertions name them; `halfclose coverage` and the scorecard
//! read them.

/// How strongly a requirement binds (RFC 2119 keywords).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Must,
    Should,
    May,
    /// Event processing the RFC states without a keyword (RFC 9293 §3.10's "if … then …").
    Processing,
    /// What Linux does where no RFC decides: checked so a change shows, not a requirement.
    Linux,
    /// Not about closing: the handshake and transfer that bring a connection to the state
    /// a scenario closes from.
    Setup,
}

impl Level {
    pub fn word(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::May => "MAY",
            Level::Processing => "processing",
            Level::Linux => "Linux",
            Level::Setup => "setup",
        }
    }
}

/// One requirement of the teardown RFCs: the id assertions give in `req:`, its level, where it
/// is stated, a line in our words, why the suite cannot check it (if so), where Linux departs
/// from it, and, for a sentence that restates another requirement (RFC 9293 §3.10.7.4's
/// unlabelled MUSTs restate RFC 5961), the id it restates: the two share their scenarios and
/// the scorecard counts the restated one only.
pub struct Requirement {
    pub id: &'static str,
    pub level: Level,
    pub section: &'static str,
    pub what: &'static str,
    pub untested: Option<&'static str>,
    pub linux_departs: Option<&'static str>,
    pub same_as: Option<&'static str>,
    /// For a requirement to adopt a mechanism (RFC 5961 §3.2's SHOULD), the requirements of
    /// that mechanism: it is checked by whatever checks them, and met where they all are.
    pub met_through: &'static [&'static str],
}

const fn req(
    id: &'static str,
    level: Level,
    section: &'static str,
    what: &'static str,
) -> Requirement {
    Requirement {
        id,
        level,
        section,
        what,
        untested: None,
        linux_departs: None,
        same_as: None,
        met_through: &[],
    }
}

const fn not_tested(
    id: &'static str,
    level: Level,
    section: &'static str,
    what: &'static str,
    why: &'static str,
) -> Requirement {
    Requirement {
        untested: Some(why),
        ..req(id, level, section, what)
    }
}

impl Requirement {
    /// Where Linux departs from it, in a phrase (docs/linux-departures.md has the detail).
    const fn linux(self, departs: &'static str) -> Requirement {
        Requirement {
            linux_departs: Some(departs),
            ..self
        }
    }

    /// It is checked through these requirements.
    const fn through(self, ids: &'static [&'static str]) -> Requirement {
        Requirement {
            met_through: ids,
            ..self
        }
    }

    /// The ids whose assertions check it: its own, or the one it restates, or those it is
    /// met through.
    pub fn checked_as(&self) -> Vec<&'static str> {
        match (self.same_as, self.met_through) {
            (Some(id), _) => vec![id],
            (None, []) => vec![self.id],
            (None, ids) => std::iter::once(self.id)
                .chain(ids.iter().copied())
                .collect(),
        }
    }

    /// It restates `id`.
    const fn same_as(self, id: &'static str) -> Requirement {
        Requirement {
            same_as: Some(id),
            ..self
        }
    }
}

/// Every MUST, SHOULD and MAY of RFC 9293 §3.6 and §3.10.4–§3.10.7, RFC 5961 §3–§5 (one row
/// per keyword sentence: RFC 5961 has no ids, so a section and a letter), the keyword-less
/// event processing of RFC 9293 §3.6 and §3.10 that closing goes through (Level::Processing),
/// and the other closing requirements the suite checks.
pub const REQUIREMENTS: &[Requirement] = &[
    req("RFC 9293 MUST-12", Level::Must, "RFC 9293 §3.6",
        "the application is told whether the peer closed (FIN) or aborted (RST)")
        .linux("in CLOSE_WAIT a reset shows only as EPIPE (as after a local shutdown), not \
                ECONNRESET"),
    req("RFC 9293 §3.6 case 1", Level::Processing, "RFC 9293 §3.6",
        "local close first: FIN queued, FIN-WAIT-1, receiving still allowed, FIN retransmitted \
         until ACKed, the peer's FIN then ACKed"),
    req("RFC 9293 §3.6 case 2", Level::Processing, "RFC 9293 §3.6",
        "peer closes first: its FIN is ACKed and the user told; the user's CLOSE sends the \
         remaining data and a FIN; the connection goes when that FIN is ACKed"),
    req("RFC 9293 §3.6 case 3", Level::Processing, "RFC 9293 §3.6",
        "both close at once: FINs cross, each side ACKs the other's and both pass through \
         TIME-WAIT"),
    req("RFC 9293 MAY-1", Level::May, "RFC 9293 §3.6.1",
        "a half-duplex close: after CLOSE the application cannot read"),
    req("RFC 9293 SHLD-3", Level::Should, "RFC 9293 §3.6.1",
        "RST, not FIN, when closing with unread data or when data arrives after CLOSE"),
    req("RFC 9293 MUST-13", Level::Must, "RFC 9293 §3.6.1",
        "an active closer lingers in TIME-WAIT for 2·MSL")
        .linux("a fixed 60 s (TCP_TIMEWAIT_LEN); connect() takes the 4-tuple over early with \
                timestamps (tcp_tw_reuse = 1 after 1 s, or a port bound with SO_REUSEADDR at \
                once)"),
    req("RFC 9293 MAY-2", Level::May, "RFC 9293 §3.6.1",
        "a new SYN may reopen a connection from TIME-WAIT, if the new ISN is above the old \
         sequence space and an old-duplicate SYN returns the connection to TIME-WAIT")
        .linux("condition (2) not kept: after the peer's RST to the SYN-ACK the 4-tuple is CLOSED, \
                not back in TIME_WAIT"),
    req("RFC 9293 SHLD-4", Level::Should, "RFC 9293 §3.6.1",
        "timestamps let TIME-WAIT accept a new SYN sooner (RFC 6191)"),
    req("RFC 9293 §3.10.4 CLOSE in CLOSED", Level::Processing, "RFC 9293 §3.10.4",
        "CLOSE with no connection answers \"connection does not exist\""),
    not_tested("RFC 9293 §3.10.4 CLOSE in LISTEN", Level::Processing, "RFC 9293 §3.10.4",
        "CLOSE on a listener fails pending RECEIVEs and deletes it",
        "not written yet: no scenario checks a listener's own close (say, that a later SYN to the \
         port draws RST); abort::listener-close-unaccepted checks the queued connections, which \
         RFC 9293 has no notion of"),
    req("RFC 9293 §3.10.4 CLOSE in SYN-SENT", Level::Processing, "RFC 9293 §3.10.4",
        "CLOSE during an active open deletes the TCB; nothing is sent"),
    not_tested("RFC 9293 §3.10.4 CLOSE in SYN-RECEIVED", Level::Processing, "RFC 9293 §3.10.4",
        "CLOSE before the handshake completes sends FIN (FIN-WAIT-1) if nothing is queued, else \
         waits for ESTABLISHED",
        "not written yet: an application holds a SYN_RECV socket only through Fast Open (accept() \
         before the final ACK); the fastopen scenarios close after the handshake"),
    req("RFC 9293 §3.10.4 CLOSE in ESTABLISHED", Level::Processing, "RFC 9293 §3.10.4",
        "CLOSE queues a FIN behind all data already sent by the user and enters FIN-WAIT-1"),
    req("RFC 9293 §3.10.4 CLOSE in FIN-WAIT-1", Level::Processing, "RFC 9293 §3.10.4",
        "a second CLOSE is an error or \"ok\", but never a second FIN"),
    req("RFC 9293 §3.10.4 CLOSE in FIN-WAIT-2", Level::Processing, "RFC 9293 §3.10.4",
        "a second CLOSE is an error or \"ok\", but never a second FIN"),
    req("RFC 9293 §3.10.4 CLOSE in CLOSE-WAIT", Level::Processing, "RFC 9293 §3.10.4",
        "CLOSE after the peer's FIN sends the queued data, then a FIN, and enters LAST-ACK"),
    not_tested("RFC 9293 §3.10.4 CLOSE in CLOSING", Level::Processing, "RFC 9293 §3.10.4",
        "a second CLOSE answers \"connection closing\"",
        "not written yet: shutdown-wr-twice could add a CLOSING case (crossing FINs, then \
         shutdown(SHUT_WR) again)"),
    req("RFC 9293 §3.10.4 CLOSE in LAST-ACK", Level::Processing, "RFC 9293 §3.10.4",
        "a second CLOSE answers \"connection closing\"")
        .linux("a second shutdown(SHUT_WR) returns 0 (no second FIN)"),
    not_tested("RFC 9293 §3.10.4 CLOSE in TIME-WAIT", Level::Processing, "RFC 9293 §3.10.4",
        "a second CLOSE answers \"connection closing\"",
        "not written yet: on Linux the descriptor's socket reads CLOSE once the connection is in \
         TIME_WAIT (application::tcp-info-active-close), so shutdown() there would give ENOTCONN; \
         no scenario calls it"),
    not_tested("RFC 9293 §3.10.5 ABORT in LISTEN", Level::Processing, "RFC 9293 §3.10.5",
        "ABORT on a listener fails pending RECEIVEs with \"reset\" and deletes it; nothing is sent",
        "not written yet (close() of a listener with SO_LINGER {1, 0})"),
    not_tested("RFC 9293 §3.10.5 ABORT in SYN-SENT", Level::Processing, "RFC 9293 §3.10.5",
        "ABORT during an active open reports \"reset\" to queued calls and deletes the TCB; \
         nothing is sent",
        "not written yet (close() with SO_LINGER {1, 0} after a non-blocking connect(); \
         application::close-in-syn-sent checks the plain CLOSE)"),
    not_tested("RFC 9293 §3.10.5 ABORT in SYN-RECEIVED", Level::Processing, "RFC 9293 §3.10.5",
        "ABORT sends <SEQ=SND.NXT><CTL=RST>, flushes the queues and deletes the TCB",
        "not written yet: reachable only through Fast Open (accept() before the final ACK)"),
    req("RFC 9293 §3.10.5 ABORT in ESTABLISHED", Level::Processing, "RFC 9293 §3.10.5",
        "ABORT sends <SEQ=SND.NXT><CTL=RST>, flushes the queues and deletes the TCB"),
    not_tested("RFC 9293 §3.10.5 ABORT in FIN-WAIT-1", Level::Processing, "RFC 9293 §3.10.5",
        "ABORT sends <SEQ=SND.NXT><CTL=RST>, flushes the queues and deletes the TCB",
        "not written yet (SO_LINGER {1, 0} and close() after shutdown(SHUT_WR), FIN \
         unacknowledged)"),
    not_tested("RFC 9293 §3.10.5 ABORT in FIN-WAIT-2", Level::Processing, "RFC 9293 §3.10.5",
        "ABORT sends <SEQ=SND.NXT><CTL=RST>, flushes the queues and deletes the TCB",
        "not written yet (SO_LINGER {1, 0} and close() after shutdown(SHUT_WR) and the ACK)"),
    req("RFC 9293 §3.10.5 ABORT in CLOSE-WAIT", Level::Processing, "RFC 9293 §3.10.5",
        "ABORT sends <SEQ=SND.NXT><CTL=RST>, flushes the queues and deletes the TCB"),
    not_tested("RFC 9293 §3.10.5 ABORT in CLOSING", Level::Processing, "RFC 9293 §3.10.5",
        "ABORT answers \"ok\" and deletes the TCB without sending RST",
        "not written yet (SO_LINGER {1, 0} and close() after crossing FINs)"),
    not_tested("RFC 9293 §3.10.5 ABORT in LAST-ACK", Level::Processing, "RFC 9293 §3.10.5",
        "ABORT answers \"ok\" and deletes the TCB without sending RST",
        "not written yet (SO_LINGER {1, 0} and close() after shutdown(SHUT_WR) in CLOSE_WAIT)"),
    not_tested("RFC 9293 §3.10.5 ABORT in TIME-WAIT", Level::Processing, "RFC 9293 §3.10.5",
        "ABORT answers \"ok\" and deletes the TCB without sending RST",
        "not written yet: on Linux the descriptor no longer holds a TIME_WAIT connection \
         (application::tcp-info-active-close), so a scenario would show TIME_WAIT outliving \
         close() with SO_LINGER {1, 0}"),
    req("RFC 9293 §3.10.6 STATUS", Level::Processing, "RFC 9293 §3.10.6",
        "STATUS reports the connection's state, the closing states included")
        .linux("the application's socket reads CLOSE (TCP_INFO) while the connection is in \
                TIME_WAIT; only sock_diag sees the TIME_WAIT mini-socket"),
    req("RFC 9293 §3.10.7.3 RST in SYN-SENT", Level::Processing, "RFC 9293 §3.10.7.3",
        "an acceptable RST during an active open tells the user \"connection reset\", deletes \
         the TCB and enters CLOSED"),
    req("RFC 9293 §3.10.7.1 segment in CLOSED", Level::Processing, "RFC 9293 §3.10.7.1",
        "a segment for no connection draws RST (<SEQ=SEG.ACK> if it has ACK, else \
         <SEQ=0><ACK=SEG.SEQ+SEG.LEN>, RST|ACK); an RST is dropped"),
    not_tested("RFC 9293 §3.10.7.3 a", Level::Should, "RFC 9293 §3.10.7.3",
        "(no Appendix B id) with RFC 5961, an RST in SYN-SENT is first checked for SEG.SEQ = \
         RCV.NXT",
        "not teardown-related (connection establishment); application::nonblocking-connect-refused \
         sends an acceptable RST but does not probe the check"),
    not_tested("RFC 9293 §3.10.7.3 b", Level::May, "RFC 9293 §3.10.7.3",
        "(no Appendix B id) queued data or controls may ride on the ACK that completes an active \
         open",
        "not teardown-related (connection establishment)"),
    not_tested("RFC 9293 MUST-58", Level::Must, "RFC 9293 §3.10.7.4",
        "received segments are processed so that ACKs are aggregated where possible",
        "needs a burst of segments queued before the SUT runs; the peer cannot make the SUT's \
         kernel queue them, so how many ACKs are due is not defined from outside"),
    not_tested("RFC 9293 MUST-59", Level::Must, "RFC 9293 §3.10.7.4",
        "all queued segments are processed before any ACK is sent",
        "as MUST-58: whether segments were queued together is invisible to the peer"),
    req("RFC 9293 SHLD-31", Level::Should, "RFC 9293 §3.10.7.4",
        "segments beyond RCV.NXT are held for later (a FIN beyond a hole waits for the hole)"),
    req("RFC 9293 §3.10.7.4 a", Level::Must, "RFC 9293 §3.10.7.4",
        "(no Appendix B id; RFC 5961 §3.2 b) with RFC 5961, an RST exactly at RCV.NXT resets the \
         connection as the state prescribes")
        .linux("with tcp_rfc1337 = 1 TIME_WAIT ignores it (not the default)")
        .same_as("RFC 5961 §3.2 b"),
    req("RFC 9293 §3.10.7.4 b", Level::Must, "RFC 9293 §3.10.7.4",
        "(no Appendix B id; RFC 5961 §3.2 c) with RFC 5961, an in-window RST not at RCV.NXT draws \
         a challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT>")
        .linux("TIME_WAIT ignores it silently; the orphaned FIN_WAIT_2 is killed silently")
        .same_as("RFC 5961 §3.2 c"),
    req("RFC 9293 §3.10.7.4 c", Level::Must, "RFC 9293 §3.10.7.4",
        "(no Appendix B id; RFC 5961 §3.2 d) after the challenge ACK that RST is dropped, nothing \
         more done")
        .same_as("RFC 5961 §3.2 d"),
    req("RFC 9293 §3.10.7.4 d", Level::Must, "RFC 9293 §3.10.7.4",
        "(no Appendix B id; RFC 5961 §4.2 b) with RFC 5961, a SYN in a synchronized state draws a \
         challenge ACK, whatever its sequence number")
        .linux("the orphaned FIN_WAIT_2 answers a SYN at or past RCV.NXT with RST and dies")
        .same_as("RFC 5961 §4.2 b"),
    req("RFC 9293 §3.10.7.4 e", Level::Must, "RFC 9293 §3.10.7.4",
        "(no Appendix B id; RFC 5961 §4.2 c) after that challenge ACK the SYN is dropped, nothing \
         more done")
        .same_as("RFC 5961 §4.2 c"),
    req("RFC 9293 MAY-12", Level::May, "RFC 9293 §3.10.7.4",
        "RFC 5961 §5's ACK check against blind data injection")
        .through(&["RFC 5961 §5.2 b", "RFC 5961 §5.2 c"]),
    req("RFC 9293 §3.10.7.4 f", Level::Must, "RFC 9293 §3.10.7.4",
        "(no Appendix B id; RFC 5961 §5.2 b) with RFC 5961, an ACK is acceptable only within \
         [SND.UNA − MAX.SND.WND, SND.NXT]")
        .linux("TIME_WAIT and the orphaned FIN_WAIT_2 do not look at the ACK field")
        .same_as("RFC 5961 §5.2 b"),
    req("RFC 9293 §3.10.7.4 g", Level::Must, "RFC 9293 §3.10.7.4",
        "(no Appendix B id; RFC 5961 §5.2 c) a segment whose ACK is outside that range is \
         discarded and answered with an ACK")
        .linux("TIME_WAIT and the orphaned FIN_WAIT_2 send nothing for an ACK of unsent data")
        .same_as("RFC 5961 §5.2 c"),
    req("RFC 9293 MAY-13", Level::May, "RFC 9293 §3.10.7.4",
        "an in-window segment not at the left edge may draw an ACK of RCV.NXT"),
    req("RFC 9293 §3.10.7.4 unacceptable segment", Level::Processing, "RFC 9293 §3.10.7.4",
        "an unacceptable segment (outside the window, or wholly old) draws \
         <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and is dropped; its ACK field is not used")
        .linux("the full-socket closing states drop a segment without ACK, RST or SYN before the \
                check and send nothing; TIME_WAIT also restarts its timer"),
    req("RFC 9293 §3.10.7.4 unacceptable RST", Level::Processing, "RFC 9293 §3.10.7.4",
        "an unacceptable RST is dropped silently")
        .linux("an RST at RCV.NXT+RCV.WND draws a challenge ACK; at RCV.NXT−1 it resets CLOSING, \
                CLOSE_WAIT and LAST_ACK; the orphaned FIN_WAIT_2 ACKs an out-of-window RST")
        .through(&["RFC 5961 §3.2 e"]),
    req("RFC 9293 §3.10.7.4 RST in ESTABLISHED", Level::Processing, "RFC 9293 §3.10.7.4",
        "an acceptable RST fails pending calls with \"reset\", tells the user, flushes and closes"),
    req("RFC 9293 §3.10.7.4 RST in FIN-WAIT-1", Level::Processing, "RFC 9293 §3.10.7.4",
        "an acceptable RST fails pending calls with \"reset\", tells the user, flushes and closes"),
    req("RFC 9293 §3.10.7.4 RST in FIN-WAIT-2", Level::Processing, "RFC 9293 §3.10.7.4",
        "an acceptable RST fails pending calls with \"reset\", tells the user, flushes and closes"),
    req("RFC 9293 §3.10.7.4 RST in CLOSE-WAIT", Level::Processing, "RFC 9293 §3.10.7.4",
        "an acceptable RST fails pending calls with \"reset\", tells the user, flushes and closes")
        .linux("the error the application then sees is EPIPE, not ECONNRESET"),
    req("RFC 9293 §3.10.7.4 RST in CLOSING", Level::Processing, "RFC 9293 §3.10.7.4",
        "an acceptable RST closes the connection"),
    req("RFC 9293 §3.10.7.4 RST in LAST-ACK", Level::Processing, "RFC 9293 §3.10.7.4",
        "an acceptable RST closes the connection"),
    req("RFC 9293 §3.10.7.4 RST in TIME-WAIT", Level::Processing, "RFC 9293 §3.10.7.4",
        "an acceptable RST ends TIME-WAIT (the assassination RFC 1337 warns of)")
        .linux("with tcp_rfc1337 = 1 it is ignored (RFC 1337's advice; not the default)"),
    req("RFC 9293 §3.10.7.4 SYN without RFC 5961", Level::Processing, "RFC 9293 §3.10.7.4",
        "the RFC 793 alternative to RFC 5961 §4: an in-window SYN resets the connection (RST sent, \
         user told)")
        .linux("only the orphaned FIN_WAIT_2 takes this path; full sockets follow RFC 5961 §4"),
    req("RFC 9293 §3.10.7.4 ACK bit off", Level::Processing, "RFC 9293 §3.10.7.4",
        "an acceptable segment without the ACK bit is dropped"),
    req("RFC 9293 §3.10.7.4 ACK of unsent data", Level::Processing, "RFC 9293 §3.10.7.4",
        "SEG.ACK > SND.NXT: send an ACK, drop the segment")
        .linux("TIME_WAIT and the orphaned FIN_WAIT_2 send nothing (a bare ACK at RCV.NXT is taken \
                as a duplicate)"),
    req("RFC 9293 §3.10.7.4 duplicate ACK", Level::Processing, "RFC 9293 §3.10.7.4",
        "an old ACK (SEG.ACK ≤ SND.UNA) is ignored and the rest of the segment, a FIN say, \
         processed"),
    req("RFC 9293 §3.10.7.4 ACK in FIN-WAIT-1", Level::Processing, "RFC 9293 §3.10.7.4",
        "the ACK of our FIN moves FIN-WAIT-1 to FIN-WAIT-2"),
    req("RFC 9293 §3.10.7.4 ACK in FIN-WAIT-2", Level::Processing, "RFC 9293 §3.10.7.4",
        "with nothing left to retransmit the CLOSE is answered \"ok\", but the TCB stays until the \
         peer's FIN (no timeout)")
        .linux("an orphaned FIN_WAIT_2 (after close()) is dropped silently after tcp_fin_timeout \
                or TCP_LINGER2"),
    req("RFC 9293 §3.10.7.4 ACK in CLOSE-WAIT", Level::Processing, "RFC 9293 §3.10.7.4",
        "ACKs are processed as in ESTABLISHED"),
    req("RFC 9293 §3.10.7.4 ACK in CLOSING", Level::Processing, "RFC 9293 §3.10.7.4",
        "the ACK of our FIN moves CLOSING to TIME-WAIT; any other segment is ignored"),
    req("RFC 9293 §3.10.7.4 ACK in LAST-ACK", Level::Processing, "RFC 9293 §3.10.7.4",
        "the ACK of our FIN deletes the TCB (CLOSED)"),
    req("RFC 9293 §3.10.7.4 ACK in TIME-WAIT", Level::Processing, "RFC 9293 §3.10.7.4",
        "only a retransmitted FIN is expected: ACK it and restart the 2·MSL timeout")
        .linux("the 60 s restarts on any ACK-bearing segment TIME_WAIT answers \
                (closing-states::out-of-window, data-after-fin, ack-unsent [state=TIME_WAIT])"),
    not_tested("RFC 9293 §3.10.7.4 URG after FIN", Level::Processing, "RFC 9293 §3.10.7.4",
        "URG in CLOSE-WAIT, CLOSING, LAST-ACK or TIME-WAIT is ignored",
        "not written yet: no scenario sends URG after the peer's FIN"),
    req("RFC 9293 §3.10.7.4 text in FIN-WAIT", Level::Processing, "RFC 9293 §3.10.7.4",
        "after our FIN, the peer's data is still accepted, delivered and ACKed (FIN-WAIT-1/2)")
        .linux("after close() (an orphan) new data draws RST instead, as MAY-1/SHLD-3 allow"),
    req("RFC 9293 §3.10.7.4 text after FIN", Level::Processing, "RFC 9293 §3.10.7.4",
        "data beyond the peer's FIN (CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT) is ignored")
        .linux("TIME_WAIT ACKs such data (RCV.NXT unchanged) and restarts its timer"),
    req("RFC 9293 §3.10.7.4 FIN in ESTABLISHED", Level::Processing, "RFC 9293 §3.10.7.4",
        "a FIN is ACKed (RCV.NXT + 1), the user told \"connection closing\" after the data, and \
         ESTABLISHED becomes CLOSE-WAIT"),
    req("RFC 9293 §3.10.7.4 FIN in FIN-WAIT-1", Level::Processing, "RFC 9293 §3.10.7.4",
        "if our FIN is ACKed (perhaps by this segment) enter TIME-WAIT, start the time-wait timer \
         and stop the others; otherwise enter CLOSING"),
    req("RFC 9293 §3.10.7.4 FIN in FIN-WAIT-2", Level::Processing, "RFC 9293 §3.10.7.4",
        "enter TIME-WAIT, start the time-wait timer, stop the other timers"),
    req("RFC 9293 §3.10.7.4 FIN in CLOSE-WAIT", Level::Processing, "RFC 9293 §3.10.7.4",
        "a further FIN leaves the state CLOSE-WAIT"),
    req("RFC 9293 §3.10.7.4 FIN in CLOSING", Level::Processing, "RFC 9293 §3.10.7.4",
        "a further FIN leaves the state CLOSING"),
    req("RFC 9293 §3.10.7.4 FIN in LAST-ACK", Level::Processing, "RFC 9293 §3.10.7.4",
        "a further FIN leaves the state LAST-ACK"),
    req("RFC 9293 §3.10.7.4 FIN in TIME-WAIT", Level::Processing, "RFC 9293 §3.10.7.4",
        "a FIN in TIME-WAIT keeps it there and restarts the 2·MSL timeout")
        .linux("the restart is 60 s, not 2·MSL"),
    req("RFC 9293 SHLD-2", Level::Should, "RFC 9293 §3.5.3",
        "a received RST may carry data"),
    req("RFC 9293 MUST-20", Level::Must, "RFC 9293 §3.8.3",
        "give up after excessive retransmissions (R1/R2)")
        .linux("R2 is a time budget from the first retransmission, not a count; orphans use \
                tcp_orphan_retries (≈1.4 s with 2), far under SHLD-11's 100 s"),
    req("RFC 5961 §3.2 a", Level::Should, "RFC 5961 §3.2",
        "an RST in a synchronized state is checked by the three steps below instead of RFC 793's \
         window test")
        .linux("TIME_WAIT and the orphaned FIN_WAIT_2 (timewait mini-sockets) skip the challenge \
                step")
        .through(&["RFC 5961 §3.2 b", "RFC 5961 §3.2 c", "RFC 5961 §3.2 d", "RFC 5961 §3.2 e"]),
    req("RFC 5961 §3.2 b", Level::Must, "RFC 5961 §3.2, RFC 9293 §3.10.7.4",
        "an RST exactly at RCV.NXT resets the connection")
        .linux("with tcp_rfc1337 = 1 TIME_WAIT ignores it (not the default)"),
    req("RFC 5961 §3.2 c", Level::Must, "RFC 5961 §3.2, RFC 9293 §3.10.7.4",
        "an RST in the window but not at RCV.NXT draws a challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT>")
        .linux("TIME_WAIT ignores it silently; the orphaned FIN_WAIT_2 is killed silently"),
    req("RFC 5961 §3.2 d", Level::Must, "RFC 5961 §3.2, RFC 9293 §3.10.7.4",
        "after that challenge ACK the RST is dropped and the connection goes on"),
    req("RFC 5961 §3.2 e", Level::Must, "RFC 5961 §3.2",
        "an RST outside the window is dropped silently")
        .linux("RCV.NXT+RCV.WND counts as in the window (challenge ACK); RCV.NXT−1 resets CLOSING, \
                CLOSE_WAIT and LAST_ACK; the orphaned FIN_WAIT_2 ACKs an out-of-window RST"),
    not_tested("RFC 5961 §3.2 f", Level::Must, "RFC 5961 §3.2",
        "in SYN-SENT an RST whose ACK does not acknowledge our SYN is dropped silently",
        "not teardown-related (connection establishment); no scenario sends such an RST \
         (application::nonblocking-connect-refused sends an acceptable one)"),
    req("RFC 5961 §4.2 a", Level::Should, "RFC 5961 §4.2",
        "a SYN in a synchronized state is handled by the challenge-ACK steps below instead of RFC \
         793's")
        .linux("the orphaned FIN_WAIT_2 answers a SYN at or past RCV.NXT with RST and dies")
        .through(&["RFC 5961 §4.2 b", "RFC 5961 §4.2 c"]),
    req("RFC 5961 §4.2 b", Level::Must, "RFC 5961 §4.2, RFC 9293 §3.10.7.4",
        "a SYN in a synchronized state draws a challenge ACK, whatever its sequence number")
        .linux("the orphaned FIN_WAIT_2 answers a SYN at or past RCV.NXT with RST and dies"),
    req("RFC 5961 §4.2 c", Level::Must, "RFC 5961 §4.2, RFC 9293 §3.10.7.4",
        "after that challenge ACK the SYN is dropped and the connection goes on"),
    not_tested("RFC 5961 §4.2 d", Level::Must, "RFC 5961 §4.2",
        "a valid RST answering the challenge ACK (a restarted peer) terminates the connection",
        "not written yet: closing-states::syn could answer its challenge ACK with the RST a \
         restarted peer sends (seq = the ACK's ack) and see the connection go"),
    req("RFC 5961 §5.2 a", Level::May, "RFC 5961 §5.2",
        "a stack may add the ACK-range check against blind data injection")
        .through(&["RFC 5961 §5.2 b", "RFC 5961 §5.2 c"]),
    req("RFC 5961 §5.2 b", Level::Must, "RFC 5961 §5.2, RFC 9293 §3.10.7.4",
        "with the check, an ACK is acceptable only within [SND.UNA − MAX.SND.WND, SND.NXT]")
        .linux("TIME_WAIT and the orphaned FIN_WAIT_2 do not look at the ACK field"),
    req("RFC 5961 §5.2 c", Level::Must, "RFC 5961 §5.2, RFC 9293 §3.10.7.4",
        "a segment whose ACK is outside that range is discarded and answered with an ACK")
        .linux("TIME_WAIT and the orphaned FIN_WAIT_2 send nothing for an ACK of unsent data"),
    not_tested("RFC 5961 §7", Level::Should, "RFC 5961 §7",
        "challenge ACKs are rate-limited",
        "not yet: it needs a burst of challenge-provoking segments counted over time (Linux limits \
         per socket and by net.ipv4.tcp_challenge_ack_limit); no scenario sends one"),
    req("RFC 1337", Level::Should, "RFC 1337 §3",
        "TIME-WAIT assassination by RST")
        .linux("RSTs in TIME_WAIT are ignored only with tcp_rfc1337 = 1; the default 0 follows RFC \
                9293"),
    req("RFC 2525 §2.17", Level::Should, "RFC 2525 §2.17",
        "failure to send RST after close with data pending"),
    req("RFC 6191", Level::Should, "RFC 6191 §2",
        "reusing a TIME-WAIT 4-tuple with timestamps")
        .same_as("RFC 9293 SHLD-4"),
    req(SETUP, Level::Setup, "RFC 9293 §3.5",
        "the handshake and transfer that bring the connection to the state the scenario closes from"),
    req(LINUX, Level::Linux, "(none)",
        "Linux's choice where no RFC decides: segmentation, PSH, option lists, errno order"),
];

/// The requirement with this id (spacing and case aside), if the registry has it.
pub fn find(id: &str) -> Option<&'static Requirement> {
    let want = normalize(id);
    REQUIREMENTS.iter().find(|r| normalize(r.id) == want)
}

/// Registry ids close to a wrong one, for the error message: those sharing its RFC and the
/// first characters of the rest.
pub fn near(id: &str) -> Vec<&'static str> {
    let want = normalize(id);
    let rfc: String = want
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let mut out: Vec<&'static str> = REQUIREMENTS
        .iter()
        .filter(|r| normalize(r.id).starts_with(&rfc))
        .map(|r| r.id)
        .collect();
    out.truncate(12);
    out
}

pub(crate) fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// The id of the requirement the implicit handshake steps check.
pub const SETUP: &str = "setup";
/// The id of the Linux-practice pseudo-requirement.
pub const LINUX: &str = "linux";
