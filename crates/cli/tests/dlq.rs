//! `millrace dlq list | show | redrive` as a user meets them: the real binary, real exec
//! worker processes, on the embedded store and on Kafka (MILLRACE_TEST_BOOTSTRAP). A
//! worker fails one item in seven while a flag file says its service is down; the tests
//! fix it, redrive, and check that every item is in the outputs exactly once, where it
//! would have been had nothing failed, and that the other stage reading the same input
//! topic received nothing twice.
//!
//! Layout (under `tests/dlq/`):
//! - `support`: the shop pipeline, its flaky worker, and reading what landed where.
//! - `redrive`: `--batch` runs — fix and redrive, redrive while still failing,
//!   selections, `--dry-run`, list and show.
//! - `hostile`: dead letters written by hand, and stages that cannot take them back.
//! - `running`: a running pipeline picks redriven records up; two instances on Kafka.

mod common;

#[path = "dlq/hostile.rs"]
mod hostile;
#[path = "dlq/redrive.rs"]
mod redrive;
#[path = "dlq/running.rs"]
mod running;
#[path = "dlq/support.rs"]
mod support;
