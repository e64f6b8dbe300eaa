//! The job stream: its layout, the NATS servers it runs on, and bringing a
//! stream made by an earlier release to today's layout without losing a job.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::config::NatsConfig;
use crate::subjects::Subjects;

/// Marks a stream that has today's layout. Written only by an update,
/// never at creation: see [`upgrade`].
pub const LAYOUT_KEY: &str = "chat_layout";
/// Today's layout: discard `Old`, roll-ups and atomic batches allowed, no
/// size limits.
pub const LAYOUT: &str = "3";

/// The oldest NATS server the project runs on, and why.
pub const MIN_SERVER: &str = "2.12.10";

/// The stream's configuration.
///
/// Limits retention (not WorkQueue) keeps jobs after they are persisted so
/// the stream can rebuild the database. Scheduled messages
/// (`deliver_after_s`) wait in the stream itself as message schedules,
/// which NATS (from 2.12.10) allows only with discard `Old` and roll-ups.
/// So that a full stream never discards a job not yet persisted, the
/// stream has no size limits at all: jobs leave it only by age
/// (`CHAT_STREAM_MAX_AGE_DAYS`), and when the server's JetStream storage is
/// full the server refuses new jobs (the client gets `unavailable`) — it
/// never deletes old ones to make room.
pub fn stream_config(subjects: &Subjects, config: &NatsConfig) -> stream::Config {
    stream::Config {
        name: subjects.stream().to_owned(),
        subjects: vec![subjects.jobs_filter(), subjects.schedules_filter()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        max_age: config.max_age(),
        duplicate_window: Duration::from_secs(120),
        num_replicas: config.chat_stream_replicas,
        allow_direct: true,
        allow_message_schedules: true,
        allow_rollup: true,
        allow_atomic_publish: true,
        ..Default::default()
    }
}

/// Why the stream cannot be used, for good: the process stops.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(
        "NATS server {found} is too old: this release needs nats-server {MIN_SERVER} or later \
         (2.14.2 or later on the 2.14 line), with JetStream enabled"
    )]
    ServerTooOld { found: String },
}

/// Creates the stream when it is missing and brings an existing one to
/// today's layout, retrying until NATS answers.
///
/// # Errors
/// [`StreamError`] when the server cannot run the project; the caller
/// stops instead of retrying for ever.
pub async fn ensure_stream(
    js: &jetstream::Context,
    subjects: &Subjects,
    config: &NatsConfig,
) -> Result<(), StreamError> {
    let mut delay = Duration::from_millis(100);
    loop {
        match try_ensure_stream(js, subjects, config).await {
            Ok(()) => {
                tracing::info!(stream = subjects.stream(), "job stream ready");
                return Ok(());
            }
            Err(Attempt::Fatal(err)) => return Err(err),
            Err(Attempt::Retry(err)) => {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "job stream not ready");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

enum Attempt {
    Fatal(StreamError),
    Retry(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Attempt {
    fn from(err: E) -> Self {
        Attempt::Retry(err.into())
    }
}

async fn try_ensure_stream(
    js: &jetstream::Context,
    subjects: &Subjects,
    config: &NatsConfig,
) -> Result<(), Attempt> {
    let version = js.client().server_info().version;
    if version.is_empty() {
        return Err(Attempt::Retry(anyhow::anyhow!("not connected to NATS yet")));
    }
    if !server_supported(&version) {
        return Err(Attempt::Fatal(StreamError::ServerTooOld { found: version }));
    }
    let wanted = stream_config(subjects, config);
    let mut stream = js.get_or_create_stream(wanted.clone()).await?;
    let have = stream.info().await?.config.clone();
    if let Some(next) = upgrade(&have, &wanted) {
        tracing::info!(
            stream = subjects.stream(),
            "bringing the job stream to layout {LAYOUT}"
        );
        js.update_stream(next).await?;
    }
    Ok(())
}

/// The configuration that brings `have` to today's layout, or `None` when
/// it has it already.
///
/// An earlier release made the stream with discard `New`, which NATS
/// 2.12.10 and later refuse beside message schedules — so firmly that such
/// a server does not load that stream from its store at start. Creating
/// the stream again by name then finds its jobs and consumers on disk, but
/// the server keeps the old configuration file until the stream is
/// updated: the layout mark is therefore only ever set by this update,
/// which rewrites that file. The operator's age limit and replicas stay.
pub fn upgrade(have: &stream::Config, wanted: &stream::Config) -> Option<stream::Config> {
    let mut next = have.clone();
    for subject in &wanted.subjects {
        if !next.subjects.contains(subject) {
            next.subjects.push(subject.clone());
        }
    }
    if have.max_messages > 0 || have.max_bytes > 0 || have.max_messages_per_subject > 0 {
        tracing::warn!(
            max_msgs = have.max_messages,
            max_bytes = have.max_bytes,
            max_msgs_per_subject = have.max_messages_per_subject,
            "removing the job stream's size limits: with discard old they would delete jobs \
             not yet persisted; the stream is bounded by age and the server's storage"
        );
    }
    next.max_messages = -1;
    next.max_bytes = -1;
    next.max_messages_per_subject = -1;
    next.discard = stream::DiscardPolicy::Old;
    next.allow_direct = true;
    next.allow_message_schedules = true;
    next.allow_rollup = true;
    next.allow_atomic_publish = true;
    next.deny_purge = false;
    next.metadata
        .insert(LAYOUT_KEY.to_owned(), LAYOUT.to_owned());
    (next != *have).then_some(next)
}

/// Whether a server of this version (`2.15.1`, `2.14.2-RC.1`) runs the
/// project: message schedules with discard `Old`, and the fixes to
/// schedules after recovery (2.12.9) and with discard policies (2.12.10,
/// 2.14.2).
pub fn server_supported(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    let (Some(Some(major)), Some(Some(minor)), patch) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let patch = patch.flatten().unwrap_or(0);
    match (major, minor) {
        (2, 12) => patch >= 10,
        (2, 13) => false,
        (2, 14) => patch >= 2,
        (2, m) => m >= 15,
        (m, _) => m > 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> stream::Config {
        let config = NatsConfig {
            nats_url: String::new(),
            chat_stream: "S".into(),
            chat_stream_replicas: 1,
            chat_stream_max_age_days: 30,
        };
        stream_config(&Subjects::new("S").unwrap(), &config)
    }

    #[test]
    fn servers_before_the_schedule_fixes_are_refused() {
        for old in [
            "2.9.10", "2.10.26", "2.11.11", "2.12.8", "2.12.9", "2.14.0", "2.14.1", "1.4.1", "",
            "x",
        ] {
            assert!(!server_supported(old), "{old} accepted");
        }
        for ok in [
            "2.12.10",
            "2.12.15",
            "2.14.2",
            "2.14.5",
            "2.15.0-dev",
            "2.15.1",
            "2.16.0-RC.1",
            "3.0.0",
        ] {
            assert!(server_supported(ok), "{ok} refused");
        }
    }

    #[test]
    fn a_stream_of_the_earlier_layout_is_brought_to_discard_old_keeping_its_age() {
        let mut old = wanted();
        old.discard = stream::DiscardPolicy::New;
        old.allow_rollup = false;
        old.allow_atomic_publish = false;
        old.max_bytes = 1 << 30;
        old.max_age = Duration::from_secs(3600);
        old.subjects.pop();
        let next = upgrade(&old, &wanted()).expect("an update");
        assert_eq!(next.discard, stream::DiscardPolicy::Old);
        assert!(next.allow_rollup && next.allow_message_schedules && next.allow_direct);
        assert!(next.allow_atomic_publish, "gateways may batch their jobs");
        assert_eq!(next.max_bytes, -1);
        assert_eq!(
            next.max_age,
            Duration::from_secs(3600),
            "the operator's age stays"
        );
        assert_eq!(next.subjects, wanted().subjects);
        assert_eq!(
            next.metadata.get(LAYOUT_KEY).map(String::as_str),
            Some(LAYOUT)
        );
        assert!(
            upgrade(&next, &wanted()).is_none(),
            "a second start changes nothing"
        );
    }

    #[test]
    fn a_freshly_created_stream_is_still_updated_once_to_write_its_configuration() {
        assert!(upgrade(&wanted(), &wanted()).is_some());
    }
}
