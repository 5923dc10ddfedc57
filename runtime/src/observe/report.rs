//! A short report of what ran where: one line per pool.

use std::fmt::Write;
use std::time::Duration;

use crate::sched::Pools;

/// Render a table of every pool's counters after a run that took `elapsed`.
pub fn pools_table(pools: &Pools, elapsed: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>5} {:>9} {:>9} {:>7} {:>12} {:>11} {:>11} {:>9}",
        "pool",
        "size",
        "started",
        "completed",
        "failed",
        "peak-running",
        "peak-parked",
        "peak-queued",
        "preempted"
    );
    for pool in pools.iter() {
        let s = pool.stats().snapshot();
        let _ = writeln!(
            out,
            "{:<16} {:>5} {:>9} {:>9} {:>7} {:>12} {:>11} {:>11} {:>9}",
            pool.name(),
            pool.size(),
            s.started,
            s.completed,
            s.failed,
            s.peak_running,
            s.peak_parked,
            s.peak_queued,
            s.preempted
        );
    }
    let _ = writeln!(out, "elapsed: {:.1} ms", elapsed.as_secs_f64() * 1e3);
    out
}
