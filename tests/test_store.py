"""
The stores: the same behaviour from the memory and the SQLite store, then
what only the SQLite store promises (group commits, its cache, surviving a
restart, and refusing files it must not start over).
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads, IReactorTime
from twisted.internet.task import Clock, deferLater
from twisted.logger import ILogObserver, LogEvent, Logger
from twisted.trial.unittest import TestCase
from zope.interface import alsoProvides
from zope.interface.verify import verifyObject

from chatd.errors import StoreBusy, StoreError
from chatd.interfaces import IStore
from chatd.model import Account, Message, PrivateMessage, RoomRecord, StoreState
from chatd.store.memory import MemoryStore
from chatd.store.sqlite import MIGRATIONS, PRIVATE_PAGE, ROOM_PAGE, SQLiteStore
from tests.support.processes import scratch_dir


def said(id: int, room: str = "#a", ts: float | None = None) -> Message:
    """
    Message C{id} in C{room}, said at C{ts} (by default 1000 + C{id}).
    """
    return Message(room, "bob", f"m{id}", 1000.0 + id if ts is None else ts, id)


def whispered(id: int, sender: str = "bob", recipient: str = "Ann") -> PrivateMessage:
    """
    Private message C{id} from C{sender} to C{recipient}, at 1000 + C{id}.
    """
    return PrivateMessage(sender, recipient, f"p{id}", 1000.0 + id, id)


def capture(store: IStore) -> list[LogEvent]:
    """
    Send C{store}'s log events to a list rather than the global log.
    """
    events: list[LogEvent] = []
    assert isinstance(getattr(store, "log", None), Logger)  # each store logs on its own
    cast(Any, store).log = Logger(observer=cast(ILogObserver, events.append))
    return events


def ids(messages: list[Message] | list[PrivateMessage]) -> list[int]:
    return [m.id for m in messages]


if TYPE_CHECKING:
    _Mixin = TestCase
else:
    _Mixin = object


class StoreBehaviour(_Mixin):
    """
    What every store does; mixed into a L{TestCase} per store.
    """

    store: IStore

    async def settle(self) -> None:
        """
        Commit whatever the store has queued.
        """

    async def restart(self) -> StoreState:
        """
        Close the store and open it again, as a restarted chatd would.
        """
        raise NotImplementedError

    def test_interface(self) -> None:
        """
        The store provides L{IStore}.
        """
        self.assertTrue(verifyObject(IStore, self.store))

    async def test_check(self) -> None:
        """
        An open store passes its readiness check; a closed one fails it.
        """
        self.assertIsNone(await self.store.check())
        await self.store.close()
        with self.assertRaises(StoreError):
            await self.store.check()

    async def test_fetch_newest_before(self) -> None:
        """
        A page is the newest C{limit} messages below C{before}, oldest
        first, of that room only.
        """
        for i in range(1, 11):
            self.store.record(said(i, "#a" if i % 3 else "#b"))
        self.assertEqual(ids(await self.store.fetch("#a", 4, None)), [5, 7, 8, 10])
        self.assertEqual(ids(await self.store.fetch("#a", 3, 8)), [4, 5, 7])
        self.assertEqual(ids(await self.store.fetch("#b", 10, None)), [3, 6, 9])
        self.assertEqual(await self.store.fetch("#a", 0, None), [])
        self.assertEqual(await self.store.fetch("#c", 5, None), [])
        await self.settle()
        self.assertEqual(ids(await self.store.fetch("#a", 3, 8)), [4, 5, 7])

    async def test_fetch_any_case(self) -> None:
        """
        Room names are matched case-insensitively; each message keeps the
        room's name as it was said.
        """
        self.store.record(said(1, "#Tea"))
        self.store.record(said(2, "#TEA"))
        page = await self.store.fetch("#tea", 5, None)
        self.assertEqual([(m.id, m.room) for m in page], [(1, "#Tea"), (2, "#TEA")])

    async def test_private_both_ways(self) -> None:
        """
        A private conversation is the same whoever asks and however the
        names are spelled; C{after} and C{before} bound it, other pairs are
        not in it.
        """
        self.store.record(whispered(1, "bob", "Ann"))
        self.store.record(whispered(2, "ann", "BOB"))
        self.store.record(whispered(3, "bob", "carl"))
        self.store.record(whispered(4, "Bob", "ann"))
        self.assertEqual(ids(await self.store.fetch_private("ANN", "bob", 10, None, 0)), [1, 2, 4])
        self.assertEqual(ids(await self.store.fetch_private("bob", "ann", 2, None, 0)), [2, 4])
        self.assertEqual(ids(await self.store.fetch_private("bob", "ann", 10, None, 1)), [2, 4])
        self.assertEqual(ids(await self.store.fetch_private("bob", "ann", 10, 4, 0)), [1, 2])
        page = await self.store.fetch_private("bob", "carl", 10, None, 0)
        self.assertEqual(page, [whispered(3, "bob", "carl")])
        await self.settle()
        self.assertEqual(ids(await self.store.fetch_private("ann", "bob", 10, 4, 1)), [2])

    async def test_accounts(self) -> None:
        """
        A nickname can be registered once in any case; its password can be
        changed; an unknown name has no account.
        """
        alice = Account("Alice", "hash1", 5.0)
        self.assertTrue(await self.store.create_account(alice))
        self.assertEqual(await self.store.create_account(Account("ALICE", "x", 6.0)), False)
        self.assertEqual(await self.store.account("alice"), alice)
        await self.store.set_password("aLiCe", "hash2")
        self.assertEqual(await self.store.account("ALICE"), Account("Alice", "hash2", 5.0))
        self.assertIsNone(await self.store.account("bob"))
        await self.store.set_password("bob", "hash3")
        self.assertIsNone(await self.store.account("bob"))

    async def test_load_after_restart(self) -> None:
        """
        After a restart the store hands back the highest id, every account
        (folded) and the latest settings of every registered room.
        """
        self.store.record(said(7))
        self.store.record(whispered(9))
        await self.store.create_account(Account("Alice", "h", 1.0))
        self.store.save_room(RoomRecord("#Tea", "alice", topic="old"))
        tea = RoomRecord(
            "#Tea",
            "alice",
            "new",
            "Alice",
            "mt",
            "sekrit",
            frozenset({"alice", "bob"}),
            frozenset(),
            limit=12,
            topic_at=1700000000.5,
        )
        self.store.save_room(tea)
        self.store.save_room(RoomRecord("#b", "bob"))
        state = await self.restart()
        self.assertEqual(state.last_id, 9)
        self.assertEqual(state.accounts, frozenset({"alice"}))
        self.assertEqual(sorted(state.rooms, key=lambda r: r.name), [tea, RoomRecord("#b", "bob")])
        self.assertEqual(ids(await self.store.fetch("#A", 5, None)), [7])

    async def test_prune(self) -> None:
        """
        Pruning removes room and private messages older than the cut-off,
        fires with how many, and leaves the rest; the highest id survives.
        """
        for i in range(1, 7):
            self.store.record(said(i))
            self.store.record(whispered(10 + i))
        await self.settle()
        self.assertEqual(await self.store.prune(1004.0), 3)
        self.assertEqual(ids(await self.store.fetch("#a", 10, None)), [4, 5, 6])
        self.assertEqual(
            ids(await self.store.fetch_private("bob", "ann", 10, None, 0)), list(range(11, 17))
        )
        self.assertEqual(await self.store.prune(1014.0), 6)
        self.assertEqual(await self.store.fetch("#a", 10, None), [])
        self.assertEqual(
            ids(await self.store.fetch_private("bob", "ann", 10, None, 0)), [14, 15, 16]
        )
        self.assertEqual(await self.store.prune(2000.0), 3)
        self.assertEqual((await self.restart()).last_id, 16)

    async def test_closed(self) -> None:
        """
        Once closed, writes are ignored with a warning and everything else
        fails with L{StoreError}.
        """
        events = capture(self.store)
        await self.store.close()
        self.store.record(said(1))
        self.store.save_room(RoomRecord("#a", "bob"))
        self.assertEqual(len(events), 2)
        for call in (
            lambda: self.store.fetch("#a", 5, None),
            lambda: self.store.fetch_private("a", "b", 5, None, 0),
            lambda: self.store.account("a"),
            lambda: self.store.create_account(Account("a", "h", 1.0)),
            lambda: self.store.set_password("a", "h"),
            lambda: self.store.prune(1.0),
        ):
            self.failureResultOf(call(), StoreError)


class MemoryStoreTests(StoreBehaviour, TestCase):
    timeout = 10

    def setUp(self) -> None:
        self.store = MemoryStore()

    async def restart(self) -> StoreState:
        await self.store.close()
        return self.store.load()

    def test_bounds(self) -> None:
        """
        Each room and conversation keeps its newest messages only, and the
        least recently active ring goes first when there are too many.
        """
        store = MemoryStore(per_room=2, max_rooms=2, per_pair=2, max_pairs=1)
        for i in range(1, 4):
            store.record(said(i, "#a"))
        store.record(said(4, "#b"))
        store.record(said(5, "#a"))
        store.record(said(6, "#c"))
        self.assertEqual(ids(self.successResultOf(store.fetch("#a", 5, None))), [3, 5])
        self.assertEqual(self.successResultOf(store.fetch("#b", 5, None)), [])
        self.assertEqual(ids(self.successResultOf(store.fetch("#c", 5, None))), [6])
        for i in range(7, 10):
            store.record(whispered(i, "bob", "ann"))
        self.assertEqual(
            ids(self.successResultOf(store.fetch_private("ann", "bob", 5, None, 0))), [8, 9]
        )
        store.record(whispered(10, "bob", "carl"))
        self.assertEqual(self.successResultOf(store.fetch_private("ann", "bob", 5, None, 0)), [])
        self.assertEqual(store.load().last_id, 10)


class ShuttingDown:
    """
    A reactor that passes results from threads to the real one, and keeps
    its shutdown triggers for the test to fire.
    """

    def __init__(self) -> None:
        alsoProvides(self, IReactorFromThreads, IReactorCore)
        self.triggers: dict[object, tuple[str, str, Callable[[], object]]] = {}

    def callFromThread(self, call: Callable[..., object], *args: object) -> None:
        cast(IReactorFromThreads, reactor).callFromThread(call, *args)

    def addSystemEventTrigger(self, phase: str, event: str, call: Callable[[], object]) -> object:
        handle = object()
        self.triggers[handle] = (phase, event, call)
        return handle

    def removeSystemEventTrigger(self, handle: object) -> None:
        del self.triggers[handle]


class CountingStore(SQLiteStore):
    """
    An SQLite store that counts its reads, and fails the next C{failing}
    of them as a broken disk would.
    """

    reads = 0
    failing = 0

    def _read(self, work: Callable[[sqlite3.Connection], Any]) -> Deferred[Any]:
        self.reads += 1
        if self.failing:
            self.failing -= 1

            def broken(db: sqlite3.Connection) -> Any:
                raise sqlite3.OperationalError("disk I/O error")

            return super()._read(broken)
        return super()._read(work)


class SQLiteTestCase(TestCase):
    """
    Opens SQLite stores on files in a scratch directory, with a
    L{Clock} for their commit timers (results still come back through the
    running reactor), and closes them after the test.
    """

    timeout = 10

    def setUp(self) -> None:
        self.directory = scratch_dir(self)
        self.path = str(self.directory / "chatd.sqlite")

    def open_store(
        self,
        kind: type[SQLiteStore] = SQLiteStore,
        clock: IReactorTime | None = None,
        **kw: Any,
    ) -> SQLiteStore:
        store = kind(self.path, Clock() if clock is None else clock, **kw)
        self.state = store.load()
        self.addCleanup(store.close)
        return store

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """
        Read the database file directly, as another process would.
        """
        db = sqlite3.connect(self.path)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    async def until(self, condition: Callable[[], bool]) -> None:
        """
        Let the reactor run until C{condition} holds (or the test times out).
        """
        while not condition():
            await deferLater(reactor, 0.001)

    def refused(self, path: str | None = None, kind: type[SQLiteStore] = SQLiteStore) -> str:
        """
        Open a store that must refuse to load, leaving every file in the
        directory as it was; return why it refused.
        """
        before = {p: p.read_bytes() for p in self.directory.iterdir() if p.is_file()}
        store = kind(self.path if path is None else path, Clock())
        error = self.assertRaises(StoreError, store.load)
        after = {p: p.read_bytes() for p in self.directory.iterdir() if p.is_file()}
        self.assertEqual(after, before)
        return str(error)


class SQLiteStoreTests(StoreBehaviour, SQLiteTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.store = self.open_store(clock=reactor, commit_window=0.002)

    async def settle(self) -> None:
        assert isinstance(self.store, SQLiteStore)
        await self.store.flush()

    async def restart(self) -> StoreState:
        await self.store.close()
        self.store = self.open_store(clock=reactor, commit_window=0.002)
        return self.state


class GroupCommitTests(SQLiteTestCase):
    async def test_one_commit_per_window(self) -> None:
        """
        The first write starts the window; everything written in it is
        committed in one transaction when it ends, and not before.
        """
        store = self.open_store()
        clock = store.clock
        assert isinstance(clock, Clock)
        for i in range(1, 501):
            store.record(said(i, f"#r{i % 7}"))
            store.record(whispered(1000 + i))
        self.assertEqual([call.getTime() for call in clock.getDelayedCalls()], [0.05])
        clock.advance(0.049)
        await deferLater(reactor, 0.05)
        self.assertEqual((store.commits, self.rows("SELECT count(*) FROM messages")), (0, [(0,)]))
        clock.advance(0.001)
        await self.until(lambda: store.commits == 1)
        self.assertEqual(self.rows("SELECT count(*) FROM messages"), [(500,)])
        self.assertEqual(self.rows("SELECT count(*) FROM private_messages"), [(500,)])
        self.assertEqual(clock.getDelayedCalls(), [])

    async def test_writes_during_commit_wait(self) -> None:
        """
        Writes made while a commit runs go in the next one, which starts
        when their own window ends.
        """
        store = self.open_store()
        clock = store.clock
        assert isinstance(clock, Clock)
        store.record(said(1))
        clock.advance(0.05)
        store.record(said(2))
        store.save_room(RoomRecord("#a", "bob"))
        await self.until(lambda: store.commits == 1)
        self.assertEqual(self.rows("SELECT id FROM messages"), [(1,)])
        await deferLater(reactor, 0.05)
        self.assertEqual(store.commits, 1)
        clock.advance(0.05)
        await self.until(lambda: store.commits == 2)
        self.assertEqual(self.rows("SELECT id FROM messages"), [(1,), (2,)])
        self.assertEqual(self.rows("SELECT name FROM rooms"), [("#a",)])

    async def test_window_ended_during_commit(self) -> None:
        """
        If the next window ends while a commit is still running, the next
        commit starts as soon as that one ends.
        """
        store = self.open_store()
        clock = store.clock
        assert isinstance(clock, Clock)
        store.record(said(1))
        clock.advance(0.05)
        store.record(said(2))
        clock.advance(0.05)
        await self.until(lambda: store.commits == 2)
        self.assertEqual(self.rows("SELECT id FROM messages"), [(1,), (2,)])

    async def test_flush_during_commit_leaves_the_window_working(self) -> None:
        """
        A flush asked for while a commit runs, with nothing new queued, does
        not stop later writes from starting their own window.
        """
        store = self.open_store()
        clock = store.clock
        assert isinstance(clock, Clock)
        store.record(said(1))
        clock.advance(0.05)  # commit 1 starts
        flushed = store.flush()  # nothing new: waits for commit 1
        await self.until(lambda: store.commits == 1)
        await flushed
        store.record(said(2))
        self.assertEqual([call.getTime() - clock.seconds() for call in clock.getDelayedCalls()],
                         [0.05])  # fmt: skip
        clock.advance(0.05)
        await self.until(lambda: store.commits == 2)
        self.assertEqual(self.rows("SELECT id FROM messages"), [(1,), (2,)])

    async def test_order(self) -> None:
        """
        Writes to the same thing in one commit take effect in the order
        they were made.
        """
        store = self.open_store()
        created = store.create_account(Account("Alice", "h1", 1.0))
        store.save_room(RoomRecord("#a", "alice", topic="one"))
        changed = [store.set_password("alice", f"h{i}") for i in range(2, 6)]
        store.save_room(RoomRecord("#a", "alice", topic="two"))
        await store.flush()
        self.assertEqual(store.commits, 1)
        self.assertTrue(self.successResultOf(created))
        for d in changed:
            self.assertIsNone(self.successResultOf(d))
        await store.close()
        store = self.open_store()
        self.assertEqual(self.state.rooms, (RoomRecord("#a", "alice", topic="two"),))
        self.assertEqual(await store.account("ALICE"), Account("Alice", "h5", 1.0))

    async def test_duplicate_account(self) -> None:
        """
        A name taken in any case makes its registration fire False once its
        commit is done, while everything else in that commit is kept.
        """
        store = self.open_store()
        first = store.create_account(Account("Alice", "h1", 1.0))
        store.record(said(1))
        second = store.create_account(Account("ALICE", "h2", 2.0))
        store.save_room(RoomRecord("#a", "alice"))
        third = store.create_account(Account("bob", "h3", 3.0))
        self.assertEqual((first.called, second.called, third.called), (False, False, False))
        await store.flush()
        self.assertEqual(store.commits, 1)
        self.assertEqual(
            [self.successResultOf(d) for d in (first, second, third)], [True, False, True]
        )
        self.assertEqual(
            self.rows("SELECT name, password_hash FROM accounts ORDER BY name"),
            [("Alice", "h1"), ("bob", "h3")],
        )
        self.assertEqual(self.rows("SELECT id FROM messages"), [(1,)])
        self.assertEqual(self.rows("SELECT name FROM rooms"), [("#a",)])

    async def test_bounded_queue(self) -> None:
        """
        Beyond C{max_queued} waiting messages, new ones are not stored but
        counted, with one warning per commit; accounts and rooms still are.
        """
        store = self.open_store(max_queued=10)
        events = capture(store)
        for i in range(1, 16):
            store.record(said(i))
        store.save_room(RoomRecord("#a", "bob"))
        created = store.create_account(Account("bob", "h", 1.0))
        self.assertEqual(store.dropped, 5)
        self.assertEqual(len(events), 1)
        await store.flush()
        self.assertTrue(self.successResultOf(created))
        self.assertEqual(ids(await store.fetch("#a", 50, None)), list(range(1, 11)))
        for i in range(16, 28):
            store.record(said(i))
        self.assertEqual((store.dropped, len(events)), (7, 2))
        await store.flush()
        self.assertEqual(self.rows("SELECT count(*) FROM messages"), [(20,)])
        self.assertEqual(self.rows("SELECT name FROM rooms"), [("#a",)])

    async def test_failed_commit(self) -> None:
        """
        A commit that fails is logged, its messages counted as dropped and
        its account writes failed; the cache forgets what never reached the
        disk, and later commits go on.
        """
        store = self.open_store()
        events = capture(store)
        store.record(said(1))
        await store.flush()
        self.assertEqual(ids(await store.fetch("#a", 5, None)), [1])
        store.record(Message("#a", "bob", object(), 1002.0, 2))  # type: ignore[arg-type]
        self.assertEqual(len(self.successResultOf(store.fetch("#a", 5, None))), 2)
        created = store.create_account(Account("bob", "h", 1.0))
        store.record(whispered(3))
        await store.flush()
        self.assertEqual((store.commits, store.dropped), (1, 2))
        self.failureResultOf(created, StoreError)
        self.assertEqual([e["log_level"].name for e in events], ["critical"])
        self.assertEqual(ids(await store.fetch("#a", 5, None)), [1])
        store.record(said(4))
        await store.flush()
        self.assertEqual(self.rows("SELECT id FROM messages"), [(1,), (4,)])

    async def test_close_commits(self) -> None:
        """
        Closing commits what is queued at once (not waiting for the window)
        and the next store on the file finds it.
        """
        store = self.open_store()
        store.record(said(1))
        store.record(whispered(2))
        created = store.create_account(Account("bob", "h", 1.0))
        await store.close()
        self.assertTrue(self.successResultOf(created))
        self.assertEqual(store.commits, 1)
        store = self.open_store()
        self.assertEqual(self.state.last_id, 2)
        self.assertEqual(ids(await store.fetch("#a", 5, None)), [1])
        self.assertEqual(ids(await store.fetch_private("ann", "bob", 5, None, 0)), [2])

    async def test_reactor_shutdown(self) -> None:
        """
        A store still open when its reactor shuts down commits what is
        queued and stops its threads there and then; a store closed in time
        leaves no trigger behind.
        """
        shutdown = ShuttingDown()
        store = self.open_store(reactor=shutdown)
        await store.fetch("#a", 5, None)
        store.record(said(1))
        created = store.create_account(Account("bob", "h", 1.0))
        _, (phase, event, trigger) = shutdown.triggers.popitem()
        self.assertEqual((phase, event, shutdown.triggers), ("during", "shutdown", {}))
        trigger()
        self.assertTrue(self.successResultOf(created))
        self.assertEqual(self.rows("SELECT id FROM messages"), [(1,)])
        self.assertEqual([t for t in threading.enumerate() if "chatd-store" in t.name], [])
        store = self.open_store(reactor=shutdown)
        await store.fetch("#a", 5, None)
        await store.close()
        self.assertEqual(shutdown.triggers, {})

    async def test_close_twice(self) -> None:
        """
        Every caller of close is told when the store is closed.
        """
        store = self.open_store()
        store.record(said(1))
        first, second = store.close(), store.close()
        await first
        await second
        self.assertEqual(store.commits, 1)


class ReadTests(SQLiteTestCase):
    async def history(self, messages: int = 30, **kw: Any) -> SQLiteStore:
        """
        A store reopened on a file holding C{messages} messages of C{#a}
        (ids 1 up) and a few of C{#b}, so its cache starts empty.
        """
        store = self.open_store()
        for i in range(1, messages + 1):
            store.record(said(i))
        for i in range(1, 4):
            store.record(said(messages + i, "#b"))
        await store.close()
        return self.open_store(**kw)

    async def test_queued_and_running(self) -> None:
        """
        Reads that need the database also see messages still queued and
        messages being committed, each once.
        """
        store = await self.history(20, cache_per_room=5)
        for i in range(24, 27):
            store.record(said(i, "#A"))
        newest = [*range(14, 21), 24, 25, 26]
        page = store.fetch("#a", 10, None)
        self.assertFalse(page.called)
        self.assertEqual(ids(await page), newest)
        self.assertEqual(ids(await store.fetch("#a", 10, 25)), [*range(12, 21), 24])
        clock = store.clock
        assert isinstance(clock, Clock)
        clock.advance(0.05)
        during = store.fetch("#a", 10, None)
        await self.until(lambda: store.commits == 1)
        self.assertEqual(ids(await during), newest)
        self.assertEqual(ids(await store.fetch("#a", 10, None)), newest)

    async def test_cache(self) -> None:
        """
        Once a room's newest messages were read, asking for them again (or
        for a page among them) is answered at once, new messages included;
        an older page is read from the database.  (The first read fills
        the cache, C{cache_per_room} messages.)
        """
        store = await self.history(50, cache_per_room=20)
        first = store.fetch("#a", 20, None)
        self.assertFalse(first.called)
        self.assertEqual(ids(await first), list(range(31, 51)))
        self.assertEqual(
            ids(self.successResultOf(store.fetch("#A", 20, None))), list(range(31, 51))
        )
        self.assertEqual(ids(self.successResultOf(store.fetch("#a", 5, 41))), list(range(36, 41)))
        store.record(said(60))
        self.assertEqual(ids(self.successResultOf(store.fetch("#a", 3, None))), [49, 50, 60])
        older = store.fetch("#a", 20, 25)
        self.assertFalse(older.called)
        self.assertEqual(ids(await older), list(range(5, 25)))

    async def test_cache_whole_room(self) -> None:
        """
        A room found to have fewer messages than asked for (or none) is
        then answered from memory for any page.
        """
        store = await self.history(5)
        self.assertEqual(ids(await store.fetch("#b", 20, None)), [6, 7, 8])
        self.assertEqual(ids(self.successResultOf(store.fetch("#b", 20, 8))), [6, 7])
        self.assertEqual(self.successResultOf(store.fetch("#b", 20, 6)), [])
        self.assertEqual(await store.fetch("#new", 20, None), [])
        self.assertEqual(self.successResultOf(store.fetch("#new", 20, None)), [])
        store.record(said(9, "#new"))
        self.assertEqual(ids(self.successResultOf(store.fetch("#new", 20, None))), [9])

    async def test_cache_whole_room_too_big(self) -> None:
        """
        A room's whole history that does not fit the cache is not taken
        for all there is.
        """
        store = await self.history(5, cache_per_room=5)
        for i in range(10, 14):
            store.record(said(i, "#b"))
        self.assertEqual(ids(await store.fetch("#b", 20, None)), [6, 7, 8, 10, 11, 12, 13])
        self.assertEqual(ids(self.successResultOf(store.fetch("#b", 2, 11))), [8, 10])
        older = store.fetch("#b", 20, 10)
        self.assertFalse(older.called)
        self.assertEqual(ids(await older), [6, 7, 8])

    async def test_cache_recorded_during_read(self) -> None:
        """
        Messages recorded while the newest were being read join them in the
        cache, so the next read has both.
        """
        store = await self.history(30, cache_per_room=22)
        page = store.fetch("#a", 20, None)
        store.record(said(40))
        store.record(said(41))
        self.assertEqual(ids(await page), list(range(11, 31)))
        every = [*range(11, 31), 40, 41]
        self.assertEqual(ids(self.successResultOf(store.fetch("#a", 22, None))), every)
        more = store.fetch("#a", 23, None)
        self.assertFalse(more.called)
        self.assertEqual(ids(await more), [10, *every])

    async def test_cache_evicted_during_read(self) -> None:
        """
        If rooms were dropped from the cache during a read, its result is
        not cached: it might miss messages only the dropped ring held.
        """
        store = await self.history(30, cache_rooms=1)
        page = store.fetch("#a", 20, None)
        store.record(said(40))
        store.record(said(41, "#b"))
        store.record(said(42))
        self.assertEqual(ids(await page), list(range(11, 31)))
        later = store.fetch("#a", 20, None)
        self.assertFalse(later.called)
        self.assertEqual(ids(await later), [*range(13, 31), 40, 42])

    async def test_paging(self) -> None:
        """
        Paging back through more messages than the cache holds, some of
        them not yet committed, gives every message once, in order.
        """
        store = self.open_store(cache_per_room=10)
        for i in range(1, 121):
            store.record(said(i, "#a" if i % 4 else "#b"))
            if i == 70:
                await store.flush()
        seen: list[int] = []
        before = None
        while page := await store.fetch("#a", 7, before):
            seen[:0] = ids(page)
            before = page[0].id
        self.assertEqual(seen, [i for i in range(1, 121) if i % 4])

    async def test_cold_room_read_once(self) -> None:
        """
        Fetches of a room whose cache is cold, made while its first read is
        out, wait for that one read (of C{cache_per_room} messages) rather
        than each reading: the newest page, asked for as the hub does on
        joining (below the next id) or not, and older pages that read
        holds.  A page older than that is still read.
        """
        store = await self.history(150, kind=CountingStore)
        assert isinstance(store, CountingStore)
        next_id = self.state.last_id + 1
        joins = [store.fetch("#a", 21, next_id) for _ in range(100)]
        newest = store.fetch("#A", 21, None)
        resumed = store.fetch("#a", 20, 80)
        older = store.fetch("#a", 20, 40)
        self.assertEqual(store.reads, 1)
        for join in joins:
            self.assertEqual(ids(await join), list(range(130, 151)))
        self.assertEqual(ids(await newest), list(range(130, 151)))
        self.assertEqual(ids(await resumed), list(range(60, 80)))
        self.assertEqual(ids(await older), list(range(20, 40)))
        self.assertEqual(store.reads, 2)
        self.assertEqual(ids(self.successResultOf(store.fetch("#a", 20, 71))), list(range(51, 71)))
        self.assertEqual(ids(self.successResultOf(store.fetch("#a", 2, next_id))), [149, 150])

    async def test_warm_up_answers_as_of_each_fetch(self) -> None:
        """
        A fetch that waited for a room's first read gets what it would have
        got at once from a warm cache: the messages recorded before it, not
        those recorded after.
        """
        store = await self.history(30, kind=CountingStore)
        assert isinstance(store, CountingStore)
        first = store.fetch("#a", 3, None)
        second = store.fetch("#a", 3, None)
        store.record(said(40))
        third = store.fetch("#a", 3, None)
        self.assertEqual(ids(await first), [28, 29, 30])
        self.assertEqual(ids(await second), [28, 29, 30])
        self.assertEqual(ids(await third), [29, 30, 40])
        self.assertEqual(store.reads, 1)

    async def test_warm_up_fails(self) -> None:
        """
        If a room's first read fails, every fetch waiting for it fails; the
        next fetch reads again.
        """
        store = await self.history(30, kind=CountingStore)
        assert isinstance(store, CountingStore)
        store.failing = 1
        fetches = [store.fetch("#a", 21, None) for _ in range(10)]
        fetches.append(store.fetch("#a", 5, 12))
        for fetch in fetches:
            with self.assertRaises(sqlite3.OperationalError):
                await fetch
        self.assertEqual(store.reads, 1)
        self.assertEqual(ids(await store.fetch("#a", 3, None)), [28, 29, 30])
        self.assertEqual(store.reads, 2)

    async def test_bounded_reads(self) -> None:
        """
        Beyond C{max_reads} reads waiting or running, history reads fail at
        once, with a warning at most once a minute; fetches waiting for a
        room's first read, fetches the cache answers, and account reads go
        on.  Once reads are back, history is read again.
        """
        store = await self.history(30, kind=CountingStore, max_reads=3)
        assert isinstance(store, CountingStore)
        clock = store.clock
        assert isinstance(clock, Clock)
        self.assertEqual(ids(await store.fetch("#b", 5, None)), [31, 32, 33])
        store.reads = 0
        events = capture(store)
        first = store.fetch("#a", 21, None)
        waiting = [store.fetch("#a", 5, None) for _ in range(10)]
        private = [store.fetch_private("bob", "ann", 5, None, 0) for _ in range(2)]
        account = store.account("bob")
        self.assertEqual(store.reads, 4)
        self.failureResultOf(store.fetch("#c", 5, None), StoreBusy)
        self.failureResultOf(store.fetch("#d", 5, 3), StoreBusy)
        self.failureResultOf(store.fetch_private("bob", "carl", 5, None, 0), StoreBusy)
        self.assertEqual(ids(self.successResultOf(store.fetch("#b", 2, None))), [32, 33])
        self.assertEqual((store.refused_reads, len(events)), (3, 1))
        self.assertEqual(events[0]["log_level"].name, "warn")
        clock.advance(59)
        self.failureResultOf(store.fetch("#c", 5, None), StoreError)
        self.assertEqual(len(events), 1)
        clock.advance(1)
        self.failureResultOf(store.fetch("#c", 5, None), StoreError)
        self.assertEqual((store.refused_reads, len(events)), (5, 2))
        self.assertEqual(ids(await first), list(range(10, 31)))
        for fetch in waiting:
            self.assertEqual(ids(await fetch), list(range(26, 31)))
        for fetch in private:
            self.assertEqual(await fetch, [])
        self.assertIsNone(await account)
        self.assertEqual(store.reads, 4)
        self.assertEqual(await store.fetch("#c", 5, None), [])
        self.assertEqual(await store.fetch_private("bob", "carl", 5, None, 0), [])
        self.assertEqual(store.reads, 6)

    async def test_private_queued(self) -> None:
        """
        Private messages still queued are read with the stored ones.
        """
        store = self.open_store()
        for i in range(1, 6):
            store.record(whispered(i, *(("bob", "ann") if i % 2 else ("ANN", "Bob"))))
        await store.flush()
        store.record(whispered(6))
        store.record(whispered(7, "ann", "carl"))
        self.assertEqual(ids(await store.fetch_private("Bob", "ANN", 4, None, 1)), [3, 4, 5, 6])

    async def test_account_queued(self) -> None:
        """
        An account and a password change still queued are read back.
        """
        store = self.open_store()
        store.create_account(Account("Alice", "h1", 1.0))
        self.assertEqual(await store.account("alice"), Account("Alice", "h1", 1.0))
        store.set_password("ALICE", "h2")
        self.assertEqual(await store.account("alice"), Account("Alice", "h2", 1.0))
        store.create_account(Account("alice", "h3", 2.0))
        self.assertEqual(await store.account("alice"), Account("Alice", "h2", 1.0))
        self.assertEqual(store.commits, 0)

    def test_indexed(self) -> None:
        """
        Paging a room or a conversation back is an index range scan, with
        no sorting.
        """
        self.open_store()
        for sql, params, index in (
            (ROOM_PAGE, ("#a", 10, 5), "messages_by_room"),
            (PRIVATE_PAGE, ("a", "b", 0, 10, 5), "private_by_pair"),
        ):
            plan = " ".join(row[-1] for row in self.rows_with(f"EXPLAIN QUERY PLAN {sql}", params))
            self.assertIn("SEARCH", plan)
            self.assertIn(index, plan)
            self.assertNotIn("TEMP B-TREE", plan)

    def rows_with(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.path)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()


class PruneTests(SQLiteTestCase):
    async def test_many(self) -> None:
        """
        Pruning more messages than one batch removes them all, and cached
        pages no longer show them.
        """
        store = self.open_store()
        for i in range(1, 2501):
            store.record(said(i, ts=float(i)))
        store.record(said(2501, ts=5000.0))
        self.assertEqual(ids(await store.fetch("#a", 2, None)), [2500, 2501])
        await store.flush()
        self.assertEqual(await store.prune(4000.0), 2500)
        self.assertEqual(ids(await store.fetch("#a", 2, None)), [2501])
        self.assertEqual(self.rows("SELECT id FROM messages"), [(2501,)])


class OpeningTests(SQLiteTestCase):
    async def written(self) -> None:
        """
        Leave a chatd database with some history at C{self.path}.
        """
        store = self.open_store()
        for i in range(1, 3001):
            store.record(said(i, f"#r{i % 13}"))
        store.create_account(Account("bob", "h", 1.0))
        await store.close()

    def test_new_file(self) -> None:
        """
        A missing file is created, in WAL mode, at the current schema.
        """
        self.open_store()
        self.assertEqual(self.state, StoreState())
        self.assertEqual(self.rows("PRAGMA journal_mode"), [("wal",)])
        self.assertEqual(self.rows("PRAGMA user_version"), [(len(MIGRATIONS),)])

    def test_empty_file(self) -> None:
        """
        An empty file (nothing to lose) is made a new database.
        """
        Path(self.path).touch()
        self.open_store()
        self.assertEqual(self.rows("PRAGMA user_version"), [(len(MIGRATIONS),)])

    async def test_newer_schema(self) -> None:
        """
        A database from a newer chatd is refused, untouched, saying so.
        """
        await self.written()
        db = sqlite3.connect(self.path)
        db.execute("PRAGMA user_version = 7")
        db.close()
        why = self.refused()
        known = len(MIGRATIONS)
        self.assertIn(
            f"{self.path} was written by a newer chatd (schema 7, this one knows {known})", why
        )

    def test_garbage(self) -> None:
        """
        A file that is not a database is refused and left as it was.
        """
        Path(self.path).write_bytes(os.urandom(8192))
        why = self.refused()
        self.assertIn("corrupt or not a chatd database", why)
        self.assertIn("SQLite header", why)

    def test_garbage_with_header(self) -> None:
        """
        Garbage after an SQLite header is found and refused.
        """
        Path(self.path).write_bytes(b"SQLite format 3\0" + os.urandom(8192))
        self.assertIn("corrupt or not a chatd database", self.refused())

    async def test_truncated(self) -> None:
        """
        A database cut short is refused and left as it was.
        """
        await self.written()
        data = Path(self.path).read_bytes()
        self.assertGreater(len(data), 16384)
        Path(self.path).write_bytes(data[: len(data) // 2])
        why = self.refused()
        self.assertIn("corrupt or not a chatd database", why)
        self.assertIn("will not start over it", why)

    async def test_corrupt_page(self) -> None:
        """
        A database whose header and schema read well but one of whose pages
        is garbage is found by the check at start-up, and refused.
        """
        await self.written()
        data = bytearray(Path(self.path).read_bytes())
        page = len(data) // 4096 // 2 * 4096
        data[page + 100 : page + 4000] = random.Random(1).randbytes(3900)
        Path(self.path).write_bytes(data)
        db = sqlite3.connect(self.path)
        self.assertEqual(db.execute("SELECT count(*) FROM sqlite_master").fetchall(), [(9,)])
        db.close()
        why = self.refused()
        self.assertIn("corrupt or not a chatd database", why)
        self.assertLess(len(why), 500)

    def test_foreign_database(self) -> None:
        """
        Some other program's SQLite database is refused and left as it was.
        """
        db = sqlite3.connect(self.path)
        db.execute("CREATE TABLE notes (body TEXT)")
        db.execute("INSERT INTO notes VALUES ('keep me')")
        db.commit()
        db.close()
        self.assertIn("not a chatd one", self.refused())

    def test_directory(self) -> None:
        """
        A path that cannot be opened is refused with the path and the
        reason (a directory, so that this holds for root too).
        """
        why = self.refused(str(self.directory))
        self.assertIn(str(self.directory), why)
        self.assertIn("Is a directory", why)

    def test_no_such_directory(self) -> None:
        """
        A file in a directory that does not exist is refused, not created.
        """
        path = self.directory / "nowhere" / "chatd.sqlite"
        self.assertIn("no directory", self.refused(str(path)))
        self.assertFalse(path.parent.exists())

    def test_memory(self) -> None:
        """
        C{:memory:} is not a file; that is the memory store's job.
        """
        self.assertIn("MemoryStore", self.refused(":memory:"))

    async def test_migrate(self) -> None:
        """
        A database at an older schema is brought up to date at start-up,
        keeping what it held.
        """
        await self.written()

        class Newer(SQLiteStore):
            migrations = (*MIGRATIONS, "CREATE TABLE extra (x); INSERT INTO extra VALUES (42);")

        store = self.open_store(kind=Newer)
        self.assertEqual(self.rows("PRAGMA user_version"), [(len(MIGRATIONS) + 1,)])
        self.assertEqual(self.rows("SELECT x FROM extra"), [(42,)])
        self.assertEqual((self.state.last_id, self.state.accounts), (3000, {"bob"}))
        self.assertEqual(len(await store.fetch("#r1", 1000, None)), 231)

    async def test_accounts_gain_first_id(self) -> None:
        """
        Schema 2: accounts of a schema-1 database start their private
        history at the beginning; new ones where they say.
        """

        db = self.at_schema(1)
        with db:
            db.execute("INSERT INTO accounts VALUES ('alice', 'Alice', 'h', 1.0)")
        db.close()
        store = self.open_store(clock=reactor, commit_window=0.001)
        self.assertEqual(self.rows("PRAGMA user_version"), [(len(MIGRATIONS),)])
        self.assertEqual(await store.account("alice"), Account("Alice", "h", 1.0, 0))
        await store.create_account(Account("Bob", "h", 2.0, 77))
        await store.flush()
        self.assertEqual(await store.account("bob"), Account("Bob", "h", 2.0, 77))

    async def test_rooms_gain_limit_topic_time_and_n(self) -> None:
        """
        Schema 3: rooms of a schema-2 database have mode C{n} (they always
        refused messages from outside), no limit and no topic time; new
        ones keep what they say.
        """
        db = self.at_schema(2)
        with db:
            db.execute(
                "INSERT INTO rooms VALUES ('#den', '#Den', 'alice', 'hi', 'bob', 'mt', NULL,"
                " '[\"bob\"]', '[]')"
            )
        db.close()
        store = self.open_store(clock=reactor, commit_window=0.001)
        old = RoomRecord("#Den", "alice", "hi", "bob", "mnt", None, frozenset({"bob"}))
        self.assertEqual(self.state.rooms, (old,))
        new = RoomRecord("#b", "bob", "yo", "bob", "s", "k", limit=3, topic_at=2.5)
        store.save_room(new)
        await store.close()
        self.open_store()
        self.assertEqual(sorted(self.state.rooms, key=lambda r: r.name), [old, new])

    def at_schema(self, version: int) -> sqlite3.Connection:
        """
        Make C{self.path} an empty database of schema C{version}, as an
        older chatd left it, and return a connection to it.
        """
        db = sqlite3.connect(self.path)
        db.executescript("".join(MIGRATIONS[:version]) + f"PRAGMA user_version = {version};")
        return db

    async def test_failed_migration(self) -> None:
        """
        A migration that fails leaves the database as it was, and chatd
        does not start.
        """
        await self.written()

        class Broken(SQLiteStore):
            migrations = (*MIGRATIONS, "CREATE TABLE extra (x); INSERT INTO nothing VALUES (1);")

        store = Broken(self.path, Clock())
        why = str(self.assertRaises(StoreError, store.load))
        known = len(MIGRATIONS)
        self.assertIn(f"from schema {known} to {known + 1} failed", why)
        self.assertEqual(self.rows("PRAGMA user_version"), [(known,)])
        self.assertEqual(self.rows("SELECT name FROM sqlite_master WHERE name = 'extra'"), [])
