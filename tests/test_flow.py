"""
Flow control: bounded output, slow consumers, backpressure, flood control,
sign-on deadlines and the telnet liveness probe, driven on StringTransports
with a Clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.doors.base import SWEEP_INTERVAL
from chatd.doors.flow import Outbox, Throttle, TokenBucket
from chatd.doors.line import LineDoor
from chatd.doors.websocket import WebSocketDoor
from chatd.hub import Hub
from chatd.limits import Limits
from chatd.testing import CLOSE, PING, TEXT, LinePeer, WebSocketPeer

IAC, DO, WONT, TM = 255, 253, 252, 6


class Recorder:
    """
    An outbox's owner that records what it is given.
    """

    push: Callable[[Any], None]

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.overflows: list[str] = []

    def write(self, payload: bytes) -> None:
        self.written.append(payload)

    def payload_size(self, payload: bytes) -> int:
        return len(payload)

    def overflowed(self, why: str) -> None:
        self.overflows.append(why)


class OutboxTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.owner = Recorder()
        self.written = self.owner.written
        self.overflows = self.owner.overflows
        self.throttle = Throttle()
        self.limits = Limits(max_sendq=100, soft_sendq=40, paused_timeout=30, stall_timeout=0.5)
        self.outbox = Outbox(self.owner, self.throttle, self.limits, self.clock)

    def test_straight_through_while_flowing(self) -> None:
        """
        While the transport keeps up, payloads are written at once.
        """
        self.outbox.put(b"a")
        self.outbox.put(b"b")
        self.assertEqual(self.written, [b"a", b"b"])
        self.assertEqual(self.outbox.queued, 0)

    def test_queued_while_paused_then_flushed_in_order(self) -> None:
        """
        While paused, payloads wait in order and are counted; on resume they
        are written in that order.
        """
        self.outbox.pauseProducing()
        self.outbox.put(b"1" * 10)
        self.outbox.put(b"2" * 10)
        self.assertEqual((self.written, self.outbox.queued), ([], 20))
        self.outbox.resumeProducing()
        self.assertEqual(self.written, [b"1" * 10, b"2" * 10])
        self.assertEqual(self.outbox.queued, 0)

    def test_optional_output_skipped_past_soft_bound(self) -> None:
        """
        Past the soft bound, optional payloads are dropped; others still wait.
        """
        self.outbox.pauseProducing()
        self.outbox.put(b"x" * 41)
        self.outbox.put(b"history", optional=True)
        self.outbox.put(b"message")
        self.outbox.resumeProducing()
        self.assertEqual(self.written, [b"x" * 41, b"message"])

    def test_hard_bound(self) -> None:
        """
        A payload that would take the queue past the hard bound gives up on
        the connection: everything queued is dropped, nothing more accepted.
        """
        self.outbox.pauseProducing()
        self.outbox.put(b"x" * 60)
        self.outbox.put(b"y" * 41)
        self.assertEqual(self.overflows, ["send queue over 100 bytes"])
        self.assertEqual(self.outbox.queued, 0)
        self.outbox.put(b"z")
        self.outbox.resumeProducing()
        self.assertEqual(self.written, [])

    def test_paused_too_long(self) -> None:
        """
        A transport paused for the paused timeout is given up on, even with
        little queued; one that resumes in time is not.
        """
        self.outbox.pauseProducing()
        self.clock.advance(29)
        self.outbox.resumeProducing()
        self.outbox.pauseProducing()
        self.clock.advance(29.9)
        self.assertEqual(self.overflows, [])
        self.clock.advance(0.1)
        self.assertEqual(self.overflows, ["not reading for too long"])

    def test_saturated_reader_holds_input_until_it_drains(self) -> None:
        """
        A reader past the soft bound activates the throttle; draining below
        it releases whoever waited.
        """
        released: list[str] = []
        self.outbox.pauseProducing()
        self.outbox.put(b"x" * 41)
        self.assertTrue(self.throttle.active)
        self.throttle.wait("sender", lambda: released.append("sender"))
        self.outbox.resumeProducing()
        self.assertFalse(self.throttle.active)
        self.assertEqual(released, ["sender"])

    def test_stalled_reader_stops_holding_input(self) -> None:
        """
        A saturated reader that makes no progress for the stall timeout
        stops holding back input, and does not start again until it resumes.
        """
        released: list[str] = []
        self.outbox.pauseProducing()
        self.outbox.put(b"x" * 41)
        self.throttle.wait("sender", lambda: released.append("sender"))
        self.clock.advance(0.5)
        self.assertFalse(self.throttle.active)
        self.assertEqual(released, ["sender"])
        self.outbox.put(b"y" * 10)
        self.assertFalse(self.throttle.active)

    def test_push_follows_the_transport(self) -> None:
        """
        C{push} is the direct writer while the transport keeps up and the
        bounded queue while it is paused or the outbox is closed; every
        change is reported, and nothing pushed while paused overtakes what
        was queued before.
        """
        direct: list[bytes] = []
        pushes: list[object] = []

        class Owner(Recorder):
            def __setattr__(self, name: str, value: object) -> None:
                if name == "push":
                    pushes.append(value)
                super().__setattr__(name, value)

        owner = Owner()
        written = owner.written
        outbox = Outbox(owner, self.throttle, self.limits, self.clock, direct=direct.append)
        outbox.push(b"a")
        self.assertEqual((direct, written), ([b"a"], []))
        outbox.pauseProducing()
        self.assertEqual(outbox.push, outbox.put)
        outbox.push(b"b")
        outbox.push(b"c")
        self.assertEqual((direct, written, outbox.queued), ([b"a"], [], 2))
        outbox.resumeProducing()
        self.assertEqual(written, [b"b", b"c"])
        outbox.push(b"d")
        self.assertEqual(direct, [b"a", b"d"])
        outbox.close()
        outbox.push(b"e")
        self.assertEqual((direct, written), ([b"a", b"d"], [b"b", b"c"]))
        self.assertEqual(pushes, [direct.append, outbox.put, direct.append, outbox.put])

    def test_push_stays_queued_when_resume_pauses_again(self) -> None:
        """
        If flushing the queue on resume pauses the transport again, C{push}
        keeps queueing behind what is left.
        """
        outbox = self.outbox
        direct = outbox.push
        outbox.pauseProducing()
        outbox.put(b"1")
        outbox.put(b"2")

        def pausing_write(payload: bytes) -> None:
            self.written.append(payload)
            outbox.pauseProducing()

        self.owner.write = pausing_write  # type: ignore[method-assign]
        outbox.resumeProducing()
        self.assertEqual(self.written, [b"1"])
        self.assertEqual(outbox.push, outbox.put)
        outbox.push(b"3")
        del self.owner.write
        outbox.resumeProducing()
        self.assertEqual(self.written, [b"1", b"2", b"3"])
        self.assertEqual(outbox.push, direct)


class TokenBucketTests(SynchronousTestCase):
    def test_burst_then_rate(self) -> None:
        """
        A burst is allowed at once; after it, one token per 1/rate seconds.
        """
        clock = Clock()
        bucket = TokenBucket(rate=2, burst=3, clock=clock)
        full_at = 0.0

        def take() -> float:
            nonlocal full_at
            delay, full_at = bucket.take(full_at)
            return delay

        self.assertEqual([take() for _ in range(3)], [0, 0, 0])
        self.assertEqual(take(), 0.5)
        clock.advance(0.5)
        self.assertEqual(take(), 0)
        clock.advance(100)
        self.assertEqual([take() for _ in range(4)], [0, 0, 0, 0.5])

    def test_off(self) -> None:
        """
        A rate of 0 never holds anything back.
        """
        bucket = TokenBucket(rate=0, burst=1, clock=Clock())
        self.assertEqual([bucket.take(0.0)[0] for _ in range(100)], [0] * 100)


class DoorFlowTestCase(SynchronousTestCase):
    limits = Limits(flood_rate=0)

    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = Hub(self.clock)
        self.door = LineDoor(self.hub, self.clock, self.limits)

    def peer(self, nick: str | None = None) -> LinePeer:
        peer = LinePeer(self.door)
        if nick is not None:
            peer.sign_on(nick)
        return peer


def paused(peer: Any) -> Outbox:
    """
    Pause C{peer}'s outbox as its transport would once its buffer is full.
    """
    outbox: Outbox = peer.transport.producer
    outbox.pauseProducing()
    return outbox


class FanOutPathTests(DoorFlowTestCase):
    def test_fan_out_queues_while_paused_and_keeps_order(self) -> None:
        """
        Room messages take the session's direct path while its transport
        keeps up, and its bounded queue while paused: a paused reader gets
        every message, in order, after the ones written before the pause.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        bob.received()
        alice.send("one")
        outbox = paused(bob)
        self.assertEqual(bob.protocol.protocol.push, outbox.put)
        alice.send("two")
        self.assertGreater(outbox.queued, 0)
        outbox.resumeProducing()
        alice.send("three")
        said = [line for line in bob.lines() if line.startswith("[#lobby]")]
        self.assertEqual(said, [f"[#lobby] <alice> {n}" for n in ("one", "two", "three")])


class SlowConsumerTests(DoorFlowTestCase):
    limits = Limits(flood_rate=0, max_sendq=4096, soft_sendq=1024)

    def test_non_reader_dropped_others_see_why(self) -> None:
        """
        A reader that never drains is dropped once its queue passes the hard
        bound; the others see it leave as a slow consumer, and get every
        message themselves.
        """
        alice, bob, carol = self.peer("alice"), self.peer("bob"), self.peer("carol")
        alice.received()
        carol.received()
        paused(bob)
        for n in range(200):
            alice.send(f"message number {n:03}")
            self.clock.advance(0.1)
        self.assertTrue(bob.transport.aborted)
        self.assertEqual(self.door.counters["slow_consumer"], 1)
        bob.disconnect()
        lines = carol.lines()
        self.assertIn("*** bob has left #lobby (slow consumer)", lines)
        said = [line for line in lines if line.startswith("[#lobby]")]
        self.assertEqual(said, [f"[#lobby] <alice> message number {n:03}" for n in range(200)])
        self.assertNotIn("bob", self.hub.users)

    def test_reader_behind_holds_senders_and_loses_nothing(self) -> None:
        """
        While a reader that is draining is saturated, senders are not read;
        once it catches up they go on, and it receives everything in order.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        bob.received()
        outbox = paused(bob)
        alice.send(b"".join(b"line %03d\r\n" % n for n in range(100)))
        self.assertEqual(alice.transport.producerState, "paused")
        held = len(alice.lines())
        self.assertLess(held, 100)
        outbox.resumeProducing()
        self.clock.advance(0)
        self.assertEqual(alice.transport.producerState, "producing")
        self.assertEqual(bob.lines(), [f"[#lobby] <alice> line {n:03}" for n in range(100)])
        self.assertFalse(bob.transport.aborted)

    def test_paused_too_long_dropped(self) -> None:
        """
        A connection that leaves output unread for 30 s is dropped even
        though its queue is small.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        paused(bob)
        alice.send("hello?")
        self.clock.advance(30)
        self.assertTrue(bob.transport.aborted)
        bob.disconnect()
        self.assertIn("*** bob has left #lobby (slow consumer)", alice.lines())

    def test_shutdown_drains_before_closing(self) -> None:
        """
        On shutdown a connection with queued output is closed only once that
        output (and the notice) has been written.
        """
        alice = self.peer("alice")
        alice.received()
        outbox = paused(alice)
        self.hub.say(alice.protocol.protocol.user, "#lobby", "last words")
        self.door.shutdown()
        self.assertFalse(alice.transport.disconnecting)
        outbox.resumeProducing()
        self.assertEqual(alice.lines(), ["[#lobby] <alice> last words", "*** server shutting down"])
        self.assertTrue(alice.transport.disconnecting)


class FloodTests(DoorFlowTestCase):
    limits = Limits(flood_burst=3, flood_rate=2, flood_backlog=10)

    def test_excess_is_delayed_not_dropped(self) -> None:
        """
        Past the burst, lines wait (with reading paused) and come out at the
        flood rate; none is lost.
        """
        alice, bob = self.peer(), self.peer("bob")
        alice.send("alice")
        self.clock.advance(10)
        bob.received()
        alice.send(b"".join(b"%d\r\n" % n for n in range(6)))
        self.assertEqual(bob.lines(), [f"[#lobby] <alice> {n}" for n in (0, 1, 2)])
        self.assertEqual(alice.transport.producerState, "paused")
        self.clock.advance(0.5)
        self.assertEqual(bob.lines(), ["[#lobby] <alice> 3"])
        self.clock.advance(1.0)
        self.assertEqual(bob.lines(), [f"[#lobby] <alice> {n}" for n in (4, 5)])
        self.assertEqual(alice.transport.producerState, "producing")

    def test_sustained_flood_disconnects(self) -> None:
        """
        More held-back input than the backlog allows (10 s at 2 lines/s)
        drops the connection, with a reason the others see.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        self.clock.advance(10)
        bob.received()
        alice.send(b"".join(b"%d\r\n" % n for n in range(40)))
        self.assertEqual(self.door.counters["flood"], 1)
        self.assertIn("!!! Excess flood; goodbye", alice.lines())
        self.assertTrue(alice.transport.disconnecting)
        self.assertIn("*** alice has left #lobby (excess flood)", bob.lines())


class HeldInputTests(DoorFlowTestCase):
    limits = Limits(flood_rate=0, max_sendq=1 << 20, soft_sendq=1024)

    def test_held_by_backpressure_is_not_a_flood(self) -> None:
        """
        Input held back while a reader catches up, however much of it, never
        counts as flooding (flood control is off here, as in load tests).
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        outbox = paused(bob)
        alice.send(b"".join(b"line %03d\r\n" % n for n in range(300)))
        outbox.resumeProducing()
        alice.send(b"".join(b"more %03d\r\n" % n for n in range(300)))
        self.clock.advance(0)
        outbox.resumeProducing()
        self.clock.advance(0)
        self.assertEqual(self.door.counters["flood"], 0)
        self.assertFalse(alice.transport.disconnecting)
        said = [line for line in bob.lines() if line.startswith("[#lobby]")]
        self.assertEqual(len(said), 600)


class DeadlineTests(DoorFlowTestCase):
    def test_no_nick_in_time(self) -> None:
        """
        A connection that has not chosen a nick 30 s after accept is told
        and closed, however it trickles bytes.
        """
        peer = self.peer()
        peer.received()
        for _ in range(29):
            peer.send(b"x")
            self.clock.advance(1)
        self.assertFalse(peer.transport.disconnecting)
        self.clock.advance(1)
        self.assertEqual(peer.lines(), ["!!! No nickname chosen in time; goodbye"])
        self.assertTrue(peer.transport.disconnecting)

    def test_named_in_time_stays(self) -> None:
        """
        Choosing a nick in time cancels the deadline.
        """
        peer = self.peer("alice")
        self.clock.advance(3600)
        self.assertFalse(peer.transport.disconnecting)

    def test_websocket_hello_deadline(self) -> None:
        """
        A WebSocket that says no hello within 30 s of accept is closed.
        """
        door = WebSocketDoor(self.hub, self.clock, Limits())
        peer = WebSocketPeer(door)
        self.clock.advance(29.9)
        self.assertFalse(any(opcode == CLOSE for opcode, _ in peer.frames()))
        self.clock.advance(0.1)
        frames = [f for f in peer.frames() if f[0] != PING]
        self.assertEqual(frames[0][0], TEXT)
        self.assertEqual(json.loads(frames[0][1])["code"], "sign_on_timeout")
        self.assertEqual(frames[-1][0], CLOSE)


class SweepTests(DoorFlowTestCase):
    def test_no_timer_per_connection(self) -> None:
        """
        Neither the sign-on deadline nor the telnet probe is a timer of the
        connection's own: the door's sweep is its only one, and it stops
        with the last connection.
        """
        before = len(self.clock.getDelayedCalls())
        peers = [self.peer() for _ in range(10)] + [self.peer(f"user{n}") for n in range(10)]
        self.assertEqual(len(self.clock.getDelayedCalls()), before + 1)
        for peer in peers:
            peer.disconnect()
        self.assertEqual(len(self.clock.getDelayedCalls()), before)

    def test_deadlines_met_within_the_sweep_interval(self) -> None:
        """
        The sweep looks every second: a deadline that falls between two
        looks is met at the next.
        """
        self.peer("alice")  # the sweep looks at 1 s, 2 s, ...
        self.clock.advance(0.5)
        late = self.peer()  # to have signed on by 30.5 s
        self.clock.pump([0.25] * 120)
        self.assertEqual(self.clock.seconds(), 30.5)
        self.assertFalse(late.transport.disconnecting)
        self.clock.pump([0.25] * 2)
        self.assertEqual(self.clock.seconds(), 30 + SWEEP_INTERVAL)
        self.assertTrue(late.transport.disconnecting)


class ProbeTests(DoorFlowTestCase):
    def test_silent_peer_probed_and_dropped(self) -> None:
        """
        After 2 min of silence a telnet peer gets DO TIMING-MARK; with no
        answer in 30 s it is dropped, and the others see why.
        """
        alice, bob = self.peer("alice"), self.peer("bob")
        alice.received()
        self.clock.advance(120)
        self.assertEqual(alice.received(), bytes([IAC, DO, TM]))
        self.clock.advance(30)
        self.assertTrue(alice.transport.aborted)
        alice.disconnect()
        self.assertTrue(bob.received().endswith(b"*** alice has left #lobby (ping timeout)\r\n"))

    def test_answering_peer_kept(self) -> None:
        """
        A telnet client answers the probe by itself; a quiet but live user is
        never dropped.
        """
        alice = self.peer("alice")
        for _ in range(10):
            self.clock.advance(120)
            self.assertEqual(alice.received(), bytes([IAC, DO, TM]))
            self.clock.advance(5)
            alice.send(bytes([IAC, WONT, TM]))
            self.assertEqual(alice.received(), b"")
        self.assertFalse(alice.transport.aborted)

    def test_probe_off(self) -> None:
        """
        With the probe off (for raw-TCP bots) a silent peer is left alone.
        """
        door = LineDoor(self.hub, self.clock, Limits(probe_idle=0))
        peer = LinePeer(door)
        peer.sign_on("bot")
        self.clock.advance(86400)
        self.assertEqual(peer.received(), b"")
        self.assertFalse(peer.transport.disconnecting)
