//! Delivering one receiver's events, by the persister holding its lease.
//!
//! Events of different rooms go out side by side (up to [`CONCURRENCY`]
//! requests at once); those of one room one after the other, in the order
//! the stream has them, which is their `seq` order. A room whose receiver
//! fails waits with growing delays, and only that room waits. A
//! `message.persisted` is followed by the `notification` events of its
//! offline members, computed when it is first sent.
//!
//! A new holder first rewinds the consumer to its ack floor, so events a
//! stopped holder had in hand come again in order, before any newer one.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, AckKind};
use bytes::Bytes;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use shared::protocol::Message;
use shared::subjects::Subjects;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::record::{self, MESSAGE_PERSISTED};
use super::{notify, Receiver};
use crate::online::Online;

/// Requests in flight to one receiver.
const CONCURRENCY: usize = 32;
/// A receiver that has not answered 2xx within this is retried.
pub const TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(300);
/// An event still undelivered this long after it was stored is given up
/// (counted in `webhook_dropped_total`): more than the day of retries a
/// receiver is promised.
const GIVE_UP_AFTER: Duration = Duration::from_secs(25 * 3600);
/// How often the events waiting here are told to the server as in
/// progress, well within [`record::ACK_WAIT`].
const TOUCH_EVERY: Duration = Duration::from_secs(600);
/// How long a stop waits for the requests in flight.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What every receiver's delivery shares; one per process.
pub struct Deliverer {
    pub js: jetstream::Context,
    pub subjects: Subjects,
    pub pool: PgPool,
    pub online: Arc<Online>,
    pub http: reqwest::Client,
    pub secret: String,
}

/// One request: an event's id and body.
type Part = (Uuid, Bytes);

/// An event held until its receiver took it.
struct Pending {
    seq: u64,
    room: String,
    /// When the stream stored it, in Unix milliseconds.
    stored_ms: i64,
    id: Uuid,
    body: Bytes,
    /// The requests still to make, once known: the event, then its
    /// notifications.
    parts: Option<VecDeque<Part>>,
    attempts: u32,
    handle: Option<jetstream::Message>,
}

/// The first fields of a stored event.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

/// Signs a body: `sha256=<hex HMAC-SHA256 of it, keyed by the secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any size");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delay before retry `attempts` (1, 2, 4 … seconds, at most 5 min).
fn backoff(attempts: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(MAX_RETRY)
}

impl Deliverer {
    /// Builds the HTTP client every receiver shares.
    ///
    /// # Errors
    /// When the TLS setup fails.
    pub fn http_client() -> reqwest::Result<reqwest::Client> {
        shared::net::install_tls_provider();
        reqwest::Client::builder()
            .timeout(TIMEOUT)
            // A redirect is an answer other than 2xx: retried, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
    }

    /// Delivers `receiver`'s events until `stop`, starting over (rewound to
    /// the ack floor) after any failure of NATS.
    pub async fn run(self: Arc<Self>, receiver: Receiver, stop: CancellationToken) {
        while !stop.is_cancelled() {
            if let Err(err) = self.deliver(&receiver, &stop).await {
                tracing::warn!(webhook = %receiver.key, error = %err, "webhook delivery interrupted; starting over");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    async fn consumer(&self, receiver: &Receiver) -> anyhow::Result<PullConsumer> {
        let stream = self.js.get_stream(self.subjects.hooks_stream()).await?;
        stream
            .get_consumer(&self.subjects.hook_consumer(&receiver.key))
            .await
            .map_err(|e| anyhow::anyhow!("the webhook consumer: {e}"))
    }

    /// Rewinds the consumer to its ack floor (NATS 2.14 and later): what a
    /// stopped holder had in hand comes again, first.
    async fn rewind(&self, receiver: &Receiver) -> anyhow::Result<()> {
        let subject = format!(
            "CONSUMER.RESET.{}.{}",
            self.subjects.hooks_stream(),
            self.subjects.hook_consumer(&receiver.key)
        );
        let reply: serde_json::Value = self.js.request(subject, &serde_json::json!({})).await?;
        if let Some(err) = reply.get("error") {
            anyhow::bail!("the server refused to rewind the webhook consumer: {err}");
        }
        Ok(())
    }

    async fn deliver(
        self: &Arc<Self>,
        receiver: &Receiver,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let consumer = self.consumer(receiver).await?;
        if let Err(err) = self.rewind(receiver).await {
            // A server before 2.14 has no rewind: what a stopped holder had
            // in hand comes back only after the ack wait, behind newer
            // events of its rooms. Delivery goes on; order after such a
            // takeover is not kept.
            tracing::warn!(webhook = %receiver.key, error = %err,
                "cannot rewind the webhook consumer (NATS 2.14 or later needed)");
        }
        let mut messages = consumer.messages().await?;
        let mut queues = Queues::new(receiver.key.clone());
        let mut inflight: JoinSet<(Pending, Result<(), String>)> = JoinSet::new();
        let mut touch = tokio::time::interval(TOUCH_EVERY);
        let mut gauges = tokio::time::interval(Duration::from_secs(1));
        loop {
            while inflight.len() < CONCURRENCY {
                let Some(p) = queues.next_due() else { break };
                let me = self.clone();
                let url = receiver.url.clone();
                inflight.spawn(async move { me.attempt(url, p).await });
            }
            // With every slot taken, an event that is due waits for a slot,
            // not for its time (which may have passed: no spinning).
            let wake = if inflight.len() < CONCURRENCY {
                queues.next_wake()
            } else {
                None
            };
            tokio::select! {
                () = stop.cancelled() => break,
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    let (p, result) = done?;
                    queues.finish(p, result).await;
                }
                msg = messages.next(), if queues.held.len() < record::MAX_ACK_PENDING as usize => {
                    match msg {
                        Some(Ok(msg)) => queues.push(msg).await,
                        Some(Err(err)) => anyhow::bail!("pulling webhook events: {err}"),
                        None => anyhow::bail!("the webhook consumer ended"),
                    }
                }
                () = sleep_until(wake), if wake.is_some() => {}
                _ = touch.tick() => queues.touch().await,
                _ = gauges.tick() => queues.gauges(),
            }
        }
        // Stopping: the requests in flight may finish and be acked; what
        // is left comes again to the next holder.
        let _ = tokio::time::timeout(STOP_GRACE, async {
            while let Some(Ok((p, result))) = inflight.join_next().await {
                queues.finish(p, result).await;
            }
        })
        .await;
        // What it still held is the next holder's to report.
        queues.held.clear();
        queues.failing = 0;
        queues.gauges();
        Ok(())
    }

    /// Makes the requests of one event that are still to make, in order;
    /// hands the event back with how it went.
    async fn attempt(&self, url: reqwest::Url, mut p: Pending) -> (Pending, Result<(), String>) {
        if p.parts.is_none() {
            match self.parts(&p).await {
                Ok(parts) => p.parts = Some(parts),
                Err(err) => return (p, Err(err)),
            }
        }
        let parts = p.parts.as_mut().expect("set above");
        while let Some((id, body)) = parts.front() {
            if let Err(err) = self.post(&url, *id, body).await {
                return (p, Err(err));
            }
            parts.pop_front();
        }
        (p, Ok(()))
    }

    /// The requests of an event: itself, and after a new message the
    /// notifications of its offline members.
    async fn parts(&self, p: &Pending) -> Result<VecDeque<Part>, String> {
        let mut parts = VecDeque::from([(p.id, p.body.clone())]);
        let Ok(head) = serde_json::from_slice::<Head<'_>>(&p.body) else {
            return Ok(parts);
        };
        if head.kind != MESSAGE_PERSISTED {
            return Ok(parts);
        }
        let message: Message = serde_json::from_str(head.data.get())
            .map_err(|e| format!("unreadable message event: {e}"))?;
        self.online.warm().await;
        let offline = notify::offline_members(&self.pool, &self.online, &message)
            .await
            .map_err(|e| format!("reading the room's members: {e}"))?;
        for user in &offline {
            let ev = record::notification(&message, user);
            parts.push_back((ev.id, ev.to_json()));
        }
        Ok(parts)
    }

    async fn post(&self, url: &reqwest::Url, id: Uuid, body: &Bytes) -> Result<(), String> {
        let reply = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Chat-Event-Id", id.to_string())
            .header("X-Chat-Signature", signature(&self.secret, body))
            .body(body.clone())
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if reply.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", reply.status()))
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The events one receiver's delivery holds: per room, in stream order.
struct Queues {
    label: String,
    /// Each room's events not in flight.
    rooms: HashMap<String, VecDeque<Pending>>,
    /// Rooms whose first event may go, by when.
    due: BTreeMap<(Instant, u64), String>,
    /// Rooms with an event in flight: none of theirs goes before it ends.
    busy: HashSet<String>,
    /// The highest stream sequence delivered (or given up) per room: a
    /// redelivery at or below it was delivered.
    done: HashMap<String, u64>,
    /// Every event held, queued or in flight: stream sequence → when stored.
    held: BTreeMap<u64, i64>,
    /// Events whose last attempt failed.
    failing: usize,
}

impl Queues {
    fn new(label: String) -> Self {
        Self {
            label,
            rooms: HashMap::new(),
            due: BTreeMap::new(),
            busy: HashSet::new(),
            done: HashMap::new(),
            held: BTreeMap::new(),
            failing: 0,
        }
    }

    /// Takes in an event handed out by the server.
    async fn push(&mut self, msg: jetstream::Message) {
        let Ok(info) = msg.info() else { return };
        let seq = info.stream_sequence;
        let stored_ms = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
        let room = msg
            .subject
            .as_str()
            .split_once(".hook.")
            .map(|(_, room)| room.to_owned())
            .unwrap_or_default();
        if self.done.get(&room).is_some_and(|d| *d >= seq) {
            let _ = msg.ack().await;
            return;
        }
        let queue = self.rooms.entry(room.clone()).or_default();
        if self.held.contains_key(&seq) {
            // Handed out again while held here: keep the newest handle.
            if let Some(p) = queue.iter_mut().find(|p| p.seq == seq) {
                p.handle = Some(msg);
            }
            return;
        }
        let id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .and_then(|v| v.as_str().parse().ok())
            .unwrap_or_else(|| Uuid::new_v5(&Uuid::NAMESPACE_OID, &seq.to_be_bytes()));
        let first = queue.is_empty() && !self.busy.contains(&room);
        queue.push_back(Pending {
            seq,
            room: room.clone(),
            stored_ms,
            id,
            body: msg.payload.clone(),
            parts: None,
            attempts: 0,
            handle: Some(msg),
        });
        self.held.insert(seq, stored_ms);
        if first {
            self.schedule(room, Instant::now(), seq);
        }
    }

    fn schedule(&mut self, room: String, at: Instant, seq: u64) {
        self.due.insert((at, seq), room);
    }

    /// The first event of a room that is due, taken out of its queue.
    fn next_due(&mut self) -> Option<Pending> {
        let (&(at, seq), _) = self.due.first_key_value()?;
        if at > Instant::now() {
            return None;
        }
        let room = self.due.remove(&(at, seq)).expect("just seen");
        let p = self.rooms.get_mut(&room).and_then(VecDeque::pop_front)?;
        self.busy.insert(room);
        Some(p)
    }

    fn next_wake(&self) -> Option<Instant> {
        self.due.first_key_value().map(|((at, _), _)| *at)
    }

    /// After an attempt: acks a delivered event and lets the room's next
    /// go, or puts a failed one back for a retry later.
    async fn finish(&mut self, mut p: Pending, result: Result<(), String>) {
        self.busy.remove(&p.room);
        let label = self.label.clone();
        match result {
            Ok(()) => {
                metrics::counter!("webhook_delivered_total", "webhook" => label).increment(1);
                self.settle(p, AckKind::Ack).await;
            }
            Err(why) => {
                metrics::counter!("webhook_retried_total", "webhook" => label).increment(1);
                let age_ms = shared::time::now_millis().timestamp_millis() - p.stored_ms;
                if age_ms > GIVE_UP_AFTER.as_millis() as i64 {
                    tracing::error!(webhook = %self.label, room = %p.room, event = %p.id, %why,
                        "giving up an event its receiver did not take for a day");
                    metrics::counter!("webhook_dropped_total", "webhook" => self.label.clone())
                        .increment(1);
                    self.settle(p, AckKind::Term).await;
                    return;
                }
                if p.attempts == 0 {
                    self.failing += 1;
                }
                p.attempts += 1;
                let wait = backoff(p.attempts);
                tracing::warn!(webhook = %self.label, room = %p.room, event = %p.id, %why,
                    attempts = p.attempts, retry_in_ms = wait.as_millis() as u64, "webhook not taken");
                let (room, seq) = (p.room.clone(), p.seq);
                self.rooms.entry(room.clone()).or_default().push_front(p);
                self.schedule(room, Instant::now() + wait, seq);
            }
        }
    }

    /// An event done with (delivered, or given up): acked, and its room's
    /// next event may go.
    async fn settle(&mut self, p: Pending, ack: AckKind) {
        if p.attempts > 0 {
            self.failing -= 1;
        }
        self.held.remove(&p.seq);
        self.done.insert(p.room.clone(), p.seq);
        if let Some(handle) = &p.handle {
            if let Err(err) = handle.ack_with(ack).await {
                tracing::debug!(error = %err, "webhook event ack failed; it comes again and is skipped");
            }
        }
        match self.rooms.get(&p.room).and_then(VecDeque::front) {
            Some(next) => {
                let seq = next.seq;
                self.schedule(p.room, Instant::now(), seq);
            }
            None => {
                self.rooms.remove(&p.room);
            }
        }
    }

    /// Tells the server every queued event is still being worked on.
    async fn touch(&self) {
        for p in self.rooms.values().flatten() {
            if let Some(handle) = &p.handle {
                let _ = handle.ack_with(AckKind::Progress).await;
            }
        }
    }

    fn gauges(&self) {
        let label = self.label.clone();
        let oldest = self.held.first_key_value().map_or(0.0, |(_, stored_ms)| {
            let age = shared::time::now_millis().timestamp_millis() - stored_ms;
            age.max(0) as f64 / 1000.0
        });
        metrics::gauge!("webhook_oldest_undelivered_seconds", "webhook" => label.clone())
            .set(oldest);
        metrics::gauge!("webhook_failing", "webhook" => label).set(self.failing as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=12).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits[..5], [1, 2, 4, 8, 16]);
        assert_eq!(*waits.last().unwrap(), 300);
        assert_eq!(backoff(u32::MAX).as_secs(), 300);
    }

    #[test]
    fn the_signature_is_the_hmac_of_the_body_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
