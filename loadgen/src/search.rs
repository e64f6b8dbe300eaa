//! `search`: a database of many messages, seeded straight into
//! PostgreSQL (with their search vectors, as the persister writes them),
//! and the latency of `GET /v1/search` over it for one user
//! who is a member of some of its rooms.
//!
//! The text is made of a vocabulary whose words are skewed the way words
//! of real chats are (a few very common, most rare); one message in five is
//! Korean. The queries mix common and rare words, two words, and Korean
//! words and parts of words: the cases a full-text index finds hard (a
//! common term) as well as easy.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;

use crate::{cpu, report, Common};

/// How the database and the searches are shaped.
pub struct Shape {
    pub messages: usize,
    pub rooms: usize,
    /// Rooms the searching user is a member of.
    pub member_of: usize,
    pub queries: usize,
    pub concurrency: usize,
}

const SYLLABLES_A: [&str; 20] = [
    "ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "va", "xu", "ze", "bo", "fi", "gu", "ha",
    "jo", "ku", "le", "mo",
];
const SYLLABLES_B: [&str; 20] = [
    "ra", "to", "ni", "me", "sa", "ko", "li", "pe", "du", "va", "xi", "zo", "be", "fu", "ga", "hi",
    "ju", "ke", "lu", "mo",
];
const ENDINGS: [&str; 5] = ["n", "s", "t", "r", "l"];
const VOCABULARY: usize = 10_000;
const KOREAN: [&str; 20] = [
    "안녕하세요",
    "감사합니다",
    "회의는",
    "내일",
    "오늘",
    "점심",
    "프로젝트",
    "배포했어요",
    "확인",
    "부탁드립니다",
    "좋아요",
    "문서를",
    "검토",
    "일정",
    "변경",
    "고객",
    "서버",
    "장애",
    "해결",
    "축하합니다",
];

/// Word `i` of the vocabulary, as the seeding SQL makes it.
fn word(i: usize) -> String {
    let mut w = format!("{}{}", SYLLABLES_A[i % 20], SYLLABLES_B[(i / 20) % 20]);
    if i >= 400 {
        w.push_str(ENDINGS[(i / 400) % 5]);
        w.push_str(&(i / 2000).to_string());
    }
    w
}

/// Messages seeded per statement.
const CHUNK: usize = 10_000;

/// A tiny deterministic generator: the same queries every run.
struct Draw(u64);

impl Draw {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }
}

/// The kinds of query, each an equal share of the searches.
const KINDS: [&str; 5] = [
    "common word",
    "any word",
    "two words",
    "korean word",
    "korean part",
];

fn query(kind: usize, draw: &mut Draw) -> String {
    match kind {
        0 => word(draw.next(5)),
        1 => word(draw.next(VOCABULARY)),
        2 => format!("{} {}", word(draw.next(100)), word(draw.next(100))),
        3 => KOREAN[draw.next(KOREAN.len())].to_owned(),
        _ => {
            let w: Vec<char> = KOREAN[draw.next(KOREAN.len())].chars().collect();
            let at = draw.next(w.len() - 1);
            let len = 2 + draw.next(w.len() - at - 1);
            w[at..at + len].iter().collect()
        }
    }
}

/// Seeds the database (skipped when it holds the messages already), then
/// runs the searches.
pub async fn run(common: &Common, shape: &Shape) -> anyhow::Result<Value> {
    let url = common
        .database_url
        .as_deref()
        .context("search seeds the database: --database-url")?;
    let pool = PgPoolOptions::new().max_connections(2).connect(url).await?;
    let base = common.bases().into_iter().next().context("a gateway URL")?;
    let http = reqwest::Client::new();
    let (token, user) = crate::client::guest_user(&http, &base, "Searcher").await?;
    seed(&pool, shape).await?;
    join(&pool, shape, &user).await?;
    sqlx::query("VACUUM ANALYZE messages")
        .execute(&pool)
        .await?;

    eprintln!(
        "loadgen: {} searches, {} at a time",
        shape.queries, shape.concurrency
    );
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    let queries: Vec<(usize, String)> = (0..shape.queries)
        .map(|i| (i % KINDS.len(), query(i % KINDS.len(), &mut draw)))
        .collect();
    let cpu_before = cpu::sample(&common.watch);
    let started = Instant::now();
    let timings: Vec<anyhow::Result<(usize, Duration, usize)>> = futures::stream::iter(queries)
        .map(|(kind, q)| {
            let (http, base, token) = (&http, &base, &token);
            async move {
                let t = Instant::now();
                let resp = http
                    .get(format!("{base}/v1/search"))
                    .query(&[("q", q.as_str())])
                    .bearer_auth(token)
                    .send()
                    .await?;
                anyhow::ensure!(resp.status().is_success(), "{q}: {}", resp.status());
                let body: Value = resp.json().await?;
                let hits = body["messages"].as_array().map_or(0, Vec::len);
                Ok((kind, t.elapsed(), hits))
            }
        })
        .buffer_unordered(shape.concurrency.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu::between(&cpu_before, &cpu::sample(&common.watch));
    let mut all = report::histogram();
    let mut by_kind: Vec<_> = KINDS
        .iter()
        .map(|_| (report::histogram(), 0usize))
        .collect();
    for t in timings {
        let (kind, took, hits) = t?;
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        all.record(us)?;
        by_kind[kind].0.record(us)?;
        by_kind[kind].1 += hits;
    }
    let kinds: serde_json::Map<String, Value> = KINDS
        .iter()
        .zip(&by_kind)
        .map(|(name, (h, hits))| {
            let mut s = report::summary(h);
            s["mean_hits"] = json!(*hits as f64 / h.len().max(1) as f64);
            ((*name).to_owned(), s)
        })
        .collect();
    Ok(json!({
        "messages": count(&pool).await?,
        "rooms": shape.rooms,
        "member_of": shape.member_of,
        "searchable_messages": searchable(&pool, shape).await?,
        "searches_per_s": shape.queries as f64 / elapsed,
        "latency": report::summary(&all),
        "kinds": kinds,
        "cpu": cpu,
    }))
}

async fn count(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(pool)
        .await?)
}

/// Messages in the searching user's rooms.
async fn searchable(pool: &sqlx::PgPool, shape: &Shape) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE room_id = ANY($1)")
            .bind(member_rooms(shape))
            .fetch_one(pool)
            .await?,
    )
}

fn member_rooms(shape: &Shape) -> Vec<String> {
    (0..shape.member_of.min(shape.rooms))
        .map(|r| format!("search-{r}"))
        .collect()
}

/// Message `n`'s text: one in five Korean (3-7 of its words), the rest
/// 6-14 words of the vocabulary, word `i` drawn with a probability that
/// falls as `i` grows (`10000 · u³`), as words of real chats go.
fn text(n: usize, draw: &mut Draw) -> String {
    if n.is_multiple_of(5) {
        let words: Vec<&str> = (0..3 + n % 5)
            .map(|_| KOREAN[draw.next(KOREAN.len())])
            .collect();
        words.join(" ")
    } else {
        let words: Vec<String> = (0..6 + n % 9)
            .map(|_| {
                let u = draw.next(1_000_000) as f64 / 1_000_000.0;
                word(((VOCABULARY as f64) * u * u * u) as usize)
            })
            .collect();
        words.join(" ")
    }
}

/// The rooms and messages (with their search vectors, as the persister
/// writes them), the search indexes built once at the end (as a restore
/// would) rather than row by row.
async fn seed(pool: &sqlx::PgPool, shape: &Shape) -> anyhow::Result<()> {
    let have = count(pool).await?;
    if have >= shape.messages as i64 {
        eprintln!("loadgen: {have} messages there already");
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO rooms (id, kind, public, owner_id, created_at, last_seq)
         SELECT 'search-' || r, 'group', true, '00000000-0000-0000-0000-000000000001',
                now() - interval '31 days', $2::bigint / $1 + 1
           FROM generate_series(0, $1 - 1) r ON CONFLICT DO NOTHING",
    )
    .bind(i64::try_from(shape.rooms)?)
    .bind(i64::try_from(shape.messages)?)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DROP INDEX messages_search, messages_created")
        .execute(&mut *tx)
        .await?;
    let started = Instant::now();
    let mut draw = Draw(0x2545_f491_4f6c_dd1d);
    let start = chrono::Utc::now() - chrono::Duration::days(30);
    for from in (0..shape.messages).step_by(CHUNK) {
        let to = (from + CHUNK).min(shape.messages);
        let (mut rooms, mut seqs, mut texts, mut vectors, mut at) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for n in from..to {
            let room = format!("search-{}", n % shape.rooms);
            let t = text(n, &mut draw);
            vectors.push(shared::search::vector(&room, &t));
            texts.push(t);
            rooms.push(room);
            seqs.push(i64::try_from(n / shape.rooms + 1)?);
            at.push(start + chrono::Duration::seconds(2 * i64::try_from(n)?));
        }
        sqlx::query(
            "INSERT INTO messages (id, room_id, seq, sender_id, sender_name, kind, text,
                                   temp_id, created_at, stream_seq, search)
             SELECT gen_random_uuid(), u.room, u.seq, '00000000-0000-0000-0000-000000000002',
                    'Bench', 'text', u.text, gen_random_uuid(), u.at, u.seq, u.search::tsvector
               FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::timestamptz[], $5::text[])
                 AS u(room, seq, text, at, search)",
        )
        .bind(&rooms)
        .bind(&seqs)
        .bind(&texts)
        .bind(&at)
        .bind(&vectors)
        .execute(&mut *tx)
        .await?;
        if to.is_multiple_of(100_000) || to == shape.messages {
            eprintln!(
                "loadgen: {to} messages seeded ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!("loadgen: building the search indexes");
    sqlx::raw_sql(
        "CREATE INDEX messages_search ON messages USING gin (search);
         CREATE INDEX messages_created ON messages (created_at);",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    eprintln!(
        "loadgen: seeded in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Makes the searching user a member of the first `member_of` rooms.
async fn join(pool: &sqlx::PgPool, shape: &Shape, user: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO room_members (room_id, user_id, user_name, role, joined_at)
         SELECT r, $2::uuid, 'Searcher', 'member', now() FROM unnest($1::text[]) r
         ON CONFLICT DO NOTHING",
    )
    .bind(member_rooms(shape))
    .bind(user)
    .execute(pool)
    .await?;
    Ok(())
}

pub fn human(result: &Value) -> String {
    let mut out = format!(
        "{} messages, {} in the user's {} rooms; {:.0} searches/s\n{}",
        result["messages"],
        result["searchable_messages"],
        result["member_of"],
        result["searches_per_s"].as_f64().unwrap_or(0.0),
        report::line("all", &result["latency"]),
    );
    for kind in KINDS {
        out.push('\n');
        out.push_str(&report::line(kind, &result["kinds"][kind]));
        out.push_str(&format!(
            "  hits={:.1}",
            result["kinds"][kind]["mean_hits"].as_f64().unwrap_or(0.0)
        ));
    }
    out.push_str(&format!("\n  cpu: {}", result["cpu"]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_korean_parts_are_what_the_messages_hold() {
        assert_eq!(word(0), "kara");
        assert_eq!(word(21), "loto");
        assert_eq!(word(9999), "momol4");
        let mut draw = Draw(7);
        for _ in 0..200 {
            let part = query(4, &mut draw);
            assert!(part.chars().count() >= 2, "{part}");
            assert!(KOREAN.iter().any(|w| w.contains(&part)), "{part}");
        }
    }
}
