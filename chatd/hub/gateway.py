# -*- test-case-name: tests.test_gateway -*-
"""
Gateways: how requests reach the hub.

Every door hands its requests to an L{IGateway}.  The gateway asks the hub
to prepare a request that must wait first (a password check), answers a
query at once, and commits each change: L{LocalGateway} applies it to its
hub; a cluster node (L{chatd.cluster.node.ClusterGateway}) appends it to
the cluster's log and applies it, as every node does, when the log gives it
back.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.components import registerAdapter
from zope.interface import implementer

from chatd.hub.hub import Hub
from chatd.hub.state import User
from chatd.interfaces import IClient, IGateway
from chatd.requests import Request

Answer = Deferred[Any] | None
"""What submitting a request returns: C{None} once done, or a Deferred that
fires when done and fails with the refusal."""


class Gateway:
    """
    What every gateway does with a request; L{commit} is what differs.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def submit(self, user: User | None, request: Request) -> Answer:
        if user is not None:
            preparing = self.hub.prepare(user, request)
            if preparing is not None:
                return preparing.addCallback(self._prepared, user)
        if not request.replicated():
            answer: Answer = self.hub.apply(user, request)
            return answer
        return self.commit(user, request)

    def _prepared(self, change: Request | None, user: User) -> Answer:
        return None if change is None else self.commit(user, change)

    def commit(self, user: User | None, change: Request) -> Answer:
        """
        Apply C{change}, which every replica of the hub must apply.
        """
        raise NotImplementedError


@implementer(IGateway)
class LocalGateway(Gateway):
    """
    The gateway of a hub that is the whole server: each change is applied
    at once.
    """

    def commit(self, user: User | None, change: Request) -> None:
        self.hub.apply(user, change)

    def connect(self, client: IClient, nick: str, account: str | None = None) -> User:
        return self.hub.connect(client, nick, account)

    def disconnect(self, user: User, reason: str | None = None) -> None:
        self.hub.disconnect(user, reason)

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def why_not_ready(self) -> str | None:
        return None


registerAdapter(LocalGateway, Hub, IGateway)
