//! An R3 stream on a three-node NATS cluster.

use std::collections::HashMap;
use std::time::Duration;

use e2e::{NatsCluster, Stack};
use serde_json::json;

#[tokio::test]
async fn an_r3_stream_keeps_every_ack_through_the_loss_of_a_node() {
    keeps_every_ack_through_the_loss_of_a_node("cluster", &[]).await;
}

/// The same with the durable mode's atomic batches: a batch is proposed to
/// the cluster as a whole, and the node lost may be its leader.
#[tokio::test]
async fn an_r3_stream_keeps_every_batched_ack_through_the_loss_of_a_node() {
    keeps_every_ack_through_the_loss_of_a_node(
        "cluster-batched",
        &[("CHAT_PUBLISH_BATCHING", "atomic")],
    )
    .await;
}

/// 600 pipelined sends, one of three nodes killed 100 ms in: every send
/// acked is stored exactly once, and sends are acked again afterwards.
async fn keeps_every_ack_through_the_loss_of_a_node(name: &str, extra: &[(&str, &str)]) {
    let mut cluster = NatsCluster::start(name).await;
    let env = [
        &[("CHAT_STREAM_REPLICAS", "3")],
        e2e::procs::UNTHROTTLED,
        extra,
    ]
    .concat();
    let stack = Stack::build(&cluster.url, 1, 1, &env).await;
    let mut ann = stack.connect("Ann").await;
    ann.join("replicated").await;

    let refs: Vec<String> = (0..600)
        .map(|i| {
            ann.send(
                "message:send",
                json!({"room": "replicated", "text": format!("m{i}")}),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    cluster.nodes[0].kill().await;

    let mut acked = Vec::new();
    let mut refused = 0;
    for r in &refs {
        let reply = ann.reply(r).await;
        match reply["type"].as_str() {
            Some("ack") => acked.push(reply["data"]["temp_id"].as_str().unwrap().to_owned()),
            _ => {
                assert_eq!(reply["data"]["code"], "unavailable", "{reply}");
                refused += 1;
            }
        }
    }
    // With one node gone, sends are acked again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let reply = ann
            .request(
                "message:send",
                json!({"room": "replicated", "text": "after the loss"}),
            )
            .await;
        if reply["type"] == "ack" {
            break reply["data"]["temp_id"].as_str().unwrap().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ack 30 s after the node loss: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    acked.push(after);

    let pool = stack.db.pool().await;
    let stored: HashMap<String, i64> = e2e::eventually_within(Duration::from_secs(40), "every ack persisted", || {
        let pool = pool.clone();
        let acked = &acked;
        async move {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT temp_id::text, count(*) FROM messages WHERE room_id = 'replicated' GROUP BY temp_id",
            )
            .fetch_all(&pool)
            .await
            .ok()?;
            // A send refused as `unavailable` may still have been stored, so
            // a count of rows says nothing: wait for each acked one by name.
            let stored: HashMap<String, i64> = rows.into_iter().collect();
            acked.iter().all(|t| stored.contains_key(t)).then_some(stored)
        }
    })
    .await;
    for t in &acked {
        assert_eq!(stored.get(t), Some(&1), "acked {t} stored exactly once");
    }
    eprintln!(
        "{name}: {} acked, {refused} refused as unavailable during the failover, {} of those stored all the same",
        acked.len(),
        stored.len() - acked.len()
    );
}
