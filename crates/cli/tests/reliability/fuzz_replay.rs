//! The fuzz targets' checks on stable Rust, inside the CI suite: every input kept in
//! fuzz/regressions/<target>/ is replayed, then a short seeded mutation loop runs over
//! real seeds. The checks are the cargo-fuzz targets' own (`fuzz/checks.rs`); the long
//! runs are cargo-fuzz's (scripts/fuzz.sh), and this keeps what they found fixed.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use millrace_store::{Record, Store, StoreOptions};

use crate::common::repo_root;
use crate::support::{Rng, figure};

#[path = "../../../../fuzz/checks.rs"]
mod checks;

type Target = (&'static str, fn(&[u8]));
const TARGETS: [Target; 3] = [
    ("decode_batches", checks::decode_batches),
    ("store_recovery", checks::store_recovery),
    ("pipeline_parse", checks::pipeline_parse),
];

#[test]
fn fuzz_regressions_stay_fixed() {
    let mut replayed = Vec::new();
    for (name, f) in TARGETS {
        let dir = repo_root().join("fuzz/regressions").join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").path())
            .collect();
        inputs.sort();
        for path in &inputs {
            let data = std::fs::read(path).expect("read regression");
            eprintln!("replaying {}", path.display());
            // On a stack as big as the main thread's, where libFuzzer and the `millrace`
            // command parse (a test thread has 2 MiB: 10 000 nested YAML maps overflow
            // it in a debug build).
            let replay = std::thread::Builder::new()
                .stack_size(8 << 20)
                .spawn(move || f(&data))
                .expect("spawn");
            if replay.join().is_err() {
                panic!("{name} fails again on {}", path.display());
            }
        }
        assert!(
            !inputs.is_empty(),
            "no inputs to replay in {}",
            dir.display()
        );
        replayed.push((name, inputs.len().to_string()));
    }
    figure("fuzz_regressions", &replayed);
}

/// A real segment: what `millrace produce` writes, made by the store itself.
fn real_segment() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = Store::open(dir.path(), StoreOptions::default()).expect("open");
    store
        .create_topic("t", 1, millrace_store::TopicConfig::default())
        .expect("topic");
    let t = store.topic("t").expect("t");
    let p = t.partition(0).expect("p");
    p.append(&[Record::new(None, Bytes::from_static(b"{\"a\":1}"), 5)])
        .expect("append");
    let mut keyed = Record::new(Some(Bytes::from_static(b"k")), Bytes::from_static(b"v"), 6);
    keyed.headers.push(millrace_store::Header::new("h", "x"));
    p.append(&[keyed.clone(), keyed]).expect("append");
    drop(t);
    drop(store);
    std::fs::read(dir.path().join("topics/t/0/00000000000000000000.log")).expect("segment")
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=(rng.next() % 4) {
        match rng.next() % 5 {
            0 if !v.is_empty() => {
                let i = (rng.next() as usize) % v.len();
                v[i] ^= 1 << (rng.next() % 8);
            }
            1 if !v.is_empty() => {
                let i = (rng.next() as usize) % v.len();
                v[i] = [0, 0xff, 0x7f, 0x80, b'[', b':', b'\n'][(rng.next() % 7) as usize];
            }
            2 => v.truncate((rng.next() as usize) % (v.len() + 1)),
            3 if !v.is_empty() => {
                let i = (rng.next() as usize) % v.len();
                let j = (i + (rng.next() as usize) % 64).min(v.len());
                let chunk = v[i..j].to_vec();
                v.splice(i..i, chunk);
            }
            _ => v.push((rng.next() & 0xff) as u8),
        }
    }
    v
}

#[test]
fn fuzz_targets_short_mutation_loop_on_stable() {
    let mut rng = Rng::new("stable fuzz loop");
    let seg = real_segment();
    let yamls: Vec<Vec<u8>> = ["copier.yaml", "signup.yaml", "wordcount.yaml", "zip.yaml"]
        .iter()
        .filter_map(|f| std::fs::read(Path::new(&repo_root()).join("examples").join(f)).ok())
        .collect();
    let budget = Duration::from_secs(crate::support::knob("MILLRACE_REL_FUZZ_SECS", 4, 60));
    let mut execs = [0u64; 3];
    for (k, (name, f)) in TARGETS.iter().enumerate() {
        let start = Instant::now();
        while start.elapsed() < budget {
            let input = match *name {
                "decode_batches" => mutate(&mut rng, &seg),
                "store_recovery" => {
                    let mut v = vec![(rng.next() % 4) as u8];
                    v.extend(mutate(&mut rng, &seg));
                    v
                }
                _ => {
                    let pick = (rng.next() as usize) % yamls.len();
                    mutate(&mut rng, &yamls[pick])
                }
            };
            if std::panic::catch_unwind(|| f(&input)).is_err() {
                // Keep the input: it becomes fuzz/regressions/<target>/<what-it-found>.
                let saved = std::env::temp_dir()
                    .join(format!("millrace-fuzz-{name}-{}", std::process::id()));
                let _ = std::fs::write(&saved, &input);
                panic!("{name} failed on an input saved in {}", saved.display());
            }
            execs[k] += 1;
        }
    }
    figure(
        "fuzz_stable_loop",
        &[
            ("decode_batches", execs[0].to_string()),
            ("store_recovery", execs[1].to_string()),
            ("pipeline_parse", execs[2].to_string()),
        ],
    );
}
