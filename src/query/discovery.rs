//! How the instances of an application find each other: each announces its HTTP address in the
//! compacted topic `<application_id>-instances` (key: its instance id; value:
//! `{"url": ..., "started_ms": ...}`; a tombstone when it stops cleanly) and reads that topic
//! from the start, all the time. Which instance holds which partition is not in the topic: each
//! instance tells for itself when asked (`?scope=local`), so an answer never rests on a stale
//! assignment. An instance killed without its tombstone stays listed; asking it fails fast
//! (connection refused) and contributes nothing.

use crate::connectors::kafka::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// The topic of an application's instances.
pub fn topic(application_id: &str) -> String {
    format!("{application_id}-instances")
}

#[derive(Debug, Serialize, Deserialize)]
struct Announcement {
    url: String,
    started_ms: i64,
}

static OWN_URL: OnceLock<String> = OnceLock::new();
static OWN_ID: OnceLock<String> = OnceLock::new();
static PEERS: RwLock<BTreeMap<String, String>> = RwLock::new(BTreeMap::new());

/// This instance's advertised URL (set once, when its HTTP server is up).
pub fn set_own_url(url: String) {
    let _ = OWN_URL.set(url.trim_end_matches('/').to_owned());
}

/// This instance's advertised URL, if it serves HTTP.
pub fn own_url() -> Option<String> {
    OWN_URL.get().cloned()
}

/// Peers that did not answer: consecutive failures and when the last one was.
static FAILING: Mutex<BTreeMap<String, (u32, Instant)>> = Mutex::new(BTreeMap::new());
/// After this many failures in a row a peer is left out...
const FAILURES: u32 = 3;
/// ...for this long, then asked again (an instance killed without its tombstone costs a query
/// nothing most of the time, and one that comes back is asked again soon).
const LEFT_OUT: Duration = Duration::from_secs(10);

/// The URL to advertise for a server bound at `url` (`scheme://ip:port`) when
/// `runtime.advertised_http_address` is not set: `url` itself, except that an unspecified IP
/// (`0.0.0.0`, `::`: every interface, as in a container) is replaced by the address this host's
/// name resolves to (a container's own IP, from its `/etc/hosts`), which other instances can reach.
pub async fn advertised_for(url: &str) -> String {
    let Some((scheme, address)) = url.split_once("://") else { return url.to_owned() };
    let Ok(bound) = address.parse::<std::net::SocketAddr>() else { return url.to_owned() };
    if !bound.ip().is_unspecified() {
        return url.to_owned();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let resolved: Vec<std::net::SocketAddr> =
        tokio::net::lookup_host((host.as_str(), bound.port())).await.map(Iterator::collect).unwrap_or_default();
    match resolved.iter().find(|a| !a.ip().is_loopback()) {
        Some(reachable) => format!("{scheme}://{reachable}"),
        None => {
            tracing::warn!(bound = %url, host, "bound to every interface but this host's name resolves to no address other instances can reach; set runtime.advertised_http_address for queries across instances");
            url.to_owned()
        }
    }
}

/// The other instances' URLs (but those that failed [`FAILURES`] times in a row, for
/// [`LEFT_OUT`]).
pub fn peers() -> Vec<String> {
    let own = OWN_ID.get();
    let Ok(peers) = PEERS.read() else { return Vec::new() };
    let failing = FAILING.lock().ok();
    let left_out = |url: &String| {
        failing.as_ref().and_then(|f| f.get(url)).is_some_and(|(n, at)| *n >= FAILURES && at.elapsed() < LEFT_OUT)
    };
    peers.iter().filter(|(id, url)| Some(*id) != own && !left_out(url)).map(|(_, url)| url.clone()).collect()
}

/// `url` answered a query.
pub fn answered(url: &str) {
    if let Ok(mut failing) = FAILING.lock() {
        if failing.remove(url).is_some() {
            tracing::info!(instance = url, "an instance answers queries again");
        }
    }
}

/// `url` did not answer a query (`why`); logged at the first failure in a row.
pub fn failed(url: &str, why: &str) {
    let Ok(mut failing) = FAILING.lock() else { return };
    let entry = failing.entry(url.to_owned()).or_insert((0, Instant::now()));
    entry.0 += 1;
    entry.1 = Instant::now();
    if entry.0 == 1 {
        tracing::warn!(
            instance = url,
            error = why,
            "an instance does not answer queries: its partitions answer 503 until it does or their new owner runs"
        );
    }
}

/// The HTTP client instances ask each other with: short timeouts, so a dead instance costs a
/// query little.
pub fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default()
    })
}

/// An instance's announcement; dropping it writes the tombstone (a clean stop).
pub struct Announced {
    producer: BaseProducer,
    topic: String,
    id: String,
    stop: Arc<AtomicBool>,
}

impl Drop for Announced {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let record: BaseRecord<'_, str, [u8]> = BaseRecord::to(&self.topic).key(self.id.as_str());
        if self.producer.send(record).is_ok() {
            let _ = self.producer.flush(Duration::from_secs(5));
        }
    }
}

/// Announces this instance (`id`, at [`own_url`]) and follows the others, on a thread of its
/// own; `None` when the instance serves no HTTP.
pub fn start(kafka: &KafkaConfig, application_id: &str, id: &str) -> Result<Option<Announced>, String> {
    let Some(url) = own_url() else { return Ok(None) };
    let _ = OWN_ID.set(id.to_owned());
    let topic = topic(application_id);
    let producer: BaseProducer =
        kafka.producer_config().create().map_err(|e| format!("creating the instances producer: {e}"))?;
    let started_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let value = serde_json::to_vec(&Announcement { url: url.clone(), started_ms }).unwrap_or_default();
    producer
        .send(BaseRecord::to(&topic).key(id).payload(&value))
        .map_err(|(e, _)| format!("announcing this instance in {topic}: {e}"))?;
    producer.flush(Duration::from_secs(30)).map_err(|e| format!("announcing this instance in {topic}: {e}"))?;
    tracing::info!(%topic, %url, instance = id, "announced this instance's query address");
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = crate::runtime::changelog::reader(kafka, &format!("{application_id}-instances-reader"), false)
        .map_err(|e| format!("creating the instances reader: {e}"))?;
    let mut assignment = TopicPartitionList::new();
    let _ = assignment.add_partition_offset(&topic, 0, Offset::Beginning);
    consumer.assign(&assignment).map_err(|e| format!("reading {topic}: {e}"))?;
    let following = stop.clone();
    std::thread::Builder::new()
        .name("instances".into())
        .spawn(move || follow(consumer, &following))
        .map_err(|e| format!("starting the instances reader: {e}"))?;
    Ok(Some(Announced { producer, topic, id: id.to_owned(), stop }))
}

fn follow<C: rdkafka::consumer::ConsumerContext>(consumer: BaseConsumer<C>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = match message {
            Ok(message) => message,
            Err(e) => {
                tracing::debug!(error = %e, "reading the instances topic");
                continue;
            }
        };
        let Some(id) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else { continue };
        let announced = message.payload().map(serde_json::from_slice::<Announcement>);
        let Ok(mut peers) = PEERS.write() else { return };
        match announced {
            None => {
                peers.remove(id);
            }
            Some(Ok(a)) => {
                peers.insert(id.to_owned(), a.url.trim_end_matches('/').to_owned());
            }
            Some(Err(e)) => tracing::warn!(instance = id, error = %e, "an unreadable record in the instances topic"),
        }
    }
}
