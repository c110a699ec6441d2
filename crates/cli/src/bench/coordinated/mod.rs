//! `millrace bench coordinated`: the coordinated batch patterns as whole
//! pipelines on the embedded store (every topic durability=none), each run in `--batch`
//! mode built exactly as `millrace run` builds it (`parse_str` → `build::from_plan` →
//! `Runtime::run`). Rows:
//! - `coordinated wordcount <size>`: MapReduce word count over generated text with the
//!   shape of examples/wordcount.yaml (map → sharder by word → reduce count → shape →
//!   join barrier), against a plain single-threaded Rust word count (std `HashMap`,
//!   same tokenisation) of the same text in the same run; target ratio 0.2. The counts
//!   the pipeline writes must equal the baseline's exactly, or the bench fails.
//! - `coordinated reduce count 100B`: one reduce stage (count, grouped by a key) over
//!   pre-produced 100 B records; target 2 M records/s. The counts are checked.
//! - `coordinated join barrier 100B`: one barrier join over pre-produced 100 B
//!   records; the released record count is checked; a memory row holds its peak RSS
//!   against the 256 MiB target.
//!
//! Records/s counts input records: text lines for the word count, so its MB/s is the
//! text's. Peak RSS (`VmHWM`, reset before each run) is on every pipeline row.
//!
//! Sizes default to the targets' (100 MB of text, 2 M reduce records, 10 M join records).
//! Sizes can be changed for profiling with `MILLRACE_BENCH_WORDCOUNT_MB` (below 100 the
//! row name says the size was reduced),
//! `MILLRACE_BENCH_REDUCE_RECORDS` and `MILLRACE_BENCH_JOIN_RECORDS`;
//! `MILLRACE_BENCH_COORDINATED=wordcount,reduce,join` picks the parts to run. Row names
//! carry the size used. Files are removed at the end.
//!
//! - `harness`: what every part does: load the input, run the pipeline, read what it
//!   wrote, remove its topics.
//! - `text`: the word count's generated text, and the plain Rust word count it is
//!   measured against.
//! - `wordcount`, `records` (reduce and join over 100 B records): the parts.

use std::path::Path;
use std::sync::Arc;

use millrace_broker::Broker;
use millrace_broker::embedded::EmbeddedBroker;

use super::BenchRow;

mod harness;
mod records;
mod text;
mod wordcount;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// `MILLRACE_BENCH_COORDINATED=reduce,join` runs only those parts.
fn selected(part: &str) -> bool {
    match std::env::var("MILLRACE_BENCH_COORDINATED") {
        Ok(list) if !list.is_empty() => list.split(',').any(|p| p.trim() == part),
        _ => true,
    }
}

pub async fn run(dir: &Path) -> anyhow::Result<Vec<BenchRow>> {
    let work = super::WorkDir::create(dir, "bench-coordinated")?;
    run_in(work.path()).await
}

async fn run_in(work: &Path) -> anyhow::Result<Vec<BenchRow>> {
    let embedded = EmbeddedBroker::open(&work.join("store"))?;
    let broker: Arc<dyn Broker> = Arc::new(embedded.clone());
    let mut rows = Vec::new();
    if selected("wordcount") {
        let mb = env_or("MILLRACE_BENCH_WORDCOUNT_MB", wordcount::TARGET_MB);
        rows.extend(wordcount::run(&embedded, &broker, mb).await?);
    }
    if selected("reduce") {
        let n = env_or("MILLRACE_BENCH_REDUCE_RECORDS", 2_000_000);
        rows.extend(records::reduce(&embedded, &broker, n).await?);
    }
    if selected("join") {
        let n = env_or("MILLRACE_BENCH_JOIN_RECORDS", 10_000_000);
        rows.extend(records::join(&embedded, &broker, n).await?);
    }
    Ok(rows)
}
