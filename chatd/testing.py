"""
Test doubles for driving the hub and the doors in memory, shipped with
chatd (as Twisted ships C{twisted.internet.testing}) so that extensions'
tests can use them too.

Build a door's protocol from its factory, connect it to a
C{StringTransport}, feed bytes, read what it wrote, and use a
C{task.Clock} for time: L{LinePeer} and L{WebSocketPeer} do exactly that
for the two doors.  L{RecordingClient} is a connection as the hub sees it;
L{SharedLog} and L{MemoryLog} stand in for Redis under the nodes of a
cluster (L{chatd.cluster.node.ClusterGateway}).

This module depends only on what chatd installs, and on nothing in
chatd's own C{tests}.
"""

from __future__ import annotations

import json
import struct
from bisect import bisect_right
from collections.abc import Callable
from typing import Any, cast

from argon2 import PasswordHasher
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.cluster.ops import Hello, Operation, encode
from chatd.doors.line import LineDoor
from chatd.doors.websocket import WebSocketDoor
from chatd.hub import Hub, LocalGateway, User
from chatd.hub.passwords import Passwords
from chatd.interfaces import IClient, IEncoder, IOpLog
from chatd.model import Event
from chatd.requests import Register

__all__ = [
    "BINARY",
    "CLOSE",
    "CONT",
    "DO_BINARY",
    "HANDSHAKE",
    "MASK_KEY",
    "PEER",
    "PING",
    "PONG",
    "TEXT",
    "LineDoorReceiver",
    "LinePeer",
    "MemoryLog",
    "PassThrough",
    "RecordingClient",
    "SharedLog",
    "StreamPeer",
    "TCPLikeTransport",
    "WebSocketPeer",
    "client_frame",
    "events",
    "make_hub",
    "mask",
    "quick_passwords",
    "server_frames",
    "signed_on",
]

PEER = IPv4Address("TCP", "127.0.0.1", 40000)
"""The address every in-memory connection comes from."""

DO_BINARY = b"\xff\xfd\x00"
"""The line door's first bytes: telnet's C{IAC DO TRANSMIT-BINARY}."""


# -- the hub --------------------------------------------------------------------


@implementer(IEncoder)
class PassThrough:
    """
    An encoder that leaves events as they are, so tests can inspect them.
    """

    def __init__(self) -> None:
        self.encoded = 0

    def encode(self, event: Event) -> Event:
        self.encoded += 1
        return event


@implementer(IClient)
class RecordingClient:
    """
    A hub client that records every event delivered to it.
    """

    def __init__(self, encoder: IEncoder | None = None) -> None:
        self.encoder = PassThrough() if encoder is None else encoder
        self.events: list[Any] = []
        self.closed = False

    def send(self, payload: Any, optional: bool = False) -> None:
        self.events.append(payload)

    def push(self, payload: Any) -> None:
        self.send(payload)

    def close(self) -> None:
        self.closed = True

    def take(self) -> list[Any]:
        """
        Return and forget the events received so far.
        """
        events, self.events = self.events, []
        return events


def quick_passwords() -> Passwords:
    """
    Password hashing that is cheap and done at once, on the calling thread,
    so that tests stay fast and synchronous (the real one uses threads).
    """
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    return Passwords(hasher, in_thread=lambda work, *args: maybeDeferred(work, *args))


def make_hub(clock: Clock | None = None, **kwargs: Any) -> Hub:
    """
    A hub on C{clock} (a new C{Clock} if None) with L{quick_passwords},
    unless C{kwargs} say otherwise: the usual hub of a test.
    """
    kwargs.setdefault("passwords", quick_passwords())
    return Hub(Clock() if clock is None else clock, **kwargs)


def signed_on(hub: Hub, nick: str, client: RecordingClient | None = None) -> User:
    """
    Connect a recording client as C{nick} and forget its welcome.
    """
    client = RecordingClient() if client is None else client
    user = hub.connect(client, nick)
    client.take()
    return user


def register(hub: Hub, user: User, password: str) -> Deferred[None]:
    """
    Register C{user}'s nickname with C{password}, as its C{/register} does
    (through the gateway of a hub that runs alone).
    """
    registering = LocalGateway(hub).submit(user, Register(password=password))
    assert registering is not None
    return registering


def events(user: User) -> list[Any]:
    """
    The events delivered to C{user}'s recording client since the last call.
    """
    client = user.client
    assert isinstance(client, RecordingClient)
    return client.take()


# -- the line door --------------------------------------------------------------


class TCPLikeTransport(StringTransport):
    """
    A C{StringTransport} that, like a real TCP transport, lets a protocol
    unregister a producer it never registered (Autobahn does, on dropping),
    and records whether the connection was aborted.
    """

    aborted = False

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = None

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


class LineDoorReceiver(LineReceiver):
    """
    A client of the line door over a real connection, as C{nc} would be, but
    for the door's opening request to telnet clients (L{DO_BINARY}), which
    it checks for and drops.
    """

    delimiter = b"\r\n"
    _opened: bytes | None = b""

    def dataReceived(self, data: bytes) -> None:
        if self._opened is not None:
            opened = self._opened + data
            if len(opened) < len(DO_BINARY):
                self._opened = opened
                return
            self._opened = None
            assert opened.startswith(DO_BINARY), opened
            data = opened[len(DO_BINARY) :]
        super().dataReceived(data)


class StreamPeer:
    """
    A connection of a door whose protocol is built by its factory, on a
    C{StringTransport}, seen from the peer: what it sends, what it got.
    """

    def __init__(self, door: ServerFactory) -> None:
        protocol = door.buildProtocol(PEER)
        assert protocol is not None
        self.protocol: Any = protocol
        self.transport = TCPLikeTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes | str) -> None:
        """
        Feed raw bytes (or one line of text, CR LF appended) to the server.
        """
        if isinstance(data, str):
            data = data.encode("utf-8") + b"\r\n"
        self.protocol.dataReceived(data)

    def received(self) -> bytes:
        """
        The raw bytes written since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        return data

    def lines(self) -> list[str]:
        """
        The lines written since the last call (each must end in CR LF).
        """
        data = self.received()
        assert data == b"" or data.endswith(b"\r\n"), data
        text = data.decode("utf-8")
        return text.split("\r\n")[:-1]

    def disconnect(self) -> None:
        """
        The connection is gone (as if the peer closed it).
        """
        self.protocol.connectionLost(Failure(ConnectionDone()))


class LinePeer(StreamPeer):
    """
    A line-door connection on a C{StringTransport}, seen from the peer.

    The door's first bytes, its request that telnet clients send binary,
    are checked and taken, so that L{lines} starts with the banner.
    """

    def __init__(self, door: LineDoor) -> None:
        super().__init__(door)
        first = self.transport.value()
        if first.startswith(DO_BINARY):
            self.transport.clear()
            self.transport.write(first[len(DO_BINARY) :])

    def sign_on(self, nick: str) -> None:
        """
        Answer the nickname prompt with C{nick} and forget the welcome.
        """
        self.send(nick)
        self.received()


# -- the WebSocket door ---------------------------------------------------------

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
"""A browser's WebSocket upgrade request for C{/ws}, with no C{Origin}."""

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
"""RFC 6455's opcodes."""

MASK_KEY = b"\x37\xfa\x21\x3d"
"""The masking key of L{client_frame}'s frames unless told: a fixed one, so
that tests (and fuzzers' inputs) are the same bytes every run."""


def mask(payload: bytes, key: bytes) -> bytes:
    """
    C{payload} masked (or unmasked) with the four bytes of C{key}, as RFC
    6455 has clients mask their frames (one big XOR: payloads may be large).
    """
    size = len(payload)
    stream = (key * (size // 4 + 1))[:size]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")
    return masked.to_bytes(size, "big")


def client_frame(
    payload: bytes,
    opcode: int = TEXT,
    *,
    key: bytes = MASK_KEY,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
) -> bytes:
    """
    A client-to-server WebSocket frame: final and masked with C{key}, as
    clients must send them, unless C{fin}, C{rsv} (the three reserved bits)
    or C{masked} say otherwise (to send frames that break the rules).
    """
    first = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)
    bit = 0x80 if masked else 0
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, bit | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, bit | 127, size)
    if not masked:
        return header + payload
    return header + key + mask(payload, key)


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """
    Split unmasked server-to-client frames into (opcode, payload) pairs.
    """
    frames = []
    while data:
        opcode = data[0] & 0x0F
        size = data[1] & 0x7F
        offset = 2
        if size == 126:
            (size,) = struct.unpack("!H", data[2:4])
            offset = 4
        elif size == 127:
            (size,) = struct.unpack("!Q", data[2:10])
            offset = 10
        frames.append((opcode, data[offset : offset + size]))
        data = data[offset + size :]
    return frames


class WebSocketPeer:
    """
    A WebSocket-door connection on a C{StringTransport}, past the handshake.
    """

    def __init__(
        self, door: WebSocketDoor, origin: str | None = None, must_accept: bool = True
    ) -> None:
        self.protocol = cast(Protocol, door.buildProtocol(PEER))
        self.transport = TCPLikeTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.transport)
        handshake = HANDSHAKE
        if origin is not None:
            handshake = handshake[:-2] + b"Origin: " + origin.encode() + b"\r\n\r\n"
        self.protocol.dataReceived(handshake)
        self.response = self.transport.value()
        self.transport.clear()
        assert self.accepted or not must_accept, self.response

    @property
    def accepted(self) -> bool:
        """
        Whether the server accepted the WebSocket handshake.
        """
        return self.response.startswith(b"HTTP/1.1 101 ")

    def send_raw(self, payload: bytes, opcode: int = TEXT) -> None:
        """
        Send one frame of C{payload}, whatever it holds.
        """
        self.protocol.dataReceived(client_frame(payload, opcode))

    def send(self, **request: Any) -> None:
        """
        Send one JSON request, e.g. C{peer.send(type="say", room=..., text=...)}.
        """
        self.send_raw(json.dumps(request).encode("utf-8"))

    def frames(self) -> list[tuple[int, bytes]]:
        """
        The frames sent since the last call, as (opcode, payload) pairs.
        """
        data = self.transport.value()
        self.transport.clear()
        return server_frames(data)

    def received(self) -> list[dict[str, Any]]:
        """
        The JSON objects sent since the last call (all must be text frames).
        """
        result = []
        for opcode, payload in self.frames():
            assert opcode == TEXT, (opcode, payload)
            result.append(json.loads(payload))
        return result

    def sign_on(self, nick: str) -> None:
        """
        Say hello as C{nick} and forget the welcome.
        """
        self.send(type="hello", nick=nick)
        self.received()

    def disconnect(self) -> None:
        """
        The connection is gone (as if the peer closed it).
        """
        self.protocol.connectionLost(Failure(ConnectionDone()))


# -- a cluster's log ------------------------------------------------------------


class SharedLog:
    """
    One ordered log of operations for the nodes of a cluster in one
    process, each following it through its own L{MemoryLog}: Redis's
    stream and keys, in memory.

    Entries reach the nodes when L{pump} is called.  Given a C{clock}, each
    entry also reaches them at the next tick after it was added, as it
    would come back from Redis (so one L{MemoryLog} on it is a cluster of
    one node that runs by the clock alone).

    Set C{down} to make the log unreachable: hellos and appends then fail
    (tell the nodes with L{MemoryLog.notify}).

    @ivar entries: every C{(seq, op)} so far, in order.
    @ivar followers: C{[deliver, seq of the last entry delivered]} by node.
    @ivar alive: the nodes whose heartbeat runs.
    @ivar snapshots: what was left for starting nodes, by node.
    """

    def __init__(self, clock: IReactorTime | None = None) -> None:
        self.clock = clock
        self.seq = 0
        self.entries: list[tuple[int, str]] = []
        self.followers: dict[str, list[Any]] = {}
        self.alive: set[str] = set()
        self.snapshots: dict[str, str] = {}
        self.down = False

    def add(self, op: str) -> int:
        """
        Append C{op} and return its number.
        """
        self.seq += 1
        self.entries.append((self.seq, op))
        if self.clock is not None:
            self.clock.callLater(0, self.pump, self.seq)
        return self.seq

    def pump(self, upto: int | None = None) -> None:
        """
        Deliver to every follower each entry (up to number C{upto} if
        given) it has not had yet, in order: one entry to each in turn,
        until none is left, those added meanwhile included.
        """
        progress = True
        while progress:
            progress = False
            for follower in list(self.followers.values()):
                deliver, position = follower
                after = bisect_right(self.entries, position, key=lambda entry: entry[0])
                if after < len(self.entries):
                    seq, op = self.entries[after]
                    if upto is None or seq <= upto:
                        follower[1] = seq
                        deliver(seq, op)
                        progress = True


@implementer(IOpLog)
class MemoryLog:
    """
    One node's connection to a L{SharedLog}: the C{IOpLog} to give a
    L{chatd.cluster.node.ClusterGateway} instead of one on Redis.

    @ivar watchers: who L{watch} was asked to tell of the log's reach.
    """

    heartbeat_ttl = 10.0

    def __init__(self, shared: SharedLog) -> None:
        self.shared = shared
        self.node = ""
        self.watchers: list[Callable[[bool], None]] = []

    def hello(self, node: str, deliver: Callable[[int, str], None]) -> Deferred[Any]:
        if self.shared.down:
            return fail(ConnectionError("down"))
        self.node = node
        others = sorted(self.shared.alive - {node})
        responder = others[0] if others else None
        seq = self.shared.add(encode(Operation(node, 0, 0, None, Hello(responder=responder))))
        self.shared.alive.add(node)
        self.shared.followers[node] = [deliver, seq]
        return succeed((seq, responder))

    def append(self, op: str) -> Deferred[int]:
        if self.shared.down or self.node not in self.shared.followers:
            return fail(ConnectionError("down"))
        return succeed(self.shared.add(op))

    def put_snapshot(self, node: str, data: str) -> Deferred[None]:
        self.shared.snapshots[node] = data
        return succeed(None)

    def get_snapshot(self, node: str) -> Deferred[str | None]:
        return succeed(self.shared.snapshots.pop(node, None))

    def dead(self, nodes: list[str]) -> Deferred[list[str]]:
        return succeed([n for n in nodes if n not in self.shared.alive])

    def watch(self, callback: Callable[[bool], None]) -> None:
        self.watchers.append(callback)

    def stop(self) -> Deferred[None]:
        self.shared.alive.discard(self.node)
        self.shared.followers.pop(self.node, None)
        return succeed(None)

    def crash(self) -> None:
        """
        The node dies: it stops reading and its heartbeat lapses.
        """
        self.shared.alive.discard(self.node)
        self.shared.followers.pop(self.node, None)

    def notify(self, reachable: bool) -> None:
        """
        Tell the watchers that the log can, or cannot, be reached (as the
        connection to Redis would).
        """
        for watcher in list(self.watchers):
            watcher(reachable)
