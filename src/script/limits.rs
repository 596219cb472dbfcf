//! What a trial can carry out, checked when a script is loaded so that `halfclose check`
//! refuses what `halfclose run` would fail on: segments that do not fit the link, sysctls
//! that are not per network namespace, values a sysctl file cannot take.

use crate::wire::TcpOption;
use crate::Family;

/// The MTU of the links a trial runs over (the veth pair, the TAP device): the default,
/// which the topology keeps.
pub const LINK_MTU: usize = 1500;
/// TCP's header without options, and its room for options.
const TCP_HEADER: usize = 20;
pub const TCP_MAX_OPTIONS: usize = 40;
/// The timestamp option as the peer adds it to a segment that lists no options: 10 bytes,
/// padded to 12 with NOPs.
const PEER_TIMESTAMP: usize = 12;

/// The bytes an option list takes in the TCP header (padded to a 4-byte boundary).
pub fn options_len(options: &[TcpOption]) -> usize {
    options
        .iter()
        .map(TcpOption::wire_len)
        .sum::<usize>()
        .div_ceil(4)
        * 4
}

/// The most payload one segment can carry over the default link in a family, given the bytes
/// of TCP options it carries.
pub fn max_payload(family: Family, options: usize) -> usize {
    max_payload_on(LINK_MTU, family, options)
}

/// The same over a link of `mtu` bytes.
pub fn max_payload_on(mtu: usize, family: Family, options: usize) -> usize {
    let ip = match family {
        Family::V4 | Family::V4Mapped => 20,
        Family::V6 => 40,
    };
    mtu.saturating_sub(ip + TCP_HEADER + options)
}

/// The option bytes a segment the peer sends will carry: those listed, or, when none are
/// listed, what the peer adds itself (a timestamp once negotiated; a SYN's are at most 40).
pub fn sent_options_len(listed: Option<usize>, syn: bool, timestamps: bool) -> usize {
    match listed {
        Some(n) => n,
        None if syn => TCP_MAX_OPTIONS,
        None if timestamps => PEER_TIMESTAMP,
        None => 0,
    }
}

/// `net.*` sysctls that the kernel keeps once for the whole machine: they exist only in the
/// initial network namespace, or are read-only inside any other (Linux 6.x). Writing one in
/// a trial's namespace fails, and would change the host if it did not.
const GLOBAL_NET_SYSCTLS: &[&str] = &[
    "net.core.bpf_jit_enable",
    "net.core.bpf_jit_harden",
    "net.core.bpf_jit_kallsyms",
    "net.core.bpf_jit_limit",
    "net.core.busy_poll",
    "net.core.busy_read",
    "net.core.default_qdisc",
    "net.core.dev_weight",
    "net.core.dev_weight_rx_bias",
    "net.core.dev_weight_tx_bias",
    "net.core.devconf_inherit_init_net",
    "net.core.fb_tunnels_only_for_init_net",
    "net.core.flow_limit_cpu_bitmap",
    "net.core.flow_limit_table_len",
    "net.core.gro_normal_batch",
    "net.core.high_order_alloc_disable",
    "net.core.max_skb_frags",
    "net.core.mem_pcpu_rsv",
    "net.core.message_burst",
    "net.core.message_cost",
    "net.core.netdev_budget",
    "net.core.netdev_budget_usecs",
    "net.core.netdev_max_backlog",
    "net.core.netdev_rss_key",
    "net.core.netdev_tstamp_prequeue",
    "net.core.netdev_unregister_timeout_secs",
    "net.core.rmem_default",
    "net.core.rmem_max",
    "net.core.rps_sock_flow_entries",
    "net.core.skb_defer_max",
    "net.core.warnings",
    "net.core.wmem_default",
    "net.core.wmem_max",
    "net.ipv4.cipso_cache_bucket_size",
    "net.ipv4.cipso_cache_enable",
    "net.ipv4.cipso_rbm_optfmt",
    "net.ipv4.cipso_rbm_strictvalid",
    "net.ipv4.fib_sync_mem",
    "net.ipv4.inet_peer_maxttl",
    "net.ipv4.inet_peer_minttl",
    "net.ipv4.inet_peer_threshold",
    "net.ipv4.ipfrag_secret_interval",
    "net.ipv4.route.error_burst",
    "net.ipv4.route.error_cost",
    "net.ipv4.route.gc_elasticity",
    "net.ipv4.route.gc_interval",
    "net.ipv4.route.gc_min_interval",
    "net.ipv4.route.gc_min_interval_ms",
    "net.ipv4.route.gc_thresh",
    "net.ipv4.route.gc_timeout",
    "net.ipv4.route.max_size",
    "net.ipv4.route.redirect_load",
    "net.ipv4.route.redirect_number",
    "net.ipv4.route.redirect_silence",
    "net.ipv4.tcp_allowed_congestion_control",
    "net.ipv4.tcp_available_ulp",
    "net.ipv4.tcp_low_latency",
    "net.ipv4.tcp_max_orphans",
    "net.ipv4.tcp_mem",
    "net.ipv4.udp_mem",
    "net.ipv6.calipso_cache_bucket_size",
    "net.ipv6.calipso_cache_enable",
    "net.ipv6.ip6frag_secret_interval",
    "net.ipv6.mld_max_msf",
    "net.ipv6.mld_qrv",
    "net.netfilter.nf_conntrack_buckets",
    "net.netfilter.nf_conntrack_expect_max",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_log_all_netns",
    "net.nf_conntrack_max",
];

/// Why a `net.*` sysctl cannot be set in a trial's namespace, if it cannot (beyond not
/// existing, which the caller checks against /proc/sys).
pub fn not_settable(key: &str) -> Option<String> {
    if GLOBAL_NET_SYSCTLS.contains(&key) {
        return Some(format!(
            "sysctl `{key}` is not per network namespace: the kernel keeps one value for the whole machine, so a trial cannot set it; look for a per-namespace sysctl or a socket option (SO_RCVBUF, SO_SNDBUF) instead"
        ));
    }
    // Interface settings: the SUT's sysctls are written before its link exists, so only the
    // namespace-wide entries are there.
    let parts: Vec<&str> = key.split('.').collect();
    if let ["net", "ipv4" | "ipv6", "conf" | "neigh", iface, _, ..] = parts.as_slice() {
        if !matches!(*iface, "all" | "default" | "lo") {
            return Some(format!(
                "sysctl `{key}` is for the interface `{iface}`, which a trial's namespace does not have when its sysctls are written; use `all`, `default` or `lo` in its place"
            ));
        }
    }
    None
}

/// Why a value cannot be written to a sysctl file, if it cannot.
pub fn bad_sysctl_value(value: &str) -> Option<String> {
    if value.trim().is_empty() {
        return Some("a sysctl value cannot be empty".into());
    }
    if value.chars().count() > 256 {
        return Some("a sysctl value is at most 256 characters".into());
    }
    if value.chars().any(char::is_control) {
        return Some(
            "a sysctl value is one line of text (numbers separated by spaces, or a word)".into(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_fits_the_link() {
        assert_eq!(max_payload(Family::V4, 0), 1460);
        assert_eq!(max_payload(Family::V6, 0), 1440);
        assert_eq!(max_payload(Family::V4, PEER_TIMESTAMP), 1448);
        assert_eq!(
            options_len(&[TcpOption::Mss(1460), TcpOption::WindowScale(7)]),
            8
        );
        assert_eq!(sent_options_len(None, true, false), 40);
        assert_eq!(sent_options_len(Some(4), true, true), 4);
    }

    #[test]
    fn global_and_interface_sysctls_are_refused() {
        assert!(not_settable("net.core.rmem_max")
            .unwrap()
            .contains("not per network namespace"));
        assert!(not_settable("net.ipv4.conf.eth0.rp_filter")
            .unwrap()
            .contains("`eth0`"));
        assert_eq!(not_settable("net.ipv4.conf.all.rp_filter"), None);
        assert_eq!(not_settable("net.ipv4.tcp_fin_timeout"), None);
        assert_eq!(not_settable("net.core.somaxconn"), None);
        assert!(bad_sysctl_value("1\n2").is_some());
        assert!(bad_sysctl_value(" ").is_some());
        assert_eq!(bad_sysctl_value("4096 87380 6291456"), None);
    }
}
