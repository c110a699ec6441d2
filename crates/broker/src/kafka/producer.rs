//! The producer: librdkafka's, handed records through a topic handle kept per topic,
//! with one acknowledgement per `send` instead of one per record (see `delivery`).
//!
//! rdkafka's `send` copies the topic name into a new C string for every record, and
//! librdkafka then looks the topic up by that name under its client lock, and reads
//! the clocks, for every record; here a topic handle is made once per topic, records
//! without headers or timestamps go to librdkafka a run at a time
//! (`rd_kafka_produce_batch`) and the others one by one through `rd_kafka_producev`.
//!
//! This module, `delivery`, `fetched` and one look-up in `admin` are the Kafka backend's
//! only `unsafe`: the calls below are librdkafka's documented C API, on handles the
//! [`Producer`] owns; topic handles are given back before the client is destroyed.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CString, c_void};
use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::bindings as rd;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka::types::RDKafkaRespErr;

use super::LogContext;
use super::delivery::{Batch, Placed, Poller, Sending};
use crate::api::ProduceRecord;

/// The producer a `KafkaBroker` shares between its clones: librdkafka's client and a
/// topic handle per topic it has sent to.
pub(crate) struct Producer {
    /// Destroyed (in `Drop`) before `client` is; with each, the partitions this
    /// producer has had a record placed in.
    topics: Mutex<HashMap<String, (TopicHandle, Arc<Placed>)>>,
    /// Serves the delivery reports; stopped (in `Drop`) before `client` goes.
    poller: Poller,
    client: Arc<BaseProducer<LogContext>>,
}

/// librdkafka's handle of one topic of the producer.
#[derive(Clone, Copy)]
struct TopicHandle(*mut rd::rd_kafka_topic_t);

// SAFETY: librdkafka's topic handles may be used from any thread (it locks
// internally); they live until the producer is dropped, which no send outlives.
unsafe impl Send for TopicHandle {}

/// librdkafka's `RD_KAFKA_PARTITION_UA`: its partitioner picks the partition.
const PARTITION_UNASSIGNED: i32 = -1;

/// Why records were not all handed to librdkafka.
pub(crate) enum Refused {
    /// librdkafka's queue is full (it empties as acknowledgements come): the records
    /// before `next` were handed over, the others were not yet.
    QueueFull { next: usize },
    /// The send gave up; the records not handed over are counted as such in the batch.
    Other(KafkaError),
}

/// Plain records (no headers, no timestamp) handed to librdkafka in one call at most:
/// `rd_kafka_produce_batch` reads the clocks and locks the topic once per call, where
/// `rd_kafka_producev` does it for every record.
const PLAIN_RUN: usize = 1024;

impl Producer {
    pub(crate) fn new(client: BaseProducer<LogContext>) -> std::io::Result<Producer> {
        let client = Arc::new(client);
        Ok(Producer {
            topics: Mutex::new(HashMap::new()),
            poller: Poller::start(Arc::clone(&client))?,
            client,
        })
    }

    /// The client, for what is not sending (metadata, flush).
    pub(crate) fn client(&self) -> &rdkafka::client::Client<LogContext> {
        self.client.client()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (TopicHandle, Arc<Placed>)>> {
        // Every entry is inserted whole: a poisoned map is still sound.
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The handle of `topic`, made on first use, and its placed partitions (room for
    /// `partitions` of them).
    fn topic(
        &self,
        topic: &str,
        partitions: usize,
    ) -> Result<(TopicHandle, Arc<Placed>), KafkaError> {
        let mut topics = self.lock();
        if let Some((h, placed)) = topics.get_mut(topic) {
            if placed.len() < partitions {
                *placed = Placed::new(partitions, Some(placed));
            }
            return Ok((*h, Arc::clone(placed)));
        }
        let invalid = || KafkaError::MessageProduction(RDKafkaErrorCode::InvalidArgument);
        let name = CString::new(topic).map_err(|_| invalid())?;
        // SAFETY: a live client and a NUL-terminated name; the handle is given back in
        // `Drop`, before the client is destroyed.
        let handle = unsafe {
            rd::rd_kafka_topic_new(self.client().native_ptr(), name.as_ptr(), ptr::null_mut())
        };
        if handle.is_null() {
            return Err(invalid());
        }
        let placed = Placed::new(partitions, None);
        topics.insert(
            topic.to_string(),
            (TopicHandle(handle), Arc::clone(&placed)),
        );
        Ok((TopicHandle(handle), placed))
    }

    /// Hands the records to librdkafka, in order, and returns their batch, which
    /// learns what librdkafka answers for each. A full queue is waited out; a record
    /// refused for another reason ends the send with that error (the records after it
    /// are not sent).
    pub(crate) async fn send(
        &self,
        topic: &str,
        partitions: usize,
        records: &[ProduceRecord],
    ) -> Result<Arc<Batch>, KafkaError> {
        let (handle, placed) = self.topic(topic, partitions)?;
        let mut sending = Sending {
            batch: Batch::new(records.len(), placed),
            left: records.len(),
        };
        loop {
            let from = records.len() - sending.left;
            match self.enqueue(handle, records, &sending.batch, from) {
                Ok(()) => sending.left = 0,
                Err(Refused::QueueFull { next }) => {
                    sending.left = records.len() - next;
                    // The queue empties as acknowledgements come.
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                    continue;
                }
                Err(Refused::Other(e)) => {
                    sending.left = 0;
                    return Err(e);
                }
            }
            return Ok(Arc::clone(&sending.batch));
        }
    }

    /// Hands `records[from..]` to librdkafka in order, each answering to its slot of
    /// `batch`.
    fn enqueue(
        &self,
        handle: TopicHandle,
        records: &[ProduceRecord],
        batch: &Batch,
        from: usize,
    ) -> Result<(), Refused> {
        let mut at = from;
        let mut run = Vec::new();
        while let Some(rest) = records.get(at..).filter(|r| !r.is_empty()) {
            let plain = rest
                .iter()
                .take(PLAIN_RUN)
                .take_while(|r| r.headers.is_empty() && r.timestamp.is_none())
                .count();
            // Records this call answers for: the run, or the one record.
            let (done, taken) = if plain > 1 {
                let done = self.produce_plain(handle, &rest[..plain], batch, at, &mut run);
                (done, plain)
            } else {
                let done = self.produce_one(handle, &rest[0], batch.slot(at));
                (done.map(|()| 1).map_err(|code| (0, code)), 0)
            };
            match done {
                Ok(n) => at += n,
                Err((queued, RDKafkaErrorCode::QueueFull)) => {
                    return Err(Refused::QueueFull { next: at + queued });
                }
                Err((_, code)) => {
                    batch.not_queued(records.len() - at - taken);
                    return Err(Refused::Other(KafkaError::MessageProduction(code)));
                }
            }
        }
        Ok(())
    }

    /// One record through `rd_kafka_producev`, which takes headers and a timestamp.
    fn produce_one(
        &self,
        handle: TopicHandle,
        r: &ProduceRecord,
        slot: *mut c_void,
    ) -> Result<(), RDKafkaErrorCode> {
        let headers = headers(r);
        let (key, key_len) = key(r);
        // SAFETY: a live client and topic handle; librdkafka copies the key and value
        // (`MSG_F_COPY`) and takes the header list when the record is accepted; the
        // opaque is a slot of a batch that stays alive until every record handed over
        // is answered (`Batch::count_down`).
        let err = unsafe {
            rd::rd_kafka_producev(
                self.client().native_ptr(),
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_RKT,
                handle.0,
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_PARTITION,
                r.partition.unwrap_or(PARTITION_UNASSIGNED),
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_MSGFLAGS,
                rd::RD_KAFKA_MSG_F_COPY,
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE,
                value(r),
                r.value.len(),
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_KEY,
                key,
                key_len,
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_OPAQUE,
                slot,
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TIMESTAMP,
                r.timestamp.unwrap_or(0),
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADERS,
                headers,
                rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_END,
            )
        };
        if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Ok(());
        }
        if !headers.is_null() {
            // SAFETY: refused, so the list is still ours.
            unsafe { rd::rd_kafka_headers_destroy(headers) };
        }
        Err(err.into())
    }

    /// Plain records (`records[i]` is record `first + i` of `batch`) through
    /// `rd_kafka_produce_batch`. Returns how many were handed over; on an error, how
    /// many before the first refused one were, and why it was refused (a full queue
    /// refuses every record after it too; a record refused for another reason is
    /// counted as not queued here, as are the others the call refused).
    fn produce_plain(
        &self,
        handle: TopicHandle,
        records: &[ProduceRecord],
        batch: &Batch,
        first: usize,
        run: &mut Vec<rd::rd_kafka_message_t>,
    ) -> Result<usize, (usize, RDKafkaErrorCode)> {
        run.clear();
        run.extend(records.iter().enumerate().map(|(i, r)| {
            let (key, key_len) = key(r);
            rd::rd_kafka_message_t {
                err: RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
                rkt: ptr::null_mut(),
                partition: r.partition.unwrap_or(PARTITION_UNASSIGNED),
                payload: value(r),
                len: r.value.len(),
                key,
                key_len,
                offset: 0,
                _private: batch.slot(first + i),
            }
        }));
        let count = i32::try_from(run.len()).unwrap_or(i32::MAX);
        // SAFETY: a live topic handle and `count` initialised messages; librdkafka
        // copies each key and value (`MSG_F_COPY`), takes each record's partition
        // (`MSG_F_PARTITION`; unassigned ones go through the partitioner) and sets
        // `err` per message.
        unsafe {
            rd::rd_kafka_produce_batch(
                handle.0,
                PARTITION_UNASSIGNED,
                rd::RD_KAFKA_MSG_F_COPY | rd::RD_KAFKA_MSG_F_PARTITION,
                run.as_mut_ptr(),
                count,
            );
        }
        let no_error = RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR;
        let Some(refused) = run.iter().position(|m| m.err != no_error) else {
            return Ok(run.len());
        };
        let code = RDKafkaErrorCode::from(run[refused].err);
        if code != RDKafkaErrorCode::QueueFull {
            // Records after the refused one may have been taken: they will be answered.
            let not_queued = run[refused..].iter().filter(|m| m.err != no_error).count();
            batch.not_queued(not_queued);
        }
        Err((refused, code))
    }
}

/// A record's value for librdkafka. An empty value is sent as empty, not null.
fn value(r: &ProduceRecord) -> *mut c_void {
    r.value.as_ptr().cast_mut().cast()
}

/// A record's key for librdkafka (null when it has none).
fn key(r: &ProduceRecord) -> (*mut c_void, usize) {
    match r.key.as_deref() {
        Some(k) => (k.as_ptr().cast_mut().cast(), k.len()),
        None => (ptr::null_mut(), 0),
    }
}

/// The record's headers as a librdkafka header list (null when it has none).
fn headers(r: &ProduceRecord) -> *mut rd::rd_kafka_headers_t {
    if r.headers.is_empty() {
        return ptr::null_mut();
    }
    // SAFETY: a new list, filled with copies of the names and values (librdkafka copies
    // both; the lengths are given, so nothing needs a NUL).
    unsafe {
        let list = rd::rd_kafka_headers_new(r.headers.len());
        for h in &r.headers {
            rd::rd_kafka_header_add(
                list,
                h.key.as_ptr().cast(),
                isize::try_from(h.key.len()).unwrap_or(isize::MAX),
                h.value.as_ptr().cast(),
                isize::try_from(h.value.len()).unwrap_or(isize::MAX),
            );
        }
        list
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.poller.stop();
        for (_, (h, _)) in self.lock().drain() {
            // SAFETY: each handle was made by `topic` and is given back once, before
            // `client` (the next field) is destroyed.
            unsafe { rd::rd_kafka_topic_destroy(h.0) };
        }
    }
}

/// How long a send waits for room when librdkafka's queue is full.
const QUEUE_FULL_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);
