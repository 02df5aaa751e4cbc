//! `happystreams schemas register|check`: put the project's `schemas/*.avsc` into any
//! Confluent-compatible registry, or check them against it (CI-friendly exit status).

use crate::connectors::registry::RegistryConfig;
use crate::connectors::registry::client::{self, CheckOutcome};
use std::path::PathBuf;

/// Flags shared by `schemas register` and `schemas check`.
#[derive(Debug, Clone, clap::Args)]
pub struct SchemasArgs {
    /// Directory of `<subject>.avsc` files (subject = `<topic>-value` or `<topic>-key`).
    #[arg(long, default_value = "schemas")]
    pub dir: PathBuf,
    /// Registry URL (overrides the config).
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,
}

/// Registers every schema file; prints `subject id`. Fails on the first rejection.
pub async fn register(args: &SchemasArgs, registry: &RegistryConfig) -> anyhow::Result<()> {
    for file in client::schema_files(&args.dir)? {
        let id = client::register(registry, &file).await?;
        println!("{}\tid {id}\t{}", file.subject, file.path.display());
    }
    Ok(())
}

/// Checks every schema file; prints a verdict per subject and fails if any is incompatible.
pub async fn check(args: &SchemasArgs, registry: &RegistryConfig) -> anyhow::Result<()> {
    let mut incompatible = 0;
    for file in client::schema_files(&args.dir)? {
        match client::check(registry, &file).await? {
            CheckOutcome::NewSubject => println!("{}\tnew subject (compatible)", file.subject),
            CheckOutcome::Compatible => println!("{}\tcompatible", file.subject),
            CheckOutcome::Incompatible(reasons) => {
                incompatible += 1;
                println!("{}\tINCOMPATIBLE", file.subject);
                for reason in reasons {
                    println!("\t- {reason}");
                }
            }
        }
    }
    if incompatible > 0 {
        anyhow::bail!(
            "{incompatible} schema(s) are incompatible with {}; evolve them compatibly (add fields with defaults) or change the subject's compatibility level",
            registry.url
        );
    }
    Ok(())
}
