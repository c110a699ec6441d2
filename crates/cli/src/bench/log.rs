//! `millrace bench log`: the embedded store's append and read throughput, each measured
//! against a baseline run in the same process on the same file system, plus a memory row.
//!
//! Rows (ratio = store / baseline, records per second):
//! - append 100 B, durability=none vs a bare loop that frames the same records into a
//!   buffer and `write(2)`s it (target 0.30);
//! - append 1 KiB, durability=none vs a raw sequential `write(2)` of the same encoded
//!   batches (target 0.5);
//! - append 100 B, durability=batch, 4 producer threads vs one thread looping
//!   `write` + `fdatasync` of batches of the same size (target 0.7);
//! - read 100 B from the page cache (target 10 M records/s; baseline: none);
//! - memory: peak RSS (`VmHWM`) at the end vs after the first small run (flat ≈ 1);
//! - durable appends of keyed records to 10, 1,000 and 5,000 partitions, against 10
//!   partitions and against durability=none (`partitions`).
//!
//! The whole run takes a few minutes (most of it making and removing the topics of
//! thousands of partitions, each directory fsynced); its files are removed at the end.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use millrace_store::{Durability, Record, Store, StoreOptions, TopicConfig};

use super::BenchRow;

mod partitions;

/// Records per appended batch in the durability=none rows.
const BATCH: usize = 1000;
/// 100 B records appended (and then read) in the 100 B rows.
const N_100B: usize = 3_000_000;
/// 1 KiB records appended in the 1 KiB rows.
const N_1KIB: usize = 300_000;
/// Alternating runs of baseline and store in the durability=none rows; best of each kept.
const ROUNDS: usize = 3;
/// How long each durability=batch measurement runs.
const SYNC_RUN: Duration = Duration::from_secs(3);
/// Records per batch in the durability=batch rows (100 B each).
const SYNC_BATCH: usize = 100;

pub fn run(dir: &Path) -> anyhow::Result<Vec<BenchRow>> {
    let work = super::WorkDir::create(dir, "bench-log")?;
    run_in(work.path())
}

fn run_in(work: &Path) -> anyhow::Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    let (store, _) = Store::open(&work.join("store"), StoreOptions::default())?;
    let none = TopicConfig {
        durability: Durability::None,
        ..TopicConfig::default()
    };

    // Warm-up (also the memory row's early reference): a small append + read.
    store.create_topic("warmup", 1, none.clone())?;
    append_none(&store, "warmup", 100, 200_000)?;
    read_all(&store, "warmup")?;
    let early_rss = peak_rss_mib()?;

    // 100 B, durability=none vs the bare framing loop. Baseline and store alternate and
    // the best of each is kept, so page-cache writeback hits both alike.
    let batch100 = batch_of(100, BATCH);
    store.create_topic("b100", 1, none.clone())?;
    let (mut bare, mut best) = (0f64, 0f64);
    for _ in 0..ROUNDS {
        bare = bare.max(bare_framing_loop(
            &work.join("bare.bin"),
            &batch100,
            N_100B / BATCH,
        )?);
        best = best.max(N_100B as f64 / append_none(&store, "b100", 100, N_100B)?);
    }
    rows.push(
        rate_row("append 100B durability=none", N_100B, best, 100).against(
            "bare framing loop + write(2)",
            bare,
            0.30,
        ),
    );

    // Read the 100 B records back from the page cache.
    let mut best = (0, f64::MAX);
    for _ in 0..2 {
        let (n, secs) = read_all(&store, "b100")?;
        if secs / (n.max(1) as f64) < best.1 / (best.0.max(1) as f64) {
            best = (n, secs);
        }
    }
    let mut read_row = row("read 100B from page cache", best.0, best.1, 100);
    read_row.target = Some(10_000_000.0);
    rows.push(read_row);
    // Deleting drops the topic's dirty pages, so the next rows start from a quiet cache.
    store.delete_topic("b100")?;

    // 1 KiB, durability=none vs a raw sequential write of the same encoded bytes.
    let batch1k = batch_of(1024, 256);
    let mut encoded = Vec::new();
    millrace_store::codec::encode_batch(&mut encoded, 0, &batch1k)?;
    store.create_topic("b1k", 1, none.clone())?;
    let (mut raw, mut best) = (0f64, 0f64);
    for _ in 0..ROUNDS {
        raw = raw.max(raw_sequential_write(
            &work.join("raw.bin"),
            &encoded,
            N_1KIB / 256,
            256,
        )?);
        best = best.max(
            (N_1KIB / 256 * 256) as f64 / append_batches(&store, "b1k", &batch1k, N_1KIB / 256)?,
        );
    }
    rows.push(
        rate_row(
            "append 1KiB durability=none",
            N_1KIB / 256 * 256,
            best,
            1024,
        )
        .against("raw sequential write(2) of the same bytes", raw, 0.5),
    );
    store.delete_topic("b1k")?;

    // durability=batch, 4 producers, vs write + fdatasync of same-size batches.
    let small = batch_of(100, SYNC_BATCH);
    let mut encoded = Vec::new();
    millrace_store::codec::encode_batch(&mut encoded, 0, &small)?;
    let synced = raw_write_fdatasync(&work.join("sync.bin"), &encoded, SYNC_BATCH, SYNC_RUN)?;
    store.create_topic("sync", 1, TopicConfig::default())?;
    let (n, secs) = append_concurrently(&store, "sync", &small, 4, SYNC_RUN)?;
    rows.push(
        row(
            &format!("append 100B durability=batch 4 producers x {SYNC_BATCH}/batch"),
            n,
            secs,
            100,
        )
        .against(
            &format!("write(2)+fdatasync loop of {}-byte batches", encoded.len()),
            synced,
            0.7,
        ),
    );

    // Memory: the peak after everything vs after the small warm-up. Flat means ~1.
    let total = 200_000 * 2 + N_100B * (ROUNDS + 2) + N_1KIB * ROUNDS + n;
    let end_rss = peak_rss_mib()?;
    rows.push(BenchRow {
        name: "memory: peak RSS (VmHWM) at end vs after 200k-record warm-up".to_string(),
        records: total as u64,
        peak_rss_mib: Some(end_rss),
        baseline: Some("peak RSS after warm-up (MiB)".to_string()),
        baseline_value: Some(early_rss),
        ratio: Some(if early_rss > 0.0 {
            end_rss / early_rss
        } else {
            0.0
        }),
        target: Some(1.5),
        ..BenchRow::default()
    });
    drop(store);
    rows.extend(partitions::rows(work)?);
    Ok(rows)
}

fn row(name: &str, records: usize, secs: f64, record_bytes: usize) -> BenchRow {
    let secs = secs.max(1e-9);
    BenchRow {
        name: name.to_string(),
        records: records as u64,
        records_per_s: records as f64 / secs,
        mb_per_s: (records * record_bytes) as f64 / secs / 1e6,
        ..BenchRow::default()
    }
}

fn rate_row(name: &str, records: usize, per_s: f64, record_bytes: usize) -> BenchRow {
    BenchRow {
        name: name.to_string(),
        records: records as u64,
        records_per_s: per_s,
        mb_per_s: per_s * record_bytes as f64 / 1e6,
        ..BenchRow::default()
    }
}

/// `n` records with values of `size` bytes (no key, no headers).
fn batch_of(size: usize, n: usize) -> Vec<Record> {
    let value = Bytes::from(vec![b'x'; size]);
    (0..n)
        .map(|i| Record::new(None, value.clone(), 1_700_000_000_000 + i as i64))
        .collect()
}

fn append_none(store: &Store, topic: &str, size: usize, n: usize) -> anyhow::Result<f64> {
    append_batches(store, topic, &batch_of(size, BATCH), n / BATCH)
}

fn append_batches(
    store: &Store,
    topic: &str,
    batch: &[Record],
    batches: usize,
) -> anyhow::Result<f64> {
    let t = store.topic(topic)?;
    let p = t.partition(0)?;
    let start = Instant::now();
    for _ in 0..batches {
        p.append(batch)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn read_all(store: &Store, topic: &str) -> anyhow::Result<(usize, f64)> {
    let t = store.topic(topic)?;
    let p = t.partition(0)?;
    let start = Instant::now();
    let mut next = 0;
    let mut n = 0;
    loop {
        let got = p.read(next, 10_000, 8 << 20)?;
        let Some(last) = got.last() else { break };
        next = last.offset + 1;
        n += got.len();
    }
    Ok((n, start.elapsed().as_secs_f64()))
}

fn append_concurrently(
    store: &Store,
    topic: &str,
    batch: &[Record],
    producers: usize,
    run_for: Duration,
) -> anyhow::Result<(usize, f64)> {
    let t = store.topic(topic)?;
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..producers)
        .map(|_| {
            let (t, stop, count, batch) = (
                Arc::clone(&t),
                Arc::clone(&stop),
                Arc::clone(&count),
                batch.to_vec(),
            );
            std::thread::spawn(move || -> anyhow::Result<()> {
                let p = t.partition(0)?;
                while !stop.load(Ordering::Relaxed) {
                    p.append(&batch)?;
                    count.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(run_for);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("producer thread panicked"))??;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((usize::try_from(count.load(Ordering::Relaxed))?, secs))
}

fn create(path: &PathBuf) -> anyhow::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Baseline: frame each record (length, timestamp, value) into a reused buffer and write
/// the buffer with one `write(2)` per batch. Records per second.
fn bare_framing_loop(path: &PathBuf, batch: &[Record], batches: usize) -> anyhow::Result<f64> {
    let mut f = create(path)?;
    let mut buf = Vec::with_capacity(batch.len() * 128);
    let start = Instant::now();
    for _ in 0..batches {
        buf.clear();
        for r in batch {
            buf.extend_from_slice(&u32::try_from(r.value.len())?.to_le_bytes());
            buf.extend_from_slice(&r.timestamp.to_le_bytes());
            buf.extend_from_slice(&r.value);
        }
        f.write_all(&buf)?;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(path)?;
    Ok((batches * batch.len()) as f64 / secs)
}

/// Baseline: write already-encoded batches back to back. Records per second.
fn raw_sequential_write(
    path: &PathBuf,
    bytes: &[u8],
    batches: usize,
    per_batch: usize,
) -> anyhow::Result<f64> {
    let mut f = create(path)?;
    let start = Instant::now();
    for _ in 0..batches {
        f.write_all(bytes)?;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(path)?;
    Ok((batches * per_batch) as f64 / secs)
}

/// Baseline: one thread writing a batch and `fdatasync`ing it, in a loop. Records per second.
fn raw_write_fdatasync(
    path: &PathBuf,
    bytes: &[u8],
    per_batch: usize,
    run_for: Duration,
) -> anyhow::Result<f64> {
    let mut f = create(path)?;
    let start = Instant::now();
    let mut batches = 0usize;
    while start.elapsed() < run_for {
        f.write_all(bytes)?;
        f.sync_data()?;
        batches += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(path)?;
    Ok((batches * per_batch) as f64 / secs)
}

fn peak_rss_mib() -> anyhow::Result<f64> {
    super::peak_rss_mib().context("no VmHWM in /proc/self/status")
}
