# -*- test-case-name: tests.test_hub,tests.test_batching -*-
"""
Fan-out: writing events to users, the server's hot loop, kept alone so that
its cost is plain to see.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from twisted.logger import Logger

from chatd.hub.state import User
from chatd.interfaces import IEncoder
from chatd.model import Event


class Fanout:
    """
    Encodes each event once per door and writes it to each recipient.

    @ivar deliveries: events written to recipients (broadcasts) since start.
    @ivar bytes_out: bytes of events handed to each door's connections, by
        the door's encoder.
    """

    _log = Logger(namespace="chatd.hub")

    def __init__(self) -> None:
        self.deliveries = 0
        self.bytes_out: Counter[IEncoder | None] = Counter()

    def recipients(self, users: Iterable[User]) -> tuple[User, ...]:
        """
        Those of C{users} this process writes to: all of them (a cluster
        node keeps its own).
        """
        return tuple(users)

    def deliver(self, user: User, event: Event, optional: bool = False) -> None:
        """
        Write C{event} to C{user} alone (C{optional} if the connection may
        drop it when its output is backed up).
        """
        client = user.client
        try:
            payload = client.encoder.encode(event)
            client.send(payload, optional)
            if isinstance(payload, bytes):
                self.bytes_out[client.encoder] += len(payload)
        except Exception:
            self._log.failure(
                "Delivering {event} to {nick} failed", event=type(event).__name__, nick=user.nick
            )

    def broadcast(self, users: Iterable[User], event: Event) -> None:
        """
        Encode C{event} once per door and write it to each of C{users}.

        Each recipient is isolated: a failure while delivering to one is
        logged and never reaches the sender or the other recipients.

        This is the server's hot loop (one pass per recipient of every room
        message), so it does as little as it can: each client's C{push},
        while its output flows, is a write straight to its byte stream.
        """
        encoded: dict[IEncoder, object] = {}
        last_encoder: IEncoder | None = None
        payload: object = None
        run = 0  # recipients in a row given this payload, for bytes_out
        recipients = self.recipients(users)  # a delivery may end in someone leaving
        self.deliveries += len(recipients)
        for user in recipients:
            client = user.client
            try:
                encoder = client.encoder
                if encoder is not last_encoder:
                    if run:
                        self._sent(last_encoder, payload, run)
                        run = 0
                    payload = encoded.get(encoder)
                    if payload is None:
                        payload = encoded[encoder] = encoder.encode(event)
                    last_encoder = encoder
                client.push(payload)
                run += 1
            except Exception:
                self._log.failure(
                    "Delivering {event} to {nick} failed",
                    event=type(event).__name__,
                    nick=user.nick,
                )
        if run:
            self._sent(last_encoder, payload, run)

    def _sent(self, encoder: IEncoder | None, payload: object, times: int) -> None:
        if isinstance(payload, bytes):
            self.bytes_out[encoder] += len(payload) * times
