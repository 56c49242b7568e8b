"""Google's google-cloud-logging client writes audit-log entries to sluice, over JSON (HTTP)
and over gRPC, and google-cloud-pubsub pulls what the log sink routed to its topic.

Usage: logging_client.py HOST:PORT

The Pub/Sub client finds sluice through PUBSUB_EMULATOR_HOST. The logging client has no
such variable: over HTTP it takes the endpoint from client_options; over gRPC its generated
client opens a TLS channel, so the script hands it an insecure channel to the local server.
Prints one JSON object on its last line: the pulled messages' data, parsed.
"""

import json
import sys
import time

import grpc
from google.api_core import client_options
from google.auth.credentials import AnonymousCredentials
from google.cloud import logging as cloud_logging
from google.cloud import pubsub_v1
from google.cloud.audit import audit_log_pb2
from google.cloud.logging_v2 import _gapic
from google.cloud.logging_v2.resource import Resource
from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client
from google.cloud.logging_v2.services.logging_service_v2.transports import (
    LoggingServiceV2GrpcTransport,
)
from google.protobuf import any_pb2

PROJECT = "local"
LOG_NAME = "cloudaudit.googleapis.com%2Factivity"
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/audit-deletes"
BUCKET = Resource(
    type="gcs_bucket",
    labels={"bucket_name": "photos", "location": "us-central1", "project_id": PROJECT},
)


def audit(method: str, resource_name: str) -> any_pb2.Any:
    """Returns an AuditLog packed in an Any, the payload type that log_proto expects."""
    entry = audit_log_pb2.AuditLog()
    entry.service_name = "storage.googleapis.com"
    entry.method_name = method
    entry.resource_name = resource_name
    entry.authentication_info.principal_email = "ops@example.com"
    packed = any_pb2.Any()
    packed.Pack(entry)
    return packed


def http_client(endpoint: str) -> cloud_logging.Client:
    return cloud_logging.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options=client_options.ClientOptions(api_endpoint=f"http://{endpoint}"),
        _use_grpc=False,
    )


def grpc_client(endpoint: str) -> cloud_logging.Client:
    client = cloud_logging.Client(
        project=PROJECT, credentials=AnonymousCredentials(), _use_grpc=True
    )
    transport = LoggingServiceV2GrpcTransport(channel=grpc.insecure_channel(endpoint))
    generated = LoggingServiceV2Client(transport=transport)
    # The wrapper the client builds itself, around the generated client made above.
    client._logging_api = _gapic._LoggingAPI(generated, client)
    return client


def pull_all(expected: int) -> list:
    subscriber = pubsub_v1.SubscriberClient()
    received = []
    deadline = time.monotonic() + 20
    while len(received) < expected and time.monotonic() < deadline:
        response = subscriber.pull(
            request={"subscription": SUBSCRIPTION, "max_messages": 10}, timeout=10
        )
        if response.received_messages:
            subscriber.acknowledge(
                request={
                    "subscription": SUBSCRIPTION,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                }
            )
        received.extend(json.loads(m.message.data) for m in response.received_messages)
    subscriber.close()
    return received


def main() -> None:
    endpoint = sys.argv[1]
    for transport, client in (("http", http_client(endpoint)), ("grpc", grpc_client(endpoint))):
        logger = client.logger(LOG_NAME)
        logger.log_proto(
            audit("storage.objects.delete", f"projects/_/buckets/photos/objects/{transport}.jpg"),
            resource=BUCKET,
            severity="NOTICE",
            labels={"transport": transport},
        )
        logger.log_proto(
            audit("storage.objects.create", f"projects/_/buckets/photos/objects/{transport}.jpg"),
            resource=BUCKET,
            severity="NOTICE",
            labels={"transport": transport},
        )
        # A batch, written in one request.
        batch = logger.batch()
        batch.log_proto(
            audit("storage.objects.delete", f"projects/_/buckets/photos/objects/{transport}-batch.jpg"),
            resource=BUCKET,
            labels={"transport": transport},
        )
        batch.log_text("not an audit entry", resource=BUCKET, labels={"transport": transport})
        batch.commit()
    print(json.dumps({"messages": pull_all(expected=4)}))


if __name__ == "__main__":
    main()
