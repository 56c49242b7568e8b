//! `sluice topics list` and `sluice subscriptions list`: the sluice.v1 Admin service's view
//! of topics and subscriptions, as a table or as JSON lines.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use sluice_proto::sluice::v1::admin_client::AdminClient;
use sluice_proto::sluice::v1::{
    ListSubscriptionsRequest, ListTopicsRequest, SubscriptionInfo, TopicInfo,
};

use super::{connect, rpc_error, run_command, short_topic_name, ServerArgs};

/// List every topic with its stored messages and subscriptions.
///
/// RETAINED counts the messages stored for the topic. A message stays stored until every
/// subscription that received it has acknowledged it.
#[derive(Debug, Args)]
pub(crate) struct TopicsListArgs {
    /// Print one JSON object per topic in place of the table
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// List subscriptions with their backlog, outstanding, dead-lettered and filtered-out messages.
///
/// BACKLOG counts the messages not yet acknowledged, OUTSTANDING those of them that are
/// leased to a consumer now, and DEAD-LETTERED those forwarded to the dead-letter topic.
/// FILTERED OUT counts the messages that the subscription's filter rejected since the server
/// started, which were acknowledged without being delivered.
#[derive(Debug, Args)]
pub(crate) struct SubscriptionsListArgs {
    /// List only the subscriptions of this topic (short or full resource name)
    #[arg(long, value_name = "TOPIC")]
    topic: Option<String>,

    /// Print one JSON object per subscription in place of the table
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// Runs `sluice topics list` and returns its exit status.
pub(crate) fn run_topics(args: TopicsListArgs) -> ExitCode {
    run_command(list_topics(args))
}

/// Runs `sluice subscriptions list` and returns its exit status.
pub(crate) fn run_subscriptions(args: SubscriptionsListArgs) -> ExitCode {
    run_command(list_subscriptions(args))
}

async fn list_topics(args: TopicsListArgs) -> anyhow::Result<ExitCode> {
    let server = args.server.server;
    let mut client = AdminClient::new(connect(&server).await?);
    let mut topics = client
        .list_topics(ListTopicsRequest {})
        .await
        .map_err(|status| rpc_error(&server, "ListTopics", &status))?
        .into_inner()
        .topics;
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = io::stdout().lock();
    let written = if args.json {
        topics
            .iter()
            .try_for_each(|topic| write_json_line(&mut out, &TopicRecord::from(topic)))
    } else {
        write_table(&mut out, &topics_table(&topics))
    };
    finish_output(written.and_then(|()| out.flush()))
}

async fn list_subscriptions(args: SubscriptionsListArgs) -> anyhow::Result<ExitCode> {
    let server = args.server.server;
    let mut client = AdminClient::new(connect(&server).await?);
    let request = ListSubscriptionsRequest {
        topic: args
            .topic
            .as_deref()
            .map(short_topic_name)
            .unwrap_or_default()
            .to_owned(),
    };
    let mut subscriptions = client
        .list_subscriptions(request)
        .await
        .map_err(|status| rpc_error(&server, "ListSubscriptions", &status))?
        .into_inner()
        .subscriptions;
    subscriptions.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = io::stdout().lock();
    let written = if args.json {
        subscriptions.iter().try_for_each(|subscription| {
            write_json_line(&mut out, &SubscriptionRecord::from(subscription))
        })
    } else {
        write_table(&mut out, &subscriptions_table(&subscriptions))
    };
    finish_output(written.and_then(|()| out.flush()))
}

/// Treats a closed stdout, such as `| head -1`, as success, like other list commands do.
pub(super) fn finish_output(written: io::Result<()>) -> anyhow::Result<ExitCode> {
    match written {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(err) => Err(anyhow::anyhow!("failed to write output: {err}")),
    }
}

/// One `topics list --json` line.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TopicRecord<'a> {
    name: &'a str,
    retained_messages: u64,
    subscriptions: &'a [String],
}

impl<'a> From<&'a TopicInfo> for TopicRecord<'a> {
    fn from(topic: &'a TopicInfo) -> Self {
        TopicRecord {
            name: &topic.name,
            retained_messages: topic.retained_messages,
            subscriptions: &topic.subscriptions,
        }
    }
}

/// One `subscriptions list --json` line. The dead-letter fields are null when the
/// subscription has no dead-letter policy.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionRecord<'a> {
    name: &'a str,
    topic: &'a str,
    backlog: u64,
    outstanding: u64,
    ack_deadline_seconds: u32,
    dead_letter_topic: Option<&'a str>,
    max_delivery_attempts: Option<u32>,
    dead_lettered: u64,
    filtered_out: u64,
}

impl<'a> From<&'a SubscriptionInfo> for SubscriptionRecord<'a> {
    fn from(subscription: &'a SubscriptionInfo) -> Self {
        let has_dead_letter = !subscription.dead_letter_topic.is_empty();
        SubscriptionRecord {
            name: &subscription.name,
            topic: &subscription.topic,
            backlog: subscription.backlog,
            outstanding: subscription.outstanding,
            ack_deadline_seconds: subscription.ack_deadline_seconds,
            dead_letter_topic: has_dead_letter.then_some(subscription.dead_letter_topic.as_str()),
            max_delivery_attempts: has_dead_letter.then_some(subscription.max_delivery_attempts),
            dead_lettered: subscription.dead_lettered,
            filtered_out: subscription.filtered_out,
        }
    }
}

pub(super) fn write_json_line(out: &mut impl Write, record: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, record)?;
    writeln!(out)
}

/// A table of text cells; numeric columns are right-aligned.
pub(super) struct Table {
    pub(super) headers: Vec<&'static str>,
    pub(super) numeric: Vec<bool>,
    pub(super) rows: Vec<Vec<String>>,
}

fn topics_table(topics: &[TopicInfo]) -> Table {
    Table {
        headers: vec!["NAME", "RETAINED", "SUBSCRIPTIONS"],
        numeric: vec![false, true, false],
        rows: topics
            .iter()
            .map(|topic| {
                vec![
                    topic.name.clone(),
                    topic.retained_messages.to_string(),
                    or_dash(topic.subscriptions.join(",")),
                ]
            })
            .collect(),
    }
}

fn subscriptions_table(subscriptions: &[SubscriptionInfo]) -> Table {
    Table {
        headers: vec![
            "NAME",
            "TOPIC",
            "BACKLOG",
            "OUTSTANDING",
            "ACK DEADLINE",
            "DEAD-LETTER TOPIC",
            "DEAD-LETTERED",
            "FILTERED OUT",
        ],
        numeric: vec![false, false, true, true, true, false, true, true],
        rows: subscriptions
            .iter()
            .map(|subscription| {
                let dead_letter_topic = if subscription.dead_letter_topic.is_empty() {
                    "-".to_owned()
                } else {
                    format!(
                        "{} (after {} attempts)",
                        subscription.dead_letter_topic, subscription.max_delivery_attempts
                    )
                };
                vec![
                    subscription.name.clone(),
                    subscription.topic.clone(),
                    subscription.backlog.to_string(),
                    subscription.outstanding.to_string(),
                    format!("{}s", subscription.ack_deadline_seconds),
                    dead_letter_topic,
                    subscription.dead_lettered.to_string(),
                    subscription.filtered_out.to_string(),
                ]
            })
            .collect(),
    }
}

fn or_dash(text: String) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text
    }
}

/// Writes the header and the rows in columns two spaces apart, without trailing spaces.
pub(super) fn write_table(out: &mut impl Write, table: &Table) -> io::Result<()> {
    let mut widths: Vec<usize> = table.headers.iter().map(|h| h.chars().count()).collect();
    for row in &table.rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = table.headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(&table.rows) {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            let width = widths[column];
            let last = column + 1 == row.len();
            if column > 0 {
                line.push_str("  ");
            }
            if table.numeric[column] {
                line.push_str(&format!("{cell:>width$}"));
            } else if last {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}"));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let topics = vec![
            TopicInfo {
                name: "audit-errors".to_owned(),
                retained_messages: 5,
                subscriptions: vec!["audit-errors".to_owned()],
            },
            TopicInfo {
                name: "empty".to_owned(),
                retained_messages: 1234,
                subscriptions: Vec::new(),
            },
        ];
        let mut out = Vec::new();
        write_table(&mut out, &topics_table(&topics)).expect("writing to a Vec succeeds");
        let text = String::from_utf8(out).expect("the table is UTF-8");
        assert_eq!(
            text,
            "NAME          RETAINED  SUBSCRIPTIONS\n\
             audit-errors         5  audit-errors\n\
             empty             1234  -\n"
        );
    }

    #[test]
    fn subscriptions_table_shows_filtered_out() {
        let subscriptions = vec![SubscriptionInfo {
            name: "finalized".to_owned(),
            topic: "uploads".to_owned(),
            backlog: 2,
            ack_deadline_seconds: 10,
            filtered_out: 37,
            ..Default::default()
        }];
        let mut out = Vec::new();
        write_table(&mut out, &subscriptions_table(&subscriptions))
            .expect("writing to a Vec succeeds");
        let text = String::from_utf8(out).expect("the table is UTF-8");
        assert_eq!(
            text,
            "NAME       TOPIC    BACKLOG  OUTSTANDING  ACK DEADLINE  DEAD-LETTER TOPIC  \
             DEAD-LETTERED  FILTERED OUT\n\
             finalized  uploads        2            0           10s  -                              \
             0            37\n"
        );
    }

    #[test]
    fn subscription_record_nulls_missing_dead_letter() {
        let info = SubscriptionInfo {
            name: "s".to_owned(),
            topic: "t".to_owned(),
            backlog: 3,
            outstanding: 1,
            ack_deadline_seconds: 10,
            ..Default::default()
        };
        let json =
            serde_json::to_value(SubscriptionRecord::from(&info)).expect("a record serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "name": "s",
                "topic": "t",
                "backlog": 3,
                "outstanding": 1,
                "ackDeadlineSeconds": 10,
                "deadLetterTopic": null,
                "maxDeliveryAttempts": null,
                "deadLettered": 0,
                "filteredOut": 0
            })
        );
    }
}
