//! Connecting to NATS. The job stream itself is in [`crate::stream`].

use std::time::Duration;

use async_nats::jetstream;
use async_nats::{Client, ConnectOptions, Event};

use crate::config::NatsConfig;

/// How long JetStream calls (a PubAck above all) may take before the
/// caller gives up. The contract's "within a few seconds".
pub const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// Connects in the background: the call returns at once and the client
/// keeps retrying, so a binary that starts before NATS waits for it, and one
/// whose NATS goes away follows it coming back.
///
/// # Errors
/// Only for a malformed URL; an unreachable server is retried for ever.
pub async fn connect(config: &NatsConfig, name: &str) -> anyhow::Result<Client> {
    let client = ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .ping_interval(Duration::from_secs(10))
        .event_callback(|event| async move {
            match event {
                Event::Connected => tracing::info!("NATS connected"),
                Event::Disconnected => tracing::warn!("NATS disconnected, reconnecting"),
                other => tracing::info!(event = %other, "NATS event"),
            }
        })
        .connect(config.servers())
        .await?;
    Ok(client)
}

/// A JetStream context with the project's timeout.
pub fn jetstream(client: Client) -> jetstream::Context {
    let mut js = jetstream::new(client);
    js.set_timeout(JETSTREAM_TIMEOUT);
    js
}
