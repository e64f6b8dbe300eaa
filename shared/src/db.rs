//! PostgreSQL pools.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::DbConfig;

/// Whether the pool may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    /// Every transaction is read-only: the gateway reads PostgreSQL and never
    /// writes it, even when its role would allow it.
    ReadOnly,
}

/// A lazy pool: no connection is made until the first query, so a binary
/// starts before PostgreSQL is up and `/readyz` tells when it is.
///
/// # Errors
/// Only for a malformed URL.
pub fn pool(config: &DbConfig, access: Access, app: &str) -> anyhow::Result<PgPool> {
    // Every statement is planned for its own parameters. A generic plan
    // cached while a table was small (a fresh database: the first batches)
    // stays a sequential scan while the table grows, until the next
    // ANALYZE: the persister's duplicate check went quadratic that way
    // under load. These are key lookups; planning each costs microseconds.
    // Nor is any of them worth compiling: a plan whose estimate passes
    // `jit_above_cost` (a search over many rooms) would spend tens of
    // milliseconds in LLVM to save less.
    let mut options = PgConnectOptions::from_str(&config.database_url)?
        .application_name(app)
        .options([("plan_cache_mode", "force_custom_plan"), ("jit", "off")]);
    if access == Access::ReadOnly {
        options = options.options([("default_transaction_read_only", "on")]);
    }
    Ok(PgPoolOptions::new()
        .max_connections(config.database_pool_size)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options))
}

/// True when PostgreSQL answers a trivial query.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}

/// How often [`Watch`] asks PostgreSQL, and how long one answer may take.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Whether PostgreSQL answered its last ping. A task asks every second,
/// busy or idle, so `/readyz` follows the database going away and coming
/// back, and answers from this flag at once instead of waiting on a pool
/// that may take seconds to give up.
#[derive(Clone)]
pub struct Watch(Arc<AtomicBool>);

impl Watch {
    /// Starts watching; the task ends when the pool is closed.
    pub fn start(pool: PgPool) -> Self {
        let up = Arc::new(AtomicBool::new(false));
        tokio::spawn({
            let up = up.clone();
            async move {
                let mut tick = tokio::time::interval(WATCH_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !pool.is_closed() {
                    tick.tick().await;
                    let ok = tokio::time::timeout(WATCH_EVERY, ping(&pool))
                        .await
                        .unwrap_or(false);
                    if up.swap(ok, Ordering::Relaxed) != ok {
                        if ok {
                            tracing::info!("PostgreSQL answers");
                        } else {
                            tracing::warn!("PostgreSQL does not answer");
                        }
                    }
                }
            }
        });
        Self(up)
    }

    /// Whether the last ping was answered.
    pub fn up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
