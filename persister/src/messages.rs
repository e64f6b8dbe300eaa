//! New messages and their `seq`: the part of the persister's SQL that
//! inserts messages (see `store` for the rest). Every write is keyed by the
//! ids the gateway chose, so a redelivered or replayed message lands once.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use shared::jobs::NewMessage;
use shared::protocol::Message;
use shared::store::MessageRow;
use sqlx::PgConnection;
use uuid::Uuid;

/// A message job with the position it had in the stream.
pub struct Positioned<'a> {
    pub job: &'a NewMessage,
    pub stream_seq: u64,
    /// See [`crate::apply::StreamJob::redelivered`].
    pub redelivered: bool,
}

/// The messages of a run whose events are to be published.
pub struct Written {
    /// Those of redelivered jobs, found stored already: their events may
    /// never have been published. Each room's in `seq` order; their seqs
    /// are below those of `now`.
    pub before: Vec<Message>,
    /// Those stored now, in the order given.
    pub now: Vec<Message>,
}

/// How new messages get their `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seqs {
    /// The next ones of the room's counter: what the running persister
    /// does, writing the stream in order (so the counter is stream order).
    Next,
    /// The one after the message before it in the room in stream order —
    /// stored, or inserted just before — so a replay after rows were lost
    /// gives each the `seq` it had. Falls back to [`Seqs::Next`] for a
    /// batch whose seqs are taken already (rows written out of order).
    StreamOrder,
}

/// Inserts a run of new messages, each with a `seq` by `rule`. Messages
/// already stored (a redelivery, a replay, a late retry with the same
/// `client_id`) are skipped and take no `seq`.
///
/// # Errors
/// Any database error; the caller's transaction is then rolled back.
pub async fn insert_messages(
    tx: &mut PgConnection,
    batch: &[Positioned<'_>],
    rule: Seqs,
) -> Result<Written, sqlx::Error> {
    let ids: Vec<Uuid> = batch.iter().map(|m| m.job.id).collect();
    let existing: HashMap<Uuid, i64> =
        sqlx::query_as::<_, (Uuid, i64)>("SELECT id, seq FROM messages WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();

    let told_again: Vec<Uuid> = batch
        .iter()
        .filter(|m| m.redelivered && existing.contains_key(&m.job.id))
        .map(|m| m.job.id)
        .collect();
    let before = if told_again.is_empty() {
        Vec::new()
    } else {
        messages_by_id(tx, &told_again).await?
    };

    // New messages in order, without duplicates inside the batch either.
    let mut seen = HashSet::with_capacity(batch.len());
    let fresh: Vec<&Positioned<'_>> = batch
        .iter()
        .filter(|m| !existing.contains_key(&m.job.id) && seen.insert(m.job.id))
        .collect();
    if fresh.is_empty() {
        return Ok(Written {
            before,
            now: Vec::new(),
        });
    }

    let seqs = match rule {
        Seqs::StreamOrder => match stream_order_seqs(tx, batch, &existing, &fresh).await? {
            Some(seqs) => seqs,
            // The rows around were not written in stream order (a failover
            // wrote a later job first): no gap to restore into.
            None => counter_seqs(tx, &fresh).await?,
        },
        Seqs::Next => counter_seqs(tx, &fresh).await?,
    };

    let room_ids: Vec<&str> = fresh.iter().map(|m| m.job.room.as_str()).collect();
    let sender_ids: Vec<Uuid> = fresh.iter().map(|m| m.job.sender.id).collect();
    let sender_names: Vec<&str> = fresh.iter().map(|m| m.job.sender.name_or_empty()).collect();
    // Arrays of arrays are not a thing UNNEST takes: each message's
    // mentions travel as a JSON array.
    let mentions: Vec<serde_json::Value> = fresh
        .iter()
        .map(|m| serde_json::to_value(&m.job.mentions).unwrap_or_default())
        .collect();
    let sender_avatars: Vec<Option<&str>> = fresh
        .iter()
        .map(|m| m.job.sender.avatar_url.as_deref())
        .collect();
    let kinds: Vec<&str> = fresh.iter().map(|m| m.job.kind.as_str()).collect();
    let texts: Vec<&str> = fresh.iter().map(|m| m.job.text.as_str()).collect();
    let reply_to: Vec<Option<Uuid>> = fresh.iter().map(|m| m.job.reply_to).collect();
    let thread_of: Vec<Option<Uuid>> = fresh.iter().map(|m| m.job.thread_of).collect();
    let attachments: Vec<serde_json::Value> = fresh
        .iter()
        .map(|m| serde_json::to_value(&m.job.attachments).unwrap_or_default())
        .collect();
    let temp_ids: Vec<Uuid> = fresh.iter().map(|m| m.job.temp_id).collect();
    let client_ids: Vec<Option<&str>> = fresh.iter().map(|m| m.job.client_id.as_deref()).collect();
    let created: Vec<DateTime<Utc>> = fresh.iter().map(|m| m.job.created_at).collect();
    let stream_seqs: Vec<i64> = fresh.iter().map(|m| m.stream_seq as i64).collect();
    let fresh_ids: Vec<Uuid> = fresh.iter().map(|m| m.job.id).collect();
    let searched: Vec<String> = fresh
        .iter()
        .map(|m| shared::search::vector(&m.job.room, &m.job.text))
        .collect();

    sqlx::query(
        "INSERT INTO messages (id, room_id, seq, sender_id, sender_name, kind, text, reply_to,
                               attachments, temp_id, client_id, created_at, stream_seq,
                               sender_avatar, mentions, thread_of, search)
         SELECT u.id, u.room, u.seq, u.sender, u.sender_name, u.kind, u.text, u.reply_to,
                u.attachments, u.temp_id, u.client_id, u.created_at, u.stream_seq,
                u.sender_avatar, ARRAY(SELECT jsonb_array_elements_text(u.mentions)::uuid),
                u.thread_of, u.search::tsvector
           FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::uuid[], $5::text[],
                       $6::text[], $7::text[], $8::uuid[], $9::jsonb[], $10::uuid[],
                       $11::text[], $12::timestamptz[], $13::int8[], $14::text[], $15::jsonb[],
                       $16::uuid[], $17::text[])
                AS u(id, room, seq, sender, sender_name, kind, text, reply_to, attachments,
                     temp_id, client_id, created_at, stream_seq, sender_avatar, mentions,
                     thread_of, search)",
    )
    .bind(&fresh_ids)
    .bind(&room_ids)
    .bind(&seqs)
    .bind(&sender_ids)
    .bind(&sender_names)
    .bind(&kinds)
    .bind(&texts)
    .bind(&reply_to)
    .bind(&attachments)
    .bind(&temp_ids)
    .bind(&client_ids)
    .bind(&created)
    .bind(&stream_seqs)
    .bind(&sender_avatars)
    .bind(&mentions)
    .bind(&thread_of)
    .bind(&searched)
    .execute(&mut *tx)
    .await?;

    let now = fresh
        .iter()
        .zip(seqs)
        .map(|(m, seq)| stored_message(m.job, seq))
        .collect();
    Ok(Written { before, now })
}

/// Stored messages by id, each room's in `seq` order.
async fn messages_by_id(tx: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Message>, sqlx::Error> {
    let rows: Vec<MessageRow> = sqlx::query_as(concat!(
        "SELECT ",
        shared::message_columns!(),
        " FROM messages WHERE id = ANY($1) ORDER BY room_id, seq"
    ))
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows.into_iter().map(Message::from).collect())
}

/// The seqs of `fresh` by [`Seqs::StreamOrder`]; `None` when one of them is
/// taken already.
async fn stream_order_seqs(
    tx: &mut PgConnection,
    batch: &[Positioned<'_>],
    existing: &HashMap<Uuid, i64>,
    fresh: &[&Positioned<'_>],
) -> Result<Option<Vec<i64>>, sqlx::Error> {
    let mut cursor = lock_rooms_and_find_anchors(tx, fresh).await?;
    let mut given = HashSet::with_capacity(fresh.len());
    let mut seqs: Vec<i64> = Vec::with_capacity(fresh.len());
    for m in batch {
        let Some(at) = cursor.get_mut(m.job.room.as_str()) else {
            continue;
        };
        match existing.get(&m.job.id) {
            Some(&stored) => *at = (*at).max(stored),
            None if given.insert(m.job.id) => {
                *at += 1;
                seqs.push(*at);
            }
            None => {}
        }
    }
    let rooms: Vec<&str> = fresh.iter().map(|m| m.job.room.as_str()).collect();
    let taken: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM messages m
                          JOIN UNNEST($1::text[], $2::int8[]) AS u(room, seq)
                            ON m.room_id = u.room AND m.seq = u.seq)",
    )
    .bind(&rooms)
    .bind(&seqs)
    .fetch_one(&mut *tx)
    .await?;
    if taken {
        return Ok(None);
    }
    record_last_seqs(tx, &cursor).await?;
    Ok(Some(seqs))
}

/// The seqs of `fresh` by [`Seqs::Next`], in order.
async fn counter_seqs(
    tx: &mut PgConnection,
    fresh: &[&Positioned<'_>],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut next_seq = reserve_seqs(tx, fresh).await?;
    Ok(fresh
        .iter()
        .map(|m| {
            // Every room in `fresh` got a range from reserve_seqs.
            let seq = next_seq
                .get_mut(m.job.room.as_str())
                .expect("room reserved");
            *seq += 1;
            *seq
        })
        .collect())
}

/// Moves each room's `last_seq` forward by its number of new messages in
/// one statement, and returns for each room the seq just before its range.
/// The row lock this takes is what keeps two writers of one room from
/// handing out the same seq.
async fn reserve_seqs(
    tx: &mut PgConnection,
    fresh: &[&Positioned<'_>],
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut counts: HashMap<&str, (i64, DateTime<Utc>)> = HashMap::new();
    for m in fresh {
        let entry = counts
            .entry(m.job.room.as_str())
            .or_insert((0, m.job.created_at));
        entry.0 += 1;
        entry.1 = entry.1.max(m.job.created_at);
    }
    let rooms: Vec<&str> = counts.keys().copied().collect();
    let ns: Vec<i64> = rooms.iter().map(|r| counts[r].0).collect();
    let latest: Vec<DateTime<Utc>> = rooms.iter().map(|r| counts[r].1).collect();
    // A message for a room no join created (a replay that starts after the
    // room's creation fell out of the stream) creates it as a public group.
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO rooms AS r (id, kind, public, created_at, last_seq, last_message_at)
         SELECT id, 'group', true, at, n, at FROM UNNEST($1::text[], $2::int8[], $3::timestamptz[]) AS u(id, n, at)
         ON CONFLICT (id) DO UPDATE
            SET last_seq = r.last_seq + EXCLUDED.last_seq,
                last_message_at = GREATEST(r.last_message_at, EXCLUDED.last_message_at)
         RETURNING id, last_seq",
    )
    .bind(&rooms)
    .bind(&ns)
    .bind(&latest)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(room, last)| {
            let n = counts[room.as_str()].0;
            (room, last - n)
        })
        .collect())
}

/// Takes each room's row lock (creating a room no join created: a replay
/// that starts after the room's creation fell out of the stream), then
/// finds, for each room, the `seq` of its last stored message before the
/// room's first fresh one in stream order (0 when none). The lock comes
/// first, so that the search sees every message another writer of the
/// room committed.
async fn lock_rooms_and_find_anchors(
    tx: &mut PgConnection,
    fresh: &[&Positioned<'_>],
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut first: HashMap<&str, (u64, DateTime<Utc>)> = HashMap::new();
    for m in fresh {
        let entry = first
            .entry(m.job.room.as_str())
            .or_insert((m.stream_seq, m.job.created_at));
        entry.0 = entry.0.min(m.stream_seq);
        entry.1 = entry.1.max(m.job.created_at);
    }
    let rooms: Vec<&str> = first.keys().copied().collect();
    let from: Vec<i64> = rooms.iter().map(|r| first[r].0 as i64).collect();
    let latest: Vec<DateTime<Utc>> = rooms.iter().map(|r| first[r].1).collect();
    sqlx::query(
        "INSERT INTO rooms AS r (id, kind, public, created_at, last_message_at)
         SELECT id, 'group', true, at, at FROM UNNEST($1::text[], $2::timestamptz[]) AS u(id, at)
         ON CONFLICT (id) DO UPDATE
            SET last_message_at = GREATEST(r.last_message_at, EXCLUDED.last_message_at)",
    )
    .bind(&rooms)
    .bind(&latest)
    .execute(&mut *tx)
    .await?;
    sqlx::query_as(
        "SELECT u.room,
                COALESCE((SELECT m.seq FROM messages m
                           WHERE m.room_id = u.room AND m.stream_seq < u.from_seq
                           ORDER BY m.seq DESC LIMIT 1), 0)
           FROM UNNEST($1::text[], $2::int8[]) AS u(room, from_seq)",
    )
    .bind(&rooms)
    .bind(&from)
    .fetch_all(&mut *tx)
    .await
    .map(|rows: Vec<(String, i64)>| rows.into_iter().collect())
}

/// Moves each room's `last_seq` up to the highest `seq` it now has.
async fn record_last_seqs(
    tx: &mut PgConnection,
    last: &HashMap<String, i64>,
) -> Result<(), sqlx::Error> {
    let rooms: Vec<&str> = last.keys().map(String::as_str).collect();
    let seqs: Vec<i64> = rooms.iter().map(|r| last[*r]).collect();
    sqlx::query(
        "UPDATE rooms r SET last_seq = GREATEST(r.last_seq, u.seq)
           FROM UNNEST($1::text[], $2::int8[]) AS u(id, seq) WHERE r.id = u.id",
    )
    .bind(&rooms)
    .bind(&seqs)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn stored_message(job: &NewMessage, seq: i64) -> Message {
    Message {
        id: job.id,
        seq,
        room: job.room.clone(),
        sender: job.sender.clone(),
        kind: job.kind,
        text: Some(job.text.clone()),
        reply_to: job.reply_to,
        attachments: job.attachments.clone(),
        temp_id: job.temp_id,
        client_id: job.client_id.clone(),
        created_at: job.created_at,
        edited_at: None,
        deleted_at: None,
        mentions: job.mentions.clone(),
        reactions: shared::protocol::Reactions::new(),
        thread_of: job.thread_of,
        // A reply has no thread of its own; a new root has no replies yet.
        thread: None,
    }
}
