//! Presence across gateways.

use std::time::{Duration, Instant};

use e2e::{Stack, WsClient};
use serde_json::Value;

fn about(v: &Value, name: &str) -> bool {
    v["data"]["user"]["name"] == name
}

#[tokio::test]
async fn a_user_is_online_from_their_first_connection_to_their_last() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let bob = e2e::guest(&stack.gateways[1].url, Some("Bob")).await;
    let mut tab1 = WsClient::connect(&stack.gateways[1].ws_url(), bob.clone()).await;
    ann.join("hangout").await;
    tab1.join("hangout").await;
    ann.expect_event("room:joined").await;

    // A second tab on the other gateway, then the first closes: still online.
    let mut tab2 = WsClient::connect(&stack.gateways[0].ws_url(), bob.clone()).await;
    let greeting = tab2
        .find("Ann online", |v| {
            v["type"] == "presence:online" && about(v, "Ann")
        })
        .await;
    assert_eq!(
        greeting["data"]["user"]["id"],
        ann.user.id.as_str(),
        "a new tab learns who is online"
    );
    drop(tab1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    ann.expect_no("presence:offline", Duration::from_millis(100))
        .await;

    // The last tab closes: offline within 10 s.
    let closed = Instant::now();
    drop(tab2);
    let off = ann
        .find("Bob offline", |v| {
            v["type"] == "presence:offline" && about(v, "Bob")
        })
        .await;
    assert_eq!(off["data"]["user"]["id"], bob.id.as_str());
    assert!(
        closed.elapsed() < Duration::from_secs(10),
        "{:?}",
        closed.elapsed()
    );

    // And online again when he comes back, on either gateway.
    let _tab3 = WsClient::connect(&stack.gateways[1].ws_url(), bob.clone()).await;
    ann.find("Bob online", |v| {
        v["type"] == "presence:online" && about(v, "Bob")
    })
    .await;
}

#[tokio::test]
async fn members_learn_that_a_user_who_joins_their_room_is_online() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut cat = stack.connect_to(1, "Cat").await;
    ann.join("porch").await;
    cat.join("porch").await;
    // Bob connects sharing no room with anyone, then joins theirs.
    let mut bob = stack.connect_to(1, "Bob").await;
    bob.join("porch").await;
    for member in [&mut ann, &mut cat] {
        member
            .find("Bob online", |v| {
                v["type"] == "presence:online" && about(v, "Bob")
            })
            .await;
    }
}

#[tokio::test]
async fn users_of_a_killed_gateway_go_offline_within_30_seconds() {
    let mut stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    ann.join("fragile").await;
    bob.join("fragile").await;
    ann.expect_event("room:joined").await;
    // Let a heartbeat carry Bob's room to Ann's gateway.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let killed = Instant::now();
    stack.gateways.remove(1).process.kill().await;
    ann.find_within(
        Duration::from_secs(30),
        "Bob offline after his gateway died",
        |v| v["type"] == "presence:offline" && about(v, "Bob"),
    )
    .await;
    assert!(killed.elapsed() < Duration::from_secs(30));
}
