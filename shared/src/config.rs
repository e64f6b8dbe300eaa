//! Settings both binaries take. Each is a flag and an environment variable;
//! the flag is the variable's name in lower case with dashes and wins.

use std::time::Duration;

use crate::subjects::{BadStreamName, Subjects};
use crate::telemetry::LogFormat;

#[derive(clap::Args, Clone, Debug)]
pub struct NatsConfig {
    /// NATS server(s), comma separated (the nodes of a cluster).
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The JetStream stream; every subject, consumer and bucket name derives
    /// from it.
    #[arg(long, env = "CHAT_STREAM", default_value = "CHAT")]
    pub chat_stream: String,
    /// Replicas of the stream when it is created (3 on a NATS cluster).
    #[arg(long, env = "CHAT_STREAM_REPLICAS", default_value_t = 1)]
    pub chat_stream_replicas: usize,
    /// How long the stream keeps jobs, in days: the window a replay can
    /// rebuild from, and the longest outage of every persister that loses
    /// nothing.
    #[arg(long, env = "CHAT_STREAM_MAX_AGE_DAYS", default_value_t = 30)]
    pub chat_stream_max_age_days: u64,
}

impl NatsConfig {
    /// The servers of `NATS_URL`, which may list several, comma separated
    /// (the nodes of a cluster).
    pub fn servers(&self) -> Vec<String> {
        self.nats_url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// # Errors
    /// When `CHAT_STREAM` is not a valid stream name.
    pub fn subjects(&self) -> Result<Subjects, BadStreamName> {
        Subjects::new(&self.chat_stream)
    }

    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.chat_stream_max_age_days * 24 * 3600)
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct DbConfig {
    /// PostgreSQL connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/chat"
    )]
    pub database_url: String,
    /// Connections in the pool.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 8)]
    pub database_pool_size: u32,
}

#[derive(clap::Args, Clone, Debug)]
pub struct LogConfig {
    /// Log filter, e.g. `info` or `gateway=debug,info`.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,
    /// `text` for people, `json` for log collectors.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl LogConfig {
    pub fn init(&self) {
        crate::telemetry::init(&self.rust_log, self.log_format);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        nats: NatsConfig,
    }

    #[test]
    fn nats_url_takes_a_list_of_servers() {
        let cli = Cli::parse_from(["x", "--nats-url", "nats://a:4222, nats://b:4222,"]);
        assert_eq!(cli.nats.servers(), ["nats://a:4222", "nats://b:4222"]);
        let one = Cli::parse_from(["x"]);
        assert_eq!(one.nats.servers(), ["nats://127.0.0.1:4222"]);
        assert_eq!(one.nats.chat_stream, "CHAT");
    }
}
