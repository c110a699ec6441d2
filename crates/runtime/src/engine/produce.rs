//! Producing a stage's outputs: every topic's records handed to the broker at once,
//! then their acknowledgements waited for. A broker that is unavailable for a while is
//! retried with backoff (a retry can only duplicate records, which at-least-once
//! allows); past [`RETRY_FOR`] the error stands.

use std::collections::HashMap;
use std::time::Duration;

use millrace_broker::{Acks, Broker, BrokerError, ProduceRecord};

use crate::error::RuntimeError;

/// How long a stage keeps retrying a broker that is unavailable before it stops.
pub(crate) const RETRY_FOR: Duration = Duration::from_secs(120);

/// Largest output record (key, value and headers) a stage writes; bigger outputs
/// dead-letter their input. Kafka's brokers refuse ~1 MiB by default
/// (`message.max.bytes`), so on Kafka the topic's own limit applies first.
pub const MAX_RECORD_BYTES: usize = 8 << 20;

/// The error an input is dead-lettered with when an output of `size` bytes is over
/// [`MAX_RECORD_BYTES`] (on the record path and the forwarding path alike).
pub(crate) fn oversize(size: usize) -> String {
    format!("an output of {size} bytes is over the {MAX_RECORD_BYTES}-byte record limit")
}

/// An output record's size as the limit counts it: key, value and headers.
pub(crate) fn record_bytes(r: &ProduceRecord) -> usize {
    r.value.len()
        + r.key.as_ref().map_or(0, |k| k.len())
        + r.headers
            .iter()
            .map(|h| h.key.len() + h.value.len())
            .sum::<usize>()
}

/// Partition counts of the topics a stage writes.
pub(crate) async fn output_partitions<'a>(
    broker: &dyn Broker,
    topics: impl Iterator<Item = &'a String>,
) -> Result<HashMap<String, i32>, RuntimeError> {
    let described = futures::future::join_all(topics.map(|t| async move {
        let d = broker.partitions(t).await?;
        Ok::<_, RuntimeError>((t.clone(), i32::try_from(d.len()).unwrap_or(1)))
    }))
    .await;
    described.into_iter().collect()
}

/// Produces to several topics concurrently and waits until all are acknowledged.
pub(crate) async fn produce_all(
    broker: &dyn Broker,
    sends: Vec<(String, Vec<ProduceRecord>)>,
) -> Result<(), RuntimeError> {
    let acks = send_all(broker, &sends).await?;
    acknowledged(broker, &sends, acks).await
}

/// The first half of [`produce_all`]: hands every topic's records to the broker (in
/// order after what was sent before) and returns their acknowledgements to come.
/// Transient errors are retried with backoff.
pub(crate) async fn send_all(
    broker: &dyn Broker,
    sends: &[(String, Vec<ProduceRecord>)],
) -> Result<Vec<Acks>, RuntimeError> {
    let results = futures::future::join_all(
        sends
            .iter()
            .map(|(t, recs)| async move { retrying(|| broker.send(t, recs)).await }),
    )
    .await;
    let mut acks = Vec::with_capacity(results.len());
    for r in results {
        acks.push(r?);
    }
    Ok(acks)
}

/// The second half: waits for the acknowledgements of [`send_all`]. A topic whose
/// records were not acknowledged for a transient reason is produced again whole (at
/// least once; the only case where a later batch's records may land first).
pub(crate) async fn acknowledged(
    broker: &dyn Broker,
    sends: &[(String, Vec<ProduceRecord>)],
    acks: Vec<Acks>,
) -> Result<(), RuntimeError> {
    for ((t, recs), a) in sends.iter().zip(acks) {
        match a.await {
            Ok(_) => {}
            Err(e) if e.is_transient() => {
                tracing::warn!("records to {t} not acknowledged, producing them again: {e}");
                retrying(|| broker.produce(t, recs)).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Runs a broker call, retrying transient failures with exponential backoff.
pub(crate) async fn retrying<T, F, Fut>(mut call: F) -> Result<T, BrokerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BrokerError>>,
{
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        match call().await {
            Err(e) if e.is_transient() && start.elapsed() < RETRY_FOR => {
                tracing::warn!("broker unavailable, retrying in {pause:?}: {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            r => return r,
        }
    }
}
