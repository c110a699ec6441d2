//! kill -9 of `millrace run`, again and again (`kill_loop.rs`), over the sign-up flow
//! (sharder, exec workers, copier, splitter) on the embedded store and over a copier and
//! a map on both backends. After the final drain every input must be in its outputs
//! exactly once: nothing lost, and no output written twice (by value, and by lineage in
//! every topic a stage writes).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use crate::common::{Backend, kafka_bootstrap, parse_summary};
use crate::inspect::assert_no_duplicates;
use crate::kill_loop::{
    Runs, exactly_once, kill_loop, produce_lines, read_all, split_chunks, store_opens_clean,
};
use crate::support::{Rng, figure, heavy, knob};

// ---------------------------------------------------------------- sign-up

const REGIONS: [&str; 3] = ["eu", "us", "ap"];
const NOTIFY: [&str; 4] = ["[]", "[\"email\"]", "[\"sms\"]", "[\"email\",\"sms\"]"];
/// Every topic the sign-up flow's stages write.
const SIGNUP_OUTPUTS: &[&str] = &[
    "signups-eu",
    "signups-us",
    "signups-ap",
    "verification-emails",
    "welcome-email",
    "notify-setup",
    "notify-email",
    "notify-sms",
    "notify-none",
];

fn signup(i: u64) -> String {
    format!(
        r#"{{"user_id":"u{i:07}","email":"user{i}@example.com","phone":"+1555{i:07}","region":"{}","notify":{}}}"#,
        REGIONS[(i % 3) as usize],
        NOTIFY[((i / 3) % 4) as usize]
    )
}

fn user_ids(values: &[String], what: &str) -> HashMap<String, u64> {
    let mut seen = HashMap::new();
    for v in values {
        let j: serde_json::Value =
            serde_json::from_str(v).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {v}"));
        let id = j["user_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no user_id in {v}"))
            .to_string();
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

#[test]
fn signup_survives_kill_9_without_losing_or_repeating_a_user() {
    let _heavy = heavy();
    let users = knob("MILLRACE_REL_SIGNUPS", 80_000, 1_000_000);
    let kills = knob("MILLRACE_REL_KILLS", 20, 25);
    let max_delay = knob("MILLRACE_REL_KILL_MAX_MS", 2_500, 6_000);
    let mut rng = Rng::new("signup kill -9");
    let b = Backend::embedded();
    let file = b.example("signup.yaml", &[]);
    // An empty --batch run creates the pipeline's topics (durability=batch by default).
    b.root_ok(
        &["run", file.to_str().expect("path"), "--batch", "--no-http"],
        b"",
    );

    let all: Vec<String> = (0..users).map(signup).collect();
    // Every third user clicks the verification link.
    let verified: Vec<String> = (0..users).step_by(3).map(signup).collect();
    let scratch = tempfile::tempdir().expect("scratch");
    produce_lines(
        &b,
        "verified",
        &(verified.join("\n") + "\n"),
        scratch.path(),
    );
    let chunks = split_chunks(&all, kills as usize + 1);
    let t0 = Instant::now();
    let (k, final_err) = kill_loop(
        &b,
        &file,
        Runs::Continuous,
        "signups",
        "signups-eu",
        "verification-emails",
        &chunks,
        kills,
        &mut rng,
        max_delay,
    );
    let elapsed = t0.elapsed();
    assert!(k.kills >= kills, "only {} kills happened", k.kills);

    let summary = parse_summary(&final_err);
    assert!(
        summary.contains_key("shard-by-region"),
        "no summary:\n{final_err}"
    );

    let expected: HashSet<String> = (0..users).map(|i| format!("u{i:07}")).collect();
    let emails = read_all(&b, "verification-emails");
    exactly_once(
        &user_ids(&emails, "verification-emails"),
        &expected,
        "verification-emails",
    );

    let verified_ids: HashSet<String> = (0..users).step_by(3).map(|i| format!("u{i:07}")).collect();
    let welcome = read_all(&b, "welcome-email");
    exactly_once(
        &user_ids(&welcome, "welcome-email"),
        &verified_ids,
        "welcome-email",
    );
    // Each verified user lands in exactly the notify routes its `notify` list names.
    for (topic, wants) in [("notify-email", "email"), ("notify-sms", "sms")] {
        let want: HashSet<String> = (0..users)
            .step_by(3)
            .filter(|i| NOTIFY[((i / 3) % 4) as usize].contains(wants))
            .map(|i| format!("u{i:07}"))
            .collect();
        exactly_once(&user_ids(&read_all(&b, topic), topic), &want, topic);
    }
    let none: HashSet<String> = (0..users)
        .step_by(3)
        .filter(|i| (i / 3) % 4 == 0)
        .map(|i| format!("u{i:07}"))
        .collect();
    exactly_once(
        &user_ids(&read_all(&b, "notify-none"), "notify-none"),
        &none,
        "notify-none",
    );

    // No sign-up was bad, so nothing may be dead-lettered.
    let dlq = b.run(&["topics", "describe", "--topic", "signup.dlq"], b"");
    if dlq.status.success() {
        assert_eq!(
            b.records_in("signup.dlq"),
            0,
            "good sign-ups were dead-lettered"
        );
    }
    store_opens_clean(&b, "verification-emails");
    // No stage wrote any output twice: every topic a stage writes, by lineage.
    let lineage_checked = assert_no_duplicates(&b, SIGNUP_OUTPUTS, "sign-up kill -9");

    let checked = emails.len() + welcome.len();
    figure(
        "signup_kill_9",
        &[
            ("users", users.to_string()),
            ("verified", verified_ids.len().to_string()),
            ("kills", k.kills.to_string()),
            (
                "runs_finished_before_kill",
                k.finished_on_their_own.to_string(),
            ),
            ("tail_truncations_reported", k.truncations.to_string()),
            ("outputs_before_drain", k.outputs_before_drain.to_string()),
            ("output_records_checked", checked.to_string()),
            ("outputs_checked_by_lineage", lineage_checked.to_string()),
            ("duplicates", "0".to_string()),
            ("lost", "0".to_string()),
            ("seconds", elapsed.as_secs().to_string()),
        ],
    );
}

// ---------------------------------------------------------------- copier and map

/// A copier and a map: on the embedded store the copier moves records as stored, the
/// map decodes and rewrites each one; on Kafka both go through the consumer and the
/// idempotent producer.
fn copier_map_file(b: &Backend) -> PathBuf {
    let (items, copied, tagged) = (b.topic("items"), b.topic("copied"), b.topic("tagged"));
    let path = b.data_dir().join("copy-map.yaml");
    std::fs::write(
        &path,
        format!(
            "pipeline: {}\ntopics:\n  {items}: {{partitions: 4}}\nstages:\n  copy: {{kind: copier, from: {items}, to: [{copied}]}}\n  tag:\n    kind: map\n    from: {copied}\n    to: {tagged}\n    expr: '{{id: .id, tagged: true}}'\n",
            b.topic("killcopy")
        ),
    )
    .expect("write pipeline");
    path
}

fn copier_kill_loop(b: &Backend, what: &str, records: u64, kills: u64) {
    let _heavy = heavy();
    // A copier and a map get through a chunk in a second or so: each run dies within
    // this long of its first outputs, mid-chunk.
    let max_delay = knob("MILLRACE_REL_COPIER_KILL_MAX_MS", 300, 600);
    let mut rng = Rng::new(what);
    let file = copier_map_file(b);
    b.root_ok(
        &["run", file.to_str().expect("path"), "--batch", "--no-http"],
        b"",
    );
    let (items, copied, tagged) = (b.topic("items"), b.topic("copied"), b.topic("tagged"));
    let lines: Vec<String> = (0..records)
        .map(|i| format!("{{\"id\":\"c{i:08}\"}}"))
        .collect();
    let chunks = split_chunks(&lines, kills as usize + 1);
    let t0 = Instant::now();
    let (k, _) = kill_loop(
        b,
        &file,
        Runs::MidWork,
        &items,
        &copied,
        &tagged,
        &chunks,
        kills,
        &mut rng,
        max_delay,
    );
    assert!(k.kills >= kills, "only {} kills happened", k.kills);
    let mut seen: HashMap<String, u64> = HashMap::new();
    for v in read_all(b, &tagged) {
        let j: serde_json::Value =
            serde_json::from_str(&v).unwrap_or_else(|e| panic!("{tagged}: not JSON ({e}): {v}"));
        assert_eq!(j["tagged"], true, "{tagged}: not mapped: {v}");
        let id = j["id"].as_str().unwrap_or_else(|| panic!("no id in {v}"));
        *seen.entry(id.to_string()).or_insert(0) += 1;
    }
    let expected: HashSet<String> = (0..records).map(|i| format!("c{i:08}")).collect();
    exactly_once(&seen, &expected, &tagged);
    let checked = assert_no_duplicates(b, &[&copied, &tagged], what);
    if b.bootstrap.is_none() {
        store_opens_clean(b, &tagged);
    }
    figure(
        &format!("copier_map_kill_9_{}", b.name),
        &[
            ("records", records.to_string()),
            ("kills", k.kills.to_string()),
            (
                "runs_finished_before_kill",
                k.finished_on_their_own.to_string(),
            ),
            ("tail_truncations_reported", k.truncations.to_string()),
            ("outputs_before_drain", k.outputs_before_drain.to_string()),
            ("outputs_checked_by_lineage", checked.to_string()),
            ("lost", "0".to_string()),
            ("duplicates", "0".to_string()),
            ("seconds", t0.elapsed().as_secs().to_string()),
        ],
    );
}

#[test]
fn copier_and_map_survive_kill_9_exactly_once_on_the_embedded_store() {
    copier_kill_loop(
        &Backend::embedded(),
        "copier+map kill -9 (embedded)",
        knob("MILLRACE_REL_COPIES", 300_000, 3_000_000),
        knob("MILLRACE_REL_COPIER_KILLS", 12, 25),
    );
}

#[test]
fn copier_and_map_survive_kill_9_exactly_once_on_kafka() {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    copier_kill_loop(
        &Backend::kafka(bootstrap),
        "copier+map kill -9 (kafka)",
        knob("MILLRACE_REL_KAFKA_COPIES", 60_000, 600_000),
        knob("MILLRACE_REL_KAFKA_KILLS", 6, 15),
    );
}
