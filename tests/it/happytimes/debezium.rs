//! HappyTimes from the real Debezium PostgreSQL connector.
//!
//! PostgreSQL 15 holds the HappyTimes schema (`tests/rig/postgres.sh`); Debezium 3.6's embedded
//! engine captures it (snapshot, then pgoutput streaming) and publishes every change to Tansu
//! like Kafka Connect with the JSON converter (`tests/rig/debezium_to_kafka.py`). Clicks, access
//! logs and mentions are produced next to it, stamped with the wall clock like live traffic.
//! Two `happystreams run` instances process it all. Changes made in PostgreSQL — inserts,
//! updates (one with an unchanged TOASTed column), deletes, a primary-key change, subscriptions
//! created, ended and deleted — must show in the facts of the events that follow them, and the
//! final funnel must equal the dbt marts built from the same lake.

use super::harness::Pipeline;
use crate::rig::{self, Postgres};
use happystreams::generate::log_line;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value as J, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// The SQL changes of the scenario and the records Debezium publishes for them.
struct Changes {
    statements: &'static [&'static str],
    records: usize,
    /// Of those, the records of the global tables (content, ads), which every instance reads.
    global: [usize; 2],
}

const GLOBAL_TOPICS: [&str; 2] = ["happytimes.public.content", "happytimes.public.ads"];

const SNAPSHOT: Changes = Changes {
    statements: &[
        "INSERT INTO visitors (visitor_id, visitor_uuid, name, country, city, device_type, source, first_seen, lifetime_value)
         SELECT v, gen_random_uuid(), 'Visitor ' || v, 'FR', 'Paris', 'mobile',
                (ARRAY['email','social','sem','direct'])[1 + v % 4], now(), 10.50 * v
         FROM generate_series(1, 6) v",
        // Content 4's body is large enough to be TOASTed: an update that leaves it unchanged
        // carries Debezium's unavailable-value placeholder instead.
        "INSERT INTO content (content_id, type, title, author, category, published_at, word_count, is_premium, body)
         SELECT c, CASE WHEN c % 3 = 0 THEN 'video' ELSE 'article' END, 'Content ' || c, 'Author ' || c,
                (ARRAY['news','culture','sports','tech'])[c], now() - interval '1 day', 400 + c, c % 2 = 0,
                CASE WHEN c = 4 THEN (SELECT string_agg(md5(g::text), ' ') FROM generate_series(1, 400) g) ELSE 'Body ' || c END
         FROM generate_series(1, 4) c",
        "INSERT INTO ads (ad_id, campaign, source, ad_type, cpm, bid_multiplier, ctr, active, created_at, daily_start) VALUES
         (10, 'spring-sale', 'social', 'banner', 2.50, 1.25, 0.02, true, now(), '06:00'),
         (11, 'spring-sale', 'sem', 'video', 3.10, 1.5, 0.03, true, now(), '06:00'),
         (12, 'partner-books', 'affiliate', 'link', 1.05, 1, 0.01, true, now(), '00:00'),
         (13, 'black-friday', 'email', 'native', 4.00, 1.125, 0.04, true, now(), '08:30')",
        "INSERT INTO social_outlets (outlet_id, outlet_name, sentiment_category, sentiment_score, followers) VALUES
         (1, 'Daily Planet', 'positive', 0.60, 12000), (2, 'The Tattler', 'neutral', 0.00, 800),
         (3, 'Metro Wire', 'negative', -0.40, 5000)",
    ],
    records: 6 + 4 + 4 + 3,
    global: [4, 4],
};

const SECOND: Changes = Changes {
    statements: &[
        "INSERT INTO visitors (visitor_id, visitor_uuid, name, country, city, device_type, source, first_seen)
         VALUES (7, gen_random_uuid(), 'Visitor 7', 'JP', 'Osaka', 'tablet', 'social', now())",
        "UPDATE visitors SET country = 'DE', city = 'Berlin' WHERE visitor_id = 1",
        "UPDATE content SET title = 'Content 4, updated' WHERE content_id = 4",
        "UPDATE social_outlets SET sentiment_category = 'negative', sentiment_score = -0.30 WHERE outlet_id = 2",
        "INSERT INTO subscriptions (subscription_id, visitor_id, subscription_type, start_date, price)
         VALUES (5001, 1, 'monthly', current_date, 9.99)",
        "INSERT INTO subscriptions (subscription_id, visitor_id, subscription_type, start_date, price)
         VALUES (5002, 3, 'yearly', current_date, 99.00)",
    ],
    records: 6,
    global: [1, 0],
};

const THIRD: Changes = Changes {
    statements: &[
        "DELETE FROM content WHERE content_id = 3",
        // A primary-key change: delete + tombstone of the old key, create of the new one.
        "UPDATE ads SET ad_id = 23 WHERE ad_id = 13",
        "UPDATE subscriptions SET end_date = current_date + 1, auto_renew = false, updated_at = now() WHERE subscription_id = 5001",
        "DELETE FROM subscriptions WHERE subscription_id = 5002",
        "DELETE FROM visitors WHERE visitor_id = 6",
    ],
    records: 2 + 3 + 1 + 2 + 2,
    global: [2, 3],
};

/// The Debezium bridge's log says how many records Kafka has acknowledged.
fn published(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("published ").and_then(|r| r.split("(total ").nth(1)))
        .filter_map(|r| r.trim_end_matches(')').parse().ok())
        .max()
        .unwrap_or(0)
}

fn wait_published(log: &Path, records: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while published(log) < records {
        assert!(
            Instant::now() < deadline,
            "Debezium published {} of {records} records within 120 s; its log:\n{}",
            published(log),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(published(log), records, "Debezium published more records than the changes make");
}

/// Activity stamped now: clicks, access-log lines and mentions.
struct Traffic {
    producer: FutureProducer,
    sent: Vec<(String, String, Vec<u8>, i64)>,
    /// Each click's event id (a UUID, as the click schema requires), by its name in the test.
    ids: std::collections::BTreeMap<String, String>,
    /// Clicks and access-log lines sent: each must give a visitor-activity fact.
    activity: usize,
}

impl Traffic {
    fn click(&mut self, name: &str, visitor: i64, event_type: &str, content: Option<i64>, ad: Option<i64>) {
        let at = now();
        let id = uuid::Uuid::from_u64_pair(self.ids.len() as u64 + 1, visitor as u64).to_string();
        self.ids.insert(name.to_owned(), id.clone());
        self.activity += 1;
        let value = json!({"event_id": id, "visitor_id": visitor, "session_id": format!("s-{visitor}"),
            "event_type": event_type, "content_id": content, "ad_id": ad, "url": "https://happytimes.example/",
            "referrer": J::Null, "geo": J::Null, "device_type": "mobile", "user_agent": "Mozilla/5.0", "event_time": at});
        let key = json!({"visitor_id": visitor}).to_string();
        self.sent.push(("happytimes.clicks".into(), key, value.to_string().into_bytes(), at));
    }

    fn log(&mut self, visitor: i64, path: &str) {
        let at = now();
        let key = json!({"visitor_id": visitor}).to_string();
        self.activity += 1;
        self.sent.push(("happytimes.weblogs".into(), key, log_line(visitor, path, 200, at).into_bytes(), at));
    }

    fn mention(&mut self, id: &str, outlet: i64, score: f64) {
        let at = now();
        let value =
            json!({"mention_id": id, "outlet_id": outlet, "sentiment_score": score, "text": id, "event_time": at});
        let key = json!({"outlet_id": outlet}).to_string();
        self.sent.push(("happytimes.social_mentions".into(), key, value.to_string().into_bytes(), at));
    }

    async fn send(&mut self) {
        for (topic, key, value, at) in self.sent.drain(..) {
            let record = FutureRecord::to(&topic).key(&key).payload(&value).timestamp(at);
            self.producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Applies `changes`, waits until Debezium has published them and the pipeline has processed
/// them (the group's inputs, and the global tables in every instance), then a second more:
/// access-log times have whole seconds, and an event must come after the change it is to see.
fn apply(pg: &Postgres, pipeline: &Pipeline, log: &Path, changes: &Changes, before: &mut Published) {
    pg.execute(changes.statements);
    before.records += changes.records;
    wait_published(log, before.records);
    for (total, added) in before.global.iter_mut().zip(changes.global) {
        *total += added;
    }
    wait_caught_up(pipeline, before);
    std::thread::sleep(Duration::from_millis(1100));
}

/// Records Debezium has published so far: all, and those of the global tables.
#[derive(Default)]
struct Published {
    records: usize,
    global: [usize; 2],
}

fn wait_caught_up(pipeline: &Pipeline, published: &Published) {
    pipeline.wait_idle();
    let deadline = Instant::now() + Duration::from_secs(60);
    for instance in &pipeline.instances {
        for (topic, expected) in GLOBAL_TOPICS.iter().zip(published.global) {
            let read = || instance.metric_labelled("records_in_total", &format!("topic=\"{topic}\"")) as usize;
            while read() < expected {
                assert!(Instant::now() < deadline, "an instance read {} of {expected} records of {topic}", read());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn happytimes_from_real_debezium_equals_the_dbt_marts() {
    let pipeline = Pipeline::start(&rig::start_tansu()).await;
    let pg = rig::postgres();
    // The snapshot rows exist before the connector starts: Debezium reads them (op r).
    pg.execute(SNAPSHOT.statements);
    let log = pipeline.dir.path().join("debezium.log");
    let python = rig::tool_binary("HAPPYSTREAMS_DEBEZIUM_PYTHON", "debezium.sh");
    let bridge = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rig/debezium_to_kafka.py");
    let state = pipeline.dir.path().join("debezium-state");
    std::fs::create_dir_all(&state).unwrap();
    let slot = format!("happytimes_{}", std::process::id());
    let connector = rig::Watched(rig::spawn_watched(
        "Debezium",
        &format!(
            "cd '{state}' && exec '{python}' '{bridge}' --bootstrap-servers {} --pg-port {} --slot {slot} --state-dir . >'{}' 2>&1",
            pipeline.bootstrap,
            pg.port,
            log.display(),
            state = state.display()
        ),
        "",
    ));
    let started = Instant::now();
    let mut published = Published { records: SNAPSHOT.records, global: SNAPSHOT.global };
    wait_published(&log, published.records);
    eprintln!("Debezium snapshot published {:.1} s after start", started.elapsed().as_secs_f64());
    wait_caught_up(&pipeline, &published);
    std::thread::sleep(Duration::from_millis(1100));

    let producer: FutureProducer =
        rig::client_config(&pipeline.bootstrap).set("partitioner", "murmur2_random").create().unwrap();
    let mut traffic = Traffic { producer, sent: Vec::new(), ids: Default::default(), activity: 0 };
    // First: everybody visits; visitors 1 and 2 click ads, visitor 4 an affiliate link.
    for visitor in 1..=6 {
        traffic.click(&format!("s1-view-{visitor}"), visitor, "page_view", Some(1 + visitor % 4), None);
    }
    traffic.click("s1-ad-1", 1, "ad_click", None, Some(10));
    traffic.click("s1-ad-2", 2, "ad_click", None, Some(13));
    traffic.log(4, "/go/12");
    traffic.log(3, "/article/2");
    for outlet in 1..=3 {
        traffic.mention(&format!("s1-m-{outlet}"), outlet, 0.25 * outlet as f64 - 0.5);
    }
    traffic.send().await;
    pipeline.wait_idle();

    apply(pg, &pipeline, &log, &SECOND, &mut published);
    traffic.click("s2-view-1", 1, "page_view", Some(4), None);
    traffic.click("s2-view-3", 3, "page_view", Some(1), None);
    traffic.click("s2-view-7", 7, "page_view", Some(2), None);
    traffic.log(1, "/article/4");
    traffic.mention("s2-m-2", 2, -0.5);
    traffic.send().await;
    pipeline.wait_idle();

    apply(pg, &pipeline, &log, &THIRD, &mut published);
    traffic.click("s3-view-2", 2, "page_view", Some(3), None);
    traffic.click("s3-ad-23", 2, "ad_click", None, Some(23));
    traffic.click("s3-ad-13", 5, "ad_click", None, Some(13));
    traffic.click("s3-view-6", 6, "page_view", Some(1), None);
    traffic.click("s3-view-3", 3, "page_view", Some(2), None);
    traffic.click("s3-view-1", 1, "page_view", Some(1), None);
    traffic.send().await;
    pipeline.wait_idle();

    drop(connector); // stopped (SIGTERM) before its directory goes with the pipeline's
    let facts = pipeline.finish_and_compare_with_dbt().await;
    assert_eq!(facts["visitor_activity"].len(), traffic.activity, "an activity event gave no fact");
    let activity = |name: &str| {
        facts["visitor_activity"]
            .iter()
            .find(|f| f["event_id"] == traffic.ids[name])
            .unwrap_or_else(|| panic!("no visitor_activity fact for {name}"))
            .clone()
    };
    // Snapshot rows, then an update: each event sees the row version of its time.
    assert_eq!(activity("s1-view-1")["visitor_country"], "FR");
    assert_eq!(activity("s2-view-1")["visitor_country"], "DE");
    assert_eq!(activity("s2-view-1")["visitor_city"], "Berlin");
    // An insert after the snapshot.
    assert_eq!(activity("s2-view-7")["visitor_known"], true);
    assert_eq!(activity("s2-view-7")["visitor_country"], "JP");
    // An update of the TOASTed row: the new title arrives, the body is not needed.
    assert_eq!(activity("s1-view-3")["content_title"], "Content 4");
    assert_eq!(activity("s2-view-1")["content_title"], "Content 4, updated");
    // Deletes: the row is gone for later events (unknown member), not for earlier ones.
    assert_eq!(activity("s1-view-2")["content_category"], "sports");
    assert_eq!(activity("s3-view-2")["content_category"], "unknown");
    assert_eq!(activity("s1-view-6")["visitor_known"], true);
    assert_eq!(activity("s3-view-6")["visitor_known"], false);
    // The primary-key change: the ad answers to its new id only.
    assert_eq!(activity("s1-ad-2")["campaign"], "black-friday");
    assert_eq!(activity("s3-ad-23")["campaign"], "black-friday");
    assert_eq!(activity("s3-ad-13")["campaign"], "unknown");
    // Subscriptions: created, given an end date (tomorrow: still subscribed, even if the test
    // runs across midnight UTC), deleted.
    assert_eq!(activity("s1-view-1")["subscribed"], false);
    assert_eq!(activity("s2-view-1")["subscribed"], true);
    assert_eq!(activity("s3-view-1")["subscribed"], true);
    assert_eq!(activity("s2-view-3")["subscribed"], true);
    assert_eq!(activity("s3-view-3")["subscribed"], false);
    // Access-log lines joined like clicks.
    let log_fact = facts["visitor_activity"].iter().find(|f| f["url"] == "/go/12" || f["ad_id"] == 12);
    assert_eq!(log_fact.expect("the affiliate log line's fact")["campaign"], "partner-books");
    // The subscription of visitor 1 converts their first ad click.
    let converted: Vec<&J> = facts["conversion"].iter().filter(|f| f["converted"] == true).collect();
    assert_eq!(converted.len(), 1, "{converted:?}");
    assert_eq!(converted[0]["event_id"], traffic.ids["s1-ad-1"]);
    assert_eq!(converted[0]["subscription_id"], 5001);
    // The outlet's category change shows in later mentions.
    let mention = |id: &str| facts["social_sentiment"].iter().find(|f| f["mention_id"] == id).unwrap().clone();
    assert_eq!(mention("s1-m-2")["outlet_sentiment_category"], "neutral");
    assert_eq!(mention("s2-m-2")["outlet_sentiment_category"], "negative");
}
