//! `millrace dlq show [FILE] [--stage S] [--error TEXT] [--max-messages N]`: the dead
//! letters themselves, one JSON object per line, for jq: `partition`, `offset`,
//! `timestamp`, `key`, `value` and `headers` (in order, `{"key", "value"}` each).
//! Keys and values are strings when they are UTF-8, `{"base64": "…"}` otherwise; a
//! missing key is null.

use std::io::Write;

use millrace_broker::ConsumedRecord;

use super::summary::value_json;
use super::{Target, read};
use crate::args::DlqSelect;

pub(super) async fn run(t: &Target, select: &DlqSelect, max: Option<u64>) -> anyhow::Result<()> {
    let max = max.unwrap_or(u64::MAX);
    let mut shown = 0u64;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if max > 0 {
        read::read_topic(t.broker.as_ref(), &t.topic, |rec| {
            if select.matches(&rec) {
                serde_json::to_writer(&mut out, &record_json(&rec))?;
                out.write_all(b"\n")?;
                shown += 1;
            }
            Ok(shown < max)
        })
        .await?;
    }
    out.flush()?;
    drop(out);
    eprintln!("Processed a total of {shown} messages");
    Ok(())
}

/// A record as one JSON object, nothing cut, its fields in this order.
#[derive(serde::Serialize)]
struct RecordJson {
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Option<serde_json::Value>,
    value: serde_json::Value,
    headers: Vec<HeaderJson>,
}

#[derive(serde::Serialize)]
struct HeaderJson {
    key: String,
    value: serde_json::Value,
}

fn record_json(rec: &ConsumedRecord) -> RecordJson {
    let whole = |b: &[u8]| value_json(b, usize::MAX);
    RecordJson {
        partition: rec.partition,
        offset: rec.offset,
        timestamp: rec.timestamp,
        key: rec.key.as_deref().map(whole),
        value: whole(&rec.value),
        headers: rec
            .headers
            .iter()
            .map(|h| HeaderJson {
                key: h.key.to_string(),
                value: whole(&h.value),
            })
            .collect(),
    }
}
