"""
Both doors turn Nagle's algorithm off (C{TCP_NODELAY}) on every accepted
TCP connection, also under a TLS layer, and leave unix sockets alone.

Each test gives a door's protocol a transport whose handle is one end of a
real loopback TCP connection (made with plain sockets, no reactor), then
reads the option back from that socket.
"""

from __future__ import annotations

import socket

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.doors.base import no_delay
from chatd.doors.line import LineDoor
from chatd.doors.websocket import WebSocketDoor
from chatd.hub import Hub
from chatd.limits import Limits
from chatd.testing import HANDSHAKE, PEER, TCPLikeTransport


class SocketTransport(TCPLikeTransport):
    """
    A C{StringTransport} whose handle is a real socket, as a TCP transport's.
    """

    def __init__(self, handle: socket.socket) -> None:
        super().__init__(peerAddress=PEER)
        self.handle = handle

    def getHandle(self) -> socket.socket:
        return self.handle


class TLSLayer:
    """
    Stands for Twisted's TLS layer: its handle is no socket (an OpenSSL
    connection), the TCP transport is one layer further down.
    """

    def __init__(self, transport: SocketTransport) -> None:
        self.transport = transport

    def getHandle(self) -> object:
        return object()


def nodelay(handle: socket.socket) -> bool:
    return handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


class NoDelayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = Hub(self.clock)
        self.limits = Limits(flood_rate=0)
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        self.addCleanup(client.close)
        self.accepted, _ = listener.accept()
        self.addCleanup(self.accepted.close)
        self.assertFalse(nodelay(self.accepted))

    def test_line_door(self) -> None:
        """
        The line door sets C{TCP_NODELAY} as a connection is made.
        """
        door = LineDoor(self.hub, self.clock, self.limits)
        door.buildProtocol(PEER).makeConnection(SocketTransport(self.accepted))
        self.assertTrue(nodelay(self.accepted))

    def test_websocket_door(self) -> None:
        """
        The WebSocket door sets C{TCP_NODELAY} once the WebSocket is open.
        """
        door = WebSocketDoor(self.hub, self.clock, self.limits)
        protocol = door.buildProtocol(PEER)
        transport = SocketTransport(self.accepted)
        protocol.makeConnection(transport)
        protocol.dataReceived(HANDSHAKE)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "))
        self.assertTrue(nodelay(self.accepted))

    def test_through_tls(self) -> None:
        """
        Under TLS the option is set on the TCP socket below the TLS layer.
        """
        no_delay(TLSLayer(SocketTransport(self.accepted)))
        self.assertTrue(nodelay(self.accepted))

    def test_unix_socket_untouched(self) -> None:
        """
        A unix socket has no Nagle's algorithm: nothing is set, nothing fails.
        """
        left, right = socket.socketpair(socket.AF_UNIX)
        self.addCleanup(left.close)
        self.addCleanup(right.close)
        no_delay(SocketTransport(left))
        no_delay(TCPLikeTransport())
