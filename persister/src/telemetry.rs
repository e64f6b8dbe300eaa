//! The persister's metrics, described once so `/metrics` lists each from
//! the start.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub fn describe() {
    describe_counter!("persister_jobs_total", "Jobs written and acked");
    describe_histogram!("persister_batch_size", "Jobs per transaction");
    describe_histogram!(
        "persister_batch_seconds",
        Unit::Seconds,
        "Pull to ack, per batch"
    );
    describe_counter!("persister_db_errors_total", "Failed batch writes (retried)");
    describe_counter!(
        "persister_jobs_terminated_total",
        "Jobs that can never be written, terminated"
    );
    describe_gauge!(
        "persister_database_up",
        "1 while PostgreSQL takes writes, 0 while batches fail"
    );
    describe_gauge!(
        "persister_partitions_held",
        "Partitions of the stream this persister writes"
    );
    metrics::gauge!("persister_partitions_held").set(0.0);
    for name in [
        "persister_jobs_total",
        "persister_db_errors_total",
        "persister_jobs_terminated_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    metrics::gauge!("persister_database_up").set(1.0);
}
