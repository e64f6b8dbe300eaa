//! Who is online on any gateway, as the persister hears it: the roster of
//! every gateway's presence notices, for the `notification` webhook events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use shared::presence::{Notice, Roster};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long after it starts listening the roster is taken as complete:
/// every gateway answers the start's [`Notice::Ask`] with its snapshot at
/// once, and heartbeats within [`shared::presence::HEARTBEAT`] anyway.
const WARM_UP: Duration = Duration::from_secs(1);

pub struct Online {
    roster: Mutex<Roster>,
    warm_at: Instant,
}

impl Online {
    /// Starts following `<S>.presence` until `stop`.
    ///
    /// # Errors
    /// When NATS refuses the subscription.
    pub async fn start(
        client: async_nats::Client,
        subject: String,
        stop: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let mut sub = client.subscribe(subject.clone()).await?;
        let online = Arc::new(Self {
            roster: Mutex::default(),
            warm_at: Instant::now() + WARM_UP,
        });
        let ask = serde_json::to_vec(&Notice::Ask).expect("a unit variant serializes");
        client.publish(subject, ask.into()).await?;
        tokio::spawn({
            let online = online.clone();
            async move {
                let mut expire = tokio::time::interval(shared::presence::HEARTBEAT);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = expire.tick() => { online.roster().expire(); }
                        msg = sub.next() => match msg {
                            Some(msg) => online.on_message(&msg.payload),
                            None => return,
                        },
                    }
                }
            }
        });
        Ok(online)
    }

    fn roster(&self) -> std::sync::MutexGuard<'_, Roster> {
        self.roster.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_message(&self, payload: &[u8]) {
        match serde_json::from_slice::<Notice>(payload) {
            Ok(notice) => {
                self.roster().apply(notice);
            }
            Err(err) => tracing::debug!(error = %err, "presence: unreadable notice"),
        }
    }

    /// Waits until the roster has heard from every gateway.
    pub async fn warm(&self) {
        tokio::time::sleep_until(self.warm_at).await;
    }

    /// Whether `user` has an open connection on any gateway.
    pub fn contains(&self, user: Uuid) -> bool {
        self.roster().contains(user)
    }
}
