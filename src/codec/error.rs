//! The codec error: what was wrong, where, and what to do about it.

use crate::error::ErrorClass;
use crate::record::Position;
use std::fmt;

/// What went wrong while decoding or encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecErrorKind {
    /// The bytes are not valid JSON.
    #[error("not valid JSON: {0}")]
    InvalidJson(String),
    /// The bytes are not valid UTF-8 where text was expected.
    #[error("not valid UTF-8 text")]
    InvalidUtf8,
    /// A required field is absent.
    #[error("required field `{0}` is missing")]
    MissingField(String),
    /// A field has the wrong type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the schema or format requires.
        expected: String,
        /// What the input had.
        found: String,
    },
    /// A field has the right type but an impossible value (bad base64, bad UUID, ...).
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// A null record value where a value is required.
    #[error("the record value is null")]
    NullValue,
    /// Not the Confluent wire format (magic byte 0 + 4-byte schema id).
    #[error("not in the Confluent wire format: {0}")]
    WireFormat(String),
    /// The registry does not know the schema id the record references.
    #[error("schema id {0} is not known to the schema registry")]
    UnknownSchemaId(u32),
    /// The schema registry could not be reached or answered with an error.
    #[error("schema registry request failed: {detail}")]
    Registry {
        /// The registry's or the client's message.
        detail: String,
        /// Whether the same request may succeed later.
        retryable: bool,
    },
    /// The Avro body does not match its writer schema.
    #[error("Avro body does not match its schema: {0}")]
    Avro(String),
    /// The schema uses something this codec does not support.
    #[error("unsupported schema: {0}")]
    UnsupportedSchema(String),
    /// The schema a record carries itself (a Connect JSON envelope) is unusable: the record is
    /// bad, not the configuration.
    #[error("the record's own schema is unusable: {0}")]
    RecordSchema(String),
    /// A Debezium `op` code this version does not know.
    #[error("unknown Debezium op `{0}`")]
    UnknownOp(String),
}

impl CodecErrorKind {
    /// Who has to act on it.
    pub fn class(&self) -> ErrorClass {
        match self {
            CodecErrorKind::Registry { .. } => ErrorClass::External,
            CodecErrorKind::UnsupportedSchema(_) => ErrorClass::Config,
            _ => ErrorClass::Data,
        }
    }

    /// Whether retrying the same decode can succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, CodecErrorKind::Registry { retryable: true, .. })
    }

    /// What the user should do.
    pub fn hint(&self) -> &'static str {
        match self {
            CodecErrorKind::InvalidJson(_) | CodecErrorKind::InvalidUtf8 => {
                "check the producer's serializer; use `happystreams decode --format raw` to see the bytes"
            }
            CodecErrorKind::WireFormat(_) => {
                "the topic is not Confluent-Avro: check the source's `format` (json, json-schema, avro)"
            }
            CodecErrorKind::UnknownSchemaId(_) => {
                "check that the registry URL points at the registry the producer used"
            }
            CodecErrorKind::Registry { .. } => "check that the schema registry is reachable; the read is retried",
            CodecErrorKind::UnsupportedSchema(_) => "adapt the schema or open an issue with the schema attached",
            CodecErrorKind::UnknownOp(_) | CodecErrorKind::MissingField(_) => {
                "is this topic really a Debezium change topic? check the source's `format`"
            }
            _ => "route bad records with the source's `on_error: skip | dead_letter` policy, or fix the producer",
        }
    }
}

/// A codec error with its location: the record position and the field path inside the value.
/// Boxed, so that `Result<Value, CodecError>` stays small on the hot path; the fields are read
/// through `Deref` (`error.kind`, `error.path`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(Box<CodecErrorDetails>);

/// What a [`CodecError`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecErrorDetails {
    /// What went wrong.
    pub kind: CodecErrorKind,
    /// Field path inside the record, outermost first (`after.lifetime_value`).
    pub path: Vec<String>,
    /// Which part of the record: `key`, `value` or a header name.
    pub part: Option<String>,
    /// Where the record was read from.
    pub at: Option<Position>,
}

impl CodecError {
    /// An error without a location yet.
    pub fn new(kind: CodecErrorKind) -> Self {
        CodecError(Box::new(CodecErrorDetails { kind, path: Vec::new(), part: None, at: None }))
    }

    /// Prepends a field name to the path (called while the error propagates outwards).
    pub fn in_field(mut self, field: &str) -> Self {
        self.path.insert(0, field.to_owned());
        self
    }

    /// Names the part of the record (`key`, `value`, header name).
    pub fn in_part(mut self, part: &str) -> Self {
        self.part.get_or_insert_with(|| part.to_owned());
        self
    }

    /// Attaches the record position.
    pub fn at(mut self, position: Option<&crate::record::Position>) -> Self {
        if self.at.is_none() {
            self.at = position.cloned();
        }
        self
    }

    /// See [`CodecErrorKind::class`].
    pub fn class(&self) -> ErrorClass {
        self.kind.class()
    }

    /// See [`CodecErrorKind::retryable`].
    pub fn retryable(&self) -> bool {
        self.kind.retryable()
    }
}

impl std::ops::Deref for CodecError {
    type Target = CodecErrorDetails;
    fn deref(&self) -> &CodecErrorDetails {
        &self.0
    }
}

impl std::ops::DerefMut for CodecError {
    fn deref_mut(&mut self) -> &mut CodecErrorDetails {
        &mut self.0
    }
}

impl From<CodecErrorKind> for CodecError {
    fn from(kind: CodecErrorKind) -> Self {
        CodecError::new(kind)
    }
}

impl CodecError {
    /// What went wrong and where, without the hint (for callers that know better what to do,
    /// such as an encoder writing the pipeline's own outputs).
    pub fn detail(&self) -> String {
        let mut text = format!("{} error: {}", self.kind.class(), self.kind);
        let mut location = Vec::new();
        if let Some(at) = &self.at {
            location.push(at.to_string());
        }
        if let Some(part) = &self.part {
            location.push(format!("record {part}"));
        }
        if !self.path.is_empty() {
            location.push(format!("field `{}`", self.path.join(".")));
        }
        if !location.is_empty() {
            text.push_str(&format!(" (at {})", location.join(", ")));
        }
        text
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.detail(), self.kind.hint())
    }
}

impl std::error::Error for CodecError {}

/// Shorthand for a wrong-type error.
pub(crate) fn wrong_type(expected: impl Into<String>, found: impl Into<String>) -> CodecError {
    CodecError::new(CodecErrorKind::WrongType { expected: expected.into(), found: found.into() })
}
