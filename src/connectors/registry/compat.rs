//! Compatibility levels and the check behind them, as Confluent Schema Registry defines them.
//!
//! | level | the new schema must... |
//! |---|---|
//! | `BACKWARD` | read data written with the latest version |
//! | `BACKWARD_TRANSITIVE` | read data written with every version |
//! | `FORWARD` | be readable by the latest version |
//! | `FORWARD_TRANSITIVE` | be readable by every version |
//! | `FULL` | both, with the latest version |
//! | `FULL_TRANSITIVE` | both, with every version |
//! | `NONE` | nothing |
//!
//! "Read" is Avro schema resolution, checked with `apache_avro`'s `SchemaCompatibility`. A
//! resolution that *may* fail at run time (a reader enum missing a writer symbol, a reader union
//! missing a writer branch) counts as incompatible, as in the Java implementation.

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A subject's (or the global) compatibility level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    /// See the module table.
    #[default]
    Backward,
    /// See the module table.
    BackwardTransitive,
    /// See the module table.
    Forward,
    /// See the module table.
    ForwardTransitive,
    /// See the module table.
    Full,
    /// See the module table.
    FullTransitive,
    /// See the module table.
    None,
}

impl CompatibilityLevel {
    /// Every level, for help texts and tests.
    pub const ALL: [CompatibilityLevel; 7] = [
        CompatibilityLevel::Backward,
        CompatibilityLevel::BackwardTransitive,
        CompatibilityLevel::Forward,
        CompatibilityLevel::ForwardTransitive,
        CompatibilityLevel::Full,
        CompatibilityLevel::FullTransitive,
        CompatibilityLevel::None,
    ];

    fn transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }
    fn backward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
    fn forward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        f.write_str(&text)
    }
}

impl FromStr for CompatibilityLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_uppercase()))
            .map_err(|_| format!("`{s}` is not a compatibility level (one of BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE)"))
    }
}

fn can_read(writer: &Schema, reader: &Schema) -> Result<(), String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => Ok(()),
        Ok(Compatibility::Partial) => Err(
            "reading may fail for some values (an enum symbol or union branch of the writer is missing in the reader)"
                .into(),
        ),
        Err(e) => Err(e.to_string()),
    }
}

/// Checks `new` against existing versions (oldest first) under `level`. Returns the reasons it
/// is incompatible (empty = compatible).
pub fn check(level: CompatibilityLevel, new: &Schema, existing: &[(u32, Schema)]) -> Vec<String> {
    let against: &[(u32, Schema)] = match (level, existing.split_last()) {
        (CompatibilityLevel::None, _) | (_, None) => return Vec::new(),
        (l, Some((last, _))) if !l.transitive() => std::slice::from_ref(last),
        _ => existing,
    };
    let mut messages = Vec::new();
    for (version, old) in against {
        if level.backward()
            && let Err(reason) = can_read(old, new)
        {
            messages.push(format!("{level}: the new schema cannot read data written with version {version}: {reason}"));
        }
        if level.forward()
            && let Err(reason) = can_read(new, old)
        {
            messages.push(format!("{level}: version {version} cannot read data written with the new schema: {reason}"));
        }
    }
    messages
}
