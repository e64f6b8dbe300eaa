//! Connecting to NATS and making sure the job stream exists.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::{Client, ConnectOptions, Event};

use crate::config::NatsConfig;
use crate::subjects::Subjects;

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

/// The stream's configuration. Limits retention (not WorkQueue) keeps jobs
/// after they are persisted so the stream can rebuild the database; discard
/// `New` makes a full stream refuse sends (the client gets `unavailable`)
/// instead of silently dropping old jobs that may not be persisted yet.
pub fn stream_config(subjects: &Subjects, config: &NatsConfig) -> stream::Config {
    stream::Config {
        name: subjects.stream().to_owned(),
        subjects: vec![subjects.jobs_filter(), subjects.schedules_filter()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        max_age: config.max_age(),
        duplicate_window: Duration::from_secs(120),
        num_replicas: config.chat_stream_replicas,
        allow_direct: true,
        // Scheduled messages (`deliver_after_s`) wait in the stream itself.
        allow_message_schedules: true,
        ..Default::default()
    }
}

/// Creates the stream when it is missing, retrying until NATS answers.
/// An existing stream keeps the operator's limits; only what the code needs
/// (its subjects, schedules, direct gets) is added when missing.
pub async fn ensure_stream(js: &jetstream::Context, subjects: &Subjects, config: &NatsConfig) {
    let mut delay = Duration::from_millis(100);
    loop {
        match try_ensure_stream(js, subjects, config).await {
            Ok(()) => {
                tracing::info!(stream = subjects.stream(), "job stream ready");
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "job stream not ready");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn try_ensure_stream(
    js: &jetstream::Context,
    subjects: &Subjects,
    config: &NatsConfig,
) -> anyhow::Result<()> {
    let wanted = stream_config(subjects, config);
    let mut stream = js.get_or_create_stream(wanted.clone()).await?;
    let mut have = stream.info().await?.config.clone();
    let missing: Vec<String> = wanted
        .subjects
        .iter()
        .filter(|s| !have.subjects.contains(s))
        .cloned()
        .collect();
    if !missing.is_empty() || !have.allow_message_schedules || !have.allow_direct {
        tracing::info!(?missing, "updating the job stream's subjects and features");
        have.subjects.extend(missing);
        have.allow_message_schedules = true;
        have.allow_direct = true;
        js.update_stream(have).await?;
    }
    Ok(())
}
