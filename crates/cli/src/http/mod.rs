//! The HTTP surfaces: `millrace serve`'s in `broker`, and `millrace run`'s: `/metrics` (Prometheus), `/healthz`,
//! `/api/graph`, `/api/stats` and a page that draws the pipeline in the patterns' own
//! terms with live rates, lag, barrier progress (join and reduce: the batch in hand, how
//! many input partitions have their part of it, batches released) and dead-letter
//! counts. Bound to 127.0.0.1 unless an address is given.
//!
//! Layout:
//! - `broker`: `millrace serve --http` — `/metrics`, `/api/stats` and `/healthz` of
//!   the broker (topics' offsets, groups' lag, connections and requests).
//! - `stats`: `/api/stats`, and the lag per input partition that `/metrics` reports too.
//! - `dead_letters`: `/api/dead-letters`, each stage's top errors and the command that
//!   redrives them.
//! - `rates`: records per second per stage over the last seconds, for `/api/stats`.
//! - `metrics`: `/metrics` in Prometheus' text exposition format.
//! - `page.html` and its scripts `patterns.js`, `dag.js`, `live.js`: the page, served
//!   from the binary (page.html's opening comment lists its hooks for tests).
//!
//! Secrets: nothing served comes from the backend's client properties (SASL passwords,
//! SSL keys). `/api/graph` is `graph::to_json` of the plan (topics, stages, edges),
//! `/api/stats` and `/metrics` are counters and offsets; `tests.rs` checks all of them
//! against a Kafka-backed file holding a password.

pub mod broker;
mod dead_letters;
mod metrics;
mod rates;
mod stats;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use millrace_broker::Broker;
use millrace_runtime::RunState;

#[derive(Clone)]
pub struct AppState {
    pub graph: Arc<serde_json::Value>,
    pub run: Arc<RunState>,
    pub broker: Arc<dyn Broker>,
    pub dead_letter: String,
    rates: Arc<rates::Rates>,
    dead_letters: Arc<tokio::sync::Mutex<dead_letters::Reader>>,
    redrive: Arc<Redrive>,
}

pub use dead_letters::Redrive;

impl AppState {
    /// The state of a run's HTTP surface. Rates are measured from now on, so the first
    /// poll already has one (over the time since this call).
    pub fn new(
        graph: Arc<serde_json::Value>,
        run: Arc<RunState>,
        broker: Arc<dyn Broker>,
        dead_letter: String,
    ) -> AppState {
        let rates = Arc::new(rates::Rates::new(&run.summary()));
        AppState {
            graph,
            run,
            broker,
            dead_letter,
            rates,
            dead_letters: Arc::default(),
            redrive: Arc::default(),
        }
    }

    /// How the page tells a user to redrive each stage's dead letters.
    pub fn with_redrive(mut self, redrive: Redrive) -> AppState {
        self.redrive = Arc::new(redrive);
        self
    }
}

/// The page's scripts, by the path page.html loads them from.
const SCRIPTS: [(&str, &str); 3] = [
    ("/patterns.js", include_str!("patterns.js")),
    ("/dag.js", include_str!("dag.js")),
    ("/live.js", include_str!("live.js")),
];

pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (path, body) in SCRIPTS {
        router = router.route(
            path,
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    body,
                )
                    .into_response()
            }),
        );
    }
    router
        .route("/", get(page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics::metrics))
        .route("/api/graph", get(graph))
        .route("/api/stats", get(stats::stats))
        .route("/api/dead-letters", get(dead_letters::dead_letters))
        .with_state(state)
}

/// Binds and serves a run's surface until `shutdown`; returns the bound address
/// through `bound`.
pub async fn serve(
    addr: &str,
    state: AppState,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_router(addr, router(state), bound, shutdown).await
}

/// Binds `addr` and serves `router` until `shutdown`; returns the bound address
/// through `bound`.
pub async fn serve_router(
    addr: &str,
    router: Router,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let _ = bound.send(listener.local_addr()?);
    axum::serve(listener, router)
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

#[cfg(test)]
mod tests;
