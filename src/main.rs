//! The `sluice` binary: command-line interface and configuration loading, in the library of
//! the same name.

use std::process::ExitCode;

fn main() -> ExitCode {
    sluice::run()
}
