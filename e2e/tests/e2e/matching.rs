//! Random 1:1 matching across gateways.

use std::time::Duration;

use e2e::{Stack, WsClient};
use serde_json::{json, Value};

async fn found(c: &mut WsClient) -> Value {
    c.expect_event("match:found").await["data"].clone()
}

#[tokio::test]
async fn two_users_on_different_gateways_are_matched_into_a_direct_room() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    ann.ok("match:random", json!({})).await;
    ann.expect_no("match:found", Duration::from_millis(300))
        .await;
    bob.ok("match:random", json!({})).await;
    let a = found(&mut ann).await;
    let b = found(&mut bob).await;
    assert_eq!(a["room"], b["room"]);
    assert_eq!(
        a["peer"],
        json!({"id": bob.user.id, "name": "Bob", "avatar_url": null})
    );
    assert_eq!(
        b["peer"],
        json!({"id": ann.user.id, "name": "Ann", "avatar_url": null})
    );
    let room = a["room"].as_str().unwrap().to_owned();
    // Ann was added to the room: room:joined, then its events from then on.
    assert_eq!(
        ann.expect_event("room:joined").await["data"]["room"],
        room.as_str()
    );
    let t = bob.say(&room, "hello stranger").await;
    assert_eq!(ann.persisted(&t).await["text"], "hello stranger");
    let t = ann.say(&room, "hi").await;
    assert_eq!(bob.persisted(&t).await["text"], "hi");
    let mut eve = stack.connect_to(0, "Eve").await;
    assert_eq!(
        eve.refused("room:join", json!({"room": room})).await,
        "forbidden"
    );
}

#[tokio::test]
async fn a_user_is_never_matched_with_themselves_and_cancel_or_disconnect_leaves_the_pool() {
    let stack = Stack::two_gateways().await;
    let ann = e2e::guest(&stack.gateways[0].url, Some("Ann")).await;
    let mut tab1 = WsClient::connect(&stack.gateways[0].ws_url(), ann.clone()).await;
    let mut tab2 = WsClient::connect(&stack.gateways[1].ws_url(), ann).await;
    tab1.ok("match:random", json!({})).await;
    tab2.ok("match:random", json!({})).await;
    tab1.expect_no("match:found", Duration::from_millis(500))
        .await;
    tab2.expect_no("match:found", Duration::from_millis(10))
        .await;
    tab1.ok("match:cancel", json!({})).await;

    // Ann cancelled: Bob waits, and is not matched with her.
    let mut bob = stack.connect_to(1, "Bob").await;
    bob.ok("match:random", json!({})).await;
    bob.expect_no("match:found", Duration::from_millis(500))
        .await;
    // Bob disconnects: Cat waits too, and is matched with Dan, not Bob.
    drop(bob);
    let pool = pool_of(&stack).await;
    e2e::eventually("Bob's gateway to take him out of the pool", || async {
        matches!(pool.get("waiting").await, Ok(None)).then_some(())
    })
    .await;
    let mut cat = stack.connect_to(0, "Cat").await;
    cat.ok("match:random", json!({})).await;
    cat.expect_no("match:found", Duration::from_millis(500))
        .await;
    let mut dan = stack.connect_to(1, "Dan").await;
    dan.ok("match:random", json!({})).await;
    assert_eq!(found(&mut cat).await["peer"]["name"], "Dan");
    assert_eq!(found(&mut dan).await["peer"]["name"], "Cat");
    // Once matched, Cat may ask again.
    cat.ok("match:random", json!({})).await;
    dan.ok("match:random", json!({})).await;
    assert_eq!(found(&mut cat).await["peer"]["name"], "Dan");
}

/// The matching pool: one key in a bucket named after the stream.
async fn pool_of(stack: &Stack) -> async_nats::jetstream::kv::Store {
    let client = async_nats::connect(e2e::nats_url())
        .await
        .expect("NATS is up");
    async_nats::jetstream::new(client)
        .get_key_value(format!("{}_match", stack.config.stream))
        .await
        .expect("the matching bucket exists")
}
