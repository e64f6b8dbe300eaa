//! Moderation: removals and bans count on every gateway and every path from
//! their ack, before any persister has written them; unbans, bans that end,
//! who may act on whom, and reports of messages reaching the application's
//! webhook.

use std::time::Duration;

use e2e::hooks::{Mode, Receiver, SECRET};
use e2e::{Stack, WsClient};
use serde_json::{json, Value};

fn about(room: &str, user: &WsClient) -> Value {
    json!({"room": room, "user": user.user.id})
}

/// `POST /v1/rooms/{room}/messages` as `who` on `base`: the status and the
/// error code, if any.
async fn rest_send(base: &str, who: &WsClient, room: &str, text: &str) -> (u16, Value) {
    let resp = e2e::http()
        .post(format!("{base}/v1/rooms/{room}/messages"))
        .bearer_auth(&who.user.token)
        .json(&json!({ "text": text }))
        .send()
        .await
        .expect("REST send");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["code"].clone())
}

/// `GET /v1/rooms/{room}/messages` as `who` on `base`: the status.
async fn rest_history(base: &str, who: &WsClient, room: &str) -> u16 {
    e2e::http()
        .get(format!("{base}/v1/rooms/{room}/messages"))
        .bearer_auth(&who.user.token)
        .send()
        .await
        .expect("REST history")
        .status()
        .as_u16()
}

async fn texts_in_db(stack: &Stack, room: &str) -> Vec<String> {
    let pool = stack.db.pool().await;
    sqlx::query_scalar(
        "SELECT text FROM messages WHERE room_id = $1 AND text IS NOT NULL ORDER BY seq",
    )
    .bind(room)
    .fetch_all(&pool)
    .await
    .expect("messages")
}

/// Every way `bob` could reach `room` is refused, on both gateways (`bob`
/// sits on gateway 1, `bob_here` on gateway 0), and `ann` cannot invite him.
async fn refused_everywhere(
    stack: &Stack,
    ann: &mut WsClient,
    bob: &mut WsClient,
    bob_here: &mut WsClient,
    room: &str,
) {
    for (who, c) in [("gateway 1", &mut *bob), ("gateway 0", &mut *bob_here)] {
        let send = c.send("message:send", json!({"room": room, "text": "still here?"}));
        let history = c.send("history:fetch", json!({"room": room}));
        let join = c.send("room:join", json!({ "room": room }));
        for (what, r, code) in [
            ("send", send, "not_a_member"),
            ("history", history, "not_a_member"),
            ("join", join, "forbidden"),
        ] {
            let reply = c.reply(&r).await;
            assert_eq!(reply["data"]["code"], code, "{what} on {who}: {reply}");
        }
    }
    for g in &stack.gateways {
        let (status, code) = rest_send(&g.url, bob, room, "over REST").await;
        assert_eq!((status, code), (403, json!("not_a_member")), "{}", g.url);
        assert_eq!(rest_history(&g.url, bob, room).await, 403, "{}", g.url);
    }
    let refused = ann.request("room:invite", about(room, bob)).await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    assert!(
        refused["data"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("banned"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_ban_refuses_the_user_on_every_gateway_and_path_from_its_ack_before_it_is_written() {
    let mut stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    let mut bob_here = WsClient::connect(&stack.gateways[0].ws_url(), bob.user.clone()).await;
    let mut cy = stack.connect_to(1, "Cy").await;
    ann.join("agora").await;
    bob.join("agora").await;
    cy.join("agora").await;
    let t = bob.say("agora", "before the ban").await;
    ann.persisted(&t).await;

    // Nothing is written while the ban is acked and acted on: every
    // refusal comes from the stream or from the gateways' memory.
    stack.persisters.remove(0).process.stop().await;
    let ban = ann.send("room:ban", about("agora", &bob));
    assert_eq!(ann.reply(&ban).await["type"], "ack");
    // Within a millisecond of the ack, on the other gateway, where Bob's
    // membership was in memory.
    let send = bob.send(
        "message:send",
        json!({"room": "agora", "text": "after the ban"}),
    );
    let reply = bob.reply(&send).await;
    assert_eq!(reply["data"]["code"], "not_a_member", "{reply}");
    refused_everywhere(&stack, &mut ann, &mut bob, &mut bob_here, "agora").await;
    // Cy, who stayed, still chats.
    let t = cy.say("agora", "cy stays").await;

    stack.add_persister().await;
    cy.persisted(&t).await;
    let left = bob.expect_event("room:left").await;
    assert_eq!(left["data"]["user"]["id"], bob.user.id.as_str());
    ann.find("Bob's leave", |v| {
        v["type"] == "room:left" && v["data"]["user"]["id"] == bob.user.id.as_str()
    })
    .await;
    assert_eq!(
        texts_in_db(&stack, "agora").await,
        ["before the ban", "cy stays"]
    );
    let pool = stack.db.pool().await;
    let (until, by): (Option<chrono::DateTime<chrono::Utc>>, uuid::Uuid) =
        sqlx::query_as("SELECT until, by_id FROM room_bans WHERE room_id = 'agora'")
            .fetch_one(&pool)
            .await
            .expect("the ban is written");
    assert_eq!((until, by.to_string()), (None, ann.user.id.clone()));
    // Written, it refuses the same.
    refused_everywhere(&stack, &mut ann, &mut bob, &mut bob_here, "agora").await;

    // An unban lets him back, by himself or by invitation.
    ann.ok("room:unban", about("agora", &bob)).await;
    bob.ok("room:join", json!({"room": "agora"})).await;
    let t = bob.say("agora", "back again").await;
    ann.persisted(&t).await;
    e2e::eventually("the unban is written", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM room_bans")
            .fetch_one(&pool)
            .await
            .unwrap();
        (n == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_ban_with_an_end_lapses_and_a_removal_lets_the_user_come_back() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    ann.join("plaza").await;
    bob.join("plaza").await;

    // A removal: out at once, everyone told, and free to come back.
    ann.ok("room:remove", about("plaza", &bob)).await;
    let send = bob.send("message:send", json!({"room": "plaza", "text": "hm"}));
    assert_eq!(bob.reply(&send).await["data"]["code"], "not_a_member");
    bob.expect_event("room:left").await;
    ann.find("Bob's removal", |v| v["type"] == "room:left")
        .await;
    bob.ok("room:join", json!({"room": "plaza"})).await;
    let t = bob.say("plaza", "I'm back").await;
    ann.persisted(&t).await;

    // A ban that ends in 3 s.
    let until = chrono::Utc::now() + chrono::Duration::seconds(3);
    let until = until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    ann.ok(
        "room:ban",
        json!({"room": "plaza", "user": bob.user.id, "until": until}),
    )
    .await;
    assert_eq!(
        bob.refused("room:join", json!({"room": "plaza"})).await,
        "forbidden"
    );
    bob.expect_event("room:left").await;
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    bob.ok("room:join", json!({"room": "plaza"})).await;
    let t = bob.say("plaza", "the ban ended").await;
    ann.persisted(&t).await;

    // An end in the past is no ban.
    assert_eq!(
        ann.refused(
            "room:ban",
            json!({"room": "plaza", "user": bob.user.id, "until": "2020-01-01T00:00:00Z"})
        )
        .await,
        "bad_request"
    );
}

#[tokio::test]
async fn only_owners_and_admins_moderate_and_nobody_touches_the_owner() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    let mut cy = stack.connect_to(1, "Cy").await;
    let mut dee = stack.connect_to(0, "Dee").await;
    let outsider = stack.connect_to(0, "Eve").await;
    for c in [&mut ann, &mut bob, &mut cy, &mut dee] {
        c.join("hall").await;
    }
    for admin in [bob.user.id.clone(), dee.user.id.clone()] {
        let made = json!({"room": "hall", "user": admin, "role": "admin"});
        ann.ok("room:set_role", made).await;
    }

    // A member may not; an admin may not touch the owner or another admin.
    assert_eq!(
        cy.refused("room:remove", about("hall", &dee)).await,
        "forbidden"
    );
    assert_eq!(
        cy.refused("room:ban", about("hall", &dee)).await,
        "forbidden"
    );
    assert_eq!(
        cy.refused("room:unban", about("hall", &dee)).await,
        "forbidden"
    );
    assert_eq!(
        bob.refused("room:ban", about("hall", &ann)).await,
        "forbidden"
    );
    assert_eq!(
        bob.refused("room:remove", about("hall", &dee)).await,
        "forbidden"
    );
    assert_eq!(
        ann.refused("room:ban", about("hall", &ann)).await,
        "bad_request"
    );
    assert_eq!(
        outsider_refused(&stack, &outsider, about("hall", &cy)).await,
        "not_a_member"
    );
    // Removing one who is not a member: nothing to remove.
    assert_eq!(
        bob.refused("room:remove", about("hall", &outsider)).await,
        "not_found"
    );
    assert_eq!(
        bob.refused("room:ban", json!({"room": "hall", "user": "not-a-uuid"}))
            .await,
        "bad_request"
    );
    // An admin bans a member; the owner bans an admin, and one who never
    // came in.
    bob.ok("room:ban", about("hall", &cy)).await;
    ann.ok("room:ban", about("hall", &dee)).await;
    ann.ok("room:ban", about("hall", &outsider)).await;
    let mut eve = WsClient::connect(&stack.gateways[1].ws_url(), outsider.user.clone()).await;
    assert_eq!(
        eve.refused("room:join", json!({"room": "hall"})).await,
        "forbidden"
    );
    // Nothing was changed by the refusals: the others are still in.
    let t = ann.say("hall", "order restored").await;
    bob.persisted(&t).await;
}

/// A request by a user who is not in the room, on a fresh connection.
async fn outsider_refused(stack: &Stack, who: &WsClient, data: Value) -> String {
    let mut c = WsClient::connect(&stack.gateways[1].ws_url(), who.user.clone()).await;
    c.refused("room:remove", data).await
}

#[tokio::test]
async fn a_flagged_message_reaches_the_webhook_with_its_reporter_and_reason() {
    let receiver = Receiver::start(Mode::Take).await;
    let stack = Stack::build(
        &e2e::nats_url(),
        2,
        1,
        &[
            ("CHAT_WEBHOOK_URL", receiver.url.as_str()),
            ("CHAT_WEBHOOK_SECRET", SECRET),
        ],
    )
    .await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    let mut eve = stack.connect_to(1, "Eve").await;
    ann.join("forum").await;
    bob.join("forum").await;
    eve.join("elsewhere").await;
    let t = ann.say("forum", "buy cheap watches").await;
    let id = ann.persisted(&t).await["id"].clone();
    bob.persisted(&t).await;

    bob.ok(
        "message:flag",
        json!({"room": "forum", "id": id, "reason": "spam"}),
    )
    .await;
    receiver
        .until(Duration::from_secs(20), "the report", |events| {
            events.iter().any(|e| e["type"] == "message.flagged")
        })
        .await;
    let flagged = receiver.of_type("message.flagged");
    assert_eq!(flagged.len(), 1, "{flagged:#?}");
    let data = &flagged[0]["data"];
    assert_eq!(data["message"]["id"], id);
    assert_eq!(data["message"]["text"], "buy cheap watches");
    assert_eq!(data["by"]["id"], bob.user.id.as_str());
    assert_eq!(data["reason"], "spam");
    assert!(receiver.bad().is_empty(), "{:?}", receiver.bad());

    // Refusals: not a member, no such message, a reason too long.
    let report = json!({"room": "forum", "id": id});
    assert_eq!(eve.refused("message:flag", report).await, "not_a_member");
    let unknown = json!({"room": "forum", "id": uuid::Uuid::new_v4()});
    assert_eq!(bob.refused("message:flag", unknown).await, "not_found");
    let long = json!({"room": "forum", "id": id, "reason": "x".repeat(501)});
    assert_eq!(bob.refused("message:flag", long).await, "bad_request");
}
