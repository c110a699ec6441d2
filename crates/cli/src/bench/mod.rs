//! `millrace bench …`: throughput and memory measured against a baseline measured in
//! the same run, printed as one JSON object per line (`--json`) or as a table.

use serde::Serialize;

/// One benchmark result. `ratio` is `value / baseline_value` for the metric named in
/// `metric` (usually `records_per_s`).
#[derive(Clone, Debug, Serialize, Default)]
pub struct BenchRow {
    pub name: String,
    pub records: u64,
    pub records_per_s: f64,
    pub mb_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
}

impl BenchRow {
    /// Sets the baseline and computes the ratio of `records_per_s` to it.
    pub fn against(mut self, baseline: &str, baseline_value: f64, target: f64) -> Self {
        self.baseline = Some(baseline.to_string());
        self.baseline_value = Some(baseline_value);
        self.ratio = Some(if baseline_value > 0.0 {
            self.records_per_s / baseline_value
        } else {
            0.0
        });
        self.target = Some(target);
        self
    }
}

/// Prints rows as JSON lines or as an aligned table. A closed stdout is an error (the
/// caller ends quietly on a broken pipe), never a panic.
pub fn print_rows(rows: &[BenchRow], json: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = crate::report::stdout();
    for r in rows {
        if json {
            writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default())?;
        } else {
            writeln!(out, "{}", text(r))?;
        }
    }
    Ok(())
}

/// A row as a line of the table: the rate where the row measured one, the latencies and
/// the peak memory where it has them, and the ratio against its baseline or its target.
fn text(r: &BenchRow) -> String {
    let mut line = format!("{:<40}", r.name);
    if r.records_per_s > 0.0 {
        line += &format!(" {:>14.0} rec/s {:>9.1} MB/s", r.records_per_s, r.mb_per_s);
    }
    if let (Some(p50), Some(p99)) = (r.p50_ms, r.p99_ms) {
        line += &format!("  p50 {p50:.1} ms p99 {p99:.1} ms");
    } else if let Some(p50) = r.p50_ms {
        line += &format!("  {p50:.0} ms");
    }
    if let Some(rss) = r.peak_rss_mib {
        line += &format!("  peak RSS {rss:.1} MiB");
    }
    match (r.ratio, r.target) {
        (Some(x), target) => {
            line += &format!(
                "  ratio {x:.2} vs {} (target {:.2})",
                r.baseline.as_deref().unwrap_or(""),
                target.unwrap_or(0.0)
            );
        }
        (None, Some(target)) if r.peak_rss_mib.is_some() => {
            line += &format!("  (target ≤ {target:.0} MiB)");
        }
        (None, _) => {}
    }
    line
}

pub mod coordinated;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod load;
pub mod log;
#[cfg(feature = "kafka")]
pub mod peers;
pub mod pipeline;
#[cfg(feature = "kafka")]
pub mod pipeline_kafka;

/// A bench's scratch directory, `<dir>/<name>-<pid>`, removed when dropped (also
/// when the bench fails).
pub struct WorkDir(std::path::PathBuf);

impl WorkDir {
    pub fn create(dir: &std::path::Path, name: &str) -> anyhow::Result<WorkDir> {
        use anyhow::Context;
        let work = dir.join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        Ok(WorkDir(work))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Resets this process's peak RSS (`VmHWM`) so the next reading covers only what runs
/// after it (Linux: writing 5 to /proc/self/clear_refs).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size of this process so far, from /proc (Linux), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A memory row reads as memory, not as a rate of nothing.
    #[test]
    fn memory_rows_print_their_peak_not_a_zero_rate() {
        let memory = BenchRow {
            name: "memory: highest peak RSS".to_string(),
            peak_rss_mib: Some(42.5),
            target: Some(256.0),
            ..BenchRow::default()
        };
        let line = text(&memory);
        assert!(!line.contains("rec/s"), "{line}");
        assert!(line.contains("peak RSS 42.5 MiB"), "{line}");
        assert!(line.contains("target ≤ 256 MiB"), "{line}");

        let rate = BenchRow {
            name: "copier".to_string(),
            records_per_s: 1000.0,
            mb_per_s: 0.1,
            p50_ms: Some(1.0),
            p99_ms: Some(2.5),
            ..BenchRow::default()
        }
        .against("the loop", 500.0, 1.0);
        let line = text(&rate);
        assert!(line.contains("1000 rec/s"), "{line}");
        assert!(line.contains("p99 2.5 ms"), "{line}");
        assert!(line.contains("ratio 2.00 vs the loop"), "{line}");
    }
}
