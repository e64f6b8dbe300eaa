//! `connections`: N idle connections on one gateway, and the gateway's
//! memory per connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::client::Seen;
use crate::cpu;
use crate::throughput::source;
use crate::Common;

/// Sign-ins and connections in flight at once.
const CONCURRENCY: usize = 64;

/// Opens `count` connections of as many guests, holds them idle for
/// `hold_s`, and reports how many stayed open and what the gateway's
/// resident memory grew by per connection.
pub async fn run(
    common: &Common,
    count: usize,
    hold_s: f64,
    gateway_pid: u32,
) -> anyhow::Result<Value> {
    let base = common.bases().into_iter().next().context("a gateway URL")?;
    let http = reqwest::Client::new();
    let rss_before = cpu::rss_kib(gateway_pid).context("the gateway's memory")?;
    let before = metrics_page(&http, &base).await?;
    let closed = Arc::new(AtomicUsize::new(0));
    eprintln!("loadgen: opening {count} idle connections");
    let started = Instant::now();
    let cpu_before = cpu::sample(&common.watch);
    let sockets: Vec<tokio::task::JoinHandle<()>> = futures::stream::iter(0..count)
        .map(|i| {
            let (http, base, closed) = (&http, &base, closed.clone());
            let protocol = common.protocol;
            async move {
                let name = format!("idle {i}");
                let mut ws = protocol.connect(http, base, &name, source(i)).await?;
                // Read (and so answer pings) until the server closes.
                anyhow::Ok(tokio::spawn(async move {
                    while let Some(Ok(msg)) = ws.next().await {
                        if let Message::Text(t) = &msg {
                            if let Seen::Ping = protocol.read(t) {
                                let _ = ws.send(Message::text("3")).await;
                            }
                        }
                    }
                    closed.fetch_add(1, Ordering::Relaxed);
                }))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let connect_s = started.elapsed().as_secs_f64();
    eprintln!("loadgen: {count} open in {connect_s:.1} s; holding them {hold_s} s");
    tokio::time::sleep(Duration::from_secs_f64(hold_s)).await;
    let rss_after = cpu::rss_kib(gateway_pid).context("the gateway's memory")?;
    let cpu = cpu::between(&cpu_before, &cpu::sample(&common.watch));
    let held = count - closed.load(Ordering::Relaxed);
    let after = metrics_page(&http, &base).await?;
    let open_per_gateway = gauge(&after, "gateway_connections");
    let per_connection = |name: &str| {
        gauge(&before, name)
            .zip(gauge(&after, name))
            .map(|(b, a)| (a - b) / count as f64)
    };
    let tasks_per_conn = per_connection("runtime_tasks_alive");
    let heap_per_conn = per_connection("heap_allocated_bytes").map(f64::round);
    for s in &sockets {
        s.abort();
    }
    let per_conn = (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / count as f64;
    Ok(json!({
        "connections": count, "held": held,
        "gateway_reports_open": open_per_gateway,
        "connect_s": connect_s, "hold_s": hold_s,
        "gateway_rss_before_kib": rss_before, "gateway_rss_after_kib": rss_after,
        "bytes_per_connection": per_conn.round(),
        "tasks_per_connection": tasks_per_conn,
        "heap_bytes_per_connection": heap_per_conn,
        "cpu_percent": cpu,
    }))
}

pub fn human(r: &Value) -> String {
    format!(
        "{} idle connections: {} held ({} by the gateway's count), opened in {:.1} s\n  gateway RSS {} -> {} KiB: {} bytes per connection\n  live heap {} bytes and {} tasks per connection\n  cpu % of one core: {}",
        r["connections"], r["held"], r["gateway_reports_open"], r["connect_s"].as_f64().unwrap_or(0.0),
        r["gateway_rss_before_kib"], r["gateway_rss_after_kib"], r["bytes_per_connection"],
        r["heap_bytes_per_connection"], r["tasks_per_connection"], r["cpu_percent"]
    )
}

/// The gateway's `/metrics` page.
async fn metrics_page(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    Ok(http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?)
}

/// A gauge of a `/metrics` page; `None` if the page does not have it.
fn gauge(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
}
