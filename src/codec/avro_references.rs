//! Schema references: a registered Avro schema may name types defined in other registered
//! schemas (Confluent's `references`: `{"name": "com.acme.Address", "subject": "address",
//! "version": 1}`). Parsers need one self-contained schema, so [`inline`] writes each referenced
//! type's definition in place of its first use; later uses stay names, as Avro requires.
//!
//! [`Definitions`] gathers the referenced types while a caller follows the references its own
//! way (the registry's store from memory, the codec over HTTP), refusing a name two references
//! define differently.
//!
//! Names resolve as the Avro specification says: a name with a dot is a full name; a short one
//! takes the namespace of the nearest enclosing named type. An inlined definition keeps the full
//! name it was registered with, whatever namespace encloses the place it lands in.

use serde_json::{Map, Value as Json};
use std::collections::{BTreeMap, HashSet};

/// The types that referenced schemas define, by full name, gathered while following references
/// to any depth (the registry's store and the codec each fetch them their own way).
#[derive(Debug, Default)]
pub struct Definitions {
    by_name: BTreeMap<String, Json>,
    followed: HashSet<(String, i64)>,
}

impl Definitions {
    /// Whether the reference to `subject` `version` is new; false once it has been followed.
    pub fn follow(&mut self, subject: &str, version: i64) -> bool {
        self.followed.insert((subject.to_owned(), version))
    }

    /// Adds the schema text a reference named `name` resolved to, under the full name it
    /// declares; a name two references define differently is an error.
    pub fn add(&mut self, name: &str, text: &str) -> Result<(), String> {
        let json: Json =
            serde_json::from_str(text).map_err(|e| format!("the schema referenced as `{name}` is not JSON: {e}"))?;
        let full = full_name(&json, "").unwrap_or_else(|| name.to_owned());
        if self.by_name.get(&full).is_some_and(|defined| defined != &json) {
            return Err(format!("references define `{full}` twice, differently"));
        }
        self.by_name.insert(full, json);
        Ok(())
    }

    /// `text` with every referenced type inlined ([`inline`]).
    pub fn inline_text(&self, text: &str) -> Result<String, String> {
        let json: Json = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        Ok(inline(&json, &self.by_name).to_string())
    }
}

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

/// The full name a named type's definition (`record`, `enum`, `fixed`) declares, if it is one.
pub fn full_name(definition: &Json, enclosing_namespace: &str) -> Option<String> {
    let object = definition.as_object()?;
    if !matches!(object.get("type").and_then(Json::as_str), Some("record" | "error" | "enum" | "fixed")) {
        return None;
    }
    let name = object.get("name")?.as_str()?;
    Some(qualify(name, object.get("namespace").and_then(Json::as_str).unwrap_or(enclosing_namespace)))
}

fn qualify(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() { name.to_owned() } else { format!("{namespace}.{name}") }
}

fn namespace_of(full_name: &str) -> &str {
    full_name.rsplit_once('.').map_or("", |(namespace, _)| namespace)
}

/// `schema` with every type named in `referenced` (full name → definition) but not defined in
/// `schema` itself written out at its first use. Names found in neither are left for the
/// parser to report.
pub fn inline(schema: &Json, referenced: &BTreeMap<String, Json>) -> Json {
    let mut defined = HashSet::new();
    walk(schema, "", referenced, &mut defined)
}

fn walk(schema: &Json, namespace: &str, referenced: &BTreeMap<String, Json>, defined: &mut HashSet<String>) -> Json {
    match schema {
        Json::String(name) if !PRIMITIVES.contains(&name.as_str()) => {
            let full = qualify(name, namespace);
            let full = if referenced.contains_key(&full) || name.contains('.') { full } else { name.clone() };
            match referenced.get(&full) {
                Some(definition) if !defined.contains(&full) => {
                    let mut definition = definition.clone();
                    if let Some(object) = definition.as_object_mut() {
                        // Pinned to its registered namespace wherever it lands.
                        object.insert("namespace".into(), Json::String(namespace_of(&full).to_owned()));
                        object.insert("name".into(), Json::String(full.rsplit('.').next().unwrap_or(&full).to_owned()));
                    }
                    walk(&definition, namespace, referenced, defined)
                }
                _ => schema.clone(),
            }
        }
        Json::Array(branches) => {
            Json::Array(branches.iter().map(|b| walk(b, namespace, referenced, defined)).collect())
        }
        Json::Object(object) => {
            let own = full_name(schema, namespace);
            let inner = match &own {
                Some(full) => {
                    defined.insert(full.clone());
                    namespace_of(full).to_owned()
                }
                None => namespace.to_owned(),
            };
            let mut out = Map::new();
            for (key, value) in object {
                let value = match key.as_str() {
                    "fields" if own.is_some() => Json::Array(
                        value
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|field| match field.as_object() {
                                Some(f) => {
                                    let mut f = f.clone();
                                    if let Some(t) = f.get("type").cloned() {
                                        f.insert("type".into(), walk(&t, &inner, referenced, defined));
                                    }
                                    Json::Object(f)
                                }
                                None => field.clone(),
                            })
                            .collect(),
                    ),
                    "items" | "values" => walk(value, &inner, referenced, defined),
                    "type" if own.is_none() => walk(value, &inner, referenced, defined),
                    _ => value.clone(),
                };
                out.insert(key.clone(), value);
            }
            Json::Object(out)
        }
        _ => schema.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn address() -> (String, Json) {
        let definition = json!({"type": "record", "name": "Address", "namespace": "com.acme.common",
            "fields": [{"name": "city", "type": "string"}]});
        (full_name(&definition, "").unwrap(), definition)
    }

    #[test]
    fn the_first_use_gets_the_definition_and_later_uses_stay_names() {
        let referenced = BTreeMap::from([address()]);
        let order = json!({"type": "record", "name": "Order", "namespace": "com.acme.orders", "fields": [
            {"name": "ship_to", "type": "com.acme.common.Address"},
            {"name": "bill_to", "type": ["null", "com.acme.common.Address"]},
            {"name": "stops", "type": {"type": "array", "items": "com.acme.common.Address"}}]});
        let inlined = inline(&order, &referenced);
        assert_eq!(inlined["fields"][0]["type"]["name"], "Address");
        assert_eq!(inlined["fields"][0]["type"]["namespace"], "com.acme.common");
        assert_eq!(inlined["fields"][1]["type"][1], "com.acme.common.Address");
        assert_eq!(inlined["fields"][2]["type"]["items"], "com.acme.common.Address");
        let parsed = apache_avro::Schema::parse(&inlined).unwrap();
        assert!(matches!(parsed, apache_avro::Schema::Record(_)));
    }

    #[test]
    fn a_short_name_resolves_in_the_enclosing_namespace() {
        let referenced = BTreeMap::from([address()]);
        let order = json!({"type": "record", "name": "Order", "namespace": "com.acme.common",
            "fields": [{"name": "ship_to", "type": "Address"}]});
        let inlined = inline(&order, &referenced);
        assert_eq!(inlined["fields"][0]["type"]["type"], "record");
        apache_avro::Schema::parse(&inlined).unwrap();
        // Elsewhere the short name is another type: left for the parser to report.
        let elsewhere = json!({"type": "record", "name": "Order", "namespace": "com.other",
            "fields": [{"name": "ship_to", "type": "Address"}]});
        assert_eq!(inline(&elsewhere, &referenced)["fields"][0]["type"], "Address");
    }

    #[test]
    fn references_of_references_and_a_type_defined_in_place_are_handled() {
        let country = json!({"type": "enum", "name": "Country", "namespace": "geo", "symbols": ["NL", "DE"]});
        let address = json!({"type": "record", "name": "Address", "namespace": "com.acme.common",
            "fields": [{"name": "country", "type": "geo.Country"}]});
        let referenced =
            BTreeMap::from([(full_name(&country, "").unwrap(), country), (full_name(&address, "").unwrap(), address)]);
        let order = json!({"type": "record", "name": "Order", "fields": [
            {"name": "origin", "type": "geo.Country"},
            {"name": "ship_to", "type": "com.acme.common.Address"}]});
        let inlined = inline(&order, &referenced);
        assert_eq!(inlined["fields"][0]["type"]["type"], "enum");
        assert_eq!(inlined["fields"][1]["type"]["fields"][0]["type"], "geo.Country", "defined once, then named");
        apache_avro::Schema::parse(&inlined).unwrap();
    }
}
