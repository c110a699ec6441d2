//! exec: the work of a node, done by long-running worker processes that speak
//! newline-delimited JSON (docs/exec-protocol.md).
//!
//! ```yaml
//! thumbnails:
//!   kind: exec
//!   from: uploads
//!   to: thumbnails
//!   command: [python3, thumbnail.py]
//!   workers: 4
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use super::kind::{Kind, Reads, Writes};
use crate::yaml::node::{Pos, Value};
use crate::yaml::reader::{Fields, Reader};

pub const KIND: Kind = Kind {
    name: "exec",
    fields: &[
        "command",
        "workers",
        "timeout",
        "retries",
        "ordered_by_key",
        "env",
    ],
    reads: Reads::One,
    writes: Writes::One,
};

/// A long-running worker command speaking newline-delimited JSON. The file's fields
/// need no planning: the stage runs what they say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exec {
    /// argv; never run through a shell.
    pub command: Vec<String>,
    pub workers: u32,
    /// Per item.
    pub timeout: Duration,
    /// Attempts after the first, before dead-lettering.
    pub retries: u32,
    /// Keep output order per record key (items with one key go to one worker in turn).
    pub ordered_by_key: bool,
    pub env: BTreeMap<String, String>,
}

impl Exec {
    /// `command` with the defaults of the fields left out: one worker, a 30 s timeout
    /// per item, 3 retries, any order, no extra environment.
    pub fn new(command: Vec<String>) -> Exec {
        Exec {
            command,
            workers: 1,
            timeout: Duration::from_secs(30),
            retries: 3,
            ordered_by_key: false,
            env: BTreeMap::new(),
        }
    }
}

pub(crate) fn read(r: &mut Reader<'_>, f: &Fields<'_>, at: Pos, what: &str) -> Option<Exec> {
    let cmd = r.required(
        f,
        at,
        "command",
        what,
        "command: [python3, worker.py] (argv, never a shell string)",
    );
    let command = cmd.and_then(|n| match &n.value {
        Value::Seq(items) if !items.is_empty() => items
            .iter()
            .map(|i| r.scalar_text(i, "each argument of `command`"))
            .collect::<Option<Vec<_>>>(),
        Value::Str(_) => {
            r.err(
                n.pos,
                "`command` must be a list of arguments, not a string",
                "command: [python3, worker.py]; it runs without a shell",
            );
            None
        }
        _ => {
            r.wrong_type(n, "`command`", "a non-empty list of arguments");
            None
        }
    });
    let defaults = Exec::new(Vec::new());
    let workers = f.get("workers").map_or(Some(defaults.workers), |n| {
        r.uint(n, "`workers`", 1).map(|s| s.value)
    });
    let timeout = f
        .get("timeout")
        .map_or(Some(defaults.timeout), |n| r.duration(n, "`timeout`"));
    let retries = f.get("retries").map_or(Some(defaults.retries), |n| {
        r.uint(n, "`retries`", 0).map(|s| s.value)
    });
    let ordered = f
        .get("ordered_by_key")
        .map_or(Some(defaults.ordered_by_key), |n| {
            r.bool(n, "`ordered_by_key`")
        });
    let env = f
        .get("env")
        .map(|n| r.string_map(n, "environment variable"))
        .unwrap_or_default();
    Some(Exec {
        command: command?,
        workers: workers?,
        timeout: timeout?,
        retries: retries?,
        ordered_by_key: ordered?,
        env,
    })
}
