//! The waits between tries of a request that fails while a cluster catches up (a
//! leader not serving yet, a broker's metadata behind the controller's): short at
//! first, since a local broker's leader serves within milliseconds, doubling up to a
//! ceiling, so that waiting on a cluster does not round up to a tenth of a second a
//! try, and never past a deadline.

use std::time::{Duration, Instant};

/// The first wait.
const FIRST: Duration = Duration::from_millis(5);
/// The longest wait.
const LONGEST: Duration = Duration::from_millis(100);

pub(super) struct Backoff {
    deadline: Instant,
    step: Duration,
}

impl Backoff {
    /// Tries for `timeout` from now.
    pub fn until(timeout: Duration) -> Backoff {
        Backoff {
            deadline: Instant::now() + timeout,
            step: FIRST,
        }
    }

    /// The time left before the deadline (zero once it has passed).
    pub fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The wait before the next try, or `None` once the deadline has passed.
    pub fn next_wait(&mut self) -> Option<Duration> {
        if Instant::now() >= self.deadline {
            return None;
        }
        let wait = self.step;
        self.step = (self.step * 2).min(LONGEST);
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_longest_and_stop_at_the_deadline() {
        let mut b = Backoff::until(Duration::from_secs(60));
        let waits: Vec<Duration> = (0..7).filter_map(|_| b.next_wait()).collect();
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [5, 10, 20, 40, 80, 100, 100]);
        assert!(b.left() > Duration::from_secs(50));
        let mut over = Backoff::until(Duration::ZERO);
        assert_eq!(over.next_wait(), None);
        assert_eq!(over.left(), Duration::ZERO);
    }
}
