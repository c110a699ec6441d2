//! Committed offsets of the store's consumer groups: commits (checked against the
//! topics, written to the offsets journal) and their look-ups, which never wait for a
//! commit's `fdatasync`.

use std::collections::BTreeMap;
use std::sync::{Arc, MutexGuard};

use super::Store;
use crate::config::Durability;
use crate::error::StoreError;
use crate::offsets::{
    CommittedOffset, OffsetCommit, OffsetCommitWithMetadata, OffsetMap, OffsetsJournal,
};
use crate::topic::Topic;

impl Store {
    pub(super) fn offsets(&self) -> MutexGuard<'_, OffsetsJournal> {
        self.shared
            .offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `group` will next consume `next_offset` of `topic`/`partition`.
    /// Durable (fsynced) when it returns.
    pub fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<(), StoreError> {
        self.commit_offsets(group, &[(topic, partition, next_offset)])
    }

    /// Records the next offsets `group` will consume for several partitions, given as
    /// `(topic, partition, next_offset)`: all entries are written, then one `fdatasync`
    /// makes them durable together (durable when it returns). Every partition is checked
    /// before anything is written. Should the process die mid-way, each partition's entry
    /// stands alone: some may survive and others not, and none was acknowledged.
    pub fn commit_offsets(
        &self,
        group: &str,
        commits: &[OffsetCommit<'_>],
    ) -> Result<(), StoreError> {
        // The topics stay locked until the commit is written, so no delete of a topic
        // checked here runs in between (it would forget the offsets before they land).
        let topics = self.topics();
        let sync = check_commit(&topics, group, commits.iter().map(|&(t, p, _)| (t, p)))?;
        self.offsets()
            .commit(group, commits.iter().map(|&(t, p, n)| (t, p, n, "")), sync)
    }

    /// [`Store::commit_offsets`] with the string a Kafka client attaches to each
    /// commit, kept beside the offset and given back by [`Store::committed`].
    pub fn commit_offsets_with_metadata(
        &self,
        group: &str,
        commits: &[OffsetCommitWithMetadata<'_>],
    ) -> Result<(), StoreError> {
        // Locked until written, as in `commit_offsets`.
        let topics = self.topics();
        let sync = check_commit(
            &topics,
            group,
            commits.iter().map(|c| (c.topic, c.partition)),
        )?;
        let entries = commits
            .iter()
            .map(|c| (c.topic, c.partition, c.next, c.metadata));
        self.offsets().commit(group, entries, sync)
    }

    fn committed_map(&self) -> std::sync::RwLockReadGuard<'_, OffsetMap> {
        self.shared
            .committed
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The next offset `group` will consume of `topic`/`partition`, as last committed
    /// (durably). Never waits for a commit in progress.
    pub fn committed_offset(&self, group: &str, topic: &str, partition: u32) -> Option<u64> {
        self.committed_map()
            .get(group, topic, partition)
            .map(|c| c.next)
    }

    /// [`Store::committed_offset`] with the metadata the committing client attached.
    pub fn committed(&self, group: &str, topic: &str, partition: u32) -> Option<CommittedOffset> {
        self.committed_map().get(group, topic, partition).cloned()
    }

    /// Every offset `group` has committed, as `(topic, partition, offset)` sorted by
    /// topic and partition.
    pub fn group_offsets(&self, group: &str) -> Vec<(String, u32, CommittedOffset)> {
        self.committed_map()
            .group(group)
            .map(|(t, p, c)| (t.to_string(), p, c.clone()))
            .collect()
    }

    /// The groups that have committed offsets, sorted.
    pub fn offset_groups(&self) -> Vec<String> {
        self.committed_map().groups().map(str::to_string).collect()
    }

    /// Deletes the offsets `group` committed for `partitions` (topic, partition) — Kafka's
    /// OffsetDelete. Durable when it returns; how many offsets there were.
    pub fn delete_offsets(
        &self,
        group: &str,
        partitions: &[(&str, u32)],
    ) -> Result<usize, StoreError> {
        self.offsets().delete_offsets(group, partitions)
    }

    /// Deletes every offset `group` committed — Kafka's DeleteGroups. Durable when it
    /// returns; whether it had any.
    pub fn delete_group_offsets(&self, group: &str) -> Result<bool, StoreError> {
        self.offsets().delete_group(group)
    }
}

/// Checks that the group is named and every partition exists; whether the commit
/// needs an `fdatasync`.
fn check_commit<'a>(
    topics: &BTreeMap<String, Arc<Topic>>,
    group: &str,
    partitions: impl Iterator<Item = (&'a str, u32)>,
) -> Result<bool, StoreError> {
    if group.is_empty() {
        return Err(StoreError::InvalidArgument("group name is empty".into()));
    }
    let mut last: Option<(&str, Arc<Topic>)> = None;
    // Offsets are made as durable as the records they point into: a commit on
    // topics that are all durability=none is written (it survives the process, as
    // those records do) but not fdatasynced — the sync would cost more than the
    // records it guards are worth after a power loss.
    let mut sync = false;
    for (topic, partition) in partitions {
        let t = match &last {
            Some((name, t)) if *name == topic => Arc::clone(t),
            _ => topics
                .get(topic)
                .cloned()
                .ok_or_else(|| StoreError::UnknownTopic(topic.to_string()))?,
        };
        t.partition(partition)?;
        sync |= t.config().durability != Durability::None;
        last = Some((topic, t));
    }
    Ok(sync)
}
