//! A group consumer's membership in the store's group coordinator (the hub's): the
//! same groups Kafka clients of this store join, so an in-process stage and a Kafka
//! client (another `millrace run` reaching this store over the wire) share a topic's
//! partitions.
//!
//! As a Kafka consumer does, a member heartbeats from a task of its own (so a stage
//! busy with a batch keeps its session) and joins again from the poll: when the group
//! rebalances, the next poll stops handing out records, waits for the work its caller
//! has in flight ([`crate::hand_over`]), then joins and syncs on a task of its own, and
//! the poll after that applies the new assignment. Commits go on meanwhile, for the
//! generation the member is still in (the coordinator accepts them until the group's
//! join phase ends).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use millrace_server::group::{
    CommitOffsets, Coordinator, GroupError, LocalMember, PartitionCommit,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::api::{Result, TopicPartition};
use crate::error::BrokerError;
use crate::hand_over::{HAND_OVER_WAIT, InFlight};

/// How often a member heartbeats: how soon it learns that the group rebalances (a
/// Kafka client joining waits for it). A heartbeat is a lock of the group's state.
const HEARTBEAT: Duration = Duration::from_millis(250);

/// Who the member is now, shared with its heartbeat task.
#[derive(Debug, Default)]
struct Current {
    member_id: String,
    generation: i32,
    /// A join is under way: heartbeats and commits of the old generation would be
    /// refused, and that is no reason to join again.
    joining: bool,
}

/// What the heartbeat task and refused commits tell the consumer.
#[derive(Debug, Default)]
struct Signals {
    current: Mutex<Current>,
    /// The group wants this member to join again; a poll waiting for records wakes.
    rejoin: Notify,
    rejoin_wanted: AtomicBool,
}

impl Signals {
    fn current(&self) -> MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for a new join if the refusal was for the generation the member is in
    /// (not for one it has already left).
    fn refused(&self, generation: i32) {
        let c = self.current();
        if !c.joining && c.generation == generation {
            self.rejoin_wanted.store(true, Ordering::Release);
            self.rejoin.notify_one();
        }
    }

    fn wants_rejoin(&self) -> bool {
        self.rejoin_wanted.load(Ordering::Acquire)
    }
}

type Joined = (
    LocalMember,
    std::result::Result<Vec<(String, i32)>, GroupError>,
);

enum State {
    Joined(LocalMember),
    Joining(JoinHandle<Joined>),
    /// A join that ended, waiting for the next poll to take its answer in.
    Ended(std::result::Result<Joined, tokio::task::JoinError>),
    /// Only while a join's answer is being taken in, or after `leave`.
    Gone,
}

/// One consumer's membership of one group.
pub(super) struct Membership {
    coordinator: Coordinator,
    group: String,
    state: State,
    signals: Arc<Signals>,
    heartbeats: JoinHandle<()>,
    /// What the member waits for before it gives partitions up.
    hand_over: Option<InFlight>,
}

/// What a poll learns from [`Membership::update`].
pub(super) enum Update {
    /// Nothing changed: read the assignment's partitions.
    Steady,
    /// A join is under way: hand out nothing.
    Joining,
    /// A join ended: the member's partitions now.
    Assigned(Vec<TopicPartition>),
}

impl Membership {
    /// A member of `group` for `topics`, joining: as a Kafka consumer's subscribe, it
    /// returns at once, and polls take the assignment in once the join ends (which may
    /// wait for the group's other members to join again).
    pub(super) fn start(coordinator: &Coordinator, group: &str, topics: &[String]) -> Membership {
        let client_id = format!("millrace-{}", std::process::id());
        let mut member = LocalMember::new(coordinator, group, topics, &client_id);
        let signals = Arc::new(Signals::default());
        signals.current().joining = true;
        let heartbeats = tokio::spawn(heartbeat(
            coordinator.clone(),
            group.to_string(),
            Arc::clone(&signals),
        ));
        let join = tokio::spawn(async move {
            let r = member.join().await;
            (member, r)
        });
        Membership {
            coordinator: coordinator.clone(),
            group: group.to_string(),
            state: State::Joining(join),
            signals,
            heartbeats,
            hand_over: None,
        }
    }

    pub(super) fn hand_over_after(&mut self, work: InFlight) {
        self.hand_over = Some(work);
    }

    /// Starts a join when the group asked for one, or takes a finished join's answer.
    pub(super) async fn update(&mut self) -> Result<Update> {
        match &self.state {
            State::Joined(_) if self.signals.wants_rejoin() => {
                self.start_join();
                Ok(Update::Joining)
            }
            State::Joined(_) => Ok(Update::Steady),
            State::Joining(task) if !task.is_finished() => Ok(Update::Joining),
            State::Joining(_) | State::Ended(_) => self.finish_join().await,
            State::Gone => Err(BrokerError::Closed("the consumer left its group")),
        }
    }

    fn start_join(&mut self) {
        let State::Joined(mut member) = std::mem::replace(&mut self.state, State::Gone) else {
            return;
        };
        {
            let mut c = self.signals.current();
            c.joining = true;
            self.signals.rejoin_wanted.store(false, Ordering::Release);
        }
        let work = self.hand_over.clone();
        let group = self.group.clone();
        self.state = State::Joining(tokio::spawn(async move {
            // Every partition may change owner (the range assignor's protocol is
            // eager): what the caller wrote for them must be durable before another
            // member may be given them.
            if let Some(work) = work {
                let idle = tokio::task::spawn_blocking(move || work.wait_idle(HAND_OVER_WAIT))
                    .await
                    .unwrap_or(false);
                if !idle {
                    tracing::warn!(
                        %group,
                        "rejoining while outputs were still in flight after {HAND_OVER_WAIT:?}; \
                         the partitions' next owner may write some outputs again (at least once)"
                    );
                }
            }
            let r = member.join().await;
            (member, r)
        }));
    }

    async fn finish_join(&mut self) -> Result<Update> {
        let ended = match std::mem::replace(&mut self.state, State::Gone) {
            State::Joining(task) => task.await,
            State::Ended(r) => r,
            other => {
                self.state = other;
                return Ok(Update::Steady);
            }
        };
        let (member, joined) =
            ended.map_err(|e| BrokerError::task(format!("joining group '{}'", self.group), e))?;
        *self.signals.current() = Current {
            member_id: member.member_id().to_string(),
            generation: member.generation(),
            joining: false,
        };
        self.state = State::Joined(member);
        match joined {
            Ok(assigned) => Ok(Update::Assigned(to_tps(assigned))),
            Err(e) => {
                // A caller that polls on tries again.
                self.signals.rejoin_wanted.store(true, Ordering::Release);
                Err(group_error(&self.group, e))
            }
        }
    }

    /// Resolves when a poll has something to do about the group: a join to start or
    /// to take in.
    pub(super) async fn changed(&mut self) {
        match &mut self.state {
            State::Joining(task) => {
                // Kept for `update` to take in (awaiting a task handle may be cut
                // short and resumed).
                let ended = task.await;
                self.state = State::Ended(ended);
            }
            State::Ended(_) => {}
            State::Joined(_) => {
                let wake = self.signals.rejoin.notified();
                tokio::pin!(wake);
                wake.as_mut().enable();
                if !self.signals.wants_rejoin() {
                    wake.await;
                }
            }
            State::Gone => std::future::pending().await,
        }
    }

    /// Commits for the generation the member is in.
    pub(super) async fn commit(&self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let (member_id, generation) = {
            let c = self.signals.current();
            (c.member_id.clone(), c.generation)
        };
        let req = CommitOffsets {
            group_id: self.group.clone(),
            member_id,
            group_instance_id: None,
            generation,
            offsets: partition_commits(offsets),
        };
        let answers = self.coordinator.commit_offsets(req).await;
        let first_error = match answers {
            Err(e) => Some(e),
            Ok(each) => each.into_iter().find_map(std::result::Result::err),
        };
        match first_error {
            None => Ok(()),
            Some(e) => {
                if is_rebalance(&e) {
                    self.signals.refused(generation);
                }
                Err(group_error(&self.group, e))
            }
        }
    }

    /// Leaves the group at once, so the others take its partitions without waiting for
    /// its session to expire.
    pub(super) async fn leave(&mut self) {
        self.heartbeats.abort();
        let member = match std::mem::replace(&mut self.state, State::Gone) {
            State::Joined(m) => Some(m),
            State::Joining(task) => {
                task.abort();
                task.await.ok().map(|(m, _)| m)
            }
            State::Ended(r) => r.ok().map(|(m, _)| m),
            State::Gone => None,
        };
        let left = match member {
            Some(m) => m.leave().await,
            None => {
                // The join was cut short: leave under the id it last had.
                let id = self.signals.current().member_id.clone();
                if id.is_empty() {
                    Ok(())
                } else {
                    self.coordinator
                        .leave_group(&self.group, &[(id, None)])
                        .await
                        .map(|_| ())
                }
            }
        };
        if let Err(e) = left {
            tracing::debug!(group = %self.group, "leaving the group: {e}");
        }
    }
}

impl Drop for Membership {
    /// A consumer dropped without `close` (its task failed) still leaves, so the others
    /// need not wait for its session to expire.
    fn drop(&mut self) {
        self.heartbeats.abort();
        if let State::Joining(task) = &self.state {
            task.abort();
        }
        if matches!(self.state, State::Gone) {
            return;
        }
        let id = self.signals.current().member_id.clone();
        if let (false, Ok(rt)) = (id.is_empty(), tokio::runtime::Handle::try_current()) {
            let (coordinator, group) = (self.coordinator.clone(), self.group.clone());
            rt.spawn(async move {
                let _ = coordinator.leave_group(&group, &[(id, None)]).await;
            });
        }
    }
}

/// Heartbeats every [`HEARTBEAT`] for as long as the membership lasts; a refusal that
/// means "join again" wakes the consumer.
async fn heartbeat(coordinator: Coordinator, group: String, signals: Arc<Signals>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let (member_id, generation) = {
            let c = signals.current();
            if c.joining {
                continue;
            }
            (c.member_id.clone(), c.generation)
        };
        match coordinator
            .heartbeat(&group, &member_id, None, generation)
            .await
        {
            Ok(()) => {}
            Err(e) if is_rebalance(&e) => signals.refused(generation),
            Err(e) => tracing::debug!(%group, "heartbeat: {e}"),
        }
    }
}

/// Refusals that a new join answers.
fn is_rebalance(e: &GroupError) -> bool {
    matches!(
        e,
        GroupError::RebalanceInProgress
            | GroupError::IllegalGeneration
            | GroupError::UnknownMemberId
            | GroupError::FencedInstanceId
    )
}

/// The coordinator's form of offsets to commit (no metadata).
pub(super) fn partition_commits(offsets: &[(TopicPartition, i64)]) -> Vec<PartitionCommit> {
    offsets
        .iter()
        .map(|(tp, o)| PartitionCommit {
            topic: tp.topic.to_string(),
            partition: tp.partition,
            offset: *o,
            metadata: None,
        })
        .collect()
}

fn to_tps(assigned: Vec<(String, i32)>) -> Vec<TopicPartition> {
    assigned
        .into_iter()
        .map(|(t, p)| TopicPartition::new(t, p))
        .collect()
}

/// The coordinator's refusal in the broker layer's words.
fn group_error(group: &str, e: GroupError) -> BrokerError {
    match e {
        e if is_rebalance(&e) => BrokerError::Rebalanced(e.to_string()),
        GroupError::InconsistentGroupProtocol => BrokerError::Invalid(format!(
            "consumer group '{group}' has members that do not offer the range assignor, the \
             only one this process's consumers use; give those members \
             partition.assignment.strategy=range"
        )),
        GroupError::CoordinatorNotAvailable => BrokerError::Transient(e.to_string()),
        GroupError::UnknownTopicOrPartition => BrokerError::Invalid(format!(
            "a commit for group '{group}' names a partition the store does not have"
        )),
        GroupError::Store(s) => BrokerError::store(s),
        source => BrokerError::Group {
            group: group.to_string(),
            source,
        },
    }
}
