//! The ceilings the product is compared with, measured by the same tool on
//! the same machine: JetStream alone (`ceiling publish`), and the pipeline
//! without WebSockets or gateway (`ceiling pipeline`: jobs published
//! straight to the stream, written by the persister). `backlog` is the
//! pipeline with the persister started after the jobs are in the stream:
//! how fast it catches up.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde_json::{json, Value};
use shared::config::NatsConfig;
use shared::jobs::{Job, NewMessage};
use shared::protocol::User;
use shared::subjects::Subjects;

use crate::Common;

/// A message job like the gateway's for a short text, published as the
/// gateway does: to the job's subject, with its `temp_id` as message id.
struct Publish {
    subject: String,
    payload: Vec<u8>,
    msg_id: String,
}

fn message_job(subjects: &Subjects, room: &str, sender: &User, i: usize) -> Publish {
    let (temp_id, id) = shared::jobs::message_ids(sender.id, None);
    let job = Job::Message(NewMessage {
        id,
        temp_id,
        room: room.to_owned(),
        sender: sender.clone(),
        kind: Default::default(),
        text: format!("lg {i}"),
        reply_to: None,
        attachments: Vec::new(),
        client_id: None,
        created_at: shared::time::now_millis(),
        mentions: Vec::new(),
        thread_of: None,
    });
    Publish {
        subject: job.subject(subjects),
        payload: serde_json::to_vec(&job).unwrap_or_default(),
        msg_id: temp_id.to_string(),
    }
}

/// Publishes `count` payloads from `next` with up to `window` PubAcks in
/// flight; returns how long that took.
async fn publish_all(
    js: &jetstream::Context,
    count: usize,
    window: usize,
    mut next: impl FnMut(usize) -> Publish,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for i in 0..count {
        if in_flight.len() >= window {
            in_flight.next().await.context("a PubAck")??;
        }
        let Publish {
            subject,
            payload,
            msg_id,
        } = next(i);
        let message = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(msg_id);
        in_flight.push(js.send_publish(subject, message).await?.into_future());
    }
    while let Some(ack) = in_flight.next().await {
        ack?;
    }
    Ok(started.elapsed())
}

async fn jetstream(nats: &NatsConfig) -> anyhow::Result<jetstream::Context> {
    let client = shared::nats::connect(nats, "loadgen").await?;
    Ok(shared::nats::jetstream(client))
}

/// `ceiling publish`: pipelined publishes of job-sized payloads to a stream
/// of its own (file storage, as the product's), deleted afterwards.
pub async fn publish(
    common: &Common,
    nats: &NatsConfig,
    count: usize,
    window: usize,
) -> anyhow::Result<Value> {
    let js = jetstream(nats).await?;
    let subjects = Subjects::new(&nats.chat_stream)?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let name = format!("LOADGEN_CEILING_{run}");
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("loadgen.ceiling.{run}.>")],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    let sender = User {
        id: uuid::Uuid::new_v4(),
        name: Some("ceiling".into()),
        avatar_url: None,
    };
    let cpu_before = crate::cpu::sample(&common.watch);
    let took = publish_all(&js, count, window, |i| {
        // Its own stream's subjects, not the product's.
        let job = message_job(&subjects, "ceiling", &sender, i);
        Publish {
            subject: format!("loadgen.ceiling.{run}.{}", i % 50),
            ..job
        }
    })
    .await;
    let cpu = crate::cpu::between(&cpu_before, &crate::cpu::sample(&common.watch));
    js.delete_stream(&name).await?;
    let took = took?;
    Ok(json!({
        "jobs": count, "in_flight": window, "seconds": took.as_secs_f64(),
        "rate": count as f64 / took.as_secs_f64(), "cpu_percent": cpu,
    }))
}

/// The room of the sender of job `i`: sender `s` sits in room `s / 10`.
fn sender_room(i: usize, senders: usize) -> usize {
    (i % senders) / 10
}

/// `ceiling pipeline` and `backlog`: message jobs for `rooms` rooms
/// published straight to the product's stream, then counted in PostgreSQL
/// as the persister writes them.
///
/// With `backlog`, the persister is expected to be stopped while the jobs
/// are published: the load generator says so on stderr when done
/// ("backlog published"), and the rate counts from the first row written.
pub async fn pipeline(
    common: &Common,
    nats: &NatsConfig,
    rooms: usize,
    count: usize,
    window: usize,
    backlog: bool,
) -> anyhow::Result<Value> {
    let url = common
        .database_url
        .as_deref()
        .context("--database-url: the rows are counted there")?;
    let pool = sqlx::PgPool::connect(url).await?;
    let js = jetstream(nats).await?;
    let subjects = Subjects::new(&nats.chat_stream)?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let rooms: Vec<String> = (0..rooms.max(1)).map(|r| format!("lg-{run}-{r}")).collect();
    // Ten senders per room, as in `throughput`'s default rooms.
    let senders: Vec<User> = (0..rooms.len() * 10)
        .map(|i| User {
            id: uuid::Uuid::new_v4(),
            name: Some(format!("lg {}.{}", i / 10, i % 10)),
            avatar_url: None,
        })
        .collect();
    let pattern = format!("lg-{run}-%");
    // Earlier runs on the same stack were acked already.
    let acked_before = acked_by_persister(&js, &subjects).await;
    let cpu_before = crate::cpu::sample(&common.watch);
    let started = Instant::now();
    let publishing = publish_all(&js, count, window, |i| {
        let sender = &senders[i % senders.len()];
        message_job(&subjects, &rooms[sender_room(i, senders.len())], sender, i)
    });
    // The persister writes while the jobs are published (or, for a
    // backlog, is started once they all are).
    let published = publishing.await?;
    if backlog {
        eprintln!(
            "loadgen: backlog published: {count} jobs in {:.1} s",
            published.as_secs_f64()
        );
    }
    // Progress from the persister's consumers (cheap to ask), the final
    // count from the table.
    let mut first_progress = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let acked = acked_by_persister(&js, &subjects).await - acked_before;
        if acked > 0 && first_progress.is_none() {
            first_progress = Some(Instant::now());
        }
        if acked >= count as u64 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = Instant::now();
    let cpu = crate::cpu::between(&cpu_before, &crate::cpu::sample(&common.watch));
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE room_id LIKE $1")
        .bind(&pattern)
        .fetch_one(&pool)
        .await?;
    let from = if backlog {
        first_progress.unwrap_or(started)
    } else {
        started
    };
    let seconds = done.duration_since(from).as_secs_f64();
    Ok(json!({
        "rooms": rooms.len(), "jobs": count, "written": written, "in_flight": window,
        "publish_seconds": published.as_secs_f64(),
        "seconds": seconds, "rate": written as f64 / seconds, "cpu_percent": cpu,
    }))
}

/// Jobs the persister has acked, over every partition's consumer (0 for
/// consumers not created yet).
async fn acked_by_persister(js: &jetstream::Context, subjects: &Subjects) -> u64 {
    let Ok(stream) = js.get_stream(subjects.stream()).await else {
        return 0;
    };
    let mut acked = 0;
    for p in 0..shared::subjects::PARTITIONS {
        if let Ok(info) = stream.consumer_info(subjects.partition_consumer(p)).await {
            acked += info.ack_floor.consumer_sequence;
        }
    }
    acked
}

pub fn human(what: &str, r: &Value) -> String {
    format!(
        "{what}: {} jobs at {:.0} jobs/s ({:.1} s)\n  cpu % of one core: {}",
        r["jobs"],
        r["rate"].as_f64().unwrap_or(0.0),
        r["seconds"].as_f64().unwrap_or(0.0),
        r["cpu_percent"]
    )
}
