//! The records librdkafka has fetched for a consumer, taken many at a time.
//!
//! rdkafka hands out one message per poll through librdkafka's event API: a queue
//! poll, an `Arc` and two clock reads per record, about 0.3 µs more than librdkafka's
//! own batch call. For a copier on Kafka that was a fifth of the client's CPU. So a
//! consumer's partitions forward their fetched records to a queue of its own, which
//! `take` drains with `rd_kafka_consume_batch_queue`; rebalances, commits and errors
//! stay on the consumer queue, which rdkafka keeps serving (its rebalance handling
//! must see them: librdkafka's batch call would answer a rebalance itself, by
//! unassigning every partition).
//!
//! A partition forwards from the moment it is assigned (`forward`, called before
//! librdkafka starts fetching it, which keeps an application's forward); a partition
//! not forwarded delivers to the consumer queue as usual, so nothing is lost if a
//! forward fails. Records of a revoked or sought partition that were fetched before are
//! dropped by librdkafka's version check, in this queue as in the consumer queue.
//!
//! Like `producer`, `delivery` and one look-up in `admin`, this uses `unsafe`: the calls
//! below are librdkafka's documented C API, on handles this type owns and releases
//! before the client is destroyed (`release`).

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_void};
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::bindings as rd;
use rdkafka::error::RDKafkaErrorCode;
use tokio::sync::Notify;

/// librdkafka's handle of a client, as rdkafka's `Client::native_ptr` gives it.
pub(crate) type NativeClient = *mut rd::rd_kafka_t;

/// A consumer's own queue of fetched records.
pub(crate) struct Fetched {
    /// `None` once released; the lock also orders `forward` and `take` against
    /// `release` (a handle is never used after it was destroyed).
    handles: Mutex<Option<Handles>>,
    /// Told when the queue goes from empty to not empty; held here for the
    /// callback, which is switched off before the queue is destroyed.
    _wake: Arc<Notify>,
}

struct Handles {
    client: NativeClient,
    queue: *mut rd::rd_kafka_queue_t,
    /// The consumer queue (rebalances, commits, librdkafka's log lines), only to ask
    /// whether it holds anything.
    events: *mut rd::rd_kafka_queue_t,
}

// SAFETY: librdkafka's client and queue handles may be used from any thread
// (librdkafka locks internally); the lock above keeps them from being used after
// `release`.
unsafe impl Send for Handles {}

/// One record taken from the queue, borrowed from librdkafka until `take`'s callback
/// returns.
pub(crate) struct FetchedRecord<'a> {
    message: &'a rd::rd_kafka_message_t,
}

/// What `take` found: a record, or an error librdkafka reports for a partition.
pub(crate) enum Taken<'a> {
    Record(FetchedRecord<'a>),
    Error(RDKafkaErrorCode, String),
}

/// Called by librdkafka, from its own threads, when the queue gets its first op.
/// librdkafka's rule for this callback: no long work, no librdkafka calls.
unsafe extern "C" fn on_nonempty(_client: NativeClient, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `Notify` of a live `Fetched` (`Arc::as_ptr`), and the
    // callback is switched off in `release` before that `Arc` can go.
    let wake = unsafe { &*(opaque as *const Notify) };
    wake.notify_one();
}

impl Fetched {
    /// A queue for `client`'s fetched records; `wake` is told when records arrive.
    ///
    /// `client` must be a live consumer handle that outlives this queue until
    /// `release` (the owner calls it before the client is dropped).
    pub(crate) fn new(client: NativeClient, wake: Arc<Notify>) -> Fetched {
        // SAFETY: `client` is a live consumer; the queue is new, the consumer queue a
        // new reference to it: both are given back in `release` (or here, if the
        // other one could not be had).
        let (queue, events) = unsafe {
            (
                rd::rd_kafka_queue_new(client),
                rd::rd_kafka_queue_get_consumer(client),
            )
        };
        let handles = if queue.is_null() || events.is_null() {
            // SAFETY: each handle is live if not null, and not used again.
            unsafe {
                if !queue.is_null() {
                    rd::rd_kafka_queue_destroy(queue);
                }
                if !events.is_null() {
                    rd::rd_kafka_queue_destroy(events);
                }
            }
            None
        } else {
            // SAFETY: the queue is live; `wake` lives as long as `self` and the callback
            // is switched off in `release`, before the queue is destroyed.
            unsafe {
                rd::rd_kafka_queue_cb_event_enable(
                    queue,
                    Some(on_nonempty),
                    Arc::as_ptr(&wake) as *mut c_void,
                );
            }
            Some(Handles {
                client,
                queue,
                events,
            })
        };
        Fetched {
            handles: Mutex::new(handles),
            _wake: wake,
        }
    }

    fn handles(&self) -> MutexGuard<'_, Option<Handles>> {
        // A panic while the lock was held left the handles as they were.
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `topic`/`partition` deliver its fetched records here. Call it before the
    /// partition is assigned. Where it does not take (a released queue, a name librdkafka
    /// cannot have), the records come through the consumer queue.
    pub(crate) fn forward(&self, topic: &str, partition: i32) {
        let handles = self.handles();
        let Some(h) = handles.as_ref() else {
            return;
        };
        let Ok(name) = CString::new(topic) else {
            return;
        };
        // SAFETY: the handles are live (checked under the lock); the partition's
        // queue handle is a new reference, given back right after forwarding it.
        unsafe {
            let partition_queue =
                rd::rd_kafka_queue_get_partition(h.client, name.as_ptr(), partition);
            if partition_queue.is_null() {
                return;
            }
            rd::rd_kafka_queue_forward(partition_queue, h.queue);
            rd::rd_kafka_queue_destroy(partition_queue);
        }
    }

    /// Hands up to `max` fetched records (or partition errors) to `each`, in the order
    /// librdkafka fetched them, without waiting.
    pub(crate) fn take(&self, max: usize, mut each: impl FnMut(Taken<'_>)) {
        let handles = self.handles();
        let Some(h) = handles.as_ref() else {
            return;
        };
        let mut batch = [ptr::null_mut::<rd::rd_kafka_message_t>(); TAKE_AT_ONCE];
        let mut taken = 0;
        while taken < max {
            let want = (max - taken).min(batch.len());
            // SAFETY: the queue is live (checked under the lock) and `batch` has room
            // for `want` pointers.
            let got =
                unsafe { rd::rd_kafka_consume_batch_queue(h.queue, 0, batch.as_mut_ptr(), want) };
            let Ok(got) = usize::try_from(got) else {
                break;
            };
            for &m in &batch[..got.min(want)] {
                // SAFETY: librdkafka returned `got` valid messages, each ours until
                // `rd_kafka_message_destroy`, which follows the callback's use.
                unsafe {
                    if let Some(message) = m.as_ref() {
                        if message.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                            each(Taken::Record(FetchedRecord { message }));
                        } else {
                            let text = cstr(rd::rd_kafka_message_errstr(message)).to_string();
                            each(Taken::Error(message.err.into(), text));
                        }
                    }
                    rd::rd_kafka_message_destroy(m);
                }
            }
            taken += got;
            if got < want {
                break;
            }
        }
    }

    /// Whether the consumer queue holds anything to serve. One `poll` of rdkafka
    /// serves one event and says nothing when it was a log line or a commit, so its
    /// answer alone cannot tell an empty queue; and an event left there would hold
    /// back the wake-up of the next (its callback fires when the queue stops being
    /// empty).
    pub(crate) fn events_waiting(&self) -> bool {
        let handles = self.handles();
        let Some(h) = handles.as_ref() else {
            return false;
        };
        // SAFETY: the handle is live (checked under the lock).
        unsafe { rd::rd_kafka_queue_length(h.events) > 0 }
    }

    /// Switches off the wake-ups and gives the queue back to librdkafka. Must run
    /// before the consumer is closed or dropped (there is no `Drop` doing it: this
    /// value lives in the client's context, which outlives the client); later
    /// `forward`s and `take`s do nothing. Records still queued are dropped (their
    /// offsets were not committed).
    pub(crate) fn release(&self) {
        if let Some(h) = self.handles().take() {
            // SAFETY: the queue is live until this call, which is its last use.
            unsafe {
                rd::rd_kafka_queue_cb_event_enable(h.queue, None, ptr::null_mut());
                rd::rd_kafka_queue_destroy(h.queue);
                // librdkafka: released before the consumer is closed.
                rd::rd_kafka_queue_destroy(h.events);
            }
        }
    }
}

/// Records per `rd_kafka_consume_batch_queue` call.
const TAKE_AT_ONCE: usize = 1024;

/// A C string librdkafka owns, as text (empty when null, lossy when not UTF-8).
///
/// # Safety
/// `p` is null or a NUL-terminated string that outlives the returned borrow.
unsafe fn cstr<'a>(p: *const std::ffi::c_char) -> std::borrow::Cow<'a, str> {
    if p.is_null() {
        return std::borrow::Cow::Borrowed("");
    }
    // SAFETY: the caller's promise.
    unsafe { CStr::from_ptr(p) }.to_string_lossy()
}

/// Bytes librdkafka owns, as a slice (`None` when the pointer is null).
///
/// # Safety
/// `p` is null or points at `len` readable bytes that outlive the returned borrow.
unsafe fn bytes<'a>(p: *const c_void, len: usize) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller's promise.
    Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

impl<'a> FetchedRecord<'a> {
    /// librdkafka's handle of the record's topic: the same for every record of a
    /// topic, so a cache of names can be keyed by it.
    pub(crate) fn topic_handle(&self) -> usize {
        self.message.rkt as usize
    }

    pub(crate) fn topic(&self) -> std::borrow::Cow<'a, str> {
        // SAFETY: a fetched message's topic handle and its name live as long as the
        // message.
        unsafe { cstr(rd::rd_kafka_topic_name(self.message.rkt)) }
    }

    pub(crate) fn partition(&self) -> i32 {
        self.message.partition
    }

    pub(crate) fn offset(&self) -> i64 {
        self.message.offset
    }

    pub(crate) fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: the message's key pointer and length, valid while the message is.
        unsafe { bytes(self.message.key, self.message.key_len) }
    }

    pub(crate) fn value(&self) -> Option<&'a [u8]> {
        // SAFETY: as for the key.
        unsafe { bytes(self.message.payload, self.message.len) }
    }

    /// Milliseconds since the epoch, or -1 when the record has none.
    pub(crate) fn timestamp(&self) -> i64 {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a valid message and a place for the timestamp's type.
        unsafe { rd::rd_kafka_message_timestamp(self.message, &mut kind) }
    }

    /// Each header's name and value (`None` for a null value), in order.
    pub(crate) fn headers(&self, mut each: impl FnMut(&str, Option<&[u8]>)) {
        let mut headers: *mut rd::rd_kafka_headers_t = ptr::null_mut();
        // SAFETY: a valid message; the header list it gives belongs to the message.
        let err = unsafe { rd::rd_kafka_message_headers(self.message, &mut headers) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return;
        }
        // SAFETY: `headers` is the message's live list.
        let count = unsafe { rd::rd_kafka_header_cnt(headers) };
        for i in 0..count {
            let mut name: *const std::ffi::c_char = ptr::null();
            let mut value: *const c_void = ptr::null();
            let mut size = 0usize;
            // SAFETY: `i` is below the list's count; the name and value stay valid
            // while the message does.
            unsafe {
                if rd::rd_kafka_header_get_all(headers, i, &mut name, &mut value, &mut size)
                    != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                {
                    continue;
                }
                each(&cstr(name), bytes(value, size));
            }
        }
    }
}
