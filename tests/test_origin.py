"""
Where connections come from: C{--exempt} and C{--trusted-proxies} networks,
forwarding headers, and PROXY protocol headers in front of a door; the
parsers are fuzzed too.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from chatd.doors.admission import Admission
from chatd.doors.line import LineDoor
from chatd.doors.origin import (
    V2_SIGNATURE,
    MalformedOrigin,
    Networks,
    ProxyHeaderFactory,
    forwarded_client,
    parse_proxy_header,
)
from chatd.hub import Hub
from chatd.limits import Limits
from chatd.testing import DO_BINARY, TCPLikeTransport

PROXY = IPv4Address("TCP", "127.0.0.1", 40000)
TRUSTED = Networks.parse("127.0.0.1,::1")
FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=400)


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def v2_tcp4(source: bytes, port: int) -> bytes:
    return v2(1, 0x11, source + bytes([192, 0, 2, 99]) + struct.pack("!HH", port, 1234))


class NetworksTests(SynchronousTestCase):
    def test_parse_and_match(self) -> None:
        """
        Addresses and CIDR networks, IPv4 and IPv6, match their members;
        an IPv4-mapped IPv6 address matches as IPv4; C{none} is empty.
        """
        networks = Networks.parse(" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32")
        for host in ("10.1.2.3", "192.0.2.7", "2001:db8::1", "::ffff:10.0.0.1"):
            self.assertIn(host, networks)
        for host in ("11.0.0.1", "192.0.2.8", "2001:db9::1", "name.example", ""):
            self.assertNotIn(host, networks)
        self.assertEqual(Networks.parse("none").networks, ())
        self.assertEqual(str(Networks.parse("127.0.0.0/8,::1")), "127.0.0.0/8,::1")
        self.assertEqual(str(Networks.parse("none")), "none")

    def test_bad(self) -> None:
        """
        Anything else is refused, saying which part.
        """
        for bad in ("", "10.0.0.0/33", "localhost", "10.0.0.1,,"):
            self.assertRaises(ValueError, Networks.parse, bad)


class ForwardedTests(SynchronousTestCase):
    def test_untrusted_peer(self) -> None:
        """
        Headers from a peer that is no trusted proxy are ignored.
        """
        self.assertEqual(
            forwarded_client("192.0.2.5", {"x-forwarded-for": "10.9.9.9"}, TRUSTED), "192.0.2.5"
        )

    def test_right_most_untrusted(self) -> None:
        """
        The client is the right-most hop that is not itself a trusted proxy:
        what a client puts first in the header is not believed.
        """
        trusted = Networks.parse("127.0.0.1,10.0.0.0/8")
        headers = {"x-forwarded-for": "6.6.6.6, 192.0.2.1, 10.0.0.2"}
        self.assertEqual(forwarded_client("127.0.0.1", headers, trusted), "192.0.2.1")
        self.assertEqual(forwarded_client("127.0.0.1", {}, trusted), "127.0.0.1")
        all_proxies = {"x-forwarded-for": "10.0.0.3, 10.0.0.2"}
        self.assertEqual(forwarded_client("127.0.0.1", all_proxies, trusted), "10.0.0.3")

    def test_forms(self) -> None:
        """
        Hops may carry ports and brackets; C{Forwarded: for=} is read when
        there is no C{X-Forwarded-For}; IPv4-mapped addresses count as IPv4.
        """
        for value, client in [
            ("192.0.2.1:5678", "192.0.2.1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("::ffff:192.0.2.1", "192.0.2.1"),
        ]:
            self.assertEqual(
                forwarded_client("127.0.0.1", {"x-forwarded-for": value}, TRUSTED), client
            )
        forwarded = 'for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711"'
        self.assertEqual(
            forwarded_client("::1", {"forwarded": forwarded}, TRUSTED), "2001:db8:cafe::17"
        )

    def test_malformed(self) -> None:
        """
        A hop naming the client that is no address is malformed.
        """
        for value in ("a.example", "1.2.3.4.5", "[::1", "192.0.2.1, x"):
            self.assertRaises(
                MalformedOrigin,
                forwarded_client,
                "127.0.0.1",
                {"x-forwarded-for": value},
                TRUSTED,
            )

    def test_unknown(self) -> None:
        """
        A proxy that does not know its client (RFC 7239 C{unknown}, or an
        obfuscated identifier) leaves the peer standing for it; empty hops
        are skipped.
        """
        for headers in (
            {"forwarded": "for=unknown"},
            {"forwarded": 'for=192.0.2.9, for="_hidden"'},
            {"x-forwarded-for": "unknown"},
        ):
            self.assertEqual(forwarded_client("127.0.0.1", headers, TRUSTED), "127.0.0.1")
        self.assertEqual(
            forwarded_client("127.0.0.1", {"x-forwarded-for": "192.0.2.1,, "}, TRUSTED),
            "192.0.2.1",
        )

    @FUZZ
    @given(st.text(max_size=80), st.sampled_from(("x-forwarded-for", "forwarded")))
    def test_fuzz(self, value: str, name: str) -> None:
        """
        Any header gets an address or L{MalformedOrigin}, nothing else.
        """
        try:
            client = forwarded_client("127.0.0.1", {name: value}, TRUSTED)
        except MalformedOrigin:
            return
        self.assertIsInstance(client, str)


class ProxyHeaderParseTests(SynchronousTestCase):
    def test_v1(self) -> None:
        """
        Version 1: TCP4, TCP6 and UNKNOWN, with what follows left alone;
        a header cut short asks for more.
        """
        header = b"PROXY TCP4 192.0.2.1 192.0.2.99 5678 1234\r\n"
        self.assertEqual(parse_proxy_header(header + b"alice"), (("192.0.2.1", 5678), len(header)))
        six = b"PROXY TCP6 2001:db8::1 2001:db8::2 5678 1234\r\n"
        self.assertEqual(parse_proxy_header(six), (("2001:db8::1", 5678), len(six)))
        self.assertEqual(parse_proxy_header(b"PROXY UNKNOWN\r\n"), (None, 15))
        for cut in range(len(header)):
            self.assertIsNone(parse_proxy_header(header[:cut]), cut)

    def test_v2(self) -> None:
        """
        Version 2: PROXY over TCP4 and TCP6 (TLVs skipped), LOCAL, and
        families with no IP address; cut short, it asks for more.
        """
        header = v2_tcp4(bytes([192, 0, 2, 1]), 5678)
        self.assertEqual(parse_proxy_header(header + b"x"), (("192.0.2.1", 5678), len(header)))
        source = bytes.fromhex("20010db8000000000000000000000001")
        six = v2(1, 0x21, source + bytes(16) + struct.pack("!HH", 80, 443) + b"\x04\x00\x01x")
        self.assertEqual(parse_proxy_header(six), (("2001:db8::1", 80), len(six)))
        self.assertEqual(parse_proxy_header(v2(0, 0x00, b"")), (None, 16))
        self.assertEqual(parse_proxy_header(v2(1, 0x31, bytes(216))), (None, 232))
        for cut in range(len(header)):
            self.assertIsNone(parse_proxy_header(header[:cut]), cut)

    def test_malformed(self) -> None:
        """
        No header, or a broken one, is refused.
        """
        for bad in [
            b"alice\r\n",
            b"PROXY TCP4 192.0.2.1\r\n",
            b"PROXY TCP4 2001:db8::1 192.0.2.99 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 192.0.2.99 99999 2\r\n",
            b"PROXY UDP4 192.0.2.1 192.0.2.99 1 2\r\n",
            b"PROXY " + b"x" * 200,
            V2_SIGNATURE[:6] + b"!",
            v2(1, 0x11, b"\x00" * 4),
            v2(2, 0x11, b""),
            V2_SIGNATURE + b"\x20\x11\xff\xff",
        ]:
            self.assertRaises(MalformedOrigin, parse_proxy_header, bad)

    @FUZZ
    @given(
        st.one_of(
            st.binary(max_size=120),
            st.binary(max_size=60).map(lambda b: b"PROXY " + b),
            st.binary(max_size=60).map(lambda b: V2_SIGNATURE + b),
        )
    )
    def test_fuzz(self, data: bytes) -> None:
        """
        Any bytes get a header, a request for more, or L{MalformedOrigin}.
        """
        try:
            parsed = parse_proxy_header(data)
        except MalformedOrigin:
            return
        if parsed is not None:
            self.assertLessEqual(parsed[1], len(data))


class ProxiedDoorTests(SynchronousTestCase):
    """
    The line door behind the PROXY protocol, on a StringTransport.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.admission = Admission(
            Limits(max_per_ip=1), self.clock, exempt=Networks.parse("none"), trusted=TRUSTED
        )
        door = LineDoor(Hub(self.clock), self.clock, admission=self.admission)
        self.factory = ProxyHeaderFactory(door, self.admission, "line")
        self.logged: list[str] = []

        def observe(event: dict[str, object]) -> None:
            if event.get("log_namespace") == "chatd.doors.origin.ProxyHeaderFactory":
                self.logged.append(str(event.get("why")))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def connect(self, *chunks: bytes, peer: IPv4Address | IPv6Address = PROXY) -> TCPLikeTransport:
        protocol = self.factory.buildProtocol(peer)
        transport = TCPLikeTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        for chunk in chunks:
            protocol.dataReceived(chunk)
        return transport

    def test_client_counted(self) -> None:
        """
        The door sees the client the header names: its connections count
        against that address, not the proxy's, and what follows the header
        is the client's input.
        """
        header = b"PROXY TCP4 192.0.2.1 192.0.2.99 5678 1234\r\n"
        first = self.connect(header[:10], header[10:] + b"alice\r\n")
        self.assertTrue(first.value().startswith(DO_BINARY + b"Welcome"))
        self.assertIn(b"*** Welcome, alice!", first.value())
        self.assertEqual(dict(self.admission.per_host), {"192.0.2.1": 1})
        second = self.connect(header)
        self.assertIn(b"too many connections from your address", second.value())
        other = self.connect(v2_tcp4(bytes([192, 0, 2, 2]), 1))
        self.assertTrue(other.value().startswith(DO_BINARY))
        self.assertEqual(dict(self.admission.per_host), {"192.0.2.1": 1, "192.0.2.2": 1})

    def test_refusals_logged(self) -> None:
        """
        No header, a broken one, one from a peer that is no trusted proxy,
        or none in time: the connection is dropped, with one log line each.
        """
        untrusted = IPv4Address("TCP", "192.0.2.200", 1)
        header = b"PROXY TCP4 192.0.2.1 192.0.2.99 5678 1234\r\n"
        dropped = [
            self.connect(b"alice\r\n"),
            self.connect(b"PROXY TCP4 nonsense\r\n"),
            self.connect(header, peer=untrusted),
            self.connect(b"PROX"),
        ]
        self.clock.advance(self.factory.timeout)
        for transport in dropped:
            self.assertTrue(transport.aborted)
            self.assertEqual(transport.value(), b"")
        self.assertEqual(len(self.logged), 4, self.logged)
        self.assertIn("no trusted proxy", self.logged[2])
        self.assertIn("no PROXY header within", self.logged[3])
        self.assertEqual(self.factory.refused, 4)
        self.assertEqual(self.admission.total, 0)

    def test_unix_socket_proxy_trusted(self) -> None:
        """
        A proxy on a unix socket (HAProxy's C{unix@}) is on this machine:
        its header is taken.
        """
        header = b"PROXY TCP4 192.0.2.44 127.0.0.1 5555 1234\r\n"
        transport = self.connect(header, peer=UNIXAddress(None))  # type: ignore[arg-type]
        self.assertTrue(transport.value().startswith(DO_BINARY))
        self.assertEqual(dict(self.admission.per_host), {"192.0.2.44": 1})

    def test_local_is_the_proxy(self) -> None:
        """
        A v2 LOCAL header (a health check) is the proxy's own connection.
        """
        transport = self.connect(v2(0, 0x00, b""))
        self.assertTrue(transport.value().startswith(DO_BINARY))
        self.assertEqual(dict(self.admission.per_host), {"127.0.0.1": 1})

    @FUZZ
    @given(st.lists(st.binary(max_size=40), max_size=6))
    def test_fuzz(self, chunks: list[bytes]) -> None:
        """
        Whatever arrives, in whatever pieces, the connection is admitted or
        dropped, and never raises.
        """
        self.connect(*chunks)
        self.clock.advance(self.factory.timeout)
