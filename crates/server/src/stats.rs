//! [`ServerStats`]: what a server counts as it serves — connections and, per API,
//! requests and the bytes of their frames both ways. Plain atomics bumped once per
//! connection and once per request, so counting costs nothing a client could notice;
//! `millrace serve --http` reports them on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use kafka_protocol::messages::ApiKey;

/// One slot per API key: Kafka's keys are small and dense (0 to under 100), so an
/// array indexed by the key needs no lock and no map.
const KEYS: usize = 128;

/// Counters of one server, shared by its connections.
#[derive(Debug)]
pub struct ServerStats {
    connections_open: AtomicU64,
    connections_accepted: AtomicU64,
    apis: Box<[ApiCounters; KEYS]>,
}

#[derive(Debug, Default)]
struct ApiCounters {
    requests: AtomicU64,
    request_bytes: AtomicU64,
    response_bytes: AtomicU64,
}

/// One API's counts, as [`ServerStats::apis`] reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiCounts {
    pub key: ApiKey,
    /// Requests answered or taken (a produce with acks=0 takes no answer).
    pub requests: u64,
    /// The request frames' bytes on the wire, their 4-byte length included.
    pub request_bytes: u64,
    /// The response frames' bytes on the wire, their 4-byte length included.
    pub response_bytes: u64,
}

impl Default for ServerStats {
    fn default() -> Self {
        ServerStats {
            connections_open: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            apis: Box::new(std::array::from_fn(|_| ApiCounters::default())),
        }
    }
}

impl ServerStats {
    /// Counts a connection admitted; it is open until the guard drops.
    pub fn connected(&self) -> OpenConnection<'_> {
        self.connections_accepted.fetch_add(1, Relaxed);
        self.connections_open.fetch_add(1, Relaxed);
        OpenConnection(self)
    }

    /// Counts one request of `key` whose frame had `bytes` bytes.
    pub fn request(&self, key: ApiKey, bytes: usize) {
        if let Some(c) = self.slot(key) {
            c.requests.fetch_add(1, Relaxed);
            c.request_bytes.fetch_add(widen(bytes), Relaxed);
        }
    }

    /// Counts the `bytes` of a response to a request of `key`.
    pub fn response(&self, key: ApiKey, bytes: usize) {
        if let Some(c) = self.slot(key) {
            c.response_bytes.fetch_add(widen(bytes), Relaxed);
        }
    }

    /// Connections open now.
    pub fn connections_open(&self) -> u64 {
        self.connections_open.load(Relaxed)
    }

    /// Connections admitted since the server started.
    pub fn connections_accepted(&self) -> u64 {
        self.connections_accepted.load(Relaxed)
    }

    /// The APIs that have had a request, by key.
    pub fn apis(&self) -> Vec<ApiCounts> {
        (0..KEYS)
            .filter_map(|i| {
                let key = ApiKey::try_from(i16::try_from(i).ok()?).ok()?;
                let c = self.apis.get(i)?;
                let requests = c.requests.load(Relaxed);
                (requests > 0).then(|| ApiCounts {
                    key,
                    requests,
                    request_bytes: c.request_bytes.load(Relaxed),
                    response_bytes: c.response_bytes.load(Relaxed),
                })
            })
            .collect()
    }

    fn slot(&self, key: ApiKey) -> Option<&ApiCounters> {
        self.apis.get(usize::try_from(key as i16).ok()?)
    }
}

fn widen(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A connection counted open; dropping it counts it closed.
#[derive(Debug)]
pub struct OpenConnection<'a>(&'a ServerStats);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_bytes_and_open_connections_per_api() {
        let s = ServerStats::default();
        let a = s.connected();
        {
            let _b = s.connected();
            assert_eq!(s.connections_open(), 2);
        }
        assert_eq!((s.connections_open(), s.connections_accepted()), (1, 2));
        s.request(ApiKey::Produce, 100);
        s.request(ApiKey::Produce, 50);
        s.response(ApiKey::Produce, 20);
        s.request(ApiKey::Fetch, 30);
        s.response(ApiKey::Fetch, 4000);
        assert_eq!(
            s.apis(),
            vec![
                ApiCounts {
                    key: ApiKey::Produce,
                    requests: 2,
                    request_bytes: 150,
                    response_bytes: 20
                },
                ApiCounts {
                    key: ApiKey::Fetch,
                    requests: 1,
                    request_bytes: 30,
                    response_bytes: 4000
                },
            ]
        );
        drop(a);
        assert_eq!(s.connections_open(), 0);
    }
}
