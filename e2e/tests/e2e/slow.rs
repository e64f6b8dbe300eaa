//! A connection that stops reading does not slow its room.

use std::time::Duration;

use e2e::{Stack, WsClient};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const FLOOD: usize = 20_000;
const SENDERS: usize = 2;

/// Sends its share of the flood without waiting for each ack, then checks
/// every ack.
async fn flood(mut c: WsClient, room: &'static str, share: usize) {
    let refs: Vec<String> = (0..share)
        .map(|i| {
            c.send(
                "message:send",
                json!({"room": room, "text": format!("{i}")}),
            )
        })
        .collect();
    for r in refs {
        let reply = c.reply(&r).await;
        assert_eq!(reply["type"], "ack", "{reply}");
    }
}

/// Receives the whole flood in order; returns each message's delivery
/// latency in ms (receipt minus created_at, one clock).
async fn receive(mut c: WsClient) -> Vec<i64> {
    let mut last = 0;
    let mut latencies = Vec::with_capacity(FLOOD);
    while latencies.len() < FLOOD {
        let v = c
            .find_within(Duration::from_secs(90), "the flood", |v| {
                v["type"] == "message:persisted"
            })
            .await;
        let m = &v["data"]["message"];
        let seq = m["seq"].as_i64().unwrap();
        assert!(seq > last, "out of order: {seq} after {last}");
        last = seq;
        let created: chrono::DateTime<chrono::Utc> =
            m["created_at"].as_str().unwrap().parse().unwrap();
        latencies.push((chrono::Utc::now() - created).num_milliseconds());
    }
    latencies
}

/// Waits until the gateway reports a connection cut off as too slow, then
/// reads `slow` to its close frame and returns the close code.
async fn close_code_once_cut_off<S>(mut slow: S, gateway: String) -> Option<u16>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    e2e::eventually_within(Duration::from_secs(60), "a slow disconnect", || async {
        let cut = e2e::metric(&gateway, "gateway_slow_disconnects_total").await;
        cut.filter(|n| *n >= 1.0)
    })
    .await;
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(10), slow.next()).await {
        match frame {
            Ok(Message::Close(Some(c))) => return Some(u16::from(c.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

fn p90(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v[v.len() * 9 / 10]
}

#[tokio::test]
async fn a_reader_that_stops_is_cut_off_and_the_room_goes_on() {
    // A queue of 4,096 frames: the stalled reader is cut off all the same
    // (the flood is 20,000), while the readers that keep up, on a machine
    // the flood saturates, have room for a scheduling hiccup.
    let env = [
        e2e::procs::UNTHROTTLED,
        &[("GATEWAY_CONNECTION_QUEUE", "4096")],
    ]
    .concat();
    let stack = Stack::build(&e2e::nats_url(), 1, 1, &env).await;
    // Two rooms flooded at once: "stalled" has a member who stops reading,
    // "healthy" has none. The same machine load falls on both.
    let mut fast_stalled = stack.connect("Fast-1").await;
    fast_stalled.join("stalled").await;
    let mut fast_healthy = stack.connect("Fast-2").await;
    fast_healthy.join("healthy").await;
    let slow_user = e2e::guest(&stack.gateway().url, Some("Slow")).await;
    let url = format!("{}?token={}", stack.gateway().ws_url(), slow_user.token);
    let (mut slow, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    slow.send(Message::text(
        json!({"type": "room:join", "ref": "j", "data": {"room": "stalled"}}).to_string(),
    ))
    .await
    .unwrap();
    // From here on the slow connection reads nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = stack.gateway().process.rss_kib().expect("gateway memory");

    // Every sender is connected before any flood starts, so both rooms'
    // floods begin together and meet the same machine.
    let mut clients = Vec::new();
    for n in 0..SENDERS {
        for room in ["stalled", "healthy"] {
            let mut c = stack.connect(&format!("sender-{room}-{n}")).await;
            c.join(room).await;
            clients.push((c, room));
        }
    }
    let senders: Vec<_> = clients
        .into_iter()
        .map(|(c, room)| tokio::spawn(flood(c, room, FLOOD / SENDERS)))
        .collect();
    // Once cut off, the slow client comes back to read what its socket
    // holds, up to the close frame that says why.
    let told = tokio::spawn(close_code_once_cut_off(slow, stack.gateway().url.clone()));
    let stalled = tokio::spawn(receive(fast_stalled));
    let healthy = tokio::spawn(receive(fast_healthy));
    let (stalled, healthy) = (p90(stalled.await.unwrap()), p90(healthy.await.unwrap()));
    for s in senders {
        s.await.unwrap();
    }
    let rss_after = stack.gateway().process.rss_kib().expect("gateway memory");
    eprintln!("flood of {FLOOD} per room: p90 delivery {stalled} ms with a stalled reader, {healthy} ms without; gateway RSS {rss_before} -> {rss_after} KiB");
    assert!(
        stalled <= healthy * 2 + 250,
        "the stalled reader's room is slower: p90 {stalled} ms against {healthy} ms"
    );

    let code = told.await.unwrap();
    assert_eq!(
        code,
        Some(4008),
        "the slow reader is told why it was cut off"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "gateway memory grew from {rss_before} KiB to {rss_after} KiB"
    );

    // It reconnects and catches up.
    let mut again = WsClient::connect(&stack.gateway().ws_url(), slow_user).await;
    let page = again
        .ok("history:fetch", json!({"room": "stalled", "limit": 1}))
        .await;
    assert_eq!(e2e::seqs(&page), vec![FLOOD as i64]);
}
