//! The Confluent-compatible HTTP API over a [`RegistryStore`].
//!
//! Follows Confluent Schema Registry's documented REST API for Avro: paths, query parameters
//! (`deleted`, `permanent`, `verbose`, `defaultToGlobal`), response shapes and error bodies
//! (`{"error_code": 40401, "message": ...}` with the code's first three digits as HTTP status).
//! Schema references (`references` in a registration, `/referencedby`, 42206 for deleting a
//! referenced version) are supported. Not supported (answered with a clear 42201): schema types
//! other than AVRO.

use super::compat::CompatibilityLevel;
use super::store::{RegistryError, RegistryStore, SchemaReference, VersionRef};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

type Shared = Arc<Mutex<RegistryStore>>;
type Params = Query<HashMap<String, String>>;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

fn respond(body: Json) -> Response {
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let mut response = respond(json!({"error_code": self.code, "message": self.message}));
        *response.status_mut() = StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response
    }
}

type ApiResult = Result<Response, RegistryError>;

fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn lock(store: &Shared) -> Result<std::sync::MutexGuard<'_, RegistryStore>, RegistryError> {
    store.lock().map_err(|_| RegistryError { code: 50001, message: "registry store lock poisoned".into() })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: String,
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<SchemaReference>,
}

fn schema_request(body: &Bytes) -> Result<(String, Vec<SchemaReference>), RegistryError> {
    let request: SchemaRequest = serde_json::from_slice(body).map_err(|e| RegistryError {
        code: 42201,
        message: format!("Invalid request body, expected {{\"schema\": \"<schema JSON as a string>\"}}: {e}"),
    })?;
    match request.schema_type.as_deref() {
        None | Some("AVRO") => {}
        Some(other) => {
            return Err(RegistryError {
                code: 42201,
                message: format!("Invalid schema type {other}: this registry stores AVRO schemas only"),
            });
        }
    }
    Ok((request.schema, request.references))
}

fn level_request(body: &Bytes) -> Result<CompatibilityLevel, RegistryError> {
    let json: Json = serde_json::from_slice(body).map_err(|e| RegistryError::invalid_level(&e.to_string()))?;
    let text = json
        .get("compatibility")
        .or_else(|| json.get("compatibilityLevel"))
        .and_then(Json::as_str)
        .ok_or_else(|| RegistryError::invalid_level("body must be {\"compatibility\": \"<LEVEL>\"}"))?;
    text.parse().map_err(|e: String| RegistryError::invalid_level(&e))
}

fn parse_id(id: &str) -> Result<u32, RegistryError> {
    id.parse().map_err(|_| RegistryError { code: 40403, message: "Schema not found".into() })
}

async fn root() -> Response {
    respond(json!({}))
}

async fn schema_types() -> Response {
    respond(json!(["AVRO"]))
}

async fn schema_by_id(State(store): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let (schema, references) = lock(&store)?.schema_with_references(parse_id(&id)?)?;
    let mut body = json!({ "schema": schema });
    if !references.is_empty() {
        body["references"] = json!(references);
    }
    Ok(respond(body))
}

async fn raw_schema_by_id(State(store): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let schema = lock(&store)?.schema_by_id(parse_id(&id)?)?;
    Ok(respond(serde_json::from_str(&schema).unwrap_or(Json::String(schema))))
}

async fn id_versions(State(store): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let pairs = lock(&store)?.id_versions(parse_id(&id)?)?;
    Ok(respond(Json::Array(
        pairs.into_iter().map(|(subject, version)| json!({"subject": subject, "version": version})).collect(),
    )))
}

async fn subjects(State(store): State<Shared>, Query(params): Params) -> ApiResult {
    Ok(respond(json!(lock(&store)?.subjects(flag(&params, "deleted")))))
}

async fn versions(State(store): State<Shared>, Path(subject): Path<String>, Query(params): Params) -> ApiResult {
    Ok(respond(json!(lock(&store)?.versions(&subject, flag(&params, "deleted"))?)))
}

async fn register(State(store): State<Shared>, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let (schema, references) = schema_request(&body)?;
    let id = lock(&store)?.register_with(&subject, &schema, &references)?;
    tracing::info!(subject, id, "schema registered");
    Ok(respond(json!({ "id": id })))
}

async fn version(
    State(store): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    let found = lock(&store)?.version(&subject, VersionRef::parse(&version)?, flag(&params, "deleted"))?;
    Ok(respond(json!(found)))
}

async fn version_schema(State(store): State<Shared>, Path((subject, version)): Path<(String, String)>) -> ApiResult {
    let found = lock(&store)?.version(&subject, VersionRef::parse(&version)?, false)?;
    Ok(respond(serde_json::from_str(&found.schema).unwrap_or(Json::String(found.schema))))
}

async fn delete_version(
    State(store): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult {
    let deleted = lock(&store)?.delete_version(&subject, VersionRef::parse(&version)?, flag(&params, "permanent"))?;
    Ok(respond(json!(deleted)))
}

async fn referenced_by(State(store): State<Shared>, Path((subject, version)): Path<(String, String)>) -> ApiResult {
    Ok(respond(json!(lock(&store)?.referenced_by(&subject, VersionRef::parse(&version)?)?)))
}

async fn lookup(State(store): State<Shared>, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let (schema, references) = schema_request(&body)?;
    Ok(respond(json!(lock(&store)?.lookup(&subject, &schema, &references)?)))
}

async fn delete_subject(State(store): State<Shared>, Path(subject): Path<String>, Query(params): Params) -> ApiResult {
    Ok(respond(json!(lock(&store)?.delete_subject(&subject, flag(&params, "permanent"))?)))
}

async fn get_global_config(State(store): State<Shared>) -> ApiResult {
    Ok(respond(json!({ "compatibilityLevel": lock(&store)?.global_level() })))
}

async fn put_global_config(State(store): State<Shared>, body: Bytes) -> ApiResult {
    let level = level_request(&body)?;
    lock(&store)?.set_global_level(level)?;
    Ok(respond(json!({ "compatibility": level })))
}

async fn get_subject_config(
    State(store): State<Shared>,
    Path(subject): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let store = lock(&store)?;
    match store.subject_level(&subject) {
        Some(level) => Ok(respond(json!({ "compatibilityLevel": level }))),
        None if flag(&params, "defaultToGlobal") => Ok(respond(json!({ "compatibilityLevel": store.global_level() }))),
        None => Err(RegistryError {
            code: 40408,
            message: format!("Subject '{subject}' does not have subject-level compatibility configured"),
        }),
    }
}

async fn put_subject_config(State(store): State<Shared>, Path(subject): Path<String>, body: Bytes) -> ApiResult {
    let level = level_request(&body)?;
    lock(&store)?.set_subject_level(&subject, Some(level))?;
    Ok(respond(json!({ "compatibility": level })))
}

async fn delete_subject_config(State(store): State<Shared>, Path(subject): Path<String>) -> ApiResult {
    match lock(&store)?.set_subject_level(&subject, None)? {
        Some(previous) => Ok(respond(json!({ "compatibilityLevel": previous }))),
        None => Err(RegistryError::subject_not_found(&subject)),
    }
}

fn compatibility_response(messages: Vec<String>, verbose: bool) -> Response {
    let mut body = json!({ "is_compatible": messages.is_empty() });
    if verbose {
        body["messages"] = json!(messages);
    }
    respond(body)
}

async fn check_version(
    State(store): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult {
    let (schema, references) = schema_request(&body)?;
    let version = VersionRef::parse(&version)?;
    let messages = lock(&store)?.check(&subject, &schema, &references, Some(version))?;
    Ok(compatibility_response(messages, flag(&params, "verbose")))
}

async fn check_all(
    State(store): State<Shared>,
    Path(subject): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> ApiResult {
    let (schema, references) = schema_request(&body)?;
    let messages = lock(&store)?.check(&subject, &schema, &references, None)?;
    Ok(compatibility_response(messages, flag(&params, "verbose")))
}

async fn mode() -> Response {
    respond(json!({ "mode": "READWRITE" }))
}

/// The API routes over a shared store.
pub fn router(store: RegistryStore) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/_health", get(root))
        .route("/mode", get(mode))
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(id_versions))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version).delete(delete_version))
        .route("/subjects/{subject}/versions/{version}/schema", get(version_schema))
        .route("/subjects/{subject}/versions/{version}/referencedby", get(referenced_by))
        .route("/config", get(get_global_config).put(put_global_config))
        .route("/config/{subject}", get(get_subject_config).put(put_subject_config).delete(delete_subject_config))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(check_version))
        .route("/compatibility/subjects/{subject}/versions", post(check_all))
        .with_state(Arc::new(Mutex::new(store)))
        .layer(axum::middleware::map_response(json_errors))
}

/// Every error answer is JSON with an `error_code`, as Confluent clients expect. The routes'
/// own errors already are; this turns the framework's (an unknown route, a method a route does
/// not take, a body over the limit) into `{"error_code": <HTTP status>, "message": ...}`.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.to_str().is_ok_and(|v| v.contains("json")));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.map(|b| String::from_utf8_lossy(&b).trim().to_owned());
    let message = match text {
        Ok(text) if !text.is_empty() => text,
        _ => format!("HTTP {} {}", status.as_u16(), status.canonical_reason().unwrap_or_default()),
    };
    let mut answer = respond(json!({"error_code": status.as_u16(), "message": message}));
    *answer.status_mut() = status;
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        answer.headers_mut().insert(header::ALLOW, allow.clone());
    }
    answer
}

/// A registry server running on a tokio task; dropping it does not stop it, call
/// [`RunningRegistry::shutdown`].
#[derive(Debug)]
pub struct RunningRegistry {
    /// Base URL, e.g. `http://127.0.0.1:8081`.
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

/// How a registry server is reached and guarded beyond its address.
#[derive(Debug, Clone, Default)]
pub struct ServerSecurity {
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<crate::http::TlsFiles>,
    /// Require basic authentication: `read-only` users may read (and look up and check schemas),
    /// `admin` users may also register, delete and configure.
    pub users: Option<Arc<crate::http::Users>>,
}

/// Whether a request changes the registry (needs the admin role). Looking a schema up
/// (`POST /subjects/{subject}`) and checking compatibility only read.
fn writes(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    match *method {
        Method::GET | Method::HEAD => false,
        Method::POST => {
            let lookup = path.strip_prefix("/subjects/").is_some_and(|subject| !subject.contains('/'));
            !(lookup || path.starts_with("/compatibility/"))
        }
        _ => true,
    }
}

impl RunningRegistry {
    /// Binds `addr` (port 0 = any free port) and serves `store` until shut down.
    pub async fn start(addr: SocketAddr, store: RegistryStore) -> std::io::Result<RunningRegistry> {
        Self::start_with(addr, store, &ServerSecurity::default()).await
    }

    /// [`RunningRegistry::start`] with TLS and users.
    pub async fn start_with(
        addr: SocketAddr,
        store: RegistryStore,
        security: &ServerSecurity,
    ) -> std::io::Result<RunningRegistry> {
        let mut app = router(store);
        if let Some(users) = &security.users {
            let gate = crate::http::basic_auth::Gate { users: users.clone(), open: &["/_health"], writes };
            app = app.layer(axum::middleware::from_fn_with_state(gate, crate::http::basic_auth::guard));
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let (bound, task) = crate::http::serve(addr, app, security.tls.as_ref(), async move {
            let _ = stopped.await;
        })
        .await?;
        Ok(RunningRegistry { url: bound.url(), addr: bound.addr, stop: Some(stop), task })
    }

    /// Stops accepting requests and waits for in-flight ones.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Waits until the server stops (it only stops on shutdown or an I/O error).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task.await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}
