//! Seeded HappyTimes traffic: Debezium change events for the five dimension tables (plain JSON,
//! encoded like the real captures in `tests/fixtures/debezium/json-plain-defaults`), click
//! events, access-log lines and social mentions, in event-time order. The same options and seed
//! give the same records. `happystreams generate` writes them to files or Kafka; benches, tests
//! and the demo use [`generate`] directly.
//!
//! The story: dimension rows are snapshotted an hour before `start`; each visitor's row is
//! created just before their first visit, and some rows change later (a visitor's source, a
//! content title, an ad's campaign). Visitors come back on later days; visits are sessions of a
//! few events, each either a click event or an access-log line. Some visitors click an ad and
//! subscribe one to three days later; some subscriptions end early or are deleted. Outlets get
//! mentions all along.

mod clicks;
mod records;

pub use clicks::ClickGenerator;
pub use records::{Body, Generated, log_line, topic_of};

/// The HappyTimes sources (`topologies/happytimes.yaml`), each with its topic ([`topic_of`]).
pub const SOURCES: [&str; 8] =
    ["clicks", "weblogs", "social_mentions", "visitors", "content", "ads", "subscriptions", "social_outlets"];
use records::{Cdc, Rng};
use serde_json::{Value as J, json};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seed: the same seed gives the same records.
    pub seed: u64,
    /// Number of visitors.
    pub visitors: u64,
    /// Days of activity after `start_ms`.
    pub days: u32,
    /// Event time of the first visit window (ms since the epoch, UTC).
    pub start_ms: i64,
    /// Mentions per outlet and day.
    pub mentions_per_day: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 42,
            visitors: 200,
            days: 21,
            // Monday 2026-11-02T00:00:00Z: cohorts start on week boundaries.
            start_ms: 1_793_577_600_000,
            mentions_per_day: 12,
        }
    }
}

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const CONTENT: i64 = 30;
const ADS: [(i64, &str, &str, &str); 8] = [
    (10, "spring-sale", "social", "banner"),
    (11, "spring-sale", "sem", "video"),
    (12, "black-friday", "social", "banner"),
    (13, "black-friday", "email", "native"),
    (14, "premium-trial", "sem", "banner"),
    (15, "premium-trial", "social", "video"),
    (16, "partner-books", "affiliate", "link"),
    (17, "partner-travel", "affiliate", "link"),
];
const OUTLETS: [(i64, &str, &str); 5] = [
    (1, "Daily Planet", "positive"),
    (2, "The Tattler", "negative"),
    (3, "Metro Wire", "neutral"),
    (4, "Pixel Post", "positive"),
    (5, "Civic Review", "neutral"),
];
const VISIT_SOURCES: [&str; 4] = ["email", "social", "sem", "direct"];
const COUNTRIES: [(&str, &str); 5] =
    [("FR", "Paris"), ("US", "Austin"), ("DE", "Berlin"), ("BR", "Recife"), ("JP", "Osaka")];
const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];

/// Every record of a run, sorted by time (CDC commit time or event time), ties in creation order.
pub fn generate(options: &Options) -> Vec<Generated> {
    let mut rng = Rng::new(options.seed);
    let mut cdc = Cdc::default();
    let mut out = Vec::new();
    let start = options.start_ms;
    let end = start + i64::from(options.days) * DAY;
    let snapshot = start - HOUR;

    let contents: Vec<J> = (1..=CONTENT).map(|id| content_row(id, &mut rng, start)).collect();
    for (id, row) in (1..).zip(&contents) {
        out.push(cdc.change("content", json!({"content_id": id}), "r", None, Some(row.clone()), snapshot));
    }
    for (id, campaign, source, ad_type) in ADS {
        let row = ad_row(id, campaign, source, ad_type, &mut rng);
        out.push(cdc.change("ads", json!({"ad_id": id}), "r", None, Some(row), snapshot));
    }
    for (id, name, category) in OUTLETS {
        let row = json!({"outlet_id": id, "outlet_uuid": uuid(&mut rng), "outlet_name": name,
            "sentiment_category": category, "sentiment_score": records::decimal(rng.below(200) as i128 - 100, 2),
            "followers": 1000 + rng.below(100_000), "metadata": J::Null});
        out.push(cdc.change("social_outlets", json!({"outlet_id": id}), "r", None, Some(row), snapshot));
    }
    // Mid-run dimension changes: a content retitled, an ad moved to another campaign.
    let middle = start + (end - start) / 2;
    let mut after = contents[2].clone();
    after["title"] = json!("Updated: ten ways to enjoy the season");
    out.push(cdc.change("content", json!({"content_id": 3}), "u", None, Some(after), middle));
    let (id, _, source, ad_type) = ADS[1];
    let moved = ad_row(id, "black-friday", source, ad_type, &mut rng);
    out.push(cdc.change("ads", json!({"ad_id": id}), "u", None, Some(moved), middle + HOUR));

    let mut subscription_id = 1000;
    for visitor in 1..=options.visitors as i64 {
        // First visits fill the first two thirds of the run; visitors come back on later days.
        let first = start + rng.below(((end - start) * 2 / 3) as u64) as i64;
        let (country, city) = COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize];
        let row = json!({"visitor_id": visitor, "visitor_uuid": uuid(&mut rng), "name": format!("Visitor {visitor}"),
            "country": country, "city": city, "device_type": DEVICES[rng.below(3) as usize],
            "source": VISIT_SOURCES[rng.below(4) as usize], "is_returning": false,
            "first_seen": records::zoned(first), "birth_date": J::Null, "lifetime_value": J::Null, "attributes": J::Null});
        out.push(cdc.change("visitors", json!({"visitor_id": visitor}), "c", None, Some(row.clone()), first - 1000));
        if rng.below(10) == 0 {
            let mut changed = row.clone();
            changed["source"] = json!(VISIT_SOURCES[rng.below(4) as usize]);
            changed["is_returning"] = json!(true);
            let at = first + DAY + rng.below(3 * DAY as u64) as i64;
            out.push(cdc.change("visitors", json!({"visitor_id": visitor}), "u", Some(row), Some(changed), at));
        }
        let mut visit_starts = vec![first];
        let mut day = first - first.rem_euclid(DAY) + DAY;
        while day < end {
            if rng.below(100) < 15 {
                visit_starts.push(day + rng.below(DAY as u64) as i64);
            }
            day += DAY;
        }
        let mut last_ad_click = None;
        let mut visit_days = std::collections::BTreeSet::new();
        for (number, visit_start) in visit_starts.into_iter().enumerate() {
            let session = format!("s-{visitor}-{number}");
            let mut at = visit_start;
            for _ in 0..1 + rng.below(6) {
                let event = activity(&mut rng, visitor, &session, at, &mut out);
                if event == "ad_click" || event == "affiliate_click" {
                    last_ad_click = Some(at);
                }
                visit_days.insert(at.div_euclid(DAY));
                at += 10_000 + rng.below(110_000) as i64;
            }
        }
        // A quarter of the visitors who clicked an ad subscribe one to three days later, on a day
        // they do not visit (subscription changes and the visitor's own events are then never
        // on the same day: a day-by-day replay orders them whatever the pipeline's latency).
        let free_day = |day: i64| !visit_days.contains(&day);
        let subscribe_day = last_ad_click.and_then(|clicked| {
            let click_day = clicked.div_euclid(DAY);
            (click_day + 1..=click_day + 3).find(|d| free_day(*d) && d * DAY > clicked)
        });
        if let (Some(clicked), Some(day)) = (last_ad_click, subscribe_day)
            && rng.below(4) == 0
        {
            subscription_id += 1;
            let at = (day * DAY + rng.below(DAY as u64) as i64).min(clicked + 7 * DAY);
            let kind = ["monthly", "yearly"][rng.below(2) as usize];
            let day = at.div_euclid(DAY);
            let row = json!({"subscription_id": subscription_id, "visitor_id": visitor, "subscription_type": kind,
                "start_date": day, "end_date": J::Null, "price": records::decimal(if kind == "monthly" { 999 } else { 9900 }, 2),
                "auto_renew": true, "updated_at": records::zoned(at)});
            let key = json!({"subscription_id": subscription_id});
            out.push(cdc.change("subscriptions", key.clone(), "c", None, Some(row.clone()), at));
            match rng.below(10) {
                0 if free_day(day + 1) => {
                    let gone = at + DAY;
                    out.push(cdc.change("subscriptions", key.clone(), "d", Some(row), None, gone));
                    out.push(cdc.tombstone("subscriptions", key, gone));
                }
                1 | 2 if free_day(day + 2) => {
                    let cancelled = at + 2 * DAY;
                    let mut ended = row.clone();
                    ended["end_date"] = json!(cancelled.div_euclid(DAY) + 1);
                    ended["auto_renew"] = json!(false);
                    ended["updated_at"] = json!(records::zoned(cancelled));
                    out.push(cdc.change("subscriptions", key, "u", Some(row), Some(ended), cancelled));
                }
                _ => {}
            }
        }
    }
    let mut mention = 0u64;
    let mut day = start;
    while day < end {
        for (outlet, _, _) in OUTLETS {
            for _ in 0..options.mentions_per_day {
                mention += 1;
                let at = day + rng.below(DAY as u64) as i64;
                // Now and then exactly on a category boundary (±0.25).
                let score =
                    if rng.below(25) == 0 { [250, -250][rng.below(2) as usize] } else { rng.below(2001) as i64 - 1000 };
                let value = json!({"mention_id": format!("m-{mention}"), "outlet_id": outlet,
                    "sentiment_score": score as f64 / 1000.0, "text": format!("mention {mention} of outlet {outlet}"),
                    "event_time": at});
                out.push(Generated::event("social_mentions", json!({"outlet_id": outlet}), Body::Json(value), at));
            }
        }
        day += DAY;
    }
    // Stable: same-time records keep creation order.
    out.sort_by_key(|g| g.timestamp);
    out
}

fn uuid(rng: &mut Rng) -> String {
    uuid::Uuid::from_u64_pair(rng.next(), rng.next()).to_string()
}

fn content_row(id: i64, rng: &mut Rng, start: i64) -> J {
    let kind = if id % 3 == 0 { "video" } else { "article" };
    let category = ["news", "culture", "sports", "tech", "travel"][(id % 5) as usize];
    json!({"content_id": id, "type": kind, "title": format!("{} {id}: {}", kind, ["a day out", "the big match", "new gadgets", "city guide"][(id % 4) as usize]),
        "author": format!("Author {}", id % 7), "category": category,
        "published_at": records::zoned(start - (id * DAY)), "word_count": 300 + rng.below(2000),
        "is_premium": id % 4 == 0, "tags": J::Null, "body": format!("Body of content {id}.")})
}

fn ad_row(id: i64, campaign: &str, source: &str, ad_type: &str, rng: &mut Rng) -> J {
    json!({"ad_id": id, "campaign": campaign, "source": source, "ad_type": ad_type,
        "cpm": records::decimal(150 + rng.below(400) as i128, 2),
        "bid_multiplier": {"scale": 2, "value": records::unscaled(100 + rng.below(50) as i128)},
        "ctr": 0.01 + rng.below(50) as f64 / 1000.0, "active": true,
        "created_at": 1_700_000_000_000_000i64, "daily_start": 21_600_000_000i64})
}

/// One activity event of a visit: a click event (70%) or an access-log line. Returns its type.
fn activity(rng: &mut Rng, visitor: i64, session: &str, at: i64, out: &mut Vec<Generated>) -> &'static str {
    let event_type = match rng.below(100) {
        0..50 => "page_view",
        50..60 => "click",
        60..68 => "ad_click",
        68..72 => "affiliate_click",
        72..77 => "share",
        77..90 => "search",
        90..97 => "login",
        _ => "subscribe",
    };
    let content = matches!(event_type, "page_view" | "share").then(|| 1 + rng.below(CONTENT as u64) as i64);
    let ad = match event_type {
        "ad_click" => Some(ADS[rng.below(6) as usize].0),
        "affiliate_click" => Some(ADS[6 + rng.below(2) as usize].0),
        _ => None,
    };
    let device = DEVICES[rng.below(3) as usize];
    let key = json!({"visitor_id": visitor});
    let path = match (event_type, content, ad) {
        ("page_view", Some(c), _) if c % 3 == 0 => format!("/video/{c}"),
        ("page_view", Some(c), _) => format!("/article/{c}"),
        ("share", Some(c), _) => format!("/share/{c}"),
        ("ad_click", _, Some(a)) => format!("/ad/{a}"),
        ("affiliate_click", _, Some(a)) => format!("/go/{a}"),
        ("search", _, _) => "/search?q=weekend".to_owned(),
        (other, _, _) => format!("/{other}"),
    };
    if event_type != "click" && rng.below(10) < 3 {
        // Access-log line: the web server saw the request; some noise comes with it.
        let status = if rng.below(50) == 0 { 404 } else { 200 };
        out.push(Generated::event(
            "weblogs",
            key.clone(),
            Body::Line(records::log_line(visitor, &path, status, at)),
            at,
        ));
        if rng.below(4) == 0 {
            let asset = records::log_line(visitor, "/static/site.css", 200, at + 150);
            out.push(Generated::event("weblogs", key.clone(), Body::Line(asset), at + 150));
        }
        if rng.below(400) == 0 {
            out.push(Generated::event(
                "weblogs",
                key,
                Body::Line("GET /article/1 HTTP/1.1 (truncated)".into()),
                at + 200,
            ));
        }
        return event_type;
    }
    let referrer = if rng.below(2) == 0 { J::Null } else { json!("https://social.example/") };
    let value = json!({"event_id": uuid(rng), "visitor_id": visitor, "session_id": session, "event_type": event_type,
        "content_id": content, "ad_id": ad, "url": format!("https://happytimes.example{path}"), "referrer": referrer,
        "geo": J::Null, "device_type": device, "user_agent": "Mozilla/5.0 (HappyTimes app)", "event_time": at});
    out.push(Generated::event("clicks", key, Body::Json(value), at));
    event_type
}
