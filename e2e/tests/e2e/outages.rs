//! NATS going away and coming back.

use std::time::{Duration, Instant};

use e2e::{http, NatsServer, Stack};
use serde_json::json;

async fn readyz(url: &str) -> u16 {
    http()
        .get(format!("{url}/readyz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn while_nats_is_down_sends_get_unavailable_and_after_it_returns_they_are_acked() {
    let mut nats = NatsServer::start("nats-outage").await;
    let stack = Stack::build(&nats.url, 1, 1, &[]).await;
    let mut ann = stack.connect("Ann").await;
    ann.join("outage").await;
    let t = ann.say("outage", "before").await;
    ann.persisted(&t).await;

    nats.kill().await;
    let started = Instant::now();
    let reply = ann
        .request("message:send", json!({"room": "outage", "text": "during"}))
        .await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["data"]["code"], "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "within a few seconds: {:?}",
        started.elapsed()
    );
    e2e::eventually("gateway readyz 503", || async {
        (readyz(&stack.gateway().url).await == 503).then_some(())
    })
    .await;
    e2e::eventually("persister readyz 503", || async {
        (readyz(&stack.persisters[0].url).await == 503).then_some(())
    })
    .await;

    nats.restart().await;
    e2e::eventually("gateway ready again", || async {
        (readyz(&stack.gateway().url).await == 200).then_some(())
    })
    .await;
    let t = ann.say("outage", "after").await;
    let m = ann.persisted(&t).await;
    assert_eq!(m["seq"], 2, "the refused send was not stored");
    let page = ann.ok("history:fetch", json!({"room": "outage"})).await;
    let texts = e2e::texts(&page);
    assert_eq!(texts, ["before", "after"]);
}

#[tokio::test]
async fn a_gateway_started_before_nats_waits_for_it() {
    let mut nats = NatsServer::start("nats-late").await;
    nats.kill().await;
    let db = e2e::db::TestDb::create().await;
    let stream = format!("T{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let config = e2e::procs::StackConfig {
        nats_url: nats.url.clone(),
        stream,
        database_url: db.url(),
        gateway_database_url: db.url(),
        env: vec![],
        logs: std::env::temp_dir(),
    };
    let gw = e2e::Gateway::start_unready(&config, 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(readyz(&gw.url).await, 503, "not ready without NATS");
    nats.restart().await;
    e2e::eventually("ready once NATS is up", || async {
        (readyz(&gw.url).await == 200).then_some(())
    })
    .await;
}

/// Makes the test's database refuse connections (and drops the open ones):
/// to its persister, PostgreSQL is down.
async fn database_reachable(db: &e2e::db::TestDb, yes: bool) {
    let admin = sqlx::PgPool::connect(&e2e::admin_database_url())
        .await
        .unwrap();
    let sql = format!("ALTER DATABASE {} ALLOW_CONNECTIONS {yes}", db.name);
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&admin)
        .await
        .unwrap();
    if !yes {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(&db.name)
            .execute(&admin)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn while_postgresql_is_down_sends_are_acked_and_persisted_once_when_it_returns() {
    let stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    ann.join("pg-outage").await;
    let t = ann.say("pg-outage", "before").await;
    ann.persisted(&t).await;

    database_reachable(&stack.db, false).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        acked.push(ann.say("pg-outage", &format!("during {i}")).await);
    }
    let persister = &stack.persisters[0].url;
    e2e::eventually("the persister to report PostgreSQL failing", || async {
        (readyz(persister).await == 503).then_some(())
    })
    .await;
    assert_eq!(
        e2e::metric(persister, "persister_database_up").await,
        Some(0.0)
    );
    assert!(e2e::metric(persister, "persister_db_errors_total")
        .await
        .is_some_and(|n| n >= 1.0));
    ann.expect_no("message:persisted", Duration::from_millis(300))
        .await;

    database_reachable(&stack.db, true).await;
    for t in &acked {
        ann.persisted(t).await;
    }
    e2e::eventually("the persister ready again", || async {
        (readyz(persister).await == 200).then_some(())
    })
    .await;
    let pool = stack.db.pool().await;
    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM messages WHERE room_id = 'pg-outage' ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(seqs, (1..=21).collect::<Vec<i64>>(), "each once, in order");
}

#[tokio::test]
async fn readiness_follows_postgresql_while_idle_and_every_probe_answers_at_once() {
    let stack = Stack::start().await;
    let persister = stack.persisters[0].url.clone();
    let gateway = stack.gateway().url.clone();
    let timed = |url: String| async move {
        let asked = Instant::now();
        let status = readyz(&url).await;
        (status, asked.elapsed())
    };

    // Nothing is sent: the persister has no batch to fail on.
    database_reachable(&stack.db, false).await;
    for url in [&persister, &gateway] {
        e2e::eventually("readyz to say PostgreSQL is gone", || async {
            (readyz(url).await == 503).then_some(())
        })
        .await;
        for _ in 0..5 {
            let (status, took) = timed(url.clone()).await;
            assert_eq!(status, 503);
            // A probe that waited on PostgreSQL would take the pool's 3 s
            // acquire timeout; the margin below it is for a machine whose
            // two cores are busy with the other tests (583 ms seen once).
            assert!(
                took < Duration::from_millis(1_500),
                "a probe of {url} took {took:?} with PostgreSQL down"
            );
        }
    }

    database_reachable(&stack.db, true).await;
    for url in [&persister, &gateway] {
        e2e::eventually("readyz to see PostgreSQL back", || async {
            (readyz(url).await == 200).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn a_killed_persister_is_replaced_within_its_lease_and_the_new_one_is_ready_only_once_writing(
) {
    let mut stack = Stack::start().await;
    let mut ann = stack.connect("Ann").await;
    ann.join("takeover").await;
    let first = ann.say("takeover", "before").await;
    ann.persisted(&first).await;

    let killed = Instant::now();
    stack.persisters.remove(0).process.kill().await;
    let next = e2e::Persister::start_unready(&stack.config);
    let during = ann.say("takeover", "while nobody writes").await;

    // Until the dead persister's leases expire, its successor writes
    // nothing, and says so.
    let mut saw_unready = false;
    let ready_after = loop {
        if readyz(&next.url).await == 200 {
            break killed.elapsed();
        }
        saw_unready = true;
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "the successor never ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        saw_unready,
        "ready at once, before it could hold any partition"
    );
    assert_eq!(
        e2e::metric(&next.url, "persister_partitions_held").await,
        Some(8.0),
        "ready while not writing every partition"
    );
    ann.persisted(&during).await;
    let delivered_after = killed.elapsed();
    eprintln!("kill -9 → successor ready {ready_after:?}, message delivered {delivered_after:?}");
    assert!(
        delivered_after < Duration::from_secs(8),
        "the dead persister's partitions were unwritten for {delivered_after:?}"
    );
}
