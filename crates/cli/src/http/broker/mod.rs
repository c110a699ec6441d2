//! The HTTP surface of `millrace serve --http`: what a broker's operator watches.
//! `/metrics` (Prometheus: offsets and lag under kafka_exporter's names, the server's
//! connections, requests and bytes), `/api/stats` (the same as JSON) and `/healthz`.
//!
//! Layout:
//! - `snapshot`: the topics' offsets, the groups' committed offsets and lag, and the
//!   server's counters, read from the hub at once.
//! - `metrics`: `/metrics` in Prometheus' text exposition format.
//!
//! Secrets: nothing served carries a record, a key or a user's credentials: topic and
//! group names, offsets and counters only.

mod metrics;
mod snapshot;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use millrace_server::Hub;

use snapshot::Snapshot;

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(prometheus))
        .route("/api/stats", get(stats))
        .with_state(hub)
}

async fn prometheus(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&Snapshot::read(&hub)),
    )
}

async fn stats(State(hub): State<Arc<Hub>>) -> Json<Snapshot> {
    Json(Snapshot::read(&hub))
}
