# -*- test-case-name: tests.test_tap -*-
"""
The running server as a C{twisted.application} service: the hub, its doors
and their listening ports, started and stopped in order.
"""

from __future__ import annotations

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.app.reload import Reloader, TLSEndpoint
from chatd.doors.base import Door
from chatd.hub import Hub
from chatd.interfaces import IGateway

PRUNE_EVERY = 3600.0
START_RETRY_DELAYS = (0.5, 1.0, 2.0)  # then every 2 s


class ChatService(MultiService):
    """
    Owns the hub, its store and every door.

    On stop it first stops listening, then tells every connected user that
    the server is going down and waits (boundedly) for their connections to
    close, then commits what the store still holds, so a clean shutdown
    loses nothing that was already accepted.

    With C{history_days}, messages older than that are pruned hourly.

    While it runs, SIGHUP rereads the certificate and key of each C{ssl:}
    listener among its services and the message of the day from
    C{motd_path} (L{chatd.app.reload}).
    """

    _log = Logger()

    def __init__(
        self,
        hub: Hub | IGateway,
        clock: IReactorTime,
        history_days: float = 0,
        motd_path: str | None = None,
    ) -> None:
        super().__init__()
        self.gateway: IGateway = IGateway(hub)
        self.hub = self.gateway.hub
        self.clock = clock
        self.history_days = history_days
        self.doors: list[Door] = []
        self._unlistened: list[Factory] = []
        self._starting: Deferred[None] | None = None
        self._retry: IDelayedCall | None = None
        self._failed_starts = 0
        self._serving = False
        self._pruning = LoopingCall(self._prune)
        self._pruning.clock = clock
        self.reloader = Reloader(clock, self.hub, motd_path, self._tls_endpoints)

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
        """
        Start the doors once the hub is ready to serve: at once for a lone
        hub, once it holds a copy of the cluster for a cluster node.  (twistd
        may have bound the ports already, in C{privilegedStartService}; a
        cluster node holds sign-ons that arrive meanwhile until it is ready.)
        If the hub cannot start (a cluster node whose Redis does not answer),
        start it again after 0.5 s, 1 s, 2 s, then every 2 s, until it does.
        """
        Service.startService(self)
        self.reloader.start()
        self._start_hub()

    def _start_hub(self) -> None:
        self._retry = None
        self._starting = self.gateway.start()
        self._starting.addCallbacks(self._serve, self._not_started)

    def _serve(self, _: object) -> None:
        self._starting = None
        if self._failed_starts:
            self._log.info(
                "The chat service started after {count} failed attempts", count=self._failed_starts
            )
            self._failed_starts = 0
        if not self.running:
            return
        for factory in self._unlistened:
            factory.doStart()
        for service in self:
            service.startService()
        self._serving = True
        if self.history_days > 0:
            self._pruning.start(PRUNE_EVERY)

    def _not_started(self, failure: Failure) -> None:
        self._starting = None
        if failure.check(CancelledError) or not self.running or self.hub.closing:
            return  # stopping
        delay = START_RETRY_DELAYS[min(self._failed_starts, len(START_RETRY_DELAYS) - 1)]
        if not self._failed_starts:  # said once per series of attempts
            self._log.failure(
                "The chat service could not start; trying again until it does", failure
            )
        self._failed_starts += 1
        self._retry = self.clock.callLater(delay, self._start_hub)

    def _tls_endpoints(self) -> list[TLSEndpoint]:
        endpoints = (getattr(service, "endpoint", None) for service in self)
        return [e for e in endpoints if isinstance(e, TLSEndpoint)]

    def _prune(self) -> Deferred[None]:
        def pruned(count: int) -> None:
            if count:
                self._log.info(
                    "Pruned {count} messages older than {days} days",
                    count=count,
                    days=self.history_days,
                )

        cutoff = self.clock.seconds() - self.history_days * 86400
        pruning = self.hub.store.prune(cutoff).addCallback(pruned)
        return pruning.addErrback(lambda f: self._log.failure("Pruning failed", f))

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self.reloader.stop()
        self.hub.close()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._starting is not None:
            self._starting.cancel()
        if not self._serving:
            Service.stopService(self)
            await self.gateway.stop()
            await self.hub.store.close()
            return
        await super().stopService()
        if self._pruning.running:
            self._pruning.stop()
        await self.gateway.stop()
        await gatherResults([door.shutdown() for door in self.doors])
        for factory in self._unlistened:
            factory.doStop()
        await self.hub.store.close()
