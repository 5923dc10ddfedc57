//! How long to wait between attempts to reach a peer.

use std::time::Duration;

/// Waits between attempts to reach a peer: from 50 ms, doubling, at most 5 s.
#[derive(Debug)]
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Backoff::FIRST)
    }
}

impl Backoff {
    /// The first wait.
    pub const FIRST: Duration = Duration::from_millis(50);
    /// The longest wait.
    pub const MOST: Duration = Duration::from_secs(5);

    /// The next wait.
    pub fn wait(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(Self::MOST);
        wait
    }

    /// Start again from the first wait (the peer answered).
    pub fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}
