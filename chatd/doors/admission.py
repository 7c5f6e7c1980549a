# -*- test-case-name: tests.test_admission -*-
"""
Who may connect: a cap on connections per address and in total, and a cap
on how often one address may connect.  Every door shares one L{Admission}.

Chat connections (line and IRC connections, WebSocket sessions) count against
the per-address cap and the connect rate; plain HTTP requests for the page
and its files only against a per-address cap of their own, so that loading
the page never uses up a user's connections.  Exempt addresses (localhost by
default) and, for plain HTTP, trusted proxies are held to no per-address
limit; every connection counts towards the total.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import Any, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocolFactory,
    IProtocolNegotiationFactory,
    IReactorTime,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.doors.origin import Networks, normal_host
from chatd.limits import Limits

LOCALHOST = Networks.parse("127.0.0.0/8,::1")
"""The default C{--exempt}: this machine."""
LOCALHOST_PROXIES = Networks.parse("127.0.0.1,::1")
"""The default C{--trusted-proxies}: a proxy on this machine."""

TRACKED_ADDRESSES = 65536
"""How many addresses' recent connects are remembered (oldest forgotten)."""


class Ticket:
    """
    One admitted connection; release it (once or more) when it closes.

    @ivar host: the address it counts against, if any.
    @ivar counts: the per-address count it is in (L{Admission.per_host} or
        L{Admission.http_per_host}), if any.
    """

    __slots__ = ("_held", "admission", "counts", "host")

    def __init__(self, admission: Admission, host: str | None, counts: Counter[str] | None) -> None:
        self.admission = admission
        self.host = host
        self.counts = counts
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self.admission._release(self)


class Admission:
    """
    Counts live connections per address and in total, and recent connects
    per address, against L{Limits} (C{max_per_ip}, C{max_http_per_ip},
    C{max_clients}, C{connect_rate}); a limit of 0 is off.  Connections
    without an IP address (unix sockets) count only towards the total.

    @ivar exempt: addresses no per-address limit applies to.
    @ivar trusted: proxies whose word on their clients' addresses is taken
        (see L{chatd.doors.origin}).
    """

    def __init__(
        self,
        limits: Limits,
        clock: IReactorTime,
        exempt: Networks = LOCALHOST,
        trusted: Networks = LOCALHOST_PROXIES,
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.exempt = exempt
        self.trusted = trusted
        self.total = 0
        self.per_host: Counter[str] = Counter()
        self.http_per_host: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()

    def admit(self, address: IAddress | None) -> Ticket | str:
        """
        Admit a chat connection from C{address}, or say why not.
        """
        if 0 < self.limits.max_clients <= self.total:
            return self._refuse("max_clients", "the server is full")
        host = _host(address)
        if host is None or host in self.exempt:
            return self._count(Ticket(self, host, None))
        why = self._chat_refusal(host)
        if why is not None:
            return why
        return self._count(Ticket(self, host, self.per_host))

    def admit_http(self, address: IAddress | None) -> Ticket | str:
        """
        Admit a plain HTTP connection from C{address} (which may become a
        chat connection: L{promote}), or say why not.
        """
        if 0 < self.limits.max_clients <= self.total:
            return self._refuse("max_clients", "the server is full")
        host = _host(address)
        cap = self.limits.max_http_per_ip
        if host is None or host in self.exempt or host in self.trusted:
            return self._count(Ticket(self, host, None))
        if 0 < cap <= self.http_per_host[host]:
            return self._refuse("max_http_per_ip", "too many connections from your address")
        return self._count(Ticket(self, host, self.http_per_host))

    def promote(self, ticket: Ticket, host: str) -> str | None:
        """
        The plain HTTP connection of C{ticket} becomes a chat connection
        (a WebSocket session) of the client at C{host}: count it so, or say
        why not (it then stays as it was).
        """
        exempt = host in self.exempt
        why = None if exempt else self._chat_refusal(host)
        if why is not None:
            return why
        if ticket.counts is not None and ticket.host is not None:
            self._uncount(ticket.counts, ticket.host)
        ticket.host, ticket.counts = host, None if exempt else self.per_host
        if not exempt:
            self.per_host[host] += 1
        return None

    def _chat_refusal(self, host: str) -> str | None:
        """
        Why a chat connection from C{host} (not exempt) is refused, if it
        is; a connect that is not refused is remembered for the rate.
        """
        limits = self.limits
        if limits.connect_rate[0] > 0:
            count, window = limits.connect_rate
            now = self.clock.seconds()
            recent = self._recent.pop(host, None) or deque(maxlen=count)
            while recent and recent[0] <= now - window:
                recent.popleft()
            full = len(recent) >= count
            recent.append(now)
            self._recent[host] = recent
            if len(self._recent) > TRACKED_ADDRESSES:
                self._recent.popitem(last=False)
            if full:
                return self._refuse("connect_rate", "too many connections from your address")
        if 0 < limits.max_per_ip <= self.per_host[host]:
            return self._refuse("max_per_ip", "too many connections from your address")
        return None

    def _count(self, ticket: Ticket) -> Ticket:
        self.total += 1
        if ticket.counts is not None and ticket.host is not None:
            ticket.counts[ticket.host] += 1
        return ticket

    def _refuse(self, limit: str, why: str) -> str:
        self.refused[limit] += 1
        return f"Connection refused: {why}; try again later"

    def _release(self, ticket: Ticket) -> None:
        self.total -= 1
        if ticket.counts is not None and ticket.host is not None:
            self._uncount(ticket.counts, ticket.host)

    @staticmethod
    def _uncount(counts: Counter[str], host: str) -> None:
        counts[host] -= 1
        if not counts[host]:
            del counts[host]


def _host(address: IAddress | None) -> str | None:
    if isinstance(address, IPv4Address | IPv6Address):
        return normal_host(address.host)
    return None


class Refusal(Protocol):
    """
    Says why the connection is refused, then closes it.
    """

    def __init__(self, message: bytes) -> None:
        self.message = message

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.message)
        self.transport.loseConnection()


CONNECTION_DONE = Failure(ConnectionDone())


class AdmittedConnection(ProtocolWrapper):
    """
    An admitted web connection: releases its place when it closes, and is
    dropped if it is still plain HTTP (no WebSocket session has taken it
    over, L{taken_over}) when its deadline passes, however it trickles
    bytes.  A WebSocket session that takes over writes to the real transport
    directly (see
    L{chatd.doors.websocket.ChatWebSocketProtocol.makeConnection}); this
    wrapper then only relays its input and the end of the connection.
    """

    factory: AdmittingFactory
    transport: ITCPTransport  # from makeConnection on: TCP, TLS or a unix socket
    ticket: Ticket
    _deadline: IDelayedCall | None = None
    _first = True  # no byte has come yet

    def dataReceived(self, data: bytes) -> None:
        if self._first:
            self._first = False
            upgrade = self.factory.upgrade
            if upgrade is not None and data.startswith(self.factory.upgrade_requests):
                self._upgrade(upgrade, data)
                return
        self.wrappedProtocol.dataReceived(data)

    def _upgrade(self, upgrade: IProtocolFactory, data: bytes) -> None:
        """
        The connection's first request is the WebSocket handshake: give it
        straight to C{upgrade}'s protocol, which reads the handshake itself,
        rather than have twisted.web parse it first and Autobahn again (a
        third of a WebSocket sign-on).  Any other request, or a handshake
        that comes after a page on the same connection, goes to the site,
        which hands the WebSocket path over as well.
        """
        protocol = upgrade.buildProtocol(self.getPeer())
        if protocol is None:
            self.wrappedProtocol.dataReceived(data)
            return
        channel, self.wrappedProtocol = self.wrappedProtocol, protocol
        channel.connectionLost(CONNECTION_DONE)  # it had read nothing: no request to end
        protocol.makeConnection(cast(ITransport, self))  # a ProtocolWrapper is one
        protocol.dataReceived(data)

    def connectionMade(self) -> None:
        super().connectionMade()
        self._deadline = self.factory.clock.callLater(self.factory.deadline, self._expire)

    def connectionLost(self, reason: Failure = CONNECTION_DONE) -> None:
        self.ticket.release()
        self._cancel_deadline()
        super().connectionLost(reason)

    def taken_over(self) -> Ticket:
        """
        A WebSocket session takes the connection over, with its own deadline
        to sign on by: this one no longer applies.  Return the connection's
        ticket.
        """
        self._cancel_deadline()
        return self.ticket

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        self.factory.admission.refused["http_deadline"] += 1
        self.transport.abortConnection()


@implementer(IProtocolNegotiationFactory)
class AdmittingFactory(WrappingFactory):
    """
    Wraps the web site's factory so that its connections pass
    L{Admission} (a refused one is told why by C{refusal(reason)}) and are
    closed unless they become WebSocket sessions within C{deadline}
    seconds (plain page loads are quick; browsers reconnect as needed).
    """

    protocol = AdmittedConnection

    def __init__(
        self,
        wrapped: Factory[Any],
        admission: Admission,
        refusal: Callable[[str], bytes],
        clock: IReactorTime,
        deadline: float,
        upgrade: tuple[bytes, IProtocolFactory] | None = None,
    ) -> None:
        """
        @param upgrade: the path the site serves the WebSocket door at, and
            the door: a connection whose first request is its handshake goes
            to it directly (L{AdmittedConnection._upgrade}).
        """
        super().__init__(wrapped)
        self.admission = admission
        self.refusal = refusal
        self.clock = clock
        self.deadline = deadline
        self.upgrade: IProtocolFactory | None = None
        self.upgrade_requests: tuple[bytes, ...] = ()
        if upgrade is not None:
            path, self.upgrade = upgrade
            self.upgrade_requests = (b"GET " + path + b" HTTP/", b"GET " + path + b"?")

    def acceptableProtocols(self) -> list[bytes]:
        """
        For TLS (ALPN): HTTP/1.1 only; a WebSocket cannot take over an
        HTTP/2 stream.
        """
        return [b"http/1.1"]

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:  # type: ignore[override]
        ticket = self.admission.admit_http(addr)
        if isinstance(ticket, str):
            return Refusal(self.refusal(ticket))
        protocol = cast(AdmittedConnection, super().buildProtocol(addr))
        protocol.ticket = ticket
        return protocol


def http_refusal(reason: str) -> bytes:
    """
    A complete HTTP 503 response saying C{reason}.
    """
    body = reason.encode("utf-8") + b"\n"
    return (
        b"HTTP/1.1 503 Service Unavailable\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Connection: close\r\n"
        b"Retry-After: 60\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
