//! The store's one error type. Every message is one clear line for a user.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// An i/o error with the file it happened on.
    #[error("i/o error on {}: {source}", path.display())]
    IoAt {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Another process holds the data directory. `pid` is 0 when the holder's pid could
    /// not be read (it had not written it yet).
    #[error("data directory {} is in use by another millrace process ({}); stop it or use another --data directory", path.display(), pid_text(*pid))]
    Locked { path: PathBuf, pid: u32 },

    /// Bytes on disk that fail their checks, in a place where cutting them would lose
    /// acknowledged data (or on a read). `offset` is the byte position in `file`.
    #[error("corrupt data in {} at byte {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },

    /// An fsync (or a journal write) failed earlier: the kernel may have dropped dirty
    /// pages, so nothing written since can be trusted. Only reopening (which recovers)
    /// clears it.
    #[error(
        "the store refuses writes after a failed fsync or journal write ({0}); reopen it to recover"
    )]
    Poisoned(String),

    #[error("unknown topic '{0}'")]
    UnknownTopic(String),

    #[error("topic '{0}' already exists")]
    TopicExists(String),

    #[error("topic '{topic}' has no partition {partition} (it has {count})")]
    UnknownPartition {
        topic: String,
        partition: u32,
        count: u32,
    },

    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName { name: String, reason: String },

    #[error("invalid config: {0}")]
    InvalidConfig(String),

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error("batch of {size} bytes is larger than the limit of {limit} bytes")]
    BatchTooLarge { size: usize, limit: usize },
}

fn pid_text(pid: u32) -> String {
    if pid == 0 {
        "pid unknown".to_string()
    } else {
        format!("pid {pid}")
    }
}

impl StoreError {
    pub(crate) fn io_at(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::IoAt {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        StoreError::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
