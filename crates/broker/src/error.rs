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
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("{0}")]
    Other(String),
}
