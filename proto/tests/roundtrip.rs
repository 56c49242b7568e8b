//! Round trips through the generated servers and the clients that sluice-proto exports, over
//! a real HTTP/2 connection on 127.0.0.1. They check that every service is served at its gRPC
//! path and that requests and responses survive the codec.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;

use sluice_proto::google::logging::v2::logging_service_v2_client::LoggingServiceV2Client;
use sluice_proto::google::logging::v2::logging_service_v2_server::{
    LoggingServiceV2, LoggingServiceV2Server,
};
use sluice_proto::google::logging::v2::{
    LogEntry, WriteLogEntriesRequest, WriteLogEntriesResponse,
};
use sluice_proto::google::protobuf::{Empty, FileDescriptorSet};
use sluice_proto::google::pubsub::v1 as pubsub;
use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::publisher_server::{Publisher, PublisherServer};
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::subscriber_server::{Subscriber, SubscriberServer};
use sluice_proto::prost::Message;
use sluice_proto::sluice::v1 as api;
use sluice_proto::sluice::v1::admin_client::AdminClient;
use sluice_proto::sluice::v1::admin_server::{Admin, AdminServer};
use sluice_proto::sluice::v1::log_ingest_client::LogIngestClient;
use sluice_proto::sluice::v1::log_ingest_server::{LogIngest, LogIngestServer};
use sluice_proto::tonic::codegen::http::uri::PathAndQuery;
use sluice_proto::tonic::transport::{Channel, Server};
use sluice_proto::tonic::{self, Code, Request, Response, Status, Streaming};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

// ---------------------------------------------------------------------------------------------
// Test servers

struct TestAdmin;

#[tonic::async_trait]
impl Admin for TestAdmin {
    async fn list_topics(
        &self,
        _request: Request<api::ListTopicsRequest>,
    ) -> Result<Response<api::ListTopicsResponse>, Status> {
        let topic = api::TopicInfo {
            name: "audit-storage".to_owned(),
            retained_messages: 7,
            subscriptions: vec!["audit-storage-worker".to_owned()],
        };
        Ok(Response::new(api::ListTopicsResponse {
            topics: vec![topic],
        }))
    }

    async fn list_subscriptions(
        &self,
        _request: Request<api::ListSubscriptionsRequest>,
    ) -> Result<Response<api::ListSubscriptionsResponse>, Status> {
        Err(Status::unimplemented(
            "list_subscriptions is not part of this test",
        ))
    }
}

/// Counts the entries of each batch and rejects the entries that are not JSON objects.
struct TestLogIngest;

#[tonic::async_trait]
impl LogIngest for TestLogIngest {
    type StreamEntriesStream = ResponseStream<api::IngestAck>;

    async fn stream_entries(
        &self,
        request: Request<Streaming<api::IngestBatch>>,
    ) -> Result<Response<Self::StreamEntriesStream>, Status> {
        let acks = request.into_inner().map(|batch| batch.map(ack_batch));
        Ok(Response::new(Box::pin(acks)))
    }
}

fn ack_batch(batch: api::IngestBatch) -> api::IngestAck {
    let mut ack = api::IngestAck {
        sequence: batch.sequence,
        ..Default::default()
    };
    for (index, entry) in batch.entries.iter().enumerate() {
        if entry.starts_with('{') {
            ack.accepted += 1;
            *ack.sink_matches.entry("all".to_owned()).or_default() += 1;
        } else {
            ack.errors.push(api::EntryError {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                message: "entry is not a JSON object".to_owned(),
            });
        }
    }
    ack
}

/// Returns one ID per message from `publish` and UNIMPLEMENTED from every other RPC.
struct TestPublisher;

#[tonic::async_trait]
impl Publisher for TestPublisher {
    async fn create_topic(
        &self,
        _request: Request<pubsub::Topic>,
    ) -> Result<Response<pubsub::Topic>, Status> {
        Err(Status::unimplemented("create_topic"))
    }

    async fn update_topic(
        &self,
        _request: Request<pubsub::UpdateTopicRequest>,
    ) -> Result<Response<pubsub::Topic>, Status> {
        Err(Status::unimplemented("update_topic"))
    }

    async fn publish(
        &self,
        request: Request<pubsub::PublishRequest>,
    ) -> Result<Response<pubsub::PublishResponse>, Status> {
        let request = request.into_inner();
        if request.topic.is_empty() {
            return Err(Status::invalid_argument("topic is missing"));
        }
        let message_ids = (1..=request.messages.len())
            .map(|id| id.to_string())
            .collect();
        Ok(Response::new(pubsub::PublishResponse { message_ids }))
    }

    async fn get_topic(
        &self,
        _request: Request<pubsub::GetTopicRequest>,
    ) -> Result<Response<pubsub::Topic>, Status> {
        Err(Status::unimplemented("get_topic"))
    }

    async fn list_topics(
        &self,
        _request: Request<pubsub::ListTopicsRequest>,
    ) -> Result<Response<pubsub::ListTopicsResponse>, Status> {
        Err(Status::unimplemented("list_topics"))
    }

    async fn list_topic_subscriptions(
        &self,
        _request: Request<pubsub::ListTopicSubscriptionsRequest>,
    ) -> Result<Response<pubsub::ListTopicSubscriptionsResponse>, Status> {
        Err(Status::unimplemented("list_topic_subscriptions"))
    }

    async fn list_topic_snapshots(
        &self,
        _request: Request<pubsub::ListTopicSnapshotsRequest>,
    ) -> Result<Response<pubsub::ListTopicSnapshotsResponse>, Status> {
        Err(Status::unimplemented("list_topic_snapshots"))
    }

    async fn delete_topic(
        &self,
        _request: Request<pubsub::DeleteTopicRequest>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("delete_topic"))
    }

    async fn detach_subscription(
        &self,
        _request: Request<pubsub::DetachSubscriptionRequest>,
    ) -> Result<Response<pubsub::DetachSubscriptionResponse>, Status> {
        Err(Status::unimplemented("detach_subscription"))
    }
}

/// Returns Empty from `acknowledge`. `streaming_pull` sends one message for each request, with
/// the request's subscription name as data. Every other RPC returns UNIMPLEMENTED.
struct TestSubscriber;

#[tonic::async_trait]
impl Subscriber for TestSubscriber {
    type StreamingPullStream = ResponseStream<pubsub::StreamingPullResponse>;

    async fn create_subscription(
        &self,
        _request: Request<pubsub::Subscription>,
    ) -> Result<Response<pubsub::Subscription>, Status> {
        Err(Status::unimplemented("create_subscription"))
    }

    async fn get_subscription(
        &self,
        _request: Request<pubsub::GetSubscriptionRequest>,
    ) -> Result<Response<pubsub::Subscription>, Status> {
        Err(Status::unimplemented("get_subscription"))
    }

    async fn update_subscription(
        &self,
        _request: Request<pubsub::UpdateSubscriptionRequest>,
    ) -> Result<Response<pubsub::Subscription>, Status> {
        Err(Status::unimplemented("update_subscription"))
    }

    async fn list_subscriptions(
        &self,
        _request: Request<pubsub::ListSubscriptionsRequest>,
    ) -> Result<Response<pubsub::ListSubscriptionsResponse>, Status> {
        Err(Status::unimplemented("list_subscriptions"))
    }

    async fn delete_subscription(
        &self,
        _request: Request<pubsub::DeleteSubscriptionRequest>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("delete_subscription"))
    }

    async fn modify_ack_deadline(
        &self,
        _request: Request<pubsub::ModifyAckDeadlineRequest>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("modify_ack_deadline"))
    }

    async fn acknowledge(
        &self,
        request: Request<pubsub::AcknowledgeRequest>,
    ) -> Result<Response<Empty>, Status> {
        if request.get_ref().ack_ids.is_empty() {
            return Err(Status::invalid_argument("ack_ids is empty"));
        }
        Ok(Response::new(()))
    }

    async fn pull(
        &self,
        _request: Request<pubsub::PullRequest>,
    ) -> Result<Response<pubsub::PullResponse>, Status> {
        Err(Status::unimplemented("pull"))
    }

    async fn streaming_pull(
        &self,
        request: Request<Streaming<pubsub::StreamingPullRequest>>,
    ) -> Result<Response<Self::StreamingPullStream>, Status> {
        let responses = request.into_inner().map(|pull| {
            let pull = pull?;
            let message = pubsub::PubsubMessage {
                data: pull.subscription.into_bytes(),
                message_id: "1".to_owned(),
                ..Default::default()
            };
            let received = pubsub::ReceivedMessage {
                ack_id: "ack-1".to_owned(),
                message: Some(message),
                delivery_attempt: 1,
            };
            Ok(pubsub::StreamingPullResponse {
                received_messages: vec![received],
                ..Default::default()
            })
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn modify_push_config(
        &self,
        _request: Request<pubsub::ModifyPushConfigRequest>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("modify_push_config"))
    }

    async fn get_snapshot(
        &self,
        _request: Request<pubsub::GetSnapshotRequest>,
    ) -> Result<Response<pubsub::Snapshot>, Status> {
        Err(Status::unimplemented("get_snapshot"))
    }

    async fn list_snapshots(
        &self,
        _request: Request<pubsub::ListSnapshotsRequest>,
    ) -> Result<Response<pubsub::ListSnapshotsResponse>, Status> {
        Err(Status::unimplemented("list_snapshots"))
    }

    async fn create_snapshot(
        &self,
        _request: Request<pubsub::CreateSnapshotRequest>,
    ) -> Result<Response<pubsub::Snapshot>, Status> {
        Err(Status::unimplemented("create_snapshot"))
    }

    async fn update_snapshot(
        &self,
        _request: Request<pubsub::UpdateSnapshotRequest>,
    ) -> Result<Response<pubsub::Snapshot>, Status> {
        Err(Status::unimplemented("update_snapshot"))
    }

    async fn delete_snapshot(
        &self,
        _request: Request<pubsub::DeleteSnapshotRequest>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("delete_snapshot"))
    }

    async fn seek(
        &self,
        _request: Request<pubsub::SeekRequest>,
    ) -> Result<Response<pubsub::SeekResponse>, Status> {
        Err(Status::unimplemented("seek"))
    }
}

/// Rejects a write without entries and accepts any other.
struct TestLogging;

#[tonic::async_trait]
impl LoggingServiceV2 for TestLogging {
    async fn write_log_entries(
        &self,
        request: Request<WriteLogEntriesRequest>,
    ) -> Result<Response<WriteLogEntriesResponse>, Status> {
        if request.get_ref().entries.is_empty() {
            return Err(Status::invalid_argument("entries is empty"));
        }
        Ok(Response::new(WriteLogEntriesResponse {}))
    }
}

/// A server on an ephemeral 127.0.0.1 port that stops when dropped.
struct TestServer {
    channel: Channel,
    _shutdown: oneshot::Sender<()>,
}

impl TestServer {
    async fn start() -> Result<Self, BoxError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let router = Server::builder()
            .add_service(AdminServer::new(TestAdmin))
            .add_service(LogIngestServer::new(TestLogIngest))
            .add_service(PublisherServer::new(TestPublisher))
            .add_service(SubscriberServer::new(TestSubscriber))
            .add_service(LoggingServiceV2Server::new(TestLogging));
        tokio::spawn(async move {
            let incoming = TcpListenerStream::new(listener);
            let stop = async {
                // The receiver fails only when the sender is dropped, which also stops the server.
                let _ = stopped.await;
            };
            if let Err(err) = router.serve_with_incoming_shutdown(incoming, stop).await {
                panic!("test server on {addr} failed: {err}");
            }
        });
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        Ok(Self {
            channel,
            _shutdown: shutdown,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// sluice.v1

#[tokio::test]
async fn admin_list_topics_round_trip() -> Result<(), BoxError> {
    let server = TestServer::start().await?;
    let mut client = AdminClient::new(server.channel.clone());

    let topics = client
        .list_topics(api::ListTopicsRequest {})
        .await?
        .into_inner()
        .topics;

    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].name, "audit-storage");
    assert_eq!(topics[0].retained_messages, 7);
    assert_eq!(topics[0].subscriptions, ["audit-storage-worker"]);
    Ok(())
}

#[tokio::test]
async fn admin_unimplemented_status_reaches_client() -> Result<(), BoxError> {
    let server = TestServer::start().await?;
    let mut client = AdminClient::new(server.channel.clone());

    let request = api::ListSubscriptionsRequest {
        topic: String::new(),
    };
    let status = match client.list_subscriptions(request).await {
        Ok(response) => panic!("expected UNIMPLEMENTED, got {response:?}"),
        Err(status) => status,
    };

    assert_eq!(status.code(), Code::Unimplemented);
    assert_eq!(
        status.message(),
        "list_subscriptions is not part of this test"
    );
    Ok(())
}

#[tokio::test]
async fn log_ingest_acks_each_batch() -> Result<(), BoxError> {
    let server = TestServer::start().await?;
    let mut client = LogIngestClient::new(server.channel.clone());
    let batches = vec![
        api::IngestBatch {
            sequence: 10,
            entries: vec![
                r#"{"logName":"projects/p/logs/a"}"#.to_owned(),
                "not json".to_owned(),
            ],
        },
        api::IngestBatch {
            sequence: 11,
            entries: vec!["{}".to_owned(); 3],
        },
    ];

    let mut acks = client
        .stream_entries(tokio_stream::iter(batches))
        .await?
        .into_inner();
    let first = acks
        .message()
        .await?
        .ok_or("stream ended before the first ack")?;
    let second = acks
        .message()
        .await?
        .ok_or("stream ended before the second ack")?;
    let end = acks.message().await?;

    assert_eq!(first.sequence, 10);
    assert_eq!(first.accepted, 1);
    assert_eq!(first.errors.len(), 1);
    assert_eq!(first.errors[0].index, 1);
    assert_eq!(first.errors[0].message, "entry is not a JSON object");
    assert_eq!(first.sink_matches, HashMap::from([("all".to_owned(), 1)]));
    assert_eq!(second.sequence, 11);
    assert_eq!(second.accepted, 3);
    assert!(second.errors.is_empty());
    assert_eq!(second.sink_matches, HashMap::from([("all".to_owned(), 3)]));
    assert!(
        end.is_none(),
        "expected one ack per batch, got an extra {end:?}"
    );
    Ok(())
}

#[test]
fn descriptor_set_lists_sluice_services() -> Result<(), BoxError> {
    let descriptors = FileDescriptorSet::decode(api::FILE_DESCRIPTOR_SET)?;

    let mut services: Vec<String> = descriptors
        .file
        .iter()
        .filter(|file| file.package() == "sluice.v1")
        .flat_map(|file| file.service.iter().map(|service| service.name().to_owned()))
        .collect();
    services.sort();

    assert_eq!(services, ["Admin", "LogIngest"]);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// google.pubsub.v1 and google.logging.v2

fn publish_request(topic: &str, payloads: &[&str]) -> pubsub::PublishRequest {
    let messages = payloads
        .iter()
        .map(|payload| pubsub::PubsubMessage {
            data: payload.as_bytes().to_vec(),
            attributes: HashMap::from([("source".to_owned(), "test".to_owned())]),
            ..Default::default()
        })
        .collect();
    pubsub::PublishRequest {
        topic: topic.to_owned(),
        messages,
    }
}

#[tokio::test]
async fn publisher_publish_returns_ids() -> Result<(), BoxError> {
    let server = TestServer::start().await?;
    let mut client = PublisherClient::new(server.channel.clone());

    let request = publish_request("projects/p/topics/t", &["a", "b", "c"]);
    let response = client.publish(request).await?.into_inner();

    assert_eq!(response.message_ids, ["1", "2", "3"]);
    Ok(())
}

#[tokio::test]
async fn publisher_publish_status_reaches_client() -> Result<(), BoxError> {
    let server = TestServer::start().await?;
    let mut client = PublisherClient::new(server.channel.clone());

    let status = match client.publish(publish_request("", &["a"])).await {
        Ok(response) => panic!("expected INVALID_ARGUMENT, got {response:?}"),
        Err(status) => status,
    };

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "topic is missing");
    Ok(())
}

#[tokio::test]
async fn publisher_other_methods_unimplemented() -> Result<(), BoxError> {
    let server = TestServer::start().await?;
    let mut client = PublisherClient::new(server.channel.clone());

    let topic = "projects/p/topics/t".to_owned();
    let get = client
        .get_topic(pubsub::GetTopicRequest {
            topic: topic.clone(),
        })
        .await;
    let delete = client
        .delete_topic(pubsub::DeleteTopicRequest { topic })
        .await;
    let get_status = get.err().ok_or("get_topic succeeded")?;
    let delete_status = delete.err().ok_or("delete_topic succeeded")?;

    assert_eq!(get_status.code(), Code::Unimplemented);
    assert_eq!(get_status.message(), "get_topic");
    assert_eq!(delete_status.code(), Code::Unimplemented);
    assert_eq!(delete_status.message(), "delete_topic");
    Ok(())
}

/// Calls a unary RPC by its literal path, so that the check does not depend on the path that
/// a generated client uses.
async fn call_by_path<Req, Resp>(
    channel: Channel,
    path: &'static str,
    request: Req,
) -> Result<Resp, Status>
where
    Req: Message + Send + Sync + 'static,
    Resp: Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|err| Status::unavailable(format!("channel not ready: {err}")))?;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    let response = grpc
        .unary(
            Request::new(request),
            PathAndQuery::from_static(path),
            codec,
        )
        .await?;
    Ok(response.into_inner())
}

#[tokio::test]
async fn publisher_serves_google_publish_path() -> Result<(), BoxError> {
    let server = TestServer::start().await?;
    let request = publish_request("projects/p/topics/t", &["a", "b"]);

    let response: pubsub::PublishResponse = call_by_path(
        server.channel.clone(),
        "/google.pubsub.v1.Publisher/Publish",
        request,
    )
    .await?;

    assert_eq!(response.message_ids, ["1", "2"]);
    Ok(())
}

#[tokio::test]
async fn unknown_google_path_is_unimplemented() -> Result<(), BoxError> {
    let server = TestServer::start().await?;
    let request = publish_request("projects/p/topics/t", &["a"]);

    let result: Result<pubsub::PublishResponse, Status> = call_by_path(
        server.channel.clone(),
        "/google.pubsub.v1.Publisher/PublishMore",
        request,
    )
    .await;
    let status = result
        .err()
        .ok_or("a path that no server declares returned a response")?;

    assert_eq!(status.code(), Code::Unimplemented);
    Ok(())
}

#[tokio::test]
async fn subscriber_acknowledge_returns_empty() -> Result<(), BoxError> {
    let server = TestServer::start().await?;
    let mut client = SubscriberClient::new(server.channel.clone());

    let subscription = "projects/p/subscriptions/s".to_owned();
    let request = pubsub::AcknowledgeRequest {
        subscription: subscription.clone(),
        ack_ids: vec!["ack-1".to_owned()],
    };
    // The annotation checks that the client's `()` for google.protobuf.Empty is the type
    // that the server trait returns.
    let acknowledged: Result<Response<Empty>, Status> = client.acknowledge(request).await;
    let invalid = client
        .acknowledge(pubsub::AcknowledgeRequest {
            subscription,
            ack_ids: Vec::new(),
        })
        .await;

    assert!(acknowledged.is_ok(), "acknowledge failed: {acknowledged:?}");
    let status = invalid
        .err()
        .ok_or("acknowledge without ack_ids succeeded")?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "ack_ids is empty");
    Ok(())
}

#[tokio::test]
async fn subscriber_streaming_pull_round_trip() -> Result<(), BoxError> {
    let server = TestServer::start().await?;
    let mut client = SubscriberClient::new(server.channel.clone());
    let requests = ["projects/p/subscriptions/a", "projects/p/subscriptions/b"].map(|name| {
        pubsub::StreamingPullRequest {
            subscription: name.to_owned(),
            stream_ack_deadline_seconds: 10,
            ..Default::default()
        }
    });

    let mut responses = client
        .streaming_pull(tokio_stream::iter(requests))
        .await?
        .into_inner();
    let mut delivered = Vec::new();
    while let Some(response) = responses.message().await? {
        for received in response.received_messages {
            let message = received
                .message
                .ok_or("received message without a message")?;
            delivered.push(String::from_utf8(message.data)?);
        }
    }

    assert_eq!(
        delivered,
        ["projects/p/subscriptions/a", "projects/p/subscriptions/b"]
    );
    Ok(())
}

#[tokio::test]
async fn logging_write_log_entries_round_trip() -> Result<(), BoxError> {
    let server = TestServer::start().await?;
    let mut client = LoggingServiceV2Client::new(server.channel.clone());

    let entry = LogEntry {
        log_name: "projects/p/logs/cloudaudit.googleapis.com%2Factivity".to_owned(),
        insert_id: "abc".to_owned(),
        ..Default::default()
    };
    let request = WriteLogEntriesRequest {
        entries: vec![entry],
        ..Default::default()
    };
    let written = client.write_log_entries(request).await;
    let empty = client
        .write_log_entries(WriteLogEntriesRequest::default())
        .await;

    assert!(written.is_ok(), "write with one entry failed: {written:?}");
    let status = empty.err().ok_or("write without entries succeeded")?;
    assert_eq!(status.code(), Code::InvalidArgument);
    Ok(())
}
