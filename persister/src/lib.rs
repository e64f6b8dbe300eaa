//! The persister: the only writer of PostgreSQL.
//!
//! It pulls jobs from the JetStream stream through a durable consumer,
//! writes each batch in one transaction, publishes the resulting events
//! (`message:persisted`, `room:joined`, …) on core NATS for the gateways,
//! and only then acks the batch. A crash anywhere in between means a
//! redelivery, which the database's unique keys absorb.

pub mod apply;
pub mod config;
pub mod consumer;
pub mod events;
pub mod leases;
pub mod messages;
pub mod moderation;
pub mod online;
pub mod range;
pub mod reactions;
pub mod replay;
pub mod searchable;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shared::db::{self, Access};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::consumer::Worker;
use crate::state::State;

/// Runs the persister until `shutdown` resolves, then stops taking jobs,
/// finishes the batch in hand and returns.
///
/// # Errors
/// Bad configuration (stream name, URLs, webhooks). Unreachable services
/// are waited for, never an error.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let subjects = config.nats.subjects()?;
    let webhooks = config.webhooks.webhooks()?;
    let metrics = shared::metrics::install()?;
    telemetry::describe();
    let client = shared::nats::connect(&config.nats, "persister").await?;
    let js = shared::nats::jetstream(client.clone());
    let pool = db::pool(&config.db, Access::ReadWrite, "persister")?;
    let state = State::new(client.clone(), db::Watch::start(pool.clone()));

    let stop = CancellationToken::new();
    let http = {
        let routes = shared::health::routes(Arc::new(state.clone()), metrics);
        let stop = stop.clone();
        tokio::spawn(
            warp::serve(routes)
                .incoming(listener)
                .graceful(async move { stop.cancelled().await })
                .run(),
        )
    };
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    });

    if wait_for_schema(&pool, &stop).await {
        state.set_schema_ready();
        tokio::spawn(searchable::backfill(pool.clone(), stop.clone()));
        tokio::select! {
            ready = shared::stream::ensure_stream(&js, &subjects, &config.nats) => {
                if let Err(err) = ready {
                    stop.cancel();
                    let _ = http.await;
                    return Err(err.into());
                }
            }
            () = stop.cancelled() => {}
        }
        let hooks = match &webhooks {
            Some(w) => {
                Some(start_webhooks(&config, w, &js, &client, &pool, &subjects, &stop).await?)
            }
            None => None,
        };
        let worker = Worker {
            js,
            client: client.clone(),
            pool: pool.clone(),
            subjects,
            state,
            max_batch: config.persister_max_batch.max(1),
            replicas: config.nats.chat_stream_replicas,
            hooks,
        };
        leases::run(worker, stop.clone()).await;
    }

    stop.cancel();
    let _ = http.await;
    // Acks are publishes: drain sends whatever is still buffered.
    if let Err(err) = tokio::time::timeout(Duration::from_secs(3), client.drain()).await {
        tracing::warn!(error = %err, "NATS drain timed out");
    }
    pool.close().await;
    tracing::info!("persister stopped");
    Ok(())
}

/// Creates the hook stream and the receivers' consumers (retrying until
/// NATS takes them) and starts following presence.
async fn start_webhooks(
    config: &Config,
    webhooks: &webhooks::Webhooks,
    js: &async_nats::jetstream::Context,
    client: &async_nats::Client,
    pool: &sqlx::PgPool,
    subjects: &shared::subjects::Subjects,
    stop: &CancellationToken,
) -> anyhow::Result<consumer::Hooks> {
    let replicas = config.nats.chat_stream_replicas;
    while let Err(err) = webhooks::record::ensure(js, subjects, &webhooks.receivers, replicas).await
    {
        tracing::warn!(error = %err, "webhook stream not ready");
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    let online = online::Online::start(client.clone(), subjects.presence(), stop.clone()).await?;
    tracing::info!(receivers = ?webhooks.receivers, "delivering webhooks");
    Ok(consumer::Hooks {
        recorder: webhooks::record::Recorder {
            js: js.clone(),
            subjects: subjects.clone(),
        },
        deliverer: Arc::new(webhooks::deliver::Deliverer {
            js: js.clone(),
            subjects: subjects.clone(),
            pool: pool.clone(),
            online,
            http: webhooks::deliver::Deliverer::http_client()?,
            secret: webhooks.secret.clone(),
        }),
        receivers: webhooks.receivers.clone(),
    })
}

/// Creates the schema, retrying until PostgreSQL answers. False if stopped
/// first.
async fn wait_for_schema(pool: &sqlx::PgPool, stop: &CancellationToken) -> bool {
    let mut delay = Duration::from_millis(100);
    loop {
        match store::migrate(pool).await {
            Ok(()) => {
                tracing::info!("schema ready");
                return true;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "PostgreSQL not ready");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// `persister migrate`: the schema only.
///
/// # Errors
/// When PostgreSQL is unreachable or a migration fails.
pub async fn migrate_only(config: &Config) -> anyhow::Result<()> {
    let pool = db::pool(&config.db, Access::ReadWrite, "persister-migrate")?;
    store::migrate(&pool)
        .await
        .context("migrating the schema")?;
    pool.close().await;
    tracing::info!("schema is up to date");
    Ok(())
}
