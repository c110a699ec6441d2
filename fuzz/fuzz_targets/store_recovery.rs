//! Store recovery on a data directory whose segment bytes come from the fuzzer.
//!
//! Input layout: byte 0 chooses where the bytes go (bit 0: also as the offsets journal,
//! bit 1: a second, sealed-looking segment before the active one); the rest is the
//! active segment `topics/t/0/00000000000000000000.log`. Open must succeed (with any cut
//! reported) or fail with a clear error; never panic. When it opens: every record reads
//! back or the read fails with an error, an append works, and a second open is clean
//! (recovery left a log that needs no further cutting).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use millrace_store::{Record, Store, StoreOptions};

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write fixture");
}

fuzz_target!(|data: &[u8]| {
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
    if mode & 2 != 0 {
        // The fuzzer's bytes as a sealed segment, then an empty active one after it.
        write(&part.join("00000000000000000000.log"), seg);
        write(&part.join("00000000000000001000.log"), b"");
    } else {
        write(&part.join("00000000000000000000.log"), seg);
    }
    if mode & 1 != 0 {
        write(&dir.path().join("offsets.log"), seg);
    }

    let opened = Store::open(dir.path(), StoreOptions::default());
    let Ok((store, _report)) = opened else {
        return;
    };
    let Ok(topic) = store.topic("t") else {
        return;
    };
    let Ok(p) = topic.partition(0) else {
        return;
    };
    let readable = p.read(0, usize::MAX, 1 << 26).is_ok();
    let appended = p
        .append(&[Record {
            key: None,
            value: bytes::Bytes::from_static(b"after"),
            headers: Vec::new(),
            timestamp: 1,
        }])
        .is_ok();
    drop(topic);
    drop(store);
    if readable && appended && mode & 2 == 0 {
        // What the first open kept plus one clean append must reopen without a cut.
        let (_, report) = Store::open(dir.path(), StoreOptions::default())
            .expect("a store that opened and took an append reopens");
        assert!(report.is_clean(), "second open still cut: {report}");
    }
});

/// A scratch directory on tmpfs when there is one: recovery fsyncs, and fsync on a disk
/// would make each execution cost milliseconds.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("tempdir")
}
