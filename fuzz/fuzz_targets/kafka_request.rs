//! The Kafka server's request decoder on arbitrary bytes (one frame, without its
//! length): a request header and body decode or are refused, never a panic and never
//! an allocation larger than the input allows; a produce request's record batches go
//! through the batch decoder too (CRC, bounded decompression, records).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use millrace_server::batches::decode_produced;
use millrace_server::dispatch::decode_request;

fuzz_target!(|data: &[u8]| {
    let Ok((_header, request)) = decode_request(Bytes::copy_from_slice(data)) else {
        return;
    };
    if let kafka_protocol::messages::RequestKind::Produce(p) = request {
        for t in p.topic_data {
            for part in t.partition_data {
                if let Some(records) = part.records {
                    let _ = decode_produced(records);
                }
            }
        }
    }
});
