//! The topic calls of the Publisher service: CreateTopic, GetTopic, UpdateTopic,
//! DeleteTopic, ListTopics, ListTopicSubscriptions and ListTopicSnapshots.

use sluice_proto::google::pubsub::v1 as pubsub;
use sluice_router::store::TopicSettings;
use tonic::Status;
use tracing::info;

use super::names::{self, Collection};
use super::pages::page;
use super::resources::topic_of;
use super::{settings, status, update_paths, PubsubService};

/// Creates a topic, with a message retention when the request sets one.
pub(super) async fn create(
    service: &PubsubService,
    topic: pubsub::Topic,
) -> Result<pubsub::Topic, Status> {
    let name = names::new_resource(&topic.name, Collection::Topics)?;
    settings::check_topic_fields(&topic)?;
    let message_retention_secs =
        settings::topic_retention(topic.message_retention_duration.as_ref())?;
    let _catalog = service.catalog.lock().await;
    if service.find_topic(&name).is_some() {
        return Err(status::topic_exists(&name));
    }
    let mut record = service
        .broker
        .create_topic(&name)
        .await
        .map_err(|err| status::from_store(&err))?;
    if message_retention_secs.is_some() {
        record = service
            .broker
            .update_topic(
                &name,
                TopicSettings {
                    message_retention_secs,
                },
            )
            .await
            .map_err(|err| status::from_store(&err))?;
    }
    info!(topic = %name, retention_secs = ?message_retention_secs, "topic created");
    Ok(topic_of(&record))
}

/// Returns a topic.
pub(super) fn get(
    service: &PubsubService,
    request: &pubsub::GetTopicRequest,
) -> Result<pubsub::Topic, Status> {
    let name = names::topic(&request.topic)?;
    let record = service
        .find_topic(&name)
        .ok_or_else(|| status::topic_not_found(&name))?;
    Ok(topic_of(&record))
}

/// Changes the fields of a topic that the update mask names. Only the message retention
/// can change.
pub(super) async fn update(
    service: &PubsubService,
    request: pubsub::UpdateTopicRequest,
) -> Result<pubsub::Topic, Status> {
    let topic = request
        .topic
        .ok_or_else(|| Status::invalid_argument("topic is required: set the topic to update"))?;
    let name = names::topic(&topic.name)?;
    let paths = update_paths(request.update_mask.as_ref(), "UpdateTopicRequest")?;
    let mut message_retention_secs = None;
    for path in &paths {
        match path.as_str() {
            "message_retention_duration" => {
                message_retention_secs = Some(settings::topic_retention(
                    topic.message_retention_duration.as_ref(),
                )?);
            }
            "labels"
            | "message_storage_policy"
            | "kms_key_name"
            | "schema_settings"
            | "ingestion_data_source_settings"
            | "message_transforms" => return Err(settings::unsupported_field(path, "Topic")),
            _ => {
                return Err(Status::invalid_argument(format!(
                    "Invalid update_mask provided in the UpdateTopicRequest: {path} is not a \
                     known Topic field. Note that field paths must be of the form \
                     'message_retention_duration' rather than 'messageRetentionDuration'."
                )))
            }
        }
    }
    let _catalog = service.catalog.lock().await;
    let mut record = service
        .find_topic(&name)
        .ok_or_else(|| status::topic_not_found(&name))?;
    if let Some(message_retention_secs) = message_retention_secs {
        let settings = TopicSettings {
            message_retention_secs,
        };
        if settings != record.settings {
            record = service
                .broker
                .update_topic(&name, settings)
                .await
                .map_err(|err| status::from_store(&err))?;
            info!(topic = %name, retention_secs = ?message_retention_secs, "topic updated");
        }
    }
    Ok(topic_of(&record))
}

/// Deletes a topic with its messages and snapshots. Its subscriptions stay, detached, with
/// the topic `_deleted-topic_`.
pub(super) async fn delete(
    service: &PubsubService,
    request: &pubsub::DeleteTopicRequest,
) -> Result<(), Status> {
    let name = names::topic(&request.topic)?;
    let _catalog = service.catalog.lock().await;
    service
        .broker
        .delete_topic(&name)
        .await
        .map_err(|err| status::from_store(&err))
}

/// Lists the topics of a project.
pub(super) fn list(
    service: &PubsubService,
    request: &pubsub::ListTopicsRequest,
) -> Result<pubsub::ListTopicsResponse, Status> {
    let project = names::project(&request.project)?;
    let topics = service
        .broker
        .store()
        .topics()
        .into_iter()
        .filter(|topic| names::in_project(&topic.name, project))
        .map(|topic| (topic.name.clone(), topic_of(&topic)))
        .collect();
    let page = page(topics, request.page_size, &request.page_token)?;
    Ok(pubsub::ListTopicsResponse {
        topics: page.items,
        next_page_token: page.next_page_token,
    })
}

/// Lists the subscriptions of a topic, in every project, by resource name.
pub(super) fn list_subscriptions(
    service: &PubsubService,
    request: &pubsub::ListTopicSubscriptionsRequest,
) -> Result<pubsub::ListTopicSubscriptionsResponse, Status> {
    let topic = names::topic(&request.topic)?;
    service.check_topic(&topic)?;
    let subscriptions = service
        .broker
        .store()
        .subscriptions()
        .into_iter()
        .filter(|record| record.spec.topic == topic)
        .map(|record| {
            let resource = names::subscription_resource(&record.spec.name);
            (record.spec.name, resource)
        })
        .collect();
    let page = page(subscriptions, request.page_size, &request.page_token)?;
    Ok(pubsub::ListTopicSubscriptionsResponse {
        subscriptions: page.items,
        next_page_token: page.next_page_token,
    })
}

/// Lists the snapshots of a topic by resource name.
pub(super) fn list_snapshots(
    service: &PubsubService,
    request: &pubsub::ListTopicSnapshotsRequest,
) -> Result<pubsub::ListTopicSnapshotsResponse, Status> {
    let topic = names::topic(&request.topic)?;
    service.check_topic(&topic)?;
    let snapshots = service
        .broker
        .snapshots()
        .into_iter()
        .filter(|snapshot| snapshot.topic == topic)
        .map(|snapshot| {
            let resource = names::snapshot_resource(&snapshot.name);
            (snapshot.name, resource)
        })
        .collect();
    let page = page(snapshots, request.page_size, &request.page_token)?;
    Ok(pubsub::ListTopicSnapshotsResponse {
        snapshots: page.items,
        next_page_token: page.next_page_token,
    })
}
