//! exec: the "work" of a node — the book's work-queue and multi-worker patterns.
//!
//! A [`WorkerPool`] keeps `workers` long-running child processes of one command
//! (argv, never a shell) and feeds them work items as newline-delimited JSON over
//! stdin/stdout (the protocol is in `docs/exec-protocol.md`). A crashed, hung or
//! babbling worker is killed and restarted and its item retried with exponential
//! backoff; after `retries` retries the item comes back as an [`ExecFailure`] for
//! the caller to dead-letter. A worker-reported error (`{"id":..,"error":..}`) is a
//! record error and is not retried: the worker already looked at the item and said no.
//!
//! Two ways in:
//! - [`WorkerPool::call`]: a shared bounded work queue; whichever worker is free takes
//!   the next item, so one slow item never stalls the others.
//! - [`WorkerPool::call_ordered`]: items with the same key go to the same worker slot
//!   and are processed one after another, in call order (`ordered_by_key: true`).

mod pool;
mod protocol;
mod worker;

use std::path::PathBuf;
use std::time::Duration;

pub use pool::WorkerPool;

/// How to run an exec stage's workers.
#[derive(Clone, Debug)]
pub struct ExecConfig {
    /// The worker's argv: program then arguments. Never run through a shell, so record
    /// content can never become shell syntax.
    pub command: Vec<String>,
    /// Number of long-running worker processes (slots).
    pub workers: usize,
    /// Per-item deadline, covering both writing the request and reading the reply.
    pub timeout: Duration,
    /// Extra time a freshly started worker gets on top of `timeout` (shrinking as the
    /// worker ages), so a worker that loads a model or imports a lot at start is not
    /// timed out on its first item and restarted forever.
    pub startup_timeout: Duration,
    /// How many times an item is retried after a crash, timeout or garbage reply
    /// (so an item is tried at most `retries + 1` times).
    pub retries: u32,
    /// First retry delay; doubled on each further retry (capped, see [`MAX_BACKOFF`]).
    pub backoff: Duration,
    /// Extra environment variables for the workers (added to the inherited ones).
    pub env: Vec<(String, String)>,
    /// Working directory of the workers; `None` inherits ours.
    pub cwd: Option<PathBuf>,
    /// Longest reply line accepted from a worker. A longer line is garbage: the worker
    /// is restarted without the line ever being held in memory.
    pub max_line_bytes: usize,
}

/// Upper bound of one retry delay, so a large `retries` cannot park an item for hours.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl ExecConfig {
    /// A config for `command` with the defaults: 1 worker, 30 s timeout (plus 10 s
    /// startup allowance), 3 retries, 100 ms backoff, 16 MiB max line.
    pub fn new<S: Into<String>>(command: impl IntoIterator<Item = S>) -> ExecConfig {
        ExecConfig {
            command: command.into_iter().map(Into::into).collect(),
            ..ExecConfig::default()
        }
    }

    /// The delay before retry number `retry` (1-based): `backoff * 2^(retry-1)`, capped.
    pub fn backoff_for(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff
            .checked_mul(factor)
            .unwrap_or(MAX_BACKOFF)
            .min(MAX_BACKOFF)
    }
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            command: Vec::new(),
            workers: 1,
            timeout: Duration::from_secs(30),
            startup_timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Duration::from_millis(100),
            env: Vec::new(),
            cwd: None,
            max_line_bytes: 16 * 1024 * 1024,
        }
    }
}

/// One unit of work: a record's JSON value plus where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkItem {
    pub value: serde_json::Value,
    /// The record key as text; binary keys are converted lossily (see
    /// [`WorkItem::key_from_bytes`]) because the protocol is JSON.
    pub key: Option<String>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl WorkItem {
    /// An item with only a value (no key, empty topic, partition 0, offset 0).
    pub fn new(value: serde_json::Value) -> WorkItem {
        WorkItem {
            value,
            key: None,
            topic: String::new(),
            partition: 0,
            offset: 0,
        }
    }

    /// Record keys are bytes; the protocol carries them as JSON strings. Invalid UTF-8
    /// is replaced (U+FFFD) rather than rejected, since the key is metadata for the worker.
    pub fn key_from_bytes(key: &[u8]) -> String {
        String::from_utf8_lossy(key).into_owned()
    }
}

/// An item the pool gave up on: either the worker reported an error for it (attempts
/// is the attempt that got the answer), or every attempt crashed, hung or produced
/// garbage (attempts == retries + 1). The caller dead-letters the record with these.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error} (after {attempts} attempt(s))")]
pub struct ExecFailure {
    /// The worker's reason, or the last crash/timeout/garbage reason.
    pub error: String,
    pub attempts: u32,
}

/// Errors of the pool itself (as opposed to one item's [`ExecFailure`]).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec: `command` is empty; give the worker's argv, e.g. [\"python3\", \"worker.py\"]")]
    EmptyCommand,
    #[error("exec: invalid config: {0}")]
    InvalidConfig(String),
    #[error("exec: cannot start worker `{program}`: {source}{hint}", hint = spawn_hint(.source))]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

fn spawn_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            " (no such program or working directory; check `command`, `cwd` and PATH)"
        }
        std::io::ErrorKind::PermissionDenied => " (is the file executable?)",
        _ => "",
    }
}
