//! The durable mode's atomic batches (`CHAT_PUBLISH_BATCHING=atomic`):
//! many sends share one batch, and nothing about what a client sees
//! changes: every ack is stored once, in the order sent, also when a batch
//! is refused and its jobs are stored one by one.

use std::collections::HashMap;

use e2e::{Stack, WsClient};
use serde_json::{json, Value};

const BATCHING: &[(&str, &str)] = &[("CHAT_PUBLISH_BATCHING", "atomic")];

async fn batching_stack() -> Stack {
    let env = [BATCHING, e2e::procs::UNTHROTTLED].concat();
    Stack::build(&e2e::nats_url(), 1, 1, &env).await
}

/// Sends every `(room, text, client_id)` at once, without waiting, and
/// returns each reply in the order sent.
async fn send_all(who: &mut WsClient, sends: &[(String, String, String)]) -> Vec<Value> {
    let refs: Vec<String> = sends
        .iter()
        .map(|(room, text, cid)| {
            who.send(
                "message:send",
                json!({"room": room, "text": text, "client_id": cid}),
            )
        })
        .collect();
    let mut replies = Vec::with_capacity(refs.len());
    for r in &refs {
        replies.push(who.reply(r).await);
    }
    replies
}

fn temp_id(reply: &Value) -> String {
    assert_eq!(reply["type"], "ack", "{reply}");
    reply["data"]["temp_id"]
        .as_str()
        .expect("temp_id")
        .to_owned()
}

/// Each room's texts in `seq` order, once every acked one is stored.
async fn stored_texts(stack: &Stack, acked: &[String]) -> HashMap<String, Vec<String>> {
    let pool = stack.db.pool().await;
    e2e::all_stored_once(&pool, acked).await;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT room_id, text FROM messages WHERE temp_id::text = ANY($1) ORDER BY room_id, seq",
    )
    .bind(acked)
    .fetch_all(&pool)
    .await
    .expect("stored messages");
    let mut rooms: HashMap<String, Vec<String>> = HashMap::new();
    for (room, text) in rows {
        rooms.entry(room).or_default().push(text);
    }
    rooms
}

/// The texts of `sends` that went to `room`, in the order sent.
fn sent_to(sends: &[(String, String, String)], room: &str) -> Vec<String> {
    sends
        .iter()
        .filter(|(r, _, _)| r == room)
        .map(|(_, text, _)| text.clone())
        .collect()
}

async fn gateway_metric(stack: &Stack, name: &str) -> f64 {
    e2e::metric(&stack.gateway().url, name).await.unwrap_or(0.0)
}

#[tokio::test]
async fn sends_stored_in_atomic_batches_are_each_acked_stored_once_and_in_the_order_sent() {
    let stack = batching_stack().await;
    let mut ann = stack.connect("Ann").await;
    let mut bob = stack.connect("Bob").await;
    for room in ["batch-a", "batch-b"] {
        ann.join(room).await;
        bob.join(room).await;
    }
    let sends = |who: &str| -> Vec<(String, String, String)> {
        (0..300)
            .map(|i| {
                let room = if i % 3 == 0 { "batch-b" } else { "batch-a" };
                (room.to_owned(), format!("{who} {i}"), format!("{who}-{i}"))
            })
            .collect()
    };
    let (ann_sends, bob_sends) = (sends("ann"), sends("bob"));
    let (ann_replies, bob_replies) = tokio::join!(
        send_all(&mut ann, &ann_sends),
        send_all(&mut bob, &bob_sends)
    );
    let acked: Vec<String> = ann_replies
        .iter()
        .chain(&bob_replies)
        .map(temp_id)
        .collect();

    let rooms = stored_texts(&stack, &acked).await;
    for room in ["batch-a", "batch-b"] {
        for (who, sent) in [("ann", &ann_sends), ("bob", &bob_sends)] {
            let theirs: Vec<String> = rooms[room]
                .iter()
                .filter(|t| t.starts_with(who))
                .cloned()
                .collect();
            assert_eq!(
                theirs,
                sent_to(sent, room),
                "{who}'s sends to {room} in seq order"
            );
        }
    }
    let batches = gateway_metric(&stack, "gateway_publish_batches_total").await;
    let batched = gateway_metric(&stack, "gateway_publish_batched_jobs_total").await;
    assert!(
        batches >= 1.0 && batched >= 100.0,
        "600 sends at once went out in batches: {batched} jobs in {batches}"
    );
    eprintln!("batching: 600 sends in {batches} batches holding {batched} of them");
}

#[tokio::test]
async fn a_batch_holding_retried_sends_is_stored_one_by_one_each_send_once_in_order() {
    let stack = batching_stack().await;
    let mut ann = stack.connect("Ann").await;
    ann.join("retries").await;
    // 150 sends, then the first 100 again with the same client ids, as a
    // client that lost its connection retries: each of the second half's
    // batches holds a job the stream has already stored, which refuses the
    // whole batch.
    let first: Vec<(String, String, String)> = (0..150)
        .map(|i| ("retries".to_owned(), format!("m{i}"), format!("c{i}")))
        .collect();
    let mut sends = first.clone();
    sends.extend((0..100).map(|i| ("retries".to_owned(), format!("again {i}"), format!("c{i}"))));
    let replies = send_all(&mut ann, &sends).await;
    let ids: Vec<String> = replies.iter().map(temp_id).collect();
    for i in 0..100 {
        assert_eq!(
            ids[150 + i],
            ids[i],
            "a retry is acked with the first send's temp_id"
        );
    }

    let rooms = stored_texts(&stack, &ids[..150]).await;
    assert_eq!(
        rooms["retries"],
        sent_to(&first, "retries"),
        "stored once each, in order"
    );
    let fallbacks = gateway_metric(&stack, "gateway_publish_batch_fallbacks_total").await;
    assert!(
        fallbacks >= 1.0,
        "a batch with a stored job was refused and retried one by one"
    );

    // The lane goes on batching after a refused batch.
    let more: Vec<(String, String, String)> = (0..100)
        .map(|i| ("retries".to_owned(), format!("n{i}"), format!("d{i}")))
        .collect();
    let more_ids: Vec<String> = send_all(&mut ann, &more)
        .await
        .iter()
        .map(temp_id)
        .collect();
    let all: Vec<String> = ids[..150].iter().chain(&more_ids).cloned().collect();
    let rooms = stored_texts(&stack, &all).await;
    let expected: Vec<String> = sent_to(&first, "retries")
        .into_iter()
        .chain(sent_to(&more, "retries"))
        .collect();
    assert_eq!(rooms["retries"], expected);
}
