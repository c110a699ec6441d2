//! Storage faults as a user meets them through the CLI: a disk that fills up, a torn or
//! garbage tail on a segment, a flipped byte in the middle of one. The store's own tests
//! (crates/store/tests/faults.rs) inject the same faults through its I/O seam, and a
//! failing fsync there; these check what the `millrace` binary says and does.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Backend, stderr, stdout};
use crate::support::{figure, is_ci, no_panic};

/// The segment files of partition 0 of `topic`, oldest first.
fn segments(data: &Path, topic: &str) -> Vec<PathBuf> {
    let dir = data.join("topics").join(topic).join("0");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

fn consume_all(b: &Backend, topic: &str) -> std::process::Output {
    b.run(
        &[
            "consume",
            "--topic",
            topic,
            "--from-beginning",
            "--timeout-ms",
            "1500",
        ],
        b"",
    )
}

/// Three produce calls of 10 records each: three batches in one segment.
fn three_batches(b: &Backend) -> Vec<String> {
    b.ok(
        &["topics", "create", "--topic", "t", "--partitions", "1"],
        b"",
    );
    let mut all = Vec::new();
    for batch in 0..3 {
        let vals: Vec<String> = (0..10)
            .map(|i| format!("{{\"n\":{}}}", batch * 10 + i))
            .collect();
        b.ok(
            &["produce", "--topic", "t"],
            (vals.join("\n") + "\n").as_bytes(),
        );
        all.extend(vals);
    }
    all
}

#[test]
fn torn_tail_is_cut_and_reported_by_the_next_command() {
    let b = Backend::embedded();
    let all = three_batches(&b);
    let seg = segments(b.data_dir(), "t").pop().expect("a segment");
    let len = std::fs::metadata(&seg).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open segment")
        .set_len(len - 5)
        .expect("tear");
    let out = consume_all(&b, "t");
    let err = stderr(&out);
    no_panic("consume after a torn tail", &err);
    assert!(out.status.success(), "consume failed: {err}");
    assert!(
        err.contains("recovery") && err.contains(&seg.display().to_string()),
        "the cut is not reported naming the file: {err}"
    );
    let got: Vec<String> = stdout(&out).lines().map(String::from).collect();
    // The torn batch was the third call's last (produce may send a call as more than
    // one batch): the first two calls survive whole, the third is cut to a prefix.
    assert!(
        got.len() >= 20 && got.len() < 30,
        "{} records after the cut",
        got.len()
    );
    assert_eq!(got, all[..got.len()], "what survives is the log's prefix");
    // The log continues after the cut, and the next open has nothing left to repair.
    b.ok(&["produce", "--topic", "t"], b"{\"n\":\"after\"}\n");
    let out = consume_all(&b, "t");
    assert!(!stderr(&out).contains("recovery"), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), got.len() + 1);
    figure(
        "torn_tail_cli",
        &[("faults", "1".into()), ("lost_acknowledged", "0".into())],
    );
}

#[test]
fn garbage_after_the_last_batch_is_cut_and_nothing_is_lost() {
    let b = Backend::embedded();
    let all = three_batches(&b);
    let seg = segments(b.data_dir(), "t").pop().expect("a segment");
    let mut junk = vec![0u8; 3000];
    junk.extend_from_slice(b"\xff\xfe not a batch");
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("open");
    std::io::Write::write_all(&mut &f, &junk).expect("append junk");
    drop(f);
    let out = consume_all(&b, "t");
    let err = stderr(&out);
    no_panic("consume after garbage", &err);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("recovery"), "the cut is not reported: {err}");
    let got: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(got, all, "every acknowledged record survives");
    figure(
        "garbage_tail_cli",
        &[("faults", "1".into()), ("lost_acknowledged", "0".into())],
    );
}

#[test]
fn flipped_byte_in_the_middle_is_a_clear_error_naming_file_and_offset() {
    let b = Backend::embedded();
    three_batches(&b);
    let seg = segments(b.data_dir(), "t").pop().expect("a segment");
    let before = std::fs::read(&seg).expect("read");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .expect("open");
    let mut byte = [0u8];
    // Inside the first record's value, however the producer batched its lines: a batch
    // header is 32 bytes, then the record's timestamp (8), key length (4) and value
    // length (4) — docs/format.md.
    const IN_FIRST_VALUE: u64 = 32 + 8 + 4 + 4 + 2;
    f.read_exact_at(&mut byte, IN_FIRST_VALUE)
        .expect("read byte");
    f.write_all_at(&[byte[0] ^ 0x20], IN_FIRST_VALUE)
        .expect("flip");
    drop(f);
    for args in [
        vec![
            "consume",
            "--topic",
            "t",
            "--from-beginning",
            "--timeout-ms",
            "1000",
        ],
        vec!["topics", "describe", "--topic", "t"],
        vec!["produce", "--topic", "t"],
    ] {
        let out = b.run(&args, b"{\"n\":99}\n");
        let err = stderr(&out);
        no_panic(&format!("{args:?} on a corrupt middle"), &err);
        assert!(
            !out.status.success(),
            "{args:?} succeeded on a corrupt store"
        );
        assert!(
            err.contains(&seg.display().to_string()) && err.contains("byte 0"),
            "{args:?}: the error does not name the file and the offset: {err}"
        );
    }
    assert_eq!(
        std::fs::read(&seg).expect("read").len(),
        before.len(),
        "nothing was cut"
    );
    figure(
        "flipped_middle_cli",
        &[("faults", "1".into()), ("commands_refused", "3".into())],
    );
}

/// A tmpfs mount that is unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir)),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    !is_ci(),
                    "CI=true but a tmpfs cannot be mounted for the full-disk test: {why}"
                );
                eprintln!("full-disk test skipped: cannot mount a tmpfs ({why})");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn full_disk_fails_produce_clearly_and_keeps_every_acknowledged_record() {
    let Some(fs) = Tmpfs::mount("8m") else {
        return;
    };
    let data = fs.0.path().join("data");
    let b = Backend::embedded();
    let cmd = |args: &[&str], input: &[u8]| {
        let mut c = b.cmd();
        c.env("MILLRACE_DATA", &data);
        crate::common::run_with(c, args, input)
    };
    let out = cmd(
        &["topics", "create", "--topic", "t", "--partitions", "1"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Space that can be given back later, as an operator would after the alert.
    let filler = fs.0.path().join("filler");
    std::fs::write(&filler, vec![1u8; 2 << 20]).expect("filler");

    // Produce 512 KiB calls until one fails; each successful call was acknowledged.
    let pad = "x".repeat(1000);
    let mut acknowledged: Vec<String> = Vec::new();
    let mut failure = None;
    for call in 0..40 {
        let vals: Vec<String> = (0..512)
            .map(|i| format!("{{\"c\":{call},\"i\":{i},\"p\":\"{pad}\"}}"))
            .collect();
        let out = cmd(
            &["produce", "--topic", "t"],
            (vals.join("\n") + "\n").as_bytes(),
        );
        let err = stderr(&out);
        no_panic("produce on a full disk", &err);
        if out.status.success() {
            acknowledged.extend(vals);
        } else {
            failure = Some(err);
            break;
        }
    }
    let err = failure.expect("an 8 MiB file system never filled up");
    assert!(
        err.to_lowercase().contains("no space")
            || err.to_lowercase().contains("disk full")
            || err.to_lowercase().contains("full"),
        "the produce error does not say the disk is full: {err}"
    );
    assert!(
        !acknowledged.is_empty(),
        "nothing fit before the disk was full"
    );

    // Every acknowledged record is readable, in order, with nothing invented after it
    // other than (possibly) a prefix of the failed call.
    let read = |what: &str| -> Vec<String> {
        let out = cmd(
            &[
                "consume",
                "--topic",
                "t",
                "--from-beginning",
                "--timeout-ms",
                "1500",
            ],
            b"",
        );
        let e = stderr(&out);
        no_panic(what, &e);
        assert!(out.status.success(), "{what}: {e}");
        stdout(&out).lines().map(String::from).collect()
    };
    let got = read("consume after the full disk");
    assert!(
        got.len() >= acknowledged.len(),
        "lost acknowledged records: {} < {}",
        got.len(),
        acknowledged.len()
    );
    assert_eq!(
        got[..acknowledged.len()],
        acknowledged[..],
        "acknowledged records changed"
    );

    // Space comes back: the store takes writes again and keeps everything.
    std::fs::remove_file(&filler).expect("free space");
    let out = cmd(&["produce", "--topic", "t"], b"{\"after\":true}\n");
    assert!(
        out.status.success(),
        "produce after freeing space: {}",
        stderr(&out)
    );
    let again = read("consume after freeing space");
    assert_eq!(again.last().map(String::as_str), Some("{\"after\":true}"));
    assert_eq!(again[..acknowledged.len()], acknowledged[..]);
    figure(
        "full_disk_cli",
        &[
            ("faults", "1".into()),
            (
                "acknowledged_records_checked",
                acknowledged.len().to_string(),
            ),
            ("lost_acknowledged", "0".into()),
        ],
    );
}
