//! The library both binaries share: the wire protocol, the jobs that travel
//! through the stream, subject names, configuration pieces, validation and
//! the telemetry setup.
//!
//! Nothing here talks to a socket on its own except the small connection
//! helpers in [`nats`] and [`db`]; the binaries own their loops.

pub mod alloc;
pub mod config;
pub mod db;
pub mod events;
pub mod health;
pub mod jobs;
pub mod membership;
pub mod metrics;
pub mod nats;
pub mod net;
pub mod presence;
pub mod protocol;
pub mod search;
pub mod shutdown;
pub mod store;
pub mod stream;
pub mod subjects;
pub mod telemetry;
pub mod time;
pub mod validate;
