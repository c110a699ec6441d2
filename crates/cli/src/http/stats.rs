//! `/api/stats`: per stage its counters, lag, rates and barrier progress, and how many
//! records the dead-letter topic holds. The lag is read per input partition here for
//! `/metrics` too.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::Json;
use millrace_broker::{PartitionInfo, committed_offset};
use millrace_runtime::RunSummary;

use super::AppState;

/// One input partition of a stage: records its consumer group has not committed.
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}

/// Per stage of `summary` (in its order), the lag of each of its input partitions: the
/// end offset minus the group's committed offset, or minus the start offset where the
/// group has committed nothing. A topic that cannot be described right now (a Kafka
/// broker away) is left out, not reported as 0.
pub async fn lags(s: &AppState, summary: &RunSummary) -> Vec<Vec<PartitionLag>> {
    let mut described: HashMap<String, Option<Vec<PartitionInfo>>> = HashMap::new();
    let mut all = Vec::with_capacity(summary.stages.len());
    for (st, live) in summary.stages.iter().zip(&s.run.stages) {
        // The group the runtime gives every stage.
        let group = format!("{}.{}", summary.pipeline, st.name);
        let mut stage = Vec::new();
        for input in &live.inputs {
            if !described.contains_key(input) {
                let d = s.broker.partitions(input).await.ok();
                described.insert(input.clone(), d);
            }
            let (Some(Some(d)), Ok(committed)) = (
                described.get(input),
                s.broker.committed(&group, input).await,
            ) else {
                continue;
            };
            for p in d {
                let at = committed_offset(&committed, p.partition).unwrap_or(p.start_offset);
                stage.push(PartitionLag {
                    topic: input.clone(),
                    partition: p.partition,
                    lag: (p.end_offset - at).max(0),
                });
            }
        }
        all.push(stage);
    }
    all
}

/// Records stored in the dead-letter topic (all runs'), if it can be described.
pub async fn dead_letter_records(s: &AppState) -> Option<i64> {
    let d = s.broker.partitions(&s.dead_letter).await.ok()?;
    Some(d.iter().map(|p| p.end_offset - p.start_offset).sum())
}

pub async fn stats(State(s): State<AppState>) -> Json<serde_json::Value> {
    let summary = s.run.summary();
    let lags = lags(&s, &summary).await;
    let rates = s.rates.observe(&summary);
    let stages: Vec<serde_json::Value> = summary
        .stages
        .iter()
        .zip(&lags)
        .zip(&rates.per_stage)
        .map(|((st, lag), rate)| {
            serde_json::json!({
                "name": st.name,
                "kind": st.kind,
                "counters": st.counters,
                "lag": lag.iter().map(|p| p.lag).sum::<i64>(),
                "rates": rate,
                "barrier": st.barrier,
            })
        })
        .collect();
    Json(serde_json::json!({
        "pipeline": summary.pipeline,
        "backend": s.broker.backend(),
        "dead_letter": {
            "topic": s.dead_letter,
            "records": dead_letter_records(&s).await.unwrap_or(0),
        },
        "rate_window_seconds": rates.window_seconds,
        "stages": stages,
    }))
}
