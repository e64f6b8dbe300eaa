//! Typing indicators, read receipts and unread counts, edits and deletes —
//! with the users on two gateways.

use std::time::{Duration, Instant};

use e2e::{Stack, WsClient};
use serde_json::{json, Value};

/// Ann on gateway 0 and Bob on gateway 1, both in `room`.
async fn pair(room: &str) -> (Stack, WsClient, WsClient) {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    ann.join(room).await;
    bob.join(room).await;
    ann.expect_event("room:joined").await;
    (stack, ann, bob)
}

#[tokio::test]
async fn typing_reaches_the_others_never_the_typer_and_stops_by_itself() {
    let (stack, mut ann, mut bob) = pair("typing").await;
    let ann2 = e2e::guest(&stack.gateways[0].url, None).await;
    drop(ann2);
    ann.ok("typing:start", json!({"room": "typing"})).await;
    let start = bob.expect_event("typing:start").await;
    assert_eq!(
        start["data"],
        json!({"room": "typing", "user": {"id": ann.user.id, "name": "Ann", "avatar_url": null}})
    );
    ann.ok("typing:stop", json!({"room": "typing"})).await;
    bob.expect_event("typing:stop").await;

    ann.ok("typing:start", json!({"room": "typing"})).await;
    bob.expect_event("typing:start").await;
    let began = Instant::now();
    let stop = bob.expect_event("typing:stop").await;
    let after = began.elapsed();
    assert_eq!(stop["data"]["user"]["name"], "Ann");
    assert!(
        after >= Duration::from_secs(4) && after < Duration::from_secs(7),
        "stopped by itself after about 5 s: {after:?}"
    );
    ann.expect_no("typing:start", Duration::from_millis(200))
        .await;
    ann.expect_no("typing:stop", Duration::from_millis(10))
        .await;

    // A typer who disconnects stops typing.
    bob.ok("typing:start", json!({"room": "typing"})).await;
    ann.expect_event("typing:start").await;
    drop(bob);
    ann.expect_event("typing:stop").await;
}

async fn rooms(base: &str, token: &str) -> Value {
    e2e::get_json(&format!("{base}/v1/rooms"), token).await
}

#[tokio::test]
async fn read_marks_move_forward_reach_the_sender_and_drive_unread_counts() {
    let (stack, mut ann, mut bob) = pair("reads").await;
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        let t = bob.say("reads", text).await;
        ids.push(ann.persisted(&t).await["id"].clone());
    }
    let own = ann.say("reads", "mine").await;
    ann.persisted(&own).await;
    let base = &stack.gateways[0].url;
    assert_eq!(
        rooms(base, &ann.user.token).await["rooms"][0]["unread"],
        3,
        "own messages are not unread"
    );

    ann.ok(
        "message:read",
        json!({"room": "reads", "message_id": ids[1]}),
    )
    .await;
    let read = bob.expect_event("message:read").await;
    assert_eq!(
        read["data"],
        json!({"room": "reads", "user": {"id": ann.user.id, "name": "Ann", "avatar_url": null}, "message_id": ids[1]})
    );
    ann.expect_no("message:read", Duration::from_millis(200))
        .await;
    e2e::eventually("one unread left", || async {
        (rooms(base, &ann.user.token).await["rooms"][0]["unread"] == 1).then_some(())
    })
    .await;

    // Never backwards.
    ann.ok(
        "message:read",
        json!({"room": "reads", "message_id": ids[0]}),
    )
    .await;
    bob.expect_no("message:read", Duration::from_millis(300))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rooms(base, &ann.user.token).await["rooms"][0]["unread"], 1);

    assert_eq!(
        ann.refused(
            "message:read",
            json!({"room": "reads", "message_id": uuid::Uuid::new_v4()})
        )
        .await,
        "not_found"
    );
    let mut eve = stack.connect_to(0, "Eve").await;
    assert_eq!(
        eve.refused(
            "message:read",
            json!({"room": "reads", "message_id": ids[2]})
        )
        .await,
        "not_a_member"
    );
}

#[tokio::test]
async fn only_the_sender_edits_and_the_sender_or_a_manager_deletes() {
    let (_stack, mut ann, mut bob) = pair("edits").await;
    let attachments = json!([{"url": "https://example.com/a.pdf", "name": "a.pdf", "type": "application/pdf", "size": 10}]);
    let ack = bob
        .ok(
            "message:send",
            json!({"room": "edits", "text": "tpyo", "attachments": attachments}),
        )
        .await;
    let original = ann.persisted(ack["temp_id"].as_str().unwrap()).await;
    let id = original["id"].clone();

    assert_eq!(
        ann.refused(
            "message:edit",
            json!({"room": "edits", "id": id, "text": "hijack"})
        )
        .await,
        "forbidden"
    );
    bob.ok(
        "message:edit",
        json!({"room": "edits", "id": id, "text": "typo"}),
    )
    .await;
    let edited = ann.expect_event("message:edited").await["data"]["message"].clone();
    assert_eq!(edited["text"], "typo");
    assert_eq!(edited["id"], id);
    assert_eq!(edited["seq"], original["seq"]);
    assert!(edited["edited_at"].is_string());
    assert_eq!(
        bob.expect_event("message:edited").await["data"]["message"],
        edited
    );

    // Ann created the room by joining first, so she owns it: she may delete.
    let mine = ann.say("edits", "Ann's own").await;
    let mine = bob.persisted(&mine).await;
    assert_eq!(
        bob.refused("message:delete", json!({"room": "edits", "id": mine["id"]}))
            .await,
        "forbidden"
    );
    ann.ok("message:delete", json!({"room": "edits", "id": id}))
        .await;
    let deleted = bob.expect_event("message:deleted").await;
    assert_eq!(deleted["data"], json!({"room": "edits", "id": id}));

    let page = bob.ok("history:fetch", json!({"room": "edits"})).await;
    let gone = &page["messages"][0];
    assert_eq!(gone["id"], id);
    assert_eq!(gone["seq"], original["seq"]);
    assert_eq!(gone["text"], Value::Null);
    assert_eq!(gone["attachments"], json!([]));
    assert!(gone["deleted_at"].is_string());

    assert_eq!(
        bob.refused(
            "message:edit",
            json!({"room": "edits", "id": id, "text": "again"})
        )
        .await,
        "not_found"
    );
    assert_eq!(
        ann.refused("message:delete", json!({"room": "edits", "id": id}))
            .await,
        "not_found"
    );
    assert_eq!(
        bob.refused(
            "message:edit",
            json!({"room": "edits", "id": uuid::Uuid::new_v4(), "text": "x"})
        )
        .await,
        "not_found"
    );
    assert_eq!(
        bob.refused(
            "message:edit",
            json!({"room": "edits", "id": "nope", "text": "x"})
        )
        .await,
        "bad_request"
    );
    assert_eq!(
        bob.refused(
            "message:edit",
            json!({"room": "edits", "id": mine["id"], "text": ""})
        )
        .await,
        "bad_request"
    );
}
