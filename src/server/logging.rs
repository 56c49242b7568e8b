//! Cloud Logging's write API: `google.logging.v2.LoggingServiceV2/WriteLogEntries` over gRPC
//! and `POST /v2/entries:write` over REST, both feeding the [`Ingestor`].
//!
//! Both front doors handle a request the same way. Each entry takes the request's `logName`
//! and `resource` when it has none, and the request's labels under its own. Then the entry
//! is checked as Cloud Logging checks it: `logName` must have the form
//! `projects/PROJECT_ID/logs/LOG_ID` and the resource must have a type. The entry gets the
//! receive time as `receiveTimestamp`, and as `timestamp` when it has none, and an `insertId`
//! when it has none. Last, it is converted to the JSON form that the router's filters read.
//!
//! An invalid entry rejects the whole request with INVALID_ARGUMENT and nothing is written,
//! unless the request sets `partialSuccess`. Then the valid entries are written and the
//! INVALID_ARGUMENT status carries a `WriteLogEntriesPartialErrors` keyed by entry index. A
//! request with `dryRun` is checked the same way but writes nothing.

mod convert;
mod rest;

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse as _, Response as HttpResponse};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use sluice_proto::google::api::MonitoredResource;
use sluice_proto::google::logging::v2::logging_service_v2_server::{
    LoggingServiceV2, LoggingServiceV2Server,
};
use sluice_proto::google::logging::v2::{
    LogEntry, WriteLogEntriesPartialErrors, WriteLogEntriesRequest, WriteLogEntriesResponse,
};
use sluice_proto::google::protobuf::{Any, Timestamp};
use sluice_proto::google::rpc;
use sluice_proto::prost::Message as _;
use tonic::{Code, Request, Response, Status};
use tracing::{debug, warn};

use super::ingest::{Ingestor, MAX_BATCH_ENTRIES};
use super::limits;
use super::status::rest_error;

/// The type URL of the status detail that lists the entries a partial write left out.
const PARTIAL_ERRORS_TYPE: &str =
    "type.googleapis.com/google.logging.v2.WriteLogEntriesPartialErrors";
/// The parents a log can belong to: the first segment of `PARENT/ID/logs/LOG_ID`.
const LOG_PARENTS: [&str; 4] = ["projects", "organizations", "folders", "billingAccounts"];
/// Cloud Logging requires a LOG_ID of fewer than 512 characters once URL-decoded.
const MAX_LOG_ID_CHARS: usize = 511;
/// How many entry errors an error message lists before it gives only the count of the rest.
const LISTED_ENTRY_ERRORS: usize = 10;
/// The form of `logName`, for error messages.
const LOG_NAME_FORM: &str = "projects/PROJECT_ID/logs/LOG_ID (or organizations/, folders/ or \
                             billingAccounts/ in place of projects/)";

/// Returns the gRPC service, accepting requests of up to `[limits] max_request_bytes`.
pub(crate) fn grpc_service(ingestor: Ingestor) -> LoggingServiceV2Server<LoggingService> {
    LoggingServiceV2Server::new(LoggingService::new(ingestor))
        .max_decoding_message_size(limits::get().max_request_bytes)
}

/// Returns the REST route `POST /v2/entries:write`, accepting bodies of up to
/// `[limits] max_request_bytes`. Query parameters such as `$alt=json` are ignored.
pub(crate) fn routes(ingestor: Ingestor) -> Router {
    Router::new()
        .route("/v2/entries:write", post(write_entries_rest))
        .layer(DefaultBodyLimit::max(limits::get().max_request_bytes))
        .with_state(LoggingService::new(ingestor))
}

/// Service that writes log entries through the [`Ingestor`].
#[derive(Debug, Clone)]
pub(crate) struct LoggingService {
    ingestor: Ingestor,
    insert_ids: Arc<InsertIds>,
}

/// A write request of either front door, with entries not yet checked.
#[derive(Debug, Default)]
struct WriteRequest {
    /// `logName` for entries without one, or empty.
    log_name: String,
    /// `resource` for entries without one.
    resource: Option<MonitoredResource>,
    /// Labels added to every entry that has no label of the same key.
    labels: HashMap<String, String>,
    entries: Vec<EntryInput>,
    partial_success: bool,
    dry_run: bool,
}

/// One entry of a write request.
#[derive(Debug, Default)]
struct EntryInput {
    entry: LogEntry,
    /// A protoPayload received as JSON over REST. No parser of its type exists here, so it is
    /// written as it came: an int64 sent as a JSON number stays a number, for example. Over
    /// gRPC the payload is in `entry`.
    proto_payload: Option<Map<String, Value>>,
}

impl From<WriteLogEntriesRequest> for WriteRequest {
    fn from(request: WriteLogEntriesRequest) -> Self {
        WriteRequest {
            log_name: request.log_name,
            resource: request.resource,
            labels: request.labels,
            entries: request
                .entries
                .into_iter()
                .map(|entry| EntryInput {
                    entry,
                    proto_payload: None,
                })
                .collect(),
            partial_success: request.partial_success,
            dry_run: request.dry_run,
        }
    }
}

/// The reason a write failed.
#[derive(Debug)]
enum WriteError {
    /// A request-level field is invalid, so nothing was written.
    InvalidRequest(String),
    /// Entries are invalid. With `partial_success` the other entries were written (unless
    /// the request was a dry run), and the error lists each invalid entry by index.
    InvalidEntries {
        message: String,
        entry_errors: BTreeMap<usize, String>,
        partial_success: bool,
    },
    /// Routing or publishing the valid entries failed.
    Ingest(Status),
}

impl LoggingService {
    fn new(ingestor: Ingestor) -> Self {
        LoggingService {
            ingestor,
            insert_ids: Arc::new(InsertIds::new()),
        }
    }

    async fn write(&self, request: WriteRequest) -> Result<(), WriteError> {
        if request.entries.len() > MAX_BATCH_ENTRIES {
            return Err(WriteError::InvalidRequest(format!(
                "The request has {} entries, over the limit of {MAX_BATCH_ENTRIES}. Send smaller \
                 batches.",
                request.entries.len()
            )));
        }
        if !request.log_name.is_empty() {
            normalize_log_name(&request.log_name)
                .map_err(|reason| WriteError::InvalidRequest(format!("The request's {reason}")))?;
        }
        // NOTE: a request without entries succeeds and writes nothing. Cloud Logging marks
        // `entries` as required, and whether it rejects an empty list was not checked.
        let receive_time = now();
        let total = request.entries.len();
        let mut valid = Vec::with_capacity(total);
        let mut entry_errors = BTreeMap::new();
        for (index, input) in request.entries.into_iter().enumerate() {
            let defaults = EntryDefaults {
                log_name: &request.log_name,
                resource: request.resource.as_ref(),
                labels: &request.labels,
                receive_time,
            };
            match prepare_entry(input, &defaults, &self.insert_ids) {
                Ok(json) => valid.push(json),
                Err(reason) => {
                    entry_errors.insert(index, reason);
                }
            }
        }
        if !entry_errors.is_empty() && !request.partial_success {
            let message = format!(
                "{} of {total} log entries are invalid, so none was written. {}",
                entry_errors.len(),
                list_entry_errors(&entry_errors)
            );
            debug!(invalid = entry_errors.len(), total, "rejected a log write");
            return Err(WriteError::InvalidEntries {
                message,
                entry_errors,
                partial_success: false,
            });
        }
        let written = valid.len();
        if !request.dry_run && !valid.is_empty() {
            let routed = self.ingestor.ingest(valid).await.map_err(|status| {
                warn!(entries = written, error = %status, "ingesting a log write failed");
                WriteError::Ingest(status)
            })?;
            for (index, reason) in &routed.errors {
                // The entries were serialized from JSON values just above, so this would be a
                // bug in the conversion.
                warn!(index, reason, "the router rejected a converted log entry");
            }
        }
        if entry_errors.is_empty() {
            return Ok(());
        }
        let outcome = if request.dry_run {
            format!("The other {written} are valid; nothing was written because of dryRun.")
        } else {
            format!("The other {written} were written.")
        };
        let message = format!(
            "{} of {total} log entries are invalid and were not written. {outcome} {}",
            entry_errors.len(),
            list_entry_errors(&entry_errors)
        );
        debug!(
            invalid = entry_errors.len(),
            total, "wrote the valid entries of a log write"
        );
        Err(WriteError::InvalidEntries {
            message,
            entry_errors,
            partial_success: true,
        })
    }
}

/// Applies the request's defaults to one entry, checks it and returns its JSON form.
fn prepare_entry(
    input: EntryInput,
    defaults: &EntryDefaults<'_>,
    insert_ids: &InsertIds,
) -> Result<String, String> {
    let EntryInput {
        mut entry,
        proto_payload,
    } = input;

    if entry.log_name.is_empty() {
        entry.log_name = defaults.log_name.to_owned();
    }
    if entry.log_name.is_empty() {
        return Err(format!(
            "logName is missing. Set logName on the entry or on the request, as {LOG_NAME_FORM}."
        ));
    }
    entry.log_name = normalize_log_name(&entry.log_name)?;

    if entry.resource.is_none() {
        entry.resource = defaults.resource.cloned();
    }
    match &entry.resource {
        None => {
            return Err(
                "resource is missing. Set resource on the entry or on the request, such as \
                     {\"type\": \"global\"}."
                    .to_owned(),
            )
        }
        Some(resource) if resource.r#type.is_empty() => {
            return Err(
                "resource.type is missing. Set it to a monitored resource type such as \
                     \"global\" or \"gcs_bucket\"."
                    .to_owned(),
            )
        }
        Some(_) => {}
    }

    for (key, value) in defaults.labels {
        entry
            .labels
            .entry(key.clone())
            .or_insert_with(|| value.clone());
    }

    if entry.timestamp.is_none() {
        entry.timestamp = Some(defaults.receive_time);
    }
    // receiveTimestamp is output only: the service sets it whatever the client sent.
    entry.receive_timestamp = Some(defaults.receive_time);
    if entry.insert_id.is_empty() {
        entry.insert_id = insert_ids.next(&defaults.receive_time);
    }

    let mut json = convert::entry_to_json(&entry).map_err(|err| format!("{err}."))?;
    if let Some(payload) = proto_payload {
        json.insert("protoPayload".to_owned(), Value::Object(payload));
    }
    if super::audit::claims_sluice_audit(&json) {
        return Err(super::audit::FORGED_AUDIT_ENTRY.to_owned());
    }
    serde_json::to_string(&json).map_err(|err| format!("the entry has no JSON form: {err}."))
}

/// Parses the body of a REST write and prepares each entry as [`LoggingService::write`] does,
/// without ingesting anything: the JSON form of each valid entry, or why it is invalid. The
/// `logging_write_request` fuzz target checks this path.
pub(super) fn prepare_rest_write(body: &[u8]) -> Result<Vec<Result<String, String>>, String> {
    let request = rest::parse_write_request(body)?;
    if !request.log_name.is_empty() {
        normalize_log_name(&request.log_name)?;
    }
    let receive_time = now();
    let insert_ids = InsertIds::new();
    let defaults = EntryDefaults {
        log_name: &request.log_name,
        resource: request.resource.as_ref(),
        labels: &request.labels,
        receive_time,
    };
    Ok(request
        .entries
        .into_iter()
        .map(|input| prepare_entry(input, &defaults, &insert_ids))
        .collect())
}

/// The request-level values that [`prepare_entry`] applies to each entry.
struct EntryDefaults<'a> {
    log_name: &'a str,
    resource: Option<&'a MonitoredResource>,
    labels: &'a HashMap<String, String>,
    receive_time: Timestamp,
}

/// Lists entry errors as `entries[INDEX]: REASON`, the first [`LISTED_ENTRY_ERRORS`] of them.
fn list_entry_errors(entry_errors: &BTreeMap<usize, String>) -> String {
    let mut listed: Vec<String> = entry_errors
        .iter()
        .take(LISTED_ENTRY_ERRORS)
        .map(|(index, reason)| format!("entries[{index}]: {reason}"))
        .collect();
    if entry_errors.len() > LISTED_ENTRY_ERRORS {
        listed.push(format!(
            "And {} more invalid entries.",
            entry_errors.len() - LISTED_ENTRY_ERRORS
        ));
    }
    listed.join(" ")
}

/// Checks a log name and returns it in canonical form: without the leading `/` that Cloud
/// Logging accepts and removes, and with every `/` inside the LOG_ID written as `%2F`.
fn normalize_log_name(name: &str) -> Result<String, String> {
    let trimmed = name.strip_prefix('/').unwrap_or(name);
    let mut parts = trimmed.splitn(4, '/');
    let (parent, parent_id, logs, log_id) =
        (parts.next(), parts.next(), parts.next(), parts.next());
    let (parent, parent_id, log_id) = match (parent, parent_id, logs, log_id) {
        (Some(parent), Some(parent_id), Some("logs"), Some(log_id))
            if LOG_PARENTS.contains(&parent) && !parent_id.is_empty() && !log_id.is_empty() =>
        {
            (parent, parent_id, log_id)
        }
        _ => {
            return Err(format!(
                "logName {name:?} is invalid. Write it as {LOG_NAME_FORM}."
            ))
        }
    };

    let decoded = percent_decode(log_id).map_err(|reason| {
        format!("logName {name:?} is invalid: the LOG_ID {log_id:?} {reason}.")
    })?;
    if let Some(bad) = decoded
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.')))
    {
        return Err(format!(
            "logName {name:?} is invalid: the LOG_ID contains {bad:?}. A LOG_ID may contain only \
             letters, digits, '/', '_', '-' and '.', with '/' written as %2F."
        ));
    }

    if decoded.chars().count() > MAX_LOG_ID_CHARS {
        return Err(format!(
            "logName {name:?} is invalid: the LOG_ID has {} characters, over the limit of \
             {MAX_LOG_ID_CHARS}.",
            decoded.chars().count()
        ));
    }

    // NOTE: Cloud Logging documents LOG_ID as URL-encoded, and its audit logs are named like
    // `cloudaudit.googleapis.com%2Factivity`. Writing a raw `/` as %2F too lets one filter
    // match both spellings. How Cloud Logging stores a raw `/` was not checked.
    Ok(format!(
        "{parent}/{parent_id}/logs/{}",
        decoded.replace('/', "%2F")
    ))
}

/// Decodes `%XX` escapes.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let escape = text
                .get(i + 1..i + 3)
                .filter(|hex| hex.bytes().all(|byte| byte.is_ascii_hexdigit()))
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("has an invalid escape at byte {i}"))?;
            decoded.push(escape);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| "decodes to invalid UTF-8".to_owned())
}

/// Returns the current time as a protobuf Timestamp.
fn now() -> Timestamp {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since_epoch.subsec_nanos()).unwrap_or(0),
    }
}

/// Generator of `insertId`s for entries written without one.
///
/// An id is the receive time's seconds, a random number drawn when the server starts and a
/// counter, all in hex. The counter makes ids unique within the process, and the time and the
/// random number make them unlikely to repeat those of an earlier run.
#[derive(Debug)]
struct InsertIds {
    nonce: u32,
    counter: AtomicU64,
}

impl InsertIds {
    fn new() -> Self {
        // RandomState is seeded from the operating system's random source.
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        InsertIds {
            nonce: hasher.finish() as u32,
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self, receive_time: &Timestamp) -> String {
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:x}{:08x}{count:x}", receive_time.seconds, self.nonce)
    }
}

impl WriteError {
    /// The gRPC status, as Cloud Logging returns it. A partial write carries a
    /// `WriteLogEntriesPartialErrors` in the status details.
    fn into_status(self) -> Status {
        match self {
            WriteError::InvalidRequest(message) => Status::invalid_argument(message),
            WriteError::InvalidEntries {
                message,
                entry_errors,
                partial_success,
            } => {
                if !partial_success {
                    return Status::invalid_argument(message);
                }
                let details = rpc::Status {
                    code: Code::InvalidArgument as i32,
                    message: message.clone(),
                    details: vec![Any {
                        type_url: PARTIAL_ERRORS_TYPE.to_owned(),
                        value: partial_errors(entry_errors).encode_to_vec(),
                    }],
                };
                Status::with_details(
                    Code::InvalidArgument,
                    message,
                    details.encode_to_vec().into(),
                )
            }
            WriteError::Ingest(status) => status,
        }
    }

    /// Builds the REST response: Google's JSON error, with the partial errors in `details`.
    fn into_http_response(self) -> HttpResponse {
        match self {
            WriteError::InvalidRequest(message) => {
                rest_error(Code::InvalidArgument, &message, None)
            }
            WriteError::InvalidEntries {
                message,
                entry_errors,
                partial_success,
            } => {
                let details = partial_success.then(|| {
                    let errors: Map<String, Value> = entry_errors
                        .into_iter()
                        .map(|(index, reason)| {
                            let status = json!({
                                "code": Code::InvalidArgument as i32,
                                "message": reason,
                            });
                            (index.to_string(), status)
                        })
                        .collect();
                    json!({"@type": PARTIAL_ERRORS_TYPE, "logEntryErrors": errors})
                });
                rest_error(Code::InvalidArgument, &message, details)
            }
            WriteError::Ingest(status) => rest_error(status.code(), status.message(), None),
        }
    }
}

fn partial_errors(entry_errors: BTreeMap<usize, String>) -> WriteLogEntriesPartialErrors {
    let log_entry_errors = entry_errors
        .into_iter()
        .map(|(index, message)| {
            let status = rpc::Status {
                code: Code::InvalidArgument as i32,
                message,
                details: Vec::new(),
            };
            // The batch limit keeps indices far below i32::MAX.
            (i32::try_from(index).unwrap_or(i32::MAX), status)
        })
        .collect();
    WriteLogEntriesPartialErrors { log_entry_errors }
}

#[tonic::async_trait]
impl LoggingServiceV2 for LoggingService {
    async fn write_log_entries(
        &self,
        request: Request<WriteLogEntriesRequest>,
    ) -> Result<Response<WriteLogEntriesResponse>, Status> {
        let request = WriteRequest::from(request.into_inner());
        self.write(request).await.map_err(WriteError::into_status)?;
        Ok(Response::new(WriteLogEntriesResponse {}))
    }
}

async fn write_entries_rest(
    State(service): State<LoggingService>,
    body: Result<Bytes, BytesRejection>,
) -> HttpResponse {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let message = format!(
                "the request body could not be read: {}. Bodies are limited to {} bytes \
                 ([limits] max_request_bytes); send fewer entries per request.",
                rejection.body_text(),
                limits::get().max_request_bytes
            );
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                return super::status::payload_too_large(&message);
            }
            return rest_error(Code::InvalidArgument, &message, None);
        }
    };
    let request = match rest::parse_write_request(&body) {
        Ok(request) => request,
        Err(message) => return rest_error(Code::InvalidArgument, &message, None),
    };
    match service.write(request).await {
        Ok(()) => Json(json!({})).into_response(),
        Err(err) => err.into_http_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use axum::http::StatusCode;
    use sluice_proto::google::logging::v2::log_entry;

    use super::*;

    const RECEIVE_TIME: Timestamp = Timestamp {
        seconds: 1_714_564_800,
        nanos: 7_000_000,
    };

    fn global() -> MonitoredResource {
        MonitoredResource {
            r#type: "global".to_owned(),
            labels: HashMap::new(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// Prepares `entry` under the request-level values and parses the resulting JSON.
    fn prepare(
        entry: LogEntry,
        log_name: &str,
        resource: Option<&MonitoredResource>,
        request_labels: &HashMap<String, String>,
    ) -> Result<Value, String> {
        let defaults = EntryDefaults {
            log_name,
            resource,
            labels: request_labels,
            receive_time: RECEIVE_TIME,
        };
        let input = EntryInput {
            entry,
            proto_payload: None,
        };
        let text = prepare_entry(input, &defaults, &InsertIds::new())?;
        Ok(serde_json::from_str(&text).expect("prepare_entry writes JSON"))
    }

    #[test]
    fn log_names_that_are_valid() {
        let cases = [
            ("projects/demo/logs/app", "projects/demo/logs/app"),
            ("/projects/demo/logs/app", "projects/demo/logs/app"),
            (
                "organizations/123/logs/syslog",
                "organizations/123/logs/syslog",
            ),
            ("folders/9/logs/a.b-c_d", "folders/9/logs/a.b-c_d"),
            (
                "billingAccounts/0A-1B/logs/x",
                "billingAccounts/0A-1B/logs/x",
            ),
            (
                "projects/demo/logs/cloudaudit.googleapis.com%2Factivity",
                "projects/demo/logs/cloudaudit.googleapis.com%2Factivity",
            ),
            (
                "projects/demo/logs/cloudaudit.googleapis.com%2factivity",
                "projects/demo/logs/cloudaudit.googleapis.com%2Factivity",
            ),
            (
                "projects/demo/logs/cloudaudit.googleapis.com/data_access",
                "projects/demo/logs/cloudaudit.googleapis.com%2Fdata_access",
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(normalize_log_name(name).as_deref(), Ok(expected), "{name}");
        }
    }

    #[test]
    fn log_names_that_are_invalid() {
        let too_long = format!("projects/demo/logs/{}", "a".repeat(MAX_LOG_ID_CHARS + 1));
        let cases = [
            "app",
            "projects/demo",
            "projects/demo/logs",
            "projects/demo/logs/",
            "projects//logs/app",
            "users/demo/logs/app",
            "projects/demo/metrics/app",
            "projects/demo/logs/app name",
            "projects/demo/logs/app%20name",
            "projects/demo/logs/bad%2",
            "projects/demo/logs/bad%zz",
            "projects/demo/logs/bad%+4",
            "projects/demo/logs/caf%C3%A9",
            too_long.as_str(),
        ];
        for name in cases {
            assert!(normalize_log_name(name).is_err(), "{name} was accepted");
        }
        let longest = format!("projects/demo/logs/{}", "a".repeat(MAX_LOG_ID_CHARS));
        assert!(normalize_log_name(&longest).is_ok());
    }

    #[test]
    fn entry_takes_request_defaults() {
        let entry = LogEntry {
            labels: labels(&[("env", "prod"), ("team", "entry")]),
            payload: Some(log_entry::Payload::TextPayload("hi".to_owned())),
            ..LogEntry::default()
        };
        let request_labels = labels(&[("team", "request"), ("region", "eu")]);
        let json = prepare(
            entry,
            "projects/demo/logs/app",
            Some(&global()),
            &request_labels,
        )
        .expect("valid");
        assert_eq!(json["logName"], "projects/demo/logs/app");
        assert_eq!(json["resource"]["type"], "global");
        assert_eq!(json["labels"]["env"], "prod");
        assert_eq!(json["labels"]["team"], "entry", "the entry's label wins");
        assert_eq!(json["labels"]["region"], "eu");
        assert_eq!(json["timestamp"], "2024-05-01T12:00:00.007Z");
        assert_eq!(json["receiveTimestamp"], "2024-05-01T12:00:00.007Z");
        assert!(json["insertId"].as_str().is_some_and(|id| !id.is_empty()));
        assert_eq!(json["textPayload"], "hi");
    }

    #[test]
    fn entry_values_win_over_request_defaults() {
        let entry = LogEntry {
            log_name: "/projects/other/logs/own".to_owned(),
            resource: Some(MonitoredResource {
                r#type: "gcs_bucket".to_owned(),
                labels: HashMap::new(),
            }),
            timestamp: Some(Timestamp {
                seconds: 1_000,
                nanos: 0,
            }),
            receive_timestamp: Some(Timestamp {
                seconds: 5,
                nanos: 0,
            }),
            insert_id: "mine".to_owned(),
            ..LogEntry::default()
        };
        let json = prepare(
            entry,
            "projects/demo/logs/app",
            Some(&global()),
            &HashMap::new(),
        )
        .expect("valid");
        assert_eq!(json["logName"], "projects/other/logs/own");
        assert_eq!(json["resource"]["type"], "gcs_bucket");
        assert_eq!(json["timestamp"], "1970-01-01T00:16:40Z");
        assert_eq!(
            json["receiveTimestamp"], "2024-05-01T12:00:00.007Z",
            "receiveTimestamp is set by the service"
        );
        assert_eq!(json["insertId"], "mine");
        assert!(json.get("labels").is_none());
    }

    #[test]
    fn entry_without_log_name_is_invalid() {
        let err = prepare(LogEntry::default(), "", Some(&global()), &HashMap::new())
            .expect_err("no logName");
        assert!(err.starts_with("logName is missing"), "{err}");
        assert!(err.contains("projects/PROJECT_ID/logs/LOG_ID"), "{err}");
    }

    #[test]
    fn entry_with_bad_log_name_is_invalid() {
        let entry = LogEntry {
            log_name: "my-log".to_owned(),
            ..LogEntry::default()
        };
        let err = prepare(entry, "", Some(&global()), &HashMap::new()).expect_err("bad logName");
        assert!(err.contains("\"my-log\""), "{err}");
    }

    #[test]
    fn entry_without_resource_is_invalid() {
        let err = prepare(
            LogEntry::default(),
            "projects/demo/logs/app",
            None,
            &HashMap::new(),
        )
        .expect_err("no resource");
        assert!(err.starts_with("resource is missing"), "{err}");
        let untyped = MonitoredResource::default();
        let err = prepare(
            LogEntry::default(),
            "projects/demo/logs/app",
            Some(&untyped),
            &HashMap::new(),
        )
        .expect_err("no resource type");
        assert!(err.starts_with("resource.type is missing"), "{err}");
    }

    #[test]
    fn entry_with_unconvertible_field_is_invalid() {
        let entry = LogEntry {
            timestamp: Some(Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            ..LogEntry::default()
        };
        let err = prepare(
            entry,
            "projects/demo/logs/app",
            Some(&global()),
            &HashMap::new(),
        )
        .expect_err("bad timestamp");
        assert!(err.starts_with("timestamp is invalid"), "{err}");
    }

    #[test]
    fn insert_ids_are_unique() {
        let ids = InsertIds::new();
        let generated: HashSet<String> = (0..10_000).map(|_| ids.next(&RECEIVE_TIME)).collect();
        assert_eq!(generated.len(), 10_000);
        let other_run = InsertIds::new();
        assert!(!generated.contains(&other_run.next(&RECEIVE_TIME)));
    }

    #[test]
    fn entry_error_list_is_capped() {
        let errors: BTreeMap<usize, String> = (0..12).map(|i| (i * 2, "bad.".to_owned())).collect();
        let listed = list_entry_errors(&errors);
        assert!(
            listed.starts_with("entries[0]: bad. entries[2]: bad."),
            "{listed}"
        );
        assert!(listed.contains("entries[18]: bad."), "{listed}");
        assert!(!listed.contains("entries[20]"), "{listed}");
        assert!(listed.ends_with("And 2 more invalid entries."), "{listed}");
    }

    fn partial_failure() -> WriteError {
        WriteError::InvalidEntries {
            message: "1 of 2 log entries are invalid and were not written.".to_owned(),
            entry_errors: BTreeMap::from([(1, "logName is missing.".to_owned())]),
            partial_success: true,
        }
    }

    #[test]
    fn partial_failure_status_has_details() {
        let status = partial_failure().into_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details =
            rpc::Status::decode(status.details()).expect("details are a google.rpc.Status");
        assert_eq!(details.code, Code::InvalidArgument as i32);
        assert_eq!(details.details.len(), 1);
        assert_eq!(details.details[0].type_url, PARTIAL_ERRORS_TYPE);
        let errors = WriteLogEntriesPartialErrors::decode(details.details[0].value.as_slice())
            .expect("decodes");
        assert_eq!(errors.log_entry_errors.len(), 1);
        assert_eq!(errors.log_entry_errors[&1].message, "logName is missing.");
        assert_eq!(
            errors.log_entry_errors[&1].code,
            Code::InvalidArgument as i32
        );
    }

    #[test]
    fn whole_failure_status_has_no_details() {
        let failure = WriteError::InvalidEntries {
            message: "1 of 1 log entries are invalid, so none was written.".to_owned(),
            entry_errors: BTreeMap::from([(0, "resource is missing.".to_owned())]),
            partial_success: false,
        };
        let status = failure.into_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.details().is_empty());
    }

    async fn body_json(response: HttpResponse) -> (StatusCode, Value) {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body reads");
        (
            status,
            serde_json::from_slice(&body).expect("the body is JSON"),
        )
    }

    #[tokio::test]
    async fn partial_failure_rest_error() {
        let (status, body) = body_json(partial_failure().into_http_response()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let expected = json!({
            "error": {
                "code": 400,
                "message": "1 of 2 log entries are invalid and were not written.",
                "status": "INVALID_ARGUMENT",
                "details": [{
                    "@type": PARTIAL_ERRORS_TYPE,
                    "logEntryErrors": {"1": {"code": 3, "message": "logName is missing."}}
                }]
            }
        });
        assert_eq!(body, expected);
    }

    #[tokio::test]
    async fn ingest_failure_rest_error() {
        let failure = WriteError::Ingest(Status::unavailable("shutting down"));
        let (status, body) = body_json(failure.into_http_response()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            json!({"error": {"code": 503, "message": "shutting down", "status": "UNAVAILABLE"}})
        );
    }
}
