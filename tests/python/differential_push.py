"""Push one message to endpoints that return different HTTP status codes, and record which
status codes acknowledge it.

tests/differential.rs runs this script against Google's Pub/Sub emulator and against sluice,
as it runs differential_scenario.py. The endpoints are served by this script on 127.0.0.1,
one path per status code. A message is acknowledged when its endpoint got exactly one
request, and redelivered when it got more. The last line of output is the recording (see
differential_record.py).
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from differential_record import Clients, Recorder, subscription_path, topic_path

# Status codes the endpoints respond with: 200 acknowledges and 500 nacks everywhere, and 202
# and 203 differ between the service and the emulator.
STATUS_CODES = [200, 202, 203, 500]
# The retry backoff of the push subscriptions, so that a nacked message comes back quickly.
BACKOFF = {"minimum_backoff": {"seconds": 1}, "maximum_backoff": {"seconds": 1}}
# Requests the 500 endpoint must get before the outcome is read: proof that nacked messages
# are redelivered at the configured backoff.
REDELIVERIES = 3
# Time for a late redelivery to the other endpoints after that.
SETTLE_SECS = 1.5
# Maximum wait for the redeliveries.
TIMEOUT_SECS = 30.0


class Endpoints(BaseHTTPRequestHandler):
    """Responds to POST /CODE with status CODE and keeps every request body by code."""

    bodies = {}
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 - the name http.server calls
        code = int(self.path.strip("/"))
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.lock:
            self.bodies.setdefault(code, []).append(json.loads(body) if body else None)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def request_counts():
    with Endpoints.lock:
        return {code: len(Endpoints.bodies.get(code, [])) for code in STATUS_CODES}


def outcome(request_count):
    """What the requests an endpoint received show about its status code."""
    if request_count == 0:
        return "none"
    if request_count == 1:
        return "acknowledged"
    return "redelivered"


def modify_push_config(rec, clients):
    """Turn the 500 subscription into a pull subscription and pull its nacked message."""
    subscription = subscription_path("diff-push-500")
    rec.call(
        "push.modify_to_pull",
        {"subscription": subscription, "push_config": {}},
        lambda r: clients.subscriber.modify_push_config(request=r),
    )
    received = clients.pull_until(subscription, 1)
    rec.record(
        "push.pull_after_modify",
        {"subscription": subscription},
        {"ok": [m.message.data.decode() for m in received]},
    )
    clients.ack(subscription, received)
    rec.call(
        "push.get_after_modify",
        {"subscription": subscription},
        lambda r: clients.subscriber.get_subscription(request=r),
    )


def main():
    rec = Recorder()
    clients = Clients()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoints)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"

    topic = topic_path("diff-push")
    rec.call(
        "push.create_topic", {"name": topic}, lambda r: clients.publisher.create_topic(request=r)
    )
    for code in STATUS_CODES:
        rec.call(
            f"push.create_subscription_{code}",
            {
                "name": subscription_path(f"diff-push-{code}"),
                "topic": topic,
                "push_config": {"push_endpoint": f"{endpoint}/{code}"},
                "retry_policy": BACKOFF,
            },
            lambda r: clients.subscriber.create_subscription(request=r),
        )
    rec.call(
        "push.publish",
        {"topic": topic, "messages": [{"data": b"pushed", "attributes": {"origin": "diff"}}]},
        clients.publish,
    )

    deadline = time.monotonic() + TIMEOUT_SECS
    while request_counts()[500] < REDELIVERIES and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(SETTLE_SECS)
    counts = request_counts()
    outcomes = {str(code): outcome(count) for code, count in counts.items()}
    rec.record("push.outcomes", {"status_codes": STATUS_CODES}, {"ok": outcomes})
    with Endpoints.lock:
        first = (Endpoints.bodies.get(200) or [None])[0]
    # The endpoint URL contains this run's port; the rest of the body is compared.
    rec.record("push.request_body", {"push_endpoint": "/200"}, {"ok": first})
    rec.call(
        "push.get_subscription",
        {"subscription": subscription_path("diff-push-200")},
        lambda r: clients.subscriber.get_subscription(request=r),
    )
    modify_push_config(rec, clients)
    server.shutdown()
    rec.dump()


if __name__ == "__main__":
    main()
