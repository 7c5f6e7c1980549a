"""
Cluster mode's logic (L{chatd.cluster}) with several nodes in one process,
sharing an in-memory log and store: replicas agree, requests are answered
once applied, nodes come and go.  The same on real Redis and real
processes is in C{tests.test_cluster_redis}.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.cluster.node import REMOTE, ClusterGateway
from chatd.cluster.ops import Gone
from chatd.errors import ChatError, StoreError
from chatd.hub import Hub, User
from chatd.metrics import ChatCollector
from chatd.model import Error, Message, Notice, Parted, UserList
from chatd.requests import (
    Ban,
    Invite,
    Join,
    Kick,
    Mode,
    Msg,
    Nick,
    Op,
    Part,
    Register,
    Request,
    Say,
    Topic,
    Unban,
    Voice,
)
from chatd.store.memory import MemoryStore
from chatd.testing import MemoryLog, RecordingClient, SharedLog, quick_passwords


class Cluster:
    """
    Nodes on one shared log and one shared store.
    """

    def __init__(self) -> None:
        self.clock = Clock()
        self.log = SharedLog()
        self.store = MemoryStore()
        self.nodes: list[ClusterGateway] = []

    def node(self, name: str, **options: Any) -> ClusterGateway:
        node = self.unstarted(name, **options)
        started = node.start()
        self.pump()
        self.nodes.append(node)
        assert started.called, "the node did not become ready"
        return node

    def unstarted(self, name: str, **options: Any) -> ClusterGateway:
        options.setdefault("passwords", quick_passwords())
        hub = Hub(self.clock, self.store, **options)
        return ClusterGateway(hub, MemoryLog(self.log), self.clock, node=name)

    def pump(self) -> None:
        self.log.pump()

    def connect(self, hub: ClusterGateway, nick: str) -> User:
        client = RecordingClient()
        entering = hub.connect(client, nick)
        self.pump()
        user: User = self.successResultOf(entering)
        client.take()
        return user

    def successResultOf(self, d: Deferred[Any]) -> Any:
        results: list[Any] = []
        d.addBoth(results.append)
        assert results, "not answered"
        if isinstance(results[0], Exception) or hasattr(results[0], "raiseException"):
            results[0].raiseException()
        return results[0]


def taken(user: User) -> list[Any]:
    client = user.client
    assert isinstance(client, RecordingClient)
    return client.take()


class ReplicaTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cluster = Cluster()
        self.a = self.cluster.node("a")
        self.b = self.cluster.node("b")

    def test_message_crosses_nodes_once_with_one_id(self) -> None:
        alice = self.cluster.connect(self.a, "alice")
        bob = self.cluster.connect(self.b, "bob")
        taken(alice)
        said = self.a.submit(alice, Say(room="#lobby", text="hello"))
        self.cluster.pump()
        message = self.successResultOf(said)
        self.assertIsInstance(message, Message)
        self.assertEqual(taken(alice), [message])
        self.assertEqual(taken(bob), [message])
        self.assertEqual(self.b.hub.last_id, message.id)

    def test_each_delivery_is_made_and_counted_by_one_node(self) -> None:
        alice = self.cluster.connect(self.a, "alice")
        self.cluster.connect(self.b, "bob")
        before = (self.a.hub.deliveries, self.b.hub.deliveries)
        self.a.submit(alice, Say(room="#lobby", text="hello"))
        self.cluster.pump()
        self.assertEqual(
            (self.a.hub.deliveries, self.b.hub.deliveries), (before[0] + 1, before[1] + 1)
        )

    def test_each_node_sees_every_user(self) -> None:
        self.cluster.connect(self.a, "alice")
        self.cluster.connect(self.b, "bob")
        for hub in (self.a, self.b):
            self.assertEqual(sorted(hub.hub.users), ["alice", "bob"])
        self.assertIs(self.b.hub.users["alice"].client, REMOTE)
        self.assertIsNot(self.a.hub.users["alice"].client, REMOTE)

    def test_nick_clash_across_nodes(self) -> None:
        first = self.a.connect(RecordingClient(), "alice")
        second = self.b.connect(RecordingClient(), "ALICE")
        self.cluster.pump()
        self.assertIsInstance(self.successResultOf(first), User)
        self.assertEqual(self.failureResultOf(second, ChatError).value.code, "nick_taken")
        self.assertEqual(sorted(self.b.hub.users), ["alice"])

    def test_refusal_answers_the_asking_node_only(self) -> None:
        alice = self.cluster.connect(self.a, "alice")
        refused = self.a.submit(alice, Say(room="#nowhere", text="hi"))
        self.cluster.pump()
        self.assertEqual(self.failureResultOf(refused, ChatError).value.code, "not_in_room")

    def test_concurrent_senders_one_order(self) -> None:
        alice = self.cluster.connect(self.a, "alice")
        bob = self.cluster.connect(self.b, "bob")
        carol = self.cluster.connect(self.b, "carol")
        for i in range(5):
            self.a.submit(alice, Say(room="#lobby", text=f"a{i}"))
            self.b.submit(bob, Say(room="#lobby", text=f"b{i}"))
        self.cluster.pump()
        seen = [
            [(e.text, e.id) for e in taken(u) if isinstance(e, Message)]
            for u in (alice, bob, carol)
        ]
        self.assertEqual(len(seen[0]), 10)
        self.assertEqual(seen[0], seen[1])
        self.assertEqual(seen[1], seen[2])
        ids = [i for _, i in seen[0]]
        self.assertEqual(ids, sorted(ids))

    def test_private_message_across_nodes(self) -> None:
        alice = self.cluster.connect(self.a, "alice")
        bob = self.cluster.connect(self.b, "bob")
        taken(alice)
        self.a.submit(alice, Msg(to="BOB", text="psst"))
        self.cluster.pump()
        self.assertEqual([e.text for e in taken(bob)], ["psst"])
        self.assertEqual([e.text for e in taken(alice)], ["psst"])

    def test_moderation_is_cluster_wide(self) -> None:
        alice = self.cluster.connect(self.a, "alice")
        bob = self.cluster.connect(self.b, "bob")
        self.a.submit(alice, Join(room="#den"))
        self.cluster.pump()
        self.b.submit(bob, Join(room="#den"))
        self.cluster.pump()
        self.a.submit(alice, Kick(room="#den", nick="bob", reason="out"))
        self.cluster.pump()
        self.assertNotIn("#den", bob.rooms)
        self.assertNotIn(self.a.hub.users["bob"], self.a.hub.rooms["#den"].members)
        self.a.submit(alice, Mode(room="#den", mode="+i"))
        self.cluster.pump()
        refused = self.b.submit(bob, Join(room="#den"))
        self.cluster.pump()
        self.assertEqual(self.failureResultOf(refused, ChatError).value.code, "invite_only")

    def test_only_the_asking_node_stores(self) -> None:
        alice = self.cluster.connect(self.a, "alice")
        self.a.submit(alice, Say(room="#lobby", text="kept once"))
        self.cluster.pump()
        page = self.successResultOf(self.cluster.store.fetch("#lobby", 10, None))
        self.assertEqual([m.text for m in page], ["kept once"])

    def test_registration_reaches_every_node(self) -> None:
        alice = self.cluster.connect(self.a, "alice")
        registering = self.a.submit(alice, Register(password="correct-horse"))
        self.cluster.pump()
        self.successResultOf(registering)
        self.assertIn("alice", self.b.hub.accounts)
        self.assertEqual(self.b.hub.users["alice"].account, "alice")
        refused = self.b.connect(RecordingClient(), "alice")
        self.cluster.pump()
        self.assertEqual(self.failureResultOf(refused, ChatError).value.code, "nick_registered")

    def test_signing_on_again_on_another_node_takes_over(self) -> None:
        alice = self.cluster.connect(self.a, "alice")
        registering = self.a.submit(alice, Register(password="correct-horse"))
        self.cluster.pump()
        self.successResultOf(registering)
        self.a.submit(alice, Join(room="#den"))
        self.cluster.pump()
        client = RecordingClient()
        again = self.b.connect(client, "alice", "alice")
        self.cluster.pump()
        user = self.successResultOf(again)
        self.assertTrue(alice.client.closed)  # type: ignore[attr-defined]
        self.assertEqual(sorted(user.rooms), ["#den", "#lobby"])
        self.assertIs(self.a.hub.users["alice"].client, REMOTE)
        self.assertEqual(list(self.a.sessions), [user.sid])


class MembershipTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cluster = Cluster()
        self.a = self.cluster.node("a")

    def test_a_new_node_gets_a_snapshot(self) -> None:
        alice = self.cluster.connect(self.a, "alice")
        self.a.submit(alice, Join(room="#den"))
        self.a.submit(alice, Topic(room="#den", text="plans"))
        self.cluster.pump()
        b = self.cluster.node("b")
        self.assertEqual(sorted(b.hub.users), ["alice"])
        self.assertEqual(b.hub.rooms["#den"].topic, "plans")
        self.assertEqual([u.nick for u in b.hub.rooms["#den"].members], ["alice"])
        self.assertTrue(b.hub.rooms["#den"].is_op(b.hub.users["alice"]))
        bob = self.cluster.connect(b, "bob")
        b.submit(bob, Join(room="#den"))
        self.cluster.pump()
        self.assertEqual([u.nick for u in self.a.hub.rooms["#den"].members], ["alice", "bob"])

    def test_a_snapshot_keeps_voices_limits_and_times(self) -> None:
        """
        A new node's replica has each room's voiced members, limit, modes,
        topic time and creation time as the others have them, so that it
        applies what follows as they do.
        """
        self.cluster.clock.advance(10)
        alice = self.cluster.connect(self.a, "alice")
        bob = self.cluster.connect(self.a, "bob")
        self.a.submit(alice, Join(room="#den"))
        self.a.submit(bob, Join(room="#den"))
        self.cluster.pump()
        self.cluster.clock.advance(5)
        self.a.submit(alice, Topic(room="#den", text="plans"))
        self.a.submit(alice, Voice(room="#den", nick="bob"))
        self.a.submit(alice, Mode(room="#den", mode="+ml", limit=2))
        self.a.submit(alice, Mode(room="#den", mode="-n"))
        self.cluster.pump()
        b = self.cluster.node("b")
        mine, theirs = self.a.hub.rooms["#den"], b.hub.rooms["#den"]
        self.assertEqual(
            (theirs.modes, theirs.limit, theirs.topic_at, theirs.created),
            ("m", 2, 15.0, 10.0),
        )
        self.assertEqual(
            (mine.modes, mine.limit, mine.topic_at, mine.created), ("m", 2, 15.0, 10.0)
        )
        self.assertEqual([u.nick for u in theirs.voiced], ["bob"])

    def test_a_dead_node_s_users_go(self) -> None:
        b = self.cluster.node("b")
        alice = self.cluster.connect(self.a, "alice")
        self.cluster.connect(b, "bob")
        taken(alice)
        b.log.crash()  # type: ignore[attr-defined]
        self.cluster.clock.advance(self.a.log.heartbeat_ttl + 2)
        self.cluster.pump()
        self.assertEqual(sorted(self.a.hub.users), ["alice"])
        self.assertIn(Parted("#lobby", "bob", "connection lost", quit=True), taken(alice))
        again = self.cluster.connect(self.a, "bob")  # the nick is free again
        self.assertEqual(again.nick, "bob")

    def test_a_node_declared_dead_sends_its_users_away(self) -> None:
        b = self.cluster.node("b")
        bob = self.cluster.connect(b, "bob")
        self.a._submit(None, Gone(gone="b", reason="connection lost"))
        self.cluster.pump()
        got = taken(bob)
        self.assertIn("degraded", [e.code for e in got if isinstance(e, Error)])
        self.assertTrue(bob.client.closed)  # type: ignore[attr-defined]
        self.assertTrue(b.ready)  # it joined again, from a snapshot
        self.assertEqual(sorted(b.hub.users), [])

    def test_degraded_while_the_log_is_away(self) -> None:
        alice = self.cluster.connect(self.a, "alice")
        self.cluster.log.down = True
        for watcher in self.a.log.watchers:  # type: ignore[attr-defined]
            watcher(False)
        self.assertIn("degraded", [e.code for e in taken(alice) if isinstance(e, Error)])
        refused = self.a.submit(alice, Say(room="#lobby", text="hello?"))
        self.assertEqual(self.failureResultOf(refused, ChatError).value.code, "degraded")
        self.cluster.log.down = False
        for watcher in self.a.log.watchers:  # type: ignore[attr-defined]
            watcher(True)
        self.assertIn(Notice("Cross-node delivery is back"), taken(alice))
        self.a.submit(alice, Say(room="#lobby", text="back"))
        self.cluster.pump()
        self.assertEqual([e.text for e in taken(alice) if isinstance(e, Message)], ["back"])

    def test_a_departure_made_while_away_is_sent_later(self) -> None:
        b = self.cluster.node("b")
        bob = self.cluster.connect(b, "bob")
        self.cluster.log.down = True
        b.disconnect(bob, "quit")
        self.assertIn("bob", self.a.hub.users)
        self.cluster.log.down = False
        for watcher in b.log.watchers:  # type: ignore[attr-defined]
            watcher(False)
            watcher(True)
        self.cluster.pump()
        self.assertNotIn("bob", self.a.hub.users)

    def test_a_gap_in_the_log_restarts_the_node(self) -> None:
        b = self.cluster.node("b")
        bob = self.cluster.connect(b, "bob")
        b.receive(b._applied + 5, '["announce","a",0,0,"lost"]')
        self.assertTrue(bob.client.closed)  # type: ignore[attr-defined]
        self.cluster.pump()
        self.assertTrue(b.ready)

    def test_user_list_after_snapshot_marks_operators(self) -> None:
        alice = self.cluster.connect(self.a, "alice")
        self.a.submit(alice, Join(room="#den"))
        self.cluster.pump()
        b = self.cluster.node("b")
        bob = self.cluster.connect(b, "bob")
        b.submit(bob, Join(room="#den"))
        self.cluster.pump()
        lists = [e for e in taken(bob) if isinstance(e, UserList)]
        self.assertEqual(lists[-1].ops, ("alice",))


class OperatorTests(SynchronousTestCase):
    def test_metrics_and_readiness_follow_the_connection(self) -> None:
        cluster = Cluster()
        a = cluster.node("a")
        cluster.node("b")
        collector = ChatCollector(a, [])

        def values() -> dict[str, float]:
            return {
                sample.name: sample.value
                for family in collector.collect()
                for sample in family.samples
                if sample.name.startswith("chatd_cluster")
            }

        self.assertEqual(values()["chatd_cluster_redis_up"], 1)
        self.assertEqual(values()["chatd_cluster_nodes"], 2)
        self.assertIsNone(a.why_not_ready())
        for watcher in a.log.watchers:  # type: ignore[attr-defined]
            watcher(False)
        self.assertEqual(values()["chatd_cluster_redis_up"], 0)
        self.assertEqual(a.why_not_ready(), "cannot reach the cluster's Redis")


class StartingTests(SynchronousTestCase):
    def test_a_sign_on_waits_for_the_node_to_join(self) -> None:
        """
        Twisted listens before the node holds a copy of the cluster; a user
        arriving meanwhile is admitted once it does, not refused.
        """
        cluster = Cluster()
        cluster.node("a")
        b = cluster.unstarted("b")
        started = b.start()
        client = RecordingClient()
        entering = b.connect(client, "early")
        self.assertNoResult(entering)
        cluster.pump()
        self.assertIsNone(self.successResultOf(started))
        cluster.pump()
        self.assertEqual(self.successResultOf(entering).nick, "early")

    def test_sign_ons_are_refused_while_the_store_cannot_be_opened(self) -> None:
        """
        If the store cannot be opened, a user who was waiting and one who
        comes later are refused with C{degraded}, saying so; the node says
        why it is not ready, and a later C{start} that opens the store
        admits them again.
        """
        cluster = Cluster()
        store = cluster.store
        opening: list[Deferred[Any]] = []
        store.open = lambda: opening.append(Deferred()) or opening[-1]  # type: ignore[method-assign]
        b = cluster.unstarted("b")
        started = b.start()
        waiting = b.connect(RecordingClient(), "early")
        self.assertNoResult(waiting)
        opening[0].errback(StoreError("Cannot use Redis: no answer within 5 s"))
        self.failureResultOf(started, StoreError)
        for refused in (waiting, b.connect(RecordingClient(), "late")):
            error = self.failureResultOf(refused, ChatError).value
            self.assertEqual(error.code, "degraded")
            self.assertIn("Not ready", error.message)
        self.assertEqual(b.why_not_ready(), "cannot reach the cluster's Redis")

        started = b.start()
        opening[1].callback(store.load())
        cluster.pump()
        self.assertIsNone(self.successResultOf(started))
        self.assertIsNone(b.why_not_ready())
        entering = b.connect(RecordingClient(), "early")
        cluster.pump()
        self.assertEqual(self.successResultOf(entering).nick, "early")


class ConvergenceTests(SynchronousTestCase):
    def test_random_requests_leave_every_copy_the_same(self) -> None:
        """
        Whatever mix of requests three nodes make, concurrently, every
        node's copy of the cluster ends up the same.
        """
        rng = random.Random(5)
        cluster = Cluster()
        nodes = [cluster.node(name) for name in "abc"]
        nicks = [f"u{i}" for i in range(12)]
        rooms = ["#a", "#b", "#c"]
        for step in range(600):
            node = rng.choice(nodes)
            mine = [u for u in node.hub.users.values() if u.client is not REMOTE]
            action = rng.random()
            try:
                if action < 0.15 or not mine:
                    d = node.connect(RecordingClient(), rng.choice(nicks))
                else:
                    user = rng.choice(mine)
                    room, nick = rng.choice(rooms), rng.choice(nicks)
                    mode = rng.choice(["+m", "-m", "+t", "+i", "-i"])
                    request: Request = rng.choice(
                        [
                            Join(room=room),
                            Part(room=room),
                            Say(room=room, text=f"m{step}"),
                            Msg(to=nick, text="hi"),
                            Nick(nick=rng.choice(nicks)),
                            Op(room=room, nick=nick),
                            Kick(room=room, nick=nick),
                            (Ban if rng.random() < 0.7 else Unban)(room=room, nick=nick),
                            Mode(room=room, mode=mode),
                            Topic(room=room, text=f"t{step}"),
                            Invite(room=room, nick=nick),
                        ]
                    )
                    if rng.random() < 1 / 12:
                        node.disconnect(user, "bye")
                        continue
                    d = node.submit(user, request)
            except ChatError:
                continue
            if isinstance(d, Deferred):
                d.addErrback(lambda f: f.trap(ChatError))
            if rng.random() < 0.3:
                cluster.pump()
        cluster.pump()
        copies = [node.snapshot() for node in nodes]
        self.assertTrue(copies[0]["users"])
        for other in copies[1:]:
            self.assertEqual(other, copies[0])
