//! Committed offsets: OffsetCommit (checked against the group's members and
//! generation), OffsetFetch and OffsetDelete, kept in the store's offsets journal — the
//! same journal `millrace consume --group` commits to, so a group is one group whichever
//! client commits for it.

use millrace_store::{CommittedOffset, OffsetCommitWithMetadata};

use super::coordinator::Coordinator;
use super::error::GroupError;
use super::state::GroupState;

/// One partition's position in an OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCommit {
    pub topic: String,
    pub partition: i32,
    /// The next offset the group will consume.
    pub offset: i64,
    /// The client's string kept with the offset (empty or `None` for none).
    pub metadata: Option<String>,
}

/// An OffsetCommit.
#[derive(Debug, Clone)]
pub struct CommitOffsets {
    pub group_id: String,
    /// Empty, with generation -1, for a client that assigns itself partitions.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation: i32,
    pub offsets: Vec<PartitionCommit>,
}

/// One topic's committed offsets, as OffsetFetch answers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedTopic {
    pub topic: String,
    /// Each partition asked for, with its committed offset (`None`: none committed).
    pub partitions: Vec<(i32, Option<CommittedOffset>)>,
}

impl Coordinator {
    /// OffsetCommit: the group checks the member and generation (a commit with
    /// generation -1 and no member is accepted while the group has no members), then
    /// every valid partition's offset is made durable with one `fdatasync`. One answer
    /// per partition, in order; a group-level refusal is the `Err`.
    pub async fn commit_offsets(
        &self,
        req: CommitOffsets,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let checked = self.with_group(&req.group_id, false, |g, now| {
            g.check_commit(
                &req.member_id,
                req.group_instance_id.as_deref(),
                req.generation,
                now,
            )
        });
        match checked {
            Some(r) => r?,
            // No group in memory: only a commit outside group management (generation
            // -1) may make one; a member of a group that is gone rejoins.
            None if req.generation < 0 => {}
            None => return Err(GroupError::IllegalGeneration),
        }
        let limit = self.config().max_metadata_bytes;
        let mut results: Vec<Result<(), GroupError>> = Vec::with_capacity(req.offsets.len());
        let mut valid = Vec::new();
        for c in &req.offsets {
            let check = self.check_partition(&c.topic, c.partition).and_then(|p| {
                let len = c.metadata.as_deref().map_or(0, str::len);
                if len > limit {
                    return Err(GroupError::OffsetMetadataTooLarge { len, limit });
                }
                let next =
                    u64::try_from(c.offset).map_err(|_| GroupError::OffsetOutOfRange(c.offset))?;
                Ok((p, next))
            });
            match check {
                Ok((p, next)) => {
                    valid.push((
                        c.topic.clone(),
                        p,
                        next,
                        c.metadata.clone().unwrap_or_default(),
                    ));
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if valid.is_empty() {
            return Ok(results);
        }
        let group = req.group_id.clone();
        let written = self
            .blocking(move |store| {
                let commits: Vec<OffsetCommitWithMetadata<'_>> = valid
                    .iter()
                    .map(
                        |(topic, partition, next, metadata)| OffsetCommitWithMetadata {
                            topic,
                            partition: *partition,
                            next: *next,
                            metadata,
                        },
                    )
                    .collect();
                store.commit_offsets_with_metadata(&group, &commits)
            })
            .await;
        if let Err(e) = written {
            tracing::error!(group = %req.group_id, error = %e, "offset commit failed");
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(e.clone());
            }
        }
        Ok(results)
    }

    /// The store's partition number for `topic`/`partition`, if it exists.
    fn check_partition(&self, topic: &str, partition: i32) -> Result<u32, GroupError> {
        let p = u32::try_from(partition).map_err(|_| GroupError::UnknownTopicOrPartition)?;
        let t = self
            .store()
            .topic(topic)
            .map_err(|_| GroupError::UnknownTopicOrPartition)?;
        if p >= t.partition_count() {
            return Err(GroupError::UnknownTopicOrPartition);
        }
        Ok(p)
    }

    /// OffsetFetch: the committed offsets of `topics` (topic, partitions), or with
    /// `None` every offset the group committed. Offsets are stable at once (there are
    /// no pending transactional commits), so `require_stable` needs nothing.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<Vec<FetchedTopic>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let store = self.store();
        let Some(topics) = topics else {
            let mut out: Vec<FetchedTopic> = Vec::new();
            for (topic, partition, c) in store.group_offsets(group_id) {
                let p = i32::try_from(partition).unwrap_or(i32::MAX);
                match out.last_mut() {
                    Some(t) if t.topic == topic => t.partitions.push((p, Some(c))),
                    _ => out.push(FetchedTopic {
                        topic,
                        partitions: vec![(p, Some(c))],
                    }),
                }
            }
            return Ok(out);
        };
        Ok(topics
            .iter()
            .map(|(topic, partitions)| FetchedTopic {
                topic: topic.clone(),
                partitions: partitions
                    .iter()
                    .map(|&p| {
                        let c = u32::try_from(p)
                            .ok()
                            .and_then(|p| store.committed(group_id, topic, p));
                        (p, c)
                    })
                    .collect(),
            })
            .collect())
    }

    /// OffsetDelete: deletes the group's offsets of `partitions` (topic, partition),
    /// durably. A partition of a topic a live consumer member subscribes to is refused
    /// (GROUP_SUBSCRIBED_TO_TOPIC); a group with members that are not consumers refuses
    /// the whole request. One answer per partition, in order.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let live = self.with_group(group_id, false, |g, _| {
            if g.state == GroupState::Dead {
                return Err(GroupError::GroupIdNotFound);
            }
            if g.state == GroupState::Empty {
                return Ok(None);
            }
            if g.protocol_type.as_deref() != Some("consumer") {
                return Err(GroupError::NonEmptyGroup);
            }
            Ok(Some(
                partitions
                    .iter()
                    .map(|(t, _)| g.is_subscribed_to(t))
                    .collect::<Vec<bool>>(),
            ))
        });
        let subscribed = match live {
            Some(r) => r?,
            None if self.store().group_offsets(group_id).is_empty() => {
                return Err(GroupError::GroupIdNotFound);
            }
            None => None,
        };
        let mut results = Vec::with_capacity(partitions.len());
        let mut doomed = Vec::new();
        for (i, (topic, partition)) in partitions.iter().enumerate() {
            if subscribed.as_ref().is_some_and(|s| s.get(i) == Some(&true)) {
                results.push(Err(GroupError::GroupSubscribedToTopic));
                continue;
            }
            match u32::try_from(*partition) {
                Ok(p) => {
                    doomed.push((topic.clone(), p));
                    results.push(Ok(()));
                }
                Err(_) => results.push(Err(GroupError::UnknownTopicOrPartition)),
            }
        }
        if doomed.is_empty() {
            return Ok(results);
        }
        let group = group_id.to_string();
        let deleted = self
            .blocking(move |store| {
                let keys: Vec<(&str, u32)> = doomed.iter().map(|(t, p)| (t.as_str(), *p)).collect();
                store.delete_offsets(&group, &keys)
            })
            .await;
        if let Err(e) = deleted {
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(e.clone());
            }
        }
        Ok(results)
    }
}
