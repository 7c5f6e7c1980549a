# -*- test-case-name: tests.test_redis,tests.test_store_redis -*-
"""
Connections to the Redis that a cluster of chatd nodes shares.

Cluster mode keeps history, accounts and registered rooms
(L{chatd.redis.store}) and the nodes' shared log (L{chatd.cluster}) in one
Redis, named by a URL on the command line.  This module turns that URL into
a L{RedisAddress} and an address into a txredisapi connection, so that every
part of chatd connects the same way: same TLS checks, same timeouts, same
reply decoding, and keys under one L{KEY_PREFIX}.

txredisapi is Twisted-native, so nothing here blocks the reactor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import txredisapi
from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IReactorTime
from twisted.internet.ssl import optionsForClientTLS

KEY_PREFIX = "chatd:"
"""What every key chatd keeps in Redis starts with, so that chatd can share a
database with other programs, and an operator can find (or drop) its keys."""

DEFAULT_PORT = 6379

RedisConnection = Any
"""A txredisapi connection handler (txredisapi ships no type information):
Redis commands as methods returning Deferreds, C{execute_command(*args)} for
any other (XADD, XREAD, EVALSHA...), and C{disconnect()}."""

_SCHEMES = ("redis", "rediss", "unix", "redis+unix")


class RedisUnavailable(Exception):
    """
    Redis could not be reached, or refused us (wrong password, no such db).
    """


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """
    Where a Redis server is and how to log in to it.

    @ivar host: name or IP address of a TCP server (None for a unix socket).
    @ivar port: its TCP port.
    @ivar db: the database number to SELECT.
    @ivar password: for AUTH, or None; never shown by C{repr} or C{str}.
    @ivar username: the ACL user for AUTH (Redis 6+), or None for the
        default user.
    @ivar tls: connect over TLS (C{rediss://}), checking the server's
        certificate against the system's trusted authorities.
    @ivar unix: path of a unix socket to connect to instead of TCP.
    """

    host: str | None = "localhost"
    port: int = DEFAULT_PORT
    db: int = 0
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    tls: bool = False
    unix: str | None = None

    def __str__(self) -> str:
        """
        The address as a URL without its password, for logs and errors.
        """
        user = f"{self.username}@" if self.username else ""
        if self.unix is not None:
            return f"unix://{user}{self.unix}?db={self.db}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{user}{host}:{self.port}/{self.db}"


def parse_redis_url(url: str) -> RedisAddress:
    """
    Read C{url}, one of::

        redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
        rediss://...                                (the same, over TLS)
        unix://[[USER]:PASSWORD@]/PATH/TO/redis.sock[?db=DB]
        redis+unix://...                            (the same)

    Percent-escapes are decoded in the user, password and path.

    @raise ValueError: with what is wrong and the forms accepted, for
        anything else (the message never contains the password).
    """
    forms = (
        "expected redis://[:PASSWORD@]HOST[:PORT][/DB], rediss://... for TLS,"
        " or unix:///PATH/TO/redis.sock[?db=DB]"
    )
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if not rest or scheme not in _SCHEMES:
        raise ValueError(f"Not a Redis URL: {_hide_password(url)!r} ({forms})")
    try:
        parts = urlsplit(f"{scheme}://{rest}")
        username, password = parts.username, parts.password
        hostname, port = parts.hostname, parts.port
    except ValueError as e:
        raise ValueError(f"Bad Redis URL {_hide_password(url)!r}: {e} ({forms})") from None
    if parts.fragment:
        raise ValueError(f"Bad Redis URL {_hide_password(url)!r}: no '#' part allowed")
    user = unquote(username) if username else None
    secret = unquote(password) if password is not None else None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme in ("unix", "redis+unix"):
        if hostname or port is not None:
            raise ValueError(
                f"Bad Redis URL {_hide_password(url)!r}: a unix socket URL has no host"
                " (three slashes: unix:///path/to/redis.sock)"
            )
        path = unquote(parts.path)
        if not path.startswith("/") or path == "/":
            raise ValueError(
                f"Bad Redis URL {_hide_password(url)!r}: the socket needs an absolute path"
            )
        db = _db(url, query.pop("db", "0"))
        _no_more(url, query)
        return RedisAddress(None, 0, db, secret, user, False, path)
    if not hostname:
        raise ValueError(f"Bad Redis URL {_hide_password(url)!r}: no host ({forms})")
    _no_more(url, query)
    path = parts.path.strip("/")
    return RedisAddress(
        hostname,
        DEFAULT_PORT if port is None else port,
        _db(url, path or "0"),
        secret,
        user,
        scheme == "rediss",
        None,
    )


def _db(url: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(
            f"Bad Redis URL {_hide_password(url)!r}: the database must be a number"
            f" (like /0), not {text[:20]!r}"
        )
    return int(text)


def _no_more(url: str, query: dict[str, str]) -> None:
    if query:
        raise ValueError(
            f"Bad Redis URL {_hide_password(url)!r}: unknown option"
            f" {', '.join(sorted(query))} (only db=N, for a unix socket)"
        )


def _hide_password(url: str) -> str:
    """
    C{url} with any password replaced by C{***}, fit for an error message.
    """
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if not (sep and at and ":" in userinfo):
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{hostport}{slash}{tail}"


def lazy_connection(
    address: RedisAddress,
    *,
    reconnect: bool = True,
    connect_timeout: float = 10.0,
    reply_timeout: float | None = None,
    retry_delay: float = 2.0,
    tls: IOpenSSLClientConnectionCreator | None = None,
) -> RedisConnection:
    """
    A txredisapi connection to C{address}, returned at once: commands made
    before it is up wait for it (and, with C{reconnect}, for it to come
    back after Redis went away), and run in the order they were made.

    Replies are decoded as UTF-8 text and never turned into numbers (a
    stored text that looks like a number stays text); integer replies are
    ints.  One TCP or unix connection carries every command, so commands
    are pipelined, never reordered.

    txredisapi uses the global reactor.

    @param reply_timeout: if set, a command not answered within that many
        seconds fails and the connection is dropped (and remade, with
        C{reconnect}); leave it None for a connection that blocks (XREAD).
    @param retry_delay: the longest wait between attempts to reconnect
        (txredisapi's own is 10 s, too long for chat: every part of chatd
        should be back soon after Redis is).
    @param tls: for C{rediss://}, how to check the server (default: its
        certificate must be valid for C{address.host} by the system's
        trusted authorities).
    """
    options: dict[str, Any] = {
        "dbid": address.db or None,
        "reconnect": reconnect,
        "charset": "utf-8",
        "password": address.password,
        "connectTimeout": connect_timeout,
        "replyTimeout": reply_timeout,
        "convertNumbers": False,
    }
    if address.username is not None:
        # Only pass it when needed: older txredisapi releases lack the argument.
        options["username"] = address.username
    if address.unix is not None:
        connection = txredisapi.lazyUnixConnection(address.unix, **options)
    else:
        if address.tls:
            assert address.host is not None
            options["ssl_context_factory"] = tls or optionsForClientTLS(address.host)
        connection = txredisapi.lazyConnection(address.host, address.port, **options)
    # The factory's back-off settings (read at each retry, in every release
    # since 1.4) are not arguments of the connection functions.
    factory = connection._factory
    factory.maxDelay = retry_delay
    factory.initialDelay = min(factory.initialDelay, retry_delay / 4)
    return connection


def connect(
    reactor: IReactorTime,
    address: RedisAddress,
    *,
    reconnect: bool = True,
    timeout: float = 10.0,
    reply_timeout: float | None = None,
    retry_delay: float = 2.0,
    tls: IOpenSSLClientConnectionCreator | None = None,
) -> Deferred[RedisConnection]:
    """
    A L{lazy_connection} to C{address}, once it is up: logged in and on the
    right database.

    @param reactor: times C{timeout} (txredisapi itself uses the global
        reactor).
    @return: fires with the connection, or fails with L{RedisUnavailable}
        if it is not up within C{timeout} seconds or Redis refuses us
        (having then given up on it, so nothing is left running).
    """
    connection = lazy_connection(
        address,
        reconnect=reconnect,
        connect_timeout=timeout,
        reply_timeout=reply_timeout,
        retry_delay=retry_delay,
        tls=tls,
    )
    return Deferred.fromCoroutine(_ready(reactor, connection, address, timeout))


async def _ready(
    reactor: IReactorTime, connection: RedisConnection, address: RedisAddress, timeout: float
) -> RedisConnection:
    # The handler's _connected is the factory's "whole pool is ready"
    # Deferred (in every release since 1.4): it fires once AUTH and SELECT
    # are done, or fails if either is refused or, without reconnect, the
    # connection attempt fails; a PING alone would never hear of a refused
    # AUTH.  The PING after it proves a TLS handshake, which without AUTH
    # has not happened yet when txredisapi calls the connection ready.
    ready: Deferred[Any] = Deferred()
    connection._connected.chainDeferred(ready)
    ready.addCallback(lambda _: connection.execute_command("PING"))
    ready.addTimeout(timeout, reactor)
    try:
        await ready
    except TimeoutError:
        why = f"no answer within {timeout:g} s"
    except Exception as e:
        why = str(e).removeprefix("Redis error: ") or type(e).__name__
    else:
        return connection
    if address.tls:
        why += f" (over TLS: is its certificate valid for {address.host}?)"
    await disconnect(connection)
    raise RedisUnavailable(f"Cannot use Redis at {address}: {why}")


def disconnect(connection: RedisConnection) -> Deferred[None]:
    """
    Stop C{connection} reconnecting and close it; fire once it is closed
    (at once with txredisapi releases whose C{disconnect} does not say).
    """
    done = connection.disconnect()
    if not isinstance(done, Deferred):
        return succeed(None)
    return done.addCallback(lambda _: None)
