//! `happystreams query --url URL`: a running instance's query API from the command line — its
//! stores (no `--store`), a key (`--key`), a key's windows (`--key --windows`) or a key range
//! (`--from/--to/--limit`). `--format json` prints the API's answer as it is; `--format table`
//! prints the entries as a table (the store list: a line per store).

use super::decode::DecodeError;
use super::query::{Latest, Output, QueryArgs, print};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// Runs one query against the instance at `url`, writing to `out`.
pub async fn run(url: &str, args: &QueryArgs, out: &mut impl Write) -> Result<(), DecodeError> {
    let base = url.trim_end_matches('/');
    let encode = |text: &str| -> String { url_escape(text) };
    let mut params: Vec<(String, String)> = Vec::new();
    let path = match (&args.store, &args.key) {
        (None, _) => "/v1/stores".to_owned(),
        (Some(store), Some(key)) if args.windows => {
            params.push(("key".into(), key.clone()));
            format!("/v1/stores/{}/windows", encode(store))
        }
        (Some(store), Some(key)) => format!("/v1/stores/{}/keys/{}", encode(store), encode(key)),
        (Some(store), None) => {
            if let Some(limit) = args.limit {
                params.push(("limit".into(), limit.to_string()));
            }
            format!("/v1/stores/{}/range", encode(store))
        }
    };
    for (name, value) in [("from", &args.from), ("to", &args.to)] {
        if let Some(value) = value {
            params.push((name.into(), value.clone()));
        }
    }
    if let Some(as_of) = args.as_of {
        params.push(("as_of".into(), as_of.to_string()));
    }
    if let Some(max_lag) = args.max_lag {
        params.push(("max_lag".into(), max_lag.to_string()));
    }
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
    let target = if query.is_empty() { format!("{base}{path}") } else { format!("{base}{path}?{}", query.join("&")) };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| DecodeError::Usage(format!("cannot create an HTTP client: {e}")))?;
    let mut request = client.get(&target);
    if let Some(token) = &args.token {
        request = request.bearer_auth(token.trim());
    }
    let response = request.send().await.map_err(|e| {
        DecodeError::Usage(format!("cannot reach {base}: {e}; check --url (an instance's runtime.http_address)"))
    })?;
    let status = response.status();
    let body: Json = response
        .json()
        .await
        .map_err(|e| DecodeError::Usage(format!("{target} answered {status} with a body that is not JSON: {e}")))?;
    let message = body.get("message").and_then(Json::as_str).unwrap_or_default().to_owned();
    match status.as_u16() {
        200 => {}
        401 => {
            return Err(DecodeError::Usage(format!(
                "{base} needs its token: pass --token or set HAPPYSTREAMS_HTTP_TOKEN ({message})"
            )));
        }
        503 => {
            let reason = body.get("reason").and_then(Json::as_str).unwrap_or("unavailable");
            return Err(DecodeError::Usage(format!("the store cannot answer now ({reason}): {message}")));
        }
        _ => return Err(DecodeError::Usage(format!("{status}: {message}"))),
    }
    if args.format == Output::Json {
        writeln!(out, "{body}").map_err(DecodeError::Output)?;
        return out.flush().map_err(DecodeError::Output);
    }
    if args.store.is_none() {
        return stores_table(&body, out);
    }
    let entries: Vec<&Json> = match body.get("entries").and_then(Json::as_array) {
        Some(entries) => entries.iter().collect(),
        None => vec![&body],
    };
    let mut rows = BTreeMap::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let key = entry.get("key").cloned().unwrap_or(Json::Null);
        let partition = entry.get("partition").and_then(Json::as_i64).unwrap_or(-1) as i32;
        // Numbered so entries keep the API's order (windows of one key share their key).
        rows.insert(
            format!("{index:08}"),
            Latest {
                key,
                value: entry.get("value").cloned().unwrap_or(Json::Null),
                partition,
                offset: -1,
                timestamp: None,
            },
        );
    }
    print(Output::Table, &rows, out)
}

/// The store list: name, kind, node, partitions held and by how many instances.
fn stores_table(body: &Json, out: &mut impl Write) -> Result<(), DecodeError> {
    let stores = body.get("stores").and_then(Json::as_array).cloned().unwrap_or_default();
    let mut rows = BTreeMap::new();
    for (index, store) in stores.iter().enumerate() {
        let partitions = store.get("partitions").and_then(Json::as_array).cloned().unwrap_or_default();
        let running = partitions.iter().filter(|p| p.get("state").and_then(Json::as_str) == Some("running")).count();
        let lag: u64 = partitions.iter().filter_map(|p| p.get("lag").and_then(Json::as_u64)).sum();
        let value = serde_json::json!({
            "kind": store.get("kind"), "node": store.get("node"),
            "partitions": format!("{running}/{} running", partitions.len()), "lag": lag,
        });
        rows.insert(
            format!("{index:08}"),
            Latest {
                key: store.get("name").cloned().unwrap_or(Json::Null),
                value,
                partition: -1,
                offset: -1,
                timestamp: None,
            },
        );
    }
    print(Output::Table, &rows, out)
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn url_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
