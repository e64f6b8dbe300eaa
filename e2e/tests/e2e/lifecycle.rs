//! Restarts, stops and what survives them.

use std::time::Duration;

use e2e::faults::{replace_the_persister_mid_commit, slow_commits};
use e2e::{Gateway, Persister, Stack, WsClient};
use serde_json::json;

#[tokio::test]
async fn history_survives_restarting_the_gateway_and_the_persister() {
    let mut stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    ann.join("durable").await;
    let mut last = String::new();
    for i in 1..=5 {
        last = ann.say("durable", &format!("before restart {i}")).await;
    }
    ann.persisted(&last).await;
    let user = ann.user.clone();
    drop(ann);

    let port = stack.gateway().port;
    let gw = stack.gateways.remove(0);
    gw.process.stop().await;
    let p = stack.persisters.remove(0);
    p.process.stop().await;

    stack.persisters.push(Persister::start(&stack.config).await);
    stack
        .gateways
        .push(Gateway::start(&stack.config, port).await);
    let mut ann = WsClient::connect(&stack.gateway().ws_url(), user).await;
    assert_eq!(ann.ready["rooms"], json!(["durable"]));
    let page = ann.ok("history:fetch", json!({"room": "durable"})).await;
    let texts = e2e::texts(&page);
    assert_eq!(
        texts,
        (1..=5)
            .map(|i| format!("before restart {i}"))
            .collect::<Vec<_>>()
    );
    let t = ann.say("durable", "after restart").await;
    assert_eq!(ann.persisted(&t).await["seq"], 6);
}

#[tokio::test]
async fn a_message_sent_while_the_persister_is_stopped_is_acked_and_persisted_when_it_starts() {
    let mut stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    let mut bob = stack.connect("Bob").await;
    ann.join("queue").await;
    bob.join("queue").await;
    ann.expect_event("room:joined").await;

    let p = stack.persisters.remove(0);
    p.process.stop().await;
    let t = ann.say("queue", "while the persister is away").await;
    bob.expect_no("message:persisted", Duration::from_millis(500))
        .await;
    let page = bob.ok("history:fetch", json!({"room": "queue"})).await;
    assert_eq!(page["messages"], json!([]), "not persisted yet");

    stack.add_persister().await;
    let m = bob.persisted(&t).await;
    assert_eq!(m["text"], "while the persister is away");
    assert_eq!(m["seq"], 1);
}

#[tokio::test]
async fn sigterm_stops_the_gateway_under_load_cleanly_and_tells_clients_to_reconnect() {
    let mut stack = Stack::build(&e2e::nats_url(), 1, 1, e2e::procs::UNTHROTTLED).await;
    let mut ann = stack.connect("Ann").await;
    ann.join("bye").await;
    let refs: Vec<String> = (0..300)
        .map(|i| {
            ann.send(
                "message:send",
                json!({"room": "bye", "text": format!("m{i}")}),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let gw = stack.gateways.remove(0);
    let status = gw.process.terminate(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit 0 within 10 s: {status:?}"
    );
    let mut acked = Vec::new();
    for r in &refs {
        match ann.reply_or_closed(r).await {
            Some(reply) if reply["type"] == "ack" => {
                acked.push(reply["data"]["temp_id"].as_str().unwrap().to_owned());
            }
            _ => {}
        }
    }
    assert_eq!(
        ann.closed().await,
        Some(1012),
        "close code: service restart"
    );
    assert!(!acked.is_empty());
    e2e::all_stored_once(&stack.db.pool().await, &acked).await;
}

#[tokio::test]
async fn a_connection_whose_token_expires_is_closed_with_4001() {
    let stack = Stack::start().await;
    let id = uuid::Uuid::new_v4();
    let token = e2e::ws::token(id, "Short", chrono::Utc::now().timestamp() + 2);
    let guest = e2e::Guest {
        token,
        id: id.to_string(),
        name: "Short".into(),
    };
    let mut c = WsClient::connect(&stack.gateway().ws_url(), guest).await;
    assert_eq!(c.closed().await, Some(4001));
}

#[tokio::test]
async fn the_gateway_reads_with_a_role_that_cannot_write() {
    let stack = Stack::start().await;
    let pool = sqlx::PgPool::connect(&stack.db.gateway_url())
        .await
        .expect("the gateway role connects");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&pool)
        .await
        .expect("the gateway role reads");
    assert_eq!(rows, 0);
    let write = sqlx::query(
        "INSERT INTO rooms (id, kind, public, created_at) VALUES ('x', 'group', true, now())",
    )
    .execute(&pool)
    .await;
    let err = write
        .expect_err("the gateway role must not write")
        .to_string();
    assert!(err.contains("permission denied"), "{err}");
}

#[tokio::test]
async fn sigterm_stops_the_persister_mid_load_and_every_acked_message_lands_once() {
    let mut stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    ann.join("load").await;
    let refs: Vec<String> = (0..150)
        .map(|i| {
            ann.send(
                "message:send",
                json!({"room": "load", "text": format!("m{i}")}),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let p = stack.persisters.remove(0);
    let status = p.process.terminate(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit 0 within 10 s: {status:?}"
    );
    let mut acked = Vec::new();
    for r in &refs {
        let reply = ann.reply(r).await;
        assert_eq!(reply["type"], "ack", "the gateway keeps acking: {reply}");
        acked.push(reply["data"]["temp_id"].as_str().unwrap().to_owned());
    }
    stack.add_persister().await;
    let pool = stack.db.pool().await;
    let seqs: Vec<i64> = e2e::eventually("all 150 persisted", || {
        let pool = pool.clone();
        async move {
            let seqs: Vec<i64> =
                sqlx::query_scalar("SELECT seq FROM messages WHERE room_id = 'load' ORDER BY seq")
                    .fetch_all(&pool)
                    .await
                    .ok()?;
            (seqs.len() >= 150).then_some(seqs)
        }
    })
    .await;
    assert_eq!(
        seqs,
        (1..=150).collect::<Vec<i64>>(),
        "each once, seq without gaps"
    );
    let texts: Vec<String> =
        sqlx::query_scalar("SELECT text FROM messages WHERE room_id = 'load' ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        texts,
        (0..150).map(|i| format!("m{i}")).collect::<Vec<_>>(),
        "seq follows send order"
    );
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT temp_id::text FROM messages WHERE room_id = 'load' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stored, acked);
}

#[tokio::test]
async fn a_gateway_killed_while_clients_send_loses_nothing_it_acked() {
    let mut stack = Stack::two_gateways().await;
    let mut watcher = stack.connect_to(1, "Watcher").await;
    watcher.join("crash").await;
    let mut senders = Vec::new();
    for i in 0..3 {
        let mut c = stack.connect_to(0, &format!("sender-{i}")).await;
        c.join("crash").await;
        senders.push(c);
    }
    // Pipelined sends, with client ids so a retry after the crash would
    // be stored once.
    let mut refs = Vec::new();
    for i in 0..400 {
        for (n, c) in senders.iter().enumerate() {
            let r = c.send("message:send", json!({"room": "crash", "text": format!("{n}-{i}"), "client_id": format!("{n}-{i}")}));
            refs.push((n, r));
        }
    }
    // The kill comes once the first send is acked, with the rest in flight
    // (however busy the machine is).
    let (n, r) = refs.remove(0);
    let first = senders[n].reply(&r).await;
    assert_eq!(first["type"], "ack", "{first}");
    stack.gateways.remove(0).process.kill().await;

    // What each sender got acked before its connection died.
    let mut acked = vec![first["data"]["temp_id"].as_str().unwrap().to_owned()];
    for (n, r) in refs {
        let c = &mut senders[n];
        let reply = tokio::time::timeout(Duration::from_millis(50), c.reply_or_closed(&r))
            .await
            .ok()
            .flatten();
        if let Some(reply) = reply.filter(|v| v["type"] == "ack") {
            acked.push(reply["data"]["temp_id"].as_str().unwrap().to_owned());
        }
    }

    // Every acked message is stored exactly once, and whole.
    let pool = stack.db.pool().await;
    let t = watcher.say("crash", "after the crash").await;
    watcher.persisted(&t).await;
    let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT temp_id::text, seq, text FROM messages WHERE room_id = 'crash' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let stored: std::collections::HashMap<&str, usize> =
        rows.iter()
            .fold(std::collections::HashMap::new(), |mut m, (t, _, _)| {
                *m.entry(t.as_str()).or_default() += 1;
                m
            });
    for t in &acked {
        assert_eq!(
            stored.get(t.as_str()),
            Some(&1),
            "acked {t} stored exactly once"
        );
    }
    assert!(
        rows.iter().all(|(_, _, text)| text.is_some()),
        "no half-stored row"
    );
    let seqs: Vec<i64> = rows.iter().map(|r| r.1).collect();
    assert_eq!(
        seqs,
        (1..=rows.len() as i64).collect::<Vec<_>>(),
        "seq without gaps"
    );
}

/// A persister killed after its commit and before its events: the change
/// is stored, and no one was told. The next persister publishes the event
/// of what it finds written, so the members still connected see it without
/// reconnecting — once, although the job is redelivered again later. For a
/// new message, and for an edit.
#[tokio::test]
async fn members_see_a_message_whose_persister_died_between_commit_and_event() {
    let mut stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    ann.join("wake").await;
    bob.join("wake").await;
    let t = ann.say("wake", "first").await;
    ann.persisted(&t).await;
    bob.persisted(&t).await;
    let pool = stack.db.pool().await;

    slow_commits(&pool, "INSERT", "messages").await;
    let t = ann.say("wake", "second").await;
    replace_the_persister_mid_commit(
        &mut stack,
        &pool,
        (
            "messages",
            "SELECT count(*) FROM messages WHERE text = 'second'",
        ),
        Some((&mut ann, "message:persisted")),
    )
    .await;
    // The next persister takes the partition over once the dead one's
    // lease has expired.
    let told = each_gets([&mut ann, &mut bob], "the stored message's event", |v| {
        v["type"] == "message:persisted" && v["data"]["temp_id"] == t
    })
    .await;
    for m in &told {
        assert_eq!(m["data"]["message"]["seq"], 2, "{m}");
    }
    let id = told[0]["data"]["message"]["id"].clone();
    // The job comes back once more from the consumer (it was never acked):
    // the gateways have delivered its event already and drop it.
    let gateway = stack.gateways[1].url.clone();
    e2e::eventually_within(
        Duration::from_secs(30),
        "the redelivered job's event to be dropped",
        || async {
            let n = e2e::metric(&gateway, "gateway_events_repeated_total").await?;
            (n >= 1.0).then_some(())
        },
    )
    .await;
    let t3 = ann.say("wake", "third").await;
    for member in [&mut ann, &mut bob] {
        let next = member.expect_event("message:persisted").await;
        assert_eq!(next["data"]["temp_id"], t3.as_str(), "told twice: {next}");
        assert_eq!(next["data"]["message"]["seq"], 3, "{next}");
    }

    // The same for an edit.
    slow_commits(&pool, "UPDATE", "messages").await;
    ann.ok(
        "message:edit",
        json!({"room": "wake", "id": id, "text": "second, edited"}),
    )
    .await;
    replace_the_persister_mid_commit(
        &mut stack,
        &pool,
        (
            "messages",
            "SELECT count(*) FROM messages WHERE text = 'second, edited'",
        ),
        Some((&mut ann, "message:edited")),
    )
    .await;
    let told = each_gets([&mut ann, &mut bob], "the stored edit's event", |v| {
        v["type"] == "message:edited"
    })
    .await;
    for m in &told {
        assert_eq!(m["data"]["message"]["text"], "second, edited", "{m}");
    }
}

/// The first frame matching `pred` at each member, within 40 s.
async fn each_gets(
    members: [&mut WsClient; 2],
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    for member in members {
        got.push(
            member
                .find_within(Duration::from_secs(40), what, &pred)
                .await,
        );
    }
    got
}
