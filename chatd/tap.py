# -*- test-case-name: tests.test_tap -*-
"""
C{twistd chatd}: command-line options and the service they describe.
"""

from __future__ import annotations

from twisted.application import strports
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.python import usage

from chatd.doors.line import LineDoor
from chatd.doors.web import make_site
from chatd.doors.websocket import WebSocketDoor
from chatd.hub import Hub
from chatd.service import ChatService
from chatd.store.memory import MemoryHistoryStore

OFF = "none"


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"{value} is not a positive number")
    return number


_positive.coerceDoc = "Must be a positive whole number."  # type: ignore[attr-defined]


class Options(usage.Options):
    """
    Where chatd listens and how much it keeps.  Addresses are Twisted
    endpoint descriptions, so C{ssl:}, C{unix:} and C{tcp6:} work too.
    """

    synopsis = "[options]"
    longdesc = (
        "Run the chatd chat server: a telnet-friendly line door and a web door "
        "(browser client at / and WebSocket at /ws) onto one set of users and "
        "rooms.  Addresses are Twisted endpoint descriptions "
        "(e.g. tcp:1234:interface=127.0.0.1, unix:/run/chatd.sock); "
        f"'{OFF}' turns a door off."
    )
    optParameters = [
        ["line", "l", "tcp:1234", f"Endpoint of the line (telnet) door, or '{OFF}'."],
        ["web", "w", "tcp:8080", f"Endpoint of the web door (client and /ws), or '{OFF}'."],
        ["history-size", None, 100, "Messages kept per room for /history.", _positive],
    ]

    def postOptions(self) -> None:
        from twisted.internet import endpoints, reactor

        if self["line"] == OFF and self["web"] == OFF:
            raise usage.UsageError("Both doors are off; nobody could connect.")
        for door in ("line", "web"):
            if self[door] != OFF:
                try:
                    endpoints.serverFromString(reactor, self[door])
                except Exception as e:  # parsers raise many kinds (OSError, SSL errors...)
                    raise usage.UsageError(
                        f"--{door}: {self[door]!r} is not an endpoint description ({e})"
                    ) from None


def makeService(options: Options, reactor: IReactorCore | None = None) -> ChatService:
    """
    Build the hub and the doors that C{options} ask for.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    assert IReactorTime.providedBy(reactor)
    hub = Hub(reactor, MemoryHistoryStore(per_room=options["history-size"]))
    service = ChatService(hub)
    if options["line"] != OFF:
        line = LineDoor(hub, reactor)
        service.add_door(line, strports.service(options["line"], line, reactor=reactor))
    if options["web"] != OFF:
        websocket = WebSocketDoor(hub, reactor)
        site = make_site(websocket)
        service.add_door(
            websocket,
            strports.service(options["web"], site, reactor=reactor),
            served_by_site=True,
        )
    return service
