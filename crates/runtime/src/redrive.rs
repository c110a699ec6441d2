//! Redrive: dead letters sent back to the one stage that failed them.
//!
//! A pipeline has a redrive topic, `<pipeline>.redrive` (one partition), beside its
//! dead-letter topic. Every event-driven stage reads it as one more input, in its own
//! consumer group, and takes only the records addressed to it; the others it passes
//! over (committed, not counted). So no other stage reading the failed stage's input
//! topic sees a redriven record.
//!
//! A redriven record is its dead letter's key, value, timestamp and original headers
//! (the dead-letter headers taken off), plus:
//!
//! | header | value |
//! |---|---|
//! | `millrace.redrive.stage` | the stage it is addressed to |
//! | `millrace.redrive.from` | its dead letter: `<dead-letter topic>/<partition>#<offset>` |
//! | `millrace.redrive.source.topic` | the dead letter's `millrace.source.topic` |
//! | `millrace.redrive.source.partition` | … `millrace.source.partition` |
//! | `millrace.redrive.source.offset` | … `millrace.source.offset` |
//! | `millrace.redrive.attempts` | … `millrace.attempts` |
//!
//! The stage gives its pattern the record as it first read it: the original topic,
//! partition and offset (a map's `$offset`, an exec worker's request), and the original
//! headers without these. Its outputs are named in the lineage after the redrive topic's
//! partition and offset, which grow as the original source's do not (see `lineage`); an
//! unkeyed output goes to the partition the original source partition gives, as if the
//! record had passed the first time. A redriven record that fails again goes back to
//! the dead-letter topic with its original source, its attempts added to the earlier
//! ones, and `millrace.redrive.from` linking it to the dead letter it was redriven from.
//!
//! `millrace dlq redrive` reads the redrive topic before it sends: every
//! `millrace.redrive.from` there is a dead letter redriven already, so the topic itself
//! is the durable memory of what was sent.
//!
//! Headers are read from the end: a dead letter's own headers are appended after the
//! record's, so the last of each name is the dead letter's (a record may carry an
//! earlier one of the same name, which stays with it).

use std::sync::Arc;

use bytes::Bytes;
use millrace_broker::{ConsumedRecord, Header, ProduceRecord};

use crate::batch::BATCH_HEADER;
use crate::dead_letter;

pub const STAGE: &str = "millrace.redrive.stage";
pub const FROM: &str = "millrace.redrive.from";
pub const SOURCE_TOPIC: &str = "millrace.redrive.source.topic";
pub const SOURCE_PARTITION: &str = "millrace.redrive.source.partition";
pub const SOURCE_OFFSET: &str = "millrace.redrive.source.offset";
pub const ATTEMPTS: &str = "millrace.redrive.attempts";

/// The headers a stage adds to a dead letter, taken off when it is redriven. A dead
/// letter that was itself redriven also carries the link to the one before
/// (`millrace.redrive.from`): the new redrive links to this one instead.
const DEAD_LETTER_HEADERS: [&str; 7] = [
    dead_letter::STAGE,
    dead_letter::ERROR,
    dead_letter::ATTEMPTS,
    dead_letter::SOURCE_TOPIC,
    dead_letter::SOURCE_PARTITION,
    dead_letter::SOURCE_OFFSET,
    FROM,
];

/// The headers `dlq redrive` adds, taken off before the stage sees the record.
const REDRIVE_HEADERS: [&str; 6] = [
    STAGE,
    FROM,
    SOURCE_TOPIC,
    SOURCE_PARTITION,
    SOURCE_OFFSET,
    ATTEMPTS,
];

/// The redrive topic of a pipeline.
pub fn topic(pipeline: &str) -> String {
    format!("{pipeline}.redrive")
}

/// Where a dead letter is: `<topic>/<partition>#<offset>`, the value of
/// `millrace.redrive.from`.
pub fn link(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}/{partition}#{offset}")
}

/// The last header named `name`.
pub fn last<'a>(headers: &'a [Header], name: &str) -> Option<&'a Header> {
    headers.iter().rev().find(|h| &*h.key == name)
}

/// Why a dead letter cannot be redriven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unsendable {
    #[error("no {0} header (not written by a stage)")]
    Missing(&'static str),
    #[error("its {0} header is not UTF-8 text")]
    NotText(&'static str),
    #[error("its {header} header is not a number: '{value}'")]
    NotANumber { header: &'static str, value: String },
}

/// A dead letter's headers, as a stage writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub stage: String,
    pub error: String,
    pub attempts: u32,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
}

/// The text of the last header named `name`.
pub fn text<'a>(headers: &'a [Header], name: &'static str) -> Result<&'a str, Unsendable> {
    let h = last(headers, name).ok_or(Unsendable::Missing(name))?;
    std::str::from_utf8(&h.value).map_err(|_| Unsendable::NotText(name))
}

fn number<T: std::str::FromStr>(headers: &[Header], name: &'static str) -> Result<T, Unsendable> {
    let t = text(headers, name)?;
    t.trim().parse().map_err(|_| Unsendable::NotANumber {
        header: name,
        value: t.chars().take(40).collect(),
    })
}

impl Failure {
    /// Reads a dead letter's headers; the first one missing or unreadable is the error.
    pub fn read(headers: &[Header]) -> Result<Failure, Unsendable> {
        let stage = text(headers, dead_letter::STAGE)?.to_string();
        let error = text(headers, dead_letter::ERROR)?.to_string();
        let attempts = number(headers, dead_letter::ATTEMPTS)?;
        let source_topic = text(headers, dead_letter::SOURCE_TOPIC)?.to_string();
        let source_partition: i32 = number(headers, dead_letter::SOURCE_PARTITION)?;
        let source_offset: i64 = number(headers, dead_letter::SOURCE_OFFSET)?;
        if source_partition < 0 {
            return Err(Unsendable::NotANumber {
                header: dead_letter::SOURCE_PARTITION,
                value: source_partition.to_string(),
            });
        }
        if source_offset < 0 {
            return Err(Unsendable::NotANumber {
                header: dead_letter::SOURCE_OFFSET,
                value: source_offset.to_string(),
            });
        }
        Ok(Failure {
            stage,
            error,
            attempts,
            source_topic,
            source_partition,
            source_offset,
        })
    }
}

/// Takes off the last header of each name in `names`.
fn without_last(headers: &[Header], names: &[&str]) -> Vec<Header> {
    let mut drop = vec![false; headers.len()];
    for name in names {
        if let Some(i) = headers.iter().rposition(|h| &*h.key == *name) {
            drop[i] = true;
        }
    }
    headers
        .iter()
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(h, _)| h.clone())
        .collect()
}

/// The record `dlq redrive` sends for the dead letter `dead` (at `from`, a [`link`]),
/// read as `failure`, to the stage `failure.stage`.
pub fn record(dead: &ConsumedRecord, failure: &Failure, from: &str) -> ProduceRecord {
    let mut headers = without_last(&dead.headers, &DEAD_LETTER_HEADERS);
    for (name, value) in [
        (STAGE, failure.stage.clone()),
        (FROM, from.to_string()),
        (SOURCE_TOPIC, failure.source_topic.clone()),
        (SOURCE_PARTITION, failure.source_partition.to_string()),
        (SOURCE_OFFSET, failure.source_offset.to_string()),
        (ATTEMPTS, failure.attempts.to_string()),
    ] {
        headers.push(Header::new(name, Bytes::from(value)));
    }
    ProduceRecord {
        // The redrive topic has one partition: what is sent stays in order.
        partition: Some(0),
        key: dead.key.clone(),
        value: dead.value.clone(),
        headers,
        timestamp: Some(dead.timestamp),
    }
}

/// Whether a record of the redrive topic is addressed to `stage`.
pub fn addressed_to(rec: &ConsumedRecord, stage: &str) -> bool {
    last(&rec.headers, STAGE).is_some_and(|h| *h.value == *stage.as_bytes())
}

/// Where a redriven record is in the redrive topic, and what it carries from its dead
/// letter: what a stage needs to name its outputs and, should it fail again, its new
/// dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Attempts before this one (0 when the header is missing or unreadable).
    pub attempts: u32,
    /// The dead letter it was redriven from, if named.
    pub from: Option<Bytes>,
}

/// A record of the redrive topic addressed to a stage, as the stage first read it: its
/// original topic, partition and offset, its original headers (without the redrive
/// headers, and without a batch stamp: it belongs to the batch that processes it now),
/// and its mark. A record written there by hand without a readable source keeps the
/// redrive topic's place as its own.
pub fn restore(rec: ConsumedRecord) -> (ConsumedRecord, Mark) {
    let h = &rec.headers;
    let source = match (
        text(h, SOURCE_TOPIC),
        number::<i32>(h, SOURCE_PARTITION),
        number::<i64>(h, SOURCE_OFFSET),
    ) {
        (Ok(t), Ok(p), Ok(o)) if p >= 0 && o >= 0 => Some((Arc::<str>::from(t), p, o)),
        _ => None,
    };
    let mark = Mark {
        topic: rec.topic.clone(),
        partition: rec.partition,
        offset: rec.offset,
        attempts: number(h, ATTEMPTS).unwrap_or(0),
        from: last(h, FROM).map(|f| f.value.clone()),
    };
    let mut headers = without_last(h, &REDRIVE_HEADERS);
    headers.retain(|h| &*h.key != BATCH_HEADER);
    let (topic, partition, offset) = source.unwrap_or((rec.topic, rec.partition, rec.offset));
    let restored = ConsumedRecord {
        topic,
        partition,
        offset,
        key: rec.key,
        value: rec.value,
        headers,
        timestamp: rec.timestamp,
    };
    (restored, mark)
}

/// The dead letter of a redriven record that failed again: its original source, its
/// attempts added to the earlier ones, and a link to the dead letter it came from.
pub fn dead_letter_again(
    stage: &str,
    restored: &ConsumedRecord,
    error: &str,
    attempts: u32,
    mark: &Mark,
) -> ProduceRecord {
    let mut r = dead_letter::record(
        stage,
        restored,
        error,
        mark.attempts.saturating_add(attempts),
    );
    if let Some(from) = &mark.from {
        r.headers.push(Header::new(FROM, from.clone()));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumed(topic: &str, partition: i32, offset: i64, headers: Vec<Header>) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::from(topic),
            partition,
            offset,
            key: Some(Bytes::from_static(b"k")),
            value: Bytes::from_static(b"{\"n\":1}"),
            headers,
            timestamp: 1234,
        }
    }

    fn names(headers: &[Header]) -> Vec<String> {
        headers
            .iter()
            .map(|h| format!("{}={}", h.key, String::from_utf8_lossy(&h.value)))
            .collect()
    }

    /// A record that failed, was redriven, failed again and is redriven again keeps
    /// its own headers (a same-named one included) and its source, and counts every
    /// attempt; the stage sees exactly what it first saw.
    #[test]
    fn a_dead_letter_round_trips_through_redrive_and_back() {
        let original = consumed(
            "items",
            2,
            40,
            vec![
                Header::new("trace", "t1"),
                Header::new(dead_letter::ERROR, "the record's own"),
                Header::new(BATCH_HEADER, "7"),
            ],
        );
        let dead = dead_letter::record("enrich", &original, "service down", 3);
        let dead = consumed("p.dlq", 0, 5, dead.headers);
        let failure = Failure::read(&dead.headers).expect("a stage's dead letter");
        assert_eq!(failure.stage, "enrich");
        assert_eq!(failure.error, "service down");
        assert_eq!(failure.attempts, 3);
        assert_eq!(
            (
                failure.source_topic.as_str(),
                failure.source_partition,
                failure.source_offset
            ),
            ("items", 2, 40)
        );
        let sent = record(&dead, &failure, &link("p.dlq", 0, 5));
        assert_eq!(sent.partition, Some(0));
        assert_eq!(sent.timestamp, Some(1234));
        let redriven = consumed("p.redrive", 0, 9, sent.headers);
        assert!(addressed_to(&redriven, "enrich"));
        assert!(!addressed_to(&redriven, "audit"));
        let (seen, mark) = restore(redriven);
        assert_eq!(
            (&*seen.topic, seen.partition, seen.offset),
            ("items", 2, 40)
        );
        assert_eq!(
            names(&seen.headers),
            ["trace=t1", "millrace.error=the record's own"],
            "the original headers, without the batch stamp"
        );
        assert_eq!(
            (&*mark.topic, mark.partition, mark.offset),
            ("p.redrive", 0, 9)
        );
        assert_eq!(mark.attempts, 3);
        assert_eq!(mark.from.as_deref(), Some(&b"p.dlq/0#5"[..]));

        let again = dead_letter_again("enrich", &seen, "still down", 1, &mark);
        let again = consumed("p.dlq", 0, 11, again.headers);
        let failure = Failure::read(&again.headers).expect("read again");
        assert_eq!(failure.attempts, 4);
        assert_eq!(failure.error, "still down");
        assert_eq!(failure.source_topic, "items");
        assert_eq!(
            last(&again.headers, FROM).map(|h| h.value.clone()),
            Some(Bytes::from_static(b"p.dlq/0#5"))
        );
        // Redriven a second time: linked to the newer dead letter only.
        let sent = record(&again, &failure, &link("p.dlq", 0, 11));
        let (seen, mark) = restore(consumed("p.redrive", 0, 10, sent.headers));
        assert_eq!(
            names(&seen.headers),
            ["trace=t1", "millrace.error=the record's own"]
        );
        assert_eq!(mark.from.as_deref(), Some(&b"p.dlq/0#11"[..]));
        assert_eq!(mark.attempts, 4);
    }

    #[test]
    fn hand_written_dead_letters_say_what_is_wrong() {
        assert_eq!(
            Failure::read(&[]),
            Err(Unsendable::Missing(dead_letter::STAGE))
        );
        let mut headers =
            dead_letter::record("s", &consumed("in", 0, 1, Vec::new()), "boom", 1).headers;
        headers.push(Header::new(dead_letter::ATTEMPTS, "many"));
        assert_eq!(
            Failure::read(&headers),
            Err(Unsendable::NotANumber {
                header: dead_letter::ATTEMPTS,
                value: "many".into()
            })
        );
        headers.push(Header::new(dead_letter::ATTEMPTS, "2"));
        headers.push(Header::new(dead_letter::SOURCE_OFFSET, "-3"));
        assert!(matches!(
            Failure::read(&headers),
            Err(Unsendable::NotANumber { header, .. }) if header == dead_letter::SOURCE_OFFSET
        ));
        headers.push(Header::new(dead_letter::SOURCE_OFFSET, "1"));
        headers.push(Header::new(dead_letter::STAGE, Bytes::from_static(b"\xff")));
        assert_eq!(
            Failure::read(&headers),
            Err(Unsendable::NotText(dead_letter::STAGE))
        );
    }

    /// A record written into the redrive topic by hand, addressed to a stage but with
    /// no readable source, is processed where it is.
    #[test]
    fn a_redriven_record_without_a_source_keeps_its_own_place() {
        let rec = consumed(
            "p.redrive",
            0,
            3,
            vec![
                Header::new(STAGE, "enrich"),
                Header::new(SOURCE_PARTITION, "x"),
            ],
        );
        let (seen, mark) = restore(rec);
        assert_eq!(
            (&*seen.topic, seen.partition, seen.offset),
            ("p.redrive", 0, 3)
        );
        assert!(seen.headers.is_empty());
        assert_eq!(mark.attempts, 0);
        assert_eq!(mark.from, None);
    }
}
