//! Reading a range of the stream in order: for `persister replay`, and for
//! the jobs a persister takes over from one that died.

use anyhow::Context;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream::Stream;
use futures::StreamExt;
use shared::jobs::Job;

use crate::apply::StreamJob;

/// An ordered, unacked read of the jobs on `filter` from a start up to a
/// last stream sequence.
pub struct RangeReader {
    messages: Ordered,
    last: u64,
    done: bool,
}

/// What one batch of a range read held.
pub struct Batch {
    pub jobs: Vec<StreamJob>,
    /// Stream sequence of the last message read.
    pub last_seq: u64,
    /// Messages read, jobs or not.
    pub read: u64,
    /// Messages that were not jobs (logged and left out).
    pub unreadable: u64,
}

impl RangeReader {
    /// # Errors
    /// When NATS refuses the consumer.
    pub async fn open(
        stream: &Stream,
        filter: String,
        from: DeliverPolicy,
        last: u64,
    ) -> anyhow::Result<Self> {
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: filter,
                deliver_policy: from,
                ..Default::default()
            })
            .await
            .context("creating an ordered consumer")?;
        let messages = consumer.messages().await.context("reading the stream")?;
        Ok(Self {
            messages,
            last,
            done: false,
        })
    }

    /// The next batch of at most `max` jobs; `None` at the end of the range.
    ///
    /// # Errors
    /// When the stream stops delivering.
    pub async fn next_batch(&mut self, max: usize) -> anyhow::Result<Option<Batch>> {
        if self.done {
            return Ok(None);
        }
        let mut batch = Batch {
            jobs: Vec::with_capacity(max.min(1_024)),
            last_seq: 0,
            read: 0,
            unreadable: 0,
        };
        while !self.done && batch.jobs.len() < max {
            let next =
                tokio::time::timeout(std::time::Duration::from_secs(10), self.messages.next())
                    .await
                    .context("the stream stopped delivering")?;
            let Some(msg) = next else {
                self.done = true;
                break;
            };
            let msg = msg.context("reading the stream")?;
            let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            if seq > self.last {
                self.done = true;
                break;
            }
            batch.read += 1;
            batch.last_seq = seq;
            match serde_json::from_slice::<Job>(&msg.payload) {
                Ok(job) => batch.jobs.push(StreamJob {
                    job,
                    stream_seq: seq,
                    redelivered: false,
                }),
                Err(err) => {
                    batch.unreadable += 1;
                    tracing::warn!(stream_seq = seq, error = %err, "skipping an unreadable job");
                }
            }
            self.done = seq >= self.last || pending == 0;
        }
        Ok((batch.read > 0).then_some(batch))
    }
}
