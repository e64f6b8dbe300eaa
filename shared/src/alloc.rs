//! The allocator both binaries run on, and what it tells `/metrics`.
//!
//! jemalloc rather than the system's: a gateway's memory is thousands of
//! long-lived connections interleaved with short-lived request buffers,
//! and glibc's per-thread arenas kept the holes those leave (an idle
//! connection cost 34 KB of resident memory with glibc, 22 KB with
//! jemalloc, for about 12 KB of live heap). Its statistics also give the
//! live heap itself, which is what a connection really costs.

pub use tikv_jemallocator::Jemalloc as Allocator;

/// Lets jemalloc return freed pages to the system from a thread of its
/// own, over its decay time (10 s), instead of only when the process next
/// allocates: an idle gateway gives back what a burst of connections left.
pub fn purge_in_background() {
    if let Err(err) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %err, "jemalloc's background purging is off");
    }
}

/// Bytes the process has allocated and not freed, and bytes of memory the
/// allocator holds resident; `None` where the statistics cannot be read.
pub fn heap() -> Option<(u64, u64)> {
    use tikv_jemalloc_ctl::{epoch, stats};
    // The statistics are a snapshot taken at the last epoch.
    epoch::advance().ok()?;
    let allocated = stats::allocated::read().ok()?;
    let resident = stats::resident::read().ok()?;
    Some((allocated as u64, resident as u64))
}

/// Sets the heap gauges of `/metrics` (described in [`crate::metrics`]).
pub fn record() {
    if let Some((allocated, resident)) = heap() {
        metrics::gauge!("heap_allocated_bytes").set(allocated as f64);
        metrics::gauge!("heap_resident_bytes").set(resident as f64);
    }
}
