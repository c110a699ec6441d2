//! The store: a data directory of topics, committed offsets and consumer groups, held
//! by one process at a time, with the journal that makes its appends durable and the
//! background threads that sync it (the flusher) and retire its files (the
//! checkpointer).
//!
//! Parts:
//! - `store.rs` (here): `Store` — opening a data directory (lock, recover), topics,
//!   consumer groups, retention and checkpoints on request, closing.
//! - `committed`: committed offsets — commits and their look-ups.
//! - `background`: the flusher and checkpointer threads.

mod background;
mod committed;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{Durability, StoreOptions, TopicConfig};
use crate::durability::{AppendListener, ListenerSlot, Poison};
use crate::error::StoreError;
use crate::groups::{self, GroupMember, SharedGroups};
use crate::io::Storage;
use crate::journal::Journal;
use crate::lock::{self, DirLock};
use crate::offsets::{OffsetsJournal, SharedOffsets};
use crate::recovery::RecoveryReport;
use crate::tail::Budget;
use crate::topic::{self, MAX_PARTITIONS, Topic};
use background::{apply_retention, flush_tails, spawn_checkpointer, spawn_flusher};

/// What every partition shares with the store.
pub(crate) struct Ctx {
    pub storage: Arc<dyn Storage>,
    pub poison: Poison,
    pub index_interval: u64,
    pub listener: ListenerSlot,
    pub journal: Journal,
    /// The segments' tail buffers, together.
    pub budget: Arc<Budget>,
}

struct Shared {
    dir: PathBuf,
    topics_dir: PathBuf,
    ctx: Arc<Ctx>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Writers of committed offsets take this (the journal) ...
    offsets: Mutex<OffsetsJournal>,
    /// ... readers only this, which never waits for a commit's `fdatasync`.
    committed: SharedOffsets,
    groups: SharedGroups,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    _lock: DirLock,
}

/// The embedded topic store. `Send + Sync`: share it with an `Arc`. Dropping it stops the
/// background threads, retires the journal (every segment synced, the journal left
/// empty) and releases the directory lock.
pub struct Store {
    shared: Arc<Shared>,
    background: Vec<JoinHandle<()>>,
}

impl Store {
    /// Opens (creating if needed, mode 0700) the data directory `dir`, takes its lock and
    /// recovers every partition. Fails with [`StoreError::Locked`] if another process
    /// holds it.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<(Store, RecoveryReport), StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::io_at(dir, e))?;
        let dir_lock = lock::acquire(dir)?;
        let mut report = RecoveryReport::default();
        let (journal, found) =
            Journal::open(&opts.storage, dir, opts.journal_file_bytes, &mut report)?;
        let ctx = Arc::new(Ctx {
            storage: opts.storage,
            poison: Poison::default(),
            index_interval: opts.index_interval_bytes.max(1),
            listener: ListenerSlot::default(),
            journal,
            budget: Budget::new(opts.segment_buffer_bytes, opts.segment_buffers_max),
        });
        let topics_dir = dir.join("topics");
        if !topics_dir.exists() {
            topic::mkdir(&topics_dir)?;
            ctx.storage
                .sync_dir(dir)
                .map_err(|e| StoreError::io_at(dir, e))?;
        }
        let mut topics: BTreeMap<String, Arc<Topic>> = BTreeMap::new();
        let mut ids: Vec<u64> = found.first.keys().map(|k| k.0).collect();
        for entry in
            std::fs::read_dir(&topics_dir).map_err(|e| StoreError::io_at(&topics_dir, e))?
        {
            let entry = entry.map_err(|e| StoreError::io_at(&topics_dir, e))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with(".tmp-") || name.starts_with(".deleted-") {
                // An interrupted create or delete: finish by removing it.
                std::fs::remove_dir_all(&path).map_err(|e| StoreError::io_at(&path, e))?;
                continue;
            }
            if topic::validate_name(&name).is_err() || !path.is_dir() {
                continue;
            }
            let t = topic::load(
                &ctx,
                &path,
                &name,
                &found,
                &mut |id| ids.contains(&id),
                &mut report,
            )?;
            ids.push(t.id());
            topics.insert(name, Arc::new(t));
        }
        let partitions = topics
            .values()
            .flat_map(|t| {
                t.partitions()
                    .iter()
                    .map(|p| ((t.id(), p.id()), Arc::clone(p)))
            })
            .collect();
        ctx.journal.replay(found, &partitions, &mut report)?;
        drop(partitions);
        let offsets = OffsetsJournal::open(&ctx, dir, &mut report)?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            topics_dir,
            ctx,
            topics: RwLock::new(topics),
            committed: offsets.shared(),
            offsets: Mutex::new(offsets),
            groups: SharedGroups::default(),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            _lock: dir_lock,
        });
        let store = Store {
            background: vec![
                spawn_flusher(Arc::clone(&shared))?,
                spawn_checkpointer(Arc::clone(&shared))?,
            ],
            shared,
        };
        store.apply_retention()?;
        Ok((store, report))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    fn topics(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.shared.topics.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The topics, for a change to the set or to one topic's files; held, it keeps
    /// any other such change from interleaving.
    fn topics_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.shared
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the one listener told whenever records become readable in any partition
    /// (see [`AppendListener`]): how a server wakes its waiting readers whoever appends.
    /// Fails if one is set already.
    pub fn set_append_listener(&self, listener: Arc<dyn AppendListener>) -> Result<(), StoreError> {
        self.shared.ctx.listener.set(listener).map_err(|_| {
            StoreError::InvalidArgument("the store has an append listener already".into())
        })
    }

    /// Creates a topic with `partitions` partitions (1..=10000).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
    ) -> Result<(), StoreError> {
        self.create_topic_with(name, partitions, config, BTreeMap::new())
    }

    /// [`create_topic`](Self::create_topic) with settings the topic keeps but does not
    /// act on ([`Topic::extra_config`]).
    pub fn create_topic_with(
        &self,
        name: &str,
        partitions: u32,
        config: TopicConfig,
        extra: BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.shared.ctx.poison.check()?;
        topic::validate_name(name)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(StoreError::InvalidArgument(format!(
                "a topic needs 1 to {MAX_PARTITIONS} partitions, not {partitions}"
            )));
        }
        check_segment_bytes(&config)?;
        let mut topics = self.topics_mut();
        if topics.contains_key(name) {
            return Err(StoreError::TopicExists(name.to_string()));
        }
        let id = topic::new_id(&mut |id| topics.values().any(|t| t.id() == id));
        let t = topic::create(
            &self.shared.ctx,
            &self.shared.topics_dir,
            name,
            id,
            partitions,
            config,
            extra,
        )?;
        topics.insert(name.to_string(), Arc::new(t));
        Ok(())
    }

    /// Replaces a topic's config and extra settings: `topic.json` is rewritten durably,
    /// then every partition applies the config (a new `segment.bytes` at the next roll,
    /// retention at its next pass, durability from the next append).
    pub fn alter_topic_config(
        &self,
        name: &str,
        config: TopicConfig,
        extra: BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.shared.ctx.poison.check()?;
        check_segment_bytes(&config)?;
        let topics = self.topics_mut();
        let t = topics
            .get(name)
            .ok_or_else(|| StoreError::UnknownTopic(name.to_string()))?;
        let dir = topic::topic_dir(&self.shared.topics_dir, name);
        topic::write_meta(
            &self.shared.ctx,
            &dir,
            t.id(),
            t.partition_count(),
            &config,
            &extra,
        )?;
        t.set_config(config, extra)
    }

    /// Grows a topic to `partitions` partitions (more than it has, at most 10000). The
    /// new partitions' directories are made durably before `topic.json` counts them.
    /// Holders of the topic's old `Arc<Topic>` keep seeing the old partitions, which
    /// the new one shares.
    pub fn create_partitions(&self, name: &str, partitions: u32) -> Result<(), StoreError> {
        self.shared.ctx.poison.check()?;
        let mut topics = self.topics_mut();
        let t = topics
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownTopic(name.to_string()))?;
        let now = t.partition_count();
        if partitions <= now || partitions > MAX_PARTITIONS {
            return Err(StoreError::InvalidArgument(format!(
                "topic '{name}' has {now} partitions: it can grow to {} to {MAX_PARTITIONS}, not {partitions}",
                now + 1
            )));
        }
        let dir = topic::topic_dir(&self.shared.topics_dir, name);
        topic::add_partition_dirs(&self.shared.ctx, &dir, now, partitions)?;
        topic::write_meta(
            &self.shared.ctx,
            &dir,
            t.id(),
            partitions,
            &t.config(),
            &t.extra_config(),
        )?;
        let grown = t.grown(&self.shared.ctx, &dir, partitions)?;
        topics.insert(name.to_string(), Arc::new(grown));
        Ok(())
    }

    /// Topic names, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics().keys().cloned().collect()
    }

    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, StoreError> {
        self.topics()
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownTopic(name.to_string()))
    }

    /// Deletes a topic, its data and its committed offsets. Holders of its `Arc<Topic>`
    /// can still read what they have; appends fail with `UnknownTopic`. Should the
    /// process stop before it returns, the topic may remain without its committed offsets.
    pub fn delete_topic(&self, name: &str) -> Result<(), StoreError> {
        self.shared.ctx.poison.check()?;
        let mut topics = self.topics_mut();
        let t = topics
            .remove(name)
            .ok_or_else(|| StoreError::UnknownTopic(name.to_string()))?;
        t.close();
        // Forget the offsets first: a crash before the removal is durable then leaves the
        // topic without its groups' offsets, never offsets that a topic made again under
        // the name would start from.
        self.offsets().forget_topic(name)?;
        let dir = topic::topic_dir(&self.shared.topics_dir, name);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let doomed = self
            .shared
            .topics_dir
            .join(format!(".deleted-{name}-{nanos}"));
        // Rename first (atomic), so a crash mid-way never leaves half a topic that looks alive.
        std::fs::rename(&dir, &doomed).map_err(|e| StoreError::io_at(&dir, e))?;
        self.shared
            .ctx
            .storage
            .sync_dir(&self.shared.topics_dir)
            .map_err(|e| StoreError::io_at(&self.shared.topics_dir, e))?;
        drop(topics);
        std::fs::remove_dir_all(&doomed).map_err(|e| StoreError::io_at(&doomed, e))
    }

    /// Joins `group` as a new member subscribed to `topics`; members of one group in this
    /// process split the partitions. Drop the member to leave.
    pub fn join_group(&self, group: &str, topics: &[String]) -> Result<GroupMember, StoreError> {
        if group.is_empty() {
            return Err(StoreError::InvalidArgument("group name is empty".into()));
        }
        let mut subs = BTreeMap::new();
        for t in topics {
            subs.insert(t.clone(), self.topic(t)?.partition_count());
        }
        Ok(groups::join(&self.shared.groups, group, subs))
    }

    /// Applies size and age retention to every partition now. Also runs after each
    /// segment roll, on open, and every few seconds in the background.
    pub fn apply_retention(&self) -> Result<(), StoreError> {
        apply_retention(&self.shared)
    }

    /// Retires the journal now: makes everything appended durable, syncs every segment
    /// written since the last checkpoint, and deletes the journal's files but a new,
    /// empty one (none when nothing was appended since the store opened), as closing
    /// the store does. The background checkpointer does this whenever the journal's
    /// active file passes `StoreOptions::journal_file_bytes`.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let ctx = &self.shared.ctx;
        // The journal's checkpoint writes out the tails of the partitions it holds
        // entries of; durability=none ones it never holds.
        flush_tails(&self.shared, |d| d == Durability::None)?;
        ctx.journal.checkpoint(&ctx.poison, true)
    }

    /// Whether a failed fsync has poisoned the store (writes are refused).
    pub fn is_poisoned(&self) -> bool {
        self.shared.ctx.poison.check().is_err()
    }
}

fn check_segment_bytes(config: &TopicConfig) -> Result<(), StoreError> {
    if config.segment_bytes < crate::config::MIN_SEGMENT_BYTES {
        return Err(StoreError::InvalidConfig(format!(
            "segment.bytes={}: must be at least {}",
            config.segment_bytes,
            crate::config::MIN_SEGMENT_BYTES
        )));
    }
    Ok(())
}

impl Drop for Store {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.stop_cv.notify_all();
        for h in self.background.drain(..) {
            let _ = h.join();
        }
        // A clean shutdown leaves every segment synced and the journal empty, so the
        // next open has nothing to replay.
        if !self.is_poisoned()
            && let Err(e) = self.checkpoint()
        {
            tracing::warn!(error = %e, "the journal's last checkpoint failed; the next open replays it");
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}
