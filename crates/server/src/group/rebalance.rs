//! The classic group protocol's rebalance, as Kafka's `GroupCoordinator` runs it: joins,
//! the join phase and its end (`membership` has what members do within a generation).
//! Every method runs under the group's lock and never waits; a request that must wait
//! for other members gets a receiver the group answers on later.
//!
//! A rebalance: the group enters PreparingRebalance; members learn it from their
//! heartbeats (REBALANCE_IN_PROGRESS) and rejoin; once every member has rejoined, or the
//! longest rebalance timeout has passed (members that did not rejoin are removed), the
//! generation is bumped, a protocol chosen, a leader named, and every waiting JoinGroup
//! answered (the leader's answer lists the members). In CompletingRebalance the members
//! sync; the leader's SyncGroup brings the assignment, which answers every waiting sync
//! and makes the group Stable. Members that do not sync within the rebalance timeout
//! are removed, which starts the next rebalance.

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::coordinator::CoordinatorConfig;
use super::error::GroupError;
use super::state::{Group, GroupState, JoinGroup, JoinOutcome, Member, PendingMember};

/// What a request that may wait gets from the group: its answer now, or a receiver the
/// group sends it on once the phase it waits for ends.
pub(crate) enum Step<T> {
    Done(Result<T, GroupError>),
    Wait(oneshot::Receiver<Result<T, GroupError>>),
}

/// Kafka's member id: the client's id (or the static member's instance id) and a UUID.
fn new_member_id(client_id: &str, instance: Option<&str>) -> String {
    format!("{}-{}", instance.unwrap_or(client_id), uuid::Uuid::new_v4())
}

impl Group {
    /// A JoinGroup. The caller has checked the group id and session timeout.
    pub fn join(
        &mut self,
        req: JoinGroup,
        now: Instant,
        cfg: &CoordinatorConfig,
    ) -> Step<JoinOutcome> {
        let step = if self.state == GroupState::Dead {
            Step::Done(Err(GroupError::CoordinatorNotAvailable))
        } else if req.member_id.is_empty() {
            self.join_unknown(req, now, cfg)
        } else {
            self.join_known(req, now, cfg)
        };
        self.try_complete_join(now, cfg);
        step
    }

    fn join_unknown(
        &mut self,
        req: JoinGroup,
        now: Instant,
        cfg: &CoordinatorConfig,
    ) -> Step<JoinOutcome> {
        if !self.supports_protocols(None, &req.protocol_type, &req.protocols) {
            return Step::Done(Err(GroupError::InconsistentGroupProtocol));
        }
        let id = new_member_id(&req.client_id, req.group_instance_id.as_deref());
        if let Some(instance) = req.group_instance_id.as_deref()
            && let Some(old) = self.static_member(instance).map(str::to_string)
        {
            return self.replace_static_member(&old, id, req, now, cfg);
        }
        if req.require_known_member_id && req.group_instance_id.is_none() {
            self.pending.push(PendingMember {
                id: id.clone(),
                expires: now + req.session_timeout,
            });
            return Step::Done(Err(GroupError::MemberIdRequired(id)));
        }
        self.add_member_and_rebalance(id, req, now, cfg)
    }

    fn join_known(
        &mut self,
        req: JoinGroup,
        now: Instant,
        cfg: &CoordinatorConfig,
    ) -> Step<JoinOutcome> {
        let id = req.member_id.clone();
        if !self.supports_protocols(Some(&id), &req.protocol_type, &req.protocols) {
            return Step::Done(Err(GroupError::InconsistentGroupProtocol));
        }
        if let Some(i) = self.pending.iter().position(|p| p.id == id) {
            self.pending.remove(i);
            return self.add_member_and_rebalance(id, req, now, cfg);
        }
        let instance = req.group_instance_id.as_deref();
        if self.is_fenced(&id, instance) {
            return Step::Done(Err(GroupError::FencedInstanceId));
        }
        if !self.has(&id) || instance.is_some_and(|i| self.static_member(i).is_none()) {
            return Step::Done(Err(GroupError::UnknownMemberId));
        }
        let unchanged = self.member(&id).is_some_and(|m| m.matches(&req.protocols));
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(req, now, cfg),
            GroupState::CompletingRebalance if unchanged => {
                // A member that lost its JoinGroup answer asks again: the same answer.
                Step::Done(Ok(self.outcome_of(&id)))
            }
            GroupState::Stable if unchanged && !self.is_leader(&id) => {
                // A follower with nothing new: the current generation, no rebalance. A
                // leader's join does rebalance, so a leader can start one (for new
                // partitions of a subscribed topic, which change no member's metadata).
                let mut out = self.outcome_of(&id);
                out.members.clear();
                Step::Done(Ok(out))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(req, now, cfg)
            }
            GroupState::Empty | GroupState::Dead => Step::Done(Err(GroupError::UnknownMemberId)),
        }
    }

    fn outcome_of(&self, id: &str) -> JoinOutcome {
        match self.member(id) {
            Some(m) => self.join_outcome(m),
            None => JoinOutcome {
                member_id: id.to_string(),
                generation: self.generation,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol.clone(),
                leader: self.leader.clone().unwrap_or_default(),
                members: Vec::new(),
            },
        }
    }

    /// A static member joined again without its member id (a restart): it takes over its
    /// old membership under a new id, and the old id is fenced.
    fn replace_static_member(
        &mut self,
        old: &str,
        id: String,
        req: JoinGroup,
        now: Instant,
        cfg: &CoordinatorConfig,
    ) -> Step<JoinOutcome> {
        let previous_leader = self.leader.clone().unwrap_or_default();
        if self.is_leader(old) {
            self.leader = Some(id.clone());
        }
        if let Some(p) = self.pending_sync.iter_mut().find(|p| p.as_str() == old) {
            *p = id.clone();
        }
        let Some(m) = self.member_mut(old) else {
            return Step::Done(Err(GroupError::UnknownMemberId));
        };
        if let Some(w) = m.awaiting_join.take() {
            let _ = w.send(Err(GroupError::FencedInstanceId));
        }
        if let Some(w) = m.awaiting_sync.take() {
            let _ = w.send(Err(GroupError::FencedInstanceId));
        }
        m.id = id.clone();
        m.client_id = req.client_id.clone();
        m.client_host = req.client_host.clone();
        m.session_timeout = req.session_timeout;
        m.rebalance_timeout = req.rebalance_timeout;
        m.expires = now + req.session_timeout;
        let unchanged = m.matches(&req.protocols);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance if unchanged => {
                // No rebalance for a restart. The answer names the leader as it was, so
                // a replaced leader does not compute an assignment that a group in this
                // state would not hand out.
                Step::Done(Ok(JoinOutcome {
                    member_id: id,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    leader: previous_leader,
                    members: Vec::new(),
                }))
            }
            _ => {
                let mut req = req;
                req.member_id = id;
                self.update_member_and_rebalance(req, now, cfg)
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        id: String,
        req: JoinGroup,
        now: Instant,
        cfg: &CoordinatorConfig,
    ) -> Step<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        if self.state == GroupState::PreparingRebalance && self.generation == 0 {
            self.new_member_added = true;
        }
        self.members.push(Member {
            id,
            instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocols: req.protocols,
            assignment: Default::default(),
            awaiting_join: Some(tx),
            awaiting_sync: None,
            // A new member is not expired by its session while it waits in the join
            // phase; this bounds a member whose client went away before its answer.
            expires: now + cfg.new_member_join_timeout,
        });
        self.maybe_prepare_rebalance(now, cfg);
        Step::Wait(rx)
    }

    fn update_member_and_rebalance(
        &mut self,
        req: JoinGroup,
        now: Instant,
        cfg: &CoordinatorConfig,
    ) -> Step<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        let Some(m) = self.member_mut(&req.member_id) else {
            return Step::Done(Err(GroupError::UnknownMemberId));
        };
        m.protocols = req.protocols;
        m.session_timeout = req.session_timeout;
        m.rebalance_timeout = req.rebalance_timeout;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        if let Some(old) = m.awaiting_join.replace(tx) {
            // A join sent again while the first one waits: the newer one gets the answer.
            let _ = old.send(Err(GroupError::RebalanceInProgress));
        }
        self.maybe_prepare_rebalance(now, cfg);
        Step::Wait(rx)
    }

    fn maybe_prepare_rebalance(&mut self, now: Instant, cfg: &CoordinatorConfig) {
        if matches!(
            self.state,
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
        ) {
            self.prepare_rebalance(now, cfg);
        }
    }

    fn prepare_rebalance(&mut self, now: Instant, cfg: &CoordinatorConfig) {
        if self.state == GroupState::CompletingRebalance {
            // Members waiting for the leader's assignment rejoin instead.
            for m in &mut self.members {
                m.assignment = Default::default();
                if let Some(w) = m.awaiting_sync.take() {
                    // Its session starts again with the answer, as after any wait.
                    m.expires = now + m.session_timeout;
                    let _ = w.send(Err(GroupError::RebalanceInProgress));
                }
            }
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let timeout = self.rebalance_timeout();
        self.join_deadline = Some(now + timeout);
        self.initial_delay_until = None;
        if self.state == GroupState::Empty && !cfg.initial_rebalance_delay.is_zero() {
            self.initial_delay_until = Some(now + cfg.initial_rebalance_delay.min(timeout));
            self.new_member_added = false;
        }
        self.state = GroupState::PreparingRebalance;
    }

    /// Ends the join phase if it is over: every member rejoined (and a new group's
    /// initial delay passed), or the rebalance timeout passed.
    pub fn try_complete_join(&mut self, now: Instant, cfg: &CoordinatorConfig) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let timed_out = self.join_deadline.is_none_or(|d| now >= d);
        if let Some(until) = self.initial_delay_until {
            if !timed_out {
                if now < until {
                    return;
                }
                if self.new_member_added {
                    self.new_member_added = false;
                    let next = now + cfg.initial_rebalance_delay;
                    self.initial_delay_until = self.join_deadline.map(|d| d.min(next));
                    return;
                }
            }
        } else if !timed_out && !self.all_joined() {
            return;
        }
        self.complete_join(now);
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.iter().all(|m| m.awaiting_join.is_some())
    }

    fn complete_join(&mut self, now: Instant) {
        self.initial_delay_until = None;
        self.new_member_added = false;
        // Dynamic members that did not rejoin leave; static ones keep their place (they
        // may be restarting) until their session expires.
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            tracing::info!(group = %self.id, member = %id, "member did not rejoin in time; removed");
            self.remove_member(id);
        }
        if self.members.is_empty() {
            self.generation += 1;
            self.protocol = None;
            self.subscribed_topics = None;
            self.join_deadline = None;
            self.state = GroupState::Empty;
            return;
        }
        if !self.members.iter().any(|m| m.awaiting_join.is_some()) {
            // Only static members that have not rejoined: wait another round for them
            // to rejoin or expire.
            self.join_deadline = Some(now + self.rebalance_timeout());
            return;
        }
        let leader_rejoined = self
            .leader
            .as_deref()
            .and_then(|l| self.member(l))
            .is_some_and(|m| m.awaiting_join.is_some());
        if !leader_rejoined {
            // The leader did not rejoin (a static one restarting): one that did leads.
            self.leader = self
                .members
                .iter()
                .find(|m| m.awaiting_join.is_some())
                .map(|m| m.id.clone());
        }
        self.generation += 1;
        self.protocol = self.select_protocol();
        self.subscribed_topics = self.compute_subscribed_topics();
        self.state = GroupState::CompletingRebalance;
        self.join_deadline = None;
        self.pending_sync = self.members.iter().map(|m| m.id.clone()).collect();
        self.sync_deadline = Some(now + self.rebalance_timeout());
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            protocol = self.protocol.as_deref().unwrap_or(""),
            "join phase complete"
        );
        let outcomes: Vec<JoinOutcome> = self
            .members
            .iter()
            .filter(|m| m.awaiting_join.is_some())
            .map(|m| self.join_outcome(m))
            .collect();
        for out in outcomes {
            if let Some(m) = self.member_mut(&out.member_id) {
                m.expires = now + m.session_timeout;
                if let Some(w) = m.awaiting_join.take() {
                    let _ = w.send(Ok(out));
                }
            }
        }
    }

    /// Takes `id` out of the group, answering a request it has waiting, and names a new
    /// leader if it led.
    fn remove_member(&mut self, id: &str) {
        let Some(i) = self.members.iter().position(|m| m.id == id) else {
            return;
        };
        let m = self.members.remove(i);
        if let Some(w) = m.awaiting_join {
            let _ = w.send(Err(GroupError::UnknownMemberId));
        }
        if let Some(w) = m.awaiting_sync {
            let _ = w.send(Err(GroupError::UnknownMemberId));
        }
        self.pending_sync.retain(|p| p != id);
        if self.is_leader(id) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
    }

    /// Removes `id` and moves the group on: a rebalance for a group that had one
    /// generation going, or the end of a join phase that waited for it.
    pub(super) fn remove_member_and_update(
        &mut self,
        id: &str,
        now: Instant,
        cfg: &CoordinatorConfig,
    ) {
        self.remove_member(id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, cfg);
                self.try_complete_join(now, cfg);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, cfg),
            GroupState::Empty | GroupState::Dead => {}
        }
    }
}
