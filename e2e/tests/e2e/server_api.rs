//! The server API, for the application's backend: an API key instead of a
//! token, no membership needed, effects on members on two gateways.

use std::time::Duration;

use e2e::{http, Stack, WsClient};
use serde_json::{json, Value};

const KEY: &str = "backend-key-1";

async fn call(
    method: reqwest::Method,
    url: String,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http().request(method, url);
    if let Some(k) = key {
        req = req.header("X-Api-Key", k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the server API answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_backend_reads_rooms_names_users_and_disconnects_them_with_its_key() {
    let stack = Stack::build(
        &e2e::nats_url(),
        2,
        1,
        &[("CHAT_API_KEYS", "other-key, backend-key-1")],
    )
    .await;
    let base = stack.gateways[1].url.clone();
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    ann.join("ops").await;
    bob.join("ops").await;
    let t = ann.say("ops", "status?").await;
    bob.persisted(&t).await;

    let history = format!("{base}/v1/server/rooms/ops/messages");
    for key in [None, Some("wrong"), Some("")] {
        let (status, body) = call(reqwest::Method::GET, history.clone(), key, None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthorized")),
            "{key:?}"
        );
    }
    let (status, page) = call(reqwest::Method::GET, history.clone(), Some(KEY), None).await;
    assert_eq!(status, 200);
    assert_eq!(e2e::texts(&page), ["status?"], "no membership needed");
    let (status, _) = call(
        reqwest::Method::GET,
        format!("{history}?limit=abc"),
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(status, 400);

    let presence = format!("{base}/v1/server/rooms/ops/presence");
    let online_ids = || async {
        let (_, body) = call(reqwest::Method::GET, presence.clone(), Some(KEY), None).await;
        let mut ids: Vec<String> = body["online"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|u| u["id"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    };
    let mut both = vec![ann.user.id.clone(), bob.user.id.clone()];
    both.sort();
    assert_eq!(online_ids().await, both, "online on either gateway");

    // A user nobody has seen is named; one who has is renamed, and the
    // members who share a room with them are told.
    let xia = uuid::Uuid::new_v4();
    let (status, body) = call(
        reqwest::Method::PUT,
        format!("{base}/v1/server/users/{xia}"),
        Some(KEY),
        Some(json!({"name": "Xia"})),
    )
    .await;
    assert_eq!((status, &body["user"]["name"]), (200, &json!("Xia")));
    ann.ok(
        "room:create",
        json!({"room": "with-xia", "kind": "group", "members": [xia]}),
    )
    .await;
    let joined = ann
        .find("Xia's join", |v| {
            v["type"] == "room:joined" && v["data"]["room"] == "with-xia"
        })
        .await;
    assert_eq!(joined["data"]["user"]["name"], "Xia", "{joined}");
    let (status, _) = call(
        reqwest::Method::PUT,
        format!("{base}/v1/server/users/{}", ann.user.id),
        Some(KEY),
        Some(json!({"name": "Ann (ops)", "avatar_url": "https://pics.example/a.png"})),
    )
    .await;
    assert_eq!(status, 200);
    let updated = bob.expect_event("user:updated").await;
    assert_eq!(updated["data"]["user"]["name"], "Ann (ops)");
    for (bad, why) in [
        (json!({"name": ""}), "an empty name"),
        (
            json!({"name": "A", "avatar_url": "ftp://x"}),
            "a picture that is not http(s)",
        ),
        (json!({}), "no name"),
    ] {
        let (status, body) = call(
            reqwest::Method::PUT,
            format!("{base}/v1/server/users/{xia}"),
            Some(KEY),
            Some(bad),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("bad_request")),
            "{why}"
        );
    }
    let (status, _) = call(
        reqwest::Method::PUT,
        format!("{base}/v1/server/users/not-a-uuid"),
        Some(KEY),
        Some(json!({"name": "A"})),
    )
    .await;
    assert_eq!(status, 400);

    // Every connection of a user, on every gateway, closes with 4003.
    let mut bob_too = WsClient::connect(&stack.gateways[0].ws_url(), bob.user.clone()).await;
    let (status, _) = call(
        reqwest::Method::POST,
        format!("{base}/v1/server/users/{}/disconnect", bob.user.id),
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(bob.closed().await, Some(4003));
    assert_eq!(bob_too.closed().await, Some(4003));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while online_ids().await != [ann.user.id.clone()] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Bob still online: {:?}",
            online_ids().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_backend_drives_rooms_members_and_system_messages_seen_on_two_gateways() {
    let stack = Stack::build(&e2e::nats_url(), 2, 1, &[("CHAT_API_KEYS", KEY)]).await;
    let base = stack.gateways[0].url.clone();
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    let mut cat = stack.connect_to(0, "Cat").await;
    let post = |path: &str, body: Value| {
        call(
            reqwest::Method::POST,
            format!("{base}{path}"),
            Some(KEY),
            Some(body),
        )
    };

    let (status, body) = post(
        "/v1/server/rooms",
        json!({"room": "team", "kind": "group", "members": [ann.user.id, bob.user.id]}),
    )
    .await;
    assert_eq!((status, &body["room"]), (201, &json!("team")));
    for c in [&mut ann, &mut bob] {
        c.find("team joined", |v| {
            v["type"] == "room:joined" && v["data"]["room"] == "team"
        })
        .await;
    }
    let (status, _) = call(
        reqwest::Method::PUT,
        format!("{base}/v1/server/rooms/team/members/{}", cat.user.id),
        Some(KEY),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(status, 200);
    cat.find("team joined", |v| {
        v["type"] == "room:joined" && v["data"]["room"] == "team"
    })
    .await;
    let role = cat.find("made admin", |v| v["type"] == "room:role").await;
    assert_eq!(role["data"]["role"], "admin");

    // A system message: no sender; and one on a member's behalf.
    let (status, ack) = post(
        "/v1/server/rooms/team/messages",
        json!({"text": "Welcome, team"}),
    )
    .await;
    assert_eq!(status, 202);
    let system = bob.persisted(ack["temp_id"].as_str().unwrap()).await;
    assert_eq!(
        (system["kind"].as_str(), &system["sender"]),
        (Some("system"), &Value::Null)
    );
    ann.persisted(ack["temp_id"].as_str().unwrap()).await;
    let (_, ack) = post(
        "/v1/server/rooms/team/messages",
        json!({"text": "on Ann's behalf", "sender": ann.user.id}),
    )
    .await;
    let behalf = bob.persisted(ack["temp_id"].as_str().unwrap()).await;
    assert_eq!(behalf["sender"]["id"], ann.user.id.as_str());
    assert_eq!(
        ann.refused(
            "message:send",
            json!({"room": "team", "text": "x", "kind": "system"})
        )
        .await,
        "bad_request",
        "only the backend sends system messages"
    );

    let (status, _) = call(
        reqwest::Method::DELETE,
        format!(
            "{base}/v1/server/rooms/team/messages/{}",
            system["id"].as_str().unwrap()
        ),
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(status, 200);
    for c in [&mut ann, &mut bob] {
        let d = c
            .find("the delete", |v| v["type"] == "message:deleted")
            .await;
        assert_eq!(d["data"]["id"], system["id"]);
    }

    // Taking a member out: everyone hears it, the removed one included.
    let (status, _) = call(
        reqwest::Method::DELETE,
        format!("{base}/v1/server/rooms/team/members/{}", bob.user.id),
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let bob_id = bob.user.id.clone();
    for c in [&mut ann, &mut bob] {
        let left = c.find("Bob out", |v| v["type"] == "room:left").await;
        assert_eq!(left["data"]["user"]["id"], bob_id.as_str());
    }
    assert_eq!(
        bob.refused(
            "message:send",
            json!({"room": "team", "text": "still here?"})
        )
        .await,
        "not_a_member"
    );

    // Rooms on a member's behalf, and direct rooms, keep their rules.
    let (status, _) = post(
        "/v1/server/rooms",
        json!({"room": "owned", "kind": "group", "members": [bob.user.id], "owner": ann.user.id}),
    )
    .await;
    assert_eq!(status, 201);
    ann.ok(
        "room:set_role",
        json!({"room": "owned", "user": bob.user.id, "role": "admin"}),
    )
    .await;
    let (status, _) = post(
        "/v1/server/rooms",
        json!({"room": "pair", "kind": "direct", "members": [ann.user.id, cat.user.id]}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = call(
        reqwest::Method::PUT,
        format!("{base}/v1/server/rooms/pair/members/{}", bob.user.id),
        Some(KEY),
        Some(json!({})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    for (path, body, code) in [
        ("/v1/server/rooms", json!({"kind": "nope"}), 400),
        (
            "/v1/server/rooms",
            json!({"room": "team", "kind": "group"}),
            403,
        ),
        ("/v1/server/rooms/team/messages", json!({"text": ""}), 400),
    ] {
        let (status, _) = post(path, body.clone()).await;
        assert_eq!(status, code, "{path} {body}");
    }
    let (status, _) = call(
        reqwest::Method::PUT,
        format!("{base}/v1/server/rooms/nowhere/members/{}", bob.user.id),
        Some(KEY),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 404);
}
