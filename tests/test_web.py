"""
The web site's own pages: the health checks at C{/healthz} and C{/readyz}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from chatd.doors.web import make_site
from chatd.doors.websocket import WebSocketDoor
from chatd.errors import StoreError
from chatd.store.memory import MemoryStore
from chatd.testing import make_hub


class SlowStore(MemoryStore):
    """
    A store whose checks answer only when the test says so.
    """

    def __init__(self) -> None:
        super().__init__()
        self.checks: list[Deferred[None]] = []

    def check(self) -> Deferred[None]:
        self.checks.append(Deferred())
        return self.checks[-1]


class HealthTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = SlowStore()
        self.hub = make_hub(self.clock, store=self.store)
        self.site = make_site(WebSocketDoor(self.hub, self.clock))

    def get(self, path: bytes) -> DummyRequest:
        request = DummyRequest([path])
        resource = self.site.resource.getChildWithDefault(path, request)
        body = resource.render(request)
        if body is not NOT_DONE_YET:
            request.write(body)
            request.finish()
        return request

    def test_liveness(self) -> None:
        request = self.get(b"healthz")
        self.assertEqual((request.responseCode, b"".join(request.written)), (None, b"ok\n"))

    def test_ready_when_the_store_answers(self) -> None:
        request = self.get(b"readyz")
        self.assertEqual(request.finished, 0)
        self.store.checks[0].callback(None)
        self.assertEqual(request.finished, 1)
        self.assertEqual((request.responseCode, b"".join(request.written)), (None, b"ready\n"))

    def test_not_ready_when_the_store_fails_or_hangs(self) -> None:
        request = self.get(b"readyz")
        self.store.checks[0].errback(StoreError("disk on fire"))
        self.assertEqual((request.responseCode, request.written), (503, [b"store unavailable\n"]))
        request = self.get(b"readyz")
        self.clock.advance(5)
        self.assertEqual((request.responseCode, request.written), (503, [b"store unavailable\n"]))

    def test_not_ready_when_stopping(self) -> None:
        self.hub.closing = True
        request = self.get(b"readyz")
        self.assertEqual((request.responseCode, request.written), (503, [b"shutting down\n"]))
        self.assertEqual(self.store.checks, [])

    def test_client_gone_before_the_answer(self) -> None:
        request = self.get(b"readyz")
        request.processingFailed(Failure(ConnectionError("gone")))
        self.store.checks[0].callback(None)
        self.assertEqual(request.written, [])

    def test_real_stores_answer(self) -> None:
        store = MemoryStore()
        self.successResultOf(store.check())
        self.successResultOf(store.close())
        self.failureResultOf(store.check(), StoreError)
