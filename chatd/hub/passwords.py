# -*- test-case-name: tests.test_accounts -*-
"""
Passwords: hashed with argon2id off the reactor thread, and guessed at a
bounded pace.

Hashing is deliberately slow and memory-hungry, so it runs in a small
thread pool of its own, a few at a time, with a bounded line of requests
waiting; a wrong password costs the guesser, not the server.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.internet.defer import Deferred, DeferredSemaphore, maybeDeferred
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from chatd.errors import ChatError

MIN_PASSWORD = 6
MAX_PASSWORD = 128

# OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane (about 20 ms here).
DEFAULT_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

T = TypeVar("T")
InThread = Callable[..., Deferred[Any]]


def check_password(password: str) -> str:
    """
    Return C{password} if it is acceptable as a new password, else raise.
    """
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ChatError(
            "bad_password",
            f"A password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters long",
        )
    if any(c.isspace() for c in password):
        raise ChatError("bad_password", "A password cannot contain spaces")
    return password


class HashingPool:
    """
    A thread pool of at most C{size} threads that only hashes passwords.

    Why its own pool: argon2 takes C{memory_cost} (19 MiB) per hash, and
    glibc serves it from the malloc arena of the thread that hashes and then
    keeps it there.  In Twisted's shared pool (up to 10 threads) any thread
    may hash, so up to 10 arenas each kept 19 MiB; here at most C{size}
    threads, hence arenas, ever hash, so hashing keeps at most C{size}
    blocks.  (Having glibc unmap the block after each hash would give even
    those back, but it costs every hash about 10 ms of page faults, half
    as much again.)

    Its threads start on the first hash and stop when the reactor shuts
    down (or at L{stop}); a later hash starts a new pool.
    """

    def __init__(self, size: int, reactor: IReactorFromThreads | None = None) -> None:
        self.size = size
        self._reactor = reactor
        self.pool: ThreadPool | None = None

    def run(self, work: Callable[..., T], *args: Any) -> Deferred[T]:
        """
        Run C{work(*args)} in one of the pool's threads; the result arrives
        in the reactor thread.
        """
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = IReactorFromThreads(reactor)
        if self.pool is None:
            self.pool = ThreadPool(minthreads=0, maxthreads=self.size, name="passwords")
            self.pool.start()
            IReactorCore(self._reactor).addSystemEventTrigger("during", "shutdown", self.stop)
        return deferToThreadPool(self._reactor, self.pool, work, *args)

    def stop(self) -> None:
        """
        Stop the threads, once the hashes they are doing are done.
        """
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.stop()


class Passwords:
    """
    Hash and verify passwords in threads, C{parallel} at a time, with at
    most C{max_waiting} requests waiting their turn (beyond that the server
    is C{busy} and says so rather than queueing without end).

    The threads are C{in_thread}'s or else a L{HashingPool} of C{parallel}
    threads, which bounds the memory that hashing keeps.
    """

    def __init__(
        self,
        hasher: PasswordHasher = DEFAULT_HASHER,
        in_thread: InThread | None = None,
        parallel: int = 2,
        max_waiting: int = 64,
        reactor: IReactorFromThreads | None = None,
    ) -> None:
        self.hasher = hasher
        self.threads: HashingPool | None = None
        if in_thread is None:
            self.threads = HashingPool(parallel, reactor)
            in_thread = self.threads.run
        self._in_thread = in_thread
        self._turns = DeferredSemaphore(parallel)
        self._max_waiting = max_waiting

    def hash(self, password: str) -> Deferred[str]:
        return self._run(self.hasher.hash, password)

    def verify(self, password_hash: str, password: str) -> Deferred[bool]:
        return self._run(self._verify, password_hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _run(self, work: Callable[..., T], *args: Any) -> Deferred[T]:
        if len(self._turns.waiting) >= self._max_waiting:
            raise ChatError("busy", "The server is busy; try again in a moment")
        return self._turns.run(lambda: maybeDeferred(self._in_thread, work, *args))


class Attempts:
    """
    Failed password attempts, by key: after C{allowed} failures within
    C{window} seconds a key is refused until the window has passed.

    Keys are nicknames (bounded: the C{max_keys} most recent are kept) and
    connections (held weakly, so they go with the connection).
    """

    def __init__(
        self,
        clock: IReactorTime,
        allowed: int = 5,
        window: float = 60.0,
        max_keys: int = 10_000,
    ) -> None:
        self.clock = clock
        self.allowed = allowed
        self.window = window
        self.max_keys = max_keys
        self._names: OrderedDict[str, list[float]] = OrderedDict()
        self._connections: weakref.WeakKeyDictionary[object, list[float]] = (
            weakref.WeakKeyDictionary()
        )

    def check(self, name: str, connection: object) -> None:
        """
        Refuse another attempt at C{name} from C{connection} if either has
        failed too often lately.
        """
        for failures in (self._names.get(name), self._connections.get(connection)):
            if failures is None:
                continue
            recent = self._recent(failures)
            if len(recent) >= self.allowed:
                wait = int(recent[0] + self.window - self.clock.seconds()) + 1
                raise ChatError(
                    "too_many_attempts",
                    f"Too many wrong passwords; try again in {wait} seconds",
                )

    def failed(self, name: str, connection: object) -> None:
        now = self.clock.seconds()
        failures = self._recent(self._names.pop(name, []))
        failures.append(now)
        self._names[name] = failures
        if len(self._names) > self.max_keys:
            self._names.popitem(last=False)
        on_connection = self._recent(self._connections.get(connection, []))
        on_connection.append(now)
        self._connections[connection] = on_connection

    def succeeded(self, name: str) -> None:
        self._names.pop(name, None)

    def _recent(self, failures: list[float]) -> list[float]:
        since = self.clock.seconds() - self.window
        return [t for t in failures if t > since][-self.allowed :]
