//! `millrace produce`: one record per line, like kafka-console-producer.
//!
//! A reader thread reads the input in large blocks and turns every complete line of a
//! block into a record (a slice of the block: no copy, no allocation per line); the
//! records of each read travel as one batch through a short channel. The async side
//! hands each batch to the backend as it comes and keeps a few batches' acknowledgements
//! in flight, so reading, librdkafka's queue and the broker's acknowledgements overlap
//! instead of taking turns. A person typing at the `>` prompt gets each line sent, and
//! acknowledged, before the next prompt.

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use millrace_broker::{Acks, Broker, ProduceRecord};
use tokio::sync::mpsc;

use crate::args::{ProduceArgs, parse_pair};

/// Bytes asked for per read: about ten thousand 100-byte lines, one batch.
const READ_BYTES: usize = 1 << 20;

/// Batches read ahead of the one being sent.
const READ_AHEAD: usize = 2;

/// Client settings of `produce` on Kafka, under the user's `--command-config`.
///
/// librdkafka's own `linger.ms` (5 ms, as kcat and the Java client run) instead of the
/// backend's 0: a stage waits for each batch's acknowledgement, but `produce` keeps
/// several batches in flight, and there a few milliseconds' wait fills each request.
/// Over a file of a million 100-byte lines (alternating runs), 0 ms took about 1.5
/// times the CPU and the time of 5 ms; 2 and 10 ms were in between.
pub fn kafka_properties() -> BTreeMap<String, String> {
    BTreeMap::from([("linger.ms".to_string(), "5".to_string())])
}

/// How a line becomes a record.
#[derive(Clone)]
struct Reader {
    parse_key: bool,
    separator: String,
    partition: Option<i32>,
}

/// One read's records, or why reading stopped.
type Batch = anyhow::Result<Vec<ProduceRecord>>;

pub async fn run(broker: &dyn Broker, args: ProduceArgs) -> anyhow::Result<()> {
    let mut reader = Reader {
        parse_key: false,
        separator: "\t".to_string(),
        partition: args.partition,
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
    let (tx, mut rx) = mpsc::channel::<Batch>(READ_AHEAD);
    let file = args.file.clone();
    let reader_thread = std::thread::spawn(move || read_input(file, interactive, &reader, &tx));

    // Each batch is handed over after the one before (so order is kept); up to
    // `in_flight` of them wait for their acknowledgements at once.
    let in_flight = broker.sends_in_flight().max(1);
    let mut waiting: VecDeque<Acks> = VecDeque::new();
    let mut sent = 0u64;
    let mut failed = None;
    while let Some(batch) = rx.recv().await {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        sent += batch.len() as u64;
        match broker.send(&args.topic, &batch).await {
            Ok(acks) => waiting.push_back(acks),
            Err(e) => {
                failed = Some(e.into());
                break;
            }
        }
        while waiting.len() > if interactive { 0 } else { in_flight } {
            if let Some(acks) = waiting.pop_front()
                && let Err(e) = acks.await
            {
                failed = Some(e.into());
                break;
            }
        }
        if failed.is_some() {
            break;
        }
        if interactive {
            prompt();
        }
    }
    // What was handed over is waited for even when reading failed: the records before
    // a bad line are acknowledged (or their error reported) before the error is.
    drop(rx);
    for acks in waiting {
        if let Err(e) = acks.await {
            failed.get_or_insert(e.into());
        }
    }
    let _ = reader_thread.join();
    if let Some(e) = failed {
        return Err(e);
    }
    tracing::debug!("produced {sent} records");
    Ok(())
}

impl Reader {
    fn record(&self, line_no: usize, line: Bytes) -> anyhow::Result<ProduceRecord> {
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
            ProduceRecord::keyed(line.slice(..at), line.slice(at + sep.len()..))
        } else {
            ProduceRecord::value(line)
        };
        r.partition = self.partition;
        Ok(r)
    }
}

fn prompt() {
    let mut err = std::io::stderr();
    let _ = write!(err, ">");
    let _ = err.flush();
}

/// Reads the file (with a progress bar) or standard input until its end, sending the
/// records of each read as one batch; a read error or a bad line is sent last.
fn read_input(file: Option<PathBuf>, interactive: bool, reader: &Reader, tx: &mpsc::Sender<Batch>) {
    let result = (|| -> anyhow::Result<()> {
        let (input, progress): (Box<dyn Read>, Option<indicatif::ProgressBar>) = match &file {
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
                (Box::new(bar.wrap_read(f)), Some(bar))
            }
            None => (Box::new(std::io::stdin().lock()), None),
        };
        if interactive {
            prompt();
        }
        let mut lines = Lines::new(input);
        let mut no = 0usize;
        while let Some(block) = lines.next_block().context("cannot read input")? {
            let mut batch = Vec::with_capacity(block.len());
            for line in block {
                no += 1;
                batch.push(reader.record(no, line)?);
            }
            if tx.blocking_send(Ok(batch)).is_err() {
                break;
            }
        }
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = tx.blocking_send(Err(e));
    }
}

/// The lines of a byte stream, a read's worth at a time: each line a slice of the block
/// it was read in, without its `\n` (or `\r\n`). The last line needs no `\n`.
struct Lines<R> {
    input: R,
    /// Bytes read and not handed out yet: the start of a line whose end is still to come.
    buf: BytesMut,
    eof: bool,
}

impl<R: Read> Lines<R> {
    fn new(input: R) -> Self {
        Lines {
            input,
            buf: BytesMut::new(),
            eof: false,
        }
    }

    /// The complete lines of the next read (more reads when it ends inside a line);
    /// `None` at the end of the input.
    fn next_block(&mut self) -> std::io::Result<Option<Vec<Bytes>>> {
        loop {
            if self.eof {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                // The last line, without a newline.
                let last = self.buf.split().freeze();
                return Ok(Some(vec![strip_cr(last)]));
            }
            // Room for a full read after the partial line kept from the last one.
            self.buf.reserve(READ_BYTES);
            let start = self.buf.len();
            let spare = self.buf.capacity() - start;
            self.buf.resize(start + spare, 0);
            let n = loop {
                match self.input.read(&mut self.buf[start..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buf.truncate(start);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(start + n);
            if n == 0 {
                self.eof = true;
                continue;
            }
            // Only what ends in a newline is handed out; the rest waits for the next read.
            let Some(end) = memchr::memrchr(b'\n', &self.buf[start..]).map(|i| start + i + 1)
            else {
                continue;
            };
            let block = self.buf.split_to(end).freeze();
            return Ok(Some(split_lines(&block)));
        }
    }
}

/// The lines of `block`, which ends with `\n`.
fn split_lines(block: &Bytes) -> Vec<Bytes> {
    let mut lines = Vec::with_capacity(block.len() / 64 + 1);
    let mut from = 0;
    for end in memchr::memchr_iter(b'\n', block) {
        lines.push(strip_cr(block.slice(from..end)));
        from = end + 1;
    }
    lines
}

/// A line without the `\r` of a `\r\n` ending.
fn strip_cr(line: Bytes) -> Bytes {
    match line.last() {
        Some(b'\r') => line.slice(..line.len() - 1),
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns at most `step` bytes per read, as a pipe may.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn all_lines(data: &[u8], step: usize) -> (Vec<Vec<u8>>, usize) {
        let mut lines = Lines::new(Trickle { data, step });
        let (mut out, mut blocks) = (Vec::new(), 0);
        while let Some(block) = lines.next_block().expect("read") {
            blocks += 1;
            out.extend(block.iter().map(|l| l.to_vec()));
        }
        (out, blocks)
    }

    #[test]
    fn lines_split_at_newlines_whatever_the_reads() {
        let data = b"one\r\ntwo\n\nthree\nlast";
        let want: Vec<Vec<u8>> = ["one", "two", "", "three", "last"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        for step in [1, 2, 3, 5, 7, 100] {
            assert_eq!(all_lines(data, step).0, want, "reads of {step} bytes");
        }
        assert!(all_lines(b"", 10).0.is_empty());
        assert_eq!(all_lines(b"\n", 10).0, vec![Vec::<u8>::new()]);
        assert_eq!(all_lines(b"a\r", 10).0, vec![b"a".to_vec()]);
    }

    #[test]
    fn a_read_gives_its_complete_lines_as_one_block() {
        // A line longer than one read still comes whole.
        let long = vec![b'x'; READ_BYTES * 2 + 10];
        let mut data = long.clone();
        data.extend_from_slice(b"\nshort\n");
        let (lines, _) = all_lines(&data, usize::MAX);
        assert_eq!(lines, vec![long, b"short".to_vec()]);
        // Many short lines read at once make few blocks, not one per line.
        let data: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let (lines, blocks) = all_lines(&data, usize::MAX);
        assert_eq!(lines.len(), 20_000);
        assert_eq!(lines[19_999], b"19999");
        assert!(blocks <= 2, "{blocks} blocks");
    }

    #[test]
    fn keys_are_split_at_the_first_separator() {
        let reader = Reader {
            parse_key: true,
            separator: "::".into(),
            partition: Some(3),
        };
        let r = reader
            .record(1, Bytes::from_static(b"k::v::w"))
            .expect("record");
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(&r.value[..], b"v::w");
        assert_eq!(r.partition, Some(3));
        let err = reader
            .record(7, Bytes::from_static(b"no separator"))
            .expect_err("no key");
        assert!(err.to_string().contains("line 7"), "{err}");
    }
}
