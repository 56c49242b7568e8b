//! The subscription calls of the Subscriber service: CreateSubscription,
//! GetSubscription, UpdateSubscription, DeleteSubscription, ListSubscriptions and
//! ModifyPushConfig, and the Publisher's DetachSubscription.

use sluice_proto::google::pubsub::v1 as pubsub;
use sluice_router::store::{SubscriptionSpec, DELETED_TOPIC};
use tonic::Status;
use tracing::info;

use super::names::{self, Collection};
use super::pages::page;
use super::resources::subscription_of;
use super::{settings, status, update_paths, PubsubService};

/// Creates a subscription with the settings of the request, checked against the service's
/// ranges.
pub(super) async fn create(
    service: &PubsubService,
    subscription: pubsub::Subscription,
) -> Result<pubsub::Subscription, Status> {
    let name = names::new_resource(&subscription.name, Collection::Subscriptions)?;
    let topic = names::topic(&subscription.topic)?;
    settings::check_subscription_fields(&subscription)?;
    let spec = SubscriptionSpec {
        ack_deadline_secs: settings::ack_deadline(subscription.ack_deadline_seconds)?,
        retry_policy: settings::retry_policy(subscription.retry_policy.as_ref())?,
        enable_message_ordering: subscription.enable_message_ordering,
        filter: settings::filter(&subscription.filter)?,
        message_retention_secs: settings::subscription_retention(
            subscription.message_retention_duration.as_ref(),
        )?,
        retain_acked_messages: subscription.retain_acked_messages,
        push: settings::push_config(subscription.push_config.as_ref())?,
        ..SubscriptionSpec::new(name.clone(), topic.clone())
    };
    let _catalog = service.catalog.lock().await;
    if service.broker.subscription_spec(&name).is_ok() {
        return Err(status::subscription_exists(&name));
    }
    let Some(topic_record) = service.find_topic(&topic) else {
        return Err(Status::not_found(format!(
            "Subscription topic does not exist: {}",
            names::topic_resource(&topic)
        )));
    };
    let spec = SubscriptionSpec {
        dead_letter: settings::dead_letter(
            subscription.dead_letter_policy.as_ref(),
            &topic,
            |name| service.find_topic(name).is_some(),
        )?,
        ..spec
    };
    let record = service
        .broker
        .create_subscription(spec)
        .await
        .map_err(|err| status::from_store(&err))?;
    info!(subscription = %name, topic = %topic, "subscription created");
    Ok(subscription_of(
        &record.spec,
        topic_record.settings.message_retention_secs,
    ))
}

/// Returns a subscription.
pub(super) fn get(
    service: &PubsubService,
    request: &pubsub::GetSubscriptionRequest,
) -> Result<pubsub::Subscription, Status> {
    let name = names::subscription(&request.subscription)?;
    let spec = service.live_spec(&name)?;
    Ok(subscription_of(&spec, service.topic_retention(&spec.topic)))
}

/// The fields of a subscription that UpdateSubscription can change.
const MUTABLE_FIELDS: [&str; 6] = [
    "ack_deadline_seconds",
    "retain_acked_messages",
    "message_retention_duration",
    "dead_letter_policy",
    "retry_policy",
    "push_config",
];

/// The fields that are fixed when a subscription is created.
const IMMUTABLE_FIELDS: [&str; 4] = ["name", "topic", "enable_message_ordering", "filter"];

/// The fields that sluice accepts and does not store, so an update of them changes
/// nothing: subscriptions never expire.
const IGNORED_FIELDS: [&str; 2] = ["expiration_policy", "tags"];

/// The fields of a Subscription that sluice does not support.
const UNSUPPORTED_FIELDS: [&str; 7] = [
    "labels",
    "enable_exactly_once_delivery",
    "bigquery_config",
    "cloud_storage_config",
    "bigtable_config",
    "message_transforms",
    "detached",
];

/// Changes the fields of a subscription that the update mask names.
pub(super) async fn update(
    service: &PubsubService,
    request: pubsub::UpdateSubscriptionRequest,
) -> Result<pubsub::Subscription, Status> {
    let subscription = request.subscription.ok_or_else(|| {
        Status::invalid_argument("subscription is required: set the subscription to update")
    })?;
    let name = names::subscription(&subscription.name)?;
    let paths = update_paths(request.update_mask.as_ref(), "UpdateSubscriptionRequest")?;
    for path in &paths {
        check_update_path(path)?;
    }
    let _catalog = service.catalog.lock().await;
    let current = service.live_spec(&name)?;
    check_attached(&current)?;
    let mut spec = current.clone();
    for path in &paths {
        apply(service, &mut spec, &subscription, path)?;
    }
    if spec != current {
        service
            .broker
            .create_subscription(spec.clone())
            .await
            .map_err(|err| status::from_store(&err))?;
        info!(subscription = %name, fields = ?paths, "subscription updated");
    }
    Ok(subscription_of(&spec, service.topic_retention(&spec.topic)))
}

/// Rejects an update mask path that names no field, or one that cannot change.
fn check_update_path(path: &str) -> Result<(), Status> {
    if MUTABLE_FIELDS.contains(&path) || IGNORED_FIELDS.contains(&path) {
        Ok(())
    } else if IMMUTABLE_FIELDS.contains(&path) {
        Err(Status::invalid_argument(format!(
            "Invalid update_mask provided in the UpdateSubscriptionRequest: the {path} field \
             in the Subscription is not mutable. Create a new subscription for another {path}."
        )))
    } else if UNSUPPORTED_FIELDS.contains(&path) {
        Err(settings::unsupported_field(path, "Subscription"))
    } else {
        Err(Status::invalid_argument(format!(
            "Invalid update_mask provided in the UpdateSubscriptionRequest: {path} is not a \
             known Subscription field. Note that field paths must be of the form \
             'push_config' rather than 'pushConfig'."
        )))
    }
}

/// Copies the field `path` of `subscription` into `spec`, checked as on creation.
fn apply(
    service: &PubsubService,
    spec: &mut SubscriptionSpec,
    subscription: &pubsub::Subscription,
    path: &str,
) -> Result<(), Status> {
    match path {
        "ack_deadline_seconds" => {
            spec.ack_deadline_secs = settings::ack_deadline(subscription.ack_deadline_seconds)?;
        }
        "retain_acked_messages" => spec.retain_acked_messages = subscription.retain_acked_messages,
        "message_retention_duration" => {
            spec.message_retention_secs =
                settings::subscription_retention(subscription.message_retention_duration.as_ref())?;
        }
        "dead_letter_policy" => {
            spec.dead_letter = settings::dead_letter(
                subscription.dead_letter_policy.as_ref(),
                &spec.topic,
                |name| service.find_topic(name).is_some(),
            )?;
        }
        "retry_policy" => {
            spec.retry_policy = settings::retry_policy(subscription.retry_policy.as_ref())?;
        }
        "push_config" => spec.push = settings::push_config(subscription.push_config.as_ref())?,
        // The ignored fields; check_update_path rejected every other path.
        _ => {}
    }
    Ok(())
}

/// Rejects a change to a subscription whose topic was deleted.
fn check_attached(spec: &SubscriptionSpec) -> Result<(), Status> {
    if spec.topic == DELETED_TOPIC {
        return Err(Status::failed_precondition(format!(
            "the topic of {} was deleted, so its settings cannot change; delete the \
             subscription and create it again on an existing topic",
            names::subscription_resource(&spec.name)
        )));
    }
    Ok(())
}

/// Deletes a subscription and its backlog.
pub(super) async fn delete(
    service: &PubsubService,
    request: &pubsub::DeleteSubscriptionRequest,
) -> Result<(), Status> {
    let name = names::subscription(&request.subscription)?;
    let _catalog = service.catalog.lock().await;
    service
        .broker
        .delete_subscription(&name)
        .await
        .map_err(|err| status::from_store(&err))
}

/// Lists the subscriptions of a project.
pub(super) fn list(
    service: &PubsubService,
    request: &pubsub::ListSubscriptionsRequest,
) -> Result<pubsub::ListSubscriptionsResponse, Status> {
    let project = names::project(&request.project)?;
    let subscriptions = service
        .broker
        .store()
        .subscriptions()
        .into_iter()
        .filter(|record| names::in_project(&record.spec.name, project))
        .map(|record| {
            let retention = service.topic_retention(&record.spec.topic);
            let subscription = subscription_of(&record.spec, retention);
            (record.spec.name, subscription)
        })
        .collect();
    let page = page(subscriptions, request.page_size, &request.page_token)?;
    Ok(pubsub::ListSubscriptionsResponse {
        subscriptions: page.items,
        next_page_token: page.next_page_token,
    })
}

/// Sets or clears the push endpoint of a subscription: a config without an endpoint makes
/// it a pull subscription.
pub(super) async fn modify_push_config(
    service: &PubsubService,
    request: &pubsub::ModifyPushConfigRequest,
) -> Result<(), Status> {
    let name = names::subscription(&request.subscription)?;
    let push = settings::push_config(request.push_config.as_ref())?;
    let _catalog = service.catalog.lock().await;
    let current = service.live_spec(&name)?;
    if current.push == push {
        return Ok(());
    }
    check_attached(&current)?;
    let endpoint = push.as_ref().map(|push| push.endpoint.clone());
    service
        .broker
        .create_subscription(SubscriptionSpec { push, ..current })
        .await
        .map_err(|err| status::from_store(&err))?;
    info!(subscription = %name, endpoint = ?endpoint, "push config changed");
    Ok(())
}

/// Rejects DetachSubscription, which sluice does not implement, after checking that the
/// subscription exists.
pub(super) fn detach(
    service: &PubsubService,
    request: &pubsub::DetachSubscriptionRequest,
) -> Result<pubsub::DetachSubscriptionResponse, Status> {
    let name = names::subscription(&request.subscription)?;
    service.live_spec(&name)?;
    Err(Status::unimplemented(
        "DetachSubscription is not supported: sluice cannot detach one subscription from its \
         topic. Delete the subscription (DeleteSubscription) instead; deleting the topic \
         detaches all of its subscriptions",
    ))
}
