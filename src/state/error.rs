//! State errors.

use crate::error::ErrorClass;
use std::path::PathBuf;

/// What can go wrong with state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process (or another task in this one) holds the state directory.
    #[error(
        "state directory {path} is locked by another process: {detail}; give each instance its own state directory (state.dir) or stop the other one"
    )]
    Locked {
        /// The directory.
        path: PathBuf,
        /// RocksDB's message.
        detail: String,
    },
    /// Files in the state directory are damaged.
    #[error("state in {path} is corrupt: {detail}; delete that directory and the task restores it from its changelog")]
    Corrupt {
        /// The directory.
        path: PathBuf,
        /// RocksDB's message.
        detail: String,
    },
    /// Reading or writing failed (disk full, permissions, ...).
    #[error("state I/O failed in {path}: {detail}; {}", io_advice(detail))]
    Io {
        /// The directory.
        path: PathBuf,
        /// The underlying message.
        detail: String,
    },
    /// A store name the backend was not opened with.
    #[error("unknown state store `{0}`; it must be declared in the topology")]
    UnknownStore(String),
    /// A stored value could not be decoded (written by another version?).
    #[error("stored value in `{store}` is unreadable: {detail}")]
    Encoding {
        /// Store name.
        store: String,
        /// What is wrong.
        detail: String,
    },
    /// The changelog could not be written; nothing was committed.
    #[error("changelog write failed: {0}; nothing was committed, the commit is retried")]
    Changelog(String),
}

/// What to do about a failed read or write.
fn io_advice(detail: &str) -> &'static str {
    if detail.contains("No space left on device") || detail.contains("Disk quota exceeded") {
        "the disk is full: free space on it or move runtime.state_dir to a larger volume, then restart \
         (the state is intact; a restart resumes from the last commit)"
    } else {
        "check the directory's permissions and its disk"
    }
}

impl StateError {
    /// Who has to act.
    pub fn class(&self) -> ErrorClass {
        match self {
            StateError::Locked { .. } | StateError::UnknownStore(_) => ErrorClass::Config,
            StateError::Corrupt { .. } | StateError::Io { .. } | StateError::Changelog(_) => ErrorClass::External,
            StateError::Encoding { .. } => ErrorClass::Internal,
        }
    }

    /// Whether retrying can succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, StateError::Io { .. } | StateError::Changelog(_))
    }
}
