//! The broker layer's one error type.

use millrace_store::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("invalid request: {0}")]
    Invalid(String),
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
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("{0}")]
    Other(String),
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
}
