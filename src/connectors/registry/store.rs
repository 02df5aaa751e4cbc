//! The registry's state: subjects, versions, schema ids and compatibility settings, persisted
//! to one JSON file in a directory.
//!
//! Invariants:
//! - A schema id names one schema text forever; the same schema registered under several
//!   subjects gets the same id (as in Confluent Schema Registry).
//! - Two schemas are "the same" when their parsed forms are equal (key order and white space do
//!   not matter; defaults, docs and custom attributes do).
//! - Every mutation is written to `registry.json` through a temporary file and a rename before
//!   it is answered, so a crash never leaves a half-written file and restarts keep ids stable.
//! - Permanent deletes require a soft delete first (Confluent's rule).
//! - A schema may reference types defined by other registered versions (`references`); a
//!   version that any schema still in use by a version (soft-deleted ones included) references
//!   cannot be deleted (42206). How references are pinned, resolved and guarded:
//!   [`references`].

use super::compat::{self, CompatibilityLevel};
use apache_avro::Schema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod references;

pub use references::SchemaReference;
use std::path::{Path, PathBuf};

/// A registry error with its Confluent error code; the HTTP status is the code's first three
/// digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (error code {code})")]
pub struct RegistryError {
    /// Confluent error code: 40401 subject not found, 40402 version not found, 40403 schema not
    /// found, 40404 subject soft-deleted, 40405 subject not soft-deleted, 40406 version
    /// soft-deleted, 40407 version not soft-deleted, 40408 no subject-level compatibility,
    /// 409 incompatible, 42201 invalid schema, 42202 invalid version, 42203 invalid
    /// compatibility level, 42206 version still referenced, 50001 storage error.
    pub code: u32,
    /// Human message.
    pub message: String,
}

impl RegistryError {
    fn new(code: u32, message: impl Into<String>) -> Self {
        RegistryError { code, message: message.into() }
    }
    /// HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        let status = if self.code >= 10_000 { self.code / 100 } else { self.code };
        u16::try_from(status).unwrap_or(500)
    }
    pub(crate) fn subject_not_found(subject: &str) -> Self {
        Self::new(40401, format!("Subject '{subject}' not found."))
    }
    pub(crate) fn version_not_found(subject: &str, version: &str) -> Self {
        Self::new(40402, format!("Version {version} not found for subject '{subject}'."))
    }
    pub(crate) fn schema_not_found() -> Self {
        Self::new(40403, "Schema not found")
    }
    pub(crate) fn invalid_version(version: &str) -> Self {
        Self::new(
            42202,
            format!(
                "The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
            ),
        )
    }
    pub(crate) fn invalid_level(detail: &str) -> Self {
        Self::new(42203, format!("Invalid compatibility level: {detail}"))
    }
}

/// One version of a subject.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionEntry {
    /// Version number, from 1.
    pub version: u32,
    /// Schema id.
    pub id: u32,
    /// Soft-deleted (hidden unless `deleted=true` is asked for).
    pub deleted: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SubjectState {
    versions: Vec<VersionEntry>,
    compatibility: Option<CompatibilityLevel>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSchema {
    schema: String,
    identity: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    references: Vec<SchemaReference>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    next_id: u32,
    compatibility: CompatibilityLevel,
    schemas: BTreeMap<u32, StoredSchema>,
    subjects: BTreeMap<String, SubjectState>,
}

/// A registered schema as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectVersion {
    /// Subject name.
    pub subject: String,
    /// Version number.
    pub version: u32,
    /// Schema id.
    pub id: u32,
    /// Schema text.
    pub schema: String,
    /// The types it takes from other schemas.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
}

/// Which version a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionRef {
    /// The highest non-deleted version.
    Latest,
    /// A version number.
    Number(u32),
}

impl VersionRef {
    /// Parses `latest`, `-1` or a positive number.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        match text {
            "latest" | "-1" => Ok(VersionRef::Latest),
            n => match n.parse::<u32>() {
                Ok(v) if v >= 1 && v <= i32::MAX as u32 => Ok(VersionRef::Number(v)),
                _ => Err(RegistryError::invalid_version(text)),
            },
        }
    }
}

/// Parses and validates an Avro schema, returning its stored text and identity.
pub fn parse_schema(text: &str) -> Result<(Schema, String, String), RegistryError> {
    let invalid = |e: String| RegistryError::new(42201, format!("Invalid schema {text}, details: {e}"));
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let schema = Schema::parse(&json).map_err(|e| invalid(e.to_string()))?;
    let identity = serde_json::to_string(&schema).map_err(|e| invalid(e.to_string()))?;
    Ok((schema, json.to_string(), identity))
}

fn write_atomically(file: &Path, state: &State) -> Result<(), RegistryError> {
    use std::io::Write as _;
    let storage = |e: std::io::Error| RegistryError::new(50001, format!("cannot write {}: {e}", file.display()));
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| RegistryError::new(50001, e.to_string()))?;
    let tmp = file.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(storage)?;
    f.write_all(&bytes).map_err(storage)?;
    f.sync_all().map_err(storage)?;
    std::fs::rename(&tmp, file).map_err(storage)?;
    // Make the rename itself durable.
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(storage)?;
    }
    Ok(())
}

/// The registry state plus where it is persisted.
#[derive(Debug)]
pub struct RegistryStore {
    state: State,
    file: Option<PathBuf>,
}

impl RegistryStore {
    /// An in-memory store (lost on exit).
    pub fn in_memory() -> Self {
        RegistryStore { state: State { next_id: 1, ..State::default() }, file: None }
    }

    /// Opens (or creates) a store persisted in `dir/registry.json`.
    pub fn open(dir: &Path) -> Result<Self, RegistryError> {
        let storage = |e: std::io::Error| {
            RegistryError::new(50001, format!("cannot use registry directory {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(storage)?;
        let file = dir.join("registry.json");
        let state = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                RegistryError::new(
                    50001,
                    format!(
                        "{} is corrupt ({e}); restore it from a backup or move it away to start empty",
                        file.display()
                    ),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State { next_id: 1, ..State::default() },
            Err(e) => return Err(storage(e)),
        };
        Ok(RegistryStore { state, file: Some(file) })
    }

    /// Applies a change to a copy of the state, persists the copy, and only then makes it the
    /// live state: a failed write leaves memory and disk as they were.
    fn mutate<T>(&mut self, change: impl FnOnce(&mut State) -> Result<T, RegistryError>) -> Result<T, RegistryError> {
        let mut next = self.state.clone();
        let result = change(&mut next)?;
        if let Some(file) = &self.file {
            write_atomically(file, &next)?;
        }
        self.state = next;
        Ok(result)
    }

    fn subject(&self, subject: &str, include_deleted: bool) -> Result<&SubjectState, RegistryError> {
        match self.state.subjects.get(subject) {
            Some(s) if include_deleted || s.versions.iter().any(|v| !v.deleted) => Ok(s),
            _ => Err(RegistryError::subject_not_found(subject)),
        }
    }

    fn schema_text(&self, id: u32) -> &str {
        self.state.schemas.get(&id).map(|s| s.schema.as_str()).unwrap_or_default()
    }

    /// Subjects with at least one live version (or any, with `include_deleted`).
    pub fn subjects(&self, include_deleted: bool) -> Vec<String> {
        self.state
            .subjects
            .iter()
            .filter(|(_, s)| !s.versions.is_empty() && (include_deleted || s.versions.iter().any(|v| !v.deleted)))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Version numbers of a subject.
    pub fn versions(&self, subject: &str, include_deleted: bool) -> Result<Vec<u32>, RegistryError> {
        let s = self.subject(subject, include_deleted)?;
        Ok(s.versions.iter().filter(|v| include_deleted || !v.deleted).map(|v| v.version).collect())
    }

    /// One version of a subject.
    pub fn version(
        &self,
        subject: &str,
        version: VersionRef,
        include_deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let s = self.subject(subject, include_deleted)?;
        let entry = match version {
            VersionRef::Latest => s.versions.iter().rev().find(|v| include_deleted || !v.deleted),
            VersionRef::Number(n) => s.versions.iter().find(|v| v.version == n && (include_deleted || !v.deleted)),
        };
        let entry = entry.ok_or_else(|| {
            let label = match version {
                VersionRef::Latest => "latest".to_owned(),
                VersionRef::Number(n) => n.to_string(),
            };
            RegistryError::version_not_found(subject, &label)
        })?;
        Ok(SubjectVersion {
            subject: subject.to_owned(),
            version: entry.version,
            id: entry.id,
            schema: self.schema_text(entry.id).to_owned(),
            references: self.references_of(entry.id).to_vec(),
        })
    }

    /// Schema text by id.
    pub fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        self.state.schemas.get(&id).map(|s| s.schema.clone()).ok_or_else(RegistryError::schema_not_found)
    }

    /// `(subject, version)` pairs that use a schema id.
    pub fn id_versions(&self, id: u32) -> Result<Vec<(String, u32)>, RegistryError> {
        self.schema_by_id(id)?;
        Ok(self
            .state
            .subjects
            .iter()
            .flat_map(|(name, s)| {
                s.versions.iter().filter(move |v| v.id == id && !v.deleted).map(move |v| (name.clone(), v.version))
            })
            .collect())
    }

    /// The effective compatibility level of a subject.
    pub fn effective_level(&self, subject: &str) -> CompatibilityLevel {
        self.state.subjects.get(subject).and_then(|s| s.compatibility).unwrap_or(self.state.compatibility)
    }

    /// Global compatibility level.
    pub fn global_level(&self) -> CompatibilityLevel {
        self.state.compatibility
    }

    /// Sets the global level.
    pub fn set_global_level(&mut self, level: CompatibilityLevel) -> Result<(), RegistryError> {
        self.mutate(|state| {
            state.compatibility = level;
            Ok(())
        })
    }

    /// The subject-level setting, if any.
    pub fn subject_level(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.state.subjects.get(subject).and_then(|s| s.compatibility)
    }

    /// Sets (or with `None`, removes) a subject's level; returns the previous one.
    pub fn set_subject_level(
        &mut self,
        subject: &str,
        level: Option<CompatibilityLevel>,
    ) -> Result<Option<CompatibilityLevel>, RegistryError> {
        self.mutate(|state| {
            Ok(match level {
                Some(_) => {
                    std::mem::replace(&mut state.subjects.entry(subject.to_owned()).or_default().compatibility, level)
                }
                None => state.subjects.get_mut(subject).and_then(|s| s.compatibility.take()),
            })
        })
    }

    fn live_schemas(&self, subject: &str) -> Vec<(u32, Schema)> {
        self.state
            .subjects
            .get(subject)
            .map(|s| {
                s.versions
                    .iter()
                    .filter(|v| !v.deleted)
                    .filter_map(|v| self.resolved(v.id).map(|schema| (v.version, schema)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Registers a schema under a subject (or returns the id it already has there).
    pub fn register(&mut self, subject: &str, text: &str) -> Result<u32, RegistryError> {
        self.register_with(subject, text, &[])
    }

    /// [`RegistryStore::register`] for a schema that references types of other schemas.
    pub fn register_with(
        &mut self,
        subject: &str,
        text: &str,
        references: &[SchemaReference],
    ) -> Result<u32, RegistryError> {
        let (schema, stored, references, identity) = self.parse_with(text, references)?;
        if let Some(existing) = self.lookup_identity(subject, &identity) {
            return Ok(existing.id);
        }
        let level = self.effective_level(subject);
        let reasons = compat::check(level, &schema, &self.live_schemas(subject));
        if !reasons.is_empty() {
            return Err(RegistryError::new(
                409,
                format!(
                    "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
                    reasons.join("; ")
                ),
            ));
        }
        self.mutate(|state| {
            let id = match state.schemas.iter().find(|(_, s)| s.identity == identity) {
                Some((id, _)) => *id,
                None => {
                    let id = state.next_id;
                    state.next_id += 1;
                    state.schemas.insert(id, StoredSchema { schema: stored, identity, references });
                    id
                }
            };
            let entry = state.subjects.entry(subject.to_owned()).or_default();
            let version = entry.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
            entry.versions.push(VersionEntry { version, id, deleted: false });
            Ok(id)
        })
    }

    fn lookup_identity(&self, subject: &str, identity: &str) -> Option<SubjectVersion> {
        let s = self.state.subjects.get(subject)?;
        s.versions
            .iter()
            .filter(|v| !v.deleted)
            .find(|v| self.state.schemas.get(&v.id).is_some_and(|stored| stored.identity == identity))
            .map(|v| SubjectVersion {
                subject: subject.to_owned(),
                version: v.version,
                id: v.id,
                schema: self.schema_text(v.id).to_owned(),
                references: self.references_of(v.id).to_vec(),
            })
    }

    /// Finds the version of a subject that has this schema.
    pub fn lookup(
        &self,
        subject: &str,
        text: &str,
        references: &[SchemaReference],
    ) -> Result<SubjectVersion, RegistryError> {
        self.subject(subject, false)?;
        let (_, _, _, identity) = self.parse_with(text, references)?;
        self.lookup_identity(subject, &identity).ok_or_else(RegistryError::schema_not_found)
    }

    /// Checks a schema against a subject's versions without registering it.
    pub fn check(
        &self,
        subject: &str,
        text: &str,
        references: &[SchemaReference],
        version: Option<VersionRef>,
    ) -> Result<Vec<String>, RegistryError> {
        let (schema, _, _, _) = self.parse_with(text, references)?;
        let level = self.effective_level(subject);
        let existing = match version {
            None => {
                self.subject(subject, false)?;
                self.live_schemas(subject)
            }
            Some(v) => {
                let found = self.version(subject, v, false)?;
                let parsed = self.resolved(found.id).ok_or_else(|| {
                    RegistryError::new(50001, format!("stored schema id {} does not parse", found.id))
                })?;
                // A single named version is checked non-transitively against that version.
                vec![(found.version, parsed)]
            }
        };
        Ok(compat::check(level, &schema, &existing))
    }

    /// Deletes a subject (soft, or permanent after a soft delete). Returns the versions deleted.
    pub fn delete_subject(&mut self, subject: &str, permanent: bool) -> Result<Vec<u32>, RegistryError> {
        self.mutate(|state| Self::delete_subject_in(state, subject, permanent))
    }

    fn delete_subject_in(state: &mut State, subject: &str, permanent: bool) -> Result<Vec<u32>, RegistryError> {
        let s = state
            .subjects
            .get_mut(subject)
            .filter(|s| !s.versions.is_empty())
            .ok_or_else(|| RegistryError::subject_not_found(subject))?;
        let deleted = if permanent {
            if s.versions.iter().any(|v| !v.deleted) {
                return Err(RegistryError::new(
                    40405,
                    format!("Subject '{subject}' was not deleted first before being permanently deleted"),
                ));
            }
            let versions: Vec<u32> = s.versions.iter().map(|v| v.version).collect();
            for version in &versions {
                Self::refuse_if_referenced(state, subject, *version)?;
            }
            state.subjects.remove(subject);
            versions
        } else {
            if s.versions.iter().all(|v| v.deleted) {
                return Err(RegistryError::new(
                    40404,
                    format!("Subject '{subject}' was soft deleted.Set permanent=true to delete permanently"),
                ));
            }
            let versions: Vec<u32> = s.versions.iter().filter(|v| !v.deleted).map(|v| v.version).collect();
            for version in &versions {
                Self::refuse_if_referenced(state, subject, *version)?;
            }
            if let Some(s) = state.subjects.get_mut(subject) {
                s.versions.iter_mut().for_each(|v| v.deleted = true);
            }
            versions
        };
        Ok(deleted)
    }

    /// Deletes one version (soft, or permanent after a soft delete).
    pub fn delete_version(
        &mut self,
        subject: &str,
        version: VersionRef,
        permanent: bool,
    ) -> Result<u32, RegistryError> {
        self.mutate(|state| Self::delete_version_in(state, subject, version, permanent))
    }

    fn delete_version_in(
        state: &mut State,
        subject: &str,
        version: VersionRef,
        permanent: bool,
    ) -> Result<u32, RegistryError> {
        let s = state
            .subjects
            .get_mut(subject)
            .filter(|s| !s.versions.is_empty())
            .ok_or_else(|| RegistryError::subject_not_found(subject))?;
        let position = match version {
            VersionRef::Latest => s.versions.iter().rposition(|v| !v.deleted),
            VersionRef::Number(n) => s.versions.iter().position(|v| v.version == n),
        };
        let label = match version {
            VersionRef::Latest => "latest".to_owned(),
            VersionRef::Number(n) => n.to_string(),
        };
        let index = position.ok_or_else(|| RegistryError::version_not_found(subject, &label))?;
        let entry = s.versions[index].clone();
        Self::refuse_if_referenced(state, subject, entry.version)?;
        let Some(s) = state.subjects.get_mut(subject) else { return Err(RegistryError::subject_not_found(subject)) };
        if permanent {
            if !entry.deleted {
                return Err(RegistryError::new(
                    40407,
                    format!(
                        "Subject '{subject}' Version {} was not deleted first before being permanently deleted",
                        entry.version
                    ),
                ));
            }
            s.versions.remove(index);
        } else {
            if entry.deleted {
                return Err(RegistryError::new(
                    40406,
                    format!(
                        "Subject '{subject}' Version {} was soft deleted.Set permanent=true to delete permanently",
                        entry.version
                    ),
                ));
            }
            s.versions[index].deleted = true;
        }
        Ok(entry.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"Click","fields":[{"name":"id","type":"string"}]}"#;
    const V1_REORDERED: &str = r#"{"name":"Click","fields":[{"type":"string","name":"id"}],"type":"record"}"#;
    const V2: &str = r#"{"type":"record","name":"Click","fields":[{"name":"id","type":"string"},{"name":"n","type":"int","default":0}]}"#;

    #[test]
    fn same_schema_with_other_key_order_gets_the_same_id() {
        let mut store = RegistryStore::in_memory();
        let id = store.register("clicks-value", V1).unwrap();
        assert_eq!(store.register("clicks-value", V1_REORDERED).unwrap(), id);
        assert_eq!(store.register("other-value", V1).unwrap(), id);
        assert_eq!(store.versions("clicks-value", false).unwrap(), vec![1]);
    }

    #[test]
    fn ids_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = {
            let mut store = RegistryStore::open(dir.path()).unwrap();
            (store.register("a-value", V1).unwrap(), store.register("a-value", V2).unwrap())
        };
        let mut store = RegistryStore::open(dir.path()).unwrap();
        assert_eq!(store.lookup("a-value", V2, &[]).unwrap().id, b);
        assert_eq!(store.schema_by_id(a).unwrap(), serde_json::from_str::<serde_json::Value>(V1).unwrap().to_string());
        let c = store.register("c-value", r#""string""#).unwrap();
        assert!(c > b, "a new id after reopen must not reuse an old one");
    }

    #[test]
    fn permanent_delete_requires_soft_delete_first() {
        let mut store = RegistryStore::in_memory();
        store.register("s", V1).unwrap();
        assert_eq!(store.delete_subject("s", true).unwrap_err().code, 40405);
        assert_eq!(store.delete_subject("s", false).unwrap(), vec![1]);
        assert_eq!(store.delete_subject("s", false).unwrap_err().code, 40404);
        assert_eq!(store.versions("s", false).unwrap_err().code, 40401);
        assert_eq!(store.versions("s", true).unwrap(), vec![1]);
        assert_eq!(store.delete_subject("s", true).unwrap(), vec![1]);
        assert!(store.subjects(true).is_empty());
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RegistryStore::open(dir.path()).unwrap();
        store.register("s", V1).unwrap();
        // Make the next write fail: a directory where the temporary file must go.
        std::fs::create_dir(dir.path().join("registry.json.tmp")).unwrap();
        assert_eq!(store.register("s", V2).unwrap_err().code, 50001);
        assert_eq!(store.versions("s", false).unwrap(), vec![1], "memory did not move ahead of disk");
        std::fs::remove_dir(dir.path().join("registry.json.tmp")).unwrap();
        assert_eq!(store.register("s", V2).unwrap(), 2, "the id was not burnt by the failed attempt");
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("registry.json"), b"{not json").unwrap();
        let err = RegistryStore::open(dir.path()).unwrap_err();
        assert_eq!(err.code, 50001);
        assert!(err.message.contains("corrupt"), "{err}");
    }
}
