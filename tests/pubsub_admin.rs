//! The admin calls of google.pubsub.v1 Publisher and Subscriber end to end: the real
//! `sluice serve` on 127.0.0.1, driven by the tonic clients of google.pubsub.v1. Each test
//! checks the results and the status codes and messages that Google's clients see.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sluice_proto::google::protobuf::{Duration as ProtoDuration, FieldMask, Timestamp};
use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{
    push_config, seek_request, AcknowledgeRequest, CreateSnapshotRequest, DeadLetterPolicy,
    DeleteSnapshotRequest, DeleteSubscriptionRequest, DeleteTopicRequest,
    DetachSubscriptionRequest, GetSnapshotRequest, GetSubscriptionRequest, GetTopicRequest,
    ListSnapshotsRequest, ListSubscriptionsRequest, ListTopicSnapshotsRequest,
    ListTopicSubscriptionsRequest, ListTopicsRequest, ModifyPushConfigRequest, PublishRequest,
    PubsubMessage, PullRequest, PushConfig, ReceivedMessage, RetryPolicy, SeekRequest, Snapshot,
    Subscription, Topic, UpdateSnapshotRequest, UpdateSubscriptionRequest, UpdateTopicRequest,
};
use sluice_proto::tonic::transport::Channel;
use sluice_proto::tonic::{Code, Status};
use support::{channel, TestServer};

/// Topics and a subscription that the configuration declares.
const CONFIG: &str = r#"
[[topics]]
name = "orders"

[[topics]]
name = "orders-dead-letter"

[[subscriptions]]
name = "orders-all"
topic = "orders"
ack_deadline_secs = 30
"#;

/// How long a test waits for a message that should arrive.
const ARRIVAL: Duration = Duration::from_secs(10);

/// The Publisher and Subscriber clients of one server.
struct Clients {
    publisher: PublisherClient<Channel>,
    subscriber: SubscriberClient<Channel>,
}

impl Clients {
    async fn connect(server: &TestServer) -> Clients {
        let channel = channel(server).await;
        Clients {
            publisher: PublisherClient::new(channel.clone()),
            subscriber: SubscriberClient::new(channel),
        }
    }

    async fn create_topic(&mut self, topic: Topic) -> Result<Topic, Status> {
        self.publisher
            .create_topic(topic)
            .await
            .map(|r| r.into_inner())
    }

    async fn get_topic(&mut self, topic: &str) -> Result<Topic, Status> {
        self.publisher
            .get_topic(GetTopicRequest {
                topic: topic.to_owned(),
            })
            .await
            .map(|r| r.into_inner())
    }

    async fn create_subscription(
        &mut self,
        subscription: Subscription,
    ) -> Result<Subscription, Status> {
        self.subscriber
            .create_subscription(subscription)
            .await
            .map(|r| r.into_inner())
    }

    async fn get_subscription(&mut self, subscription: &str) -> Result<Subscription, Status> {
        self.subscriber
            .get_subscription(GetSubscriptionRequest {
                subscription: subscription.to_owned(),
            })
            .await
            .map(|r| r.into_inner())
    }

    async fn update_subscription(
        &mut self,
        subscription: Subscription,
        paths: &[&str],
    ) -> Result<Subscription, Status> {
        self.subscriber
            .update_subscription(UpdateSubscriptionRequest {
                subscription: Some(subscription),
                update_mask: Some(mask(paths)),
            })
            .await
            .map(|r| r.into_inner())
    }

    async fn publish(&mut self, topic: &str, data: &[u8]) -> String {
        let response = self
            .publisher
            .publish(PublishRequest {
                topic: topic.to_owned(),
                messages: vec![PubsubMessage {
                    data: data.to_vec(),
                    ..Default::default()
                }],
            })
            .await
            .unwrap_or_else(|status| panic!("publish to {topic} failed: {status:?}"))
            .into_inner();
        response.message_ids[0].clone()
    }

    /// Pulls until `count` messages arrived or [`ARRIVAL`] ran out.
    async fn pull(&mut self, subscription: &str, count: usize) -> Vec<ReceivedMessage> {
        let deadline = Instant::now() + ARRIVAL;
        let mut received = Vec::new();
        while received.len() < count && Instant::now() < deadline {
            #[allow(deprecated, reason = "return_immediately keeps each pull short")]
            let request = PullRequest {
                subscription: subscription.to_owned(),
                return_immediately: true,
                max_messages: 100,
            };
            let response = self
                .subscriber
                .pull(request)
                .await
                .unwrap_or_else(|status| panic!("pull from {subscription} failed: {status:?}"));
            received.extend(response.into_inner().received_messages);
            if received.len() < count {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        received
    }

    async fn ack(&mut self, subscription: &str, received: &[ReceivedMessage]) {
        self.subscriber
            .acknowledge(AcknowledgeRequest {
                subscription: subscription.to_owned(),
                ack_ids: received.iter().map(|m| m.ack_id.clone()).collect(),
            })
            .await
            .expect("acknowledge");
    }
}

fn topic(name: &str) -> Topic {
    Topic {
        name: name.to_owned(),
        ..Default::default()
    }
}

fn subscription(name: &str, topic: &str) -> Subscription {
    Subscription {
        name: name.to_owned(),
        topic: topic.to_owned(),
        ..Default::default()
    }
}

fn mask(paths: &[&str]) -> FieldMask {
    FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    }
}

fn seconds(seconds: i64) -> ProtoDuration {
    ProtoDuration { seconds, nanos: 0 }
}

/// Asserts that `result` failed with `code` and a message that starts with `prefix`.
#[track_caller]
fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, prefix: &str) {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().starts_with(prefix),
        "message {:?} should start with {prefix:?}",
        status.message()
    );
}

#[tokio::test]
async fn topic_lifecycle() {
    let server = TestServer::start(Some(CONFIG));
    let mut clients = Clients::connect(&server).await;
    let name = "projects/local/topics/created";

    let created = clients
        .create_topic(Topic {
            message_retention_duration: Some(seconds(3600)),
            ..topic(name)
        })
        .await
        .expect("create topic");
    assert_eq!(created.name, name);
    assert_eq!(created.message_retention_duration, Some(seconds(3600)));
    assert_status(
        clients.create_topic(topic(name)).await,
        Code::AlreadyExists,
        "Topic already exists: projects/local/topics/created",
    );
    assert_eq!(clients.get_topic(name).await.expect("get topic"), created);

    let updated = clients
        .publisher
        .update_topic(UpdateTopicRequest {
            topic: Some(Topic {
                message_retention_duration: Some(seconds(7200)),
                ..topic(name)
            }),
            update_mask: Some(mask(&["message_retention_duration"])),
        })
        .await
        .expect("update topic")
        .into_inner();
    assert_eq!(updated.message_retention_duration, Some(seconds(7200)));
    let cleared = clients
        .publisher
        .update_topic(UpdateTopicRequest {
            topic: Some(topic(name)),
            update_mask: Some(mask(&["message_retention_duration"])),
        })
        .await
        .expect("clear retention")
        .into_inner();
    assert_eq!(
        cleared.message_retention_duration, None,
        "retention cleared"
    );

    clients
        .publisher
        .delete_topic(DeleteTopicRequest {
            topic: name.to_owned(),
        })
        .await
        .expect("delete topic");
    assert_status(
        clients.get_topic(name).await,
        Code::NotFound,
        "Topic not found: projects/local/topics/created",
    );
    assert_status(
        clients
            .publisher
            .delete_topic(DeleteTopicRequest {
                topic: name.to_owned(),
            })
            .await,
        Code::NotFound,
        "Topic not found",
    );
}

#[tokio::test]
async fn topic_requests_checked() {
    let server = TestServer::start(Some(CONFIG));
    let mut clients = Clients::connect(&server).await;

    for invalid in [
        "projects/local/topics/t1",
        "projects/local/topics/googtopic",
        "projects/local/topics/bad$name",
        "projects/local/topic/orders2",
        "orders2",
        "",
    ] {
        assert_status(
            clients.create_topic(topic(invalid)).await,
            Code::InvalidArgument,
            &format!("Invalid [topics] name: (name={invalid})"),
        );
    }
    for retention in [599, 31 * 24 * 3600 + 1] {
        assert_status(
            clients
                .create_topic(Topic {
                    message_retention_duration: Some(seconds(retention)),
                    ..topic("projects/local/topics/kept")
                })
                .await,
            Code::InvalidArgument,
            "message_retention_duration out of bounds",
        );
    }
    assert_status(
        clients
            .create_topic(Topic {
                labels: [("team".to_owned(), "a".to_owned())].into(),
                ..topic("projects/local/topics/labelled")
            })
            .await,
        Code::InvalidArgument,
        "the labels field of a Topic is not supported",
    );
    assert_status(
        clients.get_topic("orders").await,
        Code::InvalidArgument,
        "Invalid [topics] name: (name=orders)",
    );

    let update = |paths: &[&str]| UpdateTopicRequest {
        topic: Some(topic("projects/local/topics/orders")),
        update_mask: Some(mask(paths)),
    };
    assert_status(
        clients.publisher.update_topic(update(&[])).await,
        Code::InvalidArgument,
        "The update_mask in the UpdateTopicRequest must be set",
    );
    assert_status(
        clients.publisher.update_topic(update(&["colour"])).await,
        Code::InvalidArgument,
        "Invalid update_mask provided in the UpdateTopicRequest: colour is not a known Topic \
         field",
    );
    assert_status(
        clients.publisher.update_topic(update(&["labels"])).await,
        Code::InvalidArgument,
        "the labels field of a Topic is not supported",
    );
    assert_status(
        clients
            .publisher
            .update_topic(UpdateTopicRequest {
                topic: Some(topic("projects/local/topics/missing")),
                update_mask: Some(mask(&["message_retention_duration"])),
            })
            .await,
        Code::NotFound,
        "Topic not found",
    );
}

#[tokio::test]
async fn lists_paginate() {
    let server = TestServer::start(Some(CONFIG));
    let mut clients = Clients::connect(&server).await;
    for index in 0..5 {
        let name = format!("projects/local/topics/listed-{index}");
        clients.create_topic(topic(&name)).await.expect("create");
        clients
            .create_subscription(subscription(
                &format!("projects/local/subscriptions/listed-{index}"),
                &name,
            ))
            .await
            .expect("create subscription");
    }

    let mut names = Vec::new();
    let mut pages = 0;
    let mut token = String::new();
    loop {
        let response = clients
            .publisher
            .list_topics(ListTopicsRequest {
                project: "projects/local".to_owned(),
                page_size: 3,
                page_token: token,
            })
            .await
            .expect("list topics")
            .into_inner();
        pages += 1;
        assert!(response.topics.len() <= 3, "page size honoured");
        names.extend(response.topics.into_iter().map(|t| t.name));
        token = response.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3, "7 topics at 3 per page");
    let unique: BTreeSet<_> = names.iter().cloned().collect();
    assert_eq!(unique.len(), 7, "every topic once: {names:?}");
    assert!(unique.contains("projects/local/topics/orders"), "{names:?}");
    assert!(
        unique.contains("projects/local/topics/listed-4"),
        "{names:?}"
    );

    let first = clients
        .subscriber
        .list_subscriptions(ListSubscriptionsRequest {
            project: "projects/local".to_owned(),
            page_size: 4,
            page_token: String::new(),
        })
        .await
        .expect("list subscriptions")
        .into_inner();
    assert_eq!(first.subscriptions.len(), 4);
    let second = clients
        .subscriber
        .list_subscriptions(ListSubscriptionsRequest {
            project: "projects/local".to_owned(),
            page_size: 4,
            page_token: first.next_page_token.clone(),
        })
        .await
        .expect("second page")
        .into_inner();
    assert_eq!(second.subscriptions.len(), 2, "6 subscriptions in all");
    assert_eq!(second.next_page_token, "", "last page");

    assert_status(
        clients
            .publisher
            .list_topics(ListTopicsRequest {
                project: "projects/local".to_owned(),
                page_size: -1,
                page_token: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "page_size is -1",
    );
    assert_status(
        clients
            .publisher
            .list_topics(ListTopicsRequest {
                project: "local".to_owned(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "Invalid [projects] name: (name=local)",
    );

    let by_topic = clients
        .publisher
        .list_topic_subscriptions(ListTopicSubscriptionsRequest {
            topic: "projects/local/topics/orders".to_owned(),
            ..Default::default()
        })
        .await
        .expect("list topic subscriptions")
        .into_inner();
    assert_eq!(
        by_topic.subscriptions,
        ["projects/local/subscriptions/orders-all"]
    );
    assert_status(
        clients
            .publisher
            .list_topic_subscriptions(ListTopicSubscriptionsRequest {
                topic: "projects/local/topics/missing".to_owned(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "Topic not found",
    );
}

#[tokio::test]
async fn projects_are_namespaces() {
    let server = TestServer::start(Some(CONFIG));
    let mut clients = Clients::connect(&server).await;

    assert_status(
        clients.get_topic("projects/other/topics/orders").await,
        Code::NotFound,
        "Topic not found: projects/other/topics/orders",
    );
    let other = clients
        .create_topic(topic("projects/other/topics/orders"))
        .await
        .expect("the same name in another project");
    assert_eq!(other.name, "projects/other/topics/orders");
    clients
        .create_subscription(subscription(
            "projects/other/subscriptions/orders-all",
            "projects/other/topics/orders",
        ))
        .await
        .expect("the same subscription name in another project");
    let cross = clients
        .create_subscription(subscription(
            "projects/other/subscriptions/local-orders",
            "projects/local/topics/orders",
        ))
        .await
        .expect("a subscription on another project's topic");
    assert_eq!(cross.topic, "projects/local/topics/orders");

    let listed = clients
        .publisher
        .list_topics(ListTopicsRequest {
            project: "projects/other".to_owned(),
            ..Default::default()
        })
        .await
        .expect("list other project")
        .into_inner();
    let names: Vec<_> = listed.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["projects/other/topics/orders"]);

    clients
        .publish("projects/other/topics/orders", b"to other")
        .await;
    clients
        .publish("projects/local/topics/orders", b"to local")
        .await;
    let other_messages = clients
        .pull("projects/other/subscriptions/orders-all", 1)
        .await;
    assert_eq!(other_messages.len(), 1);
    let data = &other_messages[0].message.as_ref().expect("a message").data;
    assert_eq!(
        data, b"to other",
        "each project's topic gets its own messages"
    );
    let cross_messages = clients
        .pull("projects/other/subscriptions/local-orders", 1)
        .await;
    let data = &cross_messages[0].message.as_ref().expect("a message").data;
    assert_eq!(data, b"to local");

    let yet_another = clients
        .subscriber
        .list_subscriptions(ListSubscriptionsRequest {
            project: "projects/empty".to_owned(),
            ..Default::default()
        })
        .await
        .expect("list an unused project")
        .into_inner();
    assert!(yet_another.subscriptions.is_empty());
}

#[tokio::test]
async fn configured_project_names_resources() {
    let config = format!("project = \"acme\"\n{CONFIG}");
    let server = TestServer::start(Some(&config));
    let mut clients = Clients::connect(&server).await;

    let configured = clients
        .get_subscription("projects/acme/subscriptions/orders-all")
        .await
        .expect("configured subscription in project acme");
    assert_eq!(configured.topic, "projects/acme/topics/orders");
    assert_status(
        clients.get_topic("projects/local/topics/orders").await,
        Code::NotFound,
        "Topic not found: projects/local/topics/orders",
    );
    clients
        .publish("projects/acme/topics/orders", b"configured")
        .await;
    let received = clients
        .pull("projects/acme/subscriptions/orders-all", 1)
        .await;
    assert_eq!(received.len(), 1);
}

#[tokio::test]
async fn subscription_settings_round_trip() {
    let server = TestServer::start(Some(CONFIG));
    let mut clients = Clients::connect(&server).await;

    let defaults = clients
        .create_subscription(subscription(
            "projects/local/subscriptions/defaults",
            "projects/local/topics/orders",
        ))
        .await
        .expect("create with defaults");
    assert_eq!(defaults.ack_deadline_seconds, 10, "0 is 10 s");
    assert_eq!(
        defaults.message_retention_duration,
        Some(seconds(7 * 24 * 3600))
    );
    assert_eq!(defaults.push_config, Some(PushConfig::default()));
    assert_eq!(defaults.dead_letter_policy, None);
    assert_eq!(defaults.retry_policy, None);

    let full = Subscription {
        ack_deadline_seconds: 45,
        retain_acked_messages: true,
        message_retention_duration: Some(seconds(3600)),
        enable_message_ordering: true,
        filter: "attributes.kind = \"text\"".to_owned(),
        dead_letter_policy: Some(DeadLetterPolicy {
            dead_letter_topic: "projects/local/topics/orders-dead-letter".to_owned(),
            max_delivery_attempts: 0,
        }),
        retry_policy: Some(RetryPolicy {
            minimum_backoff: Some(seconds(5)),
            maximum_backoff: None,
        }),
        push_config: Some(PushConfig {
            push_endpoint: "http://127.0.0.1:9/push".to_owned(),
            attributes: [("x-goog-version".to_owned(), "v1".to_owned())].into(),
            wrapper: Some(push_config::Wrapper::NoWrapper(push_config::NoWrapper {
                write_metadata: true,
            })),
            authentication_method: None,
        }),
        ..subscription(
            "projects/local/subscriptions/full",
            "projects/local/topics/orders",
        )
    };
    let created = clients
        .create_subscription(full.clone())
        .await
        .expect("create with every setting");
    assert_eq!(created.ack_deadline_seconds, 45);
    assert!(created.retain_acked_messages);
    assert_eq!(created.message_retention_duration, Some(seconds(3600)));
    assert!(created.enable_message_ordering);
    assert_eq!(created.filter, full.filter);
    assert_eq!(
        created.dead_letter_policy,
        Some(DeadLetterPolicy {
            dead_letter_topic: "projects/local/topics/orders-dead-letter".to_owned(),
            max_delivery_attempts: 5,
        }),
        "0 attempts is 5"
    );
    assert_eq!(
        created.retry_policy,
        Some(RetryPolicy {
            minimum_backoff: Some(seconds(5)),
            maximum_backoff: Some(seconds(600)),
        }),
        "unset maximum backoff is 600 s"
    );
    assert_eq!(created.push_config, full.push_config);
    let fetched = clients
        .get_subscription("projects/local/subscriptions/full")
        .await
        .expect("get");
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn subscription_requests_checked() {
    let server = TestServer::start(Some(CONFIG));
    let mut clients = Clients::connect(&server).await;
    let name = "projects/local/subscriptions/checked";
    let base = || subscription(name, "projects/local/topics/orders");
    let dead_letter = |attempts| {
        Some(DeadLetterPolicy {
            dead_letter_topic: "projects/local/topics/orders-dead-letter".to_owned(),
            max_delivery_attempts: attempts,
        })
    };
    let retry = |minimum: i64, maximum: i64| {
        Some(RetryPolicy {
            minimum_backoff: Some(seconds(minimum)),
            maximum_backoff: Some(seconds(maximum)),
        })
    };
    let cases: Vec<(&str, Subscription, Code, &str)> = vec![
        (
            "ack deadline below 10 s",
            Subscription {
                ack_deadline_seconds: 5,
                ..base()
            },
            Code::InvalidArgument,
            "ack_deadline_seconds out of bounds: you passed 5",
        ),
        (
            "ack deadline above 600 s",
            Subscription {
                ack_deadline_seconds: 601,
                ..base()
            },
            Code::InvalidArgument,
            "ack_deadline_seconds out of bounds: you passed 601",
        ),
        (
            "negative ack deadline",
            Subscription {
                ack_deadline_seconds: -1,
                ..base()
            },
            Code::InvalidArgument,
            "ack_deadline_seconds out of bounds",
        ),
        (
            "retention below 10 minutes",
            Subscription {
                message_retention_duration: Some(seconds(300)),
                ..base()
            },
            Code::InvalidArgument,
            "message_retention_duration out of bounds: you passed 300s",
        ),
        (
            "retention above 31 days",
            Subscription {
                message_retention_duration: Some(seconds(32 * 24 * 3600)),
                ..base()
            },
            Code::InvalidArgument,
            "message_retention_duration out of bounds",
        ),
        (
            "3 delivery attempts",
            Subscription {
                dead_letter_policy: dead_letter(3),
                ..base()
            },
            Code::OutOfRange,
            "The value for max_delivery_attempts is too small. You passed 3 in the request, \
             but the minimum value is 5.",
        ),
        (
            "101 delivery attempts",
            Subscription {
                dead_letter_policy: dead_letter(101),
                ..base()
            },
            Code::OutOfRange,
            "The value for max_delivery_attempts is too large. You passed 101 in the request, \
             but the maximum value is 100.",
        ),
        (
            "missing dead-letter topic",
            Subscription {
                dead_letter_policy: Some(DeadLetterPolicy {
                    dead_letter_topic: "projects/local/topics/missing".to_owned(),
                    max_delivery_attempts: 5,
                }),
                ..base()
            },
            Code::NotFound,
            "Dead letter topic not found",
        ),
        (
            "dead-letter topic is the subscription's topic",
            Subscription {
                dead_letter_policy: Some(DeadLetterPolicy {
                    dead_letter_topic: "projects/local/topics/orders".to_owned(),
                    max_delivery_attempts: 5,
                }),
                ..base()
            },
            Code::InvalidArgument,
            "dead_letter_policy.dead_letter_topic projects/local/topics/orders is the topic",
        ),
        (
            "minimum backoff above 600 s",
            Subscription {
                retry_policy: retry(700, 700),
                ..base()
            },
            Code::InvalidArgument,
            "The value for minimum_backoff is out of bounds. You passed 700s in the request, \
             but the value must be between 0s and 600s.",
        ),
        (
            "negative maximum backoff",
            Subscription {
                retry_policy: retry(0, -1),
                ..base()
            },
            Code::InvalidArgument,
            "The value for maximum_backoff is out of bounds. You passed -1s",
        ),
        (
            "minimum above maximum backoff",
            Subscription {
                retry_policy: retry(100, 50),
                ..base()
            },
            Code::InvalidArgument,
            "The value for maximum_backoff is too small. You passed 50s in the request, but \
             the minimum value is 100s.",
        ),
        (
            "filter that does not parse",
            Subscription {
                filter: "attributes.kind = ".to_owned(),
                ..base()
            },
            Code::InvalidArgument,
            "invalid filter at line 1, column 19",
        ),
        (
            "filter over 256 bytes",
            Subscription {
                filter: format!("attributes.kind = \"{}\"", "x".repeat(300)),
                ..base()
            },
            Code::InvalidArgument,
            "invalid filter",
        ),
        (
            "push endpoint that is not http",
            Subscription {
                push_config: Some(PushConfig {
                    push_endpoint: "ftp://127.0.0.1/push".to_owned(),
                    ..Default::default()
                }),
                ..base()
            },
            Code::InvalidArgument,
            "Unsupported push_endpoint",
        ),
        (
            "exactly-once delivery",
            Subscription {
                enable_exactly_once_delivery: true,
                ..base()
            },
            Code::InvalidArgument,
            "the enable_exactly_once_delivery field of a Subscription is not supported",
        ),
        (
            "invalid name",
            subscription(
                "projects/local/subscriptions/s1",
                "projects/local/topics/orders",
            ),
            Code::InvalidArgument,
            "Invalid [subscriptions] name: (name=projects/local/subscriptions/s1)",
        ),
        (
            "invalid topic name",
            subscription(name, "orders"),
            Code::InvalidArgument,
            "Invalid [topics] name: (name=orders)",
        ),
        (
            "missing topic",
            subscription(name, "projects/local/topics/missing"),
            Code::NotFound,
            "Subscription topic does not exist: projects/local/topics/missing",
        ),
        (
            "existing subscription",
            subscription(
                "projects/local/subscriptions/orders-all",
                "projects/local/topics/orders",
            ),
            Code::AlreadyExists,
            "Subscription already exists: projects/local/subscriptions/orders-all",
        ),
    ];
    for (case, request, code, prefix) in cases {
        let status = clients.create_subscription(request).await.expect_err(case);
        assert_eq!(status.code(), code, "{case}: {status:?}");
        assert!(
            status.message().starts_with(prefix),
            "{case}: message {:?} should start with {prefix:?}",
            status.message()
        );
    }
    assert_status(
        clients.get_subscription(name).await,
        Code::NotFound,
        "Subscription does not exist: projects/local/subscriptions/checked",
    );
}

#[tokio::test]
async fn subscription_updates() {
    let server = TestServer::start(Some(CONFIG));
    let mut clients = Clients::connect(&server).await;
    let name = "projects/local/subscriptions/orders-all";
    let current = clients.get_subscription(name).await.expect("configured");
    assert_eq!(current.ack_deadline_seconds, 30);

    let updated = clients
        .update_subscription(
            Subscription {
                ack_deadline_seconds: 60,
                dead_letter_policy: Some(DeadLetterPolicy {
                    dead_letter_topic: "projects/local/topics/orders-dead-letter".to_owned(),
                    max_delivery_attempts: 7,
                }),
                // Not in the mask, so it must stay as it is.
                retain_acked_messages: true,
                ..subscription(name, "")
            },
            &["ack_deadline_seconds", "dead_letter_policy"],
        )
        .await
        .expect("update");
    assert_eq!(updated.ack_deadline_seconds, 60);
    assert_eq!(
        updated
            .dead_letter_policy
            .as_ref()
            .map(|p| p.max_delivery_attempts),
        Some(7)
    );
    assert!(
        !updated.retain_acked_messages,
        "fields outside the mask stay"
    );
    assert_eq!(updated.topic, "projects/local/topics/orders");
    assert_eq!(
        clients.get_subscription(name).await.expect("get"),
        updated,
        "the update is stored"
    );

    let cleared = clients
        .update_subscription(subscription(name, ""), &["dead_letter_policy"])
        .await
        .expect("clear the dead-letter policy");
    assert_eq!(cleared.dead_letter_policy, None);

    let pushed = clients
        .update_subscription(
            Subscription {
                push_config: Some(PushConfig {
                    push_endpoint: "https://127.0.0.1:9/push".to_owned(),
                    ..Default::default()
                }),
                ..subscription(name, "")
            },
            &["push_config"],
        )
        .await
        .expect("set a push endpoint");
    assert_eq!(
        pushed.push_config.map(|p| p.push_endpoint).as_deref(),
        Some("https://127.0.0.1:9/push")
    );

    let cases: [(&[&str], Code, &str); 8] = [
        (
            &[],
            Code::InvalidArgument,
            "The update_mask in the UpdateSubscriptionRequest must be set",
        ),
        (
            &["colour"],
            Code::InvalidArgument,
            "Invalid update_mask provided in the UpdateSubscriptionRequest: colour is not a \
             known Subscription field",
        ),
        (
            &["topic"],
            Code::InvalidArgument,
            "Invalid update_mask provided in the UpdateSubscriptionRequest: the topic field in \
             the Subscription is not mutable.",
        ),
        (
            &["filter"],
            Code::InvalidArgument,
            "Invalid update_mask provided in the UpdateSubscriptionRequest: the filter field \
             in the Subscription is not mutable.",
        ),
        (
            &["enable_message_ordering"],
            Code::InvalidArgument,
            "Invalid update_mask provided in the UpdateSubscriptionRequest: the \
             enable_message_ordering field in the Subscription is not mutable.",
        ),
        (
            &["ackDeadlineSeconds"],
            Code::InvalidArgument,
            "Invalid update_mask provided in the UpdateSubscriptionRequest: \
             ackDeadlineSeconds is not a known Subscription field",
        ),
        (
            &["labels"],
            Code::InvalidArgument,
            "the labels field of a Subscription is not supported",
        ),
        (
            &["ack_deadline_seconds", "topic"],
            Code::InvalidArgument,
            "Invalid update_mask provided in the UpdateSubscriptionRequest: the topic field",
        ),
    ];
    for (paths, code, prefix) in cases {
        assert_status(
            clients
                .update_subscription(
                    Subscription {
                        ack_deadline_seconds: 20,
                        ..subscription(name, "projects/local/topics/orders-dead-letter")
                    },
                    paths,
                )
                .await,
            code,
            prefix,
        );
    }
    assert_eq!(
        clients
            .get_subscription(name)
            .await
            .expect("get")
            .ack_deadline_seconds,
        60,
        "a rejected update changes nothing"
    );
    assert_status(
        clients
            .update_subscription(
                Subscription {
                    ack_deadline_seconds: 700,
                    ..subscription(name, "")
                },
                &["ack_deadline_seconds"],
            )
            .await,
        Code::InvalidArgument,
        "ack_deadline_seconds out of bounds",
    );
    assert_status(
        clients
            .update_subscription(
                subscription("projects/local/subscriptions/missing", ""),
                &["ack_deadline_seconds"],
            )
            .await,
        Code::NotFound,
        "Subscription does not exist",
    );
}

#[tokio::test]
async fn push_config_modified() {
    let server = TestServer::start(Some(CONFIG));
    let mut clients = Clients::connect(&server).await;
    let name = "projects/local/subscriptions/orders-all";
    let push = PushConfig {
        push_endpoint: "http://127.0.0.1:9/events".to_owned(),
        attributes: [("x-goog-version".to_owned(), "v1".to_owned())].into(),
        wrapper: Some(push_config::Wrapper::PubsubWrapper(
            push_config::PubsubWrapper {},
        )),
        authentication_method: None,
    };
    clients
        .subscriber
        .modify_push_config(ModifyPushConfigRequest {
            subscription: name.to_owned(),
            push_config: Some(push.clone()),
        })
        .await
        .expect("set push config");
    let fetched = clients.get_subscription(name).await.expect("get");
    assert_eq!(
        fetched.push_config,
        Some(PushConfig {
            wrapper: None,
            ..push
        }),
        "the default wrapper is written as none"
    );

    clients
        .subscriber
        .modify_push_config(ModifyPushConfigRequest {
            subscription: name.to_owned(),
            push_config: Some(PushConfig::default()),
        })
        .await
        .expect("clear push config");
    let fetched = clients.get_subscription(name).await.expect("get");
    assert_eq!(
        fetched.push_config,
        Some(PushConfig::default()),
        "pull again"
    );

    assert_status(
        clients
            .subscriber
            .modify_push_config(ModifyPushConfigRequest {
                subscription: name.to_owned(),
                push_config: Some(PushConfig {
                    push_endpoint: "not a url".to_owned(),
                    ..Default::default()
                }),
            })
            .await,
        Code::InvalidArgument,
        "Unsupported push_endpoint",
    );
    assert_status(
        clients
            .subscriber
            .modify_push_config(ModifyPushConfigRequest {
                subscription: "projects/local/subscriptions/missing".to_owned(),
                push_config: None,
            })
            .await,
        Code::NotFound,
        "Subscription does not exist",
    );
}

#[tokio::test]
async fn subscription_deletion_and_detach() {
    let server = TestServer::start(Some(CONFIG));
    let mut clients = Clients::connect(&server).await;
    let name = "projects/local/subscriptions/short-lived";
    clients
        .create_subscription(subscription(name, "projects/local/topics/orders"))
        .await
        .expect("create");
    clients
        .publish("projects/local/topics/orders", b"backlog")
        .await;

    assert_status(
        clients
            .publisher
            .detach_subscription(DetachSubscriptionRequest {
                subscription: name.to_owned(),
            })
            .await,
        Code::Unimplemented,
        "DetachSubscription is not supported",
    );
    clients
        .subscriber
        .delete_subscription(DeleteSubscriptionRequest {
            subscription: name.to_owned(),
        })
        .await
        .expect("delete");
    assert_status(
        clients.get_subscription(name).await,
        Code::NotFound,
        "Subscription does not exist",
    );
    assert_status(
        clients
            .subscriber
            .delete_subscription(DeleteSubscriptionRequest {
                subscription: name.to_owned(),
            })
            .await,
        Code::NotFound,
        "Subscription does not exist: projects/local/subscriptions/short-lived",
    );

    let recreated = clients
        .create_subscription(subscription(name, "projects/local/topics/orders"))
        .await
        .expect("create again under the same name");
    assert_eq!(recreated.name, name);
    #[allow(deprecated, reason = "return_immediately keeps the pull short")]
    let empty = clients
        .subscriber
        .pull(PullRequest {
            subscription: name.to_owned(),
            return_immediately: true,
            max_messages: 10,
        })
        .await
        .expect("pull")
        .into_inner();
    assert!(
        empty.received_messages.is_empty(),
        "the old backlog went with the deleted subscription"
    );
}

#[tokio::test]
async fn topic_deletion_detaches_subscriptions() {
    let server = TestServer::start(Some(CONFIG));
    let mut clients = Clients::connect(&server).await;
    clients
        .create_topic(topic("projects/local/topics/doomed"))
        .await
        .expect("create topic");
    let name = "projects/local/subscriptions/orphan";
    clients
        .create_subscription(subscription(name, "projects/local/topics/doomed"))
        .await
        .expect("create subscription");
    clients
        .publisher
        .delete_topic(DeleteTopicRequest {
            topic: "projects/local/topics/doomed".to_owned(),
        })
        .await
        .expect("delete topic");

    let orphan = clients.get_subscription(name).await.expect("still there");
    assert_eq!(orphan.topic, "_deleted-topic_");
    assert_status(
        clients
            .update_subscription(
                Subscription {
                    ack_deadline_seconds: 20,
                    ..subscription(name, "")
                },
                &["ack_deadline_seconds"],
            )
            .await,
        Code::FailedPrecondition,
        "the topic of projects/local/subscriptions/orphan was deleted",
    );
    assert_status(
        clients
            .create_subscription(subscription(
                "projects/local/subscriptions/late",
                "projects/local/topics/doomed",
            ))
            .await,
        Code::NotFound,
        "Subscription topic does not exist",
    );
}

#[tokio::test]
async fn snapshots_and_seek() {
    let server = TestServer::start(Some(CONFIG));
    let mut clients = Clients::connect(&server).await;
    let subscription_name = "projects/local/subscriptions/orders-all";
    let snapshot_name = "projects/local/snapshots/before";
    clients
        .publish("projects/local/topics/orders", b"kept")
        .await;

    let create = |name: &str, subscription: &str| CreateSnapshotRequest {
        name: name.to_owned(),
        subscription: subscription.to_owned(),
        ..Default::default()
    };
    let snapshot = clients
        .subscriber
        .create_snapshot(create(snapshot_name, subscription_name))
        .await
        .expect("create snapshot")
        .into_inner();
    assert_eq!(snapshot.name, snapshot_name);
    assert_eq!(snapshot.topic, "projects/local/topics/orders");
    assert!(snapshot.expire_time.is_some(), "{snapshot:?}");
    assert_status(
        clients
            .subscriber
            .create_snapshot(create(snapshot_name, subscription_name))
            .await,
        Code::AlreadyExists,
        "Snapshot already exists: projects/local/snapshots/before",
    );
    assert_status(
        clients
            .subscriber
            .create_snapshot(create(
                "projects/local/snapshots/other",
                "projects/local/subscriptions/missing",
            ))
            .await,
        Code::NotFound,
        "Subscription does not exist",
    );
    assert_status(
        clients
            .subscriber
            .create_snapshot(create("projects/local/snapshots/n1", subscription_name))
            .await,
        Code::InvalidArgument,
        "Invalid [snapshots] name: (name=projects/local/snapshots/n1)",
    );

    let fetched = clients
        .subscriber
        .get_snapshot(GetSnapshotRequest {
            snapshot: snapshot_name.to_owned(),
        })
        .await
        .expect("get snapshot")
        .into_inner();
    assert_eq!(fetched, snapshot);
    let listed = clients
        .subscriber
        .list_snapshots(ListSnapshotsRequest {
            project: "projects/local".to_owned(),
            ..Default::default()
        })
        .await
        .expect("list snapshots")
        .into_inner();
    assert_eq!(listed.snapshots, std::slice::from_ref(&snapshot));
    let by_topic = clients
        .publisher
        .list_topic_snapshots(ListTopicSnapshotsRequest {
            topic: "projects/local/topics/orders".to_owned(),
            ..Default::default()
        })
        .await
        .expect("list topic snapshots")
        .into_inner();
    assert_eq!(by_topic.snapshots, [snapshot_name]);

    let received = clients.pull(subscription_name, 1).await;
    assert_eq!(received.len(), 1);
    clients.ack(subscription_name, &received).await;
    clients
        .subscriber
        .seek(SeekRequest {
            subscription: subscription_name.to_owned(),
            target: Some(seek_request::Target::Snapshot(snapshot_name.to_owned())),
        })
        .await
        .expect("seek to the snapshot");
    let again = clients.pull(subscription_name, 1).await;
    assert_eq!(again.len(), 1, "the acknowledged message is back");
    assert_eq!(again[0].message.as_ref().expect("a message").data, b"kept");
    clients.ack(subscription_name, &again).await;

    clients
        .subscriber
        .seek(SeekRequest {
            subscription: subscription_name.to_owned(),
            target: Some(seek_request::Target::Time(Timestamp {
                seconds: 32_503_680_000, // the year 3000
                nanos: 0,
            })),
        })
        .await
        .expect("seek to a time");

    let seek = |target| SeekRequest {
        subscription: subscription_name.to_owned(),
        target,
    };
    assert_status(
        clients.subscriber.seek(seek(None)).await,
        Code::InvalidArgument,
        "No target was specified in the SeekRequest",
    );
    assert_status(
        clients
            .subscriber
            .seek(seek(Some(seek_request::Target::Snapshot(
                "projects/local/snapshots/missing".to_owned(),
            ))))
            .await,
        Code::NotFound,
        "Snapshot does not exist: projects/local/snapshots/missing",
    );
    clients
        .create_subscription(subscription(
            "projects/local/subscriptions/dead-letters",
            "projects/local/topics/orders-dead-letter",
        ))
        .await
        .expect("a subscription of another topic");
    assert_status(
        clients
            .subscriber
            .seek(SeekRequest {
                subscription: "projects/local/subscriptions/dead-letters".to_owned(),
                target: Some(seek_request::Target::Snapshot(snapshot_name.to_owned())),
            })
            .await,
        Code::FailedPrecondition,
        "The subscription's topic projects/local/topics/orders-dead-letter is different from \
         that of the snapshot projects/local/topics/orders",
    );
    assert_status(
        clients
            .subscriber
            .update_snapshot(UpdateSnapshotRequest {
                snapshot: Some(Snapshot {
                    name: snapshot_name.to_owned(),
                    ..Default::default()
                }),
                update_mask: Some(mask(&["expire_time"])),
            })
            .await,
        Code::Unimplemented,
        "UpdateSnapshot is not supported",
    );

    clients
        .subscriber
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot: snapshot_name.to_owned(),
        })
        .await
        .expect("delete snapshot");
    assert_status(
        clients
            .subscriber
            .get_snapshot(GetSnapshotRequest {
                snapshot: snapshot_name.to_owned(),
            })
            .await,
        Code::NotFound,
        "Snapshot does not exist",
    );
    assert_status(
        clients
            .subscriber
            .delete_snapshot(DeleteSnapshotRequest {
                snapshot: snapshot_name.to_owned(),
            })
            .await,
        Code::NotFound,
        "Snapshot does not exist",
    );
}

#[tokio::test]
async fn created_resources_survive_restart() {
    let mut server = TestServer::start(Some(CONFIG));
    let data_dir = server.data_dir.clone();
    let config_path = data_dir
        .parent()
        .expect("the data dir has a parent")
        .join("restart.toml");
    std::fs::write(&config_path, CONFIG).expect("write config");
    {
        let mut clients = Clients::connect(&server).await;
        clients
            .create_topic(topic("projects/other/topics/durable"))
            .await
            .expect("create topic");
        clients
            .create_subscription(Subscription {
                ack_deadline_seconds: 40,
                ..subscription(
                    "projects/other/subscriptions/durable",
                    "projects/other/topics/durable",
                )
            })
            .await
            .expect("create subscription");
        clients
            .publish("projects/other/topics/durable", b"stored")
            .await;
    }
    let (status, log) = server.terminate();
    assert!(status.success(), "clean stop: {log}");

    let restarted = TestServer::start_in(&data_dir, Some(&config_path));
    let mut clients = Clients::connect(&restarted).await;
    let fetched = clients
        .get_subscription("projects/other/subscriptions/durable")
        .await
        .expect("the subscription survived");
    assert_eq!(fetched.ack_deadline_seconds, 40);
    assert_eq!(fetched.topic, "projects/other/topics/durable");
    let received = clients
        .pull("projects/other/subscriptions/durable", 1)
        .await;
    assert_eq!(received.len(), 1, "the backlog survived");
}
