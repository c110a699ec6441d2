//! The [`Coordinator`]: every group of one store, their timers, and the membership API
//! (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) as async Rust calls. Kafka clients
//! reach it through `handlers`; a consumer inside the process holding the store calls it
//! directly and is a member like any other.
//!
//! Each group sits behind its own lock (never held across an await). A group with
//! anything to time (sessions, a join phase, a sync deadline) has one task sleeping until
//! its earliest deadline; it ends when the group has nothing left to time. A group with
//! no members is forgotten (its committed offsets stay in the store).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use millrace_store::{Store, StoreError};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::error::GroupError;
use super::rebalance::Step;
use super::state::{Group, GroupState, JoinGroup, JoinOutcome, SyncGroup, SyncOutcome};

/// The coordinator's settings, named after the Kafka broker settings they mirror.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// `group.initial.rebalance.delay.ms`: a new group's first join phase waits this long
    /// (more while members keep arriving) so members that start together share one
    /// generation instead of rebalancing once per member.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout: Duration,
    /// How long a new member may wait in its first join phase before it is dropped
    /// (its client may have gone; it will join again).
    pub new_member_join_timeout: Duration,
    /// `offset.metadata.max.bytes`: the longest commit metadata string kept.
    pub max_metadata_bytes: usize,
}

impl Default for CoordinatorConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        CoordinatorConfig {
            initial_rebalance_delay: Duration::from_secs(3),
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(30 * 60),
            new_member_join_timeout: Duration::from_secs(5 * 60),
            max_metadata_bytes: 4096,
        }
    }
}

/// One group and the bell its timer task listens for.
pub(crate) struct Slot {
    group: Mutex<Group>,
    /// Rung after every change that may move the group's earliest deadline closer.
    wake: Notify,
}

impl Slot {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Group> {
        self.group.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct Inner {
    pub(crate) store: Arc<Store>,
    pub(crate) config: CoordinatorConfig,
    groups: Mutex<HashMap<String, Arc<Slot>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let groups = self.groups.get_mut().unwrap_or_else(|e| e.into_inner());
        for slot in groups.values() {
            let mut g = slot.lock();
            g.close(|| GroupError::CoordinatorNotAvailable);
            g.removed = true;
            drop(g);
            slot.wake.notify_one();
        }
    }
}

/// The group coordinator of one store. Cheap to clone (a handle); the last handle
/// dropped answers every waiting request with COORDINATOR_NOT_AVAILABLE and stops the
/// timers. Its async calls need a tokio runtime.
#[derive(Clone)]
pub struct Coordinator {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("store", &self.inner.store.dir())
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    pub fn new(store: Arc<Store>, config: CoordinatorConfig) -> Coordinator {
        Coordinator {
            inner: Arc::new(Inner {
                store,
                config,
                groups: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The store whose offsets journal holds the groups' commits.
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.inner.config
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Slot>>> {
        self.inner.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The groups kept in memory (those with members), for listing.
    pub(crate) fn slots(&self) -> Vec<Arc<Slot>> {
        self.map().values().cloned().collect()
    }

    pub(crate) fn slot(&self, id: &str) -> Option<Arc<Slot>> {
        self.map().get(id).cloned()
    }

    /// Runs `f` on group `id` (made first, empty, with `create`) and then starts its
    /// timer, rings it, and forgets the group if it is left with nothing. `None` if the
    /// group is not in memory and `create` is false.
    pub(crate) fn with_group<R>(
        &self,
        id: &str,
        create: bool,
        f: impl FnOnce(&mut Group, Instant) -> R,
    ) -> Option<R> {
        let slot;
        let mut g;
        {
            let mut map = self.map();
            slot = match map.get(id) {
                Some(s) => Arc::clone(s),
                None if create => {
                    let s = Arc::new(Slot {
                        group: Mutex::new(Group::new(id)),
                        wake: Notify::new(),
                    });
                    map.insert(id.to_string(), Arc::clone(&s));
                    s
                }
                None => return None,
            };
            // Locked while the map is: a slot in the map is never a removed one.
            g = slot.lock();
        }
        let r = f(&mut g, Instant::now());
        if g.next_deadline().is_some() && !g.timer_running {
            g.timer_epoch += 1;
            g.timer_running = self.spawn_timer(&slot, g.timer_epoch);
        }
        let idle = g.is_idle();
        drop(g);
        slot.wake.notify_one();
        if idle {
            self.forget_if_idle(id, &slot);
        }
        Some(r)
    }

    /// Takes group `id` out of memory if `slot` is still it and has nothing left.
    pub(crate) fn forget_if_idle(&self, id: &str, slot: &Arc<Slot>) {
        let mut map = self.map();
        if map.get(id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            let mut g = slot.lock();
            if g.is_idle() {
                g.removed = true;
                map.remove(id);
            }
        }
    }

    /// Takes group `id` out of memory if it has no members (DeleteGroups); whether it
    /// was there.
    pub(crate) fn remove_if_empty(&self, id: &str) -> Result<bool, GroupError> {
        let mut map = self.map();
        let Some(slot) = map.get(id).cloned() else {
            return Ok(false);
        };
        let mut g = slot.lock();
        if g.state != GroupState::Empty {
            return Err(GroupError::NonEmptyGroup);
        }
        g.close(|| GroupError::CoordinatorNotAvailable);
        g.removed = true;
        map.remove(id);
        drop(g);
        slot.wake.notify_one();
        Ok(true)
    }

    /// Runs a store call on tokio's blocking threads: commits and deletions wait for an
    /// `fdatasync`, which must not stall the connections sharing this worker.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, GroupError> {
        let store = Arc::clone(&self.inner.store);
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(r) => r.map_err(GroupError::from),
            Err(e) => {
                tracing::error!(error = %e, "a store call of the group coordinator failed");
                Err(GroupError::CoordinatorNotAvailable)
            }
        }
    }

    /// Starts the task that applies `slot`'s timeouts; whether it runs (not outside a
    /// tokio runtime, where nothing would drive it).
    fn spawn_timer(&self, slot: &Arc<Slot>, epoch: u64) -> bool {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "group coordinator used outside a tokio runtime: its timeouts do not run"
            );
            return false;
        };
        // Made here, not in the task: a task dropped before its first poll drops it too.
        let stopped = Stopped {
            slot: Arc::clone(slot),
            epoch,
        };
        rt.spawn(watch(stopped, Arc::downgrade(&self.inner)));
        true
    }

    fn check_session_timeout(&self, t: Duration) -> Result<(), GroupError> {
        let cfg = &self.inner.config;
        if t < cfg.min_session_timeout || t > cfg.max_session_timeout {
            return Err(GroupError::InvalidSessionTimeout {
                given_ms: i64::try_from(t.as_millis()).unwrap_or(i64::MAX),
                min_ms: cfg.min_session_timeout.as_millis(),
                max_ms: cfg.max_session_timeout.as_millis(),
            });
        }
        Ok(())
    }

    /// JoinGroup: waits until the join phase ends (every member rejoined, or the
    /// rebalance timeout) and gives this member's part of the generation.
    pub async fn join_group(&self, req: JoinGroup) -> Result<JoinOutcome, GroupError> {
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.check_session_timeout(req.session_timeout)?;
        let cfg = &self.inner.config;
        let id = req.group_id.clone();
        let step = self
            .with_group(&id, true, |g, now| g.join(req, now, cfg))
            .unwrap_or(Step::Done(Err(GroupError::CoordinatorNotAvailable)));
        settle(step).await
    }

    /// SyncGroup: the leader brings the assignment; every member waits for it and gets
    /// its own part.
    pub async fn sync_group(&self, req: SyncGroup) -> Result<SyncOutcome, GroupError> {
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let id = req.group_id.clone();
        let step = self
            .with_group(&id, false, |g, now| g.sync(req, now))
            .unwrap_or(Step::Done(Err(GroupError::UnknownMemberId)));
        settle(step).await
    }

    /// Heartbeat: keeps the member's session alive; REBALANCE_IN_PROGRESS tells it to
    /// rejoin.
    pub async fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.with_group(group_id, false, |g, now| {
            g.heartbeat(member_id, group_instance_id, generation, now)
        })
        .unwrap_or(Err(GroupError::UnknownMemberId))
    }

    /// LeaveGroup for `members` as `(member id, group instance id)`: one answer each.
    pub async fn leave_group(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let cfg = &self.inner.config;
        Ok(self
            .with_group(group_id, false, |g, now| g.leave(members, now, cfg))
            .unwrap_or_else(|| {
                members
                    .iter()
                    .map(|_| Err(GroupError::UnknownMemberId))
                    .collect()
            }))
    }
}

async fn settle<T>(step: Step<T>) -> Result<T, GroupError> {
    match step {
        Step::Done(r) => r,
        // The sender is dropped only with the group, when the coordinator goes away.
        Step::Wait(rx) => rx.await.unwrap_or(Err(GroupError::CoordinatorNotAvailable)),
    }
}

/// The shortest time between two passes of a group's timer.
const TICK: Duration = Duration::from_millis(10);

/// A group's timer: sleeps until its earliest deadline (or a change), applies what is
/// due, and ends when the group has nothing to time or is gone.
async fn watch(stopped: Stopped, coordinator: Weak<Inner>) {
    let slot = Arc::clone(&stopped.slot);
    // The earliest the next pass may run: a deadline a pass leaves in the past (a
    // zero rebalance timeout sets one at `now`) waits a tick instead of spinning.
    let mut floor = Instant::now();
    loop {
        let next = {
            let mut g = slot.lock();
            match g.next_deadline() {
                Some(t) if !g.removed => t,
                _ => {
                    // Decided under the lock that a change would see: the next change
                    // with a deadline starts a new timer.
                    g.timer_running = false;
                    return;
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(next.max(floor)) => {}
            () = slot.wake.notified() => continue,
        }
        floor = Instant::now() + TICK;
        let Some(inner) = coordinator.upgrade() else {
            return;
        };
        let idle = {
            let mut g = slot.lock();
            g.expire(Instant::now(), &inner.config);
            g.is_idle().then(|| g.id.clone())
        };
        if let Some(id) = idle {
            Coordinator { inner }.forget_if_idle(&id, &slot);
        }
    }
}

/// Clears a group's `timer_running` when its timer task goes away otherwise than by
/// deciding to (its runtime shut down), so the next change starts one anew.
struct Stopped {
    slot: Arc<Slot>,
    epoch: u64,
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let mut g = self.slot.lock();
        if g.timer_epoch == self.epoch {
            g.timer_running = false;
        }
    }
}
