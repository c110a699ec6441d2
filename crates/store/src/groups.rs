//! Consumer groups inside one process: members of a group split the partitions of the
//! topics they subscribe to, like Kafka's RoundRobinAssignor — every (topic, partition)
//! in sorted order goes to the next member, in join order, that subscribes to its topic.
//! Each join or leave starts a new generation. (Committed offsets live in `offsets`.)

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
pub(crate) struct Groups {
    groups: HashMap<String, GroupState>,
    next_member: u64,
}

#[derive(Default)]
struct GroupState {
    generation: u64,
    /// Members in join order.
    members: Vec<Member>,
    /// Partition count of every subscribed topic, as of the last join.
    partitions: BTreeMap<String, u32>,
}

struct Member {
    id: u64,
    topics: Vec<String>,
    assignment: Vec<(String, u32)>,
}

impl GroupState {
    fn rebalance(&mut self) {
        self.generation += 1;
        for m in &mut self.members {
            m.assignment.clear();
        }
        if self.members.is_empty() {
            return;
        }
        for (topic, &count) in &self.partitions {
            // Each topic starts over at the first member, so partition p of every topic
            // lands on the same member: co-partitioned inputs (a join by key, a reduce
            // over several topics) meet in one consumer, as Kafka's range assignor does.
            let mut next = 0usize;
            for p in 0..count {
                // The next member (round robin) that subscribes to this topic.
                let n = self.members.len();
                if let Some(k) = (0..n)
                    .map(|i| (next + i) % n)
                    .find(|&k| self.members[k].topics.contains(topic))
                {
                    self.members[k].assignment.push((topic.clone(), p));
                    next = (k + 1) % n;
                }
            }
        }
    }
}

pub(crate) type SharedGroups = Arc<Mutex<Groups>>;

fn lock(g: &SharedGroups) -> MutexGuard<'_, Groups> {
    g.lock().unwrap_or_else(|e| e.into_inner())
}

/// Adds a member subscribed to `topics` (with their partition counts) and rebalances.
pub(crate) fn join(
    groups: &SharedGroups,
    group: &str,
    topics: BTreeMap<String, u32>,
) -> GroupMember {
    let mut g = lock(groups);
    g.next_member += 1;
    let id = g.next_member;
    let state = g.groups.entry(group.to_string()).or_default();
    state.members.push(Member {
        id,
        topics: topics.keys().cloned().collect(),
        assignment: Vec::new(),
    });
    state.partitions.extend(topics);
    state.rebalance();
    GroupMember {
        groups: Arc::clone(groups),
        group: group.to_string(),
        id,
    }
}

/// A member of a consumer group. Its assignment changes when others join or leave (the
/// generation says when); dropping it leaves the group.
pub struct GroupMember {
    groups: SharedGroups,
    group: String,
    id: u64,
}

impl GroupMember {
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Bumped by every join and leave in the group: a changed generation means the
    /// assignment may have changed.
    pub fn generation(&self) -> u64 {
        lock(&self.groups)
            .groups
            .get(&self.group)
            .map_or(0, |s| s.generation)
    }

    /// The (topic, partition) pairs this member consumes now, sorted.
    pub fn assignment(&self) -> Vec<(String, u32)> {
        let g = lock(&self.groups);
        g.groups
            .get(&self.group)
            .and_then(|s| s.members.iter().find(|m| m.id == self.id))
            .map(|m| m.assignment.clone())
            .unwrap_or_default()
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        let mut g = lock(&self.groups);
        if let Some(state) = g.groups.get_mut(&self.group) {
            state.members.retain(|m| m.id != self.id);
            state.rebalance();
            if state.members.is_empty() {
                g.groups.remove(&self.group);
            }
        }
    }
}

impl std::fmt::Debug for GroupMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupMember")
            .field("group", &self.group)
            .field("id", &self.id)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn topics(t: &[(&str, u32)]) -> BTreeMap<String, u32> {
        t.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    #[test]
    fn group_members_split_partitions_round_robin_and_rebalance_on_leave() {
        let groups = SharedGroups::default();
        let a = join(&groups, "g", topics(&[("t", 5)]));
        assert_eq!(a.assignment().len(), 5);
        let b = join(&groups, "g", topics(&[("t", 5)]));
        assert_eq!(a.generation(), 2);
        let pa: Vec<u32> = a.assignment().into_iter().map(|x| x.1).collect();
        let pb: Vec<u32> = b.assignment().into_iter().map(|x| x.1).collect();
        assert_eq!(pa, vec![0, 2, 4]);
        assert_eq!(pb, vec![1, 3]);
        drop(a);
        assert_eq!(b.generation(), 3);
        assert_eq!(b.assignment().len(), 5);
        // Another group is independent.
        let c = join(&groups, "other", topics(&[("t", 5)]));
        assert_eq!(c.assignment().len(), 5);
        assert_eq!(b.assignment().len(), 5);
    }

    #[test]
    fn group_members_only_get_topics_they_subscribe_to() {
        let groups = SharedGroups::default();
        let a = join(&groups, "g", topics(&[("x", 2)]));
        let b = join(&groups, "g", topics(&[("y", 2)]));
        assert_eq!(
            a.assignment(),
            vec![("x".to_string(), 0), ("x".to_string(), 1)]
        );
        assert_eq!(
            b.assignment(),
            vec![("y".to_string(), 0), ("y".to_string(), 1)]
        );
    }
}
