//! The gateway's metrics, described once so `/metrics` lists each from the
//! start.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub fn describe() {
    describe_gauge!("gateway_connections", "Open WebSocket connections");
    describe_counter!(
        "gateway_messages_accepted_total",
        "Sends acked after JetStream stored them"
    );
    describe_histogram!(
        "gateway_publish_seconds",
        Unit::Seconds,
        "Publish to PubAck, per job"
    );
    describe_counter!(
        "gateway_publish_failures_total",
        "Jobs JetStream did not store (answered unavailable), by reason"
    );
    describe_counter!(
        "gateway_rate_limited_total",
        "Frames refused by the per-connection rate limit"
    );
    describe_counter!(
        "gateway_slow_disconnects_total",
        "Connections cut off for not reading their events"
    );
    describe_counter!(
        "gateway_events_delivered_total",
        "Events queued to local connections"
    );
    describe_counter!(
        "gateway_ephemeral_dropped_total",
        "Typing, presence and read echoes dropped for connections falling behind"
    );
    describe_counter!(
        "gateway_events_repeated_total",
        "Message events a persister published again, not delivered twice"
    );
    describe_counter!(
        "gateway_connections_refused_total",
        "Upgrades refused at the connection limit"
    );
    describe_counter!("gateway_matches_total", "Pairs made by random matching");
    describe_counter!(
        "gateway_revocations_unanswered_total",
        "Removals and bans acked before every gateway answered their revocation"
    );
    describe_counter!("gateway_uploads_total", "Files stored by POST /v1/uploads");
    describe_counter!(
        "gateway_sends_refused_overload_total",
        "Sends refused (unavailable, overloaded) while publishes took longer than the ack target"
    );
    describe_counter!(
        "gateway_publish_batches_total",
        "Atomic batches of jobs stored (CHAT_PUBLISH_BATCHING=atomic)"
    );
    describe_counter!(
        "gateway_publish_batched_jobs_total",
        "Jobs stored in atomic batches"
    );
    describe_counter!(
        "gateway_publish_batch_fallbacks_total",
        "Atomic batches refused by NATS whose jobs were then stored one by one"
    );
    metrics::gauge!("gateway_connections").set(0.0);
    for reason in ["disconnected", "timeout", "error"] {
        metrics::counter!("gateway_publish_failures_total", "reason" => reason).absolute(0);
    }
    for name in [
        "gateway_messages_accepted_total",
        "gateway_rate_limited_total",
        "gateway_slow_disconnects_total",
        "gateway_events_delivered_total",
        "gateway_ephemeral_dropped_total",
        "gateway_events_repeated_total",
        "gateway_connections_refused_total",
        "gateway_matches_total",
        "gateway_revocations_unanswered_total",
        "gateway_uploads_total",
        "gateway_sends_refused_overload_total",
        "gateway_publish_batches_total",
        "gateway_publish_batched_jobs_total",
        "gateway_publish_batch_fallbacks_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
}
