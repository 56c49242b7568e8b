"""Background functions that the tests of `sluice functions deploy` run.

Each call appends one JSON line to the file named by the OUTPUT_FILE environment
variable, which the test sets with --set-env-vars, and prints one log line.
"""

import base64
import json
import os
import signal
import time

# While the file that HANG_WHILE_EXISTS names exists, the import does not finish, as an
# import stuck on a resource would. Tests use it for a function that never becomes ready.
_HANG_FLAG = os.environ.get("HANG_WHILE_EXISTS")
while _HANG_FLAG and os.path.exists(_HANG_FLAG):
    time.sleep(0.2)


def _record(kind, data, context, **extra):
    record = {
        "kind": kind,
        "version": os.environ.get("VERSION", ""),
        "data": data,
        "context": {
            "event_id": context.event_id,
            "timestamp": context.timestamp,
            "event_type": context.event_type,
            "resource": context.resource,
        },
    }
    record.update(extra)
    with open(os.environ["OUTPUT_FILE"], "a", encoding="utf-8") as output:
        output.write(json.dumps(record) + "\n")


def on_upload(data, context):
    """Records a Cloud Storage event, as the tutorial's thumbnail function receives it."""
    _record("upload", data, context)
    print(f"processed gs://{data['bucket']}/{data['name']}")


def on_message(data, context):
    """Records a Pub/Sub event with its message data decoded."""
    text = base64.b64decode(data.get("data", "")).decode("utf-8")
    _record("message", data, context, text=text)
    print(json.dumps({"severity": "NOTICE", "message": f"received {text}"}))


def crash_once(data, context):
    """Kills its whole process on the first attempt of a message whose text is "crash".

    gunicorn runs the function in a worker, so the worker kills its master first; the
    function process then exits as a crash would end it.
    """
    text = base64.b64decode(data.get("data", "")).decode("utf-8")
    marker = os.path.join(os.environ["MARKER_DIR"], f"attempted-{context.event_id}")
    if text == "crash" and not os.path.exists(marker):
        open(marker, "w", encoding="utf-8").close()
        print(f"crashing on event {context.event_id}", flush=True)
        os.kill(os.getppid(), signal.SIGKILL)
        os._exit(1)
    _record("message", data, context, text=text)


def always_fail(data, context):
    """Fails every call, so that the event is retried until it is too old."""
    raise RuntimeError(f"cannot handle event {context.event_id}")


def slow_record(data, context):
    """Records when each call started and ended, with half a second of work between."""
    started = time.time()
    time.sleep(0.5)
    _record("slow", data, context, started=started, ended=time.time())
