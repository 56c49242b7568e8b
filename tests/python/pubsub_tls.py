"""Google's Python Pub/Sub client against sluice over TLS, with a bearer token.

The client trusts only the test CA named by SLUICE_TLS_CA: it builds a gRPC
channel from grpc.ssl_channel_credentials and a per-call access token, hands
the channel to the client's transport, creates a topic and a subscription,
publishes one message and pulls it back. It prints one JSON line and exits
non-zero at the first failed check, with the reason on stderr.

Usage: SLUICE_TLS_HOST=127.0.0.1:PORT SLUICE_TLS_CA=ca.pem SLUICE_TOKEN=TOKEN
       python pubsub_tls.py
"""

import json
import os
import sys

import grpc
from google.cloud import pubsub_v1
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

PROJECT = "local"


def check(condition, message):
    """Exits with `message` on stderr when `condition` is false."""
    if not condition:
        print(f"check failed: {message}", file=sys.stderr, flush=True)
        sys.exit(1)


def secure_channel(host, ca_file, token):
    """Returns a TLS channel that trusts only `ca_file` and sends `token` on each call."""
    with open(ca_file, "rb") as file:
        root = file.read()
    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(root_certificates=root),
        grpc.access_token_call_credentials(token),
    )
    # The test certificate names localhost; the channel connects to 127.0.0.1.
    options = [("grpc.ssl_target_name_override", "localhost")]
    return grpc.secure_channel(host, credentials, options=options)


def main():
    host = os.environ["SLUICE_TLS_HOST"]
    ca_file = os.environ["SLUICE_TLS_CA"]
    token = os.environ["SLUICE_TOKEN"]
    publisher = pubsub_v1.PublisherClient(
        transport=PublisherGrpcTransport(channel=secure_channel(host, ca_file, token))
    )
    subscriber = pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=secure_channel(host, ca_file, token))
    )
    topic = publisher.topic_path(PROJECT, "tls-topic")
    subscription = subscriber.subscription_path(PROJECT, "tls-sub")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    message_id = publisher.publish(topic, b"over tls", origin="python").result(timeout=30)
    response = subscriber.pull(subscription=subscription, max_messages=1, timeout=30)
    check(len(response.received_messages) == 1, f"pulled {response}")
    received = response.received_messages[0].message
    check(received.data == b"over tls", f"data {received.data!r}")
    check(received.attributes["origin"] == "python", f"attributes {received.attributes}")
    subscriber.acknowledge(
        subscription=subscription, ack_ids=[response.received_messages[0].ack_id]
    )
    print(json.dumps({"scenario": "tls", "message_id": message_id}), flush=True)


if __name__ == "__main__":
    main()
