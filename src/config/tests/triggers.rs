//! The `[[triggers]]` tables and what they expand into.

use serde_json::json;
use sluice_router::filter::LogFilter;
use sluice_router::store::{DeadLetterPolicy, PushConfig, PushFormat, RetryPolicy};

use super::*;
use crate::config::triggers::{TriggerDestination, TriggerNotification};

/// Declarations that the trigger tables of these tests refer to: the buckets `uploads` and
/// `thumbs`, and the topics `orders` and `dead`.
const BASE: &str = "\
[[buckets]]
name = \"uploads\"
[[buckets]]
name = \"thumbs\"
[[topics]]
name = \"orders\"
[[topics]]
name = \"dead\"
";

/// Returns [`BASE`] followed by `triggers`.
fn with_base(triggers: &str) -> String {
    format!("{BASE}{triggers}")
}

fn valid(text: &str) -> Config {
    validate_text(text)
        .unwrap_or_else(|err| panic!("config should validate:\n{text}\n{:#?}", err.errors))
}

fn subscription<'a>(config: &'a Config, name: &str) -> &'a SubscriptionSpec {
    config
        .subscriptions
        .iter()
        .find(|subscription| subscription.name == name)
        .unwrap_or_else(|| panic!("no subscription {name:?} in {:#?}", config.subscriptions))
}

/// Returns the compiled filter of the audit-log trigger `audit` of `text`.
fn audit_filter(text: &str) -> LogFilter {
    let config = valid(text);
    let sink = config
        .sinks
        .iter()
        .find(|sink| sink.name == "trigger-audit")
        .expect("the trigger's sink");
    sink.filter.clone()
}

/// Returns an audit-log entry of Cloud Storage with the given method and resource name.
fn audit_entry(method: &str, resource: &str) -> serde_json::Value {
    json!({
        "logName": "projects/local/logs/cloudaudit.googleapis.com%2Factivity",
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "serviceName": "storage.googleapis.com",
            "methodName": method,
            "resourceName": resource,
        }
    })
}

const AUDIT_TRIGGER: &str = "\
[[triggers]]
name = \"audit\"
event_type = \"google.cloud.audit.log.v1.written\"
filters = { serviceName = \"storage.googleapis.com\", methodName = \"storage.objects.create\" }
push = { endpoint = \"http://127.0.0.1:9/events\" }
";

#[test]
fn storage_trigger_expands() {
    let config = valid(&with_base(
        "[[triggers]]\nname = \"photos\"\n\
         event_type = \"google.cloud.storage.object.v1.finalized\"\n\
         filters = { bucket = \"uploads\" }\n\
         push = { endpoint = \"http://127.0.0.1:9/photos\" }\n",
    ));

    assert_eq!(
        config.topics,
        ["orders", "dead", "trigger-photos"],
        "the generated topic follows the declared ones"
    );
    let uploads = &config.buckets[0];
    assert_eq!(
        uploads.notifications,
        [NotificationConfig {
            id: String::new(),
            topic: "trigger-photos".to_owned(),
            event_types: vec![EventType::ObjectFinalize],
            object_name_prefix: None,
            payload_format: PayloadFormat::JsonApiV1,
            custom_attributes: BTreeMap::new(),
        }],
        "notification config on the filtered bucket"
    );
    assert!(
        config.buckets[1].notifications.is_empty(),
        "other buckets unchanged"
    );
    let generated = subscription(&config, "trigger-photos");
    assert_eq!(generated.topic, "trigger-photos");
    assert_eq!(
        generated.push,
        Some(PushConfig {
            endpoint: "http://127.0.0.1:9/photos".to_owned(),
            attributes: BTreeMap::new(),
            format: PushFormat::CloudEvent,
            max_event_age_secs: None,
        }),
        "a trigger pushes CloudEvents unless its push table sets a format"
    );
    assert!(config.sinks.is_empty(), "a storage trigger adds no sink");
    assert_eq!(
        config.triggers,
        [TriggerSpec {
            name: "photos".to_owned(),
            event_type: "google.cloud.storage.object.v1.finalized".to_owned(),
            filters: BTreeMap::from([("bucket".to_owned(), "uploads".to_owned())]),
            resource_name_pattern: None,
            destination: TriggerDestination::Push {
                endpoint: "http://127.0.0.1:9/photos".to_owned(),
                format: "cloudevent".to_owned(),
            },
            notification: Some(TriggerNotification {
                bucket: "uploads".to_owned(),
                event_type: "OBJECT_FINALIZE".to_owned(),
            }),
            sink: None,
            topic: "trigger-photos".to_owned(),
            topic_created: true,
            subscription: "trigger-photos".to_owned(),
        }]
    );
}

#[test]
fn storage_event_types_map_to_notifications() {
    for (event_type, expected) in [
        ("finalized", EventType::ObjectFinalize),
        ("deleted", EventType::ObjectDelete),
        ("archived", EventType::ObjectArchive),
        ("metadataUpdated", EventType::ObjectMetadataUpdate),
    ] {
        let config = valid(&with_base(&format!(
            "[[triggers]]\nname = \"t\"\n\
             event_type = \"google.cloud.storage.object.v1.{event_type}\"\n\
             filters = {{ bucket = \"uploads\" }}\n\
             push = {{ endpoint = \"http://127.0.0.1:9/\" }}\n"
        )));
        assert_eq!(
            config.buckets[0].notifications[0].event_types,
            [expected],
            "{event_type}"
        );
    }
}

#[test]
fn trigger_push_format_kept() {
    let config = valid(&with_base(
        "[[triggers]]\nname = \"legacy\"\n\
         event_type = \"google.cloud.storage.object.v1.deleted\"\n\
         filters = { bucket = \"uploads\" }\n\
         push = { endpoint = \"http://127.0.0.1:9/\", format = \"background\" }\n",
    ));

    let push = subscription(&config, "trigger-legacy").push.clone();
    assert_eq!(push.map(|push| push.format), Some(PushFormat::Background));
}

#[test]
fn pubsub_trigger_subscribes_to_topic() {
    let config = valid(&with_base(
        "[[triggers]]\nname = \"orders\"\n\
         event_type = \"google.cloud.pubsub.topic.v1.messagePublished\"\n\
         filters = { topic = \"orders\" }\n\
         push = { endpoint = \"http://127.0.0.1:9/\" }\n\
         dead_letter = { topic = \"dead\", max_delivery_attempts = 7 }\n\
         retry_policy = { minimum_backoff_secs = 1, maximum_backoff_secs = 5 }\n",
    ));

    assert_eq!(config.topics, ["orders", "dead"], "no topic generated");
    let generated = subscription(&config, "trigger-orders");
    assert_eq!(generated.topic, "orders");
    assert_eq!(
        generated.dead_letter,
        Some(DeadLetterPolicy {
            topic: "dead".to_owned(),
            max_delivery_attempts: 7
        })
    );
    assert_eq!(generated.retry_policy, Some(RetryPolicy::from_secs(1, 5)));
    assert_eq!(generated.ack_deadline_secs, 10, "subscriptions' default");
    assert!(!config.triggers[0].topic_created, "the topic is declared");
}

#[test]
fn audit_trigger_adds_sink() {
    let config = valid(&with_base(AUDIT_TRIGGER));

    assert_eq!(config.topics, ["orders", "dead", "trigger-audit"]);
    let sink = &config.sinks[0];
    assert_eq!(sink.name, "trigger-audit");
    assert_eq!(sink.destination, "trigger-audit");
    assert_eq!(
        subscription(&config, "trigger-audit").topic,
        "trigger-audit"
    );
    let trigger_sink = config.triggers[0]
        .sink
        .as_ref()
        .expect("the trigger lists its sink");
    assert_eq!(trigger_sink.name, "trigger-audit");
    assert_eq!(
        Some(trigger_sink.filter.as_str()),
        Some(
            r#"logName:"/logs/cloudaudit.googleapis.com%2F" AND protoPayload.serviceName=~"^storage\.googleapis\.com$" AND protoPayload.methodName=~"^storage\.objects\.create$""#
        )
    );
}

#[test]
fn audit_filter_matches_exactly() {
    let filter = audit_filter(&with_base(AUDIT_TRIGGER));

    assert!(
        filter.matches(&audit_entry(
            "storage.objects.create",
            "projects/_/buckets/b"
        )),
        "the method"
    );
    assert!(
        !filter.matches(&audit_entry(
            "storage.objects.delete",
            "projects/_/buckets/b"
        )),
        "another method"
    );
    assert!(
        !filter.matches(&audit_entry(
            "Storage.Objects.Create",
            "projects/_/buckets/b"
        )),
        "attribute matches are case-sensitive, unlike the Logging language's ="
    );
    assert!(
        !filter.matches(&audit_entry(
            "storage.objects.createX",
            "projects/_/buckets/b"
        )),
        "attribute matches are whole values"
    );
    let mut not_audit = audit_entry("storage.objects.create", "projects/_/buckets/b");
    not_audit["logName"] = json!("projects/local/logs/app");
    assert!(!filter.matches(&not_audit), "only audit logs");
}

#[test]
fn audit_trigger_path_pattern() {
    let text = with_base(&format!(
        "{AUDIT_TRIGGER}resource_name = \"/projects/_/buckets/photos/objects/**/r*.txt\"\n"
    ));
    let filter = audit_filter(&text);

    for resource in [
        "projects/_/buckets/photos/objects/readme.txt",
        "projects/_/buckets/photos/objects/docs/2024/r1.txt",
        "/projects/_/buckets/photos/objects/r.txt",
    ] {
        assert!(
            filter.matches(&audit_entry("storage.objects.create", resource)),
            "{resource}"
        );
    }
    for resource in [
        "projects/_/buckets/photos/objects/readme.md",
        "projects/_/buckets/other/objects/readme.txt",
        "projects/_/buckets/photos/objects/xr.txt",
    ] {
        assert!(
            !filter.matches(&audit_entry("storage.objects.create", resource)),
            "{resource}"
        );
    }
    let config = valid(&text);
    assert_eq!(
        config.triggers[0].resource_name_pattern.as_deref(),
        Some("/projects/_/buckets/photos/objects/**/r*.txt")
    );
}

#[test]
fn audit_trigger_exact_resource_name() {
    let text = with_base(&AUDIT_TRIGGER.replace(
        "methodName = \"storage.objects.create\"",
        "methodName = \"storage.objects.create\", resourceName = \"projects/_/buckets/b/objects/a*\"",
    ));
    let filter = audit_filter(&text);

    assert!(
        filter.matches(&audit_entry(
            "storage.objects.create",
            "projects/_/buckets/b/objects/a*"
        )),
        "the exact name, '*' included"
    );
    assert!(
        !filter.matches(&audit_entry(
            "storage.objects.create",
            "projects/_/buckets/b/objects/ab"
        )),
        "an exact filter has no wildcards"
    );
}

#[test]
fn handler_trigger_runs_handler() {
    let config = valid(&with_base(
        "[[triggers]]\nname = \"thumbs\"\n\
         event_type = \"google.cloud.storage.object.v1.finalized\"\n\
         filters = { bucket = \"uploads\" }\n\
         handler = { kind = \"thumbnail\", destination_bucket = \"thumbs\" }\n\
         dead_letter = { topic = \"dead\" }\n",
    ));

    assert!(
        matches!(
            config.handler("trigger-thumbs"),
            Some(HandlerSpec::Thumbnail { destination_bucket, .. }) if destination_bucket == "thumbs"
        ),
        "{:#?}",
        config.handlers
    );
    assert_eq!(
        config.triggers[0].destination,
        TriggerDestination::Handler {
            handler: "thumbnail".to_owned()
        }
    );
    assert!(config.warnings.is_empty(), "{:#?}", config.warnings);
}

#[test]
fn generated_table_errors_name_trigger() {
    let errors = error_lines(&with_base(
        "[[triggers]]\nname = \"thumbs\"\n\
         event_type = \"google.cloud.storage.object.v1.finalized\"\n\
         filters = { bucket = \"uploads\" }\n\
         handler = { kind = \"thumbnail\", destination_bucket = \"uploads\" }\n\
         dead_letter = { topic = \"missing\" }\n\
         [[triggers]]\nname = \"hook\"\n\
         event_type = \"google.cloud.pubsub.topic.v1.messagePublished\"\n\
         filters = { topic = \"orders\" }\n\
         push = { endpoint = \"ftp://example.test/\" }\n",
    ));

    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].starts_with(
            "trigger \"thumbs\": dead_letter.topic \"missing\" is not a declared topic"
        ),
        "{errors:#?}"
    );
    assert!(
        errors[1].starts_with("trigger \"hook\": push.endpoint \"ftp://example.test/\""),
        "{errors:#?}"
    );
    assert!(
        errors[2].starts_with(
            "trigger \"thumbs\": handler.destination_bucket \"uploads\" publishes \
             OBJECT_FINALIZE to this subscription's topic \"trigger-thumbs\""
        ),
        "the generated notification counts in the loop check: {errors:#?}"
    );
}

#[test]
fn generated_table_warnings_name_trigger() {
    let config = valid(&with_base(
        "[[triggers]]\nname = \"thumbs\"\n\
         event_type = \"google.cloud.storage.object.v1.finalized\"\n\
         filters = { bucket = \"uploads\" }\n\
         handler = { kind = \"thumbnail\", destination_bucket = \"thumbs\" }\n",
    ));

    assert_eq!(config.warnings.len(), 1, "{:#?}", config.warnings);
    let warning = &config.warnings[0];
    assert_eq!(warning.component, "trigger \"thumbs\"");
    assert!(
        warning.message.contains("no [triggers.dead_letter] table"),
        "{}",
        warning.message
    );
}

#[test]
fn unknown_filter_attribute_lists_allowed() {
    assert_single_error(
        &with_base(
            "[[triggers]]\nname = \"t\"\n\
             event_type = \"google.cloud.audit.log.v1.written\"\n\
             filters = { serviceName = \"s\", methodName = \"m\", servicename = \"s\" }\n\
             push = { endpoint = \"http://127.0.0.1:9/\" }\n",
        ),
        "trigger \"t\": unknown filter attribute \"servicename\" for event type \
         google.cloud.audit.log.v1.written, whose attributes are serviceName, methodName, \
         resourceName: remove it or fix its name, which is case-sensitive",
    );
}

#[test]
fn storage_trigger_rejects_audit_attributes() {
    assert_single_error(
        &with_base(
            "[[triggers]]\nname = \"t\"\n\
             event_type = \"google.cloud.storage.object.v1.finalized\"\n\
             filters = { bucket = \"uploads\", methodName = \"m\" }\n\
             push = { endpoint = \"http://127.0.0.1:9/\" }\n",
        ),
        "trigger \"t\": unknown filter attribute \"methodName\" for event type \
         google.cloud.storage.object.v1.finalized, whose attributes are bucket: remove it or \
         fix its name, which is case-sensitive",
    );
}

#[test]
fn required_filters_reported() {
    let errors = error_lines(&with_base(
        "[[triggers]]\nname = \"t\"\n\
         event_type = \"google.cloud.audit.log.v1.written\"\n\
         filters = { methodName = \"\" }\n\
         push = { endpoint = \"http://127.0.0.1:9/\" }\n",
    ));

    assert_eq!(
        errors,
        [
            "trigger \"t\": filters.methodName is empty: set the exact value to match, or \
             remove it",
            "trigger \"t\": filters.serviceName is missing, but triggers of \
             google.cloud.audit.log.v1.written need it: add it to the filters table",
        ]
    );
}

#[test]
fn type_filter_points_to_event_type() {
    assert_single_error(
        &with_base(
            "[[triggers]]\nname = \"t\"\n\
             event_type = \"google.cloud.pubsub.topic.v1.messagePublished\"\n\
             filters = { topic = \"orders\", type = \"x\" }\n\
             push = { endpoint = \"http://127.0.0.1:9/\" }\n",
        ),
        "trigger \"t\": filters.type is not a filter here: the event type is the trigger's \
         event_type key",
    );
}

#[test]
fn event_type_checked() {
    let known = "google.cloud.storage.object.v1.finalized, \
                 google.cloud.storage.object.v1.deleted, \
                 google.cloud.storage.object.v1.archived, \
                 google.cloud.storage.object.v1.metadataUpdated, \
                 google.cloud.pubsub.topic.v1.messagePublished, \
                 google.cloud.audit.log.v1.written";
    assert_single_error(
        "[[triggers]]\nname = \"t\"\nevent_type = \"google.storage.object.finalize\"\n\
         push = { endpoint = \"http://127.0.0.1:9/\" }\n",
        &format!(
            "trigger \"t\": unknown event_type \"google.storage.object.finalize\": set it to \
             one of {known}, as Eventarc names them"
        ),
    );
    assert_single_error(
        "[[triggers]]\nname = \"t\"\npush = { endpoint = \"http://127.0.0.1:9/\" }\n",
        &format!(
            "trigger \"t\": event_type is missing: set it to one of {known}, as Eventarc \
             names them"
        ),
    );
}

#[test]
fn resource_name_only_for_audit() {
    assert_single_error(
        &with_base(
            "[[triggers]]\nname = \"t\"\n\
             event_type = \"google.cloud.storage.object.v1.finalized\"\n\
             filters = { bucket = \"uploads\" }\n\
             resource_name = \"projects/_/buckets/uploads/**\"\n\
             push = { endpoint = \"http://127.0.0.1:9/\" }\n",
        ),
        "trigger \"t\": resource_name applies to google.cloud.audit.log.v1.written triggers \
         only, as in Eventarc, which rejects a path pattern on other event types: remove it",
    );
}

#[test]
fn resource_name_pattern_and_exact_conflict() {
    let text = with_base(&format!(
        "{}resource_name = \"projects/**\"\n",
        AUDIT_TRIGGER.replace(
            "methodName = \"storage.objects.create\"",
            "methodName = \"storage.objects.create\", resourceName = \"projects/p\"",
        )
    ));
    assert_single_error(
        &text,
        "trigger \"audit\": both filters.resourceName and resource_name are set: keep \
         filters.resourceName for an exact match or resource_name for a path pattern",
    );
}

#[test]
fn invalid_path_pattern_reported() {
    assert_single_error(
        &with_base(&format!(
            "{AUDIT_TRIGGER}resource_name = \"projects/_/b**\"\n"
        )),
        "trigger \"audit\": resource_name: segment \"b**\" of path pattern \"projects/_/b**\" \
         puts \"**\" beside other characters: \"**\" must be a whole segment, and a single \
         '*' matches part of a segment",
    );
}

#[test]
fn source_must_be_declared() {
    assert_single_error(
        "[[triggers]]\nname = \"t\"\n\
         event_type = \"google.cloud.storage.object.v1.finalized\"\n\
         filters = { bucket = \"photos\" }\n\
         push = { endpoint = \"http://127.0.0.1:9/\" }\n",
        "trigger \"t\": filters.bucket \"photos\" is not a declared bucket; add [[buckets]] \
         name = \"photos\"",
    );
    assert_single_error(
        "[[triggers]]\nname = \"t\"\n\
         event_type = \"google.cloud.pubsub.topic.v1.messagePublished\"\n\
         filters = { topic = \"orders\" }\n\
         push = { endpoint = \"http://127.0.0.1:9/\" }\n",
        "trigger \"t\": filters.topic \"orders\" is not a declared topic; add [[topics]] \
         name = \"orders\"",
    );
}

#[test]
fn generated_names_must_be_free() {
    let errors = error_lines(&with_base(&format!(
        "[[topics]]\nname = \"trigger-audit\"\n\
         [[subscriptions]]\nname = \"trigger-audit\"\ntopic = \"orders\"\n\
         [[sinks]]\nname = \"trigger-audit\"\ndestination = \"orders\"\n\
         {AUDIT_TRIGGER}"
    )));

    assert_eq!(
        errors,
        [
            "trigger \"audit\": the trigger creates topic \"trigger-audit\", but topic #3 \
             declares that name too: rename the trigger or the topic",
            "trigger \"audit\": the trigger creates subscription \"trigger-audit\", but \
             subscription #1 declares that name too: rename the trigger or the subscription",
            "trigger \"audit\": the trigger creates sink \"trigger-audit\", but sink #1 \
             declares that name too: rename the trigger or the sink",
        ]
    );
}

#[test]
fn duplicate_and_invalid_names() {
    let errors = error_lines(&with_base(&format!(
        "{AUDIT_TRIGGER}{AUDIT_TRIGGER}{}",
        AUDIT_TRIGGER.replace("name = \"audit\"", "name = \"a b\"")
    )));

    assert_eq!(
        errors,
        [
            "trigger \"audit\": duplicate name: trigger #1 has the same name, and trigger \
             names must be unique",
            "trigger \"a b\": invalid name \"a b\": use 1 to 92 characters from A-Z, a-z, \
             0-9, '_', '.' and '-', so that \"trigger-NAME\" is a valid topic, subscription \
             and sink name",
        ]
    );
}

#[test]
fn destination_required_once() {
    assert_single_error(
        &with_base(
            "[[triggers]]\nname = \"t\"\n\
             event_type = \"google.cloud.pubsub.topic.v1.messagePublished\"\n\
             filters = { topic = \"orders\" }\n",
        ),
        "trigger \"t\": the trigger has no destination: add handler = { kind = ... } for a \
         built-in handler, or push = { endpoint = \"http://...\" } for an HTTP endpoint",
    );
    assert_single_error(
        &with_base(
            "[[triggers]]\nname = \"t\"\n\
             event_type = \"google.cloud.pubsub.topic.v1.messagePublished\"\n\
             filters = { topic = \"orders\" }\n\
             push = { endpoint = \"http://127.0.0.1:9/\" }\n\
             handler = { kind = \"offers\" }\n",
        ),
        "trigger \"t\": the trigger has both a handler and a push table, but one destination \
         takes its events: remove one of them, or declare a second trigger",
    );
}

#[test]
fn handler_kind_must_fit_event_type() {
    assert_single_error(
        &with_base(
            "[[triggers]]\nname = \"t\"\n\
             event_type = \"google.cloud.audit.log.v1.written\"\n\
             filters = { serviceName = \"s\", methodName = \"m\" }\n\
             handler = { kind = \"thumbnail\", destination_bucket = \"thumbs\" }\n",
        ),
        "trigger \"t\": handler kind \"thumbnail\" does not read \
         google.cloud.audit.log.v1.written events: set event_type = \
         \"google.cloud.storage.object.v1.finalized\", or push the events to an endpoint",
    );
}

#[test]
fn unknown_trigger_key_suggests() {
    let errors = error_lines(&with_base(
        &AUDIT_TRIGGER.replace("event_type =", "evnt_type = \"x\"\nevent_type ="),
    ));

    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("triggers[1]: unknown key \"evnt_type\""),
        "{errors:#?}"
    );
    assert!(
        errors[0].ends_with("did you mean \"event_type\"?"),
        "{errors:#?}"
    );
}
