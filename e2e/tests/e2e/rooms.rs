//! Private and direct rooms, invitations, roles, and membership across
//! gateways.

use std::time::Duration;

use e2e::{Stack, WsClient};
use serde_json::json;

#[tokio::test]
async fn a_private_room_admits_its_members_and_refuses_everyone_else() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    let mut eve = stack.connect_to(0, "Eve").await;

    let ack = ann
        .ok(
            "room:create",
            json!({"room": "club", "name": "The Club", "kind": "group", "members": [bob.user.id]}),
        )
        .await;
    assert_eq!(ack["room"], "club");
    // Bob, on the other gateway, is told and gets the room's events at once.
    let joined = bob.expect_event("room:joined").await;
    assert_eq!(
        joined["data"],
        json!({"room": "club", "user": {"id": bob.user.id, "name": "Bob", "avatar_url": null}})
    );
    let t = bob.say("club", "thanks for the invite").await;
    assert_eq!(ann.persisted(&t).await["text"], "thanks for the invite");

    assert_eq!(
        eve.refused("room:join", json!({"room": "club"})).await,
        "forbidden"
    );
    assert_eq!(
        eve.refused("message:send", json!({"room": "club", "text": "hi"}))
            .await,
        "not_a_member"
    );
    assert_eq!(
        eve.refused("history:fetch", json!({"room": "club"})).await,
        "not_a_member"
    );
    assert_eq!(
        eve.refused("typing:start", json!({"room": "club"})).await,
        "not_a_member"
    );
    assert_eq!(
        eve.refused("room:create", json!({"room": "club", "kind": "group"}))
            .await,
        "forbidden",
        "the id is taken"
    );
    let page = ann.ok("history:fetch", json!({"room": "club"})).await;
    assert_eq!(
        e2e::texts(&page),
        ["thanks for the invite"],
        "nothing of Eve's was stored"
    );

    let rooms = e2e::get_json(
        &format!("{}/v1/rooms", stack.gateways[1].url),
        &bob.user.token,
    )
    .await;
    assert_eq!(rooms["rooms"][0]["name"], "The Club");
    assert_eq!(
        rooms["rooms"][0]["unread"], 0,
        "Bob's own message is not unread for him"
    );
}

#[tokio::test]
async fn a_public_room_can_be_joined_by_anyone() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    ann.ok(
        "room:create",
        json!({"room": "open", "kind": "group", "public": true}),
    )
    .await;
    let joined = bob.join("open").await;
    assert_eq!(joined["room"], "open");
    assert_eq!(
        ann.expect_event("room:joined").await["data"]["user"]["name"],
        "Bob"
    );
}

#[tokio::test]
async fn a_direct_room_has_exactly_two_members() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    let mut eve = stack.connect_to(0, "Eve").await;
    assert_eq!(
        ann.refused(
            "room:create",
            json!({"kind": "direct", "members": [bob.user.id, eve.user.id]})
        )
        .await,
        "bad_request"
    );
    assert_eq!(
        ann.refused("room:create", json!({"kind": "direct", "members": []}))
            .await,
        "bad_request"
    );
    let ack = ann
        .ok(
            "room:create",
            json!({"kind": "direct", "members": [bob.user.id], "public": true}),
        )
        .await;
    let room = ack["room"].as_str().expect("a generated id").to_owned();
    bob.expect_event("room:joined").await;
    let t = bob.say(&room, "just us").await;
    ann.persisted(&t).await;
    assert_eq!(
        eve.refused("room:join", json!({"room": room})).await,
        "forbidden",
        "never public"
    );
    assert_eq!(
        ann.refused("room:invite", json!({"room": room, "user": eve.user.id}))
            .await,
        "forbidden"
    );
    // Each member's room list names the other one, for showing the room by
    // the peer and with the peer's presence.
    let rooms = e2e::get_json(
        &format!("{}/v1/rooms", stack.gateways[0].url),
        &ann.user.token,
    )
    .await;
    let listed = &rooms["rooms"][0];
    assert_eq!(listed["kind"], "direct");
    assert_eq!(listed["peer_id"], bob.user.id.to_string());
    assert_eq!(listed["peer_name"], "Bob");
}

#[tokio::test]
async fn owners_and_admins_invite_and_only_the_owner_sets_roles() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    let mut cat = stack.connect_to(1, "Cat").await;
    let mut dan = stack.connect_to(0, "Dan").await;
    ann.ok(
        "room:create",
        json!({"room": "team", "kind": "group", "members": [bob.user.id]}),
    )
    .await;
    bob.expect_event("room:joined").await;

    // A plain member may not invite or set roles.
    assert_eq!(
        bob.refused("room:invite", json!({"room": "team", "user": cat.user.id}))
            .await,
        "forbidden"
    );
    assert_eq!(
        bob.refused(
            "room:set_role",
            json!({"room": "team", "user": bob.user.id, "role": "admin"})
        )
        .await,
        "forbidden"
    );
    assert_eq!(
        cat.refused("room:invite", json!({"room": "team", "user": cat.user.id}))
            .await,
        "not_a_member"
    );

    // The owner invites Cat, wherever she is connected.
    ann.ok("room:invite", json!({"room": "team", "user": cat.user.id}))
        .await;
    let joined = cat.expect_event("room:joined").await;
    assert_eq!(joined["data"]["room"], "team");
    assert_eq!(
        bob.expect_event("room:joined").await["data"]["user"]["name"],
        "Cat"
    );
    let t = ann.say("team", "welcome Cat").await;
    assert_eq!(cat.persisted(&t).await["text"], "welcome Cat");

    // The owner makes Bob an admin; the members hear of it.
    ann.ok(
        "room:set_role",
        json!({"room": "team", "user": bob.user.id, "role": "admin"}),
    )
    .await;
    let role = cat.expect_event("room:role").await;
    assert_eq!(
        role["data"],
        json!({"room": "team", "user": {"id": bob.user.id, "name": "Bob", "avatar_url": null}, "role": "admin"})
    );
    // An admin invites, but still does not set roles.
    bob.ok("room:invite", json!({"room": "team", "user": dan.user.id}))
        .await;
    dan.expect_event("room:joined").await;
    assert_eq!(
        bob.refused(
            "room:set_role",
            json!({"room": "team", "user": cat.user.id, "role": "admin"})
        )
        .await,
        "forbidden"
    );
    // Refusals on roles.
    assert_eq!(
        ann.refused(
            "room:set_role",
            json!({"room": "team", "user": ann.user.id, "role": "member"})
        )
        .await,
        "forbidden",
        "the owner's role does not change"
    );
    assert_eq!(
        ann.refused(
            "room:set_role",
            json!({"room": "team", "user": uuid::Uuid::new_v4(), "role": "admin"})
        )
        .await,
        "not_found"
    );
    assert_eq!(
        ann.refused(
            "room:set_role",
            json!({"room": "team", "user": bob.user.id, "role": "owner"})
        )
        .await,
        "bad_request"
    );
    assert_eq!(
        ann.refused("room:invite", json!({"room": "team", "user": "not-a-uuid"}))
            .await,
        "bad_request"
    );
    // And back to member.
    ann.ok(
        "room:set_role",
        json!({"room": "team", "user": bob.user.id, "role": "member"}),
    )
    .await;
    let back = cat
        .find("Bob back to member", |v| {
            v["type"] == "room:role" && v["data"]["role"] == "member"
        })
        .await;
    assert_eq!(back["data"]["user"]["name"], "Bob");
}

#[tokio::test]
async fn a_send_right_after_a_join_passes_on_the_same_and_on_another_gateway() {
    let stack = Stack::two_gateways().await;
    let ann = e2e::guest(&stack.gateways[0].url, Some("Ann")).await;
    let mut tab1 = WsClient::connect(&stack.gateways[0].ws_url(), ann.clone()).await;
    let mut tab2 = WsClient::connect(&stack.gateways[1].ws_url(), ann).await;
    for i in 0..5 {
        let room = format!("fresh-{i}");
        tab1.join(&room).await;
        // No wait for the persister: the join is only a job in the stream.
        let same = tab1.say(&room, "from the joining tab").await;
        let other = tab2.say(&room, "from the other tab").await;
        assert_ne!(same, other);
        tab2.persisted(&other).await;
    }
    // The other tab receives the room's events from then on, too.
    let t = tab1.say("fresh-0", "to both tabs").await;
    tab2.persisted(&t).await;
}

#[tokio::test]
async fn leaving_on_one_gateway_ends_the_rooms_events_on_the_other() {
    let stack = Stack::two_gateways().await;
    let ann = e2e::guest(&stack.gateways[0].url, Some("Ann")).await;
    let mut tab1 = WsClient::connect(&stack.gateways[0].ws_url(), ann.clone()).await;
    let mut tab2 = WsClient::connect(&stack.gateways[1].ws_url(), ann).await;
    let mut bob = stack.connect_to(1, "Bob").await;
    tab1.join("exit").await;
    bob.join("exit").await;
    let t = bob.say("exit", "one").await;
    tab2.persisted(&t).await;
    tab1.ok("room:leave", json!({"room": "exit"})).await;
    bob.expect_event("room:left").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = bob.say("exit", "two").await;
    bob.persisted(&t).await;
    tab2.expect_no("message:persisted", Duration::from_millis(500))
        .await;
    assert_eq!(
        tab2.refused("message:send", json!({"room": "exit", "text": "x"}))
            .await,
        "not_a_member"
    );
}

#[tokio::test]
async fn users_named_by_id_before_they_ever_connect_are_members_at_once() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let (xia, yan) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    ann.ok(
        "room:create",
        json!({"room": "early", "kind": "group", "members": [xia]}),
    )
    .await;
    ann.ok("room:invite", json!({"room": "early", "user": yan}))
        .await;
    let joined = ann.expect_event("room:joined").await;
    assert_eq!(
        joined["data"]["user"]["name"],
        serde_json::Value::Null,
        "{joined}"
    );
    ann.ok(
        "room:create",
        json!({"room": "dm-early", "kind": "direct", "members": [yan]}),
    )
    .await;

    // Their first connection, with a token of the application's: the rooms
    // are theirs, on any gateway, and they have a name from then on.
    let exp = chrono::Utc::now().timestamp() + 600;
    for (i, (id, name, rooms)) in [
        (xia, "Xia", vec!["early"]),
        (yan, "Yan", vec!["dm-early", "early"]),
    ]
    .into_iter()
    .enumerate()
    {
        let guest = e2e::Guest {
            token: e2e::ws::token(id, name, exp),
            id: id.to_string(),
            name: name.to_owned(),
        };
        let mut c = WsClient::connect(&stack.gateways[i].ws_url(), guest.clone()).await;
        let mut ready: Vec<&str> = c.ready["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        ready.sort_unstable();
        assert_eq!(ready, rooms, "{name}'s session:ready");
        let t = c.say("early", &format!("{name} here")).await;
        ann.persisted(&t).await;
        let listed =
            e2e::get_json(&format!("{}/v1/rooms", stack.gateways[i].url), &guest.token).await;
        let mut ids: Vec<&str> = listed["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, rooms, "{name}'s GET /v1/rooms");
    }
    let members = ann.ok("room:join", json!({"room": "early"})).await;
    let mut names: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["Ann", "Xia", "Yan"], "named once seen: {members}");
}
