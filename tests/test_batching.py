"""
L{chatd.doors.batching}: what a connection is given in one reactor pass
goes out in one C{send}, in order, and falls back to Twisted's buffered
write (with its backpressure) when the kernel does not take it all.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatd.doors.batching import Batch, WriteBatcher
from chatd.doors.flow import Outbox, Throttle
from chatd.limits import Limits


class BatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        ours, self.peer = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(self.peer.close)
        ours.setblocking(False)
        self.peer.setblocking(False)
        self.stream = tcp.Connection(ours, Protocol(), reactor=self.reactor)
        self.stream.connected = True
        self.batcher = WriteBatcher(self.reactor)
        batch = self.batcher.batch(self.stream)
        assert batch is not None
        self.batch = batch

    def received(self) -> bytes:
        try:
            return self.peer.recv(1 << 20)
        except BlockingIOError:
            return b""

    def test_one_send_at_the_end_of_the_pass(self) -> None:
        for word in (b"one ", b"two ", b"three"):
            self.batch.push(word)
        self.assertEqual(self.received(), b"")
        self.reactor.advance(0)
        self.assertEqual(self.received(), b"one two three")
        self.assertNotIn(self.stream, self.reactor.getWriters())

    def test_what_the_kernel_refuses_is_buffered_in_order(self) -> None:
        big = b"x" * (8 << 20)  # more than any socket buffer
        self.batch.push(big)
        self.reactor.advance(0)
        self.assertIn(self.stream, self.reactor.getWriters())
        self.batch.push(b"after")
        self.reactor.advance(0)
        got = b""
        while True:
            chunk = self.received()
            if not chunk:
                self.stream.doWrite()
                chunk = self.received()
                if not chunk:
                    break
            got += chunk
        self.assertEqual(len(got), len(big) + len(b"after"))
        self.assertTrue(got.endswith(b"xafter"))

    def test_flush_now_and_discard(self) -> None:
        self.batch.push(b"now")
        self.batch.flush()
        self.assertEqual(self.received(), b"now")
        self.batch.push(b"never")
        self.batch.discard()
        self.reactor.advance(0)
        self.assertEqual(self.received(), b"")

    def test_other_transports_are_not_batched(self) -> None:
        self.assertIsNone(self.batcher.batch(StringTransport()))


class Owner:
    """
    Stands for a session: it writes into the batch, and has the C{push}
    its outbox sets.
    """

    push: Callable[[Any], None]

    def __init__(self, batch: Batch) -> None:
        self.write = batch.push

    def payload_size(self, payload: bytes) -> int:
        return len(payload)

    def overflowed(self, why: str) -> None:
        pass


class FastPathTests(BatchTests):
    def setUp(self) -> None:
        super().setUp()
        self.owner = Owner(self.batch)
        self.outbox = Outbox(self.owner, Throttle(), Limits(), self.reactor, self.batch.push)
        self.batch.outbox = self.outbox

    def test_push_is_the_list_append_while_gathering(self) -> None:
        """
        While a batch gathers this pass's output, the outbox has its owner
        push with the batch's C{list.append}; once sent, with the batch.
        """
        self.owner.push(b"a")
        self.assertNotEqual(self.owner.push, self.batch.push)
        self.owner.push(b"b")
        self.owner.push(b"c")
        self.reactor.advance(0)
        self.assertEqual(self.received(), b"abc")
        self.assertEqual(self.owner.push, self.batch.push)
        self.assertEqual(self.outbox.push, self.batch.push)

    def test_paused_while_gathering_the_queue_stays(self) -> None:
        """
        If the transport pauses the outbox while the batch gathers, its
        owner queues from then on, and still does once the batch is sent.
        """
        self.owner.push(b"a")
        self.outbox.pauseProducing()
        self.assertEqual(self.owner.push, self.outbox.put)
        self.reactor.advance(0)
        self.assertEqual(self.received(), b"a")
        self.assertEqual(self.owner.push, self.outbox.put)
        self.outbox.resumeProducing()
        self.assertEqual(self.owner.push, self.batch.push)
