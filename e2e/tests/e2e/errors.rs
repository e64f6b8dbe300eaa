//! Every error code this part of the contract can produce, each changing
//! nothing and leaving the connection usable.

use std::time::Duration;

use e2e::{http, ws, Stack};
use serde_json::{json, Value};

/// The next `error` frame (frames without a ref get one without a ref).
async fn next_error(c: &mut e2e::WsClient) -> Value {
    c.expect_event("error").await["data"].clone()
}

#[tokio::test]
async fn bad_frames_get_bad_request_or_unknown_type_and_the_connection_stays_open() {
    let stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    ann.join("errs").await;

    for bad in [
        "not json",
        "[1,2,3]",
        "42",
        r#"{"ref": "x"}"#,
        r#"{"type": 7, "data": {}}"#,
        &format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
    ] {
        ann.send_text(bad);
        let e = next_error(&mut ann).await;
        assert_eq!(e["code"], "bad_request", "{bad:.40}: {e}");
    }
    ann.send_binary(vec![1, 2, 3]);
    assert_eq!(
        next_error(&mut ann).await["code"],
        "bad_request",
        "binary frame"
    );
    // A frame whose `ref` can be read gets it back, whatever else is wrong.
    for (i, bad) in [
        r#"{"type": 7, "ref": "t0", "data": {}}"#,
        r#"{"type": null, "ref": "t1", "data": {}}"#,
        r#"{"type": ["room:join"], "ref": "t2", "data": {}}"#,
        r#"{"ref": "t3", "data": {}}"#,
        r#"{"type": "room:join", "ref": "t4", "data": 5}"#,
    ]
    .iter()
    .enumerate()
    {
        ann.send_text(*bad);
        let reply = ann.reply(&format!("t{i}")).await;
        assert_eq!(reply["type"], "error", "{bad}");
        assert_eq!(reply["data"]["code"], "bad_request", "{bad}");
    }
    ann.send_text(r#"{"type": "room:join", "ref": 7, "data": {"room": "errs"}}"#);
    let e = next_error(&mut ann).await;
    assert_eq!(e["code"], "bad_request", "a ref that is not a string: {e}");

    assert_eq!(ann.refused("message:fly", json!({})).await, "unknown_type");
    assert_eq!(
        ann.refused("message:send", json!({"room": "errs"})).await,
        "bad_request",
        "no text"
    );
    assert_eq!(
        ann.refused("message:send", json!({"room": "errs", "text": 5}))
            .await,
        "bad_request"
    );
    assert_eq!(
        ann.refused("message:send", json!("not an object")).await,
        "bad_request"
    );
    // An array is not an object either, even one serde could read by
    // position.
    assert_eq!(
        ann.refused("room:join", json!(["errs"])).await,
        "bad_request"
    );
    assert_eq!(
        ann.refused("message:send", json!({"room": "errs", "text": ""}))
            .await,
        "bad_request"
    );
    assert_eq!(
        ann.refused("message:send", json!({"room": "errs", "text": "a\u{0}b"}))
            .await,
        "bad_request"
    );
    assert_eq!(
        ann.refused(
            "message:send",
            json!({"room": "errs", "text": "x", "kind": "video"})
        )
        .await,
        "bad_request"
    );
    assert_eq!(
        ann.refused(
            "message:send",
            json!({"room": "errs", "text": "x", "reply_to": "not-a-uuid"})
        )
        .await,
        "bad_request"
    );
    assert_eq!(
        ann.refused("message:send", json!({"room": "errs", "text": "x", "attachments": [{"url": "u", "name": "n", "type": "nomime", "size": 1}]})).await,
        "bad_request"
    );
    assert_eq!(
        ann.refused(
            "message:send",
            json!({"room": "errs", "text": "x", "client_id": "c".repeat(65)})
        )
        .await,
        "bad_request"
    );
    for room in [
        "a.b",
        "lobby.>",
        "*",
        "with space",
        "",
        &"r".repeat(65),
        "émoji",
    ] {
        assert_eq!(
            ann.refused("room:join", json!({"room": room})).await,
            "bad_request",
            "room {room:?}"
        );
        assert_eq!(
            ann.refused("message:send", json!({"room": room, "text": "x"}))
                .await,
            "bad_request",
            "room {room:?}"
        );
    }
    let long_ref = "r".repeat(65);
    ann.send_text(
        json!({"type": "room:join", "ref": long_ref, "data": {"room": "errs"}}).to_string(),
    );
    assert_eq!(ann.reply(&long_ref).await["data"]["code"], "bad_request");

    assert_eq!(
        ann.refused(
            "message:send",
            json!({"room": "errs", "text": "a".repeat(4_001)})
        )
        .await,
        "too_large"
    );
    let big = json!({"type": "message:send", "ref": "big", "data": {"room": "errs", "text": "x", "pad": "p".repeat(70_000)}});
    ann.send_text(big.to_string());
    assert_eq!(ann.reply("big").await["data"]["code"], "too_large");

    // Still open, and nothing of the above was stored.
    let t = ann.say("errs", "still here").await;
    let m = ann.persisted(&t).await;
    assert_eq!(m["seq"], 1, "no refused send took a seq");
}

#[tokio::test]
async fn a_frame_too_big_to_read_closes_with_1009() {
    let stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    ann.send_text("x".repeat(2 * 1024 * 1024));
    assert_eq!(ann.closed().await, Some(1009));
}

#[tokio::test]
async fn acting_in_a_room_one_is_not_in_gets_not_a_member() {
    let stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    let mut bob = stack.connect("Bob").await;
    ann.join("club").await;
    for room in ["club", "no-such-room"] {
        assert_eq!(
            bob.refused("message:send", json!({"room": room, "text": "let me in"}))
                .await,
            "not_a_member"
        );
        assert_eq!(
            bob.refused("history:fetch", json!({"room": room})).await,
            "not_a_member"
        );
        assert_eq!(
            bob.refused("room:leave", json!({"room": room})).await,
            "not_a_member"
        );
    }
    let resp = http()
        .get(format!("{}/v1/rooms/club/messages", stack.gateway().url))
        .bearer_auth(&bob.user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "not_a_member");
    ann.expect_no("message:persisted", Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn a_reply_to_an_unknown_message_gets_not_found() {
    let stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    ann.join("one").await;
    ann.join("two").await;
    let t = ann.say("two", "in room two").await;
    let other = ann.persisted(&t).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        ann.refused(
            "message:send",
            json!({"room": "one", "text": "re", "reply_to": unknown})
        )
        .await,
        "not_found"
    );
    assert_eq!(
        ann.refused(
            "message:send",
            json!({"room": "one", "text": "re", "reply_to": other["id"]})
        )
        .await,
        "not_found",
        "a message of another room"
    );
    let resp = http()
        .get(format!("{}/v1/nothing", stack.gateway().url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "not_found");
}

#[tokio::test]
async fn a_flood_gets_rate_limited_and_stores_nothing_beyond_the_limit() {
    let stack = Stack::build(
        &e2e::nats_url(),
        1,
        1,
        &[("GATEWAY_RATE_PER_S", "5"), ("GATEWAY_RATE_BURST", "10")],
    )
    .await;
    let mut ann = stack.connect("Ann").await;
    let mut bob = stack.connect("Bob").await;
    ann.join("flood").await;
    bob.join("flood").await;
    let refs: Vec<String> = (0..40)
        .map(|i| {
            ann.send(
                "message:send",
                json!({"room": "flood", "text": format!("f{i}")}),
            )
        })
        .collect();
    let mut acked = 0;
    let mut limited = 0;
    for r in &refs {
        let reply = ann.reply(r).await;
        match (reply["type"].as_str(), reply["data"]["code"].as_str()) {
            (Some("ack"), _) => acked += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            other => panic!("unexpected reply {other:?}: {reply}"),
        }
    }
    assert!(limited >= 25, "acked {acked}, limited {limited}");
    assert_eq!(acked + limited, 40);
    // Bob is not limited by Ann's flood.
    let t = bob.say("flood", "calm").await;
    bob.persisted(&t).await;
    let pool = stack.db.pool().await;
    let stored: i64 = e2e::eventually("Ann's acked messages", || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE text LIKE 'f%'")
                .fetch_one(&pool)
                .await
                .ok()?;
            (n == acked).then_some(n)
        }
    })
    .await;
    assert_eq!(stored, acked, "exactly the acked sends are stored");
}

#[tokio::test]
async fn bad_tokens_get_401_on_rest_and_on_the_websocket_upgrade() {
    let stack = Stack::start().await;
    let base = &stack.gateway().url;
    let now = chrono::Utc::now().timestamp();
    let id = uuid::Uuid::new_v4();
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": id.to_string(), "name": "x", "exp": now + 60}),
        &jsonwebtoken::EncodingKey::from_secret(b"not the secret"),
    )
    .unwrap();
    let b64 = |s: &str| {
        use std::fmt::Write;
        // base64url without padding, enough for a forged header and body.
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for c in s.as_bytes().chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..=c.len() {
                let _ = write!(out, "{}", T[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    };
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&json!({"sub": id.to_string(), "name": "x", "exp": now + 60}).to_string())
    );
    let cases = [
        ("missing", None),
        ("malformed", Some("not-a-jwt".to_owned())),
        ("wrong key", Some(wrong_key)),
        ("expired", Some(ws::token(id, "x", now - 60))),
        ("alg none", Some(alg_none)),
        ("non-uuid sub", Some(ws::token("bob", "x", now + 60))),
    ];
    for (what, token) in &cases {
        let mut req = http().get(format!("{base}/v1/rooms"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{what}");
        assert_eq!(
            resp.json::<Value>().await.unwrap()["code"],
            "unauthorized",
            "{what}"
        );

        let url = match token {
            Some(t) => format!("{}?token={t}", stack.gateway().ws_url()),
            None => stack.gateway().ws_url(),
        };
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401, "websocket {what}");
            }
            other => panic!(
                "websocket with {what} token was not refused with 401: {:?}",
                other.map(|_| ())
            ),
        }
    }
    // The REST send refuses too, and stores nothing.
    let resp = http()
        .post(format!("{base}/v1/rooms/lobby/messages"))
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn rest_bodies_that_are_not_json_or_too_big_get_json_errors() {
    let stack = Stack::start().await;
    let base = &stack.gateway().url;
    let g = e2e::guest(base, None).await;
    assert!(
        g.name.split(' ').count() == 3,
        "a friendly random name: {}",
        g.name
    );

    for bad in ["{nope", "[]", "[\"Ann\"]", "null"] {
        let resp = http()
            .post(format!("{base}/v1/auth/guest"))
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        assert_eq!(resp.json::<Value>().await.unwrap()["code"], "bad_request");
    }
    let resp = http()
        .post(format!("{base}/v1/auth/guest"))
        .json(&json!({"name": "   "}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "blank name");
    let resp = http()
        .post(format!("{base}/v1/auth/guest"))
        .json(&json!({"name": "n".repeat(65)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "long name");
    let resp = http()
        .post(format!("{base}/v1/auth/guest"))
        .json(&json!({"name": "  Trimmed  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap()["user"]["name"],
        "Trimmed"
    );

    let resp = http()
        .post(format!("{base}/v1/rooms/lobby/messages"))
        .bearer_auth(&g.token)
        .body("x".repeat(100_000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "too_large");
    // Past warp's own limits too, with or without a declared length: the
    // answer is a 413, never a reset connection.
    for size in [2 << 20, 64 << 20] {
        let resp = http()
            .post(format!("{base}/v1/rooms/lobby/messages"))
            .bearer_auth(&g.token)
            .body(vec![b'x'; size])
            .send()
            .await
            .unwrap_or_else(|e| panic!("a {size}-byte body: {e}"));
        assert_eq!(resp.status(), 413, "{size} bytes");
        assert_eq!(resp.json::<Value>().await.unwrap()["code"], "too_large");
        let chunks = futures::stream::iter(
            (0..size / 65_536).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 65_536])),
        );
        let resp = http()
            .post(format!("{base}/v1/auth/guest"))
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap_or_else(|e| panic!("a chunked {size}-byte body: {e}"));
        assert_eq!(resp.status(), 413, "chunked, {size} bytes");
        assert_eq!(resp.json::<Value>().await.unwrap()["code"], "too_large");
    }
    let resp = http()
        .post(format!("{base}/v1/rooms/bad.room/messages"))
        .bearer_auth(&g.token)
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http()
        .get(format!("{base}/v1/rooms/lobby/messages?limit=abc"))
        .bearer_auth(&g.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "bad_request");
}

#[tokio::test]
async fn a_gateway_at_its_connection_limit_refuses_new_websockets_with_503() {
    let stack = Stack::build(&e2e::nats_url(), 1, 1, &[("GATEWAY_MAX_CONNECTIONS", "2")]).await;
    let first = stack.connect("One").await;
    let _second = stack.connect("Two").await;
    let g = e2e::guest(&stack.gateway().url, Some("Three")).await;
    let url = format!("{}?token={}", stack.gateway().ws_url(), g.token);
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!(
            "a third connection was not refused: {:?}",
            other.map(|_| ())
        ),
    }
    drop(first);
    e2e::eventually("a freed slot", || {
        let url = url.clone();
        async move {
            tokio_tungstenite::connect_async(&url)
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
}
