//! Moving a partition's position: to an offset (clamped), a time, its beginning or end.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use super::Inner;
use crate::api::{Seek, TopicPartition};

/// Moves the position of `tp`. Offsets are clamped to what the partition holds (as on
/// the embedded store) rather than left to `auto.offset.reset`.
pub(super) fn seek_blocking(
    c: &Inner,
    tp: &TopicPartition,
    to: Seek,
    timeout: Duration,
) -> Result<(), KafkaError> {
    let target = match to {
        Seek::Beginning => Offset::Beginning,
        Seek::End => Offset::End,
        Seek::Offset(o) => {
            let (low, high) = c.fetch_watermarks(&tp.topic, tp.partition, timeout)?;
            Offset::Offset(o.clamp(low, high))
        }
        Seek::Timestamp(ts) => {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(ts))?;
            let got = c.offsets_for_times(tpl, timeout)?;
            match got
                .find_partition(&tp.topic, tp.partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => Offset::Offset(o),
                // No record at or after `ts`: the end.
                _ => Offset::End,
            }
        }
    };
    // A partition just assigned is not fetching yet until its start offset is known;
    // librdkafka refuses a seek then (`State`), so retry briefly.
    let deadline = Instant::now() + timeout;
    loop {
        match c.seek(&tp.topic, tp.partition, target, timeout) {
            Ok(()) => return Ok(()),
            Err(e)
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::State)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}
