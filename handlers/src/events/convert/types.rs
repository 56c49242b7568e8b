//! The legacy event types and their CloudEvent types.

/// The legacy event types with their CloudEvent types.
pub const LEGACY_TO_CLOUDEVENT: [(&str, &str); 18] = [
    (
        "google.pubsub.topic.publish",
        "google.cloud.pubsub.topic.v1.messagePublished",
    ),
    (
        "providers/cloud.pubsub/eventTypes/topic.publish",
        "google.cloud.pubsub.topic.v1.messagePublished",
    ),
    (
        "google.storage.object.finalize",
        "google.cloud.storage.object.v1.finalized",
    ),
    (
        "google.storage.object.delete",
        "google.cloud.storage.object.v1.deleted",
    ),
    (
        "google.storage.object.archive",
        "google.cloud.storage.object.v1.archived",
    ),
    (
        "google.storage.object.metadataUpdate",
        "google.cloud.storage.object.v1.metadataUpdated",
    ),
    (
        "providers/cloud.storage/eventTypes/object.change",
        "google.cloud.storage.object.v1.finalized",
    ),
    (
        "providers/cloud.firestore/eventTypes/document.write",
        "google.cloud.firestore.document.v1.written",
    ),
    (
        "providers/cloud.firestore/eventTypes/document.create",
        "google.cloud.firestore.document.v1.created",
    ),
    (
        "providers/cloud.firestore/eventTypes/document.update",
        "google.cloud.firestore.document.v1.updated",
    ),
    (
        "providers/cloud.firestore/eventTypes/document.delete",
        "google.cloud.firestore.document.v1.deleted",
    ),
    (
        "providers/firebase.auth/eventTypes/user.create",
        "google.firebase.auth.user.v1.created",
    ),
    (
        "providers/firebase.auth/eventTypes/user.delete",
        "google.firebase.auth.user.v1.deleted",
    ),
    (
        "providers/google.firebase.analytics/eventTypes/event.log",
        "google.firebase.analytics.log.v1.written",
    ),
    (
        "providers/google.firebase.database/eventTypes/ref.create",
        "google.firebase.database.ref.v1.created",
    ),
    (
        "providers/google.firebase.database/eventTypes/ref.write",
        "google.firebase.database.ref.v1.written",
    ),
    (
        "providers/google.firebase.database/eventTypes/ref.update",
        "google.firebase.database.ref.v1.updated",
    ),
    (
        "providers/google.firebase.database/eventTypes/ref.delete",
        "google.firebase.database.ref.v1.deleted",
    ),
];

/// Legacy types that share their CloudEvent type with a newer name, which the reverse
/// conversion produces instead.
const ONE_WAY_LEGACY_TYPES: [&str; 2] = [
    "providers/cloud.pubsub/eventTypes/topic.publish",
    "providers/cloud.storage/eventTypes/object.change",
];

/// Returns the CloudEvent type of a legacy event type.
pub fn cloudevent_type(legacy_type: &str) -> Option<&'static str> {
    LEGACY_TO_CLOUDEVENT
        .iter()
        .find(|(legacy, _)| *legacy == legacy_type)
        .map(|(_, cloudevent)| *cloudevent)
}

/// Returns the legacy event type of a CloudEvent type.
pub fn legacy_type(cloudevent_type: &str) -> Option<&'static str> {
    LEGACY_TO_CLOUDEVENT
        .iter()
        .filter(|(legacy, _)| !ONE_WAY_LEGACY_TYPES.contains(legacy))
        .find(|(_, cloudevent)| *cloudevent == cloudevent_type)
        .map(|(legacy, _)| *legacy)
}
