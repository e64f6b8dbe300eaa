//! End-to-end tests of the real binaries. See the `e2e` crate's docs for
//! what they need and `scripts/test.sh` for how they are run.

mod batching;
mod big_rooms;
mod browser;
mod cluster;
mod compose;
mod conversation;
mod duplicates;
mod errors;
mod identity;
mod lifecycle;
mod loadgen;
mod matching;
mod messaging;
mod moderation;
mod openapi;
mod operations;
mod ordering;
mod outages;
mod overload;
mod presence;
mod races;
mod reactions;
mod replay;
mod rooms;
mod scheduled;
mod search;
mod server_api;
mod slow;
mod threads;
mod upgrade;
mod uploads;
mod webhooks;
