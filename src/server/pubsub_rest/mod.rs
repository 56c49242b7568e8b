//! Pub/Sub's REST API: HTTP/1.1 with proto3 JSON bodies, as gcloud and the admin clients
//! of Google's Rust library (`TopicAdmin`, `SubscriptionAdmin`) speak it.
//!
//! Every route parses its JSON into the google.pubsub.v1 request message, calls the same
//! [`Publisher`](sluice_proto::google::pubsub::v1::publisher_server::Publisher) or
//! [`Subscriber`](sluice_proto::google::pubsub::v1::subscriber_server::Subscriber) method
//! that gRPC clients reach, and writes the response message as JSON, so Pub/Sub's behaviour
//! is implemented once, in [`super::pubsub`]. Errors are Google's JSON error body with the
//! HTTP status of the gRPC code. An RPC that returns `google.protobuf.Empty` responds `{}`,
//! because Google's Rust clients fail on a 200 with an empty body.
//!
//! | route | RPC |
//! |---|---|
//! | `PUT`, `GET`, `PATCH`, `DELETE /v1/projects/{p}/topics/{t}` | CreateTopic, GetTopic, UpdateTopic, DeleteTopic |
//! | `GET /v1/projects/{p}/topics` | ListTopics |
//! | `POST /v1/projects/{p}/topics/{t}:publish` | Publish |
//! | `GET /v1/projects/{p}/topics/{t}/subscriptions`, `…/snapshots` | ListTopicSubscriptions, ListTopicSnapshots |
//! | `PUT`, `GET`, `PATCH`, `DELETE /v1/projects/{p}/subscriptions/{s}` | CreateSubscription, GetSubscription, UpdateSubscription, DeleteSubscription |
//! | `GET /v1/projects/{p}/subscriptions` | ListSubscriptions |
//! | `POST /v1/projects/{p}/subscriptions/{s}:pull`, `:acknowledge`, `:modifyAckDeadline`, `:modifyPushConfig`, `:seek`, `:detach` | Pull, Acknowledge, ModifyAckDeadline, ModifyPushConfig, Seek, DetachSubscription |
//! | `PUT`, `GET`, `PATCH`, `DELETE /v1/projects/{p}/snapshots/{s}`, `GET /v1/projects/{p}/snapshots` | CreateSnapshot, GetSnapshot, UpdateSnapshot, DeleteSnapshot, ListSnapshots |
//!
//! The paths, bodies and query parameters are those of the `google.api.http` options of
//! google/pubsub/v1/pubsub.proto: a body is the whole request message less the fields that
//! the path binds, and the path wins where both name the resource. The list routes read
//! `pageSize` and `pageToken` from the query. `$alt=json;enum-encoding=int` writes enums as
//! numbers. Other query parameters, such as gcloud's `alt=json` and `prettyPrint`, are
//! ignored.

mod call;
mod json;
mod kinds;
mod messages;
mod subscriptions;
mod topics;
mod wkt;

use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::json;
use tonic::{Code, Status};
use tracing::warn;

use super::limits;
use super::pubsub::PubsubService;
use super::status;
use call::Call;
use json::{write_message, JsonMessage};

/// Returns the routes of the REST API, served by `service`.
pub(crate) fn routes(service: PubsubService) -> Router {
    let projects = "/v1/projects/{project}";
    Router::new()
        .route(
            &format!("{projects}/topics"),
            get(topics::list).fallback(no_route),
        )
        .route(
            &format!("{projects}/topics/{{topic}}"),
            put(topics::create)
                .get(topics::get)
                .patch(topics::update)
                .delete(topics::delete)
                .post(topics::custom_method)
                .fallback(no_route),
        )
        .route(
            &format!("{projects}/topics/{{topic}}/subscriptions"),
            get(topics::list_subscriptions).fallback(no_route),
        )
        .route(
            &format!("{projects}/topics/{{topic}}/snapshots"),
            get(topics::list_snapshots).fallback(no_route),
        )
        .route(
            &format!("{projects}/subscriptions"),
            get(subscriptions::list).fallback(no_route),
        )
        .route(
            &format!("{projects}/subscriptions/{{subscription}}"),
            put(subscriptions::create)
                .get(subscriptions::get)
                .patch(subscriptions::update)
                .delete(subscriptions::delete)
                .post(subscriptions::custom_method)
                .fallback(no_route),
        )
        .route(
            &format!("{projects}/snapshots"),
            get(subscriptions::list_snapshots).fallback(no_route),
        )
        .route(
            &format!("{projects}/snapshots/{{snapshot}}"),
            put(subscriptions::create_snapshot)
                .get(subscriptions::get_snapshot)
                .patch(subscriptions::update_snapshot)
                .delete(subscriptions::delete_snapshot)
                .post(subscriptions::custom_method_of_snapshot)
                .fallback(no_route),
        )
        .layer(DefaultBodyLimit::max(limits::max_pubsub_rest_body_bytes()))
        .with_state(service)
}

/// The result of a route: the JSON response, or a status for Google's JSON error body.
type Reply = Result<HttpResponse, RestError>;

/// A status that a route returns as Google's JSON error body.
#[derive(Debug)]
struct RestError(Status);

impl From<Status> for RestError {
    fn from(status: Status) -> Self {
        RestError(status)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> HttpResponse {
        error_response(&self.0)
    }
}

/// Returns a status as Google's JSON error body, and logs the errors that are the server's
/// fault.
fn error_response(status: &Status) -> HttpResponse {
    if matches!(
        status.code(),
        Code::Internal | Code::Unknown | Code::DataLoss | Code::Unavailable
    ) {
        warn!(grpc.code = ?status.code(), error = status.message(), "pubsub REST request failed");
    }
    status::rest_error(status.code(), status.message(), None)
}

/// Returns a response message as JSON.
fn reply<M: JsonMessage>(call: &Call, response: tonic::Response<M>) -> Reply {
    Ok(Json(write_message(response.get_ref(), call.encoding)).into_response())
}

/// Returns `{}`, the JSON of `google.protobuf.Empty`.
fn reply_empty(_: tonic::Response<()>) -> Reply {
    Ok(Json(json!({})).into_response())
}

/// Returns the resource name of a route without a custom method.
///
/// # Errors
///
/// NOT_FOUND when the path has a custom method, such as `GET …/topics/t:publish`.
fn plain_resource(call: &Call) -> Result<String, Status> {
    match &call.verb {
        None => Ok(call.resource.clone()),
        Some(_) => Err(no_route_status(call)),
    }
}

/// NOT_FOUND for a method and path that the API does not have.
fn no_route_status(call: &Call) -> Status {
    let verb = call
        .verb
        .as_ref()
        .map(|verb| format!(":{verb}"))
        .unwrap_or_default();
    Status::not_found(format!(
        "no route for {} /v1/{}{verb}; the Pub/Sub REST API has the routes of \
         google/pubsub/v1/pubsub.proto",
        call.method, call.resource
    ))
}

/// UNIMPLEMENTED for a custom method of Google's API that sluice does not serve.
fn unimplemented(call: &Call, reason: &str) -> Status {
    Status::unimplemented(format!(
        "{} /v1/{}:{} is not supported: {reason}",
        call.method,
        call.resource,
        call.verb.as_deref().unwrap_or_default()
    ))
}

/// Rejects a method that a Pub/Sub path does not have with NOT_FOUND.
async fn no_route(call: Call) -> RestError {
    RestError(no_route_status(&call))
}

#[cfg(test)]
mod tests;
