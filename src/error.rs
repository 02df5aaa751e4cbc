//! Error classes shared by every module's error enum.
//!
//! Each module area owns one `thiserror` enum (`CodecError`, `RegistryError`, ...). Every such
//! enum answers two questions the caller needs to decide what to do: which [`ErrorClass`] it
//! belongs to, and whether retrying the same operation can succeed.

use std::fmt;

/// Who has to act on an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The user's configuration is wrong (a flag, a file, a topology). Fix the config.
    Config,
    /// One input record is bad. The source's `on_error` policy decides: fail, skip, dead-letter.
    Data,
    /// Something outside the process failed (broker, registry, object store). Often retryable.
    External,
    /// A bug or a broken invariant inside happystreams. Report it.
    Internal,
}

impl ErrorClass {
    /// The stable name used in logs, metrics labels and dead-letter headers.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Config => "config",
            ErrorClass::Data => "data",
            ErrorClass::External => "external",
            ErrorClass::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
