//! `sluice publish`: publishes one message with google.pubsub.v1 Publisher.Publish.

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Args;
use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::{PublishRequest, PubsubMessage};

use super::{connect, rpc_error, run_command, topic_resource, ServerArgs};
use crate::cli::{write_stderr, write_stdout};

/// Exit status for invalid arguments, as clap uses it.
const EXIT_USAGE: u8 = 2;

/// Details printed by `sluice publish --help`.
const AFTER_LONG_HELP: &str = "\
Output: the message ID that the server assigned, printed once the server has
stored the message.

Examples:
  sluice publish audit-errors --message '{\"severity\":\"ERROR\"}'
  sluice publish projects/local/topics/audit-errors --message hello --attribute origin=cli";

/// Publish one message to a topic and print its message ID.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub(crate) struct PublishArgs {
    /// Topic: a short name such as `audit-errors` or `projects/local/topics/NAME`
    #[arg(value_name = "TOPIC")]
    topic: String,

    /// Message data, sent as its UTF-8 bytes; may be empty when --attribute is given
    #[arg(long, short = 'm', value_name = "DATA", allow_hyphen_values = true)]
    message: String,

    /// Message attribute as KEY=VALUE; repeat the option for several attributes
    #[arg(long = "attribute", short = 'a', value_name = "KEY=VALUE", value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,

    /// Ordering key of the message
    #[arg(long, value_name = "KEY")]
    ordering_key: Option<String>,

    #[command(flatten)]
    server: ServerArgs,
}

/// Splits `KEY=VALUE` at its first `=`, so the value may contain `=`.
pub(super) fn parse_attribute(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some(("", _)) => Err("the key is empty; use KEY=VALUE".to_owned()),
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => Err("missing `=`; use KEY=VALUE".to_owned()),
    }
}

/// Runs `sluice publish` and returns its exit status.
pub(crate) fn run(args: PublishArgs) -> ExitCode {
    let mut attributes = HashMap::new();
    for (key, value) in &args.attributes {
        if attributes.insert(key.clone(), value.clone()).is_some() {
            write_stderr(format_args!(
                "error: attribute {key:?} is given more than once; pass each key once"
            ));
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let message = PubsubMessage {
        data: args.message.into_bytes(),
        attributes,
        ordering_key: args.ordering_key.unwrap_or_default(),
        ..Default::default()
    };
    let request = PublishRequest {
        topic: topic_resource(&args.topic),
        messages: vec![message],
    };
    run_command(publish(args.server.server, request))
}

async fn publish(server: String, request: PublishRequest) -> anyhow::Result<ExitCode> {
    let mut client = PublisherClient::new(connect(&server).await?);
    let response = client
        .publish(request)
        .await
        .map_err(|status| rpc_error(&server, "Publish", &status))?
        .into_inner();
    let [message_id] = response.message_ids.as_slice() else {
        anyhow::bail!(
            "Publish returned {} message IDs for one message; expected exactly one",
            response.message_ids.len()
        );
    };
    write_stdout(format_args!("{message_id}"));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_attribute;

    #[test]
    fn attribute_splits_at_first_equals() {
        assert_eq!(
            parse_attribute("query=a=b"),
            Ok(("query".to_owned(), "a=b".to_owned()))
        );
        assert_eq!(
            parse_attribute("empty="),
            Ok(("empty".to_owned(), String::new()))
        );
    }

    #[test]
    fn attribute_without_key_rejected() {
        assert!(parse_attribute("=value").is_err());
        assert!(parse_attribute("novalue").is_err());
    }
}
