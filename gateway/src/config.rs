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
    /// A file of PEM public keys (RSA, EC P-256, Ed25519) of the identity
    /// provider: RS256, ES256 and EdDSA tokens.
    #[arg(long, env = "CHAT_JWT_PUBLIC_KEYS")]
    pub chat_jwt_public_keys: Option<std::path::PathBuf>,
    /// The identity provider's JWKS document; a token's `kid` picks the key.
    #[arg(long, env = "CHAT_JWKS_URL")]
    pub chat_jwks_url: Option<String>,
    /// How often the JWKS document is fetched again, in seconds (and at
    /// most every 30 s on an unknown `kid`).
    #[arg(long, env = "CHAT_JWKS_REFRESH_S", default_value_t = 300)]
    pub chat_jwks_refresh_s: u64,
    /// When set, every token's `iss` must be this.
    #[arg(long, env = "CHAT_JWT_ISSUER")]
    pub chat_jwt_issuer: Option<String>,
    /// When set, every token's `aud` must be this.
    #[arg(long, env = "CHAT_JWT_AUDIENCE")]
    pub chat_jwt_audience: Option<String>,
    /// `on`: anyone may sign in as a guest; `off`: `POST /v1/auth/guest`
    /// answers 403 and only the identity provider's tokens get in.
    #[arg(long, env = "CHAT_GUEST_SIGNIN", default_value = "on", value_parser = ["on", "off"])]
    pub chat_guest_signin: String,
    /// Keys of the server API (`/v1/server/`), comma separated; unset, the
    /// server API refuses every call.
    #[arg(long, env = "CHAT_API_KEYS", hide_env_values = true)]
    pub chat_api_keys: Option<String>,
    /// Frames a connection may send per second, sustained.
    #[arg(long, env = "GATEWAY_RATE_PER_S", default_value_t = 100.0)]
    pub gateway_rate_per_s: f64,
    /// Frames a connection may send at once before the rate applies.
    #[arg(long, env = "GATEWAY_RATE_BURST", default_value_t = 200.0)]
    pub gateway_rate_burst: f64,
    /// Under overload, the publish latency (send to PubAck) the gateway
    /// holds its sends to: beyond it, sends are refused with `unavailable`
    /// rather than queued (docs/operations.md, "Overload").
    #[arg(long, env = "GATEWAY_ACK_TARGET_MS", default_value_t = 250)]
    pub gateway_ack_target_ms: u64,
    /// `atomic`: jobs are stored in atomic batches, so that under the
    /// durable mode (`sync_interval: always`) one fsync covers many sends;
    /// `off`: each on its own, which is faster when the server does not
    /// fsync every write (docs/reliability.md, "Durable mode").
    #[arg(long, env = "CHAT_PUBLISH_BATCHING", default_value = "off", value_parser = ["off", "atomic"])]
    pub chat_publish_batching: String,
    /// Open WebSocket connections this gateway holds at most.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub gateway_max_connections: usize,
    /// Events queued for one connection before it counts as too slow and is
    /// disconnected.
    #[arg(long, env = "GATEWAY_CONNECTION_QUEUE", default_value_t = 1024)]
    pub gateway_connection_queue: usize,
    /// The directory uploaded files are kept in (when no store is named).
    /// Gateways on several hosts need one store they all reach.
    #[arg(long, env = "CHAT_UPLOAD_DIR", default_value = "uploads")]
    pub chat_upload_dir: String,
    /// S3-compatible storage for uploaded files instead of the directory:
    /// `s3://bucket/prefix`, with the usual `AWS_*` variables (key, secret,
    /// region, `AWS_ENDPOINT` for a non-AWS service).
    #[arg(long, env = "CHAT_UPLOAD_STORE")]
    pub chat_upload_store: Option<String>,
    /// The largest file one upload may carry, in bytes.
    #[arg(long, env = "CHAT_UPLOAD_MAX_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub chat_upload_max_bytes: u64,
}

impl Config {
    pub fn guest_signin(&self) -> bool {
        self.chat_guest_signin == "on"
    }

    pub fn batching(&self) -> bool {
        self.chat_publish_batching == "atomic"
    }

    /// Every key tokens may be signed with: the HS256 secret, the PEM file's
    /// public keys and the JWKS, with the required `iss` and `aud`.
    ///
    /// # Errors
    /// A key file or JWKS document that cannot be used, naming its setting.
    pub async fn keys(&self) -> Result<crate::auth::Keys, crate::keys::KeysError> {
        let public = match &self.chat_jwt_public_keys {
            Some(path) => crate::keys::read_pem_file(path)?,
            None => Vec::new(),
        };
        let jwks = match self.chat_jwks_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => {
                let every = std::time::Duration::from_secs(self.chat_jwks_refresh_s.max(1));
                Some(crate::keys::Jwks::load(url, every).await?)
            }
            None => None,
        };
        Ok(crate::auth::Keys::new(&self.jwt_secret())
            .with_public_keys(public, jwks)
            .requiring(self.chat_jwt_issuer.clone(), self.chat_jwt_audience.clone()))
    }

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
