//! The query API on every instance's HTTP server:
//!
//! - `GET /v1/stores`: each store, its kind, its partitions, their owners, phases and lag;
//! - `GET /v1/stores/{store}/keys/{key}` (`?as_of=` for versioned tables);
//! - `GET /v1/stores/{store}/range?from=&to=&limit=` (keys as JSON text, both ends included);
//! - `GET /v1/stores/{store}/windows?key=&from=&to=` (windows whose start is in `from..=to`, ms).
//!
//! Any instance answers any query ([`super::gather`]); when some partition cannot answer, the
//! answer is `503` with `Retry-After` and the reason (`restoring`, `rebalancing`,
//! `not_owner_yet`, `starting`).

use super::catalog::{Catalog, StoreInfo, StoreKind};
use super::gather::{self, LocalError, Merged};
use super::local::{self, Phase};
use super::read::{self, BadQuery, Query};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{OriginalUri, Path, Query as Params};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Query parameters of every route.
#[derive(Debug, Default, Deserialize)]
pub struct QueryParams {
    /// `local`: only this instance's partitions (what instances ask each other).
    scope: Option<String>,
    /// A restoring partition may answer when this many changelog records or fewer are left.
    max_lag: Option<u64>,
    /// Versioned tables: the row valid at this time (ms since the epoch).
    as_of: Option<i64>,
    /// Range: first key (JSON text).
    from: Option<String>,
    /// Range: last key (JSON text).
    to: Option<String>,
    /// Range: at most this many entries (default 1000, at most 100,000).
    limit: Option<usize>,
    /// Windows: the key (JSON text).
    key: Option<String>,
}

/// The routes.
pub fn router() -> Router {
    Router::new()
        .route("/v1/stores", get(stores))
        .route("/v1/stores/{store}/keys/{key}", get(key))
        .route("/v1/stores/{store}/range", get(range))
        .route("/v1/stores/{store}/windows", get(windows))
        .route("/v1/outputs", get(outputs))
}

/// Records this instance wrote per output topic.
fn local_outputs() -> BTreeMap<String, u64> {
    crate::runtime::emitter::RECORDS_OUT.totals().into_iter().collect()
}

/// Records written per output topic by every instance (an instance that does not answer counts
/// nothing).
pub async fn outputs_everywhere(authorization: Option<&header::HeaderValue>) -> BTreeMap<String, u64> {
    let mut totals = local_outputs();
    for peer in gather::ask_peers::<Json>("/v1/outputs", authorization).await {
        let counts = peer.get("outputs").and_then(Json::as_object).cloned().unwrap_or_default();
        for (topic, count) in counts {
            *totals.entry(topic).or_default() += count.as_u64().unwrap_or(0);
        }
    }
    totals
}

/// `/v1/outputs`: records written per output topic, by every instance (`scope=local`: this one).
async fn outputs(params: Result<Params<QueryParams>, QueryRejection>, headers: HeaderMap) -> Response {
    let params = match parameters(params) {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let totals = if params.scope.as_deref() == Some("local") {
        local_outputs()
    } else {
        outputs_everywhere(headers.get(header::AUTHORIZATION)).await
    };
    axum::Json(json!({"outputs": totals})).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error_code": status.as_u16(), "message": message.into()}))).into_response()
}

fn unavailable(reason: &str, message: String) -> Response {
    let body = json!({"error_code": 503, "reason": reason, "message": message});
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

fn starting() -> Response {
    unavailable("starting", "the instance is starting: its topology is not loaded yet".into())
}

/// The catalog and the store, or the error answer.
fn store_of(name: &str) -> Result<(Arc<Catalog>, StoreInfo), Box<Response>> {
    let catalog = local::catalog().ok_or_else(|| Box::new(starting()))?;
    let store = catalog.store(name).cloned().ok_or_else(|| {
        let queryable = catalog.queryable().join(", ");
        Box::new(error(StatusCode::NOT_FOUND, format!("no store `{name}`; queryable stores: {queryable}")))
    })?;
    Ok((catalog, store))
}

fn bad(e: BadQuery) -> Response {
    error(StatusCode::BAD_REQUEST, e.0)
}

async fn key(
    Path((store, key)): Path<(String, String)>,
    params: Result<Params<QueryParams>, QueryRejection>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    handle(&store, params, &uri, &headers, |store, params| {
        Ok(Query::Key { key: read::parse_key(store, &key)?, as_of: params.as_of })
    })
    .await
}

async fn range(
    Path(store): Path<String>,
    params: Result<Params<QueryParams>, QueryRejection>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    handle(&store, params, &uri, &headers, |store, params| {
        let parse = |text: &Option<String>| text.as_deref().map(|t| read::parse_key(store, t)).transpose();
        Ok(Query::Range {
            from: parse(&params.from)?,
            to: parse(&params.to)?,
            limit: limit(params)?,
            as_of: params.as_of,
        })
    })
    .await
}

async fn windows(
    Path(store): Path<String>,
    params: Result<Params<QueryParams>, QueryRejection>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    handle(&store, params, &uri, &headers, |store, params| {
        let key = params.key.as_deref().map(|text| read::parse_key(store, text)).transpose()?;
        let time = |text: &Option<String>| {
            text.as_deref().map(str::parse::<i64>).transpose().map_err(|_| {
                BadQuery("`from` and `to` of a windows query are window starts in ms since the epoch".into())
            })
        };
        Ok(Query::Windows { key, from: time(&params.from)?, to: time(&params.to)?, limit: limit(params)? })
    })
    .await
}

fn limit(params: &QueryParams) -> Result<usize, BadQuery> {
    let limit = params.limit.unwrap_or(1000);
    if limit == 0 || limit > 100_000 {
        return Err(BadQuery(format!("limit {limit} is out of range: give 1 to 100000 (default 1000)")));
    }
    Ok(limit)
}

/// A route's work: the store named in the path, the query `build` makes of the parameters,
/// the answer.
async fn handle(
    name: &str,
    params: Result<Params<QueryParams>, QueryRejection>,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    build: impl FnOnce(&StoreInfo, &QueryParams) -> Result<Query, BadQuery>,
) -> Response {
    let params = match parameters(params) {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let (catalog, store) = match store_of(name) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match build(&store, &params) {
        Ok(query) => answer(&catalog, &store, query, &params, uri, headers).await,
        Err(e) => bad(e),
    }
}

/// The query parameters, or a 400 in the API's JSON form saying which are wrong.
fn parameters(params: Result<Params<QueryParams>, QueryRejection>) -> Result<QueryParams, Box<Response>> {
    params.map(|Params(params)| params).map_err(|rejection| {
        Box::new(bad(BadQuery(format!(
            "{}; the parameters are scope=local, max_lag=<records>, as_of=<ms>, from, to, key (JSON text; ms for windows), limit=<1..100000>",
            rejection.body_text()
        ))))
    })
}

/// Answers `query` on `store` (see [`gather`]); `scope=local`: this instance's partitions only.
async fn answer(
    catalog: &Arc<Catalog>,
    store: &StoreInfo,
    query: Query,
    params: &QueryParams,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Response {
    if store.kind == StoreKind::Internal {
        return bad(read::not_queryable(catalog, store));
    }
    let failed = |e: LocalError| match e {
        LocalError::Bad(e) => bad(e),
        LocalError::Read(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    if params.scope.as_deref() == Some("local") {
        let answers = gather::local_answers_async(catalog.clone(), store.clone(), query, params.max_lag);
        return match answers.await {
            Ok(answers) => axum::Json(answers).into_response(),
            Err(e) => failed(e),
        };
    }
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let merged =
        gather::gather(catalog, store, &query, params.max_lag, path_and_query, headers.get(header::AUTHORIZATION))
            .await;
    match merged {
        Err(e) => failed(e),
        Ok(merged) => render(store, &query, merged),
    }
}

fn render(store: &StoreInfo, query: &Query, merged: Merged) -> Response {
    match merged {
        Merged::Found(entry, at) => {
            let mut body = json!({
                "store": store.name, "key": entry.key, "value": entry.value,
                "partition": at.partition, "instance": at.instance, "state": at.state,
                "position": at.position, "lag": at.lag,
            });
            if let Some(valid_from) = entry.valid_from {
                body["valid_from"] = json!(valid_from);
            }
            axum::Json(body).into_response()
        }
        Merged::NotFound => {
            let key = match query {
                Query::Key { key, .. } => key.to_json().to_string(),
                _ => String::new(),
            };
            error(StatusCode::NOT_FOUND, format!("`{}` holds no key {key} (every partition answered)", store.name))
        }
        Merged::Unavailable { reason, missing } => unavailable(
            reason,
            format!(
                "partitions {missing:?} of `{}` cannot answer now ({reason}); retry, or let a restoring partition answer within N records with ?max_lag=N",
                store.name
            ),
        ),
        Merged::Entries { entries, truncated, partitions } => {
            let entries: Vec<Json> = entries
                .into_iter()
                .map(|(partition, e)| {
                    let mut entry = json!({"key": e.key, "value": e.value, "partition": partition});
                    if let Some(valid_from) = e.valid_from {
                        entry["valid_from"] = json!(valid_from);
                    }
                    entry
                })
                .collect();
            let partitions: Vec<Json> = partitions
                .iter()
                .map(|a| json!({"partition": a.partition, "instance": a.instance, "state": a.state, "position": a.position, "lag": a.lag}))
                .collect();
            axum::Json(
                json!({"store": store.name, "entries": entries, "truncated": truncated, "partitions": partitions}),
            )
            .into_response()
        }
    }
}

/// `/v1/stores`: every store with its partitions' owners (`scope=local`: this instance's).
async fn stores(
    params: Result<Params<QueryParams>, QueryRejection>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let params = match parameters(params) {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let Some(catalog) = local::catalog() else { return starting() };
    let mut answers: Vec<PartitionOwner> = local_owners(&catalog);
    if params.scope.as_deref() == Some("local") {
        return axum::Json(answers).into_response();
    }
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    for owners in gather::ask_peers::<Vec<PartitionOwner>>(path_and_query, headers.get(header::AUTHORIZATION)).await {
        answers.extend(owners);
    }
    let listed: Vec<Json> = catalog
        .stores
        .iter()
        .map(|store| {
            let partitions: Vec<Json> = if store.global {
                vec![json!({"partition": -1, "instance": "every instance", "state": if local::global().is_some() { "running" } else { "restoring" }})]
            } else {
                (0..store.partitions)
                    .map(|p| {
                        let owner = answers.iter().find(|o| Some(o.subtopology) == store.subtopology && o.partition == p && o.state == "running")
                            .or_else(|| answers.iter().find(|o| Some(o.subtopology) == store.subtopology && o.partition == p));
                        match owner {
                            Some(o) => json!({"partition": p, "instance": o.instance, "state": o.state, "lag": o.lag}),
                            None => json!({"partition": p, "instance": null, "state": "unassigned", "lag": null}),
                        }
                    })
                    .collect()
            };
            json!({
                "name": store.name, "kind": store.kind, "node": store.node, "global": store.global,
                "queryable": store.kind != StoreKind::Internal, "key_fields": store.key_fields,
                "partitions": partitions,
            })
        })
        .collect();
    axum::Json(json!({"stores": listed})).into_response()
}

/// One task this instance holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartitionOwner {
    subtopology: usize,
    partition: i32,
    instance: String,
    state: String,
    lag: Option<u64>,
}

fn local_owners(catalog: &Catalog) -> Vec<PartitionOwner> {
    let instance = super::discovery::own_url().unwrap_or_default();
    let subtopologies: std::collections::BTreeSet<usize> =
        catalog.stores.iter().filter_map(|s| s.subtopology).collect();
    let mut owners = Vec::new();
    for subtopology in subtopologies {
        for (partition, task) in local::tasks(subtopology) {
            let (state, lag) = match task.phase {
                Phase::Running => {
                    let position =
                        task.reader.as_ref().and_then(|r| r.snapshot(|s| s.checkpoint().ok().flatten())).flatten();
                    ("running", position.and_then(|c| local::lag(&c.inputs)))
                }
                Phase::Restoring { remaining } => ("restoring", remaining),
            };
            owners.push(PartitionOwner {
                subtopology,
                partition,
                instance: instance.clone(),
                state: state.into(),
                lag,
            });
        }
    }
    owners
}
