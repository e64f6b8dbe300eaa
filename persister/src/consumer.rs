//! The pull loop: fetch what is ready (up to a batch; under load, what
//! arrives within a short linger too), write it in one transaction, publish
//! the events, and only then ack.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use futures::{FutureExt, StreamExt};
use shared::jobs::Job;
use shared::subjects::{Subjects, PARTITIONS};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::apply::{self, Outcome, StreamJob};
use crate::events;
use crate::range::RangeReader;
use crate::state::State;
use crate::store::Seqs;
use crate::webhooks::deliver::Deliverer;
use crate::webhooks::record::Recorder;
use crate::webhooks::Receiver;

/// How long the server waits for an ack before redelivering a job: what a
/// persister killed with jobs in hand delays them by. A batch that waits on
/// PostgreSQL longer than this keeps its jobs with progress acks.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// How often a waiting batch tells the server it is still working.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// How long one pull request stays open when no jobs come.
const PULL_EXPIRES: Duration = Duration::from_millis(500);
const MAX_DB_BACKOFF: Duration = Duration::from_secs(5);

/// What every partition's loop shares; one per process.
#[derive(Clone)]
pub struct Worker {
    pub js: jetstream::Context,
    pub client: async_nats::Client,
    pub pool: PgPool,
    pub subjects: Subjects,
    pub state: State,
    pub max_batch: usize,
    /// Replicas of the buckets it creates (as the stream's).
    pub replicas: usize,
    /// Webhooks, when configured.
    pub hooks: Option<Hooks>,
}

/// The webhook side of the work: recording events after each batch, and
/// delivering each receiver's, one lease each.
#[derive(Clone)]
pub struct Hooks {
    pub recorder: Recorder,
    pub deliverer: Arc<Deliverer>,
    pub receivers: Vec<Receiver>,
}

impl Worker {
    /// How many leased tasks there are: the partitions, then one per
    /// webhook receiver.
    pub fn tasks(&self) -> u32 {
        PARTITIONS + self.hooks.as_ref().map_or(0, |h| h.receivers.len() as u32)
    }

    /// The lease key of task `t`. A receiver's names its URL, so persisters
    /// configured alike agree on it whatever the order of their lists.
    pub fn lease_key(&self, t: u32) -> String {
        match self.receiver(t) {
            Some(r) => format!("lease.hook_{}", r.key),
            None => format!("lease.{t}"),
        }
    }

    fn receiver(&self, t: u32) -> Option<&Receiver> {
        let i = t.checked_sub(PARTITIONS)?;
        self.hooks.as_ref()?.receivers.get(i as usize)
    }

    /// Runs task `t` until `stop`: a partition's writes, or a receiver's
    /// deliveries.
    pub async fn run_task(&self, t: u32, stop: CancellationToken) {
        match (self.receiver(t), &self.hooks) {
            (Some(r), Some(h)) => h.deliverer.clone().run(r.clone(), stop).await,
            _ => self.run_partition(t, stop).await,
        }
    }

    /// Publishes a committed batch's events to the gateways and records
    /// its webhook events.
    async fn announce(&self, outcomes: &[Outcome]) -> anyhow::Result<()> {
        events::publish(&self.client, &self.subjects, outcomes).await?;
        if let Some(h) = &self.hooks {
            h.recorder.record(outcomes).await?;
        }
        Ok(())
    }

    /// Writes partition `p` until `stop` is cancelled (its lease is gone,
    /// or the process stops). Jobs are pulled with one-shot pull requests
    /// that end after [`PULL_EXPIRES`]; on stop the request in hand is
    /// finished — everything it delivered is written and acked — so no job
    /// is left delivered-but-unacked waiting for `ack_wait`.
    pub async fn run_partition(&self, p: u32, stop: CancellationToken) {
        let mut consumer = None;
        let mut taken_over = false;
        while !stop.is_cancelled() {
            let mut c = match consumer.take() {
                Some(c) => c,
                None => match self.consumer(p, &stop).await {
                    Some(c) => c,
                    None => return,
                },
            };
            if !taken_over {
                match self.take_over(p, &mut c, &stop).await {
                    Ok(()) => taken_over = true,
                    Err(err) => {
                        tracing::warn!(partition = p, error = %err, "taking over a partition failed; retrying");
                        pause(&stop, Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let request = c
                .batch()
                .max_messages(self.max_batch)
                .expires(PULL_EXPIRES)
                .messages()
                .await;
            let batch = match request {
                Ok(b) => b,
                Err(err) => {
                    tracing::warn!(partition = p, error = %err, "cannot pull jobs, retrying");
                    pause(&stop, Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut healthy = true;
            let mut pulled = batch.fuse();
            while let Some(chunk) = next_chunk(&mut pulled, self.max_batch).await {
                let mut jobs = Vec::with_capacity(chunk.len());
                for item in chunk {
                    match item {
                        Ok(msg) => jobs.push(msg),
                        Err(err) => {
                            tracing::warn!(partition = p, error = %err, "pulling jobs");
                            healthy = false;
                        }
                    }
                }
                if !jobs.is_empty() {
                    self.handle(jobs, &stop).await;
                }
            }
            if healthy {
                consumer = Some(c);
            } else {
                // Look the consumer up again: it may have been deleted or
                // the stream recreated.
                pause(&stop, Duration::from_millis(200)).await;
            }
        }
    }

    /// Before pulling anything new from a partition it now owns, applies —
    /// in stream order — every job the consumer delivered but never saw
    /// acked: a persister that died had them in hand. Left alone they
    /// would come back only after `ack_wait`, behind newer jobs of the same
    /// rooms. Those it had written are not written again, but their events
    /// are published (it may have died before publishing them); their later
    /// redelivery does the same, and gateways drop what they delivered.
    async fn take_over(
        &self,
        p: u32,
        consumer: &mut PullConsumer,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let info = consumer.info().await?;
        let (floor, delivered) = (
            info.ack_floor.stream_sequence,
            info.delivered.stream_sequence,
        );
        if delivered <= floor {
            return Ok(());
        }
        tracing::info!(
            partition = p,
            from = floor + 1,
            to = delivered,
            "re-applying jobs a stopped persister had not acked"
        );
        let stream = self.js.get_stream(self.subjects.stream()).await?;
        let mut reader = RangeReader::open(
            &stream,
            self.subjects.partition_filter(p),
            DeliverPolicy::ByStartSequence {
                start_sequence: floor + 1,
            },
            delivered,
        )
        .await?;
        while let Some(mut batch) = reader.next_batch(self.max_batch).await? {
            for job in &mut batch.jobs {
                job.redelivered = true;
            }
            let Some(outcomes) = self.write(&batch.jobs, &[], stop).await else {
                anyhow::bail!("stopped while taking over");
            };
            self.announce(&outcomes).await?;
        }
        Ok(())
    }

    /// Gets or creates a partition's durable consumer, retrying until NATS
    /// answers.
    async fn consumer(&self, p: u32, stop: &CancellationToken) -> Option<PullConsumer> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.try_consumer(p).await {
                Ok(c) => return Some(c),
                Err(err) => tracing::warn!(partition = p, error = %err, "job consumer not ready"),
            }
            if !pause(stop, delay).await {
                return None;
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    async fn try_consumer(&self, p: u32) -> anyhow::Result<PullConsumer> {
        let stream = self.js.get_stream(self.subjects.stream()).await?;
        let name = self.subjects.partition_consumer(p);
        let consumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: self.subjects.partition_filter(p),
                    ack_policy: AckPolicy::Explicit,
                    deliver_policy: DeliverPolicy::All,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: 20_000,
                    max_batch: self.max_batch as i64,
                    ..Default::default()
                },
            )
            .await?;
        Ok(consumer)
    }

    /// One batch: parse, write (retrying while PostgreSQL is away), publish
    /// the events, ack.
    async fn handle(&self, batch: Vec<jetstream::Message>, stop: &CancellationToken) {
        let started = Instant::now();
        let mut jobs = Vec::with_capacity(batch.len());
        let mut held = Vec::with_capacity(batch.len());
        for msg in batch {
            let (stream_seq, delivered) = msg
                .info()
                .map(|i| (i.stream_sequence, i.delivered))
                .unwrap_or_default();
            match serde_json::from_slice::<Job>(&msg.payload) {
                Ok(job) => {
                    jobs.push(StreamJob {
                        job,
                        stream_seq,
                        redelivered: delivered > 1,
                    });
                    held.push(msg);
                }
                Err(err) => {
                    // It will never parse: retrying cannot help.
                    tracing::error!(stream_seq, error = %err, "unreadable job, terminating it");
                    metrics::counter!("persister_jobs_terminated_total").increment(1);
                    let _ = msg.ack_with(AckKind::Term).await;
                }
            }
        }
        if jobs.is_empty() {
            return;
        }
        let Some(outcomes) = self.write(&jobs, &held, stop).await else {
            return;
        };
        if let Err(err) = self.announce(&outcomes).await {
            // Unacked, the batch comes back; its rows are already there,
            // and its messages' events are published then.
            tracing::warn!(error = %err, "publishing events failed; the batch will be redelivered");
            return;
        }
        for msg in &held {
            if let Err(err) = msg.ack().await {
                tracing::warn!(error = %err, "ack failed; the job will be redelivered and skipped");
            }
        }
        metrics::histogram!("persister_batch_size").record(jobs.len() as f64);
        metrics::histogram!("persister_batch_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("persister_jobs_total").increment(jobs.len() as u64);
    }

    /// Writes the batch, retrying with backoff while PostgreSQL fails. A
    /// job PostgreSQL refuses as data (it would fail for ever) is set
    /// apart and terminated so it cannot block the jobs behind it.
    /// `None` when stopping before the batch could be written.
    async fn write(
        &self,
        jobs: &[StreamJob],
        held: &[jetstream::Message],
        stop: &CancellationToken,
    ) -> Option<Vec<Outcome>> {
        let mut delay = Duration::from_millis(100);
        let mut last_progress = Instant::now();
        loop {
            match apply::apply(&self.pool, jobs, Seqs::Next).await {
                Ok(outcomes) => {
                    self.state.set_db_ok(true);
                    return Some(outcomes);
                }
                Err(err) if is_data_error(&err) => {
                    tracing::warn!(error = %err, "a job in the batch was refused; writing one by one");
                    match self.write_one_by_one(jobs, held).await {
                        Ok(outcomes) => return Some(outcomes),
                        Err(err) => self.db_failed(&err, delay, jobs.len()),
                    }
                }
                Err(err) => self.db_failed(&err, delay, jobs.len()),
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                for msg in held {
                    let _ = msg.ack_with(AckKind::Progress).await;
                }
                last_progress = Instant::now();
            }
            if !pause(stop, delay).await {
                // Nak, not silence: another persister can take them at once.
                tracing::warn!(
                    batch.size = jobs.len(),
                    "stopping with a batch unwritten; handing it back"
                );
                for msg in held {
                    let _ = msg.ack_with(AckKind::Nak(None)).await;
                }
                return None;
            }
            delay = (delay * 2).min(MAX_DB_BACKOFF);
        }
    }

    fn db_failed(&self, err: &sqlx::Error, delay: Duration, batch_size: usize) {
        self.state.set_db_ok(false);
        metrics::counter!("persister_db_errors_total").increment(1);
        tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64,
            batch.size = batch_size, "writing batch failed; retrying");
    }

    /// Writes each job on its own, terminating those refused as data. A
    /// transient error stops it; the whole batch is then retried, and what
    /// was written already is skipped as a duplicate.
    async fn write_one_by_one(
        &self,
        jobs: &[StreamJob],
        held: &[jetstream::Message],
    ) -> Result<Vec<Outcome>, sqlx::Error> {
        let mut outcomes = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            match apply::apply(&self.pool, std::slice::from_ref(job), Seqs::Next).await {
                Ok(o) => outcomes.extend(o),
                Err(err) if !is_data_error(&err) => return Err(err),
                Err(err) => {
                    tracing::error!(stream_seq = job.stream_seq, error = %err, "job refused by the database, terminating it");
                    metrics::counter!("persister_jobs_terminated_total").increment(1);
                    // A job re-read while taking over has no message to term;
                    // its redelivery is terminated the same way.
                    if let Some(msg) = held.get(i) {
                        let _ = msg.ack_with(AckKind::Term).await;
                    }
                }
            }
        }
        Ok(outcomes)
    }
}

/// Data exceptions (class 22) and integrity violations (class 23) fail the
/// same way every time; anything else may succeed later. A unique
/// violation (23505) is not the job's fault: every write is keyed and
/// checked first, so it means another transaction wrote the same rows a
/// moment before (a race) — retried, it finds them and skips them. It must
/// never terminate an acked job.
fn is_data_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| (c.starts_with("22") || c.starts_with("23")) && c != "23505"),
        _ => false,
    }
}

/// The next batch from a pull: what is ready at once (one job under light
/// load, so nothing waits), and under load (at least [`LINGER_FROM`] ready)
/// whatever else arrives within [`LINGER`], up to `max`: bigger
/// transactions, fewer of them.
async fn next_chunk<S, T>(pulled: &mut futures::stream::Fuse<S>, max: usize) -> Option<Vec<T>>
where
    S: futures::Stream<Item = T> + Unpin,
{
    let first = pulled.next().await?;
    let mut chunk = vec![first];
    while chunk.len() < max {
        match pulled.next().now_or_never() {
            Some(Some(item)) => chunk.push(item),
            _ => break,
        }
    }
    if chunk.len() >= LINGER_FROM {
        let until = tokio::time::Instant::now() + LINGER;
        while chunk.len() < max {
            match tokio::time::timeout_at(until, pulled.next()).await {
                Ok(Some(item)) => chunk.push(item),
                _ => break,
            }
        }
    }
    Some(chunk)
}

/// How long a batch that is already sizeable waits for more.
const LINGER: Duration = Duration::from_millis(2);
/// The batch size that says "under load": below it a batch goes at once,
/// so light traffic never waits.
const LINGER_FROM: usize = 16;

/// Sleeps unless stopped; false when stopped.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}
