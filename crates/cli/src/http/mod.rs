//! The HTTP surface of `millrace run`: `/metrics` (Prometheus), `/healthz`,
//! `/api/graph`, `/api/stats` and a page that draws the pipeline in the patterns' own
//! terms with live rates, lag, barrier progress (join and reduce: the batch in hand, how
//! many input partitions have their part of it, batches released) and dead-letter
//! counts. Bound to 127.0.0.1 unless an address is given.
//!
//! Secrets: nothing served comes from the backend's client properties (SASL passwords,
//! SSL keys). `/api/graph` is `graph::to_json` of the plan (topics, stages, edges),
//! `/api/stats` and `/metrics` are counters and offsets; `tests.rs` checks all of them
//! against a Kafka-backed file holding a password.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use millrace_broker::Broker;
use millrace_runtime::RunState;

#[derive(Clone)]
pub struct AppState {
    pub graph: Arc<serde_json::Value>,
    pub run: Arc<RunState>,
    pub broker: Arc<dyn Broker>,
    pub prometheus: PrometheusHandle,
    pub dead_letter: String,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/graph", get(graph))
        .route("/api/stats", get(stats))
        .with_state(state)
}

/// Binds and serves until `shutdown`; returns the bound address through `bound`.
pub async fn serve(
    addr: &str,
    state: AppState,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let _ = bound.send(listener.local_addr()?);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn graph(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json((*s.graph).clone())
}

/// Per stage: counters, and lag (end offsets minus the group's committed offsets).
async fn stats(State(s): State<AppState>) -> Json<serde_json::Value> {
    let summary = s.run.summary();
    let mut stages = Vec::new();
    for (st, live) in summary.stages.iter().zip(&s.run.stages) {
        let group = format!("{}.{}", summary.pipeline, st.name);
        let mut lag = 0i64;
        for input in &live.inputs {
            if let (Ok(d), Ok(c)) = (
                s.broker.describe_topic(input).await,
                s.broker.committed(&group, input).await,
            ) {
                lag += d.lag(&c);
            }
        }
        stages.push(serde_json::json!({
            "name": st.name,
            "kind": st.kind,
            "counters": st.counters,
            "lag": lag,
            "barrier": st.barrier,
        }));
    }
    let dlq = match s.broker.describe_topic(&s.dead_letter).await {
        Ok(d) => d
            .partitions
            .iter()
            .map(|p| p.end_offset - p.start_offset)
            .sum::<i64>(),
        Err(_) => 0,
    };
    Json(serde_json::json!({
        "pipeline": summary.pipeline,
        "backend": s.broker.backend(),
        "dead_letter": { "topic": s.dead_letter, "records": dlq },
        "stages": stages,
    }))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    for st in s.run.summary().stages {
        let c = st.counters;
        let labels = [("stage", st.name.clone()), ("kind", st.kind.clone())];
        metrics::counter!("millrace_stage_records_in_total", &labels).absolute(c.records_in);
        metrics::counter!("millrace_stage_records_out_total", &labels).absolute(c.out);
        metrics::counter!("millrace_stage_records_filtered_total", &labels).absolute(c.filtered);
        metrics::counter!("millrace_stage_records_dead_lettered_total", &labels)
            .absolute(c.dead_lettered);
        metrics::counter!("millrace_stage_records_emitted_total", &labels).absolute(c.emitted);
        metrics::gauge!("millrace_stage_records_in_flight", &labels).set(c.in_flight as f64);
        if let Some(b) = st.barrier {
            metrics::gauge!("millrace_barrier_batch", &labels).set(b.batch as f64);
            metrics::gauge!("millrace_barrier_partitions_done", &labels).set(f64::from(b.done));
            metrics::gauge!("millrace_barrier_partitions", &labels).set(f64::from(b.of));
            metrics::counter!("millrace_barrier_batches_released_total", &labels)
                .absolute(b.released);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.prometheus.render(),
    )
}

#[cfg(test)]
mod tests;
