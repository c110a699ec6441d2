//! The [`Hub`]: what a process holding a data directory shares between its Kafka
//! server and its in-process users of the store.
//!
//! - the store itself;
//! - tails: async waiting for records to become readable. The store tells the hub
//!   whenever a partition's end offset moves ([`millrace_store::AppendListener`]),
//!   whoever appended — a Kafka producer through this server, or an in-process
//!   appender calling the store directly — so a Kafka consumer's long-polling fetch
//!   wakes for both, and an in-process reader can wait the same way
//!   ([`Hub::wait_for_records`]);
//! - idempotent producers' sequence state ([`Producers`]);
//! - the group coordinator ([`Coordinator`]): one set of consumer groups and committed
//!   offsets, whether a member is a Kafka client or an in-process consumer;
//! - what the Kafka server counts as it serves ([`ServerStats`]).
//!
//! A process builds one hub per store ([`Hub::new`] takes the store's one listener
//! slot) and hands `Arc<Hub>` to the server and to its own consumers and producers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace_store::{AppendListener, Store};
use tokio::sync::watch;

use crate::error::ServerError;
use crate::group::{Coordinator, CoordinatorConfig};
use crate::producers::Producers;
use crate::stats::ServerStats;

/// Shared by a Kafka server and the in-process users of one store.
pub struct Hub {
    store: Arc<Store>,
    tails: Arc<Tails>,
    producers: Producers,
    coordinator: Coordinator,
    stats: ServerStats,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// The hub of `store`. Registers as the store's append listener, so it fails if
    /// the store has one (another hub) already.
    pub fn new(store: Arc<Store>) -> Result<Arc<Hub>, ServerError> {
        Hub::with_groups(store, CoordinatorConfig::default())
    }

    /// [`Hub::new`] with the group coordinator's settings.
    pub fn with_groups(
        store: Arc<Store>,
        groups: CoordinatorConfig,
    ) -> Result<Arc<Hub>, ServerError> {
        let tails = Arc::new(Tails::default());
        store.set_append_listener(Arc::clone(&tails) as Arc<dyn AppendListener>)?;
        let coordinator = Coordinator::new(Arc::clone(&store), groups);
        Ok(Arc::new(Hub {
            store,
            tails,
            producers: Producers::default(),
            coordinator,
            stats: ServerStats::default(),
        }))
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Idempotent producers' state.
    pub fn producers(&self) -> &Producers {
        &self.producers
    }

    /// The group coordinator: consumer groups and their committed offsets.
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// Connections, requests and bytes the Kafka server serving this hub counted.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// A handle that is told when records become readable in any partition of `topic`.
    /// Take it before looking at the partitions, then wait on it: nothing appended in
    /// between is missed.
    pub fn watch(&self, topic: &str) -> TopicWatch {
        TopicWatch(self.tails.subscribe(topic))
    }

    /// Waits until `ready()` holds, re-checking it whenever records become readable in
    /// one of `topics`, or until `timeout` passes. Returns `ready()`'s last answer.
    pub async fn wait_for_records(
        &self,
        topics: &[&str],
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        let mut watches: Vec<TopicWatch> = topics.iter().map(|t| self.watch(t)).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if ready() {
                return true;
            }
            if watches.is_empty() {
                tokio::time::sleep_until(deadline).await;
                return ready();
            }
            let any =
                futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            if tokio::time::timeout_at(deadline, any).await.is_err() {
                return ready();
            }
        }
    }
}

/// See [`Hub::watch`].
#[derive(Debug)]
pub struct TopicWatch(watch::Receiver<u64>);

impl TopicWatch {
    /// Resolves once records became readable in the topic since the watch was taken
    /// or last resolved.
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            // The hub is gone: nothing will ever change again.
            std::future::pending::<()>().await;
        }
    }
}

/// One watch channel per topic someone waits on, bumped by the store's listener.
#[derive(Default)]
struct Tails {
    topics: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Tails {
    fn subscribe(&self, topic: &str) -> watch::Receiver<u64> {
        let mut map = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(topic) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0);
                map.insert(topic.to_string(), tx);
                rx
            }
        }
    }
}

impl AppendListener for Tails {
    fn appended(&self, topic: &str, _partition: u32, _end_offset: u64) {
        let mut map = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = map.get(topic) {
            if tx.receiver_count() == 0 {
                // Nobody waits on this topic any more.
                map.remove(topic);
            } else {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}
