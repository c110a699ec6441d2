//! Records moved as stored, for forwarding stages (copier, merger): reads hand out runs
//! of stored records per partition, appends take batches built from them. No record is
//! decoded on the way (see `millrace_store::encoded`).

use std::sync::Arc;

use millrace_store::{
    Durability, EncodedBatch, EncodedRecords, Pending, Record, RecordSink, Topic,
};

use super::read::{Positions, shares};
use super::{EmbeddedBroker, blocking, map_store, partition_index, to_i64};
use crate::api::{Result, TopicPartition};
use crate::encoded::EncodedPoll;
use crate::error::BrokerError;

/// Bytes an encoded poll reads at most (past that, the batch it stops in), shared
/// among the partitions with records. A copier's poll of 4096 records was 0.5 MB of
/// small ones and 4 MB of 1 KiB ones: the small ones paid a poll's fixed costs every
/// 4096 records, the big ones had left the core's cache (2 MiB of L2 here) by the
/// time they were written out. CPU per 1 KiB record, polls of 1 / 2 / 4 MiB:
/// 640–780 / 860–1180 / 860–1120 ns; 100 B records were alike at all three.
const POLL_BYTES: usize = 1 << 20;

/// Reads up to about `max_records` and [`POLL_BYTES`] from `positions` (advancing
/// them) in runs of whole stored batches, starting the round robin at partition
/// `start`.
pub(super) fn read_from(
    broker: &EmbeddedBroker,
    positions: &mut Positions,
    start: usize,
    max_records: usize,
) -> Result<Vec<EncodedPoll>> {
    let mut out = Vec::new();
    let shares = shares(broker, positions, start, max_records)?;
    let max_bytes = POLL_BYTES / shares.len().max(1);
    for share in shares {
        let part = share
            .topic
            .partition(partition_index(share.tp.partition)?)
            .map_err(map_store)?;
        let mut sink = Runs {
            out: &mut out,
            tp: share.tp,
            taken: 0,
            next: *share.pos,
        };
        part.read_into(*share.pos, share.quota, max_bytes, &mut sink)
            .map_err(map_store)?;
        *share.pos = sink.next;
    }
    Ok(out)
}

/// Appends `batch` to `partition` of `topic`; the offset of its first record.
pub(super) async fn produce(
    broker: &EmbeddedBroker,
    topic: &str,
    partition: i32,
    batch: &mut EncodedBatch,
) -> Result<i64> {
    let t = broker.topic(topic)?;
    let p = partition_index(partition)?;
    if p >= t.partition_count() {
        return Err(BrokerError::Invalid(format!(
            "topic '{topic}' has {} partitions; partition {p} does not exist",
            t.partition_count()
        )));
    }
    let base = if t.config().durability == Durability::None {
        // As `produce`: a write into the page cache, cheaper inline than handed off.
        t.partition(p)
            .map_err(map_store)?
            .append_encoded(batch)
            .map_err(map_store)?
    } else {
        // The blocking pool needs the batch; it comes back for the caller to reuse.
        let t = Arc::clone(&t);
        let mut owned = std::mem::take(batch);
        let (base, owned) = blocking(move || {
            let base = t
                .partition(p)
                .map_err(map_store)
                .and_then(|part| part.append_encoded(&mut owned).map_err(map_store));
            Ok((base, owned))
        })
        .await?;
        *batch = owned;
        base?
    };
    Ok(to_i64(base))
}

/// Appends each batch to its topic and partition, in order, and returns once all are
/// durable: one group commit of the store's journal for all of them.
pub(super) async fn produce_all(
    broker: &EmbeddedBroker,
    batches: &mut [(&str, i32, EncodedBatch)],
) -> Result<()> {
    let mut targets: Vec<(Arc<Topic>, u32)> = Vec::with_capacity(batches.len());
    let mut synced = false;
    for (topic, partition, _) in batches.iter() {
        let t = match targets.last() {
            Some((t, _)) if t.name() == *topic => Arc::clone(t),
            _ => broker.topic(topic)?,
        };
        let p = partition_index(*partition)?;
        t.partition(p).map_err(map_store)?;
        synced |= t.config().durability != Durability::None;
        targets.push((t, p));
    }
    let append_all = move |targets: &[(Arc<Topic>, u32)], owned: &mut [EncodedBatch]| {
        let mut pending = Pending::default();
        for ((t, p), batch) in targets.iter().zip(owned.iter_mut()) {
            t.partition(*p)
                .and_then(|part| part.append_encoded_pending(batch, &mut pending))
                .map_err(map_store)?;
        }
        pending.wait().map_err(map_store)
    };
    let mut owned: Vec<EncodedBatch> = batches
        .iter_mut()
        .map(|(_, _, b)| std::mem::take(b))
        .collect();
    let (result, owned) = if synced {
        // The blocking pool needs the batches; they come back for the caller to reuse.
        blocking(move || {
            let r = append_all(&targets, &mut owned);
            Ok((r, owned))
        })
        .await?
    } else {
        // As `produce`: writes into the page cache, cheaper inline than handed off.
        let r = append_all(&targets, &mut owned);
        (r, owned)
    };
    for ((_, _, slot), b) in batches.iter_mut().zip(owned) {
        *slot = b;
    }
    result
}

/// A read's runs go straight into the poll's result.
struct Runs<'a> {
    out: &'a mut Vec<EncodedPoll>,
    tp: &'a TopicPartition,
    taken: usize,
    /// The offset after the last record taken.
    next: u64,
}

impl RecordSink for Runs<'_> {
    fn taken(&self) -> usize {
        self.taken
    }

    fn take(&mut self, _offset: u64, _record: Record) {
        // Not called: the store hands a sink that takes encoded records only those.
    }

    fn takes_encoded(&self) -> bool {
        true
    }

    fn take_encoded(&mut self, records: EncodedRecords) {
        self.taken += records.len();
        self.next = records.next_offset();
        self.out.push(EncodedPoll {
            tp: self.tp.clone(),
            records,
        });
    }
}
