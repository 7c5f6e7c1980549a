"""
Numbers from clients -- history page sizes and message ids -- are checked
at the door, and again in the hub: none out of range reaches a store.  And
nothing a client sends is logged as an error (L{LogLevelFuzzTests}): only
faults of the server itself may be.

(A WebSocket C{history} with C{before} 2**70 reached SQLite, which raised
C{OverflowError} in its thread: the client got C{history_unavailable} and
the server logged a critical "Failed fetching history".)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogEvent, LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd.doors.line import LineDoor
from chatd.doors.websocket import WebSocketDoor
from chatd.errors import ChatError
from chatd.hub import Hub
from chatd.limits import Limits
from chatd.model import MAX_ID, check_number
from chatd.store.sqlite import SQLiteStore
from chatd.testing import LinePeer, WebSocketPeer, make_hub, signed_on
from tests.fuzz.actions import Action
from tests.fuzz.invariants import FuzzFailure
from tests.fuzz.runner import FuzzTestCase, fuzz
from tests.fuzz.strategies import actions
from tests.support.processes import scratch_dir

TOO_BIG = (MAX_ID + 1, 2**70, 10**100)
LINE_USAGE = f"!!! Usage: /history [#room|NICK] [N] [BEFORE], each at most {MAX_ID}"


def errors(events: list[LogEvent]) -> list[str]:
    """
    The events among C{events} logged at level C{error} or above, or with
    a failure, as text.
    """
    return [
        formatEvent(e)
        for e in events
        if e.get("log_failure") is not None
        or e.get("log_level") in (LogLevel.error, LogLevel.critical)
    ]


@contextmanager
def no_errors_logged(case: SynchronousTestCase) -> Iterator[list[LogEvent]]:
    """
    Fail C{case} if anything is logged at level C{error} or above (or with
    a failure) within the block.
    """
    with capturedLogs() as events:
        yield events
    case.assertEqual(errors(events), [])


class CheckNumberTests(SynchronousTestCase):
    def test_range(self) -> None:
        """
        A number is from 1 to L{MAX_ID}, the largest integer SQLite keeps.
        """
        self.assertEqual(MAX_ID, 2**63 - 1)
        for good in (1, 20, MAX_ID):
            self.assertEqual(check_number(good, "N"), good)
        for bad in (0, -1, -(2**70), *TOO_BIG):
            error = self.assertRaises(ChatError, check_number, bad, "N")
            self.assertEqual(error.code, "bad_request")
            self.assertEqual(error.message, f"N must be a whole number from 1 to {MAX_ID}")


class HubTests(SynchronousTestCase):
    def test_message_ids_checked(self) -> None:
        """
        The hub refuses a C{before} out of range itself, for rooms and for
        private history, whatever door asked (C{bad_request}).
        """
        hub = make_hub()
        alice = signed_on(hub, "alice")
        for before in (0, -5, *TOO_BIG):
            for request in (hub.history, hub.private_history):
                target = "#lobby" if request == hub.history else "bob"
                error = self.assertRaises(ChatError, request, alice, target, 5, before)
                self.assertEqual(error.code, "bad_request")
        hub.history(alice, "#lobby", 2**70, MAX_ID)  # a huge page is the largest page


class WebSocketTests(SynchronousTestCase):
    def setUp(self) -> None:
        clock = Clock()
        self.hub = Hub(clock)
        self.peer = WebSocketPeer(WebSocketDoor(self.hub, clock, Limits(flood_rate=0)))
        self.peer.sign_on("alice")
        self.peer.send(type="say", room="#lobby", text="hello")
        self.peer.received()

    def test_out_of_range(self) -> None:
        """
        C{limit} and C{before} (room or private history) out of 1..MAX_ID
        are C{bad_request}, naming the field.
        """
        for field in ("limit", "before"):
            for value in (0, -1, *TOO_BIG):
                for target in ({"room": "#lobby"}, {"with": "bob"}):
                    self.peer.send(type="history", **target, **{field: value})
                    self.assertEqual(
                        self.peer.received(),
                        [
                            {
                                "type": "error",
                                "code": "bad_request",
                                "message": f"Field {field!r} must be an integer from 1 to {MAX_ID}",
                                "request": "history",
                            }
                        ],
                    )

    def test_in_range(self) -> None:
        """
        The largest C{before} and a large C{limit} are served (the page at
        most 200 messages).
        """
        self.peer.send(type="history", room="#lobby", limit=2**62, before=MAX_ID)
        (page,) = self.peer.received()
        self.assertEqual(page["type"], "history")
        self.assertEqual([m["text"] for m in page["messages"]], ["hello"])

    def test_huge_json_numbers(self) -> None:
        """
        A number too long for Python to read is not JSON this server takes
        (C{bad_json}); a float is not an integer (C{bad_request}).
        """
        self.peer.send_raw(b'{"type": "history", "room": "#lobby", "before": ' + b"9" * 5000 + b"}")
        self.assertEqual(self.peer.received()[0]["code"], "bad_json")
        self.peer.send_raw(b'{"type": "history", "room": "#lobby", "before": 1e300}')
        self.assertEqual(self.peer.received()[0]["code"], "bad_request")


class LineTests(SynchronousTestCase):
    def setUp(self) -> None:
        clock = Clock()
        self.hub = Hub(clock)
        self.door = LineDoor(self.hub, clock, Limits(flood_rate=0, max_line=20000))
        self.peer = LinePeer(self.door)
        self.peer.sign_on("alice")
        self.peer.send("hello")
        self.peer.received()

    def test_out_of_range(self) -> None:
        """
        C{/history} with N or BEFORE past L{MAX_ID} is a usage error that
        says so; a number too long for Python's C{int} (over 4300 digits)
        too, not a bug.
        """
        for number in (*(str(n) for n in TOO_BIG), "9" * 5000, "0" * 30 + "1" + "0" * 19):
            for command in (
                f"/history {number}",
                f"/history #lobby 5 {number}",
                f"/history bob {number} 5",
            ):
                with no_errors_logged(self):
                    self.peer.send(command)
                    self.assertEqual(self.peer.lines(), [LINE_USAGE], command[:40])

    def test_in_range(self) -> None:
        """
        The largest BEFORE, written with leading zeros or not, is served;
        N and BEFORE below 1 are refused by the hub, as before.
        """
        for before in (str(MAX_ID), "000" + str(MAX_ID)):
            self.peer.send(f"/history #lobby 5 {before}")
            lines = self.peer.lines()
            self.assertEqual(lines[0], "*** Last 1 message of #lobby:")
        self.peer.send("/history 0")
        self.assertEqual(self.peer.lines(), ["!!! The history limit must be a positive number"])
        self.peer.send("/history #lobby 5 0")
        self.assertEqual(
            self.peer.lines(), [f"!!! A message id must be a whole number from 1 to {MAX_ID}"]
        )


class SQLiteTests(TestCase):
    """
    The issue's steps against a real SQLite store, whose reads run in
    threads.
    """

    timeout = 10

    def setUp(self) -> None:
        clock = Clock()
        store = SQLiteStore(str(scratch_dir(self) / "chatd.sqlite"), clock)
        self.hub = Hub(clock, store, state=store.load())
        self.addCleanup(store.close)
        limits = Limits(flood_rate=0)
        self.ws = WebSocketPeer(WebSocketDoor(self.hub, clock, limits))
        self.line = LinePeer(LineDoor(self.hub, clock, limits))
        self.ws.sign_on("alice")
        self.line.sign_on("bob")
        self.ws.send(type="say", room="#lobby", text="stored")
        self.ws.received()
        self.line.received()

    async def answer(self, receive: Callable[[], list[Any]]) -> list[Any]:
        """
        What a peer receives next, waiting for the store's threads.
        """
        for _ in range(2000):
            got = receive()
            if got:
                return got
            await deferLater(reactor, 0.005)
        raise AssertionError("no answer")

    async def test_huge_before(self) -> None:
        """
        C{before} 2**70 on either door is refused at once and logs no
        error; the largest id reads the store.
        """
        with no_errors_logged(self):
            self.ws.send(type="history", room="#lobby", before=2**70)
            (error,) = self.ws.received()
            self.assertEqual(error["code"], "bad_request")
            self.ws.send(type="history", before=2**70, **{"with": "bob"})
            (error,) = self.ws.received()
            self.assertEqual(error["code"], "bad_request")
            self.line.send(f"/history #lobby 5 {2**70}")
            self.assertEqual(self.line.lines(), [LINE_USAGE])
            self.ws.send(type="history", room="#lobby", before=MAX_ID)
            (page,) = await self.answer(self.ws.received)
            self.assertEqual([m["text"] for m in page["messages"]], ["stored"])
            self.line.send(f"/history alice 5 {MAX_ID}")
            lines = await self.answer(self.line.lines)
            self.assertEqual(lines, ["*** No private messages with alice"])


class LogLevelFuzzTests(FuzzTestCase):
    """
    The fuzzer's worlds (L{tests.fuzz}), which check that no failure
    is logged, checked for any event at level C{error} or C{critical} too.
    """

    def play(self, actions: list[Action], shutdown: bool, web: bool) -> None:
        with capturedLogs() as events:
            super().play(actions, shutdown, web)
        logged = errors(events)
        if logged:
            raise FuzzFailure(f"client input was logged as an error: {logged[:3]!r}")

    @fuzz(40)
    @given(actions(line=4, websocket=4, other=2), st.booleans(), st.booleans())
    def test_both_doors(self, actions: list[Action], shutdown: bool, web: bool) -> None:
        """
        Whatever clients send on either door, nothing is logged at level
        C{error} or above.
        """
        self.play(actions, shutdown, web)
