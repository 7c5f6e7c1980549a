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
from math import inf
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import TrafficStats
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


class _Unwatched:
    """
    Stands in, once a connection is open, for the Deferreds Autobahn fires
    when it opens and when it closes (C{is_open}, C{is_closed}): nothing in
    chatd waits on them.
    """

    def callback(self, result: object) -> None:
        """
        Nobody is waiting.
        """


class _FactoryOption:
    """
    One of Autobahn's protocol options, read from the door: Autobahn copies
    each option (29 of them) onto every connection that lacks it.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, protocol: Any, owner: type | None = None) -> Any:
        if protocol is None:
            return self
        return getattr(protocol.factory, self.name)


_IDLE: dict[str, object] = {
    # Autobahn's state of an open connection between messages.
    "_perMessageCompress": None,
    "trackedTimings": None,
    "send_state": WebSocketServerProtocol.SEND_STATE_GROUND,
    "data": b"",
    "triggered": False,
    "wasMaxFramePayloadSizeExceeded": False,
    "wasMaxMessagePayloadSizeExceeded": False,
    "closedByMe": False,
    "failedByMe": False,
    "droppedByMe": False,
    "wasClean": False,
    "wasNotCleanReason": None,
    "wasServerConnectionDropTimeout": False,
    "wasOpenHandshakeTimeout": False,
    "wasCloseHandshakeTimeout": False,
    "wasServingFlashSocketPolicyFile": False,
    "localCloseCode": None,
    "localCloseReason": None,
    "remoteCloseCode": None,
    "remoteCloseReason": None,
    "openHandshakeTimeoutCall": None,
    "closeHandshakeTimeoutCall": None,
    "autoPingTimeoutCall": None,
    "autoPingPending": None,
    "autoPingPendingCall": None,
    "autoPingPendingSeq": 0,
    "autoPingPendingSent": None,
    "websocket_version": 13,
    "websocket_protocol_in_use": None,
    "inside_message": False,
    "current_frame": None,
    "_isMessageCompressed": False,
    "utf8validateIncomingCurrentMessage": False,
    "message_is_binary": False,
    "message_data": None,
    "frame_data": None,
    "control_frame_data": None,
    # Stand-ins for what an open connection no longer needs (_SPENT).
    "http_request_data": None,
    "http_status_line": None,
    "http_headers": None,
    "http_request_uri": None,
    "http_request_path": None,
    "http_request_params": None,
    "http_request_host": None,
    "http_response_data": None,
    "websocket_protocols": None,
    "websocket_origin": None,
    "websocket_extensions": None,
    "websocket_extensions_in_use": (),
    "_wskey": None,
    "_transport_details": None,
    "is_open": _Unwatched(),
    "is_closed": _Unwatched(),
    "_valid_events": None,
    "_results": None,
    "send_queue": (),  # only chopped or sync sends use it
    "trafficStats": TrafficStats(),  # counted, never read
    "utf8validator": None,  # the door checks UTF-8 itself
    "current_frame_masker": None,
    "message_data_total_length": 0,
    "frame_length": 0,
}
"""What L{ChatWebSocketProtocol} has as class attributes: an open, idle
connection's state in Autobahn."""

_SPENT = frozenset(
    {
        # The opening handshake.
        "http_request_data",
        "http_status_line",
        "http_headers",
        "http_request_uri",
        "http_request_path",
        "http_request_params",
        "http_request_host",
        "http_response_data",
        "websocket_protocols",
        "websocket_origin",
        "websocket_extensions",
        "websocket_extensions_in_use",
        "_wskey",
        "_ticket",
        "_transport_details",
        # What Autobahn makes for every connection but chatd never uses.
        "is_open",
        "is_closed",
        "_valid_events",
        "_results",
        "send_queue",
        "trafficStats",
        "utf8validator",
        # The last frame's.
        "current_frame_masker",
        "message_data_total_length",
        "frame_length",
    }
)
"""What an open connection drops between messages, whatever its value
(L{ChatWebSocketProtocol._settle}); the class has a stand-in for each."""
_MISSING = object()


class ChatWebSocketProtocol(Session, WebSocketServerProtocol):  # type: ignore[misc]
    """
    One WebSocket connection: C{hello} first, then requests.

    Output is written as the prepared frame's bytes straight to the TCP or
    TLS transport, which is what C{sendPreparedMessage} ends up doing here
    without its per-frame cost (the debug log call whose arguments are built
    even when it is off, traffic counters nobody reads): no compression is
    ever negotiated (the door refuses permessage-deflate), chatd never asks
    Autobahn for C{sync} or chopped sends (L{sendData}), and C{logOctets} is
    off.  Frames are written only while the connection is open, as Autobahn
    would.

    Autobahn keeps some 110 attributes on every connection: 3.3 KiB in one
    dictionary.  Here its options are read from the door (L{_FactoryOption}),
    and between messages a connection keeps only what differs from the
    class's attributes (L{_IDLE}), which are an open, idle connection's
    (L{_settle}).
    """

    door: WebSocketDoor
    transport: Any  # TCP or TLS, taken over from the HTTP channel
    _ticket: Ticket | None = None  # the connection's place, from admission
    _heard = 0.0  # when the peer last sent anything
    _pinged = False  # whether it was pinged since
    # Its options are the door's (_FactoryOption): nothing for Autobahn to
    # copy onto each connection, nor to pretty-print into a debug line that
    # is then thrown away (that was a sixth of a WebSocket sign-on).
    CONFIG_ATTRS: list[str] = []

    def makeConnection(self, transport: Any) -> None:
        """
        Talk to the real (TCP or TLS) transport, not to the admission
        wrapper that relays the connection to us: Autobahn needs the TLS
        transport itself (for channel binding), and writes skip a layer.
        """
        if isinstance(transport, AdmittedConnection):
            self._ticket = transport.taken_over()
            transport = transport.transport
        super().makeConnection(transport)

    def connectionMade(self) -> None:
        super().connectionMade()
        self.stream = self.transport
        no_delay(self.stream)
        self._heard = self.factory.clock.seconds()
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

    def dataReceived(self, data: bytes) -> None:
        """
        Note that the peer is alive, hand C{data} to Autobahn (skipping the
        debug log call its adapter makes for every read), and settle.
        """
        self._heard = self.door.clock.seconds()
        self._pinged = False
        self._dataReceived(data)
        self._settle()

    def _settle(self) -> None:
        """
        Once a frame has ended outside a message on an open connection, keep
        only the attributes that differ from the class's, and none in
        L{_SPENT}: Autobahn sets its frame state anew for every frame (and
        C{current_frame} back to C{None} after it), and a dictionary never
        shrinks by itself.
        """
        attributes = self.__dict__
        if attributes.get("current_frame", _MISSING) is not None or self.inside_message:
            return
        if self.state == _OPEN:
            self.__dict__ = {
                name: value
                for name, value in attributes.items()
                if name not in _SPENT and _CLASS_VALUES.get(name, _MISSING) is not value
            }

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """
        Autobahn's own frames (the handshake's answer, pings, pongs, close
        frames) go out like the door's output: into this pass's L{Batch} on
        plain TCP.  (chatd never asks for C{sync} or chopped sends.)
        """
        if self.batch is not None:
            self.batch.push(data)
        else:
            self.transport.write(data)

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

    def watch(self, now: float) -> float:
        """
        Ping a peer silent for C{ping_interval} seconds, and drop it if
        nothing comes back within C{ping_timeout}: Autobahn's automatic
        pings, without its two timers per connection.
        """
        limits = self.door.limits
        if limits.ping_interval <= 0:
            return inf
        if now - self._heard < limits.ping_interval:
            return self._heard + limits.ping_interval
        if self.state != _OPEN:  # opening (the sign-on deadline) or closing
            return inf
        if not self._pinged:
            self._pinged = True
            self.sendPing()
            return now + limits.ping_timeout
        self.onAutoPingTimeout()
        return inf

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


for _name, _value in _IDLE.items():
    setattr(ChatWebSocketProtocol, _name, _value)
for _name in WebSocketServerProtocol.CONFIG_ATTRS:
    setattr(ChatWebSocketProtocol, _name, _FactoryOption(_name))
_CLASS_VALUES = {
    name: value
    for cls in reversed(ChatWebSocketProtocol.__mro__)
    for name, value in vars(cls).items()
}
"""Every attribute of L{ChatWebSocketProtocol}'s class, by name, for
L{ChatWebSocketProtocol._settle}."""


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
        "utf8validateIncoming": False,  # and no validator is kept (_SPENT)
        "failByDrop": False,
        # No timers per connection: the door's sweep pings silent peers
        # (ChatWebSocketProtocol.watch), and the sign-on deadline covers the
        # opening handshake.
        "autoPingInterval": 0,
        "openHandshakeTimeout": 0,
        "perMessageCompressionAccept": lambda offers: None,
        # Nagle off (see chatd.doors.base.no_delay): Autobahn sets it on a
        # TCP transport; the door's connectionMade also does it under TLS.
        "tcpNoDelay": True,
    }
