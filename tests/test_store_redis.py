"""
The Redis store on a real C{redis-server} (see L{tests.redisserver}): the
behaviour every store shares, then what only it promises (start-up state
read by L{RedisStore.open}, its keys, surviving a Redis restart, riding out
an outage).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from chatd.errors import StoreError
from chatd.model import Account, Message, RoomRecord, StoreState
from chatd.redis.store import RedisStore
from tests.support.redisserver import redis_server
from tests.test_store import StoreBehaviour, capture, ids, said, whispered

CLOCK = cast(IReactorTime, reactor)


class RedisTestCase(TestCase):
    """
    Runs a C{redis-server} of its own for each test, and opens stores on it
    that are closed after the test.
    """

    timeout = 20
    server_options: dict[str, Any] = {}

    def setUp(self) -> None:
        self.server = redis_server(self, **self.server_options)

    async def open_store(self, url: str | None = None, **kw: Any) -> RedisStore:
        kw.setdefault("commit_window", 0.002)
        store = RedisStore(self.server.url if url is None else url, CLOCK, **kw)
        self.addCleanup(store.close)
        self.state = await store.open()
        return store

    async def until(self, condition: Callable[[], bool]) -> None:
        """
        Let the reactor run until C{condition} holds (or the test times out).
        """
        while not condition():
            await deferLater(reactor, 0.005)

    def connected(self, store: RedisStore) -> bool:
        """
        Whether C{store}'s connection is up (as txredisapi sees it).
        """
        assert store._redis is not None
        return bool(store._redis._factory.size)


class RedisStoreTests(StoreBehaviour, RedisTestCase):
    def setUp(self) -> Deferred[None]:  # type: ignore[override]
        super().setUp()
        return Deferred.fromCoroutine(self._open())

    async def _open(self) -> None:
        self.store = await self.open_store()

    async def settle(self) -> None:
        assert isinstance(self.store, RedisStore)
        await self.store.flush()

    async def restart(self) -> StoreState:
        await self.store.close()
        self.store = await self.open_store()
        return self.state

    async def test_keys(self) -> None:
        """
        Every key is under the prefix, laid out as the module says; the
        messages are compact JSON scored by id, indexed by time.
        """
        store = self.store
        assert isinstance(store, RedisStore)
        store.record(said(1, "#Tea"))
        store.record(whispered(2, "Bob", "ann"))
        await store.create_account(Account("Alice", "h", 1.5, 3))
        store.save_room(RoomRecord("#Tea", "alice", ops=frozenset({"bob", "alice"})))
        await store.flush()
        command = self.server.command
        self.assertEqual(
            sorted(command("KEYS", "*")),
            [
                "chatd:account:alice",
                "chatd:accounts",
                "chatd:history",
                "chatd:pm:ann:bob",
                "chatd:room:#tea",
                "chatd:rooms",
                "chatd:seq",
            ],
        )
        self.assertEqual(command("GET", "chatd:seq"), "2")
        self.assertEqual(
            command("ZRANGE", "chatd:room:#tea", 0, -1, "WITHSCORES"),
            ['[1,"#Tea","bob","m1",1001.0,false]', "1"],
        )
        self.assertEqual(
            command("ZRANGE", "chatd:pm:ann:bob", 0, -1),
            ['[2,"Bob","ann","p2",1002.0]'],
        )
        self.assertEqual(
            command("ZRANGE", "chatd:history", 0, -1, "WITHSCORES"),
            ["1 room:#tea", "1001", "2 pm:ann:bob", "1002"],
        )
        self.assertEqual(
            command("HGETALL", "chatd:account:alice"),
            ["name", "Alice", "password_hash", "h", "created", "1.5", "first_id", "3"],
        )
        self.assertEqual(command("SMEMBERS", "chatd:accounts"), ["alice"])
        self.assertEqual(
            command("HGETALL", "chatd:rooms"),
            ["#tea", '["#Tea","alice","",null,"n",null,["alice","bob"],[],null,0.0]'],
        )

    async def test_open_reads_state(self) -> None:
        """
        L{RedisStore.open} reads the counter (the cluster's, which may be
        ahead of every stored message), every account and every room, and
        L{RedisStore.load} hands that back.
        """
        store = self.store
        assert isinstance(store, RedisStore)
        self.assertEqual(store.load(), StoreState())
        await store.create_account(Account("Bob", "h", 1.0))
        store.save_room(RoomRecord("#b", "bob", topic="hi"))
        store.record(said(5))
        await store.close()
        self.server.command("INCRBY", "chatd:seq", 40)
        store = await self.open_store()
        expected = StoreState(45, frozenset({"bob"}), (RoomRecord("#b", "bob", topic="hi"),))
        self.assertEqual((self.state, store.load()), (expected, expected))
        store.record(said(7))
        await store.flush()
        self.assertEqual(self.server.command("GET", "chatd:seq"), "45")

    def test_load_before_open(self) -> None:
        """
        There is nothing to load before L{RedisStore.open} has fired.
        """
        store = RedisStore(self.server.url, CLOCK)
        self.assertRaises(RuntimeError, store.load)

    async def test_prefix(self) -> None:
        """
        Stores with different prefixes on one database do not meet.
        """
        other = await self.open_store(prefix="other:")
        other.record(said(1))
        await other.create_account(Account("bob", "h", 1.0))
        self.assertEqual(await self.store.fetch("#a", 5, None), [])
        self.assertIsNone(await self.store.account("bob"))
        self.assertEqual(ids(await other.fetch("#a", 5, None)), [1])
        self.assertEqual(await self.store.prune(5000.0), 0)
        self.assertEqual(ids(await other.fetch("#a", 5, None)), [1])

    async def test_queued_reads(self) -> None:
        """
        Reads see writes still queued (sent ahead of them), however long
        the window.
        """
        store = await self.open_store(prefix="slow:", commit_window=60.0)
        for i in range(1, 8):
            store.record(said(i, "#a" if i % 2 else "#b"))
        store.record(whispered(8))
        store.create_account(Account("Alice", "h1", 1.0))
        store.set_password("ALICE", "h2")
        self.assertEqual(store.commits, 0)
        self.assertEqual(ids(await store.fetch("#A", 3, None)), [3, 5, 7])
        self.assertEqual(ids(await store.fetch_private("ann", "bob", 3, None, 0)), [8])
        self.assertEqual(await store.account("alice"), Account("Alice", "h2", 1.0))
        self.assertEqual(store.commits, 1)
        self.assertGreater(store.commit_seconds, 0.0)

    async def test_order(self) -> None:
        """
        Writes to one thing take effect in the order they were made, and a
        registration fires with whether the name was free.
        """
        store = self.store
        created = store.create_account(Account("Alice", "h1", 1.0))
        again = store.create_account(Account("ALICE", "x", 2.0))
        store.save_room(RoomRecord("#a", "alice", topic="one"))
        for i in range(2, 6):
            store.set_password("alice", f"h{i}")
        store.save_room(RoomRecord("#a", "alice", topic="two"))
        self.assertEqual((await created, await again), (True, False))
        self.assertEqual(await store.account("ALICE"), Account("Alice", "h5", 1.0))
        state = await self.restart()
        self.assertEqual(state.rooms, (RoomRecord("#a", "alice", topic="two"),))

    async def test_duplicate_id(self) -> None:
        """
        A message whose id is stored already is not stored again: the
        first is kept, as in SQLite.
        """
        self.store.record(said(1))
        self.store.record(said(1, ts=5.0))
        await self.settle()
        self.assertEqual(await self.store.fetch("#a", 5, None), [said(1)])
        self.assertEqual(self.server.command("ZCARD", "chatd:history"), 1)

    async def test_prune_many(self) -> None:
        """
        Pruning more than one batch removes every old message from every
        room and conversation and from the index, and nothing newer.
        """
        store = self.store
        assert isinstance(store, RedisStore)
        for i in range(1, 2501):
            store.record(said(i, f"#r{i % 7}", ts=float(i)))
        store.record(whispered(2501))
        store.record(said(2502, ts=5000.0))
        await store.flush()
        self.assertEqual(await store.prune(4000.0), 2501)
        self.assertEqual(ids(await store.fetch("#a", 5, None)), [2502])
        self.assertEqual(self.server.command("ZRANGE", "chatd:history", 0, -1), ["2502 room:#a"])
        self.assertEqual(
            sorted(self.server.command("KEYS", "chatd:*")),
            ["chatd:history", "chatd:room:#a", "chatd:seq"],
        )

    async def test_close_sends_queued(self) -> None:
        """
        Closing sends what is queued at once (not waiting for the window)
        and fires once Redis has it.
        """
        store = await self.open_store(prefix="slow:", commit_window=60.0)
        store.record(said(1))
        store.record(whispered(2))
        created = store.create_account(Account("bob", "h", 1.0))
        await store.close()
        self.assertTrue(self.successResultOf(created))
        self.assertEqual(store.commits, 1)
        self.assertEqual(self.server.command("ZCARD", "slow:room:#a"), 1)
        self.assertEqual(self.server.command("ZCARD", "slow:pm:ann:bob"), 1)
        self.assertEqual(self.server.command("GET", "slow:seq"), "2")

    def reads(self, store: RedisStore, failing: int = 0) -> list[tuple[Any, ...]]:
        """
        The page reads C{store} sends from now on, the first C{failing} of
        which fail as a broken connection would.
        """
        assert store._redis is not None
        execute = store._redis.execute_command
        sent: list[tuple[Any, ...]] = []

        def counting(*command: Any, **kw: Any) -> Deferred[Any]:
            nonlocal failing
            if command[0] != "ZREVRANGEBYSCORE":
                return execute(*command, **kw)
            sent.append(command)
            if failing:
                failing -= 1
                lost: Deferred[Any] = Deferred()
                CLOCK.callLater(0, lost.errback, ConnectionError("Connection lost"))
                return lost
            return execute(*command, **kw)

        store._redis.execute_command = counting  # type: ignore[method-assign]
        return sent

    async def test_same_page_read_once(self) -> None:
        """
        Fetches of a page being read share that read (a list each); other
        bounds are read on their own; a message this store records meanwhile
        makes later fetches read again, and see it.
        """
        store = self.store
        assert isinstance(store, RedisStore)
        for i in range(1, 31):
            store.record(said(i))
        await store.flush()
        sent = self.reads(store)
        joins = [store.fetch("#a", 21, 31) for _ in range(50)]
        other = store.fetch("#A", 5, 31)
        newest = [store.fetch("#a", 3, None) for _ in range(2)]
        store.record(said(40))
        later = store.fetch("#a", 3, None)
        self.assertEqual(len(sent), 4)
        pages = [await join for join in joins]
        self.assertEqual(pages[0], pages[1])
        self.assertIsNot(pages[0], pages[1])
        for page in pages:
            self.assertEqual(ids(page), list(range(10, 31)))
        self.assertEqual(ids(await other), list(range(26, 31)))
        for page in newest:
            self.assertEqual(ids(await page), [28, 29, 30])
        self.assertEqual(ids(await later), [29, 30, 40])
        self.assertEqual(ids(await store.fetch("#a", 21, 31)), list(range(10, 31)))
        self.assertEqual(len(sent), 5)

    async def test_shared_read_fails(self) -> None:
        """
        If a shared read fails, every fetch waiting for it fails; the next
        one reads again.
        """
        store = self.store
        assert isinstance(store, RedisStore)
        store.record(said(1))
        sent = self.reads(store, failing=1)
        fetches = [store.fetch("#a", 5, None) for _ in range(10)]
        for fetch in fetches:
            with self.assertRaises(StoreError):
                await fetch
        self.assertEqual(ids(await store.fetch("#a", 5, None)), [1])
        self.assertEqual(len(sent), 2)

    async def test_bad_message(self) -> None:
        """
        A message that cannot be stored is logged and counted as dropped,
        and the caller never hears of it.
        """
        store = self.store
        assert isinstance(store, RedisStore)
        events = capture(store)
        store.record(said(1))
        store.record(Message("#a", "bob", object(), 1002.0, 2))  # type: ignore[arg-type]
        self.assertEqual((store.dropped, len(events)), (1, 1))
        self.assertEqual(ids(await store.fetch("#a", 5, None)), [1])


class RedisOutageTests(RedisTestCase):
    """
    What the store does while Redis is away, and after it comes back.
    """

    server_options = {"aof": True}

    async def test_survives_restart(self) -> None:
        """
        With an append-only file, everything is still there after Redis
        is stopped and started again.
        """
        store = await self.open_store()
        for i in range(1, 6):
            store.record(said(i))
        store.record(whispered(6))
        await store.create_account(Account("Alice", "h", 1.0, 6))
        store.save_room(RoomRecord("#a", "alice", topic="kept"))
        await store.close()
        self.server.restart()
        store = await self.open_store()
        self.assertEqual(
            self.state, StoreState(6, frozenset({"alice"}), (RoomRecord("#a", "alice", "kept"),))
        )
        self.assertEqual(ids(await store.fetch("#a", 10, None)), [1, 2, 3, 4, 5])
        self.assertEqual(ids(await store.fetch_private("ann", "bob", 5, None, 0)), [6])
        self.assertEqual(await store.account("alice"), Account("Alice", "h", 1.0, 6))

    async def test_outage(self) -> None:
        """
        While Redis is away, reads and the readiness check fail in time;
        messages recorded meanwhile wait (as many as the bound allows; the
        rest are counted as dropped) and are stored once it is back, on
        the connection remade by itself.
        """
        store = await self.open_store(max_queued=3, timeout=0.3)
        store.record(said(1))
        await store.flush()
        self.server.stop()
        await self.until(lambda: not self.connected(store))
        for i in range(2, 7):
            store.record(said(i))
        self.assertEqual(store.dropped, 2)
        with self.assertRaises(StoreError):
            await store.check()
        with self.assertRaises(StoreError):
            await store.fetch("#a", 5, None)
        self.server.start()
        await self.until(lambda: self.connected(store))
        await store.flush()
        await store.check()
        self.assertEqual(ids(await store.fetch("#a", 10, None)), [1, 2, 3, 4])
        self.assertEqual(store.dropped, 2)
        store.record(said(7))
        self.assertEqual(ids(await store.fetch("#a", 2, None)), [4, 7])

    async def test_close_while_away(self) -> None:
        """
        Closing while Redis is away gives up on what is queued after the
        timeout, saying how much may be lost, and leaves nothing running.
        """
        store = await self.open_store(timeout=0.2)
        events = capture(store)
        self.server.kill()
        await self.until(lambda: not self.connected(store))
        store.record(said(1))
        await store.close()
        self.assertEqual([e["log_level"].name for e in events], ["error"])
        self.assertIn(
            "1 messages may not have been stored", events[0]["log_format"].format(**events[0])
        )

    async def test_unreachable(self) -> None:
        """
        A store that cannot reach Redis fails to open, in time, saying where
        it tried.
        """
        self.server.kill()
        store = RedisStore(self.server.url, CLOCK, timeout=0.3)
        with self.assertRaises(StoreError) as caught:
            await store.open()
        self.assertIn(f"127.0.0.1:{self.server.port}/0", str(caught.exception))
        await store.close()

    async def test_open_again_after_failing(self) -> None:
        """
        A store that failed to open may be opened again (a node started
        before its Redis keeps trying), and then works.
        """
        self.server.stop()
        store = RedisStore(self.server.url, CLOCK, timeout=0.3, commit_window=0.002)
        self.addCleanup(store.close)
        with self.assertRaises(StoreError):
            await store.open()
        self.assertIsNone(store._redis)
        self.server.start()
        self.assertEqual(await store.open(), StoreState())
        await store.create_account(Account("bob", "h", 1.0))
        self.assertEqual(self.server.command("SMEMBERS", "chatd:accounts"), ["bob"])


class RedisPasswordTests(RedisTestCase):
    server_options = {"password": "s3cret", "unix": True}

    async def test_password(self) -> None:
        """
        The password in the URL logs the store in; a wrong one is refused
        when opening, without showing it.
        """
        wrong = self.server.url.replace("s3cret", "guess")
        store = RedisStore(wrong, CLOCK)
        with self.assertRaises(StoreError) as caught:
            await store.open()
        self.assertNotIn("guess", str(caught.exception))
        await store.close()
        store = await self.open_store()
        await store.create_account(Account("bob", "h", 1.0))
        self.assertEqual(self.server.command("SMEMBERS", "chatd:accounts"), ["bob"])

    async def test_unix_socket(self) -> None:
        """
        A store can reach Redis by its unix socket.
        """
        store = await self.open_store(self.server.unix_url)
        store.record(said(1))
        self.assertEqual(ids(await store.fetch("#a", 5, None)), [1])
