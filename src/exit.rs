//! Exit statuses: what CI scripts branch on. Every command and the `cargo test` harness use
//! these, and only these.

use crate::report::Summary;

/// Everything ran and passed (known deviations included).
pub const OK: i32 = 0;
/// A trial failed, or an expectation is stale; `matrix`: a cell failed.
pub const FAILED: i32 = 1;
/// Bad input (a script, an option, an expectations file), no privileges, or a run in which
/// every trial was skipped.
pub const BAD_INPUT: i32 = 2;
/// No trial failed, but some were still inconclusive (the harness was late) after retries.
pub const INCONCLUSIVE: i32 = 3;
// Interrupted by a signal: 128 + its number (130 SIGINT, 143 SIGTERM), see `interrupt`.

/// The status of a finished run: 1 when a trial failed, 3 when none failed but some stayed
/// inconclusive, else 0. `harness_failed`: libtest-mimic counted a failure no record shows
/// (a script that did not load, in `cargo test`).
pub fn of_run(summary: &Summary, harness_failed: bool) -> i32 {
    if summary.failures() > 0 || (harness_failed && summary.inconclusive == 0) {
        FAILED
    } else if summary.inconclusive > 0 {
        INCONCLUSIVE
    } else {
        OK
    }
}
