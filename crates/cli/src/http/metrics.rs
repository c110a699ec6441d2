//! `/metrics` in Prometheus' text exposition format (version 0.0.4): a `# HELP` and a
//! `# TYPE` line for every family, counters named `…_total` (rates come from
//! Prometheus' `rate()`), every series labelled with its `pipeline`. Built anew from
//! the run's counters and the backend's offsets on each scrape, so it never reports a
//! stage or partition the run does not have.
//!
//! The families, one line each, are listed in docs/design.md section 6 as well.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;
use millrace_runtime::RunSummary;

use super::AppState;
use super::stats::{self, PartitionLag};

const IN: &str = "millrace_stage_records_in_total";
const OUT: &str = "millrace_stage_records_out_total";
const FILTERED: &str = "millrace_stage_records_filtered_total";
const DEAD_LETTERED: &str = "millrace_stage_records_dead_lettered_total";
const EMITTED: &str = "millrace_stage_records_emitted_total";
const REDRIVEN: &str = "millrace_stage_records_redriven_total";
const REDRIVE_FAILED: &str = "millrace_stage_records_redrive_failed_total";
const IN_FLIGHT: &str = "millrace_stage_records_in_flight";
const LAG: &str = "millrace_stage_lag";
const DEAD_LETTER: &str = "millrace_dead_letter_records";
const BATCH: &str = "millrace_barrier_batch";
const DONE: &str = "millrace_barrier_partitions_done";
const PARTITIONS: &str = "millrace_barrier_partitions";
const RELEASED: &str = "millrace_barrier_batches_released_total";

const COUNTERS: [(&str, &str); 8] = [
    (IN, "Records the stage has read from its input topics."),
    (
        OUT,
        "Input records the stage is done with that gave output (a join's and a reduce's once their batch or match is complete).",
    ),
    (
        FILTERED,
        "Input records the stage is done with that gave no output: a filter's predicate was false, a splitter's record matched no route, a map or exec worker gave nothing; a key join's part replaced by a newer copy; a combining map's record folded into another.",
    ),
    (
        DEAD_LETTERED,
        "Input records the stage sent to the dead-letter topic.",
    ),
    (
        EMITTED,
        "Output records the stage wrote (a copier to three topics emits three per input; a barrier join emits what it releases).",
    ),
    (RELEASED, "Batches a join or reduce stage has released."),
    (
        REDRIVEN,
        "Records redriven to the stage from the dead-letter topic (millrace dlq redrive) that it is done with, whatever their outcome; counted in out, filtered or dead-lettered too.",
    ),
    (
        REDRIVE_FAILED,
        "Redriven records that failed again and went back to the dead-letter topic; counted in dead-lettered too.",
    ),
];

const GAUGES: [(&str, &str); 6] = [
    (
        IN_FLIGHT,
        "Records the stage has read and is not done with: being processed, or held by a join or reduce until their batch or match is complete.",
    ),
    (
        LAG,
        "Records on an input partition that the stage's consumer group has not committed: the end offset minus the committed offset.",
    ),
    (
        DEAD_LETTER,
        "Records stored in the pipeline's dead-letter topic, by all runs.",
    ),
    (
        BATCH,
        "The number of the batch a join or reduce stage has in hand.",
    ),
    (
        DONE,
        "Input partitions this instance of a join or reduce stage has read to the end of the batch in hand.",
    ),
    (
        PARTITIONS,
        "Input partitions of a join or reduce stage, all instances' together: the batch is released when all are done.",
    ),
];

pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let summary = s.run.summary();
    let lags = stats::lags(&s, &summary).await;
    let dead_letter = stats::dead_letter_records(&s).await;
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        record(&summary, &lags, &s.dead_letter, dead_letter);
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}

fn record(
    summary: &RunSummary,
    lags: &[Vec<PartitionLag>],
    dead_letter_topic: &str,
    dead_letter: Option<i64>,
) {
    for (name, help) in COUNTERS {
        describe_counter!(name, help);
    }
    for (name, help) in GAUGES {
        describe_gauge!(name, help);
    }
    let pipeline = summary.pipeline.clone();
    for (st, lag) in summary.stages.iter().zip(lags) {
        let labels = [
            ("pipeline", pipeline.clone()),
            ("stage", st.name.clone()),
            ("kind", st.kind.clone()),
        ];
        let c = &st.counters;
        for (name, value) in [
            (IN, c.records_in),
            (OUT, c.out),
            (FILTERED, c.filtered),
            (DEAD_LETTERED, c.dead_lettered),
            (EMITTED, c.emitted),
            (REDRIVEN, c.redriven),
            (REDRIVE_FAILED, c.redrive_failed),
        ] {
            counter!(name, &labels).absolute(value);
        }
        gauge!(IN_FLIGHT, &labels).set(c.in_flight as f64);
        for p in lag {
            let labels = [
                ("pipeline", pipeline.clone()),
                ("stage", st.name.clone()),
                ("topic", p.topic.clone()),
                ("partition", p.partition.to_string()),
            ];
            gauge!(LAG, &labels).set(p.lag as f64);
        }
        if let Some(b) = st.barrier {
            gauge!(BATCH, &labels).set(b.batch as f64);
            gauge!(DONE, &labels).set(f64::from(b.done));
            gauge!(PARTITIONS, &labels).set(f64::from(b.of));
            counter!(RELEASED, &labels).absolute(b.released);
        }
    }
    if let Some(n) = dead_letter {
        let labels = [
            ("pipeline", pipeline),
            ("topic", dead_letter_topic.to_owned()),
        ];
        gauge!(DEAD_LETTER, &labels).set(n as f64);
    }
}
