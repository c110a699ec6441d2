//! One request frame to one response frame: the header and body decoded for the
//! version the client chose, the handler called, the response encoded with the
//! response header version that API and version use.
//!
//! Versions: a version this server implements is decoded and handled. A version the
//! protocol library can read but this server does not serve (an API it does not
//! implement, or a version past its range) is answered with UNSUPPORTED_VERSION in that
//! API's response shape. An ApiVersions request newer than the server's answers in v0
//! with UNSUPPORTED_VERSION and the server's versions, as Kafka does, so the client
//! retries with one it knows. What cannot be answered in any shape — an API key no
//! Kafka defines, a version the library cannot read, bytes that do not decode — closes
//! the connection with a log line (Kafka closes it too).
//!
//! kafka-protocol's decoders return errors on bad input; a panic inside one is caught
//! here too, so a hostile frame costs its connection and nothing else.

use std::panic::AssertUnwindSafe;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::ServerError;
use crate::handlers::{self, Ctx, Session, api_versions};

/// The fixed front of every request header: api key, version, correlation id.
struct Front {
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
}

/// The front of a request and its API, if Kafka defines one with that key.
fn front_and_key(frame: &[u8]) -> Result<(Front, ApiKey), ServerError> {
    let f = front(frame).ok_or_else(|| ServerError::BadRequest {
        api_key: -1,
        api_version: -1,
        reason: format!(
            "a request of {} bytes is too short for a header",
            frame.len()
        ),
    })?;
    let key = ApiKey::try_from(f.api_key).map_err(|()| ServerError::UnknownApiKey(f.api_key))?;
    Ok((f, key))
}

/// Fails for a version kafka-protocol cannot read.
fn readable(key: ApiKey, f: &Front) -> Result<(), ServerError> {
    let range = key.valid_versions();
    if f.api_version < range.min || f.api_version > range.max {
        return Err(ServerError::UnsupportedVersion {
            api_key: f.api_key,
            api_version: f.api_version,
        });
    }
    Ok(())
}

fn front(frame: &[u8]) -> Option<Front> {
    let mut b = frame.get(..8)?;
    Some(Front {
        api_key: b.get_i16(),
        api_version: b.get_i16(),
        correlation_id: b.get_i32(),
    })
}

/// Handles one request frame; `Ok(None)` when the request takes no response
/// (a produce with acks=0).
pub async fn dispatch(
    ctx: &Ctx,
    session: &mut Session,
    frame: Bytes,
) -> Result<Option<BytesMut>, ServerError> {
    let (f, key) = front_and_key(&frame)?;
    let stats = ctx.hub.stats();
    // Counted as on the wire: the frame and its 4-byte length.
    stats.request(key, frame.len() + 4);
    let ours = api_versions::supported(key);
    let served = ours.is_some_and(|(min, max)| (min..=max).contains(&f.api_version));
    if key == ApiKey::ApiVersions && ours.is_some_and(|(_, max)| f.api_version > max) {
        let r = too_new_api_versions(ctx, f.correlation_id)?;
        stats.response(key, r.len());
        return Ok(Some(r));
    }
    readable(key, &f)?;
    let (header, request) = decode(key, f.api_version, frame)?;
    if !session.may_send(key) {
        return Err(ServerError::Unauthenticated(f.api_key));
    }
    let response = if served {
        handlers::handle(ctx, session, key, &header, request).await?
    } else {
        tracing::debug!(
            api_key = f.api_key,
            version = f.api_version,
            "answering UNSUPPORTED_VERSION"
        );
        Some(handlers::unsupported::response(key, &request).ok_or(
            ServerError::UnsupportedVersion {
                api_key: f.api_key,
                api_version: f.api_version,
            },
        )?)
    };
    let encoded = response
        .map(|r| encode(key, f.api_version, f.correlation_id, &r))
        .transpose()?;
    if let Some(r) = &encoded {
        // `encode` leaves room for the length at the front: this is the whole frame.
        stats.response(key, r.len());
    }
    Ok(encoded)
}

/// Decodes a request frame (without its length): its header and body, for the API
/// and version the header names. What the fuzz target and the hostile-input tests
/// drive; a panic here is a bug they look for (the server also catches it).
pub fn decode_request(frame: Bytes) -> Result<(RequestHeader, RequestKind), ServerError> {
    let (f, key) = front_and_key(&frame)?;
    readable(key, &f)?;
    decode_body(key, f.api_version, frame).map_err(|reason| ServerError::BadRequest {
        api_key: f.api_key,
        api_version: f.api_version,
        reason,
    })
}

fn decode_body(
    key: ApiKey,
    version: i16,
    mut frame: Bytes,
) -> Result<(RequestHeader, RequestKind), String> {
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version))
        .map_err(|e| format!("{e:#}"))?;
    let body = RequestKind::decode(key, &mut frame, version).map_err(|e| format!("{e:#}"))?;
    Ok((header, body))
}

/// Decodes a request's header and body, catching a panic in the decoder.
fn decode(
    key: ApiKey,
    version: i16,
    frame: Bytes,
) -> Result<(RequestHeader, RequestKind), ServerError> {
    let bad = |reason: String| ServerError::BadRequest {
        api_key: key as i16,
        api_version: version,
        reason,
    };
    let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| decode_body(key, version, frame)));
    match decoded {
        Ok(Ok(decoded)) => Ok(decoded),
        Ok(Err(e)) => Err(bad(e)),
        Err(panic) => Err(bad(format!(
            "the decoder panicked: {}",
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default()
        ))),
    }
}

/// Frames a response: 4 bytes for the length (filled in when written), the response
/// header, the body.
pub fn encode(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<BytesMut, ServerError> {
    // A fetch response is mostly its records: sized up front, they are copied once.
    let body_size = match body {
        ResponseKind::Fetch(r) => r.compute_size(version).unwrap_or(0),
        _ => 0,
    };
    let mut buf = BytesMut::with_capacity(256 + body_size);
    buf.extend_from_slice(&[0; 4]);
    let failed = |e: anyhow::Error| {
        ServerError::Io(std::io::Error::other(format!(
            "cannot encode the response to api key {} v{version}: {e}",
            key as i16
        )))
    };
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, key.response_header_version(version))
        .map_err(failed)?;
    body.encode(&mut buf, version).map_err(failed)?;
    Ok(buf)
}

/// The answer to an ApiVersions request newer than this server's: v0, with the error
/// and the versions it has.
fn too_new_api_versions(ctx: &Ctx, correlation_id: i32) -> Result<BytesMut, ServerError> {
    let body = ApiVersionsResponse::default()
        .with_error_code(kafka_protocol::ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_versions::advertised(ctx));
    encode(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &ResponseKind::ApiVersions(body),
    )
}
