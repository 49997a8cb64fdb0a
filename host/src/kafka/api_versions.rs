//! ApiVersions: the APIs and versions this broker implements — each the
//! intersection of what `kafka-protocol` can (de)code and what the
//! handlers here understand.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

/// APIs served, with the version range implemented.
const SERVED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
];

/// The version range served for `key`, if it is served at all.
pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    SERVED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| {
            let lib = key.valid_versions();
            ((*min).max(lib.min), (*max).min(lib.max))
        })
}

fn api_keys() -> Vec<ApiVersion> {
    SERVED
        .iter()
        .filter_map(|(key, _, _)| {
            let (min, max) = supported(*key)?;
            Some(
                ApiVersion::default()
                    .with_api_key(*key as i16)
                    .with_min_version(min)
                    .with_max_version(max),
            )
        })
        .collect()
}

pub fn handle(_request: &ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// The answer to an ApiVersions request of a version newer than ours
/// (encoded as v0, as Kafka does): the error and the versions we have.
pub fn unsupported() -> kafka_protocol::messages::ResponseKind {
    kafka_protocol::messages::ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(api_keys()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ranges_are_within_the_codec() {
        for (key, _, _) in SERVED {
            let (min, max) = supported(*key).unwrap();
            let lib = key.valid_versions();
            assert!(lib.min <= min && min <= max && max <= lib.max, "{key:?}");
        }
        assert_eq!(supported(ApiKey::JoinGroup), None);
    }
}
