//! Threads: replies are messages of the room with their own `seq` that name
//! their root; the root's `{count, last_at}` stays right however replies
//! arrive; a thread's history pages like a room's.

use e2e::Stack;
use serde_json::{json, Value};

fn reply(room: &str, root: &Value, text: &str) -> Value {
    json!({"room": room, "text": text, "thread_of": root})
}

#[tokio::test]
async fn concurrent_replies_on_two_gateways_are_counted_on_the_root_and_page_as_a_thread() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    ann.join("talk").await;
    bob.join("talk").await;
    let t = ann.say("talk", "the root").await;
    let root = ann.persisted(&t).await;
    let root_id = root["id"].clone();
    assert_eq!(root["thread"], Value::Null);
    assert_eq!(root["thread_of"], Value::Null);

    // Five replies at once, from both gateways, none waiting for another.
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push((
            0,
            ann.send("message:send", reply("talk", &root_id, &format!("ann {i}"))),
        ));
    }
    for i in 0..2 {
        sent.push((
            1,
            bob.send("message:send", reply("talk", &root_id, &format!("bob {i}"))),
        ));
    }
    let mut temp_ids = Vec::new();
    for (who, r) in sent {
        let c = if who == 0 { &mut ann } else { &mut bob };
        let ack = c.reply(&r).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        temp_ids.push(ack["data"]["temp_id"].as_str().unwrap().to_owned());
    }
    let mut replies = Vec::new();
    for t in &temp_ids {
        let m = bob.persisted(t).await;
        assert_eq!(m["thread_of"], root_id, "{m}");
        assert_eq!(m["thread"], Value::Null, "a reply has no thread of its own");
        replies.push(m);
    }
    let mut seqs: Vec<i64> = replies.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [2, 3, 4, 5, 6], "each reply has a seq of the room");
    let last_at = replies
        .iter()
        .map(|m| m["created_at"].as_str().unwrap().to_owned())
        .max()
        .unwrap();

    let rooms_page = |base: String, token: String, query: String| async move {
        e2e::get_json(&format!("{base}/v1/rooms/talk/messages{query}"), &token).await
    };
    let page = rooms_page(
        stack.gateways[1].url.clone(),
        bob.user.token.clone(),
        String::new(),
    )
    .await;
    let root_now = &page["messages"][0];
    assert_eq!(root_now["id"], root_id);
    assert_eq!(root_now["thread"], json!({"count": 5, "last_at": last_at}));

    // The thread's own history: its replies ascending, paged by seq.
    let thread = ann
        .ok(
            "history:fetch",
            json!({"room": "talk", "thread_of": root_id}),
        )
        .await;
    assert_eq!(e2e::seqs(&thread), [2, 3, 4, 5, 6]);
    let latest = ann
        .ok(
            "history:fetch",
            json!({"room": "talk", "thread_of": root_id, "limit": 2}),
        )
        .await;
    assert_eq!(e2e::seqs(&latest), [5, 6]);
    let after = rooms_page(
        stack.gateway().url.clone(),
        ann.user.token.clone(),
        format!("?thread_of={}&after=3", root_id.as_str().unwrap()),
    )
    .await;
    assert_eq!(e2e::seqs(&after), [4, 5, 6]);

    // A deleted reply no longer counts.
    let gone = replies.iter().find(|m| m["seq"] == 6).unwrap()["id"].clone();
    let sender = replies.iter().find(|m| m["seq"] == 6).unwrap()["sender"]["id"].clone();
    let c = if sender == ann.user.id.as_str() {
        &mut ann
    } else {
        &mut bob
    };
    c.ok("message:delete", json!({"room": "talk", "id": gone}))
        .await;
    c.find("the delete", |v| v["type"] == "message:deleted")
        .await;
    let page = rooms_page(
        stack.gateway().url.clone(),
        ann.user.token.clone(),
        String::new(),
    )
    .await;
    assert_eq!(page["messages"][0]["thread"]["count"], 4);
}

#[tokio::test]
async fn threads_do_not_nest_and_stay_in_their_room_and_with_its_members() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut cat = stack.connect_to(1, "Cat").await;
    ann.join("home").await;
    ann.join("away").await;
    let t = ann.say("home", "root").await;
    let root = ann.persisted(&t).await["id"].clone();
    let t = ann
        .ok("message:send", reply("home", &root, "a reply"))
        .await["temp_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let in_thread = ann.persisted(&t).await["id"].clone();
    let t = ann.say("away", "elsewhere").await;
    let elsewhere = ann.persisted(&t).await["id"].clone();

    assert_eq!(
        ann.refused("message:send", reply("home", &in_thread, "nested"))
            .await,
        "bad_request",
        "a thread of a thread"
    );
    assert_eq!(
        ann.refused("message:send", reply("home", &elsewhere, "x"))
            .await,
        "not_found",
        "a root of another room"
    );
    assert_eq!(
        ann.refused(
            "message:send",
            reply("home", &json!(uuid::Uuid::new_v4()), "x")
        )
        .await,
        "not_found"
    );
    assert_eq!(
        ann.refused("message:send", reply("home", &json!("not-a-uuid"), "x"))
            .await,
        "bad_request"
    );
    assert_eq!(
        cat.refused("message:send", reply("home", &root, "hi"))
            .await,
        "not_a_member"
    );
    assert_eq!(
        cat.refused("history:fetch", json!({"room": "home", "thread_of": root}))
            .await,
        "not_a_member"
    );
    // Nothing refused was stored: the thread still has its one reply.
    let thread = ann
        .ok("history:fetch", json!({"room": "home", "thread_of": root}))
        .await;
    assert_eq!(e2e::texts(&thread), ["a reply"]);
}
