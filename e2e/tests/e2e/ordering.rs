//! Per-room order with several persisters, one of them killed midway.

use std::collections::HashMap;
use std::time::Duration;

use e2e::{Stack, WsClient};
use serde_json::json;

const ROOMS: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];
const PER_SENDER: usize = 625;

/// Sends `PER_SENDER` messages one after another, returning the temp ids
/// in the order they were acked.
async fn sender(mut c: WsClient, room: &'static str, tag: &'static str) -> Vec<String> {
    let mut acked = Vec::with_capacity(PER_SENDER);
    for i in 0..PER_SENDER {
        let ack = c
            .ok(
                "message:send",
                json!({"room": room, "text": format!("{tag} {i}")}),
            )
            .await;
        acked.push(ack["temp_id"].as_str().expect("temp_id").to_owned());
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    acked
}

#[tokio::test]
async fn with_two_persisters_and_one_killed_every_room_keeps_its_order() {
    let stack = Stack::build(&e2e::nats_url(), 2, 2, e2e::procs::UNTHROTTLED).await;
    // A listener per room on each gateway, and two senders per room, one
    // on each gateway.
    let mut listeners = Vec::new();
    let mut senders = Vec::new();
    for room in ROOMS {
        for gw in 0..2 {
            let mut l = stack.connect_to(gw, &format!("listener-{room}-{gw}")).await;
            l.join(room).await;
            listeners.push((room, l));
        }
        for (gw, tag) in [(0, "a"), (1, "b")] {
            let mut s = stack.connect_to(gw, &format!("sender-{room}-{tag}")).await;
            s.join(room).await;
            senders.push((room, tag, s));
        }
    }

    // Both persisters write: the partitions are split four and four.
    for p in &stack.persisters {
        e2e::eventually_within(
            Duration::from_secs(20),
            "the partitions to be shared",
            || async {
                (e2e::metric(&p.url, "persister_partitions_held").await == Some(4.0)).then_some(())
            },
        )
        .await;
    }

    let tasks: Vec<_> = senders
        .into_iter()
        .map(|(room, tag, c)| (room, tag, tokio::spawn(sender(c, room, tag))))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut stack = stack;
    stack.persisters.remove(0).process.kill().await;

    let mut acked: HashMap<(&str, &str), Vec<String>> = HashMap::new();
    for (room, tag, task) in tasks {
        acked.insert((room, tag), task.await.expect("sender finished"));
    }
    let total_per_room = 2 * PER_SENDER as i64;

    // Everything acked is persisted exactly once, seq 1..n without gaps.
    let pool = stack.db.pool().await;
    for room in ROOMS {
        // A killed persister's partitions are taken over once its leases
        // expire (10 s).
        let rows: Vec<(i64, String)> = e2e::eventually_within(
            Duration::from_secs(40),
            &format!("all of {room} persisted"),
            || {
                let pool = pool.clone();
                async move {
                    let rows: Vec<(i64, String)> = sqlx::query_as(
                        "SELECT seq, temp_id::text FROM messages WHERE room_id = $1 ORDER BY seq",
                    )
                    .bind(room)
                    .fetch_all(&pool)
                    .await
                    .ok()?;
                    (rows.len() as i64 >= total_per_room).then_some(rows)
                }
            },
        )
        .await;
        let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(
            seqs,
            (1..=total_per_room).collect::<Vec<_>>(),
            "room {room}"
        );
        // Each sender's messages keep the order they were acked in.
        let seq_of: HashMap<&str, i64> = rows.iter().map(|(s, t)| (t.as_str(), *s)).collect();
        for tag in ["a", "b"] {
            let order: Vec<i64> = acked[&(room, tag)]
                .iter()
                .map(|t| seq_of[t.as_str()])
                .collect();
            assert!(
                order.windows(2).all(|w| w[0] < w[1]),
                "room {room} sender {tag}: {order:?}"
            );
        }
    }

    // Every connection saw its room's events in seq order; catching up
    // after the last seq it saw gives it exactly what it missed.
    for (room, mut l) in listeners {
        let mut seen: Vec<i64> = Vec::new();
        while let Ok(v) = tokio::time::timeout(
            Duration::from_millis(300),
            l.expect_event_quiet("message:persisted"),
        )
        .await
        {
            seen.push(v["data"]["message"]["seq"].as_i64().expect("seq"));
        }
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "{room}: events out of order: {seen:?}"
        );
        let mut have: Vec<i64> = seen.clone();
        let mut after = 0;
        // Missed events (the killed persister's, between commit and
        // publish) are what history after the last contiguous seq holds.
        for s in &seen {
            if *s == after + 1 {
                after = *s;
            }
        }
        loop {
            let page = l
                .ok(
                    "history:fetch",
                    json!({"room": room, "after": after, "limit": 100}),
                )
                .await;
            let seqs = e2e::seqs(&page);
            let Some(last) = seqs.last().copied() else {
                break;
            };
            have.extend(seqs);
            after = last;
        }
        have.sort_unstable();
        have.dedup();
        assert_eq!(
            have,
            (1..=total_per_room).collect::<Vec<_>>(),
            "{room}: events plus catch-up"
        );
    }
}

#[tokio::test]
async fn jobs_a_killed_persister_had_in_hand_keep_their_place_before_newer_ones() {
    let mut stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    ann.join("held").await;
    let t = ann.say("held", "warm up").await;
    ann.persisted(&t).await;

    // PostgreSQL stalls the persister with the next jobs in hand.
    let pool = stack.db.pool().await;
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE rooms IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut first = Vec::new();
    for i in 0..20 {
        first.push(ann.say("held", &format!("in hand {i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.persisters.remove(0).process.kill().await;
    lock.rollback().await.unwrap();

    // A new persister takes over; newer sends queue behind the old ones.
    stack.add_persister().await;
    let mut later = Vec::new();
    for i in 0..10 {
        later.push(ann.say("held", &format!("after {i}")).await);
    }
    let texts: Vec<String> =
        e2e::eventually_within(Duration::from_secs(40), "all 31 persisted", || {
            let pool = pool.clone();
            async move {
                let t: Vec<String> = sqlx::query_scalar(
                    "SELECT text FROM messages WHERE room_id = 'held' ORDER BY seq",
                )
                .fetch_all(&pool)
                .await
                .ok()?;
                (t.len() >= 31).then_some(t)
            }
        })
        .await;
    let expected: Vec<String> = std::iter::once("warm up".to_owned())
        .chain((0..20).map(|i| format!("in hand {i}")))
        .chain((0..10).map(|i| format!("after {i}")))
        .collect();
    assert_eq!(
        texts, expected,
        "seq follows the order the sends were acked"
    );
    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM messages WHERE room_id = 'held' ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(seqs, (1..=31).collect::<Vec<i64>>());
}
