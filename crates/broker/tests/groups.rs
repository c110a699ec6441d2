//! Consumer groups through the broker interface — `list_groups`, `describe_group`,
//! `alter_group_offsets`, `delete_group` — on every backend of `common::backends`, with
//! a member of this process; then a group shared with a foreign client (a kcat `-G`
//! consumer joining the Kafka server of the store this process holds), seen alike by
//! the embedded backend and by the Kafka backend reaching that server.

mod common;

use std::time::Duration;

use common::{Backend, WAIT, backends, poll_n, unique};
use millrace_broker::{
    Broker, BrokerError, Consumer, ConsumerConfig, GroupDescription, GroupState, NewTopic,
    OffsetReset, ProduceRecord, TopicPartition,
};

async fn topic_with(b: &dyn Broker, partitions: i32, records_per_partition: &[usize]) -> String {
    let t = unique("groups");
    b.create_topic(&NewTopic::new(&t, partitions))
        .await
        .unwrap_or_else(|e| panic!("create {t}: {e}"));
    for (p, n) in records_per_partition.iter().enumerate() {
        let records: Vec<ProduceRecord> = (0..*n)
            .map(|i| ProduceRecord {
                partition: Some(i32::try_from(p).unwrap_or(0)),
                ..ProduceRecord::value(format!("p{p}-{i}"))
            })
            .collect();
        b.produce(&t, &records).await.expect("produce");
    }
    t
}

async fn group_consumer(b: &dyn Broker, group: &str, topic: &str) -> Box<dyn Consumer> {
    b.consumer(ConsumerConfig {
        group: Some(group.to_string()),
        offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::new(vec![topic.to_string()])
    })
    .await
    .expect("group consumer")
}

/// Describes `group` until `done` holds, polling `member` meanwhile (a member joins
/// and rebalances from its polls); the last description.
async fn describe_until(
    b: &dyn Broker,
    group: &str,
    mut member: Option<&mut Box<dyn Consumer>>,
    what: &str,
    done: impl Fn(&GroupDescription) -> bool,
) -> GroupDescription {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let d = b.describe_group(group).await;
        if let Ok(d) = &d
            && done(d)
        {
            return d.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {d:?}"
        );
        match member.as_deref_mut() {
            Some(c) => {
                c.poll(100, Duration::from_millis(100)).await.expect("poll");
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn tp(t: &str, p: i32) -> TopicPartition {
    TopicPartition::new(t, p)
}

fn not_empty(r: Result<(), BrokerError>, what: &str) {
    match r {
        Err(BrokerError::GroupNotEmpty { state, .. }) => assert_eq!(state, GroupState::Stable),
        other => panic!("{what} should be refused while members are live: {other:?}"),
    }
}

async fn offsets_reset_and_deleted_once_members_leave(b: &Backend) {
    let broker = b.broker.as_ref();
    let t = topic_with(broker, 2, &[3, 5]).await;
    let g = unique("g");

    let mut c = group_consumer(broker, &g, &t).await;
    assert_eq!(poll_n(c.as_mut(), 8).await.len(), 8, "{}", b.name);
    c.commit(&[(tp(&t, 0), 3), (tp(&t, 1), 5)])
        .await
        .expect("commit");
    let live = describe_until(
        broker,
        &g,
        Some(&mut c),
        "one member owning both partitions",
        |d| {
            d.state == GroupState::Stable
                && d.members.len() == 1
                && d.members[0].assignment.len() == 2
        },
    )
    .await;
    assert_eq!(
        live.members[0].assignment,
        vec![tp(&t, 0), tp(&t, 1)],
        "{}",
        b.name
    );
    assert_eq!(
        live.offsets,
        vec![(tp(&t, 0), 3), (tp(&t, 1), 5)],
        "{}",
        b.name
    );
    let listed = broker.list_groups().await.expect("list");
    assert!(
        listed
            .iter()
            .any(|l| l.group == g && l.state == GroupState::Stable),
        "{}: {listed:?}",
        b.name
    );
    not_empty(
        broker.alter_group_offsets(&g, &[(tp(&t, 0), 0)]).await,
        "a reset",
    );
    not_empty(broker.delete_group(&g).await, "a delete");

    c.close().await.expect("close");
    let left = describe_until(broker, &g, None, "the member left", |d| {
        d.state == GroupState::Empty
    })
    .await;
    assert!(left.members.is_empty(), "{}: {left:?}", b.name);
    assert_eq!(
        left.offsets,
        vec![(tp(&t, 0), 3), (tp(&t, 1), 5)],
        "{}",
        b.name
    );

    broker
        .alter_group_offsets(&g, &[(tp(&t, 0), 1)])
        .await
        .unwrap_or_else(|e| panic!("{}: reset: {e}", b.name));
    let reset = broker.describe_group(&g).await.expect("describe");
    assert_eq!(
        reset.offsets,
        vec![(tp(&t, 0), 1), (tp(&t, 1), 5)],
        "{}",
        b.name
    );
    // The group reads on from the new offset.
    let mut again = group_consumer(broker, &g, &t).await;
    let records = poll_n(again.as_mut(), 2).await;
    let values: Vec<&[u8]> = records.iter().map(|r| &r.value[..]).collect();
    assert_eq!(values, [&b"p0-1"[..], b"p0-2"], "{}", b.name);
    again.close().await.expect("close");
    describe_until(broker, &g, None, "the member left", |d| {
        d.state == GroupState::Empty
    })
    .await;

    broker
        .delete_group(&g)
        .await
        .unwrap_or_else(|e| panic!("{}: delete: {e}", b.name));
    for (what, r) in [
        ("describe", broker.describe_group(&g).await.map(|_| ())),
        ("delete", broker.delete_group(&g).await),
    ] {
        assert!(
            matches!(&r, Err(BrokerError::UnknownGroup(x)) if *x == g),
            "{}: {what} of a deleted group: {r:?}",
            b.name
        );
    }
    let listed = broker.list_groups().await.expect("list");
    assert!(
        !listed.iter().any(|l| l.group == g),
        "{}: {listed:?}",
        b.name
    );
    broker.delete_topic(&t).await.expect("delete topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_offsets_are_reset_and_it_is_deleted_only_once_its_members_leave() {
    for b in backends().await {
        eprintln!("{}", b.name);
        tokio::time::timeout(
            Duration::from_secs(120),
            offsets_reset_and_deleted_once_members_leave(&b),
        )
        .await
        .unwrap_or_else(|_| panic!("{} timed out", b.name));
    }
}

/// kcat in a group until dropped (SIGTERM: it leaves the group as it exits).
#[cfg(feature = "kafka")]
struct Kcat(std::process::Child);

#[cfg(feature = "kafka")]
impl Drop for Kcat {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kcat_member_and_an_in_process_member_are_one_group_on_both_backends() {
    use millrace_broker::holder::{Holder, Listen};
    use millrace_broker::kafka::KafkaBroker;

    let have_kcat = std::process::Command::new("kcat")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_kcat {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kcat is missing but CI=true: this test must run"
        );
        eprintln!("kcat is missing (apt-get install -y kcat): test skipped");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let holder = Holder::open(dir.path(), Listen::Recorded)
        .await
        .expect("hold the store");
    let embedded = holder.broker().clone();
    let over_kafka =
        KafkaBroker::connect_to_holder(dir.path(), holder.addr(), Duration::from_secs(10))
            .await
            .expect("the holder's Kafka server");
    let t = topic_with(&embedded, 4, &[10, 10, 10, 10]).await;
    let g = unique("shared");

    let mut ours = group_consumer(&embedded, &g, &t).await;
    let kcat = Kcat(
        std::process::Command::new("kcat")
            .args(["-b", &holder.addr().to_string(), "-G", &g, "-q"])
            .args([
                "-X",
                "client.id=kcat-member",
                "-X",
                "auto.offset.reset=earliest",
                &t,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn kcat"),
    );
    let shared = describe_until(
        &embedded,
        &g,
        Some(&mut ours),
        "kcat and this process sharing the topic",
        |d| {
            d.state == GroupState::Stable
                && d.members.len() == 2
                && d.members.iter().all(|m| m.assignment.len() == 2)
        },
    )
    .await;
    let clients: std::collections::BTreeSet<&str> = shared
        .members
        .iter()
        .map(|m| m.client_id.as_str())
        .collect();
    assert!(clients.contains("kcat-member"), "{shared:?}");
    let mut owned: Vec<TopicPartition> = shared
        .members
        .iter()
        .flat_map(|m| m.assignment.clone())
        .collect();
    owned.sort();
    assert_eq!(owned, (0..4).map(|p| tp(&t, p)).collect::<Vec<_>>());

    // The Kafka backend, through the holder's server, sees the same group.
    let seen = over_kafka
        .describe_group(&g)
        .await
        .expect("describe over Kafka");
    let members = |d: &GroupDescription| {
        let mut m: Vec<(String, String, String, Vec<TopicPartition>)> = d
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.clone(),
                    m.client_id.clone(),
                    m.host.clone(),
                    m.assignment.clone(),
                )
            })
            .collect();
        m.sort();
        m
    };
    assert_eq!(members(&seen), members(&shared));
    assert_eq!(
        (seen.state, seen.protocol.as_str()),
        (GroupState::Stable, "range")
    );
    for b in [&embedded as &dyn Broker, &over_kafka] {
        not_empty(
            b.alter_group_offsets(&g, &[(tp(&t, 0), 0)]).await,
            "a reset",
        );
        not_empty(b.delete_group(&g).await, "a delete");
        let listed = b.list_groups().await.expect("list");
        assert!(
            listed
                .iter()
                .any(|l| l.group == g && l.state == GroupState::Stable),
            "{listed:?}"
        );
    }

    drop(kcat);
    ours.close().await.expect("close");
    describe_until(&over_kafka, &g, None, "both members left", |d| {
        d.state == GroupState::Empty
    })
    .await;
    over_kafka
        .alter_group_offsets(&g, &[(tp(&t, 2), 4)])
        .await
        .expect("reset over Kafka");
    let after = embedded.describe_group(&g).await.expect("describe");
    assert!(after.offsets.contains(&(tp(&t, 2), 4)), "{after:?}");
    over_kafka
        .delete_group(&g)
        .await
        .expect("delete over Kafka");
    assert!(matches!(
        embedded.describe_group(&g).await,
        Err(BrokerError::UnknownGroup(_))
    ));
    drop(over_kafka);
    holder.stop().await.expect("stop holding");
}
