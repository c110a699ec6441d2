//! The runtime's one error type: what failed, in which stage, and (where a lower layer
//! failed) that layer's error as its `source`, so a message prints the whole chain and
//! a library user can match on the kind.

use millrace_broker::{BrokerError, TopicPartition};

use crate::exec::ExecError;

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
    /// A stage the runtime cannot build from its plan.
    #[error("stage '{stage}' cannot run")]
    Setup {
        stage: String,
        #[source]
        source: SetupError,
    },
    /// An exec stage's worker pool did not start.
    #[error("stage '{stage}': the exec workers did not start")]
    Exec {
        stage: String,
        #[source]
        source: ExecError,
    },
    /// A stored record read as stored (a forwarding stage's poll) is not what the
    /// store's format says; the stage stops rather than commit past it.
    #[error(
        "stage '{stage}': a stored record of {partition} at offset {offset} does not decode: {reason}"
    )]
    Undecodable {
        stage: String,
        partition: TopicPartition,
        offset: i64,
        reason: String,
    },
    /// Fewer records of a stored run were taken than it holds; committing the poll's
    /// offsets would pass records never written, so the stage stops.
    #[error(
        "stage '{stage}': {missed} of {of} stored records of {partition} from offset {from} did not parse"
    )]
    Unparsed {
        stage: String,
        partition: TopicPartition,
        from: i64,
        missed: usize,
        of: usize,
    },
    /// A forwarded record could not join its output batch.
    #[error("stage '{stage}': forwarding a record to {topic} partition {partition}")]
    Forward {
        stage: String,
        topic: String,
        partition: i32,
        /// Boxed: beside the stage and topic names a broker error would make every
        /// `Result` of the runtime as large as this variant.
        #[source]
        source: Box<BrokerError>,
    },
    /// An output partition the stage computed is not among the topic's partitions.
    #[error("stage '{stage}': no partition {partition} in {topic}")]
    NoPartition {
        stage: String,
        topic: String,
        partition: i32,
    },
    /// A coordinated stage's held records could not be read back from their input at
    /// the batch's end.
    #[error("stage '{stage}': held items of {partition} from offset {from} could not be read back")]
    HeldLost {
        stage: String,
        partition: TopicPartition,
        from: i64,
    },
    /// A batch was not produced because a batch before it failed to be; that batch's
    /// error is the stage's.
    #[error("stage '{stage}': not produced: an earlier batch's produce failed")]
    EarlierProduceFailed { stage: String },
    /// A stage's produce thread, or the stage task itself, ended without a result (it
    /// panicked or was cancelled).
    #[error("stage '{stage}': its {what} ended without a result")]
    Panicked {
        stage: String,
        /// Which: "produce thread" or "task".
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("stage '{stage}' failed")]
    StageFailed {
        stage: String,
        #[source]
        source: Box<RuntimeError>,
    },
}

/// Why a stage cannot be built from its plan: a plan the planner let through but the
/// runtime does not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    #[error("it writes '{topic}', which is not among its outputs")]
    NotAnOutput { topic: String },
    #[error("its shard topics are not in the order of its outputs")]
    ShardsOutOfOrder,
    #[error("a key join needs `key`")]
    KeyJoinWithoutKey,
    #[error("the runtime has no pattern '{kind}'")]
    UnknownPattern { kind: String },
    #[error(
        "'{topic}' is the pipeline's redrive topic, which `millrace dlq redrive` writes and every stage reads; give this stage's topic another name"
    )]
    RedriveTopic { topic: String },
}

impl RuntimeError {
    /// A stage's setup problem.
    pub fn setup(stage: &str, source: SetupError) -> Self {
        RuntimeError::Setup {
            stage: stage.to_string(),
            source,
        }
    }
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
