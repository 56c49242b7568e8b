//! `sluice pull`: pulls messages with google.pubsub.v1 Subscriber.Pull and prints each as
//! one JSON line.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat};
use clap::Args;
use serde::Serialize;
use serde_json::value::RawValue;
use sluice_proto::google::protobuf::Timestamp;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{AcknowledgeRequest, PullRequest, ReceivedMessage};
use tonic::{Code, Status};

use super::{connect, rpc_error, run_command, subscription_resource, ServerArgs};
use crate::cli::write_stderr;

/// Largest pull response the client reads: room for one 10 MiB message and its envelope.
const MAX_PULL_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// How long a pull waits for the server's response. The server itself waits at most a few
/// seconds for a message, so only a server that is stuck takes this long.
const PULL_TIMEOUT: Duration = Duration::from_secs(30);

/// Details printed by `sluice pull --help`.
const AFTER_LONG_HELP: &str = "\
Output: one JSON object per message, on its own line, with the keys ackId,
messageId, publishTime (RFC 3339, UTC), orderingKey (when set), deliveryAttempt
(when the server counts attempts), attributes, and one of:
  data        the decoded JSON value, when the data is UTF-8 JSON
  dataText    the data as a string, when it is UTF-8 but not JSON
  dataBase64  the data in standard base64, otherwise

A pull that finds no message waits briefly for one, then prints nothing and
exits 0. Messages pulled without --ack are delivered again once their ack
deadline expires.

Examples:
  sluice pull audit-errors --max 10
  sluice pull audit-errors --max 10 --ack | jq .data.severity";

/// Pull messages from a subscription and print them as JSON lines.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub(crate) struct PullArgs {
    /// Subscription: a short name such as `audit-errors` or `projects/local/subscriptions/NAME`
    #[arg(value_name = "SUBSCRIPTION")]
    subscription: String,

    /// Maximum number of messages to pull; the server may return fewer, and sluice serve
    /// returns at most 100 per pull
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    max: i32,

    /// Acknowledge the printed messages, so that they are not delivered again
    #[arg(long)]
    ack: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// Describes a failed Pull. A server whose JetStream store is unreachable responds
/// UNAVAILABLE with a message that names the store and its fix, so the generic hint that the
/// server itself may be down is left out.
fn pull_error(server: &str, status: &Status) -> anyhow::Error {
    if status.code() == Code::Unavailable && status.message().contains("JetStream") {
        return anyhow::anyhow!("Pull failed: UNAVAILABLE: {}", status.message());
    }
    rpc_error(server, "Pull", status)
}

/// Runs `sluice pull` and returns its exit status.
pub(crate) fn run(args: PullArgs) -> ExitCode {
    run_command(pull(args))
}

async fn pull(args: PullArgs) -> anyhow::Result<ExitCode> {
    let server = args.server.server;
    let subscription = subscription_resource(&args.subscription);
    // A pull can carry messages up to the server's 10 MiB limit, over tonic's default 4 MiB.
    let mut client = SubscriberClient::new(connect(&server).await?)
        .max_decoding_message_size(MAX_PULL_RESPONSE_BYTES);
    #[allow(
        deprecated,
        reason = "return_immediately is deprecated in the API, and false is its default"
    )]
    let request = PullRequest {
        subscription: subscription.clone(),
        return_immediately: false,
        max_messages: args.max,
    };
    let received = tokio::time::timeout(PULL_TIMEOUT, client.pull(request))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "Pull timed out after {} s without a response from {server}\n\
                 hint: sluice serve may be waiting for its store. GET {server}/healthz reports \
                 whether the store is reachable. With [store] kind = \"jetstream\", check \
                 that nats-server runs at the configured urls",
                PULL_TIMEOUT.as_secs()
            )
        })?
        .map_err(|status| pull_error(&server, &status))?
        .into_inner()
        .received_messages;
    if received.is_empty() {
        write_stderr(format_args!("no messages available in {subscription}"));
        return Ok(ExitCode::SUCCESS);
    }

    let mut out = io::stdout().lock();
    let mut ack_ids = Vec::with_capacity(received.len());
    for message in received {
        let line = serde_json::to_string(&PulledMessage::from_received(&message))?;
        // A closed stdout, such as `| head -1`, stops the output, and the unprinted
        // messages are left unacknowledged.
        if writeln!(out, "{line}").is_err() {
            break;
        }
        ack_ids.push(message.ack_id);
    }
    let _ = out.flush();
    drop(out);

    if args.ack && !ack_ids.is_empty() {
        let count = ack_ids.len();
        let request = AcknowledgeRequest {
            subscription,
            ack_ids,
        };
        client.acknowledge(request).await.map_err(|status| {
            let error = rpc_error(&server, "Acknowledge", &status);
            error.context(format!(
                "failed to acknowledge the {count} printed messages; they will be delivered again"
            ))
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One output line of `sluice pull`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PulledMessage {
    ack_id: String,
    message_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    publish_time: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    ordering_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery_attempt: Option<i32>,
    attributes: BTreeMap<String, String>,
    #[serde(flatten)]
    data: Data,
}

/// Message data in the most readable form that keeps it intact.
#[derive(Debug, Serialize)]
enum Data {
    /// JSON data, printed as it was published, so that large numbers and exact decimals
    /// keep every digit.
    #[serde(rename = "data")]
    Json(Box<RawValue>),
    #[serde(rename = "dataText")]
    Text(String),
    #[serde(rename = "dataBase64")]
    Base64(String),
}

impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        match (self, other) {
            (Data::Json(a), Data::Json(b)) => a.get() == b.get(),
            (Data::Text(a), Data::Text(b)) | (Data::Base64(a), Data::Base64(b)) => a == b,
            _ => false,
        }
    }
}

impl Data {
    fn decode(bytes: &[u8]) -> Data {
        match std::str::from_utf8(bytes) {
            Ok(text) => match serde_json::from_str::<Box<RawValue>>(text) {
                Ok(value) => Data::Json(value),
                Err(_) => Data::Text(text.to_owned()),
            },
            Err(_) => Data::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }
}

impl PulledMessage {
    fn from_received(received: &ReceivedMessage) -> PulledMessage {
        let message = received.message.clone().unwrap_or_default();
        PulledMessage {
            ack_id: received.ack_id.clone(),
            message_id: message.message_id,
            publish_time: message.publish_time.as_ref().and_then(rfc3339),
            ordering_key: message.ordering_key,
            delivery_attempt: (received.delivery_attempt > 0).then_some(received.delivery_attempt),
            attributes: message.attributes.into_iter().collect(),
            data: Data::decode(&message.data),
        }
    }
}

/// Formats a timestamp as RFC 3339 in UTC with `Z`, with as many fractional digits as it
/// needs (0, 3, 6 or 9). Returns `None` for a timestamp out of chrono's range.
fn rfc3339(timestamp: &Timestamp) -> Option<String> {
    let nanos = u32::try_from(timestamp.nanos).ok()?;
    let time = DateTime::from_timestamp(timestamp.seconds, nanos)?;
    Some(time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_proto::google::pubsub::v1::PubsubMessage;

    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("valid JSON")
    }

    #[test]
    fn data_json_keeps_every_digit() {
        let data = br#"{"offerId": 123456789012345678901234567890, "price": 9007199254740993.01}"#;
        let printed = serde_json::to_string(&Data::decode(data)).expect("serializes");
        assert!(
            printed.contains("123456789012345678901234567890"),
            "{printed}"
        );
        assert!(printed.contains("9007199254740993.01"), "{printed}");
    }

    #[test]
    fn data_json_decoded() {
        assert_eq!(
            Data::decode(br#"{"a": [1, 2]}"#),
            Data::Json(raw(r#"{"a": [1, 2]}"#))
        );
        assert_eq!(Data::decode(b"17"), Data::Json(raw("17")));
    }

    #[test]
    fn data_text_kept_as_string() {
        assert_eq!(
            Data::decode("héllo {".as_bytes()),
            Data::Text("héllo {".to_owned())
        );
        assert_eq!(Data::decode(b""), Data::Text(String::new()));
    }

    #[test]
    fn data_binary_as_base64() {
        assert_eq!(
            Data::decode(&[0xff, 0x00, 0x41]),
            Data::Base64("/wBB".to_owned())
        );
    }

    #[test]
    fn publish_time_formatted_utc() {
        let whole = Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        };
        assert_eq!(rfc3339(&whole).as_deref(), Some("2023-11-14T22:13:20Z"));
        let millis = Timestamp {
            seconds: 1_700_000_000,
            nanos: 250_000_000,
        };
        assert_eq!(
            rfc3339(&millis).as_deref(),
            Some("2023-11-14T22:13:20.250Z")
        );
        let negative_nanos = Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(rfc3339(&negative_nanos), None);
    }

    #[test]
    fn pulled_message_json_shape() {
        let received = ReceivedMessage {
            ack_id: "ack-1".to_owned(),
            message: Some(PubsubMessage {
                data: vec![0xfe],
                attributes: [("k".to_owned(), "v".to_owned())].into_iter().collect(),
                message_id: "7".to_owned(),
                publish_time: Some(Timestamp {
                    seconds: 0,
                    nanos: 0,
                }),
                ordering_key: String::new(),
            }),
            delivery_attempt: 2,
        };
        let line = serde_json::to_value(PulledMessage::from_received(&received))
            .expect("a pulled message serializes");
        assert_eq!(
            line,
            json!({
                "ackId": "ack-1",
                "messageId": "7",
                "publishTime": "1970-01-01T00:00:00Z",
                "deliveryAttempt": 2,
                "attributes": {"k": "v"},
                "dataBase64": "/g=="
            })
        );
    }

    #[test]
    fn pulled_message_omits_unset_fields() {
        let received = ReceivedMessage {
            ack_id: "ack-2".to_owned(),
            message: Some(PubsubMessage {
                data: b"plain".to_vec(),
                message_id: "8".to_owned(),
                ..Default::default()
            }),
            delivery_attempt: 0,
        };
        let line = serde_json::to_value(PulledMessage::from_received(&received))
            .expect("a pulled message serializes");
        assert_eq!(
            line,
            json!({"ackId": "ack-2", "messageId": "8", "attributes": {}, "dataText": "plain"})
        );
    }
}
