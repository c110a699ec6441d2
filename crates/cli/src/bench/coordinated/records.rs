//! `coordinated reduce count 100B` (one reduce stage, count grouped by a key; the
//! counts are checked) and `coordinated join barrier 100B` (one barrier join; the
//! released records are checked, and its peak RSS is a row of its own) over
//! pre-produced 100 B records.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use millrace_broker::Broker;
use millrace_broker::embedded::EmbeddedBroker;

use super::harness::{PARTITIONS, delete_topics, load, read_all, run_batch};
use crate::bench::BenchRow;

/// Size of the reduce and join records.
const RECORD_SIZE: usize = 100;
/// Distinct group keys of the reduce input.
const GROUPS: usize = 10_000;
const REDUCE_TARGET: f64 = 2_000_000.0;
const JOIN_RSS_TARGET_MIB: f64 = 256.0;

/// `10_000_000` → `10M`, `2_500_000` → `2.5M`.
fn count_label(n: usize) -> String {
    if n >= 1_000_000 {
        format!("{}M", n as f64 / 1e6)
    } else if n >= 1000 {
        format!("{}k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

/// Record `i`: a JSON object of exactly [`RECORD_SIZE`] bytes, in group `i % GROUPS`.
fn value(i: usize) -> Bytes {
    let mut v = format!("{{\"n\":{i},\"user\":\"u{}\",\"pad\":\"", i % GROUPS).into_bytes();
    let pad = RECORD_SIZE.saturating_sub(v.len() + 2);
    v.resize(v.len() + pad, b'x');
    v.extend_from_slice(b"\"}");
    Bytes::from(v)
}

/// A pipeline `p` of one stage from `<p>-in` to `<p>-out`, every topic durability=none.
fn one_stage_yaml(p: &str, stage: &str) -> String {
    let none = "config: {durability: none}";
    format!(
        "pipeline: {p}\ndead_letter: {p}-dlq\ntopics:\n  \
         {p}-in: {{partitions: {PARTITIONS}, {none}}}\n  \
         {p}-out: {{partitions: {PARTITIONS}, {none}}}\n  \
         {p}-dlq: {{partitions: 1, {none}}}\n\
         stages:\n  {stage}\n"
    )
}

pub(super) async fn reduce(
    embedded: &EmbeddedBroker,
    broker: &Arc<dyn Broker>,
    n: usize,
) -> anyhow::Result<Vec<BenchRow>> {
    let p = "rd";
    let store = embedded.store();
    load(store, &format!("{p}-in"), (0..n).map(value))?;
    let yaml = one_stage_yaml(
        p,
        &format!(
            "count: {{kind: reduce, from: {p}-in, to: {p}-out, group_by: .user, reducer: count}}"
        ),
    );
    crate::bench::reset_peak_rss();
    let secs = run_batch(broker, &yaml).await?;
    let peak_rss_mib = crate::bench::peak_rss_mib();

    // Every group's final count must be right.
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut bad = 0u64;
    read_all(store, &format!("{p}-out"), |v| {
        let o: serde_json::Value = serde_json::from_slice(v).unwrap_or_default();
        match (
            o["group"].as_str(),
            o["value"].as_u64(),
            o["final"].as_bool(),
        ) {
            (Some(g), Some(c), Some(true)) => *counts.entry(g.to_string()).or_default() += c,
            (_, _, Some(false)) => {}
            _ => bad += 1,
        }
    })?;
    let expected = |g: usize| (n / GROUPS + usize::from(g < n % GROUPS)) as u64;
    let wrong = (0..GROUPS.min(n))
        .filter(|&g| counts.get(&format!("u{g}")).copied() != Some(expected(g)))
        .count();
    if bad > 0 || wrong > 0 || counts.len() != GROUPS.min(n) {
        anyhow::bail!(
            "bench coordinated: reduce count is wrong: {wrong} groups miscounted, \
             {} groups, {bad} unexpected records",
            counts.len()
        );
    }
    delete_topics(broker, &format!("{p}-")).await?;

    let per_s = n as f64 / secs;
    Ok(vec![BenchRow {
        name: format!(
            "coordinated reduce count 100B {} records, {GROUPS} groups (absolute)",
            count_label(n)
        ),
        records: n as u64,
        records_per_s: per_s,
        mb_per_s: per_s * RECORD_SIZE as f64 / 1e6,
        peak_rss_mib,
        target: Some(REDUCE_TARGET),
        ..BenchRow::default()
    }])
}

pub(super) async fn join(
    embedded: &EmbeddedBroker,
    broker: &Arc<dyn Broker>,
    n: usize,
) -> anyhow::Result<Vec<BenchRow>> {
    let p = "jn";
    let store = embedded.store();
    load(store, &format!("{p}-in"), (0..n).map(value))?;
    let yaml = one_stage_yaml(
        p,
        &format!("barrier: {{kind: join, from: {p}-in, to: {p}-out, mode: barrier}}"),
    );
    crate::bench::reset_peak_rss();
    let secs = run_batch(broker, &yaml).await?;
    let peak_rss_mib = crate::bench::peak_rss_mib();

    // Every record released exactly once (the sum of the `n` fields checks for
    // duplicates that would hide a loss).
    let mut released = 0u64;
    let mut sum_n = 0u128;
    read_all(store, &format!("{p}-out"), |v| {
        released += 1;
        if let Some(at) = v.windows(4).position(|w| w == b"\"n\":") {
            let digits = v[at + 4..].iter().take_while(|b| b.is_ascii_digit());
            let x = digits.fold(0u128, |a, d| a * 10 + u128::from(d - b'0'));
            sum_n += x;
        }
    })?;
    let want_sum = (n as u128) * (n as u128).saturating_sub(1) / 2;
    if released != n as u64 || sum_n != want_sum {
        anyhow::bail!(
            "bench coordinated: the barrier released {released} records of {n} \
             (sum of n {sum_n}, expected {want_sum})"
        );
    }
    delete_topics(broker, &format!("{p}-")).await?;
    // Give the file system a moment to drop the deleted files.
    tokio::time::sleep(Duration::from_millis(10)).await;

    let per_s = n as f64 / secs;
    let label = count_label(n);
    Ok(vec![
        BenchRow {
            name: format!("coordinated join barrier 100B {label} records"),
            records: n as u64,
            records_per_s: per_s,
            mb_per_s: per_s * RECORD_SIZE as f64 / 1e6,
            peak_rss_mib,
            ..BenchRow::default()
        },
        BenchRow {
            name: format!("memory: peak RSS (VmHWM) of the join barrier over {label} records"),
            records: n as u64,
            peak_rss_mib,
            target: Some(JOIN_RSS_TARGET_MIB),
            ..BenchRow::default()
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_100_bytes() {
        assert_eq!(value(0).len(), RECORD_SIZE);
        assert_eq!(value(9_999_999).len(), RECORD_SIZE);
    }
}
