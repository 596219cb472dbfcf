//! A connection's pending timer, as smoltcp itself holds it.
//!
//! smoltcp 0.14 keeps one timer per TCP socket (`Timer` in socket/tcp.rs: `Idle` with the
//! keep-alive deadline, `Retransmit`, `FastRetransmit`, `ZeroWindowProbe`, `Close` for
//! TIME-WAIT) and exposes neither it nor the socket's `poll_at()`. Its derived `Debug` prints
//! it, as the socket's second field (`Socket { state: …, timer: …, rtte: …`); this module reads
//! that text and stops the formatting right after it, so the socket's buffers are never
//! printed. What it reports is therefore smoltcp's own timer, named as the protocol names
//! Linux's (`timewait`, `retransmit`, `probe`, `keepalive`), never an estimate.

use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use std::fmt::Write;

/// How much of the Debug text to keep: the state and the timer fit in far less.
const HEAD: usize = 400;

/// Collects the start of a Debug text, then fails the formatting to stop it.
struct Head(String);

impl Write for Head {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = HEAD.saturating_sub(self.0.len());
        if room == 0 {
            return Err(std::fmt::Error);
        }
        let mut end = s.len().min(room);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.0.push_str(&s[..end]);
        if self.0.contains(", rtte: ") {
            return Err(std::fmt::Error); // past the timer: enough
        }
        Ok(())
    }
}

/// The socket's `timer` field as smoltcp's Debug prints it (`Close { expires_at: … }`).
pub fn debug_text(socket: &tcp::Socket) -> Option<String> {
    let mut head = Head(String::new());
    let _ = write!(head, "{socket:?}");
    timer_field(&head.0).map(str::to_string)
}

fn timer_field(text: &str) -> Option<&str> {
    let start = text.find(", timer: ")? + ", timer: ".len();
    let rest = &text[start..];
    let end = rest.find(", rtte: ")?;
    Some(&rest[..end])
}

/// The pending timer: its name in a `state` reply and when it expires, or None when the
/// socket has none running (an idle connection without keep-alive).
pub fn pending(socket: &tcp::Socket) -> Option<(&'static str, Instant)> {
    parse(&debug_text(socket)?)
}

/// Reads smoltcp's `Timer` Debug text.
pub fn parse(text: &str) -> Option<(&'static str, Instant)> {
    let variant = text.split([' ', '{']).next()?;
    let micros = || -> Option<Instant> {
        let at = text.find("micros: ")? + "micros: ".len();
        let digits: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        digits.parse::<i64>().ok().map(Instant::from_micros)
    };
    match variant {
        // Armed on entering TIME-WAIT, restarted by segments that arrive in it.
        "Close" => Some(("timewait", micros()?)),
        "Retransmit" => Some(("retransmit", micros()?)),
        // Due now: the next poll retransmits.
        "FastRetransmit" => Some(("retransmit", Instant::from_micros(0))),
        "ZeroWindowProbe" => Some(("probe", micros()?)),
        // `Idle { keep_alive_at: Some(Instant { … }) }`, or `None` without keep-alive.
        "Idle" if text.contains("Some(") => Some(("keepalive", micros()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket() -> tcp::Socket<'static> {
        let rx = tcp::SocketBuffer::new(vec![0; 64]);
        let tx = tcp::SocketBuffer::new(vec![0; 64]);
        tcp::Socket::new(rx, tx)
    }

    #[test]
    fn reads_the_timer_field_of_a_real_socket() {
        // A fresh socket's timer is Idle without keep-alive: no timer to report. The field
        // must be found at all, or smoltcp's Debug layout changed under us.
        let s = socket();
        let text = debug_text(&s).expect("smoltcp's Debug prints `timer`");
        assert!(text.starts_with("Idle"), "{text}");
        assert_eq!(pending(&s), None);
    }

    #[test]
    fn names_each_variant() {
        let at = |m| Instant::from_micros(m);
        assert_eq!(
            parse("Close { expires_at: Instant { micros: 10000123 } }"),
            Some(("timewait", at(10_000_123)))
        );
        assert_eq!(
            parse("Retransmit { expires_at: Instant { micros: 5 } }"),
            Some(("retransmit", at(5)))
        );
        assert_eq!(parse("FastRetransmit"), Some(("retransmit", at(0))));
        assert_eq!(
            parse("ZeroWindowProbe { expires_at: Instant { micros: 7 }, delay: Duration { micros: 1000000 } }"),
            Some(("probe", at(7)))
        );
        assert_eq!(
            parse("Idle { keep_alive_at: Some(Instant { micros: 9 }) }"),
            Some(("keepalive", at(9)))
        );
        assert_eq!(parse("Idle { keep_alive_at: None }"), None);
        assert_eq!(parse("Mystery"), None);
        assert_eq!(
            timer_field("Socket { state: Closed, timer: FastRetransmit, rtte: R {} }"),
            Some("FastRetransmit")
        );
    }
}
