//! Power loss: the store runs on a layer that keeps only what `fdatasync` and directory
//! fsyncs made durable (`common/power_loss.rs`); the power is cut at every crash point of
//! a scripted workload, or at random moments under concurrent appenders, the data
//! directory is rebuilt from what survived, and the store recovers from it.
//!
//! What each durability level promises after a power loss:
//! - `batch`: every acknowledged append and commit survives; what survives of a
//!   partition is a prefix of what was written (torn tails cut, nothing invented);
//! - `interval:<ms>`: every record readers could see (fsynced) survives; records
//!   acknowledged but not yet flushed may be lost;
//! - `none`: the partition keeps a prefix of what was written, or the store reports a
//!   corrupt middle (docs/format.md) — never wrong records, never a panic.
//!
//! Layout: `crash_points` (a scripted workload cut at each of its crash points),
//! `concurrent` (appenders and commits cut at random moments; a roll under a held
//! sync), `journal` (the shared journal: appends acknowledged together, checkpoints,
//! replay), `levels` (interval and none), `offsets` (the committed-offsets journal),
//! `tail` (segments written behind the journal from tail buffers).
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

#[path = "../common/mod.rs"]
mod common;
mod concurrent;
mod crash_points;
mod journal;
mod levels;
mod offsets;
mod tail;

use std::time::Duration;

use bytes::Bytes;
use common::config;
use common::power_loss::{PowerLoss, Tear};
use millrace_store::{Durability, Record, Store};

fn value(tag: &str, i: u64) -> Record {
    Record::new(
        Some(Bytes::from(format!("k{}", i % 5))),
        Bytes::from(format!("{tag}-{i}-{}", "x".repeat((i * 13 % 40) as usize))),
        i as i64,
    )
}

/// xorshift64*, seeded: the cut moments repeat run to run.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed | 1;
    move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A store on a fresh power-losing layer, with one topic.
fn store_with(
    seed: u64,
    tear: Tear,
    topic: &str,
    partitions: u32,
    durability: Durability,
    segment_bytes: u64,
) -> (PowerLoss, Store) {
    let layer = PowerLoss::with_store(seed);
    layer.set_tear(tear);
    let (store, _) = layer.open().unwrap();
    store
        .create_topic(topic, partitions, config(durability, segment_bytes))
        .unwrap();
    (layer, store)
}

fn reopen(layer: &PowerLoss, store: Store, what: &str) -> Store {
    drop(store);
    layer.reboot();
    layer
        .open()
        .unwrap_or_else(|e| panic!("{what}: the store does not open after the cut: {e}"))
        .0
}

/// Waits (up to 10 s) until `f` holds.
fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
