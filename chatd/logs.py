# -*- test-case-name: tests.test_logs -*-
"""
Structured logs: C{twistd --logger chatd.logs.json ...} writes every log
event as one JSON object per line on standard output, for log shippers.

Each line holds C{time} (ISO 8601, UTC), C{level} (C{debug}, C{info},
C{warn}, C{error} or C{critical}), C{message} (the event rendered as
text), C{namespace} (the logger's), C{traceback} when the event carries a
failure, and the event's own fields when chatd logged it: a change of
state logged by the hub is in the C{chatd.events} namespace, with a
C{chatd_event} field naming it (C{sign_on}, C{join}, C{kick}...) and the
nicks, rooms, accounts and addresses involved.  Message text, topics,
reasons, room keys and passwords are never logged.
"""

from __future__ import annotations

import json as _json
import sys
import time
from datetime import datetime, timezone
from typing import Any

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    LogLevel,
    formatEvent,
)
from twisted.python.failure import Failure

_STANDARD = ("time", "level", "message", "namespace", "traceback")
_PLAIN = (str, int, float, bool, type(None))


def json() -> ILogObserver:
    """
    The log observer factory for C{twistd --logger}: JSON lines on stdout.
    """
    return FileLogObserver(sys.stdout, json_line)


def json_line(event: LogEvent) -> str:
    """
    C{event} as one line of JSON (ended by a newline) for log shippers.
    """
    return _json.dumps(record(event), default=repr) + "\n"


def record(event: LogEvent) -> dict[str, Any]:
    """
    What a log shipper is told of C{event}: see the module's description.

    Fields of chatd's own events (its namespaces, or a C{chatd_event}) are
    given when they are plain values (strings, numbers, booleans, null);
    fields of other libraries' events are not, since chatd does not know
    what they hold.
    """
    namespace = event.get("log_namespace")
    level = event.get("log_level")
    if not isinstance(level, type(LogLevel.info)):
        level = LogLevel.critical if event.get("isError") else LogLevel.info
    when = event.get("log_time")
    if not isinstance(when, (int, float)):
        when = time.time()
    line: dict[str, Any] = {
        "time": _iso(when),
        "level": level.name,
        "message": formatEvent(event),
        "namespace": namespace,
    }
    if "chatd_event" in event or _ours(namespace):
        for name, value in event.items():
            if (
                isinstance(name, str)
                and not name.startswith("log_")
                and name not in _STANDARD
                and isinstance(value, _PLAIN)
            ):
                line[name] = value
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        line["traceback"] = failure.getTraceback()
    return line


def _ours(namespace: object) -> bool:
    return isinstance(namespace, str) and (namespace == "chatd" or namespace.startswith("chatd."))


def _iso(when: float) -> str:
    """
    C{when} (seconds since the epoch) in ISO 8601, UTC, to the millisecond:
    C{2026-11-26T23:59:01.250Z}.
    """
    stamp = datetime.fromtimestamp(when, tz=timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
