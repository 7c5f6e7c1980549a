# -*- test-case-name: tests.test_origin -*-
"""
Where a connection really comes from.

Behind a reverse proxy every connection comes from the proxy's address, so
per-address limits would count all users as one.  A proxy chatd trusts
(C{--trusted-proxies}) says who its client is: nginx in the C{X-Forwarded-For}
or C{Forwarded} header of the WebSocket upgrade, HAProxy in a PROXY protocol
header (v1 or v2) before the connection's first byte, on a door listening on
C{haproxy:tcp:...}.  What anyone else says is ignored, and what a trusted
proxy says that cannot be read gets the connection refused with one log
line.

Networks (L{Networks}) are also what C{--exempt} is made of: addresses whose
connections no per-address limit applies to (localhost, by default).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    ILoggingContext,
    IProtocol,
    IProtocolFactory,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

if TYPE_CHECKING:
    from chatd.doors.admission import Admission

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

OFF = "none"
CONNECTION_DONE = Failure(ConnectionDone())


class MalformedOrigin(ValueError):
    """
    A trusted proxy's word on the client's address could not be read.
    """


@dataclass(frozen=True)
class Networks:
    """
    A set of IP networks, from C{--exempt} or C{--trusted-proxies}: addresses
    or CIDR networks separated by commas, or C{none}.
    """

    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Networks:
        """
        Parse C{127.0.0.0/8,::1} (or C{none}); raise C{ValueError} saying
        which part is wrong.
        """
        if text.strip().lower() == OFF:
            return cls()
        networks = []
        for part in text.split(","):
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{part.strip()!r} is no IP address or network") from None
        return cls(tuple(networks))

    def __contains__(self, host: object) -> bool:
        address = ip_address(host) if isinstance(host, str) else None
        return address is not None and any(address in net for net in self.networks)

    def __str__(self) -> str:
        return (
            ",".join(
                str(net.network_address if net.num_addresses == 1 else net) for net in self.networks
            )
            or OFF
        )


def ip_address(host: str) -> IPAddress | None:
    """
    C{host} as an IP address (an IPv4-mapped IPv6 address as IPv4, without
    an IPv6 zone), or None if it is none.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def normal_host(host: str) -> str:
    """
    C{host} as chatd counts it: an IPv4-mapped IPv6 address as IPv4, no
    IPv6 zone, one spelling per address; anything else as it is.
    """
    address = ip_address(host)
    return host if address is None else str(address)


def tcp_address(host: str, port: int = 0) -> IPv4Address | IPv6Address:
    """
    A Twisted address for an IP C{host}.
    """
    if ":" in host:
        return IPv6Address("TCP", host, port)
    return IPv4Address("TCP", host, port)


# -- HTTP headers ------------------------------------------------------------


def forwarded_client(peer: str, headers: Mapping[str, str], trusted: Networks) -> str:
    """
    The address of the client behind C{peer}: C{peer} itself unless it is a
    trusted proxy; else the right-most address of C{X-Forwarded-For} (or,
    without it, of C{Forwarded}'s C{for=}) that is not itself a trusted
    proxy, each proxy having appended the address it saw.

    @param headers: the request's headers, by lower-case name (repeated
        headers joined with commas).
    A hop that is C{unknown} or obfuscated (RFC 7239) leaves the client
    unknown: the peer stands for it.

    @raise MalformedOrigin: if the hop that names the client is no address.
    """
    if peer not in trusted:
        return peer
    if "x-forwarded-for" in headers:
        hops = [hop.strip() for hop in headers["x-forwarded-for"].split(",")]
    elif "forwarded" in headers:
        hops = list(_forwarded_for(headers["forwarded"]))
    else:
        return peer
    client = peer
    for hop in reversed([hop for hop in hops if hop.strip()]):
        if hop.strip().strip('"').lower() == "unknown" or hop.strip().strip('"').startswith("_"):
            return peer  # RFC 7239: the proxy does not know, or will not say
        client = _hop_address(hop)
        if client not in trusted:
            break
    return client


def _hop_address(hop: str) -> str:
    """
    The address in one hop of a forwarding header: C{192.0.2.1},
    C{192.0.2.1:5678}, C{2001:db8::1}, or C{[2001:db8::1]:5678}.
    """
    text = hop.strip().strip('"')
    if text.startswith("["):
        text, closed, port = text[1:].partition("]")
        if not closed or port[:1] not in ("", ":"):
            text = ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    address = ip_address(text)
    if address is None:
        raise MalformedOrigin(f"{hop[:64]!r} is no IP address")
    return str(address)


def _forwarded_for(value: str) -> Iterable[str]:
    """
    The C{for=} values of an RFC 7239 C{Forwarded} header, in order.
    """
    for element in value.split(","):
        for pair in element.split(";"):
            name, equals, content = pair.strip().partition("=")
            if equals and name.strip().lower() == "for":
                yield content.strip()


# -- the PROXY protocol -------------------------------------------------------

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107  # the longest v1 header, CR LF included
V2_MAX = 16 + 536  # the header, addresses and room for common TLVs


def parse_proxy_header(data: bytes) -> tuple[tuple[str, int] | None, int] | None:
    """
    Read a PROXY protocol header (v1 or v2) at the start of C{data}.

    @return: None if C{data} may still become a header (read more); else
        the client's address and port (None for a proxy's own connection,
        v2 C{LOCAL}, or one it does not describe, C{UNKNOWN}) and how many
        bytes the header took.
    @raise MalformedOrigin: if C{data} starts with no header, or a broken one.
    """
    if data[:1] == b"P":
        return _parse_v1(data)
    if data[:1] == b"\r":
        return _parse_v2(data)
    if data:
        raise MalformedOrigin("no PROXY protocol header")
    return None


def _parse_v1(data: bytes) -> tuple[tuple[str, int] | None, int] | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or not b"PROXY "[: len(data)] == data[:6]:
            raise MalformedOrigin("a PROXY v1 header that is not one")
        return None
    words = data[:end].split(b" ")
    if words[0] != b"PROXY" or len(words) < 2:
        raise MalformedOrigin("a PROXY v1 header that is not one")
    if words[1] == b"UNKNOWN":
        return None, end + 2
    if words[1] not in (b"TCP4", b"TCP6") or len(words) != 6:
        raise MalformedOrigin(f"a PROXY v1 header of family {words[1][:8]!r}")
    try:
        source = ipaddress.ip_address(words[2].decode("ascii"))
        port = int(words[4])
    except (UnicodeDecodeError, ValueError):
        raise MalformedOrigin("a PROXY v1 header with a bad address") from None
    if source.version != (4 if words[1] == b"TCP4" else 6) or not 0 <= port <= 65535:
        raise MalformedOrigin("a PROXY v1 header with a bad address")
    return (str(ip_address(str(source))), port), end + 2


def _parse_v2(data: bytes) -> tuple[tuple[str, int] | None, int] | None:
    if len(data) < 16:
        if not V2_SIGNATURE.startswith(data[:12]):
            raise MalformedOrigin("no PROXY protocol header")
        return None
    if data[:12] != V2_SIGNATURE or data[12] >> 4 != 2:
        raise MalformedOrigin("a PROXY v2 header that is not one")
    command, family = data[12] & 0x0F, data[13]
    (length,) = struct.unpack("!H", data[14:16])
    if 16 + length > V2_MAX:
        raise MalformedOrigin(f"a PROXY v2 header of {16 + length} bytes")
    if command > 1:
        raise MalformedOrigin(f"a PROXY v2 header with command {command}")
    if len(data) < 16 + length:
        return None
    body, used = data[16 : 16 + length], 16 + length
    if command == 0 or family >> 4 == 0 or family & 0x0F != 1:  # LOCAL, UNSPEC, not TCP
        return None, used
    sizes = {1: 4, 2: 16}  # AF_INET, AF_INET6
    size = sizes.get(family >> 4)
    if size is None:  # AF_UNIX and the like: no IP address to go by
        return None, used
    if len(body) < 2 * size + 4:
        raise MalformedOrigin("a PROXY v2 header too short for its addresses")
    source = str(ipaddress.ip_address(body[:size]))
    (port,) = struct.unpack("!H", body[2 * size : 2 * size + 2])
    return (str(ip_address(source)), port), used


class ProxyHeaderReceiver(Protocol):
    """
    Reads the PROXY protocol header a proxy sends first, then builds the
    door's protocol for the client it names and hands it the connection,
    passing on whatever comes next.  The door's protocol writes to the
    connection itself; only input goes through here.
    """

    factory: ProxyHeaderFactory
    transport: ITCPTransport  # from makeConnection on: TCP, TLS or a unix socket
    _inner: IProtocol | None = None
    _deadline: IDelayedCall | None = None

    def __init__(self, peer: IAddress | None) -> None:
        self._peer = peer
        self._buffer = b""

    def connectionMade(self) -> None:
        admission = self.factory.admission
        self._deadline = admission.clock.callLater(self.factory.timeout, self._expired)

    def dataReceived(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.dataReceived(data)
            return
        self._buffer += data
        try:
            header = parse_proxy_header(self._buffer)
        except MalformedOrigin as e:
            self._refuse(str(e))
            return
        if header is None:
            return
        named, used = header
        peer_host = getattr(self._peer, "host", None)
        local = isinstance(self._peer, UNIXAddress)  # only this machine can connect
        if not local and peer_host not in self.factory.admission.trusted:
            self._refuse(f"a PROXY header from {peer_host}, which is no trusted proxy")
            return
        address = self._peer if named is None else tcp_address(*named)
        inner = None if address is None else self.factory.wrappedFactory.buildProtocol(address)
        if inner is None:
            self._refuse("the door refused it")
            return
        self._cancel_deadline()
        self._inner = inner
        inner.makeConnection(self.transport)
        rest, self._buffer = self._buffer[used:], b""
        if rest:
            inner.dataReceived(rest)

    def connectionLost(self, reason: Failure = CONNECTION_DONE) -> None:
        self._cancel_deadline()
        if self._inner is not None:
            self._inner.connectionLost(reason)

    def _expired(self) -> None:
        self._deadline = None
        self._refuse(f"no PROXY header within {self.factory.timeout:g} s")

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _refuse(self, why: str) -> None:
        self._cancel_deadline()
        self.factory.log.warn(
            "Refused a connection from {peer} to the {door} door: {why}",
            peer=getattr(self._peer, "host", self._peer),
            door=self.factory.door,
            why=why,
        )
        self.factory.refused += 1
        self.transport.abortConnection()


@implementer(IProtocolFactory, ILoggingContext)
class ProxyHeaderFactory:
    """
    Puts a door behind the PROXY protocol (C{haproxy:} endpoints): every
    connection must start with a header, within C{timeout} seconds, from a
    proxy the door's admission trusts (C{--trusted-proxies}, the same list
    that vouches for C{X-Forwarded-For} on the web door).
    """

    log = Logger()
    timeout = 10.0

    def __init__(self, wrapped: IProtocolFactory, admission: Admission, door: str) -> None:
        self.wrappedFactory = wrapped
        self.admission = admission
        self.door = door
        self.refused = 0

    def logPrefix(self) -> str:
        prefix = getattr(self.wrappedFactory, "logPrefix", None)
        return f"{prefix() if prefix else type(self.wrappedFactory).__name__} (PROXY)"

    def buildProtocol(self, addr: IAddress | None) -> ProxyHeaderReceiver:
        receiver = ProxyHeaderReceiver(addr)
        receiver.factory = self
        return receiver

    def doStart(self) -> None:
        self.wrappedFactory.doStart()

    def doStop(self) -> None:
        self.wrappedFactory.doStop()
