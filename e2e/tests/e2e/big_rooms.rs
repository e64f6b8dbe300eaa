//! Big rooms (over 100 members): a join, a leave or a connection there
//! costs a frame for the member, not one for every member. Messages reach
//! everyone as in any room.

use std::time::Duration;

use e2e::Stack;
use serde_json::json;

#[tokio::test]
async fn a_big_room_tells_joins_leaves_and_presence_to_nobody_and_lists_only_its_first_members() {
    let stack = Stack::build(&e2e::nats_url(), 2, 1, &[]).await;
    let mut ann = stack.connect_to(0, "Ann").await;
    // Ann and 100 members named by id: 101, one over the line.
    let crowd: Vec<String> = (0..100).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    ann.ok(
        "room:create",
        json!({"room": "hall", "kind": "group", "public": true, "members": crowd}),
    )
    .await;
    let t = ann.say("hall", "welcome").await;
    ann.persisted(&t).await;

    let mut bob = stack.connect_to(1, "Bob").await;
    let ack = bob.ok("room:join", json!({"room": "hall"})).await;
    assert_eq!(ack["members_truncated"], true, "{ack}");
    let listed = ack["members"].as_array().unwrap();
    assert_eq!(listed.len(), 100, "the first 100 members");
    assert_eq!(listed[0]["id"], ann.user.id.as_str(), "the owner first");

    // Messages go both ways, on both gateways.
    let t = bob.say("hall", "hello hall").await;
    ann.persisted(&t).await;
    let t = ann.say("hall", "hi Bob").await;
    bob.persisted(&t).await;
    // Nobody heard of Bob's join, nor that he is online (the room's
    // creation told its joins while it was small).
    let about_bob = |kind: &'static str, bob: String| {
        move |v: &serde_json::Value| v["type"] == kind && v["data"]["user"]["id"] == bob.as_str()
    };
    let bob_id = bob.user.id.clone();
    let wait = Duration::from_millis(500);
    ann.expect_none("Bob's join", wait, about_bob("room:joined", bob_id.clone()))
        .await;
    ann.expect_none(
        "Bob online",
        wait,
        about_bob("presence:online", bob_id.clone()),
    )
    .await;
    bob.expect_no("presence:online", Duration::from_millis(100))
        .await;

    // A leave is told to nobody, and takes effect on every gateway.
    bob.ok("room:leave", json!({"room": "hall"})).await;
    let t = ann.say("hall", "after Bob").await;
    ann.persisted(&t).await;
    ann.expect_none("Bob's leave", wait, about_bob("room:left", bob_id.clone()))
        .await;
    let refused = bob
        .request(
            "message:send",
            json!({"room": "hall", "text": "still here?"}),
        )
        .await;
    assert_eq!(refused["data"]["code"], "not_a_member", "{refused}");

    // A small room tells joins and presence as before.
    ann.join("nook").await;
    bob.join("nook").await;
    ann.find("Bob's join", about_bob("room:joined", bob_id.clone()))
        .await;
    ann.find("Bob online", |v| {
        v["type"] == "presence:online" && v["data"]["user"]["id"] == bob.user.id.as_str()
    })
    .await;
}
