//! `GroupContext`: the consumer's client context. Its rebalance callbacks run inside
//! `poll`; they record `Assigned`/`Revoked`, forward new partitions to the fetched
//! queue, and wait for the owner's work in flight before partitions are given up.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, Consumer as _, ConsumerContext, Rebalance as KRebalance, RebalanceProtocol,
};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::Notify;

use super::super::fetched::Fetched;
use super::super::{log_client_error, log_librdkafka};
use super::start::StartLookup;
use crate::api::{Rebalance, TopicPartition};
use crate::hand_over::{HAND_OVER_WAIT, InFlight};

/// What the rebalance callback records, shared with the consumer handle.
#[derive(Default)]
pub(crate) struct GroupContext {
    pub(super) rebalances: Mutex<Vec<Rebalance>>,
    pub(super) owned: Mutex<BTreeSet<TopicPartition>>,
    /// The owner's work in flight, waited for before partitions are given up.
    pub(super) in_flight: Mutex<Option<InFlight>>,
    /// Partitions revoked since `poll` last looked: the records it collected from them
    /// before the revocation are not returned.
    pub(super) revoked_in_poll: Mutex<Vec<TopicPartition>>,
    /// The queue assigned partitions deliver their records to (set once the client
    /// exists, before anything is assigned).
    pub(super) fetched: OnceLock<Fetched>,
    /// Told when records or events arrive, by either queue's callback.
    pub(super) wake: Arc<Notify>,
    /// Whether this consumer has been given an assignment (an empty one counts): its
    /// first join into the group is complete.
    pub(super) joined: AtomicBool,
    /// Where assigned partitions without a committed offset start (set once, before
    /// the consumer subscribes).
    pub(super) start: OnceLock<StartLookup>,
    /// Lost and refused connections are expected (see `Flavour::quiet_transport`).
    pub(super) quiet_transport: bool,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a whole push or set operation, so a poisoned value is still sound.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn to_tps(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        log_librdkafka(level, fac, msg, self.quiet_transport);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(&error, reason, self.quiet_transport);
    }
}

impl ConsumerContext for GroupContext {
    /// rdkafka's own `rebalance` (the callbacks around the (incremental) assign or
    /// unassign), with the start of partitions nothing is committed for named first.
    fn rebalance(&self, c: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let assign = matches!(err, RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS);
        if assign && let Some(start) = self.start.get() {
            start.name_starts(tpl);
        }
        let tpl = &*tpl;
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => KRebalance::Assign(tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => KRebalance::Revoke(tpl),
            other => KRebalance::Error(KafkaError::Rebalance(other.into())),
        };
        self.pre_rebalance(c, &rebalance);
        // Anything but an assignment gives the partitions up: a revocation, and (as
        // librdkafka asks of the application) a failed rebalance.
        let cooperative = matches!(c.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let done = match (assign, cooperative) {
            (true, true) => c.incremental_assign(tpl),
            (true, false) => c.assign(tpl),
            (false, true) => c.incremental_unassign(tpl),
            (false, false) => c.unassign(),
        };
        self.post_rebalance(c, &rebalance);
        if let Err(e) = done {
            tracing::warn!("consumer group rebalance: {e}");
        }
    }

    /// Runs inside `poll`, before librdkafka unassigns the revoked partitions and before
    /// this member rejoins the group: no other member can be handed them until this
    /// returns (with the eager protocol as with the cooperative one).
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &KRebalance<'_>) {
        let tpl = match rebalance {
            KRebalance::Assign(tpl) => {
                self.joined.store(true, Ordering::Release);
                // Before librdkafka starts fetching them (it assigns after this).
                if let Some(f) = self.fetched.get() {
                    for e in tpl.elements() {
                        f.forward(e.topic(), e.partition());
                    }
                }
                return;
            }
            KRebalance::Revoke(tpl) => tpl,
            KRebalance::Error(_) => return,
        };
        if tpl.count() == 0 {
            return;
        }
        let work = lock(&self.in_flight).clone();
        if let Some(work) = work
            && !work.wait_idle_blocking(HAND_OVER_WAIT)
        {
            tracing::warn!(
                "partitions revoked while outputs were still in flight after {HAND_OVER_WAIT:?}; \
                 their next owner may write some outputs again (at least once)"
            );
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &KRebalance<'_>) {
        match rebalance {
            KRebalance::Assign(tpl) => {
                let tps = to_tps(tpl);
                if tps.is_empty() {
                    return;
                }
                lock(&self.owned).extend(tps.iter().cloned());
                lock(&self.rebalances).push(Rebalance::Assigned(tps));
            }
            KRebalance::Revoke(tpl) => {
                let tps = to_tps(tpl);
                if tps.is_empty() {
                    return;
                }
                {
                    let mut owned = lock(&self.owned);
                    for tp in &tps {
                        owned.remove(tp);
                    }
                }
                lock(&self.revoked_in_poll).extend(tps.iter().cloned());
                lock(&self.rebalances).push(Rebalance::Revoked(tps));
            }
            KRebalance::Error(e) => tracing::warn!("consumer group rebalance failed: {e}"),
        }
    }
}
