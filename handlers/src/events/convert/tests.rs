use super::*;

fn legacy(event_type: &str, resource: Value, data: Value) -> LegacyEvent {
    LegacyEvent::new(
        EventContext {
            event_id: "1".to_owned(),
            timestamp: "2020-09-29T11:32:00.123Z".to_owned(),
            event_type: event_type.to_owned(),
            resource,
        },
        data,
    )
}

#[test]
fn storage_event_splits_source_and_subject() {
    let event = legacy(
        "google.storage.object.finalize",
        json!({"service": STORAGE, "name": "projects/_/buckets/b/objects/a/b#1.txt"}),
        json!({"kind": "storage#object"}),
    );
    let cloudevent = to_cloudevent(&event).expect("converts");

    assert_eq!(
        cloudevent.source,
        "//storage.googleapis.com/projects/_/buckets/b"
    );
    assert_eq!(
        cloudevent.subject.as_deref(),
        Some("objects/a/b#1.txt"),
        "a finalize event keeps a # in the object name"
    );
    assert_eq!(
        cloudevent.event_type,
        "google.cloud.storage.object.v1.finalized"
    );
}

#[test]
fn object_change_drops_generation() {
    let event = legacy(
        OBJECT_CHANGE,
        Value::from("projects/_/buckets/b/objects/o.txt#1587627537231057"),
        json!({"kind": "storage#object", "resourceState": "exists"}),
    );
    let cloudevent = to_cloudevent(&event).expect("converts");

    assert_eq!(cloudevent.subject.as_deref(), Some("objects/o.txt"));
    assert_eq!(
        cloudevent.source,
        "//storage.googleapis.com/projects/_/buckets/b"
    );
}

#[test]
fn storage_resource_of_wrong_form_rejected() {
    let event = legacy(
        "google.storage.object.delete",
        json!({"service": STORAGE, "name": "buckets/b/objects/o"}),
        json!({}),
    );

    assert!(matches!(
        to_cloudevent(&event),
        Err(EventError::InvalidField {
            field: "resource",
            ..
        })
    ));
}

#[test]
fn pubsub_data_keeps_own_message_id() {
    let event = legacy(
        "google.pubsub.topic.publish",
        json!({"service": PUBSUB, "name": "projects/p/topics/t"}),
        json!({"data": "", "messageId": "own"}),
    );
    let data = to_cloudevent(&event).expect("converts").data;

    assert_eq!(
        data,
        Some(json!({"message": {
            "data": "",
            "messageId": "own",
            "publishTime": "2020-09-29T11:32:00.123Z",
        }}))
    );
}

#[test]
fn unknown_legacy_type_rejected() {
    let event = legacy(
        "providers/firebase.remoteConfig/remoteconfig.update",
        Value::from("projects/p"),
        json!({}),
    );

    assert_eq!(
        to_cloudevent(&event),
        Err(EventError::UnknownType(
            "providers/firebase.remoteConfig/remoteconfig.update".to_owned()
        ))
    );
}

#[test]
fn database_event_without_domain_rejected() {
    let event = legacy(
        "providers/google.firebase.database/eventTypes/ref.write",
        Value::from("projects/_/instances/i/refs/a"),
        json!({}),
    );

    assert!(matches!(
        to_cloudevent(&event),
        Err(EventError::MissingField {
            field: "domain",
            ..
        })
    ));
}

#[test]
fn analytics_event_splits_at_events() {
    let event = legacy(
        "providers/google.firebase.analytics/eventTypes/event.log",
        Value::from("projects/p/events/session_start"),
        json!({}),
    );
    let cloudevent = to_cloudevent(&event).expect("converts");

    assert_eq!(cloudevent.source, "//firebase.googleapis.com/projects/p");
    assert_eq!(cloudevent.subject.as_deref(), Some("events/session_start"));
}

#[test]
fn reverse_types_skip_one_way_names() {
    assert_eq!(
        legacy_type("google.cloud.pubsub.topic.v1.messagePublished"),
        Some("google.pubsub.topic.publish")
    );
    assert_eq!(
        legacy_type("google.cloud.storage.object.v1.finalized"),
        Some("google.storage.object.finalize")
    );
    assert_eq!(legacy_type("google.cloud.audit.log.v1.written"), None);
}

#[test]
fn cloudevent_source_must_have_service() {
    let mut event = CloudEvent::new(
        "1",
        "pubsub.googleapis.com/projects/p/topics/t",
        "google.cloud.pubsub.topic.v1.messagePublished",
    );
    event.time = Some("2020-09-29T11:32:00.123Z".to_owned());

    assert!(matches!(
        to_legacy(&event),
        Err(EventError::InvalidField {
            field: "source",
            ..
        })
    ));
}

#[test]
fn storage_cloudevent_without_kind_gets_object_type() {
    let mut event = CloudEvent::new(
        "1",
        "//storage.googleapis.com/projects/_/buckets/b",
        "google.cloud.storage.object.v1.deleted",
    );
    event.subject = Some("objects/o".to_owned());
    event.time = Some("2020-09-29T11:32:00.123Z".to_owned());
    event.data = Some(json!({"bucket": "b"}));
    let legacy = to_legacy(&event).expect("converts");

    assert_eq!(
        legacy.context.resource,
        json!({"name": "projects/_/buckets/b/objects/o", "service": STORAGE, "type": "storage#object"})
    );
    assert_eq!(legacy.context.event_type, "google.storage.object.delete");
}
