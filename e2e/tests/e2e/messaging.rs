//! Rooms, sends, fan-out and history.

use e2e::{guest, http, seqs, Stack};
use serde_json::{json, Value};

#[tokio::test]
async fn two_users_in_a_room_exchange_messages() {
    let stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    let mut bob = stack.connect("Bob").await;
    assert_eq!(ann.ready["rooms"], json!([]), "a new user is in no room");
    assert_eq!(ann.ready["user"]["name"], "Ann");

    let joined = ann.join("lobby").await;
    assert_eq!(joined["room"], "lobby");
    let joined = bob.join("lobby").await;
    let names: Vec<&str> = joined["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"Bob"), "{joined}");
    let notice = ann.expect_event("room:joined").await;
    assert_eq!(
        notice["data"],
        json!({"room": "lobby", "user": {"id": bob.user.id, "name": "Bob", "avatar_url": null}})
    );

    // The sender is the token's user, whatever the frame claims.
    let ack = ann
        .ok(
            "message:send",
            json!({"room": "lobby", "text": "hello Bob", "sender": {"id": bob.user.id, "name": "Bob", "avatar_url": null}}),
        )
        .await;
    let temp_id = ack["temp_id"]
        .as_str()
        .expect("ack carries temp_id")
        .to_owned();
    let at_ann = ann.persisted(&temp_id).await;
    let at_bob = bob.persisted(&temp_id).await;
    assert_eq!(at_ann, at_bob, "both see the same message");
    assert_eq!(at_bob["text"], "hello Bob");
    assert_eq!(
        at_bob["sender"],
        json!({"id": ann.user.id, "name": "Ann", "avatar_url": null})
    );
    assert_eq!(at_bob["seq"], 1);
    assert_eq!(at_bob["room"], "lobby");
    assert_eq!(at_bob["kind"], "text");
    assert_eq!(at_bob["temp_id"], temp_id.as_str());
    assert!(at_bob["created_at"].as_str().unwrap().ends_with('Z'));

    let reply_temp = bob.say("lobby", "hi Ann").await;
    let reply = ann.persisted(&reply_temp).await;
    assert_eq!(reply["seq"], 2);
    assert_eq!(reply["sender"]["name"], "Bob");
}

#[tokio::test]
async fn a_frame_without_ref_gets_no_ack_but_is_sent() {
    let stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    ann.join("quiet").await;
    ann.send_text(
        json!({"type": "message:send", "data": {"room": "quiet", "text": "no ref"}}).to_string(),
    );
    let persisted = ann.expect_event("message:persisted").await;
    assert_eq!(persisted["data"]["message"]["text"], "no ref");
    ann.expect_no("ack", std::time::Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn messages_keep_kind_reply_attachments_client_id_and_unicode_exactly() {
    let stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    ann.join("media").await;
    let first = ann.say("media", "first").await;
    let first = ann.persisted(&first).await;
    let text = "héllo 👋🏽 שלום e\u{301} 𝔘 '; DROP TABLE messages; --";
    let attachments = json!([{"url": "https://example.com/cat.png", "name": "cat.png", "type": "image/png", "size": 9_007_199_254_740_992u64}]);
    let ack = ann
        .ok(
            "message:send",
            json!({"room": "media", "text": text, "kind": "image", "reply_to": first["id"],
                   "attachments": attachments, "client_id": "c-1"}),
        )
        .await;
    let m = ann.persisted(ack["temp_id"].as_str().unwrap()).await;
    assert_eq!(m["text"], text);
    assert_eq!(m["kind"], "image");
    assert_eq!(m["reply_to"], first["id"]);
    assert_eq!(m["attachments"], attachments);
    assert_eq!(m["client_id"], "c-1");
    let page = ann.ok("history:fetch", json!({"room": "media"})).await;
    assert_eq!(
        page["messages"][1], m,
        "history returns what was fanned out"
    );
}

#[tokio::test]
async fn a_message_crosses_two_gateways() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    ann.join("bridge").await;
    bob.join("bridge").await;
    let notice = ann.expect_event("room:joined").await;
    assert_eq!(notice["data"]["user"]["name"], "Bob");

    let t1 = ann.say("bridge", "from gateway one").await;
    assert_eq!(bob.persisted(&t1).await["text"], "from gateway one");
    let t2 = bob.say("bridge", "from gateway two").await;
    assert_eq!(ann.persisted(&t2).await["text"], "from gateway two");
    assert_eq!(
        bob.persisted(&t2).await["text"],
        "from gateway two",
        "the sender gets it too"
    );

    bob.ok("room:leave", json!({"room": "bridge"})).await;
    let left = ann.expect_event("room:left").await;
    assert_eq!(
        left["data"],
        json!({"room": "bridge", "user": {"id": bob.user.id, "name": "Bob", "avatar_url": null}})
    );
    let t3 = ann.say("bridge", "after Bob left").await;
    ann.persisted(&t3).await;
    bob.expect_no("message:persisted", std::time::Duration::from_millis(500))
        .await;
}

#[tokio::test]
async fn history_is_in_seq_order_over_websocket_and_rest() {
    let stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    ann.join("hist").await;
    let mut last = String::new();
    for i in 1..=30 {
        last = ann.say("hist", &format!("m{i}")).await;
    }
    ann.persisted(&last).await;

    let latest = ann
        .ok("history:fetch", json!({"room": "hist", "limit": 5}))
        .await;
    assert_eq!(seqs(&latest), vec![26, 27, 28, 29, 30]);
    assert_eq!(latest["messages"][4]["text"], "m30");
    let after = ann
        .ok(
            "history:fetch",
            json!({"room": "hist", "after": 10, "limit": 3}),
        )
        .await;
    assert_eq!(seqs(&after), vec![11, 12, 13]);
    let before = ann
        .ok(
            "history:fetch",
            json!({"room": "hist", "before": 10, "limit": 3}),
        )
        .await;
    assert_eq!(seqs(&before), vec![7, 8, 9]);
    let between = ann
        .ok(
            "history:fetch",
            json!({"room": "hist", "after": 3, "before": 6}),
        )
        .await;
    assert_eq!(seqs(&between), vec![4, 5]);
    let clamped = ann
        .ok("history:fetch", json!({"room": "hist", "limit": 0}))
        .await;
    assert_eq!(seqs(&clamped), vec![30], "limit 0 is clamped to 1");
    let default = ann.ok("history:fetch", json!({"room": "hist"})).await;
    assert_eq!(seqs(&default), (1..=30).collect::<Vec<_>>());

    let base = &stack.gateway().url;
    let rest = e2e::get_json(
        &format!("{base}/v1/rooms/hist/messages?after=28"),
        &ann.user.token,
    )
    .await;
    assert_eq!(seqs(&rest), vec![29, 30]);
    let big: Value = http()
        .get(format!(
            "{base}/v1/rooms/hist/messages?limit=1000&before=31"
        ))
        .bearer_auth(&ann.user.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        seqs(&big).len(),
        30,
        "limit is clamped to 100, the room has 30"
    );
}

#[tokio::test]
async fn rest_send_is_accepted_persisted_and_listed() {
    let stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    ann.join("rest").await;
    let bob = guest(&stack.gateway().url, Some("Bob")).await;
    let mut bob_ws = e2e::WsClient::connect(&stack.gateway().ws_url(), bob.clone()).await;
    bob_ws.join("rest").await;
    drop(bob_ws);
    // Ann hears of the join once it is persisted: REST checks membership
    // in PostgreSQL for users not connected to the gateway.
    ann.expect_event("room:joined").await;

    let resp = http()
        .post(format!("{}/v1/rooms/rest/messages", stack.gateway().url))
        .bearer_auth(&bob.token)
        .json(&json!({"text": "over http"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    let temp_id = body["temp_id"].as_str().expect("temp_id").to_owned();
    let m = ann.persisted(&temp_id).await;
    assert_eq!(m["sender"]["name"], "Bob");

    let rooms = e2e::get_json(
        &format!("{}/v1/rooms", stack.gateway().url),
        &ann.user.token,
    )
    .await;
    let room = &rooms["rooms"][0];
    assert_eq!(room["id"], "rest");
    assert_eq!(room["kind"], "group");
    assert_eq!(
        room["unread"], 1,
        "Bob's message is unread for Ann: {rooms}"
    );
    assert_eq!(room["last_message_at"], m["created_at"]);
}

#[tokio::test]
async fn a_reconnecting_user_gets_their_rooms_in_session_ready() {
    let stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    ann.join("b-room").await;
    ann.join("a-room").await;
    // Each room's join is persisted before its first message (rooms may sit
    // in different partitions, written independently).
    for room in ["a-room", "b-room"] {
        let t = ann.say(room, "hi").await;
        ann.persisted(&t).await;
    }
    let user = ann.user.clone();
    drop(ann);
    let again = e2e::WsClient::connect(&stack.gateway().ws_url(), user).await;
    assert_eq!(again.ready["rooms"], json!(["a-room", "b-room"]));
}

#[tokio::test]
async fn messages_name_members_and_each_member_sets_what_reaches_them() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    let mut cat = stack.connect_to(0, "Cat").await;
    ann.join("named").await;
    bob.join("named").await;

    let t = ann
        .ok(
            "message:send",
            json!({"room": "named", "text": "@Bob look", "mentions": [bob.user.id, bob.user.id]}),
        )
        .await["temp_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = bob.persisted(&t).await;
    assert_eq!(m["mentions"], json!([bob.user.id]), "each once");
    let plain = ann.say("named", "no one in particular").await;
    assert_eq!(bob.persisted(&plain).await["mentions"], json!([]));
    let many: Vec<String> = (0..51).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for (bad, why) in [
        (json!([cat.user.id]), "someone who is not a member"),
        (json!(many), "more than 50"),
        (json!(["not-a-uuid"]), "not a UUID"),
    ] {
        assert_eq!(
            ann.refused(
                "message:send",
                json!({"room": "named", "text": "x", "mentions": bad})
            )
            .await,
            "bad_request",
            "{why}"
        );
    }
    let page = ann.ok("history:fetch", json!({"room": "named"})).await;
    assert_eq!(page["messages"][0]["mentions"], json!([bob.user.id]));

    bob.ok(
        "room:notifications",
        json!({"room": "named", "level": "mentions"}),
    )
    .await;
    assert_eq!(
        bob.refused(
            "room:notifications",
            json!({"room": "named", "level": "loud"})
        )
        .await,
        "bad_request"
    );
    assert_eq!(
        cat.refused(
            "room:notifications",
            json!({"room": "named", "level": "none"})
        )
        .await,
        "not_a_member"
    );
    let level = |base: String, token: String| async move {
        let rooms = e2e::get_json(&format!("{base}/v1/rooms"), &token).await;
        rooms["rooms"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == "named").cloned())
            .map(|r| r["notifications"].as_str().unwrap_or_default().to_owned())
    };
    let (bob_base, bob_token) = (stack.gateways[1].url.clone(), bob.user.token.clone());
    e2e::eventually("Bob's level stored", || {
        let (b, t) = (bob_base.clone(), bob_token.clone());
        async move { (level(b, t).await.as_deref() == Some("mentions")).then_some(()) }
    })
    .await;
    assert_eq!(
        level(stack.gateways[0].url.clone(), ann.user.token.clone())
            .await
            .as_deref(),
        Some("all"),
        "the default"
    );
}

/// A connection reads its socket in small pieces (an idle one keeps only a
/// small buffer), so the longest text, 4,000 characters of two and three
/// bytes (10 KB), arrives in many reads: it must come out whole, stored
/// and fanned out.
#[tokio::test]
async fn the_longest_text_arrives_whole_though_read_in_pieces() {
    let stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    let mut bob = stack.connect("Bob").await;
    ann.join("long").await;
    bob.join("long").await;
    let text: String = "é€".repeat(2_000);
    let temp_id = ann.say("long", &text).await;
    let at_bob = bob.persisted(&temp_id).await;
    assert_eq!(at_bob["text"].as_str(), Some(text.as_str()));
    // The next frame on the same connection is read where the long one ended.
    let next = ann.say("long", "after").await;
    assert_eq!(bob.persisted(&next).await["text"], "after");
}
