//! Scheduled messages (`deliver_after_s`).

use std::time::{Duration, Instant};

use e2e::{Gateway, NatsServer, Persister, Stack};
use serde_json::json;

#[tokio::test]
async fn a_scheduled_message_is_acked_at_once_and_enters_the_room_when_due() {
    let stack = Stack::two_gateways().await;
    let mut ann = stack.connect_to(0, "Ann").await;
    let mut bob = stack.connect_to(1, "Bob").await;
    ann.join("later").await;
    bob.join("later").await;

    let asked = Instant::now();
    let ack = ann
        .ok(
            "message:send",
            json!({"room": "later", "text": "see you in 2 s", "deliver_after_s": 2}),
        )
        .await;
    assert!(asked.elapsed() < Duration::from_secs(1), "acked at once");
    let temp_id = ack["temp_id"].as_str().unwrap().to_owned();
    // A message sent after it, but due before it, comes first.
    let now = bob.say("later", "right now").await;
    assert_eq!(bob.persisted(&now).await["seq"], 1);
    bob.expect_no("message:persisted", Duration::from_millis(1_000))
        .await;

    let m = bob.persisted(&temp_id).await;
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(1_800),
        "not before it is due: {waited:?}"
    );
    assert_eq!(m["seq"], 2, "its seq is handed out when it falls due");
    assert_eq!(m["text"], "see you in 2 s");
    let created: chrono::DateTime<chrono::Utc> = m["created_at"].as_str().unwrap().parse().unwrap();
    let lead = created - chrono::Utc::now();
    assert!(
        lead < chrono::Duration::seconds(1),
        "created_at is the due time: {created}"
    );

    for bad in [0, 604_801] {
        assert_eq!(
            ann.refused(
                "message:send",
                json!({"room": "later", "text": "x", "deliver_after_s": bad})
            )
            .await,
            "bad_request"
        );
    }
}

#[tokio::test]
async fn a_scheduled_message_survives_a_restart_of_every_process() {
    let mut nats = NatsServer::start("nats-schedule").await;
    let mut stack = Stack::build(&nats.url, 1, 1, &[]).await;
    let mut ann = stack.connect("Ann").await;
    ann.join("durable-later").await;
    let ack = ann
        .ok(
            "message:send",
            json!({"room": "durable-later", "text": "still coming", "deliver_after_s": 4}),
        )
        .await;
    let temp_id = ack["temp_id"].as_str().unwrap().to_owned();
    drop(ann);

    stack.gateways.remove(0).process.stop().await;
    stack.persisters.remove(0).process.stop().await;
    nats.kill().await;
    nats.restart().await;
    stack.persisters.push(Persister::start(&stack.config).await);
    stack.gateways.push(Gateway::start(&stack.config, 0).await);

    let pool = stack.db.pool().await;
    let text: String = e2e::eventually("the scheduled message after the restarts", || {
        let pool = pool.clone();
        let temp_id = temp_id.clone();
        async move {
            sqlx::query_scalar("SELECT text FROM messages WHERE temp_id = $1::uuid")
                .bind(temp_id)
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    assert_eq!(text, "still coming");
}
