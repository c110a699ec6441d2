//! The coordinator's one error type: each variant is one of Kafka's error codes, so a
//! handler answers with [`GroupError::code`] and an in-process member matches on it as a
//! Kafka client matches on the code.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use millrace_store::StoreError;

/// Cloned when one failure answers several partitions or members; the store's error is
/// shared for that.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    #[error("the group id is empty")]
    InvalidGroupId,

    /// The coordinator is shutting down, or the group was deleted while the request
    /// waited: the client finds the coordinator again and rejoins.
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,

    #[error("the group has no member with this id")]
    UnknownMemberId,

    #[error("the generation is not the group's current one")]
    IllegalGeneration,

    #[error("the group is rebalancing: rejoin")]
    RebalanceInProgress,

    /// The member's protocol type differs from the group's, it offers no protocol that
    /// every member supports, or it offers none at all.
    #[error("the member's protocols are incompatible with the group's")]
    InconsistentGroupProtocol,

    #[error("session timeout {given_ms} ms is outside {min_ms}..={max_ms} ms")]
    InvalidSessionTimeout {
        given_ms: i64,
        min_ms: u128,
        max_ms: u128,
    },

    /// A first JoinGroup (v4 and later) without a member id: the client joins again with
    /// the id it is given here.
    #[error("join again with member id {0}")]
    MemberIdRequired(String),

    /// Another member holds this `group.instance.id` now.
    #[error("another member has the group instance id")]
    FencedInstanceId,

    #[error("the group does not exist")]
    GroupIdNotFound,

    #[error("the group has members")]
    NonEmptyGroup,

    #[error("a member of the group subscribes to the topic")]
    GroupSubscribedToTopic,

    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,

    #[error("commit metadata of {len} bytes is over the limit of {limit}")]
    OffsetMetadataTooLarge { len: usize, limit: usize },

    /// A negative offset: Kafka's consumers never commit one, and the store keeps
    /// offsets as unsigned positions.
    #[error("offset {0} is negative")]
    OffsetOutOfRange(i64),

    #[error("the store failed: {0}")]
    Store(#[source] Arc<StoreError>),
}

impl GroupError {
    /// Kafka's error code for this error.
    pub fn code(&self) -> i16 {
        self.kafka().code()
    }

    /// Kafka's error for this error.
    pub fn kafka(&self) -> ResponseError {
        use GroupError as E;
        use ResponseError as K;
        match self {
            E::InvalidGroupId => K::InvalidGroupId,
            E::CoordinatorNotAvailable => K::CoordinatorNotAvailable,
            E::UnknownMemberId => K::UnknownMemberId,
            E::IllegalGeneration => K::IllegalGeneration,
            E::RebalanceInProgress => K::RebalanceInProgress,
            E::InconsistentGroupProtocol => K::InconsistentGroupProtocol,
            E::InvalidSessionTimeout { .. } => K::InvalidSessionTimeout,
            E::MemberIdRequired(_) => K::MemberIdRequired,
            E::FencedInstanceId => K::FencedInstanceId,
            E::GroupIdNotFound => K::GroupIdNotFound,
            E::NonEmptyGroup => K::NonEmptyGroup,
            E::GroupSubscribedToTopic => K::GroupSubscribedToTopic,
            E::UnknownTopicOrPartition => K::UnknownTopicOrPartition,
            E::OffsetMetadataTooLarge { .. } => K::OffsetMetadataTooLarge,
            E::OffsetOutOfRange(_) => K::OffsetOutOfRange,
            E::Store(e) => match **e {
                StoreError::UnknownTopic(_) | StoreError::UnknownPartition { .. } => {
                    K::UnknownTopicOrPartition
                }
                // The disk failed (or the store is poisoned): Kafka's storage error says
                // so to the client instead of sending it to retry elsewhere.
                _ => K::KafkaStorageError,
            },
        }
    }
}

impl From<StoreError> for GroupError {
    fn from(e: StoreError) -> Self {
        GroupError::Store(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_kafkas() {
        assert_eq!(GroupError::UnknownMemberId.code(), 25);
        assert_eq!(GroupError::IllegalGeneration.code(), 22);
        assert_eq!(GroupError::RebalanceInProgress.code(), 27);
        assert_eq!(GroupError::MemberIdRequired("m".into()).code(), 79);
        assert_eq!(GroupError::FencedInstanceId.code(), 82);
        assert_eq!(GroupError::NonEmptyGroup.code(), 68);
        assert_eq!(GroupError::GroupIdNotFound.code(), 69);
        assert_eq!(GroupError::GroupSubscribedToTopic.code(), 86);
        assert_eq!(
            GroupError::from(StoreError::UnknownTopic("t".into())).code(),
            3
        );
        assert_eq!(
            GroupError::from(StoreError::Poisoned("x".into())).code(),
            56
        );
    }
}
