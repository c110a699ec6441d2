//! Tests across processes: the directory lock, and kill -9 during durability=batch
//! appends (to one partition from several producers; to 1,000 partitions at once). The
//! child is this test binary re-executed (`--ignored --exact child_…`) with an
//! environment variable naming its data directory. The `child_*` functions are ignored
//! tests so that an ordinary run never counts them: run alone, they fail.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{config, open};
use millrace_store::{Durability, Pending, Record, Store, StoreError, StoreOptions, Topic};

const CHILD_DIR: &str = "MILLRACE_STORE_TEST_CHILD_DIR";

/// This test binary, set to run the ignored child test `test` alone.
fn child_command(test: &str, dir: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        test,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_DIR, dir);
    c
}

/// The data directory a child works in; a child run by hand fails here.
fn child_dir(test: &str) -> std::path::PathBuf {
    match std::env::var(CHILD_DIR) {
        Ok(d) => d.into(),
        Err(_) => panic!("{test} is the child process of another test in this file, not a test"),
    }
}

fn spawn_child(test: &str, dir: &Path) -> Child {
    child_command(test, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Child part of the lock test: holds the store until its stdin closes.
#[test]
#[ignore = "the child process of second_process_opening_a_held_directory_gets_locked_with_the_holders_pid"]
fn child_hold_lock() {
    let dir = child_dir("child_hold_lock");
    let (_store, _) = open(&dir);
    println!("LOCKED");
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

#[test]
fn second_process_opening_a_held_directory_gets_locked_with_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child("child_hold_lock", dir.path());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("LOCKED") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child exited before locking"
        );
    }
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    match &err {
        StoreError::Locked { pid, path } => {
            assert_eq!(*pid, child.id());
            assert_eq!(path, dir.path());
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&format!("pid {}", child.id())),
        "{err}"
    );
    drop(child.stdin.take()); // let the child exit
    child.wait().unwrap();
    // The kernel released the lock with the process.
    open(dir.path());
}

/// The durability=batch topic a crash child appends to, made on its first round.
fn topic_for_child(store: &Store, name: &str, partitions: u32, segment_bytes: u64) -> Arc<Topic> {
    if store.topic(name).is_err() {
        store
            .create_topic(name, partitions, config(Durability::Batch, segment_bytes))
            .unwrap();
    }
    store.topic(name).unwrap()
}

/// The round a crash child runs in, as its parent numbers them.
fn crash_round() -> u64 {
    std::env::var("MILLRACE_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap()
}

/// Runs crash child `test` for round `round`, waits (up to `within`) until it printed
/// `want` acknowledgements, kills it with SIGKILL a moment later that varies by round,
/// and returns every acknowledgement it printed (the numbers after `ACK `).
fn kill_child_after(
    test: &str,
    dir: &Path,
    round: u64,
    want: usize,
    within: Duration,
) -> Vec<Vec<u64>> {
    let mut cmd = child_command(test, dir);
    cmd.env("MILLRACE_CRASH_ROUND", round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ACK ") {
                let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                let _ = tx.send(v);
            }
        }
    });
    let deadline = Instant::now() + within;
    let mut acked = Vec::new();
    while acked.len() < want && Instant::now() < deadline {
        if let Ok(ack) = rx.recv_timeout(Duration::from_millis(100)) {
            acked.push(ack);
        }
    }
    std::thread::sleep(Duration::from_millis(round * 3));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    acked.extend(rx.try_iter());
    acked
}

/// The producers never finish: the parent kills this process.
fn wait_to_be_killed(producers: Vec<std::thread::JoinHandle<()>>) -> ! {
    drop(producers);
    loop {
        std::thread::park();
    }
}

fn value(producer: u64, seq: u64) -> Bytes {
    // Sizes vary so batches straddle segment boundaries at different points.
    let pad = (seq * 7919 + producer * 31) % 300;
    Bytes::from(format!("p{producer}-s{seq}-{}", "x".repeat(pad as usize)))
}

/// Child part of the crash test: 4 producers append durability=batch batches forever and
/// print each acknowledged batch as `ACK <producer> <first seq> <count> <base offset>`.
#[test]
#[ignore = "the child process of crash_kill_9_during_batch_appends_loses_no_acknowledged_record"]
fn child_append_until_killed() {
    let dir = child_dir("child_append_until_killed");
    let (store, _) = open(&dir);
    let topic = topic_for_child(&store, "crash", 1, 64 * 1024);
    let start = crash_round();
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let handles: Vec<_> = (0..4u64)
        .map(|producer| {
            let topic = Arc::clone(&topic);
            let stdout = Arc::clone(&stdout);
            std::thread::spawn(move || {
                let mut seq = start * 1_000_000;
                loop {
                    let count = 1 + (seq % 5);
                    let records: Vec<Record> = (seq..seq + count)
                        .map(|s| Record::new(None, value(producer, s), s as i64))
                        .collect();
                    let base = topic.partition(0).unwrap().append(&records).unwrap();
                    let mut out = stdout.lock().unwrap();
                    writeln!(out, "ACK {producer} {seq} {count} {base}").unwrap();
                    out.flush().unwrap();
                    seq += count;
                }
            })
        })
        .collect();
    wait_to_be_killed(handles)
}

#[test]
fn crash_kill_9_during_batch_appends_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    // (producer, first seq, count, base offset) of every acknowledged batch, all rounds.
    let mut acked: Vec<(u64, u64, u64, u64)> = Vec::new();
    for round in 0..5u64 {
        // Wait for some acks, then kill at a moment that varies by round.
        let want = 50 + round as usize * 37;
        let got = kill_child_after(
            "child_append_until_killed",
            dir.path(),
            round,
            want,
            Duration::from_secs(20),
        );
        assert!(
            !got.is_empty(),
            "round {round}: the child acknowledged nothing"
        );
        acked.extend(got.iter().map(|v| (v[0], v[1], v[2], v[3])));

        // Reopen and check: every acknowledged record is there, at its offset, in order.
        let (store, report) = open(dir.path());
        let t = store.topic("crash").unwrap();
        let p = t.partition(0).unwrap();
        let all = p.read(0, usize::MAX, usize::MAX).unwrap();
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.offset, i as u64, "offsets are dense and in order");
        }
        for &(producer, seq, count, base) in &acked {
            for k in 0..count {
                let r = &all.get((base + k) as usize).unwrap_or_else(|| {
                    panic!(
                        "round {round}: acknowledged offset {} missing (end {}); {report}",
                        base + k,
                        all.len()
                    )
                });
                assert_eq!(
                    r.record.value,
                    value(producer, seq + k),
                    "offset {}",
                    base + k
                );
            }
        }
        // Per producer, its records appear in the order it appended them.
        for producer in 0..4 {
            let prefix = format!("p{producer}-s");
            let seqs: Vec<u64> = all
                .iter()
                .filter_map(|r| {
                    std::str::from_utf8(&r.record.value)
                        .ok()?
                        .strip_prefix(&prefix)?
                        .split('-')
                        .next()?
                        .parse()
                        .ok()
                })
                .collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "producer {producer} out of order"
            );
        }
    }
    assert!(acked.len() > 200);
}

const MANY: u32 = 1_000;

/// A value that names where it was sent: partition, offset and the child's round.
fn placed(p: u32, offset: u64, round: u64) -> Bytes {
    let pad = (offset * 31 + u64::from(p)) % 120;
    Bytes::from(format!(
        "p{p}-o{offset}-r{round}-{}",
        "y".repeat(pad as usize)
    ))
}

/// Child part of the many-partitions crash test: 2 producers, each over half of a
/// 1,000-partition durability=batch topic, append to a few hundred partitions at a
/// time and wait for them together (one journal sync), then print each acknowledged
/// batch as `ACK <partition> <base offset> <count>`. Small journal files keep
/// checkpoints running in the background.
#[test]
#[ignore = "the child process of crash_kill_9_producing_to_1000_partitions_keeps_a_clean_prefix_of_each"]
fn child_produce_to_many_until_killed() {
    let dir = child_dir("child_produce_to_many_until_killed");
    let opts = StoreOptions {
        journal_file_bytes: 256 << 10,
        ..StoreOptions::default()
    };
    let (store, _) = Store::open(&dir, opts).unwrap();
    let topic = topic_for_child(&store, "many", MANY, 16 * 1024);
    let round = crash_round();
    let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let handles: Vec<_> = (0..2u32)
        .map(|producer| {
            let topic = Arc::clone(&topic);
            let stdout = Arc::clone(&stdout);
            std::thread::spawn(move || {
                let mine: Vec<u32> = (0..MANY).filter(|p| p % 2 == producer).collect();
                for turn in 0u64.. {
                    let mut pending = Pending::default();
                    let mut acks = Vec::new();
                    for &p in mine.iter().filter(|&&p| u64::from(p) % 3 != turn % 3) {
                        let part = topic.partition(p).unwrap();
                        let count = 1 + (turn + u64::from(p)) % 3;
                        // The last turn waited: what this producer wrote is durable.
                        let end = part.end_offset();
                        let records: Vec<Record> = (end..end + count)
                            .map(|o| Record::new(None, placed(p, o, round), o as i64))
                            .collect();
                        let base = part
                            .append_pending(records.iter().map(Record::as_ref), &mut pending)
                            .unwrap();
                        assert_eq!(base, end, "one producer per partition");
                        acks.push((p, base, count));
                    }
                    pending.wait().unwrap();
                    let mut out = stdout.lock().unwrap();
                    for (p, base, count) in acks {
                        writeln!(out, "ACK {p} {base} {count}").unwrap();
                    }
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    wait_to_be_killed(handles)
}

#[test]
fn crash_kill_9_producing_to_1000_partitions_keeps_a_clean_prefix_of_each() {
    let dir = tempfile::tempdir().unwrap();
    // Per partition: (base, count, round) of every acknowledged batch, all rounds.
    let mut acked: Vec<Vec<(u64, u64, u64)>> = vec![Vec::new(); MANY as usize];
    let mut total = 0;
    for round in 0..4u64 {
        // A few thousand acknowledged batches, then a kill.
        let want = 2_000 + round as usize * 1_500;
        let got = kill_child_after(
            "child_produce_to_many_until_killed",
            dir.path(),
            round,
            want,
            Duration::from_secs(60),
        );
        assert!(
            got.len() >= want,
            "round {round}: {} batches acknowledged in 60 s",
            got.len()
        );
        for v in &got {
            acked[v[0] as usize].push((v[1], v[2], round));
        }
        total += got.len();

        // Every partition holds a clean prefix of what was sent to it, with every
        // acknowledged record as it was acknowledged.
        let (store, report) = open(dir.path());
        let t = store.topic("many").unwrap();
        for p in 0..MANY {
            let part = t.partition(p).unwrap();
            let all = part.read(0, usize::MAX, usize::MAX).unwrap();
            assert_eq!(part.end_offset(), all.len() as u64);
            for (i, r) in all.iter().enumerate() {
                let text = std::str::from_utf8(&r.record.value).unwrap();
                let sent_round = (0..=round).find(|&k| r.record.value == placed(p, i as u64, k));
                assert!(
                    r.offset == i as u64 && sent_round.is_some(),
                    "round {round}: partition {p} offset {i} holds {text}, never sent there"
                );
            }
            for &(base, count, k) in &acked[p as usize] {
                for o in base..base + count {
                    let got = all.get(o as usize).unwrap_or_else(|| {
                        panic!(
                            "round {round}: partition {p} LOST acknowledged offset {o} (end {}); {report}",
                            all.len()
                        )
                    });
                    assert_eq!(
                        got.record.value,
                        placed(p, o, k),
                        "partition {p} offset {o}"
                    );
                }
            }
        }
    }
    assert!(total > 10_000, "{total} batches acknowledged");
}
