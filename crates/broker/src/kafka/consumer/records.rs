//! A poll's records: the consumer queue's events served, messages copied into
//! records (a poll's share one arena), librdkafka's consumer errors sorted into those
//! the user must act on and those it retries, and revoked partitions' records dropped.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rdkafka::consumer::Consumer as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};

use super::super::errors::{self, Subject};
use super::super::fetched::{Fetched, FetchedRecord};
use super::super::is_transport;
use super::context::lock;
use super::{Inner, KafkaConsumer};
use crate::api::{ConsumedRecord, Header, Names, Result, TopicPartition};

impl KafkaConsumer {
    /// Turns a message from the consumer queue into a record, or an error into
    /// `Ok(None)` (transient, retried by librdkafka) or `Err` (the user must act).
    fn record(
        m: std::result::Result<BorrowedMessage<'_>, KafkaError>,
        names: &mut Names,
        arena: &mut BytesMut,
        quiet_transport: bool,
    ) -> Result<Option<ConsumedRecord>> {
        match m {
            Ok(m) => Ok(Some(ConsumedRecord {
                topic: names.get(m.topic()),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|b| copy(arena, b)),
                value: m.payload().map(|b| copy(arena, b)).unwrap_or_default(),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| Header {
                                key: names.get(h.key),
                                value: h.value.map(|b| copy(arena, b)).unwrap_or_default(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp: m.timestamp().to_millis().unwrap_or(-1),
            })),
            Err(e) => {
                consumer_error(e.rdkafka_error_code(), &e, quiet_transport)?;
                Ok(None)
            }
        }
    }

    /// The same for a record taken from the fetched queue.
    pub(super) fn fetched_record(
        &mut self,
        m: &FetchedRecord<'_>,
        arena: &mut BytesMut,
    ) -> ConsumedRecord {
        let handle = m.topic_handle();
        let topic = match self.topic_names.iter().find(|(h, _)| *h == handle) {
            Some((_, name)) => name.clone(),
            None => {
                let name = self.names.get(&m.topic());
                self.topic_names.push((handle, name.clone()));
                name
            }
        };
        let mut headers = Vec::new();
        m.headers(|key, value| {
            headers.push(Header {
                key: self.names.get(key),
                value: value.map(|b| copy(arena, b)).unwrap_or_default(),
            });
        });
        ConsumedRecord {
            topic,
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|b| copy(arena, b)),
            value: m.value().map(|b| copy(arena, b)).unwrap_or_default(),
            headers,
            timestamp: m.timestamp(),
        }
    }

    /// Serves the consumer queue without waiting: rebalance callbacks, commit events,
    /// errors, and the records of any partition that does not forward to the fetched
    /// queue.
    pub(super) fn serve_events(
        &mut self,
        c: &Inner,
        out: &mut Vec<ConsumedRecord>,
        max: usize,
        arena: &mut BytesMut,
    ) -> Result<()> {
        let ctx = c.context();
        for _ in 0..EVENTS_PER_POLL {
            let polled = c.poll(Duration::ZERO);
            // A rebalance callback may have run inside that poll: what was collected
            // before it from partitions it revoked is their next owner's (who starts
            // at the committed offset), as Java's consumer never returns such records
            // after `onPartitionsRevoked`. The record the poll returned comes after it.
            drop_revoked(out, &mut lock(&ctx.revoked_in_poll));
            match polled {
                Some(m) => {
                    if let Some(r) = Self::record(m, &mut self.names, arena, ctx.quiet_transport)? {
                        out.push(r);
                        if out.len() >= max {
                            return Ok(());
                        }
                    }
                }
                // Nothing returned: the queue was empty, or the poll served an event.
                None => {
                    if !ctx.fetched.get().is_some_and(Fetched::events_waiting) {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Events (and records of partitions not forwarded) a poll serves at most before it
/// takes fetched records: a bound, should librdkafka keep adding log lines.
const EVENTS_PER_POLL: usize = 1024;

/// Copies `b` into `arena`: a poll's records share its chunks, one allocation for
/// hundreds of small records instead of two each.
fn copy(arena: &mut BytesMut, b: &[u8]) -> Bytes {
    if arena.capacity() - arena.len() < b.len() {
        arena.reserve(b.len().max(ARENA_CHUNK));
    }
    arena.extend_from_slice(b);
    arena.split().freeze()
}

/// A consumer error from librdkafka: `Err` for those the user must act on, else
/// logged (librdkafka retries).
pub(super) fn consumer_error(
    code: Option<RDKafkaErrorCode>,
    what: &dyn std::fmt::Display,
    quiet_transport: bool,
) -> Result<()> {
    match code {
        Some(
            c @ (RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::Fatal),
        ) => Err(errors::from_code(c, Subject::None)),
        c if quiet_transport && is_transport(c) => {
            tracing::debug!("kafka consumer: {what} (librdkafka retries)");
            Ok(())
        }
        _ => {
            tracing::warn!("kafka consumer: {what} (librdkafka retries)");
            Ok(())
        }
    }
}

/// Drops the records of partitions revoked (since) and forgets the revocations.
fn drop_revoked(out: &mut Vec<ConsumedRecord>, revoked: &mut Vec<TopicPartition>) {
    if revoked.is_empty() {
        return;
    }
    out.retain(|r| {
        !revoked
            .iter()
            .any(|tp| tp.partition == r.partition && tp.topic == r.topic)
    });
    revoked.clear();
}

/// Bytes a poll's records are copied into at a time.
const ARENA_CHUNK: usize = 64 << 10;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn rec(topic: &str, partition: i32, offset: i64) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::from(topic),
            partition,
            offset,
            key: None,
            value: bytes::Bytes::new(),
            headers: Vec::new(),
            timestamp: 0,
        }
    }

    #[test]
    fn records_collected_before_their_partition_was_revoked_are_dropped() {
        let mut out = vec![
            rec("a", 0, 5),
            rec("a", 1, 7),
            rec("b", 0, 1),
            rec("a", 0, 6),
        ];
        let mut revoked = vec![TopicPartition::new("a", 0)];
        drop_revoked(&mut out, &mut revoked);
        let left: Vec<(String, i32, i64)> = out
            .iter()
            .map(|r| (r.topic.to_string(), r.partition, r.offset))
            .collect();
        assert_eq!(left, vec![("a".into(), 1, 7), ("b".into(), 0, 1)]);
        assert!(revoked.is_empty(), "a revocation is applied once");
        // Records of a partition assigned again after that come from the new owner's
        // start and stay.
        out.push(rec("a", 0, 0));
        drop_revoked(&mut out, &mut revoked);
        assert_eq!(out.len(), 3);
    }
}
