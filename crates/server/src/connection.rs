//! Kafka's framing on one TCP connection: every request and response is a 4-byte
//! big-endian length, then that many bytes.
//!
//! A request's length is checked against `socket.request.max.bytes` before anything is
//! allocated for it, and its bytes are then gathered as they arrive (the buffer grows
//! with what was received, not with what the length claims), so a peer that announces
//! 100 MiB and sends nothing holds no memory. A response is written whole before the
//! next request is read: a client that stops reading stops the server reading its
//! requests (TCP's backpressure), so it cannot make the server queue responses.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::ServerError;

/// Kafka's `connections.max.idle.ms` default: a connection that sends nothing for this
/// long is closed, and so is one that takes this long to send a request it began.
pub const MAX_IDLE: Duration = Duration::from_secs(600);

/// What the buffer grows by at most per read while a large request arrives.
const GROW_BY: usize = 1 << 20;

/// One client connection.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    max_request_bytes: usize,
}

impl Connection {
    pub fn new(stream: TcpStream, max_request_bytes: usize) -> Connection {
        Connection {
            stream,
            max_request_bytes,
        }
    }

    /// Reads the next request frame (without its length). `Ok(None)` when the peer
    /// closed the connection between requests.
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, ServerError> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < len.len() {
            let n = idle(self.stream.read(&mut len[got..])).await?;
            if n == 0 {
                return if got == 0 {
                    Ok(None)
                } else {
                    Err(ServerError::TruncatedFrame { read: got, size: 4 })
                };
            }
            got += n;
        }
        let size = i32::from_be_bytes(len);
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= self.max_request_bytes)
            .ok_or(ServerError::FrameTooLarge {
                size: i64::from(size),
                limit: self.max_request_bytes,
            })?;
        let mut buf = BytesMut::with_capacity(size.min(64 * 1024));
        while buf.len() < size {
            let want = (size - buf.len()).min(GROW_BY);
            buf.reserve(want);
            let mut part = (&mut self.stream).take(u64::try_from(want).unwrap_or(u64::MAX));
            let n = idle(part.read_buf(&mut buf)).await?;
            if n == 0 {
                return Err(ServerError::TruncatedFrame {
                    read: buf.len(),
                    size,
                });
            }
        }
        Ok(Some(buf.freeze()))
    }

    /// Writes one response frame: `frame` holds 4 bytes of room for the length, then
    /// the response header and body.
    pub async fn write_frame(&mut self, mut frame: BytesMut) -> Result<(), ServerError> {
        let len = i32::try_from(frame.len().saturating_sub(4)).map_err(|_| {
            ServerError::Io(std::io::Error::other(
                "a response over 2 GiB cannot be framed",
            ))
        })?;
        if let Some(head) = frame.get_mut(..4) {
            head.copy_from_slice(&len.to_be_bytes());
        }
        idle(self.stream.write_all(&frame)).await?;
        Ok(())
    }
}

/// Runs one read or write, failing it after [`MAX_IDLE`] without progress.
async fn idle<T>(io: impl Future<Output = std::io::Result<T>>) -> Result<T, ServerError> {
    match tokio::time::timeout(MAX_IDLE, io).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ServerError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "idle for longer than connections.max.idle.ms (10 minutes)",
        ))),
    }
}
