//! What members do within a generation, under the group's lock: SyncGroup (the
//! leader's assignment handed out), heartbeats, the member checks of a commit,
//! LeaveGroup, and the expiry of sessions, unused member ids and late syncs.

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::coordinator::CoordinatorConfig;
use super::error::GroupError;
use super::rebalance::Step;
use super::state::{Group, GroupState, SyncGroup, SyncOutcome};

impl Group {
    /// A SyncGroup.
    pub fn sync(&mut self, req: SyncGroup, now: Instant) -> Step<SyncOutcome> {
        let id = req.member_id.as_str();
        let error = if self.state == GroupState::Dead {
            Some(GroupError::CoordinatorNotAvailable)
        } else if self.is_fenced(id, req.group_instance_id.as_deref()) {
            Some(GroupError::FencedInstanceId)
        } else if !self.has(id) {
            Some(GroupError::UnknownMemberId)
        } else if req.generation != self.generation {
            Some(GroupError::IllegalGeneration)
        } else if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref())
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|p| Some(p) != self.protocol.as_ref())
        {
            Some(GroupError::InconsistentGroupProtocol)
        } else {
            match self.state {
                GroupState::Empty | GroupState::Dead => Some(GroupError::UnknownMemberId),
                GroupState::PreparingRebalance => Some(GroupError::RebalanceInProgress),
                GroupState::CompletingRebalance | GroupState::Stable => None,
            }
        };
        if let Some(e) = error {
            return Step::Done(Err(e));
        }
        self.pending_sync.retain(|p| p != id);
        if self.pending_sync.is_empty() {
            self.sync_deadline = None;
        }
        let leads = self.is_leader(id);
        let stable = self.state == GroupState::Stable;
        let (protocol_type, protocol_name) = (self.protocol_type.clone(), self.protocol.clone());
        let Some(m) = self.member_mut(id) else {
            return Step::Done(Err(GroupError::UnknownMemberId));
        };
        m.expires = now + m.session_timeout;
        if stable {
            return Step::Done(Ok(SyncOutcome {
                protocol_type,
                protocol_name,
                assignment: m.assignment.clone(),
            }));
        }
        let (tx, rx) = oneshot::channel();
        if let Some(old) = m.awaiting_sync.replace(tx) {
            let _ = old.send(Err(GroupError::RebalanceInProgress));
        }
        if leads {
            self.apply_assignment(req.assignments, now);
        }
        Step::Wait(rx)
    }

    /// The leader's assignment: every member gets its part (none: empty), waiting syncs
    /// are answered, and the group is Stable.
    fn apply_assignment(&mut self, assignments: Vec<(String, bytes::Bytes)>, now: Instant) {
        for m in &mut self.members {
            m.assignment = assignments
                .iter()
                .find(|(id, _)| *id == m.id)
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
        }
        self.state = GroupState::Stable;
        tracing::info!(group = %self.id, generation = self.generation, "assignment received from the leader; stable");
        for m in &mut self.members {
            if let Some(w) = m.awaiting_sync.take() {
                m.expires = now + m.session_timeout;
                let _ = w.send(Ok(SyncOutcome {
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    assignment: m.assignment.clone(),
                }));
            }
        }
    }

    /// Checks that `member_id` (of `instance`) is a member in `generation`: the
    /// checks a heartbeat and a commit share.
    fn check_member(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if let Some(i) = instance {
            match self.static_member(i) {
                None => return Err(GroupError::UnknownMemberId),
                Some(holder) if holder != member_id => return Err(GroupError::FencedInstanceId),
                Some(_) => {}
            }
        } else if !self.has(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    fn touch(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.member_mut(member_id) {
            m.expires = now + m.session_timeout;
        }
    }

    /// A Heartbeat: keeps the member's session; REBALANCE_IN_PROGRESS tells it to
    /// rejoin.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), GroupError> {
        self.check_member(member_id, instance, generation)?;
        match self.state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                self.touch(member_id, now);
                Err(GroupError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.touch(member_id, now);
                Ok(())
            }
        }
    }

    /// Whether an OffsetCommit of this member and generation may commit for the group.
    /// Generation -1 without a member is a commit of a client that manages its own
    /// partitions (or of an admin tool): allowed while the group has no members.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance.is_some() {
            self.check_member(member_id, instance, generation)?;
        } else {
            return Err(GroupError::UnknownMemberId);
        }
        if self.state == GroupState::CompletingRebalance {
            // A member of the new generation that has not synced yet: it commits again
            // once it has its assignment.
            return Err(GroupError::RebalanceInProgress);
        }
        self.touch(member_id, now);
        Ok(())
    }

    /// A LeaveGroup for several members, as `(member id, group instance id)`; each
    /// gets its own answer.
    pub fn leave(
        &mut self,
        members: &[(String, Option<String>)],
        now: Instant,
        cfg: &CoordinatorConfig,
    ) -> Vec<Result<(), GroupError>> {
        let mut results = Vec::with_capacity(members.len());
        for (member_id, instance) in members {
            let target = match instance.as_deref() {
                Some(i) => match self.static_member(i) {
                    None => Err(GroupError::UnknownMemberId),
                    Some(holder) if !member_id.is_empty() && holder != member_id => {
                        Err(GroupError::FencedInstanceId)
                    }
                    Some(holder) => Ok(holder.to_string()),
                },
                None if self.is_pending(member_id) => {
                    self.pending.retain(|p| p.id != *member_id);
                    self.try_complete_join(now, cfg);
                    results.push(Ok(()));
                    continue;
                }
                None if self.has(member_id) => Ok(member_id.clone()),
                None => Err(GroupError::UnknownMemberId),
            };
            match target {
                Ok(id) => {
                    tracing::info!(group = %self.id, member = %id, "member left");
                    self.remove_member_and_update(&id, now, cfg);
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        results
    }

    /// Applies every timeout due at `now`: pending member ids and sessions expire,
    /// members that did not sync are removed, a join phase ends.
    pub fn expire(&mut self, now: Instant, cfg: &CoordinatorConfig) {
        let pending_before = self.pending.len();
        self.pending.retain(|p| p.expires > now);
        if self.pending.len() != pending_before {
            self.try_complete_join(now, cfg);
        }
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.may_expire() && m.expires <= now)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member_and_update(&id, now, cfg);
        }
        if self.sync_deadline.is_some_and(|d| d <= now) {
            let late = std::mem::take(&mut self.pending_sync);
            self.sync_deadline = None;
            for id in late {
                tracing::info!(group = %self.id, member = %id, "member did not sync in time; removed");
                self.remove_member_and_update(&id, now, cfg);
            }
        }
        self.try_complete_join(now, cfg);
    }

    /// Ends the group: every waiting request is answered with `error`.
    pub fn close(&mut self, error: impl Fn() -> GroupError) {
        for m in &mut self.members {
            if let Some(w) = m.awaiting_join.take() {
                let _ = w.send(Err(error()));
            }
            if let Some(w) = m.awaiting_sync.take() {
                let _ = w.send(Err(error()));
            }
        }
    }
}
