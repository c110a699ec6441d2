//! A group consumer inside the process that holds the store hands partitions over as a
//! Kafka member does: once its group rebalances (here a Kafka client joins it, as a
//! second `millrace run` reaching the store would) it waits for the work its owner has
//! in flight before it joins again, so the newcomer gets partitions only once that work
//! is done and finds every output the old owner wrote.
#![cfg(feature = "kafka")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::unique;
use millrace_broker::holder::{Holder, Listen};
use millrace_broker::kafka::KafkaBroker;
use millrace_broker::{Broker, ConsumerConfig, InFlight, NewTopic, OffsetReset};
use millrace_testkit::poll_until_assigned;

/// How long the old owner's work stays in flight: far longer than a rebalance of an
/// in-process member takes (a heartbeat, 250 ms, and a join).
const IN_FLIGHT_FOR: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_member_gives_partitions_up_only_after_its_work_in_flight() {
    let dir = tempfile::tempdir().expect("temp dir");
    let holder = Holder::open(dir.path(), Listen::Recorded)
        .await
        .expect("hold the store");
    let local = holder.broker().clone();
    let remote = KafkaBroker::connect_to_holder(dir.path(), holder.addr(), Duration::from_secs(10))
        .await
        .expect("reach the holder");
    let t = unique("handover");
    local
        .create_topic(&NewTopic::new(&t, 2))
        .await
        .expect("create");
    let group = unique("g");
    let config = || ConsumerConfig {
        group: Some(group.clone()),
        topics: vec![t.clone()],
        offset_reset: OffsetReset::Earliest,
        properties: Default::default(),
        co_partitioned: false,
        reads_written: false,
    };
    let mut a = local.consumer(config()).await.expect("in-process member");
    let work = InFlight::default();
    a.hand_over_after(work.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.assignment().len() < 2 {
        assert!(Instant::now() < deadline, "a never got both partitions");
        a.poll(10, Duration::from_millis(100))
            .await
            .expect("poll a");
    }
    // A batch of a's is being produced; b joins, and a goes on polling as a stage does.
    let producing = work.begin();
    let mut b = remote.consumer(config()).await.expect("Kafka member");
    let stop = Arc::new(AtomicBool::new(false));
    let a_polls = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                a.poll(10, Duration::from_millis(100))
                    .await
                    .expect("poll a");
            }
            a
        })
    };
    let released = Instant::now() + IN_FLIGHT_FOR;
    let releaser = tokio::spawn(async move {
        tokio::time::sleep_until(released.into()).await;
        drop(producing);
    });
    poll_until_assigned(b.as_mut(), "b", Duration::from_secs(60)).await;
    assert!(
        Instant::now() >= released,
        "b was given a partition while a still had work in flight for it"
    );
    releaser.await.expect("releaser");
    stop.store(true, Ordering::Relaxed);
    let mut a = a_polls.await.expect("a");
    // Each takes the new generation in at a poll.
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.assignment().len() + b.assignment().len() != 2 {
        assert!(
            Instant::now() < deadline,
            "every partition has one owner: {:?} and {:?}",
            a.assignment(),
            b.assignment()
        );
        a.poll(10, Duration::from_millis(50)).await.expect("poll a");
        b.poll(10, Duration::from_millis(50)).await.expect("poll b");
    }
    a.close().await.expect("close a");
    b.close().await.expect("close b");
    holder.stop().await.expect("stop serving");
}
