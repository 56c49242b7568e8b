//! `sluice rules check`: validates every filter and setting of a configuration file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::write_stderr;
use crate::config::{self, Config, Diagnostic};

/// Details printed by `sluice rules check --help`.
const AFTER_LONG_HELP: &str = "\
Every problem is reported on stderr, each naming the topic, subscription, sink,
exclusion or bucket at fault, or for an unknown key the table that contains it. TOML
syntax errors and values of the wrong type stop the check at the first one,
with its line and column. Filter warnings are printed but do not fail the check.

Exit status: 0 if the configuration is valid, 1 if it is invalid or cannot be
read, 2 for invalid arguments.";

/// Check every filter and setting of a configuration file, reporting all errors at once.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub(crate) struct CheckArgs {
    /// Configuration file to check
    #[arg(value_name = "CONFIG", required_unless_present = "default")]
    config: Option<PathBuf>,

    /// Check the default configuration built into this binary in place of CONFIG
    #[arg(long, conflicts_with = "config")]
    default: bool,
}

/// Runs `sluice rules check` and returns its exit status.
pub(crate) fn run(args: &CheckArgs) -> ExitCode {
    let (parsed, source) = match &args.config {
        Some(path) => (config::load(path), path.display().to_string()),
        None => (
            config::parse(config::DEFAULT_CONFIG, config::DEFAULT_CONFIG_NAME),
            config::DEFAULT_CONFIG_NAME.to_owned(),
        ),
    };
    let file = match parsed {
        Ok(file) => file,
        Err(err) => {
            write_stderr(format_args!("error: {err:#}"));
            return ExitCode::FAILURE;
        }
    };

    match file.validate() {
        Ok(config) => {
            print_warnings(&source, &config.warnings);
            // The summary is the command's only output: write it to stdout like a report.
            let summary = summarize(&config);
            super::write_stdout(format_args!("{source}: {summary}: all filters valid"));
            ExitCode::SUCCESS
        }
        Err(report) => {
            for error in &report.errors {
                write_stderr(format_args!("{source}: {error}"));
            }
            print_warnings(&source, &report.warnings);
            let count = report.errors.len();
            let noun = if count == 1 { "error" } else { "errors" };
            write_stderr(format_args!(
                "{source}: {count} {noun}, configuration is invalid"
            ));
            ExitCode::FAILURE
        }
    }
}

fn print_warnings(source: &str, warnings: &[Diagnostic]) {
    for warning in warnings {
        write_stderr(format_args!(
            "{source}: {}: warning: {}",
            warning.component, warning.message
        ));
    }
}

/// Describes the component counts, such as
/// `2 topics, 2 subscriptions, 3 sinks (1 disabled), 1 exclusion`, followed by the bucket
/// count when there are buckets.
fn summarize(config: &Config) -> String {
    let sink_count = config.sinks.len();
    let exclusion_count: usize = config.sinks.iter().map(|sink| sink.exclusions.len()).sum();
    let disabled_sinks = config.sinks.iter().filter(|sink| sink.disabled).count();
    let disabled_exclusions = config
        .sinks
        .iter()
        .flat_map(|sink| &sink.exclusions)
        .filter(|exclusion| exclusion.disabled)
        .count();
    let mut summary = format!(
        "{}, {}, {}, {}",
        count_phrase(config.topics.len(), "topic", 0),
        count_phrase(config.subscriptions.len(), "subscription", 0),
        count_phrase(sink_count, "sink", disabled_sinks),
        count_phrase(exclusion_count, "exclusion", disabled_exclusions)
    );
    if !config.buckets.is_empty() {
        summary.push_str(", ");
        summary.push_str(&count_phrase(config.buckets.len(), "bucket", 0));
    }
    summary
}

fn count_phrase(count: usize, noun: &str, disabled: usize) -> String {
    let plural = if count == 1 { "" } else { "s" };
    if disabled == 0 {
        format!("{count} {noun}{plural}")
    } else {
        format!("{count} {noun}{plural} ({disabled} disabled)")
    }
}
