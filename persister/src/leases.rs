//! Which persister writes which partition.
//!
//! Rooms are spread over [`PARTITIONS`] partitions (by room id), each with
//! its own durable consumer. A partition is written by one persister at a
//! time, which is what keeps each room's `seq` in the order its jobs entered
//! the stream however many persisters run. Ownership is a lease: a key
//! `lease.<p>` in a key-value bucket whose entries expire after [`TTL`],
//! claimed with `create` (only one claimer wins) and renewed with an
//! `update` that expects the revision last written. A persister that cannot
//! renew stops writing the partition after [`GIVE_UP`], before anyone else
//! can claim it. Persisters also announce themselves (`member.<id>`) and
//! each takes at most its share, ceil(partitions / persisters), releasing
//! the rest after the batch in hand, so partitions spread out as persisters
//! come and go.
//!
//! Each webhook receiver is one more leased task (`lease.hook_<key>`),
//! shared out with the partitions: one persister at a time delivers a
//! receiver's events, which is what keeps them in order.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use shared::subjects::PARTITIONS;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::consumer::Worker;

/// A lease not renewed for this long is free: after a `kill -9`, the dead
/// persister's partitions wait at most this long (plus one [`ROUND`]) for
/// another to take them.
pub const TTL: Duration = Duration::from_secs(4);
/// How often leases are renewed and the balance is looked at: 16 small
/// key-value writes a second for a persister holding every partition.
const ROUND: Duration = Duration::from_millis(500);
/// A holder that could not renew for this long stops writing: 1.5 s before
/// [`TTL`] (three rounds of margin for the batch in hand to end and for
/// the renewal's own round trip), so two persisters never write one
/// partition.
const GIVE_UP: Duration = Duration::from_millis(2_500);
/// Persisters are counted every this many rounds (2 s); their own entry,
/// renewed as often, stays well within [`TTL`].
const COUNT_EVERY: u64 = 4;

struct Held {
    revision: u64,
    renewed: Instant,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Holds this persister's share of the partitions until `stop`, writing
/// each it holds; on stop, finishes the batches in hand and frees its
/// leases for the others at once.
pub async fn run(worker: Worker, stop: CancellationToken) {
    let me = uuid::Uuid::new_v4().simple().to_string();
    let Some(mut kv) = bucket(&worker, &stop).await else {
        return;
    };
    // After losing touch with the bucket nothing new is claimed until
    // every lease that could have been held then has expired: a NATS
    // restart loses the bucket (it lives in memory), and a holder keeps
    // writing until it fails to renew for GIVE_UP.
    let mut claim_after = Instant::now();
    let mut held: HashMap<u32, Held> = HashMap::new();
    let mut stopping = Stopping::new();
    let mut tick = tokio::time::interval(ROUND);
    let mut members = 1;
    let mut round: u64 = 0;
    // A lease taken since persisters were last counted: the share it was
    // taken within may have counted a dead one (whose entry outlives its
    // leases by up to a round trip of counting), so readiness waits for a
    // count taken after it.
    let mut claimed_since_count = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        // Counting persisters lists the bucket (a consumer on the server):
        // every few rounds is enough to follow them coming and going.
        if round.is_multiple_of(COUNT_EVERY) || claimed_since_count {
            claimed_since_count = false;
            members = match announce_and_count(&kv, &me).await {
                Ok(n) => n,
                Err(err) => {
                    tracing::warn!(error = %err, "partition leases unreachable");
                    worker.state.set_consumer_ready(false);
                    drop_stale(&mut held, &mut stopping);
                    claim_after = Instant::now() + TTL;
                    if let Ok(again) = worker
                        .js
                        .create_or_update_key_value(bucket_config(&worker))
                        .await
                    {
                        kv = again;
                    }
                    continue;
                }
            };
        }
        round += 1;
        renew(&kv, &worker, &me, &mut held).await;
        drop_stale(&mut held, &mut stopping);
        let share = (worker.tasks() as usize).div_ceil(members.max(1));
        while held.len() > share {
            let p = *held.keys().max().expect("more than share > 0 held");
            release(&kv, &worker, p, held.remove(&p).expect("just found")).await;
        }
        if Instant::now() >= claim_after
            && claim(&kv, &me, &worker, &stop, share, &mut held, &stopping).await
        {
            claimed_since_count = true;
        }
        // Ready means doing its work: writing its share, as counted after
        // its last claim. A persister waiting for a dead one's leases to
        // expire is not.
        worker
            .state
            .set_consumer_ready(held.len() >= share && !claimed_since_count);
        let partitions = held.keys().filter(|t| **t < PARTITIONS).count();
        metrics::gauge!("persister_partitions_held").set(partitions as f64);
    }
    for (p, h) in held.drain() {
        release(&kv, &worker, p, h).await;
    }
    let _ = kv.delete(format!("member.{me}")).await;
}

fn bucket_config(worker: &Worker) -> kv::Config {
    kv::Config {
        bucket: worker.subjects.leases_bucket(),
        history: 1,
        max_age: TTL,
        storage: async_nats::jetstream::stream::StorageType::Memory,
        num_replicas: worker.replicas,
        ..Default::default()
    }
}

/// The leases bucket, created on first use; waits for NATS.
async fn bucket(worker: &Worker, stop: &CancellationToken) -> Option<kv::Store> {
    let config = bucket_config(worker);
    loop {
        match worker.js.create_or_update_key_value(config.clone()).await {
            Ok(kv) => return Some(kv),
            Err(err) => tracing::warn!(error = %err, "partition leases bucket not ready"),
        }
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Says this persister is alive; returns how many are.
async fn announce_and_count(kv: &kv::Store, me: &str) -> anyhow::Result<usize> {
    kv.put(format!("member.{me}"), bytes::Bytes::new()).await?;
    let mut keys = kv.keys().await?;
    let mut n = 0;
    while let Some(key) = keys.next().await {
        if key?.starts_with("member.") {
            n += 1;
        }
    }
    Ok(n)
}

async fn renew(kv: &kv::Store, worker: &Worker, me: &str, held: &mut HashMap<u32, Held>) {
    for (p, h) in held.iter_mut() {
        match kv
            .update(
                worker.lease_key(*p),
                me.as_bytes().to_vec().into(),
                h.revision,
            )
            .await
        {
            Ok(revision) => {
                h.revision = revision;
                h.renewed = Instant::now();
            }
            Err(err) => {
                tracing::warn!(partition = p, error = %err, "renewing a partition lease failed")
            }
        }
    }
}

/// Partitions told to stop whose task may still be finishing its batch:
/// none is claimed again, by this persister either, before its task ended,
/// so one process never has two writers of a partition.
type Stopping = HashMap<u32, JoinHandle<()>>;

/// Stops writing partitions whose lease could not be renewed in time, and
/// forgets those whose loop ended.
fn drop_stale(held: &mut HashMap<u32, Held>, stopping: &mut Stopping) {
    stopping.retain(|_, task| !task.is_finished());
    let stale: Vec<u32> = held
        .iter()
        .filter(|(_, h)| h.renewed.elapsed() >= GIVE_UP || h.task.is_finished())
        .map(|(p, _)| *p)
        .collect();
    for p in stale {
        let Some(h) = held.remove(&p) else { continue };
        if !h.task.is_finished() {
            tracing::warn!(
                partition = p,
                "giving up a partition whose lease could not be kept"
            );
            h.stop.cancel();
            stopping.insert(p, h.task);
        }
    }
}

/// Finishes the batch in hand on `p`, then frees its lease.
async fn release(kv: &kv::Store, worker: &Worker, p: u32, h: Held) {
    h.stop.cancel();
    let _ = h.task.await;
    let _ = kv
        .delete_expect_revision(worker.lease_key(p), Some(h.revision))
        .await;
    tracing::info!(partition = p, "released a partition");
}

/// Claims free partitions up to `share`, starting at a place of its own so
/// persisters starting together do not all try the same ones first.
/// Returns whether it took any.
async fn claim(
    kv: &kv::Store,
    me: &str,
    worker: &Worker,
    stop: &CancellationToken,
    share: usize,
    held: &mut HashMap<u32, Held>,
    stopping: &Stopping,
) -> bool {
    let tasks = worker.tasks();
    let start = shared::subjects::partition(me);
    let mut took = false;
    for i in 0..tasks {
        if held.len() >= share {
            return took;
        }
        let p = (start + i) % tasks;
        if held.contains_key(&p) || stopping.contains_key(&p) {
            continue;
        }
        if let Ok(revision) = kv
            .create(worker.lease_key(p), me.as_bytes().to_vec().into())
            .await
        {
            tracing::info!(task = p, lease = %worker.lease_key(p), "took a lease");
            let token = stop.child_token();
            let task = tokio::spawn({
                let worker = worker.clone();
                let token = token.clone();
                async move { worker.run_task(p, token).await }
            });
            held.insert(
                p,
                Held {
                    revision,
                    renewed: Instant::now(),
                    stop: token,
                    task,
                },
            );
            took = true;
        }
    }
    took
}
