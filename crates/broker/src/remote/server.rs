//! Serves a `Broker` on the data directory's Unix socket.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

use super::protocol::*;
use crate::api::*;

/// Serves until `shutdown` resolves. The caller holds the store's lock, so a socket
/// file left by a crashed holder is stale and is replaced.
pub async fn serve(
    broker: Arc<dyn Broker>,
    data_dir: &Path,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let path = data_dir.join(super::SOCKET_NAME);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let broker = broker.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(broker, stream).await {
                        tracing::debug!("local endpoint connection ended: {e}");
                    }
                });
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn connection(broker: Arc<dyn Broker>, mut stream: UnixStream) -> std::io::Result<()> {
    // At most one consumer per connection; dropping it (connection closed) leaves the group.
    let mut consumer: Option<Box<dyn Consumer>> = None;
    while let Some(req) = read_frame::<_, Request>(&mut stream).await? {
        let resp = match handle(broker.as_ref(), &mut consumer, req).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
        write_frame(&mut stream, &resp).await?;
    }
    if let Some(c) = consumer {
        let _ = c.close().await;
    }
    Ok(())
}

fn no_consumer() -> crate::BrokerError {
    crate::BrokerError::Invalid("no consumer open on this connection".into())
}

fn pairs(tps: Vec<TopicPartition>) -> Vec<(String, i32)> {
    tps.into_iter()
        .map(|tp| (tp.topic.to_string(), tp.partition))
        .collect()
}

async fn handle(
    broker: &dyn Broker,
    consumer: &mut Option<Box<dyn Consumer>>,
    req: Request,
) -> Result<Response> {
    Ok(match req {
        Request::CreateTopic {
            name,
            partitions,
            replication_factor,
            config,
        } => {
            broker
                .create_topic(&NewTopic {
                    name,
                    partitions,
                    replication_factor,
                    config,
                })
                .await?;
            Response::Ok
        }
        Request::ListTopics => Response::Topics(broker.list_topics().await?),
        Request::DescribeTopic(t) => {
            let d = broker.describe_topic(&t).await?;
            Response::Description {
                name: d.name,
                partitions: d
                    .partitions
                    .iter()
                    .map(|p| (p.partition, p.start_offset, p.end_offset))
                    .collect(),
                config: d.config,
            }
        }
        Request::DeleteTopic(t) => {
            broker.delete_topic(&t).await?;
            Response::Ok
        }
        Request::Produce { topic, records } => {
            let recs: Vec<ProduceRecord> =
                records.into_iter().map(WireRecord::into_produce).collect();
            let d = broker.produce(&topic, &recs).await?;
            Response::Delivered(d.into_iter().map(|d| (d.partition, d.offset)).collect())
        }
        Request::Committed { group, topic } => {
            Response::Committed(broker.committed(&group, &topic).await?)
        }
        Request::OpenConsumer {
            group,
            topics,
            earliest,
        } => {
            let mut cfg = ConsumerConfig::new(topics);
            cfg.group = group;
            cfg.offset_reset = if earliest {
                OffsetReset::Earliest
            } else {
                OffsetReset::Latest
            };
            if let Some(old) = consumer.take() {
                let _ = old.close().await;
            }
            let c = broker.consumer(cfg).await?;
            let assignment = pairs(c.assignment());
            *consumer = Some(c);
            Response::Records {
                records: Vec::new(),
                assignment,
            }
        }
        Request::Poll {
            max_records,
            timeout_ms,
        } => {
            let c = consumer.as_mut().ok_or_else(no_consumer)?;
            // Cap the wait so a vanished client is noticed.
            let timeout = Duration::from_millis(timeout_ms.min(5_000));
            let recs = c.poll(max_records.clamp(1, 10_000), timeout).await?;
            Response::Records {
                records: recs.into_iter().map(WireRecord::from_consumed).collect(),
                assignment: pairs(c.assignment()),
            }
        }
        Request::TakeRebalances => {
            let c = consumer.as_mut().ok_or_else(no_consumer)?;
            Response::Rebalances(
                c.take_rebalances()
                    .into_iter()
                    .map(|r| match r {
                        Rebalance::Assigned(tps) => (true, pairs(tps)),
                        Rebalance::Revoked(tps) => (false, pairs(tps)),
                    })
                    .collect(),
            )
        }
        Request::Commit(offsets) => {
            let c = consumer.as_mut().ok_or_else(no_consumer)?;
            let offsets: Vec<(TopicPartition, i64)> = offsets
                .into_iter()
                .map(|(t, p, o)| (TopicPartition::new(t, p), o))
                .collect();
            c.commit(&offsets).await?;
            Response::Ok
        }
        Request::Seek {
            topic,
            partition,
            to,
        } => {
            let c = consumer.as_mut().ok_or_else(no_consumer)?;
            let to = match to {
                WireSeek::Beginning => Seek::Beginning,
                WireSeek::End => Seek::End,
                WireSeek::Offset(o) => Seek::Offset(o),
                WireSeek::Timestamp(t) => Seek::Timestamp(t),
            };
            c.seek(&TopicPartition::new(topic, partition), to).await?;
            Response::Ok
        }
    })
}
