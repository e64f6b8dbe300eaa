//! `persister replay`: rebuilds the database from the stream.
//!
//! It reads the jobs in stream order through an ordered (ephemeral,
//! unacked) consumer and applies them in batches exactly as the running
//! persister does, so what it writes is what the persister wrote the first
//! time: ids, times and texts come from the jobs, and rows already there are
//! skipped. It publishes no events — clients are not told about history
//! again. What it can restore is what the stream still holds
//! (`CHAT_STREAM_MAX_AGE_DAYS`).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::consumer::DeliverPolicy;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use shared::db::{self, Access};

use crate::apply;
use crate::config::Config;
use crate::range::RangeReader;
use crate::store;

/// Where a replay starts and ends.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Range {
    /// First stream sequence to apply (default: the first the stream holds).
    #[arg(long, conflicts_with = "since")]
    pub from_seq: Option<u64>,
    /// Apply jobs stored at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<DateTime<Utc>>,
    /// Last stream sequence to apply (default: the last one when the replay
    /// starts).
    #[arg(long)]
    pub to_seq: Option<u64>,
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct Summary {
    pub read: u64,
    pub applied: u64,
    pub skipped: u64,
    pub unreadable: u64,
}

const BATCH: usize = 1_000;

/// Replays `range` of the stream into the database.
///
/// # Errors
/// NATS or PostgreSQL unreachable, or a batch the database refuses.
pub async fn run(config: &Config, range: &Range) -> anyhow::Result<Summary> {
    let subjects = config.nats.subjects()?;
    let pool = db::pool(&config.db, Access::ReadWrite, "persister-replay")?;
    store::migrate(&pool).await.context("creating the schema")?;
    let client = async_nats::connect(config.nats.servers())
        .await
        .context("connecting to NATS")?;
    let js = shared::nats::jetstream(client);
    let mut stream = js
        .get_stream(subjects.stream())
        .await
        .context("finding the job stream")?;
    let info = stream.info().await?.state.clone();
    let last = range
        .to_seq
        .unwrap_or(info.last_sequence)
        .min(info.last_sequence);
    let first = range
        .from_seq
        .unwrap_or(info.first_sequence)
        .max(info.first_sequence);
    let deliver_policy = match (range.from_seq, range.since) {
        (_, Some(since)) => DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(
                since.timestamp_nanos_opt().unwrap_or_default(),
            ))?,
        },
        (Some(_), None) => DeliverPolicy::ByStartSequence {
            start_sequence: first,
        },
        (None, None) => DeliverPolicy::All,
    };
    let mut summary = Summary::default();
    let progress = Progress::new(last.saturating_sub(first) + 1);
    if info.messages == 0 || first > last {
        progress.finish(&summary);
        return Ok(summary);
    }
    let mut reader =
        RangeReader::open(&stream, subjects.jobs_filter(), deliver_policy, last).await?;
    while let Some(batch) = reader.next_batch(BATCH).await? {
        summary.read += batch.read;
        summary.unreadable += batch.unreadable;
        let outcomes = apply::apply(&pool, &batch.jobs, store::Seqs::StreamOrder)
            .await
            .with_context(|| format!("applying jobs up to stream sequence {}", batch.last_seq))?;
        summary.applied += outcomes.len() as u64;
        summary.skipped += (batch.jobs.len() as u64).saturating_sub(outcomes.len() as u64);
        progress.at(batch.last_seq.saturating_sub(first) + 1, &summary);
    }
    progress.finish(&summary);
    pool.close().await;
    Ok(summary)
}

/// A bar on a terminal, a line every two seconds otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    started: Instant,
    last_line: std::cell::Cell<Instant>,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} replay [{bar:40}] {pos}/{len} stream positions, {per_sec}, eta {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            total,
            started: Instant::now(),
            last_line: std::cell::Cell::new(Instant::now()),
        }
    }

    fn at(&self, pos: u64, s: &Summary) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(pos.min(self.total));
                bar.set_message(format!("({} changed)", s.applied));
            }
            None if self.last_line.get().elapsed() >= Duration::from_secs(2) => {
                self.last_line.set(Instant::now());
                eprintln!(
                    "replay: {}/{} stream positions ({}%), {} jobs read, {} changed rows",
                    pos.min(self.total),
                    self.total,
                    pos.min(self.total) * 100 / self.total.max(1),
                    s.read,
                    s.applied
                );
            }
            None => {}
        }
    }

    fn finish(&self, s: &Summary) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        eprintln!(
            "replay: done in {:.1} s: {} jobs read, {} changed something, {} already applied, {} unreadable",
            self.started.elapsed().as_secs_f64(),
            s.read,
            s.applied,
            s.skipped,
            s.unreadable
        );
    }
}
