"""Run one Pub/Sub scenario with Google's Python client and print what the server returned.

tests/differential.rs runs this script twice, with PUBSUB_EMULATOR_HOST pointing first at
Google's Pub/Sub emulator and then at sluice, each started empty, and compares the two
recordings. The last line of output is the recording (see differential_record.py).

The scenario covers topic and subscription administration with its errors, publishing,
pull, acknowledgement and deadline changes, ordering keys, dead lettering, seek and
snapshots, and subscription filters. Every step runs even when an earlier one failed, so
that one missing feature does not hide the other differences.
"""

import datetime
import time

from google.protobuf import timestamp_pb2

from differential_record import (
    Clients,
    Recorder,
    by_data,
    message_view,
    snapshot_path,
    subscription_path,
    to_json,
    topic_path,
)

TOPIC = topic_path("diff-topic")
# The dead-letter topic of the subscriptions that the administration steps create.
DEAD_LETTER_TOPIC = topic_path("diff-dead-letter")
SUBSCRIPTION = subscription_path("diff-sub")
# How long a step waits for messages that arrive on one server and not on the other, such
# as those that sluice filters out and the emulator delivers.
QUIET_SECS = 2.0


def topics(rec, clients):
    publisher = clients.publisher

    def create(request):
        return publisher.create_topic(request=request)

    rec.call("topic.create", {"name": TOPIC}, create)
    rec.call(
        "topic.create_with_retention",
        {"name": DEAD_LETTER_TOPIC, "message_retention_duration": {"seconds": 7200}},
        create,
    )
    labelled = topic_path("diff-labelled")
    if rec.call("topic.create_with_labels", {"name": labelled, "labels": {"team": "diff"}}, create):
        # Delete it again, so that a server without labels differs in this step only.
        publisher.delete_topic(topic=labelled)
    rec.call("topic.create_existing", {"name": TOPIC}, create)
    # Resource names need 3 to 255 characters and must not start with "goog".
    rec.call("topic.create_short_name", {"name": topic_path("t1")}, create)
    rec.call("topic.create_goog_name", {"name": topic_path("goog-topic")}, create)
    rec.call("topic.create_bad_project", {"name": "projects/local/topics"}, create)

    rec.call("topic.get", {"topic": TOPIC}, lambda r: publisher.get_topic(request=r))
    rec.call(
        "topic.get_missing",
        {"topic": topic_path("missing-topic")},
        lambda r: publisher.get_topic(request=r),
    )
    rec.call(
        "topic.list",
        {"project": "projects/local"},
        lambda r: sorted(t.name for t in publisher.list_topics(request=r)),
    )
    rec.call(
        "topic.list_pages",
        {"project": "projects/local", "page_size": 1},
        lambda r: page_sizes(publisher.list_topics(request=r), "topics"),
    )

    def update(request):
        return publisher.update_topic(request=request)

    rec.call(
        "topic.update_retention",
        {
            "topic": {"name": TOPIC, "message_retention_duration": {"seconds": 3600}},
            "update_mask": {"paths": ["message_retention_duration"]},
        },
        update,
    )
    rec.call(
        "topic.update_empty_mask",
        {"topic": {"name": TOPIC}, "update_mask": {"paths": []}},
        update,
    )
    rec.call(
        "topic.update_missing",
        {
            "topic": {
                "name": topic_path("missing-topic"),
                "message_retention_duration": {"seconds": 3600},
            },
            "update_mask": {"paths": ["message_retention_duration"]},
        },
        update,
    )
    rec.call("topic.get_after_update", {"topic": TOPIC}, lambda r: publisher.get_topic(request=r))


def page_sizes(pager, field):
    """The number of items on each page of a listing, which shows how page tokens work."""
    return [len(getattr(page, field)) for page in pager.pages]


def create_subscription(clients):
    return lambda request: clients.subscriber.create_subscription(request=request)


def create_topic(rec, clients, step, name):
    """Create a topic that later steps need, as a recorded step of its own."""
    rec.call(step, {"name": name}, lambda r: clients.publisher.create_topic(request=r))


def subscriptions(rec, clients):
    subscriber = clients.subscriber
    create = create_subscription(clients)

    rec.call("subscription.create", {"name": SUBSCRIPTION, "topic": TOPIC}, create)
    rec.call(
        "subscription.create_with_fields",
        {
            "name": subscription_path("diff-full"),
            "topic": TOPIC,
            "ack_deadline_seconds": 30,
            "retain_acked_messages": True,
            "message_retention_duration": {"seconds": 3600},
            "enable_message_ordering": True,
            "filter": 'attributes.kind = "keep"',
            "retry_policy": {"minimum_backoff": {"seconds": 1}, "maximum_backoff": {"seconds": 5}},
            "dead_letter_policy": {
                "dead_letter_topic": DEAD_LETTER_TOPIC,
                "max_delivery_attempts": 7,
            },
        },
        create,
    )
    labelled = subscription_path("diff-labelled")
    if rec.call(
        "subscription.create_with_labels",
        {"name": labelled, "topic": TOPIC, "labels": {"team": "diff"}},
        create,
    ):
        subscriber.delete_subscription(subscription=labelled)
    rec.call("subscription.create_existing", {"name": SUBSCRIPTION, "topic": TOPIC}, create)
    rec.call(
        "subscription.create_missing_topic",
        {"name": subscription_path("diff-orphan"), "topic": topic_path("missing-topic")},
        create,
    )
    rec.call(
        "subscription.create_short_name",
        {"name": subscription_path("s2"), "topic": TOPIC},
        create,
    )
    for name, seconds in [("700", 700), ("negative", -1)]:
        rec.call(
            f"subscription.create_ack_deadline_{name}",
            {
                "name": subscription_path(f"diff-ack-{name}"),
                "topic": TOPIC,
                "ack_deadline_seconds": seconds,
            },
            create,
        )
    created = rec.call(
        "subscription.create_ack_deadline_5",
        {"name": subscription_path("diff-ack-5"), "topic": TOPIC, "ack_deadline_seconds": 5},
        create,
    )
    if created is not None:
        # Only the emulator accepts it, so delete it to keep the listings comparable.
        subscriber.delete_subscription(subscription=subscription_path("diff-ack-5"))
    for attempts in [3, 101]:
        rec.call(
            f"subscription.create_max_delivery_attempts_{attempts}",
            {
                "name": subscription_path(f"diff-dla-{attempts}"),
                "topic": TOPIC,
                "dead_letter_policy": {
                    "dead_letter_topic": DEAD_LETTER_TOPIC,
                    "max_delivery_attempts": attempts,
                },
            },
            create,
        )
    rec.call(
        "subscription.create_missing_dead_letter_topic",
        {
            "name": subscription_path("diff-dl-missing"),
            "topic": TOPIC,
            "dead_letter_policy": {
                "dead_letter_topic": topic_path("missing-topic"),
                "max_delivery_attempts": 5,
            },
        },
        create,
    )
    retained = subscription_path("diff-retained-31-days")
    created = rec.call(
        "subscription.create_retention_31_days",
        {"name": retained, "topic": TOPIC, "message_retention_duration": {"seconds": 31 * 86400}},
        create,
    )
    if created is not None:
        # The emulator rejects it, so delete it to keep the listings comparable.
        subscriber.delete_subscription(subscription=retained)
    rec.call(
        "subscription.create_minimum_backoff_700",
        {
            "name": subscription_path("diff-backoff"),
            "topic": TOPIC,
            "retry_policy": {"minimum_backoff": {"seconds": 700}},
        },
        create,
    )
    created = rec.call(
        "subscription.create_bad_filter",
        {
            "name": subscription_path("diff-bad-filter"),
            "topic": TOPIC,
            "filter": "attributes.kind =",
        },
        create,
    )
    if created is not None:
        subscriber.delete_subscription(subscription=subscription_path("diff-bad-filter"))

    rec.call(
        "subscription.get",
        {"subscription": SUBSCRIPTION},
        lambda r: subscriber.get_subscription(request=r),
    )
    rec.call(
        "subscription.get_missing",
        {"subscription": subscription_path("missing-sub")},
        lambda r: subscriber.get_subscription(request=r),
    )
    rec.call(
        "subscription.list",
        {"project": "projects/local"},
        lambda r: sorted(s.name for s in subscriber.list_subscriptions(request=r)),
    )
    rec.call(
        "subscription.list_pages",
        {"project": "projects/local", "page_size": 1},
        lambda r: page_sizes(subscriber.list_subscriptions(request=r), "subscriptions"),
    )
    rec.call(
        "topic.list_subscriptions",
        {"topic": TOPIC},
        lambda r: sorted(clients.publisher.list_topic_subscriptions(request=r)),
    )
    update_subscription(rec, clients)


def update_subscription(rec, clients):
    subscriber = clients.subscriber

    def update(request):
        return subscriber.update_subscription(request=request)

    def ack_deadline(seconds):
        return {
            "subscription": {"name": SUBSCRIPTION, "ack_deadline_seconds": seconds},
            "update_mask": {"paths": ["ack_deadline_seconds"]},
        }

    rec.call("subscription.update_ack_deadline", ack_deadline(45), update)
    if rec.call("subscription.update_ack_deadline_5", ack_deadline(5), update) is not None:
        # Restore the comparable state after the emulator accepted it.
        update(ack_deadline(45))
    rec.call("subscription.update_ack_deadline_700", ack_deadline(700), update)
    rec.call(
        "subscription.update_policies",
        {
            "subscription": {
                "name": SUBSCRIPTION,
                "dead_letter_policy": {
                    "dead_letter_topic": DEAD_LETTER_TOPIC,
                    "max_delivery_attempts": 10,
                },
                "retry_policy": {"minimum_backoff": {"seconds": 2}},
                "retain_acked_messages": True,
            },
            "update_mask": {
                "paths": ["dead_letter_policy", "retry_policy", "retain_acked_messages"]
            },
        },
        update,
    )
    rec.call(
        "subscription.update_remove_dead_letter_policy",
        {
            "subscription": {"name": SUBSCRIPTION},
            "update_mask": {"paths": ["dead_letter_policy"]},
        },
        update,
    )
    rec.call(
        "subscription.update_message_ordering",
        {
            "subscription": {"name": SUBSCRIPTION, "enable_message_ordering": True},
            "update_mask": {"paths": ["enable_message_ordering"]},
        },
        update,
    )
    rec.call(
        "subscription.update_empty_mask",
        {"subscription": {"name": SUBSCRIPTION}, "update_mask": {"paths": []}},
        update,
    )
    rec.call(
        "subscription.update_missing",
        {
            "subscription": {"name": subscription_path("missing-sub"), "ack_deadline_seconds": 20},
            "update_mask": {"paths": ["ack_deadline_seconds"]},
        },
        update,
    )
    subscription = rec.call(
        "subscription.get_after_update",
        {"subscription": SUBSCRIPTION},
        lambda r: subscriber.get_subscription(request=r),
    )
    # An output-only field: the service sets it to the retention of the topic, which
    # topic.update_retention set to 3600 s.
    retention = None
    if subscription is not None:
        retention = to_json(subscription).get("topic_message_retention_duration")
    rec.record(
        "subscription.topic_message_retention",
        {"subscription": SUBSCRIPTION, "field": "topic_message_retention_duration"},
        {"ok": retention},
    )


def publish_and_pull(rec, clients):
    """Publish, pull, acknowledge, nack and extend on a fresh subscription."""
    subscriber = clients.subscriber
    topic = topic_path("diff-messages")
    subscription = subscription_path("diff-messages-sub")
    other = subscription_path("diff-messages-other")
    create_topic(rec, clients, "publish.create_topic", topic)
    rec.call(
        "publish.create_subscription",
        {"name": subscription, "topic": topic},
        create_subscription(clients),
    )
    rec.call(
        "publish.create_other_subscription",
        {"name": other, "topic": topic},
        create_subscription(clients),
    )

    messages = [
        {"data": b"\x00\xffbinary", "attributes": {"kind": "binary", "unicode": "\u00e9\u2713"}},
        {"attributes": {"only": "attributes"}},
        {"data": b"plain"},
        {"data": b"keyed", "ordering_key": "key-on-unordered"},
    ]
    response = rec.call("publish.messages", {"topic": topic, "messages": messages}, clients.publish)
    ids = list(response.message_ids) if response is not None else []
    rec.record(
        "publish.message_ids_unique",
        {"topic": topic},
        {"ok": {"count": len(ids), "unique": len(set(ids))}},
    )
    rec.call("publish.empty_message", {"topic": topic, "messages": [{}]}, clients.publish)
    rec.call("publish.no_messages", {"topic": topic, "messages": []}, clients.publish)
    rec.call(
        "publish.missing_topic",
        {"topic": topic_path("missing-topic"), "messages": [{"data": b"x"}]},
        clients.publish,
    )

    received = clients.pull_until(subscription, len(messages))
    rec.record(
        "pull.messages",
        {"subscription": subscription, "max_messages": 100, "return_immediately": True},
        {"ok": by_data([message_view(m) for m in received])},
    )
    rec.record(
        "pull.message_ids_match_publish",
        {"subscription": subscription},
        {"ok": sorted(m.message.message_id for m in received) == sorted(ids)},
    )
    rec.record(
        "pull.publish_time_set",
        {"subscription": subscription},
        {"ok": all(m.message.publish_time.timestamp() > 0 for m in received)},
    )
    rec.call(
        "pull.while_leased",
        {"subscription": subscription, "max_messages": 10, "return_immediately": True},
        lambda r: subscriber.pull(request=r),
    )
    ack_errors(rec, clients, subscription)
    ack_on_other_subscription(rec, clients, other, received, len(messages))
    nack_and_extend(rec, clients, subscription, received)


def ack_on_other_subscription(rec, clients, other, received, published):
    """Acknowledge on `other` an ack id that another subscription of the topic handed out,
    and check that `other` still delivers every message."""
    ack_ids = [m.ack_id for m in received[:1]]
    rec.call(
        "ack.id_of_other_subscription",
        {"subscription": other, "ack_ids": ack_ids},
        lambda r: clients.subscriber.acknowledge(request=r),
    )
    delivered = clients.pull_until(other, published, ack=True, timeout=QUIET_SECS)
    rec.record(
        "pull.other_subscription_after_foreign_ack",
        {"subscription": other},
        {"ok": sorted(to_json(m.message.data) for m in delivered)},
    )


def ack_errors(rec, clients, subscription):
    subscriber = clients.subscriber

    def ack(request):
        return subscriber.acknowledge(request=request)

    def modack(request):
        return subscriber.modify_ack_deadline(request=request)

    rec.call("ack.malformed_id", {"subscription": subscription, "ack_ids": ["bogus"]}, ack)
    rec.call("ack.no_ids", {"subscription": subscription, "ack_ids": []}, ack)
    rec.call(
        "ack.missing_subscription",
        {"subscription": subscription_path("missing-sub"), "ack_ids": ["bogus"]},
        ack,
    )
    rec.call(
        "modack.malformed_id",
        {"subscription": subscription, "ack_ids": ["bogus"], "ack_deadline_seconds": 10},
        modack,
    )
    rec.call(
        "pull.max_messages_0",
        {"subscription": subscription, "max_messages": 0, "return_immediately": True},
        lambda r: subscriber.pull(request=r),
    )
    rec.call(
        "pull.missing_subscription",
        {
            "subscription": subscription_path("missing-sub"),
            "max_messages": 1,
            "return_immediately": True,
        },
        lambda r: subscriber.pull(request=r),
    )


def nack_and_extend(rec, clients, subscription, received):
    subscriber = clients.subscriber

    def modack(request):
        return subscriber.modify_ack_deadline(request=request)

    if len(received) < 2:
        rec.record("modack.nack", {"subscription": subscription}, {"error": "NOTHING_RECEIVED"})
        return
    nacked, leased = received[0], received[1:]
    leased_ids = [m.ack_id for m in leased]
    rec.call(
        "modack.negative",
        {"subscription": subscription, "ack_ids": leased_ids, "ack_deadline_seconds": -1},
        modack,
    )
    rec.call(
        "modack.deadline_700",
        {"subscription": subscription, "ack_ids": leased_ids, "ack_deadline_seconds": 700},
        modack,
    )
    rec.call(
        "modack.extend",
        {"subscription": subscription, "ack_ids": leased_ids, "ack_deadline_seconds": 60},
        modack,
    )
    rec.call(
        "modack.nack",
        {"subscription": subscription, "ack_ids": [nacked.ack_id], "ack_deadline_seconds": 0},
        modack,
    )
    again = clients.pull_until(subscription, 1)
    rec.record(
        "pull.after_nack",
        {"subscription": subscription, "max_messages": 100, "return_immediately": True},
        {
            "ok": {
                "messages": by_data([message_view(m) for m in again]),
                "same_message": [m.message.message_id for m in again]
                == [nacked.message.message_id],
                "new_ack_id": all(m.ack_id != nacked.ack_id for m in again),
            }
        },
    )

    def ack(request):
        return subscriber.acknowledge(request=request)

    rec.call(
        "ack.all",
        {"subscription": subscription, "ack_ids": leased_ids + [m.ack_id for m in again]},
        ack,
    )
    rec.call(
        "ack.already_acknowledged",
        {"subscription": subscription, "ack_ids": leased_ids},
        ack,
    )
    rec.call(
        "ack.superseded_id",
        {"subscription": subscription, "ack_ids": [nacked.ack_id]},
        ack,
    )
    rec.call(
        "modack.already_acknowledged",
        {"subscription": subscription, "ack_ids": leased_ids, "ack_deadline_seconds": 10},
        modack,
    )
    rec.call(
        "pull.after_ack",
        {"subscription": subscription, "max_messages": 10, "return_immediately": True},
        lambda r: subscriber.pull(request=r),
    )


def ordering(rec, clients):
    """Publish two interleaved ordering keys one message per request and pull them back."""
    topic = topic_path("diff-ordered")
    subscription = subscription_path("diff-ordered-sub")
    create_topic(rec, clients, "ordering.create_topic", topic)
    rec.call(
        "ordering.create_subscription",
        {"name": subscription, "topic": topic, "enable_message_ordering": True},
        create_subscription(clients),
    )
    published = []
    for index in range(4):
        for key in ["key-a", "key-b"]:
            data = f"{key}-{index}".encode()
            clients.publish({"topic": topic, "messages": [{"data": data, "ordering_key": key}]})
            published.append(data)
    received = clients.pull_until(subscription, len(published), ack=True)
    per_key = {}
    for message in received:
        per_key.setdefault(message.message.ordering_key, []).append(message.message.data.decode())
    rec.record("ordering.order_per_key", {"subscription": subscription}, {"ok": per_key})


def dead_letter(rec, clients):
    """Nack one message on every delivery until it moves to the dead-letter topic."""
    topic = topic_path("diff-dl-main")
    dead_topic = topic_path("diff-dl-dead")
    subscription = subscription_path("diff-dl-sub")
    dead_subscription = subscription_path("diff-dl-dead-sub")
    create_topic(rec, clients, "dead_letter.create_topic", topic)
    create_topic(rec, clients, "dead_letter.create_dead_letter_topic", dead_topic)
    rec.call(
        "dead_letter.create_dead_letter_subscription",
        {"name": dead_subscription, "topic": dead_topic},
        create_subscription(clients),
    )
    rec.call(
        "dead_letter.create_subscription",
        {
            "name": subscription,
            "topic": topic,
            "dead_letter_policy": {"dead_letter_topic": dead_topic, "max_delivery_attempts": 5},
            "retry_policy": {"minimum_backoff": {"seconds": 0}, "maximum_backoff": {"seconds": 1}},
        },
        create_subscription(clients),
    )

    rec.call(
        "dead_letter.publish",
        {"topic": topic, "messages": [{"data": b"poison", "attributes": {"origin": "diff"}}]},
        clients.publish,
    )
    attempts, publish_times, dead = nack_until_dead_lettered(
        clients, subscription, dead_subscription
    )

    rec.record("dead_letter.delivery_attempts", {"subscription": subscription}, {"ok": attempts})
    rec.record(
        "dead_letter.forwarded",
        {"subscription": dead_subscription},
        {"ok": [message_view(m) for m in dead]},
    )
    rec.record(
        "dead_letter.source_publish_time",
        {"subscription": dead_subscription},
        {"ok": [source_publish_time_matches(m, publish_times) for m in dead]},
    )
    clients.ack(dead_subscription, dead)


def nack_until_dead_lettered(clients, subscription, dead_subscription):
    """Nack every delivery on `subscription` until a message arrives on
    `dead_subscription`. Return the delivery attempts, the publish times seen and the
    dead-lettered messages."""
    publish_times = []
    attempts = []
    dead = []
    # Five deliveries with backoffs of at most 1 s took about 8 s on the emulator.
    deadline = time.monotonic() + 30.0
    while not dead and time.monotonic() < deadline:
        for message in clients.pull_now(subscription).received_messages:
            attempts.append(message.delivery_attempt)
            publish_times.append(message.message.publish_time)
            clients.subscriber.modify_ack_deadline(
                subscription=subscription, ack_ids=[message.ack_id], ack_deadline_seconds=0
            )

        dead = list(clients.pull_now(dead_subscription).received_messages)
        if not dead:
            time.sleep(0.1)
    return attempts, publish_times, dead


def source_publish_time_matches(dead, publish_times):
    """Whether CloudPubSubDeadLetterSourceTopicPublishTime is the publish time of the
    original message, to the millisecond that the emulator keeps."""
    text = dead.message.attributes.get("CloudPubSubDeadLetterSourceTopicPublishTime")
    if text is None or not publish_times:
        return False
    source = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return abs((source - publish_times[0]).total_seconds()) < 0.001


def timestamp(seconds):
    value = timestamp_pb2.Timestamp()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def seek(rec, clients):
    """Seek to a time before and after a publish, and to a snapshot."""
    subscriber = clients.subscriber
    topic = topic_path("diff-seek")
    retained = subscription_path("diff-seek-retained")
    plain = subscription_path("diff-seek-plain")
    create_topic(rec, clients, "seek.create_topic", topic)
    rec.call(
        "seek.create_retaining_subscription",
        {"name": retained, "topic": topic, "retain_acked_messages": True},
        create_subscription(clients),
    )
    rec.call(
        "seek.create_subscription",
        {"name": plain, "topic": topic},
        create_subscription(clients),
    )

    time.sleep(0.2)
    before = time.time()
    time.sleep(0.2)
    rec.call(
        "seek.publish",
        {"topic": topic, "messages": [{"data": b"seek-a"}, {"data": b"seek-b"}]},
        clients.publish,
    )
    clients.ack(retained, clients.pull_until(retained, 2))

    def seek_call(request):
        return subscriber.seek(request=request)

    rec.call(
        "seek.time_before_publish",
        {"subscription": retained, "time": timestamp(before)},
        seek_call,
    )
    again = clients.pull_until(retained, 2)
    rec.record(
        "seek.redelivered_after_seek_back",
        {"subscription": retained},
        {"ok": sorted(m.message.data.decode() for m in again)},
    )
    time.sleep(0.2)
    rec.call(
        "seek.time_after_publish",
        {"subscription": retained, "time": timestamp(time.time())},
        seek_call,
    )
    rec.call(
        "seek.pull_after_seek_forward",
        {"subscription": retained, "max_messages": 10, "return_immediately": True},
        lambda r: subscriber.pull(request=r),
    )
    rec.call(
        "seek.missing_subscription",
        {"subscription": subscription_path("missing-sub"), "time": timestamp(before)},
        seek_call,
    )
    rec.call("seek.no_target", {"subscription": retained}, seek_call)
    snapshots(rec, clients, topic, plain, seek_call)


def snapshots(rec, clients, topic, subscription, seek_call):
    subscriber = clients.subscriber
    snapshot = snapshot_path("diff-snapshot")

    def create(request):
        return subscriber.create_snapshot(request=request)

    rec.call("snapshot.create", {"name": snapshot, "subscription": subscription}, create)
    rec.call("snapshot.create_existing", {"name": snapshot, "subscription": subscription}, create)
    rec.call(
        "snapshot.create_missing_subscription",
        {
            "name": snapshot_path("diff-snapshot-2"),
            "subscription": subscription_path("missing-sub"),
        },
        create,
    )
    rec.call(
        "snapshot.create_short_name",
        {"name": snapshot_path("s1"), "subscription": subscription},
        create,
    )
    rec.call("snapshot.get", {"snapshot": snapshot}, lambda r: subscriber.get_snapshot(request=r))
    rec.call(
        "snapshot.get_missing",
        {"snapshot": snapshot_path("missing-snapshot")},
        lambda r: subscriber.get_snapshot(request=r),
    )
    rec.call(
        "snapshot.list",
        {"project": "projects/local"},
        lambda r: [to_json(s) for s in subscriber.list_snapshots(request=r)],
    )
    rec.call(
        "topic.list_snapshots",
        {"topic": topic},
        lambda r: sorted(clients.publisher.list_topic_snapshots(request=r)),
    )

    clients.ack(subscription, clients.pull_until(subscription, 2))
    rec.call(
        "snapshot.pull_after_ack",
        {"subscription": subscription, "max_messages": 10, "return_immediately": True},
        lambda r: subscriber.pull(request=r),
    )
    rec.call("seek.snapshot", {"subscription": subscription, "snapshot": snapshot}, seek_call)
    again = clients.pull_until(subscription, 2)
    rec.record(
        "seek.redelivered_after_snapshot",
        {"subscription": subscription},
        {"ok": sorted(m.message.data.decode() for m in again)},
    )
    clients.ack(subscription, again)
    rec.call(
        "seek.missing_snapshot",
        {"subscription": subscription, "snapshot": snapshot_path("missing-snapshot")},
        seek_call,
    )
    other_topic = topic_path("diff-seek-other")
    other = subscription_path("diff-seek-other-sub")
    create_topic(rec, clients, "seek.create_other_topic", other_topic)
    rec.call(
        "seek.create_other_subscription",
        {"name": other, "topic": other_topic},
        create_subscription(clients),
    )
    rec.call(
        "seek.snapshot_of_other_topic",
        {"subscription": other, "snapshot": snapshot},
        seek_call,
    )

    def delete(request):
        return subscriber.delete_snapshot(request=request)

    rec.call("snapshot.delete", {"snapshot": snapshot}, delete)
    rec.call("snapshot.delete_missing", {"snapshot": snapshot}, delete)
    rec.call(
        "snapshot.list_after_delete",
        {"project": "projects/local"},
        lambda r: [to_json(s) for s in subscriber.list_snapshots(request=r)],
    )


def filters(rec, clients):
    """Publish a matching and a non-matching message to a filtered subscription."""
    topic = topic_path("diff-filtered")
    subscription = subscription_path("diff-filtered-sub")
    create_topic(rec, clients, "filter.create_topic", topic)
    rec.call(
        "filter.create_subscription",
        {"name": subscription, "topic": topic, "filter": 'attributes.kind = "keep"'},
        create_subscription(clients),
    )
    rec.call(
        "filter.publish",
        {
            "topic": topic,
            "messages": [
                {"data": b"kept", "attributes": {"kind": "keep"}},
                {"data": b"dropped", "attributes": {"kind": "drop"}},
                {"data": b"no-attributes"},
            ],
        },
        clients.publish,
    )
    # Wait for the matching message, then give the others time to arrive, because the
    # emulator delivers them too.
    received = clients.pull_until(subscription, 1, ack=True)
    received += clients.pull_until(subscription, 2, ack=True, timeout=QUIET_SECS)
    rec.record(
        "filter.delivered",
        {"subscription": subscription},
        {"ok": sorted(m.message.data.decode() for m in received)},
    )


def deletion(rec, clients):
    """Delete subscriptions and topics, including a topic that still has a subscription."""
    subscriber = clients.subscriber
    publisher = clients.publisher

    def delete_subscription(request):
        return subscriber.delete_subscription(request=request)

    def delete_topic(request):
        return publisher.delete_topic(request=request)

    rec.call("subscription.delete", {"subscription": SUBSCRIPTION}, delete_subscription)
    rec.call("subscription.delete_missing", {"subscription": SUBSCRIPTION}, delete_subscription)
    rec.call(
        "subscription.get_deleted",
        {"subscription": SUBSCRIPTION},
        lambda r: subscriber.get_subscription(request=r),
    )
    # diff-full still reads diff-topic.
    rec.call("topic.delete", {"topic": TOPIC}, delete_topic)
    rec.call("topic.delete_missing", {"topic": TOPIC}, delete_topic)
    rec.call(
        "subscription.get_of_deleted_topic",
        {"subscription": subscription_path("diff-full")},
        lambda r: subscriber.get_subscription(request=r),
    )
    rec.call(
        "subscription.pull_of_deleted_topic",
        {
            "subscription": subscription_path("diff-full"),
            "max_messages": 1,
            "return_immediately": True,
        },
        lambda r: subscriber.pull(request=r),
    )
    rec.call("topic.create_again", {"name": TOPIC}, lambda r: publisher.create_topic(request=r))
    rec.call(
        "topic.list_subscriptions_of_new_topic",
        {"topic": TOPIC},
        lambda r: sorted(publisher.list_topic_subscriptions(request=r)),
    )
    rec.call(
        "topic.list_at_end",
        {"project": "projects/local"},
        lambda r: sorted(t.name for t in publisher.list_topics(request=r)),
    )


def main():
    rec = Recorder()
    clients = Clients()
    rec.section("topic", topics, clients)
    rec.section("subscription", subscriptions, clients)
    rec.section("publish", publish_and_pull, clients)
    rec.section("ordering", ordering, clients)
    rec.section("dead_letter", dead_letter, clients)
    rec.section("seek", seek, clients)
    rec.section("filter", filters, clients)
    rec.section("deletion", deletion, clients)
    rec.dump()


if __name__ == "__main__":
    main()
