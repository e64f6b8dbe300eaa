//! Waiting for the signals that ask a process to stop.

/// Resolves on SIGTERM or SIGINT (Ctrl-C), whichever comes first.
pub async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    // Installing a handler fails only when the runtime has no signal driver,
    // which `tokio::main` with the full feature set always provides.
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
    }
}
