//! The permission table: the action and resource of every gRPC method and HTTP route.
//!
//! Resources are named `topics/NAME`, `subscriptions/NAME`, `snapshots/NAME` and
//! `buckets/NAME` (NAME as the store keeps it: bare in the configuration's project,
//! `PROJECT/NAME` in any other), `projects/PROJECT` for the list and create calls of a
//! project, `logs` for the log router as a whole, and `functions` for the deployed
//! functions. A gRPC method's resource comes from a field of its first request message, an
//! HTTP route's from its path.

use prost::Message as _;
use sluice_proto::google::pubsub::v1 as pubsub;

use super::Action;
use crate::server::names;

/// The source of a call's resource.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Resource {
    /// A fixed resource, such as `logs`.
    Fixed(&'static str),
    /// The configuration's project, as `projects/PROJECT`.
    ConfigProject,
    /// A field of the first gRPC request message, decoded by the function.
    Grpc(fn(&[u8]) -> Option<String>),
    /// The percent-decoded path segment at this index (0 is the first after the leading
    /// `/`), without a `:verb` suffix, under the collection.
    Segment(usize, Collection),
}

/// The kind of resource that a path segment or request field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collection {
    /// `projects/P/topics/T` as `topics/STORE_NAME`.
    Topic,
    Subscription,
    Snapshot,
    /// `projects/P` as itself.
    Project,
    /// A bucket name as `buckets/NAME`.
    Bucket,
}

/// One gRPC method: its path, its action and its resource.
#[derive(Debug)]
pub(crate) struct GrpcRule {
    pub(crate) path: &'static str,
    pub(crate) action: Action,
    pub(crate) resource: Resource,
}

/// One HTTP route: method, route template as axum matched it, the `:verb` of Google's
/// custom methods (`None` for none), action and resource.
#[derive(Debug)]
pub(crate) struct HttpRule {
    pub(crate) method: &'static str,
    pub(crate) route: &'static str,
    pub(crate) verb: Option<&'static str>,
    pub(crate) action: Action,
    pub(crate) resource: Resource,
}

/// Routes open to every caller: health checks, the Prometheus scrape and the public keys
/// that verify push tokens.
pub(crate) const PUBLIC_ROUTES: [&str; 3] = ["/healthz", "/metrics", "/oauth2/v3/certs"];

macro_rules! field {
    ($message:ty, $collection:expr, |$request:ident| $field:expr) => {
        Resource::Grpc(|bytes| {
            let $request = <$message>::decode(bytes).ok()?;
            Some(named($collection, &$field))
        })
    };
}

use Action::{Admin, Publish, ReadObjects, Subscribe, Upload};
use Collection::{Bucket, Project, Snapshot, Subscription, Topic};

/// Every gRPC method the server implements.
pub(crate) const GRPC_RULES: &[GrpcRule] = &[
    grpc(
        "/sluice.v1.LogIngest/StreamEntries",
        Publish,
        Resource::Fixed("logs"),
    ),
    grpc(
        "/sluice.v1.Admin/ListTopics",
        Admin,
        Resource::ConfigProject,
    ),
    grpc(
        "/sluice.v1.Admin/ListSubscriptions",
        Admin,
        Resource::ConfigProject,
    ),
    grpc(
        "/google.logging.v2.LoggingServiceV2/WriteLogEntries",
        Publish,
        Resource::Fixed("logs"),
    ),
    grpc(
        "/google.pubsub.v1.Publisher/CreateTopic",
        Admin,
        field!(pubsub::Topic, Topic, |r| r.name),
    ),
    grpc(
        "/google.pubsub.v1.Publisher/UpdateTopic",
        Admin,
        field!(pubsub::UpdateTopicRequest, Topic, |r| r
            .topic
            .map(|topic| topic.name)
            .unwrap_or_default()),
    ),
    grpc(
        "/google.pubsub.v1.Publisher/Publish",
        Publish,
        field!(pubsub::PublishRequest, Topic, |r| r.topic),
    ),
    grpc(
        "/google.pubsub.v1.Publisher/GetTopic",
        Admin,
        field!(pubsub::GetTopicRequest, Topic, |r| r.topic),
    ),
    grpc(
        "/google.pubsub.v1.Publisher/ListTopics",
        Admin,
        field!(pubsub::ListTopicsRequest, Project, |r| r.project),
    ),
    grpc(
        "/google.pubsub.v1.Publisher/ListTopicSubscriptions",
        Admin,
        field!(pubsub::ListTopicSubscriptionsRequest, Topic, |r| r.topic),
    ),
    grpc(
        "/google.pubsub.v1.Publisher/ListTopicSnapshots",
        Admin,
        field!(pubsub::ListTopicSnapshotsRequest, Topic, |r| r.topic),
    ),
    grpc(
        "/google.pubsub.v1.Publisher/DeleteTopic",
        Admin,
        field!(pubsub::DeleteTopicRequest, Topic, |r| r.topic),
    ),
    grpc(
        "/google.pubsub.v1.Publisher/DetachSubscription",
        Admin,
        field!(pubsub::DetachSubscriptionRequest, Subscription, |r| r
            .subscription),
    ),
    grpc(
        "/google.pubsub.v1.Subscriber/CreateSubscription",
        Admin,
        field!(pubsub::Subscription, Subscription, |r| r.name),
    ),
    grpc(
        "/google.pubsub.v1.Subscriber/GetSubscription",
        Admin,
        field!(pubsub::GetSubscriptionRequest, Subscription, |r| r
            .subscription),
    ),
    grpc(
        "/google.pubsub.v1.Subscriber/UpdateSubscription",
        Admin,
        field!(pubsub::UpdateSubscriptionRequest, Subscription, |r| r
            .subscription
            .map(|subscription| subscription.name)
            .unwrap_or_default()),
    ),
    grpc(
        "/google.pubsub.v1.Subscriber/ListSubscriptions",
        Admin,
        field!(pubsub::ListSubscriptionsRequest, Project, |r| r.project),
    ),
    grpc(
        "/google.pubsub.v1.Subscriber/DeleteSubscription",
        Admin,
        field!(pubsub::DeleteSubscriptionRequest, Subscription, |r| r
            .subscription),
    ),
    grpc(
        "/google.pubsub.v1.Subscriber/ModifyAckDeadline",
        Subscribe,
        field!(pubsub::ModifyAckDeadlineRequest, Subscription, |r| r
            .subscription),
    ),
    grpc(
        "/google.pubsub.v1.Subscriber/Acknowledge",
        Subscribe,
        field!(pubsub::AcknowledgeRequest, Subscription, |r| r.subscription),
    ),
    grpc(
        "/google.pubsub.v1.Subscriber/Pull",
        Subscribe,
        field!(pubsub::PullRequest, Subscription, |r| r.subscription),
    ),
    grpc(
        "/google.pubsub.v1.Subscriber/StreamingPull",
        Subscribe,
        field!(pubsub::StreamingPullRequest, Subscription, |r| r
            .subscription),
    ),
    grpc(
        "/google.pubsub.v1.Subscriber/ModifyPushConfig",
        Admin,
        field!(pubsub::ModifyPushConfigRequest, Subscription, |r| r
            .subscription),
    ),
    grpc(
        "/google.pubsub.v1.Subscriber/GetSnapshot",
        Admin,
        field!(pubsub::GetSnapshotRequest, Snapshot, |r| r.snapshot),
    ),
    grpc(
        "/google.pubsub.v1.Subscriber/ListSnapshots",
        Admin,
        field!(pubsub::ListSnapshotsRequest, Project, |r| r.project),
    ),
    grpc(
        "/google.pubsub.v1.Subscriber/CreateSnapshot",
        Admin,
        field!(pubsub::CreateSnapshotRequest, Snapshot, |r| r.name),
    ),
    grpc(
        "/google.pubsub.v1.Subscriber/UpdateSnapshot",
        Admin,
        field!(pubsub::UpdateSnapshotRequest, Snapshot, |r| r
            .snapshot
            .map(|snapshot| snapshot.name)
            .unwrap_or_default()),
    ),
    grpc(
        "/google.pubsub.v1.Subscriber/DeleteSnapshot",
        Admin,
        field!(pubsub::DeleteSnapshotRequest, Snapshot, |r| r.snapshot),
    ),
    // Seek changes only the acknowledgement state, which consumers own, as Pub/Sub's
    // pubsub.subscriptions.consume permission allows.
    grpc(
        "/google.pubsub.v1.Subscriber/Seek",
        Subscribe,
        field!(pubsub::SeekRequest, Subscription, |r| r.subscription),
    ),
];

const TOPICS: &str = "/v1/projects/{project}/topics";
const TOPIC: &str = "/v1/projects/{project}/topics/{topic}";
const SUBSCRIPTIONS: &str = "/v1/projects/{project}/subscriptions";
const SUBSCRIPTION: &str = "/v1/projects/{project}/subscriptions/{subscription}";
const SNAPSHOTS: &str = "/v1/projects/{project}/snapshots";
const SNAPSHOT: &str = "/v1/projects/{project}/snapshots/{snapshot}";

/// The project segment, `projects/P`, spans segments 1 and 2 of the REST paths.
const PROJECT_SEGMENT: Resource = Resource::Segment(2, Project);
/// The fourth segment names the topic, subscription or snapshot of a REST path.
const PUBSUB_NAME: usize = 4;

/// Every HTTP route the server implements, [`PUBLIC_ROUTES`] excepted.
pub(crate) const HTTP_RULES: &[HttpRule] = &[
    http(
        "POST",
        "/v2/entries:write",
        None,
        Publish,
        Resource::Fixed("logs"),
    ),
    http("GET", TOPICS, None, Admin, PROJECT_SEGMENT),
    http(
        "PUT",
        TOPIC,
        None,
        Admin,
        Resource::Segment(PUBSUB_NAME, Topic),
    ),
    http(
        "GET",
        TOPIC,
        None,
        Admin,
        Resource::Segment(PUBSUB_NAME, Topic),
    ),
    http(
        "PATCH",
        TOPIC,
        None,
        Admin,
        Resource::Segment(PUBSUB_NAME, Topic),
    ),
    http(
        "DELETE",
        TOPIC,
        None,
        Admin,
        Resource::Segment(PUBSUB_NAME, Topic),
    ),
    http(
        "POST",
        TOPIC,
        Some("publish"),
        Publish,
        Resource::Segment(PUBSUB_NAME, Topic),
    ),
    http(
        "GET",
        "/v1/projects/{project}/topics/{topic}/subscriptions",
        None,
        Admin,
        Resource::Segment(PUBSUB_NAME, Topic),
    ),
    http(
        "GET",
        "/v1/projects/{project}/topics/{topic}/snapshots",
        None,
        Admin,
        Resource::Segment(PUBSUB_NAME, Topic),
    ),
    http("GET", SUBSCRIPTIONS, None, Admin, PROJECT_SEGMENT),
    http("PUT", SUBSCRIPTION, None, Admin, SUBSCRIPTION_NAME),
    http("GET", SUBSCRIPTION, None, Admin, SUBSCRIPTION_NAME),
    http("PATCH", SUBSCRIPTION, None, Admin, SUBSCRIPTION_NAME),
    http("DELETE", SUBSCRIPTION, None, Admin, SUBSCRIPTION_NAME),
    http(
        "POST",
        SUBSCRIPTION,
        Some("pull"),
        Subscribe,
        SUBSCRIPTION_NAME,
    ),
    http(
        "POST",
        SUBSCRIPTION,
        Some("acknowledge"),
        Subscribe,
        SUBSCRIPTION_NAME,
    ),
    http(
        "POST",
        SUBSCRIPTION,
        Some("modifyAckDeadline"),
        Subscribe,
        SUBSCRIPTION_NAME,
    ),
    http(
        "POST",
        SUBSCRIPTION,
        Some("modifyPushConfig"),
        Admin,
        SUBSCRIPTION_NAME,
    ),
    http(
        "POST",
        SUBSCRIPTION,
        Some("seek"),
        Subscribe,
        SUBSCRIPTION_NAME,
    ),
    http(
        "POST",
        SUBSCRIPTION,
        Some("detach"),
        Admin,
        SUBSCRIPTION_NAME,
    ),
    http("GET", SNAPSHOTS, None, Admin, PROJECT_SEGMENT),
    http("PUT", SNAPSHOT, None, Admin, SNAPSHOT_NAME),
    http("GET", SNAPSHOT, None, Admin, SNAPSHOT_NAME),
    http("PATCH", SNAPSHOT, None, Admin, SNAPSHOT_NAME),
    http("DELETE", SNAPSHOT, None, Admin, SNAPSHOT_NAME),
    http(
        "POST",
        "/upload/{bucket}",
        None,
        Upload,
        Resource::Segment(1, Bucket),
    ),
    http(
        "POST",
        UPLOAD_OBJECTS,
        None,
        Upload,
        Resource::Segment(4, Bucket),
    ),
    http(
        "PUT",
        UPLOAD_OBJECTS,
        None,
        Upload,
        Resource::Segment(4, Bucket),
    ),
    http(
        "DELETE",
        UPLOAD_OBJECTS,
        None,
        Upload,
        Resource::Segment(4, Bucket),
    ),
    http("GET", "/storage/v1/b", None, Admin, Resource::ConfigProject),
    http(
        "POST",
        "/storage/v1/b",
        None,
        Admin,
        Resource::ConfigProject,
    ),
    http("GET", "/storage/v1/b/{bucket}", None, ReadObjects, BUCKET),
    http("GET", "/storage/v1/b/{bucket}/o", None, ReadObjects, BUCKET),
    http("GET", OBJECT, None, ReadObjects, BUCKET),
    http("PATCH", OBJECT, None, Upload, BUCKET),
    http("DELETE", OBJECT, None, Upload, BUCKET),
    http(
        "GET",
        "/download/storage/v1/b/{bucket}/o/{*object}",
        None,
        ReadObjects,
        Resource::Segment(4, Bucket),
    ),
    http("GET", FUNCTIONS, None, Admin, FUNCTIONS_RESOURCE),
    http("POST", FUNCTIONS, None, Admin, FUNCTIONS_RESOURCE),
    http("DELETE", FUNCTION, None, Admin, FUNCTIONS_RESOURCE),
    http("POST", FUNCTION_CALL, None, Admin, FUNCTIONS_RESOURCE),
    http("GET", FUNCTION_LOGS, None, Admin, FUNCTIONS_RESOURCE),
];

const FUNCTIONS: &str = "/sluice/v1/functions";
const FUNCTION: &str = "/sluice/v1/functions/{name}";
const FUNCTION_CALL: &str = "/sluice/v1/functions/{name}/call";
const FUNCTION_LOGS: &str = "/sluice/v1/functions/{name}/logs";
/// Deployed functions run code from the server's file system, so every functions route is
/// an admin call on the one resource `functions`.
const FUNCTIONS_RESOURCE: Resource = Resource::Fixed("functions");

const SUBSCRIPTION_NAME: Resource = Resource::Segment(PUBSUB_NAME, Subscription);
const SNAPSHOT_NAME: Resource = Resource::Segment(PUBSUB_NAME, Snapshot);
const UPLOAD_OBJECTS: &str = "/upload/storage/v1/b/{bucket}/o";
const OBJECT: &str = "/storage/v1/b/{bucket}/o/{*object}";
/// The bucket segment of `/storage/v1/b/{bucket}...`.
const BUCKET: Resource = Resource::Segment(3, Bucket);

const fn grpc(path: &'static str, action: Action, resource: Resource) -> GrpcRule {
    GrpcRule {
        path,
        action,
        resource,
    }
}

const fn http(
    method: &'static str,
    route: &'static str,
    verb: Option<&'static str>,
    action: Action,
    resource: Resource,
) -> HttpRule {
    HttpRule {
        method,
        route,
        verb,
        action,
        resource,
    }
}

/// A grant that a call needs besides the one of its rule, on another resource that the
/// request body names.
pub(crate) type ExtraGrant = (Action, String);

/// Returns the grants that a gRPC request needs on the other resources it names, as Pub/Sub
/// needs permissions on them:
/// - creating a subscription needs `subscribe` on its topic
///   (`pubsub.topics.attachSubscription`), so that `admin` on a subscription pattern does
///   not open every topic to reading;
/// - a dead-letter topic needs `publish` (`pubsub.topics.publish`), so that a dead-letter
///   policy cannot write to a topic the caller may not publish to;
/// - creating a snapshot needs `subscribe` on its source subscription
///   (`pubsub.subscriptions.consume`).
pub(crate) fn extra_grants_grpc(path: &str, message: &[u8]) -> Vec<ExtraGrant> {
    match path {
        "/google.pubsub.v1.Subscriber/CreateSubscription" => pubsub::Subscription::decode(message)
            .map_or_else(
                |_| Vec::new(),
                |subscription| {
                    subscription_grants(Some(&subscription.topic), dead_letter_topic(&subscription))
                },
            ),
        "/google.pubsub.v1.Subscriber/UpdateSubscription" => {
            pubsub::UpdateSubscriptionRequest::decode(message)
                .ok()
                .and_then(|request| request.subscription)
                .map_or_else(Vec::new, |subscription| {
                    subscription_grants(None, dead_letter_topic(&subscription))
                })
        }
        "/google.pubsub.v1.Subscriber/CreateSnapshot" => {
            pubsub::CreateSnapshotRequest::decode(message).map_or_else(
                |_| Vec::new(),
                |request| vec![(Subscribe, named(Subscription, &request.subscription))],
            )
        }
        _ => Vec::new(),
    }
}

fn dead_letter_topic(subscription: &pubsub::Subscription) -> Option<&str> {
    subscription
        .dead_letter_policy
        .as_ref()
        .map(|policy| policy.dead_letter_topic.as_str())
        .filter(|topic| !topic.is_empty())
}

fn subscription_grants(topic: Option<&str>, dead_letter_topic: Option<&str>) -> Vec<ExtraGrant> {
    let mut grants = Vec::new();
    if let Some(topic) = topic {
        grants.push((Subscribe, named(Topic, topic)));
    }
    if let Some(dead_letter_topic) = dead_letter_topic {
        grants.push((Publish, named(Topic, dead_letter_topic)));
    }
    grants
}

/// Returns whether the JSON body of an HTTP route names resources that need grants of their
/// own, which [`extra_grants_json`] then reads.
pub(crate) fn has_extra_grants_http(method: &str, route: &str) -> bool {
    matches!(
        (method, route),
        ("PUT" | "PATCH", SUBSCRIPTION) | ("PUT", SNAPSHOT)
    )
}

/// Returns the grants of [`extra_grants_grpc`] for the JSON body of a REST route. A body that
/// is not JSON needs none here, and the handler rejects it.
pub(crate) fn extra_grants_json(method: &str, route: &str, body: &[u8]) -> Vec<ExtraGrant> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let text = |value: &serde_json::Value, pointer: &str| {
        value
            .pointer(pointer)
            .and_then(serde_json::Value::as_str)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    match (method, route) {
        ("PUT", SUBSCRIPTION) => subscription_grants(
            text(&value, "/topic").as_deref(),
            text(&value, "/deadLetterPolicy/deadLetterTopic").as_deref(),
        ),
        ("PATCH", SUBSCRIPTION) => subscription_grants(
            None,
            text(&value, "/subscription/deadLetterPolicy/deadLetterTopic").as_deref(),
        ),
        ("PUT", SNAPSHOT) => text(&value, "/subscription")
            .map(|subscription| vec![(Subscribe, named(Subscription, &subscription))])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Returns the rule of a gRPC method path.
pub(crate) fn grpc_rule(path: &str) -> Option<&'static GrpcRule> {
    GRPC_RULES.iter().find(|rule| rule.path == path)
}

/// Returns the rule of an HTTP request that axum matched to `route`.
pub(crate) fn http_rule(method: &str, route: &str, path: &str) -> Option<&'static HttpRule> {
    let verb = last_segment(path)
        .rsplit_once(':')
        .map(|(_, verb)| verb)
        .filter(|_| !route.ends_with(":write"));
    HTTP_RULES.iter().find(|rule| {
        rule.method == method && rule.route == route && (rule.verb.is_none() || rule.verb == verb)
    })
}

fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Returns the resource that path segment `index` names, without its `:verb`.
pub(crate) fn segment_resource(path: &str, index: usize, collection: Collection) -> String {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let raw = segments.get(index).copied().unwrap_or("");
    let raw = raw.split_once(':').map_or(raw, |(name, _)| name);
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned();
    match collection {
        Collection::Bucket => format!("buckets/{decoded}"),
        Collection::Project => format!("projects/{decoded}"),
        Collection::Topic | Collection::Subscription | Collection::Snapshot => {
            // The project is decoded as the handler decodes it, so that `loc%61l` cannot pass
            // for another project than `local`.
            let project =
                percent_encoding::percent_decode_str(segments.get(2).copied().unwrap_or(""))
                    .decode_utf8_lossy();
            let full = format!(
                "projects/{project}/{}/{decoded}",
                collection_segment(collection)
            );
            named(collection, &full)
        }
    }
}

fn collection_segment(collection: Collection) -> &'static str {
    match collection {
        Collection::Topic => "topics",
        Collection::Subscription => "subscriptions",
        Collection::Snapshot => "snapshots",
        Collection::Project => "projects",
        Collection::Bucket => "buckets",
    }
}

/// Returns the resource name of a full Pub/Sub name, or of the raw text when it is not a
/// valid name, so that a malformed name can match only a grant on `*`. The handler then
/// rejects it with INVALID_ARGUMENT.
fn named(collection: Collection, full: &str) -> String {
    let store_name = match collection {
        Collection::Topic => names::topic(full).ok(),
        Collection::Subscription => names::subscription(full).ok(),
        Collection::Snapshot => names::snapshot(full).ok(),
        Collection::Project => return full.to_owned(),
        Collection::Bucket => return format!("buckets/{full}"),
    };
    format!(
        "{}/{}",
        collection_segment(collection),
        store_name.as_deref().unwrap_or(full)
    )
}

#[cfg(test)]
mod tests;
