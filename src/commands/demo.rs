//! `happystreams demo`: the embedded default — runs with no external service.
//!
//! What it shows today (the full HappyTimes pipeline replaces it as the engine lands):
//! 1. an in-process Schema Registry on loopback, with the project's event schemas registered;
//! 2. generated click events encoded as Confluent-framed Avro by `schema_registry_converter`
//!    and decoded back by happystreams' codec, checked equal;
//! 3. a real Debezium capture of the HappyTimes tables (bundled) decoded into change records;
//! 4. the engine: `topologies/demo_funnel.yaml` run by the test driver over the capture's
//!    visitors and the generated clicks, printing page views per visitor source and minute as
//!    each window closes.

use crate::codec::avro::{AvroCodec, AvroSchema};
use crate::codec::debezium::DebeziumDecoder;
use crate::commands::decode::parse_jsonl;
use crate::connectors::registry::client::sr_settings;
use crate::connectors::registry::{RegistryConfig, RegistryStore, RunningRegistry};
use crate::record::{CdcEvent, Row, TimeUnit, Value};
use schema_registry_converter::async_impl::avro::AvroEncoder;
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;
use std::collections::BTreeMap;

/// Flags of `happystreams demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How many click events to generate.
    #[arg(long, default_value_t = 20)]
    pub events: usize,
    /// Seed for the generator (same seed, same events).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

const CLICK_SCHEMA: &str = include_str!("../../schemas/happytimes.clicks-value.avsc");
const CLICKS_TOPIC: &str = "happytimes.clicks";
const DEBEZIUM_CAPTURE: &str = include_str!("../../tests/fixtures/debezium/json-schemas-precise/records.jsonl");
const DEMO_TOPOLOGY: &str = include_str!("../../topologies/demo_funnel.yaml");

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

/// Runs the demo, printing to stdout.
pub async fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let registry = RunningRegistry::start("127.0.0.1:0".parse()?, RegistryStore::in_memory()).await?;
    println!("schema registry (embedded, in memory) at {}", registry.url);
    let config = RegistryConfig { url: registry.url.clone(), ..RegistryConfig::default() };
    let settings = sr_settings(&config)?;

    // 1-2. Register the click schema through the producer-side encoder and round-trip clicks.
    let writer = AvroSchema::parse(0, CLICK_SCHEMA)?;
    let encoder = AvroEncoder::new(settings.clone());
    let codec = AvroCodec::with_registry(settings);
    let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
        CLICKS_TOPIC.into(),
        false,
        schema_registry_converter::schema_registry_common::SuppliedSchema::new(
            Some("happytimes.events.Click".into()),
            schema_registry_converter::schema_registry_common::SchemaType::Avro,
            CLICK_SCHEMA.into(),
        ),
    );
    let mut generator = ClickGenerator::new(args.seed);
    println!("\n-- {} click events: Avro via the registry and back --", args.events);
    for index in 0..args.events {
        let click = generator.click(index);
        let avro_value = writer.to_avro_value(&click)?;
        let bytes = encoder.encode_value(avro_value, &strategy).await.map_err(|e| anyhow::anyhow!("encode: {e}"))?;
        let decoded = codec.decode(&bytes).await?;
        anyhow::ensure!(decoded == click, "click {index} changed in the round trip: {decoded:?} != {click:?}");
        println!("{}", decoded.to_json());
    }

    // 3. Decode the bundled real Debezium capture.
    let records = parse_jsonl(DEBEZIUM_CAPTURE, "bundled capture")?;
    let decoder = DebeziumDecoder::json(true);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    println!("\n-- {} real Debezium records (PostgreSQL, JSON with schemas) --", records.len());
    for record in &records {
        let event = decoder.decode(record).await?;
        let (kind, line) = describe(&event);
        *counts.entry(kind).or_default() += 1;
        println!("{line}");
    }
    let registered = codec.schema(1).await.map(|s| s.id).unwrap_or_default();
    println!("\n{} clicks round-tripped (schema id {registered}); Debezium events by kind: {counts:?}", args.events);
    registry.shutdown().await?;

    // 4. The engine over the same data.
    run_funnel(args, &records, &decoder).await?;
    Ok(())
}

async fn run_funnel(
    args: &DemoArgs,
    capture: &[crate::record::Record],
    decoder: &DebeziumDecoder,
) -> anyhow::Result<()> {
    use crate::testkit::TopologyTestDriver;
    let plan = crate::topology::parse(DEMO_TOPOLOGY, None, std::path::Path::new("."))?;
    let mut driver = TopologyTestDriver::new(plan)?;
    println!("\n-- topology demo_funnel: page views per visitor source and minute (emit final) --");
    for record in
        capture.iter().filter(|r| r.position.as_ref().is_some_and(|p| &*p.topic == "happytimes.public.visitors"))
    {
        driver.pipe_change("visitors", &decoder.decode(record).await?)?;
    }
    let mut generator = ClickGenerator::new(args.seed);
    // Enough clicks to span a few minutes of event time (one click per second).
    let clicks = args.events.max(200);
    for index in 0..clicks {
        if let Value::Struct(row) = generator.click(index) {
            driver.pipe("clicks", Value::Null, row, 0)?;
        }
        for output in driver.read_output("happytimes.funnel.views_per_source") {
            if let Some(row) = output.value {
                let text = |f: &str| {
                    row.get(f)
                        .map(|v| v.to_json().as_str().map(str::to_owned).unwrap_or_else(|| v.to_json().to_string()))
                        .unwrap_or_default()
                };
                println!(
                    "{} - {}  source={:<8} views={:<3} visitors={}",
                    text("window_start"),
                    &text("window_end")[11..],
                    text("source"),
                    text("views"),
                    text("visitors")
                );
            }
        }
    }
    println!("({clicks} clicks; the last minute is still open)");
    Ok(())
}

fn short(row: &Option<Row>) -> String {
    row.as_ref().map_or("-".into(), |r| r.to_json().to_string())
}

fn describe(event: &CdcEvent) -> (String, String) {
    match event {
        CdcEvent::Change(c) => {
            let table = format!("{}.{}", c.source.schema().unwrap_or(""), c.source.table().unwrap_or(""));
            let mut line = format!("{:<2} {table:<22} key={} ", c.op.code(), short(&c.key));
            match c.op {
                crate::record::Op::Delete => line.push_str(&format!(
                    "before={}{}",
                    short(&c.before),
                    if c.before_key_only { " (key only)" } else { "" }
                )),
                crate::record::Op::Message => line.push_str(&format!(
                    "message prefix={:?} {} bytes",
                    c.message.as_ref().and_then(|m| m.prefix.clone()),
                    c.message.as_ref().map_or(0, |m| m.content.len())
                )),
                _ => line.push_str(&format!("after={}", short(&c.after))),
            }
            (format!("{:?}", c.op).to_lowercase(), truncate(line))
        }
        CdcEvent::Tombstone { key, .. } => {
            ("tombstone".into(), format!("   tombstone              key={}", short(key)))
        }
        CdcEvent::Transaction(t) => {
            ("transaction".into(), format!("   tx {:?} {} events={:?}", t.status, t.id, t.event_count))
        }
    }
}

fn truncate(mut line: String) -> String {
    if line.chars().count() > 200 {
        line = line.chars().take(197).collect::<String>() + "...";
    }
    line
}
