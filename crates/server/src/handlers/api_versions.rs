//! ApiVersions: the APIs this server implements, each with the versions it was tested
//! with. Versions that need topic ids (Fetch 13+, Produce 13+, OffsetCommit and
//! OffsetFetch 10+) are left out: topics here have names only. Every minimum is at or
//! below what Kafka 4 clients require (Produce 3, Fetch 4, ListOffsets 1, ...).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use super::Ctx;

/// (API, lowest version, highest version) served.
const SERVED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// Every API served: this module's, then the group coordinator's.
fn served() -> impl Iterator<Item = &'static (ApiKey, i16, i16)> {
    SERVED.iter().chain(crate::group::handlers::SERVED)
}

/// The versions of `key` this server serves, if any.
pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    served()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| (min, max))
}

/// Every API served, as ApiVersions lists it.
pub fn advertised(_ctx: &Ctx) -> Vec<ApiVersion> {
    served()
        .map(|&(k, min, max)| {
            ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

pub fn handle(ctx: &Ctx) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(advertised(ctx))
}
