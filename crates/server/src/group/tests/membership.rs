//! Joins, rebalances, expiry, leaves, static members and protocol choice.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::group::GroupState;

const DELAY: Duration = Duration::from_secs(3);

/// Heartbeats `m` until the group asks it to rejoin (bounded).
async fn until_rebalance(m: &Sim) {
    for _ in 0..1000 {
        match m.heartbeat().await {
            Err(GroupError::RebalanceInProgress) => return,
            Ok(()) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("heartbeat: {e}"),
        }
    }
    panic!("no rebalance");
}

#[tokio::test(start_paused = true)]
async fn two_members_share_one_generation_one_leader_and_the_leaders_assignment() {
    let (c, _dir) = setup(DELAY);
    let mut m = [Sim::new(&c, "g", &["t"]), Sim::new(&c, "g", &["t"])];
    let parts = rebalance(&mut m).await;
    assert_eq!((m[0].generation, m[1].generation), (1, 1));
    let (o0, o1) = (m[0].last.clone().unwrap(), m[1].last.clone().unwrap());
    assert_eq!(o0.leader, o1.leader);
    assert_eq!(usize::from(o0.is_leader()) + usize::from(o1.is_leader()), 1);
    let leader = if o0.is_leader() { &o0 } else { &o1 };
    let follower = if o0.is_leader() { &o1 } else { &o0 };
    assert_eq!(leader.members.len(), 2);
    assert!(follower.members.is_empty());
    assert_eq!(o0.protocol_name.as_deref(), Some("range"));
    assert_eq!((parts[0].len(), parts[1].len()), (2, 2));
    assert_eq!(union(&parts), all_of("t", 4));
    let d = c.describe_group("g").unwrap();
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.protocol, "range");
    assert_eq!(d.members.len(), 2);
    assert!(
        d.members
            .iter()
            .all(|m| m.client_host == "/127.0.0.1" && !m.assignment.is_empty())
    );
}

#[tokio::test(start_paused = true)]
async fn a_third_member_rebalances_and_the_others_hear_it_until_they_rejoin() {
    let (c, _dir) = setup(DELAY);
    let mut ab = [Sim::new(&c, "g", &["t"]), Sim::new(&c, "g", &["t"])];
    rebalance(&mut ab).await;
    let third = tokio::spawn({
        let mut m = Sim::new(&c, "g", &["t"]);
        async move {
            let a = m.join_and_sync().await.unwrap();
            (m, a)
        }
    });
    until_rebalance(&ab[0]).await;
    assert!(matches!(
        ab[1].heartbeat().await,
        Err(GroupError::RebalanceInProgress)
    ));
    // Still so a while later: the join phase waits for them.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(matches!(
        ab[1].heartbeat().await,
        Err(GroupError::RebalanceInProgress)
    ));
    let parts = rebalance(&mut ab).await;
    let (m3, p3) = third.await.unwrap();
    assert_eq!(
        (ab[0].generation, ab[1].generation, m3.generation),
        (2, 2, 2)
    );
    let all = [parts[0].clone(), parts[1].clone(), p3];
    assert_eq!(union(&all), all_of("t", 4));
    let mut sizes: Vec<usize> = all.iter().map(Vec::len).collect();
    sizes.sort();
    assert_eq!(sizes, vec![1, 1, 2]);
    assert!(ab[0].heartbeat().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_member_that_stops_heartbeating_expires_and_the_rest_rebalance() {
    let (c, _dir) = setup(DELAY);
    let mut m = [Sim::new(&c, "g", &["t"]), Sim::new(&c, "g", &["t"])];
    rebalance(&mut m).await;
    let [silent, mut alive] = m;
    let start = Instant::now();
    let alive = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            match alive.heartbeat().await {
                Ok(()) => continue,
                Err(GroupError::RebalanceInProgress) => {
                    let parts = alive.join_and_sync().await.unwrap();
                    return (alive, parts);
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("the silent member never expired");
    });
    let (alive, parts) = alive.await.unwrap();
    assert!(start.elapsed() >= SESSION, "{:?}", start.elapsed());
    assert_eq!(alive.generation, 2);
    assert!(alive.last.as_ref().unwrap().is_leader());
    assert_eq!(parts, all_of("t", 4));
    assert!(matches!(
        silent.heartbeat().await,
        Err(GroupError::UnknownMemberId)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_member_that_leaves_hands_its_partitions_to_the_others() {
    let (c, _dir) = setup(DELAY);
    let mut m = [Sim::new(&c, "g", &["t"]), Sim::new(&c, "g", &["t"])];
    rebalance(&mut m).await;
    m[0].leave().await.unwrap();
    assert!(matches!(
        m[0].leave().await,
        Err(GroupError::UnknownMemberId)
    ));
    assert!(matches!(
        m[1].heartbeat().await,
        Err(GroupError::RebalanceInProgress)
    ));
    let parts = m[1].join_and_sync().await.unwrap();
    assert_eq!(parts, all_of("t", 4));
    assert_eq!(m[1].generation, 2);
    // The last member leaving empties the group, which is then forgotten.
    m[1].leave().await.unwrap();
    assert!(c.describe_group("g").is_none());
}

#[tokio::test(start_paused = true)]
async fn one_leave_group_takes_several_members_each_answered() {
    let (c, _dir) = setup(DELAY);
    let mut m = [
        Sim::new(&c, "g", &["t"]),
        Sim::new(&c, "g", &["t"]),
        Sim::new(&c, "g", &["t"]),
    ];
    rebalance(&mut m).await;
    let r = c
        .leave_group(
            "g",
            &[
                (m[0].id.clone(), None),
                ("nobody".into(), None),
                (m[1].id.clone(), None),
            ],
        )
        .await
        .unwrap();
    assert!(r[0].is_ok() && r[2].is_ok());
    assert!(matches!(r[1], Err(GroupError::UnknownMemberId)));
    assert_eq!(m[2].join_and_sync().await.unwrap(), all_of("t", 4));
    let r = c.leave_group("nope", &[("x".into(), None)]).await.unwrap();
    assert!(matches!(r[0], Err(GroupError::UnknownMemberId)));
}

/// Heartbeats `m` every 3 s, whatever the answers, until `stop` says so; the answers.
fn keep_heartbeating(
    m: Sim,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Vec<i16>> {
    tokio::spawn(async move {
        let mut codes = Vec::new();
        while !*stop.borrow() {
            codes.push(m.heartbeat().await.err().map_or(0, |e| e.code()));
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        codes
    })
}

#[tokio::test(start_paused = true)]
async fn a_member_that_heartbeats_but_does_not_rejoin_is_dropped_after_the_rebalance_timeout() {
    // A Java consumer stuck in processing: its heartbeat thread runs, its poll does not.
    let (c, _dir) = setup(DELAY);
    let mut m = [Sim::new(&c, "g", &["t"]), Sim::new(&c, "g", &["t"])];
    rebalance(&mut m).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stuck = keep_heartbeating(m[1].clone(), stopped);
    let start = Instant::now();
    let third = tokio::spawn({
        let mut m = Sim::new(&c, "g", &["t"]);
        async move { m.join_and_sync().await.unwrap() }
    });
    until_rebalance(&m[0]).await;
    let first = m[0].join_and_sync().await.unwrap();
    let p3 = third.await.unwrap();
    assert!(start.elapsed() >= REBALANCE, "{:?}", start.elapsed());
    assert_eq!(m[0].generation, 2);
    assert_eq!(union(&[first, p3]), all_of("t", 4));
    assert!(matches!(
        m[1].heartbeat().await,
        Err(GroupError::UnknownMemberId)
    ));
    stop.send(true).unwrap();
    let codes = stuck.await.unwrap();
    assert!(codes.contains(&27), "{codes:?}");
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_never_syncs_is_dropped_and_the_waiting_follower_rejoins() {
    let (c, _dir) = setup(DELAY);
    let mut a = Sim::new(&c, "g", &["t"]);
    let mut b = Sim::new(&c, "g", &["t"]);
    let (ja, jb) = tokio::join!(a.join(), b.join());
    let (ja, _) = (ja.unwrap(), jb.unwrap());
    let (leader, follower) = if ja.is_leader() { (a, b) } else { (b, a) };
    // The leader heartbeats (its session lives) but never brings the assignment.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let hb = keep_heartbeating(leader.clone(), stopped);
    let start = Instant::now();
    let r = follower.sync().await;
    assert!(matches!(r, Err(GroupError::RebalanceInProgress)), "{r:?}");
    assert!(start.elapsed() >= REBALANCE, "{:?}", start.elapsed());
    let mut follower = follower;
    assert_eq!(follower.join_and_sync().await.unwrap(), all_of("t", 4));
    assert!(follower.last.as_ref().unwrap().is_leader());
    assert!(matches!(
        leader.heartbeat().await,
        Err(GroupError::UnknownMemberId)
    ));
    stop.send(true).unwrap();
    assert!(hb.await.unwrap().iter().all(|&c| c == 0 || c == 25));
}

#[tokio::test(start_paused = true)]
async fn a_first_join_gets_its_member_id_and_an_unused_id_expires() {
    let (c, _dir) = setup(Duration::ZERO);
    let r = bounded(c.join_group(join_req("g", "", range(&["t"])))).await;
    let Err(GroupError::MemberIdRequired(id)) = r else {
        panic!("{r:?}");
    };
    assert!(id.starts_with("client-"), "{id}");
    tokio::time::sleep(SESSION + Duration::from_secs(1)).await;
    assert!(c.describe_group("g").is_none());
    let r = bounded(c.join_group(join_req("g", &id, range(&["t"])))).await;
    assert!(matches!(r, Err(GroupError::UnknownMemberId)), "{r:?}");
    // Before v4 a first join is a member at once.
    let mut old = join_req("g", "", range(&["t"]));
    old.require_known_member_id = false;
    let out = bounded(c.join_group(old)).await.unwrap();
    assert_eq!((out.generation, out.is_leader()), (1, true));
}

#[tokio::test(start_paused = true)]
async fn a_follower_rejoining_unchanged_keeps_the_generation_a_leader_rejoining_rebalances() {
    let (c, _dir) = setup(DELAY);
    let mut m = [Sim::new(&c, "g", &["t"]), Sim::new(&c, "g", &["t"])];
    rebalance(&mut m).await;
    let (li, fi) = if m[0].last.as_ref().unwrap().is_leader() {
        (0, 1)
    } else {
        (1, 0)
    };
    let out = m[fi].join().await.unwrap();
    assert_eq!(out.generation, 1);
    assert_eq!(m[fi].sync().await.unwrap().len(), 2);
    let leader = m[li].clone();
    let t = tokio::spawn(async move {
        let mut l = leader;
        l.join().await.unwrap()
    });
    until_rebalance(&m[fi]).await;
    m[fi].join().await.unwrap();
    assert_eq!(t.await.unwrap().generation, 2);
}

#[tokio::test(start_paused = true)]
async fn heartbeats_check_the_member_and_the_generation() {
    let (c, _dir) = setup(DELAY);
    let mut m = [Sim::new(&c, "g", &["t"])];
    rebalance(&mut m).await;
    let a = &m[0];
    assert!(a.heartbeat().await.is_ok());
    let stale = c.heartbeat("g", &a.id, None, a.generation - 1).await;
    assert!(matches!(stale, Err(GroupError::IllegalGeneration)));
    let unknown = c.heartbeat("g", "who", None, a.generation).await;
    assert!(matches!(unknown, Err(GroupError::UnknownMemberId)));
    let nogroup = c.heartbeat("none", &a.id, None, 1).await;
    assert!(matches!(nogroup, Err(GroupError::UnknownMemberId)));
    assert!(matches!(
        c.heartbeat("", &a.id, None, 1).await,
        Err(GroupError::InvalidGroupId)
    ));
    let mut bad = join_req("g", "", range(&["t"]));
    bad.session_timeout = Duration::from_millis(10);
    assert!(matches!(
        bounded(c.join_group(bad)).await,
        Err(GroupError::InvalidSessionTimeout { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_restarted_static_member_takes_its_place_back_without_a_rebalance() {
    let (c, _dir) = setup(DELAY);
    let mut dynamic = Sim::new(&c, "g", &["t"]);
    let mut req = join_req("g", "", range(&["t"]));
    req.group_instance_id = Some("instance-1".into());
    // A static member gets no MEMBER_ID_REQUIRED: its first join is answered.
    let (first, d) = tokio::join!(bounded(c.join_group(req)), dynamic.join());
    let (first, _) = (first.unwrap(), d.unwrap());
    let old = Sim {
        id: first.member_id.clone(),
        instance: Some("instance-1".into()),
        generation: first.generation,
        last: Some(first),
        ..Sim::new(&c, "g", &["t"])
    };
    let (parts, _) = tokio::join!(old.sync(), dynamic.sync());
    let parts = parts.unwrap();
    assert_eq!(parts.len(), 2);
    let mut restarted = old.clone();
    restarted.id = String::new();
    let out = restarted.join().await.unwrap();
    assert_ne!(out.member_id, old.id);
    assert!(out.member_id.starts_with("instance-1-"));
    assert_eq!(out.generation, 1);
    assert!(!out.is_leader());
    assert_eq!(restarted.sync().await.unwrap(), parts);
    assert!(matches!(
        old.heartbeat().await,
        Err(GroupError::FencedInstanceId)
    ));
    assert!(matches!(
        old.sync().await,
        Err(GroupError::FencedInstanceId)
    ));
    let mut again = old.clone();
    assert!(matches!(
        again.join().await,
        Err(GroupError::FencedInstanceId)
    ));
    assert!(restarted.heartbeat().await.is_ok());
    assert!(dynamic.heartbeat().await.is_ok());
}

/// Joins members offering `protocols` (names, in preference order) together; the
/// protocol the group chose.
async fn chosen(c: &Coordinator, group: &str, offers: &[&[&str]]) -> Option<String> {
    let tasks: Vec<_> = offers
        .iter()
        .map(|names| {
            let protocols: Vec<Protocol> = names
                .iter()
                .map(|n| Protocol {
                    name: n.to_string(),
                    metadata: bytes(n),
                })
                .collect();
            let mut req = join_req(group, "", protocols);
            req.require_known_member_id = false;
            let c = c.clone();
            tokio::spawn(async move { bounded(c.join_group(req)).await.unwrap() })
        })
        .collect();
    let mut name = None;
    for t in tasks {
        name = t.await.unwrap().protocol_name;
    }
    name
}

#[tokio::test(start_paused = true)]
async fn the_protocol_is_one_every_member_offers_chosen_by_votes() {
    let (c, _dir) = setup(DELAY);
    let rr = "roundrobin";
    let votes = chosen(&c, "g1", &[&["range", rr], &[rr, "range"], &[rr, "range"]]).await;
    assert_eq!(votes.as_deref(), Some(rr));
    // Nothing in common with the members, or another protocol type.
    let mut sticky = join_req(
        "g1",
        "",
        vec![Protocol {
            name: "sticky".into(),
            metadata: bytes(""),
        }],
    );
    sticky.require_known_member_id = false;
    let r = bounded(c.join_group(sticky)).await;
    assert!(
        matches!(r, Err(GroupError::InconsistentGroupProtocol)),
        "{r:?}"
    );
    let mut connect = join_req("g1", "", range(&["t"]));
    connect.protocol_type = "connect".into();
    let r = bounded(c.join_group(connect)).await;
    assert!(
        matches!(r, Err(GroupError::InconsistentGroupProtocol)),
        "{r:?}"
    );
    let only = chosen(&c, "g2", &[&["range", rr], &[rr]]).await;
    assert_eq!(only.as_deref(), Some(rr));
    let tie = chosen(&c, "g3", &[&["range", rr], &[rr, "range"]]).await;
    assert_eq!(tie.as_deref(), Some("range"));
    // No protocol at all; the group it would have made is not kept.
    let r = bounded(c.join_group(join_req("g9", "", Vec::new()))).await;
    assert!(
        matches!(r, Err(GroupError::InconsistentGroupProtocol)),
        "{r:?}"
    );
    assert!(c.describe_group("g9").is_none());
}

#[tokio::test(start_paused = true)]
async fn other_protocol_types_are_opaque_bytes_to_the_coordinator() {
    let (c, _dir) = setup(DELAY);
    let make = |meta: &str| {
        let mut r = join_req(
            "workers",
            "",
            vec![Protocol {
                name: "sessioned".into(),
                metadata: bytes(meta),
            }],
        );
        r.protocol_type = "connect".into();
        r.require_known_member_id = false;
        r
    };
    let (a, b) = tokio::join!(
        bounded(c.join_group(make("worker-a"))),
        bounded(c.join_group(make("worker-b")))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let leader = if a.is_leader() { &a } else { &b };
    let mut metas: Vec<_> = leader.members.iter().map(|m| m.metadata.clone()).collect();
    metas.sort();
    assert_eq!(metas, vec![bytes("worker-a"), bytes("worker-b")]);
    assert_eq!(leader.protocol_type.as_deref(), Some("connect"));
    let sync = |id: &str, assignments: Vec<(String, Bytes)>| SyncGroup {
        group_id: "workers".into(),
        member_id: id.into(),
        group_instance_id: None,
        generation: 1,
        protocol_type: None,
        protocol_name: None,
        assignments,
    };
    let plan = vec![
        (a.member_id.clone(), bytes("for a")),
        (b.member_id.clone(), bytes("for b")),
    ];
    let (leader_id, follower_id) = if a.is_leader() {
        (&a.member_id, &b.member_id)
    } else {
        (&b.member_id, &a.member_id)
    };
    let (l, f) = tokio::join!(
        bounded(c.sync_group(sync(leader_id, plan))),
        bounded(c.sync_group(sync(follower_id, vec![])))
    );
    assert_eq!(
        f.unwrap().assignment,
        if a.is_leader() {
            bytes("for b")
        } else {
            bytes("for a")
        }
    );
    assert!(l.is_ok());
    let listed = c.list_groups();
    assert_eq!(listed[0].protocol_type, "connect");
}

#[tokio::test(start_paused = true)]
async fn a_new_groups_first_join_phase_waits_for_members_that_keep_arriving() {
    let (c, _dir) = setup(DELAY);
    let old_style = || {
        let mut r = join_req("g", "", range(&["t"]));
        r.require_known_member_id = false;
        r
    };
    let start = Instant::now();
    let first = tokio::spawn({
        let c = c.clone();
        let r = old_style();
        async move { bounded(c.join_group(r)).await.unwrap() }
    });
    // A second member 2 s in, a third 4 s in: each arrives within the delay of the
    // one before, so all three share the first generation.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = tokio::spawn({
        let c = c.clone();
        let r = old_style();
        async move { bounded(c.join_group(r)).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let third = bounded(c.join_group(old_style())).await.unwrap();
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(
        (first.generation, second.generation, third.generation),
        (1, 1, 1)
    );
    assert!(
        start.elapsed() >= Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    assert!(first.is_leader());
    assert_eq!(first.members.len(), 3);
}
