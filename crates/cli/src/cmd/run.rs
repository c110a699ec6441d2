//! `millrace run FILE [--batch]`.

use crate::args::{Global, RunArgs};

pub async fn run(_g: &Global, args: RunArgs) -> anyhow::Result<i32> {
    let _plan = super::graph::load(&args.file)?;
    anyhow::bail!("run: not wired yet")
}
