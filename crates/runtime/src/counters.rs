//! Per-stage counters.
//!
//! Every record a stage reads ends in exactly one bucket, so at any moment
//! `records_in = out + filtered + dead_lettered + in_flight` (conservation). `out`
//! counts input records that caused at least one output; `emitted` counts the output
//! records themselves (a copier to three topics emits three per input).
//!
//! A coordinated stage (join, reduce) also reports where its barrier stands
//! ([`BarrierProgress`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

#[derive(Debug, Default)]
pub struct StageCounters {
    records_in: AtomicU64,
    out: AtomicU64,
    filtered: AtomicU64,
    dead_lettered: AtomicU64,
    emitted: AtomicU64,
    /// Records read and committed: all of their outputs are durable.
    committed: AtomicU64,
    /// Redriven records done (in `out`, `filtered` or `dead_lettered` too), and those of
    /// them dead-lettered again.
    redriven: AtomicU64,
    redrive_failed: AtomicU64,
    /// Coordinated stages only.
    barrier: Mutex<Option<BarrierProgress>>,
}

/// Where a coordinated stage stands with its batch: the batch's number, how many of
/// the stage's input partitions (`of`, all instances' together) this instance has read
/// to the batch's end (`done`), and how many batches it has released so far.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct BarrierProgress {
    pub batch: u64,
    pub done: u32,
    pub of: u32,
    pub released: u64,
}

/// A consistent-enough copy for reports; `in_flight` is derived, never stored, so the
/// identity holds by construction within one snapshot.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub records_in: u64,
    pub out: u64,
    pub filtered: u64,
    pub dead_lettered: u64,
    pub in_flight: u64,
    pub emitted: u64,
    pub committed: u64,
    /// Records redriven to the stage (see `redrive`) that it is done with, whatever
    /// their outcome; they are counted in the buckets above as well.
    pub redriven: u64,
    /// Redriven records that failed again (in `dead_lettered` too).
    pub redrive_failed: u64,
}

impl StageCounters {
    pub fn read(&self, n: u64) {
        self.records_in.fetch_add(n, Ordering::AcqRel);
    }

    pub fn finish(&self, out: u64, filtered: u64, dead_lettered: u64, emitted: u64) {
        // Buckets are bumped before anyone can see `in` without them only in the
        // direction that makes in_flight momentarily larger, never negative.
        self.out.fetch_add(out, Ordering::AcqRel);
        self.filtered.fetch_add(filtered, Ordering::AcqRel);
        self.dead_lettered
            .fetch_add(dead_lettered, Ordering::AcqRel);
        self.emitted.fetch_add(emitted, Ordering::AcqRel);
    }

    /// Redriven records done, and how many of them failed again.
    pub fn redriven(&self, done: u64, failed: u64) {
        self.redriven.fetch_add(done, Ordering::AcqRel);
        self.redrive_failed.fetch_add(failed, Ordering::AcqRel);
    }

    pub fn committed(&self, n: u64) {
        self.committed.fetch_add(n, Ordering::AcqRel);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        // Read the buckets first and `in` last: `in` only grows, so in_flight >= 0.
        let out = self.out.load(Ordering::Acquire);
        let filtered = self.filtered.load(Ordering::Acquire);
        let dead_lettered = self.dead_lettered.load(Ordering::Acquire);
        let emitted = self.emitted.load(Ordering::Acquire);
        let committed = self.committed.load(Ordering::Acquire);
        let redriven = self.redriven.load(Ordering::Acquire);
        let redrive_failed = self.redrive_failed.load(Ordering::Acquire);
        let records_in = self.records_in.load(Ordering::Acquire);
        CounterSnapshot {
            records_in,
            out,
            filtered,
            dead_lettered,
            in_flight: records_in.saturating_sub(out + filtered + dead_lettered),
            emitted,
            committed,
            redriven,
            redrive_failed,
        }
    }
}

impl StageCounters {
    /// Where the batch in hand stands (coordinated stages).
    pub fn barrier_at(&self, batch: u64, done: u32, of: u32) {
        let mut b = self.barrier.lock().unwrap_or_else(|p| p.into_inner());
        let released = b.map_or(0, |b| b.released);
        *b = Some(BarrierProgress {
            batch,
            done,
            of,
            released,
        });
    }

    /// The batch in hand was released.
    pub fn barrier_released(&self) {
        let mut b = self.barrier.lock().unwrap_or_else(|p| p.into_inner());
        b.get_or_insert_with(BarrierProgress::default).released += 1;
    }

    pub fn barrier(&self) -> Option<BarrierProgress> {
        // Every update writes the whole value: a poisoned one is still sound.
        *self.barrier.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records read but handed to another instance before they were done (a
    /// rebalance): they are read again there, so they leave this instance's count.
    pub fn forget(&self, n: u64) {
        self.records_in.fetch_sub(n, Ordering::AcqRel);
    }
}
