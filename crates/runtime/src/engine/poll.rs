//! Reading a stage's inputs: where each input partition starts, how long a poll waits,
//! a poll that gives way to the stage stopping or to an unavailable broker, and the
//! wait for a continuous run's next batch.

use std::collections::BTreeMap;
use std::time::Duration;

use millrace_broker::{Broker, BrokerError, TopicPartition, committed_offset};
use tokio::sync::watch;

use super::Stage;
use crate::error::RuntimeError;

/// Where each input partition stands for a group: its committed offset, or the start
/// of the partition when nothing is committed.
pub(crate) async fn start_positions(
    broker: &dyn Broker,
    group: &str,
    inputs: &[String],
) -> Result<BTreeMap<TopicPartition, i64>, RuntimeError> {
    let mut next = BTreeMap::new();
    let looked_up = futures::future::join_all(inputs.iter().map(|t| async move {
        let (committed, d) = tokio::try_join!(broker.committed(group, t), broker.partitions(t))?;
        Ok::<_, RuntimeError>((t, committed, d))
    }))
    .await;
    for found in looked_up {
        let (t, committed, d) = found?;
        for p in &d {
            let c = committed_offset(&committed, p.partition).unwrap_or(p.start_offset);
            next.insert(
                TopicPartition::new(t.clone(), p.partition),
                c.max(p.start_offset),
            );
        }
    }
    Ok(next)
}

/// How long a stage's poll waits for records. Within a batch (`--batch`, or a
/// continuous run's micro-batch) nothing to read usually means the batch is done here,
/// which the stage learns only between polls: a long wait would add itself to every
/// batch's end (a fifth of a 2 M-record copier run at 200 ms).
pub(crate) fn idle_wait(in_batch: bool) -> Duration {
    if in_batch {
        Duration::from_millis(20)
    } else {
        Duration::from_millis(200)
    }
}

/// What a stage task's poll came back with.
pub(crate) enum Polled<T> {
    Records(T),
    /// The broker is unavailable for now; the loop goes round again after a pause.
    Retry,
    Stopped,
}

impl<T> Polled<T> {
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Polled<U> {
        match self {
            Polled::Records(r) => Polled::Records(f(r)),
            Polled::Retry => Polled::Retry,
            Polled::Stopped => Polled::Stopped,
        }
    }
}

/// Waits for a poll (`consumer.poll(…)` or `poll_encoded(…)`), or learns that the stage
/// is stopping. Transient broker errors pause and ask for another round instead of
/// failing the stage.
pub(crate) async fn poll_or_stop<T>(
    poll: impl std::future::Future<Output = Result<T, BrokerError>>,
    stage: &str,
    stop: &mut watch::Receiver<bool>,
) -> Result<Polled<T>, RuntimeError> {
    tokio::select! {
        r = poll => match r {
            Ok(p) => Ok(Polled::Records(p)),
            Err(e) if e.is_transient() => {
                tracing::warn!(stage = %stage, "poll: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(Polled::Retry)
            }
            Err(e) => Err(e.into()),
        },
        _ = stop.changed() => Ok(Polled::Stopped),
    }
}

/// Where a stage task stands with respect to batches.
pub(crate) enum Between {
    /// A batch is in hand (or the run has no batches): work.
    Work,
    /// A new batch has arrived, or the run is stopping: go round the loop again.
    Again,
    /// A continuous run's batches have ended: the task is done.
    Over,
}

impl Stage {
    /// In a continuous run with batches, a task with no batch in hand waits for the
    /// next one to be cut.
    pub(crate) async fn between_batches(&mut self) -> Between {
        let (None, Some(rx)) = (&self.completion, &mut self.batches) else {
            return Between::Work;
        };
        let mut stop = self.stop.clone();
        tokio::select! {
            c = rx.recv() => match c {
                Some(c) => {
                    self.completion = Some(c);
                    Between::Again
                }
                None => Between::Over,
            },
            _ = stop.changed() => Between::Again,
        }
    }

    /// A poll of the inputs, as [`poll_or_stop`] waits for it.
    pub(crate) async fn poll<T>(
        &self,
        poll: impl std::future::Future<Output = Result<T, BrokerError>>,
    ) -> Result<Polled<T>, RuntimeError> {
        let mut stop = self.stop.clone();
        poll_or_stop(poll, &self.name, &mut stop).await
    }
}
