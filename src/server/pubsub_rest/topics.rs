//! The routes of the Publisher service.

use axum::extract::State;
use sluice_proto::google::pubsub::v1::{self as pubsub, publisher_server::Publisher as _};
use tonic::Request;

use super::call::Call;
use super::{plain_resource, reply, reply_empty, Reply};
use crate::server::pubsub::PubsubService;

/// The IAM methods that Pub/Sub resources have, which sluice does not serve.
pub(super) const IAM_METHODS: [&str; 3] = ["getIamPolicy", "setIamPolicy", "testIamPermissions"];

/// `PUT /v1/projects/{p}/topics/{t}`: CreateTopic, with the Topic as the body.
pub(super) async fn create(State(service): State<PubsubService>, call: Call) -> Reply {
    let mut topic: pubsub::Topic = call.body()?;
    topic.name = plain_resource(&call)?;
    reply(&call, service.create_topic(Request::new(topic)).await?)
}

/// `GET /v1/projects/{p}/topics/{t}`: GetTopic.
pub(super) async fn get(State(service): State<PubsubService>, call: Call) -> Reply {
    let request = pubsub::GetTopicRequest {
        topic: plain_resource(&call)?,
    };
    reply(&call, service.get_topic(Request::new(request)).await?)
}

/// `PATCH /v1/projects/{p}/topics/{t}`: UpdateTopic, with `{"topic", "updateMask"}` as
/// the body.
pub(super) async fn update(State(service): State<PubsubService>, call: Call) -> Reply {
    let mut request: pubsub::UpdateTopicRequest = call.body()?;
    request.topic.get_or_insert_default().name = plain_resource(&call)?;
    reply(&call, service.update_topic(Request::new(request)).await?)
}

/// `DELETE /v1/projects/{p}/topics/{t}`: DeleteTopic.
pub(super) async fn delete(State(service): State<PubsubService>, call: Call) -> Reply {
    let request = pubsub::DeleteTopicRequest {
        topic: plain_resource(&call)?,
    };
    reply_empty(service.delete_topic(Request::new(request)).await?)
}

/// `GET /v1/projects/{p}/topics`: ListTopics.
pub(super) async fn list(State(service): State<PubsubService>, call: Call) -> Reply {
    let (page_size, page_token) = call.page()?;
    let request = pubsub::ListTopicsRequest {
        project: call.parent("topics").to_owned(),
        page_size,
        page_token,
    };
    reply(&call, service.list_topics(Request::new(request)).await?)
}

/// `GET /v1/projects/{p}/topics/{t}/subscriptions`: ListTopicSubscriptions.
pub(super) async fn list_subscriptions(State(service): State<PubsubService>, call: Call) -> Reply {
    let (page_size, page_token) = call.page()?;
    let request = pubsub::ListTopicSubscriptionsRequest {
        topic: call.parent("subscriptions").to_owned(),
        page_size,
        page_token,
    };
    reply(
        &call,
        service
            .list_topic_subscriptions(Request::new(request))
            .await?,
    )
}

/// `GET /v1/projects/{p}/topics/{t}/snapshots`: ListTopicSnapshots.
pub(super) async fn list_snapshots(State(service): State<PubsubService>, call: Call) -> Reply {
    let (page_size, page_token) = call.page()?;
    let request = pubsub::ListTopicSnapshotsRequest {
        topic: call.parent("snapshots").to_owned(),
        page_size,
        page_token,
    };
    reply(
        &call,
        service.list_topic_snapshots(Request::new(request)).await?,
    )
}

/// `POST /v1/projects/{p}/topics/{t}:publish`, the one custom method of topics that sluice
/// serves.
pub(super) async fn custom_method(State(service): State<PubsubService>, call: Call) -> Reply {
    match call.verb.as_deref() {
        Some("publish") => {
            let mut request: pubsub::PublishRequest = call.body()?;
            request.topic = call.resource.clone();
            reply(&call, service.publish(Request::new(request)).await?)
        }
        Some(verb) if IAM_METHODS.contains(&verb) => Err(super::unimplemented(
            &call,
            "sluice has no IAM; every client may use every topic",
        )
        .into()),
        _ => Err(super::no_route_status(&call).into()),
    }
}
