//! What smoltcp knows about a TCP connection and does not export: the sequence numbers and
//! the options the handshake settled. Its derived `Debug` prints them (socket/tcp.rs,
//! `struct Socket`); this reads them from that text. Formatting a socket prints its buffers
//! too, so this is for the rare calls that need it (TCP_INFO, SIOCOUTQNSD), not for every
//! look.

use smoltcp::socket::tcp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inner {
    /// SND.UNA (smoltcp's `local_seq_no`).
    pub snd_una: u32,
    /// The highest sequence number sent (`remote_last_seq`: SND.NXT as sent so far).
    pub snd_nxt: u32,
    /// The peer's MSS option (`remote_mss`).
    pub remote_mss: u32,
    /// The peer's window scale, when window scaling was negotiated (`remote_win_scale`).
    pub snd_wscale: Option<u8>,
    /// smoltcp's own window scale (`remote_win_shift`).
    pub rcv_wscale: u8,
    /// SACK was permitted both ways (`remote_has_sack`: smoltcp's SYN-ACK echoes it).
    pub sack: bool,
}

/// The value text of `name` in a Debug text: up to the next `, ` outside brackets.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(", {name}: ");
    let start = text.find(&key)? + key.len();
    let rest = &text[start..];
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' if depth == 0 => return Some(&rest[..i]),
            ')' | '}' | ']' => depth -= 1,
            ',' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    Some(rest)
}

/// The first integer in a text (`SeqNumber(-12)`, `Some(7)`, `1460`).
fn number(text: &str) -> Option<i64> {
    let start = text.find(|c: char| c.is_ascii_digit() || c == '-')?;
    let digits: String = text[start..]
        .chars()
        .enumerate()
        .take_while(|&(i, c)| c.is_ascii_digit() || (i == 0 && c == '-'))
        .map(|(_, c)| c)
        .collect();
    digits.parse().ok()
}

pub fn parse(text: &str) -> Option<Inner> {
    // Past the buffers: their bytes are numbers, never field names, but start there anyway.
    let text = &text[text.find(", tx_buffer: ")?..];
    let seq = |name| number(field(text, name)?).map(|n| n as i32 as u32);
    Some(Inner {
        snd_una: seq("local_seq_no")?,
        snd_nxt: seq("remote_last_seq")?,
        remote_mss: number(field(text, "remote_mss")?)? as u32,
        snd_wscale: match field(text, "remote_win_scale")? {
            "None" => None,
            some => Some(number(some)? as u8),
        },
        rcv_wscale: number(field(text, "remote_win_shift")?)? as u8,
        sack: field(text, "remote_has_sack")? == "true",
    })
}

/// The socket's inner state, or None if smoltcp's Debug no longer prints it as expected.
pub fn read(socket: &tcp::Socket) -> Option<Inner> {
    parse(&format!("{socket:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_socket() {
        let rx = tcp::SocketBuffer::new(vec![0; 16]);
        let tx = tcp::SocketBuffer::new(vec![0; 16]);
        let s = tcp::Socket::new(rx, tx);
        let inner = read(&s).expect("smoltcp's Debug layout");
        assert_eq!(
            (inner.snd_una, inner.snd_nxt, inner.snd_wscale),
            (0, 0, None)
        );
        assert!(inner.remote_mss > 0, "{inner:?}");
    }

    #[test]
    fn parses_the_fields() {
        let text = "Socket { state: Established, tx_buffer: RingBuffer { storage: Owned([1, 2]), read_at: 0, length: 0 }, timeout: None, local_seq_no: SeqNumber(-2), remote_seq_no: SeqNumber(5), remote_last_seq: SeqNumber(100), remote_last_ack: Some(SeqNumber(5)), remote_last_win: 10, remote_win_shift: 7, remote_win_len: 5, remote_win_scale: Some(7), remote_has_sack: true, remote_mss: 1460, remote_last_ts: None }";
        assert_eq!(
            parse(text),
            Some(Inner {
                snd_una: u32::MAX - 1,
                snd_nxt: 100,
                remote_mss: 1460,
                snd_wscale: Some(7),
                rcv_wscale: 7,
                sack: true,
            })
        );
        assert_eq!(parse("Socket { state: Closed }"), None);
    }
}
