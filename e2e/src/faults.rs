//! Faults made on purpose: a persister killed after its transaction reached
//! COMMIT, so the rows are stored and nothing after the commit (events,
//! webhook records, acks) happened.

use std::time::Duration;

use crate::{Stack, WsClient};

/// From now on, each commit that does `op` (`INSERT`, `UPDATE`) on `table`
/// takes 4 s: time to kill the persister after its transaction has reached
/// COMMIT.
pub async fn slow_commits(pool: &sqlx::PgPool, op: &str, table: &str) {
    assert!(
        matches!(op, "INSERT" | "UPDATE"),
        "no slow commits for {op}"
    );
    let trigger = format!(
        "CREATE CONSTRAINT TRIGGER slow_commit AFTER {op} ON {table}
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()"
    );
    for sql in [
        "CREATE OR REPLACE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql
           AS $$ BEGIN PERFORM pg_sleep(4); RETURN NULL; END $$"
            .to_owned(),
        trigger,
    ] {
        // The test's own statements, not input.
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .expect("slow commits");
    }
}

/// Kills the persister while it commits; PostgreSQL finishes the commit
/// without its client (`committed`, a count on `table`, reaches 1), and
/// `unseen` (a member, an event type) does not hear of it. Then commits are
/// quick again, and a new persister starts.
pub async fn replace_the_persister_mid_commit(
    stack: &mut Stack,
    pool: &sqlx::PgPool,
    (table, committed): (&str, &str),
    unseen: Option<(&mut WsClient, &str)>,
) {
    crate::eventually("the persister to be committing", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event = 'PgSleep'",
        )
        .fetch_one(pool)
        .await
        .ok()?;
        (n > 0).then_some(())
    })
    .await;
    stack.persisters.remove(0).process.kill().await;
    crate::eventually("the killed persister's commit to finish", || async {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(committed))
            .fetch_one(pool)
            .await
            .ok()?;
        (n == 1).then_some(())
    })
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP TRIGGER slow_commit ON {table}"
    )))
    .execute(pool)
    .await
    .expect("commits as before");
    if let Some((member, kind)) = unseen {
        member.expect_no(kind, Duration::from_secs(1)).await;
    }
    stack.add_persister().await;
}
