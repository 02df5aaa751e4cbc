//! The live dashboard, served by every instance (`happystreams run`) and by `happystreams demo`
//! at `/dashboard`: the HappyTimes funnel's five stages, the fact counts and charts, or a
//! browser of every store for any other topology (`docs/QUERIES.md`).
//!
//! - `/dashboard`, `/dashboard/dashboard.js`, `/dashboard/dashboard.css`: the page, embedded in
//!   the binary (no CDN: it works offline);
//! - `/dashboard/events`: Server-Sent Events — a snapshot, then changes, resumable with
//!   `Last-Event-ID`, a heartbeat every 10 s ([`feed`]);
//! - `/dashboard/snapshot`: the snapshot as JSON.

pub mod feed;

pub use feed::Feed;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");

/// The dashboard's routes over `feed`.
pub fn router(feed: Arc<Feed>) -> Router {
    let asset = |kind: &'static str, body: &'static str| {
        get(move || async move {
            ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
        })
    };
    Router::new()
        .route("/dashboard", asset("text/html; charset=utf-8", INDEX))
        .route("/dashboard/", asset("text/html; charset=utf-8", INDEX))
        .route("/dashboard/dashboard.js", asset("text/javascript; charset=utf-8", SCRIPT))
        .route("/dashboard/dashboard.css", asset("text/css; charset=utf-8", STYLE))
        .route("/dashboard/snapshot", get(snapshot))
        .route("/dashboard/events", get(events))
        .with_state(feed)
}

async fn snapshot(State(feed): State<Arc<Feed>>) -> Response {
    axum::Json(feed.snapshot()).into_response()
}

fn event(feed: &Feed, (seq, kind, data): feed::Message) -> Result<Event, Infallible> {
    Ok(Event::default().id(feed.event_id(seq)).event(kind).data(&*data))
}

async fn events(
    State(feed): State<Arc<Feed>>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let last_seen = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| feed.seen(v));
    let (first, receiver) = feed.subscribe(last_seen);
    let sent = first.last().map_or(0, |(seq, _, _)| *seq);
    let first: Vec<_> = first.into_iter().map(|message| event(&feed, message)).collect();
    let later = stream::unfold((feed, receiver, sent), |(feed, mut receiver, mut sent)| async move {
        loop {
            let message = match receiver.recv().await {
                // Already in what was sent (a snapshot after falling behind covers it).
                Ok((seq, _)) if seq <= sent => continue,
                Ok((seq, data)) => (seq, "change", data),
                // Fell behind the channel: start again from a snapshot.
                Err(RecvError::Lagged(_)) => feed.snapshot_message(),
                Err(RecvError::Closed) => return None,
            };
            sent = message.0;
            let event = event(&feed, message);
            return Some((event, (feed, receiver, sent)));
        }
    });
    Sse::new(stream::iter(first).chain(later))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)).text("heartbeat"))
}
