//! Moving to the current NATS release: a deployment whose stream an earlier
//! release made (discard `new` beside message schedules, which NATS 2.12.10
//! and later refuse) upgrades NATS and the binaries and loses nothing; a
//! server older than the supported range stops both binaries with the
//! version they need.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use chrono::{SecondsFormat, Utc};
use e2e::{eventually_within, Gateway, NatsServer, Persister, Stack};
use shared::jobs::{Job, Membership, NewMessage};
use shared::protocol::{MessageKind, User};
use shared::subjects::Subjects;
use uuid::Uuid;

/// The stream exactly as the release before this one made it.
fn earlier_layout(subjects: &Subjects) -> stream::Config {
    stream::Config {
        name: subjects.stream().to_owned(),
        subjects: vec![subjects.jobs_filter(), subjects.schedules_filter()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        max_age: Duration::from_secs(30 * 24 * 3600),
        duplicate_window: Duration::from_secs(120),
        num_replicas: 1,
        allow_direct: true,
        allow_message_schedules: true,
        ..Default::default()
    }
}

fn message(room: &str, sender: &User, text: String) -> NewMessage {
    let (temp_id, id) = shared::jobs::message_ids(sender.id, None);
    NewMessage {
        id,
        temp_id,
        room: room.to_owned(),
        sender: sender.clone(),
        kind: MessageKind::Text,
        text,
        reply_to: None,
        attachments: Vec::new(),
        client_id: None,
        created_at: shared::time::now_millis(),
        mentions: Vec::new(),
        thread_of: None,
    }
}

async fn publish(js: &jetstream::Context, subject: String, job: &Job) {
    js.publish(subject, serde_json::to_vec(job).unwrap().into())
        .await
        .expect("publish")
        .await
        .expect("stored");
}

#[tokio::test]
async fn a_stream_of_the_earlier_layout_is_upgraded_with_nats_and_every_job_persisted_once() {
    // The earlier release's deployment: its NATS server, its stream, jobs
    // nobody has persisted yet, and a scheduled message still waiting.
    let mut nats = NatsServer::start_program("nats-upgrade", NatsServer::old_program()).await;
    let stack = Stack::build(&nats.url, 0, 0, &[]).await;
    let subjects = Subjects::new(&stack.config.stream).unwrap();
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = jetstream::new(client.clone());
    js.create_stream(earlier_layout(&subjects)).await.unwrap();
    let ann = User {
        id: Uuid::new_v4(),
        name: Some("Ann".into()),
        avatar_url: None,
    };
    let join = Job::Join(Membership {
        room: "old".into(),
        user: ann.clone(),
        at: shared::time::now_millis(),
        creates: true,
        by: None,
        ban: None,
    });
    publish(&js, join.subject(&subjects), &join).await;
    let mut ids = Vec::new();
    for i in 1..=20 {
        let m = message("old", &ann, format!("before the upgrade {i}"));
        ids.push(m.id);
        let job = Job::Message(m);
        publish(&js, job.subject(&subjects), &job).await;
    }
    let later = message("old", &ann, "scheduled before the upgrade".into());
    let due = Utc::now() + chrono::Duration::seconds(8);
    let job = Job::Message(later.clone());
    let headers = {
        let mut h = async_nats::HeaderMap::new();
        let at = format!("@at {}", due.to_rfc3339_opts(SecondsFormat::Millis, true));
        h.insert("Nats-Schedule", at.as_str());
        h.insert("Nats-Schedule-Target", job.subject(&subjects).as_str());
        h
    };
    js.publish_with_headers(
        subjects.schedule("old", &later.temp_id),
        headers,
        serde_json::to_vec(&job).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .expect("schedule stored");
    client.drain().await.unwrap();

    // Upgrade NATS, then start the new binaries.
    nats.upgrade_to(NatsServer::program()).await;
    let persister = Persister::start(&stack.config).await;
    let gateway = Gateway::start(&stack.config, 0).await;

    let pool = stack.db.pool().await;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM messages WHERE room_id = 'old'")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    eventually_within(
        Duration::from_secs(30),
        "the 20 earlier jobs persisted",
        || async { (count().await >= 20).then_some(()) },
    )
    .await;
    eventually_within(
        Duration::from_secs(30),
        "the scheduled message to fall due",
        || async { (count().await == 21).then_some(()) },
    )
    .await;
    let rows: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT id, seq FROM messages WHERE room_id = 'old' ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut expected: Vec<Uuid> = ids.clone();
    expected.push(later.id);
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        expected,
        "each job once, in stream order"
    );
    assert_eq!(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        (1..=21).collect::<Vec<_>>()
    );

    // The new layout is the stream's own now: it survives a restart of the
    // server, whose store keeps it, and a send works after that.
    drop(gateway);
    drop(persister);
    nats.upgrade_to(NatsServer::program()).await;
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = jetstream::new(client);
    let mut s = js
        .get_stream(subjects.stream())
        .await
        .expect("the stream loads after a restart of the current server");
    let config = s.info().await.unwrap().config.clone();
    assert_eq!(config.discard, stream::DiscardPolicy::Old);
    assert!(config.allow_message_schedules && config.allow_rollup);
    assert_eq!(
        config
            .metadata
            .get(shared::stream::LAYOUT_KEY)
            .map(String::as_str),
        Some(shared::stream::LAYOUT)
    );
    let _persister = Persister::start(&stack.config).await;
    let gateway = Gateway::start(&stack.config, 0).await;
    let guest = e2e::guest(&gateway.url, Some("Bob")).await;
    let mut bob = e2e::WsClient::connect(&gateway.ws_url(), guest).await;
    bob.join("old").await;
    let sent = bob.say("old", "after the upgrade").await;
    assert_eq!(bob.persisted(&sent).await["seq"], 22);
    assert_eq!(count().await, 22, "nothing persisted twice by the restarts");
}

#[tokio::test]
async fn a_server_older_than_the_supported_range_stops_both_binaries_naming_the_version_needed() {
    let nats = NatsServer::start_program("nats-too-old", NatsServer::old_program()).await;
    let stack = Stack::build(&nats.url, 0, 0, &[]).await;
    let mut persister = Persister::start_unready(&stack.config);
    let mut gateway = Gateway::start_unready(&stack.config, 0);
    for (what, proc) in [
        ("persister", &mut persister.process),
        ("gateway", &mut gateway.process),
    ] {
        let status = proc
            .exited_within(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("the {what} kept running on NATS 2.12.8"));
        assert!(!status.success(), "the {what} exited 0");
    }
    let logs = std::fs::read_dir(&stack.config.logs)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter(|text| text.contains("too old"))
        .collect::<Vec<_>>();
    assert_eq!(logs.len(), 2, "both binaries say why they stopped");
    for log in logs {
        assert!(log.contains("2.12.8") && log.contains("2.12.10"), "{log}");
        assert_eq!(
            log.matches("too old").count(),
            1,
            "one error, not a retry loop:\n{log}"
        );
    }
}
