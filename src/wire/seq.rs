//! Sequence-space arithmetic modulo 2^32 (RFC 9293 section 3.4).
//!
//! `a` is before `b` when `b - a`, taken modulo 2^32, is in 1..2^31, exactly Linux's
//! `before()`. Two numbers exactly 2^31 apart are each "before" the other; nothing in a real
//! connection is that far apart, since windows are at most 2^30.

/// `a` comes strictly before `b`.
pub fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a` comes before `b` or equals it.
pub fn le(a: u32, b: u32) -> bool {
    a == b || lt(a, b)
}

/// `a` comes strictly after `b`.
pub fn gt(a: u32, b: u32) -> bool {
    lt(b, a)
}

/// `a` comes after `b` or equals it.
pub fn ge(a: u32, b: u32) -> bool {
    a == b || gt(a, b)
}

/// `abs - base` as a signed distance in -2^31..2^31, so a number just before the base
/// shows as negative (`-1`) rather than as 4294967295. The halfway point 2^31 shows as
/// -2^31, agreeing with [`lt`].
pub fn rel(abs: u32, base: u32) -> i64 {
    i64::from(abs.wrapping_sub(base) as i32)
}

#[cfg(test)]
mod tests {
    use crate::wire::seq;

    #[test]
    fn seq_arithmetic_across_wraparound() {
        assert!(seq::lt(0xffff_fff0, 0x10));
        assert!(seq::gt(0x10, 0xffff_fff0));
        assert!(!seq::lt(0x10, 0xffff_fff0));
        assert!(seq::le(5, 5) && seq::ge(5, 5) && !seq::lt(5, 5) && !seq::gt(5, 5));
        assert!(seq::le(u32::MAX, 0) && seq::ge(0, u32::MAX));
        assert!(seq::lt(1, 0x8000_0000) && !seq::lt(1, 0x8000_0002));
        assert_eq!(seq::rel(0, u32::MAX), 1);
        assert_eq!(seq::rel(u32::MAX, 0), -1);
        assert_eq!(seq::rel(1000, 1000), 0);
        assert_eq!(seq::rel(5, 0xffff_fffb), 10);
        assert_eq!(seq::rel(0x7fff_ffff, 0), 0x7fff_ffff);
        assert_eq!(seq::rel(0x8000_0000, 0), -0x8000_0000);
        assert_eq!(seq::rel(0x8000_0001, 0), -0x7fff_ffff);
    }
}
