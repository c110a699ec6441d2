//! millrace-store: the embedded topic store — durable, partitioned, crash-safe logs in
//! one local data directory. Synchronous; no Kafka, no async runtime.
//!
//! # Layout
//! - `store`: `Store` — open a data directory (lock, recover), topics, consumer groups;
//!   `store/committed` its committed offsets, `store/background` the flusher and
//!   checkpointer threads.
//! - `topic`: a topic's partitions and its `topic.json`.
//! - `partition`: one partition's log: append (roll, retention), read, tail (`wait_for`).
//! - `segment`: one segment file: batched reads, and the validating scan.
//! - `tail`: a segment's tail buffer — appended bytes written to the file together,
//!   behind the journal — and the store-wide cap on those buffers.
//! - `index`: the sparse offset index of a segment (in memory; on disk when sealed).
//! - `codec`: the batch and record format (byte table at its top; `docs/format.md`);
//!   `codec/encode` writes batches, `codec/decode` reads them back.
//! - `encoded`: records moved as stored (a copier's reads and appends).
//! - `journal`: the shared journal — one write-ahead log per data directory whose group
//!   commit (one fdatasync) makes batch and interval appends durable however many
//!   partitions they touch; checkpoints that sync segments lazily; replay on open.
//! - `durability`: each partition's durable end and its waiting readers, `Pending`
//!   (appends acknowledged together), the poison flag, and the `AppendListener` told
//!   when records become readable.
//! - `log_start`: a partition's durable log start offset (records deleted on request).
//! - `recovery`: opening a partition: cut a torn tail and report it, refuse a corrupt middle.
//! - `offsets`: the committed-offsets journal (commits with their metadata, deleted
//!   offsets and groups; `offsets/entry` holds its bytes). `groups`: in-process consumer groups.
//! - `config`: `TopicConfig`, `Durability`, `StoreOptions`.
//! - `io`: the file I/O seam (`Storage`/`StorageFile`) that tests use to inject faults.
//! - `lock`: one process per data directory. `murmur2`: Kafka's key partitioner.
//! - `record`, `error`: the record types and the crate's one error type.

pub mod codec;
pub mod config;
mod durability;
pub mod encoded;
pub mod error;
pub mod groups;
mod index;
pub mod io;
mod journal;
mod lock;
mod log_start;
pub mod murmur2;
mod offsets;
pub mod partition;
pub mod record;
pub mod recovery;
mod segment;
pub mod store;
mod tail;
pub mod topic;

pub use codec::RecordSink;
pub use config::{Durability, StoreOptions, TopicConfig};
pub use durability::{AppendListener, Pending};
pub use encoded::{EncodedBatch, EncodedHeaders, EncodedRecord, EncodedRecords};
pub use error::StoreError;
pub use groups::GroupMember;
pub use io::{OsStorage, Storage, StorageFile};
pub use murmur2::{murmur2, partition_for_key};
pub use offsets::{CommittedOffset, OffsetCommit, OffsetCommitWithMetadata};
pub use partition::Partition;
pub use record::{Header, Names, Record, RecordRef, StoredRecord};
pub use recovery::{RecoveryReport, Truncation};
pub use store::Store;
pub use topic::Topic;
