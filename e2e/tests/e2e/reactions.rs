//! Reactions: through the stream like every change, one per emoji per user,
//! told to members on every gateway once persisted, kept in history.

use e2e::Stack;
use serde_json::{json, Value};

fn react(room: &str, id: &Value, emoji: &str) -> Value {
    json!({"room": room, "message_id": id, "emoji": emoji})
}

/// The next `message:reactions` each member hears: the message's
/// reactions as they are now.
async fn each_sees(members: [&mut e2e::WsClient; 2], expected: Value) {
    for member in members {
        let ev = member.expect_event("message:reactions").await["data"].clone();
        assert_eq!(ev["reactions"], expected, "{}", member.user.name);
        assert_eq!(ev["room"], "party");
    }
}

#[tokio::test]
async fn members_on_two_gateways_see_each_reaction_once_persisted_and_history_keeps_them() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    ann.join("party").await;
    bob.join("party").await;
    let t = ann.say("party", "we shipped").await;
    let id = ann.persisted(&t).await["id"].clone();
    bob.persisted(&t).await;
    let (a, b) = (ann.user.id.clone(), bob.user.id.clone());

    bob.ok("reaction:add", react("party", &id, "👍")).await;
    let ev = ann.expect_event("message:reactions").await["data"].clone();
    assert_eq!(
        ev,
        json!({"room": "party", "message_id": id, "reactions": {"👍": [b]}})
    );
    bob.expect_event("message:reactions").await;
    ann.ok("reaction:add", react("party", &id, "👍")).await;
    each_sees([&mut ann, &mut bob], json!({"👍": [b, a]})).await;
    ann.ok("reaction:add", react("party", &id, "🎉")).await;
    each_sees([&mut ann, &mut bob], json!({"👍": [b, a], "🎉": [a]})).await;
    // The same reaction again changes nothing, and nobody hears of it.
    bob.ok("reaction:add", react("party", &id, "👍")).await;
    bob.ok("reaction:remove", react("party", &id, "👍")).await;
    each_sees([&mut ann, &mut bob], json!({"👍": [a], "🎉": [a]})).await;
    // Taking back what is not there changes nothing either.
    bob.ok("reaction:remove", react("party", &id, "🎉")).await;

    let page = e2e::get_json(
        &format!("{}/v1/rooms/party/messages", stack.gateways[1].url),
        &bob.user.token,
    )
    .await;
    assert_eq!(
        page["messages"][0]["reactions"],
        json!({"👍": [a], "🎉": [a]})
    );
    let fresh = ann.say("party", "no reactions yet").await;
    assert_eq!(ann.persisted(&fresh).await["reactions"], json!({}));

    // A deleted message loses its reactions.
    ann.ok("message:delete", json!({"room": "party", "id": id}))
        .await;
    bob.find("the delete", |v| v["type"] == "message:deleted")
        .await;
    let page = e2e::get_json(
        &format!("{}/v1/rooms/party/messages", stack.gateways[0].url),
        &ann.user.token,
    )
    .await;
    assert_eq!(page["messages"][0]["reactions"], json!({}));
    assert_eq!(
        bob.refused("reaction:add", react("party", &id, "👍")).await,
        "not_found",
        "no reactions to a deleted message"
    );
}

#[tokio::test]
async fn reactions_are_refused_to_non_members_bad_emoji_and_unknown_messages() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut cat = stack.connect_to(1, "Cat").await;
    ann.join("club").await;
    ann.join("other").await;
    let t = ann.say("club", "hello").await;
    let id = ann.persisted(&t).await["id"].clone();
    let elsewhere = ann.say("other", "there").await;
    let elsewhere = ann.persisted(&elsewhere).await["id"].clone();

    assert_eq!(
        cat.refused("reaction:add", react("club", &id, "👍")).await,
        "not_a_member"
    );
    let long = "x".repeat(33);
    for bad in ["", " ", "a b", long.as_str()] {
        assert_eq!(
            ann.refused("reaction:add", react("club", &id, bad)).await,
            "bad_request",
            "{bad:?}"
        );
    }
    assert_eq!(
        ann.refused("reaction:add", json!({"room": "club", "message_id": id}))
            .await,
        "bad_request",
        "no emoji"
    );
    assert_eq!(
        ann.refused(
            "reaction:add",
            react("club", &json!(uuid::Uuid::new_v4()), "👍")
        )
        .await,
        "not_found"
    );
    assert_eq!(
        ann.refused("reaction:add", react("club", &elsewhere, "👍"))
            .await,
        "not_found",
        "a message of another room"
    );
    // Nothing of that was stored.
    let page = e2e::get_json(
        &format!("{}/v1/rooms/club/messages", stack.gateway().url),
        &ann.user.token,
    )
    .await;
    assert_eq!(page["messages"][0]["reactions"], json!({}));
}
