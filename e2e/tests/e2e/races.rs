//! Membership decided within milliseconds of the ack, before any persister
//! has written it, on one gateway and across two: a change the persister
//! would refuse is never acked and never grants access anywhere.

use std::time::Duration;

use e2e::{Stack, WsClient};
use serde_json::json;

/// A second connection of the same user, on gateway `i`.
async fn again(stack: &Stack, i: usize, who: &WsClient) -> WsClient {
    WsClient::connect(&stack.gateways[i].ws_url(), who.user.clone()).await
}

async fn members_in_db(stack: &Stack, room: &str) -> Vec<String> {
    let pool = stack.db.pool().await;
    let mut ids: Vec<String> =
        sqlx::query_scalar::<_, uuid::Uuid>("SELECT user_id FROM room_members WHERE room_id = $1")
            .bind(room)
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.to_string())
            .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_direct_room_refuses_a_third_member_invited_right_after_its_creation() {
    let mut stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut ann_there = again(&stack, 1, &ann).await;
    let bob = stack.connect_to(1, "Bob").await;
    let mut cat = stack.connect_to(1, "Cat").await;
    let mut cat_here = again(&stack, 0, &cat).await;

    // Nothing is written while it happens: every answer comes from the
    // stream.
    stack.persisters.remove(0).process.stop().await;
    let create = ann.send(
        "room:create",
        json!({"room": "dm", "kind": "direct", "members": [bob.user.id]}),
    );
    let invite = ann.send("room:invite", json!({"room": "dm", "user": cat.user.id}));
    assert_eq!(ann.reply(&create).await["type"], "ack");
    let refused = ann.reply(&invite).await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    assert_eq!(
        ann_there
            .refused("room:invite", json!({"room": "dm", "user": cat.user.id}))
            .await,
        "forbidden",
        "the other gateway decides the same"
    );
    for c in [&mut cat, &mut cat_here] {
        assert_eq!(
            c.refused("history:fetch", json!({"room": "dm"})).await,
            "not_a_member"
        );
        assert_eq!(
            c.refused("message:send", json!({"room": "dm", "text": "let me in"}))
                .await,
            "not_a_member"
        );
        assert_eq!(
            c.refused("room:join", json!({"room": "dm"})).await,
            "forbidden"
        );
    }

    stack.add_persister().await;
    let t = ann.say("dm", "just us").await;
    ann.persisted(&t).await;
    let mut expected = vec![ann.user.id.clone(), bob.user.id.clone()];
    expected.sort();
    assert_eq!(members_in_db(&stack, "dm").await, expected);
    assert_eq!(
        cat.refused("history:fetch", json!({"room": "dm"})).await,
        "not_a_member"
    );
    cat.expect_no("message:persisted", Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn of_two_creations_of_one_room_at_once_only_the_first_stored_counts() {
    let mut stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    let mut cat = stack.connect_to(1, "Cat").await;
    let mut dan = stack.connect_to(0, "Dan").await;
    stack.persisters.remove(0).process.stop().await;

    // Ann and Bob each create "same" with a different member, at once.
    let a = ann.send(
        "room:create",
        json!({"room": "same", "kind": "group", "members": [cat.user.id]}),
    );
    let b = bob.send(
        "room:create",
        json!({"room": "same", "kind": "group", "members": [dan.user.id]}),
    );
    let (a, b) = (ann.reply(&a).await, bob.reply(&b).await);
    let acks = [&a, &b].iter().filter(|r| r["type"] == "ack").count();
    assert_eq!(acks, 1, "exactly one creation wins: {a} / {b}");
    let (winner, member, loser, other) = if a["type"] == "ack" {
        (&mut ann, &mut cat, &mut bob, &mut dan)
    } else {
        (&mut bob, &mut dan, &mut ann, &mut cat)
    };
    let loser_reply = if a["type"] == "ack" { &b } else { &a };
    assert_eq!(loser_reply["data"]["code"], "forbidden");
    // The winner's member is in (the ack), before anything is written.
    member.say("same", "I was invited").await;
    winner.ok("history:fetch", json!({"room": "same"})).await;
    for c in [loser, other] {
        assert_eq!(
            c.refused("message:send", json!({"room": "same", "text": "me too?"}))
                .await,
            "not_a_member",
            "the losing creation's invitation granted access"
        );
    }

    // Two users joining a new public room at once: one owns it, both are in.
    let mut eve = stack.connect_to(0, "Eve").await;
    let mut fay = stack.connect_to(1, "Fay").await;
    let e = eve.send("room:join", json!({"room": "open"}));
    let f = fay.send("room:join", json!({"room": "open"}));
    assert_eq!(eve.reply(&e).await["type"], "ack");
    assert_eq!(fay.reply(&f).await["type"], "ack");
    stack.add_persister().await;
    let t = fay.say("open", "both in").await;
    eve.persisted(&t).await;
    let pool = stack.db.pool().await;
    let owners: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM room_members WHERE room_id = 'open' AND role = 'owner'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(owners, 1);
    assert_eq!(members_in_db(&stack, "open").await.len(), 2);
}

fn ready_rooms(c: &WsClient) -> Vec<String> {
    let mut rooms: Vec<String> = c.ready["rooms"]
        .as_array()
        .expect("session:ready lists rooms")
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    rooms.sort();
    rooms
}

#[tokio::test]
async fn session_ready_lists_every_acked_membership_that_is_not_written_yet() {
    let mut stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    ann.join("kept").await;
    bob.join("kept").await;
    bob.join("left").await;
    let t = bob.say("left", "written").await;
    bob.persisted(&t).await;
    let bob_user = bob.user.clone();
    drop(bob);

    stack.persisters.remove(0).process.stop().await;
    for room in ["g1", "g2", "g3"] {
        ann.ok(
            "room:create",
            json!({"room": room, "kind": "group", "members": [bob_user.id]}),
        )
        .await;
    }
    ann.ok(
        "room:create",
        json!({"room": "dm", "kind": "direct", "members": [bob_user.id]}),
    )
    .await;
    ann.ok("room:create", json!({"room": "later", "kind": "group"}))
        .await;
    ann.ok("room:invite", json!({"room": "later", "user": bob_user.id}))
        .await;
    // Bob leaves "left" from the other gateway; it is not written either.
    let mut bob_rest = WsClient::connect(&stack.gateways[0].ws_url(), bob_user.clone()).await;
    bob_rest.ok("room:leave", json!({"room": "left"})).await;
    drop(bob_rest);

    let expected = ["dm", "g1", "g2", "g3", "kept", "later"];
    for gateway in [0, 1] {
        let bob = WsClient::connect(&stack.gateways[gateway].ws_url(), bob_user.clone()).await;
        assert_eq!(ready_rooms(&bob), expected, "on gateway {gateway}");
    }
    stack.add_persister().await;
    let t = ann.say("later", "written now").await;
    ann.persisted(&t).await;
    let bob = WsClient::connect(&stack.gateways[1].ws_url(), bob_user).await;
    assert_eq!(ready_rooms(&bob), expected, "once written");
}
