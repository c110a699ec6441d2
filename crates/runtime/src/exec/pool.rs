//! The worker pool: N slots, each owning at most one live worker process, fed by a
//! shared work queue (any free slot) and a per-slot queue (ordered by key).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::protocol::encode_request;
use super::worker::{Attempt, Worker};
use super::{ExecConfig, ExecError, ExecFailure, WorkItem};

/// How long shutdown waits for a worker to exit after its stdin is closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

type ItemResult = Result<Vec<Value>, ExecFailure>;

struct Job {
    item: WorkItem,
    reply: oneshot::Sender<ItemResult>,
}

/// A running set of worker processes for one exec stage. See the module docs.
pub struct WorkerPool {
    shared_tx: mpsc::Sender<Job>,
    ordered_tx: Vec<mpsc::UnboundedSender<Job>>,
    stop: watch::Sender<bool>,
    slots: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Validates `cfg` and starts `cfg.workers` processes. A program that cannot be
    /// started at all (not found, not executable, bad cwd) is an error here rather than
    /// a dead-letter per record later. Must be called within a tokio runtime.
    pub fn start(cfg: ExecConfig) -> Result<WorkerPool, ExecError> {
        if cfg.command.first().is_none_or(|p| p.is_empty()) {
            return Err(ExecError::EmptyCommand);
        }
        if cfg.workers == 0 {
            return Err(ExecError::InvalidConfig(
                "`workers` must be at least 1".into(),
            ));
        }
        if cfg.timeout.is_zero() {
            return Err(ExecError::InvalidConfig(
                "`timeout` must be positive".into(),
            ));
        }
        if cfg.max_line_bytes == 0 {
            return Err(ExecError::InvalidConfig(
                "`max_line_bytes` must be positive".into(),
            ));
        }
        // Spawn every worker before any task exists, so a failure leaves nothing running
        // (already spawned children are killed on drop).
        let mut workers = Vec::with_capacity(cfg.workers);
        for index in 0..cfg.workers {
            let worker = Worker::spawn(&cfg, index).map_err(|source| ExecError::Spawn {
                program: cfg.command[0].clone(),
                source,
            })?;
            workers.push(worker);
        }

        let cfg = Arc::new(cfg);
        // Bounded to the worker count: callers beyond that wait in send(), which is the
        // backpressure a slow stage exerts on its input.
        let (shared_tx, shared_rx) = mpsc::channel(cfg.workers);
        let shared_rx = Arc::new(Mutex::new(shared_rx));
        let (stop, stop_rx) = watch::channel(false);
        let ids = Arc::new(AtomicU64::new(1));
        let mut ordered_tx = Vec::with_capacity(cfg.workers);
        let mut slots = Vec::with_capacity(cfg.workers);
        for (index, worker) in workers.into_iter().enumerate() {
            let (tx, rx) = mpsc::unbounded_channel();
            ordered_tx.push(tx);
            let slot = Slot {
                index,
                cfg: Arc::clone(&cfg),
                worker: Some(worker),
                ids: Arc::clone(&ids),
            };
            slots.push(tokio::spawn(slot.run(
                Arc::clone(&shared_rx),
                rx,
                stop_rx.clone(),
            )));
        }
        Ok(WorkerPool {
            shared_tx,
            ordered_tx,
            stop,
            slots,
        })
    }

    /// Number of worker slots.
    pub fn workers(&self) -> usize {
        self.ordered_tx.len()
    }

    /// Processes `item` on whichever worker is free first. Returns the worker's outputs
    /// (0..n values), or the failure to dead-letter.
    pub async fn call(&self, item: WorkItem) -> ItemResult {
        let (reply, rx) = oneshot::channel();
        if self.shared_tx.send(Job { item, reply }).await.is_err() {
            return Err(pool_gone());
        }
        rx.await.unwrap_or_else(|_| Err(pool_gone()))
    }

    /// Processes `item` on the worker slot chosen by `key`: the same key always goes to
    /// the same slot, and a slot handles its keyed items one at a time in the order of
    /// the `call_ordered` calls (the item is queued before this returns, so order does not
    /// depend on when the returned future is first polled). Retries of an item happen
    /// before the next item of its slot starts, so a retry never overtakes.
    ///
    /// The per-slot queue is unbounded: the caller bounds how many items it has in flight
    /// (it holds the returned futures).
    pub fn call_ordered(
        &self,
        key: &[u8],
        item: WorkItem,
    ) -> impl Future<Output = ItemResult> + Send + 'static {
        let slot = slot_for_key(key, self.ordered_tx.len());
        let (reply, rx) = oneshot::channel();
        let queued = self.ordered_tx[slot].send(Job { item, reply }).is_ok();
        async move {
            if !queued {
                return Err(pool_gone());
            }
            rx.await.unwrap_or_else(|_| Err(pool_gone()))
        }
    }

    /// Stops the pool: in-flight and queued items are abandoned (their callers get an
    /// `ExecFailure` with 0 attempts), each worker's stdin is closed so it can exit
    /// cleanly, and a worker still running after a short grace period is killed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for slot in self.slots {
            let _ = slot.await;
        }
    }
}

fn pool_gone() -> ExecFailure {
    ExecFailure {
        error: "exec worker pool shut down before the item was processed".into(),
        attempts: 0,
    }
}

/// FNV-1a: stable across runs and platforms (unlike std's randomly keyed hasher), so a
/// key's slot is predictable in logs and tests.
fn slot_for_key(key: &[u8], slots: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // The modulo result is < slots, which is a usize.
    usize::try_from(h % slots as u64).unwrap_or(0)
}

struct Slot {
    index: usize,
    cfg: Arc<ExecConfig>,
    /// The live worker, or None after it was killed until the next item needs one:
    /// restarting lazily means a pool with a broken program does not spin.
    worker: Option<Worker>,
    ids: Arc<AtomicU64>,
}

impl Slot {
    async fn run(
        mut self,
        shared: Arc<Mutex<mpsc::Receiver<Job>>>,
        mut ordered: mpsc::UnboundedReceiver<Job>,
        mut stop: watch::Receiver<bool>,
    ) {
        let (mut ordered_open, mut shared_open) = (true, true);
        while ordered_open || shared_open {
            let job = tokio::select! {
                // Keyed items first: they are already bound to this slot, while shared
                // items can be taken by any other free slot.
                biased;
                _ = stop.wait_for(|s| *s) => break,
                job = ordered.recv(), if ordered_open => match job {
                    Some(job) => job,
                    None => { ordered_open = false; continue; }
                },
                // Waiting for the lock is the queue of idle slots; recv is cancel-safe,
                // so losing this race to a keyed item loses no shared item.
                job = async { shared.lock().await.recv().await }, if shared_open => match job {
                    Some(job) => job,
                    None => { shared_open = false; continue; }
                },
            };
            if job.reply.is_closed() {
                // The caller stopped waiting (cancelled); don't spend a worker on it.
                continue;
            }
            let result = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => None,
                result = self.process(&job.item) => Some(result),
            };
            let Some(result) = result else {
                // Shut down mid-item: the answer would be thrown away and the item is
                // not committed (it will be redone), so don't wait for the worker.
                if let Some(worker) = self.worker.take() {
                    worker.kill().await;
                }
                return;
            };
            let _ = job.reply.send(result);
        }
        if let Some(worker) = self.worker.take() {
            worker.close(SHUTDOWN_GRACE).await;
        }
    }

    /// Tries `item` up to `retries + 1` times, replacing the worker after each fault.
    async fn process(&mut self, item: &WorkItem) -> ItemResult {
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let reason = match self.attempt(item).await {
                Attempt::Out(values) => return Ok(values),
                Attempt::Error(error) => return Err(ExecFailure { error, attempts }),
                Attempt::Fault(reason) => reason,
            };
            if attempts > self.cfg.retries {
                tracing::warn!(
                    worker = self.index, attempts, error = %reason,
                    topic = %item.topic, partition = item.partition, offset = item.offset,
                    "exec item failed after all retries"
                );
                return Err(ExecFailure {
                    error: reason,
                    attempts,
                });
            }
            let delay = self.cfg.backoff_for(attempts);
            tracing::warn!(
                worker = self.index, attempt = attempts, error = %reason, retry_in = ?delay,
                topic = %item.topic, partition = item.partition, offset = item.offset,
                "exec worker fault; restarting and retrying the item"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&mut self, item: &WorkItem) -> Attempt {
        if let Some(w) = self.worker.as_mut()
            && w.has_exited()
        {
            tracing::warn!(
                worker = self.index,
                pid = w.pid(),
                "exec worker exited while idle; restarting"
            );
            self.worker = None;
        }
        if self.worker.is_none() {
            match Worker::spawn(&self.cfg, self.index) {
                Ok(w) => self.worker = Some(w),
                Err(e) => return Attempt::Fault(format!("cannot start worker: {e}")),
            }
        }
        let Some(worker) = self.worker.as_mut() else {
            return Attempt::Fault("no worker".into());
        };
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let request = encode_request(id, item);
        // A young worker may still be starting up; the allowance shrinks as it ages.
        let deadline = self.cfg.timeout + self.cfg.startup_timeout.saturating_sub(worker.age());
        let outcome = match tokio::time::timeout(
            deadline,
            worker.exchange(id, &request, self.cfg.max_line_bytes),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => Attempt::Fault(format!(
                "worker did not answer within the timeout ({deadline:?})"
            )),
        };
        if matches!(outcome, Attempt::Fault(_))
            && let Some(worker) = self.worker.take()
        {
            // After a fault the worker's stream position is unknown (a late reply could
            // be read as the next item's), so it is never reused.
            worker.kill().await;
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_and_are_stable() {
        assert_eq!(slot_for_key(b"abc", 4), slot_for_key(b"abc", 4));
        let used: std::collections::HashSet<_> = (0..100)
            .map(|i| slot_for_key(format!("k{i}").as_bytes(), 4))
            .collect();
        assert_eq!(used.len(), 4);
        assert_eq!(slot_for_key(b"", 1), 0);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let cfg = ExecConfig {
            backoff: Duration::from_millis(10),
            ..ExecConfig::default()
        };
        assert_eq!(cfg.backoff_for(1), Duration::from_millis(10));
        assert_eq!(cfg.backoff_for(3), Duration::from_millis(40));
        assert_eq!(cfg.backoff_for(200), super::super::MAX_BACKOFF);
    }
}
