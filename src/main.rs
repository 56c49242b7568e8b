//! The `sluice` binary: command-line interface and configuration loading.

mod cli;
mod client;
mod config;
mod server;
mod telemetry;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
