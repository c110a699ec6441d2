//! The holder of a data directory leaves in the middle of a session — the copier
//! pipeline, stopped with Ctrl-C or killed — while a console producer keeps typing and
//! a console consumer keeps printing. The two go on without a word: one of them takes
//! the store over and serves it at the same address, and both reconnect to it. The
//! pipeline started again (now reaching the store through its new holder) copies the
//! rest, and nothing the producer had acknowledged is lost: after Ctrl-C every photo
//! arrives exactly once; after `kill -9` at least once (a produce the holder took in
//! but never answered is sent again).

mod common;
mod session;

use std::time::Duration;

use common::Backend;
use session::{COPIER, Terminal, assert_no_complaint, photos, wait_for_holder};

const RUN: &[&str] = &["run", "copier.yaml", "--no-http"];
const PRODUCE: &[&str] = &["produce", "--topic", "photos-topic"];
const CONSUME: &[&str] = &["consume", "--topic", "photos-topic-2", "--from-beginning"];
const CONSUME_PHOTOS: &[&str] = &["consume", "--topic", "photos-topic", "--from-beginning"];

/// Types photos one every few milliseconds, counting them.
struct Typist {
    typed: usize,
}

impl Typist {
    fn type_some(&mut self, producer: &mut Terminal, n: usize) {
        for _ in 0..n {
            self.typed += 1;
            producer.type_line(&format!("photo-{}.jpg", self.typed));
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Types until `done` holds (checked every ten photos).
    fn type_until(&mut self, producer: &mut Terminal, done: impl Fn() -> bool) {
        let start = std::time::Instant::now();
        while !done() {
            assert!(start.elapsed() < session::WAIT, "typed for too long");
            self.type_some(producer, 10);
        }
    }
}

fn holder_leaves(signal: &str) {
    let b = Backend::embedded();
    let data = b.data_dir();
    std::fs::write(data.join("copier.yaml"), COPIER).expect("write the pipeline");
    for t in ["photos-topic", "photos-topic-2"] {
        b.ok(
            &["topics", "create", "--topic", t, "--partitions", "10"],
            b"",
        );
    }
    let pipeline = Terminal::start(&b, "pipeline", data, RUN);
    wait_for_holder(data, &[&pipeline]);
    let mut producer = Terminal::start(&b, "producer", data, PRODUCE);
    let consumer = Terminal::start(&b, "consumer", data, CONSUME);
    let mut typist = Typist { typed: 0 };
    typist.type_until(&mut producer, || consumer.lines().len() >= 50);

    // The holder leaves while photos keep coming.
    pipeline.signal(signal);
    typist.type_some(&mut producer, 100);
    let (status, err) = pipeline.wait();
    if signal == "INT" {
        assert!(status.success(), "Ctrl-C ends the run cleanly: {err}");
    }
    let new_holder = wait_for_holder(data, &[&producer, &consumer]);
    typist.type_some(&mut producer, 100);
    producer.assert_running();
    consumer.assert_running();

    // The pipeline again: it reaches the store through its new holder.
    let pipeline = Terminal::start(&b, "pipeline again", data, RUN);
    typist.type_some(&mut producer, 100);
    // Ctrl-D: the producer exits 0 once every photo typed is acknowledged.
    producer.end_input();
    let producer_pid = producer.pid();
    producer.exits_cleanly();
    let all = photos(1, typist.typed);
    consumer.wait_for_lines(&all);
    pipeline.stop_cleanly("INT");
    let mut got = consumer.lines();
    let consumer_err = consumer.stop_cleanly("INT");
    assert_no_complaint("consumer", &consumer_err);
    got.sort();
    let mut want = all;
    want.sort();
    if signal == "INT" {
        assert_eq!(got, want, "after Ctrl-C every photo exactly once");
    } else {
        let mut distinct = got.clone();
        distinct.dedup();
        assert_eq!(distinct, want, "after kill -9 every photo at least once");
        eprintln!(
            "kill -9: {} photos, {} printed twice; the store was taken over by the {}",
            want.len(),
            got.len() - distinct.len(),
            if new_holder == producer_pid {
                "producer"
            } else {
                "consumer"
            }
        );
    }
}

#[test]
fn the_pipeline_holding_the_store_stopped_with_ctrl_c() {
    holder_leaves("INT");
}

#[test]
fn the_pipeline_holding_the_store_killed() {
    holder_leaves("KILL");
}

/// When the address the old holder served cannot be bound again (another program took
/// the port meanwhile), the process that takes the store over serves a new one and
/// says so, and a client of the old address stops with an error naming the new one.
#[test]
fn a_store_served_at_a_new_address_is_named_to_its_clients() {
    let b = Backend::embedded();
    let data = b.data_dir();
    b.ok(&["topics", "create", "--topic", "photos-topic"], b"");
    let holder = Terminal::start(&b, "holder", data, &["consume", "--topic", "photos-topic"]);
    wait_for_holder(data, &[&holder]);
    let old = std::fs::read_to_string(data.join("endpoint")).expect("endpoint");
    let client = Terminal::start(&b, "client", data, CONSUME_PHOTOS);
    // The client is connected once it has seen a photo typed through it.
    let mut producer = Terminal::start(&b, "producer", data, PRODUCE);
    producer.type_line("photo-1.jpg");
    client.wait_for_lines(&photos(1, 1));
    producer.end_input();
    producer.exits_cleanly();
    // While the client cannot act, the holder dies and its port is taken.
    client.signal("STOP");
    holder.signal("KILL");
    let _ = holder.wait();
    let old_addr: std::net::SocketAddr = old.trim().parse().expect("address");
    let squatter = std::net::TcpListener::bind(old_addr).expect("take the old port");
    client.signal("CONT");
    let (status, err) = client.wait();
    drop(squatter);
    let new = std::fs::read_to_string(data.join("endpoint")).expect("endpoint");
    assert_ne!(new, old, "a new address is recorded");
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(&format!("now served at {}", new.trim()))
            && err.contains(&format!("not at {}", old.trim())),
        "the error names both addresses: {err}"
    );
}
