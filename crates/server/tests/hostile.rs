//! Bytes no client should send: every one closes its own connection (or is answered
//! with an error in the right shape), and the server goes on serving the next
//! connection.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use bytes::{BufMut, BytesMut};
use common::{Raw, Server};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeAclsRequest, DescribeAclsResponse,
    MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::Decodable;

/// The server still answers a well-formed request on a new connection.
fn still_serves(server: &Server) {
    let mut raw = Raw::connect(server.addr);
    let r: ApiVersionsResponse = raw.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(r.error_code, 0);
    assert!(
        r.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::Produce as i16)
    );
}

#[test]
fn truncated_oversized_and_garbage_frames_close_only_their_connection() {
    let server = Server::start();
    // A length that claims more than socket.request.max.bytes.
    let mut raw = Raw::connect(server.addr);
    raw.stream.write_all(&(200i32 << 20).to_be_bytes()).unwrap();
    assert!(raw.closed(), "an oversized frame closes the connection");
    // A negative length.
    let mut raw = Raw::connect(server.addr);
    raw.stream.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert!(raw.closed());
    // A frame cut short: the length promises more than is sent before the close.
    let mut raw = Raw::connect(server.addr);
    raw.stream.write_all(&100i32.to_be_bytes()).unwrap();
    raw.stream.write_all(&[0, 18, 0, 3]).unwrap();
    raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(raw.closed());
    // Too short for a request header.
    let mut raw = Raw::connect(server.addr);
    raw.send_frame(&[0, 3]);
    assert!(raw.closed());
    // A Metadata request whose topic array claims two billion topics.
    let mut raw = Raw::connect(server.addr);
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i16(1);
    b.put_i32(7);
    b.put_i16(-1);
    b.put_i32(i32::MAX);
    raw.send_frame(&b);
    assert!(
        raw.closed(),
        "an impossible array length closes the connection"
    );
    // Seeded garbage after a valid header front, for every API key the server serves.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for key in [0i16, 1, 2, 3, 10, 18, 19, 20, 22, 32, 36, 44, 60] {
        for version in 0..4i16 {
            let mut raw = Raw::connect(server.addr);
            let mut b = BytesMut::new();
            b.put_i16(key);
            b.put_i16(version);
            b.put_i32(1);
            for _ in 0..64 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                b.put_u8(u8::try_from(seed & 0xff).unwrap());
            }
            raw.send_frame(&b);
            // Either an answer (garbage that happens to decode) or a close; never a hang.
            let _ = raw.read_frame();
        }
    }
    still_serves(&server);
}

#[test]
fn unknown_apis_and_too_new_versions_are_answered_or_closed_never_hung() {
    let server = Server::start();
    // An API key no Kafka defines: there is no response shape; the connection closes.
    let mut raw = Raw::connect(server.addr);
    let mut b = BytesMut::new();
    b.put_i16(999);
    b.put_i16(0);
    b.put_i32(1);
    b.put_i16(-1);
    raw.send_frame(&b);
    assert!(raw.closed());

    // ApiVersions newer than the server's: answered in v0 with UNSUPPORTED_VERSION and
    // the versions the server has, as Kafka does.
    let mut raw = Raw::connect(server.addr);
    let mut b = BytesMut::new();
    b.put_i16(ApiKey::ApiVersions as i16);
    b.put_i16(77);
    b.put_i32(42);
    b.put_i16(-1);
    raw.send_frame(&b);
    let mut frame = raw.read_frame().expect("an answer");
    assert_eq!(&frame[..4], &42i32.to_be_bytes());
    let _ = bytes::Buf::get_i32(&mut frame);
    let r = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
    assert_eq!(r.error_code, ResponseError::UnsupportedVersion.code());
    let metadata = r
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Metadata as i16)
        .unwrap();
    assert!(metadata.max_version >= 9);

    // An API the server does not implement, at a version the protocol has: the
    // response's own shape, with UNSUPPORTED_VERSION.
    let r: DescribeAclsResponse =
        raw.call(ApiKey::DescribeAcls, 1, &DescribeAclsRequest::default());
    assert_eq!(r.error_code, ResponseError::UnsupportedVersion.code());

    // A served API at a version past the protocol's: closed (nothing can read it).
    let mut b = BytesMut::new();
    b.put_i16(ApiKey::Metadata as i16);
    b.put_i16(99);
    b.put_i32(3);
    b.put_i16(-1);
    raw.send_frame(&b);
    assert!(raw.closed());

    // And a well-formed Metadata on a fresh connection is answered.
    let mut raw = Raw::connect(server.addr);
    let r: MetadataResponse = raw.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert_eq!(r.brokers.len(), 1);
    assert_eq!(r.brokers[0].port, i32::from(server.addr.port()));
    still_serves(&server);
}
