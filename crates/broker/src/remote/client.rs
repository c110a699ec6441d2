//! `RemoteBroker`: the broker interface over the local endpoint of the process that
//! holds the store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::UnixStream;
use tokio::sync::Mutex;

use super::protocol::*;
use crate::api::*;
use crate::error::BrokerError;

pub struct RemoteBroker {
    path: PathBuf,
    conn: Mutex<UnixStream>,
}

async fn open(path: &Path) -> Result<UnixStream> {
    tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(path))
        .await
        .map_err(|_| BrokerError::Timeout(5_000))?
        .map_err(|e| BrokerError::Other(format!("cannot connect to {}: {e}", path.display())))
}

async fn call(conn: &mut UnixStream, req: &Request) -> Result<Response> {
    let io = |e: std::io::Error| BrokerError::Other(format!("local endpoint: {e}"));
    write_frame(conn, req).await.map_err(io)?;
    match read_frame::<_, Response>(conn).await.map_err(io)? {
        Some(Response::Error { kind, message }) => Err(into_error(kind, message)),
        Some(r) => Ok(r),
        None => Err(BrokerError::Other(
            "the process holding the store closed the connection".into(),
        )),
    }
}

fn unexpected(r: Response) -> BrokerError {
    BrokerError::Other(format!(
        "unexpected response from the local endpoint: {r:?}"
    ))
}

impl RemoteBroker {
    /// Connects to the endpoint served by the process holding `data_dir`.
    pub async fn connect(data_dir: &Path) -> Result<RemoteBroker> {
        let path = data_dir.join(super::SOCKET_NAME);
        let conn = open(&path).await?;
        Ok(RemoteBroker {
            path,
            conn: Mutex::new(conn),
        })
    }

    async fn call(&self, req: Request) -> Result<Response> {
        let mut conn = self.conn.lock().await;
        call(&mut conn, &req).await
    }
}

#[async_trait]
impl Broker for RemoteBroker {
    fn backend(&self) -> &'static str {
        "embedded (through the running pipeline)"
    }

    async fn create_topic(&self, t: &NewTopic) -> Result<()> {
        match self
            .call(Request::CreateTopic {
                name: t.name.clone(),
                partitions: t.partitions,
                replication_factor: t.replication_factor,
                config: t.config.clone(),
            })
            .await?
        {
            Response::Ok => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    async fn list_topics(&self) -> Result<Vec<String>> {
        match self.call(Request::ListTopics).await? {
            Response::Topics(t) => Ok(t),
            r => Err(unexpected(r)),
        }
    }

    async fn describe_topic(&self, topic: &str) -> Result<TopicDescription> {
        match self.call(Request::DescribeTopic(topic.to_string())).await? {
            Response::Description {
                name,
                partitions,
                config,
            } => Ok(TopicDescription {
                name,
                partitions: partitions
                    .into_iter()
                    .map(|(partition, start_offset, end_offset)| PartitionInfo {
                        partition,
                        start_offset,
                        end_offset,
                        leader: Some(0),
                        replicas: vec![0],
                    })
                    .collect(),
                config,
            }),
            r => Err(unexpected(r)),
        }
    }

    async fn delete_topic(&self, topic: &str) -> Result<()> {
        match self.call(Request::DeleteTopic(topic.to_string())).await? {
            Response::Ok => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    async fn produce(&self, topic: &str, records: &[ProduceRecord]) -> Result<Vec<Delivered>> {
        let records = records.iter().map(WireRecord::from_produce).collect();
        match self
            .call(Request::Produce {
                topic: topic.to_string(),
                records,
            })
            .await?
        {
            Response::Delivered(d) => Ok(d
                .into_iter()
                .map(|(partition, offset)| Delivered { partition, offset })
                .collect()),
            r => Err(unexpected(r)),
        }
    }

    async fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        let mut conn = open(&self.path).await?;
        let r = call(
            &mut conn,
            &Request::OpenConsumer {
                group: config.group.clone(),
                topics: config.topics.clone(),
                earliest: config.offset_reset == OffsetReset::Earliest,
            },
        )
        .await?;
        let assignment = match r {
            Response::Records { assignment, .. } => to_tps(assignment),
            r => return Err(unexpected(r)),
        };
        Ok(Box::new(RemoteConsumer { conn, assignment }))
    }

    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<(i32, Option<i64>)>> {
        match self
            .call(Request::Committed {
                group: group.to_string(),
                topic: topic.to_string(),
            })
            .await?
        {
            Response::Committed(c) => Ok(c),
            r => Err(unexpected(r)),
        }
    }
}

fn to_tps(v: Vec<(String, i32)>) -> Vec<TopicPartition> {
    v.into_iter()
        .map(|(t, p)| TopicPartition::new(t, p))
        .collect()
}

struct RemoteConsumer {
    conn: UnixStream,
    assignment: Vec<TopicPartition>,
}

#[async_trait]
impl Consumer for RemoteConsumer {
    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<ConsumedRecord>> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        match call(
            &mut self.conn,
            &Request::Poll {
                max_records,
                timeout_ms,
            },
        )
        .await?
        {
            Response::Records {
                records,
                assignment,
            } => {
                self.assignment = to_tps(assignment);
                Ok(records.into_iter().map(WireRecord::into_consumed).collect())
            }
            r => Err(unexpected(r)),
        }
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment.clone()
    }

    fn take_rebalances(&mut self) -> Vec<Rebalance> {
        // Rebalances are reflected in the assignment each poll returns; the remote
        // consumer is for CLI use, which does not hold work across polls.
        Vec::new()
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let offsets = offsets
            .iter()
            .map(|(tp, o)| (tp.topic.to_string(), tp.partition, *o))
            .collect();
        match call(&mut self.conn, &Request::Commit(offsets)).await? {
            Response::Ok => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    async fn seek(&mut self, tp: &TopicPartition, to: Seek) -> Result<()> {
        let to = match to {
            Seek::Beginning => WireSeek::Beginning,
            Seek::End => WireSeek::End,
            Seek::Offset(o) => WireSeek::Offset(o),
            Seek::Timestamp(t) => WireSeek::Timestamp(t),
        };
        match call(
            &mut self.conn,
            &Request::Seek {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                to,
            },
        )
        .await?
        {
            Response::Ok => Ok(()),
            r => Err(unexpected(r)),
        }
    }

    async fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
