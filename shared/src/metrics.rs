//! Prometheus metrics: one recorder per process, rendered at `/metrics`.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Installs the global recorder and returns the handle that renders it.
///
/// # Errors
/// When a recorder is already installed in this process.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])?
        // Counts, not seconds: jobs per transaction.
        .set_buckets_for_metric(
            Matcher::Suffix("_batch_size".into()),
            &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0],
        )?
        .install_recorder()?;
    describe_process();
    Ok(handle)
}

/// The process-level gauges `/metrics` sets at each scrape
/// ([`crate::health`], [`crate::alloc`]), described once.
fn describe_process() {
    metrics::describe_gauge!(
        "runtime_tasks_alive",
        "Tasks alive in the process's async runtime"
    );
    metrics::describe_gauge!(
        "heap_allocated_bytes",
        metrics::Unit::Bytes,
        "Bytes allocated and not yet freed (live heap)"
    );
    metrics::describe_gauge!(
        "heap_resident_bytes",
        metrics::Unit::Bytes,
        "Bytes of memory the allocator holds resident"
    );
}
