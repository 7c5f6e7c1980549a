"""
Redis URLs, and connections made from them to a real C{redis-server} (see
L{tests.support.redisserver}): over TCP, TLS and a unix socket, with and without
a password, and to nothing at all.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.interfaces import IReactorTime
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd.redis.connection import (
    KEY_PREFIX,
    RedisAddress,
    RedisUnavailable,
    connect,
    disconnect,
    parse_redis_url,
)
from tests.support.certs import HOSTNAME, make_self_signed
from tests.support.processes import scratch_dir
from tests.support.redisserver import redis_server

CLOCK = cast(IReactorTime, reactor)


class ParseTests(SynchronousTestCase):
    def test_tcp(self) -> None:
        """
        C{redis://} gives host, port and database, with defaults for the
        port (6379) and database (0).
        """
        self.assertEqual(parse_redis_url("redis://cache"), RedisAddress("cache", 6379, 0))
        self.assertEqual(parse_redis_url("redis://cache/"), RedisAddress("cache", 6379, 0))
        self.assertEqual(
            parse_redis_url("REDIS://Cache.example:6380/3"), RedisAddress("cache.example", 6380, 3)
        )
        self.assertEqual(parse_redis_url("redis://[::1]:7000/1"), RedisAddress("::1", 7000, 1))

    def test_password(self) -> None:
        """
        A password (and an ACL user) come percent-decoded from the URL, and
        are never shown: not by C{repr}, not by C{str}.
        """
        address = parse_redis_url("redis://:p%40ss:word@h:1/2")
        self.assertEqual((address.password, address.username), ("p@ss:word", None))
        address = parse_redis_url("rediss://chat:pw@h/0")
        self.assertEqual((address.username, address.password, address.tls), ("chat", "pw", True))
        self.assertNotIn("pw", repr(address))
        self.assertEqual(str(address), "rediss://chat@h:6379/0")

    def test_unix(self) -> None:
        """
        C{unix://} and C{redis+unix://} name a socket by its absolute path,
        with the database as C{?db=}.
        """
        self.assertEqual(
            parse_redis_url("unix:///run/redis/redis.sock"),
            RedisAddress(None, 0, 0, unix="/run/redis/redis.sock"),
        )
        address = parse_redis_url("redis+unix://:pw@/tmp/r%20s.sock?db=4")
        self.assertEqual(address, RedisAddress(None, 0, 4, "pw", unix="/tmp/r s.sock"))
        self.assertEqual(str(address), "unix:///tmp/r s.sock?db=4")

    def test_bad(self) -> None:
        """
        Anything else is refused with a message saying what is wrong (and
        what is accepted), without the password.
        """
        for url, why in (
            ("localhost:6379", "Not a Redis URL"),
            ("http://h/0", "Not a Redis URL"),
            ("redis://", "Not a Redis URL"),
            ("redis:///0", "no host"),
            ("redis://h:port/0", "Bad Redis URL"),
            ("redis://h:99999/0", "Bad Redis URL"),
            ("redis://h/x", "the database must be a number"),
            ("redis://h/-1", "the database must be a number"),
            ("redis://h/0/1", "the database must be a number"),
            ("redis://h/0?db=1", "unknown option db"),
            ("redis://h/0#x", "no '#'"),
            ("unix://host/tmp/r.sock", "has no host"),
            ("unix://", "Not a Redis URL"),
            ("unix:///", "absolute path"),
            ("unix:///tmp/r.sock?db=a", "must be a number"),
            ("unix:///tmp/r.sock?timeout=1", "unknown option timeout"),
            ("redis://:hunter2@h:port/0", "redis://:***@h:port/0"),
        ):
            with self.assertRaises(ValueError, msg=url) as caught:
                parse_redis_url(url)
            self.assertIn(why, str(caught.exception), url)
            self.assertNotIn("hunter2", str(caught.exception))

    def test_prefix(self) -> None:
        """
        chatd's keys share one prefix.
        """
        self.assertEqual(KEY_PREFIX, "chatd:")


class ConnectTests(TestCase):
    timeout = 20

    async def roundtrip(self, address: RedisAddress, **kw: Any) -> None:
        """
        Connect to C{address}, write and read a key, and disconnect.
        """
        connection = await connect(CLOCK, address, timeout=5.0, **kw)
        try:
            await connection.execute_command("SET", "chatd:test", "007")
            self.assertEqual(await connection.execute_command("GET", "chatd:test"), "007")
        finally:
            await disconnect(connection)

    async def test_tcp_db(self) -> None:
        """
        A connection is on the database the URL names; values stay text.
        """
        server = redis_server(self)
        await self.roundtrip(parse_redis_url(server.url.replace("/0", "/2")))
        self.assertEqual(server.command("SELECT", 2), "OK")
        self.assertEqual(server.command("DBSIZE"), 0)

    async def test_unix_password(self) -> None:
        """
        A connection can use a unix socket and log in with a password.
        """
        server = redis_server(self, unix=True, password="s3cret")
        await self.roundtrip(parse_redis_url(server.unix_url))
        await self.roundtrip(parse_redis_url(server.url))

    async def test_refused_password(self) -> None:
        """
        A wrong password fails the connection at once, saying so, and
        leaves nothing behind.
        """
        server = redis_server(self, password="s3cret")
        address = parse_redis_url(server.url.replace("s3cret", "guess"))
        with self.assertRaises(RedisUnavailable) as caught:
            await connect(CLOCK, address, timeout=5.0)
        why = str(caught.exception)
        self.assertIn(f"Cannot use Redis at redis://127.0.0.1:{server.port}/0", why)
        self.assertIn("auth", why.lower())
        self.assertNotIn("guess", why)

    async def test_tls(self) -> None:
        """
        C{rediss://} connects over TLS and checks the server's certificate:
        one it has no reason to trust is refused.
        """
        certificate = make_self_signed(scratch_dir(self))
        server = redis_server(self, tls=certificate)
        address = parse_redis_url(server.tls_url)
        self.assertEqual((address.host, address.tls), (HOSTNAME, True))
        trust = Certificate.loadPEM(certificate.cert.read_bytes())
        await self.roundtrip(address, tls=optionsForClientTLS(HOSTNAME, trustRoot=trust))
        for reconnect in (False, True):
            with self.assertRaises(RedisUnavailable) as caught:
                await connect(CLOCK, address, timeout=1.0, reconnect=reconnect)
            self.assertIn(
                "over TLS: is its certificate valid for localhost?", str(caught.exception)
            )

    async def test_nobody_there(self) -> None:
        """
        With nothing listening, a connection that would retry gives up at
        the timeout; one that would not gives up at once.
        """
        address = parse_redis_url("redis://127.0.0.1:1/0")  # nothing listens there
        with self.assertRaises(RedisUnavailable) as caught:
            await connect(CLOCK, address, timeout=0.3)
        self.assertIn("no answer within 0.3 s", str(caught.exception))
        with self.assertRaises(RedisUnavailable) as caught:
            await connect(CLOCK, address, timeout=5.0, reconnect=False)
        self.assertIn("refused", str(caught.exception))
