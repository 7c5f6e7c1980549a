# -*- test-case-name: tests.test_flow -*-
"""
Flow control shared by every door: bounded output per connection, input
paused while readers are saturated, and per-connection flood control.

Twisted's transports buffer without limit; they only tell a registered
streaming producer to pause when their buffer passes 64 KiB.  An L{Outbox}
is that producer: while its transport is paused it queues payloads itself,
counted in bytes and bounded.  A reader that is merely behind in a storm
drains within moments, so while any such reader is saturated the
L{Throttle} holds back I{input} (senders stop being read) rather than
dropping anybody; a reader that makes no progress stops counting (it is
I{stalled}) and is dropped once its queue reaches the hard bound or it has
been paused too long.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from chatd.limits import Limits


class Throttle:
    """
    Holds back input while some reader that is keeping up is saturated.

    @ivar saturated: outboxes over the soft bound that are still draining.
    """

    def __init__(self) -> None:
        self.saturated: set[Outbox] = set()
        self._waiting: dict[object, Callable[[], None]] = {}

    @property
    def active(self) -> bool:
        return bool(self.saturated)

    def wait(self, key: object, resume: Callable[[], None]) -> None:
        """
        Call C{resume} once no reader is saturated (once per C{key}).
        """
        self._waiting[key] = resume

    def forget(self, key: object) -> None:
        self._waiting.pop(key, None)

    def add(self, outbox: Outbox) -> None:
        self.saturated.add(outbox)

    def discard(self, outbox: Outbox) -> None:
        self.saturated.discard(outbox)
        while not self.saturated and self._waiting:
            _, resume = self._waiting.popitem()
            resume()


class Owner(Protocol):
    """
    What an L{Outbox} writes for: a door's connection (a
    L{chatd.doors.base.Session}).
    """

    push: Callable[[Any], None]

    def write(self, payload: Any) -> None:
        """
        Write C{payload} to the transport now.
        """

    def payload_size(self, payload: Any) -> int:
        """
        How many bytes C{payload} takes on the wire.
        """

    def overflowed(self, why: str) -> None:
        """
        The outbox gave up on its reader (it has closed): drop it.
        """


@implementer(IPushProducer)
class Outbox:
    """
    One connection's output: written straight through while its transport
    keeps up, queued (boundedly) while the transport is paused.

    The outbox calls its C{owner}'s methods when it needs them, rather than
    keeping them bound: three bound methods would cost 0.2 KiB for every
    connection.

    @ivar queued: bytes waiting in the queue.
    @ivar paused_since: when the transport last paused us, or C{None}.
    @ivar push: the cheapest way to send one (non-optional) payload right
        now: while the transport keeps up, C{direct}, or the C{append} of
        the L{chatd.doors.batching.Batch} gathering this pass's output; L{put}
        otherwise.  The outbox alone chooses it, whenever the transport
        pauses or resumes us, a batch starts or stops gathering, or the
        outbox closes, and sets the same as its C{owner}'s C{push}, so that
        the fan-out path calls it without going through L{put}.
    """

    __slots__ = (
        "_clock",
        "_direct",
        "_limits",
        "_owner",
        "_queue",
        "_stalled_now",
        "_throttle",
        "_timers",
        "closed",
        "paused_since",
        "push",
        "queued",
        "when_empty",
    )

    def __init__(
        self,
        owner: Owner,
        throttle: Throttle,
        limits: Limits,
        clock: IReactorTime,
        direct: Callable[[Any], None] | None = None,
    ) -> None:
        self._owner = owner
        self._direct = owner.write if direct is None else direct
        self._throttle = throttle
        self._limits = limits
        self._clock = clock
        # Made when first needed: most connections never queue anything,
        # and an empty deque costs half a kilobyte.
        self._queue: deque[tuple[Any, int]] | tuple[()] = ()
        self.queued = 0
        self.paused_since: float | None = None
        self._timers: list[IDelayedCall] | tuple[()] = ()
        self._stalled_now = False
        self.closed = False
        self.when_empty: Callable[[], None] | None = None
        self.push: Callable[[Any], None] = self._direct
        owner.push = self.push

    def _set_push(self) -> None:
        """
        Push as the transport allows: straight through, or queued.
        """
        push = self._direct if self.paused_since is None and not self.closed else self.put
        if push != self.push:
            self.push = self._owner.push = push

    def gather(self, append: Callable[[Any], None]) -> None:
        """
        A batch holds this pass's output: while the transport keeps up,
        push with its C{append}.
        """
        if self.push == self._direct:
            self.push = self._owner.push = append

    gathered = _set_push
    """The batch sent what it held (called for every recipient of every
    pass, so it is L{_set_push} itself, not a call to it)."""

    @property
    def saturated(self) -> bool:
        return self.queued > self._limits.soft_sendq

    def put(self, payload: Any, optional: bool = False) -> None:
        """
        Send C{payload}, or queue it while the transport is paused.  Optional
        output (history replays, listings) is dropped past the soft bound.
        """
        if self.closed:
            return
        if self.paused_since is None:
            self._owner.write(payload)
            return
        if optional and self.saturated:
            return
        size = self._owner.payload_size(payload)
        if self.queued + size > self._limits.max_sendq:
            self._give_up(f"send queue over {self._limits.max_sendq} bytes")
            return
        if not self._queue:
            self._queue = deque()
        assert isinstance(self._queue, deque)
        self._queue.append((payload, size))
        self.queued += size
        if self.saturated and not self._stalled_now:
            self._throttle.add(self)

    def pauseProducing(self) -> None:
        if self.paused_since is not None or self.closed:
            return
        self.paused_since = self._clock.seconds()
        self._set_push()
        self._stalled_now = False
        self._timers = [
            self._clock.callLater(self._limits.stall_timeout, self._stalled),
            self._clock.callLater(
                self._limits.paused_timeout, self._give_up, "not reading for too long"
            ),
        ]

    def resumeProducing(self) -> None:
        if self.closed:
            return
        self._cancel_timers()
        self.paused_since = None
        while self._queue and self.paused_since is None:
            assert isinstance(self._queue, deque)
            payload, size = self._queue.popleft()
            self.queued -= size
            self._owner.write(payload)
        if not self._queue:
            self._queue = ()
        self._set_push()
        if not self.saturated:
            self._throttle.discard(self)
        if not self._queue and self.when_empty is not None:
            when_empty, self.when_empty = self.when_empty, None
            when_empty()

    def stopProducing(self) -> None:
        self.close()

    def close(self) -> None:
        """
        Forget everything queued; the connection is going away.
        """
        self.closed = True
        self._set_push()
        self._cancel_timers()
        self._queue = ()
        self.queued = 0
        self._throttle.discard(self)

    @property
    def empty(self) -> bool:
        return not self._queue

    def _stalled(self) -> None:
        """
        Paused for a while without draining: stop holding back other input
        on its account; it is dropped when its queue fills.
        """
        self._stalled_now = True
        self._throttle.discard(self)

    def _give_up(self, why: str) -> None:
        self.close()
        self._owner.overflowed(why)

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = ()


class TokenBucket:
    """
    Flood control: C{burst} items at once, then C{rate} per second; a rate
    of 0 means no limit.  One bucket serves all of a door's senders: each
    keeps one number, when its own bucket is full again (the generic cell
    rate algorithm), where a bucket object apiece would cost 0.1 KiB.
    """

    __slots__ = ("_clock", "burst", "rate")

    def __init__(self, rate: float, burst: int, clock: IReactorTime) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock

    def take(self, full_at: float) -> tuple[float, float]:
        """
        Take one token from a sender's bucket, full from C{full_at} on.

        @return: 0 if a token was taken, else how many seconds until there
            will be one; and when the bucket is full again.
        """
        if self.rate <= 0:
            return 0.0, full_at
        now = self._clock.seconds()
        interval = 1 / self.rate
        late = max(full_at, now) - now - (self.burst - 1) * interval
        if late > 0:
            return late, full_at
        return 0.0, max(full_at, now) + interval
