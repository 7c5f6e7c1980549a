# -*- test-case-name: tests.test_line,tests.test_websocket,tests.test_flow -*-
"""
What every door does, whatever its wire format: one user per connection,
bounded output, paced input, hub refusals turned into error events, and
orderly shutdown.
"""

from __future__ import annotations

import socket
from collections import Counter, deque
from collections.abc import Callable
from math import inf
from operator import attrgetter
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.doors.batching import Batch, WriteBatcher
from chatd.doors.flow import Outbox, Throttle, TokenBucket
from chatd.errors import ChatError
from chatd.hub import Hub, User
from chatd.hub.gateway import Answer
from chatd.interfaces import IClient, IEncoder, IGateway
from chatd.limits import Limits
from chatd.model import Error, Event, Notice
from chatd.requests import Request

SHUTDOWN_NOTICE = "server shutting down"
SWEEP_INTERVAL = 1.0
"""Seconds between a door's looks at its connections' deadlines
(L{Door.sweep}): each deadline is met within this much."""
_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def tcp_socket(transport: Any) -> socket.socket | None:
    """
    The TCP socket under C{transport}, looking through layers such as TLS;
    C{None} for anything else (a unix socket, a test's fake transport).
    """
    handle = None
    while transport is not None and not isinstance(handle, socket.socket):
        get_handle = getattr(transport, "getHandle", None)
        handle = get_handle() if get_handle is not None else None
        transport = getattr(transport, "transport", None)
    if not isinstance(handle, socket.socket) or handle.family not in _TCP_FAMILIES:
        return None
    return handle


def no_delay(transport: Any) -> None:
    """
    Turn off Nagle's algorithm (C{TCP_NODELAY}) on the TCP socket under
    C{transport}, through TLS if need be; a no-op for unix sockets.  Both
    doors do it on every connection.

    Fan-out writes small payloads, each as soon as it is ready (Twisted
    sends what one reactor pass wrote to a connection in one C{send}).  With
    Nagle on, a write made while the previous segment is still unacknowledged
    is held until its ACK comes; a client that only listens sends no data
    for the ACK to ride on, so it delays the ACK, by up to 40 ms on Linux.
    """
    handle = tcp_socket(transport)
    if handle is not None:
        handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@implementer(IClient)
class Session:
    """
    The door-independent half of a chat connection (mixed into protocols).

    A door's protocol calls L{started} when its connection is up, L{received}
    with each complete input item (a line, a WebSocket message), and
    L{ended} when the connection is gone; it implements the few wire-level
    methods below that raise C{NotImplementedError}.

    @ivar user: the hub's user for this connection, once it has a nickname.
    @ivar address: the client's IP address (behind a trusted proxy, the one
        the proxy names), if it has one.
    @ivar push: sends one payload by the shortest way there is at the
        moment (L{Outbox.push}, which only the outbox sets): the door's
        L{direct} writer, or this pass's batch, while the transport keeps
        up; the bounded queue while it is paused or closed.  The hub's
        fan-out calls it for every recipient of a room event.

    All output goes through the connection's L{Outbox}: the hub writes with
    C{push} (fan-out) and L{send} (to this user alone), a door with
    L{deliver} (an event, encoded by the door's encoder) or, for text of
    its own, L{send}.  A door provides L{write} and L{direct}, the wire
    writers the outbox uses; it never calls them itself.

    A connection's deadlines (signing on in time, the door's L{watch} on a
    silent peer) have no timer of their own: the door's sweep calls L{tick}
    once the clock passes L{due}.
    """

    door: Door
    user: User | None = None
    batch: Batch | None = None  # output gathered for the end of the pass
    encoder: IEncoder
    outbox: Outbox
    push: Callable[[Any], None]
    stream: Any  # the byte stream under the wire protocol: TCP, TLS or unix
    address: str | None = None  # the client's IP address, as admission counts it
    _closing = False
    _reading_paused = False
    _pending: Deferred[Any] | None = None
    _inbox: deque[Any] | tuple[()] = ()
    _wake: IDelayedCall | None = None
    _flooding = False
    due = inf  # when the door's sweep next calls tick()
    _deadline: float | None = None  # when it must have signed on by

    # -- what each door provides --------------------------------------------

    def write(self, payload: Any) -> None:
        """
        Write one encoded payload to the transport now.
        """
        raise NotImplementedError

    def direct(self) -> Callable[[Any], None]:
        """
        The fastest callable that does what L{write} does, for the fan-out
        path while output flows: called once the connection is up, it may
        return a method of the byte stream itself.
        """
        return self.write

    def payload_size(self, payload: Any) -> int:
        """
        How many bytes C{payload} takes on the wire.
        """
        raise NotImplementedError

    def handle(self, item: Any) -> None:
        """
        Act on one input item.
        """
        raise NotImplementedError

    def finish(self) -> None:
        """
        Close the connection politely once queued output has been written.
        """
        raise NotImplementedError

    def watch(self, now: float) -> float:
        """
        The door's check on a silent peer (a probe, a ping, dropping it when
        no answer came): do what is due at C{now}, and return when to look
        again (C{inf}: never).
        """
        return inf

    # -- lifecycle ----------------------------------------------------------

    @property
    def hub(self) -> Hub:
        return self.door.hub

    @property
    def gateway(self) -> IGateway:
        return self.door.gateway

    @property
    def me(self) -> User:
        """
        The signed-on user; doors make requests for it only after sign-on.
        """
        assert self.user is not None, "a request before sign-on"
        return self.user

    def started(self, door: Door) -> Outbox:
        """
        The connection is up: set up its outbox (which the door registers
        as its transport's producer) and its sign-on deadline.
        """
        self.door = door
        self.encoder = door.encoder
        self.batch = door.batcher.batch(getattr(self, "stream", None))
        limits, clock = door.limits, door.clock
        self.outbox = Outbox(self, door.throttle, limits, clock, direct=self.direct())
        if self.batch is not None:
            self.batch.outbox = self.outbox
        # Made when first needed (an empty deque costs half a kilobyte).
        self._inbox = ()
        self._wake = None
        self._flooding = False
        self._flood_full_at = 0.0  # when its flood bucket is full again
        now = clock.seconds()
        self._deadline = now + limits.sign_on_timeout
        self.due = min(self._deadline, self.watch(now))
        door.opened(self)
        return self.outbox

    def ended(self, reason: str | None = "connection closed") -> None:
        """
        The connection is gone: leave the hub and release everything.
        """
        self._closing = True
        self.outbox.close()
        if self.batch is not None:
            self.batch.discard()
        self._inbox = ()
        self.door.throttle.forget(self)
        if self._wake is not None and self._wake.active():
            self._wake.cancel()
        self.door.closed(self, reason)

    def tick(self, now: float) -> None:
        """
        The door's sweep: act on whichever deadline C{now} has passed, and
        set when to look next.
        """
        if self._deadline is not None and now >= self._deadline:
            self._sign_on_expired()
        deadline = inf if self._deadline is None else self._deadline
        self.due = min(deadline, self.watch(now))

    def abort(self) -> None:
        """
        Drop the connection now, discarding unwritten output.
        """
        self.stream.abortConnection()

    def set_reading(self, reading: bool) -> None:
        """
        Stop or resume reading from the peer.
        """
        if reading:
            self.stream.resumeProducing()
        else:
            self.stream.pauseProducing()

    def close(self) -> None:
        """
        Stop taking input and close once queued output has been written.
        """
        if self._closing:
            return
        self._closing = True
        self._inbox = ()
        if self.outbox.empty:
            self.finish()
        else:
            self.outbox.when_empty = self.finish

    # -- output -------------------------------------------------------------

    def send(self, payload: Any, optional: bool = False) -> None:
        """
        Write one encoded payload, through the outbox (L{IClient.send}).
        """
        self.outbox.put(payload, optional)

    def deliver(self, event: Event) -> None:
        """
        Send one event to this connection alone.
        """
        self.send(self.encoder.encode(event))

    def overflowed(self, why: str) -> None:
        """
        The outbox gave up on this reader: it is a slow consumer.
        """
        self.door.count("slow_consumer")
        self.door.log.info(
            "Dropping {door} connection {nick}: slow consumer ({why})",
            door=self.door.name,
            nick=self.user.nick if self.user else "(no nick)",
            why=why,
        )
        self.write(self.encoder.encode(Error("slow_consumer", "You are not reading; goodbye")))
        self._closing = True
        # Often called while the hub is delivering to this very room: leave
        # once that delivery is done.
        self.door.clock.callLater(0, self._drop, "slow consumer")

    def _drop(self, reason: str) -> None:
        self.sign_off(reason)
        self.abort()

    # -- input --------------------------------------------------------------

    def received(self, item: Any) -> None:
        """
        Take one input item: handle it now, or hold it while output is
        saturated or the flood limit is reached.
        """
        if self._closing:
            return
        inbox = self._inbox
        if not inbox:
            inbox = self._inbox = deque()
        assert isinstance(inbox, deque)
        inbox.append(item)
        if self._flooding and len(inbox) > self._flood_allowance():
            self.door.count("flood")
            self.deliver(Error("flood", "Excess flood; goodbye"))
            self.sign_off("excess flood")
            self.close()
            return
        self._drain()

    def _flood_allowance(self) -> float:
        limits = self.door.limits
        return max(limits.flood_burst, limits.flood_rate * limits.flood_backlog)

    def _drain(self) -> None:
        while self._inbox and not self._closing:
            if self._pending is not None:
                break
            if self.door.throttle.active:
                self.door.throttle.wait(self, self._resume_soon)
                self._set_reading(False)
                return
            delay, self._flood_full_at = self.door.flood.take(self._flood_full_at)
            if delay:
                self._flooding = True
                self._wake = self.door.clock.callLater(delay, self._resume)
                self._set_reading(False)
                return
            assert isinstance(self._inbox, deque)
            self._handle_safely(self._inbox.popleft())
        if not self._inbox:
            self._inbox = ()
        self._set_reading(self._pending is None)

    def _handle_safely(self, item: Any) -> None:
        """
        Handle C{item}; a bug met on the way is logged once, with its
        traceback, and costs this request only, not the connection.
        """
        try:
            self.handle(item)
        except Exception:
            self._failed(Failure())

    def _failed(self, failure: Failure) -> None:
        self.door.log.failure(
            "Handling input from {door} connection {nick} failed",
            failure=failure,
            door=self.door.name,
            nick=self.user.nick if self.user else "(no nick)",
        )
        self.deliver(Error("internal_error", "Something went wrong; the error was logged"))

    def _resume_soon(self) -> None:
        if self._wake is None and not self._closing:
            self._wake = self.door.clock.callLater(0, self._resume)

    def _resume(self) -> None:
        self._wake = None
        self._flooding = False
        self._drain()

    def _set_reading(self, reading: bool) -> None:
        if reading == self._reading_paused and not self._closing:
            self._reading_paused = not reading
            self.set_reading(reading)

    # -- chat ---------------------------------------------------------------

    def attempt(self, request: Callable[..., object], *args: Any, named: str | None = None) -> None:
        """
        Call C{request}; if the hub refuses it, tell the peer why (naming
        the request as C{named}, if given).

        A request that waits (a password check, a store write, a cluster's
        log) returns a Deferred: until it fires, further input waits too, so
        requests are answered in the order they were made.
        """
        try:
            result = request(*args)
        except ChatError as error:
            self.deliver(Error.from_exception(error, named))
            return
        if isinstance(result, Deferred):
            self._await(result, named)

    def _await(self, waiting: Deferred[Any], named: str | None = None) -> None:
        finished = False

        def done(result: object) -> None:
            nonlocal finished
            finished = True
            if isinstance(result, Failure):
                if isinstance(result.value, ChatError):
                    self.deliver(Error.from_exception(result.value, named))
                else:
                    self._failed(result)
            if self._pending is waiting:
                self._pending = None
                self._drain()

        waiting.addBoth(done)
        if not finished:
            self._pending = waiting

    def sign_on(self, nick: str, password: str | None = None) -> Deferred[bool]:
        """
        Enter the hub as C{nick}, proving its account with C{password} if
        given; fire with whether it worked (a refusal fails with
        L{ChatError}).
        """
        if password is None:
            try:
                entered = self._enter(nick, None)
            except Exception:
                return fail()
            return entered if isinstance(entered, Deferred) else succeed(entered)
        proven = self.hub.authenticate(self, nick, password)
        return proven.addCallback(lambda account: self._enter(nick, account))

    def submit(self, request: Request) -> Answer:
        """
        Make C{request} on behalf of the signed-on user.
        """
        return self.gateway.submit(self.me, request)

    def _enter(self, nick: str, account: str | None) -> bool | Deferred[bool]:
        if self._closing:
            return False
        entered = self.gateway.connect(self, nick, account)
        if isinstance(entered, Deferred):  # a cluster admits it once the log has
            return entered.addCallback(self._entered)
        return self._entered(entered)

    def _entered(self, user: User) -> bool:
        if self._closing:  # gone while the cluster was admitting it
            self.gateway.disconnect(user, "connection closed")
            return False
        self.user = user
        self._deadline = None
        return True

    def sign_off(self, reason: str | None) -> None:
        """
        Leave the hub (announced with C{reason}); safe to call repeatedly.
        """
        if self.user is not None:
            user, self.user = self.user, None
            self.gateway.disconnect(user, reason)

    def _sign_on_expired(self) -> None:
        self._deadline = None
        self.door.count("sign_on_timeout")
        self.deliver(Error("sign_on_timeout", "No nickname chosen in time; goodbye"))
        self.close()


class Door:
    """
    The shared half of a door's factory: the hub, the encoder, the limits,
    and every live connection, so that the door can close them all.

    @ivar connections: the live connections, in the order they opened.
    @ivar counters: how many connections were dropped or refused, by why.
    """

    name = "door"
    log = Logger()
    shutting_down = False

    def __init__(
        self,
        hub: Hub | IGateway,
        encoder: IEncoder,
        clock: IReactorTime,
        limits: Limits | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self.gateway: IGateway = IGateway(hub)
        self.hub: Hub = self.gateway.hub
        self.encoder = encoder
        self.clock = clock
        self.limits = Limits() if limits is None else limits
        self.throttle = Throttle() if throttle is None else throttle
        self.connections: dict[Session, None] = {}
        self.counters: Counter[str] = Counter()
        self.batcher = WriteBatcher(clock)
        self.flood = TokenBucket(self.limits.flood_rate, self.limits.flood_burst, clock)
        self._emptied: list[Deferred[None]] = []
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = clock

    def count(self, what: str) -> None:
        self.counters[what] += 1

    def opened(self, session: Session) -> None:
        self.connections[session] = None
        if not self._sweeper.running:
            self._sweeper.start(SWEEP_INTERVAL, now=False)

    def closed(self, session: Session, reason: str | None) -> None:
        session.sign_off(reason)
        self.connections.pop(session, None)
        if not self.connections:
            if self._sweeper.running:
                self._sweeper.stop()
            waiting, self._emptied = self._emptied, []
            for d in waiting:
                d.callback(None)

    def sweep(self) -> None:
        """
        Tick every connection whose next deadline has come, soonest first (as
        their own timers would have fired): one timer for the door, every
        L{SWEEP_INTERVAL} while it has connections, where a timer per
        connection (a C{DelayedCall} and the bound method it holds) would
        keep 0.3 KiB each.
        """
        now = self.clock.seconds()
        due = [s for s in self.connections if s.due <= now]
        for session in sorted(due, key=attrgetter("due")):
            if session not in self.connections:  # an earlier tick ended it
                continue
            try:
                session.tick(now)
            except Exception:
                self.log.failure("Checking a {door} connection's deadlines failed", door=self.name)

    def shutdown(self, reason: str = SHUTDOWN_NOTICE) -> Deferred[None]:
        """
        Tell every connection C{reason} and close it once its output has
        drained; after the drain timeout, drop whoever is left.  Fires once
        every connection is gone.
        """
        self.shutting_down = True
        if not self.connections:
            return succeed(None)
        notice = self.encoder.encode(Notice(reason))
        gone: Deferred[None] = Deferred()
        self._emptied.append(gone)
        for session in list(self.connections):
            try:
                session.send(notice)
                session.close()
            except Exception:
                self.log.failure("Closing a {door} connection failed", door=self.name)

        def drop_stragglers() -> None:
            if self.connections:
                self.log.warn(
                    "Dropping {count} {door} connections still draining after {timeout}s",
                    count=len(self.connections),
                    door=self.name,
                    timeout=self.limits.drain_timeout,
                )
            for session in list(self.connections):
                session.abort()

        timer = self.clock.callLater(self.limits.drain_timeout, drop_stragglers)
        gone.addBoth(lambda result: timer.cancel() if timer.active() else None)
        return gone
