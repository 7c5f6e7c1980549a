# -*- test-case-name: tests.test_line,tests.test_websocket -*-
"""
What every door does, whatever its wire format: one user per connection,
hub refusals turned into error events, and orderly shutdown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.errors import ChatError
from chatd.hub import Hub, User
from chatd.interfaces import IClient, IEncoder
from chatd.model import Error, Event, Notice

SHUTDOWN_NOTICE = "server shutting down"


@implementer(IClient)
class Session:
    """
    The door-independent half of a chat connection (mixed into protocols).

    @ivar user: the hub's user for this connection, once it has a nickname.
    """

    door: Door
    user: User | None = None

    @property
    def me(self) -> User:
        """
        The signed-on user; doors make requests for it only after sign-on.
        """
        assert self.user is not None, "a request before sign-on"
        return self.user

    @property
    def hub(self) -> Hub:
        return self.door.hub

    @property
    def encoder(self) -> IEncoder:
        return self.door.encoder

    def send(self, payload: Any) -> None:
        """
        Write one encoded payload to the peer (see L{IClient.send}).
        """
        raise NotImplementedError

    def close(self) -> None:
        """
        Close the connection after what was sent has been written.
        """
        raise NotImplementedError

    def deliver(self, event: Event) -> None:
        """
        Send one event to this connection alone.
        """
        self.send(self.encoder.encode(event))

    def attempt(self, request: Callable[..., object], *args: Any) -> None:
        """
        Call C{request}; if the hub refuses it, tell the peer why.
        """
        try:
            request(*args)
        except ChatError as error:
            self.deliver(Error.from_exception(error))

    def sign_on(self, nick: str) -> bool:
        """
        Enter the hub as C{nick}; on refusal tell the peer and return False.
        """
        try:
            self.user = self.hub.connect(self, nick)
        except ChatError as error:
            self.deliver(Error.from_exception(error))
            return False
        return True

    def sign_off(self, reason: str | None) -> None:
        """
        Leave the hub (announced with C{reason}); safe to call repeatedly.
        """
        if self.user is not None:
            user, self.user = self.user, None
            self.hub.disconnect(user, reason)


class Door:
    """
    The shared half of a door's factory: the hub, the encoder, and every
    live connection, so that the door can close them all on shutdown.
    """

    name = "door"
    _log = Logger()

    def __init__(self, hub: Hub, encoder: IEncoder, clock: IReactorTime) -> None:
        self.hub = hub
        self.encoder = encoder
        self.clock = clock
        self.connections: set[Session] = set()
        self._emptied: list[Deferred[None]] = []

    def opened(self, session: Session) -> None:
        self.connections.add(session)

    def closed(self, session: Session, reason: str | None) -> None:
        session.sign_off(reason)
        self.connections.discard(session)
        if not self.connections:
            waiting, self._emptied = self._emptied, []
            for d in waiting:
                d.callback(None)

    def shutdown(self, reason: str = SHUTDOWN_NOTICE, timeout: float = 5.0) -> Deferred[None]:
        """
        Tell every connection C{reason}, close it, and fire once all are gone
        (or after C{timeout} seconds, whichever is first).
        """
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
                self._log.failure("Closing a {door} connection failed", door=self.name)

        def gave_up(failure: Failure) -> None:
            failure.trap(TimeoutError)
            self._log.warn(
                "{count} {door} connections still open after {timeout}s; leaving them",
                count=len(self.connections),
                door=self.name,
                timeout=timeout,
            )

        gone.addTimeout(timeout, self.clock)
        gone.addErrback(gave_up)
        return gone
