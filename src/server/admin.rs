//! The sluice.v1 Admin service: what operators see in `sluice topics list` and
//! `sluice subscriptions list`.

use std::sync::Arc;

use sluice_proto::sluice::v1::admin_server::Admin;
use sluice_proto::sluice::v1::{
    ListSubscriptionsRequest, ListSubscriptionsResponse, ListTopicsRequest, ListTopicsResponse,
    SubscriptionInfo, TopicInfo,
};
use sluice_router::deliver::Broker;
use tonic::{Request, Response, Status};

use super::status;

/// Reads the catalog and delivery state from the broker.
#[derive(Debug, Clone)]
pub(crate) struct AdminService {
    pub(crate) broker: Arc<Broker>,
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn list_topics(
        &self,
        _: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let store = self.broker.store();
        let subscriptions = store.subscriptions();
        let mut topics = Vec::new();
        for topic in store.topics() {
            let retained_messages = store
                .retained_messages(&topic.name)
                .map_err(|err| status::from_store(&err))?;
            let subscriptions = subscriptions
                .iter()
                .filter(|s| s.topic_id == topic.id)
                .map(|s| s.spec.name.clone())
                .collect();
            topics.push(TopicInfo {
                name: topic.name,
                retained_messages,
                subscriptions,
            });
        }
        Ok(Response::new(ListTopicsResponse { topics }))
    }

    async fn list_subscriptions(
        &self,
        request: Request<ListSubscriptionsRequest>,
    ) -> Result<Response<ListSubscriptionsResponse>, Status> {
        let topic = request.into_inner().topic;
        let subscriptions = self
            .broker
            .stats()
            .into_iter()
            .filter(|stats| topic.is_empty() || stats.spec.topic == topic)
            .map(|stats| {
                let dead_letter = stats.spec.dead_letter.as_ref();
                SubscriptionInfo {
                    name: stats.spec.name.clone(),
                    topic: stats.spec.topic.clone(),
                    backlog: stats.backlog,
                    outstanding: stats.outstanding,
                    ack_deadline_seconds: stats.spec.ack_deadline_secs,
                    dead_letter_topic: dead_letter.map(|p| p.topic.clone()).unwrap_or_default(),
                    max_delivery_attempts: dead_letter.map_or(0, |p| p.max_delivery_attempts),
                    dead_lettered: stats.dead_lettered,
                    filtered_out: stats.filtered_out,
                }
            })
            .collect();
        Ok(Response::new(ListSubscriptionsResponse { subscriptions }))
    }
}
