"""
Test doubles for driving the hub and the doors in memory.

These are also the pattern for people extending chatd: build a door's
protocol from its factory, connect it to a C{StringTransport}, feed bytes,
read what it wrote.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

from argon2 import PasswordHasher
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.accounts import Passwords
from chatd.doors.line import LineDoor
from chatd.doors.websocket import WebSocketDoor
from chatd.hub import Hub, User
from chatd.interfaces import IClient, IEncoder, IOpLog
from chatd.model import Event
from tests.processes import DO_BINARY

PEER = IPv4Address("TCP", "127.0.0.1", 40000)


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


def events(user: User) -> list[Any]:
    """
    The events delivered to C{user}'s recording client since the last call.
    """
    client = user.client
    assert isinstance(client, RecordingClient)
    return client.take()


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
    _opened = b""

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


class LinePeer:
    """
    A line-door connection on a C{StringTransport}, seen from the peer.

    The door's first bytes, its request that telnet clients send binary,
    are checked and taken, so that L{lines} starts with the banner.
    """

    def __init__(self, door: LineDoor) -> None:
        self.protocol = door.buildProtocol(PEER)
        self.transport = TCPLikeTransport(peerAddress=PEER)
        self.protocol.makeConnection(self.transport)
        first = self.transport.value()
        if first.startswith(DO_BINARY):
            self.transport.clear()
            self.transport.write(first[len(DO_BINARY) :])

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

    def sign_on(self, nick: str) -> None:
        self.send(nick)
        self.received()

    def disconnect(self) -> None:
        """
        The connection is gone (as if the peer closed it).
        """
        self.protocol.connectionLost(Failure(ConnectionDone()))


HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
TEXT, BINARY, CLOSE, PING = 1, 2, 8, 9


def client_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """
    A masked client-to-server WebSocket frame.
    """
    mask = b"\x37\xfa\x21\x3d"
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


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
        self.protocol: Protocol = door.buildProtocol(PEER)
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
        self.protocol.dataReceived(client_frame(payload, opcode))

    def send(self, **request: Any) -> None:
        """
        Send one JSON request, e.g. C{peer.send(type="say", room=..., text=...)}.
        """
        self.send_raw(json.dumps(request).encode("utf-8"))

    def frames(self) -> list[tuple[int, bytes]]:
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
        self.send(type="hello", nick=nick)
        self.received()

    def disconnect(self) -> None:
        """
        The connection is gone (as if the peer closed it).
        """
        self.protocol.connectionLost(Failure(ConnectionDone()))


@implementer(IOpLog)
class LoopbackLog:
    """
    The log of a cluster of one node: each operation comes back at the
    next tick of C{clock}, in order, as it would from Redis.
    """

    heartbeat_ttl = 10.0

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.seq = 0
        self._deliver: Callable[[int, str], None] | None = None

    def hello(self, node: str, deliver: Callable[[int, str], None]) -> Deferred[Any]:
        self.seq += 1
        self._deliver = deliver
        return succeed((self.seq, None))

    def append(self, op: str) -> Deferred[int]:
        self.seq += 1
        assert self._deliver is not None
        self.clock.callLater(0, self._deliver, self.seq, op)
        return succeed(self.seq)

    def put_snapshot(self, node: str, data: str) -> Deferred[None]:
        return succeed(None)

    def get_snapshot(self, node: str) -> Deferred[str | None]:
        return succeed(None)

    def dead(self, nodes: list[str]) -> Deferred[list[str]]:
        return succeed([])

    def watch(self, callback: Callable[[bool], None]) -> None:
        pass

    def stop(self) -> Deferred[None]:
        return succeed(None)
