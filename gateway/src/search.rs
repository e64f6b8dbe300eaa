//! `GET /v1/search`: messages of the user's rooms that hold the query's
//! terms, best first, by PostgreSQL's full-text search over the vectors
//! the persister writes (terms as [`shared::search`] makes them).

use shared::protocol::{ApiError, Message, SearchQuery, User};
use shared::store::MessageRow;
use shared::validate;
use sqlx::PgPool;

use crate::app::App;
use crate::membership::{self, ensure_member};
use crate::requests::HistoryPage;
use crate::store::db_unavailable;

/// Longest query, in characters.
const MAX_QUERY: usize = 200;
const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 50;
/// The newest matches ranked against each other: a term common in the
/// user's rooms costs the reading of this many matches, not all of them.
const CANDIDATES: i64 = 100;

/// The matching messages of the rooms `user` belongs to now (as the
/// stream says: a room left or a ban acked a moment ago is not searched).
///
/// # Errors
/// `bad_request` for a missing, empty or too long `q`, a bad `limit` or
/// room id; `not_a_member` for a `room` of someone else's; `unavailable`.
pub async fn search(app: &App, user: &User, q: &SearchQuery) -> Result<HistoryPage, ApiError> {
    let text = query_text(q.q.as_deref())?;
    let limit = match q.limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return Err(ApiError::bad_request("limit is 1-50")),
    };
    let rooms = match q.room.as_deref() {
        Some(room) => {
            validate::room_id(room)?;
            ensure_member(app, user, room).await?;
            vec![room.to_owned()]
        }
        None => membership::rooms_of(app, user.id).await?,
    };
    if rooms.is_empty() {
        return Ok(HistoryPage {
            messages: Vec::new(),
        });
    }
    let Some(query) = shared::search::query(text, &rooms) else {
        // Only a single Korean, Japanese or Chinese character: no term.
        return Ok(HistoryPage {
            messages: Vec::new(),
        });
    };
    let messages = matching(&app.pool, &query, &rooms, limit)
        .await
        .map_err(db_unavailable)?;
    Ok(HistoryPage { messages })
}

/// The query, trimmed; refused unless it has something to look for.
fn query_text(q: Option<&str>) -> Result<&str, ApiError> {
    let q = q.map(str::trim).unwrap_or_default();
    if q.is_empty() {
        return Err(ApiError::bad_request(
            "q is required: the words to look for",
        ));
    }
    if q.chars().count() > MAX_QUERY {
        return Err(ApiError::bad_request(format!(
            "q is at most {MAX_QUERY} characters"
        )));
    }
    if q.contains('\0') || !q.chars().any(char::is_alphanumeric) {
        return Err(ApiError::bad_request("q has no word to look for"));
    }
    Ok(q)
}

/// The newest [`CANDIDATES`] matches of `query` (`tsquery` text, of
/// [`shared::search::query`]) in `rooms`, the `limit` best of them
/// by `ts_rank` (ties: newest first). Only the candidates are ranked: the
/// query names every term once per room, and ranking costs in proportion.
///
/// Each search is planned for its own query (the pool's
/// `plan_cache_mode`), whose terms' frequencies the planner knows: a term
/// common in the user's rooms reads the newest messages backwards, a rare
/// one the index.
async fn matching(
    pool: &PgPool,
    query: &str,
    rooms: &[String],
    limit: i64,
) -> Result<Vec<Message>, sqlx::Error> {
    let rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        shared::message_columns!(),
        " FROM messages JOIN (
             SELECT m.id AS hit, m.created_at AS at
               FROM messages m
              WHERE m.search @@ $1::tsquery
                AND m.room_id = ANY($2) AND m.deleted_at IS NULL
              ORDER BY m.created_at DESC
              LIMIT $4) newest ON messages.id = newest.hit
         ORDER BY ts_rank(messages.search, $1::tsquery) DESC, newest.at DESC
         LIMIT $3"
    ))
    .bind(query)
    .bind(rooms)
    .bind(limit)
    .bind(CANDIDATES)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Message::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_needs_something_to_look_for_and_a_bound() {
        assert_eq!(query_text(Some("  hello  ")).unwrap(), "hello");
        assert_eq!(query_text(Some("안녕")).unwrap(), "안녕");
        for bad in [None, Some(""), Some("   "), Some("?!"), Some("a\0b")] {
            assert!(query_text(bad).is_err(), "{bad:?}");
        }
        assert!(query_text(Some(&"a".repeat(201))).is_err());
        assert!(query_text(Some(&"a".repeat(200))).is_ok());
    }
}
