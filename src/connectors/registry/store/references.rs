//! Schema references in the store: a schema may use types other registered versions define.
//! References are pinned to version numbers when registered, resolved (to any depth) to parse
//! and check a schema, and guard what they reference against deletion (42206).

use super::{RegistryError, RegistryStore, State, VersionRef, parse_schema};
use crate::codec::avro_references;
use apache_avro::Schema;
use serde::{Deserialize, Serialize};

/// A type a schema takes from another registered schema: the type's name, and the subject and
/// version that define it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct SchemaReference {
    /// The referenced type's name as the schema uses it (e.g. `com.acme.Address`).
    pub name: String,
    /// The subject that defines it.
    pub subject: String,
    /// The version of that subject (`-1` in a request means its latest version).
    pub version: i64,
}

impl RegistryStore {
    /// Schema text and references by id.
    pub fn schema_with_references(&self, id: u32) -> Result<(String, Vec<SchemaReference>), RegistryError> {
        let stored = self.state.schemas.get(&id).ok_or_else(RegistryError::schema_not_found)?;
        Ok((stored.schema.clone(), stored.references.clone()))
    }

    pub(super) fn references_of(&self, id: u32) -> &[SchemaReference] {
        self.state.schemas.get(&id).map(|s| s.references.as_slice()).unwrap_or_default()
    }

    /// The references of a request with `-1` (latest) replaced by the version number, each
    /// checked to exist.
    pub(super) fn pin(&self, references: &[SchemaReference]) -> Result<Vec<SchemaReference>, RegistryError> {
        references
            .iter()
            .map(|r| {
                let version = match r.version {
                    -1 => VersionRef::Latest,
                    n => VersionRef::parse(&n.to_string())?,
                };
                let found = self.version(&r.subject, version, false).map_err(|e| {
                    RegistryError::new(
                        42201,
                        format!(
                            "Invalid schema: reference `{}` to subject '{}' version {}: {}",
                            r.name, r.subject, r.version, e.message
                        ),
                    )
                })?;
                Ok(SchemaReference { version: i64::from(found.version), ..r.clone() })
            })
            .collect()
    }

    /// `text` with the types its (pinned) references name inlined, following references of
    /// references: a self-contained schema to parse and check.
    pub(super) fn inlined(&self, text: &str, references: &[SchemaReference]) -> Result<String, RegistryError> {
        if references.is_empty() {
            return Ok(text.to_owned());
        }
        let invalid = |e: String| RegistryError::new(42201, format!("Invalid schema {text}, details: {e}"));
        let mut definitions = avro_references::Definitions::default();
        let mut pending = references.to_vec();
        while let Some(reference) = pending.pop() {
            if !definitions.follow(&reference.subject, reference.version) {
                continue;
            }
            let number = u32::try_from(reference.version).map_err(|e| invalid(e.to_string()))?;
            let found = self.version(&reference.subject, VersionRef::Number(number), true)?;
            definitions.add(&reference.name, &found.schema).map_err(invalid)?;
            pending.extend(found.references);
        }
        definitions.inline_text(text).map_err(invalid)
    }

    /// Parses a schema with its references: the parsed (self-contained) schema, the text to
    /// store, the pinned references and the identity (the same schema with other references is
    /// another schema).
    pub(super) fn parse_with(
        &self,
        text: &str,
        references: &[SchemaReference],
    ) -> Result<(Schema, String, Vec<SchemaReference>, String), RegistryError> {
        let pinned = self.pin(references)?;
        let (schema, _, mut identity) = parse_schema(&self.inlined(text, &pinned)?)?;
        // Stored as sent (normalised JSON): with references it parses only with them.
        let stored = serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| RegistryError::new(42201, format!("Invalid schema {text}, details: {e}")))?
            .to_string();
        if !pinned.is_empty() {
            identity.push_str(&serde_json::to_string(&pinned).unwrap_or_default());
        }
        Ok((schema, stored, pinned, identity))
    }

    /// The self-contained form of a stored schema.
    pub(super) fn resolved(&self, id: u32) -> Option<Schema> {
        let text = self.inlined(self.schema_text(id), self.references_of(id)).ok()?;
        Schema::parse_str(&text).ok()
    }

    /// Ids of schemas that reference a subject's version and are in use by a live version.
    pub fn referenced_by(&self, subject: &str, version: VersionRef) -> Result<Vec<u32>, RegistryError> {
        let found = self.version(subject, version, true)?;
        Ok(Self::referrers(&self.state, subject, found.version, false))
    }

    /// Ids of schemas that reference a subject's version and are in use by a version (a live
    /// one, or with `include_deleted` any).
    pub(super) fn referrers(state: &State, subject: &str, version: u32, include_deleted: bool) -> Vec<u32> {
        let live: std::collections::BTreeSet<u32> = state
            .subjects
            .values()
            .flat_map(|s| s.versions.iter().filter(|v| include_deleted || !v.deleted).map(|v| v.id))
            .collect();
        state
            .schemas
            .iter()
            .filter(|(id, s)| {
                live.contains(id)
                    && s.references.iter().any(|r| r.subject == subject && r.version == i64::from(version))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// A referenced version stays while any version of a referrer exists, soft-deleted ones
    /// included: records written with a soft-deleted schema are still in topics, and decoding
    /// them needs the versions it references.
    pub(super) fn refuse_if_referenced(state: &State, subject: &str, version: u32) -> Result<(), RegistryError> {
        let referrers = Self::referrers(state, subject, version, true);
        if referrers.is_empty() {
            return Ok(());
        }
        Err(RegistryError::new(
            42206,
            format!(
                "One or more references exist to the schema {{magic=1,keytype=SCHEMA,subject={subject},version={version}}} (schema ids {referrers:?}); delete the versions that use those first, permanently"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS: &str =
        r#"{"type":"record","name":"Address","namespace":"acme","fields":[{"name":"city","type":"string"}]}"#;
    const ORDER: &str =
        r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"ship_to","type":"acme.Address"}]}"#;

    fn address_ref(version: i64) -> Vec<SchemaReference> {
        vec![SchemaReference { name: "acme.Address".into(), subject: "address".into(), version }]
    }

    #[test]
    fn a_schema_with_references_registers_resolves_and_pins_latest() {
        let mut store = RegistryStore::in_memory();
        assert_eq!(store.register("orders-value", ORDER).unwrap_err().code, 42201, "unresolved name");
        assert_eq!(
            store.register_with("orders-value", ORDER, &address_ref(1)).unwrap_err().code,
            42201,
            "no such subject"
        );
        store.register("address", ADDRESS).unwrap();
        let id = store.register_with("orders-value", ORDER, &address_ref(-1)).unwrap();
        let found = store.version("orders-value", VersionRef::Latest, false).unwrap();
        assert_eq!(found.references, address_ref(1), "latest is pinned to its number");
        assert_eq!(store.register_with("orders-value", ORDER, &address_ref(1)).unwrap(), id, "same schema, same id");
        assert_eq!(store.lookup("orders-value", ORDER, &address_ref(1)).unwrap().id, id);
        assert_eq!(store.referenced_by("address", VersionRef::Number(1)).unwrap(), vec![id]);
        assert!(store.check("orders-value", ORDER, &address_ref(1), None).unwrap().is_empty());
    }

    #[test]
    fn a_referenced_version_cannot_be_deleted_until_its_referrers_are() {
        let mut store = RegistryStore::in_memory();
        store.register("address", ADDRESS).unwrap();
        store.register_with("orders-value", ORDER, &address_ref(1)).unwrap();
        assert_eq!(store.delete_version("address", VersionRef::Number(1), false).unwrap_err().code, 42206);
        assert_eq!(store.delete_subject("address", false).unwrap_err().code, 42206);
        assert_eq!(store.versions("address", false).unwrap(), vec![1], "nothing was deleted");
        store.delete_subject("orders-value", false).unwrap();
        assert!(store.referenced_by("address", VersionRef::Number(1)).unwrap().is_empty(), "no live referrer");
        // Records written with the soft-deleted schema still need what it references.
        assert_eq!(store.delete_version("address", VersionRef::Number(1), false).unwrap_err().code, 42206);
        store.delete_subject("orders-value", true).unwrap();
        assert_eq!(store.delete_version("address", VersionRef::Number(1), false).unwrap(), 1);
    }
}
