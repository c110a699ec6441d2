//! UNSUPPORTED_VERSION in the shape of the response a client asked for: for an API
//! this server does not implement (or a version it does not serve) that a client sent
//! anyway. Clients normally never do — they send only what ApiVersions lists — so this
//! covers the APIs whose responses carry one top-level error code; for any other the
//! connection is closed with a log line, as Kafka closes it on a request it cannot
//! answer.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;

/// The error response to `request`, if its API's response has a top-level error code.
pub fn response(key: ApiKey, request: &RequestKind) -> Option<ResponseKind> {
    let code = ResponseError::UnsupportedVersion.code();
    macro_rules! top_level_error {
        ($($api:ident => $response:ident),* $(,)?) => {
            match (key, request) {
                $((ApiKey::$api, RequestKind::$api(_)) => {
                    Some(ResponseKind::$api($response::default().with_error_code(code)))
                })*
                _ => None,
            }
        };
    }
    top_level_error!(
        ApiVersions => ApiVersionsResponse,
        Fetch => FetchResponse,
        FindCoordinator => FindCoordinatorResponse,
        JoinGroup => JoinGroupResponse,
        SyncGroup => SyncGroupResponse,
        Heartbeat => HeartbeatResponse,
        LeaveGroup => LeaveGroupResponse,
        ListGroups => ListGroupsResponse,
        OffsetFetch => OffsetFetchResponse,
        OffsetDelete => OffsetDeleteResponse,
        InitProducerId => InitProducerIdResponse,
        SaslHandshake => SaslHandshakeResponse,
        SaslAuthenticate => SaslAuthenticateResponse,
        DescribeCluster => DescribeClusterResponse,
        AddOffsetsToTxn => AddOffsetsToTxnResponse,
        EndTxn => EndTxnResponse,
        ListTransactions => ListTransactionsResponse,
        DescribeAcls => DescribeAclsResponse,
        DescribeClientQuotas => DescribeClientQuotasResponse,
        DescribeLogDirs => DescribeLogDirsResponse,
        DescribeQuorum => DescribeQuorumResponse,
        DescribeUserScramCredentials => DescribeUserScramCredentialsResponse,
        ElectLeaders => ElectLeadersResponse,
        AlterPartitionReassignments => AlterPartitionReassignmentsResponse,
        ListPartitionReassignments => ListPartitionReassignmentsResponse,
        CreateDelegationToken => CreateDelegationTokenResponse,
        RenewDelegationToken => RenewDelegationTokenResponse,
        ExpireDelegationToken => ExpireDelegationTokenResponse,
        DescribeDelegationToken => DescribeDelegationTokenResponse,
        UpdateFeatures => UpdateFeaturesResponse,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatResponse,
        GetTelemetrySubscriptions => GetTelemetrySubscriptionsResponse,
        PushTelemetry => PushTelemetryResponse,
        ShareGroupHeartbeat => ShareGroupHeartbeatResponse,
        ShareFetch => ShareFetchResponse,
        ShareAcknowledge => ShareAcknowledgeResponse,
        ListConfigResources => ListConfigResourcesResponse,
    )
}
