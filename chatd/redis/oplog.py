# -*- test-case-name: tests.test_cluster_redis -*-
"""
The cluster's operation log (L{chatd.interfaces.IOpLog}) on Redis.

The log is a Redis stream whose entry ids are C{SEQ-0}, SEQ counting every
operation; a Lua script numbers and appends each operation atomically, so
the order of the stream is the one order every node applies.  Each node
reads the stream with C{XREAD BLOCK} on a connection of its own, and keeps
a key with a time-to-live as its heartbeat.

The stream is capped (C{MAXLEN ~}): a node that falls further behind than
that finds a gap in the numbers and starts again from a snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from chatd.cluster.ops import FORMAT
from chatd.interfaces import IOpLog
from chatd.redis.connection import KEY_PREFIX

HEARTBEAT_EVERY = 1.0
COMMAND_TIMEOUT = 5.0
HEARTBEAT_TTL = 10.0
READ_BLOCK_MS = 2000
READ_COUNT = 1000
MAX_LOG = 200_000
SNAPSHOT_TTL = 60

_APPEND = """
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'o', ARGV[1])
return seq
"""

# Register the node, name the live node with the smallest id to answer it,
# and append its hello (an operation of format ARGV[5], chatd.cluster.ops),
# all at once: every node alive before the hello has
# its heartbeat set, so nobody is missed.
_HELLO = """
local prefix, node = ARGV[1], ARGV[2]
local live = {}
for _, other in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if other ~= node then
    if redis.call('EXISTS', prefix .. 'node:' .. other) == 1 then
      table.insert(live, other)
    else
      redis.call('SREM', KEYS[3], other)
    end
  end
end
table.sort(live)
local responder = live[1]
redis.call('SADD', KEYS[3], node)
redis.call('SET', prefix .. 'node:' .. node, '1', 'PX', ARGV[3])
local seq = redis.call('INCR', KEYS[1])
local op = cjson.encode({v = tonumber(ARGV[5]), op = 'hello', node = node, ref = 0, ts = 0,
                        responder = responder or cjson.null})
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-0', 'o', op)
return {seq, responder or ''}
"""

# After Redis comes back (perhaps without its data), make sure numbering
# goes on from above everything any node has seen.
_FLOOR = """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if top[1] then
  local last = tonumber(string.match(top[1][1], '^(%d+)'))
  if last > seq then seq = last end
end
local floor = tonumber(ARGV[1])
if floor > seq then seq = floor end
redis.call('SET', KEYS[1], seq)
return seq
"""


@implementer(IOpLog)
class RedisLog:
    """
    The operation log of one node, on two Redis connections: one for
    commands, one for the blocking read.

    @param connect: makes a (reconnecting, lazy) txredisapi connection.
    """

    heartbeat_ttl = HEARTBEAT_TTL
    _log = Logger()

    def __init__(
        self,
        connect: Callable[[], Any],
        clock: IReactorTime,
        prefix: str = KEY_PREFIX,
        max_log: int = MAX_LOG,
    ) -> None:
        self._connect = connect
        self.clock = clock
        self.prefix = prefix
        self.max_log = max_log
        self.seq_key = prefix + "seq"
        self.log_key = prefix + "log"
        self.nodes_key = prefix + "nodes"
        self.node: str | None = None
        self.commands: Any = None
        self.reader: Any = None
        self.connected = True
        self.last_seen = 0
        self._watchers: list[Callable[[bool], None]] = []
        self._deliver: Callable[[int, str], None] | None = None
        self._following = 0
        self._stopped = False
        self._beating = LoopingCall(self._beat)
        self._beating.clock = clock

    def _open(self) -> None:
        if self.commands is None:
            self.commands = self._connect()
            self.reader = self._connect()

    # -- IOpLog -------------------------------------------------------------

    def hello(
        self, node: str, deliver: Callable[[int, str], None]
    ) -> Deferred[tuple[int, str | None]]:
        self._open()
        self.node = node
        keys = [self.seq_key, self.log_key, self.nodes_key]
        ttl = str(int(self.heartbeat_ttl * 1000))
        args = [self.prefix, node, ttl, str(self.max_log), str(FORMAT)]

        def said(reply: list[Any]) -> tuple[int, str | None]:
            seq, responder = int(reply[0]), str(reply[1]) or None
            self.last_seen = max(self.last_seen, seq)
            self._follow(seq, deliver)
            if not self._beating.running:
                self._beating.start(HEARTBEAT_EVERY, now=False)
            return seq, responder

        hello: Deferred[list[Any]] = self.commands.eval(_HELLO, keys, args)
        return hello.addCallback(said)

    def append(self, op: str) -> Deferred[int]:
        if not self.connected:
            return _failed("not connected to Redis")
        appended: Deferred[int] = self.commands.eval(
            _APPEND, [self.seq_key, self.log_key], [op, str(self.max_log)]
        )
        return appended

    def put_snapshot(self, node: str, data: str) -> Deferred[None]:
        done: Deferred[None] = self.commands.set(
            self.prefix + "snapshot:" + node, data, expire=SNAPSHOT_TTL
        )
        return done

    def get_snapshot(self, node: str) -> Deferred[str | None]:
        key = self.prefix + "snapshot:" + node

        def got(data: str | None) -> Deferred[str | None]:
            return self.commands.delete(key).addCallback(lambda _: data)

        return self.commands.get(key).addCallback(got)

    def dead(self, nodes: list[str]) -> Deferred[list[str]]:
        checks = [self.commands.exists(self.prefix + "node:" + node) for node in nodes]

        def sort(found: list[Any]) -> list[str]:
            return [node for node, alive in zip(nodes, found, strict=True) if not alive]

        return gatherResults(checks, consumeErrors=True).addCallback(sort)

    def watch(self, callback: Callable[[bool], None]) -> None:
        self._watchers.append(callback)

    def stop(self) -> Deferred[None]:
        self._stopped = True
        self._following += 1
        if self._beating.running:
            self._beating.stop()
        if self.commands is None:
            return succeed(None)
        cleanup: Deferred[Any] = succeed(None)
        if self.connected and self.node is not None:
            key = self.prefix + "node:" + self.node
            cleanup = self.commands.delete(key)
            cleanup.addCallback(lambda _: self.commands.srem(self.nodes_key, self.node))
            cleanup.addErrback(lambda f: None)
        return cleanup.addCallback(lambda _: self._disconnect())

    def _disconnect(self) -> Deferred[Any]:
        return gatherResults([self.commands.disconnect(), self.reader.disconnect()])

    # -- reading ------------------------------------------------------------

    def _follow(self, after: int, deliver: Callable[[int, str], None]) -> None:
        """
        (Re)start reading the stream after entry C{after}; a read of an
        earlier generation still in flight is ignored when it returns.
        """
        self._following += 1
        self._deliver = deliver
        self._read(self._following, after)

    def _read(self, generation: int, after: int) -> None:
        if generation != self._following or self._stopped:
            return
        reading: Deferred[Any] = self.reader.execute_command(
            "XREAD",
            "BLOCK",
            READ_BLOCK_MS,
            "COUNT",
            READ_COUNT,
            "STREAMS",
            self.log_key,
            f"{after}-0",
            apply_timeout=False,
        )

        def got(reply: Any) -> None:
            if generation != self._following:
                return
            last = after
            if reply:
                for _, entries in reply:
                    for entry_id, fields in entries:
                        seq = int(str(entry_id).partition("-")[0])
                        last = seq
                        self.last_seen = max(self.last_seen, seq)
                        assert self._deliver is not None
                        self._deliver(seq, str(fields[1]))
                        if generation != self._following:
                            return
            self._read(generation, last)

        def failed(failure: Any) -> None:
            if generation == self._following and not self._stopped:
                self._log.debug("Reading the log failed: {why}", why=failure.getErrorMessage())
                self.clock.callLater(0.5, self._read, generation, after)

        reading.addCallbacks(got, failed)

    # -- liveness -----------------------------------------------------------

    def _beat(self) -> Deferred[None] | None:
        """
        Renew this node's heartbeat; notice the connection's state.
        """
        alive = self._is_connected()
        if alive != self.connected:
            self._set_connected(alive)
            if alive:
                return self._recovered()
        if not alive or self.node is None:
            return None
        key = self.prefix + "node:" + self.node
        beat: Deferred[Any] = self.commands.set(key, "1", pexpire=int(self.heartbeat_ttl * 1000))
        beat.addCallback(lambda _: self.commands.sadd(self.nodes_key, self.node))
        return beat.addCallbacks(lambda _: None, lambda f: None)

    def _recovered(self) -> Deferred[None]:
        floor: Deferred[Any] = self.commands.eval(
            _FLOOR, [self.seq_key, self.log_key], [str(self.last_seen)]
        )
        floor.addCallback(lambda _: self._beat())
        return floor.addErrback(lambda f: None)

    def _is_connected(self) -> bool:
        return bool(self.commands._factory.size) and bool(self.reader._factory.size)

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        for watcher in self._watchers:
            watcher(connected)


def _failed(why: str) -> Deferred[Any]:
    return fail(ConnectionError(why))
