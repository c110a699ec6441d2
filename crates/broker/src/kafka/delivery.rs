//! The delivery side of the producer: each send's [`Batch`], the slot each record
//! carries through librdkafka, and the thread that serves librdkafka's delivery
//! reports.
//!
//! Every record of a send carries its slot of the send's batch (an array made once per
//! send, no allocation per record) as its delivery opaque; librdkafka's delivery
//! report fills in the record's partition and offset, and the last one of the batch
//! wakes its waiter, once.
//!
//! The reports are served on a thread of the producer's own ([`Poller`]): it sleeps
//! until librdkafka's queue gets something (librdkafka's callback for a queue that
//! stops being empty) and serves everything there, so it neither wakes up on a clock
//! nor holds a closing producer for a poll's timeout (rdkafka's `ThreadedProducer`
//! polls in 100 ms steps, which a process then waited out at its exit).

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::bindings as rd;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};
use tokio::sync::Notify;

use super::LogContext;
use crate::api::{Delivered, Header, ProduceRecord};

/// A send under way: its batch, and how many of its records are neither handed over
/// nor counted as not queued. Dropped (the send done, failed or given up half-way), it
/// counts those as never queued and ends the handing over, so the batch completes
/// with its last answer and is freed.
pub(crate) struct Sending {
    pub(crate) batch: Arc<Batch>,
    pub(crate) left: usize,
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.batch.not_queued(self.left);
        self.batch.count_down(1);
    }
}

/// The records of one send and what librdkafka answered for each so far.
pub(crate) struct Batch {
    slots: Box<[Slot]>,
    /// Records not answered yet, plus one while the send is still handing records over
    /// (so the batch cannot look complete before its last record is queued).
    waiting: AtomicUsize,
    done: Notify,
    /// The failures, by record (rare: kept apart from the slots).
    failed: Mutex<Vec<(usize, KafkaError)>>,
    /// Records to send again (`take_unconfirmed`), by record, with a copy of each (rare).
    unconfirmed: Mutex<Vec<(usize, ProduceRecord)>>,
    /// The partitions of the batch's topic the producer has placed a record in.
    placed: Arc<Placed>,
}

/// Which partitions of a topic a producer has had a record acknowledged in with its
/// offset. Until then the broker may hold no state for the producer there, and an
/// acknowledgement without an offset is suspect (see `unconfirmed`); after, the broker
/// checks the producer's sequence numbers, and such an acknowledgement is true.
pub(crate) struct Placed(Box<[AtomicBool]>);

impl Placed {
    /// Room for `partitions`, marked as in `from`.
    pub(crate) fn new(partitions: usize, from: Option<&Placed>) -> Arc<Placed> {
        Arc::new(Placed(
            (0..partitions)
                .map(|p| AtomicBool::new(from.is_some_and(|f| f.placed(p))))
                .collect(),
        ))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    fn placed(&self, partition: usize) -> bool {
        self.0
            .get(partition)
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    fn mark(&self, partition: usize) {
        // A load first: the flag is written once, read for every record after.
        if let Some(f) = self.0.get(partition)
            && !f.load(Ordering::Relaxed)
        {
            f.store(true, Ordering::Relaxed);
        }
    }
}

/// librdkafka's offset of a record no response has placed (`RD_KAFKA_OFFSET_INVALID`):
/// what an implicit acknowledgement leaves. A record the broker called a duplicate
/// gets the response's offset, -1.
const NEVER_PLACED: i64 = -1001;

/// One record's place in its batch, and where it was written.
struct Slot {
    /// The batch this slot is part of (it lives as long as the batch's records are
    /// with librdkafka: see `Batch::count_down`).
    batch: *const Batch,
    index: usize,
    answered: AtomicBool,
    partition: AtomicI32,
    offset: AtomicI64,
}

// SAFETY: `batch` points at the `Batch` that owns the slot, which is itself shared
// between threads (its other fields are atomics or locked).
unsafe impl Send for Slot {}
// SAFETY: as above.
unsafe impl Sync for Slot {}

impl Batch {
    /// A batch of `records` records, held for librdkafka until each record handed
    /// over is answered.
    pub(crate) fn new(records: usize, placed: Arc<Placed>) -> Arc<Batch> {
        let batch = Arc::new_cyclic(|me| Batch {
            slots: (0..records)
                .map(|index| Slot {
                    batch: me.as_ptr(),
                    index,
                    answered: AtomicBool::new(false),
                    partition: AtomicI32::new(-1),
                    offset: AtomicI64::new(-1),
                })
                .collect(),
            waiting: AtomicUsize::new(records + 1),
            done: Notify::new(),
            failed: Mutex::new(Vec::new()),
            unconfirmed: Mutex::new(Vec::new()),
            placed,
        });
        // The records' own reference, given back by the count down to zero.
        let _ = Arc::into_raw(Arc::clone(&batch));
        batch
    }

    /// Record `index`'s slot, as the delivery opaque that travels with it.
    pub(crate) fn slot(&self, index: usize) -> *mut c_void {
        self.slots
            .get(index)
            .map_or(ptr::null_mut(), |s| ptr::from_ref(s).cast_mut().cast())
    }

    /// `n` records will never be answered: they were not handed to librdkafka
    /// (`delivered` reports them as not acknowledged).
    pub(crate) fn not_queued(&self, n: usize) {
        if n > 0 {
            self.count_down(n);
        }
    }

    /// Waits until every queued record is answered; where each was written, in record
    /// order, or the first record's failure (`None`: never queued or never answered).
    pub(crate) async fn delivered(&self) -> Result<Vec<Delivered>, (usize, Option<KafkaError>)> {
        while self.waiting.load(Ordering::Acquire) != 0 {
            // `notify_one` keeps a permit when nobody waits yet: a count down to zero
            // between the load and this wait is not lost.
            self.done.notified().await;
        }
        let mut failed = std::mem::take(&mut *lock(&self.failed));
        failed.sort_by_key(|(i, _)| *i);
        let mut failed = failed.into_iter().peekable();
        let mut out = Vec::with_capacity(self.slots.len());
        for (i, s) in self.slots.iter().enumerate() {
            if failed.peek().is_some_and(|(at, _)| *at == i) {
                return Err((i, failed.next().map(|(_, e)| e)));
            }
            if !s.answered.load(Ordering::Acquire) {
                return Err((i, None));
            }
            out.push(Delivered {
                partition: s.partition.load(Ordering::Relaxed),
                offset: s.offset.load(Ordering::Relaxed),
            });
        }
        Ok(out)
    }

    /// The records librdkafka acknowledged implicitly in a partition where the producer
    /// had placed none yet, each with its index and its partition set, to be sent again
    /// (see `unconfirmed` for why).
    pub(crate) fn take_unconfirmed(&self) -> Vec<(usize, ProduceRecord)> {
        std::mem::take(&mut *lock(&self.unconfirmed))
    }

    fn count_down(&self, n: usize) {
        if self.waiting.fetch_sub(n, Ordering::AcqRel) == n {
            self.done.notify_one();
            // SAFETY: the reference `new` leaked for the records; nothing of librdkafka's
            // refers to this batch any more (every record is answered or was never
            // queued), and the count reaches zero once.
            drop(unsafe { Arc::from_raw(ptr::from_ref(self)) });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is one whole push: a poisoned list is still sound.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Delivery reports go to their batches (the producer's context is the one that sends
/// librdkafka's log lines to `tracing`).
impl ProducerContext for LogContext {
    /// The record's slot in its batch, as an address.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        // SAFETY: every record is produced with a slot of a live batch as its opaque
        // (`Producer::enqueue`), and the batch lives until this record is answered.
        let Some(slot) = (unsafe { (slot as *const Slot).as_ref() }) else {
            return;
        };
        // SAFETY: as above: the batch that owns the slot.
        let batch = unsafe { &*slot.batch };
        match result {
            Ok(m) => {
                let partition = usize::try_from(m.partition()).unwrap_or(usize::MAX);
                if m.offset() >= 0 {
                    batch.placed.mark(partition);
                } else if m.offset() == NEVER_PLACED && !batch.placed.placed(partition) {
                    lock(&batch.unconfirmed).push((slot.index, copy(m)));
                }
                slot.partition.store(m.partition(), Ordering::Relaxed);
                slot.offset.store(m.offset(), Ordering::Relaxed);
                slot.answered.store(true, Ordering::Release);
            }
            Err((e, _)) => lock(&batch.failed).push((slot.index, e.clone())),
        }
        batch.count_down(1);
    }
}

/// A copy of an acknowledged record, to its partition, to be sent again.
fn copy(m: &BorrowedMessage<'_>) -> ProduceRecord {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header::new(h.key, Bytes::copy_from_slice(h.value.unwrap_or_default())))
                .collect()
        })
        .unwrap_or_default();
    ProduceRecord {
        partition: Some(m.partition()),
        key: m.key().map(Bytes::copy_from_slice),
        value: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
        headers,
        timestamp: m.timestamp().to_millis(),
    }
}

/// The thread that serves a producer's queue of events: delivery reports (to their
/// batches), errors and librdkafka's log lines.
pub(crate) struct Poller {
    wake: Arc<Wake>,
    /// librdkafka's main queue of the client, whose callback wakes the thread.
    queue: MainQueue,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the polling thread sleeps on.
#[derive(Default)]
struct Wake {
    /// Set when the queue got something (or the poller stops) since the thread looked.
    pending: Mutex<bool>,
    ready: Condvar,
    stop: AtomicBool,
}

impl Wake {
    fn set(&self) {
        *lock(&self.pending) = true;
        self.ready.notify_one();
    }
}

/// A reference to a client's main queue.
struct MainQueue(*mut rd::rd_kafka_queue_t);

// SAFETY: librdkafka's queue handles may be used from any thread (it locks
// internally); this one is given back in `Poller::stop`, after the thread is gone.
unsafe impl Send for MainQueue {}
// SAFETY: as above.
unsafe impl Sync for MainQueue {}

/// Called by librdkafka, from its own threads, when the main queue gets its first
/// event. librdkafka's rule for this callback: no long work, no librdkafka calls.
unsafe extern "C" fn on_event(_client: *mut rd::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `Wake` of a live `Poller` (`Arc::as_ptr`), and the
    // callback is switched off in `Poller::stop` before that `Arc` can go.
    let wake = unsafe { &*(opaque as *const Wake) };
    wake.set();
}

/// How long the polling thread sleeps at most without a wake-up: a bound, should a
/// wake-up ever be missed.
const SLEEP_AT_MOST: Duration = Duration::from_secs(1);

/// Poll steps of a thread that has no queue to be woken by (librdkafka gave none).
const FALLBACK_STEP: Duration = Duration::from_millis(100);

impl Poller {
    /// Starts serving `producer`'s events on a new thread.
    pub(crate) fn start(producer: Arc<BaseProducer<LogContext>>) -> std::io::Result<Poller> {
        let wake = Arc::new(Wake::default());
        let native = rdkafka::producer::Producer::client(producer.as_ref()).native_ptr();
        // SAFETY: a live client; the queue reference is given back in `stop`, and the
        // callback's `Wake` outlives it (the callback is switched off there first).
        let queue = unsafe {
            let q = rd::rd_kafka_queue_get_main(native);
            if !q.is_null() {
                rd::rd_kafka_queue_cb_event_enable(
                    q,
                    Some(on_event),
                    Arc::as_ptr(&wake) as *mut c_void,
                );
            }
            MainQueue(q)
        };
        let w = Arc::clone(&wake);
        let q = queue.0 as usize;
        let thread = std::thread::Builder::new()
            .name("producer polling thread".into())
            .spawn(move || serve(&producer, &w, q as *mut rd::rd_kafka_queue_t));
        let mut poller = Poller {
            wake,
            queue,
            thread: None,
        };
        poller.thread = Some(thread?);
        Ok(poller)
    }

    /// Stops the thread once it has served what is queued, and gives the queue back.
    /// Called before the client is destroyed.
    pub(crate) fn stop(&mut self) {
        self.wake.stop.store(true, Ordering::Release);
        self.wake.set();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if !self.queue.0.is_null() {
            // SAFETY: the queue is live until here; the callback goes first, then the
            // reference, each once.
            unsafe {
                rd::rd_kafka_queue_cb_event_enable(self.queue.0, None, ptr::null_mut());
                rd::rd_kafka_queue_destroy(self.queue.0);
            }
            self.queue.0 = ptr::null_mut();
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The polling thread: serves every event queued, then sleeps until the queue's
/// callback (or `stop`) wakes it.
fn serve(producer: &BaseProducer<LogContext>, wake: &Wake, queue: *mut rd::rd_kafka_queue_t) {
    if queue.is_null() {
        // No queue to be woken by: rdkafka's own way, in steps.
        while !wake.stop.load(Ordering::Acquire) {
            producer.poll(FALLBACK_STEP);
        }
        return;
    }
    loop {
        // SAFETY: the queue stays live until this thread is joined.
        while unsafe { rd::rd_kafka_queue_length(queue) } > 0 {
            // One event, without waiting (delivery reports go to their batches).
            producer.poll(Duration::ZERO);
        }
        if wake.stop.load(Ordering::Acquire) {
            return;
        }
        let mut pending = lock(&wake.pending);
        if !*pending {
            pending = wake
                .ready
                .wait_timeout(pending, SLEEP_AT_MOST)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        *pending = false;
    }
}
