//! Tests of the proto3 JSON mapping. The routes are tested against the real server in
//! tests/pubsub_rest.rs.

use serde_json::{json, Value};
use sluice_proto::google::protobuf::{Duration, FieldMask, Timestamp};
use sluice_proto::google::pubsub::v1::{self as pubsub, push_config, seek_request};

use super::json::{parse_message, write_message, Encoding, JsonMessage};
use super::wkt::lower_camel_case;

fn parse<M: JsonMessage>(body: Value) -> M {
    parse_message(&body, "").unwrap_or_else(|err| panic!("{body} was rejected: {err}"))
}

fn parse_error<M: JsonMessage + std::fmt::Debug>(body: Value) -> String {
    match parse_message::<M>(&body, "") {
        Ok(message) => panic!("{body} was accepted as {message:?}"),
        Err(message) => message,
    }
}

fn write<M: JsonMessage>(message: &M) -> Value {
    write_message(message, Encoding::default())
}

/// Returns the (proto name, JSON name) pairs of every mapped message.
fn all_fields() -> Vec<(&'static str, &'static str)> {
    use sluice_proto::google::pubsub::v1::{
        ai_inference, cloud_storage_config, ingestion_data_source_settings as ingestion,
        subscription,
    };
    [
        pubsub::Topic::FIELDS,
        pubsub::MessageStoragePolicy::FIELDS,
        pubsub::SchemaSettings::FIELDS,
        pubsub::IngestionDataSourceSettings::FIELDS,
        ingestion::AwsKinesis::FIELDS,
        ingestion::CloudStorage::FIELDS,
        ingestion::cloud_storage::TextFormat::FIELDS,
        ingestion::AzureEventHubs::FIELDS,
        ingestion::AwsMsk::FIELDS,
        ingestion::ConfluentCloud::FIELDS,
        pubsub::PlatformLogsSettings::FIELDS,
        pubsub::MessageTransform::FIELDS,
        pubsub::JavaScriptUdf::FIELDS,
        pubsub::AiInference::FIELDS,
        ai_inference::UnstructuredInference::FIELDS,
        pubsub::UpdateTopicRequest::FIELDS,
        pubsub::PubsubMessage::FIELDS,
        pubsub::PublishRequest::FIELDS,
        pubsub::PublishResponse::FIELDS,
        pubsub::ListTopicsResponse::FIELDS,
        pubsub::ListTopicSubscriptionsResponse::FIELDS,
        pubsub::ListTopicSnapshotsResponse::FIELDS,
        pubsub::Subscription::FIELDS,
        subscription::AnalyticsHubSubscriptionInfo::FIELDS,
        pubsub::RetryPolicy::FIELDS,
        pubsub::DeadLetterPolicy::FIELDS,
        pubsub::ExpirationPolicy::FIELDS,
        pubsub::PushConfig::FIELDS,
        push_config::OidcToken::FIELDS,
        push_config::NoWrapper::FIELDS,
        pubsub::BigQueryConfig::FIELDS,
        pubsub::BigtableConfig::FIELDS,
        pubsub::CloudStorageConfig::FIELDS,
        cloud_storage_config::AvroConfig::FIELDS,
        pubsub::UpdateSubscriptionRequest::FIELDS,
        pubsub::ListSubscriptionsResponse::FIELDS,
        pubsub::ModifyPushConfigRequest::FIELDS,
        pubsub::PullRequest::FIELDS,
        pubsub::ReceivedMessage::FIELDS,
        pubsub::PullResponse::FIELDS,
        pubsub::ModifyAckDeadlineRequest::FIELDS,
        pubsub::AcknowledgeRequest::FIELDS,
        pubsub::CreateSnapshotRequest::FIELDS,
        pubsub::UpdateSnapshotRequest::FIELDS,
        pubsub::Snapshot::FIELDS,
        pubsub::ListSnapshotsResponse::FIELDS,
        pubsub::SeekRequest::FIELDS,
    ]
    .concat()
}

#[test]
fn json_names_follow_protoc() {
    for (proto_name, json_name) in all_fields() {
        assert_eq!(
            lower_camel_case(proto_name),
            json_name,
            "the JSON name of {proto_name}"
        );
    }
}

#[test]
fn subscription_fields_in_both_spellings() {
    let camel: pubsub::Subscription = parse(json!({
        "topic": "projects/p/topics/t",
        "ackDeadlineSeconds": 30,
        "enableMessageOrdering": true,
        "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "600s"},
        "deadLetterPolicy": {"deadLetterTopic": "projects/p/topics/dead", "maxDeliveryAttempts": "5"},
        "messageRetentionDuration": "3600s",
        "labels": {"team": "storage"}
    }));
    let snake: pubsub::Subscription = parse(json!({
        "topic": "projects/p/topics/t",
        "ack_deadline_seconds": "30",
        "enable_message_ordering": true,
        "retry_policy": {"minimum_backoff": "1s", "maximum_backoff": "600s"},
        "dead_letter_policy": {"dead_letter_topic": "projects/p/topics/dead", "max_delivery_attempts": 5},
        "message_retention_duration": "3600s",
        "labels": {"team": "storage"}
    }));
    assert_eq!(camel, snake);
    assert_eq!(camel.ack_deadline_seconds, 30);
    assert!(camel.enable_message_ordering);
    let retry = camel.retry_policy.as_ref().expect("retry policy");
    assert_eq!(
        retry.minimum_backoff,
        Some(Duration {
            seconds: 1,
            nanos: 0
        })
    );
    let dead_letter = camel
        .dead_letter_policy
        .as_ref()
        .expect("dead-letter policy");
    assert_eq!(dead_letter.max_delivery_attempts, 5);
    assert_eq!(camel.labels["team"], "storage");
}

#[test]
fn subscription_writes_canonical_json() {
    let subscription: pubsub::Subscription = parse(json!({
        "name": "projects/p/subscriptions/s",
        "topic": "projects/p/topics/t",
        "ack_deadline_seconds": "10",
        "retry_policy": {"minimum_backoff": "0.5s"},
        "expirationPolicy": {},
        "state": 1
    }));
    assert_eq!(
        write(&subscription),
        json!({
            "name": "projects/p/subscriptions/s",
            "topic": "projects/p/topics/t",
            "ackDeadlineSeconds": 10,
            "retryPolicy": {"minimumBackoff": "0.500s"},
            "expirationPolicy": {},
            "state": "ACTIVE"
        })
    );
    let numbers = write_message(
        &subscription,
        Encoding {
            enums_as_numbers: true,
        },
    );
    assert_eq!(numbers["state"], json!(1));
}

#[test]
fn publish_request_decodes_base64() {
    let request: pubsub::PublishRequest = parse(json!({
        "messages": [
            {"data": "aGVsbG8=", "attributes": {"k": "v"}, "orderingKey": "key"},
            {"data": "aGVsbG8"},
            {"data": "-_8="},
            {"data": "+/8="},
            {"attributes": {"only": "attributes"}}
        ]
    }));
    let data: Vec<&[u8]> = request.messages.iter().map(|m| m.data.as_slice()).collect();
    assert_eq!(
        data,
        [&b"hello"[..], b"hello", &[0xfb, 0xff], &[0xfb, 0xff], b""]
    );
    assert_eq!(request.messages[0].attributes["k"], "v");
    assert_eq!(request.messages[0].ordering_key, "key");

    let message = parse_error::<pubsub::PublishRequest>(json!({"messages": [{"data": "a*b"}]}));
    assert!(message.contains("'messages[0].data'"), "{message}");
}

#[test]
fn received_message_writes_base64_and_rfc3339() {
    let response = pubsub::PullResponse {
        received_messages: vec![pubsub::ReceivedMessage {
            ack_id: "1-2".to_owned(),
            message: Some(pubsub::PubsubMessage {
                data: vec![0, 255, 1],
                attributes: [("a".to_owned(), "b".to_owned())].into(),
                message_id: "7".to_owned(),
                publish_time: Some(Timestamp {
                    seconds: 1_714_564_800,
                    nanos: 123_000_000,
                }),
                ordering_key: String::new(),
            }),
            delivery_attempt: 0,
        }],
    };
    assert_eq!(
        write(&response),
        json!({"receivedMessages": [{
            "ackId": "1-2",
            "message": {
                "data": "AP8B",
                "attributes": {"a": "b"},
                "messageId": "7",
                "publishTime": "2024-05-01T12:00:00.123Z"
            }
        }]})
    );
}

#[test]
fn int64_is_written_as_string() {
    let config = pubsub::CloudStorageConfig {
        max_bytes: 9_007_199_254_740_993,
        ..Default::default()
    };
    assert_eq!(write(&config), json!({"maxBytes": "9007199254740993"}));
    let parsed: pubsub::CloudStorageConfig = parse(json!({"maxBytes": "9007199254740993"}));
    assert_eq!(parsed.max_bytes, 9_007_199_254_740_993);
}

#[test]
fn update_mask_paths_are_snake_case() {
    let request: pubsub::UpdateSubscriptionRequest = parse(json!({
        "subscription": {"ackDeadlineSeconds": 20},
        "updateMask": "ackDeadlineSeconds,retryPolicy.minimumBackoff, labels"
    }));
    assert_eq!(
        request.update_mask,
        Some(FieldMask {
            paths: vec![
                "ack_deadline_seconds".to_owned(),
                "retry_policy.minimum_backoff".to_owned(),
                "labels".to_owned()
            ]
        })
    );
    assert_eq!(
        write(&request)["updateMask"],
        json!("ackDeadlineSeconds,retryPolicy.minimumBackoff,labels")
    );
}

#[test]
fn oneof_members_are_kept() {
    let config: pubsub::PushConfig = parse(json!({
        "pushEndpoint": "http://127.0.0.1:9/push",
        "noWrapper": {"writeMetadata": true},
        "oidcToken": {"serviceAccountEmail": "a@b"}
    }));
    assert_eq!(
        config.wrapper,
        Some(push_config::Wrapper::NoWrapper(push_config::NoWrapper {
            write_metadata: true
        }))
    );
    let written = write(&config);
    assert_eq!(written["noWrapper"], json!({"writeMetadata": true}));
    assert_eq!(written["oidcToken"], json!({"serviceAccountEmail": "a@b"}));

    // An empty member is still set, and written as {}.
    let config: pubsub::PushConfig = parse(json!({"pubsubWrapper": {}}));
    assert_eq!(write(&config), json!({"pubsubWrapper": {}}));

    let seek: pubsub::SeekRequest = parse(json!({"time": "2024-05-01T12:00:00Z"}));
    assert_eq!(
        seek.target,
        Some(seek_request::Target::Time(Timestamp {
            seconds: 1_714_564_800,
            nanos: 0
        }))
    );
    let message = parse_error::<pubsub::SeekRequest>(
        json!({"time": "2024-05-01T12:00:00Z", "snapshot": "s"}),
    );
    assert!(message.contains("oneof \"target\""), "{message}");
}

#[test]
fn null_leaves_fields_unset() {
    let topic: pubsub::Topic = parse(json!({"name": null, "labels": null, "schemaSettings": null}));
    assert_eq!(topic, pubsub::Topic::default());
    assert_eq!(write(&topic), json!({}));
}

#[test]
fn unknown_fields_are_rejected() {
    let message = parse_error::<pubsub::Topic>(json!({"name": "t", "colour": "red"}));
    assert_eq!(
        message,
        "Invalid JSON payload received. Unknown name \"colour\": Cannot find field."
    );
    let message =
        parse_error::<pubsub::Subscription>(json!({"retryPolicy": {"minimumBackof": "1s"}}));
    assert_eq!(
        message,
        "Invalid JSON payload received. Unknown name \"minimumBackof\" at 'retryPolicy': \
         Cannot find field."
    );
}

#[test]
fn wrong_types_are_rejected() {
    let cases = [
        (json!({"ackDeadlineSeconds": "ten"}), "'ackDeadlineSeconds'"),
        (json!({"ackDeadlineSeconds": 1.5}), "'ackDeadlineSeconds'"),
        (
            json!({"ackDeadlineSeconds": 4_294_967_296_i64}),
            "'ackDeadlineSeconds'",
        ),
        (
            json!({"enableMessageOrdering": "true"}),
            "'enableMessageOrdering'",
        ),
        (
            json!({"messageRetentionDuration": "600"}),
            "'messageRetentionDuration'",
        ),
        (
            json!({"messageRetentionDuration": 600}),
            "'messageRetentionDuration'",
        ),
        (json!({"labels": {"a": 1}}), "'labels.a'"),
        (json!({"labels": []}), "'labels'"),
        (json!({"state": "RUNNING"}), "'state'"),
        (json!({"retryPolicy": "fast"}), "'retryPolicy'"),
        (
            json!({"messageTransforms": [{"disabled": 1}]}),
            "'messageTransforms[0].disabled'",
        ),
    ];
    for (body, path) in cases {
        let message = parse_error::<pubsub::Subscription>(body.clone());
        assert!(message.contains(path), "{body}: {message}");
    }
    let message = parse_error::<pubsub::Subscription>(json!(["not", "an", "object"]));
    assert!(message.contains("must be a JSON object"), "{message}");
}

#[test]
fn timestamps_and_durations() {
    let snapshot: pubsub::Snapshot =
        parse(json!({"expireTime": "2024-05-01T14:00:00.000000001+02:00"}));
    assert_eq!(
        snapshot.expire_time,
        Some(Timestamp {
            seconds: 1_714_564_800,
            nanos: 1
        })
    );
    assert_eq!(
        write(&snapshot),
        json!({"expireTime": "2024-05-01T12:00:00.000000001Z"})
    );
    for bad in [
        "2024-05-01",
        "2016-12-31T23:59:60Z",
        "10000-01-01T00:00:00Z",
    ] {
        let message = parse_error::<pubsub::Snapshot>(json!({ "expireTime": bad }));
        assert!(message.contains("'expireTime'"), "{bad}: {message}");
    }

    let cases = [
        ("600s", 600, 0, "600s"),
        ("1.5s", 1, 500_000_000, "1.500s"),
        ("-0.000001s", 0, -1_000, "-0.000001s"),
        ("0.000000001s", 0, 1, "0.000000001s"),
    ];
    for (text, seconds, nanos, canonical) in cases {
        let policy: pubsub::ExpirationPolicy = parse(json!({ "ttl": text }));
        assert_eq!(policy.ttl, Some(Duration { seconds, nanos }), "{text}");
        assert_eq!(write(&policy), json!({ "ttl": canonical }), "{text}");
    }
    for bad in [
        "1.s",
        ".5s",
        "+1s",
        "1e3s",
        "1.0000000001s",
        "315576000001s",
    ] {
        let message = parse_error::<pubsub::ExpirationPolicy>(json!({ "ttl": bad }));
        assert!(message.contains("'ttl'"), "{bad}: {message}");
    }
}
