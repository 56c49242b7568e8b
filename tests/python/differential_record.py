"""Record what a Pub/Sub server returns, for the differential tests in tests/differential.rs.

The scenario scripts run once against Google's Pub/Sub emulator and once against sluice,
both reached through PUBSUB_EMULATOR_HOST. Each call becomes one step: its name, the
request as sent and the result, either the response as proto3 JSON (`{"ok": ...}`) or the
gRPC status (`{"error": "NOT_FOUND", "message": ...}`). The Rust test compares the two
recordings step by step.
"""

import base64
import json
import time

import proto
from google.api_core import exceptions
from google.cloud import pubsub_v1
from google.pubsub_v1 import PublisherClient as GapicPublisherClient
from google.protobuf import json_format
from google.protobuf.message import Message

# Every resource lives in sluice's only project; the emulator accepts any project.
PROJECT = "projects/local"
# Maximum wait for a message that should arrive, far above what either server needs.
ARRIVAL_SECS = 20.0
# Pause between two pulls that poll for messages.
POLL_SECS = 0.1


def topic_path(name):
    return f"{PROJECT}/topics/{name}"


def subscription_path(name):
    return f"{PROJECT}/subscriptions/{name}"


def snapshot_path(name):
    return f"{PROJECT}/snapshots/{name}"


def to_json(value):
    """Convert a response, a request or a plain value into JSON-compatible data.

    Messages become proto3 JSON with the proto field names; bytes become base64, as proto3
    JSON writes them.
    """
    if isinstance(value, proto.Message):
        value = type(value).pb(value)
    if isinstance(value, Message):
        return json_format.MessageToDict(value, preserving_proto_field_name=True)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


class Recorder:
    """The steps of one scenario run, in the order they ran."""

    def __init__(self):
        self.steps = []
        self.names = set()

    def call(self, name, request, function):
        """Run `function(request)`, record the request and its result and return the response.

        Returns None when the call failed with a gRPC status, which is recorded instead.
        """
        try:
            response = function(request)
        except exceptions.GoogleAPICallError as error:
            self.record(name, request, error_result(error))
            return None
        self.record(name, request, {"ok": to_json(response)})
        return response

    def record(self, name, request, result):
        """Record an observation that is not a single call, such as a redelivery count."""
        if name in self.names:
            raise ValueError(f"step {name!r} is recorded twice")
        self.names.add(name)
        self.steps.append({"name": name, "request": to_json(request), "result": result})

    def section(self, name, function, *args):
        """Run one part of a scenario. An unexpected failure is recorded as the step
        `NAME.aborted`, and the next part still runs."""
        try:
            function(self, *args)
        except exceptions.GoogleAPICallError as error:
            self.record(f"{name}.aborted", {}, error_result(error))
        except Exception as error:  # noqa: BLE001 - recorded for the comparison
            result = {"error": type(error).__name__, "message": str(error)}
            self.record(f"{name}.aborted", {}, result)

    def dump(self):
        """Print the recording as one JSON line, the last line of the output."""
        print(json.dumps({"steps": self.steps}, sort_keys=True), flush=True)


def error_result(error):
    code = error.grpc_status_code
    return {"error": code.name if code is not None else str(error.code), "message": error.message}


class Clients:
    """Google's Python clients and the calls the scenarios share."""

    def __init__(self):
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()

    def publish(self, request):
        """Call Publish directly, without the client's batching, so that every request and
        every error reaches the caller as sent."""
        return GapicPublisherClient.publish(self.publisher, request=request)

    def pull_now(self, subscription, max_messages=100):
        """Pull with return_immediately, which both servers honour, so that a pull from an
        empty subscription returns at once instead of waiting for a message."""
        return self.subscriber.pull(
            request={
                "subscription": subscription,
                "max_messages": max_messages,
                "return_immediately": True,
            }
        )

    def pull_until(self, subscription, count, ack=False, timeout=ARRIVAL_SECS):
        """Pull until `count` messages arrived or `timeout` seconds passed, and return them
        in order.

        With `ack`, each batch is acknowledged before the next pull, which an ordered
        subscription needs before it hands out the next message of a key.
        """
        received = []
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            batch = list(self.pull_now(subscription).received_messages)
            received.extend(batch)
            if ack and batch:
                self.subscriber.acknowledge(
                    subscription=subscription, ack_ids=[m.ack_id for m in batch]
                )
            if not batch:
                time.sleep(POLL_SECS)
        return received

    def ack(self, subscription, messages):
        if messages:
            self.subscriber.acknowledge(
                subscription=subscription, ack_ids=[m.ack_id for m in messages]
            )


def message_view(received):
    """The observable fields of a ReceivedMessage, as proto3 JSON."""
    return to_json(received)


def by_data(views):
    """Sort message views by their data, so that delivery order inside a batch does not count
    where it is not specified."""
    return sorted(views, key=lambda view: view.get("message", {}).get("data", ""))
