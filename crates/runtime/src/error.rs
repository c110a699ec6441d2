//! The runtime's one error type.

use millrace_broker::BrokerError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("topic '{topic}' exists with {actual} partitions but the pipeline declares {declared}")]
    PartitionMismatch {
        topic: String,
        declared: i32,
        actual: usize,
    },
    #[error("stage '{stage}': {message}")]
    Stage { stage: String, message: String },
    #[error("stage '{stage}' failed: {source}")]
    StageFailed {
        stage: String,
        #[source]
        source: Box<RuntimeError>,
    },
}
