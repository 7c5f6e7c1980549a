"""
A cluster node started before its Redis (L{chatd.cluster},
L{chatd.redislog}): it keeps trying to join, with a capped backoff and one
log line per series of attempts, refuses sign-ons meanwhile with a clear
error, and joins once Redis answers.  All on a L{Clock}; the same with real
processes is in C{tests.test_cluster_redis.StartOrderTests}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from chatd.cluster import JOIN_RETRY_FIRST, JOIN_RETRY_MAX, NOT_READY, ClusterHub
from chatd.errors import ChatError, StoreError
from chatd.model import StoreState
from chatd.redislog import HEARTBEAT_EVERY, RedisLog
from chatd.store.memory import MemoryStore
from tests.helpers import RecordingClient, quick_passwords
from tests.test_cluster import MemoryLog, SharedLog


class CountingLog(MemoryLog):
    """
    A L{MemoryLog} that notes when each hello was tried.
    """

    def __init__(self, shared: SharedLog, clock: Clock) -> None:
        super().__init__(shared)
        self.clock = clock
        self.tried: list[float] = []

    def hello(self, node: str, deliver: Callable[[int, str], None]) -> Deferred[Any]:
        self.tried.append(self.clock.seconds())
        return super().hello(node, deliver)


class PendingLog(MemoryLog):
    """
    A L{MemoryLog} whose hello is answered only when the test says so, as
    Redis answers once it is up.
    """

    def __init__(self, shared: SharedLog) -> None:
        super().__init__(shared)
        self.asked: list[tuple[str, Callable[[int, str], None], Deferred[Any]]] = []

    def hello(self, node: str, deliver: Callable[[int, str], None]) -> Deferred[Any]:
        answer: Deferred[Any] = Deferred()
        self.asked.append((node, deliver, answer))
        return answer

    def answer(self) -> None:
        node, deliver, answer = self.asked.pop(0)
        MemoryLog.hello(self, node, deliver).chainDeferred(answer)

    def tell(self, connected: bool) -> None:
        for watcher in self.watchers:
            watcher(connected)


class SlowStore(MemoryStore):
    """
    A L{MemoryStore} whose opening is answered when the test says so, and
    counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.openings: list[Deferred[StoreState]] = []

    def open(self) -> Deferred[StoreState]:
        opening: Deferred[StoreState] = Deferred()
        self.openings.append(opening)
        return opening


@implementer(ILogObserver)
class Logged:
    """
    The text of every event logged in C{namespace} while a test runs.
    """

    def __init__(self, case: SynchronousTestCase, namespace: str) -> None:
        self.namespace = namespace
        self.lines: list[str] = []
        globalLogPublisher.addObserver(self)
        case.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event: LogEvent) -> None:
        if event.get("log_namespace") == self.namespace:
            self.lines.append(formatEvent(event))

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)


class JoiningTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.shared = SharedLog()
        self.store = MemoryStore()
        self.logged = Logged(self, "chatd.cluster")

    def node(self, log: MemoryLog, store: Any = None) -> ClusterHub:
        return ClusterHub(
            self.clock,
            self.store if store is None else store,
            log,
            node="a",
            passwords=quick_passwords(),
        )

    def assertNotReady(self, refused: Deferred[Any]) -> None:
        error = self.failureResultOf(refused, ChatError).value
        self.assertEqual((error.code, error.message), ("degraded", NOT_READY))

    def test_sign_ons_are_refused_until_the_log_answers(self) -> None:
        self.shared.down = True
        hub = self.node(MemoryLog(self.shared))
        started = hub.start()
        self.assertNoResult(started)
        self.assertNotReady(hub.connect(RecordingClient(), "early"))
        self.assertEqual(hub.trouble(), "not yet part of the cluster (joining failed: down)")

        self.shared.down = False
        self.clock.advance(JOIN_RETRY_FIRST)
        self.assertIsNone(self.successResultOf(started))
        self.assertIsNone(hub.trouble())
        entering = hub.connect(RecordingClient(), "early")
        self.shared.pump()
        self.assertEqual(self.successResultOf(entering).nick, "early")

    def test_backoff_doubles_up_to_a_cap_and_is_logged_once(self) -> None:
        self.shared.down = True
        log = CountingLog(self.shared, self.clock)
        hub = self.node(log)
        hub.start()
        for _ in range(40):
            self.clock.advance(0.25)
        gaps = [
            later - earlier for earlier, later in zip(log.tried[:-1], log.tried[1:], strict=True)
        ]
        self.assertEqual(gaps[:4], [JOIN_RETRY_FIRST, 2 * JOIN_RETRY_FIRST, 2.0, 2.0])
        self.assertEqual(max(gaps), JOIN_RETRY_MAX)
        self.assertEqual(self.logged.count("Joining the cluster failed"), 1)

        self.shared.down = False
        self.clock.advance(JOIN_RETRY_MAX)
        self.assertTrue(hub.ready)
        self.assertEqual(self.logged.count("the log answered, after"), 1)

    def test_the_log_back_is_tried_at_once(self) -> None:
        self.shared.down = True
        log = PendingLog(self.shared)
        hub = self.node(log)
        started = hub.start()
        log.asked.pop()[2].errback(ConnectionError("refused"))
        log.tell(False)
        self.assertEqual(hub.trouble(), "cannot reach the cluster's Redis")
        self.shared.down = False
        log.tell(True)  # no need to wait for the next try
        self.assertEqual(len(log.asked), 1)
        log.answer()
        self.assertIsNone(self.successResultOf(started))
        self.assertEqual(self.logged.count("Redis answers; joining the cluster"), 1)

    def test_waiting_sign_ons_are_refused_once_the_log_is_found_away(self) -> None:
        """
        A sign-on made just after start waits (the node assumes it can
        reach Redis until it hears otherwise); once it hears, the sign-on is
        refused, and so are later ones, at once, until Redis answers.
        """
        log = PendingLog(self.shared)
        hub = self.node(log)
        started = hub.start()
        waiting = hub.connect(RecordingClient(), "early")
        self.assertNoResult(waiting)
        log.tell(False)
        self.assertNotReady(waiting)
        self.assertNotReady(hub.connect(RecordingClient(), "early"))
        self.assertEqual(self.logged.count("cannot be reached yet"), 1)

        log.tell(True)
        log.answer()
        self.assertIsNone(self.successResultOf(started))
        entering = hub.connect(RecordingClient(), "early")
        self.shared.pump()
        self.assertEqual(self.successResultOf(entering).nick, "early")

    def test_the_store_is_opened_once_the_log_answers(self) -> None:
        """
        The store is opened once Redis has answered the log (so that it is
        known to answer), once, even when the node joins again.
        """
        log = PendingLog(self.shared)
        store = SlowStore()
        hub = self.node(log, store)
        started = hub.start()
        self.assertEqual(store.openings, [])
        log.answer()
        self.assertEqual(len(store.openings), 1)
        self.assertNoResult(started)
        store.openings[0].callback(StoreState(41, frozenset({"zed"}), ()))
        self.assertIsNone(self.successResultOf(started))
        self.assertEqual((hub.last_id, hub.accounts), (41, {"zed"}))

        hub.receive(hub._applied + 5, '["announce","b",0,0,"lost"]')  # a gap
        log.answer()
        self.assertTrue(hub.ready)
        self.assertEqual(len(store.openings), 1)

    def test_a_snapshot_waits_for_the_store(self) -> None:
        """
        A snapshot that comes before the store is loaded is taken after,
        so that what the store holds does not replace it.
        """
        first = ClusterHub(
            self.clock,
            self.store,
            MemoryLog(self.shared),
            node="first",
            passwords=quick_passwords(),
        )
        first.start()
        alice = first.connect(RecordingClient(), "alice")
        self.shared.pump()
        first.join(self.successResultOf(alice), "#den")
        self.shared.pump()

        store = SlowStore()
        hub = self.node(MemoryLog(self.shared), store)
        started = hub.start()
        self.shared.pump()  # the hello, first's snapshot, its notice
        self.assertNoResult(started)
        store.openings[0].callback(StoreState(0, frozenset({"zed"}), ()))
        self.shared.pump()
        self.assertIsNone(self.successResultOf(started))
        self.assertEqual(sorted(hub.users), ["alice"])
        self.assertEqual(sorted(hub.rooms), ["#den", "#lobby"])
        self.assertEqual(hub.nodes, {"a", "first"})

    def test_a_store_that_cannot_be_read(self) -> None:
        store = SlowStore()
        hub = self.node(PendingLog(self.shared), store)
        started = hub.start()
        hub.log.answer()  # type: ignore[attr-defined]
        store.openings[0].errback(StoreError("Cannot read it"))
        self.failureResultOf(started, StoreError)
        self.assertEqual(
            hub.trouble(), "not yet part of the cluster (its store cannot be read: Cannot read it)"
        )
        self.assertNotReady(hub.connect(RecordingClient(), "early"))

    def test_leaving_stops_trying(self) -> None:
        self.shared.down = True
        log = CountingLog(self.shared, self.clock)
        hub = self.node(log)
        hub.start()
        self.successResultOf(hub.leave())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(60)
        self.assertEqual(log.tried, [0.0])


class FakeRedis:
    """
    Stands for a lazy txredisapi connection: commands are recorded with a
    Deferred each, answered by the test; C{up} says whether it is connected.
    """

    def __init__(self) -> None:
        self.up = False
        self.sent: list[tuple[tuple[Any, ...], Deferred[Any]]] = []
        self.disconnected = False

    @property
    def _factory(self) -> Any:
        return type("Factory", (), {"size": int(self.up)})()

    def _send(self, *command: Any) -> Deferred[Any]:
        answer: Deferred[Any] = Deferred()
        self.sent.append((command, answer))
        return answer

    def eval(self, script: str, keys: list[str], args: list[str]) -> Deferred[Any]:
        return self._send("EVAL", script, *keys, *args)

    def execute_command(self, *args: Any, **options: Any) -> Deferred[Any]:
        return self._send(*args)

    def set(self, key: str, value: str, **options: Any) -> Deferred[Any]:
        return self._send("SET", key, value)

    def sadd(self, key: str, member: str) -> Deferred[Any]:
        return self._send("SADD", key, member)

    def delete(self, key: str) -> Deferred[Any]:
        return self._send("DEL", key)

    def srem(self, key: str, member: str) -> Deferred[Any]:
        return self._send("SREM", key, member)

    def disconnect(self) -> Deferred[None]:
        self.disconnected = True
        return succeed(None)

    def names(self) -> list[str]:
        return [command[0] for command, _ in self.sent]

    def answer(self, name: str, reply: Any) -> None:
        for command, answer in self.sent:
            if command[0] == name and not answer.called:
                answer.callback(reply)
                return
        raise AssertionError(f"no {name} waiting among {self.names()}")


class RedisLogStartTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.made: list[FakeRedis] = []
        self.log = RedisLog(self._connect, self.clock)
        self.changes: list[bool] = []
        self.log.watch(self.changes.append)
        self.delivered: list[tuple[int, str]] = []

    def _connect(self) -> FakeRedis:
        self.made.append(FakeRedis())
        return self.made[-1]

    def test_an_absent_redis_is_noticed_then_its_coming(self) -> None:
        said = self.log.hello("n1", lambda seq, op: self.delivered.append((seq, op)))
        commands, reader = self.made
        self.assertNoResult(said)
        self.clock.advance(HEARTBEAT_EVERY)
        self.assertEqual(self.changes, [False])
        self.clock.advance(10 * HEARTBEAT_EVERY)
        self.assertEqual(self.changes, [False])  # said once
        # Nothing but the waiting hello: no heartbeat before it is answered.
        self.assertEqual(commands.names(), ["EVAL"])
        self.assertEqual(reader.names(), [])

        commands.up = True
        commands.answer("EVAL", [7, ""])
        self.assertNoResult(said)  # the reader is not up yet
        self.assertEqual(reader.names(), ["PING"])
        reader.up = True
        reader.answer("PING", "PONG")
        self.assertEqual(self.successResultOf(said), (7, None))
        self.assertEqual(self.changes, [False, True])
        self.assertEqual(reader.names(), ["PING", "XREAD"])
        self.assertEqual(commands.names(), ["EVAL", "EVAL"])  # the floor of numbering
        commands.answer("EVAL", 7)
        self.assertEqual(commands.names()[2:], ["SET"])  # now the heartbeat

    def test_stopping_before_redis_ever_answered_waits_for_nothing(self) -> None:
        self.log.hello("n1", lambda seq, op: None)
        self.successResultOf(self.log.stop())
        commands, reader = self.made
        self.assertEqual(commands.names(), ["EVAL"])
        self.assertTrue(commands.disconnected and reader.disconnected)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopping_does_not_wait_for_ever_for_a_lost_redis(self) -> None:
        said = self.log.hello("n1", lambda seq, op: None)
        commands, reader = self.made
        commands.up = reader.up = True
        commands.answer("EVAL", [1, ""])
        self.successResultOf(said)  # at once: the reader is up already
        self.assertEqual(reader.names(), ["XREAD"])
        commands.up = reader.up = False  # gone, unnoticed yet
        stopped = self.log.stop()
        self.assertNoResult(stopped)
        self.clock.advance(10)
        self.successResultOf(stopped)
        self.assertTrue(commands.disconnected and reader.disconnected)
