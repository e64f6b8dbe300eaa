//! The gateway: guest sign-in, the WebSocket and the REST API.
//!
//! It checks each request, publishes it as a job to JetStream and answers
//! once JetStream has stored it; it never waits on PostgreSQL on the send
//! path and never writes it. Events from the persister (and from other
//! gateways) arrive on per-room NATS subjects and are fanned out to the
//! local connections of each room by the [`hub`].

pub mod admission;
pub mod app;
pub mod auth;
pub mod batching;
pub mod body;
pub mod config;
pub mod conn;
pub mod dispatch;
pub mod filters;
pub mod http;
pub mod hub;
pub mod keys;
pub mod matching;
pub mod membership;
pub mod moderation;
pub mod openapi;
pub mod origins;
pub mod outbox;
pub mod presence;
pub mod publish;
pub mod rate;
pub mod requests;
pub mod revoke;
pub mod rooms;
pub mod search;
pub mod server_api;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod uploads;
pub mod websocket;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shared::db::{self, Access};
use tokio::net::TcpListener;

use crate::app::{App, Limits};
use crate::config::Config;

/// How long open connections get to finish what they have in hand after
/// the gateway is asked to stop.
const DRAIN_DEADLINE: Duration = Duration::from_secs(6);

/// Serves on `listener` until `shutdown` resolves; then stops accepting,
/// tells every connection to reconnect, lets in-flight requests finish and
/// drains NATS.
///
/// # Errors
/// Bad configuration. Unreachable services are waited for.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let subjects = config.nats.subjects()?;
    let metrics = shared::metrics::install()?;
    telemetry::describe();
    let client = shared::nats::connect(&config.nats, "gateway").await?;
    // Jobs go out on a connection of their own: on the one that brings the
    // room events in, PubAcks waited behind them, and under a fan-out heavy
    // load sends were acked seconds late with both cores half idle.
    let js = shared::nats::jetstream(shared::nats::connect(&config.nats, "gateway-jobs").await?);
    let pool = db::pool(&config.db, Access::ReadOnly, "gateway")?;
    let limits = Limits {
        rate_per_s: config.gateway_rate_per_s,
        rate_burst: config.gateway_rate_burst,
        queue: config.gateway_connection_queue.max(16),
    };
    let app = Arc::new(App::new(
        subjects.clone(),
        client.clone(),
        js.clone(),
        pool.clone(),
        config.keys().await?,
        limits,
        config.gateway_max_connections,
        config.guest_signin(),
        crate::auth::ApiKeys::parse(config.chat_api_keys.as_deref().unwrap_or_default()),
        uploads::Uploads::open(
            &config.chat_upload_dir,
            config.chat_upload_store.as_deref(),
            config.chat_upload_max_bytes,
        )?,
        Duration::from_millis(config.gateway_ack_target_ms),
        config.batching(),
    ));

    app.hub.follow_users().await?;
    revoke::listen(app.clone()).await?;
    let presence = presence::Presence::start(
        app.hub.clone(),
        client.clone(),
        subjects.presence(),
        app.stop.clone(),
    )
    .await;
    let _ = app.presence.set(presence);

    // A server that cannot run the project stops the gateway with its
    // reason instead of leaving it unready for ever.
    let (fatal_tx, mut fatal_rx) = tokio::sync::oneshot::channel();
    tokio::spawn({
        let app = app.clone();
        let nats = config.nats.clone();
        async move {
            match shared::stream::ensure_stream(&app.js, &app.subjects, &nats).await {
                Ok(()) => app.set_stream_ready(),
                Err(err) => {
                    let _ = fatal_tx.send(err);
                }
            }
        }
    });

    let stop = app.stop.clone();
    let stopping = app.clone();
    let (fatal_seen_tx, fatal_seen) = tokio::sync::oneshot::channel();
    let server = warp::serve(http::routes(app.clone(), metrics))
        .incoming(listener)
        .graceful(async move {
            tokio::select! {
                () = shutdown => {}
                Ok(err) = &mut fatal_rx => {
                    let _ = fatal_seen_tx.send(err);
                }
            }
            stop.cancel();
            stopping.hub.close_all(conn::close::SERVER_RESTART);
        })
        .run();
    server.await;

    // Stopped accepting; every connection was told to reconnect when `stop`
    // was cancelled. Let them finish the frame in hand.
    app.sessions.close();
    if tokio::time::timeout(DRAIN_DEADLINE, app.sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = app.hub.connection_count(),
            "connections still open at the drain deadline"
        );
    }
    let jobs = app.js.client();
    let drained = futures::future::join(client.drain(), jobs.drain());
    if tokio::time::timeout(Duration::from_secs(2), drained)
        .await
        .is_err()
    {
        tracing::warn!("NATS drain timed out");
    }
    pool.close().await;
    if let Ok(err) = fatal_seen.await {
        return Err(err.into());
    }
    tracing::info!("gateway stopped");
    Ok(())
}
