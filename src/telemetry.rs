//! Logging set-up: structured logs on stderr, filtered by `RUST_LOG` (default `info`).
//! `SLUICE_LOG_FORMAT=json` switches to one JSON object per line for log collectors.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Calling it twice leaves the first one in place.
pub(crate) fn init() {
    init_with_default("info");
}

/// Installs the global subscriber with `default` as the filter when `RUST_LOG` is not set.
pub(crate) fn init_with_default(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour codes only help a terminal; in a log file they are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = if std::env::var("SLUICE_LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // An error means a subscriber is already installed, which is fine.
    drop(result);
}
