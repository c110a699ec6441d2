//! `millrace bench pipeline`.

use std::path::Path;

pub async fn run(_dir: &Path) -> anyhow::Result<Vec<super::BenchRow>> {
    anyhow::bail!("bench pipeline: not wired yet")
}
