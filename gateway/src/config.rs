//! The gateway's settings.

use std::net::SocketAddr;

use shared::config::{DbConfig, LogConfig, NatsConfig};

/// The secret used when none is configured: fine on a laptop, never in
/// production (a loud warning says so at start).
pub const DEV_SECRET: &str = "chat-development-secret-do-not-use-in-production";

#[derive(clap::Parser, Clone, Debug)]
#[command(name = "gateway", version, about = "Chat WebSocket and REST gateway")]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsConfig,
    #[command(flatten)]
    pub db: DbConfig,
    #[command(flatten)]
    pub log: LogConfig,
    /// Where the gateway listens.
    #[arg(long, env = "GATEWAY_ADDR", default_value = "0.0.0.0:8080")]
    pub gateway_addr: SocketAddr,
    /// HMAC key of the HS256 tokens (its UTF-8 bytes).
    #[arg(long, env = "CHAT_JWT_SECRET", hide_env_values = true)]
    pub chat_jwt_secret: Option<String>,
    /// Frames a connection may send per second, sustained.
    #[arg(long, env = "GATEWAY_RATE_PER_S", default_value_t = 100.0)]
    pub gateway_rate_per_s: f64,
    /// Frames a connection may send at once before the rate applies.
    #[arg(long, env = "GATEWAY_RATE_BURST", default_value_t = 200.0)]
    pub gateway_rate_burst: f64,
    /// Open WebSocket connections this gateway holds at most.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub gateway_max_connections: usize,
    /// Events queued for one connection before it counts as too slow and is
    /// disconnected.
    #[arg(long, env = "GATEWAY_CONNECTION_QUEUE", default_value_t = 1024)]
    pub gateway_connection_queue: usize,
}

impl Config {
    /// The JWT secret, or the development one with a warning.
    pub fn jwt_secret(&self) -> String {
        match &self.chat_jwt_secret {
            Some(s) if !s.is_empty() => s.clone(),
            _ => {
                tracing::warn!(
                    "CHAT_JWT_SECRET is not set: using the built-in development secret. \
                     Anyone can mint tokens for this gateway. Set CHAT_JWT_SECRET in production."
                );
                DEV_SECRET.to_owned()
            }
        }
    }
}
