//! Rooms' origins as this gateway learned them: they never change once a
//! room exists, so each is looked up once (see `membership::origin`).

use std::collections::HashMap;
use std::sync::Mutex;

use shared::membership::Origin;

/// A room's origin and, when the stream holds it, the stream sequence of
/// the job that created the room.
#[derive(Clone, Debug)]
pub struct KnownOrigin {
    pub facts: Origin,
    pub seq: Option<u64>,
}

/// Rooms looked up most recently; bounded so that a gateway asked about
/// millions of rooms does not keep them all.
#[derive(Default)]
pub struct Origins(Mutex<HashMap<String, KnownOrigin>>);

/// Past this many rooms the cache starts again from empty.
const MAX_ROOMS: usize = 100_000;

impl Origins {
    pub fn get(&self, room: &str) -> Option<KnownOrigin> {
        self.lock().get(room).cloned()
    }

    pub fn insert(&self, room: &str, origin: KnownOrigin) {
        let mut map = self.lock();
        if map.len() >= MAX_ROOMS {
            map.clear();
        }
        map.insert(room.to_owned(), origin);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, KnownOrigin>> {
        // A panic while holding this lock leaves a plain map behind: usable.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
