//! `halfclose coverage`: which scenarios check each teardown requirement, generated from the
//! scenarios' `refs`. docs/coverage.md is this output; a test keeps the two in step.

use std::collections::BTreeSet;

use crate::script::Scenario;

/// How strongly a requirement binds (RFC 2119 keywords).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Must,
    Should,
    May,
}

impl Level {
    pub fn word(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::May => "MAY",
        }
    }
}

/// One requirement of the teardown RFCs: how scenarios cite it (`id`, matched by prefix at a
/// section boundary, so `RFC 5961 §3.2` cites `RFC 5961 §3`), its level, where it is stated,
/// a line in our words, and, where the suite cannot check it, why.
pub struct Requirement {
    pub id: &'static str,
    pub level: Level,
    pub section: &'static str,
    pub what: &'static str,
    pub untested: Option<&'static str>,
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
        id,
        level,
        section,
        what,
        untested: Some(why),
    }
}

/// Every MUST, SHOULD and MAY of RFC 9293 §3.6 and §3.10.4–§3.10.7 (the closing sections and
/// the event processing that closes; §3.10.4–§3.10.6 state their processing without keywords,
/// so their rows are the §3.10.7 checks they lead to), RFC 5961 §3–§5, and the other closing
/// requirements the suite checks.
pub const REQUIREMENTS: &[Requirement] = &[
    req("RFC 9293 MUST-12", Level::Must, "RFC 9293 §3.6",
        "the application is told whether the peer closed (FIN) or aborted (RST)"),
    req("RFC 9293 MAY-1", Level::May, "RFC 9293 §3.6.1",
        "a half-duplex close: after CLOSE the application cannot read"),
    req("RFC 9293 SHLD-3", Level::Should, "RFC 9293 §3.6.1",
        "RST, not FIN, when closing with unread data or when data arrives after CLOSE"),
    req("RFC 9293 MUST-13", Level::Must, "RFC 9293 §3.6.1",
        "an active closer lingers in TIME-WAIT for 2·MSL"),
    req("RFC 9293 MAY-2", Level::May, "RFC 9293 §3.6.1",
        "a new SYN may reopen a connection from TIME-WAIT"),
    req("RFC 9293 SHLD-4", Level::Should, "RFC 9293 §3.6.1",
        "timestamps shorten TIME-WAIT reuse (RFC 6191)"),
    not_tested("RFC 9293 MUST-58", Level::Must, "RFC 9293 §3.10.7.4",
        "received segments are processed so that ACKs are aggregated where possible",
        "needs a burst of segments queued before the SUT runs; the peer cannot make the SUT's \
         kernel queue them, so how many ACKs are due is not defined from outside"),
    not_tested("RFC 9293 MUST-59", Level::Must, "RFC 9293 §3.10.7.4",
        "all queued segments are processed before any ACK is sent",
        "as MUST-58: whether segments were queued together is invisible to the peer"),
    req("RFC 9293 SHLD-31", Level::Should, "RFC 9293 §3.10.7.4",
        "segments beyond RCV.NXT are held for later (a FIN beyond a hole waits for the hole)"),
    req("RFC 9293 MAY-12", Level::May, "RFC 9293 §3.10.7.4",
        "RFC 5961 §5's ACK check against blind data injection"),
    req("RFC 9293 MAY-13", Level::May, "RFC 9293 §3.10.7.4",
        "an in-window segment not at the left edge may draw an ACK of RCV.NXT"),
    req("RFC 9293 SHLD-2", Level::Should, "RFC 9293 §3.5.3", "a received RST may carry data"),
    req("RFC 9293 MUST-20", Level::Must, "RFC 9293 §3.8.3",
        "give up after excessive retransmissions (R1/R2)"),
    req("RFC 5961 §3", Level::Must, "RFC 5961 §3.2, RFC 9293 §3.10.7.4",
        "RST: at RCV.NXT resets; in window but not at RCV.NXT draws a challenge ACK and is dropped; \
         outside the window is dropped silently"),
    req("RFC 5961 §4", Level::Must, "RFC 5961 §4.2, RFC 9293 §3.10.7.4",
        "SYN on a synchronized connection draws a challenge ACK, whatever its sequence number, and is dropped"),
    req("RFC 5961 §5", Level::Must, "RFC 5961 §5.2, RFC 9293 §3.10.7.4",
        "an ACK outside [SND.UNA − MAX.SND.WND, SND.NXT] is discarded and draws an ACK"),
    not_tested("RFC 5961 §7", Level::Should, "RFC 5961 §7",
        "challenge ACKs are rate-limited",
        "not yet: it needs a burst of challenge-provoking segments counted over time (Linux \
         limits per socket and by net.ipv4.tcp_challenge_ack_limit); no scenario sends one"),
    req("RFC 1337", Level::Should, "RFC 1337 §3", "TIME-WAIT assassination by RST"),
    req("RFC 2525 §2.17", Level::Should, "RFC 2525 §2.17",
        "failure to send RST after close with data pending"),
    req("RFC 6191", Level::Should, "RFC 6191 §2", "reusing a TIME-WAIT 4-tuple with timestamps"),
];

fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// Whether a scenario's reference cites a requirement (`RFC 5961 §3.2` cites `RFC 5961 §3`).
fn cites(reference: &str, requirement: &str) -> bool {
    let (r, q) = (normalize(reference), normalize(requirement));
    r == q
        || r.strip_prefix(&q)
            .is_some_and(|rest| rest.starts_with(['.', ' ', ',', ';', ':']))
}

/// `group::name` of every scenario citing a requirement (matrix combinations counted once).
pub fn covering(scenarios: &[Scenario], requirement: &str) -> BTreeSet<String> {
    scenarios
        .iter()
        .filter(|sc| sc.refs.iter().any(|r| cites(r, requirement)))
        .map(|sc| {
            format!(
                "{}::{}",
                sc.group,
                sc.name.split('[').next().unwrap_or(&sc.name)
            )
        })
        .collect()
}

/// The Markdown table: requirement, level, what it says, the scenarios that check it (or why
/// none can).
pub fn markdown(scenarios: &[Scenario]) -> String {
    let mut out = String::from(
        "# Requirement coverage\n\nGenerated by `halfclose coverage` from the `refs` of the scenarios in `suites/`; \
         do not edit by hand.\n\n| requirement | level | stated in | what it asks | scenarios |\n|---|---|---|---|---|\n",
    );
    let mut covered = 0;
    for r in REQUIREMENTS {
        let names = covering(scenarios, r.id);
        let cell = match (names.is_empty(), r.untested) {
            (false, _) => {
                covered += 1;
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            (true, Some(why)) => format!("not tested: {why}"),
            (true, None) => "**not covered**".to_string(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {cell} |\n",
            r.id,
            r.level.word(),
            r.section,
            r.what
        ));
    }
    out.push_str(&format!(
        "\n{covered} of {} requirements covered; {} not tested (the reason is given).\n",
        REQUIREMENTS.len(),
        REQUIREMENTS.iter().filter(|r| r.untested.is_some()).count()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::cites;

    #[test]
    fn references_match_requirements_and_their_subsections() {
        assert!(cites("RFC 9293 MUST-13", "RFC 9293 MUST-13"));
        assert!(cites("rfc 5961  §3.2", "RFC 5961 §3"));
        assert!(!cites("RFC 5961 §4", "RFC 5961 §3"));
        assert!(!cites("RFC 9293 MUST-130", "RFC 9293 MUST-13"));
        assert!(!cites("RFC 9293 §3.6", "RFC 9293 MUST-13"));
    }
}
