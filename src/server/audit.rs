//! sluice's own audit log: every admin call and every denied call becomes a LogEntry shaped
//! like a Cloud Audit Log entry, which goes through the log router like any ingested entry,
//! so that sinks can filter and forward it.
//!
//! Admin calls, allowed or denied, go to the `cloudaudit.googleapis.com/activity` log, and
//! denied data calls to `cloudaudit.googleapis.com/data_access`, as Cloud Audit Logs file
//! them. Entries are queued and ingested in batches by one task, so a slow store never holds
//! up the call being audited; when the queue is full, entries are dropped and counted in a
//! warning.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tonic::Code;
use tracing::warn;

use super::Ingestor;

/// Entries queued for the log router before new ones are dropped.
const QUEUE_ENTRIES: usize = 4096;
/// Most entries ingested in one batch.
const BATCH_ENTRIES: usize = 256;

/// One audited call.
#[derive(Debug, Clone)]
pub(crate) struct AuditRecord {
    /// The gRPC method, such as `google.pubsub.v1.Publisher.CreateTopic`, or the HTTP method
    /// and path.
    pub(crate) method_name: String,
    /// The resource as grants name it, such as `topics/orders`; empty when unknown.
    pub(crate) resource_name: String,
    /// The authenticated identity; `None` for an unauthenticated call.
    pub(crate) principal: Option<Arc<str>>,
    pub(crate) caller_ip: Option<IpAddr>,
    /// The action that the call needed, such as `publish`.
    pub(crate) permission: Option<&'static str>,
    pub(crate) code: Code,
    pub(crate) message: String,
    /// Whether the call was an admin call, which selects the activity log.
    pub(crate) admin: bool,
}

/// The sending side of the audit queue.
#[derive(Debug, Clone)]
pub(crate) struct AuditLog {
    sender: mpsc::Sender<AuditRecord>,
    dropped: Arc<AtomicU64>,
    project: Arc<str>,
}

impl AuditLog {
    /// Starts the task that ingests queued entries through `ingestor`; it ends when every
    /// [`AuditLog`] clone is dropped.
    pub(crate) fn start(ingestor: Ingestor, project: &str) -> AuditLog {
        let (sender, receiver) = mpsc::channel(QUEUE_ENTRIES);
        let project: Arc<str> = Arc::from(project);
        tokio::spawn(ingest_entries(receiver, ingestor, project.clone()));
        AuditLog {
            sender,
            dropped: Arc::new(AtomicU64::new(0)),
            project,
        }
    }

    /// Queues one entry without waiting.
    pub(crate) fn record(&self, record: AuditRecord) {
        if self.sender.try_send(record).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // One warning per 1000 drops keeps a flood of denied calls from flooding the log.
            if dropped % 1000 == 1 {
                warn!(dropped, project = %self.project, "audit queue full; audit entries dropped");
            }
        }
    }
}

async fn ingest_entries(
    mut receiver: mpsc::Receiver<AuditRecord>,
    ingestor: Ingestor,
    project: Arc<str>,
) {
    let mut batch = Vec::with_capacity(BATCH_ENTRIES);
    while receiver.recv_many(&mut batch, BATCH_ENTRIES).await > 0 {
        let entries = batch
            .drain(..)
            .map(|record| log_entry(&record, &project).to_string())
            .collect();
        if let Err(status) = ingestor.ingest(entries).await {
            warn!(code = ?status.code(), error = %status.message(), "ingesting audit entries failed");
        }
    }
}

/// Returns the LogEntry JSON of one record, in the shape of a Cloud Audit Log entry.
pub(crate) fn log_entry(record: &AuditRecord, project: &str) -> Value {
    let log = if record.admin {
        "activity"
    } else {
        "data_access"
    };
    let mut authentication = Map::new();
    if let Some(principal) = &record.principal {
        let key = if principal.contains('@') {
            "principalEmail"
        } else {
            "principalSubject"
        };
        authentication.insert(key.to_owned(), json!(principal.as_ref()));
    }
    let mut payload = json!({
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "serviceName": "sluice",
        "methodName": record.method_name,
        "resourceName": record.resource_name,
        "authenticationInfo": authentication,
        "status": status_json(record.code, &record.message),
    });
    if let Some(ip) = record.caller_ip {
        payload["requestMetadata"] = json!({ "callerIp": ip.to_string() });
    }
    if let Some(permission) = record.permission {
        payload["authorizationInfo"] = json!([{
            "resource": record.resource_name,
            "permission": format!("sluice.{permission}"),
            "granted": record.code != Code::PermissionDenied,
        }]);
    }
    let severity = match record.code {
        Code::Ok => "NOTICE",
        Code::Unauthenticated | Code::PermissionDenied => "WARNING",
        _ => "ERROR",
    };
    json!({
        "logName": format!("projects/{project}/logs/cloudaudit.googleapis.com%2F{log}"),
        "resource": {
            "type": "audited_resource",
            "labels": { "service": "sluice", "method": record.method_name, "project_id": project },
        },
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "severity": severity,
        "protoPayload": payload,
    })
}

/// Returns a `google.rpc.Status` as JSON; an OK status is the empty object, as in Cloud Audit
/// Logs.
fn status_json(code: Code, message: &str) -> Value {
    if code == Code::Ok {
        return json!({});
    }
    json!({ "code": code as i32, "message": message })
}
