"""Background functions that the edge-case tests of `sluice functions` run."""

import sys
import time


def sleep_past_timeout(data, context):
    """Sleeps for 5 seconds, past the 1 s timeout that the test deploys it with."""
    time.sleep(5)


def always_fail(data, context):
    """Fails every call, so that each event ends with status 'error'."""
    raise RuntimeError(f"cannot handle event {context.event_id}")


def flood(data, context):
    """Prints 200,000 short lines at once, far more than the server's log queue holds."""
    lines = "".join(f"flood line {i}\n" for i in range(200_000))
    sys.stdout.write(lines)
    sys.stdout.flush()
