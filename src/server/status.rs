//! The one place where service errors become gRPC status codes.

use sluice_router::deliver::BrokerError;
use sluice_router::store::StoreError;
use tonic::Status;

use super::names;

/// NOT_FOUND for a topic, worded as Pub/Sub words it, with the full resource name.
pub(crate) fn topic_not_found(name: &str) -> Status {
    Status::not_found(format!("Topic not found: {}", names::topic_resource(name)))
}

/// NOT_FOUND for a subscription, worded as Pub/Sub words it, with the full resource name.
pub(crate) fn subscription_not_found(name: &str) -> Status {
    Status::not_found(format!(
        "Subscription does not exist: {}",
        names::subscription_resource(name)
    ))
}

/// Maps a store error to the status Pub/Sub would return for it.
pub(crate) fn from_store(err: &StoreError) -> Status {
    match err {
        StoreError::TopicNotFound(name) => topic_not_found(name),
        StoreError::SubscriptionNotFound(name) => subscription_not_found(name),
        StoreError::SubscriptionConflict { .. } => Status::already_exists(err.to_string()),
        StoreError::Closed => {
            Status::unavailable("the server is shutting down; retry against a running server")
        }
        StoreError::Database(_) | StoreError::Corrupt { .. } => Status::internal(err.to_string()),
    }
}

/// Maps a broker error to a status.
pub(crate) fn from_broker(err: &BrokerError) -> Status {
    match err {
        BrokerError::SubscriptionNotFound(name) => subscription_not_found(name),
        BrokerError::InvalidAckId(_) => Status::invalid_argument(err.to_string()),
        BrokerError::Store(err) => from_store(err),
    }
}
