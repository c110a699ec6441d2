//! `millrace bench log|kafka|pipeline|coordinated|peers`.

use crate::args::{BenchArgs, BenchKind, Global};
use crate::bench;

pub async fn run(g: &Global, args: BenchArgs) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("millrace-bench")
        .tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let rows = match args.which {
        BenchKind::Log => {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || bench::log::run(&dir)).await??
        }
        BenchKind::Kafka => {
            let bootstrap = kafka_bootstrap(g)?;
            kafka_rows(&bootstrap).await?
        }
        // With a broker, the copier on Kafka; otherwise the patterns on the embedded store.
        BenchKind::Pipeline => match &g.bootstrap_server {
            Some(bootstrap) => kafka_pipeline_rows(bootstrap).await?,
            None => bench::pipeline::run(&dir).await?,
        },
        BenchKind::Coordinated => bench::coordinated::run(&dir).await?,
        BenchKind::Peers => {
            let bootstrap = kafka_bootstrap(g)?;
            peers_rows(&bootstrap, &dir).await?
        }
    };
    bench::print_rows(&rows, args.json)?;
    Ok(())
}

fn kafka_bootstrap(g: &Global) -> anyhow::Result<String> {
    g.bootstrap_server.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "bench kafka and bench peers need a running broker: pass --bootstrap-server HOST:PORT"
        )
    })
}

#[cfg(feature = "kafka")]
async fn kafka_rows(bootstrap: &str) -> anyhow::Result<Vec<bench::BenchRow>> {
    bench::kafka::run(bootstrap).await
}

#[cfg(feature = "kafka")]
async fn kafka_pipeline_rows(bootstrap: &str) -> anyhow::Result<Vec<bench::BenchRow>> {
    bench::pipeline_kafka::run(bootstrap).await
}

#[cfg(feature = "kafka")]
async fn peers_rows(
    bootstrap: &str,
    dir: &std::path::Path,
) -> anyhow::Result<Vec<bench::BenchRow>> {
    bench::peers::run(bootstrap, dir).await
}

#[cfg(not(feature = "kafka"))]
async fn peers_rows(
    _bootstrap: &str,
    _dir: &std::path::Path,
) -> anyhow::Result<Vec<bench::BenchRow>> {
    no_kafka()
}

#[cfg(not(feature = "kafka"))]
async fn kafka_rows(_bootstrap: &str) -> anyhow::Result<Vec<bench::BenchRow>> {
    no_kafka()
}

#[cfg(not(feature = "kafka"))]
async fn kafka_pipeline_rows(_bootstrap: &str) -> anyhow::Result<Vec<bench::BenchRow>> {
    no_kafka()
}

#[cfg(not(feature = "kafka"))]
fn no_kafka() -> anyhow::Result<Vec<bench::BenchRow>> {
    anyhow::bail!("this millrace was built without Kafka support; rebuild with --features kafka")
}
