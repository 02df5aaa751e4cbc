//! Click events as rows of `schemas/happytimes.clicks-value.avsc` (for Avro round trips,
//! codec benches and tests).

use crate::record::{Row, TimeUnit, Value};

/// Seeded generator of click events (xorshift64*): the same seed gives the same events.
pub struct ClickGenerator(u64);

impl ClickGenerator {
    /// A generator with a seed.
    pub fn new(seed: u64) -> Self {
        ClickGenerator(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// The `index`-th click event, as a row of `schemas/happytimes.clicks-value.avsc`.
    pub fn click(&mut self, index: usize) -> Value {
        let r = self;
        let event_type = r.pick(&[
            "page_view",
            "page_view",
            "page_view",
            "click",
            "ad_click",
            "affiliate_click",
            "subscribe",
            "share",
            "search",
            "login",
        ]);
        let content = (event_type == "page_view" || event_type == "share").then(|| 100 + r.below(3) as i32);
        let ad = (event_type == "ad_click" || event_type == "affiliate_click").then(|| 10 + r.below(2) as i32);
        let visitor = 1 + r.below(5) as i64;
        let geo = if r.below(4) == 0 {
            Value::Null
        } else {
            let (country, city, lat, lon) = [
                ("FR", "Paris", 48.8566, 2.3522),
                ("US", "Austin", 30.2672, -97.7431),
                ("DE", "Berlin", 52.52, 13.405),
            ][r.below(3) as usize];
            Value::Struct(
                Row::new()
                    .with("country", Value::String(country.into()))
                    .with("city", Value::String(city.into()))
                    .with("lat", Value::Double(lat))
                    .with("lon", Value::Double(lon)),
            )
        };
        let url = match (content, ad) {
            (Some(c), _) => format!("https://happytimes.example/article/{c}"),
            (_, Some(a)) => format!("https://happytimes.example/go/ad/{a}"),
            _ => format!("https://happytimes.example/{event_type}"),
        };
        Value::Struct(
            Row::new()
                .with("event_id", Value::Uuid(uuid::Uuid::from_u64_pair(r.next(), index as u64)))
                .with("visitor_id", Value::Long(visitor))
                .with("session_id", Value::String(format!("s-{visitor}-{}", r.below(3))))
                .with("event_type", Value::String(event_type.into()))
                .with("content_id", content.map_or(Value::Null, Value::Int))
                .with("ad_id", ad.map_or(Value::Null, Value::Int))
                .with("url", Value::String(url))
                .with(
                    "referrer",
                    if r.below(2) == 0 {
                        Value::Null
                    } else {
                        Value::String(r.pick(&["https://news.example/", "https://social.example/"]).into())
                    },
                )
                .with("geo", geo)
                .with("device_type", Value::String(r.pick(&["mobile", "desktop", "tablet"]).into()))
                .with("user_agent", Value::String("Mozilla/5.0 (demo)".into()))
                .with(
                    "event_time",
                    Value::Timestamp {
                        value: 1_719_792_000_000 + index as i64 * 1_000 + r.below(1_000) as i64,
                        unit: TimeUnit::Millis,
                    },
                ),
        )
    }
}
