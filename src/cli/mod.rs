//! Command-line interface: argument definitions and dispatch to one module per command.

mod input;
mod rules_check;
mod rules_test;

use std::fmt;
use std::io::{self, Write as _};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Self-hosted event router: log sinks, Pub/Sub topics and background functions in one binary.
#[derive(Debug, Parser)]
#[command(name = "sluice", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Test Logging query-language filters on sample entries and check sink configs.
    #[command(subcommand)]
    Rules(RulesCommand),
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    Test(rules_test::TestArgs),
    Check(rules_check::CheckArgs),
}

/// Parses the command line and runs the command. Invalid arguments exit with status 2.
pub(crate) fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Rules(RulesCommand::Test(args)) => rules_test::run(&args),
        Command::Rules(RulesCommand::Check(args)) => rules_check::run(&args),
    }
}

/// Writes one line to stderr. A failed write there has nowhere to be reported, so it is
/// ignored.
fn write_stderr(message: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{message}");
}

/// Writes one line to stdout, ignoring a failed write, such as to a closed pipe, because the
/// exit status carries the result.
fn write_stdout(message: fmt::Arguments<'_>) {
    let _ = writeln!(io::stdout().lock(), "{message}");
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
