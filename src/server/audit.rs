//! sluice's own audit log: every admin call and every denied call becomes a LogEntry shaped
//! like a Cloud Audit Log entry, which goes through the log router like any ingested entry,
//! so that sinks can filter and forward it.
//!
//! Admin calls, allowed or denied, go to the `cloudaudit.googleapis.com/activity` log, and
//! denied data calls to `cloudaudit.googleapis.com/data_access`, as Cloud Audit Logs file
//! them. Entries are queued and ingested in batches by one task, so a slow store never holds
//! up the call being audited. When the queue is full, entries are dropped and counted in a
//! warning. Entries of rejected calls are also limited per caller address, so that a flood
//! of calls without a token cannot fill the disk with audit entries.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota};

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tonic::Code;
use tracing::warn;

use super::Ingestor;

/// Entries queued for the log router before new ones are dropped.
const QUEUE_ENTRIES: usize = 4096;
/// Most entries ingested in one batch.
const BATCH_ENTRIES: usize = 256;
/// Entries of rejected calls per second from one caller address, after a burst of
/// [`REJECTED_BURST`]. At about 2 KB an entry, one address can add at most 20 KB/s.
const REJECTED_PER_SEC: u32 = 10;
const REJECTED_BURST: u32 = 100;
/// Rejected calls between two evictions of idle addresses from the rate limiter.
const EVICT_EVERY: u64 = 4096;

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
    /// Whether authentication and authorization let the call through; false for every
    /// rejected call, whatever its code.
    pub(crate) granted: bool,
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
    /// The rate of entries of rejected calls per caller address.
    rejected_rate: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    rejected: Arc<AtomicU64>,
    suppressed: Arc<AtomicU64>,
    project: Arc<str>,
}

impl AuditLog {
    /// Starts the task that ingests queued entries through `ingestor`; it ends when every
    /// [`AuditLog`] clone is dropped.
    pub(crate) fn start(ingestor: Ingestor, project: &str) -> AuditLog {
        let (sender, receiver) = mpsc::channel(QUEUE_ENTRIES);
        let project: Arc<str> = Arc::from(project);
        tokio::spawn(ingest_entries(receiver, ingestor, project.clone()));
        let quota = Quota::per_second(NonZeroU32::new(REJECTED_PER_SEC).expect("nonzero"))
            .allow_burst(NonZeroU32::new(REJECTED_BURST).expect("nonzero"));
        AuditLog {
            sender,
            dropped: Arc::new(AtomicU64::new(0)),
            rejected_rate: Arc::new(DefaultKeyedRateLimiter::keyed(quota)),
            rejected: Arc::new(AtomicU64::new(0)),
            suppressed: Arc::new(AtomicU64::new(0)),
            project,
        }
    }

    /// Queues one entry without waiting, unless it is the entry of a rejected call from an
    /// address over its rate, which is counted in a warning instead.
    pub(crate) fn record(&self, record: AuditRecord) {
        if !record.granted && !self.admit_rejected(record.caller_ip) {
            return;
        }
        if self.sender.try_send(record).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // One warning per 1000 drops keeps a flood of denied calls from flooding the log.
            if dropped % 1000 == 1 {
                warn!(dropped, project = %self.project, "audit queue full; audit entries dropped");
            }
        }
    }

    /// Takes one entry of a rejected call from the budget of `caller`, and evicts idle
    /// addresses now and then so that the limiter does not grow with every address seen.
    fn admit_rejected(&self, caller: Option<IpAddr>) -> bool {
        let caller = caller.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if self.rejected.fetch_add(1, Ordering::Relaxed) % EVICT_EVERY == EVICT_EVERY - 1 {
            self.rejected_rate.retain_recent();
            self.rejected_rate.shrink_to_fit();
        }
        if self.rejected_rate.check_key(&caller).is_ok() {
            return true;
        }
        let suppressed = self.suppressed.fetch_add(1, Ordering::Relaxed) + 1;
        if suppressed % 1000 == 1 {
            warn!(
                suppressed,
                %caller,
                limit_per_sec = REJECTED_PER_SEC,
                "audit entries of rejected calls over the rate of one address are not written"
            );
        }
        false
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

/// The error of a written entry that claims to be one of sluice's own audit entries.
pub(crate) const FORGED_AUDIT_ENTRY: &str = "the entry claims to be an audit entry of sluice \
    itself (protoPayload.serviceName \"sluice\" in a cloudaudit.googleapis.com log), which only \
    sluice writes. Write it under another log name or service name.";

/// Returns whether a LogEntry from a client claims to be one of sluice's own audit entries,
/// which sinks that alert on them would take for genuine. Audit entries of Google's services
/// pass, because sluice routes those.
pub(crate) fn claims_sluice_audit(entry: &serde_json::Map<String, Value>) -> bool {
    let audit_log = entry
        .get("logName")
        .and_then(Value::as_str)
        .is_some_and(|name| name.contains("/logs/cloudaudit.googleapis.com"));
    let from_sluice = entry
        .get("protoPayload")
        .and_then(|payload| payload.get("serviceName"))
        .and_then(Value::as_str)
        .is_some_and(|service| service == "sluice");
    audit_log && from_sluice
}

/// Returns the index of the first entry of a batch of JSON LogEntries that claims to be one
/// of sluice's own audit entries. Only entries that contain both names are parsed.
pub(crate) fn first_forged_entry(entries: &[String]) -> Option<usize> {
    entries.iter().position(|entry| {
        entry.contains("cloudaudit.googleapis.com")
            && entry.contains("\"sluice\"")
            && serde_json::from_str::<serde_json::Map<String, Value>>(entry)
                .is_ok_and(|json| claims_sluice_audit(&json))
    })
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
            "granted": record.granted,
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
