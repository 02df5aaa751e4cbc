//! What the dashboard shows, kept as one view (every queryable store's entries, by node, and
//! the records written per output topic) and published as Server-Sent Events: a snapshot, then
//! the changes. Each change has a sequence number (the SSE id); the last [`RING`] changes are
//! kept, so a browser that reconnects with `Last-Event-ID` gets what it missed, or a fresh
//! snapshot when that is gone.
//!
//! [`follow_stores`] fills the view from the query API (every partition, on every instance)
//! once a second while someone watches.

use crate::query::catalog::{Catalog, StoreKind};
use crate::query::gather::{self, Merged};
use crate::query::read::Query;
use axum::http::HeaderValue;
use serde::Serialize;
use serde_json::{Map, Value as Json, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// Changes kept for browsers that reconnect.
const RING: usize = 600;
/// Entries read per store: the funnel's stores whole; other tables' first entries (a browser).
const AGGREGATE_LIMIT: usize = 20_000;
const TABLE_LIMIT: usize = 100;

/// One dataset: a store's entries by key (the key's compact JSON text).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Dataset {
    /// The store.
    pub store: String,
    /// Its kind (`aggregate`, `windowed_aggregate`, `table`, ...).
    pub kind: String,
    /// Entries by key text.
    pub entries: BTreeMap<String, Json>,
    /// More entries than were read.
    pub truncated: bool,
    /// Why the entries are not current (`restoring`, ...): they are the last ones read.
    pub stale: Option<String>,
}

/// A new reading of one dataset.
pub enum Reading {
    /// Every entry, as read now.
    Fresh(Dataset),
    /// Not readable now, for this reason: the last entries stay.
    Unavailable(String),
}

#[derive(Default)]
struct View {
    /// Starts at the feed's creation time in ms, so a restarted server's ids are above the last
    /// ones a browser saw (it gets a snapshot, not another process's changes).
    seq: u64,
    published: bool,
    time_ms: i64,
    datasets: BTreeMap<String, Dataset>,
    outputs: BTreeMap<String, u64>,
    ring: VecDeque<(u64, Arc<str>)>,
}

/// An event for a browser: its id, its type and its JSON data.
pub type Message = (u64, &'static str, Arc<str>);

/// The dashboard's view and its subscribers.
pub struct Feed {
    title: String,
    layout: &'static str,
    view: Mutex<View>,
    changes: broadcast::Sender<(u64, Arc<str>)>,
    /// When the view was last asked for (ms since the epoch): it is refreshed only while watched.
    asked_ms: AtomicU64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Feed {
    /// A feed titled `title` with the page `layout` (`happytimes` or `generic`).
    pub fn new(title: &str, layout: &'static str) -> Arc<Feed> {
        let (changes, _) = broadcast::channel(64);
        Arc::new(Feed {
            title: title.to_owned(),
            layout,
            view: Mutex::new(View { seq: now_ms() as u64, ..View::default() }),
            changes,
            asked_ms: AtomicU64::new(0),
        })
    }

    /// Whether someone watches (a browser connected, or a snapshot asked in the last 30 s).
    pub fn watched(&self) -> bool {
        self.changes.receiver_count() > 0 || now_ms() - self.asked_ms.load(Ordering::Relaxed) as i64 <= 30_000
    }

    /// Applies new readings and output counts; publishes a change when anything changed.
    pub fn update(&self, readings: BTreeMap<String, Reading>, outputs: BTreeMap<String, u64>) {
        let Ok(mut view) = self.view.lock() else { return };
        let mut upserts = Map::new();
        let mut removes = Map::new();
        let mut stale_changed = false;
        for (name, reading) in readings {
            let dataset = view.datasets.entry(name.clone()).or_default();
            match reading {
                Reading::Unavailable(reason) => {
                    stale_changed |= dataset.stale.as_deref() != Some(reason.as_str());
                    dataset.stale = Some(reason);
                }
                Reading::Fresh(new) => {
                    stale_changed |= dataset.stale.is_some() || dataset.truncated != new.truncated;
                    let changed: Map<String, Json> = new
                        .entries
                        .iter()
                        .filter(|(k, v)| dataset.entries.get(*k) != Some(*v))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    let gone: Vec<Json> =
                        dataset.entries.keys().filter(|k| !new.entries.contains_key(*k)).map(|k| json!(k)).collect();
                    if !changed.is_empty() {
                        upserts.insert(name.clone(), Json::Object(changed));
                    }
                    if !gone.is_empty() {
                        removes.insert(name.clone(), Json::Array(gone));
                    }
                    *dataset = new;
                }
            }
        }
        let outputs_changed = view.outputs != outputs;
        view.outputs = outputs;
        if upserts.is_empty() && removes.is_empty() && !stale_changed && !outputs_changed && view.published {
            return;
        }
        view.published = true;
        view.seq += 1;
        view.time_ms = now_ms();
        let stale: Map<String, Json> = view.datasets.iter().map(|(n, d)| (n.clone(), json!(d.stale))).collect();
        let change = json!({
            "seq": view.seq, "time_ms": view.time_ms, "upserts": upserts, "removes": removes,
            "outputs": view.outputs, "stale": stale,
        });
        let message: (u64, Arc<str>) = (view.seq, Arc::from(change.to_string()));
        view.ring.push_back(message.clone());
        if view.ring.len() > RING {
            view.ring.pop_front();
        }
        // No subscriber is no error: the change is in the ring.
        let _ = self.changes.send(message);
    }

    fn snapshot_of(&self, view: &View) -> Json {
        json!({
            "seq": view.seq, "time_ms": view.time_ms, "title": self.title, "layout": self.layout,
            "datasets": view.datasets, "outputs": view.outputs,
        })
    }

    /// The whole view (and marks it watched).
    pub fn snapshot(&self) -> Json {
        self.asked_ms.store(now_ms() as u64, Ordering::Relaxed);
        self.view.lock().map(|view| self.snapshot_of(&view)).unwrap_or(Json::Null)
    }

    /// What a browser gets first — the changes after `last_seen` when they are all still kept,
    /// else a snapshot — and the changes from then on.
    pub fn subscribe(&self, last_seen: Option<u64>) -> (Vec<Message>, broadcast::Receiver<(u64, Arc<str>)>) {
        let Ok(view) = self.view.lock() else { return (Vec::new(), self.changes.subscribe()) };
        // Subscribed under the lock: no change falls between the first messages and the rest.
        let receiver = self.changes.subscribe();
        let replay = last_seen.filter(|&seen| {
            seen <= view.seq && (seen == view.seq || view.ring.front().is_some_and(|(first, _)| *first <= seen + 1))
        });
        let first = match replay {
            Some(seen) => view
                .ring
                .iter()
                .filter(|(seq, _)| *seq > seen)
                .map(|(seq, data)| (*seq, "change", data.clone()))
                .collect(),
            None => vec![(view.seq, "snapshot", Arc::from(self.snapshot_of(&view).to_string()))],
        };
        (first, receiver)
    }

    /// A fresh snapshot message (for a subscriber that fell behind).
    pub fn snapshot_message(&self) -> Message {
        let view = self.view.lock();
        match view {
            Ok(view) => (view.seq, "snapshot", Arc::from(self.snapshot_of(&view).to_string())),
            Err(_) => (0, "snapshot", Arc::from("{}")),
        }
    }
}

/// The page layout for a topology: the HappyTimes funnel when its funnel nodes are there.
pub fn layout_of(plan: &crate::topology::Plan) -> &'static str {
    let funnel = ["awareness", "consideration", "consideration_top", "conversion_funnel", "loyalty", "advocacy"];
    if funnel.iter().all(|n| plan.node(n).is_some()) { "happytimes" } else { "generic" }
}

/// [`follow_stores`] once the instance has loaded its topology.
pub async fn follow_when_started(feed: Arc<Feed>, authorization: Option<HeaderValue>, interval: Duration) {
    let catalog = loop {
        if let Some(catalog) = crate::query::local::catalog() {
            break catalog;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    follow_stores(feed, catalog, authorization, interval).await;
}

/// Reads every queryable store (through the query API: every partition of every instance) and
/// the records written per output, once per `interval` while the feed is watched.
pub async fn follow_stores(
    feed: Arc<Feed>,
    catalog: Arc<Catalog>,
    authorization: Option<HeaderValue>,
    interval: Duration,
) {
    loop {
        if feed.watched() {
            let mut readings = BTreeMap::new();
            for store in catalog.stores.iter().filter(|s| s.kind != StoreKind::Internal) {
                let windowed = matches!(store.kind, StoreKind::WindowedAggregate | StoreKind::SessionAggregate);
                let limit = if windowed || store.kind == StoreKind::Aggregate { AGGREGATE_LIMIT } else { TABLE_LIMIT };
                let (query, path) = if windowed {
                    (
                        Query::Windows { key: None, from: None, to: None, limit },
                        format!("/v1/stores/{}/windows?limit={limit}", store.name),
                    )
                } else {
                    (
                        Query::Range { from: None, to: None, limit, as_of: None },
                        format!("/v1/stores/{}/range?limit={limit}", store.name),
                    )
                };
                let reading = match gather::gather(&catalog, store, &query, None, &path, authorization.as_ref()).await {
                    Ok(Merged::Entries { entries, truncated, .. }) => Reading::Fresh(Dataset {
                        store: store.name.clone(),
                        kind: serde_json::to_value(store.kind)
                            .ok()
                            .and_then(|k| k.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        entries: entries.into_iter().map(|(_, e)| (e.key.to_string(), e.value)).collect(),
                        truncated,
                        stale: None,
                    }),
                    Ok(Merged::Unavailable { reason, .. }) => Reading::Unavailable(reason.to_owned()),
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(store = %store.name, error = ?e, "the dashboard cannot read a store");
                        continue;
                    }
                };
                // A node's store by the node's name (the page's datasets).
                let name = if readings.contains_key(&store.owner) { store.name.clone() } else { store.owner.clone() };
                readings.insert(name, reading);
            }
            let outputs = crate::query::http::outputs_everywhere(authorization.as_ref()).await;
            feed.update(readings, outputs);
        }
        tokio::time::sleep(interval).await;
    }
}
