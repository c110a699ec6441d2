//! Dead letters grouped by stage and error: how many, first and last seen (time, place
//! in the dead-letter topic, source offset) and one sample value each. `dlq list`
//! prints it; the page of `millrace run` shows each stage's top errors from it.

use std::collections::HashMap;

use millrace_broker::ConsumedRecord;
use millrace_runtime::dead_letter;
use millrace_runtime::redrive;
use serde::Serialize;

use super::redrive::{FailureId, Redriven};

/// Groups kept at most; dead letters of further errors join their stage's last group.
/// Errors can be unique to a record (they may quote it), and the page keeps a summary
/// for as long as the run lasts.
const MAX_GROUPS: usize = 10_000;

/// Bytes of a sample value kept.
const SAMPLE_BYTES: usize = 1024;

/// Where a dead letter was seen.
#[derive(Clone, Debug, Serialize)]
pub struct Seen {
    /// RFC 3339, UTC.
    pub time: String,
    /// Milliseconds since the epoch: the failed record's timestamp.
    pub timestamp: i64,
    /// Its place in the dead-letter topic.
    pub partition: i32,
    pub offset: i64,
    /// Where the failed record was read, as its headers say.
    pub source: Option<Source>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Dead letters of one stage with one error.
#[derive(Clone, Debug, Serialize)]
pub struct Group {
    /// `None`: the record names no stage (it was not written by a stage).
    pub stage: Option<String>,
    pub error: String,
    pub records: u64,
    pub first: Seen,
    pub last: Seen,
    pub sample: serde_json::Value,
    /// How many of them were redriven already (known when the redrive topic was read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redriven: Option<u64>,
}

/// The dead letters read so far.
#[derive(Default)]
pub struct Summary {
    pub records: u64,
    groups: Vec<Group>,
    index: HashMap<(Option<String>, String), usize>,
    /// The dead letters redriven already, when known.
    redriven: Option<Redriven>,
    topic: String,
}

impl Summary {
    /// A summary of the dead-letter topic `topic`; `redriven` holds the dead letters
    /// sent to the redrive topic already, when it was read.
    pub fn new(topic: &str, redriven: Option<Redriven>) -> Summary {
        Summary {
            topic: topic.to_string(),
            redriven,
            ..Summary::default()
        }
    }

    pub fn add(&mut self, rec: &ConsumedRecord) {
        self.records += 1;
        let (stage, error) = stage_and_error(rec);
        let seen = seen(rec);
        let redriven = self.redriven.as_ref().map(|r| {
            let link = redrive::link(&self.topic, rec.partition, rec.offset);
            let id = redrive::Failure::read(&rec.headers)
                .ok()
                .map(|f| FailureId::of(rec, &f));
            u64::from(r.contains(&link, id.as_ref()))
        });
        let key = (stage, error);
        let at = match self.index.get(&key) {
            Some(&i) => Some(i),
            None if self.groups.len() >= MAX_GROUPS => {
                // Past the cap: the stage's last group takes it.
                self.groups.iter().rposition(|g| g.stage == key.0)
            }
            None => None,
        };
        match at.and_then(|i| self.groups.get_mut(i)) {
            Some(g) => {
                g.records += 1;
                if (seen.timestamp, seen.offset) < (g.first.timestamp, g.first.offset) {
                    g.first = seen.clone();
                }
                if (seen.timestamp, seen.offset) >= (g.last.timestamp, g.last.offset) {
                    g.last = seen;
                }
                if let (Some(n), Some(r)) = (&mut g.redriven, redriven) {
                    *n += r;
                }
            }
            None => {
                self.index.insert(key.clone(), self.groups.len());
                self.groups.push(Group {
                    stage: key.0,
                    error: key.1,
                    records: 1,
                    first: seen.clone(),
                    last: seen,
                    sample: value_json(&rec.value, SAMPLE_BYTES),
                    redriven,
                });
            }
        }
    }

    /// The groups, by stage (in `order`, then by name; records naming no stage last)
    /// and, within a stage, most records first.
    pub fn groups(&self, order: &[String]) -> Vec<&Group> {
        let rank = |g: &Group| match &g.stage {
            Some(s) => (
                0,
                order.iter().position(|o| o == s).unwrap_or(order.len()),
                s.clone(),
            ),
            None => (1, 0, String::new()),
        };
        let mut gs: Vec<&Group> = self.groups.iter().collect();
        gs.sort_by(|a, b| {
            rank(a)
                .cmp(&rank(b))
                .then(b.records.cmp(&a.records))
                .then(a.first.offset.cmp(&b.first.offset))
        });
        gs
    }
}

/// The stage a dead letter names and its error; for a record that names no stage
/// (`None`), or no error, what is wrong with its headers instead.
pub fn stage_and_error(rec: &ConsumedRecord) -> (Option<String>, String) {
    match redrive::text(&rec.headers, dead_letter::STAGE) {
        Err(why) => (None, why.to_string()),
        Ok(stage) => {
            let error = match redrive::text(&rec.headers, dead_letter::ERROR) {
                Ok(e) => e.to_string(),
                Err(why) => why.to_string(),
            };
            (Some(stage.to_string()), error)
        }
    }
}

fn seen(rec: &ConsumedRecord) -> Seen {
    let source = redrive::Failure::read(&rec.headers).ok().map(|f| Source {
        topic: f.source_topic,
        partition: f.source_partition,
        offset: f.source_offset,
    });
    Seen {
        time: time(rec.timestamp),
        timestamp: rec.timestamp,
        partition: rec.partition,
        offset: rec.offset,
        source,
    }
}

/// A timestamp in milliseconds as RFC 3339 (UTC); the number itself when out of range.
pub fn time(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.to_string(),
        Err(_) => ms.to_string(),
    }
}

/// Bytes as JSON: a string when they are UTF-8, else `{"base64": "…"}`; cut to `max`
/// bytes (on a character boundary, marked with `…`) when longer.
pub fn value_json(bytes: &[u8], max: usize) -> serde_json::Value {
    use base64::Engine as _;
    let kept = bytes.get(..max).unwrap_or(bytes);
    let cut = kept.len() < bytes.len();
    match std::str::from_utf8(kept) {
        Ok(s) => serde_json::Value::String(if cut {
            format!("{s}…")
        } else {
            s.to_string()
        }),
        // A cut inside a character: keep the whole characters before it.
        Err(e) if cut && e.error_len().is_none() => {
            let s = String::from_utf8_lossy(kept.get(..e.valid_up_to()).unwrap_or_default());
            serde_json::Value::String(format!("{s}…"))
        }
        Err(_) => serde_json::json!({
            "base64": base64::engine::general_purpose::STANDARD.encode(kept),
        }),
    }
}
