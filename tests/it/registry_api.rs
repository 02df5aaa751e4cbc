//! The registry's REST API, called over HTTP like any Confluent client would, and every
//! compatibility level accepting and rejecting as Confluent documents.

use happystreams::connectors::registry::{RegistryStore, RunningRegistry};
use serde_json::{Value as Json, json};

struct Api {
    running: RunningRegistry,
    http: reqwest::Client,
}

impl Api {
    async fn start(store: RegistryStore) -> Api {
        let running = RunningRegistry::start("127.0.0.1:0".parse().unwrap(), store).await.unwrap();
        Api { running, http: reqwest::Client::new() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Json>) -> (u16, Json) {
        let mut request = self.http.request(method, format!("{}{path}", self.running.url));
        if let Some(body) = body {
            request = request.header("Content-Type", "application/vnd.schemaregistry.v1+json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Json::Null))
    }

    async fn get(&self, path: &str) -> (u16, Json) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Json) -> (u16, Json) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Json) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    async fn register(&self, subject: &str, schema: &Json) -> (u16, Json) {
        self.post(&format!("/subjects/{subject}/versions"), json!({"schema": schema.to_string()})).await
    }

    async fn set_level(&self, subject: &str, level: &str) {
        let (status, body) =
            self.call(reqwest::Method::PUT, &format!("/config/{subject}"), Some(json!({"compatibility": level}))).await;
        assert_eq!((status, body), (200, json!({"compatibility": level})));
    }
}

fn record(fields: Json) -> Json {
    json!({"type": "record", "name": "Event", "namespace": "t", "fields": fields})
}

#[tokio::test]
async fn subjects_versions_ids_lookup_and_deletes_follow_the_confluent_api() {
    let api = Api::start(RegistryStore::in_memory()).await;
    let v1 = record(json!([{"name": "a", "type": "string"}]));
    let v2 = record(json!([{"name": "a", "type": "string"}, {"name": "b", "type": "int", "default": 0}]));

    assert_eq!(api.get("/subjects").await, (200, json!([])));
    assert_eq!(api.register("events-value", &v1).await, (200, json!({"id": 1})));
    assert_eq!(api.register("events-value", &v1).await, (200, json!({"id": 1})), "re-registering is idempotent");
    assert_eq!(api.register("events-value", &v2).await, (200, json!({"id": 2})));
    assert_eq!(api.register("other-value", &v2).await, (200, json!({"id": 2})), "same schema, same id across subjects");
    assert_eq!(api.get("/subjects").await, (200, json!(["events-value", "other-value"])));
    assert_eq!(api.get("/subjects/events-value/versions").await, (200, json!([1, 2])));

    let (status, latest) = api.get("/subjects/events-value/versions/latest").await;
    assert_eq!(status, 200);
    assert_eq!(
        (latest["subject"].clone(), latest["version"].clone(), latest["id"].clone()),
        (json!("events-value"), json!(2), json!(2))
    );
    let stored: Json = serde_json::from_str(latest["schema"].as_str().unwrap()).unwrap();
    assert_eq!(stored, v2);
    assert_eq!(api.get("/subjects/events-value/versions/1/schema").await, (200, v1.clone()));
    let (status, by_id) = api.get("/schemas/ids/1").await;
    assert_eq!((status, serde_json::from_str::<Json>(by_id["schema"].as_str().unwrap()).unwrap()), (200, v1.clone()));
    assert_eq!(
        api.get("/schemas/ids/2/versions").await,
        (200, json!([{"subject": "events-value", "version": 2}, {"subject": "other-value", "version": 1}]))
    );
    assert_eq!(api.get("/schemas/types").await, (200, json!(["AVRO"])));

    let (status, found) = api.post("/subjects/events-value", json!({"schema": v1.to_string()})).await;
    assert_eq!((status, found["version"].clone(), found["id"].clone()), (200, json!(1), json!(1)));

    // Confluent error codes.
    assert_eq!(api.get("/subjects/nope/versions").await.1["error_code"], 40401);
    assert_eq!(api.get("/subjects/nope/versions").await.0, 404);
    assert_eq!(api.get("/subjects/events-value/versions/9").await.1["error_code"], 40402);
    assert_eq!(api.get("/schemas/ids/99").await.1["error_code"], 40403);
    assert_eq!(api.get("/subjects/events-value/versions/zero").await.1["error_code"], 42202);
    let unknown = record(json!([{"name": "z", "type": "long"}]));
    assert_eq!(api.post("/subjects/events-value", json!({"schema": unknown.to_string()})).await.1["error_code"], 40403);
    let (status, invalid) =
        api.post("/subjects/events-value/versions", json!({"schema": "{\"type\": \"nonsense\"}"})).await;
    assert_eq!((status, invalid["error_code"].clone()), (422, json!(42201)));
    let (status, proto) = api
        .post("/subjects/p-value/versions", json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}))
        .await;
    assert_eq!((status, proto["error_code"].clone()), (422, json!(42201)));

    // Soft delete of a version, then permanent; subject deletes.
    assert_eq!(api.delete("/subjects/events-value/versions/1?permanent=true").await.1["error_code"], 40407);
    assert_eq!(api.delete("/subjects/events-value/versions/1").await, (200, json!(1)));
    assert_eq!(api.delete("/subjects/events-value/versions/1").await.1["error_code"], 40406);
    assert_eq!(api.get("/subjects/events-value/versions").await, (200, json!([2])));
    assert_eq!(api.get("/subjects/events-value/versions?deleted=true").await, (200, json!([1, 2])));
    assert_eq!(api.delete("/subjects/events-value/versions/1?permanent=true").await, (200, json!(1)));
    assert_eq!(api.get("/subjects/events-value/versions?deleted=true").await, (200, json!([2])));
    assert_eq!(api.delete("/subjects/other-value?permanent=true").await.1["error_code"], 40405);
    assert_eq!(api.delete("/subjects/other-value").await, (200, json!([1])));
    assert_eq!(api.get("/subjects").await, (200, json!(["events-value"])));
    assert_eq!(api.get("/subjects?deleted=true").await, (200, json!(["events-value", "other-value"])));
    assert_eq!(api.delete("/subjects/other-value?permanent=true").await, (200, json!([1])));
    assert_eq!(api.get("/schemas/ids/2").await.0, 200, "ids stay readable while any subject uses them");
    api.running.shutdown().await.unwrap();
}

/// Confluent clients read `error_code` from every error answer: unknown routes, methods a route
/// does not take and bodies over the limit answer JSON too, not the framework's plain text.
#[tokio::test]
async fn every_error_answer_is_json_with_an_error_code() {
    let api = Api::start(RegistryStore::in_memory()).await;
    let (status, body) = api.get("/no/such/route").await;
    assert_eq!((status, body["error_code"].as_u64()), (404, Some(404)), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    let (status, body) = api.call(reqwest::Method::PATCH, "/subjects", None).await;
    assert_eq!((status, body["error_code"].as_u64()), (405, Some(405)), "{body}");
    let huge = json!({"schema": "x".repeat(3 << 20)});
    let (status, body) = api.post("/subjects/big-value/versions", huge).await;
    assert_eq!((status, body["error_code"].as_u64()), (413, Some(413)), "{body}");
    // The routes' own errors keep their Confluent codes.
    let (status, body) = api.get("/subjects/missing/versions/1").await;
    assert_eq!((status, body["error_code"].as_u64()), (404, Some(40401)), "{body}");
}

#[tokio::test]
async fn config_endpoints_set_global_and_subject_levels() {
    let api = Api::start(RegistryStore::in_memory()).await;
    assert_eq!(api.get("/config").await, (200, json!({"compatibilityLevel": "BACKWARD"})));
    let (status, body) = api.call(reqwest::Method::PUT, "/config", Some(json!({"compatibility": "FULL"}))).await;
    assert_eq!((status, body), (200, json!({"compatibility": "FULL"})));
    assert_eq!(api.get("/config/s").await.1["error_code"], 40408);
    assert_eq!(api.get("/config/s?defaultToGlobal=true").await, (200, json!({"compatibilityLevel": "FULL"})));
    api.set_level("s", "NONE").await;
    assert_eq!(api.get("/config/s").await, (200, json!({"compatibilityLevel": "NONE"})));
    assert_eq!(api.delete("/config/s").await, (200, json!({"compatibilityLevel": "NONE"})));
    let (status, bad) = api.call(reqwest::Method::PUT, "/config", Some(json!({"compatibility": "SOMETIMES"}))).await;
    assert_eq!((status, bad["error_code"].clone()), (422, json!(42203)));
    api.running.shutdown().await.unwrap();
}

/// Registers `history` under a subject with `level`, then asks for `candidate`: through the
/// compatibility endpoint and through registration.
async fn verdict(level: &str, history: &[Json], candidate: &Json) -> bool {
    let api = Api::start(RegistryStore::in_memory()).await;
    api.set_level("s", "NONE").await;
    for schema in history {
        assert_eq!(api.register("s", schema).await.0, 200);
    }
    api.set_level("s", level).await;
    let (status, checked) =
        api.post("/compatibility/subjects/s/versions?verbose=true", json!({"schema": candidate.to_string()})).await;
    assert_eq!(status, 200, "{checked}");
    let (status, registered) = api.register("s", candidate).await;
    let accepted = status == 200;
    if !accepted {
        assert_eq!((status, registered["error_code"].clone()), (409, json!(409)), "{registered}");
    }
    assert_eq!(checked["is_compatible"], json!(accepted), "compatibility endpoint and registration agree: {checked}");
    if !accepted {
        assert!(!checked["messages"].as_array().unwrap().is_empty(), "verbose check explains the rejection");
    }
    api.running.shutdown().await.unwrap();
    accepted
}

fn fields(spec: &[(&str, Option<i32>)]) -> Json {
    record(Json::Array(
        spec.iter()
            .map(|(name, default)| match default {
                Some(d) => json!({"name": name, "type": "int", "default": d}),
                None => json!({"name": name, "type": "int"}),
            })
            .collect(),
    ))
}

#[tokio::test]
async fn backward_accepts_added_defaults_and_removed_fields_but_not_added_required_fields() {
    let v1 = fields(&[("a", None)]);
    assert!(verdict("BACKWARD", &[v1.clone()], &fields(&[("a", None), ("b", Some(0))])).await);
    assert!(!verdict("BACKWARD", &[v1.clone()], &fields(&[("a", None), ("b", None)])).await);
    assert!(
        verdict("BACKWARD", &[fields(&[("a", None), ("b", None)])], &v1).await,
        "removing a field is backward compatible"
    );
}

#[tokio::test]
async fn forward_rejects_removing_a_field_old_readers_need() {
    let v1 = fields(&[("a", None), ("b", None)]);
    assert!(!verdict("FORWARD", &[v1.clone()], &fields(&[("a", None)])).await);
    assert!(
        verdict("FORWARD", &[v1.clone()], &fields(&[("a", None), ("b", None), ("c", None)])).await,
        "adding a field is forward compatible"
    );
}

#[tokio::test]
async fn full_needs_both_directions() {
    let v1 = fields(&[("a", None)]);
    assert!(verdict("FULL", &[v1.clone()], &fields(&[("a", None), ("b", Some(0))])).await);
    assert!(!verdict("FULL", &[v1.clone()], &fields(&[("a", None), ("b", None)])).await);
    assert!(!verdict("FULL", &[fields(&[("a", None), ("b", None)])], &v1).await);
}

#[tokio::test]
async fn transitive_levels_check_every_version_not_just_the_latest() {
    // BACKWARD: v3 can read v2 (which has b) but not v1 (no b, and v3's b has no default).
    let history = [fields(&[("a", None)]), fields(&[("a", None), ("b", Some(0))])];
    let v3 = fields(&[("a", None), ("b", None)]);
    assert!(verdict("BACKWARD", &history, &v3).await);
    assert!(!verdict("BACKWARD_TRANSITIVE", &history, &v3).await);
    assert!(verdict("FULL", &history, &v3).await);
    assert!(!verdict("FULL_TRANSITIVE", &history, &v3).await);
    // FORWARD: v2 reads v3 (b defaults) but v1 (b required) cannot.
    let history = [fields(&[("a", None), ("b", None)]), fields(&[("a", None), ("b", Some(1))])];
    let v3 = fields(&[("a", None)]);
    assert!(verdict("FORWARD", &history, &v3).await);
    assert!(!verdict("FORWARD_TRANSITIVE", &history, &v3).await);
}

#[tokio::test]
async fn none_accepts_anything_and_enum_symbol_removal_is_not_backward() {
    let v1 = fields(&[("a", None)]);
    let retyped = record(json!([{"name": "a", "type": "string"}]));
    assert!(verdict("NONE", &[v1.clone()], &retyped).await);
    assert!(!verdict("BACKWARD", &[v1], &retyped).await);
    let colors = |symbols: &[&str]| {
        record(json!([{"name": "c", "type": {"type": "enum", "name": "Color", "symbols": symbols}}]))
    };
    assert!(!verdict("BACKWARD", &[colors(&["RED", "GREEN"])], &colors(&["RED"])).await);
    assert!(verdict("BACKWARD", &[colors(&["RED"])], &colors(&["RED", "GREEN"])).await);
}

#[tokio::test]
async fn ids_and_versions_survive_a_restart_on_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = fields(&[("a", None)]);
    let v2 = fields(&[("a", None), ("b", Some(0))]);
    let api = Api::start(RegistryStore::open(dir.path()).unwrap()).await;
    api.register("s", &v1).await;
    assert_eq!(api.register("s", &v2).await, (200, json!({"id": 2})));
    api.running.shutdown().await.unwrap();
    let api = Api::start(RegistryStore::open(dir.path()).unwrap()).await;
    assert_eq!(api.get("/subjects/s/versions").await, (200, json!([1, 2])));
    assert_eq!(api.register("s", &v2).await, (200, json!({"id": 2})));
    assert_eq!(api.register("t", &fields(&[("x", None)])).await, (200, json!({"id": 3})));
    api.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn schemas_check_uses_every_version_a_transitive_level_requires() {
    use happystreams::connectors::registry::RegistryConfig;
    use happystreams::connectors::registry::client::{CheckOutcome, SchemaFile, check};
    let api = Api::start(RegistryStore::in_memory()).await;
    api.set_level("t-value", "NONE").await;
    api.register("t-value", &fields(&[("a", None)])).await;
    api.register("t-value", &fields(&[("a", None), ("b", Some(0))])).await;
    api.set_level("t-value", "BACKWARD_TRANSITIVE").await;
    let config = RegistryConfig { url: api.running.url.clone(), ..RegistryConfig::default() };
    let file = SchemaFile {
        path: "t-value.avsc".into(),
        subject: "t-value".into(),
        schema: fields(&[("a", None), ("b", None)]).to_string(),
    };
    // Compatible with the latest version, but not with version 1.
    assert!(
        matches!(check(&config, &file).await.unwrap(), CheckOutcome::Incompatible(reasons) if reasons.iter().any(|r| r.contains("version 1")))
    );
    let new_subject = SchemaFile { subject: "fresh-value".into(), ..file };
    assert_eq!(check(&config, &new_subject).await.unwrap(), CheckOutcome::NewSubject);
    api.running.shutdown().await.unwrap();
}

/// Schema references as Confluent serves them: a registration names the subject and version
/// that define a type; the version answers with its references; `referencedby` lists who uses a
/// version, which then cannot be deleted (42206) until they are gone.
#[tokio::test]
async fn schema_references_register_resolve_and_guard_the_referenced_version() {
    let api = Api::start(RegistryStore::in_memory()).await;
    let address = json!({"type": "record", "name": "Address", "namespace": "acme",
        "fields": [{"name": "city", "type": "string"}]});
    let order = json!({"type": "record", "name": "Order", "namespace": "shop",
        "fields": [{"name": "ship_to", "type": "acme.Address"}]});
    let reference = json!([{"name": "acme.Address", "subject": "acme.address", "version": 1}]);
    let with_references = json!({"schema": order.to_string(), "references": reference});
    let (status, body) = api.post("/subjects/shop.orders-value/versions", with_references.clone()).await;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42201)), "the referenced subject is missing: {body}");
    let (status, address_id) = api.register("acme.address", &address).await;
    assert_eq!(status, 200, "{address_id}");
    let (status, body) = api.post("/subjects/shop.orders-value/versions", with_references.clone()).await;
    assert_eq!(status, 200, "{body}");
    let order_id = body["id"].clone();
    assert_ne!(order_id, address_id["id"]);

    let (_, by_id) = api.get(&format!("/schemas/ids/{order_id}")).await;
    assert_eq!(by_id["references"], reference, "{by_id}");
    let (_, version) = api.get("/subjects/shop.orders-value/versions/1").await;
    assert_eq!(version["references"], reference, "{version}");
    let (_, plain) = api.get("/subjects/acme.address/versions/1").await;
    assert!(plain.get("references").is_none(), "no references, no key: {plain}");
    let (status, lookup) = api.post("/subjects/shop.orders-value", with_references.clone()).await;
    assert_eq!((status, lookup["id"].clone()), (200, order_id.clone()), "{lookup}");
    // The same text without its references does not parse: `acme.Address` is unknown.
    let (status, body) = api.register("shop.orders-value", &order).await;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42201)), "{body}");

    assert_eq!(api.get("/subjects/acme.address/versions/1/referencedby").await, (200, json!([order_id])));
    for path in ["/subjects/acme.address/versions/1", "/subjects/acme.address"] {
        let (status, body) = api.delete(path).await;
        assert_eq!((status, body["error_code"].clone()), (422, json!(42206)), "{path}: {body}");
    }
    assert_eq!(api.get("/subjects/acme.address/versions").await, (200, json!([1])), "nothing was deleted");
    assert_eq!(api.delete("/subjects/shop.orders-value").await, (200, json!([1])));
    assert_eq!(api.get("/subjects/acme.address/versions/1/referencedby").await, (200, json!([])));
    // Soft-deleted, the referrer's records may still be read: the version it references stays.
    let (status, body) = api.delete("/subjects/acme.address/versions/1").await;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42206)), "{body}");
    assert_eq!(api.delete("/subjects/shop.orders-value?permanent=true").await, (200, json!([1])));
    assert_eq!(api.delete("/subjects/acme.address/versions/1").await, (200, json!(1)));
    api.running.shutdown().await.unwrap();
}
