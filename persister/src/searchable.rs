//! Making messages written before search existed searchable: their
//! vectors, filled in at start in small batches (a deployment upgraded
//! with history keeps answering while it runs). Several persisters may
//! run it at once; each batch writes the same vectors.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Messages per transaction.
const BATCH: i64 = 1000;

/// Fills in every missing vector, then returns.
pub async fn backfill(pool: PgPool, stop: CancellationToken) {
    let mut done = 0u64;
    loop {
        if stop.is_cancelled() {
            return;
        }
        match batch(&pool).await {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(err) => {
                tracing::warn!(error = %err, "search backfill failed; trying again");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
    if done > 0 {
        tracing::info!(messages = done, "search vectors filled in");
    }
}

async fn batch(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT id, room_id, text FROM messages
          WHERE search IS NULL AND text IS NOT NULL LIMIT $1",
    )
    .bind(BATCH)
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = rows.iter().map(|(id, _, _)| *id).collect();
    let vectors: Vec<String> = rows
        .iter()
        .map(|(_, room, text)| shared::search::vector(room, text))
        .collect();
    // Only where the text is still what was read (an edit or a delete may
    // have come meanwhile, with its own vector).
    let texts: Vec<&str> = rows.iter().map(|(_, _, text)| text.as_str()).collect();
    sqlx::query(
        "UPDATE messages m SET search = u.search::tsvector
           FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS u(id, search, text)
          WHERE m.id = u.id AND m.search IS NULL AND m.text = u.text",
    )
    .bind(&ids)
    .bind(&vectors)
    .bind(&texts)
    .execute(pool)
    .await?;
    Ok(rows.len() as u64)
}
