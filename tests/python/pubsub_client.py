"""Google's Python Pub/Sub client against sluice, through PUBSUB_EMULATOR_HOST.

Each scenario creates its own topics and subscriptions with the admin API, then
publishes and receives with the client's high-level Publisher and Subscriber
(streaming pull with unary acks). The script prints one JSON object per
scenario and a final summary line, and exits non-zero at the first failed
check, with the reason on stderr.

Usage: PUBSUB_EMULATOR_HOST=127.0.0.1:PORT python pubsub_client.py
"""

import json
import sys
import threading
import time
from collections import defaultdict

from google.api_core import exceptions
from google.cloud import pubsub_v1
from google.pubsub_v1.types import DeadLetterPolicy, RetryPolicy
from google.protobuf import duration_pb2

PROJECT = "local"
# How long a scenario waits for the messages it expects.
ARRIVAL_SECS = 60


def check(condition, message):
    """Exits with `message` on stderr when `condition` is false."""
    if not condition:
        print(f"check failed: {message}", file=sys.stderr, flush=True)
        sys.exit(1)


def report(scenario, **fields):
    print(json.dumps({"scenario": scenario, **fields}), flush=True)


class Receiver:
    """Runs a streaming-pull subscriber whose callback decides per message."""

    def __init__(self, subscriber, subscription, decide):
        self.lock = threading.Lock()
        self.deliveries = []
        self.done = threading.Event()
        self._decide = decide
        self._future = subscriber.subscribe(subscription, callback=self._callback)

    def _callback(self, message):
        with self.lock:
            self.deliveries.append(message)
            action = self._decide(message, self)
        if action == "ack":
            message.ack()
        else:
            message.nack()

    def wait(self, description):
        check(self.done.wait(ARRIVAL_SECS), f"timed out waiting for {description}")
        # The client sends acks in batches about every 100 ms; let the last one go out.
        time.sleep(1)

    def stop(self):
        self._future.cancel()
        try:
            self._future.result(timeout=10)
        except Exception:  # noqa: BLE001 - cancel makes result() raise; nothing to report
            pass


def create_pair(publisher, subscriber, name, **subscription_fields):
    topic = publisher.topic_path(PROJECT, name)
    subscription = subscriber.subscription_path(PROJECT, name)
    publisher.create_topic(name=topic)
    subscriber.create_subscription(
        request={"name": subscription, "topic": topic, **subscription_fields}
    )
    return topic, subscription


def admin_round_trip(publisher, subscriber):
    topic, subscription = create_pair(
        publisher, subscriber, "py-admin", ack_deadline_seconds=30
    )

    try:
        publisher.create_topic(name=topic)
        check(False, "creating an existing topic should fail")
    except exceptions.AlreadyExists as err:
        check("Topic already exists" in err.message, f"message: {err.message}")
    try:
        subscriber.get_subscription(
            subscription=subscriber.subscription_path(PROJECT, "py-missing")
        )
        check(False, "getting a missing subscription should fail")
    except exceptions.NotFound as err:
        check("Subscription does not exist" in err.message, f"message: {err.message}")

    fetched = subscriber.get_subscription(subscription=subscription)
    check(fetched.ack_deadline_seconds == 30, f"ack deadline {fetched.ack_deadline_seconds}")
    updated = subscriber.update_subscription(
        request={
            "subscription": {"name": subscription, "ack_deadline_seconds": 45},
            "update_mask": {"paths": ["ack_deadline_seconds"]},
        }
    )
    check(updated.ack_deadline_seconds == 45, f"updated to {updated.ack_deadline_seconds}")

    listing = publisher.list_topics(request={"project": f"projects/{PROJECT}", "page_size": 1})
    topics = [t.name for t in listing]
    check(topic in topics, f"{topic} listed across pages: {topics}")
    subscriptions = list(publisher.list_topic_subscriptions(request={"topic": topic}))
    check(subscriptions == [subscription], f"topic subscriptions: {subscriptions}")

    subscriber.delete_subscription(subscription=subscription)
    publisher.delete_topic(topic=topic)
    report("admin", topics_listed=len(topics))


def batched_publish_and_ack(subscriber):
    publisher = pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(
            max_messages=10, max_bytes=1024 * 1024, max_latency=0.05
        )
    )
    count = 50
    topic, subscription = create_pair(publisher, subscriber, "py-batched")
    futures = [publisher.publish(topic, f"message {i}".encode(), index=str(i)) for i in range(count)]
    ids = [future.result(timeout=30) for future in futures]
    check(len(set(ids)) == count, f"message ids are unique: {ids}")

    def decide(message, receiver):
        indexes = {m.attributes["index"] for m in receiver.deliveries}
        if len(indexes) == count:
            receiver.done.set()
        return "ack"

    receiver = Receiver(subscriber, subscription, decide)
    receiver.wait(f"{count} messages")
    receiver.stop()
    received = {m.attributes["index"] for m in receiver.deliveries}
    check(received == {str(i) for i in range(count)}, f"received {sorted(received)}")
    report("batched", published=count, received=len(received), deliveries=len(receiver.deliveries))


def nack_and_redelivery(publisher, subscriber):
    topic, subscription = create_pair(publisher, subscriber, "py-nack")
    publisher.publish(topic, b"retry me").result(timeout=30)

    def decide(message, receiver):
        if len(receiver.deliveries) == 1:
            return "nack"
        receiver.done.set()
        return "ack"

    receiver = Receiver(subscriber, subscription, decide)
    receiver.wait("the redelivery after a nack")
    receiver.stop()
    first, second = receiver.deliveries[0], receiver.deliveries[1]
    check(first.message_id == second.message_id, "the nacked message came back")
    check(second.data == b"retry me", f"data {second.data!r}")
    report("nack", deliveries=len(receiver.deliveries))


def dead_letter(publisher, subscriber):
    dead_topic, dead_subscription = create_pair(publisher, subscriber, "py-dead-letters")
    topic, subscription = create_pair(
        publisher,
        subscriber,
        "py-failing",
        dead_letter_policy=DeadLetterPolicy(dead_letter_topic=dead_topic, max_delivery_attempts=5),
        retry_policy=RetryPolicy(
            minimum_backoff=duration_pb2.Duration(seconds=0),
            maximum_backoff=duration_pb2.Duration(seconds=0),
        ),
    )
    policy = subscriber.get_subscription(subscription=subscription).dead_letter_policy
    check(policy.max_delivery_attempts == 5, f"policy {policy}")
    publisher.publish(topic, b"poison", reason="test").result(timeout=30)

    def always_nack(message, receiver):
        return "nack"

    failing = Receiver(subscriber, subscription, always_nack)

    def take(message, receiver):
        receiver.done.set()
        return "ack"

    dead = Receiver(subscriber, dead_subscription, take)
    dead.wait("the dead-lettered message")
    failing.stop()
    dead.stop()
    attempts = [m.delivery_attempt for m in failing.deliveries]
    check(attempts[:5] == [1, 2, 3, 4, 5], f"delivery attempts {attempts}")
    arrived = dead.deliveries[0]
    check(arrived.data == b"poison", f"dead-lettered data {arrived.data!r}")
    check(arrived.attributes.get("reason") == "test", f"attributes {dict(arrived.attributes)}")
    report("dead_letter", attempts=attempts)


def ordering_keys(subscriber):
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    per_key = 20
    keys = ["alpha", "beta"]
    topic, subscription = create_pair(
        publisher, subscriber, "py-ordered", enable_message_ordering=True
    )
    check(
        subscriber.get_subscription(subscription=subscription).enable_message_ordering,
        "ordering enabled on the subscription",
    )
    futures = []
    for i in range(per_key):
        for key in keys:
            futures.append(publisher.publish(topic, f"{key} {i}".encode(), ordering_key=key, seq=str(i)))
    for future in futures:
        future.result(timeout=30)

    def decide(message, receiver):
        if len(receiver.deliveries) >= per_key * len(keys):
            receiver.done.set()
        return "ack"

    receiver = Receiver(subscriber, subscription, decide)
    receiver.wait(f"{per_key * len(keys)} ordered messages")
    receiver.stop()
    sequences = defaultdict(list)
    for message in receiver.deliveries:
        sequences[message.ordering_key].append(int(message.attributes["seq"]))
    for key in keys:
        check(sequences[key] == list(range(per_key)), f"order of {key}: {sequences[key]}")
    report("ordering", keys=len(keys), per_key=per_key)


def subscription_filter(publisher, subscriber):
    topic, subscription = create_pair(
        publisher, subscriber, "py-filtered", filter='attributes.kind = "keep"'
    )
    check(
        subscriber.get_subscription(subscription=subscription).filter == 'attributes.kind = "keep"',
        "filter stored",
    )
    try:
        subscriber.create_subscription(
            request={
                "name": subscriber.subscription_path(PROJECT, "py-bad-filter"),
                "topic": topic,
                "filter": "attributes.kind = ",
            }
        )
        check(False, "an invalid filter should be rejected")
    except exceptions.InvalidArgument as err:
        check("line 1, column" in err.message, f"the position is given: {err.message}")
    for i in range(6):
        kind = "keep" if i % 2 == 0 else "drop"
        publisher.publish(topic, f"{kind} {i}".encode(), kind=kind).result(timeout=30)
    publisher.publish(topic, b"last", kind="keep", last="yes").result(timeout=30)

    def decide(message, receiver):
        if message.attributes.get("last") == "yes":
            receiver.done.set()
        return "ack"

    receiver = Receiver(subscriber, subscription, decide)
    receiver.wait("the last matching message")
    receiver.stop()
    kinds = [m.attributes["kind"] for m in receiver.deliveries]
    check(kinds == ["keep"] * 4, f"only the 4 matching messages arrive: {kinds}")
    report("filter", received=len(kinds))


def main():
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    admin_round_trip(publisher, subscriber)
    batched_publish_and_ack(subscriber)
    nack_and_redelivery(publisher, subscriber)
    dead_letter(publisher, subscriber)
    ordering_keys(subscriber)
    subscription_filter(publisher, subscriber)
    subscriber.close()
    print(json.dumps({"summary": "ok", "scenarios": 6}), flush=True)


if __name__ == "__main__":
    main()
