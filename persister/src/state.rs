//! What `/readyz` reports: each part of the pipeline says whether it works.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use shared::health::Readiness;

#[derive(Clone, Default)]
pub struct State(Arc<Flags>);

#[derive(Default)]
struct Flags {
    schema_ready: AtomicBool,
    consumer_ready: AtomicBool,
    db_ok: AtomicBool,
    nats: std::sync::OnceLock<async_nats::Client>,
    /// PostgreSQL answering pings, also while no batch is written.
    db: std::sync::OnceLock<shared::db::Watch>,
}

impl State {
    pub fn new(client: async_nats::Client, db: shared::db::Watch) -> Self {
        let state = Self::default();
        let _ = state.0.nats.set(client);
        let _ = state.0.db.set(db);
        state.0.db_ok.store(true, Ordering::Relaxed);
        state
    }
    pub fn set_schema_ready(&self) {
        self.0.schema_ready.store(true, Ordering::Relaxed);
    }
    pub fn set_consumer_ready(&self, ok: bool) {
        self.0.consumer_ready.store(ok, Ordering::Relaxed);
    }
    pub fn set_db_ok(&self, ok: bool) {
        self.0.db_ok.store(ok, Ordering::Relaxed);
        metrics::gauge!("persister_database_up").set(if ok { 1.0 } else { 0.0 });
    }

    fn why_not_ready(&self) -> Option<&'static str> {
        let f = &self.0;
        let nats_up = f
            .nats
            .get()
            .is_some_and(|c| c.connection_state() == async_nats::connection::State::Connected);
        if !nats_up {
            Some("NATS is not connected")
        } else if !f.db.get().is_some_and(shared::db::Watch::up) {
            Some("PostgreSQL does not answer")
        } else if !f.schema_ready.load(Ordering::Relaxed) {
            Some("waiting for PostgreSQL to create the schema")
        } else if !f.db_ok.load(Ordering::Relaxed) {
            Some("PostgreSQL is failing; retrying the batch in hand")
        } else if !f.consumer_ready.load(Ordering::Relaxed) {
            Some("not writing its share of the partitions yet (waiting for leases to be released or to expire)")
        } else {
            None
        }
    }
}

impl Readiness for State {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            match self.why_not_ready() {
                Some(why) => Err(why.to_owned()),
                None => Ok(()),
            }
        })
    }
}
