//! Handing partitions over in a rebalance without two owners writing at once.
//!
//! A stage reads a batch, and while its outputs are still being produced it already
//! polls the next one. If that poll gives a partition away, its next owner starts from
//! the last committed offset and first reads what the stage already wrote (its lineage,
//! so a replay does not write it twice). Outputs still in flight at that moment are not
//! there yet: the new owner would write them again. So a consumer that loses partitions
//! waits, inside the rebalance and before the group moves on, until the work its owner
//! has in flight ([`InFlight`]) is durable — Kafka's "commit (or finish) in
//! `onPartitionsRevoked`" rule, made part of the consumer.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Work in flight for records a consumer returned, counted: a consumer that must give
/// partitions up waits for it to be done ([`InFlight::wait_idle`]).
#[derive(Clone, Default)]
pub struct InFlight {
    state: Arc<(Mutex<usize>, Condvar)>,
}

/// One piece of work in flight; done when dropped (also when its thread panics).
pub struct InFlightGuard {
    state: Arc<(Mutex<usize>, Condvar)>,
}

fn lock(m: &Mutex<usize>) -> MutexGuard<'_, usize> {
    // A count changed by whole increments: a poisoned value is still sound.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a rebalance waits for work in flight before it gives the partitions up
/// anyway (delivery is then at least once, and a warning says so). A produce that takes
/// this long is retrying an unavailable broker.
pub const HAND_OVER_WAIT: Duration = Duration::from_secs(60);

impl InFlight {
    /// Counts one more piece of work until the guard is dropped.
    pub fn begin(&self) -> InFlightGuard {
        *lock(&self.state.0) += 1;
        InFlightGuard {
            state: Arc::clone(&self.state),
        }
    }

    /// Pieces of work in flight now.
    pub fn count(&self) -> usize {
        *lock(&self.state.0)
    }

    /// Blocks until nothing is in flight or `timeout` passes; true when nothing is.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (count, idle) = &*self.state;
        let mut n = lock(count);
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = idle
                .wait_timeout(n, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }

    /// [`wait_idle`](Self::wait_idle) from code that may run on an async runtime's
    /// worker thread (a rebalance callback inside a poll): on a multi-threaded tokio
    /// runtime the worker's other tasks move to another thread meanwhile.
    pub fn wait_idle_blocking(&self, timeout: Duration) -> bool {
        if self.count() == 0 {
            return true;
        }
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(|| self.wait_idle(timeout))
        } else {
            self.wait_idle(timeout)
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let (count, idle) = &*self.state;
        let mut n = lock(count);
        *n = n.saturating_sub(1);
        if *n == 0 {
            idle.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_every_guard_is_dropped() {
        let work = InFlight::default();
        assert!(work.wait_idle(Duration::ZERO), "nothing in flight");
        let a = work.begin();
        let b = work.begin();
        assert_eq!(work.count(), 2);
        assert!(!work.wait_idle(Duration::from_millis(20)), "two in flight");
        let started = Instant::now();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(a);
            std::thread::sleep(Duration::from_millis(50));
            drop(b);
        });
        assert!(work.wait_idle(Duration::from_secs(10)));
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "returned before the last guard was dropped"
        );
        assert_eq!(work.count(), 0);
        t.join().expect("thread");
    }

    #[test]
    fn a_guard_dropped_by_a_panicking_thread_still_counts_as_done() {
        let work = InFlight::default();
        let g = work.begin();
        let _ = std::thread::spawn(move || {
            let _g = g;
            panic!("produce failed");
        })
        .join();
        assert!(work.wait_idle(Duration::from_secs(1)));
    }
}
