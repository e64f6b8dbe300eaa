//! PostgreSQL pools.

use std::str::FromStr;
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
    let mut options = PgConnectOptions::from_str(&config.database_url)?
        .application_name(app)
        .options([("plan_cache_mode", "force_custom_plan")]);
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
