//! The book's three terminals on the embedded store — the copier pipeline, a console
//! producer, a console consumer — started in every order. Whichever starts first
//! holds the data directory and serves it; the others reach it over Kafka's protocol.
//! Every photo typed arrives exactly once, and the session ends in any order too: a
//! holder that leaves hands the store to one of the others, and nobody complains.

mod common;
mod session;

use std::path::Path;

use common::{Backend, parse_summary, stdout};
use session::{COPIER, Terminal, photos, wait_for_holder};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Pipeline,
    Producer,
    Consumer,
}

fn args(role: Role) -> &'static [&'static str] {
    match role {
        Role::Pipeline => &["run", "copier.yaml", "--no-http"],
        Role::Producer => &["produce", "--topic", "photos-topic"],
        Role::Consumer => &["consume", "--topic", "photos-topic-2", "--from-beginning"],
    }
}

/// A data directory with the book's two topics, and the copier's file beside it.
fn store() -> Backend {
    let b = Backend::embedded();
    std::fs::write(b.data_dir().join("copier.yaml"), COPIER).expect("write the pipeline");
    for t in ["photos-topic", "photos-topic-2"] {
        b.ok(
            &["topics", "create", "--topic", t, "--partitions", "10"],
            b"",
        );
    }
    b
}

/// Ten photos are typed after each terminal starts (into the producer once it runs);
/// the consumer must print all thirty, each once.
fn session(order: [Role; 3]) {
    let b = store();
    let data = b.data_dir();
    let mut started: Vec<(Role, Terminal)> = Vec::new();
    let mut to_type: Vec<String> = Vec::new();
    for (k, role) in order.into_iter().enumerate() {
        let t = Terminal::start(&b, &format!("{role:?}"), data, args(role));
        if k == 0 {
            // The first one holds the store; the others must find it held.
            wait_for_holder(data, &[&t]);
        }
        started.push((role, t));
        to_type.extend(photos(10 * k + 1, 10 * k + 10));
        if let Some((_, producer)) = started.iter_mut().find(|(r, _)| *r == Role::Producer) {
            for line in to_type.drain(..) {
                producer.type_line(&line);
            }
        }
    }
    let mut take = |role: Role| {
        let i = started
            .iter()
            .position(|(r, _)| *r == role)
            .expect("started");
        started.remove(i).1
    };
    let (mut producer, pipeline, consumer) = (
        take(Role::Producer),
        take(Role::Pipeline),
        take(Role::Consumer),
    );
    let all = photos(1, 30);
    consumer.wait_for_lines(&all);

    // The session ends producer first (Ctrl-D), then the pipeline, then the consumer:
    // the store changes hands whenever its holder is the one leaving.
    producer.end_input();
    producer.exits_cleanly();
    pipeline.stop_cleanly("INT");
    let mut got = consumer.lines();
    let err = consumer.stop_cleanly("INT");
    assert!(
        err.contains("Processed a total of 30 messages"),
        "{order:?}: {err}"
    );
    got.sort();
    let mut want = all;
    want.sort();
    assert_eq!(got, want, "{order:?}: every photo exactly once");
    // Nothing was copied twice either.
    let d = stdout(&b.ok(&["status"], b""));
    assert!(
        d.contains("topic photos-topic-2: 10 partitions, 30 records"),
        "{order:?}: {d}"
    );
}

macro_rules! order {
    ($name:ident, $a:ident, $b:ident, $c:ident) => {
        #[test]
        fn $name() {
            session([Role::$a, Role::$b, Role::$c]);
        }
    };
}

order!(pipeline_producer_consumer, Pipeline, Producer, Consumer);
order!(pipeline_consumer_producer, Pipeline, Consumer, Producer);
order!(producer_pipeline_consumer, Producer, Pipeline, Consumer);
order!(producer_consumer_pipeline, Producer, Consumer, Pipeline);
order!(consumer_pipeline_producer, Consumer, Pipeline, Producer);
order!(consumer_producer_pipeline, Consumer, Producer, Pipeline);

/// A console consumer started first holds the store; `millrace run --batch` on the same
/// directory runs through it, and the consumer prints what the copier wrote.
#[test]
fn run_on_a_store_held_by_a_console_consumer() {
    let b = store();
    let data = b.data_dir();
    let consumer = Terminal::start(&b, "consumer", data, args(Role::Consumer));
    let held_by = wait_for_holder(data, &[&consumer]);
    let three = photos(1, 3);
    b.ok(
        &["produce", "--topic", "photos-topic"],
        three.join("\n").as_bytes(),
    );
    let file = data.join("copier.yaml");
    let out = b.ok(&["run", path(&file), "--batch", "--no-http"], b"");
    let summary = parse_summary(&common::stderr(&out));
    assert_eq!(
        summary.get("copy"),
        Some(&("copier".to_string(), [3, 3, 0, 0, 3])),
        "{summary:?}"
    );
    consumer.wait_for_lines(&three);
    assert_eq!(
        session::holder(data),
        Some(held_by),
        "the consumer held the store throughout"
    );
    consumer.stop_cleanly("INT");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
