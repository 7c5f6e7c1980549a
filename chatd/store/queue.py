# -*- test-case-name: tests.test_store,tests.test_store_redis -*-
"""
What the SQLite and Redis stores share: a bounded queue of writes waiting
to be committed together, and the writes and methods around it that do not
depend on where the writes go.

Both stores answer L{chatd.interfaces.IStore} writes at once, on the reactor
thread, and send them on in groups; one queue means both group, bound and
count them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from chatd.errors import StoreError
from chatd.model import Account, fold

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

_W = TypeVar("_W")


@dataclass(frozen=True, slots=True)
class Registered:
    """Create an account unless its name is taken; C{done} says whether it was made."""

    key: str
    account: Account
    done: Deferred[bool] = field(default_factory=Deferred)


@dataclass(frozen=True, slots=True)
class Rekeyed:
    """Change an account's password hash; C{done} fires once that is written."""

    key: str
    password_hash: str
    done: Deferred[None] = field(default_factory=Deferred)


def fail_waiters(batch: Iterable[object], error: StoreError) -> None:
    """
    Fail whoever waits for an account write in C{batch}: it was not made.
    """
    for w in batch:
        if isinstance(w, (Registered, Rekeyed)):
            w.done.errback(error)


class WriteQueue(Generic[_W]):
    """
    Writes waiting to be sent on, oldest first, so that they are sent in
    the order they were made, many at a time.

    The first write L{put} while no timer runs and no flush is C{due}
    starts a C{window}-second timer on C{clock}; when it fires, C{due} is
    set and C{flush} is called, which should L{take} the writes, or leave
    C{due} set (so that no new timer starts) until it can.

    At most C{bound} messages may be held (from L{put} until L{release}),
    so that memory stays bounded when the backend falls behind: L{admit}
    refuses more, counting them in C{dropped} and warning once until the
    next L{answered}.  Other writes (accounts, rooms) always wait their turn.

    @ivar written: how many writes were ever put, so that a store can tell
        when everything written before some moment has been committed.
    @ivar held: how many messages count against C{bound}.
    @ivar dropped: how many messages were not stored (refused here, or
        lost, as the store counts them).
    """

    def __init__(
        self,
        clock: IReactorTime,
        window: float,
        bound: int,
        flush: Callable[[], None],
        laggard: str,
    ) -> None:
        """
        @param laggard: what falls behind when messages are refused, as the
            warning names it ("The disk", "Redis").
        """
        self.window = window
        self.bound = bound
        self.due = False
        self.written = 0
        self.held = 0
        self.dropped = 0
        self._clock = clock
        self._flush = flush
        self._lagging = (
            laggard + " is not keeping up: messages are not being stored ({dropped} so far)"
        )
        self._writes: list[_W] = []
        self._messages = 0
        self._timer: IDelayedCall | None = None
        self._warned = False

    def __iter__(self) -> Iterator[_W]:
        return iter(self._writes)

    def __len__(self) -> int:
        return len(self._writes)

    def admit(self, log: Logger) -> bool:
        """
        Whether one more message may be put.  (C{log} is asked for each
        time: tests give a store a new one.)
        """
        if self.held < self.bound:
            return True
        self.dropped += 1
        if not self._warned:
            self._warned = True
            log.warn(self._lagging, dropped=self.dropped)
        return False

    def put(self, write: _W, *, message: bool = False) -> None:
        """
        Queue C{write} (a message, counted against the bound, if
        C{message}) and start the window if it is not running.
        """
        self.held += message
        self._messages += message
        self._writes.append(write)
        self.written += 1
        if self._timer is None and not self.due:
            self._timer = self._clock.callLater(self.window, self._window_over)

    def _window_over(self) -> None:
        self._timer = None
        self.due = True
        self._flush()

    def stop(self) -> None:
        """
        Stop the window: what is queued is being sent now.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.due = False

    def take(self) -> tuple[list[_W], int]:
        """
        Stop the window and hand over every queued write, with how many of
        them are messages (still held until L{release}d).
        """
        self.stop()
        batch, self._writes = self._writes, []
        messages, self._messages = self._messages, 0
        return batch, messages

    def release(self, messages: int) -> None:
        """
        C{messages} taken earlier no longer count against the bound.
        """
        self.held -= messages

    def answered(self) -> None:
        """
        A batch is over: the next message refused warns again.
        """
        self._warned = False


class QueuedStore:
    """
    The part of a store that only puts writes in its L{WriteQueue}.

    Subclasses set C{_queue}, C{_closed} (false) and C{_closing} (None),
    and define C{_close}, which finishes the writes and lets go of the
    backend.
    """

    _queue: WriteQueue[Any]
    _closed: bool
    _closing: Deferred[None] | None

    @property
    def dropped(self) -> int:
        """
        How many messages were not stored (too many queued, or lost).
        """
        return self._queue.dropped

    def create_account(self, account: Account) -> Deferred[bool]:
        if self._closed:
            return fail(StoreError("The store is closed"))
        write = Registered(fold(account.name), account)
        self._queue.put(write)
        return write.done

    def set_password(self, name: str, password_hash: str) -> Deferred[None]:
        if self._closed:
            return fail(StoreError("The store is closed"))
        write = Rekeyed(fold(name), password_hash)
        self._queue.put(write)
        return write.done

    def close(self) -> Deferred[None]:
        """
        Refuse new writes at once, and run C{_close} once however often
        this is called; each caller gets a Deferred of its own.
        """
        if self._closing is None:
            self._closed = True
            self._closing = Deferred.fromCoroutine(self._close())
        done: Deferred[None] = Deferred()
        self._closing.addCallback(done.callback)
        return done

    async def _close(self) -> None:
        raise NotImplementedError
