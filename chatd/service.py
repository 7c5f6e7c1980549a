# -*- test-case-name: tests.test_tap -*-
"""
The running server as a C{twisted.application} service: the hub, its doors
and their listening ports, started and stopped in order.
"""

from __future__ import annotations

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import Factory

from chatd.doors.base import Door
from chatd.hub import Hub


class ChatService(MultiService):
    """
    Owns the hub and every door.

    On stop it first stops listening, then tells every connected user that
    the server is going down and waits (boundedly) for their connections to
    close, so a clean shutdown loses nothing that was already accepted.
    """

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub
        self.doors: list[Door] = []
        self._unlistened: list[Factory] = []

    def add_door(self, door: Door, listener: IService, *, served_by_site: bool = False) -> None:
        """
        Add C{door} with the service that listens for it.  A door reached
        through a web site is not started by any port, so this service
        starts and stops its factory itself.
        """
        self.doors.append(door)
        if served_by_site:
            assert isinstance(door, Factory)
            self._unlistened.append(door)
        listener.setServiceParent(self)

    def startService(self) -> None:
        for factory in self._unlistened:
            factory.doStart()
        super().startService()

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self.hub.closing = True
        await super().stopService()
        await gatherResults([door.shutdown() for door in self.doors])
        for factory in self._unlistened:
            factory.doStop()
