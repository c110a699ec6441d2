//! librdkafka's ListConsumerGroupOffsets through its C API, which rdkafka does not
//! wrap: every offset a group committed, without naming partitions, over the admin
//! client's connections. Groups are asked about together (each request is a
//! FindCoordinator and an OffsetFetch), so describing every group of a cluster costs
//! a few round trips, not one client per group.
//!
//! This is `unsafe`: librdkafka's documented calls on handles each call makes and
//! destroys itself (guards), over a client the caller keeps alive.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr;
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::types::RDKafkaRespErr;

use crate::api::TopicPartition;

/// Requests in flight at once: a coordinator answers each quickly, and a cluster may
/// have thousands of groups.
const IN_FLIGHT: usize = 64;

/// Why a group's offsets could not be had.
#[derive(Debug, Clone)]
pub(crate) enum Failed {
    Code(RDKafkaErrorCode),
    Other(String),
}

/// A group's committed offsets, sorted, or why there are none to show.
pub(crate) type Offsets = Result<Vec<(TopicPartition, i64)>, Failed>;

/// A librdkafka handle destroyed when dropped.
struct Owned<T> {
    ptr: *mut T,
    destroy: unsafe extern "C" fn(*mut T),
}

impl<T> Owned<T> {
    fn new(ptr: *mut T, destroy: unsafe extern "C" fn(*mut T)) -> Result<Owned<T>, Failed> {
        if ptr.is_null() {
            return Err(Failed::Other(
                "librdkafka could not make a handle for ListConsumerGroupOffsets".into(),
            ));
        }
        Ok(Owned { ptr, destroy })
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` is a live handle this guard owns (not null: checked in `new`),
        // destroyed once, with the function librdkafka pairs with its maker.
        unsafe { (self.destroy)(self.ptr) }
    }
}

/// Every offset each of `groups` committed, in the order of `groups`. `client` must
/// be a live client handle (rdkafka's `Client::native_ptr`) for the whole call.
pub(crate) fn committed_offsets(
    client: *mut rd::rd_kafka_t,
    groups: &[String],
    timeout: Duration,
) -> Vec<Offsets> {
    let mut out: Vec<Offsets> =
        vec![Err(Failed::Code(RDKafkaErrorCode::OperationTimedOut)); groups.len()];
    for (chunk, first) in groups.chunks(IN_FLIGHT).zip((0..).step_by(IN_FLIGHT)) {
        match ask(client, chunk, timeout) {
            Ok(answers) => {
                for (i, answer) in answers {
                    if let Some(slot) = out.get_mut(first + i) {
                        *slot = answer;
                    }
                }
            }
            Err(e) => {
                for slot in out.iter_mut().skip(first).take(chunk.len()) {
                    *slot = Err(e.clone());
                }
            }
        }
    }
    out
}

/// Sends one request per group on a queue of its own (each tagged with its index)
/// and collects the answers until all are in or `timeout` (and a margin) passed.
fn ask(
    client: *mut rd::rd_kafka_t,
    groups: &[String],
    timeout: Duration,
) -> Result<HashMap<usize, Offsets>, Failed> {
    let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: `client` is live (the caller's promise); the queue is this call's own,
    // destroyed by its guard once every answer is taken or abandoned (librdkafka
    // drops what arrives on a destroyed queue).
    let queue = Owned::new(
        unsafe { rd::rd_kafka_queue_new(client) },
        rd::rd_kafka_queue_destroy,
    )?;
    for (i, group) in groups.iter().enumerate() {
        let name = CString::new(group.as_str())
            .map_err(|_| Failed::Other(format!("group name {group:?} holds a NUL byte")))?;
        // SAFETY: librdkafka copies the NUL-terminated name; a null partition list asks
        // for every partition the group committed for.
        let request = Owned::new(
            unsafe { rd::rd_kafka_ListConsumerGroupOffsets_new(name.as_ptr(), ptr::null()) },
            rd::rd_kafka_ListConsumerGroupOffsets_destroy,
        )?;
        // SAFETY: `client` is live; the options are this request's, destroyed by their
        // guard after the call (librdkafka copies them into the request).
        let options = Owned::new(
            unsafe {
                rd::rd_kafka_AdminOptions_new(
                    client,
                    rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
                )
            },
            rd::rd_kafka_AdminOptions_destroy,
        )?;
        let mut errstr: [c_char; 256] = [0; 256];
        // SAFETY: the options are live; `errstr` is writable for the length given.
        let set = unsafe {
            rd::rd_kafka_AdminOptions_set_request_timeout(
                options.ptr,
                timeout_ms,
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if set != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(Failed::Code(set.into()));
        }
        // The answer's tag: the group's index plus one (never dereferenced; 0 would
        // read as "no tag").
        let tag = ptr::without_provenance_mut::<c_void>(i + 1);
        // SAFETY: the options are live; the tag is an integer librdkafka hands back.
        unsafe { rd::rd_kafka_AdminOptions_set_opaque(options.ptr, tag) };
        let mut requests = [request.ptr];
        // SAFETY: every handle is live; librdkafka copies the request and the options
        // (their guards still destroy ours) and posts the answer on `queue`.
        unsafe {
            rd::rd_kafka_ListConsumerGroupOffsets(
                client,
                requests.as_mut_ptr(),
                requests.len(),
                options.ptr,
                queue.ptr,
            );
        }
    }
    // librdkafka answers each request by its timeout; the margin only guards against
    // an answer that never comes.
    let deadline = Instant::now() + timeout + Duration::from_secs(1);
    let mut answers = HashMap::with_capacity(groups.len());
    while answers.len() < groups.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let wait = c_int::try_from(left.as_millis()).unwrap_or(c_int::MAX);
        // SAFETY: the queue is live; the event it gives (if any) is ours to destroy.
        let event = unsafe { rd::rd_kafka_queue_poll(queue.ptr, wait) };
        if event.is_null() {
            continue;
        }
        let event = Owned::new(event, rd::rd_kafka_event_destroy)?;
        // SAFETY: the event is live.
        let tag = unsafe { rd::rd_kafka_event_opaque(event.ptr) }.addr();
        let Some(i) = tag.checked_sub(1).filter(|i| *i < groups.len()) else {
            continue;
        };
        answers.insert(i, read(&event));
    }
    Ok(answers)
}

/// One answer: the group's offsets, or the error librdkafka reports.
fn read(event: &Owned<rd::rd_kafka_event_t>) -> Offsets {
    // SAFETY: the event is live.
    let err = unsafe { rd::rd_kafka_event_error(event.ptr) };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(Failed::Code(err.into()));
    }
    // SAFETY: the event is live; the result belongs to it (not destroyed apart).
    let result = unsafe { rd::rd_kafka_event_ListConsumerGroupOffsets_result(event.ptr) };
    if result.is_null() {
        return Err(Failed::Other(
            "librdkafka answered ListConsumerGroupOffsets with another event".into(),
        ));
    }
    let mut count = 0usize;
    // SAFETY: `result` is live with the event; librdkafka writes the count.
    let groups = unsafe { rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut count) };
    let mut out = Vec::new();
    for i in 0..count {
        // SAFETY: `groups` holds `count` results, live with the event.
        let g = unsafe { *groups.add(i) };
        // SAFETY: `g` is a live group result.
        let error = unsafe { rd::rd_kafka_group_result_error(g) };
        if !error.is_null() {
            // SAFETY: a live error of the group result.
            return Err(Failed::Code(
                unsafe { rd::rd_kafka_error_code(error) }.into(),
            ));
        }
        // SAFETY: `g` is live; the list belongs to it.
        let list = unsafe { rd::rd_kafka_group_result_partitions(g) };
        if list.is_null() {
            continue;
        }
        // SAFETY: a live partition list with `cnt` elements at `elems`.
        let (elems, cnt) = unsafe { ((*list).elems, (*list).cnt) };
        for j in 0..usize::try_from(cnt).unwrap_or(0) {
            // SAFETY: `j` < `cnt`: within the list's elements.
            let e = unsafe { &*elems.add(j) };
            // A negative offset is librdkafka's "nothing committed".
            if e.offset < 0
                || e.topic.is_null()
                || e.err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR
            {
                continue;
            }
            // SAFETY: a live element's topic is a NUL-terminated string.
            let topic = unsafe { CStr::from_ptr(e.topic) }
                .to_string_lossy()
                .into_owned();
            out.push((TopicPartition::new(topic, e.partition), e.offset));
        }
    }
    out.sort();
    Ok(out)
}
