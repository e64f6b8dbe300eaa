//! Overload: a gateway whose publishes take longer than its target refuses
//! the sends beyond what it can answer in time, at once and with a clear
//! error, instead of queueing them; what it acked is stored, what it refused
//! is not, and it takes sends again as soon as the burst is over.

use std::collections::HashSet;
use std::time::Duration;

use e2e::Stack;
use serde_json::{json, Value};

#[tokio::test]
async fn beyond_its_ack_target_a_gateway_refuses_at_once_and_stores_exactly_what_it_acked() {
    // A target no publish meets: the gateway is "overloaded" from the first
    // few answers on, and lets only its floor of publishes in at a time.
    let env = [e2e::procs::UNTHROTTLED, &[("GATEWAY_ACK_TARGET_MS", "1")]].concat();
    let stack = Stack::build(&e2e::nats_url(), 1, 1, &env).await;
    let mut ann = stack.connect("Ann").await;
    let mut bob = stack.connect("Bob").await;
    ann.join("busy").await;
    bob.join("busy").await;

    let burst = |c: &e2e::WsClient, who: &str| -> Vec<(String, String)> {
        (0..600)
            .map(|i| {
                let text = format!("{who} {i}");
                let r = c.send("message:send", json!({"room": "busy", "text": text}));
                (r, text)
            })
            .collect()
    };
    let (from_ann, from_bob) = (burst(&ann, "ann"), burst(&bob, "bob"));
    let mut acked = Vec::new();
    let mut refused = HashSet::new();
    for (client, sent) in [(&mut ann, from_ann), (&mut bob, from_bob)] {
        for (r, text) in sent {
            let reply: Value = client.reply(&r).await;
            if reply["type"] == "ack" {
                acked.push(reply["data"]["temp_id"].as_str().unwrap().to_owned());
            } else {
                assert_eq!(reply["data"]["code"], "unavailable", "{reply}");
                let message = reply["data"]["message"].as_str().unwrap_or_default();
                assert!(message.contains("overloaded"), "says why: {reply}");
                refused.insert(text);
            }
        }
    }
    assert!(
        !refused.is_empty(),
        "some of 1,200 pipelined sends are refused"
    );
    assert!(
        acked.len() >= 64,
        "the floor is let in: {} acked",
        acked.len()
    );

    // Exactly the acked messages are stored, once each.
    let pool = stack.db.pool().await;
    e2e::all_stored_once(&pool, &acked).await;
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT text FROM messages WHERE room_id = 'busy'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), acked.len(), "nothing but the acked is stored");
    assert!(
        stored.iter().all(|t| !refused.contains(t)),
        "no refused send is stored"
    );

    // The burst over, a send goes through.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = ann
        .request("message:send", json!({"room": "busy", "text": "after"}))
        .await;
    assert_eq!(after["type"], "ack", "{after}");
}
