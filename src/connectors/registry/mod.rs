//! Schema Registry: a Confluent-compatible server of our own, and the client side.
//!
//! No Confluent or Karapace registry installs on every machine, and the embedded default must
//! run with no external service, so happystreams ships a registry that speaks Confluent's REST
//! API for Avro ([`server`]) over a small persistent store ([`store`]) with real compatibility
//! checks ([`compat`]). It runs standalone (`happystreams registry serve`) or in-process
//! ([`RunningRegistry::start`]). The [`client`] registers and checks the project's `.avsc` files
//! against any compatible registry, ours or Confluent's.

pub mod client;
pub mod compat;
pub mod server;
pub mod store;

pub use compat::CompatibilityLevel;
pub use server::{RunningRegistry, ServerSecurity};
pub use store::{RegistryError, RegistryStore, SchemaReference};

use serde::{Deserialize, Serialize};

/// Where the Schema Registry is and how to log in.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL, e.g. `http://127.0.0.1:8081`.
    pub url: String,
    /// Basic-auth user, when the registry needs one.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password (never logged).
    #[serde(default)]
    pub password: Option<String>,
    /// A PEM file of CA certificates to trust for an `https` registry besides the system's
    /// (for a private CA or a self-signed certificate).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig { url: "http://127.0.0.1:8081".into(), username: None, password: None, ca_file: None }
    }
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}
