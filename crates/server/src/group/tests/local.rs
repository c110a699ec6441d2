//! [`LocalMember`], the in-process consumer's side of a group, and the group timers of
//! a coordinator used from more than one runtime.

use std::time::Duration;

use super::*;
use crate::group::LocalMember;

fn local(c: &Coordinator, name: &str) -> LocalMember {
    LocalMember::new(c, "g", &["t".to_string()], name).with_timeouts(SESSION, REBALANCE)
}

#[tokio::test(start_paused = true)]
async fn local_members_split_the_partitions_and_one_leaving_hands_them_over() {
    let (c, _dir) = setup(Duration::from_secs(3));
    let (mut a, mut b) = (local(&c, "a"), local(&c, "b"));
    let (pa, pb) = tokio::join!(bounded(a.join()), bounded(b.join()));
    let (pa, pb) = (pa.unwrap(), pb.unwrap());
    assert_eq!((pa.len(), pb.len()), (2, 2));
    assert_eq!(union(&[pa, pb]), all_of("t", 4));
    assert_eq!(a.generation(), b.generation());
    b.commit(&[("t".into(), 2, 10)]).await.unwrap();
    assert_eq!(c.store().committed_offset("g", "t", 2), Some(10));
    b.leave().await.unwrap();
    assert!(matches!(
        a.heartbeat().await,
        Err(GroupError::RebalanceInProgress)
    ));
    assert_eq!(bounded(a.join()).await.unwrap(), all_of("t", 4));
}

#[tokio::test(start_paused = true)]
async fn a_local_member_forgotten_by_the_group_starts_over_and_its_old_commits_are_refused() {
    let (c, _dir) = setup(Duration::ZERO);
    let mut a = local(&c, "a");
    assert_eq!(bounded(a.join()).await.unwrap(), all_of("t", 4));
    let first = a.member_id().to_string();
    tokio::time::sleep(SESSION + Duration::from_secs(1)).await;
    let stale = a.commit(&[("t".into(), 0, 5)]).await;
    assert!(
        matches!(stale, Err(GroupError::IllegalGeneration)),
        "{stale:?}"
    );
    assert!(matches!(
        a.heartbeat().await,
        Err(GroupError::UnknownMemberId)
    ));
    assert_eq!(bounded(a.join()).await.unwrap(), all_of("t", 4));
    assert_ne!(a.member_id(), first);
    a.commit(&[("t".into(), 0, 5)]).await.unwrap();
}

#[test]
fn group_timeouts_still_run_after_the_runtime_that_started_them_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = millrace_store::Store::open(dir.path(), Default::default()).unwrap();
    let c = Coordinator::new(
        std::sync::Arc::new(store),
        CoordinatorConfig {
            initial_rebalance_delay: Duration::ZERO,
            min_session_timeout: Duration::from_millis(50),
            ..CoordinatorConfig::default()
        },
    );
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    };
    let mut req = join_req("g", "", range(&["t"]));
    req.require_known_member_id = false;
    req.session_timeout = Duration::from_millis(300);
    let first = runtime();
    let joined = first.block_on(c.join_group(req)).unwrap();
    // The timer task started there goes with that runtime.
    drop(first);
    let second = runtime();
    second.block_on(async {
        c.heartbeat("g", &joined.member_id, None, joined.generation)
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while c.describe_group("g").is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the member never expired"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}
