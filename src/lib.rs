//! The `sluice` binary's code: command-line interface, configuration loading, the gRPC and
//! HTTP server and its clients.
//!
//! It is a library only so that the fuzz targets in `fuzz/` and the tests can reach the
//! server's decoders; `src/main.rs` calls [`run`]. Nothing here is a stable API.

mod cli;
mod client;
mod config;
mod server;
mod telemetry;

use std::process::ExitCode;

/// The fuzz checks of the server's decoders; see `fuzz/README.md`.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::server::fuzzing::{logging_write_request, multipart_upload};
}

/// Parses the command line and runs the command, as the `sluice` binary does.
pub fn run() -> ExitCode {
    cli::run()
}
