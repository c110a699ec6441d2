//! Kafka's errors in plain words.
//!
//! librdkafka reports codes such as `UnknownTopicOrPartition` or `InvalidReplicationFactor`;
//! the user should read "unknown topic 'orders'" or "replication factor 3 is larger than
//! the 1 broker(s) in the cluster" instead.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::error::BrokerError;

/// What a failed call was about, so the message can name it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Subject<'a> {
    Topic(&'a str),
    Group(&'a str),
    None,
}

/// Maps a Kafka error code to the broker layer's error.
pub(crate) fn from_code(code: RDKafkaErrorCode, subject: Subject<'_>) -> BrokerError {
    use RDKafkaErrorCode as C;
    let topic = match subject {
        Subject::Topic(t) => t,
        _ => "",
    };
    match code {
        C::IllegalGeneration | C::RebalanceInProgress | C::UnknownMemberId => {
            BrokerError::Rebalanced(code.to_string())
        }
        C::TopicAlreadyExists => BrokerError::TopicExists(topic.to_string()),
        C::UnknownTopicOrPartition | C::UnknownTopic if !topic.is_empty() => {
            BrokerError::UnknownTopic(topic.to_string())
        }
        C::UnknownPartition => {
            BrokerError::Invalid(format!("topic '{topic}' has no such partition"))
        }
        C::InvalidTopic => BrokerError::Invalid(format!(
            "'{topic}' is not a valid topic name (use letters, digits, '.', '_' and '-', at most 249)"
        )),
        C::InvalidPartitions => {
            BrokerError::Invalid("the number of partitions must be at least 1".to_string())
        }
        C::InvalidConfig => BrokerError::Invalid(format!(
            "the broker refused a config of topic '{topic}' (unknown name or bad value)"
        )),
        C::PolicyViolation => BrokerError::Invalid(format!(
            "the broker's create-topic policy refused topic '{topic}'"
        )),
        C::MessageSizeTooLarge => BrokerError::Invalid(format!(
            "a record is larger than topic '{topic}' accepts (raise the topic's max.message.bytes)"
        )),
        C::TopicAuthorizationFailed => BrokerError::Unauthorized(format!(
            "not authorized to access topic '{topic}': the principal of your --command-config \
             lacks an ACL for it"
        )),
        C::GroupAuthorizationFailed => BrokerError::Unauthorized(format!(
            "not authorized to use consumer group '{}': the principal lacks a group ACL",
            match subject {
                Subject::Group(g) => g,
                _ => "",
            }
        )),
        C::ClusterAuthorizationFailed => BrokerError::Unauthorized(
            "not authorized for this cluster operation: the principal lacks a cluster ACL"
                .to_string(),
        ),
        C::SaslAuthenticationFailed | C::Authentication => BrokerError::Unauthorized(
            "authentication failed: check sasl.mechanism, sasl.username and sasl.password"
                .to_string(),
        ),
        C::RequestTimedOut | C::OperationTimedOut | C::MessageTimedOut => {
            BrokerError::Transient(format!("the broker did not answer in time ({code})"))
        }
        C::BrokerTransportFailure
        | C::AllBrokersDown
        | C::NotLeaderForPartition
        | C::LeaderNotAvailable
        | C::NotEnoughReplicas
        | C::NotEnoughReplicasAfterAppend
        | C::NotCoordinator
        | C::CoordinatorLoadInProgress
        | C::CoordinatorNotAvailable
        | C::NetworkException => BrokerError::Transient(code.to_string()),
        other => BrokerError::KafkaCode(other),
    }
}

/// Maps an rdkafka error; the code is used where there is one.
pub(crate) fn from_kafka(e: &KafkaError, subject: Subject<'_>) -> BrokerError {
    match e.rdkafka_error_code() {
        Some(code) => from_code(code, subject),
        None => BrokerError::Kafka(e.clone()),
    }
}

/// Group coordinator errors that clear up on their own (the coordinator is moving or
/// still loading its offsets); worth retrying within the caller's bound.
pub(crate) fn is_coordinator_transient(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::WaitingForCoordinator
        )
    )
}
