//! Taking a user out of a room on every gateway at once: what makes a
//! removal or a ban count from its ack on every gateway, although no
//! persister has written it yet. Every other check (a join, an invitation,
//! a user not connected here) reads the user's last membership job in the
//! stream, which is the removal itself once it is acked; only a gateway's
//! memory of its own users' rooms could still say "member", so each
//! gateway is told, and answers, before the ack.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::App;

/// How long a removal waits for the other gateways' answers. A gateway
/// that does not answer in time is stuck or gone; its users cannot send
/// (their publishes would wait on the same stuck NATS connection).
const WAIT: Duration = Duration::from_secs(1);

#[derive(Serialize, Deserialize)]
struct Revocation {
    room: String,
    user: Uuid,
}

/// Answers other gateways' revocations until the gateway stops.
///
/// # Errors
/// When NATS refuses the subscription.
pub async fn listen(app: Arc<App>) -> Result<(), async_nats::SubscribeError> {
    let mut sub = app.client.subscribe(app.subjects.revocations()).await?;
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let Ok(r) = serde_json::from_slice::<Revocation>(&msg.payload) else {
                tracing::warn!("an unreadable revocation");
                continue;
            };
            app.hub.revoke(r.user, &r.room);
            if let (Some(reply), Some(presence)) = (msg.reply, app.presence.get()) {
                let id = presence.id().to_string();
                if let Err(err) = app.client.publish(reply, id.into()).await {
                    tracing::warn!(error = %err, "cannot answer a revocation");
                }
            }
        }
    });
    Ok(())
}

/// Takes `user` out of `room` here and on every gateway heard from, and
/// returns once each has answered, or after [`WAIT`].
pub async fn everywhere(app: &App, room: &str, user: Uuid) {
    app.hub.revoke(user, room);
    let Some(presence) = app.presence.get() else {
        return;
    };
    let expected: HashSet<Uuid> = presence
        .gateways()
        .into_iter()
        .filter(|id| *id != presence.id())
        .collect();
    if let Err(err) = ask(app, room, user, expected).await {
        metrics::counter!("gateway_revocations_unanswered_total").increment(1);
        tracing::warn!(room, %user, error = %err, "not every gateway answered a revocation");
    }
}

#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("{0} gateway(s) did not answer within {WAIT:?}")]
    Silent(usize),
}

async fn ask(
    app: &App,
    room: &str,
    user: Uuid,
    mut expected: HashSet<Uuid>,
) -> Result<(), AskError> {
    let nats = |e: &dyn std::fmt::Display| AskError::Nats(e.to_string());
    let inbox = app.client.new_inbox();
    let mut replies = app
        .client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| nats(&e))?;
    let body = serde_json::to_vec(&Revocation {
        room: room.to_owned(),
        user,
    })
    .expect("plain fields");
    app.client
        .publish_with_reply(app.subjects.revocations(), inbox, body.into())
        .await
        .map_err(|e| nats(&e))?;
    app.client.flush().await.map_err(|e| nats(&e))?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !expected.is_empty() {
        match tokio::time::timeout_at(deadline, replies.next()).await {
            Ok(Some(reply)) => {
                if let Some(id) = std::str::from_utf8(&reply.payload)
                    .ok()
                    .and_then(|s| s.parse::<Uuid>().ok())
                {
                    expected.remove(&id);
                }
            }
            Ok(None) | Err(_) => return Err(AskError::Silent(expected.len())),
        }
    }
    Ok(())
}
