//! The `sluice` binary: command-line interface and configuration loading.

mod cli;
mod config;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::run()
}
