//! A job that arrives twice lands once.

use async_nats::jetstream;
use e2e::Stack;
use serde_json::json;
use shared::jobs::{Job, NewMessage};
use shared::protocol::{MessageKind, User};
use uuid::Uuid;

fn job(room: &str, text: &str) -> Job {
    Job::Message(NewMessage {
        id: Uuid::now_v7(),
        temp_id: Uuid::new_v4(),
        room: room.to_owned(),
        sender: User {
            id: Uuid::new_v4(),
            name: Some("Direct".into()),
            avatar_url: None,
        },
        kind: MessageKind::Text,
        text: text.to_owned(),
        reply_to: None,
        attachments: vec![],
        client_id: None,
        created_at: shared::time::now_millis(),
        mentions: Vec::new(),
        thread_of: None,
    })
}

async fn publish(js: &jetstream::Context, stream: &str, job: &Job, msg_id: &str) -> bool {
    let subject = job.subject(&shared::subjects::Subjects::new(stream).unwrap());
    let ack = js
        .send_publish(
            subject,
            jetstream::message::PublishMessage::build()
                .payload(serde_json::to_vec(job).unwrap().into())
                .message_id(msg_id),
        )
        .await
        .expect("publish")
        .await
        .expect("PubAck");
    ack.duplicate
}

#[tokio::test]
async fn a_duplicate_job_lands_once_whether_the_stream_or_the_database_catches_it() {
    let stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    ann.join("dups").await;
    let client = async_nats::connect(&stack.config.nats_url).await.unwrap();
    let js = jetstream::new(client);

    // The same Nats-Msg-Id twice: the stream drops the second.
    let once = job("dups", "published twice");
    let Job::Message(m) = &once else {
        unreachable!()
    };
    let msg_id = m.temp_id.to_string();
    assert!(!publish(&js, &stack.config.stream, &once, &msg_id).await);
    assert!(
        publish(&js, &stack.config.stream, &once, &msg_id).await,
        "the stream saw the duplicate"
    );

    // The same job under other ids, as a redelivery or a replay brings it:
    // the database's keys drop it.
    let again = job("dups", "delivered twice");
    let Job::Message(a) = &again else {
        unreachable!()
    };
    assert!(!publish(&js, &stack.config.stream, &again, "first").await);
    assert!(!publish(&js, &stack.config.stream, &again, "second").await);
    let after = ann.say("dups", "after the duplicates").await;
    let last = ann.persisted(&after).await;
    assert_eq!(last["seq"], 3, "each duplicate took no seq");

    let pool = stack.db.pool().await;
    for (id, text) in [(m.id, "published twice"), (a.id, "delivered twice")] {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, text FROM messages WHERE id = $1")
                .bind(id)
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(rows.len(), 1, "{text}");
        assert_eq!(rows[0].1, text);
    }
}

#[tokio::test]
async fn a_retried_client_id_is_stored_once_and_acked_with_the_first_temp_id() {
    let stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    ann.join("retry").await;
    let send = json!({"room": "retry", "text": "exactly once", "client_id": "retry-1"});
    let first = ann.ok("message:send", send.clone()).await;
    let m = ann.persisted(first["temp_id"].as_str().unwrap()).await;
    let second = ann.ok("message:send", send.clone()).await;
    assert_eq!(first["temp_id"], second["temp_id"]);

    // Another user may use the same client_id.
    let mut bob = stack.connect("Bob").await;
    bob.join("retry").await;
    let bobs = bob.ok("message:send", send).await;
    assert_ne!(bobs["temp_id"], first["temp_id"]);
    let b = bob.persisted(bobs["temp_id"].as_str().unwrap()).await;
    assert_eq!(
        b["seq"],
        m["seq"].as_i64().unwrap() + 1,
        "the retry took no seq"
    );

    let pool = stack.db.pool().await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE client_id = 'retry-1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2, "one for Ann, one for Bob");
}
