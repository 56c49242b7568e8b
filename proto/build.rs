//! Generates the Rust code of sluice-proto into `OUT_DIR`:
//!
//! - `sluice.v1.rs`: messages, servers and clients of the sluice.v1 API, compiled from
//!   `proto/sluice/v1/*.proto` with the protoc that the protoc-bin-vendored crate ships, and
//!   `sluice_v1_descriptor.bin`, the encoded file descriptor set of those files;
//! - `google.pubsub.v1.Publisher.rs`, `google.pubsub.v1.Subscriber.rs` and
//!   `google.logging.v2.LoggingServiceV2.rs`: server traits for Google's services, declared
//!   method by method below over the message types of the googleapis-tonic crates, so no
//!   Google .proto file is needed.

use std::env;
use std::error::Error;
use std::path::PathBuf;

use tonic_prost_build::manual::{Builder, Method, Service};

const SLUICE_PROTOS: [&str; 2] = [
    "proto/sluice/v1/ingest.proto",
    "proto/sluice/v1/admin.proto",
];

/// File name of the sluice.v1 file descriptor set in `OUT_DIR`. `src/lib.rs` includes the file.
const DESCRIPTOR_SET_FILE: &str = "sluice_v1_descriptor.bin";

const PROST_CODEC: &str = "tonic_prost::ProstCodec";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=proto");

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    compile_sluice_v1(&out_dir)?;

    Builder::new()
        .build_client(false)
        .build_server(true)
        .out_dir(&out_dir)
        .compile(&[publisher(), subscriber(), logging_service_v2()]);
    Ok(())
}

/// Compiles the sluice.v1 .proto files into messages, servers and clients.
fn compile_sluice_v1(out_dir: &std::path::Path) -> Result<(), Box<dyn Error>> {
    let mut config = tonic_prost_build::Config::new();
    // The vendored protoc keeps the build independent of whatever protoc the machine has.
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(out_dir)
        .file_descriptor_set_path(out_dir.join(DESCRIPTOR_SET_FILE))
        .compile_with_config(config, &SLUICE_PROTOS, &["proto"])?;
    Ok(())
}

/// One RPC of a Google service, as the server trait declares it.
struct Rpc {
    /// Method name in the gRPC route, as in the service's .proto file.
    route_name: &'static str,
    /// Name of the trait method.
    rust_name: &'static str,
    /// Request message type, relative to the module that includes the generated file.
    input: &'static str,
    /// Response message type, relative to the same module.
    output: &'static str,
    /// Whether both directions stream (a bidirectional streaming RPC) or neither does.
    bidi_streaming: bool,
    /// Doc comment of the trait method.
    doc: &'static str,
}

const fn unary(
    route_name: &'static str,
    rust_name: &'static str,
    input: &'static str,
    output: &'static str,
    doc: &'static str,
) -> Rpc {
    Rpc {
        route_name,
        rust_name,
        input,
        output,
        bidi_streaming: false,
        doc,
    }
}

/// Builds a server-only service description. The generated routes are
/// `/{package}.{name}/{Rpc::route_name}`, the paths Google's clients call.
fn google_service(package: &str, name: &str, doc: &str, rpcs: &[Rpc]) -> Service {
    let mut service = Service::builder().package(package).name(name).comment(doc);
    for rpc in rpcs {
        let mut method = Method::builder()
            .name(rpc.rust_name)
            .route_name(rpc.route_name)
            .input_type(rpc.input)
            .output_type(rpc.output)
            .codec_path(PROST_CODEC)
            .comment(rpc.doc);
        if rpc.bidi_streaming {
            method = method.client_streaming().server_streaming();
        }
        service = service.method(method.build());
    }
    service.build()
}

// The message types are named relative to the module of `src/lib.rs` that includes the
// generated file, which re-exports the googleapis-tonic crate's types. `super::Empty` is the
// alias that module declares for google.protobuf.Empty, because the code generator accepts
// only paths and prost represents Empty as `()`.

fn publisher() -> Service {
    let rpcs = [
        unary(
            "CreateTopic",
            "create_topic",
            "super::Topic",
            "super::Topic",
            "Creates a topic.",
        ),
        unary(
            "UpdateTopic",
            "update_topic",
            "super::UpdateTopicRequest",
            "super::Topic",
            "Updates the topic fields that the request's update mask names.",
        ),
        unary(
            "Publish",
            "publish",
            "super::PublishRequest",
            "super::PublishResponse",
            "Adds messages to a topic and returns their message IDs in request order.",
        ),
        unary(
            "GetTopic",
            "get_topic",
            "super::GetTopicRequest",
            "super::Topic",
            "Returns the configuration of a topic.",
        ),
        unary(
            "ListTopics",
            "list_topics",
            "super::ListTopicsRequest",
            "super::ListTopicsResponse",
            "Lists the topics of a project, one page at a time.",
        ),
        unary(
            "ListTopicSubscriptions",
            "list_topic_subscriptions",
            "super::ListTopicSubscriptionsRequest",
            "super::ListTopicSubscriptionsResponse",
            "Lists the names of the subscriptions attached to a topic.",
        ),
        unary(
            "ListTopicSnapshots",
            "list_topic_snapshots",
            "super::ListTopicSnapshotsRequest",
            "super::ListTopicSnapshotsResponse",
            "Lists the names of the snapshots taken of a topic's subscriptions.",
        ),
        unary(
            "DeleteTopic",
            "delete_topic",
            "super::DeleteTopicRequest",
            "super::Empty",
            "Deletes a topic. Its subscriptions are not deleted.",
        ),
        unary(
            "DetachSubscription",
            "detach_subscription",
            "super::DetachSubscriptionRequest",
            "super::DetachSubscriptionResponse",
            "Detaches a subscription from its topic and drops the messages it retains.",
        ),
    ];
    google_service(
        "google.pubsub.v1",
        "Publisher",
        "Server for google.pubsub.v1.Publisher: topic management and publishing.",
        &rpcs,
    )
}

fn subscriber() -> Service {
    let rpcs = [
        unary(
            "CreateSubscription",
            "create_subscription",
            "super::Subscription",
            "super::Subscription",
            "Creates a subscription to a topic.",
        ),
        unary(
            "GetSubscription",
            "get_subscription",
            "super::GetSubscriptionRequest",
            "super::Subscription",
            "Returns the configuration of a subscription.",
        ),
        unary(
            "UpdateSubscription",
            "update_subscription",
            "super::UpdateSubscriptionRequest",
            "super::Subscription",
            "Updates the subscription fields that the request's update mask names.",
        ),
        unary(
            "ListSubscriptions",
            "list_subscriptions",
            "super::ListSubscriptionsRequest",
            "super::ListSubscriptionsResponse",
            "Lists the subscriptions of a project, one page at a time.",
        ),
        unary(
            "DeleteSubscription",
            "delete_subscription",
            "super::DeleteSubscriptionRequest",
            "super::Empty",
            "Deletes a subscription and drops its unacknowledged messages.",
        ),
        unary(
            "ModifyAckDeadline",
            "modify_ack_deadline",
            "super::ModifyAckDeadlineRequest",
            "super::Empty",
            "Sets a new acknowledgement deadline for leased messages. \
             Zero makes them available for redelivery at once.",
        ),
        unary(
            "Acknowledge",
            "acknowledge",
            "super::AcknowledgeRequest",
            "super::Empty",
            "Acknowledges leased messages so that they are not delivered again.",
        ),
        unary(
            "Pull",
            "pull",
            "super::PullRequest",
            "super::PullResponse",
            "Leases up to `max_messages` messages of a subscription to the caller.",
        ),
        Rpc {
            route_name: "StreamingPull",
            rust_name: "streaming_pull",
            input: "super::StreamingPullRequest",
            output: "super::StreamingPullResponse",
            bidi_streaming: true,
            doc: "Delivers messages over a bidirectional stream. \
                  The client sends acknowledgements and deadline changes on the same stream.",
        },
        unary(
            "ModifyPushConfig",
            "modify_push_config",
            "super::ModifyPushConfigRequest",
            "super::Empty",
            "Sets or clears the push endpoint of a subscription.",
        ),
        unary(
            "GetSnapshot",
            "get_snapshot",
            "super::GetSnapshotRequest",
            "super::Snapshot",
            "Returns the configuration of a snapshot.",
        ),
        unary(
            "ListSnapshots",
            "list_snapshots",
            "super::ListSnapshotsRequest",
            "super::ListSnapshotsResponse",
            "Lists the snapshots of a project, one page at a time.",
        ),
        unary(
            "CreateSnapshot",
            "create_snapshot",
            "super::CreateSnapshotRequest",
            "super::Snapshot",
            "Captures the acknowledgement state of a subscription in a snapshot.",
        ),
        unary(
            "UpdateSnapshot",
            "update_snapshot",
            "super::UpdateSnapshotRequest",
            "super::Snapshot",
            "Updates the snapshot fields that the request's update mask names.",
        ),
        unary(
            "DeleteSnapshot",
            "delete_snapshot",
            "super::DeleteSnapshotRequest",
            "super::Empty",
            "Deletes a snapshot.",
        ),
        unary(
            "Seek",
            "seek",
            "super::SeekRequest",
            "super::SeekResponse",
            "Resets the acknowledgement state of a subscription to a time or a snapshot.",
        ),
    ];
    google_service(
        "google.pubsub.v1",
        "Subscriber",
        "Server for google.pubsub.v1.Subscriber: subscriptions, delivery and snapshots.",
        &rpcs,
    )
}

fn logging_service_v2() -> Service {
    let rpcs = [unary(
        "WriteLogEntries",
        "write_log_entries",
        "super::WriteLogEntriesRequest",
        "super::WriteLogEntriesResponse",
        "Writes a batch of log entries.",
    )];
    google_service(
        "google.logging.v2",
        "LoggingServiceV2",
        "Server for google.logging.v2.LoggingServiceV2, limited to WriteLogEntries.",
        &rpcs,
    )
}
