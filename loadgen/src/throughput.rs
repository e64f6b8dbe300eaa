//! `throughput` (R rooms of U users, a total rate spread over every user)
//! and `fanout` (one room of N members): sends over real WebSockets, paced
//! open-loop, with ack, persisted and fan-out latencies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Protocol, Seen};
use crate::cpu;
use crate::report::{histogram, line, summary};
use crate::Common;

/// The shape of one run.
#[derive(Clone, Debug)]
pub struct Shape {
    pub rooms: usize,
    pub users: usize,
    pub rate: f64,
    pub duration: f64,
}

/// What one connection saw, recorded by its reader where it was seen:
/// nothing goes through a central task per frame.
struct Tally {
    ack: Histogram<u64>,
    persisted: Histogram<u64>,
    fanout: Histogram<u64>,
    acked: Vec<String>,
    refused: HashMap<String, u64>,
    /// When the last of the sender's own `message:persisted` came.
    last_persisted: Option<Instant>,
}

impl Tally {
    fn new() -> Self {
        Self {
            ack: histogram(),
            persisted: histogram(),
            fanout: histogram(),
            acked: Vec::new(),
            refused: HashMap::new(),
            last_persisted: None,
        }
    }
}

/// Progress over every connection, to know when the run is complete.
#[derive(Default)]
struct Progress {
    answered: AtomicU64,
    acked: AtomicU64,
    persisted: AtomicU64,
    fanout: AtomicU64,
    /// Connections the server closed during the run (cut off).
    closed: AtomicU64,
}

/// When send `i` is due: the pacing is fixed in advance.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    rate: f64,
}

impl Schedule {
    fn due(&self, i: usize) -> Instant {
        self.start + Duration::from_secs_f64(i as f64 / self.rate)
    }

    fn latency_us(&self, i: usize, at: Instant) -> u64 {
        at.saturating_duration_since(self.due(i)).as_micros() as u64
    }
}

/// Connections opened at once while setting up.
const CONNECT_CONCURRENCY: usize = 32;

/// One run: connect, send, collect, check. Returns the run's results.
pub async fn run(common: &Common, shape: &Shape) -> anyhow::Result<Value> {
    let bases = common.bases();
    let total = ((shape.rate * shape.duration).round() as usize).max(1);
    let progress = Arc::new(Progress::default());
    let http = reqwest::Client::new();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    eprintln!(
        "loadgen: connecting {} users to {} rooms",
        shape.rooms * shape.users,
        shape.rooms
    );
    let connecting = Instant::now();
    // Sending starts once everyone is connected; readers learn when.
    let (start_tx, start_rx) = tokio::sync::watch::channel(None::<Schedule>);
    let places: Vec<(usize, String, String)> = (0..shape.rooms * shape.users)
        .map(|i| {
            let (r, u) = (i / shape.users, i % shape.users);
            (i, format!("lg-{run}-{r}"), format!("lg {r}.{u}"))
        })
        .collect();
    let mut users: Vec<(usize, Member, String)> = futures::stream::iter(places)
        .map(|(i, room, name)| {
            let (http, base) = (&http, &bases[i % bases.len()]);
            let (progress, start_rx) = (progress.clone(), start_rx.clone());
            async move {
                let ws = common
                    .protocol
                    .connect(http, base, &name, source(i))
                    .await?;
                let member = member(common.protocol, ws, &room, progress, start_rx).await?;
                anyhow::Ok((i, member, room))
            }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    users.sort_by_key(|(i, _, _)| *i);
    let connect_s = connecting.elapsed().as_secs_f64();
    // A join is acked once the stream holds it; the rooms are full once
    // the database does too. Messages sent before that queue behind the
    // joins still being written, which would measure the fill, not the
    // room.
    let pool = match &common.database_url {
        Some(url) => Some(
            sqlx::PgPool::connect(url)
                .await
                .context("connecting to the database")?,
        ),
        None => None,
    };
    let stored_s = match (&pool, common.protocol) {
        (Some(pool), Protocol::Chat) => {
            let expected = (shape.rooms * shape.users) as i64;
            wait_members_stored(pool, &run, expected).await?;
            Some(connecting.elapsed().as_secs_f64())
        }
        _ => None,
    };
    let members = shape.users.saturating_sub(1) as u64;

    // The pacer: send i is due at start + i / rate, sent by user i mod N.
    eprintln!(
        "loadgen: {total} messages at {} msg/s for {} s",
        shape.rate, shape.duration
    );
    let cpu_before = cpu::sample(&common.watch);
    let schedule = Schedule {
        start: Instant::now(),
        rate: shape.rate,
    };
    let _ = start_tx.send(Some(schedule));
    let protocol = common.protocol;
    let pacer = {
        let users: Vec<(mpsc::UnboundedSender<String>, String)> = users
            .iter()
            .map(|(_, m, room)| (m.out.clone(), room.clone()))
            .collect();
        tokio::spawn(async move {
            for i in 0..total {
                tokio::time::sleep_until(schedule.due(i).into()).await;
                let (out, room) = &users[i % users.len()];
                let _ = out.send(protocol.send(i, room));
            }
        })
    };

    let deadline =
        schedule.start + Duration::from_secs_f64(shape.duration) + Duration::from_secs(30);
    loop {
        let acked = progress.acked.load(Ordering::Relaxed);
        let done = progress.answered.load(Ordering::Relaxed) >= total as u64
            && progress.persisted.load(Ordering::Relaxed) >= acked
            && progress.fanout.load(Ordering::Relaxed) >= acked * members;
        if done || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pacer.abort();
    let cpu = cpu::between(&cpu_before, &cpu::sample(&common.watch));
    let elapsed = schedule.start.elapsed().as_secs_f64();

    let mut all = Tally::new();
    for (_, member, _) in &users {
        let t = member.tally.lock().expect("not poisoned");
        all.ack.add(&t.ack).context("merging histograms")?;
        all.persisted
            .add(&t.persisted)
            .context("merging histograms")?;
        all.fanout.add(&t.fanout).context("merging histograms")?;
        all.acked.extend(t.acked.iter().cloned());
        all.last_persisted = all.last_persisted.max(t.last_persisted);
        for (code, n) in &t.refused {
            *all.refused.entry(code.clone()).or_default() += n;
        }
    }
    let acked = all.acked.len() as u64;
    let fanout_expected = acked * members;
    let mut result = json!({
        "rooms": shape.rooms, "users_per_room": shape.users,
        "rate_target": shape.rate, "duration_s": shape.duration,
        "sent": total, "acked": acked, "refused": all.refused.values().sum::<u64>(),
        "refused_by_code": all.refused,
        "ack": summary(&all.ack), "persisted": summary(&all.persisted), "fanout": summary(&all.fanout),
        "fanout_expected": fanout_expected,
        "fanout_missing": fanout_expected.saturating_sub(all.fanout.len()),
        "persisted_missing": acked.saturating_sub(all.persisted.len()),
        "cut_off": progress.closed.load(Ordering::Relaxed),
        "elapsed_s": elapsed,
        // Signing in, connecting and joining every user: how fast the
        // rooms filled.
        "connect_s": connect_s,
        // ... and until the database held every membership.
        "members_stored_s": stored_s,
        // What was written per second, from the first due send to the last
        // write: beyond capacity, the rate that counts.
        "persisted_per_s": all.last_persisted.map_or(0.0, |at| {
            all.persisted.len() as f64 / (at - schedule.start).as_secs_f64()
        }),
        "cpu_percent": cpu,
    });
    if let Some(pool) = &pool {
        let (lost, duplicates) = check_stored(pool, &all.acked).await?;
        result["lost"] = json!(lost);
        result["duplicates"] = json!(duplicates);
    }
    Ok(result)
}

/// Waits until PostgreSQL holds `expected` memberships in this run's
/// rooms (two minutes at most).
async fn wait_members_stored(pool: &PgPool, run: &str, expected: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (stored,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM room_members WHERE room_id LIKE $1")
                .bind(format!("lg-{run}-%"))
                .fetch_one(pool)
                .await?;
        if stored >= expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {stored} of {expected} memberships stored after two minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Looks every acked `temp_id` up in PostgreSQL: how many are missing,
/// and how many are stored more than once.
async fn check_stored(pool: &PgPool, acked: &[String]) -> anyhow::Result<(usize, usize)> {
    let ids: Vec<uuid::Uuid> = acked.iter().filter_map(|t| t.parse().ok()).collect();
    let rows: Vec<(i64,)> =
        sqlx::query_as("SELECT count(*) FROM messages WHERE temp_id = ANY($1) GROUP BY temp_id")
            .bind(&ids)
            .fetch_all(pool)
            .await?;
    let duplicates = rows.iter().filter(|(n,)| *n > 1).count();
    Ok((acked.len() - rows.len(), duplicates))
}

/// The local address a connection comes from (see [`client::open`]).
pub fn source(i: usize) -> u8 {
    (1 + i / 20_000) as u8
}

/// A connected user: where its frames go out, and what it saw.
struct Member {
    out: mpsc::UnboundedSender<String>,
    tally: Arc<Mutex<Tally>>,
}

/// Joins a connected user to its room, and records what it sees.
async fn member(
    protocol: Protocol,
    mut ws: client::Socket,
    room: &str,
    progress: Arc<Progress>,
    mut start: tokio::sync::watch::Receiver<Option<Schedule>>,
) -> anyhow::Result<Member> {
    protocol.join(&mut ws, room).await?;
    let (mut sink, mut stream) = ws.split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if sink.send(Message::text(frame)).await.is_err() {
                return;
            }
        }
    });
    let tally = Arc::new(Mutex::new(Tally::new()));
    let mine = tally.clone();
    let pong = out.clone();
    tokio::spawn(async move {
        let Ok(schedule) = start
            .wait_for(Option::is_some)
            .await
            .map(|s| s.expect("set"))
        else {
            return;
        };
        let mut sends: HashMap<String, usize> = HashMap::new();
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Text(t) = msg else { continue };
            let at = Instant::now();
            let seen = protocol.read(&t);
            if let Seen::Ping = seen {
                let _ = pong.send("3".to_owned());
                continue;
            }
            let mut tally = mine.lock().expect("not poisoned");
            record(seen, &mut sends, &mut tally, &progress, schedule, at);
        }
        progress.closed.fetch_add(1, Ordering::Relaxed);
    });
    Ok(Member { out, tally })
}

/// Counts a frame: an ack, a refusal, or a `message:persisted` of the
/// load (the sender's own, or fan-out).
fn record(
    seen: Seen<'_>,
    sends: &mut HashMap<String, usize>,
    tally: &mut Tally,
    progress: &Progress,
    schedule: Schedule,
    at: Instant,
) {
    match seen {
        Seen::Ack { send, temp_id } => {
            sends.insert(temp_id.to_owned(), send);
            let _ = tally.ack.record(schedule.latency_us(send, at));
            tally.acked.push(temp_id.to_owned());
            progress.acked.fetch_add(1, Ordering::Relaxed);
            progress.answered.fetch_add(1, Ordering::Relaxed);
        }
        Seen::Refused(code) => {
            *tally.refused.entry(code.into_owned()).or_default() += 1;
            progress.answered.fetch_add(1, Ordering::Relaxed);
        }
        Seen::Persisted { send, temp_id } => {
            let us = schedule.latency_us(send, at);
            if temp_id.is_some_and(|t| sends.remove(t).is_some()) {
                let _ = tally.persisted.record(us);
                tally.last_persisted = Some(at);
                progress.persisted.fetch_add(1, Ordering::Relaxed);
            } else {
                let _ = tally.fanout.record(us);
                progress.fanout.fetch_add(1, Ordering::Relaxed);
            }
        }
        Seen::Ping | Seen::Other => {}
    }
}

/// A run passes with every acked message persisted and delivered, none
/// lost or refused, and the sender's `message:persisted` p99 under this.
pub const PASS_P99_MS: f64 = 250.0;

pub fn passes(r: &Value) -> bool {
    let zero = |k: &str| r[k].as_u64() == Some(0);
    r["persisted"]["p99_ms"]
        .as_f64()
        .is_some_and(|p| p < PASS_P99_MS)
        && r["acked"].as_u64().is_some_and(|n| n > 0)
        && [
            "lost",
            "duplicates",
            "refused",
            "persisted_missing",
            "fanout_missing",
            "cut_off",
        ]
        .into_iter()
        .all(zero)
}

/// The highest rate whose result passes, of the sets a sweep ran.
pub fn highest_passing(sets: &[Value]) -> Option<f64> {
    sets.iter()
        .filter(|s| s["passes"] == true)
        .filter_map(|s| s["rate"].as_f64())
        .reduce(f64::max)
}

pub fn human(r: &Value) -> String {
    format!(
        "{} rooms x {} users, {} msg/s target, {} s\n  sent={} acked={} refused={} {} lost={} duplicates={} persisted_missing={} fanout_missing={} cut_off={} persisted/s={:.0} connected in {:.1} s (members stored at {} s)\n  cpu % of one core: {}\n{}\n{}\n{}",
        r["rooms"], r["users_per_room"], r["rate_target"], r["duration_s"],
        r["sent"], r["acked"], r["refused"], r["refused_by_code"],
        r.get("lost").unwrap_or(&json!("unchecked")),
        r.get("duplicates").unwrap_or(&json!("unchecked")),
        r["persisted_missing"], r["fanout_missing"], r["cut_off"], r["persisted_per_s"].as_f64().unwrap_or(0.0), r["connect_s"].as_f64().unwrap_or(0.0),
        r["members_stored_s"].as_f64().map_or("-".to_owned(), |s| format!("{s:.1}")), r["cpu_percent"],
        line("ack", &r["ack"]), line("persisted", &r["persisted"]), line("fanout", &r["fanout"])
    )
}
