//! `happystreams replay`: run a topology in process over a JSON-lines input file (the topology
//! test driver's format, e.g. from `happystreams generate --output`) and write what each output
//! topic received — for checking a topology against a batch computation, or trying one out
//! without a broker. Records are processed in file order by one task holding every partition.

use crate::testkit::TopologyTestDriver;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

/// Flags of `happystreams replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The topology file.
    #[arg(long, value_name = "FILE")]
    pub topology: PathBuf,
    /// Input: JSON lines `{"source", "key", "value", "timestamp"}` (`-`: stdin).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// Directory for the outputs: `<topic>.jsonl` with every record, and `<topic>.latest.jsonl`
    /// with the last value per key (what a compacted topic keeps).
    #[arg(long, value_name = "DIR")]
    pub output_dir: PathBuf,
}

/// Runs the command.
pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let mut driver = TopologyTestDriver::load(&args.topology)?;
    let reader: Box<dyn BufRead> = if args.input.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.input)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.input.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    std::fs::create_dir_all(&args.output_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", args.output_dir.display()))?;
    let mut all: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let mut latest: BTreeMap<String, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
    let (mut records, mut rejected) = (0u64, 0u64);
    for (number, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let input: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{} line {}: not JSON: {e}", args.input.display(), number + 1))?;
        records += 1;
        if let Err(e) = driver.pipe_json(&input) {
            // The Kafka runtime applies the source's `on_error` here; replay reports and goes on.
            rejected += 1;
            eprintln!("{} line {}: rejected: {e}", args.input.display(), number + 1);
        }
        for topic in driver.output_topics() {
            for output in driver.read_output(&topic) {
                let key = output.key.to_json();
                let value = output.value.map(|row| crate::record::Value::Struct(row).to_json());
                let value = value.unwrap_or(serde_json::Value::Null);
                latest
                    .entry(topic.clone())
                    .or_default()
                    .insert(key.to_string(), serde_json::json!({"key": key, "value": value}));
                all.entry(topic.clone())
                    .or_default()
                    .push(serde_json::json!({"key": key, "value": value, "timestamp": output.timestamp}));
            }
        }
    }
    for (topic, outputs) in &all {
        let mut file = std::io::BufWriter::new(std::fs::File::create(args.output_dir.join(format!("{topic}.jsonl")))?);
        for output in outputs {
            writeln!(file, "{output}")?;
        }
        let mut file =
            std::io::BufWriter::new(std::fs::File::create(args.output_dir.join(format!("{topic}.latest.jsonl")))?);
        for entry in latest.get(topic).into_iter().flat_map(|t| t.values()) {
            if !entry["value"].is_null() {
                writeln!(file, "{entry}")?;
            }
        }
    }
    eprintln!(
        "{records} records replayed ({rejected} rejected); {} output topics written to {}",
        all.len(),
        args.output_dir.display()
    );
    Ok(())
}
