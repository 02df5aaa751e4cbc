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
    pub kind: Option<StoreKind>,
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
    /// This feed's own: part of every event id, so a browser that reconnects to another
    /// process (a restart, another instance behind a load balancer) gets a snapshot, never
    /// changes made against another view.
    boot: String,
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
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Arc::new(Feed {
            boot: format!("{nanos:x}{:x}", std::process::id()),
            title: title.to_owned(),
            layout,
            view: Mutex::default(),
            changes,
            asked_ms: AtomicU64::new(0),
        })
    }

    /// The SSE id of change `seq`: `<boot>-<seq>`.
    pub fn event_id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.boot)
    }

    /// The change a browser saw last, from its `Last-Event-ID`, if this feed gave that id.
    pub fn seen(&self, last_event_id: &str) -> Option<u64> {
        let (boot, seq) = last_event_id.trim().rsplit_once('-')?;
        if boot == self.boot { seq.parse().ok() } else { None }
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
                        kind: Some(store.kind),
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
                let name = if readings.contains_key(&store.node) { store.name.clone() } else { store.node.clone() };
                readings.insert(name, reading);
            }
            let outputs = crate::query::http::outputs_everywhere(authorization.as_ref()).await;
            feed.update(readings, outputs);
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(entries: &[(&str, i64)]) -> BTreeMap<String, Reading> {
        let entries = entries.iter().map(|(k, v)| (k.to_string(), json!({ "n": v }))).collect();
        let dataset =
            Dataset { store: "s".into(), kind: Some(StoreKind::Aggregate), entries, truncated: false, stale: None };
        BTreeMap::from([("node".to_owned(), Reading::Fresh(dataset))])
    }

    fn data(message: &Message) -> Json {
        serde_json::from_str(&message.2).unwrap()
    }

    #[test]
    fn changes_carry_what_changed_and_a_browser_resumes_from_its_last_id() {
        let feed = Feed::new("t", "generic");
        feed.update(reading(&[("a", 1), ("b", 1)]), BTreeMap::new());
        let (first, _) = feed.subscribe(None);
        let (seq, kind, _) = &first[0];
        assert_eq!((first.len(), *kind), (1, "snapshot"));
        assert_eq!(data(&first[0])["datasets"]["node"]["entries"]["a"], json!({"n": 1}));
        // Nothing new: no change.
        feed.update(reading(&[("a", 1), ("b", 1)]), BTreeMap::new());
        assert_eq!(feed.subscribe(None).0[0].0, *seq);
        feed.update(reading(&[("a", 2), ("b", 1)]), BTreeMap::new());
        feed.update(reading(&[("a", 2)]), BTreeMap::from([("out".to_owned(), 5)]));
        // From the first id: the two changes, in order.
        let (replayed, _) = feed.subscribe(Some(*seq));
        assert_eq!(replayed.iter().map(|m| m.1).collect::<Vec<_>>(), vec!["change", "change"]);
        assert_eq!(data(&replayed[0])["upserts"]["node"], json!({"a": {"n": 2}}));
        assert_eq!(data(&replayed[1])["removes"]["node"], json!(["b"]));
        assert_eq!(data(&replayed[1])["outputs"], json!({"out": 5}));
        // Up to date: nothing; an id this feed never gave (another process's): a snapshot.
        assert!(feed.subscribe(Some(seq + 2)).0.is_empty());
        assert_eq!(feed.subscribe(Some(seq + 1000)).0[0].1, "snapshot");
        // Event ids name the feed: another feed's (a restarted process's) count as unseen.
        assert_eq!(feed.seen(&feed.event_id(seq + 1)), Some(seq + 1));
        assert_eq!(Feed::new("t", "generic").seen(&feed.event_id(seq + 1)), None);
        assert_eq!(feed.seen("garbage"), None);
        // A store that cannot answer keeps its entries, marked.
        feed.update(
            BTreeMap::from([("node".to_owned(), Reading::Unavailable("restoring".into()))]),
            BTreeMap::from([("out".to_owned(), 5)]),
        );
        let snapshot = data(&feed.subscribe(None).0[0]);
        assert_eq!(snapshot["datasets"]["node"]["stale"], json!("restoring"));
        assert_eq!(snapshot["datasets"]["node"]["entries"]["a"], json!({"n": 2}));
    }
}
