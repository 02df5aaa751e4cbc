//! The `happystreams` command line: parses flags, loads the layered config, sets up logging and
//! hands over to `happystreams::commands`.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use happystreams::commands::{
    decode, demo, describe, generate, lake_sink, query, registry, replay, run as run_cmd, schemas, sftp_sync,
};
use happystreams::config::{Config, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: the engine allocates many short-lived rows; measured +53-62% events/s over glibc
/// malloc on the topology bench (`cargo bench --bench topology`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Kafka-Streams-style stateful stream processor: Debezium CDC, RocksDB state, Avro with a
/// Schema Registry, and a Parquet lake.
///
/// Configuration is layered: built-in defaults, then the --config file (TOML), then
/// HAPPYSTREAMS_<SECTION>__<KEY> environment variables, then flags.
#[derive(Debug, Parser)]
#[command(name = "happystreams", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// Config file (TOML) with [log], [registry], [kafka], [runtime], [lake] and [sftp] sections.
    #[arg(long, global = true, value_name = "FILE", env = "HAPPYSTREAMS_CONFIG")]
    config: Option<PathBuf>,
    /// Log level or filter, e.g. `debug` or `happystreams=debug,rdkafka=warn` (RUST_LOG wins).
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the embedded default with no external service: registry, Avro round trip, a real
    /// Debezium capture decoded into change records, and a topology run over it by the engine.
    Demo(demo::DemoArgs),
    /// Decode records (files, a JSON-lines dump or a topic range) and print them as JSON lines.
    Decode(decode::DecodeArgs),
    /// Validate a topology file and print its graph (text or Graphviz DOT).
    Describe(describe::DescribeArgs),
    /// Generate seeded HappyTimes traffic (Debezium CDC of the dimension tables, clicks,
    /// access-log lines, social mentions) to a JSON-lines file or to Kafka.
    Generate(generate::GenerateArgs),
    /// Run a topology against a Kafka cluster as a member of its application's consumer group
    /// (state in RocksDB, restored from changelog topics; stops cleanly on SIGTERM / Ctrl-C).
    Run(run_cmd::RunArgs),
    /// Land Kafka topics in the lake as Parquet (Hive partitions by record time), exactly once
    /// per record; a consumer group member.
    LakeSink(lake_sink::LakeSinkArgs),
    /// Pull new files from the configured SFTP sources into the lake (`landing/<source>/`), each
    /// once; non-zero exit if any file failed.
    SftpSync(sftp_sync::SftpSyncArgs),
    /// Run a topology in process over a JSON-lines input file and write each output topic's
    /// records (all, and the latest per key).
    Replay(replay::ReplayArgs),
    /// The latest value of every key of a topic (an output topic of a topology), as a table or
    /// JSON; `--follow` keeps it updating
    Query(query::QueryArgs),
    /// The Confluent-compatible Schema Registry.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// Register or check the project's Avro schemas in any Confluent-compatible registry.
    #[command(subcommand)]
    Schemas(SchemasCommand),
}

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// Serve the registry's REST API until Ctrl-C.
    Serve(registry::ServeArgs),
    /// Print an Argon2 hash of a password (read from stdin) for a `--users` file line.
    HashPassword,
}

#[derive(Debug, Subcommand)]
enum SchemasCommand {
    /// Register every `<subject>.avsc` (TopicNameStrategy subjects); prints subject and id.
    Register(schemas::SchemasArgs),
    /// Check every `<subject>.avsc` against the registry's latest version; non-zero exit if any
    /// is incompatible.
    Check(schemas::SchemasArgs),
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(cli.config.as_deref(), std::env::vars()).context("loading configuration")?;
    if let Some(level) = cli.log_level {
        config.log.level = level;
    }
    if let Some(format) = cli.log_format {
        config.log.format = format;
    }
    happystreams::observe::init_logging(&config.log);
    match cli.command {
        Command::Demo(args) => demo::run(&args).await?,
        Command::Decode(args) => {
            let summary = decode::run(&args, &config, &mut std::io::stdout().lock()).await?;
            if summary.errors > 0 {
                eprintln!("{} of {} records failed to decode (see the `error` lines)", summary.errors, summary.records);
                return Ok(ExitCode::from(1));
            }
        }
        Command::Run(args) => run_cmd::run(&args, &config).await?,
        Command::Query(args) => query::run(&args, &config, &mut std::io::stdout().lock()).await?,
        Command::SftpSync(args) => {
            if sftp_sync::run(&args, &config).await?.failed > 0 {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Describe(args) => print!("{}", describe::run(&args)?),
        Command::Generate(args) => generate::run(&args, &config).await?,
        Command::LakeSink(args) => lake_sink::run(&args, &config).await?,
        Command::Replay(args) => replay::run(&args)?,
        Command::Registry(RegistryCommand::Serve(args)) => registry::serve(&args).await?,
        Command::Registry(RegistryCommand::HashPassword) => registry::hash_password()?,
        Command::Schemas(command) => {
            let (args, register) = match command {
                SchemasCommand::Register(args) => (args, true),
                SchemasCommand::Check(args) => (args, false),
            };
            if let Some(url) = &args.registry {
                config.registry.url = url.clone();
            }
            if register {
                schemas::register(&args, &config.registry).await?;
            } else {
                schemas::check(&args, &config.registry).await?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
