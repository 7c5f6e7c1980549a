# -*- test-case-name: tests.test_store -*-
"""
The store on disk: one SQLite file in WAL mode, written in group commits by
one thread, read by others, with the newest messages of busy rooms cached.

The reactor thread never runs SQL after L{SQLiteStore.load}: writes are
queued and committed together every C{commit_window} seconds by a single
writer thread, and reads run on a small pool of reader threads, each with
its own connection (WAL lets them read while the writer writes).  Reads
merge in what is still queued, so they see every write made before them.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import ParamSpec, TypeVar, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from chatd.errors import StoreBusy, StoreError
from chatd.interfaces import IStore
from chatd.model import Account, Message, PrivateMessage, RoomRecord, StoreState, fold
from chatd.store.memory import newest, pair_key
from chatd.store.queue import QueuedStore, Registered, Rekeyed, WriteQueue, fail_waiters

_P = ParamSpec("_P")
_T = TypeVar("_T")
_M = TypeVar("_M", Message, PrivateMessage)

APPLICATION_ID = 0x63686174
"""C{PRAGMA application_id} of a chatd database: "chat" in ASCII."""

MIGRATIONS: tuple[str, ...] = (
    # 1: rooms, private conversations, accounts, registered rooms.
    f"""
    PRAGMA application_id = {APPLICATION_ID};
    CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta VALUES ('last_id', 0);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        room_key TEXT NOT NULL,
        room TEXT NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        ts REAL NOT NULL,
        action INTEGER NOT NULL
    );
    CREATE INDEX messages_by_room ON messages (room_key, id);
    CREATE INDEX messages_by_ts ON messages (ts);
    CREATE TABLE private_messages (
        id INTEGER PRIMARY KEY,
        low TEXT NOT NULL,
        high TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        text TEXT NOT NULL,
        ts REAL NOT NULL
    );
    CREATE INDEX private_by_pair ON private_messages (low, high, id);
    CREATE INDEX private_by_ts ON private_messages (ts);
    CREATE TABLE accounts (
        nick_key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE rooms (
        room_key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        owner TEXT NOT NULL,
        topic TEXT NOT NULL,
        topic_by TEXT,
        modes TEXT NOT NULL,
        join_key TEXT,
        ops TEXT NOT NULL,
        bans TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2: where an account's own private history starts.
    """
    ALTER TABLE accounts ADD COLUMN first_id INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: a room's member limit and when its topic was set; mode n, which
    # every room had before it could be turned off.
    """
    ALTER TABLE rooms ADD COLUMN member_limit INTEGER;
    ALTER TABLE rooms ADD COLUMN topic_at REAL NOT NULL DEFAULT 0;
    UPDATE rooms SET modes = modes || 'n';
    """,
)
"""
The schema as SQL scripts, in order: a database at C{PRAGMA user_version}
M{n} gets scripts M{n+1} onwards, all in one transaction.  Append; never
edit a script that has shipped.
"""

ROOM_PAGE = (
    "SELECT id, room, sender, text, ts, action FROM messages"
    " WHERE room_key = ? AND id < ? ORDER BY id DESC LIMIT ?"
)
PRIVATE_PAGE = (
    "SELECT id, sender, recipient, text, ts FROM private_messages"
    " WHERE low = ? AND high = ? AND id > ? AND id < ? ORDER BY id DESC LIMIT ?"
)
_NO_ID = 2**63 - 1
_PRUNE_BATCH = 1000
_BUSY_TIMEOUT_MS = 5000
_REFUSALS_LOGGED_EVERY = 60.0
"""Seconds between two warnings that history reads are being refused."""


@dataclass(frozen=True, slots=True)
class _Said:
    key: str
    message: Message


@dataclass(frozen=True, slots=True)
class _Whispered:
    pair: tuple[str, str]
    message: PrivateMessage


@dataclass(frozen=True, slots=True)
class _Saved:
    key: str
    room: RoomRecord


_Write = _Said | _Whispered | Registered | Rekeyed | _Saved


@dataclass(slots=True)
class _Committed:
    """What the writer thread reports about one group commit."""

    created: list[bool]
    duplicates: int
    seconds: float


class _Ring:
    """
    The newest messages of one room.

    It always holds every stored message of the room from its oldest one
    on, so any request it holds enough messages for is answered exactly;
    with C{whole} set, nothing older exists at all.
    """

    __slots__ = ("messages", "whole")

    def __init__(self, size: int, whole: bool = False) -> None:
        self.messages: deque[Message] = deque(maxlen=size)
        self.whole = whole

    def add(self, message: Message) -> None:
        if len(self.messages) == self.messages.maxlen:
            self.whole = False
        self.messages.append(message)

    def answer(self, limit: int, before: int | None) -> list[Message] | None:
        """
        The page asked for, or None if older messages may belong in it.
        """
        page = newest(reversed(self.messages), limit, before)
        return page if len(page) == limit or self.whole else None

    def prepend(self, older: Sequence[Message], whole: bool) -> None:
        """
        Put C{older} (oldest first, every message before ours, or the newest
        of them) in front, as far as there is room.
        """
        first = self.messages[0].id if self.messages else _NO_ID
        older = [m for m in older if m.id < first]
        room = cast(int, self.messages.maxlen) - len(self.messages)
        self.whole = self.whole or (whole and len(older) <= room)
        self.messages.extendleft(reversed(older[max(len(older) - room, 0) :]))


@dataclass(slots=True)
class _RoomRead:
    """
    What one read of a room's page found: C{stored}, the rows read, and
    C{every}, those merged with the messages still queued.
    """

    stored: list[Message]
    every: list[Message]


@dataclass(slots=True)
class _WarmUp:
    """
    A read of a room's newest messages to fill its cache, and the fetches
    of that room waiting for it (each is given the read, or its failure).

    @ivar spoiled: the room's ring was dropped from the cache meanwhile, so
        the read may miss messages only that ring held: it is not cached.
    """

    waiters: list[Deferred[_RoomRead]] = field(default_factory=list)
    spoiled: bool = False


class _Readers:
    """
    Reader connections, one per reader thread that has needed one, opened
    in that thread and kept for the next read.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self.opened: list[sqlite3.Connection] = []

    def run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            db = self._idle.get_nowait()
        except queue.Empty:
            db = self._connect()
            self.opened.append(db)
        try:
            return work(db)
        finally:
            self._idle.put(db)


@implementer(IStore)
class SQLiteStore(QueuedStore):
    """
    Keep everything in the SQLite database at C{path}.

    Writes are grouped: the first write after a commit starts a
    C{commit_window} timer on C{clock}, and everything written until it
    fires is committed in one transaction, in the order it was written.
    While a commit is running, new writes wait for the next one.  So a
    clean shutdown (L{close}) loses nothing, and a crash loses at most the
    last window or two.

    At most C{max_queued} messages wait to be committed; when the disk
    falls that far behind, new messages are not stored (and are counted in
    C{dropped}) so that memory stays bounded.  Accounts and rooms always
    wait their turn.

    Connections and threads are made on first use, not by L{load}, so the
    store survives the fork of a daemonizing twistd.  Results come back to
    the reactor thread through C{reactor}: by default C{clock} if it is a
    reactor, else the global reactor (for tests that drive the timer with
    a L{twisted.internet.task.Clock} while the real reactor runs).

    Reads of a room's newest page, when its cache cannot answer, are made
    once for everyone: the first fetch reads the newest C{cache_per_room}
    messages to fill the cache (a warm-up), and fetches of that room made
    meanwhile wait for it, then are answered from the cache (or, if it still
    cannot answer them, by reading).  So a reconnect storm joining a cold
    room makes one read, not one per user.  At most C{max_reads} history
    reads may wait for or run in the reader threads: beyond that, L{fetch}
    and L{fetch_private} fail at once with L{StoreError} (warned about once
    a minute) rather than queue work that would be answered seconds late,
    each costing the reactor a scan of the queued writes.  Account reads
    and L{check} are neither refused nor counted.

    After L{close}, writes are logged and ignored and every other method
    fails with L{StoreError}.

    @ivar commits: how many group commits have succeeded.
    @ivar commit_seconds: the time they took, in the writer thread.
    @ivar dropped: how many messages were not stored (queue full, or their
        commit failed).
    @ivar refused_reads: how many history reads were refused (too many
        reads waiting).
    """

    log = Logger()
    migrations: Sequence[str] = MIGRATIONS
    readers = 2

    def __init__(
        self,
        path: str,
        clock: IReactorTime,
        *,
        commit_window: float = 0.05,
        max_queued: int = 100_000,
        cache_per_room: int = 100,
        cache_rooms: int = 1000,
        max_reads: int = 1000,
        reactor: IReactorFromThreads | None = None,
    ) -> None:
        self.path = path
        self.clock = clock
        self.commit_window = commit_window
        self.max_queued = max_queued
        self.cache_per_room = cache_per_room
        self.cache_rooms = cache_rooms
        self.max_reads = max_reads
        if reactor is None:
            if IReactorFromThreads.providedBy(clock):
                reactor = cast(IReactorFromThreads, clock)
            else:
                from twisted.internet import reactor as global_reactor

                reactor = cast(IReactorFromThreads, global_reactor)
        self._reactor = reactor
        self.commits = 0
        self.commit_seconds = 0.0
        self._loaded = False
        self._closed = False
        self._closing: Deferred[None] | None = None
        self._failing: StoreError | None = None
        self._shutdown_trigger: object = None
        self._writer: ThreadPool | None = None
        self._reader: ThreadPool | None = None
        self._db: sqlite3.Connection | None = None
        self._readers = _Readers(self._connect_reader)
        self._queue: WriteQueue[_Write] = WriteQueue(
            clock, commit_window, max_queued, self._flush, "The disk"
        )
        self._inflight: list[_Write] | None = None
        self._committed = 0
        self._commit_waiters: list[Deferred[None]] = []
        self._jobs = 0
        self._idle_waiters: list[Deferred[None]] = []
        self._cache: OrderedDict[str, _Ring] = OrderedDict()
        self._evictions = 0
        self._epoch = 0
        self._pruning = 0
        self._warming: dict[str, _WarmUp] = {}
        self._top = 0
        self._reads = 0
        self.refused_reads = 0
        self._refusals_logged: float | None = None

    # -- opening -------------------------------------------------------------

    def load(self) -> StoreState:
        """
        Open (or create) the database, check it, bring its schema up to
        date and read what the hub needs, on the calling thread; then close
        it again (see the class docstring).  Raise L{StoreError}, having
        changed nothing, if the file is not a chatd database we can use.
        """
        if self._loaded:
            raise RuntimeError("SQLiteStore.load() may be called only once")
        self._check_file()
        db: sqlite3.Connection | None = None
        try:
            db = self._connect()
            state = self._prepare(db)
        except sqlite3.Error as e:
            raise self._refusal(e) from e
        finally:
            if db is not None:
                db.close()
        self._loaded = True
        self._top = state.last_id
        return state

    def _check_file(self) -> None:
        """
        Refuse, before SQLite touches it, a path that is not a file we may
        read and write or whose first bytes are not a SQLite header.
        """
        path = self.path
        if path in ("", ":memory:"):
            raise StoreError("An SQLite store needs a file; use MemoryStore for ':memory:'")
        try:
            with open(path, "r+b") as f:
                header = f.read(100)
        except FileNotFoundError:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise StoreError(f"Cannot create {path}: no directory {parent}") from None
            return
        except OSError as e:
            raise StoreError(f"Cannot open {path}: {e.strerror}") from e
        if header and not (len(header) == 100 and header.startswith(b"SQLite format 3\0")):
            raise self._corrupt("it does not start with an SQLite header")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=16
        )
        db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        return db

    def _connect_reader(self) -> sqlite3.Connection:
        db = self._connect()
        db.execute("PRAGMA query_only = ON")
        return db

    def _prepare(self, db: sqlite3.Connection) -> StoreState:
        """
        Check C{db} is ours and sound, only reading, then migrate it.
        """
        known = len(self.migrations)
        (application,) = db.execute("PRAGMA application_id").fetchone()
        (version,) = db.execute("PRAGMA user_version").fetchone()
        (objects,) = db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        fresh = application == version == objects == 0
        if not fresh and (application != APPLICATION_ID or version < 1):
            raise StoreError(
                f"{self.path} is an SQLite database, but not a chatd one; chatd will"
                " not start over it.  Use another --db."
            )
        if version > known:
            raise StoreError(
                f"{self.path} was written by a newer chatd (schema {version}, this one"
                f" knows {known}); upgrade chatd or use another --db"
            )
        if not fresh:
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                lines = "\n".join(problems).splitlines()
                raise self._corrupt("; ".join(line for line in lines if "***" not in line)[:200])
        (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal":
            raise StoreError(f"Cannot use {self.path}: SQLite refused WAL mode ({mode})")
        db.execute("PRAGMA synchronous = NORMAL")
        if version < known:
            if not fresh:
                self.log.info(
                    "Upgrading {path} from schema {old} to {new}",
                    path=self.path,
                    old=version,
                    new=known,
                )
            script = "".join(self.migrations[version:])
            try:
                db.executescript(f"BEGIN IMMEDIATE;{script};PRAGMA user_version = {known};COMMIT;")
            except sqlite3.Error as e:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if fresh:
                    raise
                raise StoreError(
                    f"Upgrading {self.path} from schema {version} to {known} failed ({e});"
                    " it was left as it was"
                ) from e
        return self._state(db)

    def _state(self, db: sqlite3.Connection) -> StoreState:
        (last_id,) = db.execute(
            "SELECT max(value, (SELECT coalesce(max(id), 0) FROM messages),"
            " (SELECT coalesce(max(id), 0) FROM private_messages))"
            " FROM meta WHERE name = 'last_id'"
        ).fetchone()
        accounts = frozenset(row[0] for row in db.execute("SELECT nick_key FROM accounts"))
        rooms = tuple(
            _room(*row)
            for row in db.execute(
                "SELECT name, owner, topic, topic_by, modes, join_key, ops, bans,"
                " member_limit, topic_at FROM rooms"
            )
        )
        return StoreState(last_id, accounts, rooms)

    def _corrupt(self, detail: str) -> StoreError:
        return StoreError(
            f"{self.path} is corrupt or not a chatd database ({detail}); chatd will not"
            " start over it.  Restore it from a backup, or use another --db."
        )

    def _refusal(self, error: sqlite3.Error) -> StoreError:
        name = getattr(error, "sqlite_errorname", "")
        text = str(error)
        if name == "SQLITE_NOTADB" or name.startswith("SQLITE_CORRUPT") or "malformed" in text:
            return self._corrupt(text)
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return StoreError(f"{self.path} is locked ({text}); is another chatd using it?")
        directory = os.path.dirname(os.path.abspath(self.path))
        return StoreError(
            f"Cannot use {self.path}: {text} (SQLite needs to read and write it, and to"
            f" create files beside it in {directory})"
        )

    # -- threads -------------------------------------------------------------

    def _run(
        self, pool: ThreadPool, work: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> Deferred[_T]:
        """
        Run C{work} in C{pool}, counting it until its result is back.
        """
        self._jobs += 1
        result = deferToThreadPool(self._reactor, pool, work, *args, **kwargs)

        def back(outcome: _T | Failure) -> _T | Failure:
            self._jobs -= 1
            if not self._jobs:
                waiters, self._idle_waiters = self._idle_waiters, []
                for waiter in waiters:
                    waiter.callback(None)
            return outcome

        return result.addBoth(back)

    def _pools(self) -> tuple[ThreadPool, ThreadPool]:
        """
        The writer and reader thread pools, started on first use.
        """
        if self._writer is None or self._reader is None:
            self._writer = ThreadPool(1, 1, "chatd-store-writer")
            self._reader = ThreadPool(0, self.readers, "chatd-store-reader")
            self._writer.start()
            self._reader.start()
            if IReactorCore.providedBy(self._reactor):
                core = cast(IReactorCore, self._reactor)
                self._shutdown_trigger = core.addSystemEventTrigger(
                    "during", "shutdown", self._close_now
                )
        return self._writer, self._reader

    def _write(self, work: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> Deferred[_T]:
        return self._run(self._pools()[0], work, *args, **kwargs)

    def _read(self, work: Callable[[sqlite3.Connection], _T]) -> Deferred[_T]:
        return self._run(self._pools()[1], self._readers.run, work)

    def _read_history(self, work: Callable[[sqlite3.Connection], _T]) -> Deferred[_T]:
        """
        L{_read} a page of history, counting it until its result is back
        (see L{_refuse_read}).
        """
        self._reads += 1

        def back(outcome: _T | Failure) -> _T | Failure:
            self._reads -= 1
            return outcome

        return self._read(work).addBoth(back)

    def _refuse_read(self) -> StoreBusy | None:
        """
        Why a history read is refused if C{max_reads} of them are already
        waiting or running, else None.  Refusals are counted, and warned
        about once in C{_REFUSALS_LOGGED_EVERY} seconds.

        Only history reads count: the others (accounts, L{check}) are
        never refused, so they must not get history refused either.
        """
        if self._reads < self.max_reads:
            return None
        self.refused_reads += 1
        now = self.clock.seconds()
        if self._refusals_logged is None or now - self._refusals_logged >= _REFUSALS_LOGGED_EVERY:
            self._refusals_logged = now
            self.log.warn(
                "{reads} history reads of {path} are waiting: more are refused ({refused} so far)",
                reads=self._reads,
                path=self.path,
                refused=self.refused_reads,
            )
        return StoreBusy(f"Too many history reads of {self.path} are waiting")

    def _writer_db(self) -> sqlite3.Connection:
        """
        The writer's connection (only ever used in the writer thread).
        """
        if self._db is None:
            self._db = self._connect()
            self._db.execute("PRAGMA synchronous = NORMAL")
        return self._db

    # -- writing -------------------------------------------------------------

    def record(self, message: Message | PrivateMessage) -> None:
        if self._refused() or not self._queue.admit(self.log):
            return
        self._top = max(self._top, message.id)
        if isinstance(message, Message):
            key = fold(message.room)
            self._queue.put(_Said(key, message), message=True)
            ring = self._cache.get(key)
            if ring is None:
                ring = self._cache_ring(key)
            else:
                self._cache.move_to_end(key)
            ring.add(message)
        else:
            pair = pair_key(message.sender, message.recipient)
            self._queue.put(_Whispered(pair, message), message=True)

    def save_room(self, room: RoomRecord) -> None:
        if not self._refused():
            self._queue.put(_Saved(fold(room.name), room))

    def _refused(self) -> bool:
        if self._closed:
            self.log.warn("A write to the closed store {path} was ignored", path=self.path)
        return self._closed

    def _flush(self) -> None:
        """
        Commit what is queued, unless a commit is running (its end will).
        Messages count against C{max_queued} only while queued.
        """
        if self._inflight is not None:
            return
        if not self._queue:  # a flush found nothing left: the next write starts a window
            self._queue.stop()
            return
        batch, messages = self._queue.take()
        self._queue.release(messages)
        self._inflight = batch
        self._write(self._commit, batch).addBoth(self._ended, batch, self._queue.written)

    def _commit(self, batch: list[_Write]) -> _Committed:
        """
        In the writer thread: write C{batch} in one transaction.
        """
        said = [
            (m.id, w.key, m.room, m.sender, m.text, m.ts, int(m.action))
            for w in batch
            if isinstance(w, _Said)
            for m in (w.message,)
        ]
        whispered = [
            (m.id, *w.pair, m.sender, m.recipient, m.text, m.ts)
            for w in batch
            if isinstance(w, _Whispered)
            for m in (w.message,)
        ]
        top = max((row[0] for row in (*said, *whispered)), default=0)
        created: list[bool] = []
        db = self._writer_db()
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        try:
            stored = db.executemany(
                "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)", said
            ).rowcount
            stored += db.executemany(
                "INSERT OR IGNORE INTO private_messages VALUES (?, ?, ?, ?, ?, ?, ?)", whispered
            ).rowcount
            for w in batch:
                if isinstance(w, Registered):
                    a = w.account
                    cursor = db.execute(
                        "INSERT OR IGNORE INTO accounts VALUES (?, ?, ?, ?, ?)",
                        (w.key, a.name, a.password_hash, a.created, a.first_id),
                    )
                    created.append(cursor.rowcount == 1)
                elif isinstance(w, Rekeyed):
                    db.execute(
                        "UPDATE accounts SET password_hash = ? WHERE nick_key = ?",
                        (w.password_hash, w.key),
                    )
                elif isinstance(w, _Saved):
                    r = w.room
                    db.execute(
                        "INSERT OR REPLACE INTO rooms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            w.key,
                            r.name,
                            r.owner,
                            r.topic,
                            r.topic_by,
                            r.modes,
                            r.key,
                            json.dumps(sorted(r.ops)),
                            json.dumps(sorted(r.bans)),
                            r.limit,
                            r.topic_at,
                        ),
                    )
            if top:
                db.execute("UPDATE meta SET value = max(value, ?) WHERE name = 'last_id'", (top,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        seconds = time.perf_counter() - started
        return _Committed(created, len(said) + len(whispered) - stored, seconds)

    def _ended(self, outcome: _Committed | Failure, batch: list[_Write], written: int) -> None:
        """
        Back on the reactor thread: tell whoever waits how C{batch} went,
        and start the next commit if it is due.
        """
        self._inflight = None
        self._committed = written
        self._queue.answered()
        if isinstance(outcome, Failure):
            lost = sum(isinstance(w, (_Said, _Whispered)) for w in batch)
            self._queue.dropped += lost
            self.log.failure(
                "Committing {count} writes ({lost} messages) to {path} failed",
                outcome,
                count=len(batch),
                lost=lost,
                path=self.path,
            )
            # The cache may hold messages that never reached the disk.
            self._cache.clear()
            self._epoch += 1
            error = StoreError(f"Could not write to {self.path}: {outcome.value}")
            self._failing = error
            fail_waiters(batch, error)
        else:
            self.commits += 1
            self.commit_seconds += outcome.seconds
            self._failing = None
            if outcome.duplicates:
                self.log.warn(
                    "{count} messages had ids already stored; the first were kept",
                    count=outcome.duplicates,
                )
            created = iter(outcome.created)
            for w in batch:
                if isinstance(w, Registered):
                    w.done.callback(next(created))
                elif isinstance(w, Rekeyed):
                    w.done.callback(None)
        waiters, self._commit_waiters = self._commit_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        if self._queue.due:
            self._flush()

    def flush(self) -> Deferred[None]:
        """
        Commit everything written so far without waiting for the window;
        fire once it has been committed (or has failed, which is logged).
        """
        return Deferred.fromCoroutine(self._flushed(self._queue.written))

    async def _flushed(self, written: int) -> None:
        while self._committed < written:
            self._queue.due = True
            self._flush()
            waiter: Deferred[None] = Deferred()
            self._commit_waiters.append(waiter)
            await waiter

    # -- reading -------------------------------------------------------------

    def check(self) -> Deferred[None]:
        """
        Fail if the last commit failed or the store is closed; otherwise
        read from the file in a reader thread, failing if that fails.
        """
        if self._failing is not None:
            return fail(self._failing)
        if self._closed or self._closing is not None:
            return fail(StoreError("The store is closed"))
        checked = self._read(lambda db: db.execute("SELECT value FROM meta LIMIT 1").fetchone())
        return checked.addCallback(lambda _: None)

    def _pending(self) -> Iterable[_Write]:
        """
        Every write not yet known to be committed, oldest first.
        """
        if self._inflight is not None:
            yield from self._inflight
        yield from self._queue

    def fetch(self, room: str, limit: int, before: int | None) -> Deferred[list[Message]]:
        """
        See L{IStore.fetch}.  A page the cache cannot answer is read, but
        while the room's cache is being filled (L{_warm_up}) only after
        that, if the cache still cannot answer it.
        """
        if self._closed:
            return fail(StoreError("The store is closed"))
        if limit <= 0:
            return succeed([])
        key = fold(room)
        page = self._cached(key, limit, before)
        if page is not None:
            return succeed(page)
        warm = self._warming.get(key)
        if warm is not None:
            cut = self._cut()
            return self._wait(warm).addCallback(
                lambda _: self._after_warm_up(key, limit, before, cut)
            )
        if limit <= self.cache_per_room and self._newest(key, before):
            if (error := self._refuse_read()) is not None:
                return fail(error)
            return self._wait(self._warm_up(key)).addCallback(
                self._first_answer, key, limit, before, self._cut()
            )
        if (error := self._refuse_read()) is not None:
            return fail(error)
        return self._read_room(key, limit, before).addCallback(lambda read: read.every[-limit:])

    def _cached(self, key: str, limit: int, before: int | None) -> list[Message] | None:
        """
        The page asked for from the cache, or None if it cannot tell.
        """
        ring = self._cache.get(key)
        if ring is not None:
            page = ring.answer(limit, before)
            if page is not None:
                self._cache.move_to_end(key)
                return page
        return None

    def _newest(self, key: str, before: int | None) -> bool:
        """
        Whether the page below C{before} is room C{key}'s newest: no message
        of it has an id at or above C{before} (so when the hub asks, on
        joining, below the next id).
        """
        if before is None:
            return True
        ring = self._cache.get(key)
        if ring is not None and ring.messages:
            return before > ring.messages[-1].id  # the ring has the newest
        return before > self._top

    def _cut(self) -> int | None:
        """
        Below which id every message recorded so far is: a page answered
        later from the cache leaves out what was recorded since.  None if
        that is not known (the store was not loaded).
        """
        return self._top + 1 if self._loaded else None

    def _read_room(
        self, key: str, limit: int, before: int | None, warm: _WarmUp | None = None
    ) -> Deferred[_RoomRead]:
        """
        Read the newest C{limit} stored messages of room C{key} below
        C{before}, and merge in those still queued.  Cache them if they are
        the room's newest (C{before} is None) and nothing that happened
        meanwhile (a failed commit, pruning, the ring dropped) could make
        them miss some.  For a warm-up C{warm}, only its own ring being
        dropped counts, not any other's.
        """
        ring = self._cache.get(key)
        pending = [
            w.message
            for w in self._pending()
            if isinstance(w, _Said) and w.key == key and (before is None or w.message.id < before)
        ]
        epoch, evictions = self._epoch, self._evictions

        def query(db: sqlite3.Connection) -> list[Message]:
            rows = db.execute(ROOM_PAGE, (key, _NO_ID if before is None else before, limit))
            return [Message(r, s, t, ts, i, bool(a)) for i, r, s, t, ts, a in rows]

        def merge(stored: list[Message]) -> _RoomRead:
            every = _union(stored, pending)
            if before is None and epoch == self._epoch and not self._pruning:
                if warm is None:
                    self._fill(key, ring, evictions, every, whole=len(stored) < limit)
                elif not warm.spoiled:
                    self._fill(key, ring, self._evictions, every, whole=len(stored) < limit)
            return _RoomRead(stored, every)

        return self._read_history(query).addCallback(merge)

    def _warm_up(self, key: str) -> _WarmUp:
        """
        Read the newest C{cache_per_room} messages of room C{key} to fill
        its cache; until that is done, its fetches wait for it (L{_wait}).
        """
        warm = self._warming[key] = _WarmUp()

        def over(outcome: _RoomRead | Failure) -> None:
            if self._warming.get(key) is warm:
                del self._warming[key]
            waiters, warm.waiters = warm.waiters, []
            for waiter in waiters:
                if isinstance(outcome, Failure):
                    waiter.errback(outcome)
                else:
                    waiter.callback(outcome)

        self._read_room(key, self.cache_per_room, None, warm).addBoth(over)
        return warm

    def _wait(self, warm: _WarmUp) -> Deferred[_RoomRead]:
        waiter: Deferred[_RoomRead] = Deferred()
        warm.waiters.append(waiter)
        return waiter

    def _first_answer(
        self, read: _RoomRead, key: str, limit: int, before: int | None, cut: int | None
    ) -> Deferred[list[Message]]:
        """
        Answer the fetch that started a warm-up from what it read, as if it
        had read its own page (below C{before}, C{limit} of them), if the
        read holds that page: enough stored messages below C{before}, or
        every one the room has.
        """
        below = [m for m in read.stored if before is None or m.id < before]
        if len(below) >= limit or len(read.stored) < self.cache_per_room:
            page = [m for m in read.every if before is None or m.id < before]
            return succeed(page[-limit:])
        return self._after_warm_up(key, limit, before, cut)

    def _after_warm_up(
        self, key: str, limit: int, before: int | None, cut: int | None
    ) -> Deferred[list[Message]]:
        """
        Answer a fetch that waited for a warm-up: from the cache, leaving
        out what was recorded after the fetch (at or above C{cut}), as the
        cache would have answered it then; or else by reading.
        """
        bound = before if cut is None or (before is not None and before <= cut) else cut
        page = self._cached(key, limit, bound)
        if page is not None:
            return succeed(page)
        if self._closed:
            return fail(StoreError("The store is closed"))
        if (error := self._refuse_read()) is not None:
            return fail(error)
        return self._read_room(key, limit, before).addCallback(lambda read: read.every[-limit:])

    def _fill(
        self,
        key: str,
        ring: _Ring | None,
        evictions: int,
        every: list[Message],
        whole: bool,
    ) -> None:
        """
        Cache C{every}, the newest messages of room C{key} when the query
        was made, if what was recorded since is cached too: the ring there
        then (if any) must still be there, and if there was none, no ring
        may have been dropped since (it might have held some).
        """
        now = self._cache.get(key)
        if ring is not None:
            if now is not ring:
                return
        elif self._evictions != evictions:
            return
        if now is None:
            now = self._cache_ring(key)
        now.prepend(every, whole)

    def _cache_ring(self, key: str) -> _Ring:
        ring = self._cache[key] = _Ring(self.cache_per_room)
        if len(self._cache) > self.cache_rooms:
            dropped, _ = self._cache.popitem(last=False)
            self._evictions += 1
            warm = self._warming.get(dropped)
            if warm is not None:
                warm.spoiled = True
        return ring

    def fetch_private(
        self, nick: str, other: str, limit: int, before: int | None, after: int
    ) -> Deferred[list[PrivateMessage]]:
        if self._closed:
            return fail(StoreError("The store is closed"))
        if limit <= 0:
            return succeed([])
        if (error := self._refuse_read()) is not None:
            return fail(error)
        low, high = pair = pair_key(nick, other)
        pending = [
            w.message
            for w in self._pending()
            if isinstance(w, _Whispered)
            and w.pair == pair
            and after < w.message.id
            and (before is None or w.message.id < before)
        ]

        def query(db: sqlite3.Connection) -> list[PrivateMessage]:
            rows = db.execute(
                PRIVATE_PAGE, (low, high, after, _NO_ID if before is None else before, limit)
            )
            return [PrivateMessage(s, r, t, ts, i) for i, s, r, t, ts in rows]

        read = self._read_history(query)
        return read.addCallback(lambda stored: _union(stored, pending)[-limit:])

    def account(self, name: str) -> Deferred[Account | None]:
        if self._closed:
            return fail(StoreError("The store is closed"))
        key = fold(name)
        # Replaying writes the snapshot may already hold changes nothing:
        # creating is "unless it exists", changing a password is idempotent.
        pending = [
            w for w in self._pending() if isinstance(w, (Registered, Rekeyed)) and w.key == key
        ]

        def query(db: sqlite3.Connection) -> Account | None:
            rows = db.execute(
                "SELECT name, password_hash, created, first_id FROM accounts WHERE nick_key = ?",
                (key,),
            ).fetchall()
            return Account(*rows[0]) if rows else None

        def replay(account: Account | None) -> Account | None:
            for w in pending:
                if isinstance(w, Registered):
                    account = account or w.account
                elif account is not None:
                    account = replace(account, password_hash=w.password_hash)
            return account

        return self._read(query).addCallback(replay)

    # -- pruning and closing -------------------------------------------------

    def prune(self, before: float) -> Deferred[int]:
        """
        Delete old messages a batch per transaction, so group commits go
        on in between; stop early (with the count so far) on L{close}.
        """
        if self._closed:
            return fail(StoreError("The store is closed"))
        return Deferred.fromCoroutine(self._prune(before))

    async def _prune(self, before: float) -> int:
        removed = 0
        self._pruning += 1
        try:
            while not self._closed:
                count = await self._write(self._delete_older, before, _PRUNE_BATCH)
                removed += count
                if count < _PRUNE_BATCH:
                    break
        finally:
            self._pruning -= 1
            self._epoch += 1
            for key, ring in list(self._cache.items()):
                kept = [m for m in ring.messages if m.ts >= before]
                if len(kept) < len(ring.messages):
                    ring.messages.clear()
                    ring.messages.extend(kept)
                    if not kept and not ring.whole:
                        del self._cache[key]
        return removed

    def _delete_older(self, before: float, most: int) -> int:
        db = self._writer_db()
        db.execute("BEGIN IMMEDIATE")
        try:
            count = 0
            for table in ("messages", "private_messages"):
                count += db.execute(
                    f"DELETE FROM {table} WHERE id IN"
                    f" (SELECT id FROM {table} WHERE ts < ? LIMIT ?)",
                    (before, most - count),
                ).rowcount
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return count

    async def _close(self) -> None:
        """
        For L{close}: commit what is queued, wait for every running query,
        then stop the threads and close the connections.
        """
        await self.flush()
        while self._jobs:
            waiter: Deferred[None] = Deferred()
            self._idle_waiters.append(waiter)
            await waiter
        if self._shutdown_trigger is not None:
            cast(IReactorCore, self._reactor).removeSystemEventTrigger(self._shutdown_trigger)
        self._stop_threads()
        self._disconnect()

    def _close_now(self) -> None:
        """
        At reactor shutdown, if L{close} has not finished: finish as it
        would, but blocking, since the reactor will deliver nothing more.
        Our threads must not keep the process alive, nor queued writes be
        lost, because an owner forgot to close the store.
        """
        self._closed = True
        self._shutdown_trigger = None
        batch, _ = self._queue.take()
        self._stop_threads()
        if batch:
            outcome: _Committed | Failure
            try:
                outcome = self._commit(batch)
            except Exception:
                outcome = Failure()
            self._ended(outcome, batch, self._queue.written)
        self._disconnect()

    def _stop_threads(self) -> None:
        """
        Stop the thread pools, once their running work is done.
        """
        for pool in (self._writer, self._reader):
            if pool is not None and not pool.joined:
                pool.stop()

    def _disconnect(self) -> None:
        for db in (self._db, *self._readers.opened):
            try:
                if db is not None:
                    db.close()
            except sqlite3.Error:
                self.log.failure("Closing {path} failed", path=self.path)


def _union(stored: Iterable[_M], pending: Iterable[_M]) -> list[_M]:
    """
    Messages from the database and from the queue, once each, oldest first.
    """
    by_id = {m.id: m for m in stored}
    by_id.update((m.id, m) for m in pending)
    return [by_id[i] for i in sorted(by_id)]


def _room(
    name: str,
    owner: str,
    topic: str,
    topic_by: str | None,
    modes: str,
    key: str | None,
    ops: str,
    bans: str,
    limit: int | None,
    topic_at: float,
) -> RoomRecord:
    """
    A row of C{rooms} as a record, its modes sorted (schema 3 put C{n} last).
    """
    flags = "".join(sorted(modes))
    return RoomRecord(
        name, owner, topic, topic_by, flags, key, _names(ops), _names(bans), limit, topic_at
    )


def _names(encoded: str) -> frozenset[str]:
    return frozenset(json.loads(encoded))
