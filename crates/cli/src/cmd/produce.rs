//! `millrace produce`: one record per line, like kafka-console-producer.
//!
//! Lines are read on a blocking thread and handed over through a bounded channel; the
//! async side sends whatever has queued up as one batch, so a pipe of a million lines
//! becomes large batches while a person typing at the `>` prompt gets each line sent
//! (and acknowledged) at once.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use millrace_broker::{Broker, ProduceRecord};
use tokio::sync::mpsc;

use crate::args::{ProduceArgs, parse_pair};

const BATCH_LINES: usize = 4096;

struct Reader {
    parse_key: bool,
    separator: String,
}

enum Line {
    Record(usize, Vec<u8>),
    Failed(std::io::Error),
}

pub async fn run(broker: &dyn Broker, args: ProduceArgs) -> anyhow::Result<()> {
    let mut reader = Reader {
        parse_key: false,
        separator: "\t".to_string(),
    };
    for p in &args.property {
        let (k, v) = parse_pair(p)?;
        match k.as_str() {
            "parse.key" => reader.parse_key = v.eq_ignore_ascii_case("true"),
            "key.separator" => reader.separator = v,
            // Accepted for compatibility with kafka-console-producer; nothing to do.
            "ignore.error" | "parse.headers" => {}
            other => {
                return Err(super::unknown_property(
                    other,
                    &["parse.key", "key.separator"],
                ));
            }
        }
    }
    if reader.separator.is_empty() {
        anyhow::bail!("key.separator must not be empty");
    }
    // Fail before reading input when the topic does not exist.
    let topic = super::existing_topic(broker, &args.topic).await?;
    super::check_partition(&topic, args.partition)?;

    let interactive = args.file.is_none() && std::io::stdin().is_terminal();
    let (tx, mut rx) = mpsc::channel::<Line>(BATCH_LINES * 4);
    let file = args.file.clone();
    let reader_thread = std::thread::spawn(move || read_lines(file, interactive, tx));

    let mut sent = 0u64;
    while let Some(first) = rx.recv().await {
        let mut lines = vec![first];
        while lines.len() < BATCH_LINES {
            match rx.try_recv() {
                Ok(l) => lines.push(l),
                Err(_) => break,
            }
        }
        let mut batch = Vec::with_capacity(lines.len());
        for l in lines {
            match l {
                Line::Record(no, bytes) => batch.push(reader.record(no, bytes, args.partition)?),
                Line::Failed(e) => return Err(e).context("cannot read input"),
            }
        }
        sent += batch.len() as u64;
        broker.produce(&args.topic, &batch).await?;
        if interactive {
            prompt();
        }
    }
    let _ = reader_thread.join();
    tracing::debug!("produced {sent} records");
    Ok(())
}

impl Reader {
    fn record(
        &self,
        line_no: usize,
        line: Vec<u8>,
        partition: Option<i32>,
    ) -> anyhow::Result<ProduceRecord> {
        let mut r = if self.parse_key {
            let sep = self.separator.as_bytes();
            let at = line
                .windows(sep.len())
                .position(|w| w == sep)
                .with_context(|| {
                    format!(
                        "line {line_no}: no key separator '{}' found (parse.key=true)",
                        self.separator
                    )
                })?;
            let value = line[at + sep.len()..].to_vec();
            let mut key = line;
            key.truncate(at);
            ProduceRecord::keyed(Bytes::from(key), Bytes::from(value))
        } else {
            ProduceRecord::value(Bytes::from(line))
        };
        r.partition = partition;
        Ok(r)
    }
}

fn prompt() {
    let mut err = std::io::stderr();
    let _ = write!(err, ">");
    let _ = err.flush();
}

fn read_lines(file: Option<PathBuf>, interactive: bool, tx: mpsc::Sender<Line>) {
    let result = (|| -> std::io::Result<()> {
        let (input, progress): (Box<dyn BufRead>, Option<indicatif::ProgressBar>) = match &file {
            Some(path) => {
                let f = std::fs::File::open(path).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                })?;
                let len = f.metadata()?.len();
                let bar = indicatif::ProgressBar::with_draw_target(
                    Some(len),
                    indicatif::ProgressDrawTarget::stderr(),
                );
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                (
                    Box::new(std::io::BufReader::with_capacity(1 << 20, bar.wrap_read(f))),
                    Some(bar),
                )
            }
            None => (Box::new(std::io::stdin().lock()), None),
        };
        if interactive {
            prompt();
        }
        let mut input = input;
        let mut no = 0usize;
        loop {
            let mut buf = Vec::new();
            if input.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            no += 1;
            if buf.last() == Some(&b'\n') {
                buf.pop();
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
            }
            if tx.blocking_send(Line::Record(no, buf)).is_err() {
                break;
            }
        }
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = tx.blocking_send(Line::Failed(e));
    }
}
