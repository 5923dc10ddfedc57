//! The node's wall clock, and how a journaled wait (a `sleep`, a `wait-event` timeout)
//! meets it when the clock jumps.
//!
//! A wait journals its deadline as wall-clock unix ms, so it survives a restart. The wall
//! clock can jump (NTP, an operator, a VM restored), so it never times a wait alone:
//!
//! - **Live**, a wait lasts its requested duration on the monotonic clock: a jump of the
//!   wall clock meanwhile neither shortens nor lengthens it.
//! - **Replayed**, a wait that later journal entries follow ended in an earlier life: it
//!   returns at once (never twice). The last one, still under way, ends at the monotonic
//!   end this process knew (after an eviction); after a restart, at its journaled deadline
//!   but never later than its requested duration from now ([`wait_left`]): a clock set
//!   back by hours delays it by at most its own length, one set forward ends it at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// The wall clock `now()` answers and waits journal their deadlines by: the system's,
/// plus a shift a test may set to act out a jump. Cheap to clone; clones share the shift.
#[derive(Debug, Clone, Default)]
pub struct WallClock {
    shift_ms: Arc<AtomicI64>,
}

impl WallClock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// Unix milliseconds now, shifted.
    pub fn now_ms(&self) -> u64 {
        let shift = self.shift_ms.load(Ordering::Relaxed);
        super::unix_ms().saturating_add_signed(shift)
    }

    /// Read `by_ms` later from now on (earlier when negative), as if the system clock had
    /// jumped: for tests of what a jump does.
    pub fn jump(&self, by_ms: i64) {
        self.shift_ms.fetch_add(by_ms, Ordering::Relaxed);
    }
}

/// Milliseconds left of a wait of `requested_ms` journaled to end at `deadline_ms`, read
/// after a restart at wall-clock `now_ms`: until the deadline, but at most `requested_ms`.
pub fn wait_left(requested_ms: u64, deadline_ms: u64, now_ms: u64) -> u64 {
    deadline_ms.saturating_sub(now_ms).min(requested_ms)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the clock did since the deadline was journaled: never longer than asked,
        /// nothing left once the deadline has passed, and the rest of it when the clock ran
        /// true.
        #[test]
        fn a_restarted_wait_is_never_longer_than_asked(
            requested in 0u64..10_000_000,
            recorded_at in 0u64..(1 << 50),
            jump in -(1i64 << 40)..(1i64 << 40),
            elapsed in 0u64..20_000_000,
        ) {
            let deadline = recorded_at + requested;
            let now = (recorded_at + elapsed).saturating_add_signed(jump);
            let left = wait_left(requested, deadline, now);
            prop_assert!(left <= requested);
            if now >= deadline {
                prop_assert_eq!(left, 0);
            }
            if jump == 0 {
                prop_assert_eq!(left, requested.saturating_sub(elapsed));
            }
        }
    }

    #[test]
    fn a_jump_moves_every_clone() {
        let clock = WallClock::system();
        let other = clock.clone();
        let before = other.now_ms();
        clock.jump(-3_600_000);
        assert!(other.now_ms() < before, "a clone did not see the jump back");
        clock.jump(7_200_000);
        assert!(other.now_ms() > before + 3_000_000);
    }
}
