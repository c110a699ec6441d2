//! Kafka's durability settings, tested as Kafka tests them: on the three-broker cluster
//! (replication factor 3, min.insync.replicas=2) with brokers taken away while a
//! producer works. The producer is millrace's own (`KafkaBroker`, with the settings
//! every stage and `millrace produce` use), so a test here fails when `acks=all` or
//! idempotence goes from its defaults.
//! (a) Two of three brokers killed: a produce the leader has appended is not
//! acknowledged (one replica in sync, two required), and a stage started meanwhile
//! waits, then copies everything exactly once when the brokers are back.
//! (b) A follower hangs (SIGSTOP) while a produce waits for it: the broker answers each
//! attempt with a timeout, the client sends it again, and the retries write nothing
//! twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use millrace_broker::kafka::KafkaBroker;
use millrace_broker::{Broker, ProduceRecord};

use crate::cluster::{
    KilledBroker, StoppedBroker, cluster, copier_file, create_placed, every_record_exactly_once,
    log_bytes, produce_n, wait_for_brokers,
};
use crate::common::{Backend, wait_until};
use crate::inspect::{committed_total, records};
use crate::support::{drain_stderr, figure, heavy, no_panic, tail, wait_with_deadline};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// How many records of `topic` have `value`.
fn count_of(b: &Backend, topic: &str, value: &str) -> usize {
    records(b, topic)
        .iter()
        .filter(|r| r.value.as_ref() == value.as_bytes())
        .count()
}

#[test]
fn kafka_produce_is_not_acknowledged_with_two_of_three_brokers_down_and_a_stage_waits() {
    let Some(bootstrap) = cluster() else { return };
    let _heavy = heavy();
    wait_for_brokers(&bootstrap);
    let b = Backend::kafka(bootstrap.clone());
    let (topic, src, dst) = (b.topic("isr"), b.topic("isr-src"), b.topic("isr-dst"));
    // Node 1 leads all three, so it is the one that stays.
    create_placed(&bootstrap, &[&topic, &src, &dst], [1, 2, 3]);
    let n = 2_000;
    produce_n(&b, &src, n, "isr");
    let file = copier_file(&b, &b.topic("isr-copy"), &src, 1, &dst);

    let rt = runtime();
    let k = rt
        .block_on(KafkaBroker::connect(
            &bootstrap,
            BTreeMap::new(),
            Duration::from_secs(10),
        ))
        .expect("connect");
    rt.block_on(k.produce(&topic, &[ProduceRecord::value("before")]))
        .expect("acknowledged while every broker is up");
    let appended = log_bytes(1, &topic, 0);
    let mut down = [KilledBroker::kill(2), KilledBroker::kill(3)];
    let acks = rt
        .block_on(k.send(&topic, &[ProduceRecord::value("during")]))
        .expect("send");
    let mut pending = rt.spawn(acks);
    wait_until(
        Duration::from_secs(30),
        "the leader to append the record",
        || log_bytes(1, &topic, 0) > appended,
    );
    // Appended by the leader, and not acknowledged: with acks=1 the leader answers as
    // soon as it has appended, well within this.
    let early =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), &mut pending).await });
    if let Ok(Ok(Ok(delivered))) = &early {
        panic!(
            "acknowledged with one replica of three in sync (min.insync.replicas=2): {delivered:?}"
        );
    }

    // A stage started now can make nothing durable: it waits (or fails, clearly).
    let f = file.to_str().expect("path");
    let mut run = b.spawn(&["run", f, "--batch", "--no-http"]);
    let err = drain_stderr(&mut run);
    let window = Instant::now() + Duration::from_secs(10);
    while Instant::now() < window && run.try_wait().expect("try_wait").is_none() {
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Some(status) = run.try_wait().expect("try_wait") {
        assert!(
            !status.success(),
            "the copier finished while its outputs could not be acknowledged"
        );
    }
    for broker in &mut down {
        broker.restart();
    }
    wait_for_brokers(&bootstrap);
    let produced = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(120), pending).await })
        .expect("the waiting produce ends")
        .expect("join");
    let out = wait_with_deadline(run, Duration::from_secs(300), "the copier after the outage");
    let e = err.join().unwrap_or_default();
    no_panic("copier across the outage", &e);
    let stage = if out.status.success() {
        "waited, then finished"
    } else {
        "failed, and a second run finished"
    };
    if !out.status.success() {
        // Failing is allowed, clearly and with nothing committed past what is durable;
        // run again, it finishes the job.
        assert!(
            e.contains("error"),
            "failed without saying why:\n{}",
            tail(&e, 30)
        );
        b.ok(&["run", f, "--batch", "--no-http"], b"");
    }
    let checked = every_record_exactly_once(&b, &dst, n, "isr");
    let group = format!("{}.copy", b.topic("isr-copy"));
    assert_eq!(committed_total(&b, &group, &src), n as i64);
    // The produce that waited: acknowledged once the replicas were back, or failed with
    // its message timeout (then it may still have landed, as Kafka's own clients'
    // failed sends may); never twice.
    match &produced {
        Ok(_) => assert_eq!(count_of(&b, &topic, "during"), 1),
        Err(e) => {
            assert!(e.to_string().contains("timed out"), "unclear failure: {e}");
            assert!(count_of(&b, &topic, "during") <= 1);
        }
    }
    assert_eq!(count_of(&b, &topic, "before"), 1);
    figure(
        "kafka_two_brokers_down",
        &[
            ("acknowledged_while_down", "0".into()),
            ("waiting_produce", format!("{:?}", produced.is_ok())),
            ("stage_records", n.to_string()),
            ("stage", stage.into()),
            ("outputs_checked_by_lineage", checked.to_string()),
            ("lost", "0".into()),
            ("duplicates", "0".into()),
        ],
    );
}

#[test]
fn kafka_retries_after_a_hung_follower_write_nothing_twice() {
    let Some(bootstrap) = cluster() else { return };
    let _heavy = heavy();
    wait_for_brokers(&bootstrap);
    let b = Backend::kafka(bootstrap.clone());
    let topic = b.topic("idempotence");
    create_placed(&bootstrap, &[&topic], [1, 2, 3]);
    let rt = runtime();
    // The broker answers a produce still waiting for its replicas after this long, and
    // the client sends it again.
    let props: BTreeMap<String, String> = [("request.timeout.ms".to_string(), "1500".to_string())]
        .into_iter()
        .collect();
    let k = rt
        .block_on(KafkaBroker::connect(
            &bootstrap,
            props,
            Duration::from_secs(10),
        ))
        .expect("connect");
    rt.block_on(k.produce(&topic, &[ProduceRecord::value("first")]))
        .expect("acknowledged while every broker is up");
    let n = 500;
    let batch: Vec<ProduceRecord> = (0..n)
        .map(|i| ProduceRecord::value(format!("r{i}")))
        .collect();
    let appended = log_bytes(1, &topic, 0);
    let hung = StoppedBroker::stop(3);
    let acks = rt.block_on(k.send(&topic, &batch)).expect("send");
    let pending = rt.spawn(acks);
    wait_until(
        Duration::from_secs(30),
        "the leader to append the records",
        || log_bytes(1, &topic, 0) > appended,
    );
    // Three request timeouts: each attempt is answered with a timeout and sent again.
    std::thread::sleep(Duration::from_millis(3 * 1500 + 500));
    drop(hung);
    let delivered = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(120), pending).await })
        .expect("acknowledged once the follower is back")
        .expect("join")
        .expect("delivered");
    assert_eq!(delivered.len(), n);
    let got = records(&b, &topic);
    let mut values: Vec<&[u8]> = got.iter().map(|r| r.value.as_ref()).collect();
    let total = values.len();
    values.sort();
    values.dedup();
    assert_eq!(
        total,
        n + 1,
        "{} records written for {} sent: the retries wrote {} twice",
        total,
        n + 1,
        total - values.len()
    );
    figure(
        "kafka_hung_follower",
        &[
            ("records", n.to_string()),
            ("written", total.to_string()),
            ("duplicates", "0".into()),
        ],
    );
}
