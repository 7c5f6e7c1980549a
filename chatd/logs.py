# -*- test-case-name: tests.test_logs -*-
"""
Structured logs: C{twistd --logger chatd.logs.json ...} writes every log
event as one JSON object per line on standard output, for log shippers.

The hub logs each change of state (sign-on, nick, join, part, kick, ban,
op, mode, topic, kill, account events) as an event in the C{chatd.events}
namespace with a C{chatd_event} field naming it, and never message text,
topics, room keys or passwords.
"""

from __future__ import annotations

import sys

from twisted.logger import ILogObserver, jsonFileLogObserver


def json() -> ILogObserver:
    """
    The log observer factory for C{twistd --logger}: JSON lines on stdout.
    """
    return jsonFileLogObserver(sys.stdout, recordSeparator="")
