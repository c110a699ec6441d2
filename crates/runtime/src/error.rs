//! The runtime's one error type.

use millrace_broker::BrokerError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("{}", partition_mismatch(topic, *wanted, *actual, *declared))]
    PartitionMismatch {
        topic: String,
        /// The partition count the pipeline needs.
        wanted: i32,
        actual: usize,
        /// Whether the pipeline file declares the topic (else the planner derived it).
        declared: bool,
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

fn partitions(n: usize) -> String {
    if n == 1 {
        format!("{n} partition")
    } else {
        format!("{n} partitions")
    }
}

/// Says which count differs and both ways out: the pipeline's count follows the topic,
/// or the topic (and its records) goes.
fn partition_mismatch(topic: &str, wanted: i32, actual: usize, declared: bool) -> String {
    let has = partitions(actual);
    let needs = if declared {
        format!("the pipeline declares {wanted}")
    } else {
        format!(
            "the pipeline would create it with {wanted} (as many as the input of the stage that writes it)"
        )
    };
    let fix = if declared {
        format!("set its `partitions:` to {actual} in the pipeline file")
    } else {
        format!("declare it under `topics:` with `partitions: {actual}`")
    };
    format!(
        "topic '{topic}' exists with {has} but {needs}; {fix}, or delete the topic first \
         (`millrace topics delete --topic {topic}`; its records go with it)"
    )
}
