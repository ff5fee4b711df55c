#![allow(dead_code)] // Each benchmark uses the part it needs.

//! Quick mode: `NACRE_BENCH_QUICK=1` makes a benchmark run a handful of iterations instead of its
//! full count. The test script runs every benchmark once this way, in the debug build, so a
//! benchmark that panics or no longer runs is caught; the numbers it prints then mean nothing.

/// Whether `NACRE_BENCH_QUICK` is set (to anything but `0` or nothing).
pub fn quick() -> bool {
    std::env::var("NACRE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `full` normally, `quick` in quick mode.
pub fn iterations(full: usize, quick_count: usize) -> usize {
    if quick() { quick_count } else { full }
}

/// Says so at the start of the output when in quick mode, so its numbers are not taken for
/// measurements.
pub fn announce() {
    if quick() {
        println!("quick mode (NACRE_BENCH_QUICK): a few iterations only, the numbers mean nothing");
    }
}
