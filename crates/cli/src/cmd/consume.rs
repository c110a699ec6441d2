//! `millrace consume`: values one per line, like kafka-console-consumer; exits after
//! --max-messages, after --timeout-ms without a record, or on Ctrl-C, and then says
//! "Processed a total of N messages" on standard error (not when its reader has gone).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use millrace_broker::{Broker, ConsumerConfig, OffsetReset, Seek, TopicPartition};

use millrace_pipeline::diagnostics::count;

use crate::args::{ConsumeArgs, parse_pair};
use crate::report::note;

struct Format {
    print_key: bool,
    print_partition: bool,
    print_offset: bool,
    print_headers: bool,
    separator: String,
}

pub async fn run(broker: &dyn Broker, args: ConsumeArgs) -> anyhow::Result<()> {
    let mut fmt = Format {
        print_key: false,
        print_partition: false,
        print_offset: false,
        print_headers: false,
        separator: "\t".to_string(),
    };
    for p in &args.property {
        let (k, v) = parse_pair(p)?;
        let on = v.eq_ignore_ascii_case("true");
        match k.as_str() {
            "print.key" => fmt.print_key = on,
            "print.partition" => fmt.print_partition = on,
            "print.offset" => fmt.print_offset = on,
            "print.headers" => fmt.print_headers = on,
            "key.separator" => fmt.separator = v,
            "print.value" | "print.timestamp" => {}
            other => {
                return Err(super::unknown_property(
                    other,
                    &[
                        "print.key",
                        "print.partition",
                        "print.offset",
                        "print.headers",
                        "key.separator",
                    ],
                ));
            }
        }
    }
    // Said plainly (with a hint) before a consumer is made for a topic that is not there.
    let topic = super::existing_topic(broker, &args.topic).await?;
    super::check_partition(&topic, args.partition)?;
    let mut config = ConsumerConfig::new(vec![args.topic.clone()]);
    config.group = args.group.clone();
    config.offset_reset = if args.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    let mut consumer = broker.consumer(config).await?;
    if let Some(p) = args.partition {
        let tp = TopicPartition::new(args.topic.clone(), p);
        if !consumer.assignment().contains(&tp) {
            anyhow::bail!(
                "partition {p} of '{}' is not available to this consumer",
                args.topic
            );
        }
        let to = match args.offset {
            Some(o) => Seek::Offset(o),
            None if args.from_beginning => Seek::Beginning,
            None => Seek::End,
        };
        consumer.seek(&tp, to).await?;
    }

    let max = args.max_messages.unwrap_or(u64::MAX);
    let idle = args.timeout_ms.map(Duration::from_millis);
    let mut total = 0u64;
    let mut last = Instant::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let result: anyhow::Result<()> = async {
        while total < max {
            let wait = match idle {
                Some(d) => d.saturating_sub(last.elapsed()).min(Duration::from_millis(500)),
                None => Duration::from_millis(500),
            };
            let recs = tokio::select! {
                r = consumer.poll(usize::try_from(max - total).unwrap_or(usize::MAX).min(10_000), wait) => r?,
                _ = &mut ctrl_c => break,
            };
            if recs.is_empty() {
                if idle.is_some_and(|d| last.elapsed() >= d) {
                    break;
                }
                continue;
            }
            last = Instant::now();
            let mut commit: BTreeMap<TopicPartition, i64> = BTreeMap::new();
            let mut out = crate::report::stdout();
            for r in recs {
                if args.partition.is_some_and(|p| p != r.partition) {
                    continue;
                }
                if total >= max {
                    break;
                }
                if fmt.print_partition {
                    write!(out, "Partition:{}{}", r.partition, fmt.separator)?;
                }
                if fmt.print_offset {
                    write!(out, "Offset:{}{}", r.offset, fmt.separator)?;
                }
                if fmt.print_headers {
                    let hs: Vec<String> = r
                        .headers
                        .iter()
                        .map(|h| format!("{}:{}", h.key, String::from_utf8_lossy(&h.value)))
                        .collect();
                    let hs = if hs.is_empty() { "NO_HEADERS".to_string() } else { hs.join(",") };
                    write!(out, "{hs}{}", fmt.separator)?;
                }
                if fmt.print_key {
                    match &r.key {
                        Some(k) => out.write_all(k)?,
                        None => out.write_all(b"null")?,
                    }
                    out.write_all(fmt.separator.as_bytes())?;
                }
                out.write_all(&r.value)?;
                out.write_all(b"\n")?;
                total += 1;
                commit.insert(TopicPartition::new(r.topic.clone(), r.partition), r.offset + 1);
            }
            out.flush()?;
            drop(out);
            // Commit only what has been written out: a crash re-prints, never skips.
            if args.group.is_some() && !commit.is_empty() {
                let offsets: Vec<(TopicPartition, i64)> = commit.into_iter().collect();
                consumer.commit(&offsets).await?;
            }
        }
        Ok(())
    }
    .await;
    let _ = consumer.close().await;
    // A reader that has gone (`| head`) wants no report.
    if !result.as_ref().is_err_and(crate::report::is_broken_pipe) {
        note!("Processed a total of {}", count(total, "message"));
    }
    result
}
