//! The state every handler shares.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_nats::jetstream;
use shared::protocol::ApiError;
use shared::subjects::Subjects;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Keys;
use crate::hub::Hub;

/// Limits a connection lives under.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub rate_per_s: f64,
    pub rate_burst: f64,
    /// Frames queued for one connection before it counts as too slow.
    pub queue: usize,
}

/// A text frame over this many bytes gets `too_large`.
pub const FRAME_LIMIT: usize = 64 * 1024;
/// A frame over this many bytes is not even read: close code 1009.
pub const FRAME_HARD_LIMIT: usize = 1024 * 1024;
/// REST bodies over this many bytes get `too_large`.
pub const BODY_LIMIT: u64 = FRAME_LIMIT as u64;

pub struct App {
    pub subjects: Subjects,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub pool: PgPool,
    pub hub: Arc<Hub>,
    /// Set once at start (it needs the hub and NATS).
    pub presence: std::sync::OnceLock<Arc<crate::presence::Presence>>,
    pub keys: Keys,
    /// Whether `POST /v1/auth/guest` mints tokens (`CHAT_GUEST_SIGNIN`).
    pub guest_signin: bool,
    /// The server API's keys.
    pub api_keys: crate::auth::ApiKeys,
    pub limits: Limits,
    /// One permit per open WebSocket.
    pub connection_slots: Arc<Semaphore>,
    /// Cancelled when the gateway stops: every connection is told to
    /// reconnect.
    pub stop: CancellationToken,
    /// Every connection's task, awaited at shutdown.
    pub sessions: TaskTracker,
    /// This gateway's id (presence, matching).
    pub id: uuid::Uuid,
    /// Rooms' origins, looked up once each.
    pub origins: crate::origins::Origins,
    /// Where uploaded files are kept.
    pub uploads: crate::uploads::Uploads,
    /// Sends let in under overload.
    pub admission: crate::admission::Admission,
    /// How jobs are stored: each on its own, or in atomic batches.
    pub publisher: crate::batching::Publisher,
    stream_ready: AtomicBool,
    db: shared::db::Watch,
    stream: tokio::sync::OnceCell<jetstream::stream::Stream>,
    next_conn: AtomicU64,
}

impl App {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        subjects: Subjects,
        client: async_nats::Client,
        js: jetstream::Context,
        pool: PgPool,
        keys: Keys,
        limits: Limits,
        max_connections: usize,
        guest_signin: bool,
        api_keys: crate::auth::ApiKeys,
        uploads: crate::uploads::Uploads,
        ack_target: std::time::Duration,
        batching: bool,
    ) -> Self {
        let hub = Hub::new(client.clone(), subjects.clone());
        let db = shared::db::Watch::start(pool.clone());
        Self {
            subjects,
            client,
            pool,
            hub,
            presence: std::sync::OnceLock::new(),
            keys,
            guest_signin,
            api_keys,
            limits,
            connection_slots: Arc::new(Semaphore::new(max_connections)),
            stop: CancellationToken::new(),
            sessions: TaskTracker::new(),
            id: uuid::Uuid::new_v4(),
            origins: crate::origins::Origins::default(),
            uploads,
            admission: crate::admission::Admission::new(ack_target),
            publisher: if batching {
                crate::batching::Publisher::batched(js.clone())
            } else {
                crate::batching::Publisher::single(js.clone())
            },
            stream_ready: AtomicBool::new(false),
            db,
            stream: tokio::sync::OnceCell::new(),
            next_conn: AtomicU64::new(1),
            js,
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub fn set_stream_ready(&self) {
        self.stream_ready.store(true, Ordering::Relaxed);
    }

    /// The job stream, for direct gets.
    ///
    /// # Errors
    /// `unavailable` while NATS cannot be asked.
    pub async fn stream(&self) -> Result<&jetstream::stream::Stream, ApiError> {
        self.stream
            .get_or_try_init(|| self.js.get_stream(self.subjects.stream()))
            .await
            .map_err(|err| {
                tracing::warn!(error = %err, "cannot look up the job stream");
                ApiError::unavailable()
            })
    }

    /// Whether both connections to NATS are up: events' and jobs'.
    pub fn nats_connected(&self) -> bool {
        use async_nats::connection::State::Connected;
        self.client.connection_state() == Connected
            && self.js.client().connection_state() == Connected
    }

    /// Why the gateway cannot serve right now, if it cannot. Answers at
    /// once: nothing here waits on NATS or PostgreSQL.
    pub fn why_not_ready(&self) -> Option<&'static str> {
        if !self.nats_connected() {
            Some("NATS is not connected")
        } else if !self.stream_ready.load(Ordering::Relaxed) {
            Some("the job stream is not ready")
        } else if !self.db.up() {
            Some("PostgreSQL does not answer")
        } else {
            None
        }
    }
}
