//! Random 1:1 matching across gateways.
//!
//! The pool is one key in a JetStream key-value bucket: the user waiting,
//! if any. Asking either claims the empty key (`create`), or takes the
//! waiting user out with a delete that expects the revision read — only one
//! asker can win a waiting user, wherever the askers are connected. The
//! winner creates a direct room and both users get `match:found` through
//! their own event subjects. A waiting connection refreshes its entry; the
//! bucket's max age drops the entry of a gateway that died.

use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use serde::{Deserialize, Serialize};
use shared::events::RoomEvent;
use shared::protocol::{ApiError, CreateRoom, RoomKind, User};
use uuid::Uuid;

use crate::app::App;
use crate::conn::ConnId;

const KEY: &str = "waiting";
/// A waiting entry not refreshed for this long is gone.
const MAX_AGE: Duration = Duration::from_secs(60);
/// How often a waiting connection refreshes its entry.
pub const REFRESH: Duration = Duration::from_secs(20);
const MATCH_FOUND: &str = "match:found";

#[derive(Debug, Serialize, Deserialize)]
struct Waiting {
    user: User,
    conn: ConnId,
    gateway: Uuid,
}

/// What asking did.
#[derive(Debug)]
pub enum Asked {
    /// In the pool; the entry's revision.
    Waiting(u64),
    /// Already in the pool (another tab asked): nothing changed.
    AlreadyWaiting,
    Matched,
}

/// The pool's bucket, created on first use.
pub async fn bucket(app: &App) -> Result<kv::Store, ApiError> {
    let name = format!("{}_match", app.subjects.stream());
    let config = kv::Config {
        bucket: name,
        history: 1,
        max_age: MAX_AGE,
        storage: async_nats::jetstream::stream::StorageType::Memory,
        ..Default::default()
    };
    app.js
        .create_or_update_key_value(config)
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, "matching: the pool bucket is unavailable");
            ApiError::unavailable()
        })
}

/// `match:random`.
///
/// # Errors
/// `unavailable`.
pub async fn ask(
    app: &App,
    kv: &kv::Store,
    user: &User,
    conn: ConnId,
    gateway: Uuid,
) -> Result<Asked, ApiError> {
    let me = serde_json::to_vec(&Waiting {
        user: user.clone(),
        conn,
        gateway,
    })
    .map_err(|_| ApiError::unavailable())?;
    // A few rounds: each lost race means someone else changed the pool.
    for _ in 0..8 {
        match waiting(kv).await? {
            Some((w, _)) if w.user.id == user.id => return Ok(Asked::AlreadyWaiting),
            Some((w, revision)) => {
                if kv.delete_expect_revision(KEY, Some(revision)).await.is_ok() {
                    found(app, user, w.user).await?;
                    return Ok(Asked::Matched);
                }
            }
            None => {
                if let Ok(revision) = kv.create(KEY, me.clone().into()).await {
                    return Ok(Asked::Waiting(revision));
                }
            }
        }
    }
    Err(ApiError::unavailable())
}

/// The waiting user and the entry's revision, if any.
async fn waiting(kv: &kv::Store) -> Result<Option<(Waiting, u64)>, ApiError> {
    let entry = kv.entry(KEY).await.map_err(|err| {
        tracing::warn!(error = %err, "matching: reading the pool");
        ApiError::unavailable()
    })?;
    Ok(entry
        .filter(|e| e.operation == Operation::Put)
        .and_then(|e| {
            serde_json::from_slice(&e.value)
                .ok()
                .map(|w| (w, e.revision))
        }))
}

/// Takes this connection's entry out of the pool, if it is still there.
pub async fn leave(kv: &kv::Store, revision: u64) {
    let _ = kv.delete_expect_revision(KEY, Some(revision)).await;
}

/// Keeps a waiting entry alive; `None` when it is gone (matched, or
/// cancelled from another tab).
pub async fn refresh(
    kv: &kv::Store,
    user: &User,
    conn: ConnId,
    gateway: Uuid,
    revision: u64,
) -> Option<u64> {
    let me = serde_json::to_vec(&Waiting {
        user: user.clone(),
        conn,
        gateway,
    })
    .ok()?;
    kv.update(KEY, me.into(), revision).await.ok()
}

/// A new direct room for the two, and `match:found` to each.
async fn found(app: &App, asker: &User, peer: User) -> Result<(), ApiError> {
    let room = crate::rooms::create_room(
        app,
        asker,
        CreateRoom {
            room: Some(format!("dm-{}", &Uuid::new_v4().simple().to_string()[..16])),
            name: None,
            kind: RoomKind::Direct,
            members: vec![peer.id],
            public: None,
        },
    )
    .await?
    .room;
    metrics::counter!("gateway_matches_total").increment(1);
    for (to, other) in [(asker, &peer), (&peer, asker)] {
        let ev = RoomEvent::new(
            MATCH_FOUND,
            &room,
            serde_json::json!({"room": room, "peer": other}),
        );
        if let Err(err) = app
            .client
            .publish_with_headers(app.subjects.user_events(&to.id), ev.headers(), ev.frame)
            .await
        {
            tracing::warn!(error = %err, "matching: match:found not published");
        }
    }
    Ok(())
}
