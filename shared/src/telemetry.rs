//! One tracing setup for both binaries.

use tracing_subscriber::{fmt, EnvFilter};

/// Log lines as text for people or as JSON for collectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber; `filter` is an `EnvFilter` directive such
/// as `info` or `gateway=debug,info`.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|err| {
        eprintln!("bad RUST_LOG {filter:?} ({err}); using \"info\"");
        EnvFilter::new("info")
    });
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
