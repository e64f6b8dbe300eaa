//! Storing jobs in JetStream: each on its own, or, in the durable mode,
//! many under one atomic batch (NATS 2.12, ADR-50).
//!
//! Under `sync_interval: always` the server fsyncs before every PubAck, and
//! a job published on its own costs one fsync: about 4,000 jobs a second on
//! an SSD, whatever the CPU. An atomic batch is written and synced once at
//! its commit, so one fsync covers every job in it. The batch costs a few
//! fsyncs of its own (the server stages it in a directory of its own), so
//! batching pays from about [`MIN_BATCH`] jobs on.
//!
//! A gateway batches through [`LANES`] lanes; a room's jobs all take the
//! lane of the room's partition. Jobs queue in a lane in the order their
//! senders handed them over; the lane takes whatever has queued (at most
//! [`MAX_BATCH`]) and stores it, and only then takes the next. No timer
//! holds a job back: batches are as large as the load makes them while the
//! one before is being stored. One batch at a time per lane keeps every
//! order the stream promises: a room's jobs are stored in the order they
//! were handed over, also when a batch is refused and its jobs are stored
//! one by one instead. (Replies still reach a connection in the order of
//! its frames: the session answers in order.) Two lanes overlap one
//! batch's fsyncs with the next one's staging; four measured no better.

use std::future::Future;

use async_nats::header::{self, HeaderMap};
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::Context;
use bytes::Bytes;
use futures::future::Either;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout_at, Instant};

/// Jobs a batch holds at most (the server's own default limit is 1,000).
pub const MAX_BATCH: usize = 256;
/// Lanes, each with one batch in flight.
pub const LANES: usize = 2;
/// Fewer jobs than this are published one by one: a batch costs the server
/// a few fsyncs of its own, so it only pays from about here on.
pub const MIN_BATCH: usize = 8;

/// A job ready to be stored.
pub struct Outgoing {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
    /// False for a job stored under a condition or as a schedule: those are
    /// stored on their own, in their place in the lane.
    pub batchable: bool,
    /// When the sender stops waiting for it.
    pub deadline: Instant,
    /// The job's room partition: jobs of one partition share a lane.
    pub partition: u32,
}

/// How storing a job ended, when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Yes,
    /// The job's condition (an expected last subject sequence) no longer
    /// held: nothing was stored.
    ConditionFailed,
}

/// Why a job may not have been stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Not connected to NATS: not even handed over.
    Disconnected,
    /// NATS refused it or could not be reached.
    Error,
    /// No answer before the deadline.
    Timeout,
}

impl Failure {
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Disconnected => "disconnected",
            Failure::Error => "error",
            Failure::Timeout => "timeout",
        }
    }
}

pub type Outcome = Result<Stored, Failure>;

/// How a gateway stores its jobs: each on its own, many in flight
/// (`CHAT_PUBLISH_BATCHING=off`), or through the batching lanes (`atomic`).
pub struct Publisher {
    js: Context,
    lanes: Vec<mpsc::UnboundedSender<Pending>>,
}

/// A job waiting in a lane, and who waits for it.
pub struct Pending {
    out: Outgoing,
    reply: oneshot::Sender<Outcome>,
}

impl Publisher {
    /// Jobs on their own.
    pub fn single(js: Context) -> Self {
        Self {
            js,
            lanes: Vec::new(),
        }
    }

    /// Jobs through batching lanes, whose tasks run until the publisher
    /// is dropped.
    pub fn batched(js: Context) -> Self {
        let lanes = (0..LANES)
            .map(|_| {
                let (lane, taken) = mpsc::unbounded_channel();
                tokio::spawn(run(js.clone(), taken));
                lane
            })
            .collect();
        Self { js, lanes }
    }

    /// Hands `out` over, in order with every job handed over before it,
    /// and returns a future that says how storing it ended.
    ///
    /// # Errors
    /// When it cannot even be handed to the NATS client.
    pub async fn start(
        &self,
        out: Outgoing,
    ) -> Result<impl Future<Output = Outcome> + Send + 'static, Failure> {
        if self.lanes.is_empty() {
            return Ok(Either::Left(send(&self.js, out).await?));
        }
        let lane = &self.lanes[out.partition as usize % self.lanes.len()];
        let deadline = out.deadline;
        let (reply, answer) = oneshot::channel();
        lane.send(Pending { out, reply })
            .map_err(|_| Failure::Error)?;
        Ok(Either::Right(async move {
            match timeout_at(deadline, answer).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => Err(Failure::Error),
                Err(_) => Err(Failure::Timeout),
            }
        }))
    }
}

/// Publishes one job and returns the wait for its PubAck.
async fn send(
    js: &Context,
    out: Outgoing,
) -> Result<impl Future<Output = Outcome> + Send + 'static, Failure> {
    let deadline = out.deadline;
    let message = PublishMessage::build()
        .payload(out.payload)
        .headers(out.headers);
    let ack = match timeout_at(deadline, js.send_publish(out.subject, message)).await {
        Ok(Ok(ack)) => ack,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "a job could not be published");
            return Err(Failure::Error);
        }
        Err(_) => return Err(Failure::Timeout),
    };
    Ok(answer(ack, deadline))
}

async fn answer(ack: PublishAckFuture, deadline: Instant) -> Outcome {
    match timeout_at(deadline, ack).await {
        Ok(Ok(_)) => Ok(Stored::Yes),
        Ok(Err(err)) if err.kind() == PublishErrorKind::WrongLastSequence => {
            Ok(Stored::ConditionFailed)
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "JetStream did not store a job");
            Err(Failure::Error)
        }
        Err(_) => {
            tracing::warn!("JetStream publish timed out");
            Err(Failure::Timeout)
        }
    }
}

/// The lane: takes what has queued and stores it, one take at a time.
async fn run(js: Context, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let mut taken = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut taken, MAX_BATCH).await > 0 {
        store_in_order(&js, std::mem::take(&mut taken)).await;
    }
}

/// Stores `taken` in order: runs of batchable jobs as batches, the others
/// each on its own between them.
async fn store_in_order(js: &Context, taken: Vec<Pending>) {
    let mut run = Vec::new();
    for pending in taken {
        if pending.out.batchable {
            run.push(pending);
        } else {
            store_run(js, std::mem::take(&mut run)).await;
            store_each(js, vec![pending]).await;
        }
    }
    store_run(js, run).await;
}

/// Stores a run of batchable jobs: as one batch when it is large enough;
/// one by one when it is not, or when the batch was refused.
async fn store_run(js: &Context, run: Vec<Pending>) {
    let run = still_awaited(run);
    if run.len() < MIN_BATCH {
        return store_each(js, run).await;
    }
    match commit_batch(js, &run).await {
        Ok(()) => {
            metrics::counter!("gateway_publish_batches_total").increment(1);
            metrics::counter!("gateway_publish_batched_jobs_total").increment(run.len() as u64);
            for pending in run {
                let _ = pending.reply.send(Ok(Stored::Yes));
            }
        }
        Err(err) => {
            // A job already stored (a client's retry) refuses the whole
            // batch, as does a timeout. One by one, with the same message
            // ids, each is stored once: a stored one is found a duplicate.
            tracing::debug!(error = %err, jobs = run.len(), "batch refused: storing its jobs one by one");
            metrics::counter!("gateway_publish_batch_fallbacks_total").increment(1);
            store_each(js, run).await;
        }
    }
}

/// Publishes every job first, then waits for each PubAck: the server
/// stores them in the order they were published.
async fn store_each(js: &Context, jobs: Vec<Pending>) {
    let mut waits = Vec::with_capacity(jobs.len());
    for Pending { out, reply } in still_awaited(jobs) {
        waits.push((send(js, out).await, reply));
    }
    for (wait, reply) in waits {
        let outcome = match wait {
            Ok(wait) => wait.await,
            Err(failure) => Err(failure),
        };
        let _ = reply.send(outcome);
    }
}

/// The jobs whose senders still wait; the others are told they timed out
/// and are not published (also not after a refused batch that took long).
fn still_awaited(jobs: Vec<Pending>) -> Vec<Pending> {
    let now = Instant::now();
    jobs.into_iter()
        .filter_map(|pending| {
            if pending.out.deadline > now {
                return Some(pending);
            }
            let _ = pending.reply.send(Err(Failure::Timeout));
            None
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error("publishing a batch's job: {0}")]
    Send(#[from] async_nats::PublishError),
    #[error("committing the batch: {0}")]
    Commit(#[from] async_nats::jetstream::context::PublishError),
    #[error("no PubAck for the batch before the first deadline")]
    Timeout,
}

/// Publishes `run` as one atomic batch: every job but the last without a
/// reply, the last with the commit mark, whose PubAck covers them all.
async fn commit_batch(js: &Context, run: &[Pending]) -> Result<(), BatchError> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let deadline = run
        .iter()
        .map(|p| p.out.deadline)
        .min()
        .unwrap_or_else(Instant::now);
    let client = js.client();
    let last = run.len();
    for (index, pending) in run.iter().enumerate() {
        let out = &pending.out;
        let mut headers = out.headers.clone();
        headers.insert(header::NATS_BATCH_ID, id.as_str());
        headers.insert(
            header::NATS_BATCH_SEQUENCE,
            (index + 1).to_string().as_str(),
        );
        if index + 1 < last {
            client
                .publish_with_headers(out.subject.clone(), headers, out.payload.clone())
                .await?;
            continue;
        }
        headers.insert(header::NATS_BATCH_COMMIT, header::NATS_BATCH_COMMIT_FINAL);
        let message = PublishMessage::build()
            .payload(out.payload.clone())
            .headers(headers);
        let ack = timeout_at(deadline, js.send_publish(out.subject.clone(), message))
            .await
            .map_err(|_| BatchError::Timeout)??;
        timeout_at(deadline, ack)
            .await
            .map_err(|_| BatchError::Timeout)??;
    }
    Ok(())
}
