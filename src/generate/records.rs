//! The generator's records and their encodings (Debezium plain-JSON envelopes, combined
//! access-log lines), and its random numbers.

use base64::Engine;
use serde_json::{Value as J, json};

/// A record's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A JSON value (events, Debezium envelopes).
    Json(J),
    /// A text line (access logs).
    Line(String),
    /// A tombstone (null value) after a delete.
    Tombstone,
}

impl Body {
    /// The record value's bytes (`None`: a tombstone).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            Body::Json(value) => Some(value.to_string().into_bytes()),
            Body::Line(line) => Some(line.clone().into_bytes()),
            Body::Tombstone => None,
        }
    }
}

/// One generated record.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The HappyTimes source it belongs to (`clicks`, `visitors`, ...; see
    /// `topologies/happytimes.yaml`).
    pub source: &'static str,
    /// Its Kafka topic.
    pub topic: &'static str,
    /// Record key (JSON, keyed like the Debezium table it joins: `{"visitor_id": 42}`).
    pub key: J,
    /// Record value.
    pub body: Body,
    /// Record timestamp: the event time, or the change's commit time.
    pub timestamp: i64,
}

impl Generated {
    pub(super) fn event(source: &'static str, key: J, body: Body, timestamp: i64) -> Generated {
        Generated { source, topic: topic_of(source), key, body, timestamp }
    }

    /// The line `happystreams generate --output` writes (the topology test driver's input
    /// format, plus the topic).
    pub fn to_json_line(&self) -> J {
        let value = match &self.body {
            Body::Json(value) => value.clone(),
            Body::Line(line) => J::String(line.clone()),
            Body::Tombstone => J::Null,
        };
        json!({"source": self.source, "topic": self.topic, "key": self.key, "value": value, "timestamp": self.timestamp})
    }
}

/// The topic of a HappyTimes source.
pub fn topic_of(source: &str) -> &'static str {
    match source {
        "clicks" => "happytimes.clicks",
        "weblogs" => "happytimes.weblogs",
        "social_mentions" => "happytimes.social_mentions",
        "visitors" => "happytimes.public.visitors",
        "content" => "happytimes.public.content",
        "ads" => "happytimes.public.ads",
        "subscriptions" => "happytimes.public.subscriptions",
        _ => "happytimes.public.social_outlets",
    }
}

/// Debezium change events with increasing transaction ids and LSNs.
#[derive(Debug, Default)]
pub(super) struct Cdc {
    tx: i64,
}

impl Cdc {
    /// A change event of `table` committed at `at` (snapshot reads are `op: r`).
    pub fn change(
        &mut self,
        table: &'static str,
        key: J,
        op: &str,
        before: Option<J>,
        after: Option<J>,
        at: i64,
    ) -> Generated {
        self.tx += 1;
        let lsn = 76_000_000 + self.tx * 512;
        let snapshot = if op == "r" { "true" } else { "false" };
        let value = json!({
            "before": before, "after": after,
            "source": {"version": "3.6.3.Final", "connector": "postgresql", "name": "happytimes", "ts_ms": at,
                "snapshot": snapshot, "db": "happytimes", "sequence": format!("[null,\"{lsn}\"]"),
                "ts_us": at * 1000, "ts_ns": at * 1_000_000, "schema": "public", "table": table,
                "txId": 1000 + self.tx, "lsn": lsn, "xmin": J::Null, "origin": J::Null, "origin_lsn": J::Null},
            "transaction": J::Null, "op": op, "ts_ms": at + 40, "ts_us": (at + 40) * 1000, "ts_ns": (at + 40) * 1_000_000,
        });
        Generated::event(table, key, Body::Json(value), at)
    }

    /// The tombstone Debezium writes after a delete.
    pub fn tombstone(&self, table: &'static str, key: J, at: i64) -> Generated {
        Generated::event(table, key, Body::Tombstone, at)
    }
}

/// A `numeric(p, s)` value as Debezium's precise mode writes it: base64 of the big-endian
/// two's-complement unscaled integer.
pub fn decimal(unscaled_value: i128, _scale: u32) -> J {
    J::String(unscaled(unscaled_value))
}

/// Base64 of the minimal big-endian two's-complement bytes of `value`.
pub fn unscaled(value: i128) -> String {
    let bytes = value.to_be_bytes();
    let mut start = 0;
    while start < bytes.len() - 1 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xFF && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    base64::engine::general_purpose::STANDARD.encode(&bytes[start..])
}

/// A `timestamptz` as Debezium writes it: ISO 8601 in UTC, microseconds, `Z`.
pub fn zoned(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}

/// A combined access-log line with the visitor id as one more quoted field.
pub fn log_line(visitor: i64, path: &str, status: u16, at: i64) -> String {
    let time = chrono::DateTime::from_timestamp_millis(at)
        .map(|t| t.format("%d/%b/%Y:%H:%M:%S +0000").to_string())
        .unwrap_or_default();
    let ip = format!("198.51.100.{}", visitor % 250 + 1);
    let bytes = if status == 200 { 2048 + (visitor * 37) % 4096 } else { 153 };
    format!(
        "{ip} - - [{time}] \"GET {path} HTTP/1.1\" {status} {bytes} \"https://happytimes.example/\" \"Mozilla/5.0 (X11; Linux x86_64)\" \"{visitor}\""
    )
}

/// xorshift64*: small, fast and the same everywhere for a seed.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` ≥ 1).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_encoded_like_debezium_precise_mode() {
        // The capture's README: "AeI6" is 1234.50 in numeric(10,2).
        assert_eq!(unscaled(123_450), "AeI6");
        assert_eq!(unscaled(0), "AA==");
        assert_eq!(unscaled(-1), "/w==");
        assert_eq!(unscaled(128), "AIA=");
    }

    #[test]
    fn log_lines_and_zoned_times_look_like_the_real_thing() {
        assert_eq!(zoned(1_795_624_450_603), "2026-11-25T16:34:10.603000Z");
        let line = log_line(42, "/article/7", 200, 1_795_624_450_603);
        assert!(
            line.starts_with("198.51.100.43 - - [25/Nov/2026:16:34:10 +0000] \"GET /article/7 HTTP/1.1\" 200"),
            "{line}"
        );
        assert!(line.ends_with(" \"42\""), "{line}");
    }
}
