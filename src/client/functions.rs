//! `sluice functions`: deploy, list, call, read the logs of and delete functions that the
//! server runs from source, through its `/sluice/v1/functions` routes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use super::http::{encode, StorageClient};
use super::{run_command, ServerArgs};
use crate::cli::write_stdout;

/// Details printed by `sluice functions deploy --help`.
const DEPLOY_HELP: &str = "\
The server copies the source folder, installs its dependencies (a virtual environment
with requirements.txt and functions-framework for Python, npm install with
@google-cloud/functions-framework for Node), cached by the hash of the dependency
files, and runs the function on a 127.0.0.1 port under supervision: it restarts a
process that exits, with a backoff from 0.5 s to 30 s. The first deploy of a set of
dependencies downloads them from PyPI or npm and can take a minute.

Give exactly one trigger. A redeploy of a deployed name replaces the running version
without losing events: deliveries pause, the new version takes over and the backlog
drains.

Examples:
  sluice functions deploy thumbs --runtime python312 --source ./thumbs \\
      --entry-point make_thumbnail --trigger-bucket uploads
  sluice functions deploy offers --runtime nodejs20 --source ./offers \\
      --entry-point onOffer --trigger-topic offers --retry
  sluice functions deploy audit --runtime python312 --source ./audit \\
      --entry-point on_create --signature-type cloudevent \\
      --trigger-event-filters type=google.cloud.audit.log.v1.written \\
      --trigger-event-filters serviceName=storage.googleapis.com \\
      --trigger-event-filters methodName=storage.objects.create";

/// Deploy, list, call and delete functions that the server runs from source.
#[derive(Debug, Subcommand)]
pub(crate) enum FunctionsCommand {
    Deploy(Box<DeployArgs>),
    List(ListArgs),
    Delete(DeleteArgs),
    Call(CallArgs),
    /// Read the log entries of a function.
    #[command(subcommand)]
    Logs(LogsCommand),
}

/// Subcommands of `sluice functions logs`.
#[derive(Debug, Subcommand)]
pub(crate) enum LogsCommand {
    Read(LogsReadArgs),
}

/// The signature types of functions-framework.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum SignatureTypeArg {
    /// A background function, (data, context), sent legacy background events
    Event,
    /// A CloudEvent function, (cloud_event), sent CloudEvents in binary mode
    Cloudevent,
}

/// Deploy a function from a source folder, or a new version of a deployed one.
#[derive(Debug, Args)]
#[command(
    after_long_help = DEPLOY_HELP,
    group(clap::ArgGroup::new("trigger").required(true))
)]
pub(crate) struct DeployArgs {
    /// Function name: letters, digits, '-' and '_', starting with a letter
    name: String,

    /// Folder with the function's source: main.py for Python, package.json or index.js
    /// for Node
    #[arg(long, value_name = "DIR")]
    source: PathBuf,

    /// python or nodejs, optionally with a version as gcloud names it (python312,
    /// nodejs20). The interpreter on the server's PATH runs it, whatever the version
    #[arg(long, value_name = "RUNTIME")]
    runtime: String,

    /// Name of the function in the source that functions-framework calls
    #[arg(long, value_name = "FUNCTION")]
    entry_point: String,

    /// Trigger on the object changes of this bucket
    #[arg(long, value_name = "BUCKET", group = "trigger")]
    trigger_bucket: Option<String>,

    /// Storage event of a --trigger-bucket function: google.storage.object.finalize,
    /// .delete, .archive or .metadataUpdate [default: google.storage.object.finalize]. With
    /// --trigger-topic, only google.pubsub.topic.publish is accepted
    #[arg(long, value_name = "EVENT")]
    trigger_event: Option<String>,

    /// Trigger on the messages of this topic, created when missing
    #[arg(long, value_name = "TOPIC", group = "trigger")]
    trigger_topic: Option<String>,

    /// Eventarc-style filter KEY=VALUE, repeated or comma-separated:
    /// type=google.cloud.audit.log.v1.written with serviceName, methodName and optionally
    /// resourceName, matched exactly
    #[arg(
        long,
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        group = "trigger"
    )]
    trigger_event_filters: Vec<String>,

    /// Path pattern on the audit log's resourceName, as resourceName=PATTERN, where '*'
    /// matches within one path segment and '**' across segments
    #[arg(
        long,
        value_name = "resourceName=PATTERN",
        requires = "trigger_event_filters"
    )]
    trigger_event_filters_path_pattern: Option<String>,

    /// The function's signature, which selects the event format
    #[arg(long, value_enum, default_value = "event")]
    signature_type: SignatureTypeArg,

    /// Retry a failed event with backoff until it is older than --max-event-age, then
    /// dead-letter it to topic function-NAME-dead-letter. Without it, a failed event is
    /// logged and dropped after one attempt
    #[arg(long)]
    retry: bool,

    /// With --retry, how long a failing event is retried, in seconds [default: 604800,
    /// 7 days]
    #[arg(long, value_name = "SECS", requires = "retry")]
    max_event_age: Option<u64>,

    /// Maximum number of events delivered to the function at once (calls in flight).
    /// sluice runs one process per function, so this limits concurrency, not processes
    /// [default: 16]
    #[arg(long, value_name = "N")]
    max_instances: Option<u32>,

    /// Maximum duration of one call, as 60 or 60s, 1 to 540 seconds. A call still running
    /// then counts as failed
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    timeout: u32,

    /// Environment variables of the function, KEY=VALUE, repeated or comma-separated. For
    /// values with commas, start the list with another delimiter between carets, as gcloud
    /// does: '^:^KEY=a,b:OTHER=c'
    #[arg(long, value_name = "KEY=VALUE")]
    set_env_vars: Vec<String>,

    #[command(flatten)]
    server: ServerArgs,
}

/// List the deployed functions with their state, trigger, version and backlog.
///
/// STATE is ACTIVE when the process responds, STARTING while it starts or restarts, and
/// FAILED when it could not be brought back after the server started (redeploy it). BACKLOG
/// counts the events not yet acknowledged.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print one JSON object per function in place of the table
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// Stop a function and remove its subscription and the wiring of its trigger.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Function name
    name: String,

    #[command(flatten)]
    server: ServerArgs,
}

/// Call a function once with a synthetic event of its trigger's type and print the result.
///
/// The event id, timestamp and resource are filled in. For a bucket trigger, --data is the
/// object resource (bucket, name and the rest are filled in when missing); for a topic
/// trigger, a PubsubMessage ({"data": BASE64, "attributes": {...}}) or any JSON, which
/// becomes the message data; for an audit-log trigger, the LogEntry.
#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    /// Function name
    name: String,

    /// The event data, as JSON
    #[arg(long, value_name = "JSON", default_value = "{}")]
    data: String,

    #[command(flatten)]
    server: ServerArgs,
}

/// Print the newest log entries of a function, oldest first.
#[derive(Debug, Args)]
pub(crate) struct LogsReadArgs {
    /// Function name
    name: String,

    /// Number of entries to print, at most 10000
    #[arg(long, value_name = "N", default_value_t = 20)]
    limit: usize,

    /// Print each entry as a JSON line in place of the table
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    server: ServerArgs,
}

/// Runs a `sluice functions` command and returns its exit status.
pub(crate) fn run(command: FunctionsCommand) -> ExitCode {
    match command {
        FunctionsCommand::Deploy(args) => run_command(deploy(*args)),
        FunctionsCommand::List(args) => run_command(list(args)),
        FunctionsCommand::Delete(args) => run_command(delete(args)),
        FunctionsCommand::Call(args) => run_command(call(args)),
        FunctionsCommand::Logs(LogsCommand::Read(args)) => run_command(read_logs(args)),
    }
}

/// Accepts a number of seconds with an optional `s` suffix.
fn parse_timeout(value: &str) -> Result<u32, String> {
    value
        .strip_suffix('s')
        .unwrap_or(value)
        .parse()
        .map_err(|_| format!("invalid duration {value:?}: use seconds, as 60 or 60s"))
}

/// Splits each list argument at its delimiter: a comma, or the text between the carets of a
/// leading `^DELIM^`, gcloud's escape for items that contain commas.
fn split_lists(arguments: &[String]) -> Vec<String> {
    let mut items = Vec::new();
    for argument in arguments {
        let custom = argument
            .strip_prefix('^')
            .and_then(|rest| rest.split_once('^'))
            .filter(|(delimiter, _)| !delimiter.is_empty());
        let (delimiter, list) = custom.unwrap_or((",", argument.as_str()));
        items.extend(
            list.split(delimiter)
                .filter(|item| !item.is_empty())
                .map(str::to_owned),
        );
    }
    items
}

/// Splits `KEY=VALUE` items into a map, naming the option in errors.
fn key_values(items: &[String], option: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for item in items {
        let Some((key, value)) = item.split_once('=') else {
            anyhow::bail!("{option}: invalid item {item:?}; write it as KEY=VALUE");
        };
        map.insert(key.trim().to_owned(), value.to_owned());
    }
    Ok(map)
}

/// Builds the trigger of the deploy request from the trigger options.
fn trigger(args: &DeployArgs) -> anyhow::Result<Value> {
    if let Some(bucket) = &args.trigger_bucket {
        let event = args
            .trigger_event
            .as_deref()
            .unwrap_or("google.storage.object.finalize");
        return Ok(json!({
            "kind": "bucket",
            "bucket": bucket,
            "eventType": storage_event_type(event)?,
        }));
    }
    if let Some(topic) = &args.trigger_topic {
        // The server checks that the event type fits a topic.
        let mut trigger = json!({ "kind": "topic", "topic": topic });
        if let Some(event) = &args.trigger_event {
            trigger["eventType"] = json!(event);
        }
        return Ok(trigger);
    }
    if args.trigger_event_filters.is_empty() {
        anyhow::bail!(
            "no trigger: give one of --trigger-bucket, --trigger-topic or --trigger-event-filters"
        );
    }
    if let Some(event) = &args.trigger_event {
        anyhow::bail!(
            "--trigger-event {event} does not apply to --trigger-event-filters, whose type= \
             filter sets the event type: remove --trigger-event"
        );
    }
    let mut filters = key_values(&args.trigger_event_filters, "--trigger-event-filters")?;
    match filters.remove("type").as_deref() {
        Some("google.cloud.audit.log.v1.written") => {}
        Some(other) => anyhow::bail!(
            "--trigger-event-filters type={other} is not supported: sluice deploys \
             type=google.cloud.audit.log.v1.written; use --trigger-bucket or --trigger-topic \
             for storage and Pub/Sub events"
        ),
        None => {
            anyhow::bail!("--trigger-event-filters needs type=google.cloud.audit.log.v1.written")
        }
    }
    let pattern = match &args.trigger_event_filters_path_pattern {
        Some(text) => match text.split_once('=') {
            Some(("resourceName", pattern)) => Some(pattern.to_owned()),
            _ => anyhow::bail!(
                "--trigger-event-filters-path-pattern {text:?} must be resourceName=PATTERN"
            ),
        },
        None => None,
    };
    Ok(json!({
        "kind": "auditLog",
        "filters": filters,
        "resourceNamePattern": pattern,
    }))
}

/// Returns the notification event type of gcloud's `--trigger-event` name.
fn storage_event_type(name: &str) -> anyhow::Result<&'static str> {
    let known = [
        ("google.storage.object.finalize", "OBJECT_FINALIZE"),
        ("google.storage.object.delete", "OBJECT_DELETE"),
        ("google.storage.object.archive", "OBJECT_ARCHIVE"),
        (
            "google.storage.object.metadataUpdate",
            "OBJECT_METADATA_UPDATE",
        ),
    ];
    known
        .iter()
        .find(|(legacy, notification)| *legacy == name || *notification == name)
        .map(|(_, notification)| *notification)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "unknown --trigger-event {name:?}: use google.storage.object.finalize, \
                 .delete, .archive or .metadataUpdate"
            )
        })
}

async fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let source = std::path::absolute(&args.source)
        .map_err(|err| anyhow::anyhow!("--source {}: {err}", args.source.display()))?;
    let mut request = json!({
        "name": args.name,
        "source": source,
        "runtime": args.runtime,
        "entryPoint": args.entry_point,
        "trigger": trigger(&args)?,
        "signatureType": match args.signature_type {
            SignatureTypeArg::Event => "event",
            SignatureTypeArg::Cloudevent => "cloudevent",
        },
        "retry": args.retry,
        "maxInstances": args.max_instances,
        "timeoutSecs": args.timeout,
        "env": key_values(&split_lists(&args.set_env_vars), "--set-env-vars")?,
    });
    if let Some(age) = args.max_event_age {
        request["maxEventAgeSecs"] = json!(age);
    }
    let client = StorageClient::new(&args.server.server)?;
    let request = client
        .http()
        .post(client.url("/sluice/v1/functions"))
        .json(&request);
    let action = format!("deploy of function {:?}", args.name);
    let status: Value = client.send(request, &action).await?.json().await?;
    write_stdout(format_args!(
        "deployed function {} version {} ({}, {})",
        text(&status["name"]),
        status["version"],
        text(&status["state"]),
        text(&status["trigger"])
    ));
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = StorageClient::new(&args.server.server)?;
    let request = client.http().get(client.url("/sluice/v1/functions"));
    let body: Value = client
        .send(request, "listing functions")
        .await?
        .json()
        .await?;
    let functions = body["functions"].as_array().cloned().unwrap_or_default();
    if args.json {
        for function in &functions {
            write_stdout(format_args!("{function}"));
        }
        return Ok(ExitCode::SUCCESS);
    }
    for line in list_table(&functions) {
        write_stdout(format_args!("{line}"));
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns the lines of the `functions list` table, with each column as wide as its widest
/// cell. NAME, STATE and TRIGGER are left-aligned, VERSION and BACKLOG right-aligned.
fn list_table(functions: &[Value]) -> Vec<String> {
    let header = ["NAME", "STATE", "TRIGGER", "VERSION", "BACKLOG"].map(str::to_owned);
    let mut rows = vec![header];
    for function in functions {
        rows.push([
            text(&function["name"]).to_owned(),
            text(&function["state"]).to_owned(),
            text(&function["trigger"]).to_owned(),
            function["version"].to_string(),
            function["backlog"].to_string(),
        ]);
    }
    let mut widths = [0; 5];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            format!(
                "{:<w0$} {:<w1$} {:<w2$} {:>w3$} {:>w4$}",
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
                w4 = widths[4],
            )
        })
        .collect()
}

async fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let client = StorageClient::new(&args.server.server)?;
    let url = client.url(&format!("/sluice/v1/functions/{}", encode(&args.name)));
    let action = format!("delete of function {:?}", args.name);
    client.send(client.http().delete(url), &action).await?;
    write_stdout(format_args!("deleted function {}", args.name));
    Ok(ExitCode::SUCCESS)
}

async fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let data: Value = serde_json::from_str(&args.data)
        .map_err(|err| anyhow::anyhow!("--data is not valid JSON: {err}"))?;
    let client = StorageClient::new(&args.server.server)?;
    let url = client.url(&format!("/sluice/v1/functions/{}/call", encode(&args.name)));
    let action = format!("call of function {:?}", args.name);
    let request = client.http().post(url).json(&json!({ "data": data }));
    let result: Value = client.send(request, &action).await?.json().await?;
    write_stdout(format_args!("executionId: {}", text(&result["eventId"])));
    // Status 0 means that no response arrived, such as after the function's timeout.
    match result["status"].as_u64() {
        Some(0) | None => write_stdout(format_args!("status: no response")),
        Some(status) => write_stdout(format_args!("status: {status}")),
    }
    write_stdout(format_args!("result: {}", text(&result["result"])));
    if result["ok"].as_bool() == Some(true) {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

async fn read_logs(args: LogsReadArgs) -> anyhow::Result<ExitCode> {
    let client = StorageClient::new(&args.server.server)?;
    let url = client.url(&format!("/sluice/v1/functions/{}/logs", encode(&args.name)));
    let request = client
        .http()
        .get(url)
        .query(&[("limit", args.limit.to_string())]);
    let action = format!("reading the logs of function {:?}", args.name);
    let body: Value = client.send(request, &action).await?.json().await?;
    let entries = body["entries"].as_array().cloned().unwrap_or_default();
    for entry in &entries {
        if args.json {
            write_stdout(format_args!("{entry}"));
            continue;
        }
        let message = match (&entry["textPayload"], &entry["jsonPayload"]) {
            (Value::String(text), _) => text.clone(),
            (_, Value::Object(payload)) => match payload.get("message") {
                Some(Value::String(message)) => message.clone(),
                _ => Value::Object(payload.clone()).to_string(),
            },
            _ => String::new(),
        };
        write_stdout(format_args!(
            "{} {:<8} {} {}",
            text(&entry["timestamp"]),
            text(&entry["severity"]),
            text(&entry["resource"]["labels"]["function_name"]),
            message
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns a JSON string's text, or `-` for anything else.
fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lists_split_at_comma_or_custom_delimiter() {
        let lists = [
            "A=1,B=2".to_owned(),
            "^:^URLS=a,b:MODE=fast".to_owned(),
            "^##^X=1:2##Y=3".to_owned(),
            "C=3".to_owned(),
        ];
        let env = key_values(&split_lists(&lists), "--set-env-vars").expect("valid");
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "2");
        assert_eq!(env["URLS"], "a,b");
        assert_eq!(env["MODE"], "fast");
        assert_eq!(env["X"], "1:2");
        assert_eq!(env["Y"], "3");
        assert_eq!(env["C"], "3");
        // A caret without a closing one is part of the value.
        let plain = split_lists(&["^K=v".to_owned()]);
        assert_eq!(plain, ["^K=v"]);
    }

    #[test]
    fn list_columns_fit_long_trigger() {
        let functions = [
            json!({
                "name": "thumbs",
                "state": "ACTIVE",
                "trigger": "bucket camera-uploads (google.storage.object.metadataUpdate)",
                "version": 12,
                "backlog": 3,
            }),
            json!({
                "name": "offers-fn",
                "state": "STARTING",
                "trigger": "topic offers",
                "version": 1,
                "backlog": 1500,
            }),
        ];
        let lines = list_table(&functions);
        assert_eq!(lines.len(), 3);
        let version_end = lines[0].find("VERSION").expect("a VERSION header") + "VERSION".len();
        let backlog_end = lines[0].len();
        for line in &lines[1..] {
            assert_eq!(
                line.len(),
                backlog_end,
                "BACKLOG ends in one column: {line:?}"
            );
            let version = line[..version_end].trim_end();
            assert_eq!(
                version.len(),
                version_end,
                "VERSION ends in one column: {line:?}"
            );
        }
        assert!(lines[1].ends_with("  12       3"), "{:?}", lines[1]);
        assert!(lines[2].ends_with("   1    1500"), "{:?}", lines[2]);
    }
}
