//! Webhooks against a real receiver on loopback that checks signatures:
//! every event delivered (at least once, so exactly once after the
//! receiver's deduplication by id), in `seq` order per room, through a
//! receiver that fails for 30 s and a persister killed mid-delivery; and
//! `notification` events for the members who are offline on every gateway.

use std::time::Duration;

use e2e::faults::{replace_the_persister_mid_commit, slow_commits};
use e2e::hooks::{Mode, Receiver, SECRET};
use e2e::{Persister, Stack, WsClient};
use serde_json::{json, Value};

async fn stack_with(receiver: &Receiver, gateways: usize) -> Stack {
    Stack::build(
        &e2e::nats_url(),
        gateways,
        1,
        &[
            ("CHAT_WEBHOOK_URL", receiver.url.as_str()),
            ("CHAT_WEBHOOK_SECRET", SECRET),
            ("GATEWAY_RATE_PER_S", "1000000"),
            ("GATEWAY_RATE_BURST", "1000000"),
        ],
    )
    .await
}

/// The `seq`s of a room's `message.persisted` events, in arrival order.
fn seqs_in(events: &[Value], room: &str) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e["type"] == "message.persisted" && e["data"]["room"] == room)
        .map(|e| e["data"]["seq"].as_i64().unwrap_or(-1))
        .collect()
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["type"] == kind).count()
}

/// Where in the arrival order the first event matching `pred` stands.
fn position(events: &[Value], pred: impl Fn(&Value) -> bool) -> usize {
    events
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no such event in {events:#?}"))
}

#[tokio::test]
async fn every_event_reaches_a_receiver_that_failed_for_30_s_once_per_id_and_in_room_order() {
    let receiver = Receiver::start(Mode::Fail).await;
    let stack = stack_with(&receiver, 2).await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    for room in ["north", "south"] {
        ann.join(room).await;
        bob.join(room).await;
    }
    let mut last = String::new();
    let mut first_south = None;
    for i in 1..=5 {
        last = ann.say("north", &format!("n{i}")).await;
        let t = bob.say("south", &format!("s{i}")).await;
        first_south.get_or_insert(t);
    }
    let edited = bob.persisted(&first_south.unwrap()).await;
    bob.ok(
        "message:edit",
        json!({"room": "south", "id": edited["id"], "text": "s1, edited"}),
    )
    .await;
    let doomed = ann.persisted(&last).await;
    ann.ok(
        "message:delete",
        json!({"room": "north", "id": doomed["id"]}),
    )
    .await;
    bob.ok("room:leave", json!({"room": "north"})).await;
    ann.find("bob's leave", |v| v["type"] == "room:left").await;

    // The receiver has been refusing everything; nothing is lost, nothing
    // waits on it: every send above was acked and persisted meanwhile.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(receiver.refused() > 0, "the receiver was never tried");
    assert!(receiver.events().is_empty());
    receiver.set(Mode::Take);

    let expected = 4 + 10 + 1 + 1 + 1;
    let events = receiver.settled(Duration::from_secs(60), expected).await;
    assert_eq!(count(&events, "room.member_joined"), 4);
    assert_eq!(count(&events, "message.persisted"), 10);
    assert_eq!(count(&events, "message.edited"), 1);
    assert_eq!(count(&events, "message.deleted"), 1);
    assert_eq!(count(&events, "room.member_left"), 1);
    assert_eq!(count(&events, "notification"), 0, "everyone was online");
    assert_eq!(seqs_in(&events, "north"), [1, 2, 3, 4, 5]);
    assert_eq!(seqs_in(&events, "south"), [1, 2, 3, 4, 5]);

    // In each room, in the order things happened there.
    let edit = position(&events, |e| e["type"] == "message.edited");
    assert_eq!(events[edit]["data"]["text"], "s1, edited");
    assert!(edit > position(&events, |e| e["data"]["id"] == edited["id"]));
    let delete = position(&events, |e| e["type"] == "message.deleted");
    assert_eq!(events[delete]["data"]["id"], doomed["id"]);
    assert_eq!(events[delete]["data"]["text"], Value::Null);
    assert!(delete > position(&events, |e| e["data"]["id"] == doomed["id"]));
    let left = position(&events, |e| e["type"] == "room.member_left");
    assert_eq!(events[left]["data"]["user"]["id"], bob.user.id.as_str());
    assert!(left > delete, "the leave came after the delete in north");
    for e in &events {
        assert!(e["id"].as_str().is_some_and(|id| id.len() == 36), "{e}");
        assert!(
            e["created_at"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{e}"
        );
    }

    let metrics = &stack.persisters[0].url;
    let delivered = e2e::metric(metrics, "webhook_delivered_total").await;
    let retried = e2e::metric(metrics, "webhook_retried_total").await;
    assert!(delivered >= Some(expected as f64), "{delivered:?}");
    assert!(retried >= Some(1.0), "{retried:?}");
    e2e::eventually("no undelivered event left", || async {
        (e2e::metric(metrics, "webhook_oldest_undelivered_seconds").await == Some(0.0)
            && e2e::metric(metrics, "webhook_failing").await == Some(0.0))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn events_a_persister_held_when_killed_mid_delivery_come_again_in_room_order() {
    let receiver = Receiver::start(Mode::Slow(Duration::from_millis(60))).await;
    let mut stack = stack_with(&receiver, 1).await;
    let mut ann = stack.connect("Ann").await;
    let rooms = ["r0", "r1", "r2", "r3"];
    for room in rooms {
        ann.join(room).await;
    }
    let per_room = 30;
    let mut refs = Vec::new();
    for i in 1..=per_room {
        for room in rooms {
            refs.push(ann.send(
                "message:send",
                json!({"room": room, "text": format!("{room}-{i}")}),
            ));
        }
    }
    for r in refs {
        assert_eq!(ann.reply(&r).await["type"], "ack");
    }
    receiver
        .until(Duration::from_secs(30), "a few events", |e| e.len() >= 20)
        .await;
    let before = receiver.events().len();
    assert!(
        before < 4 + 4 * per_room,
        "delivery was already over: {before}"
    );
    stack.persisters.remove(0).process.kill().await;
    let replacement = Persister::start(&stack.config).await;
    stack.persisters.push(replacement);

    let events = receiver
        .settled(Duration::from_secs(60), 4 + 4 * per_room)
        .await;
    let all: Vec<i64> = (1..=per_room as i64).collect();
    for room in rooms {
        assert_eq!(seqs_in(&events, room), all, "{room}");
    }
    // The new holder started again from the last event acked: some came
    // twice, which the receiver's deduplication absorbed.
    eprintln!(
        "{before} events before the kill, {} duplicates after",
        receiver.duplicates()
    );
}

#[tokio::test]
async fn a_join_and_a_message_whose_persister_died_between_commit_and_record_reach_the_receiver() {
    let receiver = Receiver::start(Mode::Take).await;
    let mut stack = stack_with(&receiver, 1).await;
    let mut ann = stack.connect("Ann").await;
    let mut bob = stack.connect("Bob").await;
    ann.join("crash").await;
    let pool = stack.db.pool().await;
    // Ann's join is acked once stored in the stream: it must be written
    // before commits turn slow, or the persister killed would be hers.
    e2e::eventually("Ann's join to be written", || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM room_members WHERE room_id = 'crash'")
                .fetch_one(&pool)
                .await
                .ok()?;
        (n == 1).then_some(())
    })
    .await;

    // Bob's join commits, and its persister dies before recording it.
    slow_commits(&pool, "INSERT", "room_members").await;
    let joining = bob.send("room:join", json!({"room": "crash"}));
    replace_the_persister_mid_commit(
        &mut stack,
        &pool,
        (
            "room_members",
            &format!(
                "SELECT count(*) FROM room_members WHERE room_id = 'crash' AND user_id = '{}'",
                bob.user.id
            ),
        ),
        None,
    )
    .await;
    assert_eq!(bob.reply(&joining).await["type"], "ack");
    // The same for a message.
    slow_commits(&pool, "INSERT", "messages").await;
    let t = ann.say("crash", "still here").await;
    replace_the_persister_mid_commit(
        &mut stack,
        &pool,
        (
            "messages",
            "SELECT count(*) FROM messages WHERE text = 'still here'",
        ),
        None,
    )
    .await;
    ann.persisted(&t).await;

    let joined_bob = |e: &Value| {
        e["type"] == "room.member_joined" && e["data"]["user"]["id"] == bob.user.id.as_str()
    };
    receiver
        .until(Duration::from_secs(40), "Bob's join and the message", |e| {
            e.iter().any(joined_bob) && count(e, "message.persisted") == 1
        })
        .await;
    let events = receiver.events();
    assert_eq!(events.iter().filter(|e| joined_bob(e)).count(), 1);
    assert_eq!(seqs_in(&events, "crash"), [1]);
    assert!(
        position(&events, joined_bob) < position(&events, |e| e["type"] == "message.persisted")
    );
}

/// Waits until `watcher` hears that `user` went offline.
async fn offline(watcher: &mut WsClient, user: &str) {
    watcher
        .find(&format!("{user} offline"), |v| {
            v["type"] == "presence:offline" && v["data"]["user"]["id"] == user
        })
        .await;
}

#[tokio::test]
async fn offline_members_get_one_notification_each_as_their_level_allows() {
    let receiver = Receiver::start(Mode::Take).await;
    let stack = stack_with(&receiver, 2).await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let bob = stack.connect_to(1, "Bob").await;
    // Cy never connects; Dee and Eve set their levels, then leave.
    let cy = e2e::guest(&stack.gateway().url, Some("Cy")).await;
    let mut dee = stack.connect_to(1, "Dee").await;
    let mut eve = stack.connect_to(0, "Eve").await;
    let ids = [&bob.user.id, &cy.id, &dee.user.id, &eve.user.id];
    ann.ok(
        "room:create",
        json!({"room": "team", "kind": "group", "members": ids}),
    )
    .await;
    dee.find("the room", |v| v["type"] == "room:joined").await;
    eve.find("the room", |v| v["type"] == "room:joined").await;
    dee.ok(
        "room:notifications",
        json!({"room": "team", "level": "mentions"}),
    )
    .await;
    eve.ok(
        "room:notifications",
        json!({"room": "team", "level": "none"}),
    )
    .await;
    let (dee_id, eve_id) = (dee.user.id.clone(), eve.user.id.clone());
    drop(dee);
    drop(eve);
    offline(&mut ann, &dee_id).await;
    offline(&mut ann, &eve_id).await;

    let hello = ann.say("team", "hello all").await;
    let mention = ann
        .ok(
            "message:send",
            json!({"room": "team", "text": "@Dee look", "mentions": [dee_id]}),
        )
        .await["temp_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let hello = ann.persisted(&hello).await;
    let mention = ann.persisted(&mention).await;
    let notified = |events: &[Value]| -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = events
            .iter()
            .filter(|e| e["type"] == "notification")
            .map(|e| {
                (
                    e["data"]["message"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    e["data"]["user"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        pairs.sort();
        pairs
    };
    let id = |m: &Value| m["id"].as_str().unwrap().to_owned();
    let mut expected = vec![
        (id(&hello), cy.id.clone()),
        (id(&mention), cy.id.clone()),
        (id(&mention), dee_id.clone()),
    ];
    expected.sort();
    receiver
        .until(Duration::from_secs(20), "three notifications", |e| {
            notified(e).len() >= 3
        })
        .await;
    // Both messages' own events came first: nothing else is on its way.
    receiver
        .until(Duration::from_secs(5), "both messages", |e| {
            count(e, "message.persisted") == 2
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(notified(&receiver.events()), expected);
    let note = receiver
        .of_type("notification")
        .into_iter()
        .find(|e| e["data"]["user"]["id"] == dee_id.as_str())
        .unwrap();
    assert_eq!(note["data"]["room"], "team");
    assert_eq!(note["data"]["user"]["name"], "Dee");
    assert_eq!(note["data"]["message"]["text"], "@Dee look");

    // Bob goes offline on his gateway: from then on he is notified too.
    let bob_id = bob.user.id.clone();
    drop(bob);
    offline(&mut ann, &bob_id).await;
    let later = ann.say("team", "anyone?").await;
    let later = ann.persisted(&later).await;
    receiver
        .until(Duration::from_secs(20), "Bob's notification", |e| {
            notified(e).contains(&(id(&later), bob_id.clone()))
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let for_later: Vec<String> = notified(&receiver.events())
        .into_iter()
        .filter(|(m, _)| *m == id(&later))
        .map(|(_, u)| u)
        .collect();
    let mut want = vec![bob_id, cy.id.clone()];
    want.sort();
    assert_eq!(for_later, want);
}

#[tokio::test]
async fn a_webhook_url_that_is_not_http_or_without_a_secret_stops_the_persister() {
    for (url, secret) in [
        ("ftp://hooks.example/in", SECRET),
        ("http://127.0.0.1:9/in", ""),
    ] {
        let stack = Stack::build(&e2e::nats_url(), 0, 0, &[]).await;
        let mut config = stack.config.clone();
        config.env.push(("CHAT_WEBHOOK_URL".into(), url.into()));
        config
            .env
            .push(("CHAT_WEBHOOK_SECRET".into(), secret.into()));
        let mut p = Persister::start_unready(&config);
        let exit = p
            .process
            .exited_within(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("the persister kept running with {url}"));
        assert!(!exit.success());
        let logs: String = std::fs::read_dir(&config.logs)
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect();
        let setting = if secret.is_empty() {
            "CHAT_WEBHOOK_SECRET"
        } else {
            "CHAT_WEBHOOK_URL"
        };
        assert!(logs.contains(setting), "{url}: {logs}");
    }
}
