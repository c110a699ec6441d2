//! Copiers and mergers on the embedded store move records as stored (`task/forward.rs`)
//! instead of decoding and re-encoding each one. That path must write exactly what the
//! record path writes: the same records (key, value, headers with the lineage header
//! last, timestamp) in the same output partitions at the same offsets, the same dead
//! letters and the same counts. Kafka has only the record path, which the pattern tests
//! cover on both backends.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use millrace_broker::{ConsumedRecord, ConsumerConfig, Header, OffsetReset, ProduceRecord};
use millrace_runtime::{RunOptions, RunSummary, Runtime};

const SRC: &str = r#"
pipeline: fwd{s}
dead_letter: fwd{s}.dlq
topics:
  in: { partitions: 3 }
  in2: { partitions: 2 }
  x{s}: { partitions: 2 }
  y{s}: { partitions: 5 }
  m{s}: { partitions: 3 }
stages:
  copy: { kind: copier, from: in, to: [x{s}, y{s}] }
  merge: { kind: merger, from: [in, in2], to: m{s} }
"#;

async fn run(b: &TestBackend, forward_encoded: bool) -> RunSummary {
    let spec = millrace_runtime::build::from_plan(&b.plan(SRC)).expect("build");
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let opts = RunOptions {
        batch: true,
        // Small stage batches: several polls, some ending inside a stored batch.
        max_batch: 7,
        forward_encoded,
    };
    tokio::time::timeout(
        Duration::from_secs(120),
        Runtime::new(spec).run(b.broker.clone(), opts, rx),
    )
    .await
    .expect("batch run finishes")
    .expect("batch run succeeds")
}

/// A topic as the comparison sees it: per output partition and origin (the input
/// partition, from the lineage header; the source headers for a dead letter), that
/// origin's records in order — key, value, headers, timestamp. Records of different
/// input partitions may interleave differently in an output partition (a poll takes
/// whole stored batches on one path, per-record shares on the other); the order per
/// input partition is what both must keep.
/// (Values longer than 64 bytes are compared by length and hash, so that a failure
/// does not print megabytes.)
type Seen = BTreeMap<(i32, String), Vec<(Option<Bytes>, String, Vec<Header>, i64)>>;

fn seen(records: &[ConsumedRecord]) -> Seen {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut out = Seen::new();
    for r in records {
        let from = header(r, millrace_runtime::lineage::HEADER)
            .and_then(|h| h.split('#').next().map(str::to_string))
            .or_else(|| {
                let stage = header(r, "millrace.stage")?;
                let source = header(r, "millrace.source.partition")?;
                Some(format!("dead letter of {stage}, from {source}"))
            })
            .expect("a lineage or dead-letter header");
        let value = if r.value.len() <= 64 {
            String::from_utf8_lossy(&r.value).into_owned()
        } else {
            let mut h = DefaultHasher::new();
            r.value.hash(&mut h);
            format!("{} bytes, hash {:x}", r.value.len(), h.finish())
        };
        out.entry((r.partition, from)).or_default().push((
            r.key.clone(),
            value,
            r.headers.clone(),
            r.timestamp,
        ));
    }
    out
}

/// The inputs: keyed and unkeyed records, with and without headers, in batches of
/// several sizes, and one record too big to forward (over the 8 MiB record limit).
fn inputs() -> Vec<(&'static str, Vec<ProduceRecord>)> {
    let mut out = Vec::new();
    let mut n = 0;
    for (topic, batches) in [("in", [1usize, 9, 30, 4]), ("in2", [3, 12, 1, 5])] {
        for size in batches {
            let recs = (0..size)
                .map(|_| {
                    n += 1;
                    let mut r = ProduceRecord::value(format!("{{\"n\":{n}}}").into_bytes());
                    if n % 3 != 0 {
                        r.key = Some(Bytes::from(format!("user-{}", n % 11)));
                    }
                    if n % 4 == 0 {
                        r.headers = vec![
                            Header::new("trace", Bytes::from(format!("t{n}"))),
                            Header::new("trace", Bytes::new()),
                        ];
                    }
                    r.timestamp = Some(1_700_000_000_000 + n);
                    if n % 5 == 0 {
                        // Unkeyed records of one input partition stay together.
                        r.key = None;
                        r.partition = Some(i32::try_from(n % 2).expect("small"));
                    }
                    r
                })
                .collect();
            out.push((topic, recs));
        }
    }
    let mut big = ProduceRecord::value(vec![b'x'; (8 << 20) + 1]);
    big.partition = Some(1);
    out.push(("in", vec![big]));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_writes_exactly_what_the_record_path_writes() {
    let b = embedded();
    // Both runs read the same input topics (no suffix), in groups of their own.
    let (rec, fwd) = (b.with_suffix("-rec"), b.with_suffix("-fwd"));
    rec.create_topics(SRC).await;
    fwd.create_topics(SRC).await;
    for (topic, recs) in inputs() {
        b.produce(topic, recs).await;
    }
    let by_record = run(&rec, false).await;
    let forwarded = run(&fwd, true).await;
    assert_conserved(&forwarded);
    for (a, f) in by_record.stages.iter().zip(&forwarded.stages) {
        assert_eq!(a.counters, f.counters, "counts of {}", a.name);
    }
    let copy = stage(&forwarded, "copy");
    assert_eq!(copy.counters.records_in, 45);
    assert_eq!(copy.counters.dead_lettered, 1, "the big record");
    assert_eq!(copy.counters.emitted, 2 * 44);
    for t in ["x", "y", "m", "fwd"] {
        let name = |s: &TestBackend| {
            if t == "fwd" {
                format!("fwd{}.dlq", s.suffix)
            } else {
                s.t(t)
            }
        };
        let want = seen(&rec.read_all(&name(&rec)).await);
        let got = seen(&fwd.read_all(&name(&fwd)).await);
        assert!(!want.is_empty(), "{t} holds records");
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "partitions and origins of {t}"
        );
        for (k, w) in &want {
            assert_eq!(got[k].len(), w.len(), "records of {k:?} in {t}");
            for (g, w) in got[k].iter().zip(w) {
                assert_eq!(g, w, "{k:?} in {t}");
            }
        }
    }
    // The forwarding path was taken: it reads whole stored batches (the input has one
    // of 30 records), so it writes batches longer than the record path's polls of 7.
    assert!(longest_batch(&fwd, &fwd.t("x")).await > 7);
    assert!(longest_batch(&rec, &rec.t("x")).await <= 7);
    // Keyed records landed by murmur2 of the key, unkeyed ones with their input
    // partition's records: every partition of y (5) holds some.
    let per_partition: BTreeMap<i32, usize> =
        fwd.read_all(&fwd.t("y"))
            .await
            .iter()
            .fold(BTreeMap::new(), |mut m, r| {
                *m.entry(r.partition).or_default() += 1;
                m
            });
    assert_eq!(per_partition.len(), 5, "{per_partition:?}");
    // The lineage header is last, after the input's own.
    let x = fwd.read_all(&fwd.t("x")).await;
    let with_trace = x
        .iter()
        .find(|r| r.headers.len() == 3)
        .expect("a record with headers");
    assert_eq!(&*with_trace.headers[0].key, "trace");
    assert_eq!(
        &*with_trace.headers[2].key,
        millrace_runtime::lineage::HEADER
    );
}

/// The most records any stored batch of `topic` holds (an encoded poll hands out one
/// run per stored batch).
async fn longest_batch(b: &TestBackend, topic: &str) -> usize {
    let mut cfg = ConsumerConfig::new(vec![topic.to_string()]);
    cfg.offset_reset = OffsetReset::Earliest;
    let mut c = b.broker.consumer(cfg).await.expect("consumer");
    let mut longest = 0;
    loop {
        let polls = c
            .encoded()
            .expect("the embedded store reads records as stored")
            .poll_encoded(1, Duration::from_millis(10))
            .await
            .expect("poll");
        if polls.is_empty() {
            break;
        }
        longest = polls
            .iter()
            .map(|p| p.records.len())
            .fold(longest, usize::max);
    }
    longest
}
