"""
Who may connect: per-address, total and rate caps on both doors, and the
WebSocket door's origin policy.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from chatd.doors.admission import Admission, AdmittingFactory, Refusal, Ticket, http_refusal
from chatd.doors.line import LineDoor
from chatd.doors.origin import Networks
from chatd.doors.web import WEBSOCKET_PATH, make_site
from chatd.doors.websocket import OriginPolicy, WebSocketDoor, normalise_origin
from chatd.doors.websocket.protocol import ChatWebSocketProtocol
from chatd.hub import Hub
from chatd.limits import Limits, parse_rate
from chatd.testing import HANDSHAKE, TCPLikeTransport, WebSocketPeer, client_frame


def address(host: str) -> IPv4Address:
    return IPv4Address("TCP", host, 50000)


class AdmissionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()

    def admission(self, **limits: object) -> Admission:
        return Admission(Limits(**limits), self.clock)  # type: ignore[arg-type]

    def test_per_address_cap(self) -> None:
        """
        One address may hold C{max_per_ip} connections; another may still
        connect; closing one makes room again.
        """
        admission = self.admission(max_per_ip=2, connect_rate=(0, 0.0))
        tickets = [admission.admit(address("10.0.0.1")) for _ in range(2)]
        self.assertTrue(all(isinstance(t, Ticket) for t in tickets))
        refusal = admission.admit(address("10.0.0.1"))
        self.assertEqual(
            refusal, "Connection refused: too many connections from your address; try again later"
        )
        self.assertIsInstance(admission.admit(address("10.0.0.2")), Ticket)
        tickets[0].release()
        tickets[0].release()
        self.assertIsInstance(admission.admit(address("10.0.0.1")), Ticket)
        self.assertEqual(admission.refused["max_per_ip"], 1)

    def test_connect_rate(self) -> None:
        """
        An address may connect C{N} times per window; attempts beyond are
        refused until the window has moved on.
        """
        admission = self.admission(connect_rate=(3, 60.0), max_per_ip=0)
        for _ in range(3):
            admission.admit(address("10.0.0.1")).release()  # type: ignore[union-attr]
            self.clock.advance(1)
        self.assertIsInstance(admission.admit(address("10.0.0.1")), str)
        self.assertIsInstance(admission.admit(address("10.0.0.2")), Ticket)
        self.clock.advance(58)
        self.assertIsInstance(admission.admit(address("10.0.0.1")), Ticket)
        self.assertEqual(admission.refused["connect_rate"], 1)

    def test_total_cap(self) -> None:
        """
        C{max_clients} caps all connections, unix sockets included.
        """
        admission = self.admission(max_clients=2)
        admission.admit(UNIXAddress(b"/tmp/x"))
        admission.admit(address("10.0.0.1"))
        self.assertEqual(
            admission.admit(address("10.0.0.2")),
            "Connection refused: the server is full; try again later",
        )

    def test_off(self) -> None:
        """
        Limits of 0 admit everyone.
        """
        admission = self.admission(max_per_ip=0, connect_rate=(0, 0.0), max_clients=0)
        for _ in range(1000):
            self.assertIsInstance(admission.admit(address("10.0.0.1")), Ticket)

    def test_exempt(self) -> None:
        """
        Exempt addresses (localhost by default) are held to no per-address
        cap or rate, chat or plain HTTP; the total cap still applies.
        """
        admission = self.admission(max_per_ip=1, connect_rate=(1, 60.0), max_http_per_ip=1)
        for host in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"):
            for _ in range(3):
                self.assertIsInstance(admission.admit(address(host)), Ticket, host)
                self.assertIsInstance(admission.admit_http(address(host)), Ticket, host)
        self.assertEqual(dict(admission.per_host), {})
        narrow = Admission(Limits(max_per_ip=1), self.clock, exempt=Networks.parse("none"))
        narrow.admit(address("127.0.0.1"))
        self.assertIsInstance(narrow.admit(address("127.0.0.1")), str)
        full = Admission(Limits(max_clients=1), self.clock)
        full.admit(address("127.0.0.1"))
        self.assertIsInstance(full.admit_http(address("127.0.0.1")), str)

    def test_page_loads_are_not_chat(self) -> None:
        """
        Plain HTTP connections count against their own cap only: they use
        up neither the chat cap nor the connect rate; the total counts both.
        """
        admission = self.admission(max_per_ip=1, connect_rate=(1, 60.0), max_http_per_ip=2)
        pages = [admission.admit_http(address("10.0.0.1")) for _ in range(2)]
        self.assertTrue(all(isinstance(t, Ticket) for t in pages))
        self.assertEqual(
            admission.admit_http(address("10.0.0.1")),
            "Connection refused: too many connections from your address; try again later",
        )
        self.assertEqual(admission.refused["max_http_per_ip"], 1)
        self.assertIsInstance(admission.admit(address("10.0.0.1")), Ticket)
        self.assertEqual(admission.total, 3)

    def test_promote(self) -> None:
        """
        A plain HTTP connection that becomes a WebSocket session moves from
        the HTTP count of its peer to the chat count of its client, if the
        chat limits let it; refused, it stays as it was.
        """
        admission = self.admission(max_per_ip=1, connect_rate=(0, 0.0), max_http_per_ip=1)
        first = admission.admit_http(address("10.0.0.1"))
        assert isinstance(first, Ticket)
        self.assertIsNone(admission.promote(first, "10.0.0.1"))
        self.assertEqual(
            (admission.per_host["10.0.0.1"], admission.http_per_host["10.0.0.1"]), (1, 0)
        )
        second = admission.admit_http(address("10.0.0.1"))
        assert isinstance(second, Ticket)
        self.assertIsInstance(admission.promote(second, "10.0.0.1"), str)
        self.assertEqual(admission.http_per_host["10.0.0.1"], 1)
        first.release()
        second.release()
        self.assertEqual((dict(admission.per_host), dict(admission.http_per_host)), ({}, {}))
        self.assertEqual(admission.total, 0)

    def test_trusted_proxies_not_capped_for_http(self) -> None:
        """
        A trusted proxy carries many people's page loads: the plain HTTP
        cap does not apply to it (their sessions are counted by client).
        """
        admission = Admission(
            Limits(max_http_per_ip=1),
            self.clock,
            exempt=Networks.parse("none"),
            trusted=Networks.parse("10.0.0.9"),
        )
        for _ in range(5):
            self.assertIsInstance(admission.admit_http(address("10.0.0.9")), Ticket)

    def test_rate_option(self) -> None:
        """
        C{--connect-rate} takes N/SECONDS or 0.
        """
        self.assertEqual(parse_rate("32/600"), (32, 600.0))
        self.assertEqual(parse_rate("0"), (0, 0.0))
        for bad in ("32", "x/1", "3/0", "-1/5"):
            self.assertRaises(ValueError, parse_rate, bad)


class LineRefusalTests(SynchronousTestCase):
    def test_refused_with_a_line(self) -> None:
        """
        The line door tells a refused connection why in one line, then
        closes it; a closed connection frees its place.
        """
        clock = Clock()
        door = LineDoor(Hub(clock), clock, Limits(max_per_ip=1))
        first = door.buildProtocol(address("10.0.0.1"))
        first.makeConnection(TCPLikeTransport())
        refused = door.buildProtocol(address("10.0.0.1"))
        self.assertIsInstance(refused, Refusal)
        transport = TCPLikeTransport()
        refused.makeConnection(transport)
        self.assertEqual(
            transport.value(),
            b"!!! Connection refused: too many connections from your address; try again later\r\n",
        )
        self.assertTrue(transport.disconnecting)
        first.connectionLost(None)
        self.assertNotIsInstance(door.buildProtocol(address("10.0.0.1")), Refusal)


class WebRefusalTests(SynchronousTestCase):
    def test_refused_with_503(self) -> None:
        """
        The web door answers a refused connection (here: past the plain HTTP
        cap per address) with HTTP 503.
        """
        admission = Admission(Limits(max_http_per_ip=1), Clock())
        factory = AdmittingFactory(Site(None), admission, http_refusal, Clock(), 30)
        factory.buildProtocol(address("10.0.0.1"))
        refused = factory.buildProtocol(address("10.0.0.1"))
        transport = TCPLikeTransport()
        refused.makeConnection(transport)
        response = transport.value()
        self.assertTrue(response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"))
        self.assertTrue(
            response.endswith(b"too many connections from your address; try again later\n")
        )
        self.assertTrue(transport.disconnecting)


class OriginTests(SynchronousTestCase):
    def setUp(self) -> None:
        clock = Clock()
        self.hub = Hub(clock)
        self.clock = clock

    def handshake(self, origin: str | None, allowed: list[str] | None = None) -> WebSocketPeer:
        door = WebSocketDoor(self.hub, self.clock, origins=OriginPolicy(allowed or []))
        return WebSocketPeer(door, origin=origin, must_accept=False)

    def test_same_origin(self) -> None:
        """
        A page served by the door itself (Origin matching Host) may connect.
        """
        self.assertTrue(self.handshake("http://127.0.0.1:8080").accepted)

    def test_no_origin(self) -> None:
        """
        Programs that send no Origin may connect.
        """
        self.assertTrue(self.handshake(None).accepted)

    def test_cross_site_refused(self) -> None:
        """
        Another site's page is refused with 403; a null or malformed origin
        is refused too (by Autobahn, with 400).
        """
        for origin in ("http://evil.example", "http://127.0.0.1:9999", "http://127.0.0.2:8080"):
            peer = self.handshake(origin)
            self.assertFalse(peer.accepted, origin)
            self.assertTrue(peer.response.startswith(b"HTTP/1.1 403"), peer.response)
        for origin in ("null", "garbage"):
            self.assertTrue(self.handshake(origin).response.startswith(b"HTTP/1.1 400"))

    def test_allowed_origins(self) -> None:
        """
        Origins given as users write them are matched with default ports
        filled in; '*' allows any.
        """
        allowed = ["https://Chat.Example", "http://localhost:3000"]
        self.assertTrue(self.handshake("https://chat.example:443", allowed).accepted)
        self.assertTrue(self.handshake("https://chat.example", allowed).accepted)
        self.assertTrue(self.handshake("http://localhost:3000", allowed).accepted)
        self.assertFalse(self.handshake("http://chat.example", allowed).accepted)
        self.assertTrue(self.handshake("http://anything.example", ["*"]).accepted)

    def test_normalise(self) -> None:
        """
        Normalising fills in default ports and lower-cases; non-origins are
        refused.
        """
        self.assertEqual(normalise_origin("https://Chat.Example"), "https://chat.example:443")
        self.assertEqual(normalise_origin("http://[::1]:8080"), "http://[::1]:8080")
        for bad in ("chat.example", "ftp://x", "https://x/path", ""):
            self.assertRaises(ValueError, normalise_origin, bad)


class WebDeadlineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        hub = Hub(self.clock)
        self.door = WebSocketDoor(hub, self.clock, Limits(ping_interval=0))
        admission = Admission(Limits(), self.clock)
        self.factory = AdmittingFactory(
            make_site(self.door), admission, http_refusal, self.clock, 30
        )

    def connect(self) -> tuple[Any, TCPLikeTransport]:
        protocol = self.factory.buildProtocol(address("10.0.0.1"))
        transport = TCPLikeTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_trickling_http_dropped(self) -> None:
        """
        A web connection that trickles a request and never finishes it is
        dropped 30 s after accept.
        """
        protocol, transport = self.connect()
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ":
            protocol.dataReceived(bytes([byte]))
            self.clock.advance(0.5)
            if transport.aborted:
                break
        self.clock.advance(30)
        self.assertTrue(transport.aborted)
        self.assertEqual(self.factory.admission.refused["http_deadline"], 1)

    def test_sessions_counted_by_client(self) -> None:
        """
        WebSocket sessions through a trusted proxy count against the
        address its X-Forwarded-For names; the same header from anyone
        else is ignored; a malformed one from the proxy is refused (400),
        and a session over the chat cap gets 503.
        """
        admission = Admission(
            Limits(max_per_ip=1),
            self.clock,
            exempt=Networks.parse("none"),
            trusted=Networks.parse("10.0.0.9"),
        )
        self.factory.admission = admission

        def upgrade(peer: str, forwarded: bytes | None) -> bytes:
            protocol = self.factory.buildProtocol(address(peer))
            transport = TCPLikeTransport()
            protocol.makeConnection(transport)
            header = b"" if forwarded is None else b"X-Forwarded-For: " + forwarded + b"\r\n"
            protocol.dataReceived(HANDSHAKE[:-2] + header + b"\r\n")
            return transport.value().split(b"\r\n", 1)[0]

        self.assertEqual(upgrade("10.0.0.9", b"192.0.2.1"), b"HTTP/1.1 101 Switching Protocols")
        self.assertEqual(
            upgrade("10.0.0.9", b"192.0.2.2, 10.0.0.9"), b"HTTP/1.1 101 Switching Protocols"
        )
        self.assertTrue(upgrade("10.0.0.9", b"192.0.2.1").startswith(b"HTTP/1.1 503"))
        self.assertEqual(dict(admission.per_host), {"192.0.2.1": 1, "192.0.2.2": 1})
        self.assertEqual(upgrade("10.0.0.5", b"192.0.2.3"), b"HTTP/1.1 101 Switching Protocols")
        self.assertTrue(upgrade("10.0.0.5", b"192.0.2.4").startswith(b"HTTP/1.1 503"))
        self.assertTrue(upgrade("10.0.0.9", b"not-an-address").startswith(b"HTTP/1.1 400"))
        self.assertEqual(self.door.counters["bad_forwarded"], 1)

    def test_websocket_session_kept(self) -> None:
        """
        A connection upgraded to a WebSocket session that says hello stays
        past the deadline.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(HANDSHAKE)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "))
        protocol.dataReceived(client_frame(b'{"type": "hello", "nick": "web"}'))
        self.clock.advance(3600)
        self.assertFalse(transport.aborted)
        self.assertIn(b'"welcome"', transport.value())


class DirectUpgradeTests(WebDeadlineTests):
    """
    The same, with the WebSocket door given to the admitting factory: a
    connection whose first request is the handshake goes to the door
    without twisted.web parsing it first.
    """

    def setUp(self) -> None:
        super().setUp()
        self.factory = AdmittingFactory(
            make_site(self.door),
            self.factory.admission,
            http_refusal,
            self.clock,
            30,
            upgrade=(WEBSOCKET_PATH, self.door),
        )

    def test_handshake_skips_the_site(self) -> None:
        protocol, transport = self.connect()
        channel = protocol.wrappedProtocol
        protocol.dataReceived(HANDSHAKE)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "))
        self.assertIsInstance(protocol.wrappedProtocol, ChatWebSocketProtocol)
        self.assertEqual(channel._channel.requests, [])  # the site never saw a request

    def test_trickling_handshake_dropped(self) -> None:
        """
        A handshake that never ends is dropped at the sign-on deadline, as
        a trickled page request is at the HTTP one.
        """
        protocol, transport = self.connect()
        for byte in b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Slow: ":
            protocol.dataReceived(bytes([byte]))
        self.clock.advance(29)
        self.assertFalse(transport.aborted or transport.disconnecting)
        for _ in range(3):
            self.clock.advance(1)
        self.assertTrue(transport.aborted or transport.disconnecting)

    def test_page_first_goes_to_the_site(self) -> None:
        """
        Any other first request is the site's, which also hands C{/ws} over
        when the handshake comes later on the same connection.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200 OK", transport.value())
        transport.clear()
        protocol.dataReceived(HANDSHAKE)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "))
