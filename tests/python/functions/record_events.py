"""Functions for tests/functions_framework.rs, run by functions-framework.

Each call appends one JSON line to the file that SLUICE_FUNCTION_OUTPUT names: for a
background function {"context": {...}, "data": ...}, as the function received them, and for
a CloudEvent function the event's attributes (extensions included) with its data under
"data". The fail_* functions record the call and then raise, so functions-framework
responds with HTTP 500.
"""

import base64
import json
import os


def _record(entry):
    # One write call per event keeps each line whole even when requests run concurrently.
    line = json.dumps(entry, default=str, sort_keys=True) + "\n"
    with open(os.environ["SLUICE_FUNCTION_OUTPUT"], "a", encoding="utf-8") as output:
        output.write(line)


def _background_entry(data, context):
    if isinstance(data, bytes):
        data = {"bytes_base64": base64.b64encode(data).decode("ascii")}
    return {
        "context": {
            "eventId": context.event_id,
            "timestamp": context.timestamp,
            "eventType": context.event_type,
            "resource": context.resource,
        },
        "data": data,
    }


def _cloudevent_entry(cloud_event):
    entry = dict(cloud_event.get_attributes())
    entry["data"] = cloud_event.get_data()
    return entry


def record_background(data, context):
    """A background function (--signature-type=event) that records its call."""
    _record(_background_entry(data, context))


def record_cloudevent(cloud_event):
    """A CloudEvent function (--signature-type=cloudevent) that records its call."""
    _record(_cloudevent_entry(cloud_event))


def fail_background(data, context):
    """A background function that records its call and raises."""
    _record(_background_entry(data, context))
    raise RuntimeError("fail_background raises on every call")


def fail_cloudevent(cloud_event):
    """A CloudEvent function that records its call and raises."""
    _record(_cloudevent_entry(cloud_event))
    raise RuntimeError("fail_cloudevent raises on every call")
