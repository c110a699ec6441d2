//! The broker layer's one error type.
//!
//! Each variant is a kind a caller can match on (`UnknownTopic`, `Rebalanced`,
//! `Timeout`, `Store`, `Kafka`, …). A failure that comes from below (the store, the
//! coordinator, the operating system, librdkafka) keeps that error as its `source`,
//! with what was being done as the variant's context. The message says both, so it
//! reads whole wherever it is printed (a log line, `/api`); a printer that walks the
//! chain as well (the CLI's) leaves out a cause the message already holds.

use std::sync::Arc;

use millrace_server::ServerError;
use millrace_server::group::GroupError;
use millrace_store::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    /// The request cannot be met as asked (a partition that does not exist, a commit
    /// without a group, a setting the client refuses): asking again is no use.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The backend does not offer this (consumer groups on a backend without them).
    #[error("invalid request: {what} are not supported by the {backend} backend")]
    Unsupported {
        backend: &'static str,
        what: &'static str,
    },
    #[error("cannot reach the broker at {bootstrap} within {timeout_ms} ms: {reason}")]
    Unreachable {
        bootstrap: String,
        timeout_ms: u64,
        reason: String,
    },
    /// The address recorded in a data directory is served by something other than the
    /// directory's store (another broker, a holder of another directory).
    #[error("{addr} does not serve the store in {}", dir.display())]
    NotTheStore {
        addr: String,
        dir: std::path::PathBuf,
    },
    /// The consumer group moved on (a rebalance) and the request was for a generation
    /// that is gone: the partitions' records are delivered again to their new owner.
    #[error("the consumer group rebalanced: {0}")]
    Rebalanced(String),
    /// The broker is unreachable or busy for now (timeouts, lost connections, a
    /// leader moving): retrying later is safe.
    #[error("the broker is not available right now: {0}")]
    Transient(String),
    #[error("consumer group '{0}' does not exist")]
    UnknownGroup(String),
    /// The group has live members: its offsets cannot be reset nor the group deleted
    /// until they leave.
    #[error("consumer group '{group}' has live members (state {state})")]
    GroupNotEmpty {
        group: String,
        state: crate::api::GroupState,
    },
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The broker refused the client's credentials or the principal's rights (an ACL).
    #[error("kafka: {0}")]
    Unauthorized(String),
    /// The consumer or producer asked of was closed, or left its group.
    #[error("{0}")]
    Closed(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store's error, shared by the coordinator among the requests it answers.
    #[error(transparent)]
    SharedStore(Arc<StoreError>),
    /// The group coordinator of the store refused a request of a group.
    #[error("consumer group '{group}': {source}")]
    Group {
        group: String,
        #[source]
        source: GroupError,
    },
    /// Sharing or serving the store failed.
    #[error("{doing}: {source}")]
    Server {
        doing: String,
        #[source]
        source: ServerError,
    },
    /// A file or a socket of this process failed.
    #[error("{doing}: {source}")]
    Io {
        doing: String,
        #[source]
        source: std::io::Error,
    },
    /// The blocking task doing the work panicked or was cancelled.
    #[error("{doing} failed: {source}")]
    Task {
        doing: String,
        #[source]
        source: tokio::task::JoinError,
    },
    /// Kafka's error with no kind above: librdkafka's own.
    #[cfg(feature = "kafka")]
    #[error("kafka: {0}")]
    Kafka(#[source] rdkafka::error::KafkaError),
    /// An error code of a Kafka broker with no kind above.
    #[cfg(feature = "kafka")]
    #[error("kafka: {0}")]
    KafkaCode(#[source] rdkafka::types::RDKafkaErrorCode),
    /// librdkafka failed without an error code (a handle it did not make, an answer
    /// of another shape).
    #[error("kafka: {0}")]
    KafkaClient(String),
}

impl BrokerError {
    /// Whether the same request may succeed if retried after a pause. Produce and commit
    /// are safe to retry under at-least-once: a retry can only duplicate, never lose.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BrokerError::Transient(_) | BrokerError::Timeout(_) | BrokerError::Unreachable { .. }
        )
    }

    pub(crate) fn io(doing: impl Into<String>, source: std::io::Error) -> BrokerError {
        BrokerError::Io {
            doing: doing.into(),
            source,
        }
    }

    pub(crate) fn task(doing: impl Into<String>, source: tokio::task::JoinError) -> BrokerError {
        BrokerError::Task {
            doing: doing.into(),
            source,
        }
    }

    pub(crate) fn server(doing: impl Into<String>, source: ServerError) -> BrokerError {
        BrokerError::Server {
            doing: doing.into(),
            source,
        }
    }

    /// The store's error, unwrapped where nothing else shares it.
    pub(crate) fn store(shared: Arc<StoreError>) -> BrokerError {
        match Arc::try_unwrap(shared) {
            Ok(s) => BrokerError::Store(s),
            Err(shared) => BrokerError::SharedStore(shared),
        }
    }
}
