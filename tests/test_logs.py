"""
Structured logs: one event per change of state, never anything secret.
"""

from __future__ import annotations

import io
import json
from unittest import mock

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from chatd import logs
from chatd.doors.line import LineDoor
from chatd.limits import Limits
from tests.helpers import LinePeer, make_hub

SECRETS = ("said-text", "pass-word1", "new-pass-2", "room-key", "topic-text", "why-text")


class EventTests(SynchronousTestCase):
    def test_events_and_no_secrets(self) -> None:
        """
        Sign-ons, joins, parts, nick changes, accounts and moderation each
        log one C{chatd.events} event; no message text, password, key,
        topic or reason appears in any logged event.
        """
        clock = Clock()
        hub = make_hub(clock, admins=["alice"])
        door = LineDoor(hub, clock, Limits(flood_rate=0))
        alice, bob = LinePeer(door), LinePeer(door)
        with capturedLogs() as events:
            alice.sign_on("alice")
            bob.sign_on("bob")
            for line in (
                "/register pass-word1",
                "/join #den",
                "said-text",
                "/topic topic-text",
                "/mode +k room-key",
                "/password pass-word1 new-pass-2",
                "/identify alice wrong-guess",
            ):
                alice.send(line)
            bob.send("/join #den room-key")
            alice.send("/op bob")
            alice.send("/kick bob why-text")
            alice.send("/ban bob")
            bob.send("/nick robert")
            bob.send("/part #lobby why-text")
            alice.send("/kill robert why-text")
        ours = [e for e in events if e.get("log_namespace") == "chatd.events"]
        self.assertEqual(
            [e["chatd_event"] for e in ours],
            [
                "sign_on", "join", "sign_on", "join", "register", "join", "topic", "mode",
                "bad_password", "join", "op", "kick", "ban", "nick", "part", "kill",
                "sign_off",
            ],
        )  # fmt: skip
        for event in events:
            text = formatEvent(event) + repr(sorted(event.items(), key=str))
            for secret in SECRETS:
                self.assertNotIn(secret, text)


class ObserverTests(SynchronousTestCase):
    def test_json_lines(self) -> None:
        """
        C{chatd.logs.json}, for C{twistd --logger}, writes one JSON object
        per line to standard output.
        """
        out = io.StringIO()
        with mock.patch("sys.stdout", out):
            observer = logs.json()
        self.assertTrue(ILogObserver.providedBy(observer))
        observer({"log_format": "{nick} joined", "nick": "alice", "chatd_event": "join"})
        observer({"log_format": "two", "log_level": None})
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertEqual(json.loads(lines[0])["chatd_event"], "join")
