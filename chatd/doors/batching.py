# -*- test-case-name: tests.test_batching -*-
"""
One C{send} per connection per reactor pass.

Twisted's C{write} on a TCP connection appends to a buffer and registers the
socket for writing; the next poll sends it and unregisters it: two
C{epoll_ctl} calls and a pass through C{doWrite} for every connection
written to, however little.  A room message fans out to every member, so
that is the server's main cost.  A L{Batch} instead gathers what one
connection is given during a reactor pass and, at the end of the pass,
sends it with one C{send} straight on the socket when nothing is waiting in
Twisted's buffer, which is nearly always.  Only what the kernel does not
take goes to Twisted's C{write}, which then buffers it and applies
backpressure (pausing the connection's L{chatd.doors.flow.Outbox}) as
usual.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from chatd.doors.flow import Outbox


class Batch:
    """
    What one plain TCP connection is to be sent at the end of this pass.

    While it holds something, its connection's outbox pushes with the
    list's own C{append} (L{Outbox.gather}): the hub's loop then costs one
    C call per recipient.  Flushing tells the outbox it is done
    (L{Outbox.gathered}), which then pushes as the transport allows.
    """

    __slots__ = ("_batcher", "_chunks", "_stream", "outbox")

    def __init__(self, batcher: WriteBatcher, stream: tcp.Connection) -> None:
        self._batcher = batcher
        self._stream = stream
        self._chunks: list[bytes] = []
        self.outbox: Outbox | None = None

    def push(self, data: bytes) -> None:
        """
        Add C{data} to what goes out at the end of this pass.
        """
        chunks = self._chunks
        if not chunks:
            self._batcher.dirty(self)
            if self.outbox is not None:
                self.outbox.gather(chunks.append)
        chunks.append(data)

    def flush(self) -> None:
        """
        Send what was gathered now (before the connection is closed, or
        anything else is written to it directly).
        """
        chunks = self._chunks
        if not chunks:
            return
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if self.outbox is not None:
            self.outbox.gathered()
        stream = self._stream
        if (
            stream.connected
            and not stream._writeDisconnected
            and not stream._tempDataBuffer
            and len(stream.dataBuffer) == stream.offset
        ):
            try:
                sent = stream.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                return  # the reactor finds out the connection is gone
            if sent == len(data):
                return
            data = data[sent:]
        FileDescriptor.write(stream, data)

    def discard(self) -> None:
        """
        The connection is gone: forget what was gathered.
        """
        self._chunks.clear()
        if self.outbox is not None:
            self.outbox.gathered()


class WriteBatcher:
    """
    Flushes every L{Batch} written to during a reactor pass, once, at the
    start of the next one (a C{callLater(0)}, which also makes that pass
    poll without waiting).
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._dirty: list[Batch] = []
        self._call: IDelayedCall | None = None

    def batch(self, stream: Any) -> Batch | None:
        """
        A batch for C{stream}, or None if it is not a plain TCP (or unix)
        socket connection that batching knows how to write to (TLS, test
        transports): those are written to as they are.  Give it the
        connection's outbox (L{Batch.outbox}) for the fan-out's fast path.
        """
        if isinstance(stream, tcp.Connection) and not stream.TLS:
            return Batch(self, stream)
        return None

    def dirty(self, batch: Batch) -> None:
        self._dirty.append(batch)
        if self._call is None:
            self._call = self._clock.callLater(0, self.flush)

    def flush(self) -> None:
        self._call = None
        dirty, self._dirty = self._dirty, []
        for batch in dirty:
            batch.flush()
