//! `sluice triggers list`: the triggers of a configuration, with the notification config,
//! sink, topic and subscription that each one creates.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::write_stderr;
use crate::config::TriggerSpec;
use crate::server::load_config;

/// Details printed by `sluice triggers list --help`.
const AFTER_LONG_HELP: &str = "\
The list comes from the configuration alone, as `sluice serve --config FILE` would
load it, so no server needs to run. Each trigger shows its event type, filters and
destination, then what it adds to the configuration: the notification config of a
storage trigger, the log sink of an audit-log trigger with its filter (which
`sluice rules test --filter` takes), the topic and the subscription.

With --json, each trigger is one JSON object per line.

Exit status: 0 when the configuration is valid, 1 when it is invalid or cannot be
read, 2 for invalid arguments.";

/// List the triggers of a configuration and the resources each one creates.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub(crate) struct ListArgs {
    /// Configuration file (TOML); without it the built-in config/default.toml is used
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print one JSON object per trigger in place of the text
    #[arg(long)]
    json: bool,
}

/// Runs `sluice triggers list` and returns its exit status.
pub(crate) fn run(args: &ListArgs) -> ExitCode {
    let config = match load_config(args.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            write_stderr(format_args!("error: {err:#}"));
            return ExitCode::FAILURE;
        }
    };
    if config.triggers.is_empty() && !args.json {
        write_stderr(format_args!("the configuration has no [[triggers]] tables"));
    }
    let mut out = io::stdout().lock();
    let written = config.triggers.iter().try_for_each(|trigger| {
        if args.json {
            serde_json::to_writer(&mut out, trigger)?;
            writeln!(out)
        } else {
            write_trigger(&mut out, trigger)
        }
    });
    match written.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed stdout, such as `| head -3`, is not a failure of the listing.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            write_stderr(format_args!("error: failed to write output: {err}"));
            ExitCode::FAILURE
        }
    }
}

/// Writes one trigger as a block of `label  value` lines under its name, with a blank line
/// after it.
fn write_trigger(out: &mut impl Write, trigger: &TriggerSpec) -> io::Result<()> {
    writeln!(out, "{}", trigger.name)?;
    let mut field = |label: &str, value: &str| writeln!(out, "  {label:<14}{value}");
    field("event type", &trigger.event_type)?;
    let filters: Vec<String> = trigger
        .filters
        .iter()
        .map(|(attribute, value)| format!("{attribute}={value}"))
        .collect();
    field("filters", &filters.join(", "))?;
    if let Some(pattern) = &trigger.resource_name_pattern {
        field("resource name", &format!("{pattern} (path pattern)"))?;
    }
    field("destination", &trigger.destination.to_string())?;
    if let Some(notification) = &trigger.notification {
        field(
            "notification",
            &format!(
                "bucket {} publishes {} to topic {}",
                notification.bucket, notification.event_type, trigger.topic
            ),
        )?;
    }
    if let Some(sink) = &trigger.sink {
        field("sink", &format!("{} (created)", sink.name))?;
        field("sink filter", &sink.filter)?;
    }
    let origin = if trigger.topic_created {
        "created"
    } else {
        "declared"
    };
    field("topic", &format!("{} ({origin})", trigger.topic))?;
    field(
        "subscription",
        &format!("{} (created)", trigger.subscription),
    )?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    /// Returns the text that `triggers list` writes for the triggers of `text`.
    fn listing(text: &str) -> String {
        let file = config::parse(text, "test.toml").expect("the config parses");
        let config = file.validate().expect("the config is valid");
        let mut out = Vec::new();
        for trigger in &config.triggers {
            write_trigger(&mut out, trigger).expect("writes to memory");
        }
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn audit_trigger_block() {
        let text = listing(
            "[[triggers]]\nname = \"writes\"\n\
             event_type = \"google.cloud.audit.log.v1.written\"\n\
             filters = { serviceName = \"storage.googleapis.com\", methodName = \"m\" }\n\
             resource_name = \"projects/_/buckets/**\"\n\
             push = { endpoint = \"http://127.0.0.1:8080/\" }\n",
        );

        assert_eq!(
            text,
            "writes\n\
             \x20 event type    google.cloud.audit.log.v1.written\n\
             \x20 filters       methodName=m, serviceName=storage.googleapis.com\n\
             \x20 resource name projects/_/buckets/** (path pattern)\n\
             \x20 destination   push to http://127.0.0.1:8080/ as cloudevent\n\
             \x20 sink          trigger-writes (created)\n\
             \x20 sink filter   logName:\"/logs/cloudaudit.googleapis.com%2F\" AND \
             protoPayload.serviceName=~\"^storage\\.googleapis\\.com$\" AND \
             protoPayload.methodName=~\"^m$\" AND \
             protoPayload.resourceName=~\"^/?projects/_/buckets(?:/[^/]*)*$\"\n\
             \x20 topic         trigger-writes (created)\n\
             \x20 subscription  trigger-writes (created)\n\
             \n"
        );
    }

    #[test]
    fn storage_and_pubsub_blocks() {
        let text = listing(
            "[[buckets]]\nname = \"uploads\"\n[[topics]]\nname = \"orders\"\n\
             [[triggers]]\nname = \"photos\"\n\
             event_type = \"google.cloud.storage.object.v1.finalized\"\n\
             filters = { bucket = \"uploads\" }\n\
             push = { endpoint = \"http://127.0.0.1:8080/\", format = \"background\" }\n\
             [[triggers]]\nname = \"orders\"\n\
             event_type = \"google.cloud.pubsub.topic.v1.messagePublished\"\n\
             filters = { topic = \"orders\" }\n\
             push = { endpoint = \"http://127.0.0.1:8080/orders\" }\n",
        );

        assert_eq!(
            text,
            "photos\n\
             \x20 event type    google.cloud.storage.object.v1.finalized\n\
             \x20 filters       bucket=uploads\n\
             \x20 destination   push to http://127.0.0.1:8080/ as background\n\
             \x20 notification  bucket uploads publishes OBJECT_FINALIZE to topic \
             trigger-photos\n\
             \x20 topic         trigger-photos (created)\n\
             \x20 subscription  trigger-photos (created)\n\
             \n\
             orders\n\
             \x20 event type    google.cloud.pubsub.topic.v1.messagePublished\n\
             \x20 filters       topic=orders\n\
             \x20 destination   push to http://127.0.0.1:8080/orders as cloudevent\n\
             \x20 topic         orders (declared)\n\
             \x20 subscription  trigger-orders (created)\n\
             \n"
        );
    }
}
