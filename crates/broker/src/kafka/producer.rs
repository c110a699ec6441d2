//! The producer: librdkafka's, with one acknowledgement per `send` instead of one per
//! record.
//!
//! rdkafka's `FutureProducer` gives every record a oneshot channel and a future, which a
//! send then awaits one after another: the channels, the futures and their wake-ups were
//! about a sixth of a Kafka copier's client CPU. Here every record of a send carries its
//! place in the send's [`Batch`] as its delivery opaque; librdkafka's delivery report
//! (on the producer's polling thread) fills in the record's partition and offset, and
//! the last one of the batch wakes its waiter, once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use tokio::sync::Notify;

use super::LogContext;
use crate::api::Delivered;

/// The producer a `KafkaBroker` shares between its clones.
pub(crate) type Producer = ThreadedProducer<LogContext>;

/// What librdkafka answers for one record: where it was written, or why not.
pub(crate) type Outcome = Result<Delivered, KafkaError>;

/// The records of one send and what librdkafka answered for each so far.
pub(crate) struct Batch {
    outcomes: Mutex<Vec<Option<Outcome>>>,
    /// Records not answered yet, plus one while the send is still handing records over
    /// (so the batch cannot look complete before its last record is queued).
    waiting: AtomicUsize,
    done: Notify,
}

impl Batch {
    pub(crate) fn new(records: usize) -> Arc<Batch> {
        Arc::new(Batch {
            outcomes: Mutex::new((0..records).map(|_| None).collect()),
            waiting: AtomicUsize::new(records + 1),
            done: Notify::new(),
        })
    }

    /// Record `index`'s place in this batch, to travel with it through librdkafka.
    pub(crate) fn slot(self: &Arc<Self>, index: usize) -> Box<Slot> {
        Box::new(Slot {
            batch: Some(Arc::clone(self)),
            index,
        })
    }

    /// Every record was handed to librdkafka, or the send gave up: records that were
    /// not are never answered (`answers` gives `None` for them).
    pub(crate) fn handed_over(&self, not_queued: usize) {
        self.count_down(1 + not_queued);
    }

    /// Waits until every queued record is answered; their outcomes in record order
    /// (`None` for records that were never queued).
    pub(crate) async fn answers(&self) -> Vec<Option<Outcome>> {
        while self.waiting.load(Ordering::Acquire) != 0 {
            // `notify_one` keeps a permit when nobody waits yet: a count down to zero
            // between the load and this wait is not lost.
            self.done.notified().await;
        }
        std::mem::take(&mut *self.lock())
    }

    fn answer(&self, index: usize, outcome: Outcome) {
        if let Some(o) = self.lock().get_mut(index) {
            *o = Some(outcome);
        }
        self.count_down(1);
    }

    fn count_down(&self, n: usize) {
        if self.waiting.fetch_sub(n, Ordering::AcqRel) == n {
            self.done.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Outcome>>> {
        // Every update sets one whole entry: a poisoned list is still sound.
        self.outcomes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A record's place in its batch (the record's delivery opaque). Answered by the
/// delivery report; one dropped unanswered (a producer torn down with the record in
/// its queue) answers that the record was not acknowledged, so no waiter hangs.
pub(crate) struct Slot {
    batch: Option<Arc<Batch>>,
    index: usize,
}

impl Slot {
    fn answer(&mut self, outcome: Outcome) {
        if let Some(batch) = self.batch.take() {
            batch.answer(self.index, outcome);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(batch) = self.batch.take() {
            batch.answer(self.index, Err(KafkaError::Canceled));
        }
    }
}

/// Delivery reports go to their batches (the producer's context is the one that sends
/// librdkafka's log lines to `tracing`).
impl ProducerContext for LogContext {
    type DeliveryOpaque = Box<Slot>;

    fn delivery(&self, result: &DeliveryResult<'_>, mut slot: Box<Slot>) {
        let outcome = match result {
            Ok(m) => Ok(Delivered {
                partition: m.partition(),
                offset: m.offset(),
            }),
            Err((e, _)) => Err(e.clone()),
        };
        slot.answer(outcome);
    }
}
