//! Search: over the user's own rooms, ranked, words for English and any
//! part of two characters for Korean; never deleted messages, never
//! another user's rooms.

use e2e::{Stack, WsClient};
use serde_json::{json, Value};

/// `GET /v1/search?<query>` as `who`: status and body.
async fn search(base: &str, who: &WsClient, query: &[(&str, &str)]) -> (u16, Value) {
    let resp = e2e::http()
        .get(format!("{base}/v1/search"))
        .query(query)
        .bearer_auth(&who.user.token)
        .send()
        .await
        .expect("search");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The texts found for `q`, best first.
async fn found(base: &str, who: &WsClient, q: &str) -> Vec<String> {
    let (status, body) = search(base, who, &[("q", q)]).await;
    assert_eq!(status, 200, "{q}: {body}");
    e2e::texts(&body)
}

async fn said(c: &mut WsClient, room: &str, text: &str) -> Value {
    let t = c.say(room, text).await;
    c.persisted(&t).await
}

#[tokio::test]
async fn members_find_their_rooms_messages_by_words_and_korean_parts_best_first() {
    let stack = Stack::two_gateways().await;
    let (g0, g1) = (&stack.gateways[0].url, &stack.gateways[1].url);
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    let mut eve = stack.connect_to(1, "Eve").await;
    ann.join("team").await;
    bob.join("team").await;
    eve.join("secret").await;
    said(&mut ann, "team", "Deploy the release today").await;
    said(&mut bob, "team", "안녕하세요 여러분").await;
    said(&mut ann, "team", "Release notes are ready").await;
    said(&mut bob, "team", "the release went out, release party!").await;
    let gone = said(&mut ann, "team", "release candidate withdrawn").await;
    said(&mut eve, "secret", "release the secret plans").await;
    ann.ok("message:delete", json!({"room": "team", "id": gone["id"]}))
        .await;
    bob.find("the delete", |v| v["type"] == "message:deleted")
        .await;

    // Ranked: the message saying it twice first; the deleted one and
    // Eve's room never.
    let hits = found(g1, &bob, "release").await;
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert_eq!(hits[0], "the release went out, release party!");
    assert!(!hits
        .iter()
        .any(|t| t.contains("secret") || t.contains("withdrawn")));
    assert_eq!(
        found(g0, &ann, "RELEASE notes").await,
        ["Release notes are ready"]
    );
    assert!(
        found(g0, &ann, "relea").await.is_empty(),
        "words, not parts of words"
    );
    assert_eq!(
        found(g1, &eve, "release").await,
        ["release the secret plans"]
    );

    // Korean: any part of two characters or more.
    for part in ["안녕", "안녕하세요", "하세요", "여러분", "녕하"] {
        assert_eq!(found(g0, &ann, part).await, ["안녕하세요 여러분"], "{part}");
    }
    assert!(
        found(g0, &ann, "안").await.is_empty(),
        "one character is no part"
    );
    assert!(
        found(g0, &ann, "안녕 release").await.is_empty(),
        "all terms, in one message"
    );

    // One room; limit.
    let (status, body) = search(
        g0,
        &ann,
        &[("q", "release"), ("room", "team"), ("limit", "1")],
    )
    .await;
    assert_eq!((status, e2e::texts(&body).len()), (200, 1), "{body}");
    let msg = &body["messages"][0];
    assert_eq!(msg["room"], "team");
    assert!(
        msg["seq"].as_i64().is_some() && msg["sender"]["id"].is_string(),
        "{msg}"
    );

    // An edit is searched as it reads now.
    let first = found(g0, &ann, "today").await;
    assert_eq!(first, ["Deploy the release today"]);
    let page = e2e::get_json(&format!("{g0}/v1/rooms/team/messages"), &ann.user.token).await;
    let id = page["messages"][0]["id"].clone();
    ann.ok(
        "message:edit",
        json!({"room": "team", "id": id, "text": "Deploy tomorrow"}),
    )
    .await;
    bob.find("the edit", |v| v["type"] == "message:edited")
        .await;
    assert!(found(g1, &bob, "today").await.is_empty());
    assert_eq!(found(g1, &bob, "tomorrow").await, ["Deploy tomorrow"]);

    // Refusals change nothing and say why.
    for (query, status) in [
        (vec![("q", "release"), ("room", "secret")], 403),
        (vec![("q", "release"), ("room", "no such/room")], 400),
        (vec![], 400),
        (vec![("q", "   ")], 400),
        (vec![("q", "?!")], 400),
        (vec![("q", "release"), ("limit", "0")], 400),
        (vec![("q", "release"), ("limit", "51")], 400),
        (vec![("q", "release"), ("limit", "x")], 400),
    ] {
        let (got, body) = search(g1, &bob, &query).await;
        assert_eq!(got, status, "{query:?}: {body}");
        assert!(body["code"].is_string(), "{body}");
    }
    let anonymous = e2e::http()
        .get(format!("{g0}/v1/search?q=release"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // A member taken out searches the room no more, from the ack.
    ann.ok("room:remove", json!({"room": "team", "user": bob.user.id}))
        .await;
    assert!(found(g1, &bob, "release").await.is_empty());
}

#[tokio::test]
async fn messages_written_before_search_existed_are_found_after_a_persister_starts() {
    let mut stack = Stack::start().await;
    let g = stack.gateway().url.clone();
    let mut ann = stack.connect("Ann").await;
    ann.join("old").await;
    said(&mut ann, "old", "written with search").await;
    // As a persister of before search wrote them: no vector.
    let pool = stack.db.pool().await;
    sqlx::query(
        "INSERT INTO messages (id, room_id, seq, sender_id, sender_name, kind, text, temp_id,
                               created_at, stream_seq)
         VALUES (gen_random_uuid(), 'old', 2, $1, 'Ann', 'text', 'an archived greeting 안녕하세요',
                 gen_random_uuid(), now(), 0)",
    )
    .bind(uuid::Uuid::parse_str(&ann.user.id).unwrap())
    .execute(&pool)
    .await
    .unwrap();
    assert!(found(&g, &ann, "archived").await.is_empty());
    stack.persisters.remove(0).process.stop().await;
    stack.add_persister().await;
    e2e::eventually("the old message is searchable", || async {
        (found(&g, &ann, "archived greeting").await == ["an archived greeting 안녕하세요"])
            .then_some(())
    })
    .await;
    assert_eq!(found(&g, &ann, "하세").await.len(), 1);
}
