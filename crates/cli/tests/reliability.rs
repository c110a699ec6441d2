//! The reliability suite: the real `millrace` binary killed, starved of disk,
//! fed hostile files and records, its Kafka brokers pulled away, and driven faster than
//! it can go. Nothing acknowledged may be lost and nothing may panic.
//!
//! Layout (one module per kind of fault, under `tests/reliability/`):
//! - `support`: scale (CI vs soak), seeded randomness, kill -9, RSS, figures.
//! - `inspect`: committed offsets and records with their lineage, read from the backend.
//! - `kill_loop`: start, kill -9, restart, with input arriving between runs; the drain.
//! - `crash`: kill -9 loops over the sign-up flow, and a copier and map on both backends.
//! - `crash_wordcount`: kill -9 loops over the word count, with and without its combiner.
//! - `storage`: a full disk (tmpfs), a torn tail and a flipped byte through the CLI.
//! - `cluster`: the three-broker cluster: replicated topics, brokers killed or hung.
//! - `kafka_faults`: the three-broker cluster losing a partition leader; two instances.
//! - `kafka_durability`: acks=all and idempotence, with brokers down or hung.
//! - `hostile`: bad pipeline files, bad records, misbehaving exec workers.
//! - `load`: a producer faster than the pipeline — bounded memory, steady throughput.
//! - `safety`: no shell in exec, a private data directory.
//! - `fuzz_replay`: the fuzz targets' checks on stable: saved crashes replayed, and a
//!   short seeded mutation loop (cargo-fuzz runs the long ones: scripts/fuzz.sh).
//!
//! Figures (kills, records checked, duplicates, faults, inputs) are printed as
//! `reliability figure:` lines and, with `MILLRACE_REL_FIGURES=FILE`, appended to FILE
//! as JSON lines; `scripts/soak.sh` collects them for docs/reliability.md.

// Test code: sizes are small and bounded (no lengths from disk), and the kill loop's
// knobs read better as arguments than as a struct.
#![allow(clippy::cast_possible_truncation, clippy::too_many_arguments)]

mod common;

#[path = "reliability/cluster.rs"]
mod cluster;
#[path = "reliability/crash.rs"]
mod crash;
#[path = "reliability/crash_wordcount.rs"]
mod crash_wordcount;
#[path = "reliability/fuzz_replay.rs"]
mod fuzz_replay;
#[path = "reliability/hostile.rs"]
mod hostile;
#[path = "reliability/inspect.rs"]
mod inspect;
#[path = "reliability/kafka_durability.rs"]
mod kafka_durability;
#[path = "reliability/kafka_faults.rs"]
mod kafka_faults;
#[path = "reliability/kill_loop.rs"]
mod kill_loop;
#[path = "reliability/load.rs"]
mod load;
#[path = "reliability/safety.rs"]
mod safety;
#[path = "reliability/storage.rs"]
mod storage;
#[path = "reliability/support.rs"]
mod support;
