# -*- test-case-name: tests.test_store_redis -*-
"""
The store of a cluster: history, accounts and registered rooms in the Redis
that every node shares, so that any node serves any of them.

Its keys are listed in L{chatd.redis}.  Nicks cannot hold C{:} or spaces,
so these names cannot collide.  The scripts below touch keys they build
themselves, which a single Redis (not a Redis Cluster) allows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.internet.defer import (
    Deferred,
    DeferredList,
    TimeoutError,
    fail,
    gatherResults,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.errors import StoreError
from chatd.interfaces import ISharedStore
from chatd.model import Account, Message, PrivateMessage, RoomRecord, StoreState, fold
from chatd.redis.connection import (
    KEY_PREFIX,
    RedisAddress,
    RedisConnection,
    RedisUnavailable,
    connect,
    disconnect,
    parse_redis_url,
)
from chatd.store.memory import pair_key
from chatd.store.queue import QueuedStore, Registered, Rekeyed, WriteQueue, fail_waiters

_RECORD = """
local stored, top, topid = 0, 0, nil
for i = 3, #KEYS do
  local j = (i - 3) * 4
  local id, ts, body, name = ARGV[j + 1], ARGV[j + 2], ARGV[j + 3], ARGV[j + 4]
  if redis.call('ZCOUNT', KEYS[i], id, id) == 0 then
    redis.call('ZADD', KEYS[i], id, body)
    redis.call('ZADD', KEYS[2], ts, id .. ' ' .. name)
    stored = stored + 1
  end
  if tonumber(id) > top then top, topid = tonumber(id), id end
end
if topid and top > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], topid)
end
return stored
"""
"""Store messages (KEYS[3:], ARGV: id, ts, JSON, key name, per message)
unless their id is stored already (the first is kept, as in SQLite), index
them by time (KEYS[2]) and raise the counter (KEYS[1]) to the highest id."""

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'password_hash', ARGV[3],
           'created', ARGV[4], 'first_id', ARGV[5])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

_REKEY = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'password_hash', ARGV[1])
end
return 0
"""

_PRUNE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1],
                       'LIMIT', 0, tonumber(ARGV[2]))
local removed = 0
for _, entry in ipairs(due) do
  local space = string.find(entry, ' ', 1, true)
  local id = string.sub(entry, 1, space - 1)
  removed = removed + redis.call('ZREMRANGEBYSCORE', ARGV[3] .. string.sub(entry, space + 1),
                                 id, id)
end
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return {#due, removed}
"""
"""Forget up to ARGV[2] messages older than ARGV[1] by the index KEYS[1];
return how many index entries and how many messages went."""

_PER_SCRIPT = 500
"""Messages stored by one run of L{_RECORD}, so no run holds Redis long."""

_PRUNE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class _Said:
    """A room or private message, ready for L{_RECORD}."""

    name: str
    id: str
    ts: str
    body: str


@dataclass(frozen=True, slots=True)
class _Saved:
    key: str
    body: str


_Write = _Said | Registered | Rekeyed | _Saved
_Bounds = tuple[int, int | None, str]
_Message = TypeVar("_Message", Message, PrivateMessage)


def _compact(value: object) -> str:
    # ASCII-only, so that any text (even with lone surrogates) can be sent.
    return json.dumps(value, separators=(",", ":"))


def _said(message: Message | PrivateMessage) -> _Said:
    """
    C{message} as stored: a JSON array, in the sorted set named for its
    room or its pair of nicks.
    """
    m = message
    if isinstance(m, Message):
        name = f"room:{fold(m.room)}"
        body = _compact([m.id, m.room, m.sender, m.text, m.ts, m.action])
    else:
        name = "pm:{}:{}".format(*pair_key(m.sender, m.recipient))
        body = _compact([m.id, m.sender, m.recipient, m.text, m.ts])
    return _Said(name, str(int(m.id)), repr(float(m.ts)), body)


def _message(body: str) -> Message:
    id, room, sender, text, ts, action = json.loads(body)
    return Message(room, sender, text, ts, id, action)


def _private(body: str) -> PrivateMessage:
    id, sender, recipient, text, ts = json.loads(body)
    return PrivateMessage(sender, recipient, text, ts, id)


def _pairs(reply: list[str]) -> dict[str, str]:
    return dict(zip(reply[::2], reply[1::2], strict=True))


@implementer(ISharedStore)
class RedisStore(QueuedStore):
    """
    Keep everything in the Redis at C{address} (a L{RedisAddress} or URL),
    under keys starting with C{prefix}.

    Call L{open} (and wait for it) before anything else: Redis cannot be
    read before the reactor runs, so L{load} only returns what L{open} read.

    Writes are queued and sent together C{commit_window} seconds after the
    first (by default, at the end of the reactor turn that made them, so
    that other nodes read them at once), all on one connection, so Redis
    applies them in the order they were made; every read first sends what
    is queued, so it sees every write made before it.  At most
    C{max_queued} messages may be queued or unanswered: beyond that (Redis
    far behind, or away) new messages are not stored but counted in
    C{dropped}, so memory stays bounded.

    A page asked for while the same page (same room or conversation, same
    bounds) is being read is given that read's answer rather than read
    again, unless this store has written to that room or conversation since
    the read was sent; so a reconnect storm joining one room makes one read,
    and every answer still reflects every write this store made before it
    was asked for.  (Messages other nodes store are seen as soon as the hub
    knows of them: the hub pages below the newest id it knows, so a page
    asked for after it learnt of a new message has other bounds.)

    While Redis is away the connection is remade in the background.  Writes
    made meanwhile wait, within that bound, and are stored once it is back;
    writes that were on the wire when the connection broke may or may not
    have been applied, and their messages are counted as dropped.  Reads
    (and the readiness check) fail after C{timeout} seconds.

    After L{close}, writes are logged and ignored and every other method
    fails with L{StoreError}.

    @ivar commits: how many batches of writes Redis has applied.
    @ivar commit_seconds: the time they took, from sending to the answer.
    @ivar dropped: how many messages were not stored (too many queued, or
        their batch failed).
    """

    log = Logger()

    def __init__(
        self,
        address: RedisAddress | str,
        reactor: IReactorTime,
        *,
        prefix: str = KEY_PREFIX,
        commit_window: float = 0.0,
        max_queued: int = 100_000,
        timeout: float = 5.0,
    ) -> None:
        self.address = parse_redis_url(address) if isinstance(address, str) else address
        self.reactor = reactor
        self.prefix = prefix
        self.commit_window = commit_window
        self.max_queued = max_queued
        self.timeout = timeout
        self.commits = 0
        self.commit_seconds = 0.0
        self._redis: RedisConnection | None = None
        self._opening = False
        self._state: StoreState | None = None
        # Messages count against max_queued until Redis has answered them.
        self._queue: WriteQueue[_Write] = WriteQueue(
            reactor, commit_window, max_queued, self._flush, "Redis"
        )
        self._batches = 0
        self._idle: list[Deferred[None]] = []
        self._failing: StoreError | None = None
        self._closed = False
        self._closing: Deferred[None] | None = None
        # Pages being read, by sorted set, then by (limit, before, bottom):
        # who else waits for each.
        self._reading: dict[str, dict[_Bounds, list[Deferred[list[Any]]]]] = {}

    # -- opening -------------------------------------------------------------

    def open(self) -> Deferred[StoreState]:
        """
        Connect, and read what the hub needs at start-up: the highest
        message id, every account's folded name, every registered room.

        @return: fires with that (also kept for L{load}), or fails with
            L{StoreError} if Redis cannot be reached or read within
            C{timeout} seconds (having then disconnected; it may then be
            called again).
        """
        if self._opening:
            return fail(RuntimeError("RedisStore.open() may be called only once"))
        self._opening = True

        def failed(failure: Failure) -> Failure:
            # Nothing is left connected: it may be tried again.
            self._opening = False
            return failure

        return Deferred.fromCoroutine(self._open()).addErrback(failed)

    async def _open(self) -> StoreState:
        try:
            redis = await connect(
                self.reactor, self.address, timeout=self.timeout, reply_timeout=30.0
            )
        except RedisUnavailable as e:
            raise StoreError(str(e)) from None
        p = self.prefix
        try:
            seq, accounts, rooms = await self._within(
                gatherResults(
                    [
                        redis.execute_command("GET", p + "seq"),
                        redis.execute_command("SMEMBERS", p + "accounts"),
                        redis.execute_command("HVALS", p + "rooms"),
                    ],
                    consumeErrors=True,
                ),
                "reading chatd's state",
            )
            state = StoreState(
                int(seq or 0),
                frozenset(accounts),
                tuple(RoomRecord.from_list(json.loads(body)) for body in rooms),
            )
        except Exception as e:
            await disconnect(redis)
            if isinstance(e, StoreError):
                raise
            raise StoreError(f"Cannot read the chatd data in Redis at {self.address}: {e}") from e
        if self._closed:
            await disconnect(redis)
            raise StoreError("The store was closed while opening")
        self._redis, self._state = redis, state
        self._flush()
        return state

    def load(self) -> StoreState:
        """
        What L{open} read.
        """
        if self._state is None:
            raise RuntimeError("RedisStore.open() must have fired before load()")
        return self._state

    # -- writing -------------------------------------------------------------

    def _refused(self) -> bool:
        if self._closed:
            self.log.warn("A write to the closed store {address} was ignored", address=self.address)
        return self._closed

    def record(self, message: Message | PrivateMessage) -> None:
        if self._refused() or not self._queue.admit(self.log):
            return
        try:
            write = _said(message)
        except Exception:
            self._queue.dropped += 1
            self.log.failure("Message {id} cannot be stored", id=getattr(message, "id", None))
            return
        self._queue.put(write, message=True)
        self._reading.pop(write.name, None)  # reads sent before cannot answer later fetches

    def save_room(self, room: RoomRecord) -> None:
        if not self._refused():
            self._queue.put(_Saved(fold(room.name), _compact(room.to_list())))

    def _flush(self) -> None:
        """
        Send everything queued, as one batch (if we are connected).  Later
        commands on the connection, reads included, run after it.
        """
        self._queue.stop()
        redis = self._redis
        if redis is None or not self._queue:
            return
        batch, messages = self._queue.take()
        p = self.prefix
        sent: list[Deferred[Any]] = []
        said: list[_Said] = []

        def send_said() -> None:
            for start in range(0, len(said), _PER_SCRIPT):
                chunk = said[start : start + _PER_SCRIPT]
                keys = [p + "seq", p + "history", *(p + s.name for s in chunk)]
                args = [a for s in chunk for a in (s.id, s.ts, s.body, s.name)]
                d = redis.execute_command("EVAL", _RECORD, len(keys), *keys, *args)
                sent.append(d.addErrback(self._lost, len(chunk)))
            said.clear()

        for w in batch:
            if isinstance(w, _Said):
                said.append(w)
                continue
            send_said()
            if isinstance(w, _Saved):
                d = redis.execute_command("HSET", p + "rooms", w.key, w.body)
                sent.append(d.addErrback(self._lost, 0))
            elif isinstance(w, Registered):
                a = w.account
                keys = [p + "account:" + w.key, p + "accounts"]
                args = [w.key, a.name, a.password_hash, repr(float(a.created)), str(a.first_id)]
                d = redis.execute_command("EVAL", _CREATE, 2, *keys, *args)
                sent.append(d.addCallback(lambda created: created == 1).addBoth(self._tell, w.done))
            else:
                d = redis.execute_command(
                    "EVAL", _REKEY, 1, p + "account:" + w.key, w.password_hash
                )
                sent.append(d.addCallback(lambda _: None).addBoth(self._tell, w.done))
        send_said()
        self._batches += 1
        started = time.perf_counter()
        done = DeferredList(sent, consumeErrors=True)
        done.addCallback(self._answered, messages, started)

    def _lost(self, failure: Failure, messages: int) -> Failure:
        self._queue.dropped += messages
        return failure

    def _tell(self, outcome: object, done: Deferred[Any]) -> object:
        """
        Pass the outcome of an account write to whoever waits for it.
        """
        if isinstance(outcome, Failure):
            done.errback(StoreError(f"Could not write to Redis at {self.address}: {outcome.value}"))
        else:
            done.callback(outcome)
        return outcome

    def _answered(self, results: list[tuple[bool, Any]], messages: int, started: float) -> None:
        """
        Redis has answered every command of a batch of C{messages} messages.
        """
        self._queue.release(messages)
        self._queue.answered()
        self._batches -= 1
        errors = [r for ok, r in results if not ok]
        if errors:
            first: Failure = errors[0]
            self.log.error(
                "{count} of {total} writes to Redis at {address} failed: {why}",
                count=len(errors),
                total=len(results),
                address=self.address,
                why=first.getErrorMessage(),
            )
            self._failing = StoreError(
                f"Could not write to Redis at {self.address}: {first.getErrorMessage()}"
            )
        else:
            self.commits += 1
            self.commit_seconds += time.perf_counter() - started
            self._failing = None
        if not self._batches:
            waiters, self._idle = self._idle, []
            for waiter in waiters:
                waiter.callback(None)

    def flush(self) -> Deferred[None]:
        """
        Send what is queued now; fire once Redis has answered every batch
        sent so far (whether or not it succeeded, which is logged).
        """
        self._flush()
        if not self._batches:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle.append(waiter)
        return waiter

    # -- reading -------------------------------------------------------------

    def _within(self, d: Deferred[Any], what: str) -> Deferred[Any]:
        """
        C{d}, failing with L{StoreError} if it does not fire in time.
        """

        def late(failure: Failure) -> Failure:
            if failure.check(TimeoutError):
                return Failure(
                    StoreError(f"No answer from Redis within {self.timeout:g} s ({what})")
                )
            if not failure.check(StoreError):
                return Failure(StoreError(f"Redis failed {what}: {failure.getErrorMessage()}"))
            return failure

        return d.addTimeout(self.timeout, self.reactor).addErrback(late)

    def _read(self, what: str, *command: object) -> Deferred[Any]:
        """
        Send what is queued, then C{command}, whose answer therefore
        reflects every write made so far.
        """
        if self._closed:
            return fail(StoreError("The store is closed"))
        if self._redis is None:
            return fail(StoreError("The store is not open"))
        self._flush()
        return self._within(self._redis.execute_command(*command), what)

    def check(self) -> Deferred[None]:
        """
        Fail if the last batch of writes failed or the store is closed;
        otherwise PING Redis, failing unless it answers in time.
        """
        if self._failing is not None:
            return fail(self._failing)
        return self._read("the readiness check", "PING").addCallback(lambda _: None)

    def fetch(self, room: str, limit: int, before: int | None) -> Deferred[list[Message]]:
        key = f"room:{fold(room)}"
        return self._page("reading history", key, limit, before, "-inf", _message)

    def fetch_private(
        self, nick: str, other: str, limit: int, before: int | None, after: int
    ) -> Deferred[list[PrivateMessage]]:
        key = "pm:{}:{}".format(*pair_key(nick, other))
        return self._page("reading private history", key, limit, before, f"({after}", _private)

    def _page(
        self,
        what: str,
        key: str,
        limit: int,
        before: int | None,
        bottom: str,
        parse: Callable[[str], _Message],
    ) -> Deferred[list[_Message]]:
        """
        The newest C{limit} messages of the sorted set C{key} whose ids are
        below C{before} (if given) and above C{bottom}, oldest first: the
        answer to the same read if one is out (see the class docstring).
        """
        if self._closed:
            return fail(StoreError("The store is closed"))
        if limit <= 0:
            return self._nothing()
        if self._redis is None:
            return fail(StoreError("The store is not open"))
        bounds = (limit, before, bottom)
        reading = self._reading.get(key)
        if reading is not None and bounds in reading:
            waiter: Deferred[list[Any]] = Deferred()
            reading[bounds].append(waiter)
            return waiter
        top = "+inf" if before is None else f"({before}"
        page = self._read(
            what, "ZREVRANGEBYSCORE", self.prefix + key, top, bottom, "LIMIT", 0, limit
        )
        waiters: list[Deferred[list[Any]]] = []
        self._reading.setdefault(key, {})[bounds] = waiters

        def answered(outcome: list[_Message] | Failure) -> list[_Message] | Failure:
            reading = self._reading.get(key)
            if reading is not None and reading.get(bounds) is waiters:
                del reading[bounds]
                if not reading:
                    del self._reading[key]
            for waiter in waiters:
                if isinstance(outcome, Failure):
                    waiter.errback(outcome)
                else:
                    waiter.callback(list(outcome))
            return outcome

        parsed = page.addCallback(lambda rows: [parse(r) for r in reversed(rows)])
        return parsed.addBoth(answered)

    def _nothing(self) -> Deferred[list[Any]]:
        if self._redis is None:
            return fail(StoreError("The store is not open"))
        return succeed([])

    def account(self, name: str) -> Deferred[Account | None]:
        got = self._read("reading an account", "HGETALL", f"{self.prefix}account:{fold(name)}")

        def parse(reply: list[str]) -> Account | None:
            if not reply:
                return None
            f = _pairs(reply)
            return Account(
                f["name"], f["password_hash"], float(f["created"]), int(f.get("first_id", 0))
            )

        return got.addCallback(parse)

    # -- pruning and closing -------------------------------------------------

    def prune(self, before: float) -> Deferred[int]:
        """
        Forget messages older than C{before}, a batch per script run so
        that Redis serves others in between; stop early on L{close}.
        """
        if self._closed:
            return fail(StoreError("The store is closed"))
        return Deferred.fromCoroutine(self._prune(repr(float(before))))

    async def _prune(self, before: str) -> int:
        removed = 0
        while not self._closed:
            self._reading.clear()  # reads sent before may hold what this deletes
            due, count = await self._read(
                "pruning history",
                "EVAL",
                _PRUNE,
                1,
                self.prefix + "history",
                before,
                _PRUNE_BATCH,
                self.prefix,
            )
            removed += count
            if due < _PRUNE_BATCH:
                break
        return removed

    async def _close(self) -> None:
        """
        For L{close}: send what is queued and wait (at most C{timeout}
        seconds) for Redis to answer it, then disconnect.
        """
        redis = self._redis
        if redis is None:
            # Never opened: what was queued can go nowhere.
            self._give_up(StoreError("The store was closed before it was opened"))
            return
        try:
            await self.flush().addTimeout(self.timeout, self.reactor)
        except TimeoutError:
            self.log.error(
                "Redis at {address} did not answer the last writes within {timeout} s;"
                " {count} messages may not have been stored",
                address=self.address,
                timeout=self.timeout,
                count=self._queue.held,
            )
        await disconnect(redis)

    def _give_up(self, error: StoreError) -> None:
        """
        Drop every queued write: count its messages, fail its waiters.
        """
        batch, messages = self._queue.take()
        self._queue.release(messages)
        self._queue.dropped += messages
        fail_waiters(batch, error)
