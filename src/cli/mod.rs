//! Command-line interface: argument definitions and dispatch to one module per command.

mod auth;
mod demo;
pub(crate) mod input;
mod rules_check;
mod rules_test;
mod serve;
mod triggers;

use std::fmt;
use std::io::{self, Write as _};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::{catalog, functions, ingest, objects, publish, pull, upload};

/// Self-hosted event router: log sinks, Pub/Sub topics and background functions in one binary.
#[derive(Debug, Parser)]
#[command(name = "sluice", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(serve::ServeArgs),
    Demo(demo::DemoArgs),
    /// Test Logging query-language filters on sample entries and check sink configs.
    #[command(subcommand)]
    Rules(RulesCommand),
    Ingest(ingest::IngestArgs),
    Publish(publish::PublishArgs),
    Pull(pull::PullArgs),
    /// Inspect the server's topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Inspect the server's subscriptions.
    #[command(subcommand)]
    Subscriptions(SubscriptionsCommand),
    Upload(upload::UploadArgs),
    #[command(subcommand)]
    Objects(objects::ObjectsCommand),
    /// Inspect the Eventarc-style triggers of a configuration.
    #[command(subcommand)]
    Triggers(TriggersCommand),
    #[command(subcommand)]
    Functions(functions::FunctionsCommand),
    /// Prepare credentials for the [auth] table of the configuration.
    #[command(subcommand)]
    Auth(AuthCommand),
}

#[derive(Debug, Subcommand)]
enum AuthCommand {
    HashToken(auth::HashTokenArgs),
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    Test(rules_test::TestArgs),
    Check(rules_check::CheckArgs),
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    List(catalog::TopicsListArgs),
}

#[derive(Debug, Subcommand)]
enum SubscriptionsCommand {
    List(catalog::SubscriptionsListArgs),
}

#[derive(Debug, Subcommand)]
enum TriggersCommand {
    List(triggers::ListArgs),
}

/// Parses the command line and runs the command. Invalid arguments exit with status 2.
pub(crate) fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Rules(RulesCommand::Test(args)) => rules_test::run(&args),
        Command::Rules(RulesCommand::Check(args)) => rules_check::run(&args),
        Command::Ingest(args) => ingest::run(args),
        Command::Publish(args) => publish::run(args),
        Command::Pull(args) => pull::run(args),
        Command::Topics(TopicsCommand::List(args)) => catalog::run_topics(args),
        Command::Subscriptions(SubscriptionsCommand::List(args)) => {
            catalog::run_subscriptions(args)
        }
        Command::Upload(args) => upload::run(args),
        Command::Objects(command) => objects::run(command),
        Command::Auth(AuthCommand::HashToken(args)) => auth::run(&args),
        Command::Triggers(TriggersCommand::List(args)) => triggers::run(&args),
        Command::Functions(command) => functions::run(command),
    }
}

/// Writes one line to stderr. A failed write there has nowhere to be reported, so it is
/// ignored.
pub(crate) fn write_stderr(message: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{message}");
}

/// Writes one line to stdout, ignoring a failed write, such as to a closed pipe, because the
/// exit status carries the result.
pub(crate) fn write_stdout(message: fmt::Arguments<'_>) {
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
