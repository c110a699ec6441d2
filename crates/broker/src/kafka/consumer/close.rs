//! Closing the consumer: finishing a first join, leaving the group, and dropping the
//! client off the async workers, on `close` and on drop.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;

use super::{Inner, KafkaConsumer};

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        // Closing blocks; keep it off the async workers when there are some.
        if let Some(c) = self.consumer.take() {
            let timeout = self.timeout;
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn_blocking(move || close_blocking(c, timeout));
                }
                Err(_) => close_blocking(c, timeout),
            }
        }
    }
}

/// How long a closing consumer waits at most for its first join to complete.
const JOIN_BEFORE_CLOSE: Duration = Duration::from_secs(5);

/// How long each poll of a closing consumer waits for the close to finish.
const CLOSE_POLL: Duration = Duration::from_millis(5);

/// Gives the fetched queue back, leaves the group (librdkafka's consumer close, which
/// waits for the group coordinator) and drops the client off this thread (see
/// `destroy_detached`): the group is left by then.
///
/// rdkafka's own close, in its `Drop`, polls in 100 ms steps and so takes a tenth of a
/// second after the group is left: at the end of every stage and of every tail read.
/// This polls in `CLOSE_POLL` steps instead; rdkafka's `Drop` then finds the consumer
/// closed, and says so at error level under `rdkafka::consumer::base_consumer` (the
/// CLI's log filter drops that one line).
pub(super) fn close_blocking(c: Arc<Inner>, timeout: Duration) {
    // A member that closes while its first join is under way does not leave the group:
    // librdkafka sends no LeaveGroup yet, the broker adds the member when the join
    // completes, and every later rebalance of the group waits for it until its session
    // times out (a second run of a pipeline started then sat idle that long). So such a
    // member first finishes joining (the records it is then given are not committed:
    // their next owner reads them).
    let subscribed = c.subscription().map(|s| s.count() > 0).unwrap_or(false);
    let deadline = Instant::now() + timeout.min(JOIN_BEFORE_CLOSE);
    while subscribed && !c.context().joined.load(Ordering::Acquire) && Instant::now() < deadline {
        let _ = c.poll(CLOSE_POLL);
    }
    if let Some(f) = c.context().fetched.get() {
        f.release();
    }
    if subscribed {
        c.unsubscribe();
    }
    match c.close_queue() {
        Ok(()) => {
            let deadline = Instant::now() + timeout;
            while !c.closed() && Instant::now() < deadline {
                // Serves the revocation and the close's own ops; a record it returns
                // is not committed, so its partition's next owner reads it again.
                let _ = c.poll(CLOSE_POLL);
            }
        }
        Err(e) => tracing::debug!("closing the Kafka consumer: {e}"),
    }
    super::super::destroy_detached(c);
}
