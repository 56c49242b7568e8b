//! The JSON mapping of every google.pubsub.v1 message that the REST routes read or write,
//! field by field, in the order of the prost types. Messages that are written only in
//! responses are mapped in both directions too, so that every mapping is tested the same way.

use sluice_proto::google::pubsub::v1::{
    self as pubsub, big_query_config, bigtable_config, cloud_storage_config,
    ingestion_data_source_settings as ingestion, message_transform, platform_logs_settings,
    push_config, seek_request, subscription, topic,
};

use super::json::{
    json_message, proto_enum, Bool, Bytes, Enum, Inner, Int32, Int64, Message, OptionalStr,
    Repeated, Str, StrMap,
};
use super::wkt::{Duration, FieldMask, Struct, Timestamp, TimestampValue};

proto_enum!(
    pubsub::Encoding,
    topic::State,
    subscription::State,
    ingestion::aws_kinesis::State,
    ingestion::cloud_storage::State,
    ingestion::azure_event_hubs::State,
    ingestion::aws_msk::State,
    ingestion::confluent_cloud::State,
    platform_logs_settings::Severity,
    big_query_config::State,
    bigtable_config::State,
    cloud_storage_config::State,
);

// Topics.

json_message!(pubsub::Topic {
    name "name": Str,
    labels "labels": StrMap,
    message_storage_policy "messageStoragePolicy": Message<pubsub::MessageStoragePolicy>,
    kms_key_name "kmsKeyName": Str,
    schema_settings "schemaSettings": Message<pubsub::SchemaSettings>,
    satisfies_pzs "satisfiesPzs": Bool,
    message_retention_duration "messageRetentionDuration": Duration,
    state "state": Enum<topic::State>,
    ingestion_data_source_settings "ingestionDataSourceSettings":
        Message<pubsub::IngestionDataSourceSettings>,
    message_transforms "messageTransforms": Repeated<Inner<pubsub::MessageTransform>>,
    tags "tags": StrMap,
});

json_message!(pubsub::MessageStoragePolicy {
    allowed_persistence_regions "allowedPersistenceRegions": Repeated<Str>,
    enforce_in_transit "enforceInTransit": Bool,
});

json_message!(pubsub::SchemaSettings {
    schema "schema": Str,
    encoding "encoding": Enum<pubsub::Encoding>,
    first_revision_id "firstRevisionId": Str,
    last_revision_id "lastRevisionId": Str,
});

json_message!(pubsub::IngestionDataSourceSettings {
    platform_logs_settings "platformLogsSettings": Message<pubsub::PlatformLogsSettings>,
} oneof source {
    aws_kinesis "awsKinesis" => ingestion::Source::AwsKinesis: Inner<ingestion::AwsKinesis>,
    cloud_storage "cloudStorage" => ingestion::Source::CloudStorage:
        Inner<ingestion::CloudStorage>,
    azure_event_hubs "azureEventHubs" => ingestion::Source::AzureEventHubs:
        Inner<ingestion::AzureEventHubs>,
    aws_msk "awsMsk" => ingestion::Source::AwsMsk: Inner<ingestion::AwsMsk>,
    confluent_cloud "confluentCloud" => ingestion::Source::ConfluentCloud:
        Inner<ingestion::ConfluentCloud>,
});

json_message!(ingestion::AwsKinesis {
    state "state": Enum<ingestion::aws_kinesis::State>,
    stream_arn "streamArn": Str,
    consumer_arn "consumerArn": Str,
    aws_role_arn "awsRoleArn": Str,
    gcp_service_account "gcpServiceAccount": Str,
});

json_message!(ingestion::CloudStorage {
    state "state": Enum<ingestion::cloud_storage::State>,
    bucket "bucket": Str,
    minimum_object_create_time "minimumObjectCreateTime": Timestamp,
    match_glob "matchGlob": Str,
} oneof input_format {
    text_format "textFormat" => ingestion::cloud_storage::InputFormat::TextFormat:
        Inner<ingestion::cloud_storage::TextFormat>,
    avro_format "avroFormat" => ingestion::cloud_storage::InputFormat::AvroFormat:
        Inner<ingestion::cloud_storage::AvroFormat>,
    pubsub_avro_format "pubsubAvroFormat" => ingestion::cloud_storage::InputFormat::PubsubAvroFormat:
        Inner<ingestion::cloud_storage::PubSubAvroFormat>,
});

json_message!(ingestion::cloud_storage::TextFormat {
    delimiter "delimiter": OptionalStr,
});

json_message!(ingestion::cloud_storage::AvroFormat {});

json_message!(ingestion::cloud_storage::PubSubAvroFormat {});

json_message!(ingestion::AzureEventHubs {
    state "state": Enum<ingestion::azure_event_hubs::State>,
    resource_group "resourceGroup": Str,
    namespace "namespace": Str,
    event_hub "eventHub": Str,
    client_id "clientId": Str,
    tenant_id "tenantId": Str,
    subscription_id "subscriptionId": Str,
    gcp_service_account "gcpServiceAccount": Str,
});

json_message!(ingestion::AwsMsk {
    state "state": Enum<ingestion::aws_msk::State>,
    cluster_arn "clusterArn": Str,
    topic "topic": Str,
    aws_role_arn "awsRoleArn": Str,
    gcp_service_account "gcpServiceAccount": Str,
});

json_message!(ingestion::ConfluentCloud {
    state "state": Enum<ingestion::confluent_cloud::State>,
    bootstrap_server "bootstrapServer": Str,
    cluster_id "clusterId": Str,
    topic "topic": Str,
    identity_pool_id "identityPoolId": Str,
    gcp_service_account "gcpServiceAccount": Str,
});

json_message!(pubsub::PlatformLogsSettings {
    severity "severity": Enum<platform_logs_settings::Severity>,
});

json_message!(pubsub::MessageTransform {
    enabled "enabled": Bool,
    disabled "disabled": Bool,
} oneof transform {
    javascript_udf "javascriptUdf" => message_transform::Transform::JavascriptUdf:
        Inner<pubsub::JavaScriptUdf>,
    ai_inference "aiInference" => message_transform::Transform::AiInference:
        Inner<pubsub::AiInference>,
});

json_message!(pubsub::JavaScriptUdf {
    function_name "functionName": Str,
    code "code": Str,
});

json_message!(pubsub::AiInference {
    endpoint "endpoint": Str,
    service_account_email "serviceAccountEmail": Str,
} oneof inference_mode {
    unstructured_inference "unstructuredInference" =>
        pubsub::ai_inference::InferenceMode::UnstructuredInference:
        Inner<pubsub::ai_inference::UnstructuredInference>,
});

json_message!(pubsub::ai_inference::UnstructuredInference {
    parameters "parameters": Struct,
});

json_message!(pubsub::UpdateTopicRequest {
    topic "topic": Message<pubsub::Topic>,
    update_mask "updateMask": FieldMask,
});

// Publishing.

json_message!(pubsub::PubsubMessage {
    data "data": Bytes,
    attributes "attributes": StrMap,
    message_id "messageId": Str,
    publish_time "publishTime": Timestamp,
    ordering_key "orderingKey": Str,
});

json_message!(pubsub::PublishRequest {
    topic "topic": Str,
    messages "messages": Repeated<Inner<pubsub::PubsubMessage>>,
});

json_message!(pubsub::PublishResponse {
    message_ids "messageIds": Repeated<Str>,
});

json_message!(pubsub::ListTopicsResponse {
    topics "topics": Repeated<Inner<pubsub::Topic>>,
    next_page_token "nextPageToken": Str,
});

json_message!(pubsub::ListTopicSubscriptionsResponse {
    subscriptions "subscriptions": Repeated<Str>,
    next_page_token "nextPageToken": Str,
});

json_message!(pubsub::ListTopicSnapshotsResponse {
    snapshots "snapshots": Repeated<Str>,
    next_page_token "nextPageToken": Str,
});

json_message!(pubsub::DetachSubscriptionResponse {});

// Subscriptions.

json_message!(pubsub::Subscription {
    name "name": Str,
    topic "topic": Str,
    push_config "pushConfig": Message<pubsub::PushConfig>,
    bigquery_config "bigqueryConfig": Message<pubsub::BigQueryConfig>,
    cloud_storage_config "cloudStorageConfig": Message<pubsub::CloudStorageConfig>,
    bigtable_config "bigtableConfig": Message<pubsub::BigtableConfig>,
    ack_deadline_seconds "ackDeadlineSeconds": Int32,
    retain_acked_messages "retainAckedMessages": Bool,
    message_retention_duration "messageRetentionDuration": Duration,
    labels "labels": StrMap,
    enable_message_ordering "enableMessageOrdering": Bool,
    expiration_policy "expirationPolicy": Message<pubsub::ExpirationPolicy>,
    filter "filter": Str,
    dead_letter_policy "deadLetterPolicy": Message<pubsub::DeadLetterPolicy>,
    retry_policy "retryPolicy": Message<pubsub::RetryPolicy>,
    detached "detached": Bool,
    enable_exactly_once_delivery "enableExactlyOnceDelivery": Bool,
    topic_message_retention_duration "topicMessageRetentionDuration": Duration,
    state "state": Enum<subscription::State>,
    analytics_hub_subscription_info "analyticsHubSubscriptionInfo":
        Message<subscription::AnalyticsHubSubscriptionInfo>,
    message_transforms "messageTransforms": Repeated<Inner<pubsub::MessageTransform>>,
    tags "tags": StrMap,
});

json_message!(subscription::AnalyticsHubSubscriptionInfo {
    listing "listing": Str,
    subscription "subscription": Str,
});

json_message!(pubsub::RetryPolicy {
    minimum_backoff "minimumBackoff": Duration,
    maximum_backoff "maximumBackoff": Duration,
});

json_message!(pubsub::DeadLetterPolicy {
    dead_letter_topic "deadLetterTopic": Str,
    max_delivery_attempts "maxDeliveryAttempts": Int32,
});

json_message!(pubsub::ExpirationPolicy {
    ttl "ttl": Duration,
});

json_message!(pubsub::PushConfig {
    push_endpoint "pushEndpoint": Str,
    attributes "attributes": StrMap,
} oneof authentication_method {
    oidc_token "oidcToken" => push_config::AuthenticationMethod::OidcToken:
        Inner<push_config::OidcToken>,
} oneof wrapper {
    pubsub_wrapper "pubsubWrapper" => push_config::Wrapper::PubsubWrapper:
        Inner<push_config::PubsubWrapper>,
    no_wrapper "noWrapper" => push_config::Wrapper::NoWrapper: Inner<push_config::NoWrapper>,
});

json_message!(push_config::OidcToken {
    service_account_email "serviceAccountEmail": Str,
    audience "audience": Str,
});

json_message!(push_config::PubsubWrapper {});

json_message!(push_config::NoWrapper {
    write_metadata "writeMetadata": Bool,
});

json_message!(pubsub::BigQueryConfig {
    table "table": Str,
    use_topic_schema "useTopicSchema": Bool,
    write_metadata "writeMetadata": Bool,
    drop_unknown_fields "dropUnknownFields": Bool,
    state "state": Enum<big_query_config::State>,
    use_table_schema "useTableSchema": Bool,
    service_account_email "serviceAccountEmail": Str,
});

json_message!(pubsub::BigtableConfig {
    table "table": Str,
    app_profile_id "appProfileId": Str,
    service_account_email "serviceAccountEmail": Str,
    write_metadata "writeMetadata": Bool,
    state "state": Enum<bigtable_config::State>,
});

json_message!(pubsub::CloudStorageConfig {
    bucket "bucket": Str,
    filename_prefix "filenamePrefix": Str,
    filename_suffix "filenameSuffix": Str,
    filename_datetime_format "filenameDatetimeFormat": Str,
    max_duration "maxDuration": Duration,
    max_bytes "maxBytes": Int64,
    max_messages "maxMessages": Int64,
    state "state": Enum<cloud_storage_config::State>,
    service_account_email "serviceAccountEmail": Str,
} oneof output_format {
    text_config "textConfig" => cloud_storage_config::OutputFormat::TextConfig:
        Inner<cloud_storage_config::TextConfig>,
    avro_config "avroConfig" => cloud_storage_config::OutputFormat::AvroConfig:
        Inner<cloud_storage_config::AvroConfig>,
});

json_message!(cloud_storage_config::TextConfig {});

json_message!(cloud_storage_config::AvroConfig {
    write_metadata "writeMetadata": Bool,
    use_topic_schema "useTopicSchema": Bool,
});

json_message!(pubsub::UpdateSubscriptionRequest {
    subscription "subscription": Message<pubsub::Subscription>,
    update_mask "updateMask": FieldMask,
});

json_message!(pubsub::ListSubscriptionsResponse {
    subscriptions "subscriptions": Repeated<Inner<pubsub::Subscription>>,
    next_page_token "nextPageToken": Str,
});

json_message!(pubsub::ModifyPushConfigRequest {
    subscription "subscription": Str,
    push_config "pushConfig": Message<pubsub::PushConfig>,
});

// Pulling and acknowledging.

json_message!(pubsub::PullRequest {
    subscription "subscription": Str,
    return_immediately "returnImmediately": Bool,
    max_messages "maxMessages": Int32,
});

json_message!(pubsub::ReceivedMessage {
    ack_id "ackId": Str,
    message "message": Message<pubsub::PubsubMessage>,
    delivery_attempt "deliveryAttempt": Int32,
});

json_message!(pubsub::PullResponse {
    received_messages "receivedMessages": Repeated<Inner<pubsub::ReceivedMessage>>,
});

json_message!(pubsub::ModifyAckDeadlineRequest {
    subscription "subscription": Str,
    ack_ids "ackIds": Repeated<Str>,
    ack_deadline_seconds "ackDeadlineSeconds": Int32,
});

json_message!(pubsub::AcknowledgeRequest {
    subscription "subscription": Str,
    ack_ids "ackIds": Repeated<Str>,
});

// Snapshots and seek.

json_message!(pubsub::CreateSnapshotRequest {
    name "name": Str,
    subscription "subscription": Str,
    labels "labels": StrMap,
    tags "tags": StrMap,
});

json_message!(pubsub::UpdateSnapshotRequest {
    snapshot "snapshot": Message<pubsub::Snapshot>,
    update_mask "updateMask": FieldMask,
});

json_message!(pubsub::Snapshot {
    name "name": Str,
    topic "topic": Str,
    expire_time "expireTime": Timestamp,
    labels "labels": StrMap,
});

json_message!(pubsub::ListSnapshotsResponse {
    snapshots "snapshots": Repeated<Inner<pubsub::Snapshot>>,
    next_page_token "nextPageToken": Str,
});

json_message!(pubsub::SeekRequest {
    subscription "subscription": Str,
} oneof target {
    time "time" => seek_request::Target::Time: TimestampValue,
    snapshot "snapshot" => seek_request::Target::Snapshot: Str,
});

json_message!(pubsub::SeekResponse {});
