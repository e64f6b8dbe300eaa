//! Rebuilding the database from the stream.

use e2e::procs::persister_command;
use e2e::Stack;
use serde_json::{json, Value};
use sqlx::PgPool;

/// Every row of every table, as JSON, in a stable order.
async fn snapshot(pool: &PgPool) -> Vec<(String, Vec<Value>)> {
    let mut all = Vec::new();
    for (table, order) in [
        ("rooms", "id"),
        ("room_members", "room_id, user_id"),
        ("messages", "id"),
        ("users", "id"),
        ("message_reactions", "message_id, emoji, user_id"),
        ("room_bans", "room_id, user_id"),
    ] {
        let sql = format!("SELECT to_jsonb(t) FROM (SELECT * FROM {table} ORDER BY {order}) t");
        let rows: Vec<Value> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .unwrap();
        all.push((table.to_owned(), rows));
    }
    all
}

/// A conversation that touches every table: messages with extras, edits,
/// a delete, a read mark, a room with an admin, a leave.
async fn chatter(stack: &Stack) {
    let mut ann = stack.connect("Ann").await;
    let mut bob = stack.connect("Bob").await;
    ann.join("lobby").await;
    bob.join("lobby").await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let c = if i % 2 == 0 { &mut ann } else { &mut bob };
        let t = c.say("lobby", &format!("message {i}")).await;
        ids.push(c.persisted(&t).await["id"].clone());
    }
    let attachments = json!([{"url": "https://example.com/x.png", "name": "x.png", "type": "image/png", "size": 3}]);
    let t = ann
        .ok("message:send", json!({"room": "lobby", "text": "with extras", "reply_to": ids[1], "attachments": attachments, "client_id": "c-9", "kind": "image"}))
        .await["temp_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ann.persisted(&t).await;
    let t = bob
        .ok(
            "message:send",
            json!({"room": "lobby", "text": "in a thread", "thread_of": ids[4]}),
        )
        .await["temp_id"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.persisted(&t).await;
    ann.ok(
        "message:edit",
        json!({"room": "lobby", "id": ids[0], "text": "edited once"}),
    )
    .await;
    ann.ok(
        "message:edit",
        json!({"room": "lobby", "id": ids[0], "text": "edited twice"}),
    )
    .await;
    let react =
        |id: &Value, emoji: &str| json!({"room": "lobby", "message_id": id, "emoji": emoji});
    bob.ok("reaction:add", react(&ids[1], "👍")).await;
    ann.ok("reaction:add", react(&ids[1], "👍")).await;
    ann.ok("reaction:add", react(&ids[1], "🎉")).await;
    bob.ok("reaction:add", react(&ids[2], "❤️")).await;
    bob.ok("reaction:remove", react(&ids[2], "❤️")).await;
    // A deleted message keeps no reactions.
    ann.ok("reaction:add", react(&ids[3], "👀")).await;
    bob.ok("message:delete", json!({"room": "lobby", "id": ids[3]}))
        .await;
    bob.ok(
        "message:read",
        json!({"room": "lobby", "message_id": ids[10]}),
    )
    .await;
    ann.ok(
        "room:create",
        json!({"room": "inner", "kind": "group", "members": [bob.user.id]}),
    )
    .await;
    ann.ok(
        "room:set_role",
        json!({"room": "inner", "user": bob.user.id, "role": "admin"}),
    )
    .await;
    bob.ok(
        "room:notifications",
        json!({"room": "inner", "level": "mentions"}),
    )
    .await;
    let named = ann
        .ok(
            "message:send",
            json!({"room": "inner", "text": "for Bob", "mentions": [bob.user.id]}),
        )
        .await["temp_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ann.persisted(&named).await;
    // A ban that stays and one lifted.
    let mut cy = stack.connect("Cy").await;
    cy.join("lobby").await;
    let ban = |who: &e2e::WsClient| json!({"room": "lobby", "user": who.user.id, "until": "2099-01-01T00:00:00Z"});
    ann.ok("room:ban", ban(&cy)).await;
    ann.ok("room:ban", ban(&bob)).await;
    ann.ok("room:unban", ban(&bob)).await;
    bob.ok("room:join", json!({"room": "lobby"})).await;
    bob.ok("room:leave", json!({"room": "lobby"})).await;
    // Each room's last change is persisted once its event arrives (rooms
    // in different partitions are written independently): in the lobby,
    // Bob's leave after his return.
    let about_bob = |kind: &'static str, bob: &str| {
        let bob = bob.to_owned();
        move |v: &Value| v["type"] == kind && v["data"]["user"]["id"] == bob.as_str()
    };
    // Ann heard Bob join twice (first, then back) and leave twice (the
    // ban, then his own leave); frames are taken in order, so the second
    // of each is the last.
    for _ in 0..2 {
        ann.find("Bob joining", about_bob("room:joined", &bob.user.id))
            .await;
        ann.find("Bob leaving", about_bob("room:left", &bob.user.id))
            .await;
    }
    let role = bob.expect_event("room:role").await;
    assert_eq!(role["data"]["role"], "admin", "the new admin hears of it");
}

#[tokio::test]
async fn a_replay_after_the_rows_are_lost_restores_them_as_they_were_and_a_second_changes_nothing()
{
    let mut stack = Stack::start().await;
    chatter(&stack).await;
    let pool = stack.db.pool().await;
    let before = snapshot(&pool).await;
    assert_eq!(before[2].1.len(), 15, "all messages stored");
    assert_eq!(
        before[4].1.len(),
        3,
        "the reactions left: {:?}",
        before[4].1
    );
    assert_eq!(before[5].1.len(), 1, "Cy's ban: {:?}", before[5].1);

    let p = stack.persisters.remove(0);
    p.process.stop().await;
    sqlx::query("TRUNCATE room_bans, message_reactions, messages, room_members, rooms, users")
        .execute(&pool)
        .await
        .unwrap();
    assert_ne!(snapshot(&pool).await, before);

    let out = persister_command(&stack.config, &["replay"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "replay failed: {stderr}");
    assert!(
        stderr.contains("replay: done"),
        "progress on stderr: {stderr}"
    );
    let after = snapshot(&pool).await;
    for ((table, a), (_, b)) in before.iter().zip(&after) {
        assert_eq!(a, b, "table {table} differs after the replay");
    }

    let again = persister_command(&stack.config, &["replay"]).await;
    let stderr = String::from_utf8_lossy(&again.stderr).into_owned();
    assert!(again.status.success(), "second replay failed: {stderr}");
    let read = |s: &str| {
        s.split(" jobs read")
            .next()
            .and_then(|head| head.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    assert!(read(&stderr).is_some_and(|n| n > 0), "{stderr}");
    assert_eq!(
        read(&stderr),
        read(&String::from_utf8_lossy(&out.stderr)),
        "both replays read the whole stream"
    );
    assert_eq!(
        snapshot(&pool).await,
        before,
        "a second replay changes nothing"
    );

    // A range: up to an early sequence restores only the start.
    sqlx::query("TRUNCATE room_bans, message_reactions, messages, room_members, rooms, users")
        .execute(&pool)
        .await
        .unwrap();
    let part = persister_command(
        &stack.config,
        &["replay", "--from-seq", "1", "--to-seq", "6"],
    )
    .await;
    assert!(
        part.status.success(),
        "{}",
        String::from_utf8_lossy(&part.stderr)
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(n > 0 && n < 15, "a prefix of the messages: {n}");
    let rest = persister_command(&stack.config, &["replay", "--from-seq", "7"]).await;
    assert!(
        rest.status.success(),
        "{}",
        String::from_utf8_lossy(&rest.stderr)
    );
    assert_eq!(snapshot(&pool).await, before, "two ranges make the whole");
}

#[tokio::test]
async fn a_replay_after_a_partial_loss_restores_every_row_with_its_seq() {
    let mut stack = Stack::start().await;
    chatter(&stack).await;
    let pool = stack.db.pool().await;
    let before = snapshot(&pool).await;
    stack.persisters.remove(0).process.stop().await;
    for loss in [
        "DELETE FROM messages",
        "DELETE FROM messages WHERE seq % 3 <> 1",
        "DELETE FROM room_members",
        "DELETE FROM users",
        "DELETE FROM messages WHERE room_id = 'lobby' AND seq > 5",
        "TRUNCATE rooms CASCADE",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(loss))
            .execute(&pool)
            .await
            .unwrap();
        assert_ne!(snapshot(&pool).await, before, "{loss} lost nothing");
        for run in ["first", "second"] {
            let out = persister_command(&stack.config, &["replay"]).await;
            assert!(
                out.status.success(),
                "{run} replay after {loss}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let after = snapshot(&pool).await;
            for ((table, a), (_, b)) in before.iter().zip(&after) {
                assert_eq!(a, b, "table {table} after the {run} replay after {loss:?}");
            }
        }
    }
}
