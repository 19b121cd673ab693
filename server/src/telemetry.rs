//! Logging: `tracing` to stderr, as text for people or JSON for log pipelines. `RUST_LOG`
//! overrides the configured filter.
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call (e.g. several servers in one test
/// process) keeps the first.
pub fn init(format: &str, filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
