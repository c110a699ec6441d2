//! What each fuzz target checks on one input. Shared by the cargo-fuzz targets
//! (`fuzz_targets/`, libFuzzer on nightly) and the reliability suite on stable
//! (`crates/cli/tests/reliability/fuzz_replay.rs`, which replays `fuzz/regressions/`
//! and runs a short mutation loop), so an input that fails one fails the other.

use std::path::Path;

use bytes::Bytes;
use millrace_store::{Record, Store, StoreOptions};

/// The store's batch decoder on arbitrary bytes: Ok or Err, never a panic, and never
/// more key and value bytes than were given (no length taken on trust).
pub fn decode_batches(data: &[u8]) {
    let buf = Bytes::copy_from_slice(data);
    if let Ok(records) = millrace_store::codec::decode_batches(&buf) {
        let total: usize = records
            .iter()
            .map(|r| r.record.value.len() + r.record.key.as_ref().map_or(0, |k| k.len()))
            .sum();
        assert!(total <= data.len(), "decoded more bytes than were given");
    }
}

/// The pipeline-file parser and planner on arbitrary text: a plan or diagnostics, and
/// rendering the diagnostics (which slices the source) never panics.
pub fn pipeline_parse(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(diags) = millrace_pipeline::parse_str(src, "fuzz.yaml") {
        let _ = diags.to_string();
    }
}

/// Store recovery on a data directory whose segment bytes are the input. Byte 0 chooses
/// where the rest goes (bit 0: also as the offsets journal; bit 1: as a sealed segment
/// with an empty active one after it); otherwise it is the active segment
/// `topics/t/0/00000000000000000000.log`. Open succeeds (any cut reported) or fails
/// with an error; when it opens, reads work or fail with an error, an append works, and
/// a second open finds nothing more to cut.
pub fn store_recovery(data: &[u8]) {
    let Some((&mode, seg)) = data.split_first() else {
        return;
    };
    let dir = scratch_dir();
    let part = dir.path().join("topics/t/0");
    std::fs::create_dir_all(&part).expect("mkdir");
    write(
        &dir.path().join("topics/t/topic.json"),
        br#"{"version":1,"partitions":1,"config":{"durability":"none"}}"#,
    );
    write(&part.join("00000000000000000000.log"), seg);
    if mode & 2 != 0 {
        write(&part.join("00000000000000001000.log"), b"");
    }
    if mode & 1 != 0 {
        write(&dir.path().join("offsets.log"), seg);
    }
    let Ok((store, _report)) = Store::open(dir.path(), StoreOptions::default()) else {
        return;
    };
    let Ok(topic) = store.topic("t") else { return };
    let Ok(p) = topic.partition(0) else { return };
    let readable = p.read(0, usize::MAX, 1 << 26).is_ok();
    let appended = p
        .append(&[Record::new(None, Bytes::from_static(b"after"), 1)])
        .is_ok();
    drop(topic);
    drop(store);
    if readable && appended && mode & 2 == 0 {
        let (_, report) = Store::open(dir.path(), StoreOptions::default())
            .expect("a store that opened and took an append reopens");
        assert!(report.is_clean(), "second open still cut: {report}");
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write fixture");
}

/// A scratch directory on tmpfs when there is one: recovery fsyncs, and fsync on a disk
/// would make each execution cost milliseconds.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("tempdir")
}
