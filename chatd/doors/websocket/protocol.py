# -*- test-case-name: tests.test_websocket -*-
"""
The WebSocket door: one JSON object per text frame, dispatched on C{type}.

Requests map one-to-one onto hub calls; hub events are rendered to JSON and
framed once per event (an Autobahn prepared message) for all recipients.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.doors.admission import AdmittedConnection, Ticket
from chatd.doors.base import Door, Session, no_delay
from chatd.doors.flow import Throttle
from chatd.doors.origin import MalformedOrigin, forwarded_client
from chatd.doors.websocket.rendering import WebSocketEncoder
from chatd.errors import ChatError
from chatd.hub import Hub
from chatd.hub.gateway import Answer
from chatd.interfaces import IDoor, IGateway
from chatd.limits import Limits
from chatd.model import (
    Error,
)
from chatd.requests import USER_REQUESTS, Request, from_wire

NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
CONNECTION_DONE = Failure(ConnectionDone())


_OPEN = WebSocketServerProtocol.STATE_OPEN


class ChatWebSocketProtocol(Session, WebSocketServerProtocol):  # type: ignore[misc]
    """
    One WebSocket connection: C{hello} first, then requests.

    Output is written as the prepared frame's bytes straight to the TCP or
    TLS transport, which is what C{sendPreparedMessage} ends up doing here
    without its per-frame cost (the debug log call whose arguments are built
    even when it is off, traffic counters nobody reads): no compression is
    ever negotiated (the door refuses permessage-deflate), chatd never asks
    Autobahn for C{sync} or chopped sends (so its send queue stays empty and
    nothing can be overtaken), and C{logOctets} is off.  Frames are written
    only while the connection is open, as Autobahn would.
    """

    door: WebSocketDoor
    transport: Any  # TCP or TLS, taken over from the HTTP channel
    _ticket: Ticket | None = None  # the connection's place, from admission

    def makeConnection(self, transport: Any) -> None:
        """
        Talk to the real (TCP or TLS) transport, not to the admission
        wrapper that relays the connection to us: Autobahn needs the TLS
        transport itself (for channel binding), and writes skip a layer.
        """
        if isinstance(transport, AdmittedConnection):
            self._ticket = transport.ticket
            transport = transport.transport
        super().makeConnection(transport)

    def connectionMade(self) -> None:
        super().connectionMade()
        self.stream = self.transport
        no_delay(self.stream)
        outbox = self.started(self.factory)
        # The HTTP channel that accepted the upgrade was the producer until now.
        self.transport.unregisterProducer()
        self.transport.registerProducer(outbox, True)

    def connectionLost(self, reason: Failure = CONNECTION_DONE) -> None:
        super().connectionLost(reason)
        # Autobahn leaves this timer behind when the peer vanishes mid-close.
        timer, self.closeHandshakeTimeoutCall = self.closeHandshakeTimeoutCall, None
        if timer is not None and timer.active():
            timer.cancel()
        self.ended()

    def onConnect(self, request: ConnectionRequest) -> None:
        """
        Refuse cross-site handshakes (Cross-Site WebSocket Hijacking).
        """
        origin = request.headers.get("origin")
        if not self.door.origins.allows(origin, request.headers.get("host")):
            self.door.count("bad_origin")
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")
        ticket = self._ticket
        if ticket is not None and ticket.host is not None:
            self._admit(ticket, ticket.host, request.headers)

    def _admit(self, ticket: Ticket, peer: str, headers: dict[str, str]) -> None:
        """
        Count this session as a chat connection of its client (behind a
        trusted proxy, the one its forwarding headers name), or refuse it.
        """
        admission = ticket.admission
        try:
            client = forwarded_client(peer, headers, admission.trusted)
        except MalformedOrigin as e:
            self.door.count("bad_forwarded")
            self.door.log.warn(
                "Refused a WebSocket session from proxy {peer}: bad forwarding header ({why})",
                peer=peer,
                why=str(e),
            )
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, "bad forwarding header") from None
        why = admission.promote(ticket, client)
        if why is not None:
            raise ConnectionDeny(ConnectionDeny.SERVICE_UNAVAILABLE, why)
        self.address = client

    def write(self, frame: bytes) -> None:
        if self.state == _OPEN:
            if self.batch is not None:
                self.batch.push(frame)
            else:
                self.transport.write(frame)

    def direct(self) -> Callable[[bytes], None]:
        """
        Into this pass's L{Batch}, on a plain TCP connection.  That skips
        the check that the connection is open: whatever ends that state
        (L{finish}, the peer's close frame) closes the outbox first, which
        stops the fan-out from calling this.
        """
        if self.batch is not None:
            return self.batch.push
        return self.write

    def payload_size(self, frame: bytes) -> int:
        return len(frame)

    def onCloseFrame(self, code: int, reasonRaw: bytes) -> bool | None:
        self.outbox.close()
        result: bool | None = super().onCloseFrame(code, reasonRaw)
        return result

    def finish(self) -> None:
        """
        Close with 1001 when the server is going away, else 1000 (a quit,
        a kill, a takeover, a timeout: the error frame before said why).
        """
        if self.batch is not None:
            self.batch.flush()
        self.outbox.close()
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            if self.door.shutting_down:
                self.sendCloseFrame(GOING_AWAY, b"server shutting down")
            else:
                self.sendCloseFrame(NORMAL_CLOSURE, b"goodbye")
        else:
            # TLS will not close while a producer is registered.
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self.door.count("binary_frame")
            self.sendCloseFrame(UNSUPPORTED_DATA, b"binary frames are not accepted")
            return
        self.received(payload)

    def handle(self, payload: bytes) -> None:
        """
        Act on one JSON request.
        """
        try:
            request = json.loads(payload.decode("utf-8"))
        except UnicodeDecodeError:
            self.deliver(Error("bad_utf8", "That frame is not valid UTF-8"))
            return
        except ValueError:
            self.deliver(Error("bad_json", "That frame is not valid JSON"))
            return
        except RecursionError:
            self.deliver(Error("bad_json", "That JSON is nested too deeply"))
            return
        if not isinstance(request, dict) or not isinstance(request.get("type"), str):
            self.deliver(Error("bad_request", 'Send a JSON object with a string "type"'))
            return
        kind = request["type"]
        if kind == "hello":
            self.attempt(self._hello, request, named=kind)
            return
        requested = USER_REQUESTS.get(kind)
        if requested is None:
            self.deliver(Error("unknown_type", f"Unknown request type {kind[:40]!r}"))
        elif self.user is None:
            self.deliver(Error("hello_first", 'Say {"type": "hello", "nick": ...} first'))
        else:
            self.attempt(self._submit, requested, request, named=kind)

    def _hello(self, request: dict[str, Any]) -> Deferred[bool]:
        hello = from_wire(Hello, request)
        if self.user is not None:
            raise ChatError("already_welcomed", "You already have a nickname; use 'nick'")
        return self.sign_on(hello.nick, hello.password)

    def _submit(self, requested: type[Request], request: dict[str, Any]) -> Answer:
        return self.submit(from_wire(requested, request))


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Request):
    """
    The first request on a WebSocket: the nickname, and its password if
    it is registered.
    """

    type = "hello"
    nick: str
    password: str | None = None


class OriginPolicy:
    """
    Which web pages may open a WebSocket to the door.

    By default only pages served by the door itself: the C{Origin} must name
    the host the browser connected to (its C{Host} header), so a page on
    another site cannot act as a visitor who is logged in here.  Extra
    origins are given as users write them (C{https://chat.example}) and
    compared with default ports filled in; C{*} allows any.  A request with
    no C{Origin} comes from a program, not a browser, and is allowed; the
    opaque C{null} origin is refused.
    """

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        allowed = list(allowed)
        self.any = "*" in allowed
        self.allowed = {normalise_origin(o) for o in allowed if o != "*"}

    def allows(self, origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True
        if origin == "null":
            return False
        if self.any:
            return True
        try:
            normal = normalise_origin(origin)
        except ValueError:
            return False
        if normal in self.allowed:
            return True
        scheme, _, netloc = normal.partition("://")
        name, _, port = netloc.rpartition(":")
        same_site = name if port == _DEFAULT_PORTS[scheme] else netloc
        return host is not None and host.lower() in (same_site, netloc)


_DEFAULT_PORTS = {"http": "80", "https": "443"}


def normalise_origin(origin: str) -> str:
    """
    C{scheme://host:port} with the scheme and host lower-cased and the
    default port filled in: C{https://Chat.Example} is
    C{https://chat.example:443}.
    """
    parts = urlsplit(origin.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"{origin!r} is not an origin like https://chat.example")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or _DEFAULT_PORTS[scheme]
    return f"{scheme}://{host}:{port}"


class _ReactorTimer:
    """
    Autobahn's per-protocol timers (handshake and ping timeouts) scheduled on
    the door's own reactor, so that tests can drive them with a C{Clock}.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock

    def call_later(
        self, delay: float, fn: Callable[..., object], *args: Any, **kwargs: Any
    ) -> IDelayedCall:
        return self._clock.callLater(delay, fn, *args, **kwargs)


@implementer(IDoor)
class WebSocketDoor(Door, WebSocketServerFactory):
    """
    The factory of the WebSocket door, served at C{/ws} by L{chatd.doors.web}.
    """

    name = "websocket"
    protocol = ChatWebSocketProtocol

    def __init__(
        self,
        hub: Hub | IGateway,
        clock: IReactorTime,
        limits: Limits | None = None,
        throttle: Throttle | None = None,
        origins: OriginPolicy | None = None,
    ) -> None:
        WebSocketServerFactory.__init__(self, url=None, server="chatd", reactor=clock)
        Door.__init__(self, hub, WebSocketEncoder(), clock, limits, throttle)
        self.origins = OriginPolicy() if origins is None else origins
        self._batched_timer = _ReactorTimer(clock)
        self.setProtocolOptions(**protocol_options(self.limits))


def protocol_options(limits: Limits) -> dict[str, Any]:
    """
    The Autobahn protocol options of the WebSocket door (whose defaults are
    wide open: unlimited sizes, no keepalive).  Oversize messages are closed
    with 1009 rather than dropped; UTF-8 is checked by the door, which
    answers invalid text with an error instead of closing.
    """
    return {
        "maxFramePayloadSize": limits.max_frame,
        "maxMessagePayloadSize": limits.max_frame,
        "utf8validateIncoming": False,
        "failByDrop": False,
        "autoPingInterval": limits.ping_interval,
        "autoPingTimeout": limits.ping_timeout,
        "openHandshakeTimeout": limits.sign_on_timeout,
        "perMessageCompressionAccept": lambda offers: None,
        # Nagle off (see chatd.doors.base.no_delay): Autobahn sets it on a
        # TCP transport; the door's connectionMade also does it under TLS.
        "tcpNoDelay": True,
    }
