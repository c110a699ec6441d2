//! Tests across processes: the directory lock, and kill -9 during durability=batch
//! appends. The child is this test binary re-executed (`--ignored --exact child_…`) with
//! an environment variable naming its data directory. The `child_*` functions are
//! ignored tests so that an ordinary run never counts them: run alone, they fail.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{config, open};
use millrace_store::{Durability, Record, Store, StoreError, StoreOptions};

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
    if store.topic("crash").is_err() {
        store
            .create_topic("crash", 1, config(Durability::Batch, 64 * 1024))
            .unwrap();
    }
    let topic = store.topic("crash").unwrap();
    let start: u64 = std::env::var("MILLRACE_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
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
    // The producers never finish: the parent kills this process.
    drop(handles);
    loop {
        std::thread::park();
    }
}

#[test]
fn crash_kill_9_during_batch_appends_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    // (producer, first seq, count, base offset) of every acknowledged batch, all rounds.
    let mut acked: Vec<(u64, u64, u64, u64)> = Vec::new();
    for round in 0..5u64 {
        let mut cmd = child_command("child_append_until_killed", dir.path());
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
                    let _ = tx.send((v[0], v[1], v[2], v[3]));
                }
            }
        });
        // Wait for some acks, then kill at a moment that varies by round.
        let deadline = Instant::now() + Duration::from_secs(20);
        let want = 50 + round * 37;
        let mut seen = 0;
        while seen < want && Instant::now() < deadline {
            if let Ok(ack) = rx.recv_timeout(Duration::from_millis(100)) {
                acked.push(ack);
                seen += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(round * 3));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(rx.try_iter());
        assert!(seen > 0, "round {round}: the child acknowledged nothing");

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
