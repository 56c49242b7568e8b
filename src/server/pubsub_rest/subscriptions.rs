//! The routes of the Subscriber service: subscriptions, their custom methods and snapshots.

use axum::extract::State;
use sluice_proto::google::pubsub::v1::publisher_server::Publisher as _;
use sluice_proto::google::pubsub::v1::{self as pubsub, subscriber_server::Subscriber as _};
use tonic::Request;

use super::call::Call;
use super::topics::IAM_METHODS;
use super::{plain_resource, reply, reply_empty, Reply};
use crate::server::pubsub::PubsubService;

/// `PUT /v1/projects/{p}/subscriptions/{s}`: CreateSubscription, with the Subscription as
/// the body.
pub(super) async fn create(State(service): State<PubsubService>, call: Call) -> Reply {
    let mut subscription: pubsub::Subscription = call.body()?;
    subscription.name = plain_resource(&call)?;
    reply(
        &call,
        service
            .create_subscription(Request::new(subscription))
            .await?,
    )
}

/// `GET /v1/projects/{p}/subscriptions/{s}`: GetSubscription.
pub(super) async fn get(State(service): State<PubsubService>, call: Call) -> Reply {
    let request = pubsub::GetSubscriptionRequest {
        subscription: plain_resource(&call)?,
    };
    reply(
        &call,
        service.get_subscription(Request::new(request)).await?,
    )
}

/// `PATCH /v1/projects/{p}/subscriptions/{s}`: UpdateSubscription, with
/// `{"subscription", "updateMask"}` as the body.
pub(super) async fn update(State(service): State<PubsubService>, call: Call) -> Reply {
    let mut request: pubsub::UpdateSubscriptionRequest = call.body()?;
    request.subscription.get_or_insert_default().name = plain_resource(&call)?;
    reply(
        &call,
        service.update_subscription(Request::new(request)).await?,
    )
}

/// `DELETE /v1/projects/{p}/subscriptions/{s}`: DeleteSubscription.
pub(super) async fn delete(State(service): State<PubsubService>, call: Call) -> Reply {
    let request = pubsub::DeleteSubscriptionRequest {
        subscription: plain_resource(&call)?,
    };
    reply_empty(service.delete_subscription(Request::new(request)).await?)
}

/// `GET /v1/projects/{p}/subscriptions`: ListSubscriptions.
pub(super) async fn list(State(service): State<PubsubService>, call: Call) -> Reply {
    let (page_size, page_token) = call.page()?;
    let request = pubsub::ListSubscriptionsRequest {
        project: call.parent("subscriptions").to_owned(),
        page_size,
        page_token,
    };
    reply(
        &call,
        service.list_subscriptions(Request::new(request)).await?,
    )
}

/// `POST /v1/projects/{p}/subscriptions/{s}:{method}`: Pull, Acknowledge,
/// ModifyAckDeadline, ModifyPushConfig, Seek and DetachSubscription.
pub(super) async fn custom_method(State(service): State<PubsubService>, call: Call) -> Reply {
    let subscription = call.resource.clone();
    match call.verb.as_deref() {
        Some("pull") => {
            let mut request: pubsub::PullRequest = call.body()?;
            request.subscription = subscription;
            reply(&call, service.pull(Request::new(request)).await?)
        }
        Some("acknowledge") => {
            let mut request: pubsub::AcknowledgeRequest = call.body()?;
            request.subscription = subscription;
            reply_empty(service.acknowledge(Request::new(request)).await?)
        }
        Some("modifyAckDeadline") => {
            let mut request: pubsub::ModifyAckDeadlineRequest = call.body()?;
            request.subscription = subscription;
            reply_empty(service.modify_ack_deadline(Request::new(request)).await?)
        }
        Some("modifyPushConfig") => {
            let mut request: pubsub::ModifyPushConfigRequest = call.body()?;
            request.subscription = subscription;
            reply_empty(service.modify_push_config(Request::new(request)).await?)
        }
        Some("seek") => {
            let mut request: pubsub::SeekRequest = call.body()?;
            request.subscription = subscription;
            reply(&call, service.seek(Request::new(request)).await?)
        }
        Some("detach") => {
            // DetachSubscription has no body: the path names all it needs.
            let request = pubsub::DetachSubscriptionRequest { subscription };
            reply(
                &call,
                service.detach_subscription(Request::new(request)).await?,
            )
        }
        Some(verb) if IAM_METHODS.contains(&verb) => Err(super::unimplemented(
            &call,
            "sluice has no IAM; every client may use every subscription",
        )
        .into()),
        _ => Err(super::no_route_status(&call).into()),
    }
}

/// `PUT /v1/projects/{p}/snapshots/{s}`: CreateSnapshot, with `{"subscription", "labels"}`
/// as the body.
pub(super) async fn create_snapshot(State(service): State<PubsubService>, call: Call) -> Reply {
    let mut request: pubsub::CreateSnapshotRequest = call.body()?;
    request.name = plain_resource(&call)?;
    reply(&call, service.create_snapshot(Request::new(request)).await?)
}

/// `GET /v1/projects/{p}/snapshots/{s}`: GetSnapshot.
pub(super) async fn get_snapshot(State(service): State<PubsubService>, call: Call) -> Reply {
    let request = pubsub::GetSnapshotRequest {
        snapshot: plain_resource(&call)?,
    };
    reply(&call, service.get_snapshot(Request::new(request)).await?)
}

/// `PATCH /v1/projects/{p}/snapshots/{s}`: UpdateSnapshot, with `{"snapshot",
/// "updateMask"}` as the body.
pub(super) async fn update_snapshot(State(service): State<PubsubService>, call: Call) -> Reply {
    let mut request: pubsub::UpdateSnapshotRequest = call.body()?;
    request.snapshot.get_or_insert_default().name = plain_resource(&call)?;
    reply(&call, service.update_snapshot(Request::new(request)).await?)
}

/// `DELETE /v1/projects/{p}/snapshots/{s}`: DeleteSnapshot.
pub(super) async fn delete_snapshot(State(service): State<PubsubService>, call: Call) -> Reply {
    let request = pubsub::DeleteSnapshotRequest {
        snapshot: plain_resource(&call)?,
    };
    reply_empty(service.delete_snapshot(Request::new(request)).await?)
}

/// `GET /v1/projects/{p}/snapshots`: ListSnapshots.
pub(super) async fn list_snapshots(State(service): State<PubsubService>, call: Call) -> Reply {
    let (page_size, page_token) = call.page()?;
    let request = pubsub::ListSnapshotsRequest {
        project: call.parent("snapshots").to_owned(),
        page_size,
        page_token,
    };
    reply(&call, service.list_snapshots(Request::new(request)).await?)
}

/// `POST /v1/projects/{p}/snapshots/{s}:{method}`: snapshots have only the IAM methods.
pub(super) async fn custom_method_of_snapshot(call: Call) -> Reply {
    match call.verb.as_deref() {
        Some(verb) if IAM_METHODS.contains(&verb) => Err(super::unimplemented(
            &call,
            "sluice has no IAM; every client may use every snapshot",
        )
        .into()),
        _ => Err(super::no_route_status(&call).into()),
    }
}
