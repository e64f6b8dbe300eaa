//! The persister's settings.

use std::net::SocketAddr;

use shared::config::{DbConfig, LogConfig, NatsConfig};

#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "persister",
    version,
    about = "Writes chat jobs from JetStream to PostgreSQL"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum Command {
    /// Create or update the schema, then exit.
    Migrate,
    /// Rebuild the database from the stream: apply its jobs again (nothing
    /// already there changes), then exit.
    Replay(crate::replay::Range),
}

#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsConfig,
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub log: LogConfig,
    #[command(flatten)]
    pub webhooks: crate::webhooks::WebhookConfig,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "PERSISTER_ADDR", default_value = "0.0.0.0:9090")]
    pub persister_addr: SocketAddr,
    /// Most jobs written in one transaction.
    #[arg(long, env = "PERSISTER_MAX_BATCH", default_value_t = 1000)]
    pub persister_max_batch: usize,
}
