"""
Structured logs: one event per change of state, never anything secret.
"""

from __future__ import annotations

import io
import json
from unittest import mock

from twisted.internet.task import Clock
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    LogLevel,
    capturedLogs,
    formatEvent,
)
from twisted.trial.unittest import SynchronousTestCase

from chatd import logs
from chatd.doors.line import LineDoor
from chatd.limits import Limits
from chatd.requests import Join, Kick, Mode, Nick, Register, Topic
from chatd.testing import LinePeer, RecordingClient, make_hub
from tests.test_cluster import Cluster

SECRETS = ("said-text", "pass-word1", "new-pass-2", "room-key", "topic-text", "why-text")


class EventTests(SynchronousTestCase):
    def test_events_and_no_secrets(self) -> None:
        """
        Sign-ons, joins, parts, nick changes, accounts and moderation each
        log one C{chatd.events} event; no message text, password, key,
        topic or reason appears in any logged event, nor in its JSON line.
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
            text += logs.json_line(event)
            for secret in SECRETS:
                self.assertNotIn(secret, text)


class ShutdownTests(SynchronousTestCase):
    def test_one_event_for_everyone(self) -> None:
        """
        When the server stops, one C{shutdown} event with the count stands
        for everybody's sign-off: 19,000 lines would only slow the exit.
        """
        hub = make_hub()
        for nick in ("alice", "bob", "carol"):
            hub.connect(RecordingClient(), nick)
        with capturedLogs() as events:
            hub.close()
            for user in list(hub.users.values()):
                hub.disconnect(user)
        ours = [e for e in events if e.get("log_namespace") == "chatd.events"]
        self.assertEqual([(e["chatd_event"], e["count"]) for e in ours], [("shutdown", 3)])


class ObserverTests(SynchronousTestCase):
    def test_json_lines(self) -> None:
        """
        C{chatd.logs.json}, for C{twistd --logger}, writes one JSON object
        per line to standard output, whatever the event holds.
        """
        out = io.StringIO()
        with mock.patch("sys.stdout", out):
            observer = logs.json()
        self.assertTrue(ILogObserver.providedBy(observer))
        observer({"log_format": "{nick} joined", "nick": "alice", "chatd_event": "join"})
        observer({"log_format": "two", "log_level": None})
        observer({"log_format": "{x", "log_level": LogLevel.warn, "log_namespace": "chatd.x"})
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 3)
        first = json.loads(lines[0])
        self.assertEqual((first["chatd_event"], first["message"]), ("join", "alice joined"))
        self.assertEqual(json.loads(lines[1])["level"], "info")
        self.assertIn("Unable to format event", json.loads(lines[2])["message"])

    def test_what_shippers_expect(self) -> None:
        """
        A hub event is written as C{time} (ISO 8601, UTC), C{level} as a
        word, C{message} rendered, C{namespace}, C{chatd_event} and its
        fields; nothing of Twisted's own keys.
        """
        seen: list[LogEvent] = []
        logger = Logger(namespace="chatd.events", observer=seen.append)
        logger.info("{nick} joined {room}", chatd_event="join", nick="alice", room="#den")
        (event,) = seen
        event["log_time"] = 1795700000.25
        out = io.StringIO()
        FileLogObserver(out, logs.json_line)(event)
        self.assertEqual(
            json.loads(out.getvalue()),
            {
                "time": "2026-11-26T13:33:20.250Z",
                "level": "info",
                "message": "alice joined #den",
                "namespace": "chatd.events",
                "chatd_event": "join",
                "nick": "alice",
                "room": "#den",
            },
        )
        self.assertTrue(out.getvalue().endswith("}\n"))
        self.assertEqual(out.getvalue().count("\n"), 1)

    def test_levels(self) -> None:
        """
        Every level is written as its word.
        """
        out = io.StringIO()
        logger = Logger(namespace="chatd.test", observer=FileLogObserver(out, logs.json_line))
        logger.debug("d")
        logger.info("i")
        logger.warn("w")
        logger.error("e")
        logger.critical("c")
        levels = [json.loads(line)["level"] for line in out.getvalue().splitlines()]
        self.assertEqual(levels, ["debug", "info", "warn", "error", "critical"])

    def test_failure_traceback(self) -> None:
        """
        An event with a failure carries its traceback as text.
        """
        out = io.StringIO()
        logger = Logger(namespace="chatd.hub.Hub", observer=FileLogObserver(out, logs.json_line))
        try:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        except OverflowError:
            logger.failure("Failed {doing}", doing="fetching history")
        line = json.loads(out.getvalue())
        self.assertEqual(
            (line["level"], line["message"], line["doing"]),
            ("critical", "Failed fetching history", "fetching history"),
        )
        self.assertIn("Traceback", line["traceback"])
        self.assertIn("OverflowError: Python int too large", line["traceback"])

    def test_fields_of_others_are_left_out(self) -> None:
        """
        Fields of chatd's own events are given when they are plain values;
        other libraries' events give only the standard keys.
        """
        out = io.StringIO()
        observer = FileLogObserver(out, logs.json_line)
        Logger(namespace="twisted.web", observer=observer).info(
            "{what}", what="request", secret="of theirs"
        )
        Logger(namespace="chatd.doors", observer=observer).info(
            "{nick}", nick="bob", count=3, thing=object(), message="not the message"
        )
        theirs, ours = (json.loads(line) for line in out.getvalue().splitlines())
        self.assertEqual(set(theirs), {"time", "level", "message", "namespace"})
        self.assertEqual(theirs["message"], "request")
        self.assertEqual((ours["nick"], ours["count"], ours["message"]), ("bob", 3, "bob"))
        self.assertNotIn("thing", ours)


class AddressTests(SynchronousTestCase):
    """
    Account and admission events name the client's address, for tools
    such as fail2ban.
    """

    def test_account_and_admission_events(self) -> None:
        """
        C{sign_on}, C{bad_password}, C{register}, C{identify} and
        C{sign_off} carry C{address}: the session's, as admission counts
        it; a JSON line has it too.
        """
        clock = Clock()
        hub = make_hub(clock)
        door = LineDoor(hub, clock, Limits(flood_rate=0))
        with capturedLogs() as captured:
            alice = LinePeer(door)
            alice.sign_on("alice")
            alice.send("/register pass-word1")
            alice.send("/identify alice wrong-guess")
            alice.send("/identify alice pass-word1")
            alice.send("/quit")
            guesser = LinePeer(door)
            guesser.send("alice not-the-one")
        ours = [(e["chatd_event"], e.get("address")) for e in captured if "chatd_event" in e]
        self.assertEqual(
            [kind for kind, _ in ours],
            [
                "sign_on", "join", "register", "bad_password", "identify", "sign_off",
                "bad_password",
            ],
        )  # fmt: skip
        for kind, address in ours:
            if kind != "join":
                self.assertEqual(address, "127.0.0.1", kind)
        wrong = [e for e in captured if e.get("chatd_event") == "bad_password"][-1]
        line = json.loads(logs.json_line(wrong))
        self.assertEqual(
            (line["nick"], line["address"], line["level"]), ("alice", "127.0.0.1", "info")
        )

    def test_no_address(self) -> None:
        """
        A client without an address (here, a test's) logs C{address} null.
        """
        hub = make_hub()
        with capturedLogs() as captured:
            hub.connect(RecordingClient(), "bob")
        (sign_on,) = [e for e in captured if e.get("chatd_event") == "sign_on"]
        self.assertIsNone(sign_on["address"])


class ClusterLogTests(SynchronousTestCase):
    """
    Every node applies every operation; each event is logged by one.
    """

    def test_each_event_once(self) -> None:
        """
        Two nodes, users on both: every change of state is logged once in
        the cluster, by the node of the user who made it, with the
        client's address; a node whose users are declared gone (it died)
        has their sign-offs logged once, by the node that declared it.
        """
        cluster = Cluster()
        a, b = cluster.node("a"), cluster.node("b")
        dead = cluster.node("c")
        with capturedLogs() as captured:
            client = RecordingClient()
            client.address = "192.0.2.1"  # type: ignore[attr-defined]
            entering = a.connect(client, "alice")
            cluster.pump()
            alice = cluster.successResultOf(entering)
            bob = cluster.connect(b, "bob")
            cluster.connect(dead, "carl")
            for done in (a.submit(alice, Join(room="#den")), b.submit(bob, Join(room="#den"))):
                cluster.pump()
                cluster.successResultOf(done)
            for done in (
                a.submit(alice, Register(password="pass-word1")),
                b.submit(bob, Topic(room="#den", text="plans")),
                a.submit(alice, Mode(room="#den", mode="+t")),
                a.submit(alice, Kick(room="#den", nick="bob", reason="out")),
                b.submit(bob, Nick(nick="robert")),
            ):
                cluster.pump()
                cluster.successResultOf(done)
            a.disconnect(alice)
            cluster.pump()
            dead.log.crash()  # type: ignore[attr-defined]
            cluster.clock.advance(30)
            cluster.pump()
        noted = [e for e in captured if "chatd_event" in e]
        self.assertEqual(
            [(e["chatd_event"], e.get("nick")) for e in noted],
            [
                ("sign_on", "alice"), ("join", "alice"), ("sign_on", "bob"), ("join", "bob"),
                ("sign_on", "carl"), ("join", "carl"), ("join", "alice"), ("join", "bob"),
                ("register", "alice"), ("topic", None), ("mode", None), ("kick", "bob"),
                ("nick", None), ("sign_off", "alice"), ("sign_off", "carl"),
            ],
        )  # fmt: skip
        self.assertEqual(noted[0]["address"], "192.0.2.1")
        self.assertEqual(noted[8]["address"], "192.0.2.1")
