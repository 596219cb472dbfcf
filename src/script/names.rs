//! The named constants of the call language: poll and epoll events, message and file flags,
//! and the fields of `struct tcp_info`, each with its Linux value. Scripts write them as
//! packetdrill and C do (`POLLIN|POLLRDHUP`, `MSG_PEEK`, `O_NONBLOCK`, `tcpi_state`), and
//! results are shown with the same names.

/// poll(2) events; epoll's have the same values (`EPOLLIN` = `POLLIN`, …).
pub const POLL_EVENTS: &[(&str, u32)] = &[
    ("POLLIN", libc::POLLIN as u32),
    ("POLLPRI", libc::POLLPRI as u32),
    ("POLLOUT", libc::POLLOUT as u32),
    ("POLLERR", libc::POLLERR as u32),
    ("POLLHUP", libc::POLLHUP as u32),
    ("POLLNVAL", libc::POLLNVAL as u32),
    ("POLLRDNORM", libc::POLLRDNORM as u32),
    ("POLLWRNORM", libc::POLLWRNORM as u32),
    ("POLLRDHUP", 0x2000),
];

/// epoll(7) events, including the flags that only epoll_ctl takes.
pub const EPOLL_EVENTS: &[(&str, u32)] = &[
    ("EPOLLIN", libc::EPOLLIN as u32),
    ("EPOLLPRI", libc::EPOLLPRI as u32),
    ("EPOLLOUT", libc::EPOLLOUT as u32),
    ("EPOLLERR", libc::EPOLLERR as u32),
    ("EPOLLHUP", libc::EPOLLHUP as u32),
    ("EPOLLRDNORM", libc::EPOLLRDNORM as u32),
    ("EPOLLWRNORM", libc::EPOLLWRNORM as u32),
    ("EPOLLRDHUP", libc::EPOLLRDHUP as u32),
    ("EPOLLET", libc::EPOLLET as u32),
    ("EPOLLONESHOT", libc::EPOLLONESHOT as u32),
];

/// The flags of send(2) and recv(2) that scripts use.
pub const MSG_FLAGS: &[(&str, u32)] = &[
    ("MSG_PEEK", libc::MSG_PEEK as u32),
    ("MSG_DONTWAIT", libc::MSG_DONTWAIT as u32),
    ("MSG_NOSIGNAL", libc::MSG_NOSIGNAL as u32),
    ("MSG_WAITALL", libc::MSG_WAITALL as u32),
    ("MSG_MORE", libc::MSG_MORE as u32),
    ("MSG_OOB", libc::MSG_OOB as u32),
    ("MSG_TRUNC", libc::MSG_TRUNC as u32),
    ("MSG_FASTOPEN", libc::MSG_FASTOPEN as u32),
];

/// File status flags, as fcntl(F_GETFL) returns them for a socket.
pub const FILE_FLAGS: &[(&str, u32)] = &[
    ("O_RDWR", libc::O_RDWR as u32),
    ("O_NONBLOCK", libc::O_NONBLOCK as u32),
];

/// `tcpi_options` bits (linux/tcp.h).
pub const TCPI_OPTIONS: &[(&str, u32)] = &[
    ("TCPI_OPT_TIMESTAMPS", 1),
    ("TCPI_OPT_SACK", 2),
    ("TCPI_OPT_WSCALE", 4),
    ("TCPI_OPT_ECN", 8),
    ("TCPI_OPT_ECN_SEEN", 16),
    ("TCPI_OPT_SYN_DATA", 32),
    ("TCPI_OPT_USEC_TS", 64),
    ("TCPI_OPT_TFO_CHILD", 128),
];

/// The value of `A|B|C` from a table; the error names the unknown part.
pub fn mask_of(table: &[(&str, u32)], names: &[String]) -> Result<u32, String> {
    names.iter().try_fold(0, |acc, n| {
        table
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| acc | v)
            .ok_or_else(|| {
                let known: Vec<&str> = table.iter().map(|(k, _)| *k).collect();
                format!("unknown flag `{n}`; expected one of {}", known.join(", "))
            })
    })
}

/// `A|B`, or `0`; bits no name covers are shown in hex.
pub fn show_mask(table: &[(&str, u32)], mask: u32) -> String {
    let mut rest = mask;
    let mut parts: Vec<String> = Vec::new();
    for (k, v) in table {
        // Aliases (POLLRDNORM is POLLIN's twin in results) only name bits still unnamed.
        if rest & v == *v && *v != 0 {
            parts.push((*k).to_string());
            rest &= !v;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join("|")
    }
}

/// A `struct tcp_info` field: its name without the `tcpi_` prefix, byte offset and size (in
/// bytes; 0 marks the two 4-bit window-scale fields, which share byte 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpiField {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
}

const fn f(name: &'static str, offset: usize, size: usize) -> TcpiField {
    TcpiField { name, offset, size }
}

/// The fields of `struct tcp_info` as linux/tcp.h lays them out (Linux 6.18).
pub const TCPI_FIELDS: &[TcpiField] = &[
    f("state", 0, 1),
    f("ca_state", 1, 1),
    f("retransmits", 2, 1),
    f("probes", 3, 1),
    f("backoff", 4, 1),
    f("options", 5, 1),
    f("snd_wscale", 6, 0),
    f("rcv_wscale", 6, 0),
    f("rto", 8, 4),
    f("ato", 12, 4),
    f("snd_mss", 16, 4),
    f("rcv_mss", 20, 4),
    f("unacked", 24, 4),
    f("sacked", 28, 4),
    f("lost", 32, 4),
    f("retrans", 36, 4),
    f("fackets", 40, 4),
    f("last_data_sent", 44, 4),
    f("last_ack_sent", 48, 4),
    f("last_data_recv", 52, 4),
    f("last_ack_recv", 56, 4),
    f("pmtu", 60, 4),
    f("rcv_ssthresh", 64, 4),
    f("rtt", 68, 4),
    f("rttvar", 72, 4),
    f("snd_ssthresh", 76, 4),
    f("snd_cwnd", 80, 4),
    f("advmss", 84, 4),
    f("reordering", 88, 4),
    f("rcv_rtt", 92, 4),
    f("rcv_space", 96, 4),
    f("total_retrans", 100, 4),
    f("pacing_rate", 104, 8),
    f("max_pacing_rate", 112, 8),
    f("bytes_acked", 120, 8),
    f("bytes_received", 128, 8),
    f("segs_out", 136, 4),
    f("segs_in", 140, 4),
    f("notsent_bytes", 144, 4),
    f("min_rtt", 148, 4),
    f("data_segs_in", 152, 4),
    f("data_segs_out", 156, 4),
    f("delivery_rate", 160, 8),
    f("busy_time", 168, 8),
    f("rwnd_limited", 176, 8),
    f("sndbuf_limited", 184, 8),
    f("delivered", 192, 4),
    f("delivered_ce", 196, 4),
    f("bytes_sent", 200, 8),
    f("bytes_retrans", 208, 8),
    f("dsack_dups", 216, 4),
    f("reord_seen", 220, 4),
    f("rcv_ooopack", 224, 4),
    f("snd_wnd", 228, 4),
];

/// The field named `tcpi_X` or `X`.
pub fn tcpi_field(name: &str) -> Option<TcpiField> {
    let bare = name.strip_prefix("tcpi_").unwrap_or(name);
    TCPI_FIELDS.iter().copied().find(|f| f.name == bare)
}

impl TcpiField {
    /// The field's value in a `struct tcp_info` of `len` bytes the kernel filled in; None when
    /// this kernel's struct is too short to have it.
    pub fn read(&self, raw: &[u8]) -> Option<u64> {
        let end = self.offset + self.size.max(1);
        let bytes = raw.get(self.offset..end)?;
        Some(match (self.size, self.name) {
            (0, "snd_wscale") => u64::from(bytes[0] & 0x0f),
            (0, _) => u64::from(bytes[0] >> 4),
            _ => bytes
                .iter()
                .rev()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        })
    }

    /// How a value of this field is written: state names, option bits, or the number.
    pub fn show(&self, v: u64) -> String {
        match self.name {
            "state" => tcpi_state_name(v).map_or(v.to_string(), str::to_string),
            "options" => show_mask(TCPI_OPTIONS, v as u32),
            _ => v.to_string(),
        }
    }
}

/// Linux's TCP states by their `tcpi_state` number (include/net/tcp_states.h).
pub const TCP_STATES: &[(&str, u64)] = &[
    ("ESTABLISHED", 1),
    ("SYN_SENT", 2),
    ("SYN_RECV", 3),
    ("FIN_WAIT_1", 4),
    ("FIN_WAIT_2", 5),
    ("TIME_WAIT", 6),
    ("CLOSE", 7),
    ("CLOSE_WAIT", 8),
    ("LAST_ACK", 9),
    ("LISTEN", 10),
    ("CLOSING", 11),
];

fn tcpi_state_name(v: u64) -> Option<&'static str> {
    TCP_STATES.iter().find(|(_, n)| *n == v).map(|(k, _)| *k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_round_trip_through_names() {
        let m = mask_of(POLL_EVENTS, &["POLLIN".into(), "POLLRDHUP".into()]).unwrap();
        assert_eq!(m, 0x2001);
        assert_eq!(show_mask(POLL_EVENTS, m), "POLLIN|POLLRDHUP");
        assert_eq!(show_mask(POLL_EVENTS, 0), "0");
        assert_eq!(show_mask(POLL_EVENTS, 0x10_0000), "0x100000");
        assert!(mask_of(POLL_EVENTS, &["POLLFOO".into()])
            .unwrap_err()
            .contains("POLLRDHUP"));
    }

    /// The layout read back from a buffer laid out by hand as linux/tcp.h says.
    #[test]
    fn tcp_info_fields_are_read_at_their_offsets() {
        let mut raw = vec![0u8; 228];
        raw[0] = 8; // CLOSE_WAIT
        raw[5] = 1 | 2;
        raw[6] = 0x7 | (0x9 << 4);
        raw[24..28].copy_from_slice(&3u32.to_le_bytes());
        raw[120..128].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let get = |n: &str| tcpi_field(n).unwrap().read(&raw).unwrap();
        assert_eq!(get("tcpi_state"), 8);
        assert_eq!(tcpi_field("state").unwrap().show(8), "CLOSE_WAIT");
        assert_eq!(
            tcpi_field("options").unwrap().show(get("options")),
            "TCPI_OPT_TIMESTAMPS|TCPI_OPT_SACK"
        );
        assert_eq!((get("snd_wscale"), get("rcv_wscale")), (7, 9));
        assert_eq!(get("unacked"), 3);
        assert_eq!(get("bytes_acked"), 1 << 40);
        assert_eq!(tcpi_field("snd_wnd").unwrap().read(&raw), None, "too short");
        assert!(tcpi_field("tcpi_nonsense").is_none());
    }
}
