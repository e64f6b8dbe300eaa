//! Publishing jobs to the stream: the gateway's only way to change
//! anything. A job counts as accepted only once JetStream has stored it.

use std::future::Future;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};

use async_nats::header::{self, HeaderMap};
use shared::events::RoomEvent;
use shared::jobs::Job;
use shared::nats::JETSTREAM_TIMEOUT;
use shared::protocol::ApiError;

use crate::app::App;
use crate::batching::{Failure, Outgoing, Stored};

/// The subject (filter) an expected last subject sequence is checked on.
const EXPECTED_SUBJECT: &str = "Nats-Expected-Last-Subject-Sequence-Subject";

/// Publishes `job` with `msg_id` as its de-duplication id and waits for the
/// PubAck.
///
/// # Errors
/// `unavailable` when NATS is disconnected or does not store the job within
/// [`JETSTREAM_TIMEOUT`]; the caller must then not ack anything.
pub async fn publish_job(app: &App, job: &Job, msg_id: &str) -> Result<(), ApiError> {
    start(app, job, msg_id, None).await?.await
}

/// Publishes `job` and returns once it is on its way, with a future that
/// resolves when JetStream has stored it (or has not, within
/// [`JETSTREAM_TIMEOUT`] of the start). Many can be in flight at once: jobs
/// are stored in the order they were started, and their PubAcks come back
/// in that order, so a connection need not wait for one before reading its
/// next frame.
///
/// With `due`, a message job is published as a JetStream schedule: stored
/// now (the PubAck is the promise), published by the server to the job's
/// subject at `due`, also if every process restarted in between.
///
/// # Errors
/// `unavailable` when NATS is disconnected or the publish cannot be handed
/// to the client; the returned future fails the same way.
pub async fn start(
    app: &App,
    job: &Job,
    msg_id: &str,
    due: Option<DateTime<Utc>>,
) -> Result<impl Future<Output = Result<(), ApiError>> + Send + 'static, ApiError> {
    let stored = start_with(app, job, msg_id, due, None).await?;
    Ok(async move { stored.await.map(drop) })
}

/// A condition a job is stored under: the last job on `subject` (a filter,
/// wildcards allowed) is still the one at stream sequence `seq` (0: there
/// is none). JetStream checks it as it stores the job, so a decision taken
/// on that last job cannot be overtaken by another one in between.
#[derive(Clone, Debug)]
pub struct Expect {
    pub subject: String,
    pub seq: u64,
}

/// Publishes `job` only if `expect` still holds when JetStream stores it.
///
/// # Errors
/// As [`start`]; `Ok(false)` when the condition no longer held and nothing
/// was stored.
pub async fn publish_expecting(
    app: &App,
    job: &Job,
    msg_id: &str,
    expect: Expect,
) -> Result<bool, ApiError> {
    start_with(app, job, msg_id, None, Some(expect))
        .await?
        .await
}

/// [`start`] with an optional [`Expect`]; the future says whether the job
/// was stored (false: the condition failed).
pub async fn start_with(
    app: &App,
    job: &Job,
    msg_id: &str,
    due: Option<DateTime<Utc>>,
    expect: Option<Expect>,
) -> Result<impl Future<Output = Result<bool, ApiError>> + Send + 'static, ApiError> {
    // While disconnected the client would buffer the publish and could send
    // it after we have told the client "unavailable"; refuse it here instead.
    if !app.nats_connected() {
        return Err(failed(Failure::Disconnected));
    }
    let ticket = app.admission.admit()?;
    let payload = serde_json::to_vec(job).map_err(|err| {
        tracing::error!(error = %err, "serializing a job");
        ApiError::unavailable()
    })?;
    let started = Instant::now();
    let out = outgoing(app, job, msg_id, due, expect, payload.into(), started);
    let stored = app.publisher.start(out).await.map_err(failed)?;
    Ok(async move {
        let outcome = stored.await;
        let took = started.elapsed();
        ticket.answered(took);
        match outcome {
            Ok(Stored::Yes) => {
                metrics::histogram!("gateway_publish_seconds").record(took.as_secs_f64());
                Ok(true)
            }
            Ok(Stored::ConditionFailed) => Ok(false),
            Err(failure) => Err(failed(failure)),
        }
    })
}

/// The message a job goes out as: its subject and headers, the message id
/// JetStream de-duplicates on, a condition, or a schedule's.
fn outgoing(
    app: &App,
    job: &Job,
    msg_id: &str,
    due: Option<DateTime<Utc>>,
    expect: Option<Expect>,
    payload: bytes::Bytes,
    started: Instant,
) -> Outgoing {
    let mut subject = job.subject(&app.subjects);
    let mut headers = HeaderMap::new();
    headers.insert(header::NATS_MESSAGE_ID, msg_id);
    let batchable = expect.is_none() && due.is_none();
    if let Some(expect) = &expect {
        headers.insert(
            header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            expect.seq.to_string().as_str(),
        );
        headers.insert(EXPECTED_SUBJECT, expect.subject.as_str());
    }
    if let (Some(due), Job::Message(m)) = (due, job) {
        let at = format!("@at {}", due.to_rfc3339_opts(SecondsFormat::Millis, true));
        headers.insert(header::NATS_SCHEDULE, at.as_str());
        headers.insert(header::NATS_SCHEDULE_TARGET, subject.as_str());
        subject = app.subjects.schedule(&m.room, &m.temp_id);
    }
    Outgoing {
        subject,
        headers,
        payload,
        batchable,
        deadline: (started + JETSTREAM_TIMEOUT).into(),
        partition: shared::subjects::partition(job.room()),
    }
}

/// Counts a publish that did not lead to an ack, and says so to the client.
fn failed(failure: Failure) -> ApiError {
    metrics::counter!("gateway_publish_failures_total", "reason" => failure.reason()).increment(1);
    ApiError::unavailable()
}

/// Publishes an ephemeral event (typing, a read mark's live echo) to the
/// room's subject on core NATS. Best effort: losing one is harmless, so a
/// failure is logged and not reported.
pub async fn publish_event(app: &App, room: &str, event: &RoomEvent) {
    if let Err(err) = app
        .client
        .publish_with_headers(
            app.subjects.room_events(room),
            event.headers(),
            event.frame.clone(),
        )
        .await
    {
        tracing::debug!(error = %err, "ephemeral event not published");
    }
}
